//! Errors of the linkage crate.
//!
//! Exists so that callers (the import and identity layers) can map every failure of a
//! linkage run to a stable code without parsing messages. Every error names the field or
//! rule at fault where there is one.

use thiserror::Error;

/// Everything that can go wrong when configuring or running a linkage.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LinkageError {
    /// A comparison or blocking rule names a field the schema does not have.
    #[error("unknown field `{field}`")]
    UnknownField {
        /// The field name as given.
        field: String,
    },
    /// A record was pushed with a different number of values than the schema has fields.
    #[error("record `{record}` has {got} values but the schema has {expected} fields")]
    ArityMismatch {
        /// External id of the offending record.
        record: String,
        /// Number of fields in the schema.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// The two data sets of a linkage do not have the same schema.
    #[error("the two data sets have different schemas")]
    SchemaMismatch,
    /// A comparison has no agreement threshold, too many, or thresholds out of order/range.
    #[error("invalid levels for field `{field}`: {reason}")]
    InvalidLevels {
        /// The field whose comparison is misconfigured.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The spec has no comparison at all.
    #[error("the linkage spec has no field comparison")]
    NoComparisons,
    /// The spec has no blocking rule (comparing all pairs is never what production wants).
    #[error("the linkage spec has no blocking rule")]
    NoBlockingRules,
    /// A blocking rule has no key part.
    #[error("blocking rule `{rule}` has no key part")]
    EmptyBlockingRule {
        /// Name of the rule.
        rule: String,
    },
    /// A numeric option is out of its range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// Name of the option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Blocking produced no candidate pair, so there is nothing to estimate a model from.
    #[error("blocking produced no candidate pair")]
    NoCandidatePairs,
}

/// Result alias of this crate.
pub type Result<T, E = LinkageError> = std::result::Result<T, E>;
