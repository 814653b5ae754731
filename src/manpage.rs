//! The man page, auditsentry(8): hand-written prose from a template, with the synopsis and every
//! command's options rendered from the clap definitions in [`crate::cli`] by clap_mangen, so the
//! page cannot drift from `--help`. `auditsentry manpage` prints it; the packaged page is its output.

use crate::cli::Cli;
use clap::{Command, CommandFactory};
use clap_mangen::Man;

/// The hand-written page. Marker lines (roff comments) say where generated text goes:
/// `.\" @title DATE` (the date the prose last changed), `.\" @synopsis`, `.\" @options COMMAND` (e.g. `rules check`) and
/// `.\" @other commands` (commands the template has no section for yet).
pub const TEMPLATE: &str = include_str!("../packaging/man/auditsentry.8.in");

const MARKER: &str = ".\\\" @";

/// Why the page could not be rendered: the template and the commands disagree.
#[derive(Debug, thiserror::Error)]
pub enum ManpageError {
    /// A marker names no command, or a marker is unknown.
    #[error("packaging/man/auditsentry.8.in:{line}: {what}")]
    Template {
        /// 1-based line of the template.
        line: usize,
        /// What is wrong there.
        what: String,
    },
    /// Writing into memory failed (clap_mangen writes through `io::Write`).
    #[error("rendering the man page: {0}")]
    Io(std::io::Error),
}

/// By hand, not `#[from]`: that would also make the I/O error the `source()`, and the message
/// already holds it.
impl From<std::io::Error> for ManpageError {
    fn from(e: std::io::Error) -> Self {
        ManpageError::Io(e)
    }
}

/// The visible leaf commands (`run`, `rules check`, ...) as built by clap, with their full
/// `bin_name` (`auditsentry rules check`), without the `--help`/`--version` flags every command
/// shares (the page says so once).
pub fn commands() -> Vec<Command> {
    fn plain(cmd: Command) -> Command {
        cmd.disable_help_flag(true)
            .disable_version_flag(true)
            .disable_help_subcommand(true)
            .mut_subcommands(plain)
    }
    fn leaves(cmd: &Command, out: &mut Vec<Command>) {
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            if sub.has_subcommands() {
                leaves(sub, out);
            } else {
                out.push(sub.clone());
            }
        }
    }
    let mut root = plain(Cli::command());
    root.build();
    let mut out = Vec::new();
    leaves(&root, &mut out);
    out
}

/// A leaf's name without the program's: `rules check` for `auditsentry rules check`.
pub fn command_name(cmd: &Command) -> String {
    let full = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    full.strip_prefix("auditsentry ").unwrap_or(full).to_owned()
}

/// One clap_mangen section without its `.SH` heading line.
/// One clap_mangen section without its `.SH` heading line and the string definitions roff puts
/// before every fragment (the page has them once, from the title).
fn body(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut out = String::with_capacity(text.len());
    for line in text.lines().filter(|l| {
        !l.starts_with(".SH ")
            && !l.starts_with(".ie \\n(.g .ds Aq")
            && !l.starts_with(".el .ds Aq")
    }) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

fn options_of(cmd: &Command) -> std::io::Result<String> {
    let man = Man::new(cmd.clone());
    let text = body(|w| man.render_options_section(w))?;
    Ok(if text.trim().is_empty() {
        String::new()
    } else {
        format!(".PP\nOptions:\n{text}")
    })
}

/// The whole page: the template with its markers replaced.
pub fn render() -> Result<String, ManpageError> {
    render_from(TEMPLATE)
}

/// [`render`] with another template (tests).
pub fn render_from(template: &str) -> Result<String, ManpageError> {
    let commands = commands();
    let mut placed = vec![false; commands.len()];
    let mut out = String::with_capacity(template.len() * 2);
    let mut other_at = None;
    for (n, line) in template.lines().enumerate() {
        let Some(marker) = line.strip_prefix(MARKER) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let bad = |what: String| ManpageError::Template { line: n + 1, what };
        match marker.split_once(' ').unwrap_or((marker, "")) {
            ("title", date) if !date.is_empty() => {
                let man = Man::new(Cli::command())
                    .date(date)
                    .title("AUDITSENTRY")
                    .section("8")
                    .manual("System Administration");
                man.render_title(&mut TextSink(&mut out))?;
            }
            ("synopsis", "") => {
                for (i, cmd) in commands.iter().enumerate() {
                    if i > 0 {
                        out.push_str(".br\n");
                    }
                    out.push_str(&body(|w| Man::new(cmd.clone()).render_synopsis_section(w))?);
                }
                out.push_str(".br\n.B auditsentry\n.RB [ \\-\\-help | \\-\\-version ]\n");
            }
            ("options", name) => {
                let i = commands
                    .iter()
                    .position(|c| command_name(c) == name)
                    .ok_or_else(|| bad(format!("no command {name:?} to list the options of")))?;
                placed[i] = true;
                out.push_str(&options_of(&commands[i])?);
            }
            ("other", "commands") => other_at = Some(out.len()),
            _ => return Err(bad(format!("unknown marker {line:?}"))),
        }
    }
    // A command added to the CLI without a section of its own still gets its synopsis and options.
    let mut other = String::new();
    for (cmd, _) in commands.iter().zip(&placed).filter(|(_, done)| !**done) {
        other.push_str(&format!(".SS \"auditsentry {}\"\n", command_name(cmd)));
        if let Some(about) = cmd.get_about() {
            other.push_str(&format!("{}\n", roff_text(&about.to_string())));
        }
        other.push_str(&options_of(cmd)?);
    }
    match other_at {
        Some(at) => out.insert_str(at, &other),
        None if other.is_empty() => {}
        None => {
            return Err(ManpageError::Template {
                line: template.lines().count(),
                what: "no `.\\\" @other commands` marker for the commands without a section".into(),
            })
        }
    }
    Ok(out)
}

/// Plain text as one roff text line: backslashes and hyphens escaped, no leading control dot.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

/// `io::Write` into a `String` (clap_mangen writes roff as UTF-8).
struct TextSink<'a>(&'a mut String);

