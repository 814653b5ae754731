//! The kernel side of running live: which source `auto` picks and why, and the audit rules the agent
//! needs — added only when missing, removed on exit only if the agent added them.

use crate::audit::link;
use crate::source::netlink::wire::AUDIT_ARCH;
use crate::source::netlink::{
    multicast_supported, Arch, AuditSocket, FieldValue, NetlinkError, RuleData, Status,
};
use std::fmt;
use std::path::Path;

/// Filter key of the rules the agent adds (`-k auditsentry`).
pub const RULE_KEY: &str = "auditsentry";

/// Which live source the operator asked for (the config's `source.kind`).
pub use crate::config::SourceKind as SourceRequest;

/// The live source that will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// See [`SourceRequest::Multicast`].
    Multicast,
    /// See [`SourceRequest::Unicast`].
    Unicast,
    /// See [`SourceRequest::Plugin`].
    Plugin,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Multicast => "multicast",
            SourceKind::Unicast => "unicast",
            SourceKind::Plugin => "plugin",
        })
    }
}

/// Where auditd looks for plugin files: auditd ≥ 3 uses /etc/audit/plugins.d, audisp (2.x)
/// /etc/audisp/plugins.d.
pub fn plugin_conf_path() -> &'static str {
    if !Path::new("/etc/audit/plugins.d").is_dir() && Path::new("/etc/audisp/plugins.d").is_dir() {
        "/etc/audisp/plugins.d/auditsentry.conf"
    } else {
        "/etc/audit/plugins.d/auditsentry.conf"
    }
}

/// Picks the source for `request` on a kernel of `version` in state `status`, with the reason; or
/// the one line the operator needs when no source can run.
pub fn choose(
    request: SourceRequest,
    version: (u32, u32, u32),
    status: &Status,
) -> Result<(SourceKind, String), String> {
    let (a, b, c) = version;
    let multicast = multicast_supported(version);
    let owner = status.pid;
    match request {
        SourceRequest::Plugin => Ok((SourceKind::Plugin, "asked for the auditd plugin stream".into())),
        SourceRequest::Multicast if multicast => {
            Ok((SourceKind::Multicast, format!("asked for multicast; kernel {a}.{b}.{c} supports it")))
        }
        SourceRequest::Multicast => Err(format!(
            "kernel {a}.{b}.{c} has no audit multicast (needs 3.16): the socket would bind and receive nothing; \
             use --source unicast (no auditd) or the auditd plugin ({})",
            plugin_conf_path()
        )),
        SourceRequest::Unicast | SourceRequest::Auto if !multicast || request == SourceRequest::Unicast => {
            if owner == 0 {
                Ok((SourceKind::Unicast, format!("kernel {a}.{b}.{c}: no audit daemon is registered, registering")))
            } else {
                Err(format!(
                    "an audit daemon (pid {owner}) owns the kernel's audit stream and will not be taken over; \
                     enable the auditd plugin: set `active = yes` in {} and restart auditd",
                    plugin_conf_path()
                ))
            }
        }
        SourceRequest::Auto | SourceRequest::Unicast => Ok((
            SourceKind::Multicast,
            format!("kernel {a}.{b}.{c} ≥ 3.16 supports audit multicast; it coexists with auditd"),
        )),
    }
}

/// Why the kernel cannot give the agent what it needs.
#[derive(Debug)]
pub enum KernelError {
    /// A netlink request failed.
    Netlink(NetlinkError),
    /// Audit is off and the agent may not change rules.
    Disabled,
    /// Audit is locked (enabled = 2) without the execve rules the agent needs.
    Locked {
        /// The `-a` lines missing, as auditctl would take them.
        missing: Vec<String>,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Netlink(e) => e.fmt(f),
            KernelError::Disabled => {
                write!(f, "kernel audit is disabled (enabled=0) and manage_rules is off: run `auditctl -e 1`")
            }
            KernelError::Locked { missing } => write!(
                f,
                "kernel audit rules are locked (enabled=2) and no rule audits every execve; add to \
                 /etc/audit/rules.d/auditsentry.rules and reboot: {}",
                missing.join(" ; ")
            ),
        }
    }
}

