//! Identity resolution: the rules that keep one profile per person.
//!
//! Every event names its sender in several ways — a user id, a cookie's anonymous id, an
//! e-mail in the traits, a device id in the context. This module turns those into
//! normalised identifiers ([`identifier`], [`extract`]), decides under per-workspace
//! [`rules`] which profile the event belongs to and which profiles it merges
//! ([`resolve`]), keeps traits last-write-wins ([`traits`]) and records why, so that
//! every merge can be explained ([`explain`]). [`memory`] is an in-memory graph and the
//! reference model for storage backends.
//!
//! It is pure: no I/O, no clock (the event's timestamp is "now"), no randomness (the caller
//! passes the id of any new profile). The engine calls [`resolve_event`] once per event, in
//! log order, and persists the returned [`GraphChange`]s before the next one.

pub mod explain;
pub mod extract;
pub mod identifier;
pub mod memory;
pub mod resolve;
pub mod rules;
pub mod traits;

pub use explain::{
    IdentityEvent, IdentityLog, IdentityLogEntry, MergeReason, PROBABILISTIC_MATCH, Refusal,
    RefusalReason,
};
pub use extract::{
    EventMeta, Extracted, ExtractedIdentifier, TraitUpdates, extract, object_map, trait_updates,
};
pub use identifier::{
    Identifier, IdentifierKind, NormaliseError, normalise_email, normalise_phone,
};
pub use memory::MemoryGraph;
pub use resolve::{
    AccountLink, GraphChange, GraphView, IdentifierRecord, Merge, ProfileId, Resolution,
    SourceRestriction, resolve, resolve_event, resolve_restricted,
};
pub use rules::{IdentifierRule, IdentityRules, RulesError};
pub use traits::{AccountProfile, ProfileTraits, TraitValue};
