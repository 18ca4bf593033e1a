//! Evaluation of a segment expression for one profile.
//!
//! The evaluator knows the language; the engine knows where profile data lives. They meet at
//! [`EvalContext`], which the engine implements over its stores. Event history is never
//! scanned here: the context answers each [`EventAggregate`] (maintained incrementally by the
//! engine, or computed by [`compute_aggregate`] over a slice as [`ProfileSnapshot`] does).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::aggregate::{AggregateFunction, EventAggregate, HistoryEvent, compute_aggregate};
use super::ast::{AggregateKind, CompareOp, Expr, ExprKind, Literal, Path, ScalarFunction};
use super::diagnostic::Diagnostic;
use super::value::{Test, Val, in_list, lookup, test};

/// What the evaluator may ask about the profile being evaluated.
pub trait EvalContext {
    /// The top-level trait `name` (`traits.address.city` asks for `address`).
    fn trait_value(&self, name: &str) -> Option<&Value>;
    /// The computed trait `name`, if it has a value.
    fn computed_trait(&self, name: &str) -> Option<Value>;
    /// The traits object of each account (B2B group) the profile belongs to.
    fn account_traits(&self) -> Vec<&Value>;
    /// Whether consent for `purpose` is granted. Unknown purposes are not granted.
    fn consent(&self, purpose: &str) -> bool;
    /// Every identifier of type `kind` (e.g. `email`) the profile holds.
    fn identifiers(&self, kind: &str) -> Vec<&str>;
    /// Whether the profile is currently a member of segment `name`.
    fn in_segment(&self, name: &str) -> bool;
    /// The value of `aggregate` over the profile's events at `now`, as
    /// [`compute_aggregate`] defines it (counts are integers, timestamps RFC 3339 strings).
    fn aggregate(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Value;
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression was not type-checked and cannot be evaluated as written.
    #[error("cannot evaluate segment: {0}")]
    Invalid(Diagnostic),
}

/// Whether the profile behind `ctx` belongs to the segment `expr` at `now`.
///
/// Run [`super::check`] first: an expression that passed it only fails here if it is not the
/// expression that was checked.
pub fn evaluate(expr: &Expr, ctx: &dyn EvalContext, now: DateTime<Utc>) -> Result<bool, EvalError> {
    Evaluator { ctx, now }.condition(expr)
}

struct Evaluator<'a> {
    ctx: &'a dyn EvalContext,
    now: DateTime<Utc>,
}

fn invalid(message: impl Into<String>, e: &Expr) -> EvalError {
    EvalError::Invalid(Diagnostic::new(message, e.span))
}

