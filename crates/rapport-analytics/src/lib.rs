//! Engagement analytics over resolved customer histories: funnels and retention.
//!
//! Every analysis here reads one [`History`] per resolved profile — the customer's track,
//! page and screen events across every device and identifier, in time order — so counts are
//! of people, not of cookies. The functions are pure: the engine gathers the histories from
//! the log, this crate answers the question, and the same answer gives the counts, the
//! people behind each count and the export, so the three always agree.
//!
//! Definitions, each as a formula, are in `docs/analytics.md`.

pub mod funnel;
pub mod period;
pub mod retention;

use chrono::{DateTime, Utc};
use rapport_core::audience::EventLike;
use serde_json::{Map, Value};

/// One event of a customer's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened (the event's `timestamp`), Unix milliseconds.
    pub at_ms: i64,
    /// Its position in the log: orders events of the same millisecond.
    pub seq: u64,
    /// `track`, `page` or `screen`.
    pub kind: String,
    /// The event name of a track event; `None` for other types.
    pub name: Option<String>,
    /// The event's properties (an object; anything else reads as empty).
    pub properties: Value,
}

impl EventLike for Event {
    fn timestamp(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at_ms).unwrap_or_default()
    }
    fn event_type(&self) -> &str {
        &self.kind
    }
    fn event_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn properties(&self) -> &Value {
        &self.properties
    }
}

/// One resolved profile and its events, sorted by `(at_ms, seq)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// The live profile's id.
    pub profile: String,
    /// Its traits now (for breakdowns by trait).
    pub traits: Map<String, Value>,
    pub events: Vec<Event>,
}

impl History {
    /// Sorts the events into time order (log order within a millisecond): the log holds
    /// events as they arrived, and devices send them late and out of order.
    pub fn sort(&mut self) {
        self.events.sort_by_key(|e| (e.at_ms, e.seq));
    }
}

/// A value of a property or trait as a breakdown label: strings as they are, other values
/// as JSON, a missing or `null` value as `None`.
pub fn label(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// The value at a dotted property path (`["plan", "tier"]`) of an object.
pub fn at_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

/// The `q`-quantile (0..=1) of sorted values by nearest rank (the smallest value with at
/// least `q` of the values at or below it); `None` when empty.
pub fn nearest_rank(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Errors in a question asked of the analytics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyticsError {
    /// A part of the question that cannot be answered as given, with the field at fault
    /// (`steps[1]`, `window`, `exclusions[0].between`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl AnalyticsError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AnalyticsError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Test histories: one profile's track events `(name, at_ms)`, log order as given, each
/// with a `plan` property alternating `pro` and `free`.
#[cfg(test)]
pub(crate) fn test_history(events: &[(&str, i64)]) -> History {
    let mut h = History {
        profile: "p".into(),
        events: events
            .iter()
            .enumerate()
            .map(|(i, (name, at))| Event {
                at_ms: *at,
                seq: i as u64,
                kind: "track".into(),
                name: Some((*name).into()),
                properties: serde_json::json!({"plan": if i % 2 == 0 { "pro" } else { "free" }}),
            })
            .collect(),
        ..History::default()
    };
    h.sort();
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(nearest_rank(&v, 0.5), Some(5));
        assert_eq!(nearest_rank(&v, 0.9), Some(9));
        assert_eq!(nearest_rank(&v, 1.0), Some(10));
        assert_eq!(nearest_rank(&v, 0.0), Some(1));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn labels_and_paths() {
        let v = serde_json::json!({"plan": {"tier": "pro"}, "n": 3});
        assert_eq!(
            label(at_path(&v, &["plan".into(), "tier".into()])),
            Some("pro".into())
        );
        assert_eq!(label(at_path(&v, &["n".into()])), Some("3".into()));
        assert_eq!(label(at_path(&v, &["missing".into()])), None);
    }
}
