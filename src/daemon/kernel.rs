//! The kernel side of running live: which source `auto` picks and why, and the audit rules the agent
//! needs — added only when missing, removed on exit only if the agent added them.

use super::journal::{Changes, Journal, JournalError};
use crate::audit::{fileop, link, netconn};
use crate::rule::file::EventNeeds;
use crate::source::netlink::wire::{
    AUDIT_ALWAYS, AUDIT_ARCH, AUDIT_EQUAL, AUDIT_FILTERKEY, AUDIT_FILTER_EXIT, AUDIT_KEY_SEPARATOR,
    AUDIT_NOT_EQUAL, AUDIT_PID,
};
use crate::source::netlink::{
    Arch, AuditSocket, FieldValue, NetlinkError, RuleData, Status, WireError,
};
use nix::libc;
use std::fmt;

/// Filter key of the rules the agent adds (`-k auditsentry`).
pub const RULE_KEY: &str = "auditsentry";

/// Every filter key of the rules the agent adds: execve, link syscalls, file and network events.
pub const AGENT_KEYS: [&str; 4] = [RULE_KEY, link::LINK_KEY, fileop::FILE_KEY, netconn::NET_KEY];

/// Which audit rules the agent wants besides the execve ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The link-syscall rules (extended detector).
    pub link: bool,
    /// The file and network rules, while a loaded rule needs those events.
    pub events: EventNeeds,
}

/// The rules for file events (`file`) or network events on `arch`, for agent `pid`.
fn event_rules(arch: Arch, file: bool, pid: Option<u32>) -> Result<Vec<RuleData>, WireError> {
    if file {
        fileop::file_rules(arch, pid)
    } else {
        netconn::net_rules(arch, pid)
    }
}

/// `rule` without its `-F pid` conditions, to compare rules made for different agents.
fn without_pid(rule: &RuleData) -> RuleData {
    let mut r = rule.clone();
    r.fields.retain(|f| f.field != AUDIT_PID);
    r
}

/// The ABIs of this host lacking one of the file (`file`) or network event rules.
fn missing_event_rules(rules: &[RuleData], file: bool) -> Vec<Arch> {
    let loaded: Vec<RuleData> = rules.iter().map(without_pid).collect();
    Arch::host()
        .iter()
        .copied()
        .filter(|a| {
            event_rules(*a, file, None).map_or(true, |want| {
                want.iter().any(|w| !loaded.contains(&without_pid(w)))
            })
        })
        .collect()
}

/// Why the kernel cannot give the agent what it needs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Audit is off and the agent may not change rules.
    #[error("kernel audit is disabled (enabled=0) and manage_rules is off: run `auditctl -e 1`")]
    Disabled,
    /// Audit is locked (enabled = 2) without the execve rules the agent needs.
    #[error(
        "kernel audit rules are locked (enabled=2) and no rule audits every execve; copy \
         /usr/share/doc/auditsentry/examples/auditsentry.rules to /etc/audit/rules.d/ and \
         reboot, or add: {}",
        .missing.join(" ; ")
    )]
    Locked {
        /// The `-a` lines missing, as auditctl would take them.
        missing: Vec<String>,
    },
    /// The journal of kernel changes could not be written, so the change was not made. (The
    /// message holds the journal error's, so it is not also the `source()`.)
    #[error("{0}; the kernel was not changed")]
    Journal(JournalError),
    /// The agent that wrote the journal still runs: its changes are not leftovers.
    #[error(
        "the agent that journaled its kernel changes (pid {pid}) is still running; stop it first"
    )]
    AgentRunning {
        /// Its pid.
        pid: u32,
    },
}

impl From<JournalError> for KernelError {
    fn from(e: JournalError) -> Self {
        KernelError::Journal(e)
    }
}

/// The kernel requests rule management needs: a seam, so the logic can be tested against a
/// fake kernel (the live tests use the real one).
pub trait AuditControl {
    /// AUDIT_GET.
    fn status(&mut self) -> Result<Status, NetlinkError>;
    /// AUDIT_LIST_RULES.
    fn list_rules(&mut self) -> Result<Vec<RuleData>, NetlinkError>;
    /// AUDIT_ADD_RULE.
    fn add_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError>;
    /// AUDIT_DEL_RULE.
    fn del_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError>;
    /// AUDIT_SET enabled.
    fn set_enabled(&mut self, enabled: bool) -> Result<(), NetlinkError>;
}

