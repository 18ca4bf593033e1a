//! Whether the store can take writes, for `/health`: an orchestrator must see a server whose
//! disk is full as unhealthy, even when no client is writing, and healthy again once it can
//! write. Two signals answer it:
//! - the log writer's own appends: one that failed, with none succeeding since, makes the
//!   store unavailable for [`FAILURE_MEMORY`] (a probe's few bytes may still fit on a disk
//!   that has no room for a batch);
//! - a small durable write (`EventLog::probe`), at most once per [`PROBE_INTERVAL`] however
//!   often `/health` is asked, for a store that fails with nobody writing.
//!
//! Once traffic stops (an orchestrator took the server out), the failure is forgotten after
//! [`FAILURE_MEMORY`] and the probe decides, so a server never stays out for good.

use rapport_store::Store;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a probe's answer is reused.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a failed append keeps the store unavailable when no append succeeds after it.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Health {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    /// The last failed append and why, cleared by the next append that succeeds.
    failed_append: Mutex<Option<(Instant, String)>>,
}

impl Health {
    /// Records the outcome of a log append.
    pub fn append_result(&self, result: Result<(), &str>) {
        let mut failed = self.failed_append.lock().expect("health lock");
        match result {
            Ok(()) => *failed = None,
            Err(e) => *failed = Some((Instant::now(), e.to_owned())),
        }
    }

    /// `Err` with the reason when the store cannot write durably now.
    pub fn store_writable(&self, store: &dyn Store) -> Result<(), String> {
        if let Some((at, e)) = self.failed_append.lock().expect("health lock").as_ref()
            && at.elapsed() < FAILURE_MEMORY
        {
            return Err(format!("the last log append failed: {e}"));
        }
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
