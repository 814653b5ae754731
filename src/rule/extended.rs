//! The path-aware extended detector: what the seed rule means, computed from paths instead of
//! matched against argv text.
//!
//! Elastic's query looks for a system-binary path and a suspicious path among the arguments of
//! `ln`, `busybox ln` or `cp --symbolic-link`. That misses `cp -s`, relative names
//! (`cd /tmp; ln -s /usr/bin/id x`), `-t DIR`, `../` targets, renamed copies of ln and links made
//! without ln at all. This module works out which links a command would create (GNU ln/cp option
//! syntax, resolved against the process cwd and, for symlink targets, against the link's
//! directory — lexically, never touching the file system) and decides on the resolved
//! (target, link) pairs. Three sensors feed it: exec events ([`ExtendedDetector::on_exec`]), the
//! link system calls ([`ExtendedDetector::on_link`]), and a third reports new symlinks through
//! fanotify ([`ExtendedDetector::on_fanotify`]); the same link seen by several alerts once.
//!
//! It has its own rule id and name, so its alerts never change the exact rule's verdicts; the
//! pipeline puts them through the same new-terms gate and sinks.

use std::collections::VecDeque;
use std::fmt;

use serde_json::{json, Map, Value};

use crate::audit::link::LinkEvent;
use crate::audit::AuditTime;
use crate::event::{self, ExecView, Host};
use crate::proc::ProcessInfo;
use crate::rule::file::{Rule, RuleKind, Severity};
use crate::rule::kql::{self, KqlError};
use crate::source::fanotify::{FanEvent, Watcher};

/// `rule.id` of the extended detector (fixed, so its new-terms history survives upgrades).
pub const RULE_ID: &str = "11c92b38-ce91-4195-b02c-384615ada437";

/// `rule.name` of the extended detector.
pub const RULE_NAME: &str = "System Binary Symlink to Suspicious Location (path-aware)";

/// The same (pid, link path) within this much audit time alerts once, whichever sensor saw it.
pub const DEDUPE_WINDOW_MS: u64 = 5_000;

/// Most remembered recent links (bounded memory whatever the input).
const DEDUPE_CAPACITY: usize = 4096;

/// Most remembered recent execs (pid, parent pid, time), for the link watchers' attribution:
/// inotify's report reaches the detector 1.5 s after the link was made, so at 2,000 exec/s the
/// creator is among the last 3,000.
pub const PARENTS_CAPACITY: usize = 4096;

/// The seed's new-terms history window: 10 days.
const HISTORY_WINDOW_MS: u64 = 10 * 24 * 3600 * 1000;

/// The seed's system-binary locations (`/bin/*` ... `/usr/sbin/*`), as directories.
pub const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/lib",
    "/lib64",
    "/sbin",
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/local/lib64",
    "/usr/local/sbin",
    "/usr/sbin",
];

/// The seed's suspicious locations (`/dev/shm/*` ... `/var/tmp/*`), as directories.
pub const SUSPICIOUS_DIRS: &[&str] = &["/dev/shm", "/home", "/root", "/tmp", "/var/tmp"];

/// Directories that certainly exist on a Linux host: a lone `LINK_NAME` naming one of them is a
/// directory to link into, not a new name.
const KNOWN_DIRS: &[&str] = &["/", "/dev", "/etc", "/opt", "/usr", "/usr/local", "/var"];

/// The seed's exclusions: `/usr/bin/coreutils` exactly, and three prefixes.
const EXCLUDED_EXACT: &str = "/usr/bin/coreutils";
const EXCLUDED_PREFIXES: &[&str] = &["/tmp/mkinitcpio", "/var/tmp/dracut", "/var/tmp/mkinitramfs"];

// ---------------------------------------------------------------------------------------------
// Paths

/// Lexical normalisation of `path` resolved against `base`: an absolute `path` ignores `base`;
/// empty and `.` components go, `..` removes the previous component (never above `/`).
/// The result is absolute when `path` or `base` is; a relative result keeps leading `..`.
pub fn normalize(base: &str, path: &str) -> String {
    let rooted = path.starts_with('/') || base.starts_with('/');
    let base_parts = if path.starts_with('/') { "" } else { base };
    let mut parts: Vec<&str> = Vec::new();
    for c in base_parts.split('/').chain(path.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    if rooted {
        format!("/{}", parts.join("/"))
    } else {
        parts.join("/")
    }
}

/// The directory of a normalised path: `/tmp` for `/tmp/x`, `/` for `/x`, empty for `x`.
pub fn dirname(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => "",
    }
}

