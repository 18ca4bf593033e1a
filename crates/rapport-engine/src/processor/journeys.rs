//! The journey side of the working set: after identity, traits and segments of each event,
//! the customer's journeys take their decisions with the pure machine of
//! `rapport_journeys`; between batches the timers that fell due wake their instances. Every
//! decision is committed with the batch that took it — instances, the timer index, entry
//! bookkeeping, flow counts, the profile's timeline and the action feed — so that a
//! `kill -9` resumes at the last committed batch and the same log with the same clock gives
//! the same decisions.
//!
//! Order, for one profile and one thing that happened: journeys by descending priority
//! (then name), and within a journey the instances inside first (an event moves them),
//! then entries (so an entry event never satisfies the journey's own first wait). A
//! journey's trait changes are applied to the profile at once and are seen by the next
//! thing that happens. A merge moves the merged profile's instances to the survivor; when
//! both are inside one journey under the same entry key, the earlier entry continues and
//! the other exits with reason `merged`. A paused journey holds its instances: their
//! timers come back every minute until it is resumed, and events do not move them. An
//! archived journey's instances exit with reason `archived` when next woken.

use super::working_set::WorkingSet;
use crate::EngineError;
use crate::audiences::Catalogue;
use crate::audiences::profile::{ChangeKind, ProfileInputs};
use crate::journeys::{
    JourneyAction, JourneyTotals, Journeys, NS_ACTION, NS_ENTRY, NS_INSTANCE, NS_STATS, NS_TIMER,
    NS_TOTALS, PART_DUE, PART_FEED, PART_JOURNEYS, PART_META, decode_timer_key, instance_key,
    timer_key,
};
use crate::profiles::{NS_TIMELINE, timeline_key};
use chrono::{DateTime, TimeDelta, Utc};
use rapport_core::audience::EvalContext;
use rapport_core::event::Event;
use rapport_core::identity::ProfileId;
use rapport_journeys::machine::{Ctx, ExitReason, Input, Open, Trigger, advance, end, enter};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::{Journey, Status};
use rapport_journeys::{ActionKind, CheckedJourney, Decision, EntryState, Instance};
use rapport_store::{Offset, StateWrite, Store};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Timers popped per step.
const TIMER_BATCH: usize = 500;
/// How long a paused journey's due timer waits before it is looked at again.
const PAUSED_RETRY: TimeDelta = TimeDelta::minutes(1);
const KEY_SEQ: &[u8] = b"seq";
const KEY_TIMELINE_SEQ: &[u8] = b"timeline";
/// Timeline sequence numbers of journey decisions have this bit set, so that they never
/// meet the segment changes' feed sequences in a timeline key.
const TIMELINE_BIT: u64 = 1 << 63;

/// One journey with its versions checked.
pub(crate) struct Loaded {
    pub journey: Journey,
    /// Each version that checks against today's segments and computed traits.
    pub checked: BTreeMap<u32, CheckedJourney>,
}

/// The journeys in force, in the order they decide: priority descending, then name.
#[derive(Default)]
pub(crate) struct JourneyCatalogue {
    pub version: u64,
    pub definitions_version: u64,
    pub journeys: Vec<Loaded>,
}

impl JourneyCatalogue {
    pub(crate) fn load(store: &dyn Store, definitions_version: u64) -> Result<Self, EngineError> {
        let j = Journeys { store };
        let version = j.version()?;
        let schema = crate::audiences::definitions::Definitions { store }
            .load()?
            .schema();
        let mut journeys: Vec<Loaded> = j
            .list()?
            .into_iter()
            .map(|journey| {
                let checked = journey
                    .versions
                    .iter()
                    .filter(|v| v.state != rapport_journeys::version::VersionState::Draft)
                    .filter_map(|v| match rapport_journeys::check(&v.spec, &schema) {
                        Ok(c) => Some((v.version, c)),
                        Err(errors) => {
                            tracing::warn!(journey = %journey.name, version = v.version,
                                error = %errors[0], "journey version no longer checks; it is not run");
                            None
                        }
                    })
                    .collect();
                Loaded { journey, checked }
            })
            .collect();
        journeys.sort_by(|a, b| {
            let pa = a.journey.live().map_or(0, |v| v.spec.priority);
            let pb = b.journey.live().map_or(0, |v| v.spec.priority);
            pb.cmp(&pa)
                .then_with(|| a.journey.name.cmp(&b.journey.name))
        });
        Ok(JourneyCatalogue {
            version,
            definitions_version,
            journeys,
        })
    }

