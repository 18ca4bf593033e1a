//! Consent per purpose: how a profile's consent state changes as preference sets arrive.
//!
//! Segment's consent object rides on events as `context.consent.categoryPreferences`, an
//! object of purpose (Segment's `categoryId`) → boolean. Each purpose it names is a
//! [`Decision`]: granted or denied, when (the event's timestamp), and by what (the source
//! and the message). A profile keeps, per purpose, the newest decision; events arrive out
//! of order (mobile SDKs flush late, imports replay history), so "newest" is by decision
//! time, never by arrival: an older decision arriving after a newer one does not override
//! it, though the caller still records it in the history ([`ConsentState::decide`] says
//! whether it took effect).
//!
//! The order is total, so the current state does not depend on the order decisions are
//! applied in: by time, then a denial before a grant at the same instant (two decisions at
//! one instant that disagree resolve to "not granted" — consent fails closed), then by
//! source and message id. Merging two profiles' states takes, per purpose, the newer of
//! the two decisions under the same order.
//!
//! A purpose no decision names is not granted. No I/O, no clock: times are the events'.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The longest purpose name, in bytes.
pub const MAX_PURPOSE_BYTES: usize = 256;
/// The most purposes one preference set may name.
pub const MAX_PURPOSES: usize = 100;

/// One decision about one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub granted: bool,
    /// When it was decided: the event's timestamp, or when the API was asked.
    pub at: DateTime<Utc>,
    /// What decided it: the event's source id, or `api`.
    pub source: String,
    /// The event's `messageId` (for the API, the request's id).
    pub message_id: String,
}

impl Decision {
    /// The total order of decisions: later wins; at one instant a denial wins over a grant;
    /// then source and message id, so that equal-time decisions still resolve one way.
    fn rank(&self) -> (DateTime<Utc>, bool, &str, &str) {
        (self.at, !self.granted, &self.source, &self.message_id)
    }

    /// Whether `self` supersedes `other`.
    pub fn supersedes(&self, other: &Decision) -> bool {
        self.rank().cmp(&other.rank()) == Ordering::Greater
    }
}

/// A set of preferences as one event or request carries it: purpose → granted.
pub type Preferences = BTreeMap<String, bool>;

/// A profile's current consent: the newest decision per purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConsentState {
    pub purposes: BTreeMap<String, Decision>,
}

/// What became of one purpose of a preference set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub purpose: String,
    pub decision: Decision,
    /// Whether it became the current decision (false: a newer one was already known).
    pub effective: bool,
}

impl ConsentState {
    pub fn is_empty(&self) -> bool {
        self.purposes.is_empty()
    }

    /// Whether `purpose` is granted. Unknown purposes are not.
    pub fn granted(&self, purpose: &str) -> bool {
        self.purposes.get(purpose).is_some_and(|d| d.granted)
    }

    /// Offers one decision; returns whether it became the current one for `purpose`.
    pub fn decide(&mut self, purpose: &str, decision: Decision) -> bool {
        match self.purposes.get_mut(purpose) {
            Some(current) if !decision.supersedes(current) => false,
            Some(current) => {
                *current = decision;
                true
            }
            None => {
                self.purposes.insert(purpose.to_owned(), decision);
                true
            }
        }
    }

    /// Applies a preference set decided at `at` by `source` in message `message_id`; one
    /// [`Recorded`] per purpose, in purpose order, each to be kept in the history.
    pub fn apply(
        &mut self,
        preferences: &Preferences,
        at: DateTime<Utc>,
        source: &str,
        message_id: &str,
    ) -> Vec<Recorded> {
        preferences
            .iter()
            .map(|(purpose, &granted)| {
                let decision = Decision {
                    granted,
                    at,
                    source: source.to_owned(),
                    message_id: message_id.to_owned(),
                };
                let effective = self.decide(purpose, decision.clone());
                Recorded {
                    purpose: purpose.clone(),
                    decision,
                    effective,
                }
            })
            .collect()
    }

    /// Combines another profile's state into this one (a merge): per purpose, the newer
    /// decision wins, by the same order as [`ConsentState::decide`]. Returns whether any
    /// purpose changed.
    pub fn merge(&mut self, other: &ConsentState) -> bool {
        let mut changed = false;
        for (purpose, decision) in &other.purposes {
            changed |= self.decide(purpose, decision.clone());
        }
        changed
    }
}

/// Why a preference set was refused; `field` is the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PreferenceError {
    pub field: String,
    pub message: String,
}

