//! One journey run in memory over a list of things that happened, in time order: the
//! reference the engine is tested against, the runner of data-driven tests, and the
//! preview of a draft over past events (nothing is sent; actions are recorded).
//!
//! It does what the engine does, in the same order: before each input, the timers due by
//! its time fire, soonest first, each at its own time; an event first moves the
//! customer's instances already inside, then may enter the customer (so the entry event
//! never satisfies the journey's own first wait); a journey's trait changes apply to the
//! profile at once and are seen by the next thing that happens. Emitted events are
//! recorded, not fed back: in the engine they go through the log like any event.
//! [`SimState`] is plain data: serialised and read back at any point, the run goes on with
//! the same decisions.

use crate::caps::{CapRule, Caps, SendLog};
use crate::check::CheckedJourney;
use crate::machine::{
    ActionKind, Ctx, Decision, EntryState, Input, Instance, JourneyEvent, Totals, Trigger, advance,
    enter,
};
use chrono::{DateTime, Utc};
use rapport_core::audience::ProfileSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Something that happened to a customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Event(JourneyEvent),
    /// Traits set (a `null` removes one), as an identify call would.
    Traits(Map<String, Value>),
    /// Computed traits taking new values.
    Computed(Map<String, Value>),
    SegmentEntered(String),
    SegmentExited(String),
    /// A consent purpose granted (`true`) or withdrawn.
    Consent {
        purpose: String,
        granted: bool,
    },
    /// An API call entering the customer, with its properties.
    Api(Map<String, Value>),
    /// The journey's schedule fired (the customer enters if in the schedule's segment).
    Schedule,
    /// Nothing: only lets the timers due by then fire.
    Tick,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimInput {
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub profile: String,
    #[serde(flatten)]
    pub what: What,
}

/// A decision, when and for whom it was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub profile: String,
    pub instance: String,
    pub decision: Decision,
}

/// Everything a run holds between inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    pub profiles: BTreeMap<String, ProfileSnapshot>,
    pub entry: BTreeMap<String, EntryState>,
    pub totals: Totals,
    pub instances: BTreeMap<String, Instance>,
    /// (due, instance): the timer index.
    pub timers: BTreeSet<(DateTime<Utc>, String)>,
    pub sends: BTreeMap<String, SendLog>,
    pub next_instance: u64,
}

pub struct Sim {
    journey: CheckedJourney,
    version: u32,
    caps: Vec<CapRule>,
    pub state: SimState,
    /// Each profile's instances, in the order of [`SimState::instances`]: an input looks
    /// at its customer's instances only, not at every one (a preview over a month of
    /// events holds many).
    by_profile: BTreeMap<String, BTreeSet<String>>,
}

impl Sim {
    pub fn new(journey: CheckedJourney, version: u32, caps: Vec<CapRule>) -> Sim {
        Sim::resume(journey, version, caps, SimState::default())
    }

