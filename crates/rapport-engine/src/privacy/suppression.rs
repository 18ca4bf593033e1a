//! Suppression: people whose new events are dropped before storage and about whom nothing
//! is delivered, until they are un-suppressed.
//!
//! The list holds no personal data: each entry is keyed by the hex SHA-256 of the
//! identifier (`kind:value`, normalised as identity resolution normalises what events
//! carry), so a person suppressed and then deleted leaves nothing readable behind, and the
//! list can still recognise them when they come back. Ingest hashes each message's
//! identifiers (`rapport_core::identity::extract`) and looks them up.
//!
//! Layout: `privacy.suppression` / `list`, hash → [`Suppression`] (JSON).
//!
//! Each server keeps the list in memory and reloads it at most every
//! [`REFRESH_INTERVAL`]; the server that makes a change applies it at once, so a
//! suppression is in force on it from the answer, and on other servers sharing the store
//! within that interval.

use crate::EngineError;
use crate::profiles::{Profiles, identifier_key, parse_reference};
use chrono::{DateTime, Utc};
use rapport_core::event::Event;
use rapport_core::identity::{self, Identifier, IdentityRules};
use rapport_store::StateWrite;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The suppression list: partition [`PART_LIST`], key the identifier's hash.
pub const NS_SUPPRESSION: &str = "privacy.suppression";
pub const PART_LIST: &str = "list";

/// How stale a server's copy of the list may be.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// One suppressed identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Hex SHA-256 of `kind:value`.
    pub hash: String,
    /// The identifier's type (`user_id`, `email`, …): not personal, and it lets a listing
    /// say what kind of identifier each entry stands for.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Why, as the operator wrote it (free text: keep personal data out of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The admin key that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The deletion request that made it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<String>,
}

