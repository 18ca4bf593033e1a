//! The segment expression language: how marketers describe an audience, such as
//! `traits.plan == "pro" and count(event == "Order Completed", within 30d) >= 2 and not
//! in_segment("churned")`.
//!
//! The pipeline is [`parse`] (text to a spanned [`Expr`]), [`check`] against a [`Schema`] when
//! the segment is defined (or [`compile`] for both), then [`evaluate`] for each profile through
//! an [`EvalContext`] the engine implements. Event history enters only as
//! [`EventAggregate`]s, normalised and hashable, so the engine can maintain them incrementally;
//! [`compute_aggregate`] is their reference definition and [`next_expiry`] tells a scheduler
//! when a windowed aggregate changes with no new event; [`AggregateState`] is the per-profile
//! state that keeps one up to date event by event and agrees with both.
//!
//! The user-facing reference is `docs/segment-language.md`.
//!
//! Everything here is pure: no I/O, and `now` is always passed in.

mod aggregate;
mod ast;
mod check;
mod diagnostic;
mod eval;
mod incremental;
mod lexer;
mod parser;
mod value;

pub use aggregate::{
    AggregateFunction, Condition, EVENT_TYPES, EventAggregate, EventField, EventFilter, EventLike,
    FilterOp, HistoryEvent, Number, Scalar, compute_aggregate, format_timestamp, next_expiry,
    next_reevaluation,
};
pub use ast::{
    AggregateCall, AggregateKind, CompareOp, DurationLit, DurationUnit, Expr, ExprKind, Literal,
    Path, ScalarFunction,
};
pub use check::{CheckedSegment, Schema, Type, check, find_cycle};
pub use diagnostic::{Diagnostic, SegmentError, Span, Spanned};
pub use eval::{EvalContext, EvalError, ProfileSnapshot, evaluate};
pub use incremental::AggregateState;
pub use parser::{MAX_NESTING, parse};
pub use value::parse_timestamp;

/// Parses and type-checks the definition of segment `name` (pass `None` for an anonymous
/// preview): what the API calls when a segment is saved.
pub fn compile(
    source: &str,
    schema: &Schema,
    name: Option<&str>,
) -> Result<CheckedSegment, SegmentError> {
    let expr = parse(source).map_err(SegmentError::Syntax)?;
    check(&expr, schema, name).map_err(SegmentError::Type)
}
