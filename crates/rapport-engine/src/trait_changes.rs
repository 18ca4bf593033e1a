//! The trait-change feed: every change of a profile's trait the processor applies, in the
//! order it applied them, for the destinations that deliver trait changes.
//!
//! A change is only knowable while the event is applied (after, the previous value is
//! gone), so the processor writes it then, in the batch's commit, with a sequence number
//! kept in its bookkeeping. It does so only while some destination selects trait changes
//! (checked once per batch, after the batch's entries are read: a destination receives the
//! changes of events logged after its creation, as it receives events), so a deployment
//! without such a destination stores nothing more.
//!
//! Layout: `trait.feed` / `feed`, sequence (u64, big-endian) → one [`TraitChange`].

use crate::EngineError;
use chrono::{DateTime, Utc};
use rapport_store::{Offset, StateWrite, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const NS_TRAIT_FEED: &str = "trait.feed";
pub const PART_FEED: &str = "feed";

/// One trait of one profile taking a new value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitChange {
    /// Position in the feed, from 1.
    pub seq: u64,
    /// The profile whose trait changed (`p_…`).
    pub profile: String,
    /// The trait's name as sent (`plan`).
    pub name: String,
    pub value: Value,
    /// The value before; `null` when the trait is new.
    pub previous: Value,
    /// The timestamp of the event that set it.
    pub at: DateTime<Utc>,
    /// The log offset of that event.
    pub offset: Offset,
}

impl TraitChange {
    pub fn write(&self) -> StateWrite {
        StateWrite {
            namespace: NS_TRAIT_FEED.into(),
            profile: PART_FEED.into(),
            key: self.seq.to_be_bytes().to_vec(),
            value: Some(serde_json::to_vec(self).expect("a trait change serialises")),
        }
    }
}

/// The changes after sequence `after`, oldest first, at most `limit`.
pub fn read(store: &dyn Store, after: u64, limit: usize) -> Result<Vec<TraitChange>, EngineError> {
    store
        .state_scan_range(NS_TRAIT_FEED, PART_FEED, Some(&after.to_be_bytes()), limit)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| EngineError::Corrupt(format!("a trait change: {e}")))
        })
        .collect()
}

/// Whether any destination (paused ones too: they resume where they stopped) delivers
/// trait changes.
pub fn wanted(store: &dyn Store) -> Result<bool, EngineError> {
    Ok(crate::destinations::list(store)?
        .iter()
        .any(|d| d.spec.deliver.trait_changes))
}
