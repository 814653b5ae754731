//! `/etc/auditsentry/auditsentry.toml` and the command line → one validated [`Settings`], in two
//! stages: serde reads the text into raw tables that deny unknown keys and remember where each
//! value was written; the flags ([`Overrides`]) are laid over them; then one validation, with the
//! same [`Bound`]s for both, turns them into typed settings. Every error names the file, the line and the dotted
//! key (`reassembly.timeout_ms`), so an operator can fix the file without reading code; `auditsentry
//! config check` runs exactly this.
//!
//! Defaults live here (and in `packaging/etc/auditsentry.toml`, which a test keeps equal to them).

use crate::audit::exec::ExecLimits;
use crate::audit::reassemble::ReassembleConfig;
use crate::sink::json::FsyncPolicy;
use crate::sink::syslog::{Facility, DEFAULT_MAX_LINE};
use crate::textfile::{self, TextFileError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub mod bounds;
mod raw;

pub use bounds::Bound;
use raw::{line_of, serde_error, Raw, RawFileOutput};

/// Where the daemon reads its configuration by default.
pub const DEFAULT_PATH: &str = "/etc/auditsentry/auditsentry.toml";
/// The packaged configuration's detection-rules directory. Without `rules.paths` the agent runs
/// the built-in seed rule.
pub const DEFAULT_RULES_DIR: &str = "/etc/auditsentry/rules";
/// Default state directory (new-terms memory).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/auditsentry";
/// Default most new-terms tuples stored per rule (`state.max_terms_per_rule`).
pub const DEFAULT_MAX_TERMS_PER_RULE: u64 =
    crate::rule::new_terms::DEFAULT_MAX_TERMS_PER_RULE as u64;
/// Largest accepted `state.max_terms_per_rule`.
pub const MAX_TERMS_PER_RULE: u64 = 10_000_000;
/// Default interval of `fsync = "interval"`.
pub const DEFAULT_FSYNC_INTERVAL_SECS: u64 = 5;
/// Default reassembly timeout (audit time) for events without EOE.
pub const DEFAULT_REASSEMBLY_TIMEOUT_MS: u64 = 2000;
/// Default most events in flight in the reassembler.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Default rate-cap window: Kibana's 5-minute run interval.
pub const DEFAULT_RATE_WINDOW_SECS: u64 = 300;
/// Default memory budget of one exec event's arguments, in MiB (see `audit::exec::ExecLimits`).
pub const DEFAULT_EXEC_ARGV_MIB: u64 = 8;
/// Default memory budget of the process table, in MiB (see `proc::ProcessTable`).
pub const DEFAULT_PROCESS_TABLE_MIB: u64 = 20;
/// Largest accepted `limits.exec_argv_mib`.
pub const MAX_EXEC_ARGV_MIB: u64 = 256;
/// Largest accepted `limits.process_table_mib`.
pub const MAX_PROCESS_TABLE_MIB: u64 = 4096;
/// Default period of the daemon's health line.
pub const DEFAULT_STATUS_PERIOD_SECS: u64 = 300;
/// Smallest accepted syslog line cap (the renderer's own floor).
pub const MIN_SYSLOG_LINE: usize = 256;
/// Largest configuration file read (the packaged one, every key commented, is about 3 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest accepted syslog line cap (rsyslog's default message size is 8 KiB).
pub const MAX_SYSLOG_LINE: usize = 65_536;

/// Why a configuration was rejected: the file, and where possible the line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, is no regular file, or is over [`MAX_CONFIG_BYTES`].
    #[error("{file}: cannot read: {error}")]
    Read {
        /// The file's name.
        file: String,
        /// Why.
        error: TextFileError,
    },
    /// A key is unknown, has the wrong type or a bad value.
    #[error("{file}:{line}: {key}: {message}")]
    Key {
        /// The file's name.
        file: String,
        /// 1-based line of the key or value.
        line: usize,
        /// Dotted key, e.g. `output.syslog.facility`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line flag has a bad value.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag, e.g. `--max-in-flight`.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// The text is not TOML.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file's name.
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// The TOML parser's message.
        message: String,
    },
}