    fn is_empty(&self) -> bool {
        self.journeys.is_empty()
    }
}

/// What one profile holds of every journey.
#[derive(Default)]
struct ProfileJourneys {
    instances: BTreeMap<Vec<u8>, Instance>,
    /// The due time stored in the timer index for each instance, to write the difference.
    stored_due: HashMap<Vec<u8>, Option<DateTime<Utc>>>,
    entries: BTreeMap<String, EntryState>,
    /// Instances to delete (ended, or moved by a merge).
    removed: BTreeSet<Vec<u8>>,
}

/// The journey state the processor has read or changed since the last commit.
#[derive(Default)]
pub(crate) struct JourneyWork {
    pub(crate) catalogue: Arc<JourneyCatalogue>,
    profiles: HashMap<ProfileId, ProfileJourneys>,
    dirty: BTreeSet<ProfileId>,
    totals: HashMap<String, JourneyTotals>,
    dirty_totals: BTreeSet<String>,
    stats: HashMap<(String, u32), FlowStats>,
    dirty_stats: BTreeSet<(String, u32)>,
    action_seq: Option<u64>,
    timeline_seq: Option<u64>,
    /// Segment entries and exits recorded since the journeys last looked, by profile.
    pub(crate) changes: Vec<(ProfileId, String, ChangeKind)>,
}

/// What woke a profile's journeys.
pub(super) enum Wake<'a> {
    Event(&'a Event, Offset),
    /// Segments or traits changed without an event (scheduler, backfill).
    Changed,
    /// The timer of one instance fell due.
    Timer(Vec<u8>),
}

/// One decision with where it was taken.
struct Made {
    journey: String,
    version: u32,
    instance: String,
    key: Vec<u8>,
    decision: Decision,
}

/// A journey decision as the profile's timeline holds it; `journey` comes first, which is
/// how the timeline tells it from a segment change.
#[derive(Serialize)]
struct TimelineJourney<'a> {
    journey: &'a str,
    version: u32,
    instance: &'a str,
    timestamp: String,
    explanation: String,
    #[serde(flatten)]
    decision: &'a Decision,
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("journey state: {e}"))
}

impl JourneyWork {
    fn load_profile(&mut self, store: &dyn Store, id: &ProfileId) -> Result<(), EngineError> {
        if self.profiles.contains_key(id) {
            return Ok(());
        }
        let mut p = ProfileJourneys::default();
        for (k, v) in store.state_scan(NS_INSTANCE, id.as_str())? {
            let inst: Instance = serde_json::from_slice(&v).map_err(corrupt)?;
            p.stored_due.insert(k.clone(), inst.due);
            p.instances.insert(k, inst);
        }
        for (k, v) in store.state_scan(NS_ENTRY, id.as_str())? {
            let journey = String::from_utf8(k).map_err(corrupt)?;
            p.entries
                .insert(journey, serde_json::from_slice(&v).map_err(corrupt)?);
        }
        self.profiles.insert(id.clone(), p);
        Ok(())
    }

