//! One profile's computed traits and segment memberships, and how an event or the passing
//! of time changes them.
//!
//! Nothing here touches storage: the processor loads a [`ProfileAudience`], calls
//! [`ProfileAudience::refresh`], and writes what changed. Aggregates are materialised from
//! the profile's whole history the first time the catalogue needs them (see
//! [`ProfileAudience::materialise`]), then maintained incrementally, so at every instant a
//! computed value equals its definition over the full event history.

use super::Catalogue;
use crate::profiles::ProfileRecord;
use chrono::{DateTime, TimeDelta, Utc};
use rapport_core::audience::{AggregateState, EvalContext, EventAggregate, HistoryEvent, evaluate};
use rapport_core::event::Event;
use rapport_core::identity::AccountProfile;
use rapport_core::rfm::RfmState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How often segments that read `days_since`, `since`, `ago` or `rfm_age` are re-evaluated
/// for a profile with no new event.
pub const SWEEP_INTERVAL: TimeDelta = TimeDelta::hours(1);

/// The audience state of one profile, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileAudience {
    /// The catalogue version whose aggregates are materialised.
    #[serde(default)]
    pub v: u64,
    /// Incremental state per aggregate, by the aggregate's canonical text.
    #[serde(default)]
    pub aggs: BTreeMap<String, AggregateState>,
    /// The RFM source the purchases were collected from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rfm_src: String,
    #[serde(default, skip_serializing_if = "RfmState::is_empty")]
    pub rfm: RfmState,
    /// Computed trait values (defined and built-in) as of the last evaluation.
    #[serde(default)]
    pub values: Map<String, Value>,
    /// Segment → when the profile entered it (ms).
    #[serde(default)]
    pub segments: BTreeMap<String, i64>,
    /// When the scheduler must evaluate this profile again (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<i64>,
    /// The latest clock used, so that time never runs backwards for the aggregates.
    #[serde(default)]
    pub clock: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Entered,
    Exited,
}

/// One segment the profile entered or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    pub segment: String,
    pub kind: ChangeKind,
    /// The profile left because the segment no longer exists.
    pub deleted: bool,
}

/// What made a membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Cause {
    /// The event at this log offset.
    Event { offset: u64 },
    /// Time passed (a window slid, a date came closer).
    Schedule,
    /// The segment was created or changed and evaluated over existing profiles.
    Backfill,
    /// The profile was merged into another.
    Merge { into: String },
    /// The segment was deleted.
    Deleted,
}

/// One entry of the audience feed and of the profile's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceChange {
    /// Position in the feed (assigned when written).
    #[serde(default)]
    pub seq: u64,
    pub segment: String,
    pub profile: String,
    pub change: ChangeKind,
    /// When the change was decided (RFC 3339, processing time).
    pub at: DateTime<Utc>,
    pub cause: Cause,
}

/// What the engine knows of a profile when evaluating: the record, its accounts.
pub struct ProfileInputs<'a> {
    pub record: &'a ProfileRecord,
    pub accounts: Vec<&'a AccountProfile>,
    /// The value models' scores, when a segment reads them.
    pub scores: Option<Map<String, Value>>,
}

/// Why a profile is being re-evaluated.
pub struct Trigger<'a> {
    /// Aggregates the new event counted for (empty without an event).
    pub matched: &'a [usize],
    /// Traits, identifiers or accounts changed.
    pub profile_changed: bool,
    /// Evaluate every segment (new profile, merge, schedule, backfill).
    pub all: bool,
}

/// An event as the aggregates see it.
pub fn history_event(event: &Event) -> HistoryEvent {
    HistoryEvent {
        timestamp: event.timestamp,
        event_type: event.kind.as_str().to_owned(),
        event: event.event.clone(),
        properties: event
            .properties
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(Value::Null),
    }
}

