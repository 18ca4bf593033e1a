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

use crate::EngineError;
use crate::profiles::{
    NS_ACCOUNT, NS_IDENTIFIER, NS_IDENTITY_LOG, NS_PROFILE, NS_TIMELINE, NS_TRAIT_INDEX,
    ProfileRecord, Profiles, identifier_key, profile_id_for, timeline_key, trait_index_key,
};
use crate::signal::LogSignal;
use rapport_core::event::Event;
use rapport_core::identity::{
    self, AccountProfile, GraphChange, GraphView, Identifier, IdentifierKind, IdentifierRecord,
    IdentityRules, ProfileId, Resolution,
};
use rapport_store::{Offset, StateWrite, Store};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub const CONSUMER: &str = "processor";
const BATCH: usize = 2_000;
/// Profiles kept in memory between batches before the working set is dropped.
const MAX_CACHED_PROFILES: usize = 500_000;

/// The part of the identity graph the processor has read or changed.
#[derive(Default)]
struct WorkingSet {
    profiles: HashMap<ProfileId, Option<ProfileRecord>>,
    holders: HashMap<String, Option<ProfileId>>,
    accounts: HashMap<String, Option<AccountProfile>>,
    /// Trait-index keys stored for each profile, to write only the difference.
    indexed: HashMap<ProfileId, BTreeSet<String>>,
    dirty_profiles: BTreeSet<ProfileId>,
    dirty_holders: BTreeSet<String>,
    dirty_accounts: BTreeSet<String>,
    /// Append-only writes of this batch (timeline, identity log).
    writes: Vec<StateWrite>,
}

impl GraphView for WorkingSet {
    fn profile_of(&self, id: &Identifier) -> Option<ProfileId> {
        self.holders.get(&identifier_key(id)).cloned().flatten()
    }

    fn identifiers_of(&self, p: &ProfileId) -> Vec<IdentifierRecord> {
        match self.profiles.get(p) {
            Some(Some(r)) => r.identifiers.clone(),
            _ => Vec::new(),
        }
    }

    fn is_account_member(&self, account_id: &str, p: &ProfileId) -> bool {
        matches!(self.profiles.get(p), Some(Some(r)) if r.accounts.contains(account_id))
    }
}

fn indexed_keys(record: &ProfileRecord) -> BTreeSet<String> {
    if record.merged_into.is_some() {
        return BTreeSet::new();
    }
    record
        .traits
        .traits
        .iter()
        .filter_map(|(k, v)| trait_index_key(k, &v.value))
        .collect()
}

impl WorkingSet {
    fn load_profile(&mut self, store: &dyn Store, id: &ProfileId) -> Result<(), EngineError> {
        if !self.profiles.contains_key(id) {
            let record = Profiles { store }.record(id)?;
            if let Some(r) = &record {
                self.indexed.insert(id.clone(), indexed_keys(r));
            }
            self.profiles.insert(id.clone(), record);
        }
        Ok(())
    }

    fn load_holder(&mut self, store: &dyn Store, id: &Identifier) -> Result<(), EngineError> {
        let key = identifier_key(id);
        if !self.holders.contains_key(&key) {
            let holder = Profiles { store }.holder(id)?;
            if let Some(p) = &holder {
                self.load_profile(store, p)?;
            }
            self.holders.insert(key, holder);
        }
        Ok(())
    }

    fn load_account(&mut self, store: &dyn Store, account_id: &str) -> Result<(), EngineError> {
        if !self.accounts.contains_key(account_id) {
            let account = Profiles { store }.account(account_id)?;
            self.accounts.insert(account_id.to_owned(), account);
        }
        Ok(())
    }

    /// Reads every part of the graph that resolving `extracted` may look at.
    fn preload(
        &mut self,
        store: &dyn Store,
        extracted: &identity::Extracted,
    ) -> Result<(), EngineError> {
        for e in &extracted.identifiers {
            self.load_holder(store, &e.identifier)?;
        }
        if let Some(prev) = &extracted.previous_id {
            self.load_holder(
                store,
                &Identifier::new(IdentifierKind::UserId, prev.clone()),
            )?;
            self.load_holder(
                store,
                &Identifier::new(IdentifierKind::AnonymousId, prev.clone()),
            )?;
        }
        if let Some(g) = &extracted.group_id {
            self.load_account(store, g)?;
        }
        Ok(())
    }

