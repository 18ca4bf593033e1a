//! The journeys' `emit` steps, logged: a thread that follows the journey action feed and
//! appends each emitted track event to the log through the same group-commit writer as
//! the tracking API, so that every later stage (segments, other journeys, destinations)
//! sees it like any event.
//!
//! The event is the customer's: it carries the profile's `userId` (else its first
//! `anonymousId`), source `journeys`, and `messageId` `journey:{action key}`. Its cursor
//! moves only after the append is durable; after a `kill -9` between the two, the append is
//! made again and the log's de-duplication window (the same source and message id) keeps
//! one copy.

use crate::EngineError;
use crate::identity::runner::SharedAppend;
use crate::journeys::{JourneyAction, Journeys};
use crate::periodic::Periodic;
use crate::profiles::Profiles;
use chrono::Utc;
use rapport_core::event::{EventType, Limits, ParsedRequest, Stamp};
use rapport_core::identity::{IdentifierKind, ProfileId};
use rapport_journeys::ActionKind;
use rapport_store::{AppendItem, StateWrite, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The emitter's cursor: partition [`PART_CURSOR`], key `emitted`, the last action
/// sequence dealt with (u64, big-endian).
pub const NS_EMIT: &str = "journey.emit";
const PART_CURSOR: &str = "cursor";
const KEY_CURSOR: &[u8] = b"emitted";
/// The source emitted events are logged under.
pub const SOURCE: &str = "journeys";
/// Actions read per step.
const BATCH: usize = 500;
/// How often the feed is looked at.
const INTERVAL: Duration = Duration::from_millis(20);

/// The last action sequence the emitter has dealt with.
pub fn cursor(store: &dyn Store) -> Result<u64, EngineError> {
    Ok(store
        .state_get(NS_EMIT, PART_CURSOR, KEY_CURSOR)?
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// The log entry an `emit` action makes, or `None` when it is not an emit, or the
/// customer has no `userId` or `anonymousId` to carry it (logged as a warning).
pub fn emitted_event(store: &dyn Store, action: &JourneyAction) -> Option<AppendItem> {
    let ActionKind::Emit { event, properties } = &action.action.kind else {
        return None;
    };
    let record = match (Profiles { store }).live(&ProfileId::new(action.profile.clone())) {
        Ok(Some(r)) => r,
        _ => {
            tracing::warn!(profile = %action.profile, journey = %action.journey,
                "an emit step's profile is gone; the event is not logged");
            return None;
        }
    };
    let first = |kind: IdentifierKind| {
        record
            .identifiers
            .iter()
            .find(|r| r.identifier.kind == kind)
            .map(|r| r.identifier.value.clone())
    };
    let mut message = json!({
        "type": "track",
        "event": event,
        "properties": properties,
        "messageId": format!("journey:{}", action.action.key),
        "timestamp": rapport_core::event::format_timestamp(&action.at),
        "context": {"rapport": {"journey": action.journey, "version": action.version,
                                "step": action.action.node, "instance": action.instance}},
    });
    match (
        first(IdentifierKind::UserId),
        first(IdentifierKind::AnonymousId),
    ) {
        (Some(u), _) => message["userId"] = Value::String(u),
        (None, Some(a)) => message["anonymousId"] = Value::String(a),
        (None, None) => {
            tracing::warn!(profile = %action.profile, journey = %action.journey,
                "an emit step's customer has no userId or anonymousId; the event is not logged");
            return None;
        }
    }
    let bytes = serde_json::to_vec(&message).expect("JSON serialises");
    let limits = Limits::default();
    let parsed = ParsedRequest::single(&bytes, EventType::Track, &limits).ok()?;
    let stamp = Stamp {
        received_at: Utc::now(),
        source_id: SOURCE,
    };
    let mut no_id = || String::new();
    match parsed.events(&stamp, &limits, &mut no_id).pop()? {
        Ok(e) => Some(AppendItem {
            dedup_key: e.dedup_key(),
            payload: e.to_json(),
        }),
        Err(e) => {
            tracing::warn!(journey = %action.journey, error = %e,
                "an emit step's event is refused; it is not logged");
            None
        }
    }
}

/// Logs the emitted events of the next actions after the cursor. Answers how many actions
/// it dealt with.
pub fn step(store: &dyn Store, append: &SharedAppend) -> Result<usize, EngineError> {
    let after = cursor(store)?;
    let actions = Journeys { store }.actions(after, BATCH)?;
    let Some(last) = actions.last().map(|a| a.seq) else {
        return Ok(0);
    };
    let items: Vec<AppendItem> = actions
        .iter()
        .filter_map(|a| emitted_event(store, a))
        .collect();
    if !items.is_empty() {
        append(items)?;
    }
    store.state_commit(
        &[StateWrite {
            namespace: NS_EMIT.into(),
            profile: PART_CURSOR.into(),
            key: KEY_CURSOR.to_vec(),
            value: Some(last.to_be_bytes().to_vec()),
        }],
        None,
    )?;
    Ok(actions.len())
}

/// The emitter thread; stop it before the log writer it appends through.
pub struct Emitter(Periodic);

impl Emitter {
    pub fn start(store: Arc<dyn Store>, append: SharedAppend) -> Emitter {
        Emitter(Periodic::spawn(
            "journey-emitter",
            || INTERVAL,
            INTERVAL,
            move || {
                loop {
                    match step(store.as_ref(), &append) {
                        Ok(n) if n == BATCH => continue,
                        Ok(_) => break,
                        Err(EngineError::ShuttingDown) => return false,
                        Err(e) => {
                            tracing::warn!(error = %e, "the journey emitter will try again");
                            break;
                        }
                    }
                }
                true
            },
        ))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}