fn revenue(catalogue: &Catalogue, event: &HistoryEvent) -> f64 {
    let props = &event.properties;
    props
        .get(&catalogue.rfm.revenue_property)
        .or_else(|| props.get("total"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn is_purchase(catalogue: &Catalogue, event: &HistoryEvent) -> bool {
    event.event_type == "track" && event.event.as_deref() == Some(catalogue.rfm.event.as_str())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl ProfileAudience {
    /// Whether this state lacks something `catalogue` needs, so that [`Self::materialise`]
    /// must run (with the profile's history) before the next event is applied.
    pub fn needs_history(&self, catalogue: &Catalogue) -> bool {
        self.rfm_src != catalogue.rfm_fingerprint() || catalogue.since.iter().any(|&v| v > self.v)
    }

    /// Brings the state up to `catalogue`: builds from the profile's `history` (log offset,
    /// event) every aggregate defined after this state was last brought up to date, drops
    /// aggregates no longer defined, and rebuilds the RFM summary when its source changed.
    /// Pass an empty history when [`Self::needs_history`] is false.
    pub fn materialise(
        &mut self,
        catalogue: &Catalogue,
        history: &[(u64, HistoryEvent)],
        now: DateTime<Utc>,
    ) {
        let now = self.tick(now);
        let wanted: BTreeSet<&String> = catalogue.keys.iter().collect();
        self.aggs.retain(|k, _| wanted.contains(k));
        for (slot, key) in catalogue.keys.iter().enumerate() {
            if catalogue.since[slot] > self.v {
                let agg = &catalogue.aggregates[slot];
                let state = AggregateState::from_history(agg, history, now);
                if state.is_empty() {
                    self.aggs.remove(key);
                } else {
                    self.aggs.insert(key.clone(), state);
                }
            }
        }
        if self.rfm_src != catalogue.rfm_fingerprint() {
            self.rfm = RfmState::default();
            for (_, e) in history {
                if is_purchase(catalogue, e) {
                    self.rfm.observe(e.timestamp, revenue(catalogue, e));
                }
            }
            self.rfm_src = catalogue.rfm_fingerprint();
        }
        self.v = catalogue.version;
    }

    /// A fresh state for a profile without history.
    pub fn empty(catalogue: &Catalogue) -> ProfileAudience {
        let mut a = ProfileAudience::default();
        a.materialise(catalogue, &[], DateTime::UNIX_EPOCH);
        a
    }

    fn tick(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.clock = self.clock.max(ms(now));
        DateTime::from_timestamp_millis(self.clock).unwrap_or(now)
    }

    /// Counts `event` (at log `offset`) for the aggregates in `matched` and for the RFM
    /// summary.
    pub fn observe(
        &mut self,
        catalogue: &Catalogue,
        matched: &[usize],
        event: &HistoryEvent,
        offset: u64,
        now: DateTime<Utc>,
    ) {
        let now = self.tick(now);
        for &slot in matched {
            let agg = &catalogue.aggregates[slot];
            self.aggs
                .entry(catalogue.keys[slot].clone())
                .or_insert_with(|| AggregateState::new(agg))
                .observe(agg, event, offset, now);
        }
        if is_purchase(catalogue, event) {
            self.rfm.observe(event.timestamp, revenue(catalogue, event));
        }
    }

    /// Folds in the state of a profile merged into this one. Memberships are not merged: the
    /// caller re-evaluates every segment.
    pub fn absorb(&mut self, catalogue: &Catalogue, other: ProfileAudience, now: DateTime<Utc>) {
        let now = self.tick(now);
        let other_clock = other.clock;
        for (key, state) in other.aggs {
            let Some(slot) = catalogue.keys.iter().position(|k| *k == key) else {
                continue;
            };
            let agg = &catalogue.aggregates[slot];
            match self.aggs.get_mut(&key) {
                Some(mine) => mine.merge(agg, state, now),
                None => {
                    self.aggs.insert(key, state);
                }
            }
        }
        self.rfm.merge(&other.rfm);
        self.clock = self.clock.max(other_clock);
    }

    /// Re-evaluates computed traits and the segments `trigger` may have changed. Returns the
    /// memberships that changed, in dependency order.
    pub fn refresh(
        &mut self,
        catalogue: &Catalogue,
        inputs: &ProfileInputs<'_>,
        trigger: &Trigger<'_>,
        now: DateTime<Utc>,
    ) -> Vec<MembershipChange> {
        let now = self.tick(now);
        // With no event counted and nothing due, only what the event touched can change.
        let full = trigger.all || self.wake.is_some_and(|w| w <= ms(now));
        if full {
            for (slot, key) in catalogue.keys.iter().enumerate() {
                if let Some(s) = self.aggs.get_mut(key) {
                    s.advance(&catalogue.aggregates[slot], now);
                    if s.is_empty() {
                        self.aggs.remove(key);
                    }
                }
            }
        }
        let mut changed_traits: BTreeSet<String> = BTreeSet::new();
        let mut set_value = |values: &mut Map<String, Value>, name: &str, v: Value| {
            let old = values.get(name).unwrap_or(&Value::Null);
            if *old != v {
                changed_traits.insert(name.to_owned());
                if v.is_null() {
                    values.remove(name);
                } else {
                    values.insert(name.to_owned(), v);
                }
            }
        };
        let mut rfm = self.rfm.traits(now);
        for name in super::definitions::BUILTIN_TRAITS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.starts_with("rfm_"))
        {
            let v = rfm.remove(name).unwrap_or(Value::Null);
            set_value(&mut self.values, name, v);
        }
        let defined: BTreeSet<&str> = catalogue.traits.iter().map(|t| t.name.as_str()).collect();
        self.values
            .retain(|k, _| k.starts_with("rfm_") || defined.contains(k.as_str()));
        for t in &catalogue.traits {
            if !full && !trigger.matched.contains(&t.aggregate) {
                continue;
            }
            let agg = &catalogue.aggregates[t.aggregate];
            let v = self.aggs.get(&catalogue.keys[t.aggregate]).map_or_else(
                || AggregateState::new(agg).value(agg, now),
                |s| s.value(agg, now),
            );
            set_value(&mut self.values, &t.name, v);
        }

        let mut changes = Vec::new();
        let mut changed_segments: BTreeSet<&str> = BTreeSet::new();
        let defined: BTreeSet<&str> = catalogue.segments.iter().map(|s| s.name.as_str()).collect();
        let mut members: BTreeSet<String> = self.segments.keys().cloned().collect();
        for gone in self
            .segments
            .keys()
            .filter(|s| !defined.contains(s.as_str()))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.segments.remove(&gone);
            members.remove(&gone);
            changes.push(MembershipChange {
                segment: gone,
                kind: ChangeKind::Exited,
                deleted: true,
            });
        }
        let account_traits: Vec<Value> = inputs
            .accounts
            .iter()
            .map(|a| Value::Object(a.traits.values()))
            .collect();
        for seg in &catalogue.segments {
            let affected = trigger.all
                || (trigger.profile_changed && seg.reads_profile)
                || seg.aggregates.iter().any(|a| trigger.matched.contains(a))
                || seg.computed.iter().any(|c| changed_traits.contains(c))
                || seg
                    .segments
                    .iter()
                    .any(|s| changed_segments.contains(s.as_str()));
            if !affected {
                continue;
            }
            let ctx = View {
                catalogue,
                inputs,
                account_traits: &account_traits,
                audience: self,
                members: &members,
            };
            let now_member = match evaluate(&seg.expr, &ctx, now) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(segment = %seg.name, error = %e, "segment evaluation failed");
                    continue;
                }
            };
            let was = members.contains(&seg.name);
            if now_member != was {
                changed_segments.insert(&seg.name);
                if now_member {
                    members.insert(seg.name.clone());
                    self.segments.insert(seg.name.clone(), ms(now));
                    changes.push(MembershipChange {
                        segment: seg.name.clone(),
                        kind: ChangeKind::Entered,
                        deleted: false,
                    });
                } else {
                    members.remove(&seg.name);
                    self.segments.remove(&seg.name);
                    changes.push(MembershipChange {
                        segment: seg.name.clone(),
                        kind: ChangeKind::Exited,
                        deleted: false,
                    });
                }
            }
        }
        for &slot in trigger.matched {
            if let Some(s) = self.aggs.get(&catalogue.keys[slot])
                && s.is_empty()
            {
                self.aggs.remove(&catalogue.keys[slot]);
            }
        }
        self.wake = if full {
            self.next_wake(catalogue, now, 0..catalogue.keys.len(), None)
        } else {
            // Counting events only adds instants of change: the earlier wake still holds.
            self.next_wake(catalogue, now, trigger.matched.iter().copied(), self.wake)
        };
        changes
    }

    fn next_wake(
        &self,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
        slots: impl Iterator<Item = usize>,
        earlier: Option<i64>,
    ) -> Option<i64> {
        let windows = slots
            .filter_map(|slot| {
                self.aggs
                    .get(&catalogue.keys[slot])?
                    .next_change(&catalogue.aggregates[slot], now)
            })
            .min()
            .map(ms);
        let sweep = catalogue.any_swept.then(|| ms(now + SWEEP_INTERVAL));
        windows.into_iter().chain(sweep).chain(earlier).min()
    }

    /// Calls `f` with the profile as the segment language reads it (traits, computed traits,
    /// accounts, consent, identifiers, current segments): what journey conditions see.
    pub fn with_context<R>(
        &self,
        catalogue: &Catalogue,
        inputs: &ProfileInputs<'_>,
        f: impl FnOnce(&dyn EvalContext) -> R,
    ) -> R {
        let account_traits: Vec<Value> = inputs
            .accounts
            .iter()
            .map(|a| Value::Object(a.traits.values()))
            .collect();
        let members: BTreeSet<String> = self.segments.keys().cloned().collect();
        let view = View {
            catalogue,
            inputs,
            account_traits: &account_traits,
            audience: self,
            members: &members,
        };
        f(&view)
    }

    /// Leaves every segment (the profile was merged away or the segments were deleted).
    pub fn leave_all(&mut self) -> Vec<String> {
        let left = self.segments.keys().cloned().collect();
        self.segments.clear();
        self.wake = None;
        left
    }
}

