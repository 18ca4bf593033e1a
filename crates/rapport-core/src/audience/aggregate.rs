//! Event aggregates in normalised, hashable form, and their reference computation.
//!
//! The engine keeps aggregates such as "orders in the last 30 days" up to date per profile as
//! events arrive, instead of rescanning history on every evaluation. For that it needs each
//! aggregate as a value it can hash, store and share between segments: [`EventAggregate`].
//! Two spellings of the same aggregate (`a and b` / `b and a`, `exists(f)` / `count(f)`,
//! `within 24h` / `within 1d`) normalise to equal values.
//!
//! [`compute_aggregate`] is the ground truth over a slice of events, used by tests and for
//! backfill; [`next_expiry`] says when an aggregate could change with no new event, so a
//! scheduler knows when to evaluate again.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ast::{
    AggregateCall, AggregateKind, CompareOp, DurationLit, DurationUnit, Expr, ExprKind, Literal,
    Path, write_string,
};
use super::diagnostic::{Diagnostic, Span};
use super::value::{Test, Val, in_list, lookup, test};

/// What an aggregate computes over the matching events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// Number of matching events (a JSON integer).
    Count,
    /// Sum of the numeric values of the property (0 when none).
    Sum,
    /// Mean of the numeric values of the property (null when none).
    Avg,
    /// Least numeric value of the property (null when none).
    Min,
    /// Greatest numeric value of the property (null when none).
    Max,
    /// The property's value on the earliest matching event (null when none or absent).
    First,
    /// The property's value on the latest matching event (null when none or absent).
    Last,
    /// Timestamp of the earliest matching event, as an RFC 3339 string (null when none).
    FirstSeen,
    /// Timestamp of the latest matching event, as an RFC 3339 string (null when none).
    LastSeen,
    /// The property value occurring most often (null when none); ties go to the value seen
    /// latest.
    MostFrequent,
    /// The distinct property values, as a sorted JSON array (empty when none).
    Unique,
    /// Number of distinct property values (a JSON integer).
    UniqueCount,
}

impl AggregateFunction {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
            AggregateFunction::First => "first",
            AggregateFunction::Last => "last",
            AggregateFunction::FirstSeen => "first_seen",
            AggregateFunction::LastSeen => "last_seen",
            AggregateFunction::MostFrequent => "most_frequent",
            AggregateFunction::Unique => "unique",
            AggregateFunction::UniqueCount => "unique_count",
        }
    }
}

/// One aggregate over a profile's events, normalised: equal aggregates are equal values.
///
/// The engine answers [`super::EvalContext::aggregate`] for these, and can maintain them
/// incrementally: an event matters to an aggregate iff `filter.matches(event)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventAggregate {
    pub function: AggregateFunction,
    /// The property path under `properties` (for sum, avg, min, max, first, last,
    /// most_frequent, unique and unique_count).
    pub property: Option<Vec<String>>,
    pub filter: EventFilter,
    /// Only events with `now - window < timestamp <= now` count. Without a window, every event
    /// with `timestamp <= now` counts.
    pub window_seconds: Option<u64>,
}

/// A normalised condition over one event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFilter {
    /// Every event.
    All,
    /// No event.
    Nothing,
    Condition(Condition),
    Not(Box<EventFilter>),
    /// Two or more, sorted, without duplicates.
    And(Vec<EventFilter>),
    /// Two or more, sorted, without duplicates.
    Or(Vec<EventFilter>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Condition {
    pub field: EventField,
    pub op: FilterOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventField {
    /// The event name of a track event (`event`).
    Name,
    /// The event type: track, page, screen, identify, group or alias (`type`).
    Type,
    /// A property path (`properties.a.b`).
    Property(Vec<String>),
}

/// Positive tests only: `!=` is `Not(Eq)`, `not in` is `Not(In)`, `is not null` is
/// `Not(IsNull)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq(Scalar),
    Lt(Scalar),
    Le(Scalar),
    Gt(Scalar),
    Ge(Scalar),
    /// Sorted, without duplicates.
    In(Vec<Scalar>),
    Contains(Scalar),
    StartsWith(String),
    IsNull,
}

/// A literal in an event filter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

/// A finite number with total equality, ordering and hashing (`-0` equals `0`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Number(f64);

impl Number {
    /// `None` for NaN and infinities.
    pub fn new(n: f64) -> Option<Number> {
        n.is_finite()
            .then_some(Number(if n == 0.0 { 0.0 } else { n }))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Number {}
impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        let norm = |x: f64| if x == 0.0 { 0.0 } else { x };
        norm(self.0).total_cmp(&norm(other.0))
    }
}
impl Hash for Number {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let x = if self.0 == 0.0 { 0.0f64 } else { self.0 };
        x.to_bits().hash(state);
    }
}

