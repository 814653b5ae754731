//! auditsentry: Elastic's "System Binary Symlink to Suspicious Location" rule on the Linux audit stream.
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! proc     pid → process facts, so an exec can name its parent (procfs reads /proc)
//! source   bytes → frames (auditd text lines, plugin lines, netlink frames), new links
//! audit    frames → records → events (grouped by serial) → exec events
//! event    exec event + parent + host → ECS document (the contract with rule/); document is
//!          the model rules query, catalog lists the fields each kind of document holds, names
//!          the user and group names
//! rule     KQL or EQL query + new-terms gate (over state/) → alert
//! sink     alerts → NDJSON / syslog
//! pipeline the only module that knows every stage
//! ```
//!
//! A module uses only the stages before it (`tests/it/stage_order.rs` holds the full order).
//!
//! `config` and `rule::file` read the operator's files through `textfile`, which bounds them.
#![forbid(unsafe_code)]

pub mod alert;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod document;
pub mod event;
pub mod jsonline;
pub mod keyhash;
pub mod manpage;
pub mod names;
pub mod pipeline;
pub mod proc;
pub mod procfs;
pub mod rule;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod textfile;