impl AuditControl for AuditSocket {
    fn status(&mut self) -> Result<Status, NetlinkError> {
        AuditSocket::status(self)
    }
    fn list_rules(&mut self) -> Result<Vec<RuleData>, NetlinkError> {
        AuditSocket::list_rules(self)
    }
    fn add_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
        AuditSocket::add_rule(self, rule)
    }
    fn del_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
        AuditSocket::del_rule(self, rule)
    }
    fn set_enabled(&mut self, enabled: bool) -> Result<(), NetlinkError> {
        AuditSocket::set_enabled(self, enabled)
    }
}

/// Whether a failed request failed with `errno`.
fn is_errno(e: &NetlinkError, errno: i32) -> bool {
    matches!(e, NetlinkError::Kernel { errno: n, .. } if *n == errno)
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

/// A rule in about the form `auditctl -l` prints it, for log lines: list and action, arch,
/// syscalls (named when they are the agent's), other fields by number, and the key.
pub fn describe(rule: &RuleData) -> String {
    let arch = Arch::host().iter().copied().find(|a| {
        rule.fields
            .iter()
            .any(|f| f.field == AUDIT_ARCH && f.value == FieldValue::Num(a.audit_arch()))
    });
    let list = if rule.flags & !0x10 == AUDIT_FILTER_EXIT {
        "exit".to_string()
    } else {
        format!("list{}", rule.flags)
    };
    let action = if rule.action == AUDIT_ALWAYS {
        "always"
    } else {
        "never"
    };
    let mut out = format!("-a {action},{list}");
    if let Some(a) = arch {
        out.push_str(&format!(" -F arch={}", arch_name(a)));
    }
    let named = |nr: u32| -> String {
        let Some(a) = arch else {
            return nr.to_string();
        };
        let [execve, execveat] = a.exec_syscalls();
        if nr == execve {
            return "execve".into();
        }
        if nr == execveat {
            return "execveat".into();
        }
        link::syscall_name(a, nr)
            .or_else(|| fileop::syscall_name(a, nr))
            .or_else(|| netconn::syscall_name(a, nr))
            .map_or_else(|| nr.to_string(), str::to_string)
    };
    let syscalls: Vec<String> = (0u32..)
        .zip(rule.mask.iter())
        .flat_map(|(word, bits)| {
            (0..32u32)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| word * 32 + b)
        })
        .map(named)
        .collect();
    if syscalls.len() == 32 * rule.mask.len() {
        out.push_str(" -S all");
    } else if !syscalls.is_empty() {
        out.push_str(&format!(" -S {}", syscalls.join(",")));
    }
    for f in &rule.fields {
        let op = match f.op {
            AUDIT_EQUAL => "=",
            AUDIT_NOT_EQUAL => "!=",
            fileop::AUDIT_BIT_MASK => "&",
            _ => "?",
        };
        match (&f.value, f.field) {
            (_, AUDIT_ARCH) => {}
            (FieldValue::Num(v), AUDIT_PID) => out.push_str(&format!(" -F pid{op}{v}")),
            (FieldValue::Num(v), 104) => out.push_str(&format!(" -F success{op}{v}")),
            (FieldValue::Num(v), id @ fileop::AUDIT_ARG0..=203) => {
                let i = id - fileop::AUDIT_ARG0;
                out.push_str(&format!(" -F a{i}{op}{v:#x}"))
            }
            (FieldValue::Str(k), AUDIT_FILTERKEY) => {
                for part in k.split(|&b| b == AUDIT_KEY_SEPARATOR) {
                    out.push_str(&format!(" -k {}", String::from_utf8_lossy(part)));
                }
            }
            (FieldValue::Num(v), id) => out.push_str(&format!(" -F f{id}{op}{v}")),
            (FieldValue::Str(s), id) => {
                out.push_str(&format!(" -F f{id}{op}{}", String::from_utf8_lossy(s)))
            }
        }
    }
    out
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

/// The agent pid a rule was made for: a rule with one of the agent's keys and `-F pid!=N`
/// (the agent keeps its own syscalls out of its stream) belongs to agent N.
pub fn rule_agent_pid(rule: &RuleData) -> Option<u32> {
    if !AGENT_KEYS.iter().any(|k| rule.has_key(k.as_bytes())) {
        return None;
    }
    rule.fields
        .iter()
        .find_map(|f| match (f.field, f.op, &f.value) {
            (AUDIT_PID, AUDIT_NOT_EQUAL, FieldValue::Num(pid)) => Some(*pid),
            _ => None,
        })
}

/// What the kernel lacks for the agent to see every execve (and, in extended mode, every link).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Audit is off (enabled = 0).
    pub disabled: bool,
    /// Audit is locked (enabled = 2): rules cannot change until reboot.
    pub locked: bool,
    /// ABIs whose execve no rule records.
    pub exec: Vec<Arch>,
    /// ABIs without the link-syscall rule (extended mode only).
    pub link: Vec<Arch>,
    /// ABIs without the file-event rules (while a loaded rule needs file events).
    pub file: Vec<Arch>,
    /// ABIs without the network-event rules (while a loaded rule needs network events).
    pub network: Vec<Arch>,
}

