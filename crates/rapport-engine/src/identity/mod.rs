//! Identity administration around the processor: the per-workspace rules, and
//! probabilistic matching of live profiles with its review queue.
//!
//! Resolution itself is pure and lives in `rapport_core::identity`; the processor applies
//! it event by event. What lives here is what people and jobs do *to* identity between
//! events: edit the rules ([`rules`]), find profiles that are one person although they
//! share no identifier ([`matching`], run by [`runner`] on demand or on a schedule), and
//! decide the uncertain cases ([`review`]). Every rules change and merge decided here
//! reaches the profiles only through the log ([`control`]), so that the processor stays the
//! only writer of the graph and a replay of the log rebuilds it.

pub mod control;
pub mod matching;
pub mod review;
pub mod rules;
pub mod runner;