const PATH: &str = "context.consent.categoryPreferences";

/// Checks one purpose name; `field` is where it was found.
pub fn check_purpose(purpose: &str, field: &str) -> Result<(), PreferenceError> {
    let bad = |message: String| PreferenceError {
        field: field.to_owned(),
        message,
    };
    if purpose.is_empty() {
        return Err(bad(format!("`{field}`: a purpose name cannot be empty")));
    }
    if purpose.len() > MAX_PURPOSE_BYTES {
        return Err(bad(format!(
            "`{field}`: a purpose name is at most {MAX_PURPOSE_BYTES} bytes"
        )));
    }
    if purpose.chars().any(char::is_control) {
        return Err(bad(format!(
            "`{field}`: a purpose name cannot hold control characters"
        )));
    }
    Ok(())
}

/// Checks a whole preference set (its size and names); `field` is where it was found.
pub fn check_preferences(preferences: &Preferences, field: &str) -> Result<(), PreferenceError> {
    if preferences.len() > MAX_PURPOSES {
        return Err(PreferenceError {
            field: field.to_owned(),
            message: format!("`{field}` names more than {MAX_PURPOSES} purposes"),
        });
    }
    for purpose in preferences.keys() {
        check_purpose(purpose, &format!("{field}.{purpose}"))?;
    }
    Ok(())
}

