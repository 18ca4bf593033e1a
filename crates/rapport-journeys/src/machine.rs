//! The state machine of one customer in one journey: given the instance, what happened
//! (an event, a timer falling due, the profile changing) and the profile as it now is,
//! [`advance`] moves the instance and answers the [`Decision`]s taken, each explained.
//!
//! Everything the machine decides is a function of its inputs: no clock (the caller passes
//! `now`), no randomness (holdouts and split arms hash the journey, node and profile), so
//! that the engine replaying the same log with the same clock takes the same decisions,
//! and an instance read back from the store after a restart continues as if nothing
//! happened. Timers are the caller's: an instance that waits says until when in
//! [`Instance::due`], and the caller's durable index wakes it with [`Input::Timer`].

use crate::check::{CheckedJourney, parse_local_time};
use crate::definition::{Entry, Node, NodeId, QuietAction, QuietHours, Reentry, ZoneSource};
use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use rapport_core::audience::{EvalContext, EventLike, evaluate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The most nodes one instance passes at one moment: a loop through waits that are
/// already over (a condition that holds, a date passed) would otherwise never stop.
pub const MAX_STEPS_AT_ONCE: u32 = 100;

/// An event of the customer, as the machine reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JourneyEvent {
    pub message_id: String,
    pub timestamp: DateTime<Utc>,
    /// `track`, `page`, `identify`, …
    #[serde(rename = "type")]
    pub event_type: String,
    /// A track event's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Value,
    /// The event's `context.timezone`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl EventLike for JourneyEvent {
    fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }
    fn event_type(&self) -> &str {
        &self.event_type
    }
    fn event_name(&self) -> Option<&str> {
        self.event.as_deref()
    }
    fn properties(&self) -> &Value {
        &self.properties
    }
}

/// What put the customer in: the entry event's name, id and properties, which templates
/// and `match_entry_property` read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Why an instance ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExitReason {
    /// It reached a node with no `next`.
    Completed,
    /// It reached an `exit` node.
    ExitNode,
    /// The exit rule `name` matched.
    Rule { name: String },
    /// It converted, and the goal exits on conversion.
    Converted,
    /// A holdout instance's goal window ended (or it had no goal to measure).
    HoldoutEnded,
    /// It passed [`MAX_STEPS_AT_ONCE`] nodes at one moment.
    StepLimit,
    /// The journey was archived.
    Archived,
    /// Its profile was merged into one already in the journey under the same entry key.
    Merged,
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Completed => f.write_str("completed"),
            ExitReason::ExitNode => f.write_str("exit_node"),
            ExitReason::Rule { name } => write!(f, "rule:{name}"),
            ExitReason::Converted => f.write_str("converted"),
            ExitReason::HoldoutEnded => f.write_str("holdout_ended"),
            ExitReason::StepLimit => f.write_str("step_limit"),
            ExitReason::Archived => f.write_str("archived"),
            ExitReason::Merged => f.write_str("merged"),
        }
    }
}

/// One customer's passage through one journey version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique within the journey; chosen by the caller.
    pub id: String,
    pub journey: String,
    pub version: u32,
    pub profile: String,
    /// The node the customer is on (the start node for a holdout instance, which passes
    /// no node).
    pub node: NodeId,
    pub entered_at: DateTime<Utc>,
    pub node_since: DateTime<Utc>,
    /// When the instance must be woken with [`Input::Timer`], if it waits for a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    /// The value of the per-key re-entry property, when the journey has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_key: Option<String>,
    #[serde(default)]
    pub entry: EntryContext,
    #[serde(default)]
    pub holdout: bool,
    /// The way taken at each choice passed: a split's arm, a branch's case (or `else`),
    /// an event wait's branch (or `timeout`). The last passage of a node counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path: BTreeMap<NodeId, String>,
    /// Nodes entered so far: the last part of each action's idempotency key.
    pub steps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<DateTime<Utc>>,
    /// Set when the instance ended; an ended instance takes no input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited: Option<(DateTime<Utc>, ExitReason)>,
    /// A `send` node held by quiet hours: the message goes when the timer fires.
    #[serde(default)]
    pub held_send: bool,
}

impl Instance {
    pub fn is_active(&self) -> bool {
        self.exited.is_none()
    }
}

/// What happened to an instance.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A new event of the customer, already applied to the profile.
    Event(&'a JourneyEvent),
    /// The instance's [`Instance::due`] time has come.
    Timer,
    /// The profile's traits, computed traits or segments changed without an event of the
    /// customer (a schedule, another journey): conditions are looked at again.
    ProfileChanged,
}

