//! GNU coreutils ln and cp command lines (and busybox's and the multi-call binary's applets):
//! which links a command would create, parsed the way getopt_long reads them.

use super::paths::{dirname, last_component, normalize, LinkPair};
use super::policy::SeedPolicy;
use crate::event;

/// Directories that certainly exist on a Linux host: a lone `LINK_NAME` naming one of them is a
/// directory to link into, not a new name.
const KNOWN_DIRS: &[&str] = &["/", "/dev", "/etc", "/opt", "/usr", "/usr/local", "/var"];

/// The programs whose command lines this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// GNU coreutils ln, or busybox's ln applet.
    Ln,
    /// GNU coreutils cp (links only with `-s`/`--symbolic-link`).
    Cp,
}

/// Why a command line would make ln or cp fail before creating anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An option the tool does not have.
    #[error("unrecognized option {0:?}")]
    UnknownOption(String),
    /// A long-option prefix matching several options (`--s` for ln).
    #[error("option {0:?} is ambiguous")]
    AmbiguousOption(String),
    /// An option that needs an argument came last.
    #[error("option {0:?} requires an argument")]
    MissingArgument(String),
    /// `--opt=VALUE` for an option without an argument.
    #[error("option {0:?} doesn't allow an argument")]
    UnexpectedArgument(String),
    /// `-t` given twice.
    #[error("multiple target directories specified")]
    MultipleTargetDirectories,
    /// `-t` together with `-T`.
    #[error("cannot combine --target-directory and --no-target-directory")]
    TargetDirectoryConflict,
    /// Too few operands.
    #[error("missing file operand")]
    MissingOperand,
    /// More than two operands with `-T`.
    #[error("extra operand")]
    ExtraOperand,
}

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
fn names_directory(raw: &str, resolved: &str, policy: &SeedPolicy) -> bool {
    raw.ends_with('/')
        || raw == "."
        || raw == ".."
        || raw.ends_with("/.")
        || raw.ends_with("/..")
        || KNOWN_DIRS.contains(&resolved)
        || policy.is_location(resolved)
}

/// The links `inv` creates when run in `cwd`, resolved. Empty for cp without `-s`, and for
/// `--help`/`--version`; an error when the tool would refuse the command line.
pub fn plan(
    tool: Tool,
    inv: &Invocation,
    cwd: &str,
    policy: &SeedPolicy,
) -> Result<Vec<LinkPair>, ParseError> {
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
                if names_directory(dest, &resolved, policy) {
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
pub fn links_of_exec(
    process_name: &str,
    args: &[String],
    cwd: &str,
    policy: &SeedPolicy,
) -> Vec<LinkPair> {
    let Some((tool, rest)) = identify(process_name, args) else {
        return Vec::new();
    };
    parse_args(tool, rest)
        .and_then(|inv| plan(tool, &inv, cwd, policy))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::extended::test_support::*;

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
        assert_eq!(
            plan(Tool::Ln, &inv, "/", seed()),
            Err(ParseError::ExtraOperand)
        );
        let inv = parse_args(Tool::Ln, &s(&["-T", "-t", "/tmp", "a"])).unwrap();
        assert_eq!(
            plan(Tool::Ln, &inv, "/", seed()),
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
}