/// The preference set in an event's `context` (JSON text), if it carries one.
///
/// `context.consent` or `categoryPreferences` absent or `null`: none. Otherwise
/// `categoryPreferences` must be an object whose values are booleans; anything else is
/// refused, naming the field (`context.consent.categoryPreferences.Advertising`), so that
/// ingest refuses what the processor could not read. An empty object is a set naming no
/// purpose and changes nothing.
pub fn preferences_in_context(context: &str) -> Result<Option<Preferences>, PreferenceError> {
    // Most events carry no consent: skip the parse.
    if !context.contains("categoryPreferences") {
        return Ok(None);
    }
    let bad = |field: &str, message: String| PreferenceError {
        field: field.to_owned(),
        message,
    };
    let context: Value = serde_json::from_str(context)
        .map_err(|_| bad("context", "`context` must be an object".into()))?;
    let consent = match context.get("consent") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err(bad(
                "context.consent",
                "`context.consent` must be an object".into(),
            ));
        }
    };
    let prefs = match consent.get("categoryPreferences") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(bad(
                PATH,
                format!("`{PATH}` must be an object of purpose → boolean"),
            ));
        }
    };
    let mut out = Preferences::new();
    for (purpose, v) in prefs {
        let field = format!("{PATH}.{purpose}");
        let Value::Bool(granted) = v else {
            return Err(bad(
                &field,
                format!("`{field}` must be a boolean (true: granted, false: denied)"),
            ));
        };
        out.insert(purpose.clone(), *granted);
    }
    check_preferences(&out, PATH)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn prefs(list: &[(&str, bool)]) -> Preferences {
        list.iter().map(|(p, g)| (p.to_string(), *g)).collect()
    }

    #[test]
    fn later_decisions_win_and_older_ones_are_recorded_without_effect() {
        let mut s = ConsentState::default();
        let r = s.apply(&prefs(&[("marketing", true)]), at(10), "src", "m1");
        assert!(r[0].effective);
        assert!(s.granted("marketing"));
        // Older, arriving later: kept in the history by the caller, no effect.
        let r = s.apply(&prefs(&[("marketing", false)]), at(5), "src", "m0");
        assert!(!r[0].effective);
        assert!(s.granted("marketing"));
        // Newer: wins.
        let r = s.apply(
            &prefs(&[("marketing", false), ("sms", true)]),
            at(20),
            "api",
            "r1",
        );
        assert!(r.iter().all(|r| r.effective));
        assert!(!s.granted("marketing"));
        assert!(s.granted("sms"));
        assert_eq!(s.purposes["marketing"].source, "api");
    }

    #[test]
    fn unknown_purposes_are_not_granted() {
        let s = ConsentState::default();
        assert!(!s.granted("email"));
    }

    #[test]
    fn a_tie_in_time_resolves_to_denied() {
        let mut a = ConsentState::default();
        a.apply(&prefs(&[("ads", true)]), at(1), "s1", "m1");
        a.apply(&prefs(&[("ads", false)]), at(1), "s2", "m2");
        let mut b = ConsentState::default();
        b.apply(&prefs(&[("ads", false)]), at(1), "s2", "m2");
        b.apply(&prefs(&[("ads", true)]), at(1), "s1", "m1");
        assert_eq!(a, b);
        assert!(!a.granted("ads"));
    }

    #[test]
    fn merges_keep_the_newest_decision_per_purpose() {
        let mut a = ConsentState::default();
        a.apply(&prefs(&[("ads", true), ("sms", false)]), at(10), "s", "a");
        let mut b = ConsentState::default();
        b.apply(&prefs(&[("ads", false)]), at(20), "s", "b");
        b.apply(&prefs(&[("sms", true)]), at(5), "s", "b0");
        b.apply(&prefs(&[("email", true)]), at(1), "s", "b1");
        let mut ab = a.clone();
        assert!(ab.merge(&b));
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert!(!ab.granted("ads"));
        assert!(!ab.granted("sms"));
        assert!(ab.granted("email"));
        assert!(!ab.clone().merge(&ab));
    }

    #[test]
    fn preferences_are_read_from_the_context() {
        let check = |ctx: &str| preferences_in_context(ctx);
        assert_eq!(check(r#"{"ip":"1.2.3.4"}"#), Ok(None));
        assert_eq!(
            check(r#"{"consent":{"categoryPreferences":null}}"#),
            Ok(None)
        );
        assert_eq!(
            check(r#"{"consent":{"categoryPreferences":{"Advertising":true,"Analytics":false}}}"#),
            Ok(Some(prefs(&[("Advertising", true), ("Analytics", false)])))
        );
        assert_eq!(
            check(r#"{"consent":{"categoryPreferences":{}}}"#),
            Ok(Some(Preferences::new()))
        );
        let e = check(r#"{"consent":{"categoryPreferences":{"ads":"yes"}}}"#).unwrap_err();
        assert_eq!(e.field, "context.consent.categoryPreferences.ads");
        let e = check(r#"{"consent":{"categoryPreferences":[true]}}"#).unwrap_err();
        assert_eq!(e.field, "context.consent.categoryPreferences");
        let e = check(r#"{"consent":"categoryPreferences"}"#).unwrap_err();
        assert_eq!(e.field, "context.consent");
        let e = check(r#"{"consent":{"categoryPreferences":{"":true}}}"#).unwrap_err();
        assert_eq!(e.field, "context.consent.categoryPreferences.");
        let many: serde_json::Map<String, Value> = (0..=MAX_PURPOSES)
            .map(|i| (format!("p{i}"), Value::Bool(true)))
            .collect();
        let ctx = serde_json::json!({"consent": {"categoryPreferences": many}}).to_string();
        assert_eq!(check(&ctx).unwrap_err().field, PATH);
    }

    mod any_order {
        use super::*;
        use proptest::prelude::*;

        /// One preference event: purposes from a small set (so that they collide), a
        /// time from a small range (so that ties happen), a source and a message id.
        fn event() -> impl Strategy<Value = (Preferences, i64, String, String)> {
            (
                proptest::collection::btree_map(
                    prop::sample::select(vec!["ads", "email", "sms", "analytics"])
                        .prop_map(str::to_owned),
                    any::<bool>(),
                    0..4,
                ),
                0i64..6,
                prop::sample::select(vec!["src_a", "src_b", "api"]).prop_map(str::to_owned),
                "[a-c]{1,2}",
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            #[test]
            fn the_same_events_in_any_order_give_the_same_state(
                events in proptest::collection::vec(event(), 0..12),
                seed in any::<u64>(),
            ) {
                let apply_all = |list: &[(Preferences, i64, String, String)]| {
                    let mut s = ConsentState::default();
                    for (p, t, src, m) in list {
                        s.apply(p, at(*t), src, m);
                    }
                    s
                };
                let in_order = apply_all(&events);
                let mut shuffled = events.clone();
                // A deterministic shuffle from the seed (Fisher–Yates with an LCG).
                let mut x = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (x >> 33) as usize % (i + 1));
                }
                prop_assert_eq!(&apply_all(&shuffled), &in_order);
                // Split between two profiles, then merged: the same again, either way round.
                let (left, right) = shuffled.split_at(shuffled.len() / 2);
                let (mut a, b) = (apply_all(left), apply_all(right));
                let mut b2 = b.clone();
                a.merge(&b);
                b2.merge(&apply_all(left));
                prop_assert_eq!(&a, &in_order);
                prop_assert_eq!(&b2, &in_order);
            }
        }
    }
}
