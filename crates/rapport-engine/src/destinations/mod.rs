//! Destinations on live data: their definitions (kept in the state store), and one
//! delivery worker per destination ([`worker`]) that reads the log behind the processor —
//! so that every message carries its profile — and delivers what the destination selects.
//!
//! The log is the outbox. Each destination is its own log consumer (`destination:{id}`),
//! with its own committed offset, retry set and dead-letter queue, so that one slow or
//! failing destination never holds another back. A message's delivery state (delivered,
//! parked for a retry, dead-lettered) is committed atomically with the destination's
//! offset, so `kill -9` loses nothing, and after a restart only the request that was in
//! flight is sent again — with the same `webhook-id`, so a receiver that de-duplicates sees
//! it once. The rules of retries are `rapport_destinations::retry`'s.

pub mod send;
pub mod warehouse;
pub mod worker;

use crate::EngineError;
use rapport_destinations::overview::HourStats;
use rapport_destinations::{DestinationSpec, Kind};
use rapport_store::{Offset, StateStore, StateWrite, Store};
use serde::{Deserialize, Serialize};

/// Destination definitions: one record per destination, under [`REGISTRY_PARTITION`].
pub const NS_DESTINATION: &str = "destination";
/// The partition of [`NS_DESTINATION`] that holds every definition.
pub const REGISTRY_PARTITION: &str = "all";
/// Messages waiting for a retry: partition = destination id, key = next attempt time
/// (ms, big-endian) + log offset, value = a [`Retry`].
pub const NS_RETRY: &str = "destination_retry";
/// Messages given up on: partition = destination id, key = log offset, value = a
/// [`Failure`].
pub const NS_FAILED: &str = "destination_dead_letter";

/// The delivery worker's own state, partition = destination id: under each feed's name
/// the last position dealt with in that feed besides the log (u64, big-endian, committed
/// with each request's outcome, like the log offset), and under `suspension` a
/// [`Suspension`].
pub const NS_CURSOR: &str = "destination_cursor";

/// The ordered stream a message comes from. Each has its own positions: log offsets for
/// events, the audience feed's sequence numbers for segment entries and exits, the
/// trait-change feed's ([`crate::trait_changes`]) for trait changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    #[default]
    Event,
    AudienceChange,
    TraitChange,
    Alert,
    /// Messages of journeys' `send` steps that name this destination.
    JourneyAction,
}

impl Feed {
    pub fn is_event(&self) -> bool {
        matches!(self, Feed::Event)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Event => "event",
            Feed::AudienceChange => "audience_change",
            Feed::TraitChange => "trait_change",
            Feed::Alert => "alert",
            Feed::JourneyAction => "journey_action",
        }
    }

    /// Appended to a position in queue keys, so that positions of two feeds never meet
    /// (events keep the bare 8-byte keys they always had).
    fn tag(self) -> &'static [u8] {
        match self {
            Feed::Event => b"",
            Feed::AudienceChange => b"a",
            Feed::TraitChange => b"t",
            Feed::Alert => b"l",
            Feed::JourneyAction => b"j",
        }
    }

    /// The basis of a message's idempotency key: the log offset for an event,
    /// `audience_change:{seq}` or `trait_change:{seq}` otherwise, so that no two messages
    /// of a destination share one.
    pub fn message_key(self, position: u64) -> String {
        match self {
            Feed::Event => position.to_string(),
            other => format!("{}:{position}", other.as_str()),
        }
    }
}

/// A dead letter's key: its position in its feed, then the feed's tag.
pub fn failure_key(feed: Feed, position: u64) -> Vec<u8> {
    let mut k = position.to_be_bytes().to_vec();
    k.extend_from_slice(feed.tag());
    k
}

/// The position a destination has dealt with in `feed` (not the log: that is its consumer
/// offset).
pub fn cursor(store: &dyn Store, id: &str, feed: Feed) -> Result<u64, EngineError> {
    Ok(
        match store.state_get(NS_CURSOR, id, feed.as_str().as_bytes())? {
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| corrupt("a cursor is not 8 bytes"))?,
            ),
            None => 0,
        },
    )
}