    fn totals_mut(
        &mut self,
        store: &dyn Store,
        journey: &str,
    ) -> Result<&mut JourneyTotals, EngineError> {
        if !self.totals.contains_key(journey) {
            let t = store
                .state_get(NS_TOTALS, PART_JOURNEYS, journey.as_bytes())?
                .map(|v| serde_json::from_slice(&v).map_err(corrupt))
                .transpose()?
                .unwrap_or_default();
            self.totals.insert(journey.to_owned(), t);
        }
        self.dirty_totals.insert(journey.to_owned());
        Ok(self.totals.get_mut(journey).expect("inserted above"))
    }

    fn stats_mut(
        &mut self,
        store: &dyn Store,
        journey: &str,
        version: u32,
    ) -> Result<&mut FlowStats, EngineError> {
        let k = (journey.to_owned(), version);
        if !self.stats.contains_key(&k) {
            let s = store
                .state_get(NS_STATS, journey, &version.to_be_bytes())?
                .map(|v| serde_json::from_slice(&v).map_err(corrupt))
                .transpose()?
                .unwrap_or_default();
            self.stats.insert(k.clone(), s);
        }
        self.dirty_stats.insert(k.clone());
        Ok(self.stats.get_mut(&k).expect("inserted above"))
    }

    fn next_action_seq(&mut self, store: &dyn Store) -> Result<u64, EngineError> {
        next_seq(store, &mut self.action_seq, KEY_SEQ)
    }

    fn next_timeline_seq(&mut self, store: &dyn Store) -> Result<u64, EngineError> {
        next_seq(store, &mut self.timeline_seq, KEY_TIMELINE_SEQ)
    }

    /// Takes every decision `wake` calls for on one profile's journeys.
    fn decide(
        &mut self,
        store: &dyn Store,
        profile: &ProfileId,
        wake: &Wake<'_>,
        entered_segments: &[String],
        ctx_profile: &dyn EvalContext,
        now: DateTime<Utc>,
    ) -> Result<Vec<Made>, EngineError> {
        let catalogue = self.catalogue.clone();
        let event = match wake {
            Wake::Event(e, _) => Some(crate::journeys::journey_event(e)),
            _ => None,
        };
        let mut made = Vec::new();
        for loaded in &catalogue.journeys {
            let name = loaded.journey.name.as_str();
            let status = loaded.journey.status;
            // The instances inside, oldest first.
            let keys: Vec<Vec<u8>> = self.profiles[profile]
                .instances
                .iter()
                .filter(|(_, i)| i.journey == name && i.is_active())
                .map(|(k, _)| k.clone())
                .filter(|k| !matches!(wake, Wake::Timer(t) if t != k))
                .collect();
            for key in keys {
                let mut totals = self.totals_mut(store, name)?.totals;
                let p = self
                    .profiles
                    .get_mut(profile)
                    .expect("loaded by the caller");
                let mut inst = p.instances[&key].clone();
                let state = p.entries.entry(name.to_owned()).or_default();
                let decisions = match (status, loaded.checked.get(&inst.version)) {
                    (Status::Archived, _) => {
                        end(&mut inst, ExitReason::Archived, state, &mut totals, now)
                    }
                    (Status::Paused, _) => {
                        if matches!(wake, Wake::Timer(_)) {
                            inst.due = Some(now + PAUSED_RETRY);
                        }
                        Vec::new()
                    }
                    // A version that no longer checks holds its customers.
                    (_, None) => Vec::new(),
                    (_, Some(checked)) => {
                        let input = match (&event, wake) {
                            (Some(e), _) => Input::Event(e),
                            (None, Wake::Timer(_)) => Input::Timer,
                            _ => Input::ProfileChanged,
                        };
                        let mut gate = Open;
                        let mut ctx = Ctx {
                            now,
                            profile: ctx_profile,
                            gate: &mut gate,
                        };
                        advance(checked, &mut inst, input, state, &mut totals, &mut ctx)
                    }
                };
                self.totals_mut(store, name)?.totals = totals;
                let p = self
                    .profiles
                    .get_mut(profile)
                    .expect("loaded by the caller");
                for d in decisions {
                    made.push(Made {
                        journey: name.to_owned(),
                        version: inst.version,
                        instance: inst.id.clone(),
                        key: key.clone(),
                        decision: d,
                    });
                }
                p.instances.insert(key, inst);
            }
            if !loaded.journey.takes_entries() {
                continue;
            }
            let Some(live) = loaded.journey.live() else {
                continue;
            };
            let Some(checked) = loaded.checked.get(&live.version) else {
                continue;
            };
            let mut triggers: Vec<Trigger<'_>> = entered_segments
                .iter()
                .map(|s| Trigger::SegmentEntered(s))
                .collect();
            if let Some(e) = &event {
                triggers.push(Trigger::Event(e));
            }
            for trigger in triggers {
                if !rapport_journeys::machine::is_entry(checked, trigger) {
                    continue;
                }
                let t = self.totals_mut(store, name)?;
                let mut totals = t.totals;
                let number = t.next_instance + 1;
                let id = format!("{number}");
                let p = self
                    .profiles
                    .get_mut(profile)
                    .expect("loaded by the caller");
                let state = p.entries.entry(name.to_owned()).or_default();
                let mut gate = Open;
                let mut ctx = Ctx {
                    now,
                    profile: ctx_profile,
                    gate: &mut gate,
                };
                let Ok((inst, decisions)) = enter(
                    checked,
                    live.version,
                    &id,
                    profile.as_str(),
                    trigger,
                    state,
                    &mut totals,
                    &mut ctx,
                ) else {
                    continue;
                };
                let t = self.totals_mut(store, name)?;
                t.totals = totals;
                t.next_instance = number;
                let key = instance_key(name, &id);
                for d in decisions {
                    made.push(Made {
                        journey: name.to_owned(),
                        version: live.version,
                        instance: id.clone(),
                        key: key.clone(),
                        decision: d,
                    });
                }
                let p = self
                    .profiles
                    .get_mut(profile)
                    .expect("loaded by the caller");
                p.stored_due.entry(key.clone()).or_insert(None);
                p.instances.insert(key, inst);
            }
        }
        self.dirty.insert(profile.clone());
        Ok(made)
    }

