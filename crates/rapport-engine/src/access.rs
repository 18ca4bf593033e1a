//! Sources and API keys: creation, revocation, and authentication of presented secrets.
//!
//! Secrets are random 32-byte values shown once; only their SHA-256 is stored. A plain hash
//! suffices because the secrets are high-entropy: there is nothing to brute-force.
//!
//! Authentication is on the ingest hot path, so answers are cached in memory — but a
//! presented secret is attacker-controlled input, so the cache is keyed by its SHA-256
//! (never by the secret: a flood of huge unknown tokens costs 32 bytes an entry), bounded
//! in entries, and every entry expires after [`AccessOptions::cache_ttl`]: a key revoked
//! through another process sharing the store stops working here within that time.
//! Secrets longer than [`MAX_SECRET_BYTES`] are refused before they are even hashed.

use crate::EngineError;
use rand::RngCore;
use rapport_store::{ApiKey, KeyKind, Source, SourceSettings, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The longest secret worth looking up, in bytes. Issued secrets are 46 bytes; anything
/// longer than this is unknown by construction and is refused without hashing, caching or
/// a store lookup.
pub const MAX_SECRET_BYTES: usize = 256;

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    if hex_digest.len() != 64 || !hex_digest.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex_digest[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an admin key may do. Keys stored before scopes existed, and the welcome key, hold
/// every scope. See `docs/security.md`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything, personal data included.
    Read,
    /// Read, with personal data masked in every answer.
    ReadMasked,
    /// Change configuration: sources, keys, definitions, rules, destinations, journeys.
    Configure,
    /// Delete people's data (right-to-be-forgotten deletions, suppressions).
    Delete,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Read,
        Scope::ReadMasked,
        Scope::Configure,
        Scope::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::ReadMasked => "read_masked",
            Scope::Configure => "configure",
            Scope::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A set of scopes.
pub type Scopes = std::collections::BTreeSet<Scope>;

/// Every scope: what a key without recorded scopes holds.
pub fn all_scopes() -> Scopes {
    Scope::ALL.into_iter().collect()
}

/// The scopes of admin keys, by key id, for keys created with scopes: a key without an
/// entry holds every scope. Written by [`Access::create_key_with_scopes`] before the key
/// itself, so that a key never exists, even after a crash, with more than it was given.
pub const NS_KEY_SCOPES: &str = "key_scopes";
const SCOPES_PARTITION: &str = "all";

/// How long ingest trusts a source's cached settings: a change made through another node
/// (several servers on one PostgreSQL) is in force everywhere within this time.
const SETTINGS_TTL: Duration = Duration::from_secs(5);
/// Most names in one trait list or identifier-type list.
const MAX_NAMES: usize = 1_000;
/// Most events per second (and burst) a rate limit may name.
pub const MAX_RATE: u32 = 1_000_000;

/// Checks source settings; the error names the field (`settings.traits.deny[2]`).
pub fn validate_settings(settings: &SourceSettings) -> Result<(), EngineError> {
    let invalid = |field: String, message: String| EngineError::InvalidAt { field, message };
    let names = |field: &str, list: &[String]| -> Result<(), EngineError> {
        if list.len() > MAX_NAMES {
            return Err(invalid(
                format!("settings.{field}"),
                format!("at most {MAX_NAMES} names"),
            ));
        }
        for (i, name) in list.iter().enumerate() {
            if name.is_empty() || name.len() > 256 || name.trim() != name {
                return Err(invalid(
                    format!("settings.{field}[{i}]"),
                    "a trait name is 1 to 256 bytes, without surrounding spaces".into(),
                ));
            }
        }
        Ok(())
    };
    if let Some(allow) = &settings.traits.allow {
        names("traits.allow", allow)?;
    }
    if let Some(days) = settings.retention_days
        && !(1..=36_500).contains(&days)
    {
        return Err(invalid(
            "settings.retention_days".into(),
            "keep events 1 to 36500 days (leave it out to keep them until deleted)".into(),
        ));
    }
    names("traits.deny", &settings.traits.deny)?;
    if let Some(types) = &settings.identity.identifier_types {
        if types.len() > MAX_NAMES {
            return Err(invalid(
                "settings.identity.identifier_types".into(),
                format!("at most {MAX_NAMES} types"),
            ));
        }
        for (i, t) in types.iter().enumerate() {
            if rapport_core::identity::IdentifierKind::parse(t).is_none() {
                return Err(invalid(
                    format!("settings.identity.identifier_types[{i}]"),
                    "an identifier type is a name such as `user_id`, `anonymous_id`, `email` \
                     (ASCII letters, digits, `_`, `-`, `.`; at most 64 bytes)"
                        .into(),
                ));
            }
        }
    }
    for (field, limit) in [
        ("rate_limit", &settings.rate_limit),
        ("ip_rate_limit", &settings.ip_rate_limit),
    ] {
        let Some(limit) = limit else { continue };
        for (part, n) in [("per_second", limit.per_second), ("burst", limit.burst)] {
            if n == 0 || n > MAX_RATE {
                return Err(invalid(
                    format!("settings.{field}.{part}"),
                    format!("must be a whole number from 1 to {MAX_RATE}"),
                ));
            }
        }
    }
    Ok(())
}

pub fn hash_secret(secret: &str) -> String {
    hex(&digest(secret))
}

/// A random secret of `bytes` characters from `[0-9A-Za-z]` (5.95 bits each).
pub fn random_token(bytes: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    // 62^43 > 2^256: the mapping below keeps (nearly) all of the entropy.
    raw.iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// What may be shown of a key: everything but the hash of its secret, which stays between
/// the engine and the store (a listing that carried it would let whoever reads the listing
/// test guesses offline).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub kind: KeyKind,
    /// The source a write key sends to.
    pub source_id: Option<String>,
    pub name: String,
    /// The first characters of the secret, to recognise it in listings.
    pub secret_prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// An admin key's scopes; `None` for write keys.
    pub scopes: Option<Scopes>,
}

impl From<ApiKey> for KeyInfo {
    fn from(k: ApiKey) -> KeyInfo {
        KeyInfo {
            id: k.id,
            kind: k.kind,
            source_id: k.source_id,
            name: k.name,
            secret_prefix: k.secret_prefix,
            created_at_ms: k.created_at_ms,
            revoked_at_ms: k.revoked_at_ms,
            scopes: None,
        }
    }
}

/// A key as created, with its secret: the only moment the secret exists outside the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub key: KeyInfo,
    pub secret: String,
}

/// What a presented secret authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Writer {
        source_id: String,
        key_id: String,
    },
    /// An admin key, with its name (for the audit trail) and its scopes.
    Admin {
        key_id: String,
        name: String,
        scopes: Scopes,
    },
}