/// The last component of a path as ln and cp take it for a link made inside a directory
/// (trailing slashes ignored): `id` for `/usr/bin/id/`.
pub fn last_component(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Whether `path` is `dir` itself or lies under it (`/usr/bin` and `/usr/bin/id` are in
/// `/usr/bin`; `/usr/binary` is not).
fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A system-binary location: one of [`SYSTEM_DIRS`] or anything under it (a whole system
/// directory linked elsewhere exposes every binary in it).
pub fn is_system(path: &str) -> bool {
    SYSTEM_DIRS.iter().any(|dir| within(path, dir))
}

/// A hidden name anywhere: a component starting with `.` other than `.` and `..`.
pub fn is_hidden(path: &str) -> bool {
    path.split('/')
        .any(|c| c.starts_with('.') && c != "." && c != "..")
}

/// A suspicious location: one of [`SUSPICIOUS_DIRS`] or under it, or a hidden name anywhere.
pub fn is_suspicious(path: &str) -> bool {
    SUSPICIOUS_DIRS.iter().any(|dir| within(path, dir)) || is_hidden(path)
}

/// The seed's exclusions, applied to a resolved path.
pub fn is_excluded(path: &str) -> bool {
    path == EXCLUDED_EXACT || EXCLUDED_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// One link a command creates (or a syscall created), both ends resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPair {
    /// What the link points to, resolved (for a symlink, against the link's directory).
    pub target: String,
    /// The new link's path, resolved against the cwd. Relative only when the directory the
    /// name was relative to is unknown.
    pub path: String,
}

/// The decision: a system binary linked into a suspicious location, or the reverse (the seed is
/// order-blind), with neither end excluded.
pub fn is_suspicious_pair(pair: &LinkPair) -> bool {
    let forward = is_system(&pair.target) && is_suspicious(&pair.path);
    let reverse = is_suspicious(&pair.target) && is_system(&pair.path);
    (forward || reverse) && !is_excluded(&pair.target) && !is_excluded(&pair.path)
}

// ---------------------------------------------------------------------------------------------
// ln / cp option syntax

/// The programs whose command lines this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// GNU coreutils ln, or busybox's ln applet.
    Ln,
    /// GNU coreutils cp (links only with `-s`/`--symbolic-link`).
    Cp,
}

/// Why a command line would make ln or cp fail before creating anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// An option the tool does not have.
    UnknownOption(String),
    /// A long-option prefix matching several options (`--s` for ln).
    AmbiguousOption(String),
    /// An option that needs an argument came last.
    MissingArgument(String),
    /// `--opt=VALUE` for an option without an argument.
    UnexpectedArgument(String),
    /// `-t` given twice.
    MultipleTargetDirectories,
    /// `-t` together with `-T`.
    TargetDirectoryConflict,
    /// Too few operands.
    MissingOperand,
    /// More than two operands with `-T`.
    ExtraOperand,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownOption(o) => write!(f, "unrecognized option {o:?}"),
            ParseError::AmbiguousOption(o) => write!(f, "option {o:?} is ambiguous"),
            ParseError::MissingArgument(o) => write!(f, "option {o:?} requires an argument"),
            ParseError::UnexpectedArgument(o) => {
                write!(f, "option {o:?} doesn't allow an argument")
            }
            ParseError::MultipleTargetDirectories => {
                f.write_str("multiple target directories specified")
            }
            ParseError::TargetDirectoryConflict => {
                f.write_str("cannot combine --target-directory and --no-target-directory")
            }
            ParseError::MissingOperand => f.write_str("missing file operand"),
            ParseError::ExtraOperand => f.write_str("extra operand"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What an option means for the links made; everything else is [`Opt::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Symbolic,
    Relative,
    Recursive,
    Parents,
    TargetDir,
    NoTargetDir,
    Info,
    Other,
}

/// Whether a long option takes an argument (getopt_long's has_arg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HasArg {
    No,
    Required,
    Optional,
}

/// One option of a tool: long name (may be empty), short letter (or NUL), argument, meaning.
struct OptSpec {
    long: &'static str,
    short: char,
    arg: HasArg,
    opt: Opt,
}

const fn o(long: &'static str, short: char, arg: HasArg, opt: Opt) -> OptSpec {
    OptSpec {
        long,
        short,
        arg,
        opt,
    }
}

/// GNU coreutils ln (9.x): `-bdfFinLPrsStTv`, `--backup[=CONTROL]`, `--suffix=SUFFIX`,
/// `--target-directory=DIRECTORY` and the rest without arguments.
const LN_OPTIONS: &[OptSpec] = &[
    o("backup", '\0', HasArg::Optional, Opt::Other),
    o("", 'b', HasArg::No, Opt::Other),
    o("directory", 'd', HasArg::No, Opt::Other),
    o("", 'F', HasArg::No, Opt::Other),
    o("force", 'f', HasArg::No, Opt::Other),
    o("interactive", 'i', HasArg::No, Opt::Other),
    o("logical", 'L', HasArg::No, Opt::Other),
    o("no-dereference", 'n', HasArg::No, Opt::Other),
    o("no-target-directory", 'T', HasArg::No, Opt::NoTargetDir),
    o("physical", 'P', HasArg::No, Opt::Other),
    o("relative", 'r', HasArg::No, Opt::Relative),
    o("suffix", 'S', HasArg::Required, Opt::Other),
    o("symbolic", 's', HasArg::No, Opt::Symbolic),
    o("target-directory", 't', HasArg::Required, Opt::TargetDir),
    o("verbose", 'v', HasArg::No, Opt::Other),
    o("help", '\0', HasArg::No, Opt::Info),
    o("version", '\0', HasArg::No, Opt::Info),
];

/// GNU coreutils cp (9.x): `-abdfHilLnpPrRsStTuvxZ` and its long options.
const CP_OPTIONS: &[OptSpec] = &[
    o("archive", 'a', HasArg::No, Opt::Recursive),
    o("attributes-only", '\0', HasArg::No, Opt::Other),
    o("backup", '\0', HasArg::Optional, Opt::Other),
    o("", 'b', HasArg::No, Opt::Other),
    o("copy-contents", '\0', HasArg::No, Opt::Other),
    o("", 'd', HasArg::No, Opt::Other),
    o("debug", '\0', HasArg::No, Opt::Other),
    o("dereference", 'L', HasArg::No, Opt::Other),
    o("force", 'f', HasArg::No, Opt::Other),
    o("", 'H', HasArg::No, Opt::Other),
    o("interactive", 'i', HasArg::No, Opt::Other),
    o("link", 'l', HasArg::No, Opt::Other),
    o("no-clobber", 'n', HasArg::No, Opt::Other),
    o("no-dereference", 'P', HasArg::No, Opt::Other),
    o("", 'p', HasArg::No, Opt::Other),
    o("preserve", '\0', HasArg::Optional, Opt::Other),
    o("no-preserve", '\0', HasArg::Required, Opt::Other),
    o("parents", '\0', HasArg::No, Opt::Parents),
    o("recursive", 'R', HasArg::No, Opt::Recursive),
    o("", 'r', HasArg::No, Opt::Recursive),
    o("reflink", '\0', HasArg::Optional, Opt::Other),
    o("remove-destination", '\0', HasArg::No, Opt::Other),
    o("sparse", '\0', HasArg::Required, Opt::Other),
    o("strip-trailing-slashes", '\0', HasArg::No, Opt::Other),
    o("symbolic-link", 's', HasArg::No, Opt::Symbolic),
    o("suffix", 'S', HasArg::Required, Opt::Other),
    o("target-directory", 't', HasArg::Required, Opt::TargetDir),
    o("no-target-directory", 'T', HasArg::No, Opt::NoTargetDir),
    o("update", '\0', HasArg::Optional, Opt::Other),
    o("", 'u', HasArg::No, Opt::Other),
    o("verbose", 'v', HasArg::No, Opt::Other),
    o("keep-directory-symlink", '\0', HasArg::No, Opt::Other),
    o("one-file-system", 'x', HasArg::No, Opt::Other),
    o("context", '\0', HasArg::Optional, Opt::Other),
    o("", 'Z', HasArg::No, Opt::Other),
    o("help", '\0', HasArg::No, Opt::Info),
    o("version", '\0', HasArg::No, Opt::Info),
];

/// An ln or cp command line, parsed the way getopt_long (with argument permutation) reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// `-s`, `--symbolic` (ln), `--symbolic-link` (cp).
    pub symbolic: bool,
    /// ln `-r`/`--relative`: the target is given relative to the cwd.
    pub relative: bool,
    /// cp `-r`/`-R`/`-a`.
    pub recursive: bool,
    /// cp `--parents`: the full source name is appended to the directory.
    pub parents: bool,
    /// `-t DIR`, `-tDIR`, `--target-directory=DIR`, `--target-directory DIR`.
    pub target_dir: Option<String>,
    /// `-T`/`--no-target-directory`.
    pub no_target_dir: bool,
    /// `--help` or `--version`: the tool prints and exits.
    pub info_only: bool,
    /// Operands in order (options removed, `--` honoured).
    pub operands: Vec<String>,
}

/// The long option `name` abbreviates: an exact name, else the only one it is a prefix of.
fn find_long<'a>(table: &'a [OptSpec], name: &str) -> Result<&'a OptSpec, ParseError> {
    if let Some(exact) = table.iter().find(|s| !s.long.is_empty() && s.long == name) {
        return Ok(exact);
    }
    let mut found = table
        .iter()
        .filter(|s| !s.long.is_empty() && !name.is_empty() && s.long.starts_with(name));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err(ParseError::AmbiguousOption(format!("--{name}"))),
        _ => Err(ParseError::UnknownOption(format!("--{name}"))),
    }
}

/// Parses the arguments after argv\[0\] of `tool`.
pub fn parse_args(tool: Tool, args: &[String]) -> Result<Invocation, ParseError> {
    let table = match tool {
        Tool::Ln => LN_OPTIONS,
        Tool::Cp => CP_OPTIONS,
    };
    let mut inv = Invocation::default();
    let apply = |inv: &mut Invocation, opt: Opt, value: Option<&str>| match opt {
        Opt::Symbolic => {
            inv.symbolic = true;
            Ok(())
        }
        Opt::Relative => {
            inv.relative = true;
            Ok(())
        }
        Opt::Recursive => {
            inv.recursive = true;
            Ok(())
        }
        Opt::Parents => {
            inv.parents = true;
            Ok(())
        }
        Opt::NoTargetDir => {
            inv.no_target_dir = true;
            Ok(())
        }
        Opt::Info => {
            inv.info_only = true;
            Ok(())
        }
        Opt::TargetDir => {
            if inv.target_dir.is_some() {
                return Err(ParseError::MultipleTargetDirectories);
            }
            inv.target_dir = value.map(str::to_string);
            Ok(())
        }
        Opt::Other => Ok(()),
    };
    let mut rest = args.iter();
    let mut only_operands = false;
    while let Some(arg) = rest.next() {
        if only_operands || arg == "-" || !arg.starts_with('-') {
            inv.operands.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_operands = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let spec = find_long(table, name)?;
            let value = match (spec.arg, inline) {
                (HasArg::No, Some(_)) => {
                    return Err(ParseError::UnexpectedArgument(format!("--{}", spec.long)))
                }
                (HasArg::No, None) | (HasArg::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (HasArg::Required, None) => match rest.next() {
                    Some(v) => Some(v.as_str()),
                    None => return Err(ParseError::MissingArgument(format!("--{}", spec.long))),
                },
            };
            apply(&mut inv, spec.opt, value)?;
            continue;
        }
        // A cluster of short options; one taking an argument ends it.
        let cluster = arg.get(1..).unwrap_or_default();
        for (at, c) in cluster.char_indices() {
            let spec = table
                .iter()
                .find(|s| s.short == c && c != '\0')
                .ok_or_else(|| ParseError::UnknownOption(format!("-{c}")))?;
            if spec.arg == HasArg::Required {
                let attached = cluster.get(at + c.len_utf8()..).unwrap_or_default();
                let value = if attached.is_empty() {
                    match rest.next() {
                        Some(v) => v.as_str(),
                        None => return Err(ParseError::MissingArgument(format!("-{c}"))),
                    }
                } else {
                    attached
                };
                apply(&mut inv, spec.opt, Some(value))?;
                break;
            }
            apply(&mut inv, spec.opt, None)?;
        }
    }
    Ok(inv)
}

/// Whether a lone `LINK_NAME`/`DEST` operand names a directory to link into. Without the file
/// system this is decided from the text: a trailing `/`, `.`/`..`, or a directory every Linux
/// host has. Anything else is taken as the new name (the syscall sensor sees the other case).
fn names_directory(raw: &str, resolved: &str) -> bool {
    raw.ends_with('/')
        || raw == "."
        || raw == ".."
        || raw.ends_with("/.")
        || raw.ends_with("/..")
        || KNOWN_DIRS.contains(&resolved)
        || SYSTEM_DIRS.contains(&resolved)
        || SUSPICIOUS_DIRS.contains(&resolved)
}

/// The links `inv` creates when run in `cwd`, resolved. Empty for cp without `-s`, and for
/// `--help`/`--version`; an error when the tool would refuse the command line.
pub fn plan(tool: Tool, inv: &Invocation, cwd: &str) -> Result<Vec<LinkPair>, ParseError> {
    if inv.info_only || (tool == Tool::Cp && !inv.symbolic) {
        return Ok(Vec::new());
    }
    let into = |dir: &str, source: &str| {
        if inv.parents {
            normalize(dir, source.trim_start_matches('/'))
        } else {
            normalize(dir, last_component(source))
        }
    };
    let ops = &inv.operands;
    let mut raw: Vec<(&str, String)> = Vec::new();
    if let Some(dir) = &inv.target_dir {
        if inv.no_target_dir {
            return Err(ParseError::TargetDirectoryConflict);
        }
        if ops.is_empty() {
            return Err(ParseError::MissingOperand);
        }
        let dir = normalize(cwd, dir);
        raw.extend(ops.iter().map(|s| (s.as_str(), into(&dir, s))));
    } else if inv.no_target_dir {
        match ops.as_slice() {
            [source, dest] => raw.push((source.as_str(), normalize(cwd, dest))),
            [_, _, _, ..] => return Err(ParseError::ExtraOperand),
            _ => return Err(ParseError::MissingOperand),
        }
    } else {
        match ops.as_slice() {
            [] => return Err(ParseError::MissingOperand),
            [_] if tool == Tool::Cp => return Err(ParseError::MissingOperand),
            [source] => raw.push((source.as_str(), into(cwd, source))),
            [source, dest] => {
                let resolved = normalize(cwd, dest);
                if names_directory(dest, &resolved) {
                    raw.push((source.as_str(), into(&resolved, source)));
                } else {
                    raw.push((source.as_str(), resolved));
                }
            }
            [sources @ .., dir] => {
                let dir = normalize(cwd, dir);
                raw.extend(sources.iter().map(|s| (s.as_str(), into(&dir, s))));
            }
        }
    }
    // A symlink's text is resolved from the link's directory; ln -r takes it from the cwd (and
    // rewrites it), and a hard link's source is an existing name relative to the cwd.
    let against_link = inv.symbolic && !inv.relative;
    Ok(raw
        .into_iter()
        .map(|(source, path)| {
            let base = if against_link { dirname(&path) } else { cwd };
            LinkPair {
                target: normalize(base, source),
                path,
            }
        })
        .collect())
}

/// Which tool an exec runs and its arguments after the program name: `ln` and `cp` by process
/// name; busybox (any `busybox*` binary) and the coreutils multi-call binary by applet, taken
/// from argv\[0\]'s basename or, when that is the multi-call binary itself, the next argument
/// (`busybox ln ...`, `coreutils --coreutils-prog=ln ...`).
pub fn identify<'a>(process_name: &str, args: &'a [String]) -> Option<(Tool, &'a [String])> {
    let tool = |name: &str| match name {
        "ln" => Some(Tool::Ln),
        "cp" => Some(Tool::Cp),
        _ => None,
    };
    let rest = args.get(1..).unwrap_or_default();
    if let Some(t) = tool(process_name) {
        return Some((t, rest));
    }
    let busybox = process_name.starts_with("busybox");
    if !busybox && process_name != "coreutils" {
        return None;
    }
    let applet = event::basename(args.first()?);
    if let Some(prog) = rest
        .first()
        .and_then(|a| a.strip_prefix("--coreutils-prog="))
        .filter(|_| !busybox)
    {
        return Some((tool(prog)?, rest.get(1..).unwrap_or_default()));
    }
    if applet.starts_with("busybox") || applet == "coreutils" {
        return Some((tool(rest.first()?)?, rest.get(1..).unwrap_or_default()));
    }
    Some((tool(applet)?, rest))
}

/// The links an exec of `process_name` with `args` in `cwd` would create; empty when it is not
/// ln / cp -s / busybox ln, or when the tool would reject the command line.
pub fn links_of_exec(process_name: &str, args: &[String], cwd: &str) -> Vec<LinkPair> {
    let Some((tool, rest)) = identify(process_name, args) else {
        return Vec::new();
    };
    parse_args(tool, rest)
        .and_then(|inv| plan(tool, &inv, cwd))
        .unwrap_or_default()
}

/// The link a syscall made, resolved: the name against the cwd (when its directory is known),
/// a symlink's text against the link's directory, a hard link's source against the cwd.
pub fn link_pair(ev: &LinkEvent) -> LinkPair {
    let cwd = ev.task.cwd.as_deref().map(event::text).unwrap_or_default();
    let link = event::text(&ev.link);
    let target = event::text(&ev.target);
    let path = if ev.link_dir_known {
        normalize(&cwd, &link)
    } else {
        normalize("", &link)
    };
    let target = if ev.call.is_symbolic() {
        normalize(dirname(&path), &target)
    } else if ev.target_dir_known {
        normalize(&cwd, &target)
    } else {
        normalize("", &target)
    };
    LinkPair { target, path }
}

// ---------------------------------------------------------------------------------------------
// The detector

/// Which sensor saw a link (`auditsentry.sensor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensor {
    /// Worked out from an exec of ln / cp -s / busybox ln.
    Exec,
    /// Reported by a symlink/symlinkat/link/linkat audit record.
    Syscall,
    /// Reported by fanotify (`FAN_CREATE` of a symlink in a watched directory).
    Fanotify,
    /// Reported by inotify (`IN_CREATE` of a symlink in a directory fanotify cannot watch); the
    /// creator is the newest recent exec whose arguments name the link.
    Inotify,
}

impl Sensor {
    /// The field value: `exec`, `syscall`, `fanotify` or `inotify`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sensor::Exec => "exec",
            Sensor::Syscall => "syscall",
            Sensor::Fanotify => "fanotify",
            Sensor::Inotify => "inotify",
        }
    }
}

/// A link recently alerted on (or deduplicated), for the one-alert-per-link rule.
#[derive(Debug, Clone)]
struct Recent {
    time_ms: u64,
    pid: u32,
    path: String,
}

/// Whether two link paths name the same link; a relative one (directory unknown) matches an
/// absolute one ending in it.
fn same_link(a: &str, b: &str) -> bool {
    let suffix = |abs: &str, rel: &str| {
        abs.strip_suffix(rel)
            .is_some_and(|head| head.ends_with('/'))
    };
    a == b
        || (!a.starts_with('/') && b.starts_with('/') && suffix(b, a))
        || (!b.starts_with('/') && a.starts_with('/') && suffix(a, b))
}

/// The extended detector: decides on resolved links from both sensors and deduplicates them.
/// It returns alert documents; the pipeline gates them with [`ExtendedDetector::rule`].
#[derive(Debug)]
pub struct ExtendedDetector {
    rule: Rule,
    recent: VecDeque<Recent>,
    parents: VecDeque<RecentExec>,
}

/// An exec the link watchers may attribute a link to.
#[derive(Debug, Clone, Copy)]
struct RecentExec {
    pid: u32,
    ppid: u32,
    time_ms: u64,
}

impl ExtendedDetector {
    /// The detector with its built-in rule (id [`RULE_ID`], the seed's severity, risk score and
    /// new-terms fields and window).
    pub fn new() -> Result<Self, KqlError> {
        let query_text = "host.os.type:linux";
        Ok(ExtendedDetector {
            rule: Rule {
                id: RULE_ID.to_string(),
                name: RULE_NAME.to_string(),
                description: "A system binary linked into a suspicious location (or the \
                    reverse), worked out from resolved paths of ln / cp -s / busybox ln execs and \
                    of link system calls."
                    .to_string(),
                severity: Severity::Low,
                risk_score: 21,
                language: "kuery".to_string(),
                query_text: query_text.to_string(),
                query: kql::parse(query_text)?.into(),
                kind: RuleKind::NewTerms {
                    fields: vec!["host.id".to_string(), "process.parent.name".to_string()],
                    history_window_ms: HISTORY_WINDOW_MS,
                },
                max_signals: 100,
                from: "now-9m".to_string(),
                interval: "5m".to_string(),
                source: "builtin".to_string(),
            },
            recent: VecDeque::new(),
            parents: VecDeque::new(),
        })
    }

    /// The rule its alerts carry and the new-terms gate keys on.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Whether the link at `path` by `pid` (by any process, with `any_pid`) was already seen
    /// within [`DEDUPE_WINDOW_MS`]; if not, remembers it.
    fn seen(&mut self, pid: u32, any_pid: bool, path: &str, time_ms: u64) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|r| time_ms.saturating_sub(r.time_ms) > DEDUPE_WINDOW_MS)
            || self.recent.len() >= DEDUPE_CAPACITY
        {
            self.recent.pop_front();
        }
        let hit = self.recent.iter().any(|r| {
            (any_pid || r.pid == pid)
                && r.time_ms.abs_diff(time_ms) <= DEDUPE_WINDOW_MS
                && same_link(&r.path, path)
        });
        if !hit {
            self.recent.push_back(Recent {
                time_ms,
                pid,
                path: path.to_string(),
            });
        }
        hit
    }

    /// Exec sensor: reads the exec's process.name, .args and .working_directory. Returns the alert
    /// document — the exec's document plus `auditsentry.sensor` = `exec` and the first new
    /// suspicious link — or `None`.
    pub fn on_exec(&mut self, view: &ExecView<'_>, time_ms: u64) -> Option<Value> {
        let pid = view.ev.task.pid;
        self.remember_exec(pid, view.ev.task.ppid, time_ms);
        let name = view.me.name()?;
        let cwd = view
            .ev
            .task
            .cwd
            .as_deref()
            .map(event::text)
            .unwrap_or_default();
        let args: Vec<String> = view.me.args().map(String::from).collect();
        let mut first = None;
        for pair in links_of_exec(name, &args, &cwd) {
            if is_suspicious_pair(&pair)
                && !self.seen(pid, false, &pair.path, time_ms)
                && first.is_none()
            {
                first = Some(pair);
            }
        }
        let pair = first?;
        let mut out = view.document();
        annotate(&mut out, Sensor::Exec, &pair);
        Some(out)
    }

    /// Syscall sensor: `me` and `parent` are what the process table knows of the caller and its
    /// parent. Returns the alert document of a new suspicious link, or `None`.
    pub fn on_link(
        &mut self,
        ev: &LinkEvent,
        me: Option<&ProcessInfo>,
        parent: Option<&ProcessInfo>,
        host: &Host,
    ) -> Option<Value> {
        let pair = link_pair(ev);
        if !is_suspicious_pair(&pair)
            || self.seen(ev.task.pid, false, &pair.path, ev.task.time.as_millis())
        {
            return None;
        }
        Some(link_document(ev, me, parent, host, &pair))
    }

    /// Remembers a recent exec (bounded, oldest forgotten first; lookups take the newest of a
    /// pid).
    fn remember_exec(&mut self, pid: u32, ppid: u32, time_ms: u64) {
        if self.parents.len() >= PARENTS_CAPACITY {
            self.parents.pop_front();
        }
        self.parents.push_back(RecentExec { pid, ppid, time_ms });
    }

    /// The parent pid of `pid` as its latest exec event said, if among the last
    /// [`PARENTS_CAPACITY`] execs: fanotify reads `/proc` after the fact, when a short-lived
    /// creator may already be gone.
    pub fn parent_of(&self, pid: u32) -> Option<u32> {
        self.parents
            .iter()
            .rev()
            .find(|e| e.pid == pid)
            .map(|e| e.ppid)
    }

    /// The creator of a link inotify saw at `path` at `seen_ms`: the newest of the last
    /// [`PARENTS_CAPACITY`] execs before then whose arguments name the link (its file name), as
    /// `(pid, parent pid)` (a later exec naming it — `ls`, a log search — looked at it, it did not
    /// make it). `lookup` gives what the process table knows of a pid. None when no recent exec
    /// names it (a program that makes the link from a name it built or read is not found).
    pub fn creator_of(
        &self,
        path: &str,
        seen_ms: u64,
        mut lookup: impl FnMut(u32) -> Option<std::sync::Arc<ProcessInfo>>,
    ) -> Option<(u32, u32)> {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
        self.parents
            .iter()
            .rev()
            .filter(|e| e.time_ms <= seen_ms)
            .find(|e| lookup(e.pid).is_some_and(|info| info.args().skip(1).any(|a| names(a, name))))
            .map(|e| (e.pid, e.ppid))
    }

    /// fanotify sensor: a new symlink at `ev.path` (absolute) made by `ev.pid`. The pair is
    /// resolved as [`link_pair`] resolves a symlink call's, so the dedupe key (pid, link path)
    /// is the same whichever sensor reports first. `me` and `parent` as in [`Self::on_link`].
    pub fn on_fanotify(
        &mut self,
        ev: &FanEvent,
        me: Option<&ProcessInfo>,
        parent: Option<&ProcessInfo>,
        host: &Host,
    ) -> Option<Value> {
        let path = normalize("", &ev.path);
        let target = normalize(dirname(&path), &event::text(&ev.target));
        let pair = LinkPair { target, path };
        let inotify = ev.watcher == Watcher::Inotify;
        if !is_suspicious_pair(&pair) || self.seen(ev.pid, inotify, &pair.path, ev.time_ms) {
            return None;
        }
        Some(fanotify_document(ev, me, parent, host, &pair))
    }
}

