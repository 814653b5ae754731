//! Command-line flags as typed values. No I/O here: `main` turns these into a run. Flags that
//! override the configuration become [`Overrides`], validated with the file's values (numbers
//! against the same bounds) by `config::resolve`.

use crate::config::{Overrides, SourceKind};
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
    #[arg(long, value_name = "N")]
    pub syslog_max_line: Option<u64>,
    /// Write NDJSON alerts to FILE (appended) or `-` for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Write every exec event as an ECS document (NDJSON) to FILE or `-`.
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<PathBuf>,
    /// At most N alerts per rule per rate-cap window (1 to 4294967295; default: each rule's
    /// max_signals).
    #[arg(long, value_name = "N")]
    pub max_signals: Option<u64>,
    /// Memory budget of one exec event's arguments in MiB (each argument costs its bytes plus
    /// 32; 1 to 256; default 8).
    #[arg(long, value_name = "MIB")]
    pub exec_argv_mib: Option<u64>,
    /// Memory budget of the process table in MiB (1 to 4096; default 20).
    #[arg(long, value_name = "MIB")]
    pub process_table_mib: Option<u64>,
    /// Most new-terms tuples stored per rule; the least recently seen are evicted beyond it
    /// (1 to 10000000; default 10000).
    #[arg(long, value_name = "N")]
    pub max_terms_per_rule: Option<u64>,
}

impl OutputArgs {
    /// These flags as overrides of the configuration; `syslog_default` is the mode's syslog
    /// setting when neither `--syslog` nor `--no-syslog` is given (`None`: the file's).
    fn overrides(&self, syslog_default: Option<bool>) -> Overrides {
        Overrides {
            syslog: match (self.syslog, self.no_syslog) {
                (_, true) => Some(false),
                (Some(_), false) => Some(true),
                (None, false) => syslog_default,
            },
            syslog_facility: self.syslog.flatten(),
            syslog_max_line: self.syslog_max_line,
            json: self.json.clone(),
            events: self.events.clone(),
            max_signals: self.max_signals,
            exec_argv_mib: self.exec_argv_mib,
            process_table_mib: self.process_table_mib,
            max_terms_per_rule: self.max_terms_per_rule,
            ..Overrides::default()
        }
    }
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
    /// Rule file or directory of *.toml rules (repeatable); default: the configuration file's
    /// `rules.paths`, else the built-in seed rule.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// New-terms state directory (kept across runs); default: the configuration file's
    /// `state.dir` when it sets one, else in memory, for this run only.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Turn the new-terms gate off: every query match alerts.
    #[arg(long)]
    pub all_matches: bool,
    /// Also run the path-aware extended detector (exec and link-syscall sensors, own rule id).
    #[arg(long)]
    pub extended: bool,
    /// Reproduce Elastic Defend's ignore_above: keyword values longer than N bytes match nothing
    /// (1 to 1073741824).
    #[arg(long, value_name = "N")]
    pub ignore_above: Option<u64>,
    /// host.id of the documents (default: /etc/machine-id).
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// host.name of the documents (default: the kernel's host name).
    #[arg(long, value_name = "NAME")]
    pub host_name: Option<String>,
    /// Close an event without EOE once audit time is this far past its first record (1 to
    /// 3600000; default 2000).
    #[arg(long, value_name = "MS")]
    pub reassembly_timeout_ms: Option<u64>,
    /// Most events open at once; the oldest is closed (and counted) beyond it (1 to 16777216;
    /// default 4096).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,
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

impl ReplayArgs {
    /// The flags that override the configuration. Replay sends alerts to syslog only when asked.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            rules: self.rules.clone(),
            state_dir: self.state_dir.clone(),
            // `daemon.extended` is the daemon's: a replay runs the extended detector when asked.
            extended: Some(self.extended),
            ignore_above: self.ignore_above,
            reassembly_timeout_ms: self.reassembly_timeout_ms,
            max_in_flight: self.max_in_flight,
            ..self.output.overrides(Some(false))
        }
    }
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
    /// Seconds between status lines (0 = never, up to 86400; default 300).
    #[arg(long, value_name = "SECONDS")]
    pub status_period: Option<u64>,
    /// Also run the path-aware extended detector and audit symlink/link syscalls.
    #[arg(long)]
    pub extended: bool,
    /// Configuration and outputs.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RunArgs {
    /// The flags that override the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            source: self.source,
            manage_rules: self.no_manage_rules.then_some(false),
            keep_rules: self.keep_rules.then_some(true),
            rules: self.rules.clone(),
            state_dir: self.state_dir.clone(),
            status_period_secs: self.status_period,
            extended: self.extended.then_some(true),
            ..self.output.overrides(None)
        }
    }
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
        assert!(replay(&["--max-signals", "-1", "a.log"]).is_err());
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

    /// Regression: `--max-in-flight` (and others) had no bound while the file's key had one.
    /// Every numeric flag is checked against its key's range, with the file, naming the flag.
    #[test]
    fn every_numeric_flag_is_checked_against_its_keys_range() {
        use crate::config::{self, bounds};
        let cases = [
            ("--syslog-max-line", bounds::SYSLOG_MAX_LINE),
            ("--max-signals", bounds::MAX_SIGNALS),
            ("--exec-argv-mib", bounds::EXEC_ARGV_MIB),
            ("--process-table-mib", bounds::PROCESS_TABLE_MIB),
            ("--max-terms-per-rule", bounds::MAX_TERMS_PER_RULE),
            ("--ignore-above", bounds::IGNORE_ABOVE),
            ("--reassembly-timeout-ms", bounds::REASSEMBLY_TIMEOUT_MS),
            ("--max-in-flight", bounds::MAX_IN_FLIGHT),
        ];
        for (flag, bound) in cases {
            assert_eq!(bound.flag, Some(flag));
            for bad in [bound.min.checked_sub(1), bound.max.checked_add(1)]
                .into_iter()
                .flatten()
            {
                let r =
                    replay(&[flag, &bad.to_string(), "a.log"]).unwrap_or_else(|e| panic!("{e}"));
                let e = config::resolve(None, &r.overrides())
                    .err()
                    .map(|e| e.to_string());
                let want = format!(
                    "{flag}: {bad} is out of range ({} to {})",
                    bound.min, bound.max
                );
                assert_eq!(e, Some(want));
            }
            for good in [bound.min, bound.max] {
                let r =
                    replay(&[flag, &good.to_string(), "a.log"]).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    config::resolve(None, &r.overrides()).is_ok(),
                    "{flag} {good}"
                );
            }
        }
        let argv = ["auditsentry", "run", "--status-period", "86401"];
        let Ok(Cli {
            command: Command::Run(r),
        }) = Cli::try_parse_from(argv)
        else {
            panic!("run --status-period did not parse");
        };
        let e = config::resolve(None, &r.overrides())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("--status-period: 86401 is out of range (0 to 86400)")
        );
    }
}