/// The write that moves a destination's cursor in `feed` to `position`.
pub fn cursor_write(id: &str, feed: Feed, position: u64) -> StateWrite {
    StateWrite {
        namespace: NS_CURSOR.into(),
        profile: id.into(),
        key: feed.as_str().as_bytes().to_vec(),
        value: Some(position.to_be_bytes().to_vec()),
    }
}

/// The delivery overview: partition = destination id, key = the hour's start (Unix ms,
/// big-endian, sign bit flipped so hours sort in time), value = a
/// `rapport_destinations::overview::HourStats`. Kept [`OVERVIEW_RETENTION_HOURS`].
pub const NS_OVERVIEW: &str = "destination_overview";
/// Hours of overview kept: 31 days.
pub const OVERVIEW_RETENTION_HOURS: i64 = 31 * 24;

fn hour_key(hour_ms: i64) -> [u8; 8] {
    ((hour_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// One hour of a destination's overview, if anything happened in it.
pub fn hour_stats(
    store: &dyn Store,
    id: &str,
    hour_ms: i64,
) -> Result<Option<HourStats>, EngineError> {
    store
        .state_get(NS_OVERVIEW, id, &hour_key(hour_ms))?
        .map(|b| serde_json::from_slice(&b).map_err(corrupt))
        .transpose()
}

pub fn hour_stats_write(id: &str, stats: &HourStats) -> StateWrite {
    StateWrite {
        namespace: NS_OVERVIEW.into(),
        profile: id.into(),
        key: hour_key(stats.hour_ms).to_vec(),
        value: Some(serde_json::to_vec(stats).expect("an hour serialises")),
    }
}

/// The deletions of a destination's overview hours older than the retention, seen from
/// the hour starting at `hour_ms` (at most a thousand at a time).
pub fn expired_hours(
    store: &dyn Store,
    id: &str,
    hour_ms: i64,
) -> Result<Vec<StateWrite>, EngineError> {
    let oldest = hour_ms - OVERVIEW_RETENTION_HOURS * rapport_destinations::overview::HOUR_MS;
    Ok(store
        .state_scan_range(NS_OVERVIEW, id, None, 1000)?
        .into_iter()
        .take_while(|(k, _)| k.as_slice() < &hour_key(oldest)[..])
        .map(|(key, _)| StateWrite {
            namespace: NS_OVERVIEW.into(),
            profile: id.into(),
            key,
            value: None,
        })
        .collect())
}

/// A destination's overview hours from `since_ms` to `until_ms` (exclusive), oldest first.
pub fn overview(
    store: &dyn Store,
    id: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<HourStats>, EngineError> {
    let start = hour_key(rapport_destinations::overview::hour_of(since_ms) - 1);
    let mut out = Vec::new();
    for (_, v) in store.state_scan_range(NS_OVERVIEW, id, Some(&start), usize::MAX)? {
        let h: HourStats = serde_json::from_slice(&v).map_err(corrupt)?;
        if h.hour_ms >= until_ms {
            break;
        }
        if h.hour_ms >= rapport_destinations::overview::hour_of(since_ms) {
            out.push(h);
        }
    }
    Ok(out)
}

/// The key under [`NS_CURSOR`] of a destination's [`Backfill`].
const BACKFILL_KEY: &[u8] = b"backfill";

/// A replay of a past time range of the log into a destination: the events it selects
/// whose `timestamp` falls in `[since_ms, until_ms)`, read from the log from its start
/// through `through` (the processor's offset when the backfill was asked for), in log
/// order, beside the live delivery. Each is sent under its usual idempotency key, so an
/// event the destination also receives live is de-duplicated by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    pub since_ms: i64,
    pub until_ms: i64,
    /// The last log offset read so far.
    pub position: Offset,
    pub through: Offset,
    /// Messages sent so far (their outcomes are the destination's, as for live ones).
    pub sent: u64,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// A destination's backfill, running or finished, if it had one.
pub fn backfill(store: &dyn Store, id: &str) -> Result<Option<Backfill>, EngineError> {
    store
        .state_get(NS_CURSOR, id, BACKFILL_KEY)?
        .map(|b| serde_json::from_slice(&b).map_err(corrupt))
        .transpose()
}

pub fn backfill_write(id: &str, backfill: Option<&Backfill>) -> StateWrite {
    StateWrite {
        namespace: NS_CURSOR.into(),
        profile: id.into(),
        key: BACKFILL_KEY.to_vec(),
        value: backfill.map(|b| serde_json::to_vec(b).expect("a backfill serialises")),
    }
}

/// Starts a backfill of the events timestamped in `[since_ms, until_ms)`. Errors:
/// `InvalidAt` (`until`) for an empty range, `Conflict` while another one runs, `InvalidAt`
/// (`kind.type`) for a destination that takes no events.
pub fn start_backfill(
    store: &dyn Store,
    reference: &str,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<Backfill, EngineError> {
    let record = get(store, reference)?;
    if until_ms <= since_ms {
        return Err(EngineError::InvalidAt {
            field: "until".into(),
            message: "must be after `since`".into(),
        });
    }
    if record.spec.deliver.events.is_none() {
        return Err(EngineError::InvalidAt {
            field: "deliver.events".into(),
            message: "this destination takes no events, so there is nothing to backfill".into(),
        });
    }
    if backfill(store, &record.id)?.is_some_and(|b| b.finished_at_ms.is_none()) {
        return Err(EngineError::Conflict(
            "a backfill of this destination is running; cancel it first".into(),
        ));
    }
    let job = Backfill {
        since_ms,
        until_ms,
        position: 0,
        through: store.consumer_offset(crate::processor::CONSUMER)?,
        sent: 0,
        started_at_ms: now_ms,
        finished_at_ms: None,
    };
    store.state_commit(&[backfill_write(&record.id, Some(&job))], None)?;
    Ok(job)
}

/// The key under [`NS_CURSOR`] of a request to stop the running backfill: its
/// `started_at_ms`. Only the worker writes a running backfill, so the API asks it to stop
/// rather than racing its next commit.
const BACKFILL_CANCEL_KEY: &[u8] = b"backfill_cancel";

/// Stops a destination's backfill and forgets it — a finished one at once, a running one
/// at its worker's next step; `false` when there was none. Messages it sent keep their
/// outcomes (retries, dead letters).
pub fn cancel_backfill(store: &dyn Store, reference: &str) -> Result<bool, EngineError> {
    let record = get(store, reference)?;
    let write = match backfill(store, &record.id)? {
        None => return Ok(false),
        // Nobody else writes it: a finished one, or one of a paused destination (whose
        // worker sends nothing).
        Some(b) if b.finished_at_ms.is_some() || record.paused => {
            store.state_commit(&backfill_forget(&record.id), None)?;
            return Ok(true);
        }
        Some(b) => StateWrite {
            namespace: NS_CURSOR.into(),
            profile: record.id.clone(),
            key: BACKFILL_CANCEL_KEY.to_vec(),
            value: Some(b.started_at_ms.to_be_bytes().to_vec()),
        },
    };
    store.state_commit(&[write], None)?;
    Ok(true)
}

/// Whether the API asked to stop the backfill that started at `started_at_ms`.
pub fn backfill_cancelled(
    store: &dyn Store,
    id: &str,
    started_at_ms: i64,
) -> Result<bool, EngineError> {
    Ok(store
        .state_get(NS_CURSOR, id, BACKFILL_CANCEL_KEY)?
        .is_some_and(|v| v.as_slice() == started_at_ms.to_be_bytes()))
}

/// The writes that forget a backfill and the request to stop it.
pub fn backfill_forget(id: &str) -> Vec<StateWrite> {
    vec![
        backfill_write(id, None),
        StateWrite {
            namespace: NS_CURSOR.into(),
            profile: id.into(),
            key: BACKFILL_CANCEL_KEY.to_vec(),
            value: None,
        },
    ]
}

/// The key under [`NS_CURSOR`] of a destination's [`Suspension`].
const SUSPENSION_KEY: &[u8] = b"suspension";
/// The first probe of a suspended destination goes this long after the suspension; each
/// failed probe doubles the wait, up to [`PROBE_MAX_MS`].
pub const PROBE_FIRST_MS: i64 = 30_000;
pub const PROBE_MAX_MS: i64 = 600_000;

/// A destination its worker stopped sending to after `delivery.pause_after_failures`
/// failed attempts in a row (its receiver is down or refusing everything): it sends one
/// probe request at a time, and the first delivered one resumes it. Its messages wait
/// meanwhile, in its retries and its place in the log and the feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub since_ms: i64,
    /// Failed attempts in a row when it was suspended.
    pub failures: u32,
    /// What the last attempt came to.
    pub last_error: String,
    pub next_probe_ms: i64,
    /// Probes sent and failed so far.
    pub probes: u32,
}

impl Suspension {
    /// When the probe after `probes` failed ones goes: 30 s, 1 min, 2 min, … 10 min.
    pub fn probe_after(probes: u32, now_ms: i64) -> i64 {
        let wait = PROBE_FIRST_MS.saturating_mul(1_i64 << probes.min(20));
        now_ms.saturating_add(wait.min(PROBE_MAX_MS))
    }
}

/// A destination's suspension, if it is suspended.
pub fn suspension(store: &dyn Store, id: &str) -> Result<Option<Suspension>, EngineError> {
    store
        .state_get(NS_CURSOR, id, SUSPENSION_KEY)?
        .map(|b| serde_json::from_slice(&b).map_err(corrupt))
        .transpose()
}

/// The write that records (`Some`) or lifts (`None`) a suspension.
pub fn suspension_write(id: &str, suspension: Option<&Suspension>) -> StateWrite {
    StateWrite {
        namespace: NS_CURSOR.into(),
        profile: id.into(),
        key: SUSPENSION_KEY.to_vec(),
        value: suspension.map(|s| serde_json::to_vec(s).expect("a suspension serialises")),
    }
}

/// An alert's position in the alert feed, from its key there (time in ms, then its order
/// in its run, u32): `ms · 1,000,000 + order`, which keeps the feed's order and, for runs
/// of under a million alerts, maps back to the key exactly.
pub fn alert_position(key: &[u8]) -> Option<u64> {
    let ms = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let seq = u32::from_be_bytes(key.get(8..12)?.try_into().ok()?);
    ms.checked_mul(1_000_000)?.checked_add(u64::from(seq))
}

/// The alert feed key of a position (see [`alert_position`]).
pub fn alert_key(position: u64) -> Vec<u8> {
    let mut k = (position / 1_000_000).to_be_bytes().to_vec();
    k.extend_from_slice(&((position % 1_000_000) as u32).to_be_bytes());
    k
}

/// The log consumer name of a destination.
pub fn consumer(id: &str) -> String {
    format!("destination:{id}")
}

/// A destination as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationRecord {
    /// `dst_…`
    pub id: String,
    pub spec: DestinationSpec,
    /// A paused destination keeps its place in the log and resumes from it.
    pub paused: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A message parked for a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The message's position in its feed.
    pub offset: Offset,
    #[serde(default, skip_serializing_if = "Feed::is_event")]
    pub feed: Feed,
    /// Attempts made so far.
    pub attempts: u32,
    pub first_attempt_ms: i64,
    pub next_attempt_ms: i64,
    /// What the last attempt came to, for people.
    pub last_error: String,
    /// Held behind an earlier message of the same user (`delivery.per_user_ordering`):
    /// not attempted until that one is delivered or dead-lettered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// The user it is ordered by, under `delivery.per_user_ordering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
}

/// The next attempt time of a held retry: after every other.
pub const HELD_MS: i64 = i64::MAX / 2;

/// Under `delivery.per_user_ordering`, the messages of each user waiting for a retry, in
/// log order: partition = destination id, key = the user's order key, `0x00`, the log
/// offset (big-endian); value = the [`Retry`]'s key. The first is the one attempted; the
/// others are held.
pub const NS_ORDER: &str = "destination_order";

pub fn order_index_key(user: &str, offset: Offset) -> Vec<u8> {
    let mut k = user.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

impl Retry {
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.next_attempt_ms.max(0).to_be_bytes().to_vec();
        k.extend_from_slice(&self.offset.to_be_bytes());
        k.extend_from_slice(self.feed.tag());
        k
    }
}

/// A message the destination will not receive unless replayed: why, and the last request
/// and answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The message's position in its feed.
    pub offset: Offset,
    #[serde(default, skip_serializing_if = "Feed::is_event")]
    pub feed: Feed,
    pub attempts: u32,
    /// `refused` (a status retrying cannot change, or a warehouse row the database
    /// refuses for its data), `gave_up` (retried past the give-up age), `render` (the
    /// template failed on this message).
    pub reason: String,
    pub status: Option<u16>,
    pub error: String,
    /// The start of the last request's body.
    pub request_body: String,
    /// The start of the last answer's body.
    pub response_body: String,
    pub at_ms: i64,
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("a destination record: {e}"))
}

fn invalid(e: rapport_destinations::SpecError) -> EngineError {
    EngineError::InvalidAt {
        field: e.field,
        message: e.message,
    }
}

fn write_record(r: &DestinationRecord) -> StateWrite {
    StateWrite {
        namespace: NS_DESTINATION.into(),
        profile: REGISTRY_PARTITION.into(),
        key: r.id.as_bytes().to_vec(),
        value: Some(serde_json::to_vec(r).expect("a destination serialises")),
    }
}

/// Every destination, by creation.
pub fn list(store: &dyn StateStore) -> Result<Vec<DestinationRecord>, EngineError> {
    let mut out: Vec<DestinationRecord> = store
        .state_scan(NS_DESTINATION, REGISTRY_PARTITION)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(out)
}

/// A destination by id or name.
pub fn get(store: &dyn StateStore, reference: &str) -> Result<DestinationRecord, EngineError> {
    if let Some(bytes) =
        store.state_get(NS_DESTINATION, REGISTRY_PARTITION, reference.as_bytes())?
    {
        return serde_json::from_slice(&bytes).map_err(corrupt);
    }
    list(store)?
        .into_iter()
        .find(|d| d.spec.name == reference)
        .ok_or_else(|| EngineError::NotFound(format!("no destination {reference:?}")))
}

/// Fills what a definition may leave out (a webhook's secret), from `random`.
fn complete(mut spec: DestinationSpec, random: [u8; 32]) -> DestinationSpec {
    if let Kind::Webhook { secret, .. } = &mut spec.kind
        && secret.is_none()
    {
        *secret = Some(rapport_destinations::signing::secret_from(random));
    }
    spec
}

/// What this version delivers: events, trait changes and segment entries and exits, to
/// webhooks, forwards (events only) and warehouses (events, and segment changes into
/// `segment_memberships`). A definition that asks for more is
/// refused with the field named, rather than accepted and left undelivered.
fn check_supported(spec: &DestinationSpec) -> Result<(), EngineError> {
    let unsupported = |field: &str, what: &str| EngineError::InvalidAt {
        field: field.to_owned(),
        message: format!("{what} are not delivered by this version of Rapport yet"),
    };
    if matches!(spec.kind, Kind::Warehouse { .. }) {
        // A warehouse keeps current traits in `users`; a trait history is not written, so
        // asking for one must not look like it works.
        if spec.deliver.alerts {
            return Err(unsupported(
                "deliver.alerts",
                "value-model alerts into a warehouse",
            ));
        }
        if spec.deliver.trait_changes {
            return Err(unsupported(
                "deliver.trait_changes",
                "trait changes into a warehouse (its users table holds the current traits)",
            ));
        }
    }
    Ok(())
}

/// Creates a destination. It receives what is logged from now on (a backfill is a replay
/// of a time range). Errors: `InvalidAt` naming the field, `Conflict` on a taken name.
pub fn create(
    store: &dyn Store,
    spec: DestinationSpec,
    now_ms: i64,
) -> Result<DestinationRecord, EngineError> {
    spec.check().map_err(invalid)?;
    check_supported(&spec)?;
    if list(store)?.iter().any(|d| d.spec.name == spec.name) {
        return Err(EngineError::Conflict(format!(
            "a destination named {:?} exists",
            spec.name
        )));
    }
    let record = DestinationRecord {
        id: format!("dst_{}", uuid::Uuid::now_v7().simple()),
        spec: complete(spec, rand::random()),
        paused: false,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    let start = store.last_offset()?;
    let mut writes = vec![write_record(&record)];
    writes.extend(start_cursors(store, &record.id, now_ms)?);
    store.state_commit(&writes, Some((&consumer(&record.id), start)))?;
    Ok(record)
}

/// A destination receives what happens from when it is made: its cursors in the feeds
/// start at their ends (written when missing; a kept cursor keeps its place).
fn start_cursors(store: &dyn Store, id: &str, now_ms: i64) -> Result<Vec<StateWrite>, EngineError> {
    let meta = crate::audiences::store::Audiences { store }.meta()?;
    let mut writes = Vec::new();
    // Alerts are keyed by the time of their run: those before now are before it.
    let alerts_end = (now_ms.max(0) as u64).saturating_mul(1_000_000);
    for (feed, end) in [
        (Feed::AudienceChange, meta.feed_seq),
        (Feed::TraitChange, meta.trait_feed_seq),
        (Feed::Alert, alerts_end),
        (
            Feed::JourneyAction,
            crate::journeys::Journeys { store }.last_action_seq()?,
        ),
    ] {
        if store
            .state_get(NS_CURSOR, id, feed.as_str().as_bytes())?
            .is_none()
        {
            writes.push(cursor_write(id, feed, end));
        }
    }
    Ok(writes)
}

/// Replaces a destination's definition (its place in the log, retries and dead letters
/// stay). A webhook left without a secret, or a secret, write key or warehouse password
/// sent back masked as it was read, keeps the current one.
pub fn update(
    store: &dyn Store,
    reference: &str,
    mut spec: DestinationSpec,
    now_ms: i64,
) -> Result<DestinationRecord, EngineError> {
    let mut record = get(store, reference)?;
    // A secret sent back as it was read (masked) keeps the stored one.
    match (&mut spec.kind, &record.spec.kind) {
        (
            Kind::Webhook {
                secret: Some(new), ..
            },
            Kind::Webhook {
                secret: Some(old), ..
            },
        ) if *new == mask_secret(old) => new.clone_from(old),
        (Kind::Forward { write_key: new, .. }, Kind::Forward { write_key: old, .. })
            if *new == mask_secret(old) =>
        {
            new.clone_from(old)
        }
        _ => {}
    }
    spec.check().map_err(invalid)?;
    check_supported(&spec)?;
    if list(store)?
        .iter()
        .any(|d| d.spec.name == spec.name && d.id != record.id)
    {
        return Err(EngineError::Conflict(format!(
            "a destination named {:?} exists",
            spec.name
        )));
    }
    if let (Kind::Webhook { secret: new, .. }, Kind::Webhook { secret: old, .. }) =
        (&mut spec.kind, &record.spec.kind)
        && new.is_none()
    {
        new.clone_from(old);
    }
    // A warehouse URL sent back as it was read (its password masked) keeps its password.
    if let (
        Kind::Warehouse {
            database_url: new, ..
        },
        Kind::Warehouse {
            database_url: old, ..
        },
    ) = (&mut spec.kind, &record.spec.kind)
        && let (Ok(mut n), Ok(o)) = (url::Url::parse(new), url::Url::parse(old))
        && n.password() == Some(MASKED_PASSWORD)
        && o.password().is_some()
    {
        let _ = n.set_password(o.password());
        *new = n.to_string();
    }
    record.spec = complete(spec, rand::random());
    record.updated_at_ms = now_ms;
    // In the same commit as the definition, so that a worker never reads a feed without
    // a cursor.
    let mut writes = vec![write_record(&record)];
    writes.extend(start_cursors(store, &record.id, now_ms)?);
    store.state_commit(&writes, None)?;
    Ok(record)
}

/// Pauses or resumes a destination.
pub fn set_paused(
    store: &dyn Store,
    reference: &str,
    paused: bool,
    now_ms: i64,
) -> Result<DestinationRecord, EngineError> {
    let mut record = get(store, reference)?;
    record.paused = paused;
    record.updated_at_ms = now_ms;
    // Resuming by hand also lifts a suspension: the user says the receiver is back.
    let mut writes = vec![write_record(&record)];
    if !paused {
        writes.push(suspension_write(&record.id, None));
    }
    store.state_commit(&writes, None)?;
    Ok(record)
}

/// Deletes a destination with its retries and dead letters.
pub fn delete(store: &dyn Store, reference: &str) -> Result<DestinationRecord, EngineError> {
    let record = get(store, reference)?;
    let mut writes = vec![StateWrite {
        namespace: NS_DESTINATION.into(),
        profile: REGISTRY_PARTITION.into(),
        key: record.id.as_bytes().to_vec(),
        value: None,
    }];
    for ns in [NS_RETRY, NS_FAILED, NS_CURSOR, NS_OVERVIEW, NS_ORDER] {
        for (key, _) in store.state_scan(ns, &record.id)? {
            writes.push(StateWrite {
                namespace: ns.into(),
                profile: record.id.clone(),
                key,
                value: None,
            });
        }
    }
    store.state_commit(&writes, None)?;
    Ok(record)
}

/// One page of a destination's dead letters, by position, after the one whose
/// [`failure_key`] is `after`.
pub fn failures(
    store: &dyn Store,
    id: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Failure>, EngineError> {
    store
        .state_scan_range(NS_FAILED, id, after, limit)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect()
}

/// The messages waiting for a retry, soonest first.
pub fn retries(store: &dyn Store, id: &str, limit: usize) -> Result<Vec<Retry>, EngineError> {
    store
        .state_scan_range(NS_RETRY, id, None, limit)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect()
}

/// Puts dead letters back for delivery (all of them when `chosen` is `None`, else those
/// whose `(feed, position)` it lists): each is parked for an attempt now, its attempts
/// counted afresh. Answers how many.
pub fn replay(
    store: &dyn Store,
    id: &str,
    chosen: Option<&[(Feed, Offset)]>,
    now_ms: i64,
) -> Result<usize, EngineError> {
    replay_where(store, id, now_ms, |f| {
        chosen.is_none_or(|c| c.contains(&(f.feed, f.offset)))
    })
}

/// Puts back the dead letters `wanted` picks (see [`replay`]), e.g. those that failed in
/// a time range. Answers how many.
pub fn replay_where(
    store: &dyn Store,
    id: &str,
    now_ms: i64,
    wanted: impl Fn(&Failure) -> bool,
) -> Result<usize, EngineError> {
    let mut writes = Vec::new();
    let mut n = 0;
    for failure in failures(store, id, None, usize::MAX)? {
        if !wanted(&failure) {
            continue;
        }
        let retry = Retry {
            offset: failure.offset,
            feed: failure.feed,
            attempts: 0,
            first_attempt_ms: now_ms,
            next_attempt_ms: now_ms,
            last_error: format!("replayed after: {}", failure.error),
            held: false,
            order_key: None,
        };
        writes.push(StateWrite {
            namespace: NS_FAILED.into(),
            profile: id.into(),
            key: failure_key(failure.feed, failure.offset),
            value: None,
        });
        writes.push(StateWrite {
            namespace: NS_RETRY.into(),
            profile: id.into(),
            key: retry.key(),
            value: Some(serde_json::to_vec(&retry).expect("a retry serialises")),
        });
        n += 1;
    }
    store.state_commit(&writes, None)?;
    Ok(n)
}

/// Where a destination's delivery stands: `(offset, lag, retrying, dead_lettered)`.
/// Counts the queues whole: fine for the queues a working destination has.
pub fn delivery_state(store: &dyn Store, id: &str) -> Result<(Offset, u64, u64, u64), EngineError> {
    let offset = store.consumer_offset(&consumer(id))?;
    let processed = store.consumer_offset(crate::processor::CONSUMER)?;
    let retrying = store.state_scan(NS_RETRY, id)?.len() as u64;
    let failed = store.state_scan(NS_FAILED, id)?.len() as u64;
    Ok((offset, processed.saturating_sub(offset), retrying, failed))
}

/// A masked password as a URL holds it: `…`, percent-encoded.
const MASKED_PASSWORD: &str = "%E2%80%A6";

/// How a secret reads back: its first ten characters and `…`.
fn mask_secret(secret: &str) -> String {
    format!("{}…", secret.chars().take(10).collect::<String>())
}

/// The definition as the API shows it: secrets masked.
pub fn masked(spec: &DestinationSpec) -> DestinationSpec {
    let mut spec = spec.clone();
    let mask = mask_secret;
    match &mut spec.kind {
        Kind::Webhook { secret, .. } => {
            if let Some(s) = secret {
                *s = mask(s);
            }
        }
        Kind::Forward { write_key, .. } => *write_key = mask(write_key),
        Kind::Warehouse { database_url, .. } => {
            if let Ok(mut u) = url::Url::parse(database_url)
                && u.password().is_some()
            {
                let _ = u.set_password(Some("…"));
                *database_url = u.to_string();
            }
        }
    }
    spec
}

/// The outcome of a test send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub delivered: bool,
    pub status: Option<u16>,
    pub latency: std::time::Duration,
    pub response_body: String,
    pub message: String,
}

/// Sends one synthetic `Rapport Test Event`, now, outside the log and its queues: to
/// check a destination's address, credentials and template.
pub fn test_send(
    record: &DestinationRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<TestOutcome, EngineError> {
    let checked = record.spec.check().map_err(invalid)?;
    if let Kind::Warehouse {
        database_url,
        schema,
        timeout_secs,
    } = &record.spec.kind
    {
        // A warehouse has no receiver to answer: connecting and making the schema is the
        // test.
        let started = std::time::Instant::now();
        let timeout = std::time::Duration::from_secs(u64::from(*timeout_secs));
        let checked = warehouse::Writer::new(database_url, schema, timeout).check();
        return Ok(TestOutcome {
            delivered: checked.is_ok(),
            status: None,
            latency: started.elapsed(),
            response_body: String::new(),
            message: match checked {
                Ok(()) => format!("connected; schema {schema} is ready"),
                Err(e) => e,
            },
        });
    }
    let stamp = rapport_core::event::format_timestamp(&now);
    let event = serde_json::json!({
        "messageId": format!("test-{}", uuid::Uuid::now_v7().simple()),
        "type": "track",
        "event": "Rapport Test Event",
        "userId": "rapport-test",
        "properties": {},
        "timestamp": stamp,
        "receivedAt": stamp,
        "sourceId": "rapport-test",
    });
    let body = rapport_destinations::payload::event_body(&event, &Default::default());
    let request = send::build(
        &record.id,
        &record.spec.kind,
        checked.template.as_ref(),
        &[("test".into(), body)],
        now.timestamp(),
    )
    .map_err(|message| EngineError::InvalidAt {
        field: "kind.template".into(),
        message,
    })?;
    let started = std::time::Instant::now();
    let sent = send::send(&send::client(), &request, now);
    let status = match sent.attempt {
        rapport_destinations::retry::Attempt::Answered { status, .. } => Some(status),
        _ => None,
    };
    Ok(TestOutcome {
        delivered: status.is_some_and(|s| (200..300).contains(&s)),
        status,
        latency: started.elapsed(),
        response_body: sent.response_body,
        message: sent.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_positions_keep_the_feed_order_and_map_back() {
        let key = |ms: u64, seq: u32| {
            let mut k = ms.to_be_bytes().to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            k
        };
        let a = alert_position(&key(1_733_000_000_000, 7)).unwrap();
        let b = alert_position(&key(1_733_000_000_000, 8)).unwrap();
        let c = alert_position(&key(1_733_000_000_001, 0)).unwrap();
        assert!(a < b && b < c);
        assert_eq!(alert_key(a), key(1_733_000_000_000, 7));
        assert_eq!(alert_position(b"short"), None);
    }
}