/// How long and how much [`Access`] remembers of authentication answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessOptions {
    /// How long an answer (known or unknown key) is reused before the store is asked again:
    /// the bound on how long a key revoked by another process sharing the store keeps
    /// working here. Revocation through this process takes effect at once.
    pub cache_ttl: Duration,
    /// Live keys remembered at most (about 150 bytes each).
    pub max_cached_keys: usize,
    /// Unknown or revoked secrets remembered at most (by hash, about 50 bytes each), so
    /// that a client retrying a bad key does not cost a store lookup per request.
    pub max_cached_unknown: usize,
}

impl Default for AccessOptions {
    fn default() -> AccessOptions {
        AccessOptions {
            cache_ttl: Duration::from_secs(5),
            max_cached_keys: 10_000,
            max_cached_unknown: 1_000,
        }
    }
}

/// Answers remembered by the SHA-256 of the secret, each with when it was looked up.
#[derive(Default)]
struct Cache {
    known: HashMap<[u8; 32], (Principal, Instant)>,
    unknown: HashMap<[u8; 32], Instant>,
}

/// Inserts into a map bounded at `max` entries: expired entries go first, then, if it is
/// still full, an arbitrary one (a flood of fresh entries can only churn the cache, never
/// grow it).
fn bounded_insert<V>(
    map: &mut HashMap<[u8; 32], V>,
    max: usize,
    key: [u8; 32],
    value: V,
    fresh: impl Fn(&V) -> bool,
) {
    if max == 0 {
        return;
    }
    if map.len() >= max && !map.contains_key(&key) {
        map.retain(|_, v| fresh(v));
        if map.len() >= max
            && let Some(victim) = map.keys().next().copied()
        {
            map.remove(&victim);
        }
    }
    map.insert(key, value);
}

