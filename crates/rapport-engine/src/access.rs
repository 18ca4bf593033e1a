//! Sources and API keys: creation, revocation, and authentication of presented secrets.
//!
//! Secrets are random 32-byte values shown once; only their SHA-256 is stored. A plain hash
//! suffices because the secrets are high-entropy: there is nothing to brute-force.

use crate::EngineError;
use rand::RngCore;
use rapport_store::{ApiKey, KeyKind, Source, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_token(bytes: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    // 62^43 > 2^256: the mapping below keeps (nearly) all of the entropy.
    raw.iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// A key as created, with its secret: the only moment the secret exists outside the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

/// What a presented secret authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Writer { source_id: String, key_id: String },
    Admin { key_id: String },
}

/// Sources and keys, with an in-memory cache of valid keys for the ingest hot path.
pub struct Access {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, Option<Principal>>>,
}

impl Access {
    pub fn new(store: Arc<dyn Store>) -> Access {
        Access {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn create_source(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<(Source, IssuedKey), EngineError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(EngineError::Invalid {
                field: "name",
                message: "a source needs a name".into(),
            });
        }
        if self.store.sources()?.iter().any(|s| s.name == name) {
            return Err(EngineError::Conflict(format!(
                "a source named {name:?} exists"
            )));
        }
        let source = Source {
            id: format!("src_{}", random_token(12)),
            name: name.to_owned(),
            created_at_ms: now_ms,
        };
        self.store.put_source(&source)?;
        let key = self.create_key(
            KeyKind::Write,
            Some(&source.id),
            &format!("{name} write key"),
            now_ms,
        )?;
        Ok((source, key))
    }

    pub fn sources(&self) -> Result<Vec<Source>, EngineError> {
        let mut s = self.store.sources()?;
        s.sort_by_key(|s| s.created_at_ms);
        Ok(s)
    }

    pub fn source_by_name_or_id(&self, name_or_id: &str) -> Result<Source, EngineError> {
        self.store
            .sources()?
            .into_iter()
            .find(|s| s.id == name_or_id || s.name == name_or_id)
            .ok_or_else(|| EngineError::NotFound(format!("no source {name_or_id:?}")))
    }

    pub fn create_key(
        &self,
        kind: KeyKind,
        source_id: Option<&str>,
        name: &str,
        now_ms: i64,
    ) -> Result<IssuedKey, EngineError> {
        let source_id = match (kind, source_id) {
            (KeyKind::Write, None) => {
                return Err(EngineError::Invalid {
                    field: "source",
                    message: "a write key belongs to a source".into(),
                });
            }
            (KeyKind::Write, Some(s)) => Some(self.source_by_name_or_id(s)?.id),
            (KeyKind::Admin, _) => None,
        };
        let prefix = match kind {
            KeyKind::Write => "wk_",
            KeyKind::Admin => "ak_",
        };
        let secret = format!("{prefix}{}", random_token(43));
        let key = ApiKey {
            id: format!("key_{}", random_token(12)),
            kind,
            source_id,
            name: name.to_owned(),
            secret_hash: hash_secret(&secret),
            secret_prefix: secret[..10].to_owned(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        };
        self.store.put_key(&key)?;
        Ok(IssuedKey { key, secret })
    }

    pub fn keys(&self) -> Result<Vec<ApiKey>, EngineError> {
        let mut k = self.store.keys()?;
        k.sort_by_key(|k| k.created_at_ms);
        Ok(k)
    }

    pub fn revoke_key(&self, id: &str, now_ms: i64) -> Result<ApiKey, EngineError> {
        let mut key = self
            .store
            .keys()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| EngineError::NotFound(format!("no key {id:?}")))?;
        if key.revoked_at_ms.is_none() {
            key.revoked_at_ms = Some(now_ms);
            self.store.put_key(&key)?;
        }
        self.cache.write().expect("key cache lock").clear();
        Ok(key)
    }

    /// The cached answer for `secret`, if it was authenticated before: no store access.
    pub fn cached(&self, secret: &str) -> Option<Option<Principal>> {
        self.cache
            .read()
            .expect("key cache lock")
            .get(secret)
            .cloned()
    }

    /// Who `secret` authenticates as, or `None` for an unknown or revoked key.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>, EngineError> {
        if let Some(p) = self.cache.read().expect("key cache lock").get(secret) {
            return Ok(p.clone());
        }
        let principal = self
            .store
            .key_by_hash(&hash_secret(secret))?
            .filter(|k| k.revoked_at_ms.is_none())
            .and_then(|k| match k.kind {
                KeyKind::Admin => Some(Principal::Admin { key_id: k.id }),
                KeyKind::Write => k.source_id.map(|source_id| Principal::Writer {
                    source_id,
                    key_id: k.id,
                }),
            });
        let mut cache = self.cache.write().expect("key cache lock");
        // Unknown secrets are cached too, but the cache is bounded against key-guessing floods.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(secret.to_owned(), principal.clone());
        Ok(principal)
    }

    /// On a store with no source yet: creates the `default` source with its write key and an
    /// admin key, and returns them so they can be shown once.
    pub fn bootstrap(
        &self,
        now_ms: i64,
    ) -> Result<Option<(Source, IssuedKey, IssuedKey)>, EngineError> {
        if !self.store.sources()?.is_empty() {
            return Ok(None);
        }
        let (source, write) = self.create_source("default", now_ms)?;
        let admin = self.create_key(KeyKind::Admin, None, "admin key", now_ms)?;
        Ok(Some((source, write, admin)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_store::embedded::EmbeddedStore;

    #[test]
    fn keys_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let access = Access::new(store.clone());
        let (source, write, admin) = access.bootstrap(1).unwrap().unwrap();
        assert!(access.bootstrap(2).unwrap().is_none());
        assert!(write.secret.starts_with("wk_") && admin.secret.starts_with("ak_"));
        assert_eq!(
            access.authenticate(&write.secret).unwrap(),
            Some(Principal::Writer {
                source_id: source.id.clone(),
                key_id: write.key.id.clone()
            })
        );
        assert!(matches!(
            access.authenticate(&admin.secret).unwrap(),
            Some(Principal::Admin { .. })
        ));
        assert_eq!(access.authenticate("wk_nope").unwrap(), None);
        // Nothing secret is stored.
        let stored = serde_json::to_string(&store.keys().unwrap()).unwrap();
        assert!(!stored.contains(&write.secret) && !stored.contains(&admin.secret));
        access.revoke_key(&write.key.id, 3).unwrap();
        assert_eq!(access.authenticate(&write.secret).unwrap(), None);
        assert!(matches!(
            access.create_source("default", 4),
            Err(EngineError::Conflict(_))
        ));
        assert!(matches!(
            access.create_key(KeyKind::Write, Some("missing"), "k", 5),
            Err(EngineError::NotFound(_))
        ));
    }
}