/// Limits a journey's messages across journeys (frequency caps): the engine's
/// implementation keeps per-customer counts; [`crate::caps`] decides.
pub trait Gate {
    /// Whether a non-transactional message under `tag` may go to the customer now; when
    /// it may, the caller counts it.
    fn admit(&mut self, tag: &str, now: DateTime<Utc>) -> Result<(), String>;
}

/// A gate that lets everything through.
pub struct Open;

impl Gate for Open {
    fn admit(&mut self, _tag: &str, _now: DateTime<Utc>) -> Result<(), String> {
        Ok(())
    }
}

/// What the machine may look at: the moment, the profile as it now is, and the caps.
pub struct Ctx<'a> {
    pub now: DateTime<Utc>,
    pub profile: &'a dyn EvalContext,
    pub gate: &'a mut dyn Gate,
}

/// Something the journey does to the world, with the key that makes it idempotent:
/// `journey:version:instance:step`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub key: String,
    pub node: NodeId,
    #[serde(flatten)]
    pub kind: ActionKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    Send {
        destination: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        tag: String,
        transactional: bool,
    },
    SetTrait {
        #[serde(rename = "trait")]
        name: String,
        value: Value,
    },
    RemoveTrait {
        #[serde(rename = "trait")]
        name: String,
    },
    Emit {
        event: String,
        properties: Map<String, Value>,
    },
}

/// Why a message was not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SkipReason {
    /// The customer has not granted the purpose the message needs.
    Consent { purpose: String },
    /// A frequency cap was reached.
    Capped { tag: String, detail: String },
    /// The customer's quiet hours, with `skip`.
    QuietHours,
}

/// A decision, in the order taken; each one is a line of the profile's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Entered {
        holdout: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry_key: Option<String>,
    },
    /// The customer moved on from `from` (none at entry) to `to`; `because` says why, and
    /// `after_ms` how long they were on `from`.
    Moved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<NodeId>,
        to: NodeId,
        because: String,
        /// At a choice, the way taken (arm, case, event branch, `else`, `timeout`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        way: Option<String>,
        after_ms: i64,
    },
    /// The customer waits on `node`, until `until` at the latest.
    Waiting {
        node: NodeId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
    },
    Act(Action),
    Skipped {
        node: NodeId,
        why: SkipReason,
    },
    /// A message held by quiet hours until `until`.
    Delayed {
        node: NodeId,
        until: DateTime<Utc>,
    },
    /// The goal was reached, on `node`, with the ways taken at each choice so far.
    Converted {
        node: NodeId,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        path: BTreeMap<NodeId, String>,
        holdout: bool,
    },
    /// The instance ended on `node` after `after_ms` there; `because` and `way` say what
    /// led out when it was a way out of a node with no `next`.
    Exited {
        node: NodeId,
        reason: ExitReason,
        after_ms: i64,
        #[serde(default)]
        holdout: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        because: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        way: Option<String>,
    },
    /// The instance was moved to another version of the journey (`version::migrate`),
    /// keeping its time on the node and its timer.
    Migrated {
        from_version: u32,
        from_node: NodeId,
        to_version: u32,
        to_node: NodeId,
        #[serde(default)]
        holdout: bool,
    },
}

impl Decision {
    /// One sentence for the timeline.
    pub fn explain(&self) -> String {
        match self {
            Decision::Entered { holdout: true, .. } => {
                "entered, drawn into the holdout: no step, conversions counted".to_owned()
            }
            Decision::Entered {
                entry_key: Some(k), ..
            } => format!("entered for {k}"),
            Decision::Entered { .. } => "entered".to_owned(),
            Decision::Moved {
                from: Some(f),
                to,
                because,
                ..
            } => format!("left {f} for {to}: {because}"),
            Decision::Moved { to, because, .. } => format!("started on {to}: {because}"),
            Decision::Waiting {
                node,
                until: Some(u),
            } => format!("waits on {node} until {}", u.to_rfc3339()),
            Decision::Waiting { node, until: None } => format!("waits on {node}"),
            Decision::Act(a) => match &a.kind {
                ActionKind::Send { destination, .. } => {
                    format!("{}: sent to {destination}", a.node)
                }
                ActionKind::SetTrait { name, value } => format!("{}: set {name} = {value}", a.node),
                ActionKind::RemoveTrait { name } => format!("{}: removed {name}", a.node),
                ActionKind::Emit { event, .. } => format!("{}: emitted {event:?}", a.node),
            },
            Decision::Skipped { node, why } => match why {
                SkipReason::Consent { purpose } => {
                    format!("{node}: not sent, no consent for {purpose}")
                }
                SkipReason::Capped { tag, detail } => {
                    format!("{node}: not sent, {tag} capped ({detail})")
                }
                SkipReason::QuietHours => format!("{node}: not sent, quiet hours"),
            },
            Decision::Delayed { node, until } => {
                format!("{node}: held by quiet hours until {}", until.to_rfc3339())
            }
            Decision::Converted { holdout: true, .. } => "converted, in the holdout".to_owned(),
            Decision::Converted { node, .. } => format!("converted on {node}"),
            Decision::Exited {
                holdout: true,
                reason,
                because,
                ..
            } => match (reason, because) {
                (ExitReason::HoldoutEnded, _) => "left the holdout".to_owned(),
                (_, Some(b)) => format!("left the holdout: {reason}, {b}"),
                (_, None) => format!("left the holdout: {reason}"),
            },
            Decision::Exited {
                node,
                reason,
                because: Some(b),
                ..
            } => format!("exited on {node}: {reason}, {b}"),
            Decision::Exited { node, reason, .. } => format!("exited on {node}: {reason}"),
            Decision::Migrated {
                from_version,
                from_node,
                to_version,
                to_node,
                ..
            } => format!(
                "migrated from v{from_version} node {from_node} to v{to_version} node {to_node}"
            ),
        }
    }
}

