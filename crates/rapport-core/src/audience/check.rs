//! The type checker, run when a segment is defined.
//!
//! Mistakes such as `count(…) == "x"`, an unknown computed trait or a reference to a segment
//! that does not exist must be refused when the marketer saves the segment, not discovered as
//! an always-empty audience later. Traits are free-form JSON, so comparisons involving them
//! are permissive; everything else has a static type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::aggregate::EventAggregate;
use super::ast::{AggregateKind, CompareOp, Expr, ExprKind, Literal, Path, ScalarFunction};
use super::diagnostic::{Diagnostic, Span};
use super::value::parse_timestamp;

/// The static type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Type {
    Bool,
    Number,
    String,
    Timestamp,
    Duration,
    List,
    Null,
    /// Free-form JSON (traits, event properties): any comparison is allowed.
    Any,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "boolean",
            Type::Number => "number",
            Type::String => "string",
            Type::Timestamp => "timestamp",
            Type::Duration => "duration",
            Type::List => "list",
            Type::Null => "null",
            Type::Any => "trait value",
        })
    }
}

/// What the caller knows when a segment is defined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Computed trait names and the type of their values.
    pub computed_traits: BTreeMap<String, Type>,
    /// Names of the segments that exist.
    pub segments: BTreeSet<String>,
}

impl Schema {
    pub fn new() -> Self {
        Schema::default()
    }

    pub fn with_computed_trait(mut self, name: impl Into<String>, ty: Type) -> Self {
        self.computed_traits.insert(name.into(), ty);
        self
    }

    pub fn with_segment(mut self, name: impl Into<String>) -> Self {
        self.segments.insert(name.into());
        self
    }
}

/// A segment expression that passed the type checker, with what the engine needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedSegment {
    /// The expression to evaluate: as parsed, except that computed traits declared as
    /// timestamps are read through `timestamp(…)`.
    pub expr: Expr,
    /// The segments named by `in_segment(…)`, for the caller's cycle check
    /// (see [`super::find_cycle`]).
    pub references: BTreeSet<String>,
    /// The event aggregates the expression reads, without duplicates, in source order.
    pub aggregates: Vec<EventAggregate>,
    /// Whether membership can change with time alone (windows, `since`, `days_since`, `ago`),
    /// so a scheduler must re-evaluate it.
    pub time_dependent: bool,
}

/// Checks `expr` against `schema`. `name` is the segment being defined, if known, so that a
/// reference to itself is refused. Returns every problem found, in source order.
pub fn check(
    expr: &Expr,
    schema: &Schema,
    name: Option<&str>,
) -> Result<CheckedSegment, Vec<Diagnostic>> {
    let mut c = Checker {
        schema,
        name,
        errors: Vec::new(),
    };
    let ty = c.infer(expr);
    if !matches!(ty, Some(Type::Bool | Type::Any) | None) {
        let ty = ty.expect("matched above");
        c.error(
            format!("a segment condition must be true or false, found a {ty}: {expr}"),
            expr.span,
        );
    }
    if !c.errors.is_empty() {
        c.errors.sort_by_key(|d| d.span.start);
        return Err(c.errors);
    }
    Ok(CheckedSegment {
        references: expr.segment_references(),
        aggregates: expr.event_aggregates(),
        time_dependent: expr.is_time_dependent(),
        expr: read_timestamps(expr, schema),
    })
}

