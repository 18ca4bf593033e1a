//! The working set: the part of the identity graph, profiles and audience state the
//! processor has read or changed since the last commit, kept in memory between batches
//! (only the processor writes these namespaces) and written once per batch.

use super::sources::SourcePolicies;
use super::{MAX_CACHED_PROFILES, MAX_CACHED_STATES};
use crate::EngineError;
use crate::audiences::profile::{Cause, Trigger, history_event};
use crate::audiences::store::{
    AudienceMeta, HOUR_MS, NS_AUDIENCE, NS_META, NS_PROFILE_LIST, NS_SCHEDULE, NS_SIZE, PART_ALL,
    PART_DUE, PART_META, schedule_key, size_key,
};
use crate::audiences::{Catalogue, ProfileAudience};
use crate::profiles::{
    NS_ACCOUNT, NS_IDENTIFIER, NS_IDENTITY_LOG, NS_PROFILE, NS_TIMELINE, NS_TRAIT_INDEX,
    ProfileRecord, Profiles, identifier_key, profile_id_for, timeline_key, trait_index_key,
};
use crate::trait_changes::TraitChange;
use chrono::{DateTime, Utc};
use rapport_core::event::Event;
use rapport_core::identity::{
    self, AccountProfile, GraphChange, GraphView, Identifier, IdentifierKind, IdentifierRecord,
    IdentityRules, ProfileId, Resolution,
};
use rapport_store::{Offset, StateWrite, Store};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// The part of the identity graph the processor has read or changed.
#[derive(Default)]
pub(super) struct WorkingSet {
    pub(super) profiles: HashMap<ProfileId, Option<ProfileRecord>>,
    pub(super) holders: HashMap<String, Option<ProfileId>>,
    pub(super) accounts: HashMap<String, Option<AccountProfile>>,
    /// Trait-index keys stored for each profile, to write only the difference.
    pub(super) indexed: HashMap<ProfileId, BTreeSet<String>>,
    pub(super) dirty_profiles: BTreeSet<ProfileId>,
    pub(super) dirty_holders: BTreeSet<String>,
    pub(super) dirty_accounts: BTreeSet<String>,
    /// Append-only writes of this batch (timeline, identity log).
    pub(super) writes: Vec<StateWrite>,
    /// Audience state of the profiles loaded, materialised for the current catalogue.
    pub(super) audiences: HashMap<ProfileId, ProfileAudience>,
    /// The scheduler entry stored for each loaded audience.
    pub(super) stored_wake: HashMap<ProfileId, Option<i64>>,
    pub(super) dirty_audiences: BTreeSet<ProfileId>,
    /// Audience states to delete (profiles merged away).
    pub(super) retired_audiences: BTreeSet<ProfileId>,
    /// Bookkeeping committed with every batch; `None` until read.
    pub(super) meta: Option<AudienceMeta>,
    /// Segments whose size changed in this batch.
    pub(super) resized: BTreeSet<String>,
    /// Whether trait changes are written to the trait-change feed in this batch (some
    /// destination delivers them).
    pub(super) trait_feed: bool,
    /// What journeys read and changed.
    pub(super) journeys: super::journeys::JourneyWork,
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
    pub(super) fn load_profile(
        &mut self,
        store: &dyn Store,
        id: &ProfileId,
    ) -> Result<(), EngineError> {
        if !self.profiles.contains_key(id) {
            let record = Profiles { store }.record(id)?;
            if let Some(r) = &record {
                self.indexed.insert(id.clone(), indexed_keys(r));
            }
            self.profiles.insert(id.clone(), record);
        }
        Ok(())
    }