/// Hex SHA-256 of an identifier as the list and receipts name it.
pub fn subject_hash(identifier: &Identifier) -> String {
    let digest = Sha256::digest(identifier_key(identifier).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An identifier as the API names one (`kind:value`), normalised; a profile id is refused
/// (suppression outlives profiles: it names what events carry).
pub fn parse_identifier(reference: &str) -> Result<Identifier, EngineError> {
    let named = || EngineError::Invalid {
        field: "identifier",
        message: format!(
            "name an identifier as `type:value` (user_id:42, email:ann@example.com); got {reference:?}"
        ),
    };
    match parse_reference(reference).map_err(|_| named())? {
        Err(identifier) if identifier.value.trim().is_empty() => Err(named()),
        Err(identifier) => Ok(identifier),
        Ok(_) => Err(EngineError::Invalid {
            field: "identifier",
            message: "name an identifier as `type:value` (user_id:42, email:ann@example.com); \
                      a profile id is not something events carry"
                .into(),
        }),
    }
}

struct Cache {
    hashes: HashSet<String>,
    loaded: Option<Instant>,
}

/// The suppression list with this server's copy of it.
pub struct Suppressions {
    store: Arc<dyn rapport_store::Store>,
    cache: RwLock<Cache>,
    rules: IdentityRules,
    /// Whether a check reloads a stale copy itself (on threads that may block), or
    /// leaves that to [`Suppressions::reload`] on a thread of its own (for the async
    /// ingest path, which must not wait for the store).
    reload_inline: bool,
}

impl Suppressions {
    /// A list whose checks reload the copy when it is stale: for blocking threads.
    pub fn new(store: Arc<dyn rapport_store::Store>) -> Suppressions {
        Suppressions {
            store,
            cache: RwLock::new(Cache {
                hashes: HashSet::new(),
                loaded: None,
            }),
            rules: IdentityRules::default(),
            reload_inline: true,
        }
    }

    /// A list whose checks never touch the store: loaded now, then kept fresh by calling
    /// [`Suppressions::reload`] every [`REFRESH_INTERVAL`] (see
    /// [`super::Privacy::start_refresh`]).
    pub fn cached(store: Arc<dyn rapport_store::Store>) -> Result<Suppressions, EngineError> {
        let list = Suppressions {
            reload_inline: false,
            ..Suppressions::new(store)
        };
        list.reload()?;
        Ok(list)
    }

    /// Reloads this server's copy from the store.
    pub fn reload(&self) -> Result<(), EngineError> {
        let list = self.list()?;
        let mut cache = self.cache.write().expect("cache lock");
        cache.hashes = list.into_iter().map(|s| s.hash).collect();
        cache.loaded = Some(Instant::now());
        Ok(())
    }

    /// Every entry, newest first.
    pub fn list(&self) -> Result<Vec<Suppression>, EngineError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .state_scan_range(NS_SUPPRESSION, PART_LIST, after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in &page {
                out.push(serde_json::from_slice::<Suppression>(v).map_err(corrupt)?);
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(out)
    }

    /// Suppresses `identifier`; suppressing it again keeps the first entry.
    pub fn add(
        &self,
        identifier: &Identifier,
        reason: Option<String>,
        created_by: Option<String>,
        deletion: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Suppression, EngineError> {
        let hash = subject_hash(identifier);
        if let Some(existing) = self.get(&hash)? {
            return Ok(existing);
        }
        let entry = Suppression {
            hash: hash.clone(),
            kind: identifier.kind.as_str().to_owned(),
            created_at: now,
            reason,
            created_by,
            deletion,
        };
        self.store.state_commit(
            &[StateWrite {
                namespace: NS_SUPPRESSION.into(),
                profile: PART_LIST.into(),
                key: hash.as_bytes().to_vec(),
                value: Some(serde_json::to_vec(&entry).expect("suppressions serialise")),
            }],
            None,
        )?;
        self.cache.write().expect("cache lock").hashes.insert(hash);
        Ok(entry)
    }

    /// The write that suppresses `identifier` for a deletion request, unless it already is
    /// (`None`). For the eraser, which suppresses every identifier a deleted person held.
    pub fn write_for_deletion(
        store: &dyn rapport_store::Store,
        identifier: &Identifier,
        deletion: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StateWrite>, EngineError> {
        let hash = subject_hash(identifier);
        if store
            .state_get(NS_SUPPRESSION, PART_LIST, hash.as_bytes())?
            .is_some()
        {
            return Ok(None);
        }
        let entry = Suppression {
            hash: hash.clone(),
            kind: identifier.kind.as_str().to_owned(),
            created_at: now,
            reason: Some("deletion request".into()),
            created_by: None,
            deletion: Some(deletion.to_owned()),
        };
        Ok(Some(StateWrite {
            namespace: NS_SUPPRESSION.into(),
            profile: PART_LIST.into(),
            key: hash.into_bytes(),
            value: Some(serde_json::to_vec(&entry).expect("suppressions serialise")),
        }))
    }

    /// Lifts the suppression of the identifier with this hash; `NotFound` when there is none.
    pub fn remove(&self, hash: &str) -> Result<Suppression, EngineError> {
        let Some(existing) = self.get(hash)? else {
            return Err(EngineError::NotFound(format!(
                "no suppression for that identifier (hash {hash}) is in force"
            )));
        };
        self.store.state_commit(
            &[StateWrite {
                namespace: NS_SUPPRESSION.into(),
                profile: PART_LIST.into(),
                key: hash.as_bytes().to_vec(),
                value: None,
            }],
            None,
        )?;
        self.cache.write().expect("cache lock").hashes.remove(hash);
        Ok(existing)
    }

    fn get(&self, hash: &str) -> Result<Option<Suppression>, EngineError> {
        match self
            .store
            .state_get(NS_SUPPRESSION, PART_LIST, hash.as_bytes())?
        {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Reloads this server's copy when it is older than [`REFRESH_INTERVAL`]. A failed
    /// reload keeps the copy (and is retried on the next call).
    fn refresh(&self) {
        if !self.reload_inline {
            return;
        }
        let fresh = {
            let cache = self.cache.read().expect("cache lock");
            cache.loaded.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL)
        };
        if fresh {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "cannot reload the suppression list");
        }
    }

    /// Whether nothing is suppressed (so that callers may skip reading a profile).
    pub fn is_empty(&self) -> bool {
        self.refresh();
        self.cache.read().expect("cache lock").hashes.is_empty()
    }

    /// Whether any of `identifiers` is suppressed.
    pub fn any<'a>(&self, identifiers: impl IntoIterator<Item = &'a Identifier>) -> bool {
        self.refresh();
        let cache = self.cache.read().expect("cache lock");
        if cache.hashes.is_empty() {
            return false;
        }
        identifiers
            .into_iter()
            .any(|i| cache.hashes.contains(&subject_hash(i)))
    }

    /// Whether `event` carries a suppressed identifier (as identity resolution extracts
    /// them: `userId`, `anonymousId`, e-mails, phones, device ids, `externalIds`).
    pub fn event(&self, event: &Event) -> bool {
        self.refresh();
        if self.cache.read().expect("cache lock").hashes.is_empty() {
            return false;
        }
        let extracted = identity::extract(event, &self.rules);
        self.any(extracted.identifiers.iter().map(|x| &x.identifier))
    }

    /// Whether the live profile `id` holds a suppressed identifier.
    pub fn profile(&self, id: &identity::ProfileId) -> Result<bool, EngineError> {
        self.refresh();
        if self.cache.read().expect("cache lock").hashes.is_empty() {
            return Ok(false);
        }
        let record = Profiles {
            store: self.store.as_ref(),
        }
        .live(id)?;
        Ok(record.is_some_and(|r| self.any(r.identifiers.iter().map(|i| &i.identifier))))
    }
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("a suppression: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_core::identity::IdentifierKind;
    use rapport_store::embedded::EmbeddedStore;

    /// An event as the log stores it (with the fields ingest adds).
    fn event(json: &str) -> Event {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["receivedAt"] = "2024-01-01T00:00:00Z".into();
        v["sourceId"] = "src".into();
        Event::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_suppressed_identifier_is_recognised_in_events_by_any_field_and_then_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn rapport_store::Store> =
            Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let list = Suppressions::new(store.clone());
        let ann = parse_identifier("email: Ann@Example.com ").unwrap();
        assert_eq!(
            ann,
            Identifier::new(IdentifierKind::Email, "ann@example.com")
        );
        let entry = list.add(&ann, None, None, None, Utc::now()).unwrap();
        assert_eq!(entry.kind, "email");
        let by_trait = event(
            r#"{"type":"identify","userId":"u9","traits":{"email":"ANN@example.com"},"messageId":"m","timestamp":"2024-01-01T00:00:00Z"}"#,
        );
        let other = event(
            r#"{"type":"track","event":"x","userId":"u9","messageId":"m","timestamp":"2024-01-01T00:00:00Z"}"#,
        );
        assert!(list.event(&by_trait));
        assert!(!list.event(&other));
        // Another server's copy sees it from the store.
        assert!(Suppressions::new(store.clone()).event(&by_trait));
        // Nothing personal is stored: only the hash.
        let stored = store.state_scan(NS_SUPPRESSION, PART_LIST).unwrap();
        assert!(
            stored
                .iter()
                .all(|(k, v)| !String::from_utf8_lossy(k).contains("ann@")
                    && !String::from_utf8_lossy(v).contains("ann@"))
        );
        list.remove(&subject_hash(&ann)).unwrap();
        assert!(!list.event(&by_trait));
        assert!(matches!(
            list.remove(&subject_hash(&ann)),
            Err(EngineError::NotFound(_))
        ));
        assert!(parse_identifier("p_000000000001").is_err());
    }
}
