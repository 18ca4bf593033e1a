//! Unified profiles: one per person, named by id (`p_…`) or by any identifier
//! (`user_id:42`, `email:ann@example.com`); their identity explanation and timeline.

use crate::page::Limit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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
    /// Current consent per purpose (`docs/consent.md`); a purpose not listed is not granted.
    #[serde(default)]
    pub consent: BTreeMap<String, ConsentDecision>,
}

/// The current decision about one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentDecision {
    pub granted: bool,
    /// RFC 3339: when it was decided (the event's timestamp, or when the API was asked).
    pub at: String,
    /// What decided it: the event's source id, or `api`.
    pub source: String,
    /// The event's `messageId`, or `api:<request>` for a change made through the API.
    pub message_id: String,
}

/// One decision in a profile's consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentHistoryEntry {
    pub purpose: String,
    pub granted: bool,
    /// RFC 3339.
    pub at: String,
    pub source: String,
    pub message_id: String,
    /// Whether it became the current decision when it arrived; `false` when a newer
    /// decision for the purpose was already known (an older event arriving late).
    pub effective: bool,
}

/// A profile's consent: the current decision per purpose and one page of its history,
/// newest decision first (those of profiles merged into it included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileConsent {
    /// `p_…`
    pub id: String,
    pub current: BTreeMap<String, ConsentDecision>,
    pub history: Vec<ConsentHistoryEntry>,
    /// Pass as `cursor` for the next page of the history; `null` on the last.
    pub next_cursor: Option<String>,
}

/// The body of `PUT`/`POST /api/v1/profiles/{reference}/consent`: the purposes to set, as
/// Segment's consent object names them; purposes not named are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentUpdate {
    /// Purpose → granted (`true`) or denied (`false`).
    #[serde(rename = "categoryPreferences")]
    pub category_preferences: BTreeMap<String, bool>,
}

/// A consent change in the log that the processor has not applied yet (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentPending {
    /// `pending`
    pub status: String,
    pub request: String,
    /// The log offset of the change.
    pub offset: Option<u64>,
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

/// What a consent change answers: the profile's consent (`200`) once the processor has
/// applied it, else `202` while the change waits in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ConsentSaved {
    /// `202`: in the log, not applied yet (told apart by its `status`).
    Pending(ConsentPending),
    /// `200`: applied.
    Applied(ProfileConsent),
}
