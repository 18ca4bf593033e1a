//! Privacy: deletion requests with their receipts, and the suppression list
//! (`/api/v1/privacy/…`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/privacy/deletions`: a person to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonDeletion {
    /// The person, by any of their identifiers (`type:value`: `user_id:42`,
    /// `email:ann@example.com`, `anonymous_id:…`) or profile ids (`p_…`); 1 to 100. Every
    /// profile holding one of them is deleted with everything merged into it.
    pub identifiers: Vec<String>,
    /// Suppress the identifiers too (before the answer), so that new events carrying them
    /// are dropped from then on. Needs at least one `type:value` identifier.
    #[serde(default)]
    pub suppress: bool,
}

/// The body of `POST /api/v1/privacy/deletions/events`: the events one source sent
/// between two instants (by the time Rapport received them), for data sent by mistake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsDeletion {
    /// The source, by name or id.
    pub source: String,
    /// Inclusive, RFC 3339.
    pub from: String,
    /// Exclusive, RFC 3339.
    pub to: String,
}

/// One line of a deletion's receipt: a store and what was removed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptLine {
    /// `log`, `event index`, `profiles`, `timelines`, `destination … (deletion request
    /// forwarded)`, …
    pub store: String,
    /// Entries removed (for a forwarded request: 1 when the receiver accepted it).
    pub removed: u64,
    /// What happened, when a count alone does not say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A deletion request: where it stands and, once done, its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deletion {
    /// `del_…`
    pub id: String,
    /// `person`, `events` (a time range of a source) or `retention` (a source's limit).
    pub kind: String,
    /// `queued`, `forgetting` (the processor drops what it derived), `erasing` (log,
    /// index, other stages), `forwarding` (to destinations that take deletion requests),
    /// `purging` (the store rewrites its files), `done`.
    pub status: String,
    pub requested_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The admin key that asked, absent for Rapport's own (retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Hex SHA-256 of each `type:value` identifier named (normalised): lets an operator
    /// match a request to the person who asked, without keeping who it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_hashes: Vec<String>,
    /// Whether the identifiers were suppressed with the request.
    pub suppress: bool,
    /// For `events` and `retention`: the source id and the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What was removed, store by store (complete once `status` is `done`).
    pub receipt: Vec<ReceiptLine>,
    /// The last step's error, while it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `POST /api/v1/privacy/suppressions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    /// `type:value` (`user_id:42`, `email:ann@example.com`).
    pub identifier: String,
    /// Why (free text; keep personal data out of it).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A suppressed identifier. The list keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Suppression {
    /// Hex SHA-256 of `type:value` (normalised); also how `DELETE` names it.
    pub hash: String,
    /// The identifier's type.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The deletion request that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<String>,
}
