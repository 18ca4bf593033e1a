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
    JourneyAction, JourneyTotals, Journeys, KEY_ACTION_SEQ, NS_ACTION, NS_ENTRY, NS_INSTANCE,
    NS_STATS, NS_TIMER, NS_TOTALS, PART_DUE, PART_FEED, PART_JOURNEYS, PART_META, decode_timer_key,
    instance_key, send_message, timer_key,
};
use crate::profiles::{NS_TIMELINE, timeline_key};
use chrono::{DateTime, TimeDelta, Utc};
use rapport_core::audience::EvalContext;
use rapport_core::event::Event;
use rapport_core::identity::ProfileId;
use rapport_destinations::payload::Template;
use rapport_journeys::caps::{CapRule, Caps, SendLog};
use rapport_journeys::machine::{Ctx, ExitReason, Input, Trigger, advance, end, enter};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::{Journey, Status};
use rapport_journeys::{ActionKind, CheckedJourney, Decision, EntryState, Instance, NotEntered};
use rapport_store::{Offset, StateWrite, Store};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Segment members a schedule entry enters per step (at most the processor's batch size).
pub(super) const SCHEDULE_PAGE: usize = 500;
/// Timers popped per step.
const TIMER_BATCH: usize = 500;
/// How long a paused journey's due timer waits before it is looked at again.
const PAUSED_RETRY: TimeDelta = TimeDelta::minutes(1);
const KEY_TIMELINE_SEQ: &[u8] = b"timeline";
/// Timeline sequence numbers of journey decisions have this bit set, so that they never
/// meet the segment changes' feed sequences in a timeline key.
const TIMELINE_BIT: u64 = 1 << 63;

/// One journey with its versions checked.
pub(crate) struct Loaded {
    pub journey: Journey,
    /// Each version that checks against today's segments and computed traits.
    pub checked: BTreeMap<u32, CheckedJourney>,
    /// The compiled template of each `send` step that has one, by version and node.
    pub templates: HashMap<(u32, String), Arc<Template>>,
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
                let templates = send_templates(&journey);
                Loaded {
                    journey,
                    checked,
                    templates,
                }
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

/// Compiles the templates of every `send` step of a journey's versions. One that does
/// not compile (the API refuses it, so only a stored record can) is left out: its
/// messages are then dead-lettered naming the error.
fn send_templates(journey: &Journey) -> HashMap<(u32, String), Arc<Template>> {
    let mut out = HashMap::new();
    for v in &journey.versions {
        for (id, node) in &v.spec.nodes {
            if let rapport_journeys::Node::Send(send) = node
                && let Some(source) = &send.template
                && let Ok(t) = Template::compile(source, true)
            {
                out.insert((v.version, id.clone()), Arc::new(t));
            }
        }
    }
    out
}

/// What one profile holds of every journey.
#[derive(Default)]
struct ProfileJourneys {
    instances: BTreeMap<Vec<u8>, Instance>,
    /// The due time stored in the timer index for each instance, to write the difference.
    stored_due: HashMap<Vec<u8>, Option<DateTime<Utc>>>,
    /// The version under which each instance is in the index of active instances.
    stored_version: HashMap<Vec<u8>, u32>,
    entries: BTreeMap<String, EntryState>,
    /// Instances to delete (ended, or moved by a merge).
    removed: BTreeSet<Vec<u8>>,
    /// The messages sent, for the caps, and as stored (to write only a change).
    sends: SendLog,
    stored_sends: SendLog,
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
    /// The frequency caps in force; `None` until read from the store.
    cap_rules: Option<Arc<Vec<CapRule>>>,
    /// API entries that entered no one, since the journeys last looked: journey, the live
    /// version, why (a code and a sentence), for the profile's timeline.
    refused: Vec<(String, Option<u32>, &'static str, String)>,
}

/// Why an entry asked through the API entered no one, as a code and a sentence.
fn refusal(reason: &NotEntered) -> (&'static str, &'static str) {
    match reason {
        NotEntered::NotTheEntry => ("not_the_entry", "the journey's entry is not `api`"),
        NotEntered::AlreadyEntered => (
            "already_entered",
            "entered before, and the journey's re-entry is `once`",
        ),
        NotEntered::CoolingDown => ("cooling_down", "inside, or within the cool-down"),
        NotEntered::KeyActive => ("key_active", "inside for this entry key"),
        NotEntered::NoKey => (
            "no_key",
            "the entry has no value of the per-key re-entry property",
        ),
        NotEntered::EntryLimit => ("entry_limit", "the journey's max_entries is reached"),
        NotEntered::ActiveLimit => ("active_limit", "the journey's max_active is reached"),
    }
}

/// An API entry that entered no one, as the profile's timeline holds it.
#[derive(Serialize)]
struct TimelineRefusal<'a> {
    journey: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    timestamp: String,
    explanation: String,
    decision: &'static str,
    reason: &'static str,
}

/// What woke a profile's journeys.
pub(super) enum Wake<'a> {
    Event(&'a Event, Offset),
    /// Segments or traits changed without an event (scheduler, backfill).
    Changed,
    /// The timer of one instance fell due.
    Timer(Vec<u8>),
    /// The schedule of `journey` fell due and the profile was among its segment's members.
    Schedule {
        journey: &'a str,
        segment: &'a str,
    },
    /// An entry asked through the API (a control entry at this offset): only the journey
    /// named is entered; instances inside see the profile as it is.
    Api {
        journey: &'a str,
        properties: &'a Map<String, Value>,
        offset: Offset,
    },
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
            p.stored_version.insert(k.clone(), inst.version);
            p.instances.insert(k, inst);
        }
        for (k, v) in store.state_scan(NS_ENTRY, id.as_str())? {
            let journey = String::from_utf8(k).map_err(corrupt)?;
            p.entries
                .insert(journey, serde_json::from_slice(&v).map_err(corrupt)?);
        }
        if let Some(v) = store.state_get(
            crate::journeys::NS_SENDS,
            id.as_str(),
            crate::journeys::KEY_SENDS,
        )? {
            p.sends = serde_json::from_slice(&v).map_err(corrupt)?;
            p.stored_sends = p.sends.clone();
        }
        self.profiles.insert(id.clone(), p);
        Ok(())
    }

    /// The frequency caps in force, read once from the store.
    fn cap_rules(&mut self, store: &dyn Store) -> Result<Arc<Vec<CapRule>>, EngineError> {
        if self.cap_rules.is_none() {
            let caps = Journeys { store }.caps()?.caps;
            self.cap_rules = Some(Arc::new(caps));
        }
        Ok(self.cap_rules.clone().expect("read above"))
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

    /// The compiled template of a `send` step, if it has one.
    fn template(&self, journey: &str, version: u32, node: &str) -> Option<Arc<Template>> {
        self.catalogue
            .journeys
            .iter()
            .find(|l| l.journey.name == journey)
            .and_then(|l| l.templates.get(&(version, node.to_owned())))
            .cloned()
    }

    fn next_action_seq(&mut self, store: &dyn Store) -> Result<u64, EngineError> {
        next_seq(store, &mut self.action_seq, KEY_ACTION_SEQ)
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
        let rules = self.cap_rules(store)?;
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
                let sends = &mut p.sends;
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
                        let mut gate = Caps {
                            rules: &rules,
                            log: sends,
                        };
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
            let asked = matches!(wake, Wake::Api { journey, .. } if *journey == name);
            if !loaded.journey.takes_entries() {
                if asked {
                    self.refused.push((
                        name.to_owned(),
                        loaded.journey.live().map(|v| v.version),
                        "no_entries",
                        "through the API: the journey takes no entries (paused, archived or not published)"
                            .to_owned(),
                    ));
                }
                continue;
            }
            let Some(live) = loaded.journey.live() else {
                continue;
            };
            if asked && !matches!(live.spec.entry, rapport_journeys::definition::Entry::Api) {
                let (code, why) = refusal(&NotEntered::NotTheEntry);
                self.refused.push((
                    name.to_owned(),
                    Some(live.version),
                    code,
                    format!("through the API: {why}"),
                ));
            }
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
            if let Wake::Api {
                journey,
                properties,
                ..
            } = wake
                && *journey == name
            {
                triggers.push(Trigger::Api(properties));
            }
            if let Wake::Schedule { journey, segment } = wake
                && *journey == name
                && ctx_profile.in_segment(segment)
            {
                triggers.push(Trigger::Schedule);
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
                let mut gate = Caps {
                    rules: &rules,
                    log: &mut p.sends,
                };
                let mut ctx = Ctx {
                    now,
                    profile: ctx_profile,
                    gate: &mut gate,
                };
                let (inst, decisions) = match enter(
                    checked,
                    live.version,
                    &id,
                    profile.as_str(),
                    trigger,
                    state,
                    &mut totals,
                    &mut ctx,
                ) {
                    Ok(entered) => entered,
                    Err(reason) => {
                        // Every refusal of an API entry is explained (the caller only had
                        // a 202); of the others, only an entry without its per-key value,
                        // which is a definition or tracking mistake and would else be
                        // silent: the re-entry rules refusing a repeat are expected.
                        let via = match trigger {
                            Trigger::Api(_) => Some("through the API".to_owned()),
                            _ if reason != NotEntered::NoKey => None,
                            Trigger::Event(e) => Some(format!(
                                "on {}",
                                e.event.as_deref().unwrap_or(&e.event_type)
                            )),
                            Trigger::SegmentEntered(seg) => Some(format!("on entering {seg}")),
                            Trigger::Schedule => Some("on the schedule".to_owned()),
                        };
                        if let Some(via) = via {
                            let (code, why) = refusal(&reason);
                            self.refused.push((
                                name.to_owned(),
                                Some(live.version),
                                code,
                                format!("{via}: {why}"),
                            ));
                        }
                        continue;
                    }
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
        let moved_sends = std::mem::take(&mut self.profiles.get_mut(from).expect("loaded").sends);
        let mine = &mut self.profiles.get_mut(into).expect("loaded").sends;
        for (tag, times) in moved_sends.sent {
            let all = mine.sent.entry(tag).or_default();
            all.extend(times);
            all.sort_unstable();
        }
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
    /// How many profiles' journey state is held in memory.
    pub(crate) fn cached_profiles(&self) -> usize {
        self.profiles.len()
    }

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
                if let Some(v) = p.stored_version.remove(&k) {
                    writes.push(active_write(v, &id, &k, false));
                }
                writes.push(StateWrite {
                    namespace: NS_INSTANCE.into(),
                    profile: id.as_str().to_owned(),
                    key: k,
                    value: None,
                });
            }
            for (k, inst) in &p.instances {
                let indexed = p.stored_version.get(k).copied();
                if indexed != Some(inst.version) {
                    if let Some(v) = indexed {
                        writes.push(active_write(v, &id, k, false));
                    }
                    writes.push(active_write(inst.version, &id, k, true));
                    p.stored_version.insert(k.clone(), inst.version);
                }
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
            if p.sends != p.stored_sends {
                writes.push(StateWrite {
                    namespace: crate::journeys::NS_SENDS.into(),
                    profile: id.as_str().to_owned(),
                    key: crate::journeys::KEY_SENDS.to_vec(),
                    value: (!p.sends.is_empty())
                        .then(|| serde_json::to_vec(&p.sends).expect("send logs serialise")),
                });
                p.stored_sends = p.sends.clone();
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
            (self.action_seq, KEY_ACTION_SEQ),
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

/// Sets or clears an instance's entry in the index of active instances.
fn active_write(version: u32, profile: &ProfileId, key: &[u8], set: bool) -> StateWrite {
    let journey = key.split(|b| *b == 0).next().unwrap_or_default();
    StateWrite {
        namespace: crate::journeys::NS_ACTIVE.into(),
        profile: String::from_utf8_lossy(journey).into_owned(),
        key: crate::journeys::active_key(version, profile.as_str(), key),
        value: set.then(Vec::new),
    }
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
            Wake::Event(_, o) | Wake::Api { offset: o, .. } => *o,
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
        for (journey, version, reason, why) in std::mem::take(&mut self.journeys.refused) {
            let item = TimelineRefusal {
                journey: &journey,
                version,
                timestamp: rapport_core::audience::format_timestamp(now),
                explanation: format!("not entered {why}"),
                decision: "not_entered",
                reason,
            };
            self.push_timeline(store, profile, offset, now, &item)?;
        }
        self.record_journey_decisions(store, profile, offset, made, now)
    }

    /// Writes a journey line on the profile's timeline, at `now` and `offset`.
    fn push_timeline(
        &mut self,
        store: &dyn Store,
        profile: &ProfileId,
        offset: Offset,
        now: DateTime<Utc>,
        item: &impl Serialize,
    ) -> Result<(), EngineError> {
        let mut key = timeline_key(now.timestamp_millis(), offset);
        let seq = self.journeys.next_timeline_seq(store)? | TIMELINE_BIT;
        key.extend_from_slice(&seq.to_be_bytes());
        self.writes.push(StateWrite {
            namespace: NS_TIMELINE.into(),
            profile: profile.as_str().to_owned(),
            key,
            value: Some(serde_json::to_vec(item).expect("timeline items serialise")),
        });
        Ok(())
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
            if let Decision::Migrated { from_version, .. } = &m.decision {
                self.journeys
                    .stats_mut(store, &m.journey, *from_version)?
                    .add(&m.decision);
                self.journeys
                    .stats_mut(store, &m.journey, m.version)?
                    .add_migrated_in(&m.decision);
            } else {
                self.journeys
                    .stats_mut(store, &m.journey, m.version)?
                    .add(&m.decision);
            }
            let item = TimelineJourney {
                journey: &m.journey,
                version: m.version,
                instance: &m.instance,
                timestamp: rapport_core::audience::format_timestamp(now),
                explanation: m.decision.explain(),
                decision: &m.decision,
            };
            self.push_timeline(store, profile, offset, now, &item)?;
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
                    let mut feed = JourneyAction {
                        seq,
                        journey: m.journey.clone(),
                        version: m.version,
                        instance: m.instance.clone(),
                        profile: profile.as_str().to_owned(),
                        at: now,
                        action: action.clone(),
                        entry,
                        message: None,
                        render_error: None,
                    };
                    if let ActionKind::Send { template, .. } = &action.kind {
                        let compiled = self.journeys.template(&m.journey, m.version, &action.node);
                        let record = self.profiles[profile]
                            .as_ref()
                            .expect("a live profile acts");
                        match (template, compiled) {
                            (Some(_), None) => {
                                feed.render_error =
                                    Some("the step's template does not compile".into())
                            }
                            (_, compiled) => {
                                match send_message(&feed, record, compiled.as_deref()) {
                                    Ok(message) => feed.message = Some(message),
                                    Err(e) => feed.render_error = Some(e),
                                }
                            }
                        }
                    }
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

    /// Applies a migration in log order: every instance of `from_version` active now moves
    /// to its node's image in `to_version` (`version::migrate`: it keeps its time on the
    /// node and its timer), with a `migrated` line on the profile's timeline. The instances
    /// are found in the index of active instances (`journey.active`) and in what this batch
    /// holds in memory, never by scanning profiles. A migration that no longer checks (a
    /// version that became a draft cannot, but the definitions may have changed) migrates
    /// no one.
    pub(super) fn apply_migration(
        &mut self,
        store: &dyn Store,
        offset: Offset,
        m: &crate::journeys::MigrationRequest,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let journey = match (Journeys { store }).get(&m.journey) {
            Ok(j) => j,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let plan = match crate::journeys::plan_for(&journey, &m.migration) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(offset, journey = %m.journey, "journey migration refused: {e}");
                return Ok(());
            }
        };
        let from = plan.from_version;
        let mut profiles = BTreeSet::new();
        let prefix = from.to_be_bytes();
        let mut after: Vec<u8> = prefix.to_vec();
        loop {
            let page = store.state_scan_range(
                crate::journeys::NS_ACTIVE,
                &m.journey,
                Some(&after),
                1_000,
            )?;
            let full = page.len() == 1_000;
            let mut past = false;
            for (k, _) in &page {
                match crate::journeys::decode_active_key(k) {
                    Some((v, profile)) if v == from => {
                        profiles.insert(ProfileId::new(profile));
                    }
                    _ => past = true,
                }
            }
            match page.last() {
                Some((k, _)) if full && !past => after = k.clone(),
                _ => break,
            }
        }
        // Instances this batch made or moved and has not committed yet.
        for (id, p) in &self.journeys.profiles {
            if p.instances
                .values()
                .any(|i| i.journey == m.journey && i.version == from && i.is_active())
            {
                profiles.insert(id.clone());
            }
        }
        let mut moved = 0usize;
        for id in profiles {
            self.load_profile(store, &id)?;
            if !matches!(self.profiles.get(&id), Some(Some(r)) if r.merged_into.is_none()) {
                continue;
            }
            self.journeys.load_profile(store, &id)?;
            let p = self.journeys.profiles.get_mut(&id).expect("loaded above");
            let mut made = Vec::new();
            for (key, inst) in p.instances.iter_mut() {
                if inst.journey != m.journey {
                    continue;
                }
                let from_node = inst.node.clone();
                if rapport_journeys::version::migrate(&plan, inst) {
                    made.push(Made {
                        journey: m.journey.clone(),
                        version: plan.to_version,
                        instance: inst.id.clone(),
                        key: key.clone(),
                        decision: Decision::Migrated {
                            from_version: from,
                            from_node,
                            to_version: plan.to_version,
                            to_node: inst.node.clone(),
                            holdout: inst.holdout,
                        },
                    });
                }
            }
            if made.is_empty() {
                continue;
            }
            moved += made.len();
            self.journeys.dirty.insert(id.clone());
            self.record_journey_decisions(store, &id, offset, made, now)?;
        }
        tracing::info!(offset, journey = %m.journey, from, to = plan.to_version, moved,
            "journey instances migrated");
        Ok(())
    }

    /// Puts frequency caps in force for the entries after `offset`, recorded in the
    /// batch's commit. Caps that do not check (the API checks before appending) leave the
    /// caps as they were.
    pub(super) fn apply_caps_change(
        &mut self,
        _store: &dyn Store,
        offset: Offset,
        change: &crate::journeys::CapsChange,
    ) -> Result<(), EngineError> {
        if let Err(e) = rapport_journeys::caps::check_rules(&change.caps) {
            tracing::warn!(offset, field = %e.field, "journey caps change refused: {}", e.message);
            return Ok(());
        }
        tracing::info!(offset, caps = change.caps.len(), "journey caps changed");
        let stored = crate::journeys::StoredCaps {
            caps: change.caps.clone(),
            updated_at: Some(change.at),
            offset: Some(offset),
            request: Some(change.request.clone()),
            changed_by: change.changed_by.clone(),
        };
        self.writes.push(StateWrite {
            namespace: crate::journeys::NS_CAPS.into(),
            profile: crate::journeys::PART_SETTINGS.into(),
            key: crate::journeys::KEY_CAPS.to_vec(),
            value: Some(serde_json::to_vec(&stored).expect("caps serialise")),
        });
        self.journeys.cap_rules = Some(Arc::new(change.caps.clone()));
        Ok(())
    }

    /// Runs the schedule entries that are due: each member of the journey's segment at the
    /// last commit enters (`Trigger::Schedule`), a page of members per step, the run's
    /// progress committed with the batch (`journey.schedule`), so that a restart resumes
    /// it and takes no member twice. The members are read from the segment's member list,
    /// never by scanning profiles. A schedule that missed several periods runs once, for
    /// the latest ([`crate::journeys::latest_due`]). Returns the work done (0: nothing
    /// due).
    pub(super) fn run_journey_schedules(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
        page: usize,
    ) -> Result<usize, EngineError> {
        use crate::journeys::{NS_SCHEDULE, ScheduleRun, latest_due};
        use rapport_journeys::definition::Entry;
        let journeys = self.journeys.catalogue.clone();
        let mut work = 0;
        for loaded in &journeys.journeys {
            let name = loaded.journey.name.as_str();
            let Some(live) = loaded.journey.live() else {
                continue;
            };
            let Entry::Schedule {
                segment,
                every,
                starting,
            } = &live.spec.entry
            else {
                continue;
            };
            if !loaded.journey.takes_entries() || !loaded.checked.contains_key(&live.version) {
                continue;
            }
            let mut run: ScheduleRun = store
                .state_get(NS_SCHEDULE, PART_JOURNEYS, name.as_bytes())?
                .map(|v| serde_json::from_slice(&v).map_err(corrupt))
                .transpose()?
                .unwrap_or_default();
            if run.running.is_some_and(|(_, v)| v != live.version) {
                // A new version was published mid-run: it starts its own.
                run.running = None;
                run.cursor = None;
            }
            let at = match run.running {
                Some((at, _)) => at,
                None => match latest_due(*starting, every.to_chrono(), now) {
                    Some(due) if run.last_run.is_none_or(|last| last < due) => due,
                    _ => continue,
                },
            };
            let members = store.state_scan_range(
                crate::audiences::store::NS_MEMBER,
                segment,
                run.cursor.as_deref().map(str::as_bytes),
                page,
            )?;
            let done = members.len() < page;
            for (k, _) in &members {
                let id = ProfileId::new(String::from_utf8(k.clone()).map_err(corrupt)?);
                self.load_profile(store, &id)?;
                let wake = Wake::Schedule {
                    journey: name,
                    segment,
                };
                self.run_journeys(store, catalogue, &id, wake, now)?;
            }
            if let Some((k, _)) = members.last() {
                run.cursor = Some(String::from_utf8_lossy(k).into_owned());
            }
            if done {
                tracing::info!(journey = name, due = %at, "journey schedule ran");
                run.last_run = Some(at);
                run.running = None;
                run.cursor = None;
            } else {
                run.running = Some((at, live.version));
            }
            self.writes.push(StateWrite {
                namespace: NS_SCHEDULE.into(),
                profile: PART_JOURNEYS.into(),
                key: name.as_bytes().to_vec(),
                value: Some(serde_json::to_vec(&run).expect("schedule runs serialise")),
            });
            work += 1 + members.len();
        }
        Ok(work)
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
