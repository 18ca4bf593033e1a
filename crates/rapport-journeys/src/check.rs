//! Validation of a [`JourneySpec`] before it is saved: every problem found, each naming the
//! field at fault as a path (`nodes.remind.template`, `exits[0].event`), and the
//! conditions compiled once so that the machine never parses text.

use crate::definition::{Entry, JourneySpec, Node, NodeId, QuietHours, Reentry, Until, ZoneSource};
use chrono::NaiveTime;
use rapport_core::audience::{self, EventFilter, Expr, Schema};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One problem of a definition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Where, as a path into the JSON definition.
    pub field: String,
    pub message: String,
}

/// The most nodes one journey may have.
pub const MAX_NODES: usize = 200;

/// A definition that passed [`check`], with its conditions compiled.
#[derive(Clone, Debug)]
pub struct CheckedJourney {
    pub spec: JourneySpec,
    /// Event filters by the path of the field that holds them.
    events: HashMap<String, EventFilter>,
    /// Profile conditions by the path of the field that holds them.
    conditions: HashMap<String, Expr>,
    /// Segments the definition reads (entry, conditions), for the caller's bookkeeping.
    pub segments: BTreeSet<String>,
}

impl CheckedJourney {
    /// The compiled event filter at `path`. Panics when `path` holds none: the machine only
    /// asks for paths the checker compiled.
    pub fn event(&self, path: &str) -> &EventFilter {
        self.events
            .get(path)
            .unwrap_or_else(|| panic!("no event filter was compiled at {path}"))
    }

    /// The compiled profile condition at `path` (see [`CheckedJourney::event`]).
    pub fn condition(&self, path: &str) -> &Expr {
        self.conditions
            .get(path)
            .unwrap_or_else(|| panic!("no condition was compiled at {path}"))
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.spec.nodes.get(id)
    }
}

/// Checks `spec` against what exists (`schema`: computed traits and segments). Answers
/// every problem, sorted by field.
pub fn check(spec: &JourneySpec, schema: &Schema) -> Result<CheckedJourney, Vec<FieldError>> {
    let mut c = Checker {
        schema,
        errors: Vec::new(),
        events: HashMap::new(),
        conditions: HashMap::new(),
        segments: BTreeSet::new(),
    };
    c.name(&spec.name);
    c.entry(spec);
    if !(0.0..=50.0).contains(&spec.holdout_percent) {
        c.error(
            "holdout_percent",
            format!(
                "a holdout is a percentage from 0 to 50, found {}",
                spec.holdout_percent
            ),
        );
    }
    if spec.limits.max_entries == Some(0) || spec.limits.max_active == Some(0) {
        c.error(
            "limits",
            "a limit of 0 would let no one in: omit it instead",
        );
    }
    let mut exit_names = BTreeSet::new();
    for (i, exit) in spec.exits.iter().enumerate() {
        let at = format!("exits[{i}]");
        if exit.name.trim().is_empty() {
            c.error(
                &format!("{at}.name"),
                "an exit rule needs a name, the reason it records",
            );
        } else if !exit_names.insert(&exit.name) {
            c.error(
                &format!("{at}.name"),
                format!("two exit rules are named {:?}", exit.name),
            );
        }
        c.one_of(&at, exit.event.as_deref(), exit.condition.as_deref());
    }
    if let Some(goal) = &spec.goal {
        c.one_of("goal", goal.event.as_deref(), goal.condition.as_deref());
        if goal.match_entry_property.is_some() && goal.event.is_none() {
            c.error(
                "goal.match_entry_property",
                "only an event goal can match the entry event's property",
            );
        }
        if goal.within.0 == 0 {
            c.error("goal.within", "a goal's window must be longer than 0s");
        }
    }
    c.graph(spec);
    for (id, node) in &spec.nodes {
        c.node(id, node);
    }
    if c.errors.is_empty() {
        Ok(CheckedJourney {
            spec: spec.clone(),
            events: c.events,
            conditions: c.conditions,
            segments: c.segments,
        })
    } else {
        c.errors.sort_by(|a, b| a.field.cmp(&b.field));
        Err(c.errors)
    }
}

