//! The event indexer: a log consumer that maintains the query side of the log
//! (`GET /api/v1/events`). It commits its offset with each indexed batch, so after a crash it
//! resumes exactly where its last commit left off and never indexes an event twice.

use crate::signal::LogSignal;
use rapport_core::event::Event;
use rapport_store::{IndexEntry, Offset, Store, StoreError};
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

fn index_entry(offset: Offset, payload: &[u8]) -> Option<IndexEntry> {
    match Event::from_json(payload) {
        Ok(e) => Some(IndexEntry {
            offset,
            timestamp_ms: e.timestamp.timestamp_millis(),
            kind: e.kind.as_str().to_owned(),
            name: e.event.or(e.name),
            user_id: e.user_id,
            anonymous_id: e.anonymous_id,
        }),
        Err(err) => {
            // An erased event (tombstone) or a payload from a future version: not indexed.
            tracing::debug!(offset, error = %err, "log entry not indexed");
            None
        }
    }
}
