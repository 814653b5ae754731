//! Pipeline counters, named stage + noun + verb, so every record, event and alert is accounted for:
//! what came in, what was skipped and why, what went out.

use std::fmt;

/// Counters of one run (replay) or since start (daemon).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Records parsed and handed to the reassembler.
    pub records_parsed: u64,
    /// Frames that were not audit records (counted, reported, skipped).
    pub records_malformed: u64,
    /// `type=NAME msg=?` lines: well-formed but without time or serial, so not groupable.
    pub records_unstamped: u64,
    /// Events the reassembler completed (all types).
    pub events_completed: u64,
    /// Successful execve/execveat events turned into documents.
    pub events_exec: u64,
    /// Exec events missing a part (EXECVE without SYSCALL or the reverse): counted, not evaluated.
    pub events_partial: u64,
    /// Exec events whose argv hit the memory bound (evaluated on what was kept).
    pub events_truncated: u64,
    /// Documents that matched a rule's query.
    pub rules_matched: u64,
    /// Matches the new-terms gate held back because their tuple was seen in the window.
    pub terms_seen: u64,
    /// Matches that lacked a new-terms field (never alert).
    pub terms_missing: u64,
    /// New-terms state failures (the alert still went out).
    pub state_errors: u64,
    /// Alerts handed to the sinks.
    pub alerts_emitted: u64,
    /// Alerts that passed the new-terms gate but were held back by the rate cap (max_signals).
    pub alerts_capped: u64,
    /// Exec documents handed to the events output.
    pub events_written: u64,
    /// Events the reassembler had to close early (in-flight or byte cap).
    pub events_evicted: u64,
    /// Records that arrived after their event was closed.
    pub records_late: u64,
    /// Exact duplicate records dropped.
    pub records_duplicate: u64,
    /// Serials missing from the kernel's sequence (lost before they reached us).
    pub serials_lost: u64,
    /// Process-table entries whose arguments were cut (per-entry bound or the table's budget).
    pub table_cut: u64,
    /// Process-table entries dropped for room (capacity or budget) while their process may run.
    pub table_evicted: u64,
    /// Pending EQL sequences dropped by a rule's memory bound (oldest first).
    pub sequences_evicted: u64,
    /// Threshold counts dropped by a rule's memory bound (new groups, distinct values).
    pub threshold_dropped: u64,
    /// New-terms tuples stored now, all rules together.
    pub terms_stored: u64,
    /// New-terms tuples deleted because their rule's history window had passed.
    pub terms_pruned: u64,
    /// New-terms tuples deleted to keep a rule under `state.max_terms_per_rule` (least recently
    /// seen first): each may alert again.
    pub terms_evicted: u64,
    /// File and network events turned into documents (made only while a rule needs them).
    pub events_syscall: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "records={} malformed={} unstamped={} events={} exec={} partial={} truncated={} matched={} alerts={} \
             capped={} events_out={} seen={} missing_terms={} state_errors={} evicted={} late={} duplicate={} lost_serials={} \
             table_cut={} table_evicted={} seq_evicted={} threshold_dropped={} terms_stored={} \
             terms_pruned={} terms_evicted={} file_net={}",
            self.records_parsed,
            self.records_malformed,
            self.records_unstamped,
            self.events_completed,
            self.events_exec,
            self.events_partial,
            self.events_truncated,
            self.rules_matched,
            self.alerts_emitted,
            self.alerts_capped,
            self.events_written,
            self.terms_seen,
            self.terms_missing,
            self.state_errors,
            self.events_evicted,
            self.records_late,
            self.records_duplicate,
            self.serials_lost,
            self.table_cut,
            self.table_evicted,
            self.sequences_evicted,
            self.threshold_dropped,
            self.terms_stored,
            self.terms_pruned,
            self.terms_evicted,
            self.events_syscall,
        )
    }
}

impl Stats {
    /// The counters for a person at a terminal: what was read, what alerted and why the other
    /// matches did not, then every non-zero counter of something skipped, cut or lost, each said
    /// in words. (The `key=value` form of [`fmt::Display`] is for scripts and logs.)
    pub fn describe(&self) -> String {
        let mut out = format!(
            "read {} audit records into {} events, {} of them execs; {} execs matched a rule's query; \
             {} alerts written",
            self.records_parsed,
            self.events_completed,
            self.events_exec,
            self.rules_matched,
            self.alerts_emitted,
        );
        let held = [
            (self.terms_seen, "held back: new-terms value already seen"),
            (self.terms_missing, "held back: a new-terms field missing"),
            (
                self.alerts_capped,
                "held back by the rate cap (max_signals)",
            ),
        ];
        let trouble = [
            (self.records_malformed, "malformed records skipped"),
            (
                self.records_unstamped,
                "records without time or serial skipped",
            ),
            (
                self.events_partial,
                "exec events missing a record, not evaluated",
            ),
            (
                self.events_truncated,
                "exec events whose arguments were cut to the memory budget",
            ),
            (
                self.state_errors,
                "new-terms state errors (the alert still went out)",
            ),
            (
                self.events_evicted,
                "events closed early (in-flight or byte cap)",
            ),
            (
                self.records_late,
                "records that came after their event was closed",
            ),
            (self.records_duplicate, "duplicate records dropped"),
            (
                self.serials_lost,
                "audit serials missing (records lost before they were read)",
            ),
            (self.table_cut, "process-table entries with arguments cut"),
            (self.table_evicted, "process-table entries dropped for room"),
            (
                self.sequences_evicted,
                "pending EQL sequences dropped for room",
            ),
            (self.threshold_dropped, "threshold counts dropped for room"),
        ];
        for (n, what) in held.iter().chain(&trouble).filter(|(n, _)| *n > 0) {
            out.push_str(&format!("\n  {n} {what}"));
        }
        if trouble.iter().all(|(n, _)| *n == 0) {
            out.push_str("\n  nothing malformed, late, cut or lost");
        }
        if self.events_written > 0 {
            out.push_str(&format!(
                "\n  {} exec documents written to the events output",
                self.events_written
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_what_each_nonzero_counter_means_and_nothing_of_the_zero_ones() {
        let s = Stats {
            records_parsed: 845,
            events_completed: 139,
            events_exec: 69,
            rules_matched: 30,
            alerts_emitted: 28,
            terms_seen: 2,
            ..Stats::default()
        };
        assert_eq!(
            s.describe(),
            "read 845 audit records into 139 events, 69 of them execs; 30 execs matched a rule's \
             query; 28 alerts written\n  2 held back: new-terms value already seen\n  \
             nothing malformed, late, cut or lost"
        );
        let lost = Stats {
            serials_lost: 3,
            ..Stats::default()
        };
        let text = lost.describe();
        assert!(text.contains("\n  3 audit serials missing"), "{text}");
        assert!(!text.contains("nothing"), "{text}");
    }
}