/// Sources and keys, with a bounded, expiring in-memory cache of authentication answers for
/// the ingest hot path (see the module documentation).
pub struct Access {
    store: Arc<dyn Store>,
    options: AccessOptions,
    cache: RwLock<Cache>,
    /// Source settings for ingest, by source id, with when they were read.
    settings: RwLock<HashMap<String, (Instant, Arc<SourceSettings>)>>,
}

impl Access {
    pub fn new(store: Arc<dyn Store>) -> Access {
        Access::with_options(store, AccessOptions::default())
    }

    pub fn with_options(store: Arc<dyn Store>, options: AccessOptions) -> Access {
        Access {
            store,
            options,
            cache: RwLock::new(Cache::default()),
            settings: RwLock::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> AccessOptions {
        self.options
    }

    pub fn create_source(
        &self,
        name: &str,
        now_ms: i64,
    ) -> Result<(Source, IssuedKey), EngineError> {
        self.create_source_with(name, SourceSettings::default(), now_ms)
    }

    /// As [`Access::create_source`], with settings (validated).
    pub fn create_source_with(
        &self,
        name: &str,
        settings: SourceSettings,
        now_ms: i64,
    ) -> Result<(Source, IssuedKey), EngineError> {
        validate_settings(&settings)?;
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
            settings,
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

    /// Renames a source and/or replaces its settings (validated). Returns the source as it
    /// was and as it is now. Ingest on this node sees the change at once, other nodes
    /// within [`SETTINGS_TTL`]; the identity policy takes effect where the caller's control
    /// entry lands in the log (see `rapport_engine::identity::control::SourceIdentityChange`).
    pub fn update_source(
        &self,
        name_or_id: &str,
        name: Option<&str>,
        settings: Option<SourceSettings>,
    ) -> Result<(Source, Source), EngineError> {
        let before = self.source_by_name_or_id(name_or_id)?;
        let mut source = before.clone();
        if let Some(name) = name {
            let name = name.trim();
            if name.is_empty() {
                return Err(EngineError::Invalid {
                    field: "name",
                    message: "a source needs a name".into(),
                });
            }
            if self
                .store
                .sources()?
                .iter()
                .any(|s| s.name == name && s.id != source.id)
            {
                return Err(EngineError::Conflict(format!(
                    "a source named {name:?} exists"
                )));
            }
            source.name = name.to_owned();
        }
        if let Some(settings) = settings {
            validate_settings(&settings)?;
            source.settings = settings;
        }
        self.store.put_source(&source)?;
        self.settings
            .write()
            .expect("settings cache lock")
            .remove(&source.id);
        Ok((before, source))
    }

    /// The cached settings of a source, if read within [`SETTINGS_TTL`]: no store access.
    pub fn cached_settings(&self, source_id: &str) -> Option<Arc<SourceSettings>> {
        self.settings
            .read()
            .expect("settings cache lock")
            .get(source_id)
            .filter(|(at, _)| at.elapsed() < SETTINGS_TTL)
            .map(|(_, s)| s.clone())
    }

    /// The settings ingest applies to `source_id` (the default for an unknown source).
    pub fn source_settings(&self, source_id: &str) -> Result<Arc<SourceSettings>, EngineError> {
        if let Some(s) = self.cached_settings(source_id) {
            return Ok(s);
        }
        let all = self.store.sources()?;
        let mut cache = self.settings.write().expect("settings cache lock");
        let now = Instant::now();
        // One read refreshes every source: the list is small (sources are made by admins).
        cache.clear();
        for s in all {
            cache.insert(s.id.clone(), (now, Arc::new(s.settings)));
        }
        Ok(cache
            .get(source_id)
            .map(|(_, s)| s.clone())
            .unwrap_or_default())
    }

    pub fn create_key(
        &self,
        kind: KeyKind,
        source_id: Option<&str>,
        name: &str,
        now_ms: i64,
    ) -> Result<IssuedKey, EngineError> {
        self.create_key_with_scopes(kind, source_id, name, None, now_ms)
    }

    /// The scopes of an admin key (every scope when none were recorded).
    pub fn scopes_of(&self, key_id: &str) -> Result<Scopes, EngineError> {
        Ok(
            match self
                .store
                .state_get(NS_KEY_SCOPES, SCOPES_PARTITION, key_id.as_bytes())?
            {
                None => all_scopes(),
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Corrupt(format!("scopes of {key_id}: {e}")))?,
            },
        )
    }

    /// As [`Access::create_key`], an admin key limited to `scopes` (`None`: every scope).
    /// Callers check that the creator holds the scopes it gives (no escalation).
    pub fn create_key_with_scopes(
        &self,
        kind: KeyKind,
        source_id: Option<&str>,
        name: &str,
        scopes: Option<&Scopes>,
        now_ms: i64,
    ) -> Result<IssuedKey, EngineError> {
        if kind == KeyKind::Write && scopes.is_some() {
            return Err(EngineError::Invalid {
                field: "scopes",
                message: "scopes are for admin keys; a write key only sends events".into(),
            });
        }
        if scopes.is_some_and(|s| s.is_empty()) {
            return Err(EngineError::Invalid {
                field: "scopes",
                message: "an admin key needs at least one scope".into(),
            });
        }
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
        if let Some(scopes) = scopes {
            let value = serde_json::to_vec(scopes).expect("scopes serialise");
            self.store.state_commit(
                &[rapport_store::StateWrite {
                    namespace: NS_KEY_SCOPES.into(),
                    profile: SCOPES_PARTITION.into(),
                    key: key.id.as_bytes().to_vec(),
                    value: Some(value),
                }],
                None,
            )?;
        }
        self.store.put_key(&key)?;
        let mut info = KeyInfo::from(key);
        if kind == KeyKind::Admin {
            info.scopes = Some(scopes.cloned().unwrap_or_else(all_scopes));
        }
        Ok(IssuedKey { key: info, secret })
    }

    /// Every key, oldest first, without the hashes of their secrets.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, EngineError> {
        let mut k = self.store.keys()?;
        k.sort_by_key(|k| k.created_at_ms);
        let mut recorded: HashMap<Vec<u8>, Scopes> = HashMap::new();
        for (id, bytes) in self.store.state_scan(NS_KEY_SCOPES, SCOPES_PARTITION)? {
            let scopes = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Corrupt(format!("key scopes: {e}")))?;
            recorded.insert(id, scopes);
        }
        Ok(k.into_iter()
            .map(|k| {
                let scopes = (k.kind == KeyKind::Admin).then(|| {
                    recorded
                        .get(k.id.as_bytes())
                        .cloned()
                        .unwrap_or_else(all_scopes)
                });
                KeyInfo {
                    scopes,
                    ..KeyInfo::from(k)
                }
            })
            .collect())
    }