struct View<'a> {
    catalogue: &'a Catalogue,
    inputs: &'a ProfileInputs<'a>,
    account_traits: &'a [Value],
    audience: &'a ProfileAudience,
    members: &'a BTreeSet<String>,
}

impl EvalContext for View<'_> {
    fn trait_value(&self, name: &str) -> Option<&Value> {
        self.inputs.record.traits.get(name)
    }
    fn computed_trait(&self, name: &str) -> Option<Value> {
        // Stored values omit nulls.
        if super::definitions::SCORE_TRAITS.contains(&name) {
            return self
                .inputs
                .scores
                .as_ref()
                .and_then(|s| s.get(name))
                .filter(|v| !v.is_null())
                .cloned();
        }
        self.audience
            .values
            .get(name)
            .filter(|v| !v.is_null())
            .cloned()
    }
    fn account_traits(&self) -> Vec<&Value> {
        self.account_traits.iter().collect()
    }
    /// The recorded consent state (`crate::consent`), not a trait; unknown purposes are
    /// not granted.
    fn consent(&self, purpose: &str) -> bool {
        self.inputs.record.consent.granted(purpose)
    }
    fn identifiers(&self, kind: &str) -> Vec<&str> {
        self.inputs
            .record
            .identifiers
            .iter()
            .filter(|r| r.identifier.kind.as_str() == kind)
            .map(|r| r.identifier.value.as_str())
            .collect()
    }
    fn in_segment(&self, name: &str) -> bool {
        self.members.contains(name)
    }
    fn aggregate(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Value {
        self.catalogue
            .slot_of(aggregate)
            .and_then(|slot| self.audience.aggs.get(&self.catalogue.keys[slot]))
            .map_or_else(
                || AggregateState::new(aggregate).value(aggregate, now),
                |s| s.value(aggregate, now),
            )
    }
}