    /// Moves `from`'s instances and entry bookkeeping to `into` (see the module docs).
    fn merge(
        &mut self,
        store: &dyn Store,
        from: &ProfileId,
        into: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Made>, EngineError> {
        self.load_profile(store, from)?;
        self.load_profile(store, into)?;
        let moved = std::mem::take(&mut self.profiles.get_mut(from).expect("loaded").instances);
        let moved_entries =
            std::mem::take(&mut self.profiles.get_mut(from).expect("loaded").entries);
        self.profiles
            .get_mut(from)
            .expect("loaded")
            .removed
            .extend(moved.keys().cloned());
        let mut made = Vec::new();
        for (journey, e) in moved_entries {
            let p = self.profiles.get_mut(into).expect("loaded");
            let mine = p.entries.entry(journey).or_default();
            mine.entries += e.entries;
            mine.last_entry = mine.last_entry.max(e.last_entry);
            mine.active.extend(e.active);
        }
        for (key, mut inst) in moved {
            inst.profile = into.as_str().to_owned();
            let p = self.profiles.get_mut(into).expect("loaded");
            let rival = p.instances.iter().find(|(_, o)| {
                o.journey == inst.journey
                    && o.is_active()
                    && inst.is_active()
                    && o.entry_key == inst.entry_key
            });
            if let Some((rival_key, rival)) = rival {
                let (rival_key, rival_earlier) =
                    (rival_key.clone(), rival.entered_at <= inst.entered_at);
                let name = inst.journey.clone();
                let mut totals = self.totals_mut(store, &name)?.totals;
                let p = self.profiles.get_mut(into).expect("loaded");
                let state = p.entries.entry(name.clone()).or_default();
                let (loser_key, loser) = if rival_earlier {
                    (key.clone(), &mut inst)
                } else {
                    (
                        rival_key.clone(),
                        p.instances.get_mut(&rival_key).expect("found above"),
                    )
                };
                let decisions = end(loser, ExitReason::Merged, state, &mut totals, now);
                let (version, id) = (loser.version, loser.id.clone());
                for d in decisions {
                    made.push(Made {
                        journey: name.clone(),
                        version,
                        instance: id.clone(),
                        key: loser_key.clone(),
                        decision: d,
                    });
                }
                self.totals_mut(store, &name)?.totals = totals;
            }
            let p = self.profiles.get_mut(into).expect("loaded");
            p.stored_due.entry(key.clone()).or_insert(None);
            p.instances.insert(key, inst);
        }
        self.dirty.insert(from.clone());
        self.dirty.insert(into.clone());
        Ok(made)
    }

    /// Everything journeys changed in this batch, as writes.
    pub(crate) fn drain_writes(&mut self) -> Vec<StateWrite> {
        let mut writes = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let Some(p) = self.profiles.get_mut(&id) else {
                continue;
            };
            let ended: Vec<Vec<u8>> = p
                .instances
                .iter()
                .filter(|(_, i)| !i.is_active())
                .map(|(k, _)| k.clone())
                .collect();
            for k in ended {
                p.instances.remove(&k);
                p.removed.insert(k);
            }
            for k in std::mem::take(&mut p.removed) {
                if p.instances.contains_key(&k) {
                    continue;
                }
                if let Some(Some(due)) = p.stored_due.remove(&k) {
                    writes.push(timer_write(due, &id, &k, false));
                }
                writes.push(StateWrite {
                    namespace: NS_INSTANCE.into(),
                    profile: id.as_str().to_owned(),
                    key: k,
                    value: None,
                });
            }
            for (k, inst) in &p.instances {
                let stored = p.stored_due.get(k).copied().flatten();
                if stored != inst.due {
                    if let Some(d) = stored {
                        writes.push(timer_write(d, &id, k, false));
                    }
                    if let Some(d) = inst.due {
                        writes.push(timer_write(d, &id, k, true));
                    }
                    p.stored_due.insert(k.clone(), inst.due);
                }
                writes.push(StateWrite {
                    namespace: NS_INSTANCE.into(),
                    profile: id.as_str().to_owned(),
                    key: k.clone(),
                    value: Some(serde_json::to_vec(inst).expect("instances serialise")),
                });
            }
            for (journey, e) in &p.entries {
                writes.push(StateWrite {
                    namespace: NS_ENTRY.into(),
                    profile: id.as_str().to_owned(),
                    key: journey.as_bytes().to_vec(),
                    value: Some(serde_json::to_vec(e).expect("entry states serialise")),
                });
            }
        }
        for journey in std::mem::take(&mut self.dirty_totals) {
            if let Some(t) = self.totals.get(&journey) {
                writes.push(StateWrite {
                    namespace: NS_TOTALS.into(),
                    profile: PART_JOURNEYS.into(),
                    key: journey.into_bytes(),
                    value: Some(serde_json::to_vec(t).expect("totals serialise")),
                });
            }
        }
        for (journey, version) in std::mem::take(&mut self.dirty_stats) {
            if let Some(s) = self.stats.get(&(journey.clone(), version)) {
                writes.push(StateWrite {
                    namespace: NS_STATS.into(),
                    profile: journey,
                    key: version.to_be_bytes().to_vec(),
                    value: Some(serde_json::to_vec(s).expect("stats serialise")),
                });
            }
        }
        for (seq, key) in [
            (self.action_seq, KEY_SEQ),
            (self.timeline_seq, KEY_TIMELINE_SEQ),
        ] {
            if let Some(seq) = seq {
                writes.push(StateWrite {
                    namespace: NS_ACTION.into(),
                    profile: PART_META.into(),
                    key: key.to_vec(),
                    value: Some(seq.to_be_bytes().to_vec()),
                });
            }
        }
        writes
    }

