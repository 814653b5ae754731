//! Every numeric setting: its configuration key, the flag that overrides it, and its range. One
//! table, so a value from the file and one from the command line pass the same check.

use super::{MAX_EXEC_ARGV_MIB, MAX_PROCESS_TABLE_MIB, MAX_SYSLOG_LINE, MIN_SYSLOG_LINE};

/// A numeric setting's configuration key, command-line flag and accepted range: the one check
/// that values from the file and from the command line both pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Dotted key in the file, e.g. `reassembly.max_in_flight`.
    pub key: &'static str,
    /// The flag that overrides it, e.g. `--max-in-flight` (none for file-only keys).
    pub flag: Option<&'static str>,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
}

const fn b(key: &'static str, flag: Option<&'static str>, min: u64, max: u64) -> Bound {
    Bound {
        key,
        flag,
        min,
        max,
    }
}

/// `state.max_terms_per_rule`, `--max-terms-per-rule`.
pub const MAX_TERMS_PER_RULE: Bound = b(
    "state.max_terms_per_rule",
    Some("--max-terms-per-rule"),
    1,
    super::MAX_TERMS_PER_RULE,
);
/// `output.syslog.max_line`, `--syslog-max-line`.
pub const SYSLOG_MAX_LINE: Bound = b(
    "output.syslog.max_line",
    Some("--syslog-max-line"),
    MIN_SYSLOG_LINE as u64,
    MAX_SYSLOG_LINE as u64,
);
/// `reassembly.timeout_ms`, `--reassembly-timeout-ms`.
pub const REASSEMBLY_TIMEOUT_MS: Bound = b(
    "reassembly.timeout_ms",
    Some("--reassembly-timeout-ms"),
    1,
    3_600_000,
);
/// `reassembly.max_in_flight`, `--max-in-flight`.
pub const MAX_IN_FLIGHT: Bound = b(
    "reassembly.max_in_flight",
    Some("--max-in-flight"),
    1,
    1 << 24,
);
/// `limits.max_signals`, `--max-signals`.
pub const MAX_SIGNALS: Bound = b(
    "limits.max_signals",
    Some("--max-signals"),
    1,
    u32::MAX as u64,
);
/// `limits.rate_window_secs` (file only).
pub const RATE_WINDOW_SECS: Bound = b("limits.rate_window_secs", None, 1, 86_400);
/// `limits.ignore_above`, `--ignore-above`.
pub const IGNORE_ABOVE: Bound = b("limits.ignore_above", Some("--ignore-above"), 1, 1 << 30);
/// `limits.exec_argv_mib`, `--exec-argv-mib`.
pub const EXEC_ARGV_MIB: Bound = b(
    "limits.exec_argv_mib",
    Some("--exec-argv-mib"),
    1,
    MAX_EXEC_ARGV_MIB,
);
/// `limits.process_table_mib`, `--process-table-mib`.
pub const PROCESS_TABLE_MIB: Bound = b(
    "limits.process_table_mib",
    Some("--process-table-mib"),
    1,
    MAX_PROCESS_TABLE_MIB,
);
/// `daemon.status_period_secs`, `--status-period`.
pub const STATUS_PERIOD_SECS: Bound = b(
    "daemon.status_period_secs",
    Some("--status-period"),
    0,
    86_400,
);
/// `output.json.fsync_interval_secs` (file only).
pub const JSON_FSYNC_INTERVAL_SECS: Bound = b("output.json.fsync_interval_secs", None, 1, 86_400);
/// `output.events.fsync_interval_secs` (file only).
pub const EVENTS_FSYNC_INTERVAL_SECS: Bound =
    b("output.events.fsync_interval_secs", None, 1, 86_400);
