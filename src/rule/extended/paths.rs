//! Lexical path algebra: resolving a name against a directory without touching the file
//! system, and the resolved (target, link) pair a link command or call produces.

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
pub(super) fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