impl Scalar {
    fn to_val(&self) -> Val {
        match self {
            Scalar::Null => Val::Null,
            Scalar::Bool(b) => Val::Bool(*b),
            Scalar::Number(n) => Val::Num(n.get()),
            Scalar::String(s) => Val::Str(s.clone()),
        }
    }
}

/// The event types of the Segment spec.
pub const EVENT_TYPES: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// What the reference computation needs to know of an event. The engine implements it for its
/// own event type, or uses [`HistoryEvent`].
pub trait EventLike {
    fn timestamp(&self) -> DateTime<Utc>;
    /// `track`, `page`, `screen`, `identify`, `group` or `alias`.
    fn event_type(&self) -> &str;
    /// The event name of a track event; `None` for other types.
    fn event_name(&self) -> Option<&str>;
    /// The event's properties (a JSON object; anything else is treated as empty).
    fn properties(&self) -> &Value;
}

/// A plain event of a profile's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Value,
}

impl EventLike for HistoryEvent {
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

impl EventFilter {
    /// Whether `event` satisfies the filter.
    pub fn matches<E: EventLike + ?Sized>(&self, event: &E) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Nothing => false,
            EventFilter::Not(f) => !f.matches(event),
            EventFilter::And(fs) => fs.iter().all(|f| f.matches(event)),
            EventFilter::Or(fs) => fs.iter().any(|f| f.matches(event)),
            EventFilter::Condition(c) => {
                let value = match &c.field {
                    EventField::Name => {
                        event.event_name().map_or(Val::Null, |n| Val::Str(n.into()))
                    }
                    EventField::Type => Val::Str(event.event_type().into()),
                    EventField::Property(path) => {
                        lookup(event.properties(), path).map_or(Val::Null, Val::from_json)
                    }
                };
                match &c.op {
                    FilterOp::Eq(s) => test(Test::Eq, &value, &s.to_val()),
                    FilterOp::Lt(s) => test(Test::Lt, &value, &s.to_val()),
                    FilterOp::Le(s) => test(Test::Le, &value, &s.to_val()),
                    FilterOp::Gt(s) => test(Test::Gt, &value, &s.to_val()),
                    FilterOp::Ge(s) => test(Test::Ge, &value, &s.to_val()),
                    FilterOp::Contains(s) => test(Test::Contains, &value, &s.to_val()),
                    FilterOp::StartsWith(s) => test(Test::StartsWith, &value, &Val::Str(s.clone())),
                    FilterOp::In(items) => {
                        let items: Vec<Val> = items.iter().map(Scalar::to_val).collect();
                        in_list(&value, &items)
                    }
                    FilterOp::IsNull => value.is_null(),
                }
            }
        }
    }

    fn negate(self) -> EventFilter {
        match self {
            EventFilter::All => EventFilter::Nothing,
            EventFilter::Nothing => EventFilter::All,
            EventFilter::Not(f) => *f,
            f => EventFilter::Not(Box::new(f)),
        }
    }

    fn and(parts: Vec<EventFilter>) -> EventFilter {
        let mut flat = Vec::new();
        for p in parts {
            match p {
                EventFilter::All => {}
                EventFilter::Nothing => return EventFilter::Nothing,
                EventFilter::And(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        flat.sort();
        flat.dedup();
        match flat.len() {
            0 => EventFilter::All,
            1 => flat.remove(0),
            _ => EventFilter::And(flat),
        }
    }

    fn or(parts: Vec<EventFilter>) -> EventFilter {
        let mut flat = Vec::new();
        for p in parts {
            match p {
                EventFilter::Nothing => {}
                EventFilter::All => return EventFilter::All,
                EventFilter::Or(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        flat.sort();
        flat.dedup();
        match flat.len() {
            0 => EventFilter::Nothing,
            1 => flat.remove(0),
            _ => EventFilter::Or(flat),
        }
    }

    /// Normalises the filter argument of an aggregate, checking that it only speaks of event
    /// fields compared with literals of a fitting type.
    pub fn from_expr(expr: &Expr) -> Result<EventFilter, Diagnostic> {
        match &expr.kind {
            ExprKind::Literal(Literal::Bool(true)) => Ok(EventFilter::All),
            ExprKind::Literal(Literal::Bool(false)) => Ok(EventFilter::Nothing),
            ExprKind::Literal(l) => Err(Diagnostic::new(
                format!(
                    "an event filter must be a condition such as event == \"Order Completed\", found {l}"
                ),
                expr.span,
            )),
            ExprKind::Path(Path::Property(p)) => Ok(EventFilter::Condition(Condition {
                field: EventField::Property(p.clone()),
                op: FilterOp::Eq(Scalar::Bool(true)),
            })),
            ExprKind::Path(p) => Err(if p.is_event_field() {
                Diagnostic::new(
                    format!("'{p}' alone is not a condition; compare it, e.g. {p} == \"…\""),
                    expr.span,
                )
            } else {
                profile_in_filter(p, expr.span)
            }),
            ExprKind::Not(e) => Ok(EventFilter::from_expr(e)?.negate()),
            ExprKind::And(es) => Ok(EventFilter::and(
                es.iter()
                    .map(EventFilter::from_expr)
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Or(es) => Ok(EventFilter::or(
                es.iter()
                    .map(EventFilter::from_expr)
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Compare { op, lhs, rhs } => compare_condition(*op, lhs, rhs, expr.span),
            ExprKind::In {
                negated,
                lhs,
                items,
            } => {
                let field = event_field(lhs)?;
                let mut scalars = Vec::new();
                for item in items {
                    check_literal_for(&field, &item.node, item.span, "in")?;
                    scalars.push(scalar(&item.node, item.span)?);
                }
                scalars.sort();
                scalars.dedup();
                let f = EventFilter::Condition(Condition {
                    field,
                    op: FilterOp::In(scalars),
                });
                Ok(if *negated { f.negate() } else { f })
            }
            ExprKind::IsNull { negated, expr: e } => {
                let f = EventFilter::Condition(Condition {
                    field: event_field(e)?,
                    op: FilterOp::IsNull,
                });
                Ok(if *negated { f.negate() } else { f })
            }
            ExprKind::Aggregate(a) => Err(Diagnostic::new(
                format!("{}() cannot be used inside an event filter", a.kind.name()),
                expr.span,
            )),
            ExprKind::Call { function, .. } => Err(Diagnostic::new(
                format!(
                    "{}() cannot be used inside an event filter",
                    function.name()
                ),
                expr.span,
            )),
        }
    }
}

fn profile_in_filter(p: &Path, span: Span) -> Diagnostic {
    Diagnostic::new(
        format!(
            "profile field {p} cannot be used inside an event filter; filters speak of event, type and properties.…"
        ),
        span,
    )
}

fn event_field(e: &Expr) -> Result<EventField, Diagnostic> {
    match &e.kind {
        ExprKind::Path(Path::EventName) => Ok(EventField::Name),
        ExprKind::Path(Path::EventType) => Ok(EventField::Type),
        ExprKind::Path(Path::Property(p)) => Ok(EventField::Property(p.clone())),
        ExprKind::Path(p) => Err(profile_in_filter(p, e.span)),
        _ => Err(Diagnostic::new(
            format!(
                "expected an event field (event, type or properties.…) in the event filter, found {e}"
            ),
            e.span,
        )),
    }
}

fn scalar(l: &Literal, span: Span) -> Result<Scalar, Diagnostic> {
    Ok(match l {
        Literal::Null => Scalar::Null,
        Literal::Bool(b) => Scalar::Bool(*b),
        Literal::Number(n) => Scalar::Number(
            Number::new(*n).ok_or_else(|| Diagnostic::new("number out of range", span))?,
        ),
        Literal::String(s) => Scalar::String(s.clone()),
        Literal::Duration(d) => {
            return Err(Diagnostic::new(
                format!(
                    "duration {d} cannot be compared with an event field; use 'within {d}' to limit the events by age"
                ),
                span,
            ));
        }
    })
}

/// `event` and `type` are strings; `type` must name a spec event type.
fn check_literal_for(
    field: &EventField,
    l: &Literal,
    span: Span,
    op: &str,
) -> Result<(), Diagnostic> {
    let name = match field {
        EventField::Name => "event",
        EventField::Type => "type",
        EventField::Property(_) => return Ok(()),
    };
    match l {
        Literal::String(s)
            if *field == EventField::Type
                && !EVENT_TYPES.contains(&s.as_str())
                && op != "starts_with"
                && op != "contains" =>
        {
            Err(Diagnostic::new(
                format!(
                    "unknown event type \"{s}\" (expected one of {})",
                    EVENT_TYPES.join(", ")
                ),
                span,
            ))
        }
        Literal::String(_) => Ok(()),
        Literal::Null if op == "==" || op == "!=" || op == "in" => Ok(()),
        other => Err(Diagnostic::new(
            format!("'{name}' is a string and cannot be compared with {other} using {op}"),
            span,
        )),
    }
}

fn compare_condition(
    op: CompareOp,
    lhs: &Expr,
    rhs: &Expr,
    span: Span,
) -> Result<EventFilter, Diagnostic> {
    let literal = |e: &Expr| match &e.kind {
        ExprKind::Literal(l) => Some(l.clone()),
        _ => None,
    };
    let (field_expr, lit, lit_span, op) = match (literal(lhs), literal(rhs)) {
        (None, Some(l)) => (lhs, l, rhs.span, op),
        (Some(l), None) => {
            let flipped = match op {
                CompareOp::Lt => CompareOp::Gt,
                CompareOp::Le => CompareOp::Ge,
                CompareOp::Gt => CompareOp::Lt,
                CompareOp::Ge => CompareOp::Le,
                CompareOp::Eq | CompareOp::Ne => op,
                CompareOp::Contains | CompareOp::StartsWith => {
                    return Err(Diagnostic::new(
                        format!("put the event field on the left of '{}'", op.symbol()),
                        span,
                    ));
                }
            };
            (rhs, l, lhs.span, flipped)
        }
        _ => {
            return Err(Diagnostic::new(
                "an event filter condition compares an event field with a literal value, e.g. properties.total > 100",
                span,
            ));
        }
    };
    for e in [lhs, rhs] {
        if matches!(e.kind, ExprKind::Aggregate(_) | ExprKind::Call { .. }) {
            return EventFilter::from_expr(e);
        }
    }
    let field = event_field(field_expr)?;
    check_literal_for(&field, &lit, lit_span, op.symbol())?;
    let value = scalar(&lit, lit_span)?;
    if op.is_ordering() && matches!(value, Scalar::Null | Scalar::Bool(_)) {
        return Err(Diagnostic::new(
            format!("'{}' needs a number or a string, found {lit}", op.symbol()),
            lit_span,
        ));
    }
    let cond = |op| {
        EventFilter::Condition(Condition {
            field: field.clone(),
            op,
        })
    };
    Ok(match op {
        CompareOp::Eq => cond(FilterOp::Eq(value)),
        CompareOp::Ne => cond(FilterOp::Eq(value)).negate(),
        CompareOp::Lt => cond(FilterOp::Lt(value)),
        CompareOp::Le => cond(FilterOp::Le(value)),
        CompareOp::Gt => cond(FilterOp::Gt(value)),
        CompareOp::Ge => cond(FilterOp::Ge(value)),
        CompareOp::Contains => cond(FilterOp::Contains(value)),
        CompareOp::StartsWith => match value {
            Scalar::String(s) => cond(FilterOp::StartsWith(s)),
            _ => {
                return Err(Diagnostic::new(
                    format!("'starts_with' needs a string, found {lit}"),
                    lit_span,
                ));
            }
        },
    })
}

impl EventAggregate {
    /// Normalises an aggregate call. Errors say what is wrong with its property or filter.
    pub fn from_call(call: &AggregateCall) -> Result<EventAggregate, Diagnostic> {
        let function = match call.kind {
            AggregateKind::Count | AggregateKind::Exists => AggregateFunction::Count,
            AggregateKind::Sum => AggregateFunction::Sum,
            AggregateKind::Avg => AggregateFunction::Avg,
            AggregateKind::Min => AggregateFunction::Min,
            AggregateKind::Max => AggregateFunction::Max,
            AggregateKind::First => AggregateFunction::First,
            AggregateKind::Last => AggregateFunction::Last,
            AggregateKind::FirstSeen => AggregateFunction::FirstSeen,
            AggregateKind::LastSeen => AggregateFunction::LastSeen,
            AggregateKind::MostFrequent => AggregateFunction::MostFrequent,
            AggregateKind::Unique => AggregateFunction::Unique,
            AggregateKind::UniqueCount => AggregateFunction::UniqueCount,
        };
        let property = match &call.property {
            None => None,
            Some(p) => match &p.node {
                Path::Property(segments) => Some(segments.clone()),
                other => {
                    return Err(Diagnostic::new(
                        format!(
                            "{}() aggregates an event property such as properties.revenue, found {other}",
                            call.kind.name()
                        ),
                        p.span,
                    ));
                }
            },
        };
        Ok(EventAggregate {
            function,
            property,
            filter: EventFilter::from_expr(&call.filter)?,
            window_seconds: call.window.as_ref().map(|w| w.node.seconds()),
        })
    }

    /// Whether an event at `at` falls in this aggregate's scope at `now`.
    pub fn in_scope(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if at > now {
            return false;
        }
        match self.window_seconds {
            None => true,
            Some(w) => window_end(at, w).is_none_or(|end| end > now),
        }
    }
}

/// The instant an event at `at` leaves a window of `seconds`; `None` if beyond the calendar.
pub(crate) fn window_end(at: DateTime<Utc>, seconds: u64) -> Option<DateTime<Utc>> {
    let delta = TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
    at.checked_add_signed(delta)
}

/// Formats a timestamp the way aggregates return it.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The value of `aggregate` over `events` at `now`: the ground truth the engine's incremental
/// maintenance must agree with.
///
/// Events after `now` do not count yet. Ties in time are broken by slice order (the log
/// order): `first` takes the earliest-placed, `last` the latest-placed, and `most_frequent`
/// prefers the value whose latest occurrence is latest in time, then in the slice.
pub fn compute_aggregate<E: EventLike>(
    aggregate: &EventAggregate,
    events: &[E],
    now: DateTime<Utc>,
) -> Value {
    let matching = events
        .iter()
        .filter(|e| aggregate.in_scope(e.timestamp(), now) && aggregate.filter.matches(*e));
    let property = |e: &E| -> Option<Value> {
        aggregate
            .property
            .as_ref()
            .and_then(|p| lookup(e.properties(), p))
            .cloned()
    };
    let numbers = || {
        matching
            .clone()
            .filter_map(|e| property(e)?.as_f64())
            .filter(|n| n.is_finite())
    };
    match aggregate.function {
        AggregateFunction::Count => Value::from(matching.count() as u64),
        AggregateFunction::Sum => number_value(numbers().sum()),
        AggregateFunction::Avg => {
            let (sum, n) = numbers().fold((0.0, 0u64), |(s, n), x| (s + x, n + 1));
            if n == 0 {
                Value::Null
            } else {
                number_value(sum / n as f64)
            }
        }
        AggregateFunction::Min => numbers().reduce(f64::min).map_or(Value::Null, number_value),
        AggregateFunction::Max => numbers().reduce(f64::max).map_or(Value::Null, number_value),
        AggregateFunction::First | AggregateFunction::FirstSeen => {
            let first = matching.reduce(|a, b| if b.timestamp() < a.timestamp() { b } else { a });
            match (aggregate.function, first) {
                (_, None) => Value::Null,
                (AggregateFunction::First, Some(e)) => property(e).unwrap_or(Value::Null),
                (_, Some(e)) => Value::String(format_timestamp(e.timestamp())),
            }
        }
        AggregateFunction::Last | AggregateFunction::LastSeen => {
            let last = matching.reduce(|a, b| if b.timestamp() >= a.timestamp() { b } else { a });
            match (aggregate.function, last) {
                (_, None) => Value::Null,
                (AggregateFunction::Last, Some(e)) => property(e).unwrap_or(Value::Null),
                (_, Some(e)) => Value::String(format_timestamp(e.timestamp())),
            }
        }
        AggregateFunction::MostFrequent
        | AggregateFunction::Unique
        | AggregateFunction::UniqueCount => {
            // Each distinct value with its number of occurrences and its latest occurrence,
            // as (timestamp, position in the slice).
            let mut tally: BTreeMap<Distinct, (u64, (DateTime<Utc>, usize))> = BTreeMap::new();
            let positioned = events.iter().enumerate().filter(|(_, e)| {
                aggregate.in_scope(e.timestamp(), now) && aggregate.filter.matches(*e)
            });
            for (i, e) in positioned {
                let Some(value) = property(e).as_ref().and_then(Distinct::of) else {
                    continue;
                };
                let seen = (e.timestamp(), i);
                let (n, latest) = tally.entry(value).or_insert((0, seen));
                *n += 1;
                *latest = (*latest).max(seen);
            }
            match aggregate.function {
                AggregateFunction::UniqueCount => Value::from(tally.len() as u64),
                AggregateFunction::Unique => tally.keys().map(Distinct::to_value).collect(),
                _ => tally
                    .iter()
                    .max_by_key(|(_, (n, latest))| (*n, *latest))
                    .map_or(Value::Null, |(v, _)| v.to_value()),
            }
        }
    }
}

/// A property value as `most_frequent`, `unique` and `unique_count` tell values apart.
///
/// Two values are the same when they are equal as JSON, except that numbers compare by numeric
/// value (`1` and `1.0` are one value, as are `0` and `-0`), also inside arrays and objects.
/// The derived order is the one `unique` lists values in: booleans (`false` first), numbers,
/// strings (byte order), arrays, then objects, the last two by their canonical text. Null is
/// not a value here: an event whose property is null or missing has none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Distinct {
    Bool(bool),
    Number(Number),
    String(String),
    /// The canonical text of the array (see [`canonical`]).
    Array(String),
    /// The canonical text of the object (see [`canonical`]).
    Object(String),
}

impl Distinct {
    /// `None` for null.
    pub(crate) fn of(value: &Value) -> Option<Distinct> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(b) => Distinct::Bool(*b),
            Value::Number(n) => Distinct::Number(Number::new(n.as_f64()?)?),
            Value::String(s) => Distinct::String(s.clone()),
            Value::Array(_) => Distinct::Array(canonical(value).to_string()),
            Value::Object(_) => Distinct::Object(canonical(value).to_string()),
        })
    }

    /// The value in canonical form: integer-valued numbers as integers, object keys sorted.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Distinct::Bool(b) => Value::Bool(*b),
            Distinct::Number(n) => number_value(n.get()),
            Distinct::String(s) => Value::String(s.clone()),
            Distinct::Array(text) | Distinct::Object(text) => {
                serde_json::from_str(text).expect("canonical text is JSON")
            }
        }
    }
}

/// Stored as the JSON value itself, so that the incremental state reads naturally.
impl Serialize for Distinct {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Distinct::of(&value).ok_or_else(|| serde::de::Error::custom("null is not a distinct value"))
    }
}

/// `value` with every number written as [`number_value`] writes it and object keys sorted, so
/// that values equal as [`Distinct`] have the same text. (Objects keep insertion order in
/// memory, and `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same JSON value.)
fn canonical(value: &Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, number_value),
        Value::Array(items) => items.iter().map(canonical).collect(),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// A JSON number, written as an integer when it is one.
pub(crate) fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// The earliest instant after `now` at which `aggregate` over `events` changes without any new
/// event: a matching event leaving the window, or a matching event stamped in the future
/// coming into scope. `None` if it cannot change until a new event arrives.
pub fn next_expiry<E: EventLike>(
    aggregate: &EventAggregate,
    events: &[E],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    events
        .iter()
        .filter(|e| aggregate.filter.matches(*e))
        .filter_map(|e| {
            let at = e.timestamp();
            if at > now {
                return Some(at);
            }
            let end = window_end(at, aggregate.window_seconds?)?;
            (end > now).then_some(end)
        })
        .min()
}

/// The earliest [`next_expiry`] among several aggregates (e.g. all of a segment's): when a
/// scheduler should evaluate the segment again if no event arrives.
pub fn next_reevaluation<E: EventLike>(
    aggregates: &[EventAggregate],
    events: &[E],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    aggregates
        .iter()
        .filter_map(|a| next_expiry(a, events, now))
        .min()
}

impl fmt::Display for EventAggregate {
    /// Canonical source text, e.g. `sum(properties.revenue, event == "Order Completed", within 30d)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.function.name())?;
        if let Some(p) = &self.property {
            write!(f, "{}, ", Path::Property(p.clone()))?;
        }
        self.filter.fmt_at(f, 1)?;
        if let Some(w) = self.window_seconds {
            let unit = [
                DurationUnit::Weeks,
                DurationUnit::Days,
                DurationUnit::Hours,
                DurationUnit::Minutes,
            ]
            .into_iter()
            .find(|u| w % u.seconds() == 0)
            .unwrap_or(DurationUnit::Seconds);
            write!(
                f,
                ", within {}",
                DurationLit {
                    amount: w / unit.seconds(),
                    unit
                }
            )?;
        }
        f.write_str(")")
    }
}

impl EventFilter {
    fn fmt_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let prec = match self {
            EventFilter::Or(_) => 1,
            EventFilter::And(_) => 2,
            EventFilter::Not(_) => 3,
            _ => 4,
        };
        if prec < min {
            f.write_str("(")?;
        }
        match self {
            EventFilter::All => f.write_str("true")?,
            EventFilter::Nothing => f.write_str("false")?,
            EventFilter::Not(inner) => {
                f.write_str("not ")?;
                inner.fmt_at(f, 3)?;
            }
            EventFilter::And(fs) | EventFilter::Or(fs) => {
                let word = if prec == 2 { " and " } else { " or " };
                for (i, x) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    x.fmt_at(f, prec + 1)?;
                }
            }
            EventFilter::Condition(c) => write!(f, "{c}")?,
        }
        if prec < min {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_at(f, 0)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            EventField::Name => f.write_str("event")?,
            EventField::Type => f.write_str("type")?,
            EventField::Property(p) => write!(f, "{}", Path::Property(p.clone()))?,
        }
        match &self.op {
            FilterOp::Eq(s) => write!(f, " == {s}"),
            FilterOp::Lt(s) => write!(f, " < {s}"),
            FilterOp::Le(s) => write!(f, " <= {s}"),
            FilterOp::Gt(s) => write!(f, " > {s}"),
            FilterOp::Ge(s) => write!(f, " >= {s}"),
            FilterOp::Contains(s) => write!(f, " contains {s}"),
            FilterOp::StartsWith(s) => write!(f, " starts_with {}", Scalar::String(s.clone())),
            FilterOp::IsNull => f.write_str(" is null"),
            FilterOp::In(items) => {
                f.write_str(" in [")?;
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Number(n) => write!(f, "{}", n.get()),
            Scalar::String(s) => write_string(f, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn function_names_are_their_serde_names() {
        for f in [
            AggregateFunction::Count,
            AggregateFunction::Sum,
            AggregateFunction::Avg,
            AggregateFunction::Min,
            AggregateFunction::Max,
            AggregateFunction::First,
            AggregateFunction::Last,
            AggregateFunction::FirstSeen,
            AggregateFunction::LastSeen,
            AggregateFunction::MostFrequent,
            AggregateFunction::Unique,
            AggregateFunction::UniqueCount,
        ] {
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.name()));
        }
    }

    #[test]
    fn distinct_values_compare_numbers_by_value_and_objects_by_content() {
        let d = |v: Value| Distinct::of(&v).unwrap();
        assert_eq!(d(json!(1)), d(json!(1.0)));
        assert_eq!(d(json!(0)), d(json!(-0.0)));
        assert_eq!(d(json!([1, {"a": 2.0}])), d(json!([1.0, {"a": 2}])));
        assert_eq!(d(json!({"a": 1, "b": 2})), d(json!({"b": 2, "a": 1})));
        assert_ne!(d(json!("1")), d(json!(1)));
        assert_eq!(Distinct::of(&json!(null)), None);
        assert_eq!(
            d(json!({"b": 2.0, "a": [1.5]})).to_value().to_string(),
            r#"{"a":[1.5],"b":2}"#
        );
    }

    #[test]
    fn distinct_values_sort_by_type_then_value() {
        let sorted = [
            json!(false),
            json!(true),
            json!(-3.5),
            json!(2),
            json!(10),
            json!(""),
            json!("B"),
            json!("a"),
            // Arrays and objects by their text: `]` and `}` sort after digits and quotes.
            json!([10]),
            json!([2]),
            json!([]),
            json!({"a": 1}),
            json!({}),
        ];
        let keys: Vec<Distinct> = sorted.iter().map(|v| Distinct::of(v).unwrap()).collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{:?} < {:?}", pair[0], pair[1]);
        }
        let back: Vec<Value> = keys.iter().map(Distinct::to_value).collect();
        assert_eq!(back, sorted);
    }

    #[test]
    fn distinct_values_serialise_as_themselves() {
        let d = Distinct::of(&json!({"k": [1.0, "x"]})).unwrap();
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"k":[1,"x"]}"#);
        assert_eq!(serde_json::from_str::<Distinct>(&text).unwrap(), d);
        assert!(serde_json::from_str::<Distinct>("null").is_err());
    }
}
