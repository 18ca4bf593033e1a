//! Control entries: decisions about identity written to the event log.
//!
//! A change of identity rules and a merge decided by the matcher or by a reviewer are not
//! applied to the profiles directly.
//! It is appended to the log, through the same `EventLog::append` as tracked events, and
//! the processor resolves it in log order like any event: against the identity rules in
//! force, so that a merge the rules forbid (two user ids) is refused, not forced. Hence a
//! crash never loses an acknowledged decision, and replaying the log rebuilds the same
//! profiles. The entry names the two profiles by id; ids are minted from log offsets, so a
//! replay names the same profiles.
//!
//! Entries are JSON objects whose first key is `rapport_control`; they carry no `type` or
//! `timestamp`, so the event indexer and everything reading Segment events skip them.

use chrono::{DateTime, Utc};
use rapport_core::identity::{
    Identifier, IdentifierKind, IdentityRules, MergeReason, PROBABILISTIC_MATCH, ProfileId,
};
use rapport_store::AppendItem;
use serde::{Deserialize, Serialize};

/// What the processor records for each merge entry it applied.
pub const NS_MATCH_OUTCOME: &str = "identity.match";
pub const PART_OUTCOME: &str = "outcome";

const PREFIX: &[u8] = b"{\"rapport_control\":";

/// Whether a log entry is a control entry (well-formed or not).
pub fn is_control(payload: &[u8]) -> bool {
    payload.starts_with(PREFIX)
}

/// A decision carried by the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rapport_control", rename_all = "snake_case")]
pub enum Control {
    /// Merge two profiles the matcher found to be one person.
    ProbabilisticMerge(MatchMerge),
    /// Resolve the events after this entry under new identity rules.
    IdentityRules(RulesChange),
    /// Resolve the events of one source after this entry under its new identity policy.
    SourceIdentity(SourceIdentityChange),
    /// Purposes set through the API on one profile (`crate::consent`).
    Consent(crate::consent::ConsentChange),
    /// A customer entered into a journey through the API (`crate::journeys`).
    JourneyEntry(crate::journeys::ApiEntry),
    /// Frequency caps across journeys set through the API (`crate::journeys`).
    JourneyCaps(crate::journeys::CapsChange),
    /// A migration of a journey's instances to another version (`crate::journeys`).
    JourneyMigration(crate::journeys::MigrationRequest),
    /// A person's deletion (`crate::privacy`): the processor drops what it derived.
    Forget(crate::privacy::ForgetRequest),
}

/// A source's identity policy (whether it may merge profiles, which identifier types it
/// may assert), put in force in log order so that a replay applies each event under the
/// policy that was in force when it was logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceIdentityChange {
    pub request: String,
    pub source_id: String,
    pub identity: rapport_store::IdentityPolicy,
    pub at: DateTime<Utc>,
}

impl SourceIdentityChange {
    pub fn new(
        source_id: &str,
        identity: rapport_store::IdentityPolicy,
        at: DateTime<Utc>,
    ) -> Self {
        SourceIdentityChange {
            request: uuid::Uuid::new_v4().to_string(),
            source_id: source_id.to_owned(),
            identity,
            at,
        }
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/source/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&Control::SourceIdentity(self.clone()))
                .expect("control entries serialise"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesChange {
    /// Identifies the request, to find what became of it.
    pub request: String,
    pub rules: IdentityRules,
    /// When the change was requested.
    pub at: DateTime<Utc>,
    /// The name of the API key that asked for it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl RulesChange {
    pub fn new(rules: IdentityRules, at: DateTime<Utc>, changed_by: Option<String>) -> Self {
        RulesChange {
            request: uuid::Uuid::new_v4().to_string(),
            rules,
            at,
            changed_by,
        }
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/rules/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&Control::IdentityRules(self.clone()))
                .expect("control entries serialise"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchMerge {
    pub pair: String,
    pub left: ProfileId,
    pub right: ProfileId,
    pub score: f64,
    pub probability: f64,
    /// `automatic` or `review`.
    pub decided_by: String,
    /// The admin key that accepted the pair in review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// When the decision was taken; identity uses it as the event time.
    pub at: DateTime<Utc>,
}

impl MatchMerge {
    /// The message id under which the merge appears in identity logs.
    pub fn message_id(&self) -> String {
        format!("match:{}", self.pair)
    }

    pub fn reason(&self) -> MergeReason {
        MergeReason {
            kind: PROBABILISTIC_MATCH.into(),
            pair: self.pair.clone(),
            score: self.score,
            probability: self.probability,
            decided_by: self.decided_by.clone(),
            reviewer: self.reviewer.clone(),
        }
    }

    /// The log item; its dedup key is derived from the pair, so a retried decision is
    /// stored once within the de-duplication window (and applied once in any case: a
    /// second copy finds the profiles already one).
    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/merge/{}", self.pair).into_bytes(),
            payload: serde_json::to_vec(&Control::ProbabilisticMerge(self.clone()))
                .expect("control entries serialise"),
        }
    }
}

impl Control {
    /// The control entry in a log payload, if it is one. Tracked events cost one prefix
    /// comparison.
    pub fn parse(payload: &[u8]) -> Option<Control> {
        if !is_control(payload) {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// What became of a merge entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// `from` was merged into `into`.
    Merged { into: ProfileId, from: ProfileId },
    /// The identity rules forbid the merge: joining the profiles would give one profile
    /// more than `limit` identifiers of type `kind`.
    Refused {
        kind: IdentifierKind,
        limit: u32,
        identifier: Identifier,
    },
    /// The two profiles had become one before the entry was processed.
    AlreadyOne { profile: ProfileId },
    /// One of the profiles no longer exists.
    Missing,
}

/// An outcome as stored under [`NS_MATCH_OUTCOME`], keyed by pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub pair: String,
    /// The log offset of the entry.
    pub offset: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_entries_are_recognised_and_events_are_not() {
        let m = MatchMerge {
            pair: "p_1~p_2".into(),
            left: ProfileId::new("p_1"),
            right: ProfileId::new("p_2"),
            score: 12.5,
            probability: 0.99,
            decided_by: "automatic".into(),
            reviewer: None,
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let item = m.append_item();
        assert_eq!(
            Control::parse(&item.payload),
            Some(Control::ProbabilisticMerge(m))
        );
        assert_eq!(
            Control::parse(br#"{"type":"track","rapport_control":"x"}"#),
            None
        );
        assert_eq!(Control::parse(br#"{"rapport_control":"unknown"}"#), None);
        let change = RulesChange::new(IdentityRules::default(), Utc::now(), Some("ops".into()));
        assert_eq!(
            Control::parse(&change.append_item().payload),
            Some(Control::IdentityRules(change))
        );
        let source = SourceIdentityChange::new(
            "src_1",
            rapport_store::IdentityPolicy {
                merge: false,
                identifier_types: None,
            },
            Utc::now(),
        );
        assert_eq!(
            Control::parse(&source.append_item().payload),
            Some(Control::SourceIdentity(source))
        );
    }
}
