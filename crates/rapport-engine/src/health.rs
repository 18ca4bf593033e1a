//! Whether the store can take writes, for `/health`: an orchestrator must see a server whose
//! disk is full as unhealthy, even when no client is writing. A small durable write
//! (`EventLog::probe`) answers it, at most once per [`PROBE_INTERVAL`] however often
//! `/health` is asked.

use rapport_store::Store;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a probe's answer is reused.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Health {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// `Err` with the reason when the store cannot write durably now.
    pub fn store_writable(&self, store: &dyn Store) -> Result<(), String> {
        let mut last = self.last.lock().expect("health lock");
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_INTERVAL
        {
            return result.clone();
        }
        let result = store.probe().map_err(|e| {
            storage_error("probe");
            e.to_string()
        });
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Counts a failed storage call in `rapport_storage_errors_total{stage}` (`ingest`,
/// `indexer`, `processor`, `api`, `probe`).
pub fn storage_error(stage: &'static str) {
    metrics::counter!("rapport_storage_errors_total", "stage" => stage).increment(1);
}
