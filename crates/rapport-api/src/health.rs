//! `GET /health`: whether this server takes durable writes, and how far the pipeline is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Ingest works and the pipeline keeps up.
    Ok,
    /// Ingest works and loses nothing, but a stage lags or is stuck (`problems`).
    Degraded,
    /// The store cannot write or be read (`reason`): answered with 503.
    Unavailable,
}

/// The answer of `GET /health` (200 while writable, 503 when `unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// The log's last offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_offset: Option<u64>,
    /// How far the indexer has read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_offset: Option<u64>,
    /// How far the processor (identity, profiles, audiences) has read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_offset: Option<u64>,
    /// What makes the status `degraded`, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
    /// Why the status is `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