    pub(super) fn load_holder(
        &mut self,
        store: &dyn Store,
        id: &Identifier,
    ) -> Result<(), EngineError> {
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

    pub(super) fn load_account(
        &mut self,
        store: &dyn Store,
        account_id: &str,
    ) -> Result<(), EngineError> {
        if !self.accounts.contains_key(account_id) {
            let account = Profiles { store }.account(account_id)?;
            self.accounts.insert(account_id.to_owned(), account);
        }
        Ok(())
    }

    /// Reads every part of the graph that resolving `extracted` may look at.
    pub(super) fn preload(
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

    pub(super) fn record_mut(&mut self, id: &ProfileId) -> &mut ProfileRecord {
        self.dirty_profiles.insert(id.clone());
        self.profiles
            .entry(id.clone())
            .or_insert(None)
            .get_or_insert_with(|| ProfileRecord::new(id.clone()))
    }

    pub(super) fn account_mut(&mut self, account_id: &str) -> &mut AccountProfile {
        self.dirty_accounts.insert(account_id.to_owned());
        self.accounts
            .entry(account_id.to_owned())
            .or_insert(None)
            .get_or_insert_with(|| AccountProfile::new(account_id))
    }

    pub(super) fn set_holder(&mut self, id: &Identifier, profile: &ProfileId) {
        let key = identifier_key(id);
        self.dirty_holders.insert(key.clone());
        self.holders.insert(key, Some(profile.clone()));
    }

    pub(super) fn apply_change(
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
                self.merge_journeys(store, from, into, now)?;
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
                // Per purpose, the newest decision of the two wins.
                survivor.consent.merge(&moved.consent);
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
    pub(super) fn apply_event(
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
        let trait_feed = self.trait_feed;
        let record = self.record_mut(&profile);
        let mut changes = Vec::new();
        if updates.profile.is_empty() {
            record.traits.observe(event.timestamp);
        } else {
            let previous: HashMap<&String, Value> = if trait_feed {
                let current = &record.traits.traits;
                updates
                    .profile
                    .keys()
                    .map(|k| (k, current.get(k).map_or(Value::Null, |t| t.value.clone())))
                    .collect()
            } else {
                HashMap::new()
            };
            let changed = record
                .traits
                .apply(&updates.profile, event.timestamp, &event.message_id);
            if trait_feed {
                for name in changed {
                    let value = record.traits.traits.get(&name).map(|t| t.value.clone());
                    let before = previous.get(&name).cloned().unwrap_or(Value::Null);
                    changes.push((name, value.unwrap_or(Value::Null), before));
                }
            }
        }
        for (name, value, previous) in changes {
            let meta = self.meta_mut(store)?;
            meta.trait_feed_seq += 1;
            let change = TraitChange {
                seq: meta.trait_feed_seq,
                profile: profile.as_str().to_owned(),
                name,
                value,
                previous,
                at: event.timestamp,
                offset,
            };
            self.writes.push(change.write());
        }
        // Consent the event carries (checked at ingest; an entry logged before the check that
        // does not read carries none).
        let preferences = event
            .context
            .as_ref()
            .and_then(|c| rapport_core::consent::preferences_in_context(c.get()).ok())
            .flatten();
        let mut consent_changed = false;
        if let Some(preferences) = preferences {
            let source = event.source_id.as_str();
            let recorded = self.record_mut(&profile).consent.apply(
                &preferences,
                event.timestamp,
                source,
                &event.message_id,
            );
            consent_changed = recorded.iter().any(|r| r.effective);
            self.writes.extend(
                recorded
                    .iter()
                    .map(|r| crate::consent::history_write(&profile, offset, r)),
            );
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
            || consent_changed
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
        self.run_journeys(
            store,
            catalogue,
            &profile,
            super::journeys::Wake::Event(event, offset),
            now,
        )?;
        Ok(Some(profile))
    }

    /// Everything this batch changed, as writes.
    pub(super) fn drain_writes(&mut self, now: DateTime<Utc>) -> Vec<StateWrite> {
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
        writes.extend(self.journeys.drain_writes());
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

    pub(super) fn has_writes(&self) -> bool {
        !self.writes.is_empty()
            || !self.dirty_profiles.is_empty()
            || !self.dirty_audiences.is_empty()
            || !self.retired_audiences.is_empty()
            || self.journeys.has_writes()
    }

    pub(super) fn trim(&mut self) {
        if self.profiles.len() > MAX_CACHED_PROFILES
            || self.audiences.len() > MAX_CACHED_STATES
            || self.journeys.cached_profiles() > MAX_CACHED_STATES
        {
            let catalogue = self.journeys.catalogue.clone();
            *self = WorkingSet::default();
            self.journeys.catalogue = catalogue;
        }
    }
}
