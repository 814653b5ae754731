//! The seed rule's locations and exclusions as path tests, and the decision on a resolved link.

use super::paths::{within, LinkPair};

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

/// The seed's exclusions: `/usr/bin/coreutils` exactly, and three prefixes.
const EXCLUDED_EXACT: &str = "/usr/bin/coreutils";
const EXCLUDED_PREFIXES: &[&str] = &["/tmp/mkinitcpio", "/var/tmp/dracut", "/var/tmp/mkinitramfs"];

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

/// The decision: a system binary linked into a suspicious location, or the reverse (the seed is
/// order-blind), with neither end excluded.
pub fn is_suspicious_pair(pair: &LinkPair) -> bool {
    let forward = is_system(&pair.target) && is_suspicious(&pair.path);
    let reverse = is_suspicious(&pair.target) && is_system(&pair.path);
    (forward || reverse) && !is_excluded(&pair.target) && !is_excluded(&pair.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::extended::test_support::*;

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
}
