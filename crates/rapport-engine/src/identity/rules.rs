//! The identity rules of the workspace as stored data, with a version.
//!
//! The `[identity]` section of the configuration is only the initial value: once rules are
//! saved through the API they live in the state store, so every process reading the store
//! (and a restart) sees the same rules. Each save bumps the version; the processor compares
//! it between batches and applies new rules to the events it processes from then on.
//! Rules are not retroactive: profiles already built keep the merges made under the rules
//! in force when their events were processed.

use crate::EngineError;
use rapport_core::identity::IdentityRules;
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

pub const NS_RULES: &str = "identity.rules";
const PART: &str = "workspace";
const KEY_VERSION: &[u8] = b"version";
const KEY_CURRENT: &[u8] = b"current";

/// Serialises saves so that two concurrent ones never get the same version.
static SAVE: Mutex<()> = Mutex::new(());

/// The rules in force and their version; version 0 means "from the configuration".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRules {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<i64>,
    pub rules: IdentityRules,
}

pub struct RulesStore<'a> {
    pub store: &'a dyn StateStore,
}

impl RulesStore<'_> {
    /// The version of the stored rules, 0 when none were saved. Cheap: the processor reads
    /// it between batches.
    pub fn version(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .state_get(NS_RULES, PART, KEY_VERSION)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The stored rules, if any were saved.
    pub fn stored(&self) -> Result<Option<StoredRules>, EngineError> {
        match self.store.state_get(NS_RULES, PART, KEY_CURRENT)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| EngineError::Store(format!("stored identity rules: {e}"))),
            None => Ok(None),
        }
    }

    /// The rules in force: the stored ones, else `initial` (the configuration's) as version 0.
    pub fn current(&self, initial: &IdentityRules) -> Result<StoredRules, EngineError> {
        Ok(self.stored()?.unwrap_or_else(|| StoredRules {
            version: 0,
            updated_at_ms: None,
            rules: initial.clone(),
        }))
    }

    /// Validates and saves `rules` as the next version.
    pub fn save(&self, rules: IdentityRules, now_ms: i64) -> Result<StoredRules, EngineError> {
        rules.validate().map_err(|e| EngineError::InvalidAt {
            field: e.field,
            message: e.message,
        })?;
        let _guard = SAVE.lock().unwrap_or_else(|p| p.into_inner());
        let stored = StoredRules {
            version: self.version()? + 1,
            updated_at_ms: Some(now_ms),
            rules,
        };
        let put = |key: &[u8], value: Vec<u8>| StateWrite {
            namespace: NS_RULES.into(),
            profile: PART.into(),
            key: key.to_vec(),
            value: Some(value),
        };
        self.store.state_commit(
            &[
                put(
                    KEY_CURRENT,
                    serde_json::to_vec(&stored).expect("rules serialise"),
                ),
                put(KEY_VERSION, stored.version.to_be_bytes().to_vec()),
            ],
            None,
        )?;
        Ok(stored)
    }
}