/// Where audit records come from: what the operator asks for (`source.kind`, `--source`), and,
/// once `daemon::choose` has resolved `Auto`, the source that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// Multicast where auditd runs or is installed (kernel ≥ 3.16), unicast where no auditd is
    /// installed, else an error naming the auditd plugin file.
    Auto,
    /// Netlink multicast group (read-only, beside auditd).
    Multicast,
    /// Netlink unicast (auditsentry is the audit daemon).
    Unicast,
    /// auditd plugin: records on standard input.
    Plugin,
}

impl SourceKind {
    const NAMES: &'static str = "auto, multicast, unicast, plugin";

    fn from_name(name: &str) -> Option<SourceKind> {
        Some(match name {
            "auto" => SourceKind::Auto,
            "multicast" => SourceKind::Multicast,
            "unicast" => SourceKind::Unicast,
            "plugin" => SourceKind::Plugin,
            _ => return None,
        })
    }

    /// The spelling in the config file.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Auto => "auto",
            SourceKind::Multicast => "multicast",
            SourceKind::Unicast => "unicast",
            SourceKind::Plugin => "plugin",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[output.syslog]`: one line per alert through syslog(3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogOutput {
    /// Whether alerts go to syslog (the daemon's default; replay only with `--syslog`).
    pub enabled: bool,
    /// Facility of every line.
    pub facility: Facility,
    /// Cap of one line in bytes; longer lines are cut and marked `truncated=yes`.
    pub max_line: usize,
}

/// `[output.json]` / `[output.events]`: NDJSON to a file or (`-`) standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutput {
    /// The file, or `-` for standard output.
    pub path: PathBuf,
    /// When the file is synced to disk.
    pub fsync: FsyncPolicy,
}

/// The validated settings every mode runs with: the configuration file, with the command line's
/// flags over it (see [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `source.kind`: where records come from.
    pub source: SourceKind,
    /// `source.manage_rules`: install the kernel audit rules (execve) auditsentry needs.
    pub manage_rules: bool,
    /// `source.keep_rules`: leave those kernel audit rules in place at exit.
    pub keep_rules: bool,
    /// `rules.paths`: detection-rule files or directories of `*.toml`; empty when the key is not
    /// set, which means the built-in seed rule.
    pub rules: Vec<PathBuf>,
    /// `state.dir`: the new-terms memory; `None` when neither the file nor `--state-dir` names
    /// one: the agent then uses [`DEFAULT_STATE_DIR`], a replay memory (see [`Settings::agent_state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// `state.max_terms_per_rule`: most new-terms tuples stored per rule (oldest evicted).
    pub max_terms_per_rule: u64,
    /// `[output.syslog]`.
    pub syslog: SyslogOutput,
    /// `[output.json]`: alerts as NDJSON (none unless `path` is set).
    pub json: Option<FileOutput>,
    /// `[output.events]`: every exec document as NDJSON (none unless `path` is set).
    pub events: Option<FileOutput>,
    /// `reassembly.timeout_ms`: close an event without EOE this long (audit time) after its start.
    pub reassembly_timeout_ms: u64,
    /// `reassembly.max_in_flight`: most events open at once.
    pub max_in_flight: usize,
    /// `limits.max_signals`: alerts per rule per window; `None` = each rule's own `max_signals`.
    pub max_signals: Option<u32>,
    /// `limits.rate_window_secs`: the rate-cap window (audit time).
    pub rate_window_secs: u64,
    /// `limits.ignore_above`: Defend's keyword `ignore_above` (`None`: match values of any length).
    pub ignore_above: Option<usize>,
    /// `limits.exec_argv_mib`: what one exec event's arguments may hold (bytes plus a slot each).
    pub exec_argv_mib: u64,
    /// `limits.process_table_mib`: what the process table may hold, all entries together.
    pub process_table_mib: u64,
    /// `daemon.status_period_secs`: period of the health line (0 = never).
    pub status_period_secs: u64,
    /// `daemon.extended`: also run the path-aware extended detector (and audit link syscalls).
    pub extended: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            source: SourceKind::Auto,
            manage_rules: true,
            keep_rules: false,
            rules: Vec::new(),
            state_dir: None,
            max_terms_per_rule: DEFAULT_MAX_TERMS_PER_RULE,
            syslog: SyslogOutput {
                enabled: true,
                facility: Facility::Authpriv,
                max_line: DEFAULT_MAX_LINE,
            },
            json: None,
            events: None,
            reassembly_timeout_ms: DEFAULT_REASSEMBLY_TIMEOUT_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_signals: None,
            rate_window_secs: DEFAULT_RATE_WINDOW_SECS,
            ignore_above: None,
            exec_argv_mib: DEFAULT_EXEC_ARGV_MIB,
            process_table_mib: DEFAULT_PROCESS_TABLE_MIB,
            status_period_secs: DEFAULT_STATUS_PERIOD_SECS,
            extended: false,
        }
    }
}