impl Gaps {
    /// The gaps of a kernel in `status` with `rules` loaded.
    pub fn of(status: &Status, rules: &[RuleData], wanted: Wanted) -> Gaps {
        let when =
            |on: bool, missing: &dyn Fn() -> Vec<Arch>| if on { missing() } else { Vec::new() };
        Gaps {
            disabled: status.enabled == 0,
            locked: status.enabled == 2,
            exec: missing_exec_rules(rules),
            link: when(wanted.link, &|| missing_link_rules(rules)),
            file: when(wanted.events.file, &|| missing_event_rules(rules, true)),
            network: when(wanted.events.network, &|| missing_event_rules(rules, false)),
        }
    }

    /// Whether no rule is missing (audit may still be off).
    fn rules_complete(&self) -> bool {
        self.exec.is_empty()
            && self.link.is_empty()
            && self.file.is_empty()
            && self.network.is_empty()
    }

    /// Whether nothing is missing.
    pub fn is_covered(&self) -> bool {
        !self.disabled && self.rules_complete()
    }
}

impl fmt::Display for Gaps {
    /// `kernel audit disabled (enabled=0); no execve rule for b64, b32; ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[Arch]| {
            v.iter()
                .map(|a| arch_name(*a))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if self.disabled {
            parts.push("kernel audit disabled (enabled=0)".to_string());
        }
        if !self.exec.is_empty() {
            parts.push(format!("no rule audits execve for {}", names(&self.exec)));
        }
        if !self.link.is_empty() {
            parts.push(format!("no link-syscall rule for {}", names(&self.link)));
        }
        if !self.file.is_empty() {
            parts.push(format!("no file-event rules for {}", names(&self.file)));
        }
        if !self.network.is_empty() {
            parts.push(format!(
                "no network-event rules for {}",
                names(&self.network)
            ));
        }
        if parts.is_empty() {
            parts.push("nothing missing".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Which agent changed the kernel, so that a later start can tell a dead one from a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentId {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot), when `/proc` told.
    pub start_time: Option<u64>,
}

/// The running kernel's boot id (`/proc/sys/kernel/random/boot_id`), when readable.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

/// What the agent changed in the kernel, to undo on exit; every change is written to the
/// [`Journal`] before it is made, so a later start (or `auditsentry cleanup`) can undo it after
/// a crash.
#[derive(Debug)]
pub struct RuleGuard {
    me: AgentId,
    boot_id: Option<String>,
    added: Vec<RuleData>,
    enabled_by_us: bool,
    /// Past [`prepare`]: audit the agent turns back on now was on when it started (or when
    /// someone else last enabled it), so it is not the agent's to turn off at exit.
    running: bool,
    journal: Option<Journal>,
    /// Keep the added rules on exit (config `keep_rules`).
    pub keep: bool,
}

impl RuleGuard {
    /// A guard for agent `me` that has changed nothing yet; `journal` records its changes.
    pub fn new(me: AgentId, journal: Option<Journal>) -> RuleGuard {
        RuleGuard {
            me,
            boot_id: boot_id(),
            added: Vec::new(),
            enabled_by_us: false,
            running: false,
            journal,
            keep: false,
        }
    }

    /// Rules the agent added.
    pub fn added(&self) -> usize {
        self.added.len()
    }

    /// Whether the agent turned audit on (and turns it off again on exit).
    pub fn enabled_by_us(&self) -> bool {
        self.enabled_by_us
    }

    fn record(&self, extra: Option<&RuleData>, enabled: bool) -> Result<(), JournalError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut rules = self.added.clone();
        rules.extend(extra.cloned());
        journal.write(&Changes {
            pid: self.me.pid,
            start_time: self.me.start_time,
            boot_id: self.boot_id.clone(),
            enabled_audit: enabled,
            rules,
        })
    }

    /// Someone else turned audit on (auditd starting, an operator): it is theirs now, and the
    /// agent leaves it on at exit.
    pub fn enabled_elsewhere(&mut self) -> Result<(), JournalError> {
        if self.enabled_by_us {
            self.enabled_by_us = false;
            self.record(None, false)?;
        }
        Ok(())
    }

    /// Undoes what an agent that is gone left behind: the rules and the enabled flag of the
    /// journal, and any rule with the agent's keys made for another pid that `running_agent`
    /// says is not a running agent (kill -9 leaves `-F pid!=OLD` rules, which an attacker who
    /// gets pid OLD could hide behind). A journal whose agent still runs is an error. Returns
    /// notes for the log, and whether the dead agent had turned audit on (still on now): the
    /// caller takes that over, or turns it off.
    pub fn recover(
        &mut self,
        ctl: &mut dyn AuditControl,
        running_agent: &dyn Fn(AgentId) -> bool,
    ) -> Result<(bool, Vec<String>), KernelError> {
        let mut notes = Vec::new();
        let previous = match &self.journal {
            Some(j) => j.read()?,
            None => None,
        };
        let mut enabled_audit = false;
        let mut journal_rules = Vec::new();
        // A journal of an earlier boot describes a kernel that is gone.
        let previous = previous
            .filter(|p| p.boot_id.is_none() || self.boot_id.is_none() || p.boot_id == self.boot_id);
        if let Some(prev) = previous {
            let them = AgentId {
                pid: prev.pid,
                start_time: prev.start_time,
            };
            if prev.pid != self.me.pid && running_agent(them) {
                return Err(KernelError::AgentRunning { pid: prev.pid });
            }
            enabled_audit = prev.enabled_audit;
            journal_rules = prev.rules;
        }
        let loaded = ctl.list_rules()?;
        let stale = loaded.iter().filter(|r| {
            journal_rules.contains(r)
                || rule_agent_pid(r).is_some_and(|pid| {
                    pid != self.me.pid
                        && !running_agent(AgentId {
                            pid,
                            start_time: None,
                        })
                })
        });
        for rule in stale {
            match ctl.del_rule(rule) {
                Ok(()) => notes.push(format!(
                    "removed a rule left by an agent that is gone: {}",
                    describe(rule)
                )),
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let status = ctl.status()?;
        let still_on = enabled_audit && status.enabled == 1;
        if enabled_audit && !still_on {
            notes.push("the agent that is gone had turned audit on; it is off now".into());
        }
        Ok((still_on, notes))
    }

    /// Takes over an audit-enabled flag set by a dead agent (see [`RuleGuard::recover`]).
    pub fn adopt_enabled(&mut self) -> Result<(), JournalError> {
        self.enabled_by_us = true;
        self.record(None, true)
    }

    /// Closes `gaps`: adds the missing execve (and link) rules, each with `-F pid!=SELF`, and
    /// turns audit on if it is off — each change journaled first. Never touches other rules.
    /// Returns one note per change. Locked audit (enabled = 2) cannot be changed: an error when
    /// something is missing.
    pub fn fill(
        &mut self,
        ctl: &mut dyn AuditControl,
        gaps: &Gaps,
    ) -> Result<Vec<String>, KernelError> {
        let mut notes = Vec::new();
        if gaps.locked {
            if gaps.rules_complete() {
                return Ok(notes);
            }
            return Err(KernelError::Locked {
                missing: gaps.exec.iter().map(|a| rule_line(*a)).collect(),
            });
        }
        let wire =
            |context| move |error| KernelError::Netlink(NetlinkError::Wire { context, error });
        let mut wanted = Vec::new();
        for &arch in &gaps.exec {
            wanted.push(
                RuleData::exec_rule(arch, Some(self.me.pid), RULE_KEY)
                    .map_err(wire("building the execve rule"))?,
            );
        }
        for &arch in &gaps.link {
            wanted.push(
                link::link_rules(arch, Some(self.me.pid))
                    .map_err(wire("building the link rule"))?,
            );
        }
        for (arches, file) in [(&gaps.file, true), (&gaps.network, false)] {
            for &arch in arches {
                wanted.extend(
                    event_rules(arch, file, Some(self.me.pid))
                        .map_err(wire("building the file and network event rules"))?,
                );
            }
        }
        for rule in wanted {
            self.record(Some(&rule), self.enabled_by_us)?;
            match ctl.add_rule(&rule) {
                // An identical rule (ours: it names our pid) is already there.
                Ok(()) => notes.push(format!("added audit rule: {}", describe(&rule))),
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(e) => {
                    self.record(None, self.enabled_by_us)?;
                    return Err(e.into());
                }
            }
            if !self.added.contains(&rule) {
                self.added.push(rule);
            }
        }
        if gaps.disabled {
            // At start the agent owns what it turns on; later, audit was on before someone turned
            // it off (auditd's stop, journald's restart), and the agent leaves it on at exit as it
            // found it, unless it had turned it on itself at start.
            let ours = self.enabled_by_us || !self.running;
            self.record(None, ours)?;
            ctl.set_enabled(true)?;
            self.enabled_by_us = ours;
            notes.push(if ours {
                "kernel audit was disabled; enabled it (it is turned off again on exit)".into()
            } else {
                "kernel audit was disabled; enabled it (it stays on at exit, as the agent found it)"
                    .into()
            });
        }
        Ok(notes)
    }

    /// Deletes the file or network event rules the agent added that `wanted` no longer asks for
    /// (a rule reload dropped the last rule needing them), then journals what is left. Returns
    /// one note per rule removed, or the failure.
    pub fn retire(
        &mut self,
        ctl: &mut dyn AuditControl,
        wanted: Wanted,
    ) -> Result<Vec<String>, KernelError> {
        let unwanted = |r: &RuleData| {
            (!wanted.events.file && r.has_key(fileop::FILE_KEY.as_bytes()))
                || (!wanted.events.network && r.has_key(netconn::NET_KEY.as_bytes()))
        };
        let mut notes = Vec::new();
        while let Some(i) = self.added.iter().position(unwanted) {
            let rule = self.added.remove(i);
            match ctl.del_rule(&rule) {
                Ok(()) => notes.push(format!(
                    "removed audit rule no loaded rule needs: {}",
                    describe(&rule)
                )),
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(e) => {
                    self.added.push(rule);
                    return Err(e.into());
                }
            }
            // Journaled after the delete: a crash in between leaves a journaled rule that is
            // gone, which recovery skips.
            self.record(None, self.enabled_by_us)?;
        }
        Ok(notes)
    }

    /// Undoes what the agent did: deletes exactly the rules it added (unless `keep`; a rule
    /// someone already deleted is no error) and turns audit back off if the agent was the one
    /// that turned it on, then removes the journal. Returns what could not be undone.
    pub fn release(self, ctl: &mut dyn AuditControl) -> Vec<String> {
        let mut problems = Vec::new();
        if self.keep {
            // The rules stay on purpose; the journal stays so the next start replaces them.
            return problems;
        }
        for rule in &self.added {
            match ctl.del_rule(rule) {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(e) => problems.push(format!("removing our rule {}: {e}", describe(rule))),
            }
        }
        if self.enabled_by_us {
            match ctl.status() {
                Ok(s) if s.enabled == 1 => {
                    if let Err(e) = ctl.set_enabled(false) {
                        problems.push(format!("turning audit back off: {e}"));
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("turning audit back off: {e}")),
            }
        }
        if problems.is_empty() {
            if let Some(Err(e)) = self.journal.as_ref().map(Journal::remove) {
                problems.push(e.to_string());
            }
        }
        problems
    }
}

/// Makes sure every execve is audited at start: first undoes what a crashed agent left (see
/// [`RuleGuard::recover`]), then turns audit on if it is off (when `manage`) and adds
/// `-a always,exit -F arch=… -S execve,execveat -F pid!=SELF -k auditsentry` for each ABI no
/// loaded rule fully covers. Never touches other rules. Returns the guard and notes for the log.
pub fn prepare(
    ctl: &mut dyn AuditControl,
    mut guard: RuleGuard,
    manage: bool,
    wanted: Wanted,
    running_agent: &dyn Fn(AgentId) -> bool,
) -> Result<(RuleGuard, Vec<String>), KernelError> {
    let mut notes = Vec::new();
    if manage {
        let (inherited, recovered) = guard.recover(ctl, running_agent)?;
        notes.extend(recovered);
        if inherited {
            guard.adopt_enabled()?;
            notes.push(
                "the agent that is gone had turned audit on: this one turns it off at exit".into(),
            );
        }
    }
    let status = ctl.status()?;
    let rules = ctl.list_rules()?;
    let gaps = Gaps::of(&status, &rules, wanted);
    if gaps.locked {
        if gaps.exec.is_empty() {
            notes.push("audit rules are locked (enabled=2); the loaded rules cover execve".into());
        }
        notes.extend(guard.fill(ctl, &gaps)?);
        guard.running = true;
        return Ok((guard, notes));
    }
    if !manage {
        if gaps.disabled {
            return Err(KernelError::Disabled);
        }
        for arch in gaps.exec {
            notes.push(format!(
                "no rule audits every execve for {}: run `auditctl {}`",
                arch_name(arch),
                rule_line(arch)
            ));
        }
        for (arches, what) in [(&gaps.file, "file"), (&gaps.network, "network")] {
            if !arches.is_empty() {
                notes.push(format!(
                    "loaded rules query {what} events but manage_rules is off: none are made \
                     unless audit rules with key {} exist",
                    if what == "file" {
                        fileop::FILE_KEY
                    } else {
                        netconn::NET_KEY
                    }
                ));
            }
        }
        guard.running = true;
        return Ok((guard, notes));
    }
    notes.extend(guard.fill(ctl, &gaps)?);
    guard.running = true;
    Ok((guard, notes))
}

/// `auditsentry cleanup`: undoes what a stopped or crashed agent left in the kernel, from the
/// journal in its state directory and the agent's keys (see [`RuleGuard::recover`]), turns audit
/// off if that agent had turned it on, and removes the journal. Returns one line per action.
pub fn cleanup(
    ctl: &mut dyn AuditControl,
    journal: Journal,
    me: AgentId,
    running_agent: &dyn Fn(AgentId) -> bool,
) -> Result<Vec<String>, KernelError> {
    let mut guard = RuleGuard::new(me, Some(journal.clone()));
    let (enabled_audit, mut notes) = guard.recover(ctl, running_agent)?;
    if enabled_audit {
        ctl.set_enabled(false)?;
        notes.push("turned kernel audit off again (the agent had turned it on)".into());
    }
    journal.remove()?;
    Ok(notes)
}

/// A kernel in memory for the rule-management tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::AuditControl;
    use crate::source::netlink::{NetlinkError, RuleData, Status};
    use nix::libc;

    /// A kernel in memory: rules, the enabled flag, the lost counter.
    #[derive(Default)]
    pub struct Fake {
        pub rules: Vec<RuleData>,
        pub enabled: u32,
        pub lost: u32,
        pub refuse_adds: bool,
    }

    impl AuditControl for Fake {
        fn status(&mut self) -> Result<Status, NetlinkError> {
            Ok(Status {
                enabled: self.enabled,
                lost: self.lost,
                backlog_limit: 64,
                ..Status::default()
            })
        }
        fn list_rules(&mut self) -> Result<Vec<RuleData>, NetlinkError> {
            Ok(self.rules.clone())
        }
        fn add_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
            if self.refuse_adds {
                return Err(NetlinkError::Kernel {
                    request: "AUDIT_ADD_RULE",
                    errno: libc::EPERM,
                });
            }
            if self.rules.contains(rule) {
                return Err(NetlinkError::Kernel {
                    request: "AUDIT_ADD_RULE",
                    errno: libc::EEXIST,
                });
            }
            self.rules.push(rule.clone());
            Ok(())
        }
        fn del_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
            let before = self.rules.len();
            self.rules.retain(|r| r != rule);
            if self.rules.len() == before {
                return Err(NetlinkError::Kernel {
                    request: "AUDIT_DEL_RULE",
                    errno: libc::ENOENT,
                });
            }
            Ok(())
        }
        fn set_enabled(&mut self, enabled: bool) -> Result<(), NetlinkError> {
            self.enabled = u32::from(enabled);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    use super::fake::Fake;
    use crate::daemon::journal::Journal;

    fn agent(pid: u32) -> AgentId {
        AgentId {
            pid,
            start_time: Some(u64::from(pid) * 10),
        }
    }

    /// Starts agent `pid` on `k` with its journal in `dir`.
    fn start(
        k: &mut Fake,
        dir: &std::path::Path,
        pid: u32,
        alive: &[u32],
    ) -> (RuleGuard, Vec<String>) {
        let guard = RuleGuard::new(agent(pid), Some(Journal::in_dir(dir)));
        let running = |a: AgentId| alive.contains(&a.pid);
        prepare(k, guard, true, Wanted::default(), &running).expect("prepare")
    }

    #[test]
    fn a_crashed_agents_rules_are_replaced_and_its_enabled_flag_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Fake::default();
        let operator = RuleData::syscall_rule(Arch::X86_64, &[263], None, "ops").expect("rule");
        k.rules.push(operator.clone());
        let (old, _) = start(&mut k, dir.path(), 100, &[]);
        assert_eq!((k.enabled, k.rules.len()), (1, 3));
        std::mem::forget(old); // kill -9: nothing undone, the journal stays
        let j = Journal::in_dir(dir.path())
            .read()
            .expect("read")
            .expect("journal");
        assert_eq!((j.pid, j.rules.len(), j.enabled_audit), (100, 2, true));

        let (new, notes) = start(&mut k, dir.path(), 200, &[]);
        assert_eq!(
            notes
                .iter()
                .filter(|n| n.starts_with(
                    "removed a rule left by an agent that is gone: -a always,exit -F arch=b"
                ))
                .count(),
            2,
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("this one turns it off at exit")),
            "{notes:?}"
        );
        assert!(
            k.rules.iter().all(|r| rule_agent_pid(r) != Some(100)),
            "no rule names the dead pid"
        );
        assert_eq!(
            k.rules
                .iter()
                .filter(|r| rule_agent_pid(r) == Some(200))
                .count(),
            2
        );
        assert!(k.rules.contains(&operator), "the operator's rule stays");
        assert!(new.enabled_by_us());
        assert!(new.release(&mut k).is_empty());
        assert_eq!(
            (k.enabled, k.rules.clone()),
            (0, vec![operator]),
            "the kernel as before the first start"
        );
        assert_eq!(
            Journal::in_dir(dir.path()).read().expect("read"),
            None,
            "a clean exit leaves no journal"
        );
    }

    #[test]
    fn rules_of_a_running_agent_or_without_a_pid_are_not_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Fake::default();
        let other = RuleData::exec_rule(Arch::X86_64, Some(300), RULE_KEY).expect("rule");
        let packaged = RuleData::exec_rule(Arch::I386, None, RULE_KEY).expect("rule");
        let stale_link = link::link_rules(Arch::X86_64, Some(301)).expect("rule");
        k.rules = vec![other.clone(), packaged.clone(), stale_link.clone()];
        k.enabled = 1;
        let (guard, notes) = start(&mut k, dir.path(), 400, &[300]);
        assert!(
            k.rules.contains(&other) && k.rules.contains(&packaged),
            "{notes:?}"
        );
        assert!(!k.rules.contains(&stale_link), "{notes:?}");
        assert_eq!(guard.added(), 0, "both ABIs are covered");
        assert!(!guard.enabled_by_us());
        assert!(guard.release(&mut k).is_empty());
        assert_eq!(k.enabled, 1);
    }

