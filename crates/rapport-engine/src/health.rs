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

/// A consumer further behind the log than this many entries is reported as lagging (about
/// half a minute of the processor's throughput on a 2-core machine).
pub const LAG_THRESHOLD: u64 = 1_000_000;

/// A consumer behind the log whose offset has not moved for this long is reported as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Health {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    /// The last failed append and why, cleared by the next append that succeeds.
    failed_append: Mutex<Option<(Instant, String)>>,
    /// Each consumer's offset when `/health` last saw it move, and when.
    progress: Mutex<std::collections::HashMap<String, (u64, Instant)>>,
}

impl Health {
    /// What is wrong with the log consumers, in words: those more than [`LAG_THRESHOLD`]
    /// entries behind `log`, and those behind whose offset has not moved for
    /// [`STUCK_AFTER`] (as seen by successive calls). Empty when all is well.
    pub fn consumer_problems(&self, log: u64, consumers: &[(&str, u64)]) -> Vec<String> {
        self.consumer_problems_at(Instant::now(), log, consumers)
    }

    fn consumer_problems_at(
        &self,
        now: Instant,
        log: u64,
        consumers: &[(&str, u64)],
    ) -> Vec<String> {
        let mut progress = self.progress.lock().expect("health lock");
        let mut problems = Vec::new();
        for &(name, offset) in consumers {
            let lag = log.saturating_sub(offset);
            let seen = progress.entry(name.to_owned()).or_insert((offset, now));
            if seen.0 != offset || lag == 0 {
                *seen = (offset, now);
            }
            if lag > 0 && now.duration_since(seen.1) >= STUCK_AFTER {
                problems.push(format!(
                    "{name} is stuck at offset {offset}, {lag} entries behind the log, for {} s",
                    now.duration_since(seen.1).as_secs()
                ));
            } else if lag > LAG_THRESHOLD {
                problems.push(format!("{name} is {lag} entries behind the log"));
            }
        }
        problems
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_behind_and_still_are_stuck_and_far_behind_are_lagging() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(h.consumer_problems_at(t0, 10, &[("p", 5)]).is_empty());
        // Moving: not stuck, however long.
        let later = t0 + STUCK_AFTER * 2;
        assert!(h.consumer_problems_at(later, 20, &[("p", 6)]).is_empty());
        // Still for STUCK_AFTER while behind: stuck.
        let stuck = h.consumer_problems_at(later + STUCK_AFTER, 20, &[("p", 6)]);
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert!(stuck[0].contains("stuck at offset 6"), "{stuck:?}");
        // Caught up: nothing, even without moving.
        let caught_up = later + STUCK_AFTER * 3;
        assert!(h.consumer_problems_at(caught_up, 6, &[("p", 6)]).is_empty());
        // Far behind but moving: lagging.
        let far = h.consumer_problems_at(caught_up, LAG_THRESHOLD + 100, &[("q", 10)]);
        assert_eq!(
            far,
            vec![format!(
                "q is {} entries behind the log",
                LAG_THRESHOLD + 90
            )]
        );
    }
}
