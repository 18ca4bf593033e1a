//! Unified profiles: one per person, named by id (`p_…`) or by any identifier
//! (`user_id:42`, `email:ann@example.com`); their identity explanation and timeline.

use crate::page::Limit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    /// `p_…`
    pub id: String,
    pub identifiers: Vec<IdentifierView>,
    /// Current traits, last write wins by event time.
    #[schema(value_type = Object)]
    pub traits: Map<String, Value>,
    pub accounts: Vec<Account>,
    /// RFC 3339; `null` before any event.
    pub first_seen: Option<String>,
    /// RFC 3339.
    pub last_seen: Option<String>,
    /// Profiles merged into this one; their ids still resolve here.
    pub merged_from: Vec<String>,
    /// Computed trait values (defined and built-in, such as the RFM summary).
    #[schema(value_type = Object)]
    pub computed: Map<String, Value>,
    /// The segments the profile is in, with when it entered.
    pub segments: Vec<SegmentMembership>,
    /// Value-model scores (`clv`, `p_alive`, `churn_risk`, `health_score`, …); empty until
    /// a model has scored the profile.
    #[schema(value_type = Object)]
    pub scores: Map<String, Value>,
}

/// One identifier of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentifierView {
    /// `user_id`, `anonymous_id`, `email`, `phone`, `device_id`, or a configured type.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// RFC 3339: the earliest event that carried it.
    pub first_seen: String,
    /// RFC 3339: the latest event that carried it.
    pub last_seen: String,
    /// The `messageId` of the event that attached it.
    pub added_by: String,
}

/// An account (a `group` call's group) the profile belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    #[schema(value_type = Object)]
    pub traits: Map<String, Value>,
}

/// A segment the profile is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentMembership {
    pub segment: String,
    /// RFC 3339.
    pub entered_at: String,
}

/// Why a profile holds what it holds: every identity decision about it and the profiles
/// merged into it, oldest first (`docs/identity.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IdentityExplanation {
    pub id: String,
    pub identifiers: Vec<IdentifierView>,
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Value>,
}

/// The query of `GET /api/v1/profiles`: profiles whose trait equals a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProfileSearch {
    /// The trait's name (required).
    #[serde(rename = "trait", default, skip_serializing_if = "Option::is_none")]
    #[param(rename = "trait")]
    pub trait_name: Option<String>,
    /// The value to match (required), read as JSON when it parses (`42`, `true`, `"42"`),
    /// else as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of a profile's timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A page of a profile's timeline, newest first: its events as stored, and its segment
/// entries and exits (`{"type": "segment_entered" | "segment_exited", "segment",
/// "timestamp", "cause", "seq"}`), those of profiles merged into it included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    pub next_cursor: Option<String>,
}