/// What enters a customer into a journey.
#[derive(Clone, Copy, Debug)]
pub enum Trigger<'a> {
    SegmentEntered(&'a str),
    Event(&'a JourneyEvent),
    /// An API call, with the properties it gave.
    Api(&'a Map<String, Value>),
    /// The journey's schedule fired and the customer is in its segment.
    Schedule,
}

/// What a journey remembers of one customer across instances, for re-entry rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    pub entries: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_entry: Option<DateTime<Utc>>,
    /// Entry keys of the active instances (`""` for a journey without per-key re-entry).
    #[serde(default)]
    pub active: Vec<String>,
}

/// Counts over the whole journey, for entry limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub entries: u64,
    pub active: u64,
}

/// Why a trigger did not enter the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotEntered {
    /// The trigger is not this journey's entry.
    NotTheEntry,
    /// `once` re-entry and the customer entered before.
    AlreadyEntered,
    /// Still inside, or inside the cool-down.
    CoolingDown,
    /// An instance for this entry key is active.
    KeyActive,
    /// Per-key re-entry and the entry carries no value of the key property.
    NoKey,
    /// `limits.max_entries` reached.
    EntryLimit,
    /// `limits.max_active` reached.
    ActiveLimit,
}

/// Whether `trigger` is the journey's entry.
pub fn is_entry(journey: &CheckedJourney, trigger: Trigger<'_>) -> bool {
    match (&journey.spec.entry, trigger) {
        (Entry::SegmentEntered { segment }, Trigger::SegmentEntered(s)) => segment == s,
        (Entry::Event { .. }, Trigger::Event(e)) => journey.event("entry.condition").matches(e),
        (Entry::Api, Trigger::Api(_)) => true,
        (Entry::Schedule { .. }, Trigger::Schedule) => true,
        _ => false,
    }
}

