//! The violations report of a source: one [`ReportEntry`] per subject (a planned track
//! event by name, identify, group, and every unplanned event together), with counts per
//! outcome and the few most recent examples. Examples carry the field and what was
//! expected, never a value sent, so that the report holds no personal data.
//!
//! Entries are built from [`Check`]s and merged ([`ReportEntry::merge`]), so that a store
//! can keep one per subject and add each request's counts to it. Times are passed in.

use crate::plan::{Check, Outcome, Subject, SubjectKind};
use serde::{Deserialize, Serialize};

/// How many recent examples an entry keeps.
pub const RECENT_EXAMPLES: usize = 5;

/// One recent violation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// A JSON pointer into the message: `/properties/price`.
    pub field: String,
    /// What was expected there.
    pub message: String,
    pub outcome: Outcome,
    /// When the message was received, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The violations of one subject: counts of messages per outcome, of violations in all,
/// and the most recent examples, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    #[serde(rename = "type")]
    pub kind: SubjectKind,
    /// The event name, for `track` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Messages stored although they violated the plan (mode `allow`).
    pub allowed: u64,
    /// Messages stored with their violations recorded (mode `flag`).
    pub flagged: u64,
    /// Messages refused (mode `block`).
    pub blocked: u64,
    /// Violations found in those messages, in all.
    pub violations: u64,
    /// The last violating message's time, in milliseconds since the Unix epoch.
    pub last_at_ms: i64,
    pub recent: Vec<Example>,
}

impl ReportEntry {
    /// An entry with nothing counted yet.
    pub fn new(subject: &Subject) -> ReportEntry {
        ReportEntry {
            kind: subject.kind,
            event: subject.event.clone(),
            allowed: 0,
            flagged: 0,
            blocked: 0,
            violations: 0,
            last_at_ms: i64::MIN,
            recent: Vec::new(),
        }
    }

    /// The subject this entry counts.
    pub fn subject(&self) -> Subject {
        Subject {
            kind: self.kind,
            event: self.event.clone(),
        }
    }

    /// Counts one checked message, received at `at_ms`.
    pub fn record(&mut self, check: &Check, at_ms: i64) {
        match check.outcome {
            Outcome::Allowed => self.allowed += 1,
            Outcome::Flagged => self.flagged += 1,
            Outcome::Blocked => self.blocked += 1,
        }
        self.violations += check.total as u64;
        self.last_at_ms = self.last_at_ms.max(at_ms);
        let new = check.violations.iter().map(|v| Example {
            field: v.field.clone(),
            message: v.message.clone(),
            outcome: check.outcome,
            at_ms,
        });
        let mut recent: Vec<Example> = new.take(RECENT_EXAMPLES).collect();
        recent.append(&mut self.recent);
        self.recent = recent;
        self.keep_recent();
    }

    /// Adds `other`'s counts and examples (of the same subject) to this entry.
    pub fn merge(&mut self, other: ReportEntry) {
        debug_assert_eq!(self.subject(), other.subject());
        self.allowed += other.allowed;
        self.flagged += other.flagged;
        self.blocked += other.blocked;
        self.violations += other.violations;
        self.last_at_ms = self.last_at_ms.max(other.last_at_ms);
        let mut recent = other.recent;
        recent.append(&mut self.recent);
        self.recent = recent;
        self.keep_recent();
    }

    /// Newest first (ties keep their order: the newer merge first), at most
    /// [`RECENT_EXAMPLES`].
    fn keep_recent(&mut self) {
        self.recent.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
        self.recent.truncate(RECENT_EXAMPLES);
    }
}

/// Adds `checks` (each with its receive time) to `entries`, one entry per subject.
pub fn aggregate<'a>(
    checks: impl IntoIterator<Item = (&'a Check, i64)>,
) -> Vec<(Subject, ReportEntry)> {
    let mut out: Vec<(Subject, ReportEntry)> = Vec::new();
    for (check, at_ms) in checks {
        match out.iter_mut().find(|(s, _)| *s == check.subject) {
            Some((_, e)) => e.record(check, at_ms),
            None => {
                let mut e = ReportEntry::new(&check.subject);
                e.record(check, at_ms);
                out.push((check.subject.clone(), e));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Violation;

    fn check(event: &str, outcome: Outcome, fields: &[&str]) -> Check {
        Check {
            subject: Subject {
                kind: SubjectKind::Track,
                event: Some(event.into()),
            },
            outcome,
            violations: fields
                .iter()
                .map(|f| Violation {
                    field: (*f).into(),
                    message: "expected number, got string".into(),
                })
                .collect(),
            total: fields.len(),
        }
    }

    #[test]
    fn counts_per_outcome_and_keeps_the_newest_examples() {
        let a = check("Order Completed", Outcome::Flagged, &["/properties/price"]);
        let b = check(
            "Order Completed",
            Outcome::Blocked,
            &["/properties/a", "/properties/b"],
        );
        let c = check("Signed Up", Outcome::Allowed, &["/properties/plan"]);
        let entries = aggregate([(&a, 1), (&b, 2), (&c, 3), (&a, 4)]);
        assert_eq!(entries.len(), 2);
        let (subject, order) = &entries[0];
        assert_eq!(subject.event.as_deref(), Some("Order Completed"));
        assert_eq!((order.allowed, order.flagged, order.blocked), (0, 2, 1));
        assert_eq!(order.violations, 4);
        assert_eq!(order.last_at_ms, 4);
        let times: Vec<_> = order.recent.iter().map(|e| e.at_ms).collect();
        assert_eq!(times, [4, 2, 2, 1]);
        assert_eq!(entries[1].1.allowed, 1);
    }

    #[test]
    fn merging_adds_counts_and_bounds_examples() {
        let a = check("E", Outcome::Flagged, &["/properties/x"; 4]);
        let mut stored = aggregate([(&a, 10), (&a, 11)]).remove(0).1;
        let later = aggregate([(&a, 20)]).remove(0).1;
        stored.merge(later);
        assert_eq!(stored.flagged, 3);
        assert_eq!(stored.violations, 12);
        assert_eq!(stored.recent.len(), RECENT_EXAMPLES);
        assert_eq!(stored.recent[0].at_ms, 20);
        assert_eq!(stored.last_at_ms, 20);
    }

    #[test]
    fn an_entry_reads_back_what_it_wrote() {
        let a = check("E", Outcome::Blocked, &["/properties/x"]);
        let e = aggregate([(&a, 5)]).remove(0).1;
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""type":"track""#), "{json}");
        assert_eq!(serde_json::from_str::<ReportEntry>(&json).unwrap(), e);
    }
}