struct Checker<'a> {
    schema: &'a Schema,
    errors: Vec<FieldError>,
    events: HashMap<String, EventFilter>,
    conditions: HashMap<String, Expr>,
    segments: BTreeSet<String>,
}

impl Checker<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn name(&mut self, name: &str) {
        let fine = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !fine {
            self.error(
                "name",
                format!("a journey name is 1 to 64 letters, digits, '_' or '-', found {name:?}"),
            );
        }
    }

    fn segment(&mut self, field: &str, segment: &str) {
        if self.schema.segments.contains(segment) {
            self.segments.insert(segment.to_owned());
        } else {
            self.error(field, format!("no segment is named {segment:?}"));
        }
    }

    fn entry(&mut self, spec: &JourneySpec) {
        let has_properties = match &spec.entry {
            Entry::SegmentEntered { segment } => {
                self.segment("entry.segment", segment);
                false
            }
            Entry::Event { condition } => {
                self.event_filter("entry.condition", condition);
                true
            }
            Entry::Api => true,
            Entry::Schedule { segment, every, .. } => {
                self.segment("entry.segment", segment);
                if every.0 < 60 {
                    self.error("entry.every", "a schedule runs at most once a minute");
                }
                false
            }
        };
        match &spec.reentry {
            Reentry::PerKey { property } if property.trim().is_empty() => {
                self.error(
                    "reentry.property",
                    "name the entry property that keys instances",
                );
            }
            Reentry::PerKey { .. } if !has_properties => self.error(
                "reentry",
                "per_key re-entry needs an entry that carries properties (an event or an API call)",
            ),
            Reentry::After { cooldown } if cooldown.0 == 0 => {
                self.error("reentry.cooldown", "a cool-down must be longer than 0s");
            }
            _ => {}
        }
        if !has_properties {
            for (id, node) in &spec.nodes {
                if let Node::WaitForEvent { branches, .. } = node {
                    for (i, b) in branches.iter().enumerate() {
                        if b.match_entry_property.is_some() {
                            self.error(
                                &format!("nodes.{id}.branches[{i}].match_entry_property"),
                                "this journey's entry has no event to match a property of",
                            );
                        }
                    }
                }
            }
        }
    }

    /// Exactly one of an event filter and a profile condition, at `at.event` or
    /// `at.condition`.
    fn one_of(&mut self, at: &str, event: Option<&str>, condition: Option<&str>) {
        match (event, condition) {
            (Some(e), None) => self.event_filter(&format!("{at}.event"), e),
            (None, Some(c)) => self.profile_condition(&format!("{at}.condition"), c),
            _ => self.error(at, "give exactly one of event and condition"),
        }
    }

    fn event_filter(&mut self, field: &str, text: &str) {
        let filter = audience::parse(text).and_then(|expr| EventFilter::from_expr(&expr));
        match filter {
            Ok(f) => {
                self.events.insert(field.to_owned(), f);
            }
            Err(d) => self.error(field, d.to_string()),
        }
    }

    fn profile_condition(&mut self, field: &str, text: &str) {
        match audience::compile(text, self.schema, None) {
            Ok(checked) if !checked.aggregates.is_empty() => self.error(
                field,
                format!(
                    "a journey condition cannot count events ({}): define a computed trait and test it",
                    checked.aggregates[0]
                ),
            ),
            Ok(checked) => {
                self.segments.extend(checked.references.iter().cloned());
                self.conditions.insert(field.to_owned(), checked.expr);
            }
            Err(e) => {
                let message = e
                    .diagnostics()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                self.error(field, message);
            }
        }
    }

    fn zone(&mut self, field: &str, zone: &ZoneSource) {
        if zone.default.parse::<chrono_tz::Tz>().is_err() {
            self.error(
                &format!("{field}.default"),
                format!(
                    "{:?} is not a time zone of the IANA database (such as Europe/Paris)",
                    zone.default
                ),
            );
        }
        if zone.zone_trait.trim().is_empty() {
            self.error(
                &format!("{field}.trait"),
                "name the trait that holds the time zone",
            );
        }
    }

    fn local_time(&mut self, field: &str, text: &str) {
        if parse_local_time(text).is_none() {
            self.error(
                field,
                format!("expected a local time as HH:MM, found {text:?}"),
            );
        }
    }

    fn until(&mut self, at: &str, until: &Until) {
        let given = [
            until.at.is_some(),
            until.from_trait.is_some(),
            until.local_time.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.error(at, "give exactly one of at, trait and local_time");
        }
        if until.offset.is_some() && until.from_trait.is_none() {
            self.error(
                &format!("{at}.offset"),
                "an offset shifts a trait's date: give trait too",
            );
        }
        if let Some(t) = &until.from_trait
            && t.trim().is_empty()
        {
            self.error(&format!("{at}.trait"), "name the trait that holds the date");
        }
        if let Some(t) = &until.local_time {
            self.local_time(&format!("{at}.local_time"), t);
        }
        self.zone(&format!("{at}.zone"), &until.zone);
    }

    fn quiet_hours(&mut self, at: &str, q: &QuietHours) {
        self.local_time(&format!("{at}.from"), &q.from);
        self.local_time(&format!("{at}.to"), &q.to);
        if q.from == q.to {
            self.error(at, "quiet hours from and to the same time cover nothing");
        }
        self.zone(&format!("{at}.zone"), &q.zone);
    }

    /// References, reachability and loops that could run forever without waiting.
    fn graph(&mut self, spec: &JourneySpec) {
        if spec.nodes.is_empty() {
            self.error("nodes", "a journey needs at least one node");
            return;
        }
        if spec.nodes.len() > MAX_NODES {
            self.error("nodes", format!("a journey has at most {MAX_NODES} nodes"));
        }
        if !spec.nodes.contains_key(&spec.start) {
            self.error("start", format!("no node is named {:?}", spec.start));
        }
        for (id, node) in &spec.nodes {
            if id.is_empty() || id.len() > 64 || id.contains(['.', '[', ']']) {
                self.error(
                    &format!("nodes.{id}"),
                    "a node name is 1 to 64 characters without '.', '[' or ']'",
                );
            }
            for (field, next) in node.successors() {
                if !spec.nodes.contains_key(next) {
                    self.error(
                        &format!("nodes.{id}.{field}"),
                        format!("no node is named {next:?}"),
                    );
                }
            }
        }
        // Reachable from the start; a node unreachable because of a misnamed `next` is
        // that error's consequence, not a second problem.
        let misnamed = self
            .errors
            .iter()
            .any(|e| e.message.starts_with("no node is named"));
        let mut seen = BTreeSet::new();
        let mut todo = vec![&spec.start];
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(node) = spec.nodes.get(id) {
                todo.extend(node.successors().into_iter().map(|(_, n)| n));
            }
        }
        for id in spec.nodes.keys() {
            if !misnamed && !seen.contains(id) && spec.nodes.contains_key(&spec.start) {
                self.error(
                    &format!("nodes.{id}"),
                    "no path from start reaches this node",
                );
            }
        }
        if let Some(cycle) = instant_cycle(&spec.nodes) {
            self.error(
                &format!("nodes.{}", cycle[0]),
                format!(
                    "these nodes loop without a wait, so a customer would never stop: {}",
                    cycle.join(" → ")
                ),
            );
        }
    }

    fn node(&mut self, id: &NodeId, node: &Node) {
        let at = format!("nodes.{id}");
        match node {
            Node::Wait { duration, .. } => {
                if duration.0 == 0 {
                    self.error(&format!("{at}.duration"), "a wait must be longer than 0s");
                }
            }
            Node::WaitUntil { until, .. } => self.until(&format!("{at}.until"), until),
            Node::WaitForEvent {
                branches, timeout, ..
            } => {
                if branches.is_empty() {
                    self.error(&format!("{at}.branches"), "wait for at least one event");
                }
                for (i, b) in branches.iter().enumerate() {
                    self.event_filter(&format!("{at}.branches[{i}].condition"), &b.condition);
                    if let Some(p) = &b.match_entry_property
                        && p.trim().is_empty()
                    {
                        self.error(
                            &format!("{at}.branches[{i}].match_entry_property"),
                            "name the property, or leave the field out",
                        );
                    }
                }
                self.names(&at, "branches", branches.iter().map(|b| b.name.as_deref()));
                if timeout.0 == 0 {
                    self.error(&format!("{at}.timeout"), "a timeout must be longer than 0s");
                }
            }
            Node::WaitForCondition {
                condition, timeout, ..
            } => {
                self.profile_condition(&format!("{at}.condition"), condition);
                if timeout.0 == 0 {
                    self.error(&format!("{at}.timeout"), "a timeout must be longer than 0s");
                }
            }
            Node::Branch { cases, .. } => {
                if cases.is_empty() {
                    self.error(&format!("{at}.cases"), "a branch needs at least one case");
                }
                for (i, case) in cases.iter().enumerate() {
                    self.profile_condition(&format!("{at}.cases[{i}].condition"), &case.condition);
                }
                self.names(&at, "cases", cases.iter().map(|c| c.name.as_deref()));
            }
            Node::Split { arms } => {
                if arms.len() < 2 {
                    self.error(&format!("{at}.arms"), "a split needs at least two arms");
                }
                for (i, arm) in arms.iter().enumerate() {
                    if arm.weight == 0 {
                        self.error(
                            &format!("{at}.arms[{i}].weight"),
                            "a weight is a positive integer",
                        );
                    }
                }
                self.names(&at, "arms", arms.iter().map(|a| Some(a.name.as_str())));
            }
            Node::Send(send) => {
                if send.destination.trim().is_empty() {
                    self.error(
                        &format!("{at}.destination"),
                        "name the destination to send to",
                    );
                }
                if let Some(t) = &send.template
                    && let Err(e) = rapport_destinations::payload::Template::compile(t, true)
                {
                    let line = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                    self.error(&format!("{at}.template"), format!("{}{line}", e.message));
                }
                if let Some(c) = &send.consent
                    && c.trim().is_empty()
                {
                    self.error(
                        &format!("{at}.consent"),
                        "name the consent purpose, or leave the field out",
                    );
                }
                if let Some(tag) = &send.cap_tag
                    && tag.trim().is_empty()
                {
                    self.error(
                        &format!("{at}.cap_tag"),
                        "name the channel tag, or leave the field out",
                    );
                }
                if let Some(q) = &send.quiet_hours {
                    self.quiet_hours(&format!("{at}.quiet_hours"), q);
                }
            }
            Node::SetTrait { name, .. } | Node::RemoveTrait { name, .. } => {
                if name.trim().is_empty() {
                    self.error(&format!("{at}.trait"), "name the trait");
                }
            }
            Node::Emit { event, .. } => {
                if event.trim().is_empty() {
                    self.error(&format!("{at}.event"), "name the event to emit");
                }
            }
            Node::Exit {} => {}
        }
    }

    /// Names given to branches, cases or arms are unique within their node.
    fn names<'n>(&mut self, at: &str, list: &str, names: impl Iterator<Item = Option<&'n str>>) {
        let mut seen = BTreeSet::new();
        for (i, name) in names.enumerate() {
            if let Some(n) = name
                && !seen.insert(n)
            {
                self.error(
                    &format!("{at}.{list}[{i}].name"),
                    format!("two {list} are named {n:?}"),
                );
            }
        }
    }
}

/// `HH:MM` (24-hour clock).
pub fn parse_local_time(text: &str) -> Option<NaiveTime> {
    if text.len() != 5 {
        return None;
    }
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// A loop through nodes that do not wait, if there is one (in node order).
fn instant_cycle(nodes: &BTreeMap<NodeId, Node>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = nodes.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        id: &'a str,
        nodes: &'a BTreeMap<NodeId, Node>,
        mark: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(id) {
            Some(Mark::Done) | None => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|p| *p == id).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(id.to_owned());
                return Some(cycle);
            }
            Some(Mark::New) => {}
        }
        let node = &nodes[id];
        if node.waits() {
            mark.insert(id, Mark::Done);
            return None;
        }
        mark.insert(id, Mark::Open);
        path.push(id);
        for (_, next) in node.successors() {
            if let Some(c) = visit(next, nodes, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(id, Mark::Done);
        None
    }
    for id in nodes.keys() {
        let mut path = Vec::new();
        if let Some(c) = visit(id, nodes, &mut mark, &mut path) {
            return Some(c);
        }
    }
    None
}