/// Enters the customer if the trigger is the entry and the re-entry rules and limits
/// allow, and runs the instance up to its first wait. `state` and `totals` are updated;
/// the caller stores them with the instance.
#[allow(clippy::too_many_arguments)]
pub fn enter(
    journey: &CheckedJourney,
    version: u32,
    instance_id: &str,
    profile: &str,
    trigger: Trigger<'_>,
    state: &mut EntryState,
    totals: &mut Totals,
    ctx: &mut Ctx<'_>,
) -> Result<(Instance, Vec<Decision>), NotEntered> {
    let spec = &journey.spec;
    if !is_entry(journey, trigger) {
        return Err(NotEntered::NotTheEntry);
    }
    let entry = match trigger {
        Trigger::Event(e) => EntryContext {
            event: e.event.clone(),
            message_id: Some(e.message_id.clone()),
            properties: e.properties.as_object().cloned().unwrap_or_default(),
            timezone: e.timezone.clone(),
        },
        Trigger::Api(p) => EntryContext {
            properties: p.clone(),
            ..EntryContext::default()
        },
        _ => EntryContext::default(),
    };
    let key = match &spec.reentry {
        Reentry::PerKey { property } => match entry.properties.get(property) {
            None | Some(Value::Null) => return Err(NotEntered::NoKey),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        },
        _ => String::new(),
    };
    match &spec.reentry {
        Reentry::Once if state.entries > 0 => return Err(NotEntered::AlreadyEntered),
        Reentry::After { cooldown } => {
            let cooled = state
                .last_entry
                .is_none_or(|last| ctx.now >= last + cooldown.to_chrono());
            if !state.active.is_empty() || !cooled {
                return Err(NotEntered::CoolingDown);
            }
        }
        Reentry::PerKey { .. } if state.active.contains(&key) => {
            return Err(NotEntered::KeyActive);
        }
        _ => {}
    }
    if spec.limits.max_entries.is_some_and(|m| totals.entries >= m) {
        return Err(NotEntered::EntryLimit);
    }
    if spec.limits.max_active.is_some_and(|m| totals.active >= m) {
        return Err(NotEntered::ActiveLimit);
    }
    state.entries += 1;
    state.last_entry = Some(ctx.now);
    state.active.push(key.clone());
    totals.entries += 1;
    totals.active += 1;
    let holdout = spec.holdout_percent > 0.0
        && unit_hash(&["holdout", &spec.name, profile]) * 100.0 < spec.holdout_percent;
    let mut instance = Instance {
        id: instance_id.to_owned(),
        journey: spec.name.clone(),
        version,
        profile: profile.to_owned(),
        node: spec.start.clone(),
        entered_at: ctx.now,
        node_since: ctx.now,
        due: None,
        entry_key: matches!(spec.reentry, Reentry::PerKey { .. }).then_some(key),
        entry,
        holdout,
        path: BTreeMap::new(),
        steps: 0,
        converted_at: None,
        exited: None,
        held_send: false,
    };
    let mut run = Run {
        journey,
        inst: &mut instance,
        out: vec![Decision::Entered {
            holdout,
            entry_key: None,
        }],
    };
    if let Decision::Entered { entry_key, .. } = &mut run.out[0] {
        entry_key.clone_from(&run.inst.entry_key);
    }
    if holdout {
        match &spec.goal {
            Some(goal) => run.inst.due = Some(ctx.now + goal.within.to_chrono()),
            None => run.exit(ExitReason::HoldoutEnded, ctx.now),
        }
    } else {
        run.out.push(Decision::Moved {
            from: None,
            to: spec.start.clone(),
            because: "the journey's start".to_owned(),
            way: None,
            after_ms: 0,
        });
        run.run_from(spec.start.clone(), false, ctx);
    }
    run.conditions(ctx);
    let out = run.out;
    settle(state, totals, &instance);
    Ok((instance, out))
}

/// Moves `instance` on what happened and answers the decisions taken. An ended instance
/// takes no input. `state` and `totals` are updated when the instance ends.
pub fn advance(
    journey: &CheckedJourney,
    instance: &mut Instance,
    input: Input<'_>,
    state: &mut EntryState,
    totals: &mut Totals,
    ctx: &mut Ctx<'_>,
) -> Vec<Decision> {
    if !instance.is_active() {
        return Vec::new();
    }
    let mut run = Run {
        journey,
        inst: instance,
        out: Vec::new(),
    };
    run.step(input, ctx);
    let out = run.out;
    settle(state, totals, instance);
    out
}

/// Ends `instance` from outside the journey (archive, merge), if it is active.
pub fn end(
    instance: &mut Instance,
    reason: ExitReason,
    state: &mut EntryState,
    totals: &mut Totals,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    if !instance.is_active() {
        return Vec::new();
    }
    let out = vec![exit_decision(instance, reason, now)];
    settle(state, totals, instance);
    out
}

fn exit_decision(inst: &mut Instance, reason: ExitReason, now: DateTime<Utc>) -> Decision {
    inst.exited = Some((now, reason.clone()));
    inst.due = None;
    Decision::Exited {
        node: inst.node.clone(),
        reason,
        after_ms: (now - inst.node_since).num_milliseconds(),
        holdout: inst.holdout,
        because: None,
        way: None,
    }
}

/// Frees the instance's place in the re-entry state and the totals once it has ended.
fn settle(state: &mut EntryState, totals: &mut Totals, inst: &Instance) {
    if inst.is_active() {
        return;
    }
    let key = inst.entry_key.clone().unwrap_or_default();
    if let Some(i) = state.active.iter().position(|k| *k == key) {
        state.active.remove(i);
        totals.active = totals.active.saturating_sub(1);
    }
}

/// A number in [0, 1) from the parts, the same on every machine and in every release.
pub fn unit_hash(parts: &[&str]) -> f64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("a digest has 8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

struct Run<'a> {
    journey: &'a CheckedJourney,
    inst: &'a mut Instance,
    out: Vec<Decision>,
}