    #[test]
    fn a_journal_of_a_running_agent_is_refused_and_one_of_an_earlier_boot_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Fake::default();
        let (live, _) = start(&mut k, dir.path(), 500, &[]);
        let running = |a: AgentId| a.pid == 500;
        let err = cleanup(&mut k, Journal::in_dir(dir.path()), agent(600), &running)
            .expect_err("the agent still runs");
        assert!(
            err.to_string().contains("(pid 500) is still running"),
            "{err}"
        );
        assert_eq!(k.rules.len(), 2, "nothing undone");
        std::mem::forget(live);

        let j = Journal::in_dir(dir.path());
        let mut old = j.read().expect("read").expect("journal");
        old.boot_id = Some("an-earlier-boot".into());
        j.write(&old).expect("write");
        let mut fresh = Fake {
            enabled: 1,
            ..Fake::default()
        };
        let notes = cleanup(&mut fresh, j.clone(), agent(600), &|_| false).expect("cleanup");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            fresh.enabled, 1,
            "audit another boot's agent turned on is not this kernel's"
        );
        assert_eq!(j.read().expect("read"), None);
    }

    #[test]
    fn cleanup_undoes_a_killed_agent_and_a_deleted_rule_is_no_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Fake::default();
        let (guard, _) = start(&mut k, dir.path(), 700, &[]);
        std::mem::forget(guard);
        k.rules.remove(0); // someone deleted one of them meanwhile
        let notes =
            cleanup(&mut k, Journal::in_dir(dir.path()), agent(800), &|_| false).expect("cleanup");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(
            notes[1],
            "turned kernel audit off again (the agent had turned it on)"
        );
        assert_eq!((k.enabled, k.rules.len()), (0, 0));
        let again =
            cleanup(&mut k, Journal::in_dir(dir.path()), agent(800), &|_| false).expect("cleanup");
        assert!(again.is_empty(), "{again:?}");

        // A rule deleted under a running agent: its release says nothing about it.
        let (guard, _) = start(&mut k, dir.path(), 900, &[]);
        k.rules.clear();
        assert!(guard.release(&mut k).is_empty());
    }

    #[test]
    fn describe_reads_like_auditctl() {
        let exec = RuleData::exec_rule(Arch::X86_64, Some(17953), RULE_KEY).expect("rule");
        assert_eq!(
            describe(&exec),
            "-a always,exit -F arch=b64 -S execve,execveat -F pid!=17953 -k auditsentry"
        );
        let links = link::link_rules(Arch::I386, None).expect("rule");
        assert_eq!(
            describe(&links),
            "-a always,exit -F arch=b32 -S link,symlink,linkat,symlinkat -k auditsentry-link"
        );
    }
}

