//! The processor's side of a person's deletion: at the request's control entry, it drops
//! everything it derived for the person — profiles (the live ones and every one merged
//! into them), identifiers, explanations, timelines, consent history, trait-index entries,
//! segment memberships and schedule entries, journey instances, timers and send logs —
//! and records what it found for the eraser ([`crate::privacy::Forgotten`]).
//!
//! It runs in a batch of its own, after everything before it was committed, and the working
//! set is dropped after it, so no cached copy of the person can be written back. Segment
//! sizes lose the person; no enter/exit change is fed for them (a change about nobody
//! would name a profile that no longer exists). Aggregates without personal data (journey
//! flow counts and totals, segment size history) keep counting them.

use super::Processor;
use crate::EngineError;
use crate::audiences::store::{
    Audiences, NS_AUDIENCE, NS_MEMBER, NS_PROFILE_LIST, NS_SCHEDULE, PART_ALL, PART_DUE,
    schedule_key,
};
use crate::consent::NS_CONSENT_HISTORY;
use crate::journeys::{
    NS_ACTIVE, NS_ENTRY, NS_INSTANCE, NS_SENDS, NS_TIMER, active_key, timer_key,
};
use crate::privacy::deletion::{ForgetRequest, Forgotten, forgotten_write};
use crate::profiles::{
    NS_IDENTIFIER, NS_IDENTITY_LOG, NS_PROFILE, NS_TIMELINE, NS_TRAIT_INDEX, ProfileRecord,
    Profiles, identifier_key, trait_index_key,
};
use rapport_store::{Offset, StateWrite, Store};
use std::collections::BTreeSet;

/// The processor's namespaces partitioned by profile id, with the receipt's name for each.
const BY_PROFILE: &[(&str, &str)] = &[
    (NS_PROFILE, "profiles"),
    (NS_IDENTITY_LOG, "identity explanations"),
    (NS_TIMELINE, "timelines"),
    (NS_CONSENT_HISTORY, "consent history"),
    (NS_AUDIENCE, "computed traits and segment state"),
    (NS_INSTANCE, "journey instances"),
    (NS_ENTRY, "journey re-entry records"),
    (NS_SENDS, "journey send logs"),
];

impl Processor {
    /// Applies a person's deletion at `offset` as a batch of its own and commits it.
    pub(super) fn apply_forget(
        &mut self,
        offset: Offset,
        request: &ForgetRequest,
    ) -> Result<(), EngineError> {
        let store = self.store.clone();
        let writes = forget_writes(store.as_ref(), offset, request, (self.clock)())?;
        store.state_commit(&writes, Some((super::CONSUMER, offset)))?;
        // Nothing cached may be written back: the next batch reads the store afresh.
        let catalogue = self.working.journeys.catalogue.clone();
        self.working = super::WorkingSet::default();
        self.working.journeys.catalogue = catalogue;
        tracing::info!(offset, request = %request.request, "deletion applied by the processor");
        Ok(())
    }
}

fn delete(namespace: &str, profile: &str, key: Vec<u8>) -> StateWrite {
    StateWrite {
        namespace: namespace.into(),
        profile: profile.to_owned(),
        key,
        value: None,
    }
}