impl Run<'_> {
    fn exit(&mut self, reason: ExitReason, now: DateTime<Utc>) {
        let d = exit_decision(self.inst, reason, now);
        self.out.push(d);
    }

    /// A conversion by the event is recorded after the move the event makes, so that it
    /// is credited to the way it took (the order that ended the event wait); an exit rule
    /// the same event matches goes after the conversion.
    fn step(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) {
        let converts = matches!(input, Input::Event(e) if self.goal_event(e));
        self.step_inner(input, converts, ctx);
        if converts {
            self.convert(ctx.now);
        }
    }

    fn step_inner(&mut self, input: Input<'_>, converts: bool, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if converts && self.inst.holdout {
            return;
        }
        if let Input::Event(e) = input {
            for (i, rule) in self.journey.spec.exits.iter().enumerate() {
                if rule.event.is_some()
                    && self.journey.event(&format!("exits[{i}].event")).matches(e)
                {
                    if converts && self.convert(now) {
                        return;
                    }
                    let name = rule.name.clone();
                    self.exit(ExitReason::Rule { name }, now);
                    return;
                }
            }
        }
        if self.conditions(ctx) {
            return;
        }
        if self.inst.holdout {
            if matches!(input, Input::Timer) && self.inst.due.is_some_and(|d| d <= now) {
                self.exit(ExitReason::HoldoutEnded, now);
            }
            return;
        }
        let id = self.inst.node.clone();
        let Some(node) = self.journey.node(&id) else {
            // A node missing from its own version cannot happen for a checked journey.
            self.exit(ExitReason::Completed, now);
            return;
        };
        let timer_due = matches!(input, Input::Timer) && self.inst.due.is_some_and(|d| d <= now);
        match node {
            Node::Wait { next, .. } | Node::WaitUntil { next, .. } if timer_due => {
                self.go(next.clone(), "the wait is over".to_owned(), None, ctx);
            }
            Node::WaitForEvent {
                branches,
                timeout_next,
                timeout,
            } => {
                if let Input::Event(e) = input {
                    for (i, b) in branches.iter().enumerate() {
                        let filter = self
                            .journey
                            .event(&format!("nodes.{id}.branches[{i}].condition"));
                        if filter.matches(e)
                            && self.same_entry_property(b.match_entry_property.as_deref(), e)
                        {
                            let name = b.name.clone().unwrap_or_else(|| format!("branch_{i}"));
                            let what = e.event.as_deref().unwrap_or(&e.event_type);
                            self.go(
                                b.next.clone(),
                                format!("{what} arrived ({name})"),
                                Some(name),
                                ctx,
                            );
                            return;
                        }
                    }
                } else if timer_due {
                    self.go(
                        timeout_next.clone(),
                        format!("no event within {timeout}"),
                        Some("timeout".to_owned()),
                        ctx,
                    );
                }
            }
            Node::WaitForCondition {
                next,
                timeout_next,
                timeout,
                condition,
            } => {
                if self.holds(&format!("nodes.{id}.condition"), ctx) {
                    self.go(next.clone(), format!("{condition} became true"), None, ctx);
                } else if timer_due {
                    self.go(
                        timeout_next.clone(),
                        format!("{condition} was not true within {timeout}"),
                        Some("timeout".to_owned()),
                        ctx,
                    );
                }
            }
            Node::Send(_) if timer_due && self.inst.held_send => {
                self.inst.due = None;
                self.run_from(id, true, ctx);
            }
            _ => {}
        }
    }

    /// Records a conversion by `e`; answers whether the instance then exited.
    /// Whether `e` is the goal's conversion event for this instance.
    fn goal_event(&self, e: &JourneyEvent) -> bool {
        let Some(goal) = &self.journey.spec.goal else {
            return false;
        };
        goal.event.is_some()
            && self.journey.event("goal.event").matches(e)
            && self.same_entry_property(goal.match_entry_property.as_deref(), e)
    }

    /// Records a conversion within the goal's window; answers whether the instance exited
    /// on it. An instance that has just ended (the converting event was its way out)
    /// converts without a second exit.
    fn convert(&mut self, now: DateTime<Utc>) -> bool {
        let goal = self.journey.spec.goal.as_ref().expect("called with a goal");
        if self.inst.converted_at.is_some() || now > self.inst.entered_at + goal.within.to_chrono()
        {
            return false;
        }
        let ended_now = self.inst.exited.as_ref().is_some_and(|(at, _)| *at == now);
        if !self.inst.is_active() && !ended_now {
            return false;
        }
        self.inst.converted_at = Some(now);
        self.out.push(Decision::Converted {
            node: self.inst.node.clone(),
            path: self.inst.path.clone(),
            holdout: self.inst.holdout,
        });
        if !self.inst.is_active() {
            return true;
        }
        if goal.exit_on_conversion || self.inst.holdout {
            let reason = if self.inst.holdout {
                ExitReason::HoldoutEnded
            } else {
                ExitReason::Converted
            };
            self.exit(reason, now);
            return true;
        }
        false
    }

    /// The goal's and the exit rules' profile conditions; answers whether the instance
    /// exited.
    fn conditions(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if !self.inst.is_active() {
            return true;
        }
        if let Some(goal) = &self.journey.spec.goal
            && goal.condition.is_some()
            && self.inst.converted_at.is_none()
            && self.holds("goal.condition", ctx)
            && self.convert(ctx.now)
        {
            return true;
        }
        for (i, rule) in self.journey.spec.exits.iter().enumerate() {
            if rule.condition.is_some() && self.holds(&format!("exits[{i}].condition"), ctx) {
                let name = rule.name.clone();
                self.exit(ExitReason::Rule { name }, ctx.now);
                return true;
            }
        }
        false
    }

    fn holds(&self, path: &str, ctx: &Ctx<'_>) -> bool {
        // A checked condition only fails to evaluate if it is not the one checked.
        evaluate(self.journey.condition(path), ctx.profile, ctx.now).unwrap_or(false)
    }

    fn same_entry_property(&self, property: Option<&str>, e: &JourneyEvent) -> bool {
        let Some(p) = property else { return true };
        let got = e.properties.get(p);
        got.is_some() && got != Some(&Value::Null) && got == self.inst.entry.properties.get(p)
    }

    /// Leaves the current node for `next` (or ends the journey) and runs on.
    fn go(
        &mut self,
        next: Option<NodeId>,
        because: String,
        way: Option<String>,
        ctx: &mut Ctx<'_>,
    ) {
        let now = ctx.now;
        let from = Some(self.inst.node.clone());
        if let Some(w) = &way {
            self.inst.path.insert(self.inst.node.clone(), w.clone());
        }
        let Some(next) = next else {
            let mut d = exit_decision(self.inst, ExitReason::Completed, now);
            if let Decision::Exited {
                because: b, way: w, ..
            } = &mut d
            {
                *b = Some(because);
                *w = way;
            }
            self.out.push(d);
            return;
        };
        self.out.push(Decision::Moved {
            from,
            to: next.clone(),
            because,
            way,
            after_ms: (now - self.inst.node_since).num_milliseconds(),
        });
        self.inst.due = None;
        self.run_from(next, false, ctx);
    }

    /// Enters `id` (or, with `resume`, goes on with the message quiet hours held there) and
    /// passes every node that does not wait.
    fn run_from(&mut self, mut id: NodeId, mut resume: bool, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let mut passed = 0;
        loop {
            passed += 1;
            if passed > MAX_STEPS_AT_ONCE {
                // The customer was moved to `id` (a decision says so): they end there.
                self.inst.node = id;
                self.inst.node_since = now;
                self.exit(ExitReason::StepLimit, now);
                return;
            }
            if !std::mem::take(&mut resume) {
                self.inst.steps += 1;
                self.inst.node_since = now;
                self.inst.held_send = false;
            }
            self.inst.node = id.clone();
            let node = self
                .journey
                .node(&id)
                .expect("a checked journey names only its nodes");
            let (next, because, way): (Option<NodeId>, String, Option<String>) = match node {
                Node::Wait { duration, .. } => {
                    self.wait(id, Some(now + duration.to_chrono()));
                    return;
                }
                Node::WaitUntil { until, next } => {
                    let at = self.until_time(until, ctx);
                    if at > now {
                        self.wait(id, Some(at));
                        return;
                    }
                    (
                        next.clone(),
                        format!("{} has passed", at.to_rfc3339()),
                        None,
                    )
                }
                Node::WaitForEvent { timeout, .. } => {
                    self.wait(id, Some(now + timeout.to_chrono()));
                    return;
                }
                Node::WaitForCondition {
                    condition,
                    timeout,
                    next,
                    ..
                } => {
                    if self.holds(&format!("nodes.{id}.condition"), ctx) {
                        (next.clone(), format!("{condition} is true"), None)
                    } else {
                        self.wait(id, Some(now + timeout.to_chrono()));
                        return;
                    }
                }
                Node::Branch { cases, otherwise } => {
                    let hit = cases.iter().enumerate().find(|(i, _)| {
                        self.holds(&format!("nodes.{id}.cases[{i}].condition"), ctx)
                    });
                    match hit {
                        Some((i, case)) => {
                            let name = case.name.clone().unwrap_or_else(|| format!("case_{i}"));
                            let because = format!("{name}: {}", case.condition);
                            (case.next.clone(), because, Some(name))
                        }
                        None => (
                            otherwise.clone(),
                            "no case held (else)".to_owned(),
                            Some("else".to_owned()),
                        ),
                    }
                }
                Node::Split { arms } => {
                    let total: u64 = arms.iter().map(|a| u64::from(a.weight)).sum();
                    let draw = (unit_hash(&["split", &self.inst.journey, &id, &self.inst.profile])
                        * total as f64) as u64;
                    let mut acc = 0;
                    let arm = arms
                        .iter()
                        .find(|a| {
                            acc += u64::from(a.weight);
                            draw < acc
                        })
                        .unwrap_or(&arms[arms.len() - 1]);
                    let because = format!("arm {} (weight {} of {total})", arm.name, arm.weight);
                    (arm.next.clone(), because, Some(arm.name.clone()))
                }
                Node::Send(send) => {
                    let was_held = std::mem::take(&mut self.inst.held_send);
                    if let Some(purpose) = &send.consent
                        && !ctx.profile.consent(purpose)
                    {
                        self.out.push(Decision::Skipped {
                            node: id.clone(),
                            why: SkipReason::Consent {
                                purpose: purpose.clone(),
                            },
                        });
                    } else if let Some(until) = (!send.transactional && !was_held)
                        .then_some(send.quiet_hours.as_ref())
                        .flatten()
                        .and_then(|q| self.quiet_until(q, ctx))
                    {
                        let q = send.quiet_hours.as_ref().expect("quiet hours given");
                        if q.action == QuietAction::Delay {
                            self.inst.held_send = true;
                            self.inst.due = Some(until);
                            self.out.push(Decision::Delayed { node: id, until });
                            return;
                        }
                        self.out.push(Decision::Skipped {
                            node: id.clone(),
                            why: SkipReason::QuietHours,
                        });
                    } else {
                        let tag = send
                            .cap_tag
                            .clone()
                            .unwrap_or_else(|| send.destination.clone());
                        let admitted = if send.transactional {
                            Ok(())
                        } else {
                            ctx.gate.admit(&tag, now)
                        };
                        match admitted {
                            Ok(()) => {
                                let kind = ActionKind::Send {
                                    destination: send.destination.clone(),
                                    template: send.template.clone(),
                                    tag,
                                    transactional: send.transactional,
                                };
                                self.act(&id, kind);
                            }
                            Err(detail) => self.out.push(Decision::Skipped {
                                node: id.clone(),
                                why: SkipReason::Capped { tag, detail },
                            }),
                        }
                    }
                    (send.next.clone(), "message step done".to_owned(), None)
                }
                Node::SetTrait { name, value, next } => {
                    let kind = ActionKind::SetTrait {
                        name: name.clone(),
                        value: value.clone(),
                    };
                    self.act(&id, kind);
                    (next.clone(), format!("set {name}"), None)
                }
                Node::RemoveTrait { name, next } => {
                    self.act(&id, ActionKind::RemoveTrait { name: name.clone() });
                    (next.clone(), format!("removed {name}"), None)
                }
                Node::Emit {
                    event,
                    properties,
                    next,
                } => {
                    let kind = ActionKind::Emit {
                        event: event.clone(),
                        properties: properties.clone(),
                    };
                    self.act(&id, kind);
                    (next.clone(), format!("emitted {event}"), None)
                }
                Node::Exit {} => {
                    self.exit(ExitReason::ExitNode, now);
                    return;
                }
            };
            if let Some(w) = &way {
                self.inst.path.insert(id.clone(), w.clone());
            }
            let Some(next) = next else {
                self.exit(ExitReason::Completed, now);
                return;
            };
            self.out.push(Decision::Moved {
                from: Some(id),
                to: next.clone(),
                because,
                way,
                after_ms: 0,
            });
            id = next;
        }
    }

    fn wait(&mut self, node: NodeId, until: Option<DateTime<Utc>>) {
        self.inst.due = until;
        self.out.push(Decision::Waiting { node, until });
    }

    fn act(&mut self, node: &str, kind: ActionKind) {
        let key = format!(
            "{}:{}:{}:{}",
            self.inst.journey, self.inst.version, self.inst.id, self.inst.steps
        );
        self.out.push(Decision::Act(Action {
            key,
            node: node.to_owned(),
            kind,
        }));
    }

    /// The customer's time zone: the zone trait, else the entry event's, else the default.
    fn zone(&self, source: &ZoneSource, ctx: &Ctx<'_>) -> Tz {
        let from_trait = ctx
            .profile
            .trait_value(&source.zone_trait)
            .and_then(Value::as_str)
            .and_then(|z| z.parse::<Tz>().ok());
        from_trait
            .or_else(|| {
                self.inst
                    .entry
                    .timezone
                    .as_deref()
                    .and_then(|z| z.parse().ok())
            })
            .or_else(|| source.default.parse().ok())
            .unwrap_or(Tz::UTC)
    }

    fn until_time(&self, until: &crate::definition::Until, ctx: &Ctx<'_>) -> DateTime<Utc> {
        if let Some(at) = until.at {
            return at;
        }
        if let Some(name) = &until.from_trait {
            let date = ctx
                .profile
                .trait_value(name)
                .and_then(Value::as_str)
                .and_then(rapport_core::audience::parse_timestamp);
            let offset = until.offset.map_or(0, |o| o.0);
            // A missing or unreadable date goes on at once: say so by a time in the past.
            return date.map_or(ctx.now, |d| d + TimeDelta::seconds(offset));
        }
        let time = until
            .local_time
            .as_deref()
            .and_then(parse_local_time)
            .unwrap_or(NaiveTime::MIN);
        next_local(time, self.zone(&until.zone, ctx), ctx.now)
    }

    /// When the quiet window that holds `now` ends, if one does.
    fn quiet_until(&self, q: &QuietHours, ctx: &Ctx<'_>) -> Option<DateTime<Utc>> {
        let tz = self.zone(&q.zone, ctx);
        let from = parse_local_time(&q.from)?;
        let to = parse_local_time(&q.to)?;
        let local = ctx.now.with_timezone(&tz).time();
        let quiet = if from < to {
            local >= from && local < to
        } else {
            local >= from || local < to
        };
        quiet.then(|| next_local(to, tz, ctx.now))
    }
}