impl Settings {
    /// The configuration as a TOML file that [`parse`] reads back to an equal `Settings` (keys that
    /// are unset are left out): the round-trip test's writer, not part of the agent.
    #[cfg(test)]
    pub fn to_toml(&self) -> String {
        use std::fmt::Write as _;
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let p = |p: &Path| q(&p.to_string_lossy());
        let mut t = String::new();
        let _ = writeln!(t, "[source]\nkind = {}", q(self.source.name()));
        let _ = writeln!(t, "manage_rules = {}", self.manage_rules);
        let _ = writeln!(t, "keep_rules = {}\n", self.keep_rules);
        if !self.rules.is_empty() {
            let paths: Vec<String> = self.rules.iter().map(|r| p(r)).collect();
            let _ = writeln!(t, "[rules]\npaths = [{}]\n", paths.join(", "));
        }
        let _ = writeln!(t, "[state]");
        if let Some(dir) = &self.state_dir {
            let _ = writeln!(t, "dir = {}", p(dir));
        }
        let _ = writeln!(t, "max_terms_per_rule = {}\n", self.max_terms_per_rule);
        let _ = writeln!(t, "[output.syslog]\nenabled = {}", self.syslog.enabled);
        let _ = writeln!(t, "facility = {}", q(&self.syslog.facility.name()));
        let _ = writeln!(t, "max_line = {}\n", self.syslog.max_line);
        for (table, out) in [("json", &self.json), ("events", &self.events)] {
            if let Some(out) = out {
                let _ = writeln!(t, "[output.{table}]\npath = {}", p(&out.path));
                match out.fsync {
                    FsyncPolicy::Never => {
                        let _ = writeln!(t, "fsync = \"never\"\n");
                    }
                    FsyncPolicy::Alert => {
                        let _ = writeln!(t, "fsync = \"alert\"\n");
                    }
                    FsyncPolicy::Interval(d) => {
                        let _ = writeln!(
                            t,
                            "fsync = \"interval\"\nfsync_interval_secs = {}\n",
                            d.as_secs()
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            t,
            "[reassembly]\ntimeout_ms = {}\nmax_in_flight = {}\n",
            self.reassembly_timeout_ms, self.max_in_flight
        );
        let _ = writeln!(t, "[limits]");
        if let Some(n) = self.max_signals {
            let _ = writeln!(t, "max_signals = {n}");
        }
        let _ = writeln!(t, "rate_window_secs = {}", self.rate_window_secs);
        if let Some(n) = self.ignore_above {
            let _ = writeln!(t, "ignore_above = {n}");
        }
        let _ = writeln!(t, "exec_argv_mib = {}", self.exec_argv_mib);
        let _ = writeln!(t, "process_table_mib = {}", self.process_table_mib);
        let _ = writeln!(
            t,
            "\n[daemon]\nstatus_period_secs = {}\nextended = {}",
            self.status_period_secs, self.extended
        );
        t
    }

    /// The live agent's state directory: `state.dir`, else [`DEFAULT_STATE_DIR`].
    pub fn agent_state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// `limits.exec_argv_mib` in bytes.
    pub fn exec_argv_bytes(&self) -> usize {
        mib(self.exec_argv_mib)
    }

    /// The reassembler's settings the agent runs with (`[reassembly]`).
    pub fn reassemble(&self) -> ReassembleConfig {
        ReassembleConfig {
            timeout_ms: self.reassembly_timeout_ms,
            max_in_flight: self.max_in_flight,
            ..ReassembleConfig::default()
        }
    }

    /// The exec builder's limits the agent runs with (`limits.exec_argv_mib`).
    pub fn exec_limits(&self) -> ExecLimits {
        ExecLimits {
            max_argv_bytes: self.exec_argv_bytes(),
        }
    }

    /// `limits.process_table_mib` in bytes.
    pub fn process_table_bytes(&self) -> usize {
        mib(self.process_table_mib)
    }

    /// `state.max_terms_per_rule` as a count.
    pub fn max_terms(&self) -> usize {
        usize::try_from(self.max_terms_per_rule).unwrap_or(usize::MAX)
    }

    /// `limits.rate_window_secs` in milliseconds, as the rate cap counts.
    pub fn rate_window_ms(&self) -> u64 {
        self.rate_window_secs.saturating_mul(1000)
    }
}

/// `n` MiB in bytes (saturating).
fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// What the command line sets, laid over the file's values before [`resolve`] validates them
/// all. Numbers are as given: they pass the same [`Bound`]s as the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--source`.
    pub source: Option<SourceKind>,
    /// `--no-manage-rules` (`Some(false)`).
    pub manage_rules: Option<bool>,
    /// `--keep-rules` (`Some(true)`).
    pub keep_rules: Option<bool>,
    /// `--rules` (repeatable); empty: the file's.
    pub rules: Vec<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--syslog` (`Some(true)`), `--no-syslog` (`Some(false)`).
    pub syslog: Option<bool>,
    /// `--syslog=FACILITY`.
    pub syslog_facility: Option<Facility>,
    /// `--syslog-max-line`.
    pub syslog_max_line: Option<u64>,
    /// `--json`.
    pub json: Option<PathBuf>,
    /// `--events`.
    pub events: Option<PathBuf>,
    /// `--reassembly-timeout-ms`.
    pub reassembly_timeout_ms: Option<u64>,
    /// `--max-in-flight`.
    pub max_in_flight: Option<u64>,
    /// `--max-signals`.
    pub max_signals: Option<u64>,
    /// `--ignore-above`.
    pub ignore_above: Option<u64>,
    /// `--exec-argv-mib`.
    pub exec_argv_mib: Option<u64>,
    /// `--process-table-mib`.
    pub process_table_mib: Option<u64>,
    /// `--max-terms-per-rule`.
    pub max_terms_per_rule: Option<u64>,
    /// `--status-period`.
    pub status_period_secs: Option<u64>,
    /// `--extended` (`Some(true)`).
    pub extended: Option<bool>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    resolve(Some(path), &Overrides::default())
}

/// The one way to settings: the file at `path` (or none: the defaults), then `flags` over it,
/// then one validation of the result. Errors name the key, file and line, or the flag.
pub fn resolve(path: Option<&Path>, flags: &Overrides) -> Result<Settings, ConfigError> {
    let Some(path) = path else {
        return parse_with("", "", flags);
    };
    let name = path.display().to_string();
    let text = textfile::read(path, MAX_CONFIG_BYTES).map_err(|error| ConfigError::Read {
        file: name.clone(),
        error,
    })?;
    parse_with(&text, &name, flags)
}

/// Validates `text`; `source_name` names it in errors (usually the file's path).
pub fn parse(text: &str, source_name: &str) -> Result<Settings, ConfigError> {
    parse_with(text, source_name, &Overrides::default())
}

/// [`parse`] with `flags` laid over the file's values.
fn parse_with(text: &str, source_name: &str, flags: &Overrides) -> Result<Settings, ConfigError> {
    let raw: Raw = toml::from_str(text).map_err(|e| serde_error(text, source_name, &e))?;
    let v = Validator {
        text,
        file: source_name,
    };
    let d = Settings::default();
    let source = raw.source.unwrap_or_default();
    let rules = raw.rules.unwrap_or_default();
    let state = raw.state.unwrap_or_default();
    let output = raw.output.unwrap_or_default();
    let syslog = output.syslog.unwrap_or_default();
    let reassembly = raw.reassembly.unwrap_or_default();
    let limits = raw.limits.unwrap_or_default();
    let daemon = raw.daemon.unwrap_or_default();

    let kind = match (flags.source, &source.kind) {
        (Some(kind), _) => kind,
        (None, None) => d.source,
        (None, Some(k)) => SourceKind::from_name(k.get_ref()).ok_or_else(|| {
            v.err(
                k.span(),
                "source.kind",
                format!(
                    "unknown source {:?} (one of {})",
                    k.get_ref(),
                    SourceKind::NAMES
                ),
            )
        })?,
    };
    let rule_paths = match &rules.paths {
        _ if !flags.rules.is_empty() => flags.rules.clone(),
        None => d.rules.clone(),
        Some(list) => {
            if list.get_ref().is_empty() {
                return Err(v.err(
                    list.span(),
                    "rules.paths",
                    "must name at least one path".into(),
                ));
            }
            let mut out = Vec::new();
            for p in list.get_ref() {
                out.push(v.path(p, "rules.paths")?);
            }
            out
        }
    };
    let facility = match (flags.syslog_facility, &syslog.facility) {
        (Some(f), _) => f,
        (None, None) => d.syslog.facility,
        (None, Some(f)) => Facility::from_name(f.get_ref()).ok_or_else(|| {
            v.err(
                f.span(),
                "output.syslog.facility",
                format!(
                    "unknown facility {:?} (one of {})",
                    f.get_ref(),
                    Facility::NAMES
                ),
            )
        })?,
    };
    let state_dir = match (&flags.state_dir, &state.dir) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => None,
        (None, Some(p)) => Some(v.path(p, "state.dir")?),
    };
    let file_output = |raw, table, interval, flag: &Option<PathBuf>| {
        let out = v.file_output(raw, table, interval)?;
        Ok::<_, ConfigError>(match flag {
            None => out,
            Some(path) => Some(FileOutput {
                path: path.clone(),
                fsync: out.map_or(FsyncPolicy::Never, |o| o.fsync),
            }),
        })
    };
    Ok(Settings {
        source: kind,
        manage_rules: flags
            .manage_rules
            .unwrap_or_else(|| flag(&source.manage_rules, d.manage_rules)),
        keep_rules: flags
            .keep_rules
            .unwrap_or_else(|| flag(&source.keep_rules, d.keep_rules)),
        rules: rule_paths,
        state_dir,
        max_terms_per_rule: v.int(
            &state.max_terms_per_rule,
            flags.max_terms_per_rule,
            &bounds::MAX_TERMS_PER_RULE,
            d.max_terms_per_rule,
        )?,
        syslog: SyslogOutput {
            enabled: flags
                .syslog
                .unwrap_or_else(|| flag(&syslog.enabled, d.syslog.enabled)),
            facility,
            max_line: v.int(
                &syslog.max_line,
                flags.syslog_max_line,
                &bounds::SYSLOG_MAX_LINE,
                d.syslog.max_line as u64,
            )? as usize,
        },
        json: file_output(
            output.json,
            "output.json",
            &bounds::JSON_FSYNC_INTERVAL_SECS,
            &flags.json,
        )?,
        events: file_output(
            output.events,
            "output.events",
            &bounds::EVENTS_FSYNC_INTERVAL_SECS,
            &flags.events,
        )?,
        reassembly_timeout_ms: v.int(
            &reassembly.timeout_ms,
            flags.reassembly_timeout_ms,
            &bounds::REASSEMBLY_TIMEOUT_MS,
            d.reassembly_timeout_ms,
        )?,
        max_in_flight: v.int(
            &reassembly.max_in_flight,
            flags.max_in_flight,
            &bounds::MAX_IN_FLIGHT,
            d.max_in_flight as u64,
        )? as usize,
        max_signals: v
            .opt_int(&limits.max_signals, flags.max_signals, &bounds::MAX_SIGNALS)?
            .map(|n| n as u32),
        rate_window_secs: v.int(
            &limits.rate_window_secs,
            None,
            &bounds::RATE_WINDOW_SECS,
            d.rate_window_secs,
        )?,
        ignore_above: v
            .opt_int(
                &limits.ignore_above,
                flags.ignore_above,
                &bounds::IGNORE_ABOVE,
            )?
            .map(|n| n as usize),
        exec_argv_mib: v.int(
            &limits.exec_argv_mib,
            flags.exec_argv_mib,
            &bounds::EXEC_ARGV_MIB,
            d.exec_argv_mib,
        )?,
        process_table_mib: v.int(
            &limits.process_table_mib,
            flags.process_table_mib,
            &bounds::PROCESS_TABLE_MIB,
            d.process_table_mib,
        )?,
        status_period_secs: v.int(
            &daemon.status_period_secs,
            flags.status_period_secs,
            &bounds::STATUS_PERIOD_SECS,
            d.status_period_secs,
        )?,
        extended: flags
            .extended
            .unwrap_or_else(|| flag(&daemon.extended, d.extended)),
    })
}

fn flag(value: &Option<Spanned<bool>>, default: bool) -> bool {
    value.as_ref().map_or(default, |b| *b.get_ref())
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Validator<'_> {
    fn err(&self, span: std::ops::Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Key {
            file: self.file.to_string(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            message,
        }
    }

    /// The flag's value if given, else the file's, else `default`; the one range check of both.
    fn int(
        &self,
        value: &Option<Spanned<i64>>,
        flag: Option<u64>,
        bound: &Bound,
        default: u64,
    ) -> Result<u64, ConfigError> {
        Ok(self.opt_int(value, flag, bound)?.unwrap_or(default))
    }

    /// [`Validator::int`] for a setting without a default.
    fn opt_int(
        &self,
        value: &Option<Spanned<i64>>,
        flag: Option<u64>,
        bound: &Bound,
    ) -> Result<Option<u64>, ConfigError> {
        let range = bound.min..=bound.max;
        let out_of_range = |v: &dyn std::fmt::Display| {
            format!("{v} is out of range ({} to {})", bound.min, bound.max)
        };
        if let Some(n) = flag {
            return if range.contains(&n) {
                Ok(Some(n))
            } else {
                Err(ConfigError::Flag {
                    flag: bound.flag.unwrap_or(bound.key).to_string(),
                    message: out_of_range(&n),
                })
            };
        }
        let Some(v) = value else {
            return Ok(None);
        };
        match u64::try_from(*v.get_ref()) {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(self.err(v.span(), bound.key, out_of_range(v.get_ref()))),
        }
    }

    fn path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let s = value.get_ref();
        if s.is_empty() || s.contains('\0') {
            return Err(self.err(value.span(), key, "empty or invalid path".into()));
        }
        Ok(PathBuf::from(s))
    }

    fn file_output(
        &self,
        raw: Option<RawFileOutput>,
        table: &str,
        interval: &Bound,
    ) -> Result<Option<FileOutput>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let interval = self.int(
            &raw.fsync_interval_secs,
            None,
            interval,
            DEFAULT_FSYNC_INTERVAL_SECS,
        )?;
        let fsync = match &raw.fsync {
            None => FsyncPolicy::Never,
            Some(f) => match f.get_ref().as_str() {
                "never" => FsyncPolicy::Never,
                "alert" => FsyncPolicy::Alert,
                "interval" => FsyncPolicy::Interval(Duration::from_secs(interval)),
                other => {
                    return Err(self.err(
                        f.span(),
                        &format!("{table}.fsync"),
                        format!("unknown policy {other:?} (one of never, alert, interval)"),
                    ))
                }
            },
        };
        match &raw.path {
            None => Ok(None),
            Some(p) => Ok(Some(FileOutput {
                path: self.path(p, &format!("{table}.path"))?,
                fsync,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "t.toml") {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn every_key_changed() -> Settings {
        Settings {
            source: SourceKind::Unicast,
            manage_rules: false,
            keep_rules: true,
            rules: vec![
                PathBuf::from("/etc/a.toml"),
                PathBuf::from("/srv/rules dir"),
            ],
            state_dir: Some(PathBuf::from("/srv/state")),
            max_terms_per_rule: 5000,
            syslog: SyslogOutput {
                enabled: false,
                facility: Facility::Local(5),
                max_line: 4096,
            },
            json: Some(FileOutput {
                path: PathBuf::from("/var/log/auditsentry/alerts.json"),
                fsync: FsyncPolicy::Interval(Duration::from_secs(7)),
            }),
            events: Some(FileOutput {
                path: PathBuf::from("-"),
                fsync: FsyncPolicy::Alert,
            }),
            reassembly_timeout_ms: 1500,
            max_in_flight: 100,
            max_signals: Some(7),
            rate_window_secs: 60,
            ignore_above: Some(1024),
            exec_argv_mib: 2,
            process_table_mib: 100,
            status_period_secs: 0,
            extended: false,
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("", "t").ok(), Some(Settings::default()));
        let d = Settings::default();
        assert_eq!(d.syslog.facility, Facility::Authpriv);
        assert_eq!(d.syslog.max_line, 2048);
        assert!(d.rules.is_empty(), "no rule path: the built-in rule");
        assert_eq!(d.state_dir, None);
        assert_eq!(d.agent_state_dir(), PathBuf::from("/var/lib/auditsentry"));
        assert_eq!(d.rate_window_ms(), 300_000);
    }

    #[test]
    fn every_key_round_trips() {
        for cfg in [Settings::default(), every_key_changed()] {
            let text = cfg.to_toml();
            assert_eq!(parse(&text, "t").ok(), Some(cfg), "{text}");
        }
        let mut never = every_key_changed();
        never.json = Some(FileOutput {
            path: PathBuf::from("/a"),
            fsync: FsyncPolicy::Never,
        });
        assert_eq!(parse(&never.to_toml(), "t").ok(), Some(never));
    }

    #[test]
    fn the_packaged_file_is_the_default_and_sets_every_key() {
        let text = include_str!("../packaging/etc/auditsentry.toml");
        // The default but for the rules, which the package installs in their own directory, and
        // the state directory, which it names.
        let packaged = Settings {
            rules: vec![PathBuf::from(DEFAULT_RULES_DIR)],
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
            ..Settings::default()
        };
        assert_eq!(parse(text, "packaged").ok(), Some(packaged));
        // Every key appears (set, or commented out when it has no value by default).
        for key in [
            "kind",
            "manage_rules",
            "keep_rules",
            "paths",
            "dir",
            "max_terms_per_rule",
            "enabled",
            "facility",
            "max_line",
            "path",
            "fsync",
            "fsync_interval_secs",
            "timeout_ms",
            "max_in_flight",
            "max_signals",
            "rate_window_secs",
            "ignore_above",
            "exec_argv_mib",
            "process_table_mib",
            "status_period_secs",
            "extended",
        ] {
            assert!(text.contains(&format!("{key} = ")), "{key} missing");
        }
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        assert_eq!(
            err("[source]\nkind = \"auto\"\n\n[output.syslog]\nfacilty = \"local5\"\n"),
            "t.toml:5: output.syslog.facilty: unknown key `facilty`, expected one of `enabled`, `facility`, `max_line`"
        );
        let e = err("# comment\n[bogus]\nx = 1\n");
        assert!(e.starts_with("t.toml:2: bogus: unknown key `bogus`"), "{e}");
        let e = err("status_period_secs = 5\n");
        assert!(
            e.starts_with("t.toml:1: status_period_secs: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        assert_eq!(
            err("[output.syslog]\nenabled = true\nfacility = \"nope\"\n"),
            "t.toml:3: output.syslog.facility: unknown facility \"nope\" \
             (one of auth, authpriv, daemon, user, local0 … local7)"
        );
        assert_eq!(
            err("[reassembly]\n\ntimeout_ms = -5\n"),
            "t.toml:3: reassembly.timeout_ms: -5 is out of range (1 to 3600000)"
        );
        assert_eq!(
            err("[limits]\nmax_signals = 0\n"),
            "t.toml:2: limits.max_signals: 0 is out of range (1 to 4294967295)"
        );
        assert_eq!(
            err("[output.syslog]\nmax_line = 10\n"),
            "t.toml:2: output.syslog.max_line: 10 is out of range (256 to 65536)"
        );
        let e = err("[reassembly]\nmax_in_flight = \"many\"\n");
        assert!(
            e.starts_with("t.toml:2: reassembly.max_in_flight: invalid type: string \"many\""),
            "{e}"
        );
        let e = err("[daemon]\nextended = 1\n");
        assert!(
            e.starts_with("t.toml:2: daemon.extended: invalid type"),
            "{e}"
        );
        assert_eq!(
            err("[source]\nkind = \"kafka\"\n"),
            "t.toml:2: source.kind: unknown source \"kafka\" (one of auto, multicast, unicast, plugin)"
        );
        assert_eq!(
            err("[output.json]\npath = \"/a\"\nfsync = \"sometimes\"\n"),
            "t.toml:3: output.json.fsync: unknown policy \"sometimes\" (one of never, alert, interval)"
        );
        assert_eq!(
            err("[rules]\npaths = []\n"),
            "t.toml:2: rules.paths: must name at least one path"
        );
        assert!(parse("[daemon]\nextended = true\n", "t.toml").is_ok_and(|c| c.extended));
    }

    #[test]
    fn flags_win_over_the_file_and_pass_the_same_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[rules]\npaths = [\"/a\"]\n[reassembly]\nmax_in_flight = 10\n\
             [output.json]\npath = \"/j\"\nfsync = \"alert\"\n",
        )
        .expect("write");
        let file = resolve(Some(&path), &Overrides::default()).expect("file");
        assert_eq!((file.max_in_flight, file.rules.len()), (10, 1));
        assert_eq!(file.state_dir, None, "no state.dir, no --state-dir");
        let flags = Overrides {
            rules: vec![PathBuf::from("/b")],
            max_in_flight: Some(20),
            json: Some(PathBuf::from("/k")),
            state_dir: Some(PathBuf::from("/s")),
            ..Overrides::default()
        };
        let both = resolve(Some(&path), &flags).expect("file and flags");
        assert_eq!(both.rules, vec![PathBuf::from("/b")]);
        assert_eq!(both.max_in_flight, 20);
        assert_eq!(both.state_dir, Some(PathBuf::from("/s")));
        assert_eq!(
            both.json,
            Some(FileOutput {
                path: PathBuf::from("/k"),
                fsync: FsyncPolicy::Alert,
            }),
            "the flag names the file, the file's fsync policy stays"
        );
        // The same bound, named by where the value came from.
        let zero = Overrides {
            max_in_flight: Some(0),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(Some(&path), &zero).err().map(|e| e.to_string()),
            Some("--max-in-flight: 0 is out of range (1 to 16777216)".to_string())
        );
        assert_eq!(
            err("[reassembly]\nmax_in_flight = 0\n"),
            "t.toml:2: reassembly.max_in_flight: 0 is out of range (1 to 16777216)"
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = err("[source]\nkind = \n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
    }

    #[test]
    fn load_names_an_unreadable_file() {
        let e = load(Path::new("/nonexistent/auditsentry.toml"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/nonexistent/auditsentry.toml: cannot read: No such file or directory (os error 2)")
        );
    }
}
