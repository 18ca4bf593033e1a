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
use rapport_destinations::{DestinationSpec, Kind};
use rapport_store::{Offset, StateWrite, Store};
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
    pub offset: Offset,
    /// Attempts made so far.
    pub attempts: u32,
    pub first_attempt_ms: i64,
    pub next_attempt_ms: i64,
    /// What the last attempt came to, for people.
    pub last_error: String,
}

impl Retry {
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.next_attempt_ms.max(0).to_be_bytes().to_vec();
        k.extend_from_slice(&self.offset.to_be_bytes());
        k
    }
}

/// A message the destination will not receive unless replayed: why, and the last request
/// and answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub offset: Offset,
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
pub fn list(store: &dyn Store) -> Result<Vec<DestinationRecord>, EngineError> {
    let mut out: Vec<DestinationRecord> = store
        .state_scan(NS_DESTINATION, REGISTRY_PARTITION)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(out)
}

/// A destination by id or name.
pub fn get(store: &dyn Store, reference: &str) -> Result<DestinationRecord, EngineError> {
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

/// What this version delivers: events to webhooks, forwards and warehouses. A definition that asks for
/// more is refused with the field named, rather than accepted and left undelivered.
fn check_supported(spec: &DestinationSpec) -> Result<(), EngineError> {
    let unsupported = |field: &str, what: &str| EngineError::InvalidAt {
        field: field.to_owned(),
        message: format!("{what} are not delivered by this version of Rapport yet"),
    };
    if spec.deliver.trait_changes {
        return Err(unsupported("deliver.trait_changes", "trait changes"));
    }
    if spec.deliver.audience_changes.is_some() {
        return Err(unsupported(
            "deliver.audience_changes",
            "segment entries and exits",
        ));
    }
    if spec.deliver.alerts {
        return Err(unsupported("deliver.alerts", "value-model alerts"));
    }
    if spec.delivery.per_user_ordering {
        return Err(unsupported(
            "delivery.per_user_ordering",
            "ordered deliveries per user",
        ));
    }
    if spec.delivery.rate_limit_per_second != 0 {
        return Err(unsupported(
            "delivery.rate_limit_per_second",
            "rate-limited deliveries",
        ));
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
    store.state_commit(
        &[write_record(&record)],
        Some((&consumer(&record.id), start)),
    )?;
    Ok(record)
}

/// Replaces a destination's definition (its place in the log, retries and dead letters
/// stay). A webhook left without a secret keeps its current one; a warehouse URL whose
/// password is the mask (`…`) keeps its current password.
pub fn update(
    store: &dyn Store,
    reference: &str,
    mut spec: DestinationSpec,
    now_ms: i64,
) -> Result<DestinationRecord, EngineError> {
    let mut record = get(store, reference)?;
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
    store.state_commit(&[write_record(&record)], None)?;
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
    store.state_commit(&[write_record(&record)], None)?;
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
    for ns in [NS_RETRY, NS_FAILED] {
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

/// One page of a destination's dead letters, by offset, after `after`.
pub fn failures(
    store: &dyn Store,
    id: &str,
    after: Option<Offset>,
    limit: usize,
) -> Result<Vec<Failure>, EngineError> {
    let after = after.map(|o| o.to_be_bytes());
    store
        .state_scan_range(NS_FAILED, id, after.as_ref().map(|a| &a[..]), limit)?
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

/// Puts dead letters back for delivery (all of them when `offsets` is `None`): each is
/// parked for an attempt now, its attempts counted afresh. Answers how many.
pub fn replay(
    store: &dyn Store,
    id: &str,
    offsets: Option<&[Offset]>,
    now_ms: i64,
) -> Result<usize, EngineError> {
    let mut writes = Vec::new();
    let mut n = 0;
    for failure in failures(store, id, None, usize::MAX)? {
        if offsets.is_some_and(|o| !o.contains(&failure.offset)) {
            continue;
        }
        let retry = Retry {
            offset: failure.offset,
            attempts: 0,
            first_attempt_ms: now_ms,
            next_attempt_ms: now_ms,
            last_error: format!("replayed after: {}", failure.error),
        };
        writes.push(StateWrite {
            namespace: NS_FAILED.into(),
            profile: id.into(),
            key: failure.offset.to_be_bytes().to_vec(),
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

/// The definition as the API shows it: secrets masked.
pub fn masked(spec: &DestinationSpec) -> DestinationSpec {
    let mut spec = spec.clone();
    let mask = |s: &str| format!("{}…", s.chars().take(10).collect::<String>());
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