    fn record_mut(&mut self, id: &ProfileId) -> &mut ProfileRecord {
        self.dirty_profiles.insert(id.clone());
        self.profiles
            .entry(id.clone())
            .or_insert(None)
            .get_or_insert_with(|| ProfileRecord::new(id.clone()))
    }

    fn account_mut(&mut self, account_id: &str) -> &mut AccountProfile {
        self.dirty_accounts.insert(account_id.to_owned());
        self.accounts
            .entry(account_id.to_owned())
            .or_insert(None)
            .get_or_insert_with(|| AccountProfile::new(account_id))
    }

    fn set_holder(&mut self, id: &Identifier, profile: &ProfileId) {
        let key = identifier_key(id);
        self.dirty_holders.insert(key.clone());
        self.holders.insert(key, Some(profile.clone()));
    }

    fn apply_change(&mut self, store: &dyn Store, change: &GraphChange) -> Result<(), EngineError> {
        match change {
            GraphChange::CreateProfile { profile } => {
                self.profiles.insert(profile.clone(), None);
                self.record_mut(profile);
            }
            GraphChange::MergeProfiles { from, into, .. } => {
                self.load_profile(store, from)?;
                self.load_profile(store, into)?;
                let retired = self.record_mut(from);
                let moved = std::mem::replace(
                    retired,
                    ProfileRecord {
                        merged_into: Some(into.clone()),
                        merged_from: retired.merged_from.clone(),
                        log_seq: retired.log_seq,
                        ..ProfileRecord::new(from.clone())
                    },
                );
                for r in &moved.identifiers {
                    self.set_holder(&r.identifier, into);
                }
                for account_id in &moved.accounts {
                    self.load_account(store, account_id)?;
                    self.account_mut(account_id).member_merged(from, into);
                }
                let survivor = self.record_mut(into);
                survivor.identifiers.extend(moved.identifiers);
                survivor.traits.merge(&moved.traits);
                survivor.accounts.extend(moved.accounts);
                survivor.merged_from.push(from.clone());
            }
            GraphChange::AddIdentifier { profile, record } => {
                self.set_holder(&record.identifier, profile);
                self.record_mut(profile).identifiers.push(record.clone());
            }
            GraphChange::TouchIdentifier {
                profile,
                identifier,
                seen_at,
            } => {
                if let Some(r) = self
                    .record_mut(profile)
                    .identifiers
                    .iter_mut()
                    .find(|r| &r.identifier == identifier)
                {
                    r.seen_at(*seen_at);
                }
            }
            GraphChange::LinkAccount {
                account_id,
                profile,
            } => {
                self.record_mut(profile).accounts.insert(account_id.clone());
                self.load_account(store, account_id)?;
                self.account_mut(account_id).members.insert(profile.clone());
            }
        }
        Ok(())
    }

    /// Applies one event. Returns the profile it was attributed to.
    fn apply_event(
        &mut self,
        store: &dyn Store,
        rules: &IdentityRules,
        offset: Offset,
        event: &Event,
    ) -> Result<Option<ProfileId>, EngineError> {
        let extracted = identity::extract(event, rules);
        self.preload(store, &extracted)?;
        let resolution: Resolution = identity::resolve(
            rules,
            &*self,
            &extracted,
            &identity::EventMeta::of(event),
            || profile_id_for(offset),
        );
        for change in &resolution.changes {
            self.apply_change(store, change)?;
        }
        for entry in &resolution.log {
            let record = self.record_mut(&entry.profile);
            let seq = record.log_seq;
            record.log_seq += 1;
            self.writes.push(StateWrite {
                namespace: NS_IDENTITY_LOG.into(),
                profile: entry.profile.as_str().to_owned(),
                key: seq.to_be_bytes().to_vec(),
                value: Some(serde_json::to_vec(entry).expect("log entries serialise")),
            });
        }
        let Some(profile) = resolution.profile.clone() else {
            return Ok(None);
        };
        let updates = identity::trait_updates(event);
        let record = self.record_mut(&profile);
        if updates.profile.is_empty() {
            record.traits.observe(event.timestamp);
        } else {
            record
                .traits
                .apply(&updates.profile, event.timestamp, &event.message_id);
        }
        if let (Some(link), Some((_, account_traits))) = (&resolution.account, &updates.account) {
            let account = self.account_mut(&link.account_id);
            account
                .traits
                .apply(account_traits, event.timestamp, &event.message_id);
        }
        self.writes.push(StateWrite {
            namespace: NS_TIMELINE.into(),
            profile: profile.as_str().to_owned(),
            key: timeline_key(event.timestamp.timestamp_millis(), offset),
            value: Some(Vec::new()),
        });
        Ok(Some(profile))
    }

