//! The event indexer: a log consumer that maintains the query side of the log
//! (`GET /api/v1/events`). It commits its offset with each indexed batch, so after a crash it
//! resumes exactly where its last commit left off and never indexes an event twice.

use crate::signal::LogSignal;
use rapport_core::event::parse_timestamp;
use rapport_store::{IndexEntry, Offset, Store, StoreError};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub const CONSUMER: &str = "event-indexer";
const BATCH: usize = 5_000;

pub struct Indexer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Indexer {
    pub fn start(store: Arc<dyn Store>, signal: Arc<LogSignal>) -> Indexer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("event-indexer".into())
            .spawn(move || {
                let mut backoff = Duration::from_millis(50);
                while !flag.load(Ordering::Acquire) {
                    match index_available(store.as_ref()) {
                        Ok(0) => {
                            let seen = store.consumer_offset(CONSUMER).unwrap_or(0);
                            signal.wait_beyond(seen, Duration::from_millis(200));
                            backoff = Duration::from_millis(50);
                        }
                        Ok(_) => backoff = Duration::from_millis(50),
                        Err(e) => {
                            tracing::error!(error = %e, "indexing failed; retrying");
                            crate::health::storage_error("indexer");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                // Index what is left so a graceful stop leaves nothing behind.
                while matches!(index_available(store.as_ref()), Ok(n) if n > 0) {}
            })
            .expect("spawn the event indexer");
        Indexer { stop, handle }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.join();
    }
}

/// Indexes one batch after the committed offset. Returns how many log entries it consumed.
/// Entries it cannot read are recorded as dead letters (before the index commit: recording
/// one twice after a crash leaves one record) and skipped.
pub fn index_available(store: &dyn Store) -> Result<usize, StoreError> {
    use crate::dead_letters::{Entry, read_entry, record};
    let from = store.consumer_offset(CONSUMER)?;
    let entries = store.read_after(from, BATCH)?;
    let Some(&(last, _)) = entries.last() else {
        return Ok(0);
    };
    let mut indexed = Vec::with_capacity(entries.len());
    let mut dead = Vec::new();
    for (offset, payload) in &entries {
        match index_entry(*offset, payload) {
            Ok(Some(entry)) => indexed.push(entry),
            Ok(None) => {}
            Err(()) => {
                // Read whole to say why: the fast path only knows that it failed.
                let error = match read_entry(payload) {
                    Entry::Unreadable(e) => e,
                    _ => "the indexed fields cannot be read".to_owned(),
                };
                let now = chrono::Utc::now().timestamp_millis();
                dead.push(record(CONSUMER, *offset, &error, now));
            }
        }
    }
    if !dead.is_empty() {
        store.state_commit(&dead, None)?;
    }
    match store.index(&indexed, CONSUMER, last) {
        Ok(()) => {}
        Err(e) if e.is_deterministic() => index_one_by_one(store, &indexed, last)?,
        Err(e) => return Err(e),
    }
    metrics::counter!("rapport_events_indexed_total").increment(indexed.len() as u64);
    Ok(entries.len())
}

/// After the store refused a batch for its data: indexes each entry on its own, so that
/// the one it refuses becomes a dead letter and the others are indexed.
fn index_one_by_one(
    store: &dyn Store,
    indexed: &[IndexEntry],
    last: Offset,
) -> Result<(), StoreError> {
    for entry in indexed {
        match store.index(std::slice::from_ref(entry), CONSUMER, entry.offset) {
            Ok(()) => {}
            Err(e) if e.is_deterministic() => {
                let now = chrono::Utc::now().timestamp_millis();
                let letter =
                    crate::dead_letters::record(CONSUMER, entry.offset, &e.to_string(), now);
                store.state_commit(&[letter], None)?;
                store.index(&[], CONSUMER, entry.offset)?;
            }
            Err(e) => return Err(e),
        }
    }
    store.index(&[], CONSUMER, last)
}

/// The few fields the index needs, borrowed from the stored JSON: the rest of the event
/// (properties, context…) is skipped without being decoded.
#[derive(serde::Deserialize)]
struct IndexedFields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(rename = "sourceId", borrow, default)]
    source_id: Option<Cow<'a, str>>,
}

/// The index entry of one log entry: `Ok(None)` for entries that are not events (control
/// entries, erased events), `Err` for an event that cannot be read.
pub(crate) fn index_entry(offset: Offset, payload: &[u8]) -> Result<Option<IndexEntry>, ()> {
    // The same classification as `read_entry`, without decoding the event in full.
    if crate::identity::control::is_control(payload) || crate::dead_letters::is_erased(payload) {
        return Ok(None);
    }
    let f = serde_json::from_slice::<IndexedFields>(payload).map_err(|_| ())?;
    let timestamp = parse_timestamp(&f.timestamp).ok_or(())?;
    Ok(Some(IndexEntry {
        offset,
        timestamp_ms: timestamp.timestamp_millis(),
        kind: f.kind.into_owned(),
        name: f.event.or(f.name).map(Cow::into_owned),
        user_id: f.user_id.map(Cow::into_owned),
        anonymous_id: f.anonymous_id.map(Cow::into_owned),
        source_id: f.source_id.map(Cow::into_owned),
    }))
}
