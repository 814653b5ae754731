//! The coverage watchdog: notices when the agent stops seeing, says so, and restores what it
//! manages.
//!
//! Coverage is lost when kernel audit is turned off (`auditctl -e 0`, auditd's stop, a restart
//! of systemd-journald without `Audit=`), when the rules that record execve are deleted
//! (`auditctl -D`, an `auditctl -R` file starting with `-D`), or when records are dropped on the
//! way (the kernel's `lost` counter, socket overruns, serials that never arrive, a full queue to
//! the worker). The watchdog looks at the kernel (AUDIT_GET, AUDIT_LIST_RULES) every
//! [`CHECK_PERIOD`] and at once when a CONFIG_CHANGE event passes; what is missing yields one
//! warning line naming what was lost, since when and by whom (when the records say), and, when
//! the agent manages rules, it re-adds them and turns audit back on, then reports
//! `coverage restored`. Losses of records cannot be undone: each kind yields a warning with its
//! counts, at most one per kind per [`LOSS_WARNING_INTERVAL`].

use super::kernel::{AuditControl, Gaps, RuleGuard, Wanted, AGENT_KEYS};
use crate::audit::config_change::ConfigChange;
use crate::audit::record::AuditTime;
use crate::event::timestamp;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the kernel is looked at (besides at every configuration change).
pub const CHECK_PERIOD: Duration = Duration::from_secs(2);
/// At most one warning per kind of record loss in this interval; later losses are summed into
/// the next warning.
pub const LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// Configuration changes remembered to name who caused a loss.
const RECENT_CHANGES: usize = 16;

/// Loss counters as the agent reads them: totals since it started (the kernel's since boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    /// Socket receive-queue overruns (ENOBUFS).
    pub enobufs: u64,
    /// Serials missing from the kernel's sequence.
    pub lost_serials: u64,
    /// Record batches dropped because the worker's queue was full, in frames.
    pub channel_drops: u64,
    /// Process events (forks, exits) lost: connector overruns and channel drops.
    pub proc_events: u64,
}

/// The kinds of record loss, each warned about on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossKind {
    KernelLost,
    Enobufs,
    LostSerials,
    ChannelDrops,
    ProcEvents,
}

impl LossKind {
    const ALL: [LossKind; 5] = [
        LossKind::KernelLost,
        LossKind::Enobufs,
        LossKind::LostSerials,
        LossKind::ChannelDrops,
        LossKind::ProcEvents,
    ];

    /// The warning for `new` more of this loss, `total` in all.
    fn describe(self, new: u64, total: u64, backlog_limit: u32) -> String {
        match self {
            LossKind::KernelLost => format!(
                "the kernel dropped {new} audit record(s) (kernel_lost={total}, backlog_limit={backlog_limit}; \
                 a larger backlog helps: auditctl -b 8192)"
            ),
            LossKind::Enobufs => format!(
                "the audit socket overflowed {new} time(s) and the records in it were dropped (enobufs={total})"
            ),
            LossKind::LostSerials => format!(
                "{new} audit event serial(s) never arrived (lost_serials={total})"
            ),
            LossKind::ChannelDrops => format!(
                "{new} record(s) dropped because the worker fell behind (channel_drops={total})"
            ),
            LossKind::ProcEvents => format!(
                "{new} loss(es) of process events (proc_lost={total}); exited processes now also \
                 expire by /proc checks"
            ),
        }
    }
}

/// Rate limiting of one kind of loss.
#[derive(Debug, Default)]
struct LossState {
    /// The total at the last warning (or at start).
    reported: Option<u64>,
    /// When the last warning went out.
    warned: Option<Instant>,
    /// When the losses not yet reported were first seen.
    since: Option<AuditTime>,
}

/// An episode of lost coverage, until it is restored.
#[derive(Debug)]
struct Incident {
    gaps: Gaps,
    since: AuditTime,
    /// The failure to restore already reported, so it is not repeated every check.
    unrestorable: Option<String>,
}

/// The watchdog's state; the daemon calls [`Watchdog::check`] every [`CHECK_PERIOD`] and after
/// [`Watchdog::note_changes`] asks for it.
#[derive(Debug)]
pub struct Watchdog {
    me: u32,
    manage: bool,
    wanted: Wanted,
    incident: Option<Incident>,
    recent: VecDeque<ConfigChange>,
    losses: [LossState; 5],
    /// Any loss or gap since the last status line.
    degraded: bool,
    enabled: Option<u32>,
    check_failed: bool,
}

