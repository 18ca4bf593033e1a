//! Running the matching job in a server: one run at a time, on demand or on a schedule, and
//! a clean stop.
//!
//! The job appends merges through the server's ingestor. A server drains its log writer at
//! shutdown once every ingest handle is gone, so the runner gives its handle up in
//! [`Matcher::shutdown`]: a run in progress stops at its next page and nothing new starts.

use super::matching::{self, Append, MatchingOptions};
use crate::EngineError;
use crate::periodic::Periodic;
use chrono::Utc;
use rapport_store::{AppendItem, Appended, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How merges reach the log: shared by the runs of a server.
pub type SharedAppend =
    Arc<dyn Fn(Vec<AppendItem>) -> Result<Vec<Appended>, EngineError> + Send + Sync>;

/// Delay before the first scheduled run of a server that has never run matching: time for
/// the processor to catch up with a log it has not read yet.
const FIRST_RUN_DELAY: Duration = Duration::from_secs(300);

pub struct Matcher {
    store: Arc<dyn Store>,
    append: Mutex<Option<SharedAppend>>,
    running: AtomicBool,
    stopping: Arc<AtomicBool>,
    current: Mutex<Option<JoinHandle<()>>>,
}

impl Matcher {
    pub fn new(store: Arc<dyn Store>, append: SharedAppend) -> Arc<Matcher> {
        Arc::new(Matcher {
            store,
            append: Mutex::new(Some(append)),
            running: AtomicBool::new(false),
            stopping: Arc::new(AtomicBool::new(false)),
            current: Mutex::new(None),
        })
    }

    /// Whether a run is in progress in this process.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Starts a run on its own thread and answers its start time (ms), which identifies it
    /// in [`matching::last_status`]. A run already going → `Conflict`; stopping →
    /// `ShuttingDown`.
    pub fn start(self: &Arc<Self>, options: MatchingOptions) -> Result<i64, EngineError> {
        options.validate()?;
        let append = self
            .append
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(EngineError::ShuttingDown)?;
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(EngineError::Conflict(
                "a matching run is already in progress".into(),
            ));
        }
        let now = Utc::now();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("matching".into())
            .spawn(move || {
                let stop = me.stopping.clone();
                let guarded: &Append<'_> = &|items| {
                    if stop.load(Ordering::Acquire) {
                        return Err(EngineError::ShuttingDown);
                    }
                    append(items)
                };
                let stop = me.stopping.clone();
                let result =
                    matching::run_until(me.store.as_ref(), guarded, &options, now, &|| {
                        stop.load(Ordering::Acquire)
                    });
                if let Err(e) = result {
                    tracing::error!(error = %e, "matching run failed");
                    let _ = matching::record_failure(me.store.as_ref(), &e, Utc::now());
                }
                me.running.store(false, Ordering::Release);
            });
        match spawned {
            Ok(handle) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                Ok(now.timestamp_millis())
            }
            Err(e) => {
                self.running.store(false, Ordering::Release);
                Err(EngineError::Store(format!(
                    "cannot start a matching run: {e}"
                )))
            }
        }
    }

    /// Stops a run in progress (at its next page), waits for it, and gives up the log
    /// handle; later starts answer `ShuttingDown`.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let handle = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.append.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Matching on a schedule: every `interval`, a run with the configured options, the first
/// one interval after the last run started (or [`FIRST_RUN_DELAY`] after start when
/// matching never ran).
pub struct MatchingSchedule(Periodic);

impl MatchingSchedule {
    /// `None` when `interval_hours` is 0 (off).
    pub fn start(
        matcher: Arc<Matcher>,
        interval_hours: u64,
        options: MatchingOptions,
    ) -> Option<MatchingSchedule> {
        if interval_hours == 0 {
            return None;
        }
        Some(MatchingSchedule::every(
            matcher,
            Duration::from_secs(interval_hours * 3600),
            None,
            options,
        ))
    }

    /// Runs every `interval`, the first time after `first` (when `None`: one interval after
    /// the last run started, or [`FIRST_RUN_DELAY`] when matching never ran).
    pub fn every(
        matcher: Arc<Matcher>,
        interval: Duration,
        first: Option<Duration>,
        options: MatchingOptions,
    ) -> MatchingSchedule {
        let store = matcher.store.clone();
        let first = move || {
            first.unwrap_or_else(
                || match matching::last_status(store.as_ref()).ok().flatten() {
                    Some(s) => {
                        let due = s.started_at_ms + interval.as_millis() as i64;
                        Duration::from_millis((due - Utc::now().timestamp_millis()).max(0) as u64)
                    }
                    None => FIRST_RUN_DELAY.min(interval),
                },
            )
        };
        MatchingSchedule(Periodic::spawn(
            "matching-schedule",
            first,
            interval,
            move || match matcher.start(options.clone()) {
                Ok(_) => {
                    tracing::info!("scheduled matching run started");
                    true
                }
                Err(EngineError::ShuttingDown) => false,
                Err(e) => {
                    tracing::info!(error = %e, "scheduled matching run skipped");
                    true
                }
            },
        ))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}
