//! The processor: the log consumer that resolves every event to a profile.
//!
//! It reads the log in order from its committed offset, runs identity resolution (pure, in
//! `rapport_core::identity`) against a working set of the graph, applies the resulting
//! changes, traits, timeline entries and explanations to that working set, and commits one
//! batch of log entries at a time together with its offset. So a crash (even `kill -9`)
//! resumes at the last committed batch and never applies an event twice, and replaying the
//! log from the start rebuilds identical profiles: profile ids are derived from the log
//! offset of the event that created them.
//!
//! The working set stays in memory between batches (only the processor writes these
//! namespaces), bounded in size; what a batch touched is written once per batch.
//!
//! After identity, each event updates its profile's computed traits and segment memberships
//! (see [`crate::audiences`]). Between batches the processor also runs the audience
//! scheduler (profiles whose windows expire) and, after definitions change, the backfill over
//! every existing profile, committing its progress with the same atomic write.
//!
//! The parts: `working_set` holds what a batch read and changed of the graph and profiles
//! and turns it into writes; `audiences` re-evaluates traits and segments (per event, by
//! schedule, by backfill); `sources` keeps sources' identity policies; `control` applies
//! probabilistic merges and identity rules changes met in the log. This module runs the
//! batches and the thread.

use crate::EngineError;
use crate::audiences::definitions::Definitions;
use crate::audiences::{Catalogue, RfmSource};
use crate::signal::LogSignal;
use chrono::{DateTime, Utc};
use rapport_core::identity::IdentityRules;
use rapport_store::{Offset, StateWrite, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

mod audiences;
mod control;
mod forget;
mod journeys;
mod sources;
mod working_set;

use sources::SourcePolicies;
use working_set::WorkingSet;

pub const CONSUMER: &str = "processor";
/// Each source's identity policy in force, as the last control entry for it set it: key the
/// source id, value the JSON `IdentityPolicy`. Sources without an entry are unrestricted.
pub const NS_SOURCE_IDENTITY: &str = "identity.source";
const PART_SOURCES: &str = "sources";
const BATCH: usize = 2_000;
/// Profiles kept in memory between batches before the working set is dropped.
const MAX_CACHED_PROFILES: usize = 500_000;
/// Profiles whose segment and journey state are kept in memory between batches: that
/// state weighs several times a profile's record, so it is dropped sooner (the
/// journeys benchmark measured about 10 KiB per profile with one waiting instance).
const MAX_CACHED_STATES: usize = 100_000;
/// Scheduled profiles evaluated per step.
const SCHEDULE_BATCH: usize = 200;
/// Existing profiles evaluated per step while definitions are backfilled.
const BACKFILL_BATCH: usize = 2_000;
/// Resolves log entries to profiles, one committed batch at a time.
pub struct Processor {
    store: Arc<dyn Store>,
    rules: IdentityRules,
    /// The configuration's rules, in force until a change is met in the log.
    initial_rules: IdentityRules,
    /// Version of the rules in use (0: the configuration's); `None` when unknown, after a
    /// failed batch that may have met a change it did not commit.
    rules_version: Option<u64>,
    rfm: RfmSource,
    catalogue: Arc<Catalogue>,
    journeys: Arc<journeys::JourneyCatalogue>,
    /// Sources' identity policies; `None` until read, and after a failed batch.
    sources: Option<SourcePolicies>,
    working: WorkingSet,
    batch: usize,
    /// After the store refused a batch's writes: entries up to this offset are processed
    /// one at a time, so that the one at fault is found and recorded as a dead letter.
    isolate_until: Option<Offset>,
    /// Events of the current batch per minute and source ([`crate::stats`]).
    counts: crate::stats::BatchCounts,
    /// Removes per-minute counts past a day, once per minute.
    pruner: crate::stats::Pruner,
    clock: Clock,
}

/// Where the processor reads the time: segment windows and enter/exit times depend on it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl Processor {
    pub fn new(store: Arc<dyn Store>, rules: IdentityRules) -> Processor {
        Processor {
            store,
            initial_rules: rules.clone(),
            rules,
            rules_version: None,
            rfm: RfmSource::default(),
            catalogue: Arc::new(Catalogue::default()),
            journeys: Arc::new(journeys::JourneyCatalogue::default()),
            sources: None,
            working: WorkingSet::default(),
            batch: BATCH,
            isolate_until: None,
            counts: crate::stats::BatchCounts::default(),
            pruner: crate::stats::Pruner::default(),
            clock: Arc::new(Utc::now),
        }
    }

    /// Reads the time from `clock` instead of the system clock (tests, replays).
    pub fn with_clock(mut self, clock: Clock) -> Processor {
        self.clock = clock;
        self
    }

    /// Where the built-in RFM summary reads purchases from.
    pub fn with_rfm_source(mut self, rfm: RfmSource) -> Processor {
        self.rfm = rfm;
        self.catalogue = Arc::new(Catalogue::default());
        self
    }

    /// Reloads the definitions when they changed.
    fn refresh_catalogue(&mut self) -> Result<(), EngineError> {
        let definitions = Definitions {
            store: self.store.as_ref(),
        };
        let version = definitions.version()?;
        if version != self.catalogue.version
            || self.catalogue.rfm != self.rfm
            || self.working.meta.is_none()
        {
            let set = definitions.load()?;
            let mut catalogue = Catalogue::compile(&set, self.rfm.clone());
            let meta = self.working.meta_mut(self.store.as_ref())?;
            catalogue.track_since(&mut meta.since);
            self.catalogue = Arc::new(catalogue);
        }
        let journeys_version = crate::journeys::Journeys {
            store: self.store.as_ref(),
        }
        .version()?;
        if journeys_version != self.journeys.version || version != self.journeys.definitions_version
        {
            self.journeys = Arc::new(journeys::JourneyCatalogue::load(
                self.store.as_ref(),
                version,
            )?);
        }
        self.working.journeys.catalogue = self.journeys.clone();
        Ok(())
    }

    /// Log entries per committed batch.
    pub fn with_batch_size(mut self, batch: usize) -> Processor {
        self.batch = batch.max(1);
        self
    }

    /// Processes the next batch after the committed offset. Returns how many log entries
    /// it consumed (0 when caught up).
    pub fn step(&mut self) -> Result<usize, EngineError> {
        let store = self.store.clone();
        self.refresh_catalogue()?;
        self.refresh_rules()?;
        if self.sources.is_none() {
            self.sources = Some(SourcePolicies::load(store.as_ref())?);
        }
        let from = store.consumer_offset(CONSUMER)?;
        let batch = match self.isolate_until {
            Some(until) if from < until => 1,
            _ => self.batch,
        };
        let mut entries = store.read_after(from, batch)?;
        // A person's deletion is a batch of its own, after everything before it is
        // committed (see `forget`).
        if let Some(i) = entries
            .iter()
            .position(|(_, p)| crate::privacy::deletion::is_forget(p))
        {
            if i == 0 {
                return self.step_forget(&entries[0]);
            }
            entries.truncate(i);
        }
        let last = entries.last().map_or(from, |&(o, _)| o);
        // After the read: a destination made since receives the changes of what it read.
        self.working.trait_feed = crate::trait_changes::wanted(store.as_ref())?;
        let catalogue = self.catalogue.clone();
        // Schedule entries first: the members they read are those of the last commit.
        let result = self
            .working
            .run_journey_schedules(
                store.as_ref(),
                &catalogue,
                (self.clock)(),
                self.batch.min(journeys::SCHEDULE_PAGE),
            )
            .and_then(|runs| self.apply_entries(&entries).map(|()| runs))
            .and_then(|runs| {
                let now = (self.clock)();
                let scheduled = self.working.run_schedule(store.as_ref(), &catalogue, now)?;
                let backfilled = self.working.run_backfill(store.as_ref(), &catalogue, now)?;
                self.working
                    .run_journeys_on_changes(store.as_ref(), &catalogue, now)?;
                let timers = self
                    .working
                    .run_journey_timers(store.as_ref(), &catalogue, now)?;
                Ok(runs + scheduled + backfilled + timers)
            });
        let outcome = result.and_then(|other_work| {
            let now_ms = (self.clock)().timestamp_millis();
            let pruned = self.pruner.due(store.as_ref(), now_ms)?;
            if entries.is_empty()
                && other_work == 0
                && !self.working.has_writes()
                && pruned.is_empty()
            {
                self.pruner.committed();
                return Ok(0);
            }
            let mut writes = self.working.drain_writes((self.clock)());
            writes.extend(pruned);
            // Counted with the offset: the counts agree with the log, restarts included.
            let counts = std::mem::take(&mut self.counts);
            writes.extend(counts.into_writes(store.as_ref(), now_ms)?);
            store.state_commit(&writes, Some((CONSUMER, last)))?;
            self.pruner.committed();
            Ok(other_work)
        });
        let other_work = match outcome {
            Ok(n) => n,
            Err(e) => {
                // The working set may hold half of a failed batch: forget it and re-read.
                self.working = WorkingSet::default();
                self.counts = crate::stats::BatchCounts::default();
                self.pruner.failed();
                self.rules_version = None;
                self.sources = None;
                if let EngineError::Rejected(reason) = &e {
                    // A failure that repeats: find the entry at fault and go past it.
                    match entries.as_slice() {
                        [(offset, _)] => {
                            let at = (self.clock)().timestamp_millis();
                            let why = format!("the store refused its effects: {reason}");
                            let letter = crate::dead_letters::record(CONSUMER, *offset, &why, at);
                            store.state_commit(&[letter], Some((CONSUMER, *offset)))?;
                            return Ok(1);
                        }
                        [.., _] => self.isolate_until = Some(last),
                        [] => {}
                    }
                }
                return Err(e);
            }
        };
        self.working.trim();
        metrics::counter!("rapport_events_processed_total").increment(entries.len() as u64);
        Ok(entries.len() + other_work)
    }

    /// Applies a deletion's control entry (one that does not parse is a dead letter).
    fn step_forget(&mut self, (offset, payload): &(Offset, Vec<u8>)) -> Result<usize, EngineError> {
        match crate::identity::control::Control::parse(payload) {
            Some(crate::identity::control::Control::Forget(request)) => {
                self.apply_forget(*offset, &request)?
            }
            _ => {
                let at = (self.clock)().timestamp_millis();
                let letter =
                    crate::dead_letters::record(CONSUMER, *offset, "malformed control entry", at);
                self.store
                    .state_commit(&[letter], Some((CONSUMER, *offset)))?;
            }
        }
        Ok(1)
    }

    fn apply_entries(&mut self, entries: &[(Offset, Vec<u8>)]) -> Result<(), EngineError> {
        use crate::dead_letters::{Entry, read_entry, record};
        for (offset, payload) in entries {
            let event = match read_entry(payload) {
                Entry::Event(e) => e,
                Entry::Erased => continue,
                Entry::Control(bytes) => {
                    match crate::identity::control::Control::parse(bytes) {
                        Some(control) => self.apply_control(*offset, &control)?,
                        None => {
                            let at = (self.clock)().timestamp_millis();
                            let letter = record(CONSUMER, *offset, "malformed control entry", at);
                            self.working.writes.push(letter);
                        }
                    }
                    continue;
                }
                Entry::Unreadable(error) => {
                    let at = (self.clock)().timestamp_millis();
                    self.working
                        .writes
                        .push(record(CONSUMER, *offset, &error, at));
                    continue;
                }
            };
            self.counts
                .add(event.received_at.timestamp_millis(), &event.source_id);
            self.working.apply_event(
                self.store.as_ref(),
                &self.rules,
                &self.catalogue,
                self.sources.as_ref().expect("loaded in step"),
                *offset,
                &event,
                (self.clock)(),
            )?;
        }
        Ok(())
    }

    /// Puts a source's identity policy in force for the entries after `offset`, recorded
    /// in the batch's commit. Policy types that do not parse as identifier kinds (the API
    /// checks them) are ignored by [`SourcePolicies::restriction`].
    fn apply_source_identity(
        &mut self,
        offset: Offset,
        change: &crate::identity::control::SourceIdentityChange,
    ) {
        tracing::info!(offset, source = %change.source_id, "source identity policy changed");
        let sources = self.sources.get_or_insert_with(SourcePolicies::default);
        let value = if change.identity.is_unrestricted() {
            sources.0.remove(&change.source_id);
            None
        } else {
            sources
                .0
                .insert(change.source_id.clone(), change.identity.clone());
            Some(serde_json::to_vec(&change.identity).expect("policies serialise"))
        };
        self.working.writes.push(StateWrite {
            namespace: NS_SOURCE_IDENTITY.into(),
            profile: PART_SOURCES.into(),
            key: change.source_id.as_bytes().to_vec(),
            value,
        });
    }

    /// Processes until the log is exhausted.
    pub fn run_to_end(&mut self) -> Result<(), EngineError> {
        loop {
            match self.step() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                // The batch is being taken apart to find the entry at fault: go on.
                Err(EngineError::Rejected(_)) if self.isolate_until.is_some() => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The processor running on its own thread, woken when the log grows.
pub struct ProcessorThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl ProcessorThread {
    pub fn start(
        store: Arc<dyn Store>,
        signal: Arc<LogSignal>,
        rules: IdentityRules,
        rfm: RfmSource,
    ) -> ProcessorThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("processor".into())
            .spawn(move || {
                let mut processor = Processor::new(store.clone(), rules).with_rfm_source(rfm);
                let mut backoff = Duration::from_millis(50);
                while !flag.load(Ordering::Acquire) {
                    match processor.step() {
                        Ok(0) => {
                            let seen = store.consumer_offset(CONSUMER).unwrap_or(0);
                            signal.wait_beyond(seen, Duration::from_millis(200));
                        }
                        Ok(_) => backoff = Duration::from_millis(50),
                        Err(e) => {
                            tracing::error!(error = %e, "processing failed; retrying");
                            crate::health::storage_error("processor");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                let _ = processor.run_to_end();
            })
            .expect("spawn the processor");
        ProcessorThread { stop, handle }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.join();
    }
}
