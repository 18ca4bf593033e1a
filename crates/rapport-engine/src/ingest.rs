//! Group commit: many concurrent requests, one writer, one fsync per group.
//!
//! Each request hands its already-serialised events to a single writer thread and waits.
//! The writer takes everything queued since its last write, appends it to the log in one
//! durable batch and answers every waiting request at once, so the cost of an fsync is
//! shared by all requests that arrived while the previous one ran.

use crate::EngineError;
use crate::health::Health;
use crate::signal::LogSignal;
use rapport_store::{AppendItem, Appended, Store};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// How many events one group may hold at most; larger queues are split into several groups.
const MAX_GROUP_EVENTS: usize = 20_000;

struct Request {
    items: Vec<AppendItem>,
    reply: oneshot::Sender<Result<Vec<Appended>, EngineError>>,
}

#[derive(Clone)]
pub struct Ingestor {
    tx: SyncSender<Request>,
    health: Arc<Health>,
}

/// Joins the writer thread; dropping every [`Ingestor`] clone first lets it drain and stop.
pub struct IngestWriter {
    handle: JoinHandle<()>,
}

impl IngestWriter {
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

pub struct IngestOptions {
    /// Repeated message ids within this window are stored once.
    pub dedup_window_ms: i64,
    /// Requests that may wait for the writer before new ones are refused (back-pressure).
    pub queue_depth: usize,
}

impl Ingestor {
    pub fn start(
        store: Arc<dyn Store>,
        signal: Arc<LogSignal>,
        options: IngestOptions,
    ) -> (Ingestor, IngestWriter) {
        let (tx, rx) = sync_channel(options.queue_depth.max(1));
        let health = Arc::new(Health::default());
        let writer_health = health.clone();
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || {
                write_loop(
                    store.as_ref(),
                    &signal,
                    &writer_health,
                    rx,
                    options.dedup_window_ms,
                )
            })
            .expect("spawn the ingest writer");
        (Ingestor { tx, health }, IngestWriter { handle })
    }

    /// Whether the store takes writes, as this writer last found it (see [`Health`]).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Appends `items` durably. Returns once they are on disk, one outcome per item.
    pub async fn append(&self, items: Vec<AppendItem>) -> Result<Vec<Appended>, EngineError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        let mut request = Request { items, reply };
        loop {
            match self.tx.try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Full(r)) => {
                    // The writer is behind: wait briefly instead of blocking a runtime thread.
                    request = r;
                    metrics::counter!("rapport_ingest_queue_full_total").increment(1);
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(EngineError::ShuttingDown),
            }
        }
        rx.await.map_err(|_| EngineError::ShuttingDown)?
    }
}

fn write_loop(
    store: &dyn Store,
    signal: &LogSignal,
    health: &Health,
    rx: Receiver<Request>,
    window_ms: i64,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut count = group[0].items.len();
        while count < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(r) => {
                    count += r.items.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let counts: Vec<usize> = group.iter().map(|r| r.items.len()).collect();
        let items: Vec<AppendItem> = group.iter_mut().flat_map(|r| r.items.drain(..)).collect();
        let started = std::time::Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let result = store.append(&items, now_ms, window_ms);
        metrics::histogram!("rapport_log_append_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("rapport_log_group_events").record(items.len() as f64);
        match result {
            Ok(outcomes) => {
                health.append_result(Ok(()));
                stored(signal, &outcomes);
                let mut rest = outcomes.as_slice();
                for (r, n) in group.into_iter().zip(counts) {
                    let (mine, tail) = rest.split_at(n);
                    rest = tail;
                    let _ = r.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) if group.len() > 1 && e.is_deterministic() => {
                // One request's data fails the group: append each request on its own, so
                // that only that request is refused.
                tracing::warn!(error = %e, "a group commit was refused; appending its requests one by one");
                let mut rest = items;
                for (r, n) in group.into_iter().zip(counts) {
                    let tail = rest.split_off(n);
                    let mine = std::mem::replace(&mut rest, tail);
                    let result = store.append(&mine, now_ms, window_ms);
                    if let Ok(outcomes) = &result {
                        stored(signal, outcomes);
                    }
                    let _ = r.reply.send(result.map_err(|e| failed(health, &e, n)));
                }
            }
            Err(e) => {
                let error = failed(health, &e, items.len());
                for r in group {
                    let _ = r.reply.send(Err(match &error {
                        EngineError::Rejected(m) => EngineError::Rejected(m.clone()),
                        _ => EngineError::Store(e.to_string()),
                    }));
                }
            }
        }
    }
}

/// Counts what an append stored and wakes the consumers.
fn stored(signal: &LogSignal, outcomes: &[Appended]) {
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Stored(_)))
        .count();
    metrics::counter!("rapport_events_stored_total").increment(stored as u64);
    metrics::counter!("rapport_events_duplicate_total").increment((outcomes.len() - stored) as u64);
    if let Some(Appended::Stored(last)) = outcomes
        .iter()
        .rev()
        .find(|o| matches!(o, Appended::Stored(_)))
    {
        signal.advance(*last);
    }
}

/// Logs and counts a failed append; a refusal of the data does not make the store unhealthy.
fn failed(health: &Health, e: &rapport_store::StoreError, events: usize) -> EngineError {
    tracing::error!(error = %e, events, "log append failed");
    crate::health::storage_error("ingest");
    if !e.is_deterministic() {
        health.append_result(Err(&e.to_string()));
    }
    match e {
        rapport_store::StoreError::Rejected(m) => EngineError::Rejected(m.clone()),
        e => EngineError::Store(e.to_string()),
    }
}
