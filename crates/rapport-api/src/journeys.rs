//! Journeys: the definition a user writes is the domain's own ([`JourneySpec`], checked by
//! the code that runs it); the answers add its versions, lifecycle and flow.

pub use rapport_journeys::definition::JourneySpec;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A journey with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Journey {
    pub name: String,
    /// `draft` (never published), `active`, `paused` or `archived`.
    pub status: String,
    /// The version new entries get, when one is published.
    pub live_version: Option<u32>,
    /// Oldest first.
    pub versions: Vec<JourneyVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JourneyVersion {
    pub version: u32,
    /// `draft` (editable), `live` (takes new entries) or `retired` (runs out the customers
    /// who entered it).
    pub state: String,
    pub spec: JourneySpec,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub published_at: Option<String>,
}

/// The flow of one version: where customers are, pass and leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionFlow {
    pub version: u32,
    /// Entries outside the holdout.
    pub entered: u64,
    pub holdout_entered: u64,
    /// Customers inside now, outside the holdout.
    pub active: u64,
    pub converted: u64,
    pub holdout_converted: u64,
    /// Ended instances by reason (`completed`, `exit_node`, `converted`, `rule:<name>`,
    /// `holdout_ended`, `step_limit`, `archived`, `merged`, `migrated`).
    pub exited: BTreeMap<String, u64>,
    pub nodes: BTreeMap<String, NodeFlow>,
    /// At each choice node (split, branch, event wait), by the way taken: customers and
    /// their conversions.
    pub ways: BTreeMap<String, BTreeMap<String, WayFlow>>,
    /// The treated customers' conversion rate against the holdout's, once both have
    /// entries.
    pub lift: Option<Lift>,
    /// Customers moved into this version by a migration (not in `entered`; those moved
    /// out of a version count in its `exited` as `migrated`).
    pub migrated_in: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeFlow {
    pub entered: u64,
    /// On the node now.
    pub waiting: u64,
    pub passed: u64,
    pub exited: BTreeMap<String, u64>,
    pub actions: u64,
    /// Messages not sent, by reason (`consent`, `capped`, `quiet_hours`).
    pub skipped: BTreeMap<String, u64>,
    pub conversions: u64,
    /// Median time on the node of those who left it, seconds (within 10 %).
    pub median_seconds: Option<f64>,
    /// 90th percentile of that time, seconds (within 10 %).
    pub p90_seconds: Option<f64>,
    /// Where those who passed went, by node.
    pub to: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WayFlow {
    pub entered: u64,
    pub converted: u64,
}

/// Conversion rates in fractions; the interval is Newcombe's (hybrid score), 95 %.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lift {
    pub treated_rate: f64,
    pub holdout_rate: f64,
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

/// A journey's flow, one entry per version that has had customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JourneyFlow {
    pub journey: String,
    pub versions: Vec<VersionFlow>,
}

/// Customers to enter into a journey whose entry is `api`: one `profile`, or up to 1,000
/// `profiles`, with the same `properties` (the instance's `entry.properties`, as an entry
/// event's properties are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyEntryRequest {
    /// A profile id (`p_…`) or an identifier as `type:value` (`user_id:42`), as
    /// `GET /api/v1/profiles/{reference}` accepts.
    #[serde(default)]
    pub profile: Option<String>,
    /// Several profiles, named as `profile` is (instead of `profile`).
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// A JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Value>,
}

/// One entry written to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AcceptedEntry {
    /// The profile as named in the request.
    pub profile: String,
    /// The control entry's request id.
    pub request: String,
    /// Its log offset.
    pub offset: Option<u64>,
}

/// Entries written to the log (202): the processor enters each customer in log order,
/// under the journey's re-entry rules, limits and holdout; the entry and what followed
/// appear on the profile's timeline and in the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JourneyEntriesAccepted {
    /// `accepted`
    pub status: String,
    /// The request id of the one entry, for a request naming one `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub entries: Vec<AcceptedEntry>,
}

pub use rapport_journeys::caps::CapRule;

/// The frequency caps across journeys: per customer, at most `max` non-transactional
/// messages of `tag` (a send's `cap_tag`, else its destination; `*` for every message)
/// in any window of `per`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapsUpdate {
    pub caps: Vec<CapRule>,
}

/// The caps in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JourneyCaps {
    pub caps: Vec<CapRule>,
    /// When they were set (RFC 3339); none before the first change.
    pub updated_at: Option<String>,
    /// The request that set them.
    pub request: Option<String>,
}

/// A caps change in the log that the processor has not applied yet (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapsPending {
    /// `pending`
    pub status: String,
    pub request: String,
    /// The log offset of the change.
    pub offset: Option<u64>,
}

/// Moves the active customers of one version to another: each node a customer can be on
/// in `from_version` maps to a node of `to_version` (`nodes`; a node not named maps to
/// the node of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    pub from_version: u32,
    pub to_version: u32,
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
}

/// A migration written to the log (202): the processor applies it in log order to every
/// instance of `from_version` active at that point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MigrationAccepted {
    /// `accepted`
    pub status: String,
    pub request: String,
    /// The log offset of the control entry.
    pub offset: Option<u64>,
}

/// The body of `POST /api/v1/journeys/{journey}/preview`: a version run over the log
/// entries received in `[from, to)`; nothing is written, nothing is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The version to run; by default the draft, else the live version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// RFC 3339; before `to`, at most 90 days before it.
    pub from: String,
    /// RFC 3339; not after now.
    pub to: String,
}

/// What a version would have done over a past range: customers resolved as they are now
/// (see `notes`), timers fired up to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JourneyPreview {
    pub journey: String,
    pub version: u32,
    /// RFC 3339.
    pub from: String,
    /// RFC 3339.
    pub to: String,
    /// Log entries read (events and others).
    pub log_entries_read: u64,
    /// Events of the range that were run.
    pub events: u64,
    /// Changes of the entry segment in the range that were run.
    pub segment_changes: u64,
    /// Customers those were about.
    pub profiles: u64,
    /// The flow as `GET …/flow` gives it; `waiting` and `active` are at `to`.
    pub flow: VersionFlow,
    /// Messages that would have been sent, by destination.
    pub messages: BTreeMap<String, u64>,
    /// Events that would have been emitted, by name.
    pub emitted: BTreeMap<String, u64>,
    /// Trait changes that would have been made.
    pub trait_changes: u64,
    /// Messages that would not have been sent, by reason (`consent`, `capped`,
    /// `quiet_hours`).
    pub skipped: BTreeMap<String, u64>,
    /// The approximations of this run, in words.
    pub notes: Vec<String>,
}

/// One problem of a definition: where, as a path into the JSON (`nodes.remind.template`),
/// and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecProblem {
    pub field: String,
    pub message: String,
}

/// What `POST /api/v1/journeys/check` checks a definition for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckAs {
    /// A new journey: a name in use is a problem (saving it would answer 409).
    #[default]
    Create,
    /// The next draft of the journey it names, which must exist and not be archived.
    Draft,
}

/// The parameters of `POST /api/v1/journeys/check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// `create` (the default) or `draft`.
    #[serde(default, rename = "as")]
    #[param(rename = "as", inline)]
    pub check_as: CheckAs,
}

/// What `POST /api/v1/journeys/check` found: every problem saving the definition would
/// refuse (saving reports only the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecCheck {
    /// Whether it can be saved as it is.
    pub valid: bool,
    pub errors: Vec<SpecProblem>,
}
