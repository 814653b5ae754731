//! Which live source runs: the operator's request (`source.kind`, `--source`) on this kernel, with
//! or without auditd, resolved to multicast, unicast or the plugin stream, with the reason.

use crate::config::SourceKind;
use crate::source::netlink::{multicast_supported, Status};
use std::path::Path;

/// Where auditd looks for plugin files: auditd ≥ 3 uses /etc/audit/plugins.d, audisp (2.x)
/// /etc/audisp/plugins.d.
pub fn plugin_conf_path() -> &'static str {
    if !Path::new("/etc/audit/plugins.d").is_dir() && Path::new("/etc/audisp/plugins.d").is_dir() {
        "/etc/audisp/plugins.d/auditsentry.conf"
    } else {
        "/etc/audit/plugins.d/auditsentry.conf"
    }
}

/// Where an installed auditd is looked for.
pub const AUDITD_PATHS: [&str; 2] = ["/sbin/auditd", "/usr/sbin/auditd"];

/// The path of the auditd binary installed on this host, if any.
pub fn auditd_installed() -> Option<&'static str> {
    AUDITD_PATHS.into_iter().find(|p| Path::new(p).exists())
}

/// Picks the source for `request` on a kernel of `version` in state `status`, with `auditd` the
/// installed auditd binary if any; returns the source and the reason, or the one line the operator
/// needs when no source can run. The choice never keeps auditd from starting:
///
/// | `auto` on | auditd running or installed | no auditd |
/// |---|---|---|
/// | kernel ≥ 3.16 | multicast (beside auditd) | unicast (registered daemon: the kernel does not also log every record) |
/// | kernel < 3.16 | refused: enable the auditd plugin | unicast |
///
/// `unicast` asked for explicitly registers whenever no daemon is registered (if auditd is
/// installed, the reason says what happens when it starts); it never takes over a registered one.
/// The source returned is never `Auto`.
pub fn choose(
    request: SourceKind,
    version: (u32, u32, u32),
    status: &Status,
    auditd: Option<&str>,
) -> Result<(SourceKind, String), String> {
    let (a, b, c) = version;
    let kernel = format!("kernel {a}.{b}.{c}");
    let multicast = multicast_supported(version);
    let owner = status.pid;
    let plugin = || {
        format!(
            "enable the auditd plugin: set `active = yes` in {} and restart auditd",
            plugin_conf_path()
        )
    };
    let taken = || {
        format!(
            "an audit daemon (pid {owner}) owns the kernel's audit stream and will not be taken over; {}",
            plugin()
        )
    };
    match request {
        SourceKind::Plugin => Ok((SourceKind::Plugin, "asked for the auditd plugin stream".into())),
        SourceKind::Multicast if multicast => {
            Ok((SourceKind::Multicast, format!("asked for multicast; {kernel} supports it")))
        }
        SourceKind::Multicast => Err(format!(
            "{kernel} has no audit multicast (needs 3.16): the socket would bind and receive nothing; \
             use --source unicast (no auditd) or the auditd plugin ({})",
            plugin_conf_path()
        )),
        SourceKind::Unicast if owner != 0 => Err(taken()),
        SourceKind::Unicast => {
            let mut why = format!("asked for unicast; {kernel}: no audit daemon is registered, registering");
            if let Some(path) = auditd {
                why.push_str(&format!(
                    "; auditd is installed ({path}) and cannot register while this agent is; when it tries, \
                     the agent {}",
                    if multicast {
                        "hands the stream over and switches to multicast"
                    } else {
                        "says so (this kernel has no multicast to switch to)"
                    }
                ));
            }
            Ok((SourceKind::Unicast, why))
        }
        SourceKind::Auto if multicast && owner != 0 => Ok((
            SourceKind::Multicast,
            format!("{kernel} ≥ 3.16 supports audit multicast; it coexists with the audit daemon (pid {owner})"),
        )),
        SourceKind::Auto if multicast => match auditd {
            Some(path) => Ok((
                SourceKind::Multicast,
                format!("{kernel} ≥ 3.16 supports audit multicast; auditd is installed ({path}): multicast leaves it free to start"),
            )),
            None => Ok((
                SourceKind::Unicast,
                format!("{kernel}: no auditd installed and no audit daemon registered: registering (unicast), so the kernel does not also write every record to its log"),
            )),
        },
        SourceKind::Auto if owner != 0 => Err(taken()),
        SourceKind::Auto => match auditd {
            Some(path) => Err(format!(
                "auditd is installed ({path}) and {kernel} has no audit multicast (needs 3.16): \
                 registering would keep auditd from starting; {}",
                plugin()
            )),
            None => Ok((
                SourceKind::Unicast,
                format!("{kernel} has no audit multicast and no auditd is installed: registering (unicast)"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pid: u32) -> Status {
        Status {
            mask: 0,
            enabled: 1,
            failure: 1,
            pid,
            rate_limit: 0,
            backlog_limit: 8192,
            lost: 0,
            backlog: 0,
            feature_bitmap: None,
            backlog_wait_time: None,
            backlog_wait_time_actual: None,
        }
    }

    #[test]
    fn auto_picks_multicast_from_3_16_when_auditd_runs_or_is_installed() {
        let (kind, why) =
            choose(SourceKind::Auto, (3, 16, 0), &status(812), None).expect("multicast");
        assert_eq!(kind, SourceKind::Multicast);
        assert!(why.contains("3.16.0") && why.contains("pid 812"), "{why}");
        let (kind, why) = choose(
            SourceKind::Auto,
            (6, 1, 0),
            &status(0),
            Some("/sbin/auditd"),
        )
        .expect("multicast");
        assert_eq!(kind, SourceKind::Multicast);
        assert!(why.contains("auditd is installed (/sbin/auditd)"), "{why}");
    }

    #[test]
    fn auto_registers_only_where_no_auditd_is_installed() {
        let (kind, why) = choose(SourceKind::Auto, (6, 1, 0), &status(0), None).expect("unicast");
        assert_eq!(kind, SourceKind::Unicast);
        assert!(why.contains("no auditd installed"), "{why}");
        assert_eq!(
            choose(SourceKind::Auto, (3, 10, 0), &status(0), None).map(|c| c.0),
            Ok(SourceKind::Unicast)
        );
        let err =
            choose(SourceKind::Auto, (3, 10, 0), &status(812), None).expect_err("auditd owns it");
        assert!(
            err.contains("pid 812") && err.contains("plugins.d/auditsentry.conf"),
            "{err}"
        );
        // At boot auditd may not have started yet: installed is enough to leave it its place.
        let err = choose(
            SourceKind::Auto,
            (3, 10, 0),
            &status(0),
            Some("/sbin/auditd"),
        )
        .expect_err("auditd installed, no multicast");
        assert!(
            err.contains("/sbin/auditd") && err.contains("plugins.d/auditsentry.conf"),
            "{err}"
        );
    }

    #[test]
    fn unicast_never_steals_a_registered_daemon() {
        let err = choose(SourceKind::Unicast, (6, 1, 0), &status(4410), None).expect_err("refused");
        assert!(err.contains("pid 4410"), "{err}");
        assert_eq!(
            choose(SourceKind::Unicast, (6, 1, 0), &status(0), None).map(|c| c.0),
            Ok(SourceKind::Unicast)
        );
        let (_, why) = choose(
            SourceKind::Unicast,
            (6, 1, 0),
            &status(0),
            Some("/sbin/auditd"),
        )
        .expect("unicast as asked");
        assert!(why.contains("switches to multicast"), "{why}");
    }

    #[test]
    fn multicast_on_old_kernels_is_refused_with_the_reason() {
        let err =
            choose(SourceKind::Multicast, (3, 10, 0), &status(0), None).expect_err("no multicast");
        assert!(err.contains("3.16"), "{err}");
    }
}
