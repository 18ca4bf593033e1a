//! Journeys as pure logic: how a customer moves through waits, branches, splits, holdouts,
//! goals, exits and messages, decided with no I/O and no clock.
//!
//! A journey is written as a [`JourneySpec`] (JSON through the API), [`check`]ed into a
//! [`CheckedJourney`] whose errors name the node and field, and kept as numbered versions
//! ([`version`]). The engine calls [`enter`] when a trigger may put a customer in and
//! [`advance`] when something happens to a customer inside (an event, a timer, the profile
//! changing); both answer [`Decision`]s that the engine commits with its log offset and
//! acts on. [`sim`] runs the same machine over a list of inputs in memory: the reference
//! for tests and for previews of a draft over past events. [`stats`] folds decisions into
//! the flow of each step. The design is in `docs/design/journeys.md`.

pub mod caps;
pub mod check;
pub mod definition;
pub mod machine;
pub mod sim;
pub mod stats;
pub mod version;

pub use check::{CheckedJourney, FieldError, check};
pub use definition::{JourneySpec, Node, NodeId};
pub use machine::{
    Action, ActionKind, Ctx, Decision, EntryState, ExitReason, Input, Instance, JourneyEvent,
    NotEntered, Totals, Trigger, advance, enter,
};
