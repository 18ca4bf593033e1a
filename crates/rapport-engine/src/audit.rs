//! The audit trail: who did what to the configuration and data through the REST API, when,
//! from where, with what outcome, and the resource as it was before and after.
//!
//! Entries live in one state-store namespace ([`NS_AUDIT`], partition [`PARTITION`]),
//! written only by the server's audit layer and only ever added: nothing here updates or
//! removes an entry, and no route does. Keys sort newest first (the inverted time, then an
//! inverted per-process sequence, then random bytes so that servers sharing one PostgreSQL
//! database never collide), so a listing is a forward scan.
//!
//! Entries never hold a customer's personal data: person-level actions name the person
//! only by the hex SHA-256 of the reference ([`person_digest`]), and their bodies are never
//! recorded. That keeps the trail — which cannot be deleted — out of the reach of a
//! right-to-be-forgotten request.

use crate::EngineError;
use rand::RngCore;
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// The audit trail's namespace.
pub const NS_AUDIT: &str = "audit";
/// Its one partition (not a profile id: profile deletion never reaches it).
pub const PARTITION: &str = "all";
/// Most entries one listing scans past filters before it answers with what it has and a
/// cursor to go on, so that a selective filter cannot make one request read everything.
pub const MAX_SCAN: usize = 20_000;
const ID_PREFIX: &str = "aud_";
const KEY_LEN: usize = 24;

/// Who made a request: the admin key that authorised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub key_id: String,
    pub key_name: String,
}

/// What a request acted on. Person-level resources (a profile, a review pair) carry the hex
/// SHA-256 of their reference as `id`, never the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `aud_…`: the entry's key in the store; empty before it is stored.
    #[serde(default, skip_serializing)]
    pub id: String,
    pub at_ms: i64,
    pub actor: Actor,
    /// `key.create`, `segment.update`, `journey.publish`, …
    pub action: String,
    pub resource: Resource,
    pub method: String,
    /// The route's template (`/api/v1/segments/{name}`), never the raw path.
    pub route: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The error code of a refused request (`invalid_field`, `forbidden`, …).
    pub error: Option<String>,
    /// The client's address (see `rapport_server::rate_limit::client_ip`).
    pub address: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// The hex SHA-256 of a person's reference (a profile id, an identifier, a review pair), as
/// the audit trail names people.
pub fn person_digest(reference: &str) -> String {
    Sha256::digest(reference.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The store key of an entry made at `at_ms`: newest first, unique.
fn new_key(at_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN);
    key.extend_from_slice(&inverted_time(at_ms));
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    key.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    let mut random = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut random);
    key.extend_from_slice(&random);
    key
}

fn inverted_time(at_ms: i64) -> [u8; 8] {
    (u64::MAX - (at_ms.max(0) as u64)).to_be_bytes()
}

fn key_to_id(key: &[u8]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{ID_PREFIX}{hex}")
}

/// The store key an entry id (a listing's cursor) names, if it is one.
pub fn id_to_key(id: &str) -> Option<Vec<u8>> {
    let hex = id.strip_prefix(ID_PREFIX)?;
    if hex.len() != KEY_LEN * 2 || !hex.is_ascii() {
        return None;
    }
    (0..KEY_LEN)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Appends an entry; returns it with its id.
pub fn append(store: &dyn StateStore, mut entry: AuditEntry) -> Result<AuditEntry, EngineError> {
    let key = new_key(entry.at_ms);
    let value = serde_json::to_vec(&entry).map_err(|e| EngineError::Corrupt(e.to_string()))?;
    store.state_commit(
        &[StateWrite {
            namespace: NS_AUDIT.into(),
            profile: PARTITION.into(),
            key: key.clone(),
            value: Some(value),
        }],
        None,
    )?;
    entry.id = key_to_id(&key);
    Ok(entry)
}

/// What a listing selects. `action` matches exactly, or by prefix when it ends in `*`
/// (`journey.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Inclusive, milliseconds since the epoch.
    pub since_ms: Option<i64>,
    /// Exclusive.
    pub until_ms: Option<i64>,
}

impl AuditFilter {
    /// Whether `entry` is selected (times aside: the scan bounds them).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let action = match self.action.as_deref() {
            None => true,
            Some(a) => match a.strip_suffix('*') {
                Some(prefix) => entry.action.starts_with(prefix),
                None => entry.action == a,
            },
        };
        action
            && self.actor.as_ref().is_none_or(|a| *a == entry.actor.key_id)
            && self
                .resource_type
                .as_ref()
                .is_none_or(|t| *t == entry.resource.kind)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|i| Some(i) == entry.resource.id.as_ref())
            && self.since_ms.is_none_or(|s| entry.at_ms >= s)
            && self.until_ms.is_none_or(|u| entry.at_ms < u)
    }
}

