//! Rapport's domain core: the event model of the Segment tracking spec, its validation,
//! and the rules that turn events into customer profiles and audiences.
//!
//! Nothing in this crate touches a file, a socket or the clock: callers pass `now`, so every
//! rule can be tested with plain data.

pub mod audience;
pub mod consent;
pub mod event;
pub mod histogram;
pub mod identity;
pub mod rfm;