#[cfg(test)]
mod event_rule_tests {
    use super::fake::Fake;
    use super::*;
    use crate::daemon::journal::Journal;

    fn wanted(file: bool, network: bool) -> Wanted {
        Wanted {
            link: false,
            events: EventNeeds { file, network },
        }
    }

    fn keyed(k: &Fake, key: &str) -> usize {
        k.rules.iter().filter(|r| r.has_key(key.as_bytes())).count()
    }

    #[test]
    fn event_rules_come_and_go_with_the_rules_that_need_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Fake::default();
        let me = AgentId {
            pid: 300,
            start_time: None,
        };
        let guard = RuleGuard::new(me, Some(Journal::in_dir(dir.path())));
        let (mut guard, notes) =
            prepare(&mut k, guard, true, wanted(true, false), &|_| false).expect("prepare");
        let per_host = |f: fn(Arch, Option<u32>) -> Result<Vec<RuleData>, WireError>| {
            Arch::host()
                .iter()
                .map(|a| f(*a, None).map_or(0, |r| r.len()))
                .sum::<usize>()
        };
        let files = per_host(fileop::file_rules);
        let nets = per_host(netconn::net_rules);
        assert_eq!(keyed(&k, fileop::FILE_KEY), files, "{notes:?}");
        assert_eq!(keyed(&k, netconn::NET_KEY), 0);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("-S openat -F pid!=300 -F a2&0x40 -F success=1")),
            "{notes:?}"
        );
        // What was added is what the gaps look for, whatever the pid.
        let status = k.status().expect("status");
        assert!(Gaps::of(&status, &k.rules, wanted(true, false)).is_covered());
        let gaps = Gaps::of(&status, &k.rules, wanted(true, true));
        assert_eq!(gaps.network, Arch::host().to_vec());
        guard.fill(&mut k, &gaps).expect("fill");
        assert_eq!(keyed(&k, netconn::NET_KEY), nets);
        let journaled = |dir: &std::path::Path| {
            Journal::in_dir(dir)
                .read()
                .expect("read")
                .map_or(0, |c| c.rules.len())
        };
        let exec = Arch::host().len();
        assert_eq!(journaled(dir.path()), exec + files + nets);
        // A reload keeps only file rules, then none.
        let notes = guard.retire(&mut k, wanted(true, false)).expect("retire");
        assert_eq!(notes.len(), nets);
        assert_eq!(
            (keyed(&k, fileop::FILE_KEY), keyed(&k, netconn::NET_KEY)),
            (files, 0)
        );
        assert_eq!(journaled(dir.path()), exec + files);
        guard.retire(&mut k, wanted(false, false)).expect("retire");
        assert_eq!(keyed(&k, fileop::FILE_KEY), 0);
        assert_eq!(journaled(dir.path()), exec);
        // A crash with event rules loaded: the next start removes them (journal and key).
        let gaps = Gaps::of(&status, &k.rules, wanted(true, true));
        guard.fill(&mut k, &gaps).expect("fill");
        std::mem::forget(guard);
        let next = RuleGuard::new(
            AgentId {
                pid: 301,
                start_time: None,
            },
            Some(Journal::in_dir(dir.path())),
        );
        let (next, _) =
            prepare(&mut k, next, true, Wanted::default(), &|_| false).expect("prepare");
        assert_eq!(keyed(&k, fileop::FILE_KEY) + keyed(&k, netconn::NET_KEY), 0);
        assert!(next.release(&mut k).is_empty());
        assert!(k.rules.is_empty());
    }
}