    pub(crate) fn has_writes(&self) -> bool {
        !self.dirty.is_empty()
    }
}

/// The next number of a counter kept under `key` in the action feed's meta partition.
fn next_seq(store: &dyn Store, cached: &mut Option<u64>, key: &[u8]) -> Result<u64, EngineError> {
    let seq = match *cached {
        Some(s) => s,
        None => store
            .state_get(NS_ACTION, PART_META, key)?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0),
    } + 1;
    *cached = Some(seq);
    Ok(seq)
}

fn timer_write(due: DateTime<Utc>, profile: &ProfileId, key: &[u8], set: bool) -> StateWrite {
    StateWrite {
        namespace: NS_TIMER.into(),
        profile: PART_DUE.into(),
        key: timer_key(due, profile.as_str(), key),
        value: set.then(Vec::new),
    }
}

impl WorkingSet {
    /// Runs the journeys of `profile` on what woke them, and records their decisions.
    pub(super) fn run_journeys(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        profile: &ProfileId,
        wake: Wake<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut entered = Vec::new();
        self.journeys.changes.retain(|(p, segment, kind)| {
            if p != profile {
                return true;
            }
            if *kind == ChangeKind::Entered {
                entered.push(segment.clone());
            }
            false
        });
        if self.journeys.catalogue.is_empty() {
            return Ok(());
        }
        if !matches!(self.profiles.get(profile), Some(Some(r)) if r.merged_into.is_none()) {
            return Ok(());
        }
        let record = self.profiles[profile].as_ref().expect("checked above");
        for account_id in record.accounts.clone() {
            self.load_account(store, &account_id)?;
        }
        self.load_audience(store, catalogue, profile, now)?;
        self.journeys.load_profile(store, profile)?;
        let scores = if catalogue.reads_scores {
            crate::value::ModelScores { store }.scores(profile.as_str())?
        } else {
            None
        };
        let offset = match &wake {
            Wake::Event(_, o) => *o,
            _ => 0,
        };
        let record = self.profiles[profile].as_ref().expect("checked above");
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
        let audience = &self.audiences[profile];
        let work = &mut self.journeys;
        let made = audience.with_context(catalogue, &inputs, |ctx| {
            work.decide(store, profile, &wake, &entered, ctx, now)
        })?;
        self.record_journey_decisions(store, profile, offset, made, now)
    }

