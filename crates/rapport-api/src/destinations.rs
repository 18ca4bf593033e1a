//! Destinations: where Rapport delivers events (webhooks, another tracking API, a
//! PostgreSQL warehouse). The definition a user writes is the domain's own
//! ([`DestinationSpec`]: one definition, checked by the code that runs it); the answers
//! add Rapport's state around it.

pub use rapport_destinations::definition::{DeliveryOptions, DestinationSpec, Kind};
pub use rapport_destinations::payload::BatchLimits;
pub use rapport_destinations::retry::RetryPolicy;
pub use rapport_destinations::selection::{AudienceSelection, EventSelection, Selection};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A destination as the API shows it. Secrets (a webhook's signing secret, a forward's
/// write key, a warehouse's password) are masked; a webhook's secret is shown once, when
/// the destination is created, and by `GET /api/v1/destinations/{destination}/secret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Destination {
    /// `dst_…`
    pub id: String,
    pub spec: DestinationSpec,
    /// A paused destination keeps its place in the log and resumes from it.
    pub paused: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub delivery: DeliveryState,
}

/// Where a destination's delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryState {
    /// The last log offset it has dealt with.
    pub offset: u64,
    /// Log entries it has yet to look at (behind the processor's offset).
    pub lag: u64,
    /// Messages parked for a retry.
    pub retrying: u64,
    /// Messages in its dead-letter queue.
    pub dead_lettered: u64,
    /// Its backfill, running or finished; `null` when it has none.
    pub backfill: Option<DestinationBackfill>,
    /// Set while the destination is suspended after failing attempts in a row
    /// (`delivery.pause_after_failures`): it sends one probe at a time and resumes when
    /// one is delivered, or when resumed by hand.
    pub suspended: Option<Suspended>,
}

/// A suspended destination's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Suspended {
    /// RFC 3339.
    pub since: String,
    /// Failed attempts in a row when it was suspended.
    pub failures: u32,
    /// What the last attempt came to.
    pub last_error: String,
    /// Probes sent and failed so far.
    pub probes: u32,
    /// RFC 3339.
    pub next_probe_at: String,
}

/// The answer to `POST /api/v1/destinations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedDestination {
    pub destination: Destination,
    /// A webhook's signing secret (`whsec_…`), shown this once; `null` for other kinds.
    pub secret: Option<String>,
}

/// A webhook's signing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    pub secret: String,
}

/// A message parked for a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingRetry {
    /// Which stream the message comes from: `event`, `audience_change`, `trait_change`,
    /// `alert` or `journey_action`.
    pub feed: String,
    /// Its position there: the event's log offset, or the sequence number in its feed.
    pub offset: u64,
    pub attempts: u32,
    /// RFC 3339.
    pub first_attempt_at: String,
    /// RFC 3339.
    pub next_attempt_at: String,
    pub last_error: String,
    /// Held behind an earlier message of the same user (`delivery.per_user_ordering`):
    /// attempted once that one is delivered or dead-lettered; `next_attempt_at` means
    /// nothing meanwhile.
    pub held: bool,
}

/// A message in a destination's dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryFailure {
    /// Which stream the message comes from: `event`, `audience_change`, `trait_change`,
    /// `alert` or `journey_action`.
    pub feed: String,
    /// Its position there: the event's log offset, or the sequence number in its feed.
    pub offset: u64,
    pub attempts: u32,
    /// `refused` (the receiver answered a status retrying cannot change), `gave_up`
    /// (retried past the give-up age), `render` (the template failed on this message).
    pub reason: String,
    /// The last answer's status; `null` when there was none.
    pub status: Option<u16>,
    pub error: String,
    /// The start (2 KiB) of the last request's body.
    pub request_body: String,
    /// The start (2 KiB) of the last answer's body.
    pub response_body: String,
    /// RFC 3339.
    pub at: String,
}

/// The query of a dead-letter listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FailuresQuery {
    /// 1 to 1000; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The body of `POST /api/v1/destinations/{destination}/dead-letters/replay`: the dead
/// letters named by `offsets`, `audience_changes`, `trait_changes`, `alerts` and
/// `journey_actions` (none
/// given: every one), and of those only the ones that failed in
/// `[failed_since, failed_until)` when either is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The events to replay, by log offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<Vec<u64>>,
    /// The segment entries and exits to replay, by audience feed sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_changes: Option<Vec<u64>>,
    /// The trait changes to replay, by trait-change feed sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trait_changes: Option<Vec<u64>>,
    /// The value-model alerts to replay, by alert position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<u64>>,
    /// The journey messages to replay, by journey action feed sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journey_actions: Option<Vec<u64>>,
    /// Only the dead letters that failed at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<String>,
    /// Only the dead letters that failed before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_until: Option<String>,
}

/// How many messages a replay put back for delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

/// The outcome of a test send: one synthetic message, sent now, outside the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestSend {
    /// Whether the receiver accepted it (a 2xx).
    pub delivered: bool,
    /// The receiver's status; `null` when it did not answer.
    pub status: Option<u16>,
    /// Milliseconds until the answer.
    pub latency_ms: u64,
    /// The start (2 KiB) of the answer's body.
    pub response_body: String,
    /// For people: `204 No Content`, `could not reach the receiver: …`.
    pub message: String,
}

/// The query of `GET /api/v1/destinations/{destination}/overview`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// The hours to show, up to now: 1 to 744 (31 days, what is kept); default 24.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 744)]
    pub hours: Option<u32>,
}

/// What happened to a destination's messages in a period (an hour, or the whole overview).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPeriod {
    /// The period's start, RFC 3339 (an hour's start).
    pub start: String,
    pub delivered: u64,
    /// Failed attempts parked for another.
    pub retried: u64,
    pub dead_lettered: u64,
    /// Messages not sent because the person has not granted a purpose the destination's
    /// `consent` names.
    pub skipped_consent: u64,
    /// Messages not sent because the person is suppressed (`/api/v1/privacy/suppressions`).
    pub skipped_suppressed: u64,
    /// Requests made (a batch is one).
    pub requests: u64,
    /// The median request latency, milliseconds (the upper bound of a 10 % wide bucket);
    /// `null` without requests.
    pub latency_p50_ms: Option<f64>,
    /// The 99th-percentile request latency, milliseconds, likewise.
    pub latency_p99_ms: Option<f64>,
    /// The last failed attempt's error in the period, and when (RFC 3339).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// A destination's delivery overview: the hours in which anything happened, oldest
/// first, and their total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOverview {
    pub hours: Vec<DeliveryPeriod>,
    pub total: DeliveryPeriod,
}

/// The body of `POST /api/v1/destinations/{destination}/backfill`: replay the events
/// timestamped in `[since, until)` from the log into the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// RFC 3339, inclusive.
    pub since: String,
    /// RFC 3339, exclusive.
    pub until: String,
}

/// A destination's backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DestinationBackfill {
    /// RFC 3339: the range of event timestamps replayed, `[since, until)`.
    pub since: String,
    pub until: String,
    /// The last log offset read, and the last it will read (the processor's offset when
    /// the backfill began).
    pub position: u64,
    pub through: u64,
    /// Events sent so far.
    pub sent: u64,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339; `null` while it runs.
    pub finished_at: Option<String>,
}
