//! The pipeline: log entries a stage could not read (`GET /api/v1/dead-letters`).

use crate::page::Limit;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A log entry a stage could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Its offset in the log.
    pub offset: u64,
    /// The stage: `event-indexer` or `processor`.
    pub consumer: String,
    /// Why, in words.
    pub error: String,
    /// When the stage met it (RFC 3339).
    pub at: String,
    /// The log entry as stored (lossy UTF-8), or `null` when it is no longer in the log.
    pub entry: Option<String>,
}

/// The query of `GET /api/v1/dead-letters`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Only this stage's: `event-indexer` or `processor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
