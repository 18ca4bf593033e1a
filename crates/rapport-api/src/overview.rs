//! The pipeline at a glance (`GET /api/v1/overview`) and the messages the tracking API
//! refused (`GET /api/v1/rejections`), for the dashboard and `rapport overview` /
//! `rapport rejections`.

use crate::Code;
use crate::page::Limit;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The default of `minutes` in `GET /api/v1/overview`.
pub const DEFAULT_MINUTES: u32 = 60;
/// The largest `minutes`: the processor keeps 24 hours of counts.
pub const MAX_MINUTES: u32 = 1440;

/// The query of `GET /api/v1/overview`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// How many minutes of per-minute counts, ending with the current one: 1 to 1440;
    /// default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<u32>,
}

/// The answer of `GET /api/v1/overview`: how far each stage is, how much is stored, and
/// how many events each source sent per minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    /// When this answer was made (RFC 3339, UTC).
    pub at: String,
    /// The log's last offset.
    pub log_offset: u64,
    /// How far the event indexer has read.
    pub indexed_offset: u64,
    /// How far the processor (identity, profiles, audiences) has read.
    pub processed_offset: u64,
    /// Log entries the indexer has still to read.
    pub indexer_lag: u64,
    /// Log entries the processor has still to read.
    pub processor_lag: u64,
    /// Bytes the store takes on disk (for PostgreSQL, the database's size).
    pub storage_bytes: u64,
    /// Events accepted into the log per minute and source, as the processor counted them.
    pub events_per_minute: EventsPerMinute,
    /// Messages this server's tracking API refused in each minute of the same window, oldest
    /// first (this server only, since it started; see `GET /api/v1/rejections`).
    pub rejected_per_minute: Vec<u64>,
    /// Dead letters of the pipeline's stages (`GET /api/v1/dead-letters`), counted up to
    /// 1,000 per stage.
    pub dead_letters: u64,
}

/// Per-minute counts of events by source over a window of whole UTC minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsPerMinute {
    /// How many minutes: the length of every `counts`.
    pub minutes: u32,
    /// The first minute of the window (RFC 3339, UTC, on a minute boundary); the last is the
    /// current minute.
    pub from: String,
    /// Every source known, and any other source that sent events in the window, by id.
    pub sources: Vec<SourceMinutes>,
}

/// One source's events per minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceMinutes {
    pub source_id: String,
    /// Its name; `null` for a source that no longer exists.
    pub source_name: Option<String>,
    /// Events received in each minute (by their `receivedAt`), oldest first.
    pub counts: Vec<u64>,
    /// The sum of `counts`.
    pub total: u64,
}

/// The query of `GET /api/v1/rejections`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RejectionsQuery {
    /// Only refusals of messages sent with this source's write key (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The source a refused message was sent with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectionSource {
    pub id: String,
    /// Its name, when the source still exists.
    pub name: Option<String>,
}

/// A message (or a whole request) the tracking API refused. Never its payload: only what
/// says why, and which message it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// When it was refused (RFC 3339).
    pub at: String,
    /// The source whose write key came with it; `null` when the key was missing or bad.
    pub source: Option<RejectionSource>,
    /// The error code the client received.
    pub code: Code,
    /// The field at fault, when the error names one (`batch[2].event`, `traits.plan`).
    pub field: Option<String>,
    /// The error message the client received.
    pub message: String,
    /// The message's `type` (`track`, `identify`, …), when readable.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The message's `event` name, when readable.
    pub event: Option<String>,
    /// The message's `messageId`, when readable; `null` for keys that read only without
    /// personal data (`read_masked`).
    pub message_id: Option<String>,
    /// The HTTP path the message was posted to (`/v1/batch`).
    pub path: String,
}
