//! The audit trail: every state-changing request of the REST API, as `GET /api/v1/audit`
//! lists it. Read only: the API has no route that edits or deletes an entry.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who made a request: the admin key that authorised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditActor {
    /// `key_…`
    pub key_id: String,
    pub key_name: String,
}

/// What a request acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditResource {
    /// `key`, `source`, `segment`, `journey`, `destination`, `profile`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's id or name; for a person (a profile, a review pair) the hex SHA-256
    /// of the reference given, never the reference. `null` when the request named none.
    pub id: Option<String>,
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// `aud_…`; also the `cursor` that continues a listing after this entry.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The same instant, RFC 3339.
    pub at: String,
    pub actor: AuditActor,
    /// `key.create`, `source.update`, `segment.delete`, `journey.publish`,
    /// `destination.replay`, `identity.review.accept`, `consent.set`, …
    pub action: String,
    pub resource: AuditResource,
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The route's template (`/api/v1/segments/{name}`).
    pub route: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The error code of a refused request.
    pub error: Option<String>,
    /// The client's address (the peer's, or from `X-Forwarded-For` behind a trusted proxy).
    pub address: Option<String>,
    /// The resource before the request, where the route changes a stored resource and it
    /// existed. Secrets are never recorded; person-level requests record no bodies.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The resource after the request (or what the request answered), secrets removed.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// The filters of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries of this admin key (`key_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Entries of this action (`segment.update`), or of every action starting with the
    /// text before a final `*` (`journey.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Entries on resources of this type (`segment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Entries on the resource of this id (for a person: the hex SHA-256 of the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Entries at or after this ISO-8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Entries before this ISO-8601 time.
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
