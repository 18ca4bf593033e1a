//! The tracking API: Segment's and RudderStack's message shapes, as the OpenAPI document
//! describes them, and Rapport's answer. The server reads messages with its own parser
//! (`rapport_core::event`), which keeps unknown top-level fields verbatim and reads any
//! `Content-Type`; these types describe the fields it interprets.

use crate::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Fields every message may carry. Either `userId` or `anonymousId` is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// The user's id in your systems (a string, or a number kept as written); at most 256
    /// bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub user_id: Option<serde_json::Value>,
    /// A device or browser id; at most 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub anonymous_id: Option<serde_json::Value>,
    /// De-duplicates retries: a message with a `messageId` already stored for the source is
    /// acknowledged and counted in `duplicates`. Assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// When it happened, ISO-8601 (years 0000–9999); corrected by `sentAt` for client
    /// clock skew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// RudderStack's name for the client's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<String>,
    /// When the client sent it, ISO-8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// Segment's `context` (ip, userAgent, page, campaign, traits, consent, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Which integrations the message is meant for; kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub integrations: Option<serde_json::Value>,
}

/// `POST /v1/track`: something the user did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Track {
    /// The event's name (`Order Completed`); at most 1,024 bytes.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/identify`: who the user is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Identify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub traits: Option<serde_json::Value>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/page` and `POST /v1/screen`: a page or screen viewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/group`: the user belongs to a group (an account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[schema(value_type = String)]
    pub group_id: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub traits: Option<serde_json::Value>,
    #[serde(flatten)]
    pub common: Common,
}

/// `POST /v1/alias`: two ids are one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    #[schema(value_type = String)]
    pub previous_id: serde_json::Value,
    #[serde(flatten)]
    pub common: Common,
}

/// One message of a batch, its kind in `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Message {
    Track(Track),
    Identify(Identify),
    Page(Page),
    Screen(Page),
    Group(Group),
    Alias(Alias),
}

/// `POST /v1/batch` (and `/v1/import`): up to `limits.max_batch_events` messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub batch: Vec<Message>,
    /// Applied to every message that has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub integrations: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

/// The answer of every tracking call: the messages are in the log, fsynced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    pub success: bool,
    /// Messages stored now.
    pub accepted: usize,
    /// Messages acknowledged but already stored under the same `messageId`.
    pub duplicates: usize,
    /// Messages dropped before storage because they carry a suppressed identifier
    /// (acknowledged so that the SDK does not retry them); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suppressed: usize,
    /// Messages of a batch refused one by one (the others are stored); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedItem>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A message of a batch that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedItem {
    /// Its position in `batch`, from 0.
    pub index: usize,
    pub error: ErrorBody,
}

/// The settings document analytics.js 2.0 loads at start
/// (`GET /v1/projects/{writeKey}/settings`): it points the SDK back at this server and
/// enables no device-mode destination, middleware, tracking plan or SDK metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub integrations: SettingsIntegrations,
    /// Always `{}`: no tracking plan.
    #[schema(value_type = Object)]
    pub plan: serde_json::Value,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub edge_function: serde_json::Value,
    pub analytics_next_enabled: bool,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub middleware_settings: serde_json::Value,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub enabled_middleware: serde_json::Value,
    pub metrics: SettingsMetrics,
    pub legacy_video_plugins_enabled: bool,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub remote_plugins: Vec<serde_json::Value>,
}

/// The integrations of the settings document: only Segment's own, which is this server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingsIntegrations {
    #[serde(rename = "Segment.io")]
    pub segment_io: SegmentIo,
}

/// Where the SDK sends its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentIo {
    /// The write key the document was asked for.
    pub api_key: String,
    /// `host[:port]/v1` of this server, as the request reached it.
    pub api_host: String,
    /// `http` or `https`.
    pub protocol: String,
    pub add_bundled_metadata: bool,
    pub unbundled_integrations: Vec<String>,
    pub bundled_config_ids: Vec<String>,
    pub unbundled_config_ids: Vec<String>,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub maybe_bundled_config_ids: serde_json::Value,
}

/// SDK metrics sent to Segment: none (`sampleRate` 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsMetrics {
    pub sample_rate: u32,
}