impl Watchdog {
    /// A watchdog for agent `me`, restoring rules only when `manage`; `wanted` says which rules
    /// besides the execve ones must be there.
    pub fn new(me: u32, manage: bool, wanted: Wanted) -> Watchdog {
        Watchdog {
            me,
            manage,
            wanted,
            incident: None,
            recent: VecDeque::new(),
            losses: Default::default(),
            degraded: false,
            enabled: None,
            check_failed: false,
        }
    }

    /// The rules besides the execve ones that must be there.
    pub fn wanted(&self) -> Wanted {
        self.wanted
    }

    /// The rules that must be there changed (a rule reload).
    pub fn set_wanted(&mut self, wanted: Wanted) {
        self.wanted = wanted;
    }

    /// Takes the configuration changes that passed: remembers those not made by the agent to
    /// name the culprit of a loss, and hands over the enabled flag when someone else turned audit
    /// on. Returns whether the kernel should be checked now (a change not made by the agent).
    pub fn note_changes(&mut self, changes: Vec<ConfigChange>, guard: &mut RuleGuard) -> bool {
        let mut foreign = false;
        for change in changes {
            if change.pid == Some(self.me) {
                continue;
            }
            foreign = true;
            if change.succeeded() && change.new_value("audit_enabled") == Some(1) {
                // auditd (or an operator) wants audit on: it stays on when the agent exits.
                let _ = guard.enabled_elsewhere();
            }
            if self.recent.len() == RECENT_CHANGES {
                self.recent.pop_front();
            }
            self.recent.push_back(change);
        }
        foreign
    }

    /// The latest remembered change that fits `pred`.
    fn culprit(&self, pred: impl Fn(&ConfigChange) -> bool) -> Option<&ConfigChange> {
        self.recent.iter().rev().find(|c| c.succeeded() && pred(c))
    }

    /// `GAP at TIME by WHO (CHANGE)`, or `GAP (found at NOW)` when no change explains it.
    fn blame(&self, what: String, change: Option<&ConfigChange>, now: AuditTime) -> String {
        match change {
            Some(c) => format!("{what} at {} by {} ({c})", timestamp(c.time), c.who()),
            None => format!("{what} (found at {})", timestamp(now)),
        }
    }

    /// Describes `gaps` part by part, each with its culprit; returns the line and when the
    /// coverage was first lost.
    fn describe(&self, gaps: &Gaps, now: AuditTime) -> (String, AuditTime) {
        let ours = |c: &ConfigChange| {
            c.op.as_deref() == Some("remove_rule")
                && c.key.as_deref().is_some_and(|k| {
                    k.split(|&b| b == b'\x01')
                        .any(|p| AGENT_KEYS.iter().any(|k| p == k.as_bytes()))
                })
        };
        let mut parts = Vec::new();
        let mut since = now;
        let mut part = |gap: &Gaps, change: Option<&ConfigChange>| {
            if let Some(c) = change {
                since = since.min(c.time);
            }
            parts.push(self.blame(gap.to_string(), change, now));
        };
        if gaps.disabled {
            let only = Gaps {
                disabled: true,
                ..Gaps::default()
            };
            part(
                &only,
                self.culprit(|c| c.new_value("audit_enabled") == Some(0)),
            );
        }
        let rules = Gaps {
            disabled: false,
            locked: false,
            ..gaps.clone()
        };
        if rules != Gaps::default() {
            part(&rules, self.culprit(ours));
        }
        (parts.join("; "), since)
    }

    /// Looks at the kernel: reports lost coverage (one line per episode, and again if what is
    /// missing changes), restores it when the agent manages rules, and reports record losses
    /// (`losses` from the agent's counters, the kernel's `lost` from AUDIT_GET). Returns the
    /// warning lines, in order.
    pub fn check(
        &mut self,
        ctl: &mut dyn AuditControl,
        guard: &mut RuleGuard,
        losses: Losses,
        now: Instant,
        wall: AuditTime,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let (status, rules) = match ctl.status().and_then(|s| Ok((s, ctl.list_rules()?))) {
            Ok(x) => {
                self.check_failed = false;
                x
            }
            Err(e) => {
                if !self.check_failed {
                    lines.push(format!("coverage unknown: cannot ask the kernel: {e}"));
                    self.check_failed = true;
                }
                self.degraded = true;
                return lines;
            }
        };
        self.enabled = Some(status.enabled);
        let gaps = Gaps::of(&status, &rules, self.wanted);
        if gaps.is_covered() {
            if let Some(inc) = self.incident.take() {
                lines.push(format!(
                    "coverage restored: by someone else; {} (blind since {})",
                    inc.gaps,
                    timestamp(inc.since)
                ));
            }
        } else {
            self.degraded = true;
            let new_gaps = self.incident.as_ref().is_none_or(|i| i.gaps != gaps);
            if new_gaps {
                let (what, since) = self.describe(&gaps, wall);
                let since = self.incident.as_ref().map_or(since, |i| i.since.min(since));
                lines.push(format!("coverage lost: {what}"));
                self.incident = Some(Incident {
                    gaps: gaps.clone(),
                    since,
                    unrestorable: None,
                });
            }
            lines.extend(self.restore(ctl, guard, &gaps, wall));
        }
        lines.extend(self.check_losses(
            losses,
            u64::from(status.lost),
            status.backlog_limit,
            now,
            wall,
        ));
        lines
    }