/// Computed traits declared as timestamps arrive from the context as JSON strings; wrapping
/// them in `timestamp(…)` makes comparisons with dates compare instants, not text.
fn read_timestamps(e: &Expr, schema: &Schema) -> Expr {
    let go = |x: &Expr| read_timestamps(x, schema);
    let boxed = |x: &Expr| Box::new(read_timestamps(x, schema));
    let kind = match &e.kind {
        ExprKind::Path(Path::Computed(name))
            if schema.computed_traits.get(name) == Some(&Type::Timestamp) =>
        {
            ExprKind::Call {
                function: ScalarFunction::Timestamp,
                args: vec![e.clone()],
            }
        }
        ExprKind::Literal(_) | ExprKind::Path(_) | ExprKind::Aggregate(_) => e.kind.clone(),
        ExprKind::Not(x) => ExprKind::Not(boxed(x)),
        ExprKind::And(xs) => ExprKind::And(xs.iter().map(go).collect()),
        ExprKind::Or(xs) => ExprKind::Or(xs.iter().map(go).collect()),
        ExprKind::Compare { op, lhs, rhs } => ExprKind::Compare {
            op: *op,
            lhs: boxed(lhs),
            rhs: boxed(rhs),
        },
        ExprKind::In {
            negated,
            lhs,
            items,
        } => ExprKind::In {
            negated: *negated,
            lhs: boxed(lhs),
            items: items.clone(),
        },
        ExprKind::IsNull { negated, expr } => ExprKind::IsNull {
            negated: *negated,
            expr: boxed(expr),
        },
        ExprKind::Call { function, args } => ExprKind::Call {
            function: *function,
            args: args.iter().map(go).collect(),
        },
    };
    Expr::new(kind, e.span)
}

struct Checker<'a> {
    schema: &'a Schema,
    name: Option<&'a str>,
    errors: Vec<Diagnostic>,
}