    /// Moves the journeys of a merged profile to its survivor.
    pub(super) fn merge_journeys(
        &mut self,
        store: &dyn Store,
        from: &ProfileId,
        into: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if self.journeys.catalogue.is_empty() {
            return Ok(());
        }
        let made = self.journeys.merge(store, from, into, now)?;
        self.record_journey_decisions(store, into, 0, made, now)
    }

    /// Counts, explains on the timeline, and acts on each decision.
    fn record_journey_decisions(
        &mut self,
        store: &dyn Store,
        profile: &ProfileId,
        offset: Offset,
        made: Vec<Made>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        for m in &made {
            self.journeys
                .stats_mut(store, &m.journey, m.version)?
                .add(&m.decision);
            let item = TimelineJourney {
                journey: &m.journey,
                version: m.version,
                instance: &m.instance,
                timestamp: rapport_core::audience::format_timestamp(now),
                explanation: m.decision.explain(),
                decision: &m.decision,
            };
            let mut key = timeline_key(now.timestamp_millis(), offset);
            let seq = self.journeys.next_timeline_seq(store)? | TIMELINE_BIT;
            key.extend_from_slice(&seq.to_be_bytes());
            self.writes.push(StateWrite {
                namespace: NS_TIMELINE.into(),
                profile: profile.as_str().to_owned(),
                key,
                value: Some(serde_json::to_vec(&item).expect("timeline items serialise")),
            });
            let Decision::Act(action) = &m.decision else {
                continue;
            };
            match &action.kind {
                ActionKind::SetTrait { name, value } => {
                    let traits = Map::from_iter([(name.clone(), value.clone())]);
                    self.record_mut(profile)
                        .traits
                        .apply(&traits, now, &action.key);
                }
                ActionKind::RemoveTrait { name } => {
                    let traits = Map::from_iter([(name.clone(), Value::Null)]);
                    self.record_mut(profile)
                        .traits
                        .apply(&traits, now, &action.key);
                }
                ActionKind::Send { .. } | ActionKind::Emit { .. } => {
                    let seq = self.journeys.next_action_seq(store)?;
                    let entry = self.journeys.profiles[profile]
                        .instances
                        .get(&m.key)
                        .map(|i| i.entry.clone())
                        .unwrap_or_default();
                    let feed = JourneyAction {
                        seq,
                        journey: m.journey.clone(),
                        version: m.version,
                        instance: m.instance.clone(),
                        profile: profile.as_str().to_owned(),
                        at: now,
                        action: action.clone(),
                        entry,
                    };
                    self.writes.push(StateWrite {
                        namespace: NS_ACTION.into(),
                        profile: PART_FEED.into(),
                        key: seq.to_be_bytes().to_vec(),
                        value: Some(serde_json::to_vec(&feed).expect("actions serialise")),
                    });
                }
            }
        }
        Ok(())
    }

