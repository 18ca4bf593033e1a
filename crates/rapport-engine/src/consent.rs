//! Consent per purpose on live profiles: where it is kept, how the API's changes reach the
//! processor, and the reads the API makes.
//!
//! The rule (newest decision per purpose wins, by decision time, not arrival) is
//! `rapport_core::consent`. The processor applies it in its atomic commit:
//! - the current state is part of the [`ProfileRecord`] (`consent`), so segments read it
//!   with the rest of the profile, and a merge combines the two profiles' states by the
//!   same rule (per purpose, the newest decision wins);
//! - every decision, effective or not, is a [`HistoryEntry`] in `consent.history`, keyed
//!   by profile id, then decision time, log offset and purpose; the history of a merged
//!   profile is read through its lineage, like its timeline.
//!
//! Decisions come from events carrying `context.consent.categoryPreferences` (source: the
//! event's source id, with its `messageId`), and from the API, which appends a
//! [`ConsentChange`] control entry to the log (source `api`): applied in log order like an
//! event, so a replay gives the same state.

use crate::EngineError;
use crate::profiles::{Profiles, timeline_key};
use chrono::{DateTime, Utc};
use rapport_core::consent::{Preferences, Recorded};
use rapport_core::identity::ProfileId;
use rapport_store::{AppendItem, Offset, StateWrite};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::profiles::ProfileRecord;

/// Every consent decision a profile received: profile id / time, offset, purpose →
/// [`HistoryEntry`].
pub const NS_CONSENT_HISTORY: &str = "consent.history";

/// The source of decisions made through the REST API.
pub const API_SOURCE: &str = "api";

/// One decision as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub purpose: String,
    pub granted: bool,
    pub at: DateTime<Utc>,
    pub source: String,
    pub message_id: String,
    /// The log offset of the event or control entry that carried it.
    pub offset: Offset,
    /// Whether it became the current decision when it arrived (false: a newer decision was
    /// already known).
    pub effective: bool,
}

/// History keys sort by decision time, then offset, then purpose.
pub fn history_key(at: &DateTime<Utc>, offset: Offset, purpose: &str) -> Vec<u8> {
    let mut k = timeline_key(at.timestamp_millis(), offset);
    k.extend_from_slice(purpose.as_bytes());
    k
}

/// The history write of one recorded decision of `profile`.
pub fn history_write(profile: &ProfileId, offset: Offset, r: &Recorded) -> StateWrite {
    let entry = HistoryEntry {
        purpose: r.purpose.clone(),
        granted: r.decision.granted,
        at: r.decision.at,
        source: r.decision.source.clone(),
        message_id: r.decision.message_id.clone(),
        offset,
        effective: r.effective,
    };
    StateWrite {
        namespace: NS_CONSENT_HISTORY.into(),
        profile: profile.as_str().to_owned(),
        key: history_key(&entry.at, offset, &entry.purpose),
        value: Some(serde_json::to_vec(&entry).expect("consent history serialises")),
    }
}

/// Purposes set through the API, as a control entry in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// Identifies the request; the decisions' message id is `api:<request>`.
    pub request: String,
    /// The profile named when asked; the processor follows merges from it.
    pub profile: ProfileId,
    pub preferences: Preferences,
    /// When the change was asked: the decisions' time.
    pub at: DateTime<Utc>,
    /// The admin key that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl ConsentChange {
    pub fn new(
        profile: ProfileId,
        preferences: Preferences,
        at: DateTime<Utc>,
        changed_by: Option<String>,
    ) -> Self {
        ConsentChange {
            request: uuid::Uuid::new_v4().to_string(),
            profile,
            preferences,
            at,
            changed_by,
        }
    }

    pub fn message_id(&self) -> String {
        format!("api:{}", self.request)
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/consent/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&crate::identity::control::Control::Consent(self.clone()))
                .expect("control entries serialise"),
        }
    }
}

/// A position in a consent history (a history key), for paging.
pub type HistoryCursor = Vec<u8>;

impl Profiles<'_> {
    /// One page of the consent history of `record` and every profile merged into it,
    /// newest decision first; `before` continues a previous page.
    pub fn consent_history(
        &self,
        record: &crate::profiles::ProfileRecord,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, Option<HistoryCursor>), EngineError> {
        let mut all = Vec::new();
        for p in self.lineage(record)? {
            for (k, v) in self.store.state_scan(NS_CONSENT_HISTORY, p.as_str())? {
                if before.is_none_or(|b| k.as_slice() < b) {
                    all.push((k, v));
                }
            }
        }
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let entries = all
            .iter()
            .map(|(_, v)| {
                serde_json::from_slice(v)
                    .map_err(|e| EngineError::Corrupt(format!("corrupt consent history: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok((entries, next))
    }
}