/// One page of the trail, newest first: entries after `cursor` (an entry id) that `filter`
/// selects, at most `limit`, and the cursor of the next page (`None` at the end). A page
/// may hold fewer than `limit` entries and still have a next one when the filter is
/// selective ([`MAX_SCAN`]).
pub fn list(
    store: &dyn StateStore,
    filter: &AuditFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<AuditEntry>, Option<String>), EngineError> {
    let mut after = match cursor {
        Some(c) => Some(id_to_key(c).ok_or_else(|| EngineError::InvalidAt {
            field: "cursor".into(),
            message: "not a cursor of this listing".into(),
        })?),
        // Entries at or after `until` sort before this key.
        None => filter.until_ms.map(|u| {
            let mut k = inverted_time(u).to_vec();
            k.extend_from_slice(&[0xff; KEY_LEN - 8]);
            k
        }),
    };
    let mut out = Vec::new();
    let mut scanned = 0;
    loop {
        let page = store.state_scan_range(NS_AUDIT, PARTITION, after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else {
            return Ok((out, None));
        };
        let last = last.clone();
        for (key, value) in page {
            scanned += 1;
            let mut entry: AuditEntry =
                serde_json::from_slice(&value).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if filter.since_ms.is_some_and(|s| entry.at_ms < s) {
                return Ok((out, None));
            }
            entry.id = key_to_id(&key);
            if filter.matches(&entry) {
                out.push(entry);
                if out.len() == limit {
                    let next = out.last().map(|e| e.id.clone());
                    return Ok((out, next));
                }
            }
            if scanned >= MAX_SCAN {
                return Ok((out, Some(key_to_id(&key))));
            }
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_store::embedded::EmbeddedStore;

    fn entry(at_ms: i64, action: &str) -> AuditEntry {
        AuditEntry {
            id: String::new(),
            at_ms,
            actor: Actor {
                key_id: "key_a".into(),
                key_name: "admin key".into(),
            },
            action: action.into(),
            resource: Resource {
                kind: action.split('.').next().unwrap().into(),
                id: Some("x".into()),
            },
            method: "POST".into(),
            route: "/api/v1/x".into(),
            status: 200,
            error: None,
            address: Some("127.0.0.1".into()),
            before: None,
            after: None,
        }
    }

    #[test]
    fn entries_list_newest_first_with_filters_and_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for (t, a) in [
            (10, "key.create"),
            (20, "segment.create"),
            (20, "segment.update"),
            (30, "key.revoke"),
        ] {
            append(&store, entry(t, a)).unwrap();
        }
        let all = AuditFilter::default();
        let (page, next) = list(&store, &all, None, 10).unwrap();
        let actions: Vec<_> = page.iter().map(|e| e.action.as_str()).collect();
        // Within one millisecond the later append comes first.
        assert_eq!(
            actions,
            [
                "key.revoke",
                "segment.update",
                "segment.create",
                "key.create"
            ]
        );
        assert_eq!(next, None);
        let (first, next) = list(&store, &all, None, 2).unwrap();
        assert_eq!(first.len(), 2);
        let (rest, end) = list(&store, &all, next.as_deref(), 2).unwrap();
        assert_eq!(rest[0].action, "segment.create");
        assert_eq!(rest.len(), 2);
        let _ = end;
        let keys = AuditFilter {
            action: Some("key.*".into()),
            ..AuditFilter::default()
        };
        let (page, _) = list(&store, &keys, None, 10).unwrap();
        assert_eq!(page.len(), 2);
        let window = AuditFilter {
            since_ms: Some(20),
            until_ms: Some(30),
            ..AuditFilter::default()
        };
        let (page, next) = list(&store, &window, None, 10).unwrap();
        let actions: Vec<_> = page.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            (actions, next),
            (vec!["segment.update", "segment.create"], None)
        );
        assert!(list(&store, &all, Some("aud_zz"), 1).is_err());
        // Profile deletion does not reach the trail's partition: profile ids are `p_…`.
        assert!(!PARTITION.starts_with("p_"));
    }

    #[test]
    fn people_are_named_by_digest() {
        let d = person_digest("user_id:42");
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(d, person_digest("user_id:42"));
    }
}