impl std::io::Write for TextSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const PACKAGED: &str = "packaging/man/auditsentry.8";

    /// The long options a roff text names, `\-\-state\-dir` → `state-dir` (comments aside).
    fn long_options(roff: &str) -> BTreeSet<String> {
        let text: String = roff
            .lines()
            .filter(|l| !l.starts_with(".\\\""))
            .map(|l| l.replace("\\-", "-") + "\n")
            .collect();
        let mut out = BTreeSet::new();
        for (i, _) in text.match_indices("--") {
            let name: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() && !text[..i].ends_with(['-', '\\']) {
                out.insert(name);
            }
        }
        out
    }

    fn help_of(cmd: &Command) -> String {
        // The real --help, with the flags every command shares.
        let path: Vec<String> = command_name(cmd).split(' ').map(str::to_owned).collect();
        let mut full = Cli::command();
        full.build();
        let mut sub = &mut full;
        for name in &path {
            sub = sub
                .find_subcommand_mut(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        sub.render_long_help().to_string()
    }

    /// The text between a command's `.SS` heading and the next heading.
    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let head = format!(".SS \"auditsentry {name}\"\n");
        let start = page
            .find(&head)
            .unwrap_or_else(|| panic!("no section for {name}"));
        let rest = &page[start + head.len()..];
        let end = [".SS ", ".SH "]
            .iter()
            .filter_map(|h| rest.find(h))
            .min()
            .unwrap_or(rest.len());
        &rest[..end]
    }

    #[test]
    fn packaged_page_is_a_fresh_render() {
        let fresh = render().unwrap_or_else(|e| panic!("{e}"));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PACKAGED);
        if std::env::var_os("AUDITSENTRY_REGENERATE").is_some() {
            std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let packaged =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            packaged == fresh,
            "{PACKAGED} differs from `auditsentry manpage`: regenerate it with \
             AUDITSENTRY_REGENERATE=1 cargo test --release manpage"
        );
    }

    #[test]
    fn every_option_in_help_is_in_its_commands_section_and_back() {
        let page = render().unwrap_or_else(|e| panic!("{e}"));
        let mut all = BTreeSet::from(["help".to_owned(), "version".to_owned()]);
        for cmd in commands() {
            let name = command_name(&cmd);
            let mut help = long_options(&help_of(&cmd));
            all.extend(help.iter().cloned());
            help.remove("help");
            help.remove("version");
            let documented = long_options(section(&page, &name));
            let missing: Vec<_> = help.difference(&documented).collect();
            assert!(
                missing.is_empty(),
                "{name}: --help has {missing:?}, the page does not"
            );
            let extra: Vec<_> = documented.difference(&help).collect();
            assert!(
                extra.is_empty(),
                "{name}: the page names {extra:?}, --help does not"
            );
        }
        // Prose elsewhere in the page names only options that exist.
        let unknown: Vec<_> = long_options(&page).difference(&all).cloned().collect();
        assert!(
            unknown.is_empty(),
            "the page names unknown options {unknown:?}"
        );
    }

    #[test]
    fn synopsis_lists_every_command() {
        let page = render().unwrap_or_else(|e| panic!("{e}"));
        let synopsis = &page
            [page.find(".SH SYNOPSIS").unwrap_or(0)..page.find(".SH DESCRIPTION").unwrap_or(0)];
        for cmd in commands() {
            assert!(
                synopsis.contains(&format!(".B auditsentry {}", command_name(&cmd)))
                    || synopsis.contains(&format!("\\fBauditsentry {}\\fR", command_name(&cmd))),
                "synopsis lacks {}",
                command_name(&cmd)
            );
        }
    }

    #[test]
    fn a_command_without_a_section_is_still_rendered() {
        let template = TEMPLATE.replace(".\\\" @options status\n", "");
        let page = render_from(&template).unwrap_or_else(|e| panic!("{e}"));
        let head = ".SS \"auditsentry status\"\n";
        let appended = page.rfind(head).unwrap_or(0);
        assert!(page.find(head) < Some(appended), "no section appended");
        assert!(section(&page[appended..], "status").contains("state\\-dir"));
        let broken = TEMPLATE.replace(".\\\" @options status", ".\\\" @options nosuch");
        assert!(render_from(&broken).is_err());
    }
}