    /// Closes `gaps` when the agent may, and says how that went.
    fn restore(
        &mut self,
        ctl: &mut dyn AuditControl,
        guard: &mut RuleGuard,
        gaps: &Gaps,
        wall: AuditTime,
    ) -> Vec<String> {
        let why_not = if !self.manage {
            Some("not restored: manage_rules is off".to_string())
        } else {
            match guard.fill(ctl, gaps) {
                Ok(done) => {
                    let since = self.incident.take().map_or(wall, |i| i.since);
                    let blind = wall.as_millis().saturating_sub(since.as_millis());
                    return vec![format!(
                        "coverage restored: {} (blind since {}, {}.{:03} s)",
                        done.join("; "),
                        timestamp(since),
                        blind / 1000,
                        blind % 1000
                    )];
                }
                Err(e) => Some(format!("cannot restore it: {e}")),
            }
        };
        match (&mut self.incident, why_not) {
            (Some(inc), Some(why)) if inc.unrestorable.as_ref() != Some(&why) => {
                inc.unrestorable = Some(why.clone());
                vec![format!("coverage lost: {why}")]
            }
            _ => Vec::new(),
        }
    }

    /// One rate-limited warning per kind of loss that grew.
    fn check_losses(
        &mut self,
        losses: Losses,
        kernel_lost: u64,
        backlog_limit: u32,
        now: Instant,
        wall: AuditTime,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for (kind, state) in LossKind::ALL.into_iter().zip(self.losses.iter_mut()) {
            let total = match kind {
                LossKind::KernelLost => kernel_lost,
                LossKind::Enobufs => losses.enobufs,
                LossKind::LostSerials => losses.lost_serials,
                LossKind::ChannelDrops => losses.channel_drops,
                LossKind::ProcEvents => losses.proc_events,
            };
            // The kernel counts since boot: only what is lost while the agent runs is news.
            let base = *state.reported.get_or_insert(match kind {
                LossKind::KernelLost => total,
                _ => 0,
            });
            let new = total.saturating_sub(base);
            if new == 0 {
                continue;
            }
            self.degraded = true;
            let since = *state.since.get_or_insert(wall);
            if state
                .warned
                .is_some_and(|t| now.saturating_duration_since(t) < LOSS_WARNING_INTERVAL)
            {
                continue;
            }
            state.warned = Some(now);
            state.reported = Some(total);
            state.since = None;
            lines.push(format!(
                "records lost: {} since {}",
                kind.describe(new, total, backlog_limit),
                timestamp(since)
            ));
        }
        lines
    }