/// Whether `text` (an argument) names the file `name`: `name` occurs in it as a whole word, not
/// inside a longer file name (`/dev/shm/x`, `'x'` and `x` name `x`; `xy` and `.x` do not).
fn names(text: &str, name: &str) -> bool {
    let part_of_name = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '+');
    text.match_indices(name).any(|(at, _)| {
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(at + name.len()..).and_then(|t| t.chars().next());
        !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
    })
}

/// The ECS document of a symlink creation a link watcher saw: [`link_document`]'s shape without
/// the audit facts fanotify does not have (serial, auid, session, tty); `event.action` is
/// `symlink-created`, `auditsentry.sensor` the watcher (`fanotify` or `inotify`).
pub fn fanotify_document(
    ev: &FanEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
    pair: &LinkPair,
) -> Value {
    let time = AuditTime {
        sec: ev.time_ms / 1000,
        msec: u32::try_from(ev.time_ms % 1000).unwrap_or_default(),
    };
    let sensor = match ev.watcher {
        Watcher::Fanotify => Sensor::Fanotify,
        Watcher::Inotify => Sensor::Inotify,
    };
    let mut process = Map::new();
    process.insert("pid".into(), json!(ev.pid));
    if let Some(me) = me {
        if let Some(name) = me.name() {
            process.insert("name".into(), json!(name));
        }
        if let Some(exe) = me.executable() {
            process.insert("executable".into(), json!(exe));
        }
        event::insert_args(&mut process, me);
    }
    if let Some(cwd) = &ev.cwd {
        process.insert("working_directory".into(), json!(cwd));
    }
    process.insert(
        "parent".into(),
        event::parent_object(ev.ppid.unwrap_or_default(), parent),
    );
    let mut doc = json!({
        "@timestamp": event::timestamp(time),
        "event": {
            "kind": "event",
            "category": ["file"],
            "type": ["creation"],
            "action": "symlink-created",
            "id": format!("{}:{}.{:03}:{}", sensor.as_str(), time.sec, time.msec, ev.pid),
        },
        "host": { "os": { "type": "linux" }, "id": host.id, "name": host.name },
        "process": Value::Object(process),
        "file": { "path": pair.path, "target_path": pair.target },
        "user": event::user_object(ev.uid, ev.euid),
    });
    annotate(&mut doc, sensor, pair);
    doc
}

