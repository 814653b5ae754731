//! Kibana's `max_signals` as a rate cap: at most N alerts per rule per window (5 minutes by
//! default), the rest counted. Kibana caps every 5-minute run of a rule at `max_signals` alerts; a
//! host agent has no runs, so the cap is a window of audit time instead — the events' own clock, so
//! a replay caps exactly as the live run did.
//!
//! A rule's window opens at its first alert and lasts `window_ms`; the first alert at or after its
//! end opens the next one, so a burst is never split by an arbitrary clock boundary. When a window
//! closes (a later event arrives, or the run ends) and it capped anything, it yields one
//! [`CapSummary`], which the pipeline turns into one log line naming the new-terms tuples it held
//! back (the first [`NAMED_TUPLES`]).

use crate::audit::AuditTime;
use crate::event::timestamp;
use std::collections::BTreeMap;
use std::fmt;

/// Kibana's run interval, used as the cap's window: 5 minutes.
pub const DEFAULT_WINDOW_MS: u64 = 5 * 60 * 1000;

/// How many capped tuples a summary names; the rest are counted.
pub const NAMED_TUPLES: usize = 20;

/// One alert asking to leave: its rule, the rule's own cap, and the new-terms tuple it carries
/// (empty for a query rule), which a summary names if the alert is capped.
#[derive(Debug, Clone, Copy)]
pub struct CapRequest<'a> {
    /// `rule.id`.
    pub rule_id: &'a str,
    /// `rule.name`.
    pub rule_name: &'a str,
    /// The rule's own `max_signals`.
    pub rule_max: u32,
    /// The new-terms tuple of the alert.
    pub terms: &'a [String],
}

/// Whether an alert may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the rule's budget for this window: emit it.
    Pass,
    /// Over budget: count it, do not emit it.
    Capped,
}

/// One closed window of one rule that capped alerts: what the operator needs to know in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSummary {
    /// `rule.id`.
    pub rule_id: String,
    /// `rule.name`.
    pub rule_name: String,
    /// Audit time (ms since the epoch) at which the window opened (its first alert).
    pub window_start_ms: u64,
    /// Audit time (ms since the epoch) at which the window ends.
    pub window_end_ms: u64,
    /// The cap that applied.
    pub max_signals: u32,
    /// Alerts that passed (at most `max_signals`).
    pub emitted: u64,
    /// Alerts held back.
    pub capped: u64,
    /// The new-terms tuples of the first [`NAMED_TUPLES`] capped alerts that had one.
    pub capped_terms: Vec<Vec<String>>,
}