    /// Revokes a key: at once in this process, within [`AccessOptions::cache_ttl`] in every
    /// other process that shares the store.
    pub fn revoke_key(&self, id: &str, now_ms: i64) -> Result<KeyInfo, EngineError> {
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
        let mut cache = self.cache.write().expect("key cache lock");
        *cache = Cache::default();
        let scopes = match key.kind {
            KeyKind::Admin => Some(self.scopes_of(&key.id)?),
            KeyKind::Write => None,
        };
        Ok(KeyInfo {
            scopes,
            ..KeyInfo::from(key)
        })
    }

    /// The cached answer for `secret` if one is fresh: no store access. Secrets too long to
    /// be keys are answered (unknown) without hashing.
    pub fn cached(&self, secret: &str) -> Option<Option<Principal>> {
        self.cached_at(secret, Instant::now())
    }

    fn cached_at(&self, secret: &str, now: Instant) -> Option<Option<Principal>> {
        if secret.len() > MAX_SECRET_BYTES {
            return Some(None);
        }
        self.lookup_cache(&digest(secret), now)
    }

    fn lookup_cache(&self, digest: &[u8; 32], now: Instant) -> Option<Option<Principal>> {
        let ttl = self.options.cache_ttl;
        let cache = self.cache.read().expect("key cache lock");
        if let Some((p, at)) = cache.known.get(digest)
            && now.saturating_duration_since(*at) < ttl
        {
            return Some(Some(p.clone()));
        }
        if let Some(at) = cache.unknown.get(digest)
            && now.saturating_duration_since(*at) < ttl
        {
            return Some(None);
        }
        None
    }