impl std::error::Error for KernelError {}

impl From<NetlinkError> for KernelError {
    fn from(e: NetlinkError) -> Self {
        KernelError::Netlink(e)
    }
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 | Arch::Aarch64 => "b64",
        Arch::I386 | Arch::Arm => "b32",
    }
}

/// `auditctl` form of the execve rule for `arch`.
pub fn rule_line(arch: Arch) -> String {
    format!(
        "-a always,exit -F arch={} -S execve,execveat -k {RULE_KEY}",
        arch_name(arch)
    )
}

/// The ABIs of this host for which no loaded rule records every execve. A rule carrying our key
/// counts too (one left by an earlier run, or the packaged rules.d file), so restarts never stack rules.
pub fn missing_exec_rules(rules: &[RuleData]) -> Vec<Arch> {
    let covers = |r: &RuleData, a: Arch| {
        r.covers_all_execve(a) || (r.has_key(RULE_KEY.as_bytes()) && r.watches_execve(a))
    };
    Arch::host()
        .iter()
        .copied()
        .filter(|a| !rules.iter().any(|r| covers(r, *a)))
        .collect()
}

/// The ABIs of this host without a link-syscall rule of ours (key `auditsentry-link`).
pub fn missing_link_rules(rules: &[RuleData]) -> Vec<Arch> {
    let has = |r: &RuleData, a: Arch| {
        r.has_key(link::LINK_KEY.as_bytes())
            && r.fields
                .iter()
                .any(|f| f.field == AUDIT_ARCH && f.value == FieldValue::Num(a.audit_arch()))
    };
    Arch::host()
        .iter()
        .copied()
        .filter(|a| !rules.iter().any(|r| has(r, *a)))
        .collect()
}

/// What the agent changed in the kernel, to undo on exit.
#[derive(Debug, Default)]
pub struct RuleGuard {
    added: Vec<RuleData>,
    enabled_by_us: bool,
    /// Keep the added rules on exit (config `keep_rules`).
    pub keep: bool,
}

impl RuleGuard {
    /// Rules the agent added.
    pub fn added(&self) -> usize {
        self.added.len()
    }

    /// Undoes what [`prepare`] did: deletes exactly the rules it added (unless `keep`) and turns audit
    /// back off if it was the one that turned it on. Returns what could not be undone.
    pub fn release(self, ctl: &mut AuditSocket) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.keep {
            for rule in &self.added {
                if let Err(e) = ctl.del_rule(rule) {
                    problems.push(format!("removing our execve rule: {e}"));
                }
            }
            if self.enabled_by_us {
                if let Err(e) = ctl.set_enabled(false) {
                    problems.push(format!("turning audit back off: {e}"));
                }
            }
        }
        problems
    }
}

