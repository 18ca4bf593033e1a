//! Where audience data lives in the [`StateStore`] (layout in the parent module's doc), and the
//! reads the API makes: members, sizes, the feed, backfill progress.

use super::profile::{AudienceChange, ProfileAudience, history_event};
use crate::EngineError;
use crate::profiles::Profiles;
use rapport_core::audience::HistoryEvent;
use rapport_core::event::Event;
use rapport_core::identity::ProfileId;
use rapport_store::{Offset, StateStore, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const NS_AUDIENCE: &str = "audience";
pub const NS_MEMBER: &str = "segment.member";
pub const NS_SIZE: &str = "segment.size";
pub const NS_FEED: &str = "audience.feed";
pub const NS_SCHEDULE: &str = "audience.schedule";
pub const NS_META: &str = "audience.meta";
pub const NS_PROFILE_LIST: &str = "profile.all";
pub const PART_FEED: &str = "feed";
pub const PART_DUE: &str = "due";
pub const PART_ALL: &str = "all";
pub const PART_META: &str = "state";

/// Progress of evaluating changed definitions over every existing profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// The definitions version being (or last) backfilled.
    pub version: u64,
    /// The last profile id done; `None` before the first.
    #[serde(default)]
    pub cursor: Option<String>,
    pub processed: u64,
    /// Live profiles when the backfill started.
    pub total: u64,
    pub started_at_ms: i64,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
}

impl Backfill {
    pub fn running(&self) -> bool {
        self.finished_at_ms.is_none() && self.version > 0
    }
}

/// The processor's audience bookkeeping, committed with its offset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceMeta {
    /// The last feed sequence number written.
    #[serde(default)]
    pub feed_seq: u64,
    /// The last sequence number of the trait-change feed (`crate::trait_changes`).
    #[serde(default)]
    pub trait_feed_seq: u64,
    /// Members per segment.
    #[serde(default)]
    pub sizes: BTreeMap<String, u64>,
    /// Live profiles.
    #[serde(default)]
    pub profiles: u64,
    #[serde(default)]
    pub backfill: Backfill,
    /// Aggregate key → the definitions version since which it has been defined.
    #[serde(default)]
    pub since: BTreeMap<String, u64>,
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("corrupt audience data: {e}"))
}

/// Scheduler keys sort by due time, then profile.
pub fn schedule_key(due_ms: i64, profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + profile.len());
    k.extend_from_slice(&((due_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(profile.as_bytes());
    k
}

pub fn decode_schedule_key(k: &[u8]) -> Option<(i64, String)> {
    let due = u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some((due as i64, String::from_utf8(k[8..].to_vec()).ok()?))
}

pub const HOUR_MS: i64 = 3_600_000;

/// One page of members (profile id, entered at ms) and the cursor of the next page.
pub type MemberPage = (Vec<(String, i64)>, Option<String>);

/// Reads of audience data.
pub struct Audiences<'a> {
    pub store: &'a dyn StateStore,
}

impl Audiences<'_> {
    pub fn meta(&self) -> Result<AudienceMeta, EngineError> {
        match self.store.state_get(NS_META, PART_META, b"")? {
            Some(b) => serde_json::from_slice(&b).map_err(corrupt),
            None => Ok(AudienceMeta::default()),
        }
    }

    pub fn profile(&self, profile: &str) -> Result<Option<ProfileAudience>, EngineError> {
        match self.store.state_get(NS_AUDIENCE, profile, b"")? {
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// The identifier people know a member by, as `kind:value` (the form
    /// `GET /api/v1/profiles/{ref}` takes): its user id, else its e-mail, phone or
    /// anonymous id, in that order; `None` for a profile with none of them (or gone).
    pub fn main_identifier(&self, profile: &str) -> Result<Option<String>, EngineError> {
        use rapport_core::identity::{IdentifierKind, ProfileId};
        let profiles = crate::profiles::Profiles { store: self.store };
        let Some(record) = profiles.record(&ProfileId::new(profile.to_owned()))? else {
            return Ok(None);
        };
        let order = [
            IdentifierKind::UserId,
            IdentifierKind::Email,
            IdentifierKind::Phone,
            IdentifierKind::AnonymousId,
        ];
        Ok(order.iter().find_map(|kind| {
            record
                .identifiers
                .iter()
                .find(|r| &r.identifier.kind == kind)
                .map(|r| format!("{}:{}", kind.as_str(), r.identifier.value))
        }))
    }

    /// One page of a segment's members (profile id, entered at ms), by profile id.
    pub fn members(
        &self,
        segment: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, EngineError> {
        let rows =
            self.store
                .state_scan_range(NS_MEMBER, segment, after.map(str::as_bytes), limit + 1)?;
        let more = rows.len() > limit;
        let page: Vec<(String, i64)> = rows
            .into_iter()
            .take(limit)
            .map(|(k, v)| {
                let at = v
                    .try_into()
                    .map(i64::from_be_bytes)
                    .map_err(|_| corrupt("member entry"))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), at))
            })
            .collect::<Result<_, EngineError>>()?;
        let next = if more {
            page.last().map(|(p, _)| p.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// Segment size at the end of each hour it changed (hour start ms, members).
    pub fn size_history(&self, segment: &str) -> Result<Vec<(i64, u64)>, EngineError> {
        self.store
            .state_scan(NS_SIZE, segment)?
            .into_iter()
            .map(|(k, v)| {
                let hour = k
                    .try_into()
                    .map(|b: [u8; 8]| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
                    .map_err(|_| corrupt("size key"))?;
                let size = v
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("size value"))?;
                Ok((hour, size))
            })
            .collect()
    }

    /// Feed entries with sequence numbers after `after`, oldest first.
    pub fn feed(&self, after: u64, limit: usize) -> Result<Vec<AudienceChange>, EngineError> {
        self.store
            .state_scan_range(NS_FEED, PART_FEED, Some(&after.to_be_bytes()), limit)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
            .collect()
    }
}

pub fn size_key(hour_ms: i64) -> Vec<u8> {
    ((hour_ms as u64) ^ (1 << 63)).to_be_bytes().to_vec()
}

/// Every event of a stored profile and of the profiles merged into it, with its log offset,
/// in log order.
pub fn committed_history(
    store: &dyn Store,
    id: &ProfileId,
) -> Result<Vec<(Offset, HistoryEvent)>, EngineError> {
    let profiles = Profiles { store };
    let Some(record) = profiles.record(id)? else {
        return Ok(Vec::new());
    };
    let mut offsets = Vec::new();
    for p in profiles.lineage(&record)? {
        offsets.extend(profiles.timeline_offsets(&p)?);
    }
    offsets.sort_unstable();
    let mut out = Vec::with_capacity(offsets.len());
    for o in offsets {
        if let Some(payload) = store.get(o)?
            && let Ok(event) = Event::from_json(&payload)
        {
            out.push((o, history_event(&event)));
        }
    }
    Ok(out)
}