    /// Who `secret` authenticates as, or `None` for an unknown or revoked key (and for any
    /// secret longer than [`MAX_SECRET_BYTES`], without a lookup).
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>, EngineError> {
        self.authenticate_at(secret, Instant::now())
    }

    /// As [`Access::cached`], by the hex SHA-256 of the secret (what a dashboard session
    /// holds instead of the key).
    pub fn cached_digest(&self, hex_digest: &str) -> Option<Option<Principal>> {
        self.lookup_cache(&parse_digest(hex_digest)?, Instant::now())
    }

    /// As [`Access::authenticate`], by the hex SHA-256 of the secret: `None` for a digest
    /// that is not one.
    pub fn authenticate_digest(&self, hex_digest: &str) -> Result<Option<Principal>, EngineError> {
        match parse_digest(hex_digest) {
            Some(d) => self.authenticate_by(d, Instant::now()),
            None => Ok(None),
        }
    }

    fn authenticate_at(
        &self,
        secret: &str,
        now: Instant,
    ) -> Result<Option<Principal>, EngineError> {
        if secret.len() > MAX_SECRET_BYTES {
            return Ok(None);
        }
        self.authenticate_by(digest(secret), now)
    }

    fn authenticate_by(
        &self,
        digest: [u8; 32],
        now: Instant,
    ) -> Result<Option<Principal>, EngineError> {
        if let Some(p) = self.lookup_cache(&digest, now) {
            return Ok(p);
        }
        let principal = match self
            .store
            .key_by_hash(&hex(&digest))?
            .filter(|k| k.revoked_at_ms.is_none())
        {
            Some(k) if k.kind == KeyKind::Admin => Some(Principal::Admin {
                scopes: self.scopes_of(&k.id)?,
                key_id: k.id,
                name: k.name,
            }),
            other => other.and_then(|k| match k.kind {
                KeyKind::Admin => None,
                KeyKind::Write => k.source_id.map(|source_id| Principal::Writer {
                    source_id,
                    key_id: k.id,
                }),
            }),
        };
        let ttl = self.options.cache_ttl;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < ttl;
        let mut cache = self.cache.write().expect("key cache lock");
        match &principal {
            Some(p) => {
                cache.unknown.remove(&digest);
                let max = self.options.max_cached_keys;
                bounded_insert(
                    &mut cache.known,
                    max,
                    digest,
                    (p.clone(), now),
                    |(_, at)| fresh(at),
                );
            }
            None => {
                cache.known.remove(&digest);
                let max = self.options.max_cached_unknown;
                bounded_insert(&mut cache.unknown, max, digest, now, fresh);
            }
        }
        Ok(principal)
    }