impl fmt::Display for CapSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |ms: u64| {
            timestamp(AuditTime {
                sec: ms / 1000,
                msec: (ms % 1000) as u32,
            })
        };
        write!(
            f,
            "rate cap: rule=\"{}\" rule_id={} window_start={} window_end={} max_signals={} emitted={} capped={}",
            self.rule_name.replace(['"', '\\'], "_").replace(char::is_control, "_"),
            self.rule_id.replace(|c: char| c.is_control() || c == ' ', "_"),
            t(self.window_start_ms),
            t(self.window_end_ms),
            self.max_signals,
            self.emitted,
            self.capped
        )?;
        if !self.capped_terms.is_empty() {
            // JSON: unambiguous whatever the values hold, and one line (controls are escaped).
            let named = crate::jsonline::to_line(&serde_json::json!(self.capped_terms));
            let more = self.capped.saturating_sub(self.capped_terms.len() as u64);
            write!(f, " capped_terms={named} capped_terms_more={more}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Window {
    rule_name: String,
    start_ms: u64,
    max: u32,
    emitted: u64,
    capped: u64,
    capped_terms: Vec<Vec<String>>,
}

/// The per-rule windows. Deterministic: decisions depend only on the alerts' audit times.
#[derive(Debug, Clone)]
pub struct RateCap {
    window_ms: u64,
    max_override: Option<u32>,
    open: BTreeMap<String, Window>,
}

impl Default for RateCap {
    /// Each rule's own `max_signals` per 5 minutes.
    fn default() -> Self {
        RateCap::new(None, DEFAULT_WINDOW_MS)
    }
}

impl RateCap {
    /// A cap of `max_override` alerts (or each rule's own `max_signals` when `None`) per `window_ms`
    /// (at least 1 ms) of audit time.
    pub fn new(max_override: Option<u32>, window_ms: u64) -> Self {
        RateCap {
            window_ms: window_ms.max(1),
            max_override,
            open: BTreeMap::new(),
        }
    }

    /// The window length in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Decides whether the alert `req` at audit time `time_ms` may leave. A window of its rule
    /// that has ended is closed first; its summary (if it capped anything) is pushed to `closed`.
    /// A capped alert's tuple is kept for the summary (the first [`NAMED_TUPLES`]).
    pub fn check(
        &mut self,
        req: &CapRequest<'_>,
        time_ms: u64,
        closed: &mut Vec<CapSummary>,
    ) -> Decision {
        let CapRequest {
            rule_id,
            rule_name,
            rule_max,
            terms,
        } = *req;
        let max = self.max_override.unwrap_or(rule_max);
        let window_ms = self.window_ms;
        if let Some(w) = self.open.get(rule_id) {
            if time_ms >= w.start_ms.saturating_add(window_ms) {
                if let Some(w) = self.open.remove(rule_id) {
                    closed.extend(summary(rule_id, w, window_ms));
                }
            }
        }
        let w = self.open.entry(rule_id.to_string()).or_insert(Window {
            rule_name: rule_name.to_string(),
            start_ms: time_ms,
            max,
            emitted: 0,
            capped: 0,
            capped_terms: Vec::new(),
        });
        if w.emitted < u64::from(w.max) {
            w.emitted += 1;
            Decision::Pass
        } else {
            w.capped += 1;
            if !terms.is_empty() && w.capped_terms.len() < NAMED_TUPLES {
                w.capped_terms.push(terms.to_vec());
            }
            Decision::Capped
        }
    }

    /// Closes every window that has ended by audit time `now_ms` (so a summary leaves even when the
    /// rule stays quiet), pushing the summaries of those that capped anything.
    pub fn advance(&mut self, now_ms: u64, closed: &mut Vec<CapSummary>) {
        let window_ms = self.window_ms;
        let ended: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| now_ms >= w.start_ms.saturating_add(window_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(w) = self.open.remove(&id) {
                closed.extend(summary(&id, w, window_ms));
            }
        }
    }

    /// Closes every open window (end of run), returning the summaries of those that capped anything.
    pub fn finish(&mut self) -> Vec<CapSummary> {
        let window_ms = self.window_ms;
        std::mem::take(&mut self.open)
            .into_iter()
            .filter_map(|(id, w)| summary(&id, w, window_ms))
            .collect()
    }
}

fn summary(rule_id: &str, w: Window, window_ms: u64) -> Option<CapSummary> {
    (w.capped > 0).then(|| CapSummary {
        rule_id: rule_id.to_string(),
        rule_name: w.rule_name,
        window_start_ms: w.start_ms,
        window_end_ms: w.start_ms.saturating_add(window_ms),
        max_signals: w.max,
        emitted: w.emitted,
        capped: w.capped,
        capped_terms: w.capped_terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn req<'a>(rule_id: &'a str, rule_name: &'a str, rule_max: u32) -> CapRequest<'a> {
        CapRequest {
            rule_id,
            rule_name,
            rule_max,
            terms: &[],
        }
    }

    fn run(cap: &mut RateCap, times: &[u64], closed: &mut Vec<CapSummary>) -> (usize, usize) {
        let mut pass = 0;
        let mut capped = 0;
        for &t in times {
            match cap.check(&req("r1", "Rule One", 100), t, closed) {
                Decision::Pass => pass += 1,
                Decision::Capped => capped += 1,
            }
        }
        (pass, capped)
    }

    #[test]
    fn burst_of_250_in_a_minute_passes_100_and_summarises_150() {
        let mut cap = RateCap::default();
        let mut closed = Vec::new();
        let times: Vec<u64> = (0..250).map(|i| T0 + i * 240).collect();
        assert_eq!(run(&mut cap, &times, &mut closed), (100, 150));
        assert!(closed.is_empty());
        let done = cap.finish();
        assert_eq!(
            done,
            vec![CapSummary {
                rule_id: "r1".into(),
                rule_name: "Rule One".into(),
                window_start_ms: T0,
                window_end_ms: T0 + 300_000,
                max_signals: 100,
                emitted: 100,
                capped: 150,
                capped_terms: vec![],
            }]
        );
        assert_eq!(
            done[0].to_string(),
            "rate cap: rule=\"Rule One\" rule_id=r1 window_start=2023-11-14T22:13:20.000Z \
             window_end=2023-11-14T22:18:20.000Z max_signals=100 emitted=100 capped=150"
        );
        assert!(cap.finish().is_empty(), "windows are closed once");
    }

    #[test]
    fn a_later_alert_closes_the_window_and_opens_a_fresh_budget() {
        let mut cap = RateCap::new(Some(2), 1000);
        let mut closed = Vec::new();
        assert_eq!(
            run(&mut cap, &[T0, T0 + 1, T0 + 2, T0 + 999], &mut closed),
            (2, 2)
        );
        assert!(closed.is_empty());
        assert_eq!(run(&mut cap, &[T0 + 1000, T0 + 1001], &mut closed), (2, 0));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].capped, 2);
        assert_eq!(closed[0].max_signals, 2);
        assert_eq!(closed[0].window_end_ms, T0 + 1000);
        assert!(cap.finish().is_empty(), "second window capped nothing");
    }

    #[test]
    fn advance_closes_quiet_rules_and_windows_without_caps_say_nothing() {
        let mut cap = RateCap::new(Some(1), 1000);
        let mut closed = Vec::new();
        run(&mut cap, &[T0, T0 + 5], &mut closed);
        cap.check(&req("r2", "Rule Two", 1), T0, &mut closed);
        cap.advance(T0 + 999, &mut closed);
        assert!(closed.is_empty());
        cap.advance(T0 + 1000, &mut closed);
        assert_eq!(closed.len(), 1, "only r1 capped: {closed:?}");
        assert_eq!(closed[0].rule_id, "r1");
        assert_eq!(closed[0].capped, 1);
    }

    #[test]
    fn rules_have_separate_budgets_and_out_of_order_times_stay_in_the_window() {
        let mut cap = RateCap::new(None, 1000);
        let mut closed = Vec::new();
        assert_eq!(
            cap.check(&req("a", "A", 1), T0, &mut closed),
            Decision::Pass
        );
        assert_eq!(
            cap.check(&req("b", "B", 1), T0, &mut closed),
            Decision::Pass
        );
        assert_eq!(
            cap.check(&req("a", "A", 1), T0 - 50, &mut closed),
            Decision::Capped
        );
        assert!(closed.is_empty());
    }

    #[test]
    fn a_summary_names_the_first_twenty_capped_tuples_and_counts_the_rest() {
        let mut cap = RateCap::new(Some(3), 1000);
        let mut closed = Vec::new();
        let tuples: Vec<Vec<String>> = (0..100)
            .map(|i| vec!["h1".to_string(), format!("p{i}")])
            .chain(std::iter::once(vec![
                "h1".to_string(),
                "ev\"il".to_string(),
            ]))
            .collect();
        for (i, terms) in tuples.iter().enumerate() {
            let r = CapRequest {
                terms,
                ..req("r1", "R", 100)
            };
            let want = if i < 3 {
                Decision::Pass
            } else {
                Decision::Capped
            };
            assert_eq!(cap.check(&r, T0 + i as u64, &mut closed), want);
        }
        let done = cap.finish();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].emitted, done[0].capped), (3, 98));
        assert_eq!(done[0].capped_terms, tuples[3..23].to_vec());
        let line = done[0].to_string();
        assert!(
            line.ends_with(
                "capped=98 capped_terms=[[\"h1\",\"p3\"],[\"h1\",\"p4\"],[\"h1\",\"p5\"],\
                 [\"h1\",\"p6\"],[\"h1\",\"p7\"],[\"h1\",\"p8\"],[\"h1\",\"p9\"],[\"h1\",\"p10\"],\
                 [\"h1\",\"p11\"],[\"h1\",\"p12\"],[\"h1\",\"p13\"],[\"h1\",\"p14\"],[\"h1\",\"p15\"],\
                 [\"h1\",\"p16\"],[\"h1\",\"p17\"],[\"h1\",\"p18\"],[\"h1\",\"p19\"],[\"h1\",\"p20\"],\
                 [\"h1\",\"p21\"],[\"h1\",\"p22\"]] capped_terms_more=78"
            ),
            "{line}"
        );
    }
}
