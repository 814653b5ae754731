//! The audit stage: frames become typed records, records sharing a serial become events, and
//! events that are successful execve/execveat calls become [`exec::ExecEvent`]s.

pub mod exec;
pub mod reassemble;
pub mod record;

pub use record::{AuditTime, Record};
