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

use crate::EngineError;
use crate::audiences::definitions::Definitions;
use crate::audiences::profile::{Cause, ChangeKind, ProfileInputs, Trigger, history_event};
use crate::audiences::store::{
    AudienceMeta, Audiences, Backfill, HOUR_MS, NS_AUDIENCE, NS_FEED, NS_MEMBER, NS_META,
    NS_PROFILE_LIST, NS_SCHEDULE, NS_SIZE, PART_ALL, PART_DUE, PART_FEED, PART_META,
    decode_schedule_key, schedule_key, size_key,
};
use crate::audiences::{AudienceChange, Catalogue, ProfileAudience, RfmSource};
use crate::profiles::{
    NS_ACCOUNT, NS_IDENTIFIER, NS_IDENTITY_LOG, NS_PROFILE, NS_TIMELINE, NS_TRAIT_INDEX,
    ProfileRecord, Profiles, identifier_key, profile_id_for, timeline_key, trait_index_key,
};
use crate::signal::LogSignal;
use chrono::{DateTime, Utc};
use rapport_core::audience::HistoryEvent;
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

mod control;

pub const CONSUMER: &str = "processor";
/// Each source's identity policy in force, as the last control entry for it set it: key the
/// source id, value the JSON `IdentityPolicy`. Sources without an entry are unrestricted.
pub const NS_SOURCE_IDENTITY: &str = "identity.source";
const PART_SOURCES: &str = "sources";
const BATCH: usize = 2_000;
/// Profiles kept in memory between batches before the working set is dropped.
const MAX_CACHED_PROFILES: usize = 500_000;
/// Scheduled profiles evaluated per step.
const SCHEDULE_BATCH: usize = 200;
/// Existing profiles evaluated per step while definitions are backfilled.
const BACKFILL_BATCH: usize = 2_000;

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
    /// Audience state of the profiles loaded, materialised for the current catalogue.
    audiences: HashMap<ProfileId, ProfileAudience>,
    /// The scheduler entry stored for each loaded audience.
    stored_wake: HashMap<ProfileId, Option<i64>>,
    dirty_audiences: BTreeSet<ProfileId>,
    /// Audience states to delete (profiles merged away).
    retired_audiences: BTreeSet<ProfileId>,
    /// Bookkeeping committed with every batch; `None` until read.
    meta: Option<AudienceMeta>,
    /// Segments whose size changed in this batch.
    resized: BTreeSet<String>,
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

    fn apply_change(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        change: &GraphChange,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        match change {
            GraphChange::CreateProfile { profile } => {
                self.profiles.insert(profile.clone(), None);
                self.record_mut(profile);
                self.audiences
                    .insert(profile.clone(), ProfileAudience::empty(catalogue));
                self.stored_wake.insert(profile.clone(), None);
                self.dirty_audiences.insert(profile.clone());
                self.meta_mut(store)?.profiles += 1;
                self.writes.push(StateWrite {
                    namespace: NS_PROFILE_LIST.into(),
                    profile: PART_ALL.into(),
                    key: profile.as_str().as_bytes().to_vec(),
                    value: Some(Vec::new()),
                });
            }
            GraphChange::MergeProfiles { from, into, .. } => {
                self.load_profile(store, from)?;
                self.load_profile(store, into)?;
                self.merge_audiences(store, catalogue, from, into, now)?;
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
    #[allow(clippy::too_many_arguments)]
    fn apply_event(
        &mut self,
        store: &dyn Store,
        rules: &IdentityRules,
        catalogue: &Catalogue,
        sources: &SourcePolicies,
        offset: Offset,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<ProfileId>, EngineError> {
        let extracted = identity::extract(event, rules);
        self.preload(store, &extracted)?;
        let restriction = sources.restriction(&event.source_id);
        let resolution: Resolution = identity::resolve_restricted(
            rules,
            &*self,
            &extracted,
            &identity::EventMeta::of(event),
            &restriction,
            || profile_id_for(offset),
        );
        for change in &resolution.changes {
            self.apply_change(store, catalogue, change, now)?;
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
        let reshaped = resolution.changes.iter().any(|c| match c {
            GraphChange::CreateProfile { profile: p } => *p == profile,
            GraphChange::MergeProfiles { into, .. } => *into == profile,
            _ => false,
        });
        let profile_changed = !updates.profile.is_empty()
            || resolution.account.is_some()
            || resolution
                .changes
                .iter()
                .any(|c| !matches!(c, GraphChange::TouchIdentifier { .. }));
        let history = history_event(event);
        let matched = catalogue.matching(&history);
        self.load_audience(store, catalogue, &profile, now)?;
        self.audiences
            .get_mut(&profile)
            .expect("loaded above")
            .observe(catalogue, &matched, &history, offset, now);
        self.reevaluate(
            store,
            catalogue,
            &profile,
            &Trigger {
                matched: &matched,
                profile_changed,
                all: reshaped,
            },
            Cause::Event { offset },
            now,
        )?;
        Ok(Some(profile))
    }

    fn meta_mut(&mut self, store: &dyn Store) -> Result<&mut AudienceMeta, EngineError> {
        if self.meta.is_none() {
            self.meta = Some(Audiences { store }.meta()?);
        }
        Ok(self.meta.as_mut().expect("read above"))
    }

    /// Loads the audience state of `id` and brings it up to `catalogue`, reading the
    /// profile's committed history if an aggregate must be materialised. Every profile is
    /// loaded before any event of the batch is applied to it, so the committed history is
    /// complete.
    fn load_audience(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !self.audiences.contains_key(id) {
            let stored = Audiences { store }.profile(id.as_str())?;
            self.stored_wake
                .insert(id.clone(), stored.as_ref().and_then(|a| a.wake));
            self.audiences
                .insert(id.clone(), stored.unwrap_or_default());
        }
        let audience = self.audiences.get_mut(id).expect("inserted above");
        if audience.needs_history(catalogue) {
            let history = committed_history(store, id)?;
            audience.materialise(catalogue, &history, now);
            self.dirty_audiences.insert(id.clone());
        } else if audience.v != catalogue.version {
            audience.materialise(catalogue, &[], now);
            self.dirty_audiences.insert(id.clone());
        }
        Ok(())
    }

    fn merge_audiences(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        from: &ProfileId,
        into: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        self.load_audience(store, catalogue, from, now)?;
        self.load_audience(store, catalogue, into, now)?;
        let mut retired = self.audiences.remove(from).expect("loaded above");
        for segment in retired.leave_all() {
            self.record_membership(
                store,
                from,
                &segment,
                ChangeKind::Exited,
                Cause::Merge {
                    into: into.as_str().to_owned(),
                },
                None,
                now,
            )?;
        }
        self.audiences
            .get_mut(into)
            .expect("loaded above")
            .absorb(catalogue, retired, now);
        self.dirty_audiences.insert(into.clone());
        self.dirty_audiences.remove(from);
        self.retired_audiences.insert(from.clone());
        self.meta_mut(store)?.profiles = self.meta_mut(store)?.profiles.saturating_sub(1);
        self.writes.push(StateWrite {
            namespace: NS_PROFILE_LIST.into(),
            profile: PART_ALL.into(),
            key: from.as_str().as_bytes().to_vec(),
            value: None,
        });
        Ok(())
    }

    /// Re-evaluates the loaded profile `id` and records every membership change.
    fn reevaluate(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        trigger: &Trigger<'_>,
        cause: Cause,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(Some(record)) = self.profiles.get(id) else {
            return Ok(());
        };
        for account_id in record.accounts.clone() {
            self.load_account(store, &account_id)?;
        }
        let scores = if catalogue.reads_scores {
            crate::value::ModelScores { store }.scores(id.as_str())?
        } else {
            None
        };
        let Some(Some(record)) = self.profiles.get(id) else {
            return Ok(());
        };
        let accounts = record
            .accounts
            .iter()
            .filter_map(|a| self.accounts.get(a).and_then(Option::as_ref))
            .collect();
        let inputs = ProfileInputs {
            record,
            accounts,
            scores,
        };
        let audience = self.audiences.get_mut(id).expect("loaded by the caller");
        let changes = audience.refresh(catalogue, &inputs, trigger, now);
        self.dirty_audiences.insert(id.clone());
        let offset = match cause {
            Cause::Event { offset } => Some(offset),
            _ => None,
        };
        for change in changes {
            let cause = if change.deleted {
                Cause::Deleted
            } else {
                cause.clone()
            };
            self.record_membership(store, id, &change.segment, change.kind, cause, offset, now)?;
        }
        Ok(())
    }

    /// Writes one membership change: member index, size, feed and timeline.
    #[allow(clippy::too_many_arguments)]
    fn record_membership(
        &mut self,
        store: &dyn Store,
        id: &ProfileId,
        segment: &str,
        kind: ChangeKind,
        cause: Cause,
        offset: Option<Offset>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let meta = self.meta_mut(store)?;
        meta.feed_seq += 1;
        let seq = meta.feed_seq;
        let size = meta.sizes.entry(segment.to_owned()).or_insert(0);
        match kind {
            ChangeKind::Entered => *size += 1,
            ChangeKind::Exited => *size = size.saturating_sub(1),
        }
        self.resized.insert(segment.to_owned());
        let change = AudienceChange {
            seq,
            segment: segment.to_owned(),
            profile: id.as_str().to_owned(),
            change: kind,
            at: now,
            cause,
        };
        let json = serde_json::to_vec(&change).expect("audience changes serialise");
        self.writes.push(StateWrite {
            namespace: NS_MEMBER.into(),
            profile: segment.to_owned(),
            key: id.as_str().as_bytes().to_vec(),
            value: (kind == ChangeKind::Entered)
                .then(|| now.timestamp_millis().to_be_bytes().to_vec()),
        });
        let mut key = timeline_key(now.timestamp_millis(), offset.unwrap_or(0));
        key.extend_from_slice(&seq.to_be_bytes());
        self.writes.push(StateWrite {
            namespace: NS_TIMELINE.into(),
            profile: id.as_str().to_owned(),
            key,
            value: Some(json.clone()),
        });
        self.writes.push(StateWrite {
            namespace: NS_FEED.into(),
            profile: PART_FEED.into(),
            key: seq.to_be_bytes().to_vec(),
            value: Some(json),
        });
        Ok(())
    }

    /// Re-evaluates profiles whose scheduled time has come. Returns how many.
    fn run_schedule(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let due: Vec<(i64, String)> = store
            .state_scan_range(NS_SCHEDULE, PART_DUE, None, SCHEDULE_BATCH)?
            .into_iter()
            .filter_map(|(k, _)| decode_schedule_key(&k))
            .take_while(|(at, _)| *at <= now.timestamp_millis())
            .collect();
        for (at, profile) in &due {
            self.writes.push(StateWrite {
                namespace: NS_SCHEDULE.into(),
                profile: PART_DUE.into(),
                key: schedule_key(*at, profile),
                value: None,
            });
            let id = ProfileId::new(profile.clone());
            self.reevaluate_existing(store, catalogue, &id, Cause::Schedule, now)?;
        }
        Ok(due.len())
    }

    /// Evaluates every segment for a stored profile (scheduler, backfill).
    fn reevaluate_existing(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        cause: Cause,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        self.load_profile(store, id)?;
        if !matches!(self.profiles.get(id), Some(Some(r)) if r.merged_into.is_none()) {
            return Ok(());
        }
        self.load_audience(store, catalogue, id, now)?;
        self.reevaluate(
            store,
            catalogue,
            id,
            &Trigger {
                matched: &[],
                profile_changed: true,
                all: true,
            },
            cause,
            now,
        )
    }

    /// Evaluates the next page of existing profiles while changed definitions are backfilled.
    /// Returns how many profiles it visited.
    fn run_backfill(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let meta = self.meta_mut(store)?;
        let mut bookkeeping = 0;
        if meta.backfill.version != catalogue.version {
            bookkeeping = 1;
            meta.backfill = Backfill {
                version: catalogue.version,
                cursor: None,
                processed: 0,
                total: meta.profiles,
                started_at_ms: now.timestamp_millis(),
                finished_at_ms: None,
            };
        }
        if !meta.backfill.running() {
            return Ok(0);
        }
        let cursor = meta.backfill.cursor.clone();
        let page = store.state_scan_range(
            NS_PROFILE_LIST,
            PART_ALL,
            cursor.as_deref().map(str::as_bytes),
            BACKFILL_BATCH,
        )?;
        for (k, _) in &page {
            let id = ProfileId::new(String::from_utf8_lossy(k).into_owned());
            self.reevaluate_existing(store, catalogue, &id, Cause::Backfill, now)?;
        }
        let meta = self.meta_mut(store)?;
        meta.backfill.processed += page.len() as u64;
        meta.backfill.total = meta.backfill.total.max(meta.backfill.processed);
        if let Some((k, _)) = page.last() {
            meta.backfill.cursor = Some(String::from_utf8_lossy(k).into_owned());
        }
        if page.len() < BACKFILL_BATCH {
            meta.backfill.finished_at_ms = Some(now.timestamp_millis());
            meta.backfill.total = meta.backfill.processed;
            bookkeeping = 1;
        }
        // Starting and finishing are work too: they must be committed.
        Ok(page.len() + bookkeeping)
    }

    /// Everything this batch changed, as writes.
    fn drain_writes(&mut self, now: DateTime<Utc>) -> Vec<StateWrite> {
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
        for id in std::mem::take(&mut self.dirty_audiences) {
            let Some(audience) = self.audiences.get(&id) else {
                continue;
            };
            let stored = self.stored_wake.get(&id).copied().flatten();
            if stored != audience.wake {
                if let Some(at) = stored {
                    writes.push(StateWrite {
                        namespace: NS_SCHEDULE.into(),
                        profile: PART_DUE.into(),
                        key: schedule_key(at, id.as_str()),
                        value: None,
                    });
                }
                if let Some(at) = audience.wake {
                    writes.push(StateWrite {
                        namespace: NS_SCHEDULE.into(),
                        profile: PART_DUE.into(),
                        key: schedule_key(at, id.as_str()),
                        value: Some(Vec::new()),
                    });
                }
                self.stored_wake.insert(id.clone(), audience.wake);
            }
            writes.push(StateWrite {
                namespace: NS_AUDIENCE.into(),
                profile: id.as_str().to_owned(),
                key: Vec::new(),
                value: Some(serde_json::to_vec(audience).expect("audiences serialise")),
            });
        }
        for id in std::mem::take(&mut self.retired_audiences) {
            if let Some(Some(at)) = self.stored_wake.remove(&id) {
                writes.push(StateWrite {
                    namespace: NS_SCHEDULE.into(),
                    profile: PART_DUE.into(),
                    key: schedule_key(at, id.as_str()),
                    value: None,
                });
            }
            writes.push(StateWrite {
                namespace: NS_AUDIENCE.into(),
                profile: id.as_str().to_owned(),
                key: Vec::new(),
                value: None,
            });
        }
        let resized = std::mem::take(&mut self.resized);
        if let Some(meta) = &self.meta {
            let hour = now.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS;
            for segment in resized {
                let size = meta.sizes.get(&segment).copied().unwrap_or(0);
                writes.push(StateWrite {
                    namespace: NS_SIZE.into(),
                    profile: segment,
                    key: size_key(hour),
                    value: Some(size.to_be_bytes().to_vec()),
                });
            }
            writes.push(StateWrite {
                namespace: NS_META.into(),
                profile: PART_META.into(),
                key: Vec::new(),
                value: Some(serde_json::to_vec(meta).expect("audience meta serialises")),
            });
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

    fn has_writes(&self) -> bool {
        !self.writes.is_empty()
            || !self.dirty_profiles.is_empty()
            || !self.dirty_audiences.is_empty()
            || !self.retired_audiences.is_empty()
    }

    fn trim(&mut self) {
        if self.profiles.len() > MAX_CACHED_PROFILES {
            *self = WorkingSet::default();
        }
    }
}

/// Every event of a stored profile and of the profiles merged into it, with its log offset,
/// in log order.
fn committed_history(
    store: &dyn Store,
    id: &ProfileId,
) -> Result<Vec<(Offset, HistoryEvent)>, EngineError> {
    let profiles = Profiles { store };
    let Some(record) = profiles.record(id)? else {
        return Ok(Vec::new());
    };
    let mut offsets = Vec::new();
    for p in profiles.lineage(&record)? {
        offsets.extend(profiles.timeline_offsets(&p)?);
    }
    offsets.sort_unstable();
    let mut out = Vec::with_capacity(offsets.len());
    for o in offsets {
        if let Some(payload) = store.get(o)?
            && let Ok(event) = Event::from_json(&payload)
        {
            out.push((o, history_event(&event)));
        }
    }
    Ok(out)
}

/// The identity policies of sources, as control entries in the log set them.
#[derive(Default)]
struct SourcePolicies(HashMap<String, rapport_store::IdentityPolicy>);

impl SourcePolicies {
    fn load(store: &dyn Store) -> Result<SourcePolicies, EngineError> {
        let mut map = HashMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                store.state_scan_range(NS_SOURCE_IDENTITY, PART_SOURCES, after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                // Written by the processor itself; an unreadable one would mean corruption,
                // and unrestricted is what the source was before any policy.
                if let Ok(policy) = serde_json::from_slice(value) {
                    map.insert(String::from_utf8_lossy(key).into_owned(), policy);
                }
            }
        }
        Ok(SourcePolicies(map))
    }

    fn restriction(&self, source_id: &str) -> identity::SourceRestriction {
        match self.0.get(source_id) {
            None => identity::SourceRestriction::default(),
            Some(p) => identity::SourceRestriction {
                source_id: source_id.to_owned(),
                no_merge: !p.merge,
                kinds: p.identifier_types.as_ref().map(|types| {
                    types
                        .iter()
                        .filter_map(|t| IdentifierKind::parse(t))
                        .collect()
                }),
            },
        }
    }
}

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
    /// Sources' identity policies; `None` until read, and after a failed batch.
    sources: Option<SourcePolicies>,
    working: WorkingSet,
    batch: usize,
    /// After the store refused a batch's writes: entries up to this offset are processed
    /// one at a time, so that the one at fault is found and recorded as a dead letter.
    isolate_until: Option<Offset>,
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
            sources: None,
            working: WorkingSet::default(),
            batch: BATCH,
            isolate_until: None,
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
        let entries = store.read_after(from, batch)?;
        let last = entries.last().map_or(from, |&(o, _)| o);
        let catalogue = self.catalogue.clone();
        let result = self.apply_entries(&entries).and_then(|()| {
            let now = (self.clock)();
            let scheduled = self.working.run_schedule(store.as_ref(), &catalogue, now)?;
            let backfilled = self.working.run_backfill(store.as_ref(), &catalogue, now)?;
            Ok(scheduled + backfilled)
        });
        let outcome = result.and_then(|other_work| {
            if entries.is_empty() && other_work == 0 && !self.working.has_writes() {
                return Ok(0);
            }
            let writes = self.working.drain_writes((self.clock)());
            store.state_commit(&writes, Some((CONSUMER, last)))?;
            Ok(other_work)
        });
        let other_work = match outcome {
            Ok(n) => n,
            Err(e) => {
                // The working set may hold half of a failed batch: forget it and re-read.
                self.working = WorkingSet::default();
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
