//! The audit stage: frames become typed records, records sharing a serial become events, and
//! events that are successful execve/execveat calls become [`exec::ExecEvent`]s.

pub mod record;
pub mod reassemble;
pub mod exec;

pub use record::{AuditTime, Record};
