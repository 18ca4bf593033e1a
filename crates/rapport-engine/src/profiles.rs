//! How profiles live in the [`StateStore`], and the reads the API makes of them.
//!
//! Everything is keyed by the id it is looked up by, so a sharded backend can distribute it:
//! - `profile` / profile id → [`ProfileRecord`] (JSON); a merged-away profile keeps a record
//!   that only says where it went;
//! - `identity.index` / `kind:value` → the profile holding that identifier;
//! - `identity.log` / profile id, sequence → one [`IdentityLogEntry`] (the explanation);
//! - `timeline` / profile id, timestamp + offset → the log offset of one of its events;
//! - `account` / account id → [`AccountProfile`];
//! - `trait.index` / `name=value` , profile id → present when the profile has that trait
//!   value (string, number or boolean traits), for search;
//! - `consent.history` / profile id, time + offset + purpose → one consent decision
//!   ([`crate::consent`]); the current consent is in the [`ProfileRecord`].

use crate::EngineError;
use rapport_core::consent::ConsentState;
use rapport_core::identity::{
    AccountProfile, Identifier, IdentifierKind, IdentifierRecord, IdentityLog, IdentityLogEntry,
    ProfileId, ProfileTraits,
};
use rapport_store::{Offset, StateStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

pub const NS_PROFILE: &str = "profile";
pub const NS_IDENTIFIER: &str = "identity.index";
pub const NS_IDENTITY_LOG: &str = "identity.log";
pub const NS_TIMELINE: &str = "timeline";
pub const NS_ACCOUNT: &str = "account";
pub const NS_TRAIT_INDEX: &str = "trait.index";

/// The unified profile of one person, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub id: ProfileId,
    /// Set when this profile was merged into another: the record is then only a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<ProfileId>,
    #[serde(default)]
    pub identifiers: Vec<IdentifierRecord>,
    #[serde(default)]
    pub traits: ProfileTraits,
    #[serde(default)]
    pub accounts: BTreeSet<String>,
    /// Profiles merged into this one (directly), whose timelines and logs it inherits.
    #[serde(default)]
    pub merged_from: Vec<ProfileId>,
    /// Next sequence number of this profile's identity log.
    #[serde(default)]
    pub log_seq: u64,
    /// Consent per purpose: the newest decision for each (see [`crate::consent`]).
    #[serde(default, skip_serializing_if = "ConsentState::is_empty")]
    pub consent: ConsentState,
}

impl ProfileRecord {
    pub fn new(id: ProfileId) -> ProfileRecord {
        ProfileRecord {
            id,
            merged_into: None,
            identifiers: Vec::new(),
            traits: ProfileTraits::default(),
            accounts: BTreeSet::new(),
            merged_from: Vec::new(),
            log_seq: 0,
            consent: ConsentState::default(),
        }
    }
}

/// The id of a profile created by the event at `offset` (the `n`-th created by it): ids
/// sort by creation, so identity's "smallest id survives" keeps the oldest profile, and a
/// replay of the log mints the same ids.
pub fn profile_id_for(offset: Offset) -> ProfileId {
    ProfileId::new(format!("p_{offset:012x}"))
}

pub fn identifier_key(id: &Identifier) -> String {
    format!("{}:{}", id.kind.as_str(), id.value)
}

/// A trait value as indexed for search: strings, numbers and booleans; other values are not
/// searchable.
///
/// Traits whose key would be longer than [`MAX_INDEXED_TRAIT_BYTES`], or whose name holds a
/// control character, are not indexed (so not searchable): the key is a partition key every
/// store must be able to index (`rapport_store::MAX_KEY_TEXT_BYTES`), and a trait value is
/// whatever a client sent.
pub fn trait_index_key(name: &str, value: &Value) -> Option<String> {
    let key = match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => format!("{name}={value}"),
        _ => return None,
    };
    (key.len() <= MAX_INDEXED_TRAIT_BYTES && !name.chars().any(char::is_control)).then_some(key)
}

/// The longest `name=value` text the trait index keeps.
pub const MAX_INDEXED_TRAIT_BYTES: usize = 512;

// Every key the processor derives from client input fits what the stores index.
const _: () = assert!(MAX_INDEXED_TRAIT_BYTES <= rapport_store::MAX_KEY_TEXT_BYTES);
const _: () = assert!(rapport_core::event::MAX_NAME_BYTES <= rapport_store::MAX_KEY_TEXT_BYTES);
const _: () = assert!(
    rapport_core::identity::identifier::MAX_IDENTIFIER_LEN + 65
        <= rapport_store::MAX_KEY_TEXT_BYTES
);

