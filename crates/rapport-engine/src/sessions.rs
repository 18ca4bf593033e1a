//! Dashboard sessions: an admin key, presented once at sign-in, becomes a session that the
//! browser carries in an HttpOnly cookie, so the key itself never sits in the page's
//! JavaScript or storage.
//!
//! A session acts as its key: it holds the SHA-256 of the key's secret (the digest
//! [`Access`] authenticates by), so every request through it is answered by the key's
//! current state — a key revoked, or its scopes changed, ends or changes every session it
//! opened within [`crate::access::AccessOptions::cache_ttl`]. The token itself is stored
//! only as its SHA-256: a copy of the store opens no session.
//!
//! Each session carries a CSRF token, sent by the page in a header on every state change
//! (the HTTP layer checks it) and never in a cookie.
//!
//! Layout: `dashboard.session` / `sessions`, hex SHA-256 of the token → [`Session`] (JSON).
//! Sessions expire [`SESSION_LIFETIME`] after sign-in; an expired one is deleted when next
//! presented, and [`Sessions::prune`] removes the others.

use crate::EngineError;
use crate::access::{Access, Principal, random_token};
use rapport_store::{StateWrite, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Sessions: partition [`PART_SESSIONS`], key the hex SHA-256 of the token.
pub const NS_SESSION: &str = "dashboard.session";
pub const PART_SESSIONS: &str = "sessions";

/// How long a session lasts after sign-in (a working day): then the key is asked again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How long a session read from the store is reused before it is read again: the bound on
/// how long a session ended through another server sharing the store keeps working here.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// Sessions remembered in memory at most.
const MAX_CACHED: usize = 10_000;

/// The longest token worth looking up (issued ones are 46 bytes).
const MAX_TOKEN_BYTES: usize = 128;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The key that signed in.
    pub key_id: String,
    /// Hex SHA-256 of the key's secret: how the key is authenticated on every request.
    pub key_hash: String,
    /// Sent by the page as `X-CSRF-Token` on every state change.
    pub csrf: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A session as opened: the token goes into the cookie, and exists nowhere else.
#[derive(Debug, Clone)]
pub struct Opened {
    pub token: String,
    pub session: Session,
}

/// The session store, with a short-lived cache (each dashboard request presents a session).
pub struct Sessions {
    store: Arc<dyn Store>,
    access: Arc<Access>,
    cache: RwLock<HashMap<String, (Session, Instant)>>,
    /// When expired sessions were last pruned (at a sign-in, at most hourly).
    pruned_at_ms: std::sync::Mutex<Option<i64>>,
}

/// How often a sign-in also prunes expired sessions.
const PRUNE_INTERVAL_MS: i64 = 3_600_000;

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, access: Arc<Access>) -> Sessions {
        Sessions {
            store,
            access,
            cache: RwLock::new(HashMap::new()),
            pruned_at_ms: std::sync::Mutex::new(None),
        }
    }

    /// Signs in with an admin key's secret: a new session acting as that key, or
    /// `EngineError::Invalid` (field `key`) for a key that is unknown, revoked, or a write
    /// key. Blocking (store I/O).
    pub fn open(&self, secret: &str, now_ms: i64) -> Result<(Opened, Principal), EngineError> {
        let refused = |message: &str| EngineError::Invalid {
            field: "key",
            message: message.into(),
        };
        let principal = match self.access.authenticate(secret.trim())? {
            Some(p @ Principal::Admin { .. }) => p,
            Some(Principal::Writer { .. }) => {
                return Err(refused(
                    "a write key only sends events; sign in with an admin key",
                ));
            }
            None => return Err(refused("the key is unknown or revoked")),
        };
        let Principal::Admin { key_id, .. } = &principal else {
            unreachable!("matched above")
        };
        let session = Session {
            key_id: key_id.clone(),
            key_hash: crate::access::hash_secret(secret.trim()),
            csrf: random_token(32),
            created_at_ms: now_ms,
            expires_at_ms: now_ms + SESSION_LIFETIME.as_millis() as i64,
        };
        let token = format!("ds_{}", random_token(43));
        self.write(&token_hash(&token), Some(&session))?;
        let due = {
            let mut at = self.pruned_at_ms.lock().unwrap_or_else(|p| p.into_inner());
            let due = at.is_none_or(|t| now_ms - t >= PRUNE_INTERVAL_MS);
            if due {
                *at = Some(now_ms);
            }
            due
        };
        if due {
            self.prune(now_ms)?;
        }
        Ok((Opened { token, session }, principal))
    }

    /// The session a token opens and who it acts as, or `None` (unknown, expired, or its
    /// key revoked). Blocking on a cache miss.
    pub fn resolve(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<(Session, Principal)>, EngineError> {
        let Some(session) = self.get(token, now_ms)? else {
            return Ok(None);
        };
        Ok(self
            .access
            .authenticate_digest(&session.key_hash)?
            .filter(|p| matches!(p, Principal::Admin { .. }))
            .map(|p| (session, p)))
    }

    /// As [`Sessions::resolve`], from memory only: `None` when the answer is not cached
    /// (then call `resolve` off the async threads).
    pub fn cached(&self, token: &str, now_ms: i64) -> Option<Option<(Session, Principal)>> {
        let session = {
            let cache = self.cache.read().expect("session cache lock");
            let (session, at) = cache.get(&token_hash(token))?;
            if at.elapsed() >= CACHE_TTL {
                return None;
            }
            session.clone()
        };
        if session.expires_at_ms <= now_ms {
            return None;
        }
        let principal = self.access.cached_digest(&session.key_hash)?;
        Some(
            principal
                .filter(|p| matches!(p, Principal::Admin { .. }))
                .map(|p| (session, p)),
        )
    }

    fn get(&self, token: &str, now_ms: i64) -> Result<Option<Session>, EngineError> {
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with("ds_") {
            return Ok(None);
        }
        let hash = token_hash(token);
        let cached = {
            let cache = self.cache.read().expect("session cache lock");
            cache
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(s, _)| s.clone())
        };
        let session = match cached {
            Some(s) => Some(s),
            None => match self
                .store
                .state_get(NS_SESSION, PART_SESSIONS, hash.as_bytes())?
            {
                None => None,
                Some(bytes) => Some(
                    serde_json::from_slice::<Session>(&bytes)
                        .map_err(|e| EngineError::Corrupt(format!("session: {e}")))?,
                ),
            },
        };
        match session {
            Some(s) if s.expires_at_ms > now_ms => {
                let mut cache = self.cache.write().expect("session cache lock");
                if cache.len() >= MAX_CACHED && !cache.contains_key(&hash) {
                    cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                }
                cache
                    .entry(hash)
                    .or_insert_with(|| (s.clone(), Instant::now()));
                Ok(Some(s))
            }
            Some(_) => {
                self.write(&hash, None)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends a session (sign out): at once here, within a few seconds on other servers.
    pub fn close(&self, token: &str) -> Result<(), EngineError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(());
        }
        self.write(&token_hash(token), None)
    }

    /// Deletes every expired session; returns how many. Blocking.
    pub fn prune(&self, now_ms: i64) -> Result<usize, EngineError> {
        let mut expired = Vec::new();
        for (key, value) in self.store.state_scan(NS_SESSION, PART_SESSIONS)? {
            let gone = serde_json::from_slice::<Session>(&value)
                .map(|s| s.expires_at_ms <= now_ms)
                .unwrap_or(true);
            if gone {
                expired.push(key);
            }
        }
        let writes: Vec<StateWrite> = expired
            .iter()
            .map(|key| StateWrite {
                namespace: NS_SESSION.into(),
                profile: PART_SESSIONS.into(),
                key: key.clone(),
                value: None,
            })
            .collect();
        if !writes.is_empty() {
            self.store.state_commit(&writes, None)?;
        }
        Ok(writes.len())
    }

    fn write(&self, hash: &str, session: Option<&Session>) -> Result<(), EngineError> {
        self.store.state_commit(
            &[StateWrite {
                namespace: NS_SESSION.into(),
                profile: PART_SESSIONS.into(),
                key: hash.as_bytes().to_vec(),
                value: session.map(|s| serde_json::to_vec(s).expect("a session serialises")),
            }],
            None,
        )?;
        let mut cache = self.cache.write().expect("session cache lock");
        match session {
            Some(s) => {
                cache.insert(hash.to_owned(), (s.clone(), Instant::now()));
            }
            None => {
                cache.remove(hash);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_store::KeyKind;
    use rapport_store::embedded::EmbeddedStore;

    fn set_up() -> (tempfile::TempDir, Arc<Access>, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let access = Arc::new(Access::new(store.clone()));
        let sessions = Sessions::new(store, access.clone());
        (dir, access, sessions)
    }

    #[test]
    fn a_session_acts_as_its_key_until_it_expires_is_closed_or_the_key_is_revoked() {
        let (_dir, access, sessions) = set_up();
        let key = access.create_key(KeyKind::Admin, None, "ops", 0).unwrap();
        let (opened, principal) = sessions.open(&key.secret, 1_000).unwrap();
        assert!(matches!(principal, Principal::Admin { ref name, .. } if name == "ops"));
        assert_eq!(opened.session.key_id, key.key.id);
        assert_ne!(opened.token, opened.session.csrf);

        let (session, p) = sessions.resolve(&opened.token, 2_000).unwrap().unwrap();
        assert_eq!(session, opened.session);
        assert_eq!(p, principal);
        assert_eq!(sessions.resolve("ds_nonsense", 2_000).unwrap(), None);
        assert_eq!(
            sessions.resolve(&key.secret, 2_000).unwrap(),
            None,
            "a key is no session"
        );

        // Expiry.
        let end = opened.session.expires_at_ms;
        assert_eq!(sessions.resolve(&opened.token, end).unwrap(), None);
        assert_eq!(sessions.prune(end).unwrap(), 0, "deleted when presented");

        // Sign out.
        let (second, _) = sessions.open(&key.secret, 1_000).unwrap();
        sessions.close(&second.token).unwrap();
        assert_eq!(sessions.resolve(&second.token, 2_000).unwrap(), None);

        // Revocation of the key ends its sessions.
        let (third, _) = sessions.open(&key.secret, 1_000).unwrap();
        access.revoke_key(&key.key.id, 1_500).unwrap();
        assert_eq!(sessions.resolve(&third.token, 2_000).unwrap(), None);
        assert!(sessions.open(&key.secret, 2_000).is_err());
    }

    #[test]
    fn only_admin_keys_sign_in_and_tokens_are_stored_hashed() {
        let (_dir, access, sessions) = set_up();
        let (_source, write) = access.create_source("web", 0).unwrap();
        let err = sessions.open(&write.secret, 0).unwrap_err();
        assert!(
            matches!(err, EngineError::Invalid { field: "key", .. }),
            "{err:?}"
        );
        assert!(sessions.open("ak_unknown", 0).is_err());

        let admin = access.create_key(KeyKind::Admin, None, "a", 0).unwrap();
        let (opened, _) = sessions.open(&admin.secret, 0).unwrap();
        let stored = sessions
            .store
            .state_scan(NS_SESSION, PART_SESSIONS)
            .unwrap();
        assert_eq!(stored.len(), 1);
        let text = String::from_utf8_lossy(&stored[0].1).to_string()
            + &String::from_utf8_lossy(&stored[0].0);
        assert!(!text.contains(&opened.token));
        assert!(!text.contains(&admin.secret));
    }

    #[test]
    fn expired_sessions_are_pruned() {
        let (_dir, access, sessions) = set_up();
        let key = access.create_key(KeyKind::Admin, None, "a", 0).unwrap();
        sessions.open(&key.secret, 0).unwrap();
        sessions.open(&key.secret, 10_000).unwrap();
        let first_end = SESSION_LIFETIME.as_millis() as i64;
        assert_eq!(sessions.prune(first_end).unwrap(), 1);
        assert_eq!(sessions.prune(first_end).unwrap(), 0);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