    /// `enabled=N coverage=ok|degraded` for the status line: degraded while coverage is lost,
    /// or when anything was lost since the previous status line.
    pub fn status_fields(&mut self) -> String {
        let degraded = self.degraded || self.incident.is_some();
        self.degraded = false;
        format!(
            "enabled={} coverage={}",
            self.enabled
                .map_or_else(|| "?".to_string(), |e| e.to_string()),
            if degraded { "degraded" } else { "ok" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::kernel::fake::Fake;
    use crate::daemon::kernel::{AgentId, RuleGuard};
    use crate::source::netlink::RuleData;

    const ME: u32 = 4242;

    fn started(fake: &mut Fake) -> (Watchdog, RuleGuard) {
        let guard = RuleGuard::new(
            AgentId {
                pid: ME,
                start_time: None,
            },
            None,
        );
        let (guard, _) =
            super::super::kernel::prepare(fake, guard, true, Wanted::default(), &|_| false)
                .expect("prepare");
        (Watchdog::new(ME, true, Wanted::default()), guard)
    }

    fn at(sec: u64) -> AuditTime {
        AuditTime { sec, msec: 0 }
    }

    fn change(text: &str, pid: u32) -> ConfigChange {
        let rec = crate::audit::reassemble::test_support::parse_line(
            format!("type=CONFIG_CHANGE msg=audit(1700000000.500:9): {text}").as_bytes(),
        )
        .expect("record");
        let mut c = ConfigChange::from_event(&crate::audit::reassemble::Event {
            node: None,
            serial: 9,
            time: rec.time,
            records: vec![rec],
            end: crate::audit::reassemble::EventEnd::Eoe,
            truncated: false,
        })
        .expect("change");
        c.pid = Some(pid);
        c
    }

    #[test]
    fn deleted_rules_are_reported_once_with_the_culprit_and_restored() {
        let mut k = Fake::default();
        let (mut w, mut guard) = started(&mut k);
        let t0 = Instant::now();
        assert_eq!(k.enabled, 1);
        assert_eq!(k.rules.len(), 2);
        assert!(w
            .check(&mut k, &mut guard, Losses::default(), t0, at(1_700_000_000))
            .is_empty());
        assert_eq!(w.status_fields(), "enabled=1 coverage=ok");

        // auditctl -D, and its records.
        k.rules.clear();
        let changes = vec![
            change(
                "auid=0 ses=2 op=remove_rule key=\"auditsentry\" list=4 res=1",
                77,
            ),
            change(
                "auid=0 ses=2 op=remove_rule key=\"auditsentry\" list=4 res=1",
                77,
            ),
        ];
        assert!(
            w.note_changes(changes, &mut guard),
            "someone else changed the kernel"
        );
        let lines = w.check(&mut k, &mut guard, Losses::default(), t0, at(1_700_000_001));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("coverage lost: no rule audits execve for b64, b32 at 2023-11-14T22:13:20.500Z by pid=77 auid=0 (op=remove_rule"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("coverage restored: added audit rule: -a always,exit -F arch=b64 -S execve,execveat -F pid!=4242 -k auditsentry; added audit rule: -a always,exit -F arch=b32"),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with("(blind since 2023-11-14T22:13:20.500Z, 0.500 s)"),
            "{lines:?}"
        );
        assert_eq!(k.rules.len(), 2, "rules back");
        assert_eq!(guard.added(), 2);
        assert_eq!(w.status_fields(), "enabled=1 coverage=degraded");
        assert_eq!(
            w.status_fields(),
            "enabled=1 coverage=ok",
            "until the next status line"
        );
        assert!(w
            .check(&mut k, &mut guard, Losses::default(), t0, at(1_700_000_002))
            .is_empty());
        // Our own changes are no news.
        assert!(!w.note_changes(
            vec![change("op=add_rule key=\"auditsentry\" res=1", ME)],
            &mut guard
        ));
    }

    #[test]
    fn disabled_audit_is_turned_back_on_and_ownership_follows_the_last_to_enable() {
        let mut k = Fake::default();
        let (mut w, mut guard) = started(&mut k);
        assert!(guard.enabled_by_us());
        let t0 = Instant::now();
        k.enabled = 0;
        w.note_changes(
            vec![change(
                "op=set audit_enabled=0 old=1 auid=1000 ses=4 res=1",
                99,
            )],
            &mut guard,
        );
        let lines = w.check(&mut k, &mut guard, Losses::default(), t0, at(1_700_000_003));
        assert!(
            lines[0].starts_with("coverage lost: kernel audit disabled (enabled=0) at 2023-11-14T22:13:20.500Z by pid=99 auid=1000 (op=set audit_enabled=0 old=1)"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("coverage restored: kernel audit was disabled; enabled it"),
            "{lines:?}"
        );
        assert_eq!(k.enabled, 1);
        // auditd starts and enables audit itself: at exit the agent leaves it on.
        w.note_changes(
            vec![change(
                "op=set audit_enabled=1 old=1 auid=4294967295 ses=4294967295 res=1",
                500,
            )],
            &mut guard,
        );
        assert!(!guard.enabled_by_us());
        assert!(guard.release(&mut k).is_empty());
        assert_eq!(k.enabled, 1, "auditd's audit stays on");
        assert!(k.rules.is_empty(), "our rules went");
    }

    #[test]
    fn audit_found_on_and_turned_off_by_someone_is_left_on_at_exit() {
        let mut k = Fake {
            enabled: 1,
            ..Fake::default()
        };
        let (mut w, mut guard) = started(&mut k);
        assert!(!guard.enabled_by_us());
        // journald's restart (Audit= unset) or auditd's stop turns audit off; the agent turns it
        // back on, and at exit leaves it on, as it was when the agent started.
        k.enabled = 0;
        let lines = w.check(
            &mut k,
            &mut guard,
            Losses::default(),
            Instant::now(),
            at(1_700_000_003),
        );
        assert!(
            lines[1].contains("it stays on at exit, as the agent found it"),
            "{lines:?}"
        );
        assert_eq!(k.enabled, 1);
        assert!(!guard.enabled_by_us());
        assert!(guard.release(&mut k).is_empty());
        assert_eq!(k.enabled, 1, "audit stays on as found");
        assert!(k.rules.is_empty(), "our rules went");
    }

    #[test]
    fn locked_or_unmanaged_coverage_is_reported_once_per_change() {
        let mut k = Fake::default();
        let (_, mut guard) = started(&mut k);
        let mut w = Watchdog::new(ME, false, Wanted::default());
        let t0 = Instant::now();
        k.rules.clear();
        let first = w.check(&mut k, &mut guard, Losses::default(), t0, at(5));
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(
            first[0].starts_with("coverage lost: no rule audits execve for b64, b32 (found at"),
            "{first:?}"
        );
        assert_eq!(first[1], "coverage lost: not restored: manage_rules is off");
        assert!(
            w.check(&mut k, &mut guard, Losses::default(), t0, at(7))
                .is_empty(),
            "no repeat"
        );
        k.enabled = 0;
        let more = w.check(&mut k, &mut guard, Losses::default(), t0, at(9));
        assert!(
            more[0].starts_with("coverage lost: kernel audit disabled (enabled=0) (found at"),
            "{more:?}"
        );
        k.enabled = 1;
        k.rules = vec![
            RuleData::exec_rule(crate::source::netlink::Arch::X86_64, None, "ops").expect("rule"),
        ];
        k.rules.push(
            RuleData::exec_rule(crate::source::netlink::Arch::I386, None, "ops").expect("rule"),
        );
        let back = w.check(&mut k, &mut guard, Losses::default(), t0, at(11));
        assert_eq!(back.len(), 1, "{back:?}");
        assert!(
            back[0].starts_with("coverage restored: by someone else;"),
            "{back:?}"
        );

        // Managed, but the kernel refuses: said once.
        let mut w = Watchdog::new(ME, true, Wanted::default());
        k.rules.clear();
        k.refuse_adds = true;
        let refused = w.check(&mut k, &mut guard, Losses::default(), t0, at(13));
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[1].contains("cannot restore it: audit netlink: kernel refused AUDIT_ADD_RULE"),
            "{refused:?}"
        );
        assert!(w
            .check(&mut k, &mut guard, Losses::default(), t0, at(15))
            .is_empty());
    }

    #[test]
    fn each_kind_of_loss_is_warned_at_most_once_a_minute_with_its_counts() {
        let mut k = Fake {
            lost: 1000,
            ..Fake::default()
        };
        let (mut w, mut guard) = started(&mut k);
        let t0 = Instant::now();
        assert!(
            w.check(&mut k, &mut guard, Losses::default(), t0, at(100))
                .is_empty(),
            "what the kernel lost before the agent started is no news"
        );
        k.lost = 1012;
        let losses = Losses {
            enobufs: 1,
            lost_serials: 9347,
            ..Losses::default()
        };
        let lines = w.check(&mut k, &mut guard, losses, t0, at(102));
        assert_eq!(
            lines,
            [
                "records lost: the kernel dropped 12 audit record(s) (kernel_lost=1012, backlog_limit=64; a larger backlog helps: auditctl -b 8192) since 1970-01-01T00:01:42.000Z",
                "records lost: the audit socket overflowed 1 time(s) and the records in it were dropped (enobufs=1) since 1970-01-01T00:01:42.000Z",
                "records lost: 9347 audit event serial(s) never arrived (lost_serials=9347) since 1970-01-01T00:01:42.000Z",
            ]
        );
        // More within the minute: summed, not said.
        k.lost = 1020;
        let more = Losses {
            enobufs: 3,
            ..losses
        };
        assert!(w
            .check(
                &mut k,
                &mut guard,
                more,
                t0 + Duration::from_secs(30),
                at(132)
            )
            .is_empty());
        assert_eq!(w.status_fields(), "enabled=1 coverage=degraded");
        let later = w.check(
            &mut k,
            &mut guard,
            more,
            t0 + Duration::from_secs(61),
            at(163),
        );
        assert_eq!(
            later,
            [
                "records lost: the kernel dropped 8 audit record(s) (kernel_lost=1020, backlog_limit=64; a larger backlog helps: auditctl -b 8192) since 1970-01-01T00:02:12.000Z",
                "records lost: the audit socket overflowed 2 time(s) and the records in it were dropped (enobufs=3) since 1970-01-01T00:02:12.000Z",
            ]
        );
        assert!(w
            .check(
                &mut k,
                &mut guard,
                more,
                t0 + Duration::from_secs(200),
                at(300)
            )
            .is_empty());
    }
}