    /// How many answers are cached (known, unknown): for tests and metrics.
    pub fn cache_len(&self) -> (usize, usize) {
        let cache = self.cache.read().expect("key cache lock");
        (cache.known.len(), cache.unknown.len())
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
    fn settings_are_validated_naming_the_field() {
        use rapport_store::{IdentityPolicy, RateLimit, TraitPolicy};
        assert!(validate_settings(&SourceSettings::default()).is_ok());
        let field = |s: SourceSettings| match validate_settings(&s) {
            Err(EngineError::InvalidAt { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let traits = |allow: Option<Vec<&str>>, deny: Vec<&str>| SourceSettings {
            traits: TraitPolicy {
                allow: allow.map(|a| a.into_iter().map(String::from).collect()),
                deny: deny.into_iter().map(String::from).collect(),
            },
            ..SourceSettings::default()
        };
        assert_eq!(
            field(traits(None, vec!["plan", ""])),
            "settings.traits.deny[1]"
        );
        assert_eq!(
            field(traits(Some(vec![" x"]), vec![])),
            "settings.traits.allow[0]"
        );
        let long = "x".repeat(257);
        assert_eq!(field(traits(None, vec![&long])), "settings.traits.deny[0]");
        let types = SourceSettings {
            identity: IdentityPolicy {
                merge: true,
                identifier_types: Some(vec!["user_id".into(), "e mail".into()]),
            },
            ..SourceSettings::default()
        };
        assert_eq!(field(types), "settings.identity.identifier_types[1]");
        for (per_second, burst, expected) in [
            (0, 1, "settings.rate_limit.per_second"),
            (1, 0, "settings.rate_limit.burst"),
            (MAX_RATE + 1, 1, "settings.rate_limit.per_second"),
        ] {
            let s = SourceSettings {
                rate_limit: Some(RateLimit { per_second, burst }),
                ..SourceSettings::default()
            };
            assert_eq!(field(s), expected);
        }
        let s = SourceSettings {
            ip_rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 0,
            }),
            ..SourceSettings::default()
        };
        assert_eq!(field(s), "settings.ip_rate_limit.burst");
    }

    #[test]
    fn updated_settings_are_what_ingest_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let access = Access::new(store);
        let (source, _) = access.create_source("web", 1).unwrap();
        assert_eq!(
            *access.source_settings(&source.id).unwrap(),
            SourceSettings::default()
        );
        let mut settings = SourceSettings::default();
        settings.traits.deny = vec!["plan".into()];
        let (before, after) = access
            .update_source("web", Some("browser"), Some(settings.clone()))
            .unwrap();
        assert_eq!(before.settings, SourceSettings::default());
        assert_eq!(
            (after.name.as_str(), &after.settings),
            ("browser", &settings)
        );
        assert_eq!(*access.source_settings(&source.id).unwrap(), settings);
        assert!(matches!(
            access.update_source("missing", None, None),
            Err(EngineError::NotFound(_))
        ));
        access.create_source("other", 2).unwrap();
        assert!(matches!(
            access.update_source("browser", Some("other"), None),
            Err(EngineError::Conflict(_))
        ));
    }

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

    fn access_with(options: AccessOptions) -> (tempfile::TempDir, Arc<dyn Store>, Access) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let access = Access::with_options(store.clone(), options);
        (dir, store, access)
    }

    #[test]
    fn a_key_revoked_by_another_process_stops_working_within_the_ttl() {
        let ttl = Duration::from_secs(5);
        let (_dir, store, here) = access_with(AccessOptions {
            cache_ttl: ttl,
            ..AccessOptions::default()
        });
        // `there` is another process on the same store.
        let there = Access::new(store.clone());
        let (_, write, _) = there.bootstrap(1).unwrap().unwrap();
        let t0 = Instant::now();
        assert!(here.authenticate_at(&write.secret, t0).unwrap().is_some());
        there.revoke_key(&write.key.id, 2).unwrap();
        // Within the lifetime the cached answer stands; after it the store is asked again.
        let within = t0 + ttl - Duration::from_millis(1);
        assert!(
            here.authenticate_at(&write.secret, within)
                .unwrap()
                .is_some()
        );
        assert_eq!(here.authenticate_at(&write.secret, t0 + ttl).unwrap(), None);
        // Revocation in this process is immediate.
        let key = here.create_key(KeyKind::Admin, None, "a", 3).unwrap();
        assert!(here.authenticate_at(&key.secret, t0).unwrap().is_some());
        here.revoke_key(&key.key.id, 4).unwrap();
        assert_eq!(here.authenticate_at(&key.secret, t0).unwrap(), None);
    }

