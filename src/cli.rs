//! Command-line flags as typed values. No I/O here: `main` turns these into a run.

use crate::config::SourceKind;
use crate::sink::syslog::Facility;
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
    Replay(Box<ReplayArgs>),
    /// Watch the running kernel's audit stream until SIGTERM/SIGINT, alerting as events arrive.
    Run(Box<RunArgs>),
    /// Run as an auditd plugin: `run --source plugin --config CONFIG` in the two arguments auditd
    /// allows (`args = plugin` in plugins.d/auditsentry.conf).
    Plugin {
        /// Configuration file (default: /etc/auditsentry/auditsentry.toml when it exists).
        config: Option<PathBuf>,
    },
    /// Print the kernel's audit status, the source `auto` would pick and why, execve coverage, and
    /// the last status line of a running agent.
    Status {
        /// State directory of the running agent (default: the config's, /var/lib/auditsentry).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Undo what a stopped or crashed agent left in the kernel (the audit rules it added, audit
    /// turned on by it), from the journal in its state directory. For package scripts: exit 0
    /// when done or nothing was left, 1 when something could not be undone.
    Cleanup {
        /// State directory of the agent (default: the config's, /var/lib/auditsentry).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Configuration file naming the state directory (default:
        /// /etc/auditsentry/auditsentry.toml when it exists).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Work with detection-rule files.
    Rules {
        /// What to do with the rule files.
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Work with the configuration file.
    Config {
        /// What to do with the configuration file.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the man page, auditsentry(8), rendered from these definitions (for packaging).
    #[command(hide = true)]
    Manpage,
}

/// `auditsentry config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: print `ok: FILE`, or the error (file, line, key) and exit 1.
    Check {
        /// The file (default: /etc/auditsentry/auditsentry.toml).
        file: Option<PathBuf>,
    },
}

/// Output and configuration flags shared by every mode that detects (`replay`, and the daemon).
/// They override the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Configuration file (see `auditsentry config check`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also send each alert as one line to syslog, optionally to FACILITY (default: the config's,
    /// authpriv).
    #[arg(
        long,
        value_name = "FACILITY",
        num_args = 0..=1,
        require_equals = true,
        value_parser = parse_facility,
        conflicts_with = "no_syslog"
    )]
    pub syslog: Option<Option<Facility>>,
    /// Do not send alerts to syslog, whatever the configuration says.
    #[arg(long)]
    pub no_syslog: bool,
    /// Cap of one syslog line in bytes (256 to 65536; default 2048).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(256..=65_536))]
    pub syslog_max_line: Option<u64>,
    /// Write NDJSON alerts to FILE (appended) or `-` for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Write every exec event as an ECS document (NDJSON) to FILE or `-`.
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<PathBuf>,
    /// At most N alerts per rule per rate-cap window (default: each rule's max_signals).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_signals: Option<u32>,
    /// Memory budget of one exec event's arguments in MiB (each argument costs its bytes plus
    /// 32; default 8).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub exec_argv_mib: Option<u64>,
    /// Memory budget of the process table in MiB (default 24).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub process_table_mib: Option<u64>,
    /// Most new-terms tuples stored per rule; the least recently seen are evicted beyond it
    /// (default 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_terms_per_rule: Option<u64>,
}

fn parse_facility(name: &str) -> Result<Facility, String> {
    Facility::from_name(name)
        .ok_or_else(|| format!("unknown facility {name:?} (one of {})", Facility::NAMES))
}

/// `auditsentry rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load and compile rule files (or directories of *.toml); report each and exit non-zero on errors.
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Report every file (loaded, or refused for its syntax, for fields this agent does not
        /// provide, for its rule type or event category) and a table of counts per query language
        /// and rule type; exit non-zero only for files that are unreadable or invalid.
        #[arg(long)]
        coverage: bool,
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
    /// New-terms state directory (kept across runs); default: in memory, for this run only.
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
    /// Close an event without EOE once audit time is this far past its first record (default 2000).
    #[arg(long, value_name = "MS")]
    pub reassembly_timeout_ms: Option<u64>,
    /// Most events open at once; the oldest is closed (and counted) beyond it (default 4096).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Configuration and outputs.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Do not print the summary line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// How alerts on standard output look: json (one document per line), text (one readable line
    /// per alert), or auto: text on a terminal, json otherwise.
    #[arg(
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value = "auto"
    )]
    pub output_format: OutputFormat,
    /// Audit logs or netlink captures, in order; `-` is standard input.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<String>,
}

/// How `replay` shows alerts on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Text when standard output is a terminal, JSON otherwise.
    Auto,
    /// One JSON document per line (NDJSON).
    Json,
    /// One readable line per alert, for a person at a terminal.
    Text,
}

/// Flags of `auditsentry run`; each overrides the configuration file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Live source: multicast (kernel ≥ 3.16), unicast (no auditd), plugin (auditd's stdin), or auto.
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Rule file or directory of *.toml rules (repeatable).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// New-terms state directory (default /var/lib/auditsentry).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Write every received netlink frame to FILE, replayable with `auditsentry replay`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Do not add execve audit rules or turn audit on; only report what is missing.
    #[arg(long)]
    pub no_manage_rules: bool,
    /// Leave the execve rules the agent added in place on exit.
    #[arg(long)]
    pub keep_rules: bool,
    /// Seconds between status lines (default 300).
    #[arg(long, value_name = "SECONDS")]
    pub status_period: Option<u64>,
    /// Also run the path-aware extended detector and audit symlink/link syscalls.
    #[arg(long)]
    pub extended: bool,
    /// Configuration and outputs.
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(args: &[&str]) -> Result<ReplayArgs, String> {
        let argv = ["auditsentry", "replay"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Replay(r),
            }) => Ok(*r),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.kind().to_string()),
        }
    }

    #[test]
    fn syslog_flag_takes_an_optional_facility_without_eating_the_input() {
        let r = replay(&["--syslog", "a.log"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.output.syslog, Some(None));
        assert_eq!(r.inputs, ["a.log"]);
        let r = replay(&["--syslog=local5", "a.log"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.output.syslog, Some(Some(Facility::Local(5))));
        let r = replay(&["a.log"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.output.syslog, None);
        assert!(!r.output.no_syslog);
        assert_eq!(r.reassembly_timeout_ms, None);
    }

    #[test]
    fn bad_output_flags_are_usage_errors() {
        assert!(replay(&["--syslog=nope", "a.log"]).is_err());
        assert!(replay(&["--syslog", "--no-syslog", "a.log"]).is_err());
        assert!(replay(&["--syslog-max-line", "10", "a.log"]).is_err());
        assert!(replay(&["--max-signals", "0", "a.log"]).is_err());
        let r = replay(&[
            "--max-signals",
            "5",
            "--json",
            "-",
            "--events",
            "e.json",
            "a.log",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.output.max_signals, Some(5));
        assert_eq!(r.output.json, Some(PathBuf::from("-")));
        assert_eq!(r.output.events, Some(PathBuf::from("e.json")));
    }
}