    /// Wakes the instances whose timers are due. Returns how many timers it popped.
    pub(super) fn run_journey_timers(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        if self.journeys.catalogue.is_empty() {
            return Ok(0);
        }
        let due: Vec<(Vec<u8>, i64, String, Vec<u8>)> = store
            .state_scan_range(NS_TIMER, PART_DUE, None, TIMER_BATCH)?
            .into_iter()
            .filter_map(|(k, _)| decode_timer_key(&k).map(|(at, p, i)| (k, at, p, i)))
            .take_while(|(_, at, _, _)| *at <= now.timestamp_millis())
            .collect();
        for (raw, at, profile, instance) in &due {
            let id = ProfileId::new(profile.clone());
            self.load_profile(store, &id)?;
            self.journeys.load_profile(store, &id)?;
            let stored = self.journeys.profiles[&id]
                .stored_due
                .get(instance)
                .copied()
                .flatten();
            if stored.map(|d| d.timestamp_millis()) != Some(*at) {
                // A timer the state no longer holds (already fired in this batch, or the
                // instance is gone): drop it.
                if stored.is_none() {
                    self.writes.push(StateWrite {
                        namespace: NS_TIMER.into(),
                        profile: PART_DUE.into(),
                        key: raw.clone(),
                        value: None,
                    });
                }
                continue;
            }
            self.run_journeys(store, catalogue, &id, Wake::Timer(instance.clone()), now)?;
            // A profile that is gone (merged away) wakes nothing: its timer goes.
            if !self.journeys.dirty.contains(&id) {
                self.writes.push(StateWrite {
                    namespace: NS_TIMER.into(),
                    profile: PART_DUE.into(),
                    key: raw.clone(),
                    value: None,
                });
                self.journeys
                    .profiles
                    .get_mut(&id)
                    .expect("loaded above")
                    .stored_due
                    .insert(instance.clone(), None);
            }
        }
        Ok(due.len())
    }

    /// Runs the journeys of the profiles whose segments changed outside an event.
    pub(super) fn run_journeys_on_changes(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let profiles: BTreeSet<ProfileId> = self
            .journeys
            .changes
            .iter()
            .map(|(p, _, _)| p.clone())
            .collect();
        for p in profiles {
            self.run_journeys(store, catalogue, &p, Wake::Changed, now)?;
        }
        Ok(())
    }
}
