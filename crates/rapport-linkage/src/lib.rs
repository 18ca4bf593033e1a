//! Probabilistic record linkage (Fellegi–Sunter) for Rapport.
//!
//! Imported customer records often share no key: the same person appears as
//! "Jon Smith, 12 High St" in one file and "John Smyth, 12 High Street" in another. This
//! crate finds such records with the Fellegi–Sunter model:
//!
//! 1. [`blocking`] proposes candidate pairs (records sharing a postcode, a surname sound
//!    code and birth year, …), several passes unioned;
//! 2. [`compare`] turns each pair into a comparison vector of per-field agreement levels;
//! 3. [`em`] estimates, without labels, how likely each level is among matches (m) and
//!    non-matches (u);
//! 4. [`model`] scores each pair with the weights `log2(m / u)`, a posterior probability,
//!    and a decision (match / review / non-match) with an explanation;
//! 5. [`cluster`] joins matched pairs transitively into entities.
//!
//! [`Linker`] runs the whole pipeline for deduplication ([`Linker::dedupe`]) or linkage of
//! two data sets ([`Linker::link`]). The crate is pure: no I/O, no clock; work over
//! candidate pairs is spread over threads with `rayon`.
//!
//! ```
//! use rapport_linkage::*;
//!
//! let schema = Schema::new(["given_name", "surname", "postcode"]);
//! let mut data = Dataset::new(schema);
//! data.push("a", &[Some("John"), Some("Smith"), Some("2000")]).unwrap();
//! data.push("b", &[Some("Jon"), Some("Smith"), Some("2000")]).unwrap();
//! data.push("c", &[Some("Mary"), Some("Jones"), Some("2000")]).unwrap();
//!
//! let spec = LinkageSpec {
//!     comparisons: vec![
//!         FieldComparison::jaro_winkler("given_name", &[1.0, 0.88]),
//!         FieldComparison::jaro_winkler("surname", &[1.0, 0.88]),
//!     ],
//!     blocking: vec![BlockingRule::new("postcode").on("postcode", KeyTransform::Value)],
//!     blocking_options: BlockingOptions::default(),
//!     em: EmOptions::default(),
//!     thresholds: ThresholdPolicy::default(),
//! };
//! let result = Linker::new(spec).unwrap().dedupe(&data).unwrap();
//! assert_eq!(result.pairs().len(), 3);
//! let why = result.explain(0, &data, &data);
//! assert_eq!(why.fields.len(), 2);
//! ```

pub mod blocking;
pub mod cluster;
pub mod compare;
pub mod dataset;
pub mod em;
pub mod error;
pub mod linker;
pub mod model;
pub mod phonetic;

pub use blocking::{
    BlockingOptions, BlockingRule, BlockingStats, KeyPart, KeyTransform, RuleStats,
};
pub use cluster::{UnionFind, clusters};
pub use compare::{Comparator, FieldComparison, Level};
pub use dataset::{Dataset, Schema, normalize};
pub use em::{EmOptions, Parameters, PatternTable, estimate};
pub use error::{LinkageError, Result};
pub use linker::{LinkageResult, LinkageSpec, Linker, Mode, ScoredPair};
pub use model::{Decision, FieldEvidence, Model, PairExplanation, ThresholdPolicy, Thresholds};
pub use phonetic::soundex;
