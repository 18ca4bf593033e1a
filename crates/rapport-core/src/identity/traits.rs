//! Profile and account traits with last-write-wins per key.
//!
//! Events reach the processor in log order, not in the order they happened: a mobile app
//! flushes a day-old batch, an import back-fills history. So each top-level trait keeps
//! the timestamp and message id of the event that set it, and a value only replaces one
//! set by an earlier event. Merging two profiles applies the same rule key by key, so the
//! result does not depend on which profile survives.

use super::resolve::ProfileId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A trait value and the event that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: Value,
    pub timestamp: DateTime<Utc>,
    pub message_id: String,
}

impl TraitValue {
    /// Last-write-wins order: later timestamp, then larger message id.
    fn newer_than(&self, other: &TraitValue) -> bool {
        (self.timestamp, &self.message_id) > (other.timestamp, &other.message_id)
    }
}

/// The traits of a person or an account, with first and last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileTraits {
    pub traits: BTreeMap<String, TraitValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
}

impl ProfileTraits {
    pub fn new() -> ProfileTraits {
        ProfileTraits::default()
    }

    /// Records that an event of this profile happened at `at`.
    pub fn observe(&mut self, at: DateTime<Utc>) {
        self.first_seen = Some(self.first_seen.map_or(at, |t| t.min(at)));
        self.last_seen = Some(self.last_seen.map_or(at, |t| t.max(at)));
    }

    /// Applies one event's traits (and observes its timestamp). Returns the keys whose
    /// value changed. A `null` value is kept, as an explicit "unset" that later events
    /// can overwrite and earlier ones cannot.
    pub fn apply(
        &mut self,
        traits: &Map<String, Value>,
        timestamp: DateTime<Utc>,
        message_id: &str,
    ) -> Vec<String> {
        self.observe(timestamp);
        let mut changed = Vec::new();
        for (key, value) in traits {
            let incoming = TraitValue {
                value: value.clone(),
                timestamp,
                message_id: message_id.to_owned(),
            };
            if self.offer(key, incoming) {
                changed.push(key.clone());
            }
        }
        changed
    }

    /// Takes `incoming` for `key` if it is newer; true if the stored value changed.
    fn offer(&mut self, key: &str, incoming: TraitValue) -> bool {
        match self.traits.get_mut(key) {
            Some(current) if !incoming.newer_than(current) => false,
            Some(current) => {
                let changed = current.value != incoming.value;
                *current = incoming;
                changed
            }
            None => {
                self.traits.insert(key.to_owned(), incoming);
                true
            }
        }
    }

    /// Folds another profile's traits into these (on a merge): per key, the newer value
    /// wins; first/last seen widen. Commutative, so the survivor's identity is irrelevant.
    pub fn merge(&mut self, other: &ProfileTraits) {
        for (key, value) in &other.traits {
            self.offer(key, value.clone());
        }
        if let Some(t) = other.first_seen {
            self.observe(t);
        }
        if let Some(t) = other.last_seen {
            self.observe(t);
        }
    }

    /// The current values, as a JSON object.
    pub fn values(&self) -> Map<String, Value> {
        self.traits
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.traits.get(key).map(|v| &v.value)
    }
}

/// An account (a Segment group) with its own traits and member profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProfile {
    pub account_id: String,
    pub traits: ProfileTraits,
    pub members: BTreeSet<ProfileId>,
}

impl AccountProfile {
    pub fn new(account_id: impl Into<String>) -> AccountProfile {
        AccountProfile {
            account_id: account_id.into(),
            traits: ProfileTraits::default(),
            members: BTreeSet::new(),
        }
    }

    /// Replaces a member retired by a merge with its survivor.
    pub fn member_merged(&mut self, from: &ProfileId, into: &ProfileId) {
        if self.members.remove(from) {
            self.members.insert(into.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, h, 0, 0).unwrap()
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn late_event_does_not_overwrite() {
        let mut p = ProfileTraits::new();
        p.apply(
            &map(serde_json::json!({"plan": "pro", "name": "Ann"})),
            t(10),
            "m2",
        );
        let changed = p.apply(
            &map(serde_json::json!({"plan": "free", "city": "Oslo"})),
            t(9),
            "m1",
        );
        assert_eq!(changed, vec!["city".to_string()]);
        assert_eq!(p.get("plan"), Some(&Value::from("pro")));
        assert_eq!(p.first_seen, Some(t(9)));
        assert_eq!(p.last_seen, Some(t(10)));
        // Same timestamp: the larger message id wins, whatever the order of arrival.
        p.apply(&map(serde_json::json!({"plan": "team"})), t(10), "m3");
        p.apply(&map(serde_json::json!({"plan": "x"})), t(10), "m0");
        assert_eq!(p.get("plan"), Some(&Value::from("team")));
    }

    #[test]
    fn merge_is_commutative() {
        let mut a = ProfileTraits::new();
        a.apply(&map(serde_json::json!({"plan": "pro", "x": 1})), t(10), "a");
        let mut b = ProfileTraits::new();
        b.apply(
            &map(serde_json::json!({"plan": "free", "y": 2})),
            t(11),
            "b",
        );
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.get("plan"), Some(&Value::from("free")));
        let json = serde_json::to_string(&ab).unwrap();
        assert_eq!(serde_json::from_str::<ProfileTraits>(&json).unwrap(), ab);
    }
}
