//! Defining who churned, from activity timestamps and an explicit cancel event.
//!
//! A pure function of the timeline and an `as_of` instant passed in by the caller, so that a
//! training set can be labelled "as of" any date and the rule is testable without a clock.
//! Timestamps are Unix seconds (UTC).

use serde::{Deserialize, Serialize};

use super::ChurnError;

const SECONDS_PER_DAY: i64 = 86_400;

/// What is known of one customer's activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityTimeline {
    /// When the customer was first seen (sign-up, first event). Optional.
    pub first_seen: Option<i64>,
    /// The latest activity of any kind (events, logins, page views).
    pub last_activity: Option<i64>,
    /// The latest purchase.
    pub last_purchase: Option<i64>,
    /// An explicit cancellation (subscription cancelled, account closed).
    pub cancelled_at: Option<i64>,
}

/// The labelling rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnLabelRule {
    /// A customer with no activity or purchase in this many days before `as_of` has churned.
    pub inactivity_days: u32,
}

impl Default for ChurnLabelRule {
    fn default() -> Self {
        Self {
            inactivity_days: 90,
        }
    }
}

/// Why a customer counts as churned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum ChurnReason {
    /// An explicit cancellation at or before `as_of`, with no activity after it.
    Cancelled { at: i64 },
    /// No activity or purchase in the window; `last_seen` is the latest one, if any.
    Inactive { last_seen: Option<i64> },
}

/// The label of one customer as of a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "label")]
pub enum ChurnLabel {
    Churned(ChurnReason),
    Retained,
    /// First seen less than `inactivity_days` before `as_of` and not cancelled: too new to
    /// have been inactive for the whole window. Leave such customers out of training.
    TooNew,
}

impl ChurnLabel {
    pub fn is_churned(&self) -> bool {
        matches!(self, ChurnLabel::Churned(_))
    }
}

/// Labels one customer as of `as_of` (Unix seconds).
///
/// Rules, in order:
/// 1. `last_activity`, `last_purchase` or `first_seen` after `as_of` is an error: the timeline
///    only keeps the latest timestamp, so it cannot tell what happened inside the window.
///    Label with a timeline cut at `as_of`. A `cancelled_at` after `as_of` simply has not
///    happened yet and is ignored.
/// 2. A cancellation at or before `as_of` means churned, unless there was activity or a
///    purchase strictly after it (the customer came back; rule 3 then decides).
/// 3. The latest of activity and purchase older than `inactivity_days` days (or none at all)
///    means churned — unless `first_seen` is inside the window, which gives `TooNew`.
/// 4. Otherwise retained.
pub fn churn_label(
    timeline: &ActivityTimeline,
    as_of: i64,
    rule: &ChurnLabelRule,
) -> Result<ChurnLabel, ChurnError> {
    for (name, t) in [
        ("first_seen", timeline.first_seen),
        ("last_activity", timeline.last_activity),
        ("last_purchase", timeline.last_purchase),
    ] {
        if let Some(t) = t
            && t > as_of
        {
            return Err(ChurnError::FutureTimestamp {
                field: name,
                timestamp: t,
                as_of,
            });
        }
    }
    let last_seen = timeline.last_activity.max(timeline.last_purchase);
    if let Some(c) = timeline.cancelled_at.filter(|&c| c <= as_of)
        && last_seen.is_none_or(|s| s <= c)
    {
        return Ok(ChurnLabel::Churned(ChurnReason::Cancelled { at: c }));
    }
    let window_start = as_of.saturating_sub(i64::from(rule.inactivity_days) * SECONDS_PER_DAY);
    match last_seen {
        Some(s) if s > window_start => Ok(ChurnLabel::Retained),
        _ if timeline.first_seen.is_some_and(|f| f > window_start) => Ok(ChurnLabel::TooNew),
        _ => Ok(ChurnLabel::Churned(ChurnReason::Inactive { last_seen })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = SECONDS_PER_DAY;
    const NOW: i64 = 1_700_000_000;

    fn rule() -> ChurnLabelRule {
        ChurnLabelRule {
            inactivity_days: 30,
        }
    }

    #[test]
    fn labels() {
        let active = ActivityTimeline {
            last_activity: Some(NOW - 5 * DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&active, NOW, &rule()).unwrap(),
            ChurnLabel::Retained
        );

        let bought = ActivityTimeline {
            last_activity: Some(NOW - 60 * DAY),
            last_purchase: Some(NOW - 10 * DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&bought, NOW, &rule()).unwrap(),
            ChurnLabel::Retained
        );

        let gone = ActivityTimeline {
            last_activity: Some(NOW - 31 * DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&gone, NOW, &rule()).unwrap(),
            ChurnLabel::Churned(ChurnReason::Inactive {
                last_seen: Some(NOW - 31 * DAY)
            })
        );
        // Exactly N days ago is outside the window ("no activity in the last N days").
        let edge = ActivityTimeline {
            last_activity: Some(NOW - 30 * DAY),
            ..Default::default()
        };
        assert!(churn_label(&edge, NOW, &rule()).unwrap().is_churned());

        let never = ActivityTimeline::default();
        assert!(churn_label(&never, NOW, &rule()).unwrap().is_churned());

        let new = ActivityTimeline {
            first_seen: Some(NOW - 3 * DAY),
            ..Default::default()
        };
        assert_eq!(churn_label(&new, NOW, &rule()).unwrap(), ChurnLabel::TooNew);
    }

    #[test]
    fn cancellation() {
        let cancelled = ActivityTimeline {
            last_activity: Some(NOW - 2 * DAY),
            cancelled_at: Some(NOW - DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&cancelled, NOW, &rule()).unwrap(),
            ChurnLabel::Churned(ChurnReason::Cancelled { at: NOW - DAY })
        );
        // Came back after cancelling.
        let back = ActivityTimeline {
            last_activity: Some(NOW - DAY),
            cancelled_at: Some(NOW - 2 * DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&back, NOW, &rule()).unwrap(),
            ChurnLabel::Retained
        );
        // Cancelling later than as_of has not happened yet.
        let later = ActivityTimeline {
            last_activity: Some(NOW - DAY),
            cancelled_at: Some(NOW + DAY),
            ..Default::default()
        };
        assert_eq!(
            churn_label(&later, NOW, &rule()).unwrap(),
            ChurnLabel::Retained
        );
    }

    #[test]
    fn future_activity_is_an_error() {
        let t = ActivityTimeline {
            last_activity: Some(NOW + 1),
            ..Default::default()
        };
        assert!(matches!(
            churn_label(&t, NOW, &rule()),
            Err(ChurnError::FutureTimestamp {
                field: "last_activity",
                ..
            })
        ));
    }
}
