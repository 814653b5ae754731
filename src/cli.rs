//! Command-line flags as typed values. No I/O here: `main` turns these into a run.

use crate::daemon::kernel::SourceRequest;
use crate::source::file::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// auditsentry: Elastic's symlink detection rule on the Linux audit stream.
#[derive(Debug, Parser)]
#[command(name = "auditsentry", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay audit logs or netlink captures and print one JSON alert per line on stdout.
    Replay(ReplayArgs),
    /// Watch the running kernel's audit stream until SIGTERM/SIGINT, alerting as events arrive.
    Run(RunArgs),
    /// Print the kernel's audit status, the source `auto` would pick and why, and execve coverage.
    Status,
    /// Work with detection-rule files.
    Rules {
        /// What to do with the rule files.
        #[command(subcommand)]
        command: RulesCommand,
    },
}

/// `auditsentry rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load and compile rule files (or directories of *.toml); report each and exit non-zero on errors.
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Flags of `auditsentry replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Input encoding: auditd text (RAW, ENRICHED, plugin lines), netlink frames, or detect.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Rule file or directory of *.toml rules (repeatable); default: the built-in seed rule.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// New-terms state directory (kept across runs); default: a fresh temporary state.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Turn the new-terms gate off: every query match alerts.
    #[arg(long)]
    pub all_matches: bool,
    /// Also run the path-aware extended detector (exec and link-syscall sensors, own rule id).
    #[arg(long)]
    pub extended: bool,
    /// Reproduce Elastic Defend's ignore_above: keyword values longer than N bytes match nothing.
    #[arg(long, value_name = "N")]
    pub ignore_above: Option<usize>,
    /// host.id of the documents (default: /etc/machine-id).
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// host.name of the documents (default: the kernel's host name).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,
    /// Close an event without EOE once audit time is this far past its first record.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub reassembly_timeout_ms: u64,
    /// Most events open at once; the oldest is closed (and counted) beyond it.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Do not print the summary line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Audit logs or netlink captures, in order; `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<String>,
}

/// Flags of `auditsentry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Live source: multicast (kernel ≥ 3.16), unicast (no auditd), plugin (auditd's stdin), or auto.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceRequest,
    /// Rule file or directory of *.toml rules (repeatable); default: the built-in seed rule.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// New-terms state directory.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/auditsentry")]
    pub state_dir: PathBuf,
    /// Also write alerts as NDJSON to FILE (appended), or `-` for stdout.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Write every received netlink frame to FILE, replayable with `auditsentry replay`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Do not add execve audit rules or turn audit on; only report what is missing.
    #[arg(long)]
    pub no_manage_rules: bool,
    /// Leave the execve rules the agent added in place on exit.
    #[arg(long)]
    pub keep_rules: bool,
    /// Seconds between status lines.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub status_period: u64,
}