    #[test]
    fn the_cache_is_keyed_by_hash_and_bounded() {
        let (_dir, _store, access) = access_with(AccessOptions {
            max_cached_unknown: 100,
            ..AccessOptions::default()
        });
        let (_, write, _) = access.bootstrap(1).unwrap().unwrap();
        let now = Instant::now();
        for i in 0..1_000 {
            let guess = format!("wk_{i:0>200}");
            assert_eq!(access.authenticate_at(&guess, now).unwrap(), None);
        }
        assert_eq!(access.cache_len(), (0, 100));
        // A flood of unknown secrets never evicts or spoils a live key.
        assert!(
            access
                .authenticate_at(&write.secret, now)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            access.cached_at(&write.secret, now).map(|p| p.is_some()),
            Some(true)
        );
        // An unknown answer is remembered, then asked again once stale.
        assert_eq!(access.cached_at("wk_nope", now), None);
        access.authenticate_at("wk_nope", now).unwrap();
        assert_eq!(access.cached_at("wk_nope", now), Some(None));
        let later = now + AccessOptions::default().cache_ttl;
        assert_eq!(access.cached_at("wk_nope", later), None);
    }

    #[test]
    fn absurdly_long_secrets_are_refused_without_a_lookup() {
        let (_dir, _store, access) = access_with(AccessOptions::default());
        access.bootstrap(1).unwrap();
        let huge = "k".repeat(400 * 1024);
        assert_eq!(access.authenticate(&huge).unwrap(), None);
        assert_eq!(access.cached(&huge), Some(None));
        assert_eq!(access.cache_len(), (0, 0));
    }

    #[test]
    fn admin_keys_hold_the_scopes_they_were_given_and_old_keys_all() {
        let (_dir, _store, access) = access_with(AccessOptions::default());
        let (_, _, welcome) = access.bootstrap(1).unwrap().unwrap();
        assert_eq!(welcome.key.scopes, Some(all_scopes()));
        let masked: Scopes = [Scope::ReadMasked].into_iter().collect();
        let key = access
            .create_key_with_scopes(KeyKind::Admin, None, "m", Some(&masked), 2)
            .unwrap();
        assert_eq!(key.key.scopes.as_ref(), Some(&masked));
        match access.authenticate(&key.secret).unwrap() {
            Some(Principal::Admin { scopes, name, .. }) => {
                assert_eq!((scopes, name.as_str()), (masked.clone(), "m"));
            }
            other => panic!("{other:?}"),
        }
        let listed = access.keys().unwrap();
        let scopes_of = |id: &str| listed.iter().find(|k| k.id == id).unwrap().scopes.clone();
        assert_eq!(scopes_of(&key.key.id), Some(masked.clone()));
        assert_eq!(scopes_of(&welcome.key.id), Some(all_scopes()));
        assert!(
            listed
                .iter()
                .any(|k| k.kind == KeyKind::Write && k.scopes.is_none())
        );
        assert!(matches!(
            access.create_key_with_scopes(KeyKind::Write, Some("default"), "w", Some(&masked), 3),
            Err(EngineError::Invalid {
                field: "scopes",
                ..
            })
        ));
        assert!(matches!(
            access.create_key_with_scopes(KeyKind::Admin, None, "e", Some(&Scopes::new()), 3),
            Err(EngineError::Invalid {
                field: "scopes",
                ..
            })
        ));
        assert_eq!(
            access.revoke_key(&key.key.id, 4).unwrap().scopes,
            Some(masked)
        );
    }

    #[test]
    fn listings_never_carry_the_hash() {
        let (_dir, _store, access) = access_with(AccessOptions::default());
        let (_, write, _) = access.bootstrap(1).unwrap().unwrap();
        let listed = serde_json::to_string(&access.keys().unwrap()).unwrap();
        let issued = serde_json::to_string(&write).unwrap();
        let hash = hash_secret(&write.secret);
        for text in [&listed, &issued] {
            assert!(
                !text.contains("secret_hash") && !text.contains(&hash),
                "{text}"
            );
        }
        assert!(issued.contains(&write.secret));
    }
}