/// The writes that drop the person of `request` (committed with the offset).
fn forget_writes(
    store: &dyn Store,
    offset: Offset,
    request: &ForgetRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<StateWrite>, EngineError> {
    let profiles = Profiles { store };
    let mut live: Vec<ProfileRecord> = Vec::new();
    let mut add = |record: Option<ProfileRecord>| {
        if let Some(r) = record
            && !live.iter().any(|l| l.id == r.id)
        {
            live.push(r);
        }
    };
    for identifier in &request.identifiers {
        if let Some(holder) = profiles.holder(identifier)? {
            add(profiles.live(&holder)?);
        }
    }
    for id in &request.profiles {
        add(profiles.live(id)?);
    }
    let mut forgotten = Forgotten {
        offset,
        identifiers: request.identifiers.clone(),
        ..Forgotten::default()
    };
    let mut writes = Vec::new();
    let count = |forgotten: &mut Forgotten, store: &str, n: u64| {
        if n > 0 {
            *forgotten.removed.entry(store.to_owned()).or_default() += n;
        }
    };
    let audiences = Audiences { store };
    let mut meta = audiences.meta()?;
    let mut resized = BTreeSet::new();
    for record in &live {
        // Segment memberships and the scheduler entry of the live profile.
        if let Some(mut audience) = audiences.profile(record.id.as_str())? {
            if let Some(at) = audience.wake {
                writes.push(delete(
                    NS_SCHEDULE,
                    PART_DUE,
                    schedule_key(at, record.id.as_str()),
                ));
            }
            let left = audience.leave_all();
            count(&mut forgotten, "segment memberships", left.len() as u64);
            for segment in left {
                let size = meta.sizes.entry(segment.clone()).or_insert(0);
                *size = size.saturating_sub(1);
                writes.push(delete(
                    NS_MEMBER,
                    &segment,
                    record.id.as_str().as_bytes().to_vec(),
                ));
                resized.insert(segment);
            }
        }
        writes.push(delete(
            NS_PROFILE_LIST,
            PART_ALL,
            record.id.as_str().as_bytes().to_vec(),
        ));
        meta.profiles = meta.profiles.saturating_sub(1);
        for id in profiles.lineage(record)? {
            if !forgotten.profiles.contains(&id) {
                forgotten.profiles.push(id);
            }
        }
    }
    for id in forgotten.profiles.clone() {
        let Some(record) = profiles.record(&id)? else {
            continue;
        };
        for i in &record.identifiers {
            writes.push(delete(
                NS_IDENTIFIER,
                &identifier_key(&i.identifier),
                Vec::new(),
            ));
            if !forgotten.identifiers.contains(&i.identifier) {
                forgotten.identifiers.push(i.identifier.clone());
            }
        }
        count(
            &mut forgotten,
            "identity graph",
            record.identifiers.len() as u64,
        );
        for (name, value) in &record.traits.traits {
            if let Some(part) = trait_index_key(name, &value.value) {
                writes.push(delete(
                    NS_TRAIT_INDEX,
                    &part,
                    id.as_str().as_bytes().to_vec(),
                ));
            }
        }
        // Journey timers and the index of active instances are keyed by time and
        // journey: found through the instances.
        for (key, value) in store.state_scan(NS_INSTANCE, id.as_str())? {
            let Ok(instance) = serde_json::from_slice::<rapport_journeys::Instance>(&value) else {
                continue;
            };
            if let Some(due) = instance.due {
                writes.push(delete(
                    NS_TIMER,
                    crate::journeys::PART_DUE,
                    timer_key(due, id.as_str(), &key),
                ));
            }
            writes.push(delete(
                NS_ACTIVE,
                &instance.journey,
                active_key(instance.version, id.as_str(), &key),
            ));
        }
        for (namespace, name) in BY_PROFILE {
            let entries = store.state_scan(namespace, id.as_str())?;
            count(&mut forgotten, name, entries.len() as u64);
            writes.extend(
                entries
                    .into_iter()
                    .map(|(k, _)| delete(namespace, id.as_str(), k)),
            );
        }
    }
    let hour = now
        .timestamp_millis()
        .div_euclid(crate::audiences::store::HOUR_MS)
        * crate::audiences::store::HOUR_MS;
    for segment in resized {
        let size = meta.sizes.get(&segment).copied().unwrap_or(0);
        writes.push(StateWrite {
            namespace: crate::audiences::store::NS_SIZE.into(),
            profile: segment,
            key: crate::audiences::store::size_key(hour),
            value: Some(size.to_be_bytes().to_vec()),
        });
    }
    writes.push(StateWrite {
        namespace: crate::audiences::store::NS_META.into(),
        profile: crate::audiences::store::PART_META.into(),
        key: Vec::new(),
        value: Some(serde_json::to_vec(&meta).expect("audience meta serialises")),
    });
    writes.push(forgotten_write(&request.request, Some(&forgotten)));
    Ok(writes)
}
