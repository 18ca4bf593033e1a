//! Storage for Rapport, behind traits so that the same engine runs on the embedded store
//! (default, zero set-up) and on PostgreSQL (scale-out).
//!
//! Four concerns, one trait each:
//! - [`EventLog`]: the durable, ordered log of accepted events, with de-duplication of
//!   repeated `messageId`s inside a window, and consumer offsets;
//! - [`EventIndex`]: the query side of the log (by user, anonymous id, time), maintained by a
//!   log consumer and committed atomically with that consumer's offset;
//! - [`StateStore`]: keyed state of the processor, keyed first by profile id so that a
//!   sharded backend can distribute it, with deletion of one profile's data;
//! - [`Registry`]: sources and API keys.
//!
//! Every backend passes the suite in [`conformance`].

pub mod conformance;
pub mod embedded;
pub mod postgres;
#[cfg(any(test, feature = "pg-test-harness"))]
pub mod testing;

use serde::{Deserialize, Serialize};

/// Position of an event in the log. Offsets start at 1 and grow by one per stored event;
/// 0 means "before the first event".
pub type Offset = u64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the data directory {0} is in use by another Rapport process")]
    Locked(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The store cannot write now (a full disk, a lost connection); nothing was written.
    /// Transient: the same call may succeed later.
    #[error("the store cannot write now: {0}")]
    Unavailable(String),
    /// The store refuses this data (a value it cannot represent, a constraint): the same
    /// call fails again on every retry.
    #[error("the store refuses the data: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Whether the same call will fail again, whatever the retries: the data is at fault,
    /// not the store's state.
    pub fn is_deterministic(&self) -> bool {
        matches!(self, StoreError::Rejected(_) | StoreError::Corrupt(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The longest text, in bytes of UTF-8, that every backend stores and indexes as a key: ids
/// and names in the event index, the partition (`profile`) of a [`StateWrite`]. Callers keep
/// client input within it (the conformance suite writes and reads values of this length on
/// every backend). Text keys never hold NUL, which PostgreSQL's `text` cannot store.
pub const MAX_KEY_TEXT_BYTES: usize = 1024;

/// One event to append. `dedup_key` identifies repeated deliveries of the same message.
#[derive(Debug, Clone)]
pub struct AppendItem {
    pub dedup_key: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(Offset),
    /// The same key was stored within the de-duplication window: acknowledged, not stored.
    Duplicate,
}

/// The durable log. Appends come from a single writer (the ingest group committer).
pub trait EventLog: Send + Sync {
    /// Appends `items` in order and makes them durable (fsync) before returning. An item whose
    /// dedup key was stored at or after `now_ms - window_ms`, or earlier in the same call, is
    /// reported as a duplicate and not stored.
    fn append(&self, items: &[AppendItem], now_ms: i64, window_ms: i64) -> Result<Vec<Appended>>;

    /// Up to `max` entries with offsets strictly greater than `after`, in order.
    fn read_after(&self, after: Offset, max: usize) -> Result<Vec<(Offset, Vec<u8>)>>;

    /// One entry by offset.
    fn get(&self, offset: Offset) -> Result<Option<Vec<u8>>>;

    /// The offset of the newest stored event (0 when empty).
    fn last_offset(&self) -> Result<Offset>;

    /// The last offset a named consumer has committed (0 when it never has).
    fn consumer_offset(&self, consumer: &str) -> Result<Offset>;

    /// Replaces stored events with `replacement` payloads (used to erase personal data while
    /// keeping offsets dense).
    fn rewrite(&self, entries: &[(Offset, Vec<u8>)]) -> Result<()>;

    /// Bytes the log and its indexes occupy on disk.
    fn disk_bytes(&self) -> u64;

    /// Makes what [`EventLog::rewrite`], [`EventIndex::unindex`] and state deletions removed
    /// unreadable on disk too: an LSM tree keeps old versions in its journal and files until
    /// it compacts them, a PostgreSQL table keeps dead tuples until it is vacuumed. Slow (it
    /// rewrites the store's files); for erasure, not for every write.
    fn purge(&self) -> Result<()>;

    /// Checks that the store can write durably now, with a small write of its own. For
    /// health checks: a store whose writes fail (a full disk) is not healthy, even when idle.
    fn probe(&self) -> Result<()>;
}

/// What the index keeps of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// The Segment type (`track`, `page`, …).
    pub kind: String,
    /// The track event name, or the page/screen name.
    pub name: Option<String>,
    /// The source that sent the event (its server field `sourceId`); `None` for events
    /// stored without one (bulk imports before sources were recorded).
    pub source_id: Option<String>,
}

/// A filter over indexed events. Results come newest first (by event timestamp, then offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// Events sent by this source (its id).
    pub source_id: Option<String>,
    /// Inclusive lower bound on the event timestamp.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound on the event timestamp.
    pub until_ms: Option<i64>,
    /// Continue after this position (from a previous page).
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// A position in a newest-first listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub offset: Offset,
}

impl Cursor {
    /// An opaque, URL-safe rendering.
    pub fn encode(&self) -> String {
        format!("{:x}.{:x}", self.timestamp_ms as u64, self.offset)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (t, o) = s.split_once('.')?;
        Some(Cursor {
            timestamp_ms: u64::from_str_radix(t, 16).ok()? as i64,
            offset: u64::from_str_radix(o, 16).ok()?,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<(Offset, Vec<u8>)>,
    /// Present when more results may follow.
    pub next: Option<Cursor>,
}

pub trait EventIndex: Send + Sync {
    /// Indexes entries and commits `consumer`'s offset in one atomic write.
    fn index(&self, entries: &[IndexEntry], consumer: &str, upto: Offset) -> Result<()>;

    fn query(&self, query: &EventQuery) -> Result<EventPage>;

    /// Removes index entries (as [`EventIndex::index`] made them: the same offset, time and
    /// ids). Entries never indexed are ignored.
    fn unindex(&self, entries: &[IndexEntry]) -> Result<()>;
}

/// One write to keyed state. `profile` is the distribution key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub namespace: String,
    pub profile: String,
    pub key: Vec<u8>,
    /// `None` deletes.
    pub value: Option<Vec<u8>>,
}

pub trait StateStore: Send + Sync {
    /// Whether reads return at memory speed, with no network round trip, so that async
    /// code may make them in place instead of handing them to a blocking thread (which costs
    /// more than such a read). True for the embedded store; never for a client of a server.
    fn reads_in_place(&self) -> bool {
        false
    }

    fn state_get(&self, namespace: &str, profile: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// All entries of one profile in a namespace, ordered by key.
    fn state_scan(&self, namespace: &str, profile: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// One page of a profile's entries in a namespace: keys strictly after `after` (from the
    /// first key when `None`), ordered by key, at most `limit`. For partitions too large to
    /// read at once (segment members, feeds, the list of all profiles).
    fn state_scan_range(
        &self,
        namespace: &str,
        profile: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Applies writes and, when given, commits a consumer offset, atomically.
    fn state_commit(&self, writes: &[StateWrite], consumer: Option<(&str, Offset)>) -> Result<()>;

    /// Removes everything stored under `profile`, in every namespace.
    fn delete_profile(&self, profile: &str) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
    /// What the source's write keys may do. Sources stored before settings existed read as
    /// the default: no restriction.
    #[serde(default)]
    pub settings: SourceSettings,
}

/// Per-source limits on what a holder of the source's write key can do. Browser and mobile
/// write keys are public (anyone can read them from a page), so these are the controls
/// that bound what a stranger holding one can change. Every default keeps the behaviour of
/// a source without settings. See `docs/security.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Which profile traits the source's events may set; checked at ingest.
    pub traits: TraitPolicy,
    /// What the source's events may do to identity; applied by the processor.
    pub identity: IdentityPolicy,
    /// Events per second for the whole source, with a burst; `None`: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Events per second from one client IP address to this source; `None`: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_rate_limit: Option<RateLimit>,
    /// Days the source's events are kept (by receive time); older ones are erased from
    /// the log and the index once a day. `None`: kept until deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// Trait names a source may set (in `traits` of identify and group calls and in
/// `context.traits` of any call). A message naming a trait it may not set is refused whole,
/// so that what is stored stays what the client sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraitPolicy {
    /// When set, only these trait names are accepted; `None`: any name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Trait names refused even if allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl TraitPolicy {
    /// Whether a trait named `name` may be set.
    pub fn permits(&self, name: &str) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|n| n == name))
            && !self.deny.iter().any(|n| n == name)
    }

    pub fn is_unrestricted(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// What a source's events may do to the identity graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityPolicy {
    /// Whether the source's events may merge two existing profiles. When false, an
    /// identifier that belongs to another profile than the one the event resolved to is
    /// refused (and the refusal explained); new identifiers are still attached.
    pub merge: bool,
    /// The identifier types the source may assert (`user_id`, `anonymous_id`, `email`, …);
    /// others found in its events are refused. `None`: every type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_types: Option<Vec<String>>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            merge: true,
            identifier_types: None,
        }
    }
}

impl IdentityPolicy {
    pub fn is_unrestricted(&self) -> bool {
        *self == IdentityPolicy::default()
    }
}

/// A token bucket: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// May only send events, to one source.
    Write,
    /// May read and administer.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub kind: KeyKind,
    /// The source a write key sends to.
    pub source_id: Option<String>,
    pub name: String,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    pub secret_hash: String,
    /// The first characters of the secret, to recognise it in listings.
    pub secret_prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

pub trait Registry: Send + Sync {
    fn put_source(&self, source: &Source) -> Result<()>;
    fn sources(&self) -> Result<Vec<Source>>;
    fn put_key(&self, key: &ApiKey) -> Result<()>;
    fn keys(&self) -> Result<Vec<ApiKey>>;
    fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>>;
}

/// Everything a backend provides.
pub trait Store: EventLog + EventIndex + StateStore + Registry {}

impl<T: EventLog + EventIndex + StateStore + Registry> Store for T {}