/// Adds `auditsentry.sensor` and `auditsentry.link.{target,path}` to a document.
fn annotate(doc: &mut Value, sensor: Sensor, pair: &LinkPair) {
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "auditsentry".into(),
            json!({
                "sensor": sensor.as_str(),
                "link": { "target": pair.target, "path": pair.path },
            }),
        );
    }
}

/// The ECS document of a link syscall (event.category `file`, event.type `creation`,
/// event.action the call's name), shaped like [`event::document`] for the process fields so the
/// same new-terms fields apply: `process.*` from the SYSCALL record and the process table,
/// `process.parent.*` from the table, `file.path`/`file.target_path` for the link.
pub fn link_document(
    ev: &LinkEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
    pair: &LinkPair,
) -> Value {
    let mut process = Map::new();
    process.insert("pid".into(), json!(ev.task.pid));
    let executable = ev
        .task
        .exe
        .as_deref()
        .map(event::text)
        .or_else(|| me.and_then(ProcessInfo::executable).map(str::to_string));
    let name = match &executable {
        Some(exe) => Some(event::basename(exe).to_string()),
        None => ev.task.comm.as_deref().map(event::text),
    };
    if let Some(name) = name {
        process.insert("name".into(), json!(name));
    }
    if let Some(exe) = executable {
        process.insert("executable".into(), json!(exe));
    }
    if let Some(me) = me {
        event::insert_args(&mut process, me);
    }
    if let Some(cwd) = &ev.task.cwd {
        process.insert("working_directory".into(), json!(event::text(cwd)));
    }
    process.insert("parent".into(), event::parent_object(ev.task.ppid, parent));
    let auditd = event::auditd_object(&event::AuditFacts::of(&ev.task));
    let id = event::event_id(ev.task.node.as_deref(), ev.task.time, ev.task.serial);
    let mut doc = json!({
        "@timestamp": event::timestamp(ev.task.time),
        "event": {
            "kind": "event",
            "category": ["file"],
            "type": ["creation"],
            "action": ev.call.name(),
            "id": id,
        },
        "host": { "os": { "type": "linux" }, "id": host.id, "name": host.name },
        "process": Value::Object(process),
        "file": { "path": pair.path, "target_path": pair.target },
        "user": event::user_object(ev.task.uid, ev.task.euid),
        "auditd": Value::Object(auditd),
    });
    annotate(&mut doc, Sensor::Syscall, pair);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::link::LinkCall;
    use crate::audit::AuditTime;
    use std::sync::Arc;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    fn pair(target: &str, path: &str) -> LinkPair {
        LinkPair {
            target: target.to_string(),
            path: path.to_string(),
        }
    }

    /// Links of `argv` run by `name` in `cwd`, as (target, path) strings.
    fn links(name: &str, argv: &[&str], cwd: &str) -> Vec<(String, String)> {
        links_of_exec(name, &s(argv), cwd)
            .into_iter()
            .map(|p| (p.target, p.path))
            .collect()
    }

    fn one(target: &str, path: &str) -> Vec<(String, String)> {
        vec![(target.to_string(), path.to_string())]
    }

    // --- path resolution

    #[test]
    fn normalize_drops_dot_and_empty_components() {
        assert_eq!(normalize("/", "/opt/a-x/./b"), "/opt/a-x/b");
        assert_eq!(normalize("/", "//tmp//x"), "/tmp/x");
        assert_eq!(normalize("/tmp", "."), "/tmp");
        assert_eq!(normalize("/tmp/", "x/"), "/tmp/x");
    }

    #[test]
    fn normalize_dotdot_pops_and_stops_at_root() {
        assert_eq!(normalize("/opt/app", "../../tmp/x"), "/tmp/x");
        assert_eq!(normalize("/", "/../../usr/bin/../bin/id"), "/usr/bin/id");
        assert_eq!(normalize("/tmp", "a/../.x"), "/tmp/.x");
    }

    #[test]
    fn normalize_absolute_path_ignores_base() {
        assert_eq!(normalize("/opt", "/usr/bin/id"), "/usr/bin/id");
    }

    #[test]
    fn normalize_without_base_stays_relative() {
        assert_eq!(normalize("", "./x"), "x");
        assert_eq!(normalize("", "../x/./y"), "../x/y");
        assert_eq!(normalize("", "a/../../b"), "../b");
    }

    #[test]
    fn dirname_and_last_component() {
        assert_eq!(dirname("/tmp/x"), "/tmp");
        assert_eq!(dirname("/x"), "/");
        assert_eq!(dirname("x"), "");
        assert_eq!(last_component("/usr/bin/id"), "id");
        assert_eq!(last_component("/usr/bin/"), "bin");
        assert_eq!(last_component("id"), "id");
    }

    #[test]
    fn relative_symlink_target_resolves_against_the_links_directory() {
        // ln -s ../../usr/bin/id /tmp/sub/x → /tmp/sub/../../usr/bin/id = /usr/bin/id.
        assert_eq!(
            links(
                "ln",
                &["ln", "-s", "../../usr/bin/id", "/tmp/sub/x"],
                "/opt"
            ),
            one("/usr/bin/id", "/tmp/sub/x")
        );
        // The same text resolved from the cwd (/opt) would be /usr/bin/id too only by chance:
        // from /home/u/w it is /home/usr/bin/id for a hard link.
        assert_eq!(
            links("ln", &["ln", "../../usr/bin/id", "/tmp/x"], "/home/u/w"),
            one("/home/usr/bin/id", "/tmp/x")
        );
    }

    // --- locations and the decision

    #[test]
    fn location_lists_are_whole_components() {
        assert!(is_system("/usr/bin/id"));
        assert!(is_system("/usr/bin"));
        assert!(!is_system("/usr/binary/x"));
        assert!(is_suspicious("/tmp/x"));
        assert!(!is_suspicious("/TMP/x"));
        assert!(!is_suspicious("/tmpfoo/x"));
        assert!(is_suspicious("/.x"));
        assert!(is_suspicious("/opt/.cache/x"));
        assert!(!is_suspicious("/opt/a-x/a"));
    }

    #[test]
    fn hidden_means_a_dot_name_not_dot_or_dotdot() {
        assert!(is_hidden("/opt/.x"));
        assert!(is_hidden(".x"));
        assert!(!is_hidden("/opt/./x"));
        assert!(!is_hidden("../x"));
    }

    #[test]
    fn decision_is_order_blind_and_honours_exclusions() {
        assert!(is_suspicious_pair(&pair("/usr/bin/id", "/tmp/x")));
        assert!(is_suspicious_pair(&pair("/tmp/x", "/usr/bin/x")));
        assert!(!is_suspicious_pair(&pair("/tmp/a", "/tmp/b")));
        assert!(!is_suspicious_pair(&pair("/usr/bin/id", "/opt/x")));
        assert!(!is_suspicious_pair(&pair("/usr/bin/coreutils", "/tmp/x")));
        assert!(!is_suspicious_pair(&pair(
            "/usr/lib/modules",
            "/tmp/mkinitcpio.x"
        )));
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/var/tmp/dracut.x"
        )));
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/var/tmp/mkinitramfs_x"
        )));
        // The exclusions apply to resolved paths: a relative name in /tmp is still excluded.
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "mkinitcpio.x"], "/tmp"),
            one("/usr/bin/id", "/tmp/mkinitcpio.x")
        );
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/tmp/mkinitcpio.x"
        )));
    }

    // --- GNU ln syntax (coreutils manual, "ln invocation")

    #[test]
    fn ln_form1_target_link_name() {
        // ln [OPTION]... [-T] TARGET LINK_NAME
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"], "/"),
            one("/usr/bin/id", "/tmp/x")
        );
        assert_eq!(
            links("ln", &["ln", "-T", "-s", "/usr/bin/id", "/tmp/x"], "/"),
            one("/usr/bin/id", "/tmp/x")
        );
    }

    #[test]
    fn ln_form2_single_target_links_into_cwd() {
        // ln [OPTION]... TARGET: a link to TARGET in the current directory.
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id"], "/tmp"),
            one("/usr/bin/id", "/tmp/id")
        );
    }

    #[test]
    fn ln_form3_targets_into_directory() {
        // ln [OPTION]... TARGET... DIRECTORY
        assert_eq!(
            links(
                "ln",
                &["ln", "-s", "/usr/bin/id", "/usr/bin/env", "/tmp/d/"],
                "/"
            ),
            vec![
                ("/usr/bin/id".to_string(), "/tmp/d/id".to_string()),
                ("/usr/bin/env".to_string(), "/tmp/d/env".to_string()),
            ]
        );
        // Two operands, the second a directory every host has.
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "/tmp"], "/"),
            one("/usr/bin/id", "/tmp/id")
        );
    }

    #[test]
    fn ln_form4_target_directory_short_attached_and_separate() {
        // ln [OPTION]... -t DIRECTORY TARGET...
        let want = one("/usr/bin/id", "/tmp/id");
        assert_eq!(
            links("ln", &["ln", "-s", "-t", "/tmp", "/usr/bin/id"], "/"),
            want
        );
        assert_eq!(
            links("ln", &["ln", "-s", "-t/tmp", "/usr/bin/id"], "/"),
            want
        );
        assert_eq!(
            links("ln", &["ln", "-st", "/tmp", "/usr/bin/id"], "/"),
            want
        );
        assert_eq!(links("ln", &["ln", "-st/tmp", "/usr/bin/id"], "/"), want);
    }

    #[test]
    fn ln_target_directory_long_with_equals_and_separate() {
        // --target-directory=DIRECTORY, and getopt_long's separate-argument form.
        let want = one("/usr/bin/id", "/tmp/id");
        assert_eq!(
            links(
                "ln",
                &["ln", "--symbolic", "--target-directory=/tmp", "/usr/bin/id"],
                "/"
            ),
            want
        );
        assert_eq!(
            links(
                "ln",
                &[
                    "ln",
                    "--symbolic",
                    "--target-directory",
                    "/tmp",
                    "/usr/bin/id"
                ],
                "/"
            ),
            want
        );
        // Unambiguous abbreviations are accepted.
        assert_eq!(
            links("ln", &["ln", "--sym", "--target=/tmp", "/usr/bin/id"], "/"),
            want
        );
    }

    #[test]
    fn ln_short_clusters() {
        // -sf, -sfn, -snf: flags combine in one argument.
        for flags in ["-sf", "-sfn", "-snf", "-fsv"] {
            let inv = parse_args(Tool::Ln, &s(&[flags, "/usr/bin/id", "/tmp/x"])).unwrap();
            assert!(inv.symbolic, "{flags}");
            assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
        }
    }

    #[test]
    fn ln_suffix_takes_an_argument() {
        // -S SUFFIX / --suffix=SUFFIX: the suffix is not an operand.
        let inv = parse_args(Tool::Ln, &s(&["-sbS", ".bak", "/usr/bin/id", "/tmp/x"])).unwrap();
        assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
        let inv = parse_args(Tool::Ln, &s(&["-s", "-S~", "/usr/bin/id", "/tmp/x"])).unwrap();
        assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
        let inv = parse_args(
            Tool::Ln,
            &s(&["--suffix", ".old", "-s", "/usr/bin/id", "/tmp/x"]),
        )
        .unwrap();
        assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
    }

    #[test]
    fn ln_backup_control_is_optional_and_only_attached() {
        // --backup[=CONTROL]: a following word is an operand, not the control.
        let inv = parse_args(Tool::Ln, &s(&["--backup", "-s", "/usr/bin/id", "/tmp/x"])).unwrap();
        assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
        let inv = parse_args(
            Tool::Ln,
            &s(&["--backup=numbered", "-s", "/usr/bin/id", "/tmp/x"]),
        )
        .unwrap();
        assert_eq!(inv.operands, s(&["/usr/bin/id", "/tmp/x"]));
    }

    #[test]
    fn ln_double_dash_ends_options_and_options_permute() {
        // `--` ends options; options after operands still count (argument permutation).
        let inv = parse_args(Tool::Ln, &s(&["--", "-s", "/tmp/x"])).unwrap();
        assert!(!inv.symbolic);
        assert_eq!(inv.operands, s(&["-s", "/tmp/x"]));
        let inv = parse_args(Tool::Ln, &s(&["/usr/bin/id", "/tmp/x", "-s"])).unwrap();
        assert!(inv.symbolic);
        assert_eq!(
            links("ln", &["ln", "-s", "--", "/usr/bin/id", "/tmp/q\"'"], "/"),
            one("/usr/bin/id", "/tmp/q\"'")
        );
    }

    #[test]
    fn ln_no_target_directory_needs_exactly_two_operands() {
        // -T, --no-target-directory: treat LINK_NAME as a normal file always.
        assert_eq!(
            links("ln", &["ln", "-sT", "/usr/bin/id", "/tmp"], "/"),
            one("/usr/bin/id", "/tmp")
        );
        let inv = parse_args(Tool::Ln, &s(&["-T", "a", "b", "c"])).unwrap();
        assert_eq!(plan(Tool::Ln, &inv, "/"), Err(ParseError::ExtraOperand));
        let inv = parse_args(Tool::Ln, &s(&["-T", "-t", "/tmp", "a"])).unwrap();
        assert_eq!(
            plan(Tool::Ln, &inv, "/"),
            Err(ParseError::TargetDirectoryConflict)
        );
    }

    #[test]
    fn ln_rejected_command_lines_make_no_links() {
        assert_eq!(
            parse_args(Tool::Ln, &s(&["-q", "a", "b"])),
            Err(ParseError::UnknownOption("-q".to_string()))
        );
        // --s is a prefix of both --suffix and --symbolic.
        assert_eq!(
            parse_args(Tool::Ln, &s(&["--s", "a", "b"])),
            Err(ParseError::AmbiguousOption("--s".to_string()))
        );
        assert_eq!(
            parse_args(Tool::Ln, &s(&["-s", "a", "-t"])),
            Err(ParseError::MissingArgument("-t".to_string()))
        );
        assert_eq!(
            parse_args(Tool::Ln, &s(&["--symbolic=yes", "a", "b"])),
            Err(ParseError::UnexpectedArgument("--symbolic".to_string()))
        );
        assert_eq!(
            parse_args(Tool::Ln, &s(&["-t", "/a", "-t", "/b", "x"])),
            Err(ParseError::MultipleTargetDirectories)
        );
        // cp's --symbolic-link is not an ln option.
        assert!(links(
            "ln",
            &["ln", "--symbolic-link", "/usr/bin/id", "/tmp/x"],
            "/"
        )
        .is_empty());
        assert!(links("ln", &["ln", "--help", "/usr/bin/id", "/tmp/x"], "/").is_empty());
    }

    #[test]
    fn ln_relative_option_takes_the_target_from_cwd() {
        // -r, --relative: TARGET is named relative to the cwd; ln rewrites it.
        assert_eq!(
            links("ln", &["ln", "-rs", "../usr/bin/id", "/tmp/x"], "/opt"),
            one("/usr/bin/id", "/tmp/x")
        );
    }

    #[test]
    fn ln_hard_link_needs_no_s() {
        assert_eq!(
            links("ln", &["ln", "/usr/bin/id", "/tmp/h"], "/"),
            one("/usr/bin/id", "/tmp/h")
        );
    }

    #[test]
    fn relative_link_names_resolve_against_cwd() {
        // sc37: (cd /tmp && ln -s /usr/bin/id x); sc47: (cd /opt && ln -s /usr/bin/id ./.x).
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "x"], "/tmp"),
            one("/usr/bin/id", "/tmp/x")
        );
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "./.x"], "/opt"),
            one("/usr/bin/id", "/opt/.x")
        );
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "../tmp/y"], "/opt"),
            one("/usr/bin/id", "/tmp/y")
        );
    }

    // --- GNU cp syntax (coreutils manual, "cp invocation")

    #[test]
    fn cp_links_only_with_symbolic_link() {
        assert!(links("cp", &["cp", "/usr/bin/id", "/tmp/x"], "/").is_empty());
        let want = one("/usr/bin/id", "/tmp/x");
        assert_eq!(
            links("cp", &["cp", "-s", "/usr/bin/id", "/tmp/x"], "/"),
            want
        );
        assert_eq!(
            links(
                "cp",
                &["cp", "--symbolic-link", "/usr/bin/id", "/tmp/x"],
                "/"
            ),
            want
        );
        assert_eq!(
            links("cp", &["cp", "--symb", "/usr/bin/id", "/tmp/x"], "/"),
            want
        );
    }

    #[test]
    fn cp_recursive_cluster_and_target_directory() {
        // cp -rs SOURCE DEST: the whole directory linked file by file.
        assert_eq!(
            links("cp", &["cp", "-rs", "/usr/bin", "/tmp/b"], "/"),
            one("/usr/bin", "/tmp/b")
        );
        assert!(is_suspicious_pair(&pair("/usr/bin", "/tmp/b")));
        // cp [OPTION]... -t DIRECTORY SOURCE...
        assert_eq!(
            links("cp", &["cp", "-s", "-t", "/tmp", "/usr/bin/id"], "/"),
            one("/usr/bin/id", "/tmp/id")
        );
        // -S SUFFIX takes an argument in cp too.
        assert_eq!(
            links("cp", &["cp", "-bsS", ".b", "/usr/bin/id", "/tmp/x"], "/"),
            one("/usr/bin/id", "/tmp/x")
        );
    }

    #[test]
    fn cp_needs_a_destination_and_parents_keeps_the_path() {
        assert!(links("cp", &["cp", "-s", "/usr/bin/id"], "/tmp").is_empty());
        assert_eq!(
            links(
                "cp",
                &["cp", "-s", "--parents", "/usr/bin/id", "/tmp/"],
                "/"
            ),
            one("/usr/bin/id", "/tmp/usr/bin/id")
        );
    }

    // --- which program it is

    #[test]
    fn busybox_and_multicall_applets() {
        let want = one("/bin/sh", "/tmp/x");
        // busybox ln -s ...
        assert_eq!(
            links(
                "busybox",
                &["busybox", "ln", "-s", "/bin/sh", "/tmp/x"],
                "/"
            ),
            want
        );
        // A symlink named ln to busybox: argv[0] = ln (sc18).
        assert_eq!(
            links("busybox", &["ln", "-s", "/bin/sh", "/tmp/x"], "/"),
            want
        );
        assert_eq!(
            links("busybox", &["/opt/bb/ln", "-s", "/bin/sh", "/tmp/x"], "/"),
            want
        );
        // busybox without the ln applet (sc39).
        assert!(links("busybox", &["busybox", "ls", "/usr/bin/x", "/tmp/x"], "/").is_empty());
        // coreutils multi-call binary.
        assert_eq!(
            links(
                "coreutils",
                &[
                    "coreutils",
                    "--coreutils-prog=ln",
                    "-s",
                    "/bin/sh",
                    "/tmp/x"
                ],
                "/"
            ),
            want
        );
        assert_eq!(
            links("coreutils", &["ln", "-s", "/bin/sh", "/tmp/x"], "/"),
            want
        );
        // Renamed copies of ln are not recognised by the exec sensor (the syscall sensor sees them).
        assert!(links(
            "a-renamed-ln",
            &["/opt/a-renamed-ln", "-s", "/bin/sh", "/tmp/x"],
            "/"
        )
        .is_empty());
        assert!(links("rm", &["rm", "-rf", "/usr/bin/x", "/tmp/x"], "/").is_empty());
    }

    // --- the detector

    /// The exec sensor's answer to `name` (run as /usr/bin/NAME by `pid`, child of `ppid`) with
    /// `args` in `cwd`.
    fn on_exec(
        det: &mut ExtendedDetector,
        (pid, ppid): (u32, u32),
        name: &str,
        args: &[&str],
        cwd: &str,
    ) -> Option<Value> {
        let mut task = link_event(pid, 1, "", "", cwd).task;
        task.ppid = ppid;
        task.exe = Some(format!("/usr/bin/{name}").into_bytes());
        let ev = crate::audit::exec::ExecEvent {
            task,
            argv: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            argc: Some(args.len() as u64),
            argv_truncated: false,
            proctitle: None,
        };
        let me = event::process_info(&ev);
        let host = host();
        let view = ExecView {
            ev: &ev,
            me: &me,
            parent: None,
            host: &host,
            known: &event::Known::default(),
        };
        det.on_exec(&view, 1_000 + u64::from(pid))
    }

    fn link_event(pid: u32, sec: u64, target: &str, link: &str, cwd: &str) -> LinkEvent {
        LinkEvent {
            task: crate::audit::task::Task {
                node: None,
                serial: 9,
                time: AuditTime { sec, msec: 5 },
                arch: Some(0xc000_003e),
                syscall: 266,
                pid,
                ppid: 1,
                uid: Some(0),
                euid: Some(0),
                suid: Some(0),
                gid: Some(0),
                egid: Some(0),
                sgid: Some(0),
                euid_name: None,
                gid_name: None,
                auid: None,
                ses: None,
                tty: None,
                comm: Some(b"python3".to_vec()),
                exe: Some(b"/usr/bin/python3.11".to_vec()),
                key: Some(b"auditsentry-link".to_vec()),
                cwd: Some(cwd.as_bytes().to_vec()),
            },
            call: LinkCall::Symlinkat,
            target: target.as_bytes().to_vec(),
            link: link.as_bytes().to_vec(),
            link_dir_known: true,
            target_dir_known: true,
        }
    }

    fn host() -> Host {
        Host {
            id: "h".to_string(),
            name: "n".to_string(),
        }
    }

    #[test]
    fn exec_alert_carries_sensor_and_resolved_link() {
        let mut det = ExtendedDetector::new().unwrap();
        let out = on_exec(
            &mut det,
            (10, 1),
            "ln",
            &["ln", "-s", "/usr/bin/id", "x"],
            "/tmp",
        )
        .unwrap();
        assert_eq!(
            out["auditsentry"],
            json!({"sensor": "exec", "link": {"target": "/usr/bin/id", "path": "/tmp/x"}})
        );
        assert_eq!(
            out["process"]["args"],
            json!(["ln", "-s", "/usr/bin/id", "x"])
        );
        assert_eq!(out["process"]["working_directory"], "/tmp");
        assert_eq!(out["event"]["action"], "exec");
        assert_eq!(det.rule().id, RULE_ID);
        assert_eq!(det.rule().name, RULE_NAME);
        assert_eq!(det.rule().risk_score, 21);
        assert_eq!(det.rule().severity, Severity::Low);
    }

    #[test]
    fn exec_then_syscall_of_the_same_link_alerts_once() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "x"];
        assert!(on_exec(&mut det, (10, 1), "ln", &args, "/tmp").is_some());
        let ev = link_event(10, 1, "/usr/bin/id", "x", "/tmp");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
        // Another pid making the same path is another link.
        let other = link_event(11, 1, "/usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&other, None, None, &host()).is_some());
        // Past the window the same pid and path alert again.
        let later = link_event(10, 7, "/usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&later, None, None, &host()).is_some());
    }

    #[test]
    fn syscall_link_in_unknown_directory_dedupes_by_name() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "/tmp/d/"];
        assert!(on_exec(&mut det, (10, 1), "ln", &args, "/").is_some());
        assert!(det.seen(10, false, "id", 1_001));
        assert!(same_link("/tmp/d/id", "id"));
        assert!(!same_link("/tmp/d/xid", "id"));
    }

    #[test]
    fn syscall_document_shape() {
        let mut det = ExtendedDetector::new().unwrap();
        let me = ProcessInfo::new(
            Some("/usr/bin/python3.11"),
            Some("python3.11"),
            ["python3", "-c", "x"],
        );
        let parent = ProcessInfo::new(Some("/usr/bin/bash"), Some("bash"), ["bash"]);
        let ev = link_event(12, 1_795_858_584, "../usr/bin/id", "x", "/tmp");
        let doc = det.on_link(&ev, Some(&me), Some(&parent), &host()).unwrap();
        assert_eq!(
            doc,
            json!({
                "@timestamp": "2026-11-28T09:36:24.005Z",
                "event": {"kind": "event", "category": ["file"], "type": ["creation"],
                          "action": "symlinkat", "id": "1795858584.005:9"},
                "host": {"os": {"type": "linux"}, "id": "h", "name": "n"},
                "process": {
                    "pid": 12, "name": "python3.11", "executable": "/usr/bin/python3.11",
                    "args": ["python3", "-c", "x"], "args_count": 3,
                    "command_line": "python3 -c x", "working_directory": "/tmp",
                    "parent": {"pid": 1, "name": "bash", "executable": "/usr/bin/bash",
                               "args": ["bash"], "args_count": 1, "command_line": "bash"},
                },
                "file": {"path": "/tmp/x", "target_path": "/usr/bin/id"},
                "user": {"id": "0", "effective": {"id": "0"}, "Ext": {"real": {"id": "0"}}},
                "auditd": {"serial": 9, "key": "auditsentry-link"},
                "auditsentry": {"sensor": "syscall",
                                "link": {"target": "/usr/bin/id", "path": "/tmp/x"}},
            })
        );
    }

    #[test]
    fn benign_links_do_not_alert() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "/opt/x"];
        assert_eq!(on_exec(&mut det, (10, 1), "ln", &args, "/"), None);
        let ev = link_event(12, 1, "/tmp/a", "/tmp/b", "/");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
    }

    fn fan_event(pid: u32, time_ms: u64, target: &str, path: &str) -> FanEvent {
        FanEvent {
            watcher: Watcher::Fanotify,
            path: path.to_string(),
            target: target.as_bytes().to_vec(),
            pid,
            ppid: Some(1),
            uid: Some(1000),
            euid: Some(0),
            cwd: Some("/home/u".to_string()),
            me: None,
            time_ms,
        }
    }

    #[test]
    fn fanotify_and_syscall_reports_of_one_link_alert_once() {
        let mut det = ExtendedDetector::new().unwrap();
        let ev = link_event(10, 1, "../usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&ev, None, None, &host()).is_some());
        // The same link by the same pid, fanotify's clock a little later.
        let fan = fan_event(10, 1_060, "../usr/bin/id", "/tmp/x");
        assert_eq!(det.on_fanotify(&fan, None, None, &host()), None);
        // fanotify first, then audit.
        let fan = fan_event(11, 2_000, "/usr/bin/id", "/tmp/y");
        assert!(det.on_fanotify(&fan, None, None, &host()).is_some());
        let ev = link_event(11, 1, "/usr/bin/id", "/tmp/y", "/");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
    }

    #[test]
    fn an_inotify_report_dedupes_with_any_pid_and_names_its_sensor() {
        let mut det = ExtendedDetector::new().unwrap();
        let mut ino = fan_event(0, 1_000, "/usr/bin/id", "/dev/shm/x");
        ino.watcher = Watcher::Inotify;
        // Audit's report of the same link (its pid, which inotify does not know) comes first.
        let call = link_event(77, 1, "/usr/bin/id", "/dev/shm/x", "/");
        assert!(det.on_link(&call, None, None, &host()).is_some());
        assert_eq!(det.on_fanotify(&ino, None, None, &host()), None);
        // Alone, it alerts, as the inotify sensor.
        let mut alone = fan_event(0, 1_000, "/usr/bin/id", "/dev/shm/y");
        alone.watcher = Watcher::Inotify;
        let doc = det.on_fanotify(&alone, None, None, &host()).expect("alert");
        assert_eq!(doc["auditsentry"]["sensor"], "inotify");
        assert_eq!(
            doc["event"]["id"]
                .as_str()
                .map(|s| s.starts_with("inotify:")),
            Some(true)
        );
    }

    #[test]
    fn the_creator_of_an_inotify_link_is_the_newest_exec_naming_it() {
        let mut det = ExtendedDetector::new().unwrap();
        let shell = [
            "dash",
            "-c",
            "perl -e 'symlink q(/usr/bin/id), q(/dev/shm/evil)'",
        ];
        let perl = ["perl", "-e", "symlink q(/usr/bin/id), q(/dev/shm/evil)"];
        let mut table = std::collections::HashMap::new();
        for (pid, ppid, args) in [
            (20, 1, &shell[..]),
            (21, 20, &perl[..]),
            (22, 1, &["true"][..]),
        ] {
            on_exec(&mut det, (pid, ppid), args[0], args, "/");
            table.insert(pid, Arc::new(ProcessInfo::new(None, Some(args[0]), args)));
        }
        let lookup = |pid| table.get(&pid).cloned();
        // (The helper execs pid N at 1,000 + N ms.)
        assert_eq!(
            det.creator_of("/dev/shm/evil", 1_030, lookup),
            Some((21, 20))
        );
        // argv[0] does not count, a name inside a longer word is not named, and a name no exec
        // gave is nobody's.
        assert_eq!(det.creator_of("/dev/shm/true", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/sym", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/other", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/", 1_030, lookup), None);
        // A name only the shell's command line holds is the shell's.
        assert_eq!(det.creator_of("/tmp/perl", 1_030, lookup), Some((20, 1)));
        // Seen before perl's exec: the shell's (perl came later, it only looked).
        assert_eq!(
            det.creator_of("/dev/shm/evil", 1_020, lookup),
            Some((20, 1))
        );
        assert_eq!(det.creator_of("/dev/shm/evil", 1_019, lookup), None);
    }

    #[test]
    fn names_is_a_whole_word_match() {
        for (text, name, want) in [
            ("/dev/shm/x", "x", true),
            ("symlink 'id', 'x';", "x", true),
            ("x", "x", true),
            ("/dev/shm/xy", "x", false),
            ("/dev/shm/.x", "x", false),
            ("a-x", "x", false),
            ("é x", "x", true),
            ("xéx", "é", false),
        ] {
            assert_eq!(names(text, name), want, "{text:?} names {name:?}");
        }
    }

    #[test]
    fn exec_documents_teach_parents_for_fanotify() {
        let mut det = ExtendedDetector::new().unwrap();
        assert_eq!(on_exec(&mut det, (500, 77), "perl", &["perl"], "/"), None);
        assert_eq!(det.parent_of(500), Some(77));
        assert_eq!(det.parent_of(501), None);
        for pid in 0..PARENTS_CAPACITY as u32 {
            det.remember_exec(1_000 + pid, 1, 2_000);
        }
        assert_eq!(det.parent_of(500), None, "the oldest is forgotten");
        assert_eq!(det.parent_of(1_000), Some(1));
    }

    #[test]
    fn fanotify_alert_document() {
        let mut det = ExtendedDetector::new().unwrap();
        let me = ProcessInfo::new(Some("/usr/bin/perl"), Some("perl"), ["perl", "-e"]);
        let parent = ProcessInfo::new(Some("/usr/bin/bash"), Some("bash"), ["bash"]);
        let fan = fan_event(42, 1_700_000_000_123, "/usr/bin/id", "/dev/shm/.k");
        let doc = det
            .on_fanotify(&fan, Some(&me), Some(&parent), &host())
            .unwrap();
        assert_eq!(doc["auditsentry"]["sensor"], "fanotify");
        assert_eq!(doc["auditsentry"]["link"]["path"], "/dev/shm/.k");
        assert_eq!(doc["auditsentry"]["link"]["target"], "/usr/bin/id");
        assert_eq!(doc["file"]["target_path"], "/usr/bin/id");
        assert_eq!(doc["event"]["action"], "symlink-created");
        assert_eq!(doc["event"]["id"], "fanotify:1700000000.123:42");
        assert_eq!(doc["process"]["name"], "perl");
        assert_eq!(doc["process"]["pid"], 42);
        assert_eq!(doc["process"]["working_directory"], "/home/u");
        assert_eq!(doc["process"]["parent"]["name"], "bash");
        assert_eq!(doc["process"]["parent"]["pid"], 1);
        assert_eq!(doc.get("auditd"), None);
        // Not suspicious: a link inside /tmp to /tmp.
        let fan = fan_event(42, 1_700_000_000_500, "a", "/tmp/b");
        assert_eq!(det.on_fanotify(&fan, None, None, &host()), None);
    }
}
