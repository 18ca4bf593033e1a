//! Reading stored events back: `GET /api/v1/events`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /api/v1/events`: every filter optional, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with this `userId` (at most 256 bytes).
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    #[param(rename = "userId")]
    pub user_id: Option<String>,
    /// Events with this `anonymousId` (at most 256 bytes).
    #[serde(
        rename = "anonymousId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[param(rename = "anonymousId")]
    pub anonymous_id: Option<String>,
    /// One of `track`, `identify`, `page`, `screen`, `group`, `alias`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// The event name of track calls (at most 1,024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Events sent with a write key of this source (its id, as in `GET /api/v1/sources`
    /// and each event's `sourceId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Events at or after this ISO-8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Events before this ISO-8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// 1 to 1000; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A page of stored events, each as it was stored (the message as sent, with `messageId`,
/// `receivedAt`, the corrected `timestamp` and Rapport's own fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
    pub next_cursor: Option<String>,
}
