//! Destinations — the systems Rapport delivers to (webhooks, another tracking API, a
//! PostgreSQL warehouse) — as pure logic: what a destination is and how its definition is
//! checked ([`definition`]), which messages it receives ([`selection`]), the bodies sent
//! ([`payload`]), their signatures ([`signing`]), what to do after an attempt
//! ([`retry`]), the hourly delivery overview ([`overview`]) and the warehouse's tables and
//! columns ([`warehouse`]).
//!
//! Nothing here performs I/O or reads a clock: the delivery workers in `rapport-engine`
//! pass `now`, send the requests and keep the state; the decisions are made here, where
//! they can be tested exhaustively.

pub mod definition;
pub mod overview;
pub mod payload;
pub mod retry;
pub mod selection;
pub mod signing;
pub mod warehouse;

pub use definition::{Checked, ConsentRule, DestinationSpec, Kind, SpecError, WhenUndecided};