fn string_literal(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn literal_type(l: &Literal) -> Type {
    match l {
        Literal::Null => Type::Null,
        Literal::Bool(_) => Type::Bool,
        Literal::Number(_) => Type::Number,
        Literal::String(_) => Type::String,
        Literal::Duration(_) => Type::Duration,
    }
}

impl Checker<'_> {
    fn error(&mut self, message: impl Into<String>, span: Span) {
        self.errors.push(Diagnostic::new(message, span));
    }

    /// The type of `e`, or `None` if an error was recorded below it.
    fn infer(&mut self, e: &Expr) -> Option<Type> {
        match &e.kind {
            ExprKind::Literal(l) => Some(literal_type(l)),
            ExprKind::Path(p) => self.path(p, e.span),
            ExprKind::Not(inner) => {
                self.condition(inner, "'not'");
                Some(Type::Bool)
            }
            ExprKind::And(es) | ExprKind::Or(es) => {
                let word = if matches!(e.kind, ExprKind::And(_)) {
                    "'and'"
                } else {
                    "'or'"
                };
                for x in es {
                    self.condition(x, word);
                }
                Some(Type::Bool)
            }
            ExprKind::Compare { op, lhs, rhs } => {
                let l = self.infer(lhs);
                let r = self.infer(rhs);
                if let (Some(l), Some(r)) = (l, r) {
                    self.compare(*op, (lhs, l), (rhs, r), e.span);
                }
                Some(Type::Bool)
            }
            ExprKind::In { lhs, items, .. } => {
                if let Some(l) = self.infer(lhs) {
                    for item in items {
                        let it = literal_type(&item.node);
                        if !self.equatable(l, it, Some(&item.node)) {
                            self.error(
                                format!(
                                    "cannot look for a {l} ({lhs}) in a list holding {}",
                                    item.node
                                ),
                                item.span,
                            );
                        }
                    }
                }
                Some(Type::Bool)
            }
            ExprKind::IsNull { expr, .. } => {
                self.infer(expr);
                Some(Type::Bool)
            }
            ExprKind::Aggregate(call) => {
                if let Err(d) = EventAggregate::from_call(call) {
                    self.errors.push(d);
                    return None;
                }
                Some(match call.kind {
                    AggregateKind::Count
                    | AggregateKind::Sum
                    | AggregateKind::Avg
                    | AggregateKind::Min
                    | AggregateKind::Max
                    | AggregateKind::UniqueCount => Type::Number,
                    AggregateKind::Exists => Type::Bool,
                    AggregateKind::First | AggregateKind::Last | AggregateKind::MostFrequent => {
                        Type::Any
                    }
                    AggregateKind::Unique => Type::List,
                    AggregateKind::FirstSeen | AggregateKind::LastSeen => Type::Timestamp,
                })
            }
            ExprKind::Call { function, args } => self.call(*function, args, e.span),
        }
    }

    fn path(&mut self, p: &Path, span: Span) -> Option<Type> {
        match p {
            Path::Trait(_) | Path::AccountTrait(_) => Some(Type::Any),
            Path::Identifier(_) => Some(Type::String),
            Path::Consent(_) => Some(Type::Bool),
            Path::Computed(name) => match self.schema.computed_traits.get(name) {
                Some(ty) => Some(*ty),
                None => {
                    let known: Vec<&str> = self
                        .schema
                        .computed_traits
                        .keys()
                        .map(String::as_str)
                        .collect();
                    let hint = if known.is_empty() {
                        "no computed traits are defined".to_string()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    self.error(format!("unknown computed trait '{name}' ({hint})"), span);
                    None
                }
            },
            Path::EventName | Path::EventType | Path::Property(_) => {
                self.error(
                    format!("event field {p} can only be used inside an event filter, e.g. count({p} == …)"),
                    span,
                );
                None
            }
        }
    }

    fn condition(&mut self, e: &Expr, context: &str) {
        match self.infer(e) {
            Some(Type::Bool | Type::Any) | None => {}
            Some(ty) => self.error(
                format!("{context} needs true/false conditions, found a {ty}: {e}"),
                e.span,
            ),
        }
    }

    /// Whether `==` between these types can ever hold. `lit` is the right-hand literal, if
    /// any, so that date strings compared with timestamps are checked.
    fn equatable(&mut self, l: Type, r: Type, lit: Option<&Literal>) -> bool {
        match (l, r) {
            (Type::Any, _) | (_, Type::Any) | (Type::Null, _) | (_, Type::Null) => true,
            (Type::Timestamp, Type::String) | (Type::String, Type::Timestamp) => match lit {
                Some(Literal::String(s)) => parse_timestamp(s).is_some(),
                _ => true,
            },
            (a, b) => a == b,
        }
    }

    fn compare(
        &mut self,
        op: CompareOp,
        (lhs, l): (&Expr, Type),
        (rhs, r): (&Expr, Type),
        span: Span,
    ) {
        // A date string compared with a timestamp must be a valid date.
        for (e, other) in [(lhs, r), (rhs, l)] {
            if other == Type::Timestamp
                && let Some(s) = string_literal(e)
                && parse_timestamp(s).is_none()
            {
                self.error(
                    format!("\"{s}\" is not a date or timestamp (expected YYYY-MM-DD or RFC 3339, e.g. 2024-05-01T12:00:00Z)"),
                    e.span,
                );
                return;
            }
        }
        let ok = match op {
            CompareOp::Eq | CompareOp::Ne => self.equatable(l, r, None),
            CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => matches!(
                (l, r),
                (Type::Number, Type::Number)
                    | (Type::String, Type::String)
                    | (Type::Timestamp, Type::Timestamp | Type::String)
                    | (Type::String, Type::Timestamp)
                    | (Type::Duration, Type::Duration)
                    | (
                        Type::Any,
                        Type::Number | Type::String | Type::Timestamp | Type::Any
                    )
                    | (Type::Number | Type::String | Type::Timestamp, Type::Any)
            ),
            CompareOp::Contains => match l {
                Type::String => matches!(r, Type::String | Type::Any),
                Type::List | Type::Any => {
                    matches!(r, Type::String | Type::Number | Type::Bool | Type::Any)
                }
                _ => false,
            },
            CompareOp::StartsWith => {
                matches!(l, Type::String | Type::Any) && matches!(r, Type::String | Type::Any)
            }
        };
        if !ok {
            let hint = match (l, r) {
                (Type::Duration, _) | (_, Type::Duration) => {
                    "; durations compare with since(…), e.g. since(last_seen(type == \"page\")) > 30d"
                }
                _ => "",
            };
            self.error(
                format!(
                    "cannot compare a {l} ({lhs}) with a {r} ({rhs}) using '{}'{hint}",
                    op.symbol()
                ),
                span,
            );
        }
    }

    fn call(&mut self, f: ScalarFunction, args: &[Expr], span: Span) -> Option<Type> {
        let arg = args.first()?;
        match f {
            ScalarFunction::InSegment | ScalarFunction::HasIdentifier => {
                let Some(name) = string_literal(arg) else {
                    self.error(
                        format!(
                            "{}() takes a name as a string literal: {}",
                            f.name(),
                            f.usage()
                        ),
                        arg.span,
                    );
                    return None;
                };
                if f == ScalarFunction::InSegment {
                    if Some(name) == self.name {
                        self.error(format!("segment '{name}' cannot refer to itself"), span);
                        return None;
                    }
                    if !self.schema.segments.contains(name) {
                        self.error(format!("unknown segment '{name}'"), arg.span);
                        return None;
                    }
                }
                Some(Type::Bool)
            }
            ScalarFunction::Since | ScalarFunction::DaysSince | ScalarFunction::Timestamp => {
                let ty = self.infer(arg)?;
                let ok = match ty {
                    Type::Timestamp | Type::Any => true,
                    Type::String => match string_literal(arg) {
                        Some(s) if parse_timestamp(s).is_none() => {
                            self.error(
                                format!("\"{s}\" is not a date or timestamp (expected YYYY-MM-DD or RFC 3339)"),
                                arg.span,
                            );
                            return None;
                        }
                        _ => true,
                    },
                    _ => false,
                };
                if !ok {
                    self.error(
                        format!("{}() needs a timestamp, found a {ty}: {arg}", f.name()),
                        arg.span,
                    );
                    return None;
                }
                Some(match f {
                    ScalarFunction::Since => Type::Duration,
                    ScalarFunction::DaysSince => Type::Number,
                    _ => Type::Timestamp,
                })
            }
            ScalarFunction::Ago => {
                let ty = self.infer(arg)?;
                if ty != Type::Duration {
                    self.error(
                        format!("ago() needs a duration such as 30d, found a {ty}: {arg}"),
                        arg.span,
                    );
                    return None;
                }
                Some(Type::Timestamp)
            }
        }
    }
}

impl Expr {
    /// The segments named by `in_segment("…")`.
    pub fn segment_references(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.walk(&mut |e| {
            if let ExprKind::Call {
                function: ScalarFunction::InSegment,
                args,
            } = &e.kind
                && let Some(name) = args.first().and_then(string_literal)
            {
                out.insert(name.to_string());
            }
        });
        out
    }

    /// The well-formed event aggregates of the expression, normalised, without duplicates, in
    /// source order.
    pub fn event_aggregates(&self) -> Vec<EventAggregate> {
        let mut out: Vec<EventAggregate> = Vec::new();
        self.walk(&mut |e| {
            if let ExprKind::Aggregate(call) = &e.kind
                && let Ok(agg) = EventAggregate::from_call(call)
                && !out.contains(&agg)
            {
                out.push(agg);
            }
        });
        out
    }

    /// Whether the value can change with the passing of time alone.
    pub fn is_time_dependent(&self) -> bool {
        let mut yes = false;
        self.walk(&mut |e| match &e.kind {
            ExprKind::Aggregate(call) if call.window.is_some() => yes = true,
            ExprKind::Call {
                function: ScalarFunction::Since | ScalarFunction::DaysSince | ScalarFunction::Ago,
                ..
            } => yes = true,
            _ => {}
        });
        yes
    }
}

/// Looks for a cycle of `in_segment` references that defining `name` with `references` would
/// close. `existing` maps each defined segment to the segments it references. Returns the
/// cycle as a path from `name` back to `name`.
pub fn find_cycle(
    name: &str,
    references: &BTreeSet<String>,
    existing: &BTreeMap<String, BTreeSet<String>>,
) -> Option<Vec<String>> {
    // Depth-first search from `name`'s references, iteratively to stay safe on long chains.
    let mut stack: Vec<(String, Vec<String>)> = references
        .iter()
        .map(|r| (r.clone(), vec![name.to_string(), r.clone()]))
        .collect();
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        if node == name {
            return Some(path);
        }
        if !seen.insert(node.clone()) {
            continue;
        }
        for next in existing.get(&node).into_iter().flatten() {
            let mut p = path.clone();
            p.push(next.clone());
            stack.push((next.clone(), p));
        }
    }
    None
}
