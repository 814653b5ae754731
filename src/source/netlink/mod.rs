//! The kernel's audit netlink interface: the live sources' foundation.
//!
//! [`wire`] owns the bytes (datagram parsing with the kernel's quirks, `audit_status`,
//! `audit_rule_data`) as pure functions; [`socket`] owns the NETLINK_AUDIT socket, its control
//! requests and record reception. Live tests against the running kernel are in `live_tests`
//! and skip themselves when not root or when the kernel has no audit support.

pub mod socket;
pub mod wire;

pub use socket::{
    kernel_version, multicast_supported, parse_kernel_release, AuditSocket, NetlinkError,
    RECV_BUFFER_LEN,
};
pub use wire::{Arch, FieldValue, RuleData, RuleField, Status, WireError};

#[cfg(test)]
mod live_tests;
