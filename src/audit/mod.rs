//! The audit stage: frames become typed records, records sharing a serial become events, and
//! events that are successful execve/execveat calls become [`exec::ExecEvent`]s (and successful
//! symlink/link calls [`link::LinkEvent`]s, for the path-aware detector).

pub mod config_change;
pub mod exec;
pub mod fileop;
pub mod link;
pub mod netconn;
pub mod reassemble;
pub mod record;
pub mod record_type;
pub mod task;

pub use record::{AuditTime, Record};