    /// Goes on from `state`, as after a restart.
    pub fn resume(
        journey: CheckedJourney,
        version: u32,
        caps: Vec<CapRule>,
        state: SimState,
    ) -> Sim {
        let mut by_profile: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, i) in &state.instances {
            by_profile
                .entry(i.profile.clone())
                .or_default()
                .insert(id.clone());
        }
        Sim {
            journey,
            version,
            caps,
            state,
            by_profile,
        }
    }

    /// Fires the timers due by `input.at`, then applies the input.
    pub fn feed(&mut self, input: &SimInput) -> Vec<Record> {
        let mut out = self.fire_until(input.at);
        let p = input.profile.clone();
        let now = input.at;
        let profile = self.state.profiles.entry(p.clone()).or_default();
        match &input.what {
            What::Tick => {}
            What::Event(e) => {
                self.advance_all(&p, Input::Event(e), now, &mut out);
                self.enter(&p, Trigger::Event(e), now, &mut out);
            }
            What::Traits(traits) => {
                for (k, v) in traits {
                    if v.is_null() {
                        profile.traits.remove(k);
                    } else {
                        profile.traits.insert(k.clone(), v.clone());
                    }
                }
                self.advance_all(&p, Input::ProfileChanged, now, &mut out);
            }
            What::Computed(values) => {
                for (k, v) in values {
                    profile.computed.insert(k.clone(), v.clone());
                }
                self.advance_all(&p, Input::ProfileChanged, now, &mut out);
            }
            What::SegmentEntered(s) => {
                profile.segments.insert(s.clone());
                self.advance_all(&p, Input::ProfileChanged, now, &mut out);
                self.enter(&p, Trigger::SegmentEntered(s), now, &mut out);
            }
            What::SegmentExited(s) => {
                profile.segments.remove(s);
                self.advance_all(&p, Input::ProfileChanged, now, &mut out);
            }
            What::Consent { purpose, granted } => {
                profile.consent.insert(purpose.clone(), *granted);
                self.advance_all(&p, Input::ProfileChanged, now, &mut out);
            }
            What::Api(properties) => self.enter(&p, Trigger::Api(properties), now, &mut out),
            What::Schedule => {
                let segment = match &self.journey.spec.entry {
                    crate::definition::Entry::Schedule { segment, .. } => Some(segment.clone()),
                    _ => None,
                };
                if segment.is_some_and(|s| profile.segments.contains(&s)) {
                    self.enter(&p, Trigger::Schedule, now, &mut out);
                }
            }
        }
        out
    }

    /// Fires every timer due by `until`, soonest first, each at its due time.
    pub fn fire_until(&mut self, until: DateTime<Utc>) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some((due, id)) = self.state.timers.first().cloned() {
            if due > until {
                break;
            }
            self.state.timers.remove(&(due, id.clone()));
            let profile = self.state.instances[&id].profile.clone();
            self.advance_one(&id, &profile, Input::Timer, due, &mut out);
        }
        out
    }

    fn advance_all(
        &mut self,
        profile: &str,
        input: Input<'_>,
        now: DateTime<Utc>,
        out: &mut Vec<Record>,
    ) {
        let ids: Vec<String> = self
            .by_profile
            .get(profile)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.state
                    .instances
                    .get(*id)
                    .is_some_and(Instance::is_active)
            })
            .cloned()
            .collect();
        for id in ids {
            self.advance_one(&id, profile, input, now, out);
        }
    }

    fn advance_one(
        &mut self,
        id: &str,
        profile: &str,
        input: Input<'_>,
        now: DateTime<Utc>,
        out: &mut Vec<Record>,
    ) {
        let SimState {
            profiles,
            entry,
            totals,
            instances,
            timers,
            sends,
            ..
        } = &mut self.state;
        let snapshot = profiles.entry(profile.to_owned()).or_default();
        let mut inst = instances
            .remove(id)
            .expect("a timer or profile names its instance");
        if let Some(d) = inst.due {
            timers.remove(&(d, id.to_owned()));
        }
        let mut caps = Caps {
            rules: &self.caps,
            log: sends.entry(profile.to_owned()).or_default(),
        };
        let mut ctx = Ctx {
            now,
            profile: &*snapshot,
            gate: &mut caps,
        };
        let state = entry.entry(profile.to_owned()).or_default();
        let decisions = advance(&self.journey, &mut inst, input, state, totals, &mut ctx);
        if let (Some(d), true) = (inst.due, inst.is_active()) {
            timers.insert((d, id.to_owned()));
        }
        instances.insert(id.to_owned(), inst);
        self.record(profile, id, now, decisions, out);
    }

    fn enter(
        &mut self,
        profile: &str,
        trigger: Trigger<'_>,
        now: DateTime<Utc>,
        out: &mut Vec<Record>,
    ) {
        let id = format!("i{}", self.state.next_instance + 1);
        let SimState {
            profiles,
            entry,
            totals,
            instances,
            timers,
            sends,
            next_instance,
        } = &mut self.state;
        let snapshot = profiles.entry(profile.to_owned()).or_default();
        let mut caps = Caps {
            rules: &self.caps,
            log: sends.entry(profile.to_owned()).or_default(),
        };
        let mut ctx = Ctx {
            now,
            profile: &*snapshot,
            gate: &mut caps,
        };
        let state = entry.entry(profile.to_owned()).or_default();
        let Ok((inst, decisions)) = enter(
            &self.journey,
            self.version,
            &id,
            profile,
            trigger,
            state,
            totals,
            &mut ctx,
        ) else {
            return;
        };
        *next_instance += 1;
        if let (Some(d), true) = (inst.due, inst.is_active()) {
            timers.insert((d, id.clone()));
        }
        instances.insert(id.clone(), inst);
        self.by_profile
            .entry(profile.to_owned())
            .or_default()
            .insert(id.clone());
        self.record(profile, &id, now, decisions, out);
    }

    /// Records decisions and applies the journey's own trait changes to the profile.
    fn record(
        &mut self,
        profile: &str,
        id: &str,
        now: DateTime<Utc>,
        decisions: Vec<Decision>,
        out: &mut Vec<Record>,
    ) {
        let snapshot = self.state.profiles.entry(profile.to_owned()).or_default();
        for d in decisions {
            if let Decision::Act(a) = &d {
                match &a.kind {
                    ActionKind::SetTrait { name, value } => {
                        snapshot.traits.insert(name.clone(), value.clone());
                    }
                    ActionKind::RemoveTrait { name } => {
                        snapshot.traits.remove(name);
                    }
                    _ => {}
                }
            }
            out.push(Record {
                at: now,
                profile: profile.to_owned(),
                instance: id.to_owned(),
                decision: d,
            });
        }
    }
}