    /// Everything this batch changed, as writes.
    fn drain_writes(&mut self) -> Vec<StateWrite> {
        let mut writes = std::mem::take(&mut self.writes);
        for id in std::mem::take(&mut self.dirty_profiles) {
            let Some(Some(record)) = self.profiles.get(&id) else {
                continue;
            };
            let now_indexed = indexed_keys(record);
            let before = self.indexed.remove(&id).unwrap_or_default();
            for gone in before.difference(&now_indexed) {
                writes.push(StateWrite {
                    namespace: NS_TRAIT_INDEX.into(),
                    profile: gone.clone(),
                    key: id.as_str().as_bytes().to_vec(),
                    value: None,
                });
            }
            for new in now_indexed.difference(&before) {
                writes.push(StateWrite {
                    namespace: NS_TRAIT_INDEX.into(),
                    profile: new.clone(),
                    key: id.as_str().as_bytes().to_vec(),
                    value: Some(Vec::new()),
                });
            }
            self.indexed.insert(id.clone(), now_indexed);
            writes.push(StateWrite {
                namespace: NS_PROFILE.into(),
                profile: id.as_str().to_owned(),
                key: Vec::new(),
                value: Some(serde_json::to_vec(record).expect("profiles serialise")),
            });
        }
        for key in std::mem::take(&mut self.dirty_holders) {
            if let Some(Some(p)) = self.holders.get(&key) {
                writes.push(StateWrite {
                    namespace: NS_IDENTIFIER.into(),
                    profile: key,
                    key: Vec::new(),
                    value: Some(p.as_str().as_bytes().to_vec()),
                });
            }
        }
        for id in std::mem::take(&mut self.dirty_accounts) {
            if let Some(Some(a)) = self.accounts.get(&id) {
                writes.push(StateWrite {
                    namespace: NS_ACCOUNT.into(),
                    profile: id,
                    key: Vec::new(),
                    value: Some(serde_json::to_vec(a).expect("accounts serialise")),
                });
            }
        }
        writes
    }

    fn trim(&mut self) {
        if self.profiles.len() > MAX_CACHED_PROFILES {
            *self = WorkingSet::default();
        }
    }
}

/// Resolves log entries to profiles, one committed batch at a time.
pub struct Processor {
    store: Arc<dyn Store>,
    rules: IdentityRules,
    working: WorkingSet,
    batch: usize,
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, rules: IdentityRules) -> Processor {
        Processor {
            store,
            rules,
            working: WorkingSet::default(),
            batch: BATCH,
        }
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
        let from = store.consumer_offset(CONSUMER)?;
        let entries = store.read_after(from, self.batch)?;
        let Some(&(last, _)) = entries.last() else {
            return Ok(0);
        };
        let result = self.apply_entries(&entries);
        let outcome = result.and_then(|()| {
            let writes = self.working.drain_writes();
            store.state_commit(&writes, Some((CONSUMER, last)))?;
            Ok(())
        });
        if let Err(e) = outcome {
            // The working set may hold half of a failed batch: forget it and re-read.
            self.working = WorkingSet::default();
            return Err(e);
        }
        self.working.trim();
        metrics::counter!("rapport_events_processed_total").increment(entries.len() as u64);
        Ok(entries.len())
    }

    fn apply_entries(&mut self, entries: &[(Offset, Vec<u8>)]) -> Result<(), EngineError> {
        for (offset, payload) in entries {
            let event = match Event::from_json(payload) {
                Ok(e) => e,
                Err(err) => {
                    tracing::debug!(offset, error = %err, "log entry skipped by the processor");
                    continue;
                }
            };
            self.working
                .apply_event(self.store.as_ref(), &self.rules, *offset, &event)?;
        }
        Ok(())
    }

    /// Processes until the log is exhausted.
    pub fn run_to_end(&mut self) -> Result<(), EngineError> {
        while self.step()? > 0 {}
        Ok(())
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
    ) -> ProcessorThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("processor".into())
            .spawn(move || {
                let mut processor = Processor::new(store.clone(), rules);
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