impl Evaluator<'_> {
    fn condition(&self, e: &Expr) -> Result<bool, EvalError> {
        Ok(match &e.kind {
            ExprKind::Not(inner) => !self.condition(inner)?,
            ExprKind::And(es) => {
                for x in es {
                    if !self.condition(x)? {
                        return Ok(false);
                    }
                }
                true
            }
            ExprKind::Or(es) => {
                for x in es {
                    if self.condition(x)? {
                        return Ok(true);
                    }
                }
                false
            }
            ExprKind::Compare { op, lhs, rhs } => {
                let (a, b) = (self.value(lhs)?, self.value(rhs)?);
                match op {
                    CompareOp::Eq => test(Test::Eq, &a, &b),
                    CompareOp::Ne => !test(Test::Eq, &a, &b),
                    CompareOp::Lt => test(Test::Lt, &a, &b),
                    CompareOp::Le => test(Test::Le, &a, &b),
                    CompareOp::Gt => test(Test::Gt, &a, &b),
                    CompareOp::Ge => test(Test::Ge, &a, &b),
                    CompareOp::Contains => test(Test::Contains, &a, &b),
                    CompareOp::StartsWith => test(Test::StartsWith, &a, &b),
                }
            }
            ExprKind::In {
                negated,
                lhs,
                items,
            } => {
                let a = self.value(lhs)?;
                let items: Vec<Val> = items.iter().map(|i| Val::from_literal(&i.node)).collect();
                in_list(&a, &items) != *negated
            }
            ExprKind::IsNull { negated, expr } => self.value(expr)?.is_null() != *negated,
            _ => self.value(e)?.truthy(),
        })
    }

    fn value(&self, e: &Expr) -> Result<Val, EvalError> {
        Ok(match &e.kind {
            ExprKind::Literal(l) => Val::from_literal(l),
            ExprKind::Path(p) => self.path(p, e)?,
            ExprKind::Not(_)
            | ExprKind::And(_)
            | ExprKind::Or(_)
            | ExprKind::Compare { .. }
            | ExprKind::In { .. }
            | ExprKind::IsNull { .. } => Val::Bool(self.condition(e)?),
            ExprKind::Aggregate(call) => {
                let agg = EventAggregate::from_call(call).map_err(EvalError::Invalid)?;
                let v = self.ctx.aggregate(&agg, self.now);
                match (call.kind, agg.function) {
                    (AggregateKind::Exists, _) => Val::Bool(v.as_f64().is_some_and(|n| n > 0.0)),
                    (
                        _,
                        AggregateFunction::Count
                        | AggregateFunction::Sum
                        | AggregateFunction::UniqueCount,
                    ) => Val::Num(v.as_f64().unwrap_or(0.0)),
                    (
                        _,
                        AggregateFunction::Avg | AggregateFunction::Min | AggregateFunction::Max,
                    ) => v.as_f64().map_or(Val::Null, Val::Num),
                    (
                        _,
                        AggregateFunction::First
                        | AggregateFunction::Last
                        | AggregateFunction::MostFrequent
                        | AggregateFunction::Unique,
                    ) => Val::from_json(&v),
                    (_, AggregateFunction::FirstSeen | AggregateFunction::LastSeen) => {
                        Val::from_json(&v).as_timestamp().map_or(Val::Null, Val::Ts)
                    }
                }
            }
            ExprKind::Call { function, args } => {
                let arg = args.first().ok_or_else(|| {
                    invalid(format!("{}() needs an argument", function.name()), e)
                })?;
                let name = || match &arg.kind {
                    ExprKind::Literal(Literal::String(s)) => Ok(s.as_str()),
                    _ => Err(invalid(
                        format!("{}() takes a string literal", function.name()),
                        arg,
                    )),
                };
                match function {
                    ScalarFunction::InSegment => Val::Bool(self.ctx.in_segment(name()?)),
                    ScalarFunction::HasIdentifier => {
                        Val::Bool(!self.ctx.identifiers(name()?).is_empty())
                    }
                    ScalarFunction::Timestamp => {
                        self.value(arg)?.as_timestamp().map_or(Val::Null, Val::Ts)
                    }
                    ScalarFunction::Since => match self.value(arg)?.as_timestamp() {
                        Some(t) => Val::Dur((self.now - t).num_milliseconds()),
                        None => Val::Null,
                    },
                    ScalarFunction::DaysSince => match self.value(arg)?.as_timestamp() {
                        Some(t) => {
                            Val::Num((self.now - t).num_milliseconds().div_euclid(86_400_000) as f64)
                        }
                        None => Val::Null,
                    },
                    ScalarFunction::Ago => match self.value(arg)? {
                        Val::Dur(ms) => TimeDelta::try_milliseconds(ms)
                            .and_then(|d| self.now.checked_sub_signed(d))
                            .map_or(Val::Null, Val::Ts),
                        _ => return Err(invalid("ago() needs a duration such as 30d", arg)),
                    },
                }
            }
        })
    }

    fn path(&self, p: &Path, e: &Expr) -> Result<Val, EvalError> {
        Ok(match p {
            Path::Trait(segments) => segments
                .split_first()
                .and_then(|(first, rest)| lookup(self.ctx.trait_value(first)?, rest))
                .map_or(Val::Null, Val::from_json),
            Path::Computed(name) => self
                .ctx
                .computed_trait(name)
                .as_ref()
                .map_or(Val::Null, Val::from_json),
            Path::AccountTrait(segments) => Val::many(
                self.ctx
                    .account_traits()
                    .into_iter()
                    .filter_map(|traits| lookup(traits, segments))
                    .map(Val::from_json),
            ),
            Path::Identifier(kind) => Val::many(
                self.ctx
                    .identifiers(kind)
                    .into_iter()
                    .map(|s| Val::Str(s.to_string())),
            ),
            Path::Consent(purpose) => Val::Bool(self.ctx.consent(purpose)),
            Path::EventName | Path::EventType | Path::Property(_) => {
                return Err(invalid(
                    format!("event field {p} outside an event filter"),
                    e,
                ));
            }
        })
    }
}

/// A whole profile in memory: the reference [`EvalContext`], used for tests, previews and
/// backfill. Aggregates are computed from `events` with [`compute_aggregate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileSnapshot {
    pub traits: Map<String, Value>,
    pub computed: Map<String, Value>,
    /// Each account's traits object.
    pub accounts: Vec<Value>,
    pub consent: BTreeMap<String, bool>,
    pub identifiers: BTreeMap<String, Vec<String>>,
    pub segments: BTreeSet<String>,
    pub events: Vec<HistoryEvent>,
}

impl EvalContext for ProfileSnapshot {
    fn trait_value(&self, name: &str) -> Option<&Value> {
        self.traits.get(name)
    }
    fn computed_trait(&self, name: &str) -> Option<Value> {
        self.computed.get(name).cloned()
    }
    fn account_traits(&self) -> Vec<&Value> {
        self.accounts.iter().collect()
    }
    fn consent(&self, purpose: &str) -> bool {
        self.consent.get(purpose).copied().unwrap_or(false)
    }
    fn identifiers(&self, kind: &str) -> Vec<&str> {
        self.identifiers
            .get(kind)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
    fn in_segment(&self, name: &str) -> bool {
        self.segments.contains(name)
    }
    fn aggregate(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Value {
        compute_aggregate(aggregate, &self.events, now)
    }
}