/// Timeline keys sort by event timestamp, then log offset.
pub fn timeline_key(timestamp_ms: i64, offset: Offset) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&((timestamp_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// A position in a profile's timeline: timestamp (ms), log offset, and for entries that are
/// not events (segment entries and exits) their feed sequence number (0 for events).
pub type TimelinePosition = (i64, Offset, u64);

/// One entry of a profile's timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum TimelineItem {
    /// The event at this log offset.
    Event(Offset),
    /// A segment entry or exit (JSON of an `audiences::AudienceChange`).
    Audience(Vec<u8>),
    /// A journey decision (JSON whose first field is `journey`).
    Journey(Vec<u8>),
}

/// Event keys are 16 bytes (timestamp, offset); audience entries append their sequence.
fn decode_timeline_key(k: &[u8]) -> Option<TimelinePosition> {
    if k.len() != 16 && k.len() != 24 {
        return None;
    }
    let ts = u64::from_be_bytes(k[..8].try_into().ok()?) ^ (1 << 63);
    let off = u64::from_be_bytes(k[8..16].try_into().ok()?);
    let seq = match k.get(16..24) {
        Some(s) => u64::from_be_bytes(s.try_into().ok()?),
        None => 0,
    };
    Some((ts as i64, off, seq))
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("corrupt profile data: {e}"))
}

/// Reads of the profile data, shared by the processor and the API.
pub struct Profiles<'a> {
    pub store: &'a dyn StateStore,
}

/// A profile reference as the API accepts it: a profile id (`p_…`) or `kind:value`
/// (`user_id:42`, `email:ann@example.com`).
pub fn parse_reference(reference: &str) -> Result<Result<ProfileId, Identifier>, EngineError> {
    if reference.starts_with("p_") && !reference.contains(':') {
        return Ok(Ok(ProfileId::new(reference)));
    }
    let Some((kind, value)) = reference.split_once(':') else {
        return Err(EngineError::Invalid {
            field: "profile",
            message: format!(
                "a profile is named by its id (p_…) or by `type:value`, e.g. user_id:42 (got {reference:?})"
            ),
        });
    };
    let kind = IdentifierKind::parse(kind).ok_or_else(|| EngineError::Invalid {
        field: "profile",
        message: format!("unknown identifier type {kind:?}"),
    })?;
    // Normalised as identity resolution normalises what events carry, so that a reference
    // names what the client sent (` u1 ` finds `u1`); a value that does not normalise is
    // looked up as given, and finds nothing.
    let value = rapport_core::identity::identifier::normalise(&kind, value, None)
        .unwrap_or_else(|_| value.to_owned());
    Ok(Err(Identifier::new(kind, value)))
}

