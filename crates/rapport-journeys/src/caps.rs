//! Frequency caps across journeys: "at most 3 messages per 7 days per customer" on a
//! channel tag (`email`), or on every message (tag `*`).
//!
//! The counts are per customer, over a sliding window, kept as the times of the messages
//! sent ([`SendLog`], stored with the profile). Transactional messages bypass caps (the
//! machine does not ask). When a cap forces a choice between journeys, priority decides:
//! the engine advances a customer's journeys in descending `priority` (then by name) for
//! each thing that happens, so the higher journey's message takes the last place under the
//! cap and the lower one's is skipped and recorded as capped.

use crate::definition::Duration;
use crate::machine::Gate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cap.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapRule {
    /// The channel tag it counts (`email`), or `*` for every message.
    pub tag: String,
    /// At most this many messages…
    pub max: u32,
    /// …in any window this long.
    pub per: Duration,
}

/// The times (Unix milliseconds) of the messages sent to one customer, by tag, the
/// oldest first; only as far back as the longest cap looks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLog {
    pub sent: BTreeMap<String, Vec<i64>>,
}

impl SendLog {
    /// Whether the log holds nothing (and need not be stored).
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

/// The caps in force over one customer's log: a [`Gate`] for the machine.
pub struct Caps<'a> {
    pub rules: &'a [CapRule],
    pub log: &'a mut SendLog,
}

/// Checks a list of caps: a tag, a positive `max`, a window longer than 0s.
pub fn check_rules(rules: &[CapRule]) -> Result<(), crate::FieldError> {
    for (i, r) in rules.iter().enumerate() {
        let error = |field: &str, message: &str| crate::FieldError {
            field: format!("caps[{i}].{field}"),
            message: message.to_owned(),
        };
        if r.tag.trim().is_empty() {
            return Err(error("tag", "name the channel tag, or * for every message"));
        }
        if r.max == 0 {
            return Err(error(
                "max",
                "a cap of 0 sends nothing: pause the journeys instead",
            ));
        }
        if r.per.0 == 0 {
            return Err(error("per", "a cap's window must be longer than 0s"));
        }
    }
    Ok(())
}

impl Gate for Caps<'_> {
    fn admit(&mut self, tag: &str, now: DateTime<Utc>) -> Result<(), String> {
        let now_ms = now.timestamp_millis();
        let longest = self.rules.iter().map(|r| r.per.0).max().unwrap_or(0) as i64 * 1000;
        self.log.sent.retain(|_, times| {
            times.retain(|t| *t > now_ms - longest);
            !times.is_empty()
        });
        for rule in self.rules.iter().filter(|r| r.tag == tag || r.tag == "*") {
            let since = now_ms - rule.per.0 as i64 * 1000;
            let count = if rule.tag == "*" {
                self.log
                    .sent
                    .values()
                    .map(|ts| ts.iter().filter(|t| **t > since).count())
                    .sum()
            } else {
                self.log
                    .sent
                    .get(tag)
                    .map_or(0, |ts| ts.iter().filter(|t| **t > since).count())
            };
            if count >= rule.max as usize {
                return Err(format!("{count} of at most {} per {}", rule.max, rule.per));
            }
        }
        if !self.rules.is_empty() {
            self.log
                .sent
                .entry(tag.to_owned())
                .or_default()
                .push(now_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_cap_counts_over_a_sliding_window_per_tag_and_overall() {
        let rules = vec![
            CapRule {
                tag: "email".into(),
                max: 2,
                per: Duration(7 * 86_400),
            },
            CapRule {
                tag: "*".into(),
                max: 3,
                per: Duration(86_400),
            },
        ];
        let mut log = SendLog::default();
        let mut caps = Caps {
            rules: &rules,
            log: &mut log,
        };
        assert!(caps.admit("email", at(1, 9)).is_ok());
        assert!(caps.admit("email", at(2, 9)).is_ok());
        let e = caps.admit("email", at(3, 9)).unwrap_err();
        assert_eq!(e, "2 of at most 2 per 7d");
        // Push is not capped per tag, but every message counts towards `*`.
        assert!(caps.admit("push", at(3, 9)).is_ok());
        assert!(caps.admit("push", at(3, 10)).is_ok());
        assert!(caps.admit("push", at(3, 11)).is_ok());
        assert!(caps.admit("push", at(3, 12)).is_err());
        // A week after the first email, one place is free again.
        assert!(caps.admit("email", at(8, 10)).is_ok());
        assert!(
            log.sent["email"].len() == 2,
            "older sends are forgotten: {log:?}"
        );
    }

    #[test]
    fn no_caps_keep_no_log() {
        let mut log = SendLog::default();
        let mut caps = Caps {
            rules: &[],
            log: &mut log,
        };
        assert!(caps.admit("email", at(1, 1)).is_ok());
        assert!(log.is_empty());
    }
}
