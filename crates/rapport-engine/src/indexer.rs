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
pub fn index_available(store: &dyn Store) -> Result<usize, StoreError> {
    let from = store.consumer_offset(CONSUMER)?;
    let entries = store.read_after(from, BATCH)?;
    let Some(&(last, _)) = entries.last() else {
        return Ok(0);
    };
    let indexed: Vec<IndexEntry> = entries
        .iter()
        .filter_map(|(offset, payload)| index_entry(*offset, payload))
        .collect();
    store.index(&indexed, CONSUMER, last)?;
    metrics::counter!("rapport_events_indexed_total").increment(indexed.len() as u64);
    Ok(entries.len())
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
}

fn index_entry(offset: Offset, payload: &[u8]) -> Option<IndexEntry> {
    let parsed = serde_json::from_slice::<IndexedFields>(payload)
        .ok()
        .and_then(|f| Some((parse_timestamp(&f.timestamp)?, f)));
    let Some((timestamp, f)) = parsed else {
        // An erased event (tombstone) or a payload from a future version: not indexed.
        tracing::debug!(offset, "log entry not indexed");
        return None;
    };
    Some(IndexEntry {
        offset,
        timestamp_ms: timestamp.timestamp_millis(),
        kind: f.kind.into_owned(),
        name: f.event.or(f.name).map(Cow::into_owned),
        user_id: f.user_id.map(Cow::into_owned),
        anonymous_id: f.anonymous_id.map(Cow::into_owned),
    })
}