impl Profiles<'_> {
    pub fn record(&self, id: &ProfileId) -> Result<Option<ProfileRecord>, EngineError> {
        match self.store.state_get(NS_PROFILE, id.as_str(), b"")? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// The live profile a reference stands for, following merges.
    pub fn resolve(&self, reference: &str) -> Result<ProfileRecord, EngineError> {
        let id = match parse_reference(reference)? {
            Ok(id) => id,
            Err(identifier) => self
                .holder(&identifier)?
                .ok_or_else(|| EngineError::NotFound(format!("no profile has {identifier}")))?,
        };
        self.live(&id)?
            .ok_or_else(|| EngineError::NotFound(format!("no profile {id}")))
    }

    /// The live record for `id`, following redirects of merged profiles.
    pub fn live(&self, id: &ProfileId) -> Result<Option<ProfileRecord>, EngineError> {
        let mut current = id.clone();
        for _ in 0..64 {
            match self.record(&current)? {
                Some(r) => match &r.merged_into {
                    Some(next) => current = next.clone(),
                    None => return Ok(Some(r)),
                },
                None => return Ok(None),
            }
        }
        Err(corrupt(format!("merge chain from {id} does not end")))
    }

    pub fn holder(&self, identifier: &Identifier) -> Result<Option<ProfileId>, EngineError> {
        Ok(self
            .store
            .state_get(NS_IDENTIFIER, &identifier_key(identifier), b"")?
            .map(|b| ProfileId::new(String::from_utf8_lossy(&b).into_owned())))
    }

    pub fn account(&self, account_id: &str) -> Result<Option<AccountProfile>, EngineError> {
        match self.store.state_get(NS_ACCOUNT, account_id, b"")? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// Every profile id whose data belongs to `record` now: itself and all merged into it.
    pub fn lineage(&self, record: &ProfileRecord) -> Result<Vec<ProfileId>, EngineError> {
        let mut out = vec![record.id.clone()];
        let mut pending = record.merged_from.clone();
        while let Some(p) = pending.pop() {
            if out.contains(&p) {
                continue;
            }
            if let Some(r) = self.record(&p)? {
                pending.extend(r.merged_from);
            }
            out.push(p);
        }
        Ok(out)
    }

    pub fn identity_log(&self, id: &ProfileId) -> Result<IdentityLog, EngineError> {
        let entries = self
            .store
            .state_scan(NS_IDENTITY_LOG, id.as_str())?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<IdentityLogEntry>(&v).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IdentityLog { entries })
    }

    /// The profile's explanation: its own identity log and those of every profile merged
    /// into it, in time order.
    pub fn explanation(
        &self,
        record: &ProfileRecord,
    ) -> Result<Vec<IdentityLogEntry>, EngineError> {
        let own = self.identity_log(&record.id)?;
        let mut failure = None;
        let combined = own.combined(|p| match self.identity_log(p) {
            Ok(log) => Some(log),
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(combined),
        }
    }

    /// One page of the profile's timeline (its events and segment entries/exits), newest
    /// first, over the profile and everything merged into it. `before` continues a previous
    /// page.
    pub fn timeline(
        &self,
        record: &ProfileRecord,
        before: Option<TimelinePosition>,
        limit: usize,
    ) -> Result<(Vec<TimelineItem>, Option<TimelinePosition>), EngineError> {
        let mut all = Vec::new();
        for p in self.lineage(record)? {
            for (k, v) in self.store.state_scan(NS_TIMELINE, p.as_str())? {
                if let Some(pos) = decode_timeline_key(&k)
                    && before.is_none_or(|b| pos < b)
                {
                    let item = if pos.2 == 0 {
                        TimelineItem::Event(pos.1)
                    } else if v.starts_with(b"{\"journey\"") {
                        TimelineItem::Journey(v)
                    } else {
                        TimelineItem::Audience(v)
                    };
                    all.push((pos, item));
                }
            }
        }
        all.sort_unstable_by_key(|(p, _)| std::cmp::Reverse(*p));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|(p, _)| *p)
        } else {
            None
        };
        Ok((all.into_iter().map(|(_, i)| i).collect(), next))
    }

    /// The log offsets of the events attributed to `id` itself (not to profiles merged into
    /// it), in timeline order.
    pub fn timeline_offsets(&self, id: &ProfileId) -> Result<Vec<Offset>, EngineError> {
        Ok(self
            .store
            .state_scan(NS_TIMELINE, id.as_str())?
            .into_iter()
            .filter_map(|(k, _)| decode_timeline_key(&k))
            .filter(|(_, _, seq)| *seq == 0)
            .map(|(_, o, _)| o)
            .collect())
    }

    /// Live profiles having trait `name` equal to `value`, by profile id: at most `limit`
    /// after the profile id `after`, and the id to continue after when more follow.
    pub fn search(
        &self,
        name: &str,
        value: &Value,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ProfileRecord>, Option<String>), EngineError> {
        let Some(key) = trait_index_key(name, value) else {
            return Err(EngineError::Invalid {
                field: "value",
                message: "only string, number and boolean traits can be searched".into(),
            });
        };
        let limit = limit.max(1);
        let mut out = Vec::new();
        let mut position: Option<Vec<u8>> = after.map(|a| a.as_bytes().to_vec());
        loop {
            let batch = self.store.state_scan_range(
                NS_TRAIT_INDEX,
                &key,
                position.as_deref(),
                limit + 1,
            )?;
            let exhausted = batch.len() <= limit;
            for (k, _) in batch {
                let id = ProfileId::new(String::from_utf8_lossy(&k).into_owned());
                position = Some(k);
                if let Some(r) = self.record(&id)?
                    && r.merged_into.is_none()
                {
                    if out.len() == limit {
                        // One more live profile: the page is full and another follows.
                        let next = out.last().map(|r: &ProfileRecord| r.id.as_str().to_owned());
                        return Ok((out, next));
                    }
                    out.push(r);
                }
            }
            if exhausted {
                return Ok((out, None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            parse_reference("p_00000000000a").unwrap(),
            Ok(ProfileId::new("p_00000000000a"))
        );
        assert_eq!(
            parse_reference("email: Ann@Example.com").unwrap(),
            Err(Identifier::new(IdentifierKind::Email, "ann@example.com"))
        );
        assert_eq!(
            parse_reference("user_id:a:b").unwrap(),
            Err(Identifier::new(IdentifierKind::UserId, "a:b"))
        );
        assert!(parse_reference("nonsense").is_err());
        assert!(parse_reference("shoe_size:42").is_ok_and(|r| r.is_err()));
    }

    #[test]
    fn profile_ids_sort_by_creation() {
        assert!(profile_id_for(9) < profile_id_for(10));
        assert!(profile_id_for(0xfff) < profile_id_for(0x1000));
    }
}