/// The first moment at or after `now` (to the minute) when the clock in `tz` reads `time`.
/// A time skipped by a daylight-saving change is taken as the moment the clock jumps to.
pub fn next_local(time: NaiveTime, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let local_now = now.with_timezone(&tz);
    let mut date = local_now.date_naive();
    for _ in 0..3 {
        let naive = date.and_time(time);
        let at = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => t,
            chrono::LocalResult::Ambiguous(first, _) => first,
            // In a gap: an hour later is past it everywhere the database knows.
            chrono::LocalResult::None => tz
                .from_local_datetime(&(naive + TimeDelta::hours(1)))
                .earliest()
                .expect("an hour after a gap is a local time"),
        }
        .with_timezone(&Utc);
        let this_minute = now.timestamp().div_euclid(60) * 60;
        if at.timestamp() >= this_minute {
            return at.max(now);
        }
        date = date.succ_opt().expect("a date before the year 262143");
    }
    unreachable!("one of three days has the time")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_next_local_time_follows_the_zone_and_its_clock_changes() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        // Winter (UTC+1), before and after nine.
        assert_eq!(
            next_local(nine, paris, utc("2026-03-02T07:00:00Z")),
            utc("2026-03-02T08:00:00Z")
        );
        assert_eq!(
            next_local(nine, paris, utc("2026-03-02T08:30:00Z")),
            utc("2026-03-03T08:00:00Z")
        );
        // During its minute it is now.
        assert_eq!(
            next_local(nine, paris, utc("2026-03-02T08:00:30Z")),
            utc("2026-03-02T08:00:30Z")
        );
        // Across the spring change (29 March 2026), nine is 07:00 UTC.
        assert_eq!(
            next_local(nine, paris, utc("2026-03-28T09:00:00Z")),
            utc("2026-03-29T07:00:00Z")
        );
        // 02:30 does not exist that night: the moment the clocks jump to 03:00.
        let half_two = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            next_local(half_two, paris, utc("2026-03-28T23:00:00Z")),
            utc("2026-03-29T01:30:00Z")
        );
        // 02:30 happens twice on 25 October 2026: the first.
        assert_eq!(
            next_local(half_two, paris, utc("2026-10-24T23:00:00Z")),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn draws_are_uniform_enough_and_sticky() {
        let n = 20_000;
        let held = (0..n)
            .filter(|i| unit_hash(&["holdout", "j", &format!("p{i}")]) < 0.1)
            .count();
        // 10 % of 20,000: 2,000 ± 4 standard deviations (42).
        assert!((1832..=2168).contains(&held), "{held}");
        assert_eq!(unit_hash(&["a", "b"]), unit_hash(&["a", "b"]));
        assert_ne!(
            unit_hash(&["ab", ""]),
            unit_hash(&["a", "b"]),
            "parts are separated"
        );
    }
}
