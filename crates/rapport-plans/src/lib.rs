//! Tracking plans as pure logic: what a source promises to send, and how a message measures
//! up to it. A plan holds a JSON Schema per track event name (for its `properties`), one
//! for the traits of identify calls and one for group calls, what to do with track events
//! the plan does not name, and a mode per rule — `allow` (stored, the violation counted),
//! `flag` (stored, the violations recorded with the event) or `block` (refused, naming the
//! field). See `docs/tracking-plans.md`.
//!
//! A crate of its own rather than a module of `rapport-core`: it brings the JSON Schema
//! implementation (`boon`), which neither the event model nor the fuzz targets, which
//! build `rapport-core`, need. Like the core it touches no file, socket or clock: schemas
//! are compiled from the plan alone (a `$ref` to anything outside the schema is refused at
//! save time, never fetched) and callers pass the time of what they record.
//!
//! - [`plan`]: the definition as written and stored, its compilation (the one place that
//!   says whether a schema is valid) and the check of one message;
//! - [`report`]: the violations report of a source, aggregated per event name, with a few
//!   recent examples that name fields, never values.

pub mod plan;
pub mod report;

pub use plan::{Check, CompiledPlan, Message, Mode, Outcome, PlanError, Rule, TrackingPlan};
pub use plan::{Subject, SubjectKind, Violation};
pub use report::{Example, ReportEntry};
