//! The identity rules of the workspace as data that changes over time, with a version.
//!
//! The `[identity]` section of the configuration is only the initial value. A change of
//! rules is appended to the log as a control entry ([`super::control::RulesChange`]) and
//! takes effect when the processor reaches it: events before the entry were resolved under
//! the old rules, events after it under the new ones, in this process, after a restart and
//! when the whole log is replayed. Rules are not retroactive: profiles already built keep
//! the merges made under the rules in force when their events were processed.
//!
//! What the processor applied is kept under [`NS_RULES`], written in the same commit as its
//! offset: the rules in force with their version (1 for the first change, counted by the
//! processor so that a replay numbers them alike), every version since (the audit trail of
//! who changed what and when), and for each change request what became of it.

use crate::EngineError;
use rapport_core::identity::IdentityRules;
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};

pub const NS_RULES: &str = "identity.rules";
const PART: &str = "workspace";
const PART_HISTORY: &str = "history";
const PART_APPLIED: &str = "applied";
const KEY_VERSION: &[u8] = b"version";
const KEY_CURRENT: &[u8] = b"current";

/// Rules in force from a point of the log on; version 0 means "from the configuration".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRules {
    pub version: u64,
    /// When the change was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<i64>,
    /// The log offset of the change: events after it are resolved under these rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Who asked for the change (the API key's name), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub rules: IdentityRules,
}

/// What the processor made of a change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// In force as `version` from log offset `offset` on.
    Applied { version: u64, offset: u64 },
    /// Refused when applied (only if the rules were invalid for this version of Rapport;
    /// the API validates before appending).
    Invalid {
        offset: u64,
        field: String,
        message: String,
    },
}

fn put(part: &str, key: &[u8], value: Vec<u8>) -> StateWrite {
    StateWrite {
        namespace: NS_RULES.into(),
        profile: part.into(),
        key: key.to_vec(),
        value: Some(value),
    }
}

/// The writes that record `stored` as the rules in force, in its history, and as the
/// outcome of `request`.
pub fn applied_writes(stored: &StoredRules, request: &str) -> Vec<StateWrite> {
    let json = serde_json::to_vec(stored).expect("rules serialise");
    let outcome = ChangeOutcome::Applied {
        version: stored.version,
        offset: stored.offset.unwrap_or(0),
    };
    vec![
        put(PART, KEY_CURRENT, json.clone()),
        put(PART, KEY_VERSION, stored.version.to_be_bytes().to_vec()),
        put(PART_HISTORY, &stored.version.to_be_bytes(), json),
        put(
            PART_APPLIED,
            request.as_bytes(),
            serde_json::to_vec(&outcome).expect("outcomes serialise"),
        ),
    ]
}

/// The write that records a change request refused when applied.
pub fn refused_write(request: &str, outcome: &ChangeOutcome) -> StateWrite {
    put(
        PART_APPLIED,
        request.as_bytes(),
        serde_json::to_vec(outcome).expect("outcomes serialise"),
    )
}

pub struct RulesStore<'a> {
    pub store: &'a dyn StateStore,
}

impl RulesStore<'_> {
    /// The version of the rules the processor applied last, 0 when none. Cheap: the
    /// processor reads it before each batch.
    pub fn version(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .state_get(NS_RULES, PART, KEY_VERSION)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The rules the processor applied last, if any change was ever applied.
    pub fn stored(&self) -> Result<Option<StoredRules>, EngineError> {
        match self.store.state_get(NS_RULES, PART, KEY_CURRENT)? {
            Some(b) => decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// The rules in force: the last applied change, else `initial` (the configuration's)
    /// as version 0.
    pub fn current(&self, initial: &IdentityRules) -> Result<StoredRules, EngineError> {
        Ok(self.stored()?.unwrap_or_else(|| StoredRules {
            version: 0,
            updated_at_ms: None,
            offset: None,
            changed_by: None,
            rules: initial.clone(),
        }))
    }

    /// Every applied version, oldest first.
    pub fn history(&self) -> Result<Vec<StoredRules>, EngineError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .state_scan_range(NS_RULES, PART_HISTORY, after.as_deref(), 500)?;
            let n = page.len();
            if let Some((k, _)) = page.last() {
                after = Some(k.clone());
            }
            for (_, v) in page {
                out.push(decode(&v)?);
            }
            if n < 500 {
                return Ok(out);
            }
        }
    }

    /// What became of change request `request`; `None` until the processor reached it.
    pub fn outcome(&self, request: &str) -> Result<Option<ChangeOutcome>, EngineError> {
        match self
            .store
            .state_get(NS_RULES, PART_APPLIED, request.as_bytes())?
        {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| EngineError::Corrupt(format!("stored rules outcome: {e}"))),
            None => Ok(None),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<StoredRules, EngineError> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Corrupt(format!("stored identity rules: {e}")))
}