/// Makes sure every execve is audited: turns audit on if it is off (when `manage`), adds
/// `-a always,exit -F arch=… -S execve,execveat -F pid!=SELF -k auditsentry` for each ABI no loaded rule
/// fully covers. Never touches rules it did not add. Returns the guard and notes for the log.
pub fn prepare(
    ctl: &mut AuditSocket,
    self_pid: u32,
    manage: bool,
    extended: bool,
) -> Result<(RuleGuard, Vec<String>), KernelError> {
    let status = ctl.status()?;
    let rules = ctl.list_rules()?;
    let missing = missing_exec_rules(&rules);
    let mut guard = RuleGuard::default();
    let mut notes = Vec::new();
    if status.enabled == 2 {
        if missing.is_empty() {
            notes.push("audit rules are locked (enabled=2); the loaded rules cover execve".into());
            return Ok((guard, notes));
        }
        return Err(KernelError::Locked {
            missing: missing.into_iter().map(rule_line).collect(),
        });
    }
    if !manage {
        if status.enabled == 0 {
            return Err(KernelError::Disabled);
        }
        for arch in missing {
            notes.push(format!(
                "no rule audits every execve for {}: run `auditctl {}`",
                arch_name(arch),
                rule_line(arch)
            ));
        }
        return Ok((guard, notes));
    }
    for arch in missing {
        let rule = RuleData::exec_rule(arch, Some(self_pid), RULE_KEY).map_err(|e| {
            KernelError::Netlink(NetlinkError::Wire {
                context: "building the execve rule",
                source: e,
            })
        })?;
        ctl.add_rule(&rule)?;
        notes.push(format!(
            "added audit rule: {} -F pid!={self_pid}",
            rule_line(arch)
        ));
        guard.added.push(rule);
    }
    if extended {
        for arch in missing_link_rules(&rules) {
            let rule = link::link_rules(arch, Some(self_pid)).map_err(|e| {
                KernelError::Netlink(NetlinkError::Wire {
                    context: "building the link rule",
                    source: e,
                })
            })?;
            ctl.add_rule(&rule)?;
            notes.push(format!(
                "added audit rule: -a always,exit -F arch={} -S symlink,symlinkat,link,linkat \
                 -F pid!={self_pid} -k {}",
                arch_name(arch),
                link::LINK_KEY
            ));
            guard.added.push(rule);
        }
    }
    if status.enabled == 0 {
        ctl.set_enabled(true)?;
        guard.enabled_by_us = true;
        notes.push("kernel audit was disabled; enabled it (it is turned off again on exit)".into());
    }
    Ok((guard, notes))
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
    fn auto_picks_multicast_from_3_16() {
        let (kind, why) = choose(SourceRequest::Auto, (3, 16, 0), &status(812)).expect("multicast");
        assert_eq!(kind, SourceKind::Multicast);
        assert!(why.contains("3.16.0"), "{why}");
    }

    #[test]
    fn auto_on_3_10_registers_only_without_a_daemon() {
        assert_eq!(
            choose(SourceRequest::Auto, (3, 10, 0), &status(0)).map(|c| c.0),
            Ok(SourceKind::Unicast)
        );
        let err =
            choose(SourceRequest::Auto, (3, 10, 0), &status(812)).expect_err("auditd owns it");
        assert!(
            err.contains("pid 812") && err.contains("plugins.d/auditsentry.conf"),
            "{err}"
        );
    }

    #[test]
    fn unicast_never_steals_a_registered_daemon() {
        let err = choose(SourceRequest::Unicast, (6, 1, 0), &status(4410)).expect_err("refused");
        assert!(err.contains("pid 4410"), "{err}");
        assert_eq!(
            choose(SourceRequest::Unicast, (6, 1, 0), &status(0)).map(|c| c.0),
            Ok(SourceKind::Unicast)
        );
    }

    #[test]
    fn multicast_on_old_kernels_is_refused_with_the_reason() {
        let err =
            choose(SourceRequest::Multicast, (3, 10, 0), &status(0)).expect_err("no multicast");
        assert!(err.contains("3.16"), "{err}");
    }

    #[test]
    fn rules_that_narrow_execve_do_not_count_as_coverage() {
        let ours = RuleData::exec_rule(Arch::X86_64, Some(1), RULE_KEY).expect("rule");
        let plain = RuleData::exec_rule(Arch::I386, None, "exec").expect("rule");
        assert!(!ours.covers_all_execve(Arch::X86_64), "pid!= narrows it");
        assert!(plain.covers_all_execve(Arch::I386));
        assert_eq!(
            missing_exec_rules(std::slice::from_ref(&plain)),
            vec![Arch::X86_64]
        );
        assert_eq!(
            missing_exec_rules(&[plain, ours]),
            Vec::<Arch>::new(),
            "our own rule counts"
        );
    }
}
