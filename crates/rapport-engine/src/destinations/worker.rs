//! The delivery worker of one destination: a thread that parks nothing in memory, reads
//! the log behind the processor, sends what its destination selects, and commits each
//! request's outcome (delivered, parked for a retry, dead-lettered) atomically with its
//! offset. [`DeliveryThreads`] keeps one worker per destination.

use super::send::{self, Request};
use super::warehouse::Written;
use super::{
    DestinationRecord, Failure, Feed, NS_FAILED, NS_RETRY, Retry, consumer, cursor, cursor_write,
    failure_key,
};
use crate::EngineError;
use crate::audiences::store::Audiences;
use crate::audiences::{AudienceChange, ChangeKind};
use crate::dead_letters::{Entry, read_entry};
use crate::profiles::{ProfileRecord, Profiles};
use crate::trait_changes::{self, TraitChange};
use crate::value::{ALERT_FEED, NS_ALERT};
use chrono::{DateTime, Utc};
use rapport_core::identity::ProfileId;
use rapport_destinations::Checked;
use rapport_destinations::overview::{HourStats, hour_of};
use rapport_destinations::payload::{
    ProfileRef, alert_body, audience_change_body, event_body, trait_change_body,
};
use rapport_destinations::retry::{Attempt, DeadLetterReason, Decision};
use rapport_destinations::selection::MessageKind;
use rapport_destinations::selection::StoredEvent;
use rapport_store::{Offset, StateWrite, Store};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Log entries read per step.
const READ_BATCH: usize = 256;
/// Retries attempted per step.
const RETRY_BATCH: usize = 64;

type Limiter = governor::DefaultDirectRateLimiter;
/// Messages of one request: each one's position in its feed and its body.
type Run = Vec<(Offset, Value)>;
/// A state-store entry: key and value.
type StateRow = (Vec<u8>, Vec<u8>);
/// An entry of a feed: its position, and its body when this destination takes it (`Err`:
/// the body could not be made, a dead letter at once).
type FeedItem = (u64, Option<Result<Value, String>>);

/// The delivery state machine of one destination.
pub struct Worker {
    store: Arc<dyn Store>,
    id: String,
    /// The destination's name as of this step (a journey's `send` may name it so).
    name: String,
    /// Its consent rule as of this step.
    consent: Option<rapport_destinations::ConsentRule>,
    /// Writes to commit with the next request's outcome (dead letters of messages that
    /// could not be made).
    pending: Vec<StateWrite>,
    client: reqwest::blocking::Client,
    /// A warehouse destination's connection and table knowledge.
    warehouse: super::warehouse::Slot,
    compiled: Option<(i64, Checked)>,
    /// `delivery.rate_limit_per_second`, when set.
    limiter: Option<Limiter>,
    /// Requests this step may still make (one while suspended: the probe).
    budget: usize,
    /// Failed attempts in a row (in memory: a restart counts afresh).
    failures_in_row: u32,
    last_error: String,
    /// Whether a request of this step was delivered.
    delivered: bool,
    /// The current hour of the delivery overview, as stored and added to since.
    hour: HourStats,
    /// Whether `hour` holds counts not yet committed.
    hour_dirty: bool,
    /// Messages left out for consent since the overview last took them.
    skipped_consent: std::cell::Cell<u64>,
    /// The suppression list, and what it stopped since the last commit.
    suppressions: crate::privacy::Suppressions,
    skipped_suppressed: std::cell::Cell<u64>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, id: &str) -> Worker {
        Worker {
            suppressions: crate::privacy::Suppressions::new(store.clone()),
            store,
            id: id.to_owned(),
            name: String::new(),
            consent: None,
            pending: Vec::new(),
            client: send::client(),
            warehouse: Default::default(),
            compiled: None,
            limiter: None,
            budget: usize::MAX,
            failures_in_row: 0,
            last_error: String::new(),
            delivered: false,
            hour: HourStats::new(i64::MIN),
            hour_dirty: false,
            skipped_consent: std::cell::Cell::new(0),
            skipped_suppressed: std::cell::Cell::new(0),
        }
    }

    /// Delivers what is due: parked retries whose time has come, then new log entries up
    /// to the processor's offset. Answers how many requests were made; `Ok(None)` when the
    /// destination no longer exists.
    pub fn step(&mut self, now: DateTime<Utc>) -> Result<Option<usize>, EngineError> {
        let record = match super::get(self.store.as_ref(), &self.id) {
            Ok(r) => r,
            Err(EngineError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.name.clone_from(&record.spec.name);
        self.consent.clone_from(&record.spec.consent);
        if record.paused {
            return Ok(Some(0));
        }
        if self
            .compiled
            .as_ref()
            .is_none_or(|(at, _)| *at != record.updated_at_ms)
        {
            let checked = record.spec.check().map_err(|e| {
                EngineError::Corrupt(format!(
                    "stored destination {} does not check: {e}",
                    record.id
                ))
            })?;
            self.compiled = Some((record.updated_at_ms, checked));
            self.limiter = std::num::NonZeroU32::new(record.spec.delivery.rate_limit_per_second)
                .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n)));
        }
        let suspended = super::suspension(self.store.as_ref(), &record.id)?;
        match &suspended {
            Some(s) if now.timestamp_millis() < s.next_probe_ms => return Ok(Some(0)),
            Some(_) => self.budget = 1,
            None => self.budget = usize::MAX,
        }
        self.delivered = false;
        self.roll_hour(&record.id, now)?;
        let requests = self.deliver(&record, now)?;
        self.update_suspension(&record, suspended, requests, now)?;
        Ok(Some(requests))
    }

    /// Retries due, then new log entries, then the feeds, within the step's budget.
    fn deliver(
        &mut self,
        record: &DestinationRecord,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let record = record.clone();
        let retried = self.retry_due(&record, now)?;
        let sent = self.deliver_new(&record, now)?;
        let audience = self.deliver_feed(&record, Feed::AudienceChange, now)?;
        let traits = self.deliver_feed(&record, Feed::TraitChange, now)?;
        let alerts = self.deliver_feed(&record, Feed::Alert, now)?;
        let journeys = self.deliver_feed(&record, Feed::JourneyAction, now)?;
        let backfilled = self.deliver_backfill(&record, now)?;
        Ok(retried + sent + audience + traits + alerts + journeys + backfilled)
    }

    /// Suspends the destination after `pause_after_failures` failed attempts in a row, and
    /// lifts the suspension when a probe is delivered (else schedules the next probe).
    fn update_suspension(
        &mut self,
        record: &DestinationRecord,
        suspended: Option<super::Suspension>,
        requests: usize,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let now_ms = now.timestamp_millis();
        let limit = record.spec.delivery.pause_after_failures;
        let write = match suspended {
            None if limit > 0 && self.failures_in_row >= limit => {
                tracing::warn!(
                    destination = %record.id,
                    name = %record.spec.name,
                    failures = self.failures_in_row,
                    last_error = %self.last_error,
                    "destination suspended after failing attempts in a row; probing until one is delivered"
                );
                metrics::counter!("rapport_destination_suspensions_total", "destination" => record.id.clone())
                    .increment(1);
                let s = super::Suspension {
                    since_ms: now_ms,
                    failures: self.failures_in_row,
                    last_error: self.last_error.clone(),
                    next_probe_ms: super::Suspension::probe_after(0, now_ms),
                    probes: 0,
                };
                super::suspension_write(&record.id, Some(&s))
            }
            None => return Ok(()),
            Some(_) if self.delivered => {
                tracing::info!(destination = %record.id, "a probe was delivered; destination resumed");
                super::suspension_write(&record.id, None)
            }
            Some(mut s) if requests > 0 => {
                s.probes += 1;
                s.last_error.clone_from(&self.last_error);
                s.next_probe_ms = super::Suspension::probe_after(s.probes, now_ms);
                super::suspension_write(&record.id, Some(&s))
            }
            // Nothing to probe with yet: the next message is the probe.
            Some(_) => return Ok(()),
        };
        metrics::gauge!("rapport_destination_suspended", "destination" => record.id.clone())
            .set(if write.value.is_some() { 1.0 } else { 0.0 });
        self.store.state_commit(&[write], None)?;
        Ok(())
    }

    /// Makes `hour` the overview of `now`'s hour: read back when it is not (after a
    /// restart, or as the hour turns), and the hours past the overview's retention dropped.
    fn roll_hour(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), EngineError> {
        let hour_ms = hour_of(now.timestamp_millis());
        if self.hour.hour_ms == hour_ms {
            return Ok(());
        }
        self.hour = super::hour_stats(self.store.as_ref(), id, hour_ms)?
            .unwrap_or_else(|| HourStats::new(hour_ms));
        self.hour_dirty = false;
        let expired = super::expired_hours(self.store.as_ref(), id, hour_ms)?;
        if !expired.is_empty() {
            self.store.state_commit(&expired, None)?;
        }
        Ok(())
    }

    /// Adds a message's outcome (the write it made: none when delivered) to the overview.
    fn tally(&mut self, write: &Option<StateWrite>, now: DateTime<Utc>) {
        match write.as_ref().map(|w| w.namespace.as_str()) {
            None => self.hour.delivered += 1,
            Some(NS_RETRY) => self.hour.retried += 1,
            Some(_) => self.hour.dead_lettered += 1,
        }
        if write.is_some() && !self.last_error.is_empty() {
            self.hour.last_error = Some((now.timestamp_millis(), self.last_error.clone()));
        }
        self.hour_dirty = true;
    }

    /// The overview's write, when it changed since the last commit.
    fn hour_write(&mut self, id: &str) -> Option<StateWrite> {
        let skipped = self.skipped_consent.take();
        if skipped > 0 {
            self.hour.skipped_consent += skipped;
            self.hour_dirty = true;
            metrics::counter!(
                "rapport_destination_messages_total",
                "destination" => id.to_owned(),
                "outcome" => "skipped_consent"
            )
            .increment(skipped);
        }
        let suppressed = self.skipped_suppressed.take();
        if suppressed > 0 {
            self.hour.skipped_suppressed += suppressed;
            self.hour_dirty = true;
            metrics::counter!(
                "rapport_destination_messages_total",
                "destination" => id.to_owned(),
                "outcome" => "skipped_suppressed"
            )
            .increment(suppressed);
        }
        if !std::mem::take(&mut self.hour_dirty) {
            return None;
        }
        Some(super::hour_stats_write(id, &self.hour))
    }

    /// Counts an attempt towards suspension: a delivery resets the count, any other answer
    /// or no answer adds one (a message the template cannot render says nothing of the
    /// receiver).
    fn note(&mut self, outcome: &Outcome) {
        let failed = match outcome {
            Outcome::Unrenderable(_) => return,
            Outcome::Sent(_, sent) => {
                if matches!(sent.attempt, Attempt::Answered { status, .. } if (200..300).contains(&status))
                {
                    None
                } else {
                    Some(sent.error.clone())
                }
            }
            // A warehouse that wrote anything is up; one that refused a row for its data
            // answered, and says nothing of its health.
            Outcome::Written(written) => {
                let values = || written.values().map(|(w, _)| w);
                if values().any(|w| matches!(w, Written::Delivered)) {
                    None
                } else if let Some(error) = values().find_map(|w| match w {
                    Written::Retry { error, .. } => Some(error.clone()),
                    _ => None,
                }) {
                    Some(error)
                } else {
                    return;
                }
            }
        };
        match failed {
            None => {
                self.failures_in_row = 0;
                self.delivered = true;
            }
            Some(error) => {
                self.failures_in_row = self.failures_in_row.saturating_add(1);
                self.last_error = error;
            }
        }
    }

    fn checked(&self) -> &Checked {
        &self.compiled.as_ref().expect("compiled in step").1
    }

    /// The body of the event stored at `offset` for this destination, or `None` when the
    /// destination does not take it (or it is not an event).
    fn message(&self, payload: &[u8]) -> Result<Option<Value>, EngineError> {
        let Entry::Event(event) = read_entry(payload) else {
            return Ok(None);
        };
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            return Ok(None);
        };
        let wanted =
            StoredEvent::new(&value).is_some_and(|e| self.checked().matcher.wants_event(&e));
        if !wanted {
            return Ok(None);
        }
        if self.suppressions.event(&event) {
            self.skipped_suppressed
                .set(self.skipped_suppressed.get() + 1);
            return Ok(None);
        }
        let record = self.profile_of(&value)?;
        if self.stopped_by_consent(record.as_ref()) {
            return Ok(None);
        }
        let profile = record.as_ref().map(profile_ref).unwrap_or_default();
        Ok(Some(event_body(&value, &profile)))
    }

    /// The profile an event resolved to, by its `userId`, else its `anonymousId`.
    fn profile_of(&self, event: &Value) -> Result<Option<ProfileRecord>, EngineError> {
        let profiles = Profiles {
            store: self.store.as_ref(),
        };
        for (kind, field) in [("user_id", "userId"), ("anonymous_id", "anonymousId")] {
            let Some(id) = event.get(field).and_then(Value::as_str) else {
                continue;
            };
            match profiles.resolve(&format!("{kind}:{id}")) {
                Ok(record) => return Ok(Some(record)),
                Err(EngineError::NotFound(_))
                | Err(EngineError::InvalidAt { .. })
                | Err(EngineError::Invalid { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Whether the destination's consent rule stops a message about `record` (counted
    /// in the overview when it does). Consent is read as it is at delivery, so that a
    /// withdrawal stops what is still waiting.
    ///
    /// A person holding a suppressed identifier is stopped first, whatever the rule.
    fn stopped_by_consent(&self, record: Option<&ProfileRecord>) -> bool {
        if let Some(r) = record
            && self
                .suppressions
                .any(r.identifiers.iter().map(|i| &i.identifier))
        {
            self.skipped_suppressed
                .set(self.skipped_suppressed.get() + 1);
            return true;
        }
        let Some(rule) = &self.consent else {
            return false;
        };
        let stopped = rule.blocks(record.map(|r| &r.consent)).is_some();
        if stopped {
            self.skipped_consent.set(self.skipped_consent.get() + 1);
        }
        stopped
    }

    /// The body of an audience change for this destination, or `None` when it does not
    /// take changes of that segment.
    fn audience_message(&self, change: &AudienceChange) -> Result<Option<Value>, EngineError> {
        if !self
            .checked()
            .matcher
            .wants_audience_change(&change.segment)
        {
            return Ok(None);
        }
        let Some(profile) = self.profile_now(&change.profile)? else {
            return Ok(None);
        };
        let at = rapport_core::event::format_timestamp(&change.at);
        let entered = matches!(change.change, ChangeKind::Entered);
        Ok(Some(audience_change_body(
            &profile,
            &change.segment,
            entered,
            &at,
        )))
    }

    /// The body of a trait change for this destination.
    fn trait_message(&self, change: &TraitChange) -> Result<Option<Value>, EngineError> {
        let Some(profile) = self.profile_now(&change.profile)? else {
            return Ok(None);
        };
        let at = rapport_core::event::format_timestamp(&change.at);
        Ok(Some(trait_change_body(
            &profile,
            &change.name,
            &change.value,
            &change.previous,
            &at,
        )))
    }

    /// The body of a value-model alert.
    fn alert_message(&self, alert: &Value) -> Result<Option<Value>, EngineError> {
        let profile = match alert.get("profile").and_then(Value::as_str) {
            Some(p) => self.profile_now(p)?,
            None if self.stopped_by_consent(None) => None,
            None => Some(ProfileRef::default()),
        };
        Ok(profile.map(|p| alert_body(&p, alert)))
    }

    /// The profile as it is now (a profile merged since is named by its survivor); `None`
    /// when the destination's consent rule stops messages about it.
    fn profile_now(&self, id: &str) -> Result<Option<ProfileRef>, EngineError> {
        let record = Profiles {
            store: self.store.as_ref(),
        }
        .live(&ProfileId::new(id))?;
        if self.stopped_by_consent(record.as_ref()) {
            return Ok(None);
        }
        Ok(Some(match record {
            Some(record) => profile_ref(&record),
            None => ProfileRef {
                profile_id: Some(id.to_owned()),
                identifiers: Map::new(),
            },
        }))
    }

    /// The entries of a feed other than the log after position `after` (at most `limit`):
    /// each one's position, with its body when this destination takes it.
    fn feed_messages(
        &self,
        feed: Feed,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, EngineError> {
        let store = self.store.as_ref();
        let made = |items: Result<Vec<(u64, Option<Value>)>, EngineError>| {
            items.map(|v| v.into_iter().map(|(p, m)| (p, m.map(Ok))).collect())
        };
        let items = match feed {
            Feed::Event => Err(EngineError::Corrupt(
                "events are read from the log, not a feed".into(),
            )),
            Feed::AudienceChange => Audiences { store }
                .feed(after, limit)?
                .iter()
                .map(|c| Ok((c.seq, self.audience_message(c)?)))
                .collect(),
            Feed::Alert => store
                .state_scan_range(NS_ALERT, ALERT_FEED, Some(&super::alert_key(after)), limit)?
                .into_iter()
                .map(|(key, value)| {
                    let position = super::alert_position(&key).ok_or_else(|| {
                        EngineError::Corrupt("an alert key is not 12 bytes".into())
                    })?;
                    let alert: Value = serde_json::from_slice(&value)
                        .map_err(|e| EngineError::Corrupt(format!("an alert: {e}")))?;
                    Ok((position, self.alert_message(&alert)?))
                })
                .collect(),
            Feed::TraitChange => trait_changes::read(store, after, limit)?
                .iter()
                .map(|c| Ok((c.seq, self.trait_message(c)?)))
                .collect(),
            Feed::JourneyAction => {
                return crate::journeys::Journeys { store }
                    .actions(after, limit)?
                    .into_iter()
                    .map(|a| Ok((a.seq, self.journey_message(a)?)))
                    .collect();
            }
        };
        made(items)
    }

    /// A journey action's message when it is a `send` naming this destination (by id or
    /// name); `Err` when its template could not render it.
    fn journey_message(
        &self,
        action: crate::journeys::JourneyAction,
    ) -> Result<Option<Result<Value, String>>, EngineError> {
        let rapport_journeys::ActionKind::Send { destination, .. } = &action.action.kind else {
            return Ok(None);
        };
        if *destination != self.id && *destination != self.name {
            return Ok(None);
        }
        if (self.consent.is_some() || !self.suppressions.is_empty())
            && self.profile_now(&action.profile)?.is_none()
        {
            return Ok(None);
        }
        Ok(match (action.message, action.render_error) {
            (_, Some(error)) => Some(Err(error)),
            (Some(message), None) => Some(Ok(message)),
            (None, None) => Some(Err("the journey action holds no message".into())),
        })
    }

    /// Delivers a feed's entries after the destination's cursor, batched like events,
    /// each request's outcome committed with the cursor.
    fn deliver_feed(
        &mut self,
        record: &DestinationRecord,
        feed: Feed,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let kind = match feed {
            Feed::Event => Some(MessageKind::Event),
            Feed::AudienceChange => Some(MessageKind::AudienceChange),
            Feed::TraitChange => Some(MessageKind::TraitChange),
            Feed::Alert => Some(MessageKind::Alert),
            // A journey's `send` names its destination: no selection to ask.
            Feed::JourneyAction => None,
        };
        if self.budget == 0 || kind.is_some_and(|k| !self.checked().matcher.wants_kind(k)) {
            return Ok(0);
        }
        let position = cursor(self.store.as_ref(), &record.id, feed)?;
        let entries = self.feed_messages(feed, position, READ_BATCH)?;
        if entries.is_empty() {
            return Ok(0);
        }
        let per_request = per_request(record);
        let mut run: Vec<(Offset, Value)> = Vec::new();
        let mut requests = 0;
        let mut last = position;
        for (seq, message) in entries {
            if self.budget == 0 {
                break;
            }
            last = seq;
            match message {
                Some(Ok(m)) => run.push((seq, m)),
                Some(Err(error)) => {
                    let outcome = Outcome::Unrenderable(error);
                    let write = self.outcome_writes(
                        record,
                        feed,
                        seq,
                        1,
                        now.timestamp_millis(),
                        &outcome,
                        now,
                    );
                    self.tally(&write, now);
                    self.pending.extend(write);
                }
                None => {}
            }
            if run.len() >= per_request {
                let run = std::mem::take(&mut run);
                self.flush(record, feed, run, Commit::Cursor(seq), now)?;
                requests += 1;
            }
        }
        if !run.is_empty() {
            requests += 1;
        }
        self.flush(record, feed, run, Commit::Cursor(last), now)?;
        Ok(requests)
    }

    /// Under `delivery.per_user_ordering`, parks the events of `run` whose user has an
    /// earlier message waiting for a retry, held behind it (their writes go to `writes`);
    /// answers the rest, each with its user's order key.
    fn hold_behind_earlier(
        &self,
        record: &DestinationRecord,
        feed: Feed,
        run: Vec<(Offset, Value)>,
        now: DateTime<Utc>,
        writes: &mut Vec<StateWrite>,
    ) -> Result<(Run, Vec<Option<String>>), EngineError> {
        if !record.spec.delivery.per_user_ordering || feed != Feed::Event {
            let n = run.len();
            return Ok((run, vec![None; n]));
        }
        let mut send = Vec::new();
        let mut keys = Vec::new();
        for (offset, m) in run {
            let user = order_key(&m);
            let waiting = match &user {
                Some(u) => self.first_waiting(&record.id, u, None)?.is_some(),
                None => false,
            };
            match user {
                Some(u) if waiting => {
                    let retry = Retry {
                        offset,
                        feed,
                        attempts: 0,
                        first_attempt_ms: now.timestamp_millis(),
                        next_attempt_ms: super::HELD_MS,
                        last_error: "held behind an earlier message of this user".into(),
                        held: true,
                        order_key: Some(u.clone()),
                    };
                    count(&record.id, "held");
                    writes.push(StateWrite {
                        namespace: super::NS_ORDER.into(),
                        profile: record.id.clone(),
                        key: super::order_index_key(&u, offset),
                        value: Some(retry.key()),
                    });
                    writes.push(StateWrite {
                        namespace: NS_RETRY.into(),
                        profile: record.id.clone(),
                        key: retry.key(),
                        value: Some(serde_json::to_vec(&retry).expect("a retry serialises")),
                    });
                }
                user => {
                    send.push((offset, m));
                    keys.push(user);
                }
            }
        }
        Ok((send, keys))
    }

    /// The first message of `user` waiting for a retry after offset `after` (from the
    /// start when `None`): its index key and its retry's key.
    fn first_waiting(
        &self,
        id: &str,
        user: &str,
        after: Option<Offset>,
    ) -> Result<Option<StateRow>, EngineError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        let from = match after {
            Some(o) => super::order_index_key(user, o),
            None => user.as_bytes().to_vec(),
        };
        Ok(self
            .store
            .state_scan_range(super::NS_ORDER, id, Some(&from), 1)?
            .into_iter()
            .next()
            .filter(|(k, _)| k.starts_with(&prefix)))
    }

    /// The writes that take `user`'s message at `offset` out of the order index (it was
    /// delivered or dead-lettered) and release the user's next held message, due now.
    fn release_next(
        &self,
        id: &str,
        user: &str,
        offset: Offset,
        now: DateTime<Utc>,
    ) -> Result<Vec<StateWrite>, EngineError> {
        let mut writes = vec![StateWrite {
            namespace: super::NS_ORDER.into(),
            profile: id.into(),
            key: super::order_index_key(user, offset),
            value: None,
        }];
        let Some((index_key, retry_key)) = self.first_waiting(id, user, Some(offset))? else {
            return Ok(writes);
        };
        let Some(bytes) = self.store.state_get(NS_RETRY, id, &retry_key)? else {
            return Ok(writes);
        };
        let mut next: Retry = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::Corrupt(format!("a retry record: {e}")))?;
        if next.held {
            next.held = false;
            next.next_attempt_ms = now.timestamp_millis();
            next.last_error = "released: the user's earlier message was settled".into();
            writes.push(StateWrite {
                namespace: NS_RETRY.into(),
                profile: id.into(),
                key: retry_key,
                value: None,
            });
            writes.push(StateWrite {
                namespace: super::NS_ORDER.into(),
                profile: id.into(),
                key: index_key,
                value: Some(next.key()),
            });
            writes.push(StateWrite {
                namespace: NS_RETRY.into(),
                profile: id.into(),
                key: next.key(),
                value: Some(serde_json::to_vec(&next).expect("a retry serialises")),
            });
        }
        Ok(writes)
    }

    /// Sends the next run of a backfill's events (see [`super::Backfill`]), committing its
    /// progress with each request's outcome; finishes it when it reaches `through`.
    fn deliver_backfill(
        &mut self,
        record: &DestinationRecord,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        if self.budget == 0 {
            return Ok(0);
        }
        let store = self.store.clone();
        let Some(mut job) = super::backfill(store.as_ref(), &record.id)? else {
            return Ok(0);
        };
        if job.finished_at_ms.is_some() {
            return Ok(0);
        }
        if super::backfill_cancelled(store.as_ref(), &record.id, job.started_at_ms)? {
            store.state_commit(&super::backfill_forget(&record.id), None)?;
            return Ok(0);
        }
        let entries = if job.position < job.through {
            store.read_after(
                job.position,
                READ_BATCH.min((job.through - job.position) as usize),
            )?
        } else {
            Vec::new()
        };
        let per_request = per_request(record);
        let mut run: Vec<(Offset, Value)> = Vec::new();
        let mut requests = 0;
        let in_range = |m: &Value| {
            m.get("timestamp")
                .and_then(Value::as_str)
                .and_then(rapport_core::event::parse_timestamp)
                .is_some_and(|t| {
                    let ms = t.timestamp_millis();
                    job.since_ms <= ms && ms < job.until_ms
                })
        };
        let mut last = job.position;
        for (offset, payload) in entries {
            if offset > job.through || self.budget == 0 {
                break;
            }
            last = offset;
            if let Some(m) = self.message(&payload)?
                && in_range(&m)
            {
                run.push((offset, m));
            }
            if run.len() >= per_request {
                let sent = std::mem::take(&mut run);
                job.position = last;
                job.sent += sent.len() as u64;
                let progress = Commit::Backfill(job.clone());
                self.flush(record, Feed::Event, sent, progress, now)?;
                requests += 1;
            }
        }
        job.sent += run.len() as u64;
        if !run.is_empty() {
            requests += 1;
        }
        job.position = last;
        if job.position >= job.through {
            job.finished_at_ms = Some(now.timestamp_millis());
            tracing::info!(destination = %record.id, sent = job.sent, "backfill finished");
        }
        self.flush(record, Feed::Event, run, Commit::Backfill(job), now)?;
        Ok(requests)
    }

    fn deliver_new(
        &mut self,
        record: &DestinationRecord,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        if self.budget == 0 {
            return Ok(0);
        }
        let store = self.store.clone();
        let name = consumer(&record.id);
        let upto = store.consumer_offset(crate::processor::CONSUMER)?;
        let position = store.consumer_offset(&name)?;
        if position >= upto {
            return Ok(0);
        }
        let per_request = per_request(record);
        let entries = store.read_after(position, READ_BATCH.min((upto - position) as usize))?;
        let mut run: Vec<(Offset, Value)> = Vec::new();
        let mut requests = 0;
        let mut last = position;
        for (offset, payload) in entries {
            if offset > upto || self.budget == 0 {
                break;
            }
            last = offset;
            if let Some(m) = self.message(&payload)? {
                run.push((offset, m));
            }
            if run.len() >= per_request {
                self.flush(
                    record,
                    Feed::Event,
                    std::mem::take(&mut run),
                    Commit::Log(last),
                    now,
                )?;
                requests += 1;
            }
        }
        if !run.is_empty() {
            requests += 1;
        }
        // Also commits the offset past entries the destination does not take.
        self.flush(record, Feed::Event, run, Commit::Log(last), now)?;
        Ok(requests)
    }

    /// Sends one request for `run` (messages of `feed`; possibly empty: then only the
    /// position moves) and commits its outcome with the position it reached, `commit`.
    fn flush(
        &mut self,
        record: &DestinationRecord,
        feed: Feed,
        run: Vec<(Offset, Value)>,
        commit: Commit,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut writes = std::mem::take(&mut self.pending);
        let (run, keys) = self.hold_behind_earlier(record, feed, run, now, &mut writes)?;
        if !run.is_empty() {
            let outcome = self.attempt(record, feed, &run, now);
            self.note(&outcome);
            for ((o, _), key) in run.iter().zip(keys) {
                let mut write =
                    self.outcome_writes(record, feed, *o, 1, now.timestamp_millis(), &outcome, now);
                self.tally(&write, now);
                if let (Some(user), Some(w)) = (key, write.as_mut()) {
                    writes.extend(order_parked(&record.id, &user, *o, w));
                }
                writes.extend(write);
            }
        }
        writes.extend(self.hour_write(&record.id));
        match commit {
            Commit::Log(offset) => self
                .store
                .state_commit(&writes, Some((&consumer(&record.id), offset)))?,
            Commit::Cursor(position) => {
                writes.push(cursor_write(&record.id, feed, position));
                self.store.state_commit(&writes, None)?
            }
            Commit::Backfill(job) => {
                writes.push(super::backfill_write(&record.id, Some(&job)));
                self.store.state_commit(&writes, None)?
            }
        }
        Ok(())
    }

    fn retry_due(
        &mut self,
        record: &DestinationRecord,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let rows = self
            .store
            .state_scan_range(NS_RETRY, &record.id, None, RETRY_BATCH)?;
        let mut requests = 0;
        for (key, value) in rows {
            let retry: Retry = serde_json::from_slice(&value)
                .map_err(|e| EngineError::Corrupt(format!("a retry record: {e}")))?;
            if retry.next_attempt_ms > now.timestamp_millis() || self.budget == 0 {
                break;
            }
            // Under per-user ordering only the user's first waiting message is attempted
            // (a batch that failed whole parks several, each with its own jitter).
            if let Some(user) = &retry.order_key
                && !retry.held
                && let Some((_, head)) = self.first_waiting(&record.id, user, None)?
                && head != key
            {
                let mut held = retry.clone();
                held.held = true;
                held.next_attempt_ms = super::HELD_MS;
                let writes = [
                    StateWrite {
                        namespace: NS_RETRY.into(),
                        profile: record.id.clone(),
                        key,
                        value: None,
                    },
                    StateWrite {
                        namespace: super::NS_ORDER.into(),
                        profile: record.id.clone(),
                        key: super::order_index_key(user, retry.offset),
                        value: Some(held.key()),
                    },
                    StateWrite {
                        namespace: NS_RETRY.into(),
                        profile: record.id.clone(),
                        key: held.key(),
                        value: Some(serde_json::to_vec(&held).expect("a retry serialises")),
                    },
                ];
                self.store.state_commit(&writes, None)?;
                continue;
            }
            let mut writes = vec![StateWrite {
                namespace: NS_RETRY.into(),
                profile: record.id.clone(),
                key,
                value: None,
            }];
            // An erased message, or one the destination no longer takes, is dropped.
            let message = match retry.feed {
                Feed::Event => match self.store.get(retry.offset)? {
                    Some(payload) => self.message(&payload)?,
                    None => None,
                },
                feed => match self
                    .feed_messages(feed, retry.offset.saturating_sub(1), 1)?
                    .pop()
                {
                    Some((seq, message)) if seq == retry.offset => message.and_then(Result::ok),
                    _ => None,
                },
            };
            let mut settled = true;
            if let Some(m) = message {
                let outcome = self.attempt(record, retry.feed, &[(retry.offset, m)], now);
                self.note(&outcome);
                let mut write = self.outcome_writes(
                    record,
                    retry.feed,
                    retry.offset,
                    retry.attempts + 1,
                    retry.first_attempt_ms,
                    &outcome,
                    now,
                );
                self.tally(&write, now);
                if let (Some(user), Some(w)) = (&retry.order_key, write.as_mut())
                    && w.namespace == NS_RETRY
                {
                    writes.extend(order_parked(&record.id, user, retry.offset, w));
                    settled = false;
                }
                writes.extend(write);
                requests += 1;
            }
            if settled && let Some(user) = &retry.order_key {
                writes.extend(self.release_next(&record.id, user, retry.offset, now)?);
            }
            writes.extend(self.hour_write(&record.id));
            self.store.state_commit(&writes, None)?;
        }
        Ok(requests)
    }

    /// Builds and sends the request for `run`.
    fn attempt(
        &mut self,
        record: &DestinationRecord,
        feed: Feed,
        run: &[(Offset, Value)],
        now: DateTime<Utc>,
    ) -> Outcome {
        if let rapport_destinations::Kind::Warehouse {
            database_url,
            schema,
            timeout_secs,
        } = &record.spec.kind
        {
            // A warehouse is written, not sent: one transaction per run, an outcome per
            // message (a poison row is dead-lettered alone).
            let started = std::time::Instant::now();
            let timeout = Duration::from_secs(u64::from(*timeout_secs));
            let written = self
                .warehouse
                .write(&record.id, database_url, schema, timeout, run);
            metrics::histogram!("rapport_destination_request_seconds", "destination" => record.id.clone())
                .record(started.elapsed().as_secs_f64());
            self.hour
                .record_latency(started.elapsed().as_secs_f64() * 1000.0);
            let bodies: HashMap<Offset, &Value> = run.iter().map(|(o, m)| (*o, m)).collect();
            return Outcome::Written(
                written
                    .into_iter()
                    .map(|(o, w)| {
                        let body = match w {
                            Written::Delivered => Vec::new(),
                            _ => bodies.get(&o).map_or_else(Vec::new, |m| {
                                serde_json::to_vec(m).expect("JSON serialises")
                            }),
                        };
                        (o, (w, body))
                    })
                    .collect(),
            );
        }
        let messages: Vec<(String, Value)> = run
            .iter()
            .map(|(o, m)| (feed.message_key(*o), m.clone()))
            .collect();
        let template = self.checked().template.as_ref();
        match send::build(
            &record.id,
            &record.spec.kind,
            template,
            &messages,
            now.timestamp(),
        ) {
            Err(error) => Outcome::Unrenderable(error),
            Ok(request) => {
                self.budget = self.budget.saturating_sub(1);
                if let Some(limiter) = &self.limiter {
                    use governor::clock::Clock;
                    while let Err(not_until) = limiter.check() {
                        let clock = governor::clock::DefaultClock::default();
                        std::thread::sleep(not_until.wait_time_from(clock.now()));
                    }
                }
                let started = std::time::Instant::now();
                let sent = send::send(&self.client, &request, now);
                metrics::histogram!("rapport_destination_request_seconds", "destination" => record.id.clone())
                    .record(started.elapsed().as_secs_f64());
                self.hour
                    .record_latency(started.elapsed().as_secs_f64() * 1000.0);
                Outcome::Sent(request, sent)
            }
        }
    }

    /// What an attempt's outcome writes for one message of it.
    #[allow(clippy::too_many_arguments)]
    fn outcome_writes(
        &self,
        record: &DestinationRecord,
        feed: Feed,
        offset: Offset,
        attempts: u32,
        first_attempt_ms: i64,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Option<StateWrite> {
        let made: send::Sent;
        let (request_body, sent) = match outcome {
            Outcome::Unrenderable(error) => {
                count(&record.id, "dead_lettered");
                return Some(failure_write(
                    &record.id,
                    Failure {
                        offset,
                        feed,
                        attempts,
                        reason: "render".into(),
                        status: None,
                        error: format!("the template cannot render this message: {error}"),
                        request_body: String::new(),
                        response_body: String::new(),
                        at_ms: now.timestamp_millis(),
                    },
                ));
            }
            Outcome::Sent(request, sent) => (&request.body[..], sent),
            Outcome::Written(written) => match written.get(&offset) {
                None | Some((Written::Delivered, _)) => {
                    count(&record.id, "delivered");
                    return None;
                }
                Some((Written::Refused { error }, body)) => {
                    count(&record.id, "dead_lettered");
                    return Some(failure_write(
                        &record.id,
                        Failure {
                            offset,
                            feed,
                            attempts,
                            reason: "refused".into(),
                            status: None,
                            error: error.clone(),
                            request_body: send::snippet(body),
                            response_body: String::new(),
                            at_ms: now.timestamp_millis(),
                        },
                    ));
                }
                Some((Written::Retry { attempt, error }, body)) => {
                    made = send::Sent {
                        attempt: *attempt,
                        response_body: String::new(),
                        error: error.clone(),
                    };
                    (&body[..], &made)
                }
            },
        };
        let first = DateTime::from_timestamp_millis(first_attempt_ms).unwrap_or(now);
        let decision = record.spec.delivery.retry.decide(
            sent.attempt,
            attempts,
            first,
            now,
            rand::random::<f64>(),
        );
        let status = match sent.attempt {
            Attempt::Answered { status, .. } => Some(status),
            _ => None,
        };
        match decision {
            Decision::Delivered => {
                count(&record.id, "delivered");
                None
            }
            Decision::Retry { at } => {
                count(&record.id, "retried");
                let retry = Retry {
                    offset,
                    feed,
                    attempts,
                    first_attempt_ms,
                    next_attempt_ms: at.timestamp_millis(),
                    last_error: sent.error.clone(),
                    held: false,
                    order_key: None,
                };
                Some(StateWrite {
                    namespace: NS_RETRY.into(),
                    profile: record.id.clone(),
                    key: retry.key(),
                    value: Some(serde_json::to_vec(&retry).expect("a retry serialises")),
                })
            }
            Decision::DeadLetter(reason) => {
                count(&record.id, "dead_lettered");
                let reason = match reason {
                    DeadLetterReason::Refused { .. } => "refused",
                    DeadLetterReason::GaveUp { .. } => "gave_up",
                };
                Some(failure_write(
                    &record.id,
                    Failure {
                        offset,
                        feed,
                        attempts,
                        reason: reason.into(),
                        status,
                        error: sent.error.clone(),
                        request_body: send::snippet(request_body),
                        response_body: sent.response_body.clone(),
                        at_ms: now.timestamp_millis(),
                    },
                ))
            }
        }
    }
}

/// The profile a message is about, with its identifiers by type.
/// A profile as destinations receive it: its id and identifiers by type.
pub(crate) fn profile_ref(record: &ProfileRecord) -> ProfileRef {
    let mut identifiers: Map<String, Value> = Map::new();
    for r in &record.identifiers {
        let list = identifiers
            .entry(r.identifier.kind.to_string())
            .or_insert_with(|| json!([]));
        if let Value::Array(a) = list {
            a.push(json!(r.identifier.value));
        }
    }
    ProfileRef {
        profile_id: Some(record.id.as_str().to_owned()),
        identifiers,
    }
}

/// The user a message is ordered by: its profile, else its `userId`, else its
/// `anonymousId`; `None` for a message of no one.
fn order_key(message: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    if let Some(p) = message.pointer("/rapport/profile_id").and_then(text) {
        return Some(format!("p:{p}"));
    }
    if let Some(u) = message.get("userId").and_then(text) {
        return Some(format!("u:{u}"));
    }
    message
        .get("anonymousId")
        .and_then(text)
        .map(|a| format!("a:{a}"))
}

/// Under per-user ordering, a message just parked for a retry (`write`, in `NS_RETRY`)
/// carries its user and enters the user's order index (or moves in it).
fn order_parked(
    id: &str,
    user: &str,
    offset: Offset,
    write: &mut StateWrite,
) -> Option<StateWrite> {
    if write.namespace != NS_RETRY {
        return None;
    }
    let mut retry: Retry = serde_json::from_slice(write.value.as_deref()?).ok()?;
    retry.order_key = Some(user.to_owned());
    write.value = Some(serde_json::to_vec(&retry).expect("a retry serialises"));
    Some(StateWrite {
        namespace: super::NS_ORDER.into(),
        profile: id.into(),
        key: super::order_index_key(user, offset),
        value: Some(write.key.clone()),
    })
}

/// Messages per request: a batching webhook's batch, one for a plain webhook, 100 for a
/// forward (Segment's batch endpoint).
fn per_request(record: &DestinationRecord) -> usize {
    match &record.spec.kind {
        rapport_destinations::Kind::Webhook { batch: Some(b), .. } => b.max_events as usize,
        rapport_destinations::Kind::Webhook { batch: None, .. } => 1,
        _ => 100,
    }
}

/// Where a request's outcome moves the destination to, committed with it.
enum Commit {
    /// The log offset of its live delivery.
    Log(Offset),
    /// Its cursor in the request's feed.
    Cursor(u64),
    /// Its backfill, with the progress made.
    Backfill(super::Backfill),
}

enum Outcome {
    Sent(Request, send::Sent),
    Unrenderable(String),
    /// A warehouse's outcome per message, with the message for a dead letter.
    Written(HashMap<Offset, (Written, Vec<u8>)>),
}

fn count(destination: &str, outcome: &'static str) {
    metrics::counter!(
        "rapport_destination_messages_total",
        "destination" => destination.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
}

fn failure_write(id: &str, failure: Failure) -> StateWrite {
    StateWrite {
        namespace: NS_FAILED.into(),
        profile: id.to_owned(),
        key: failure_key(failure.feed, failure.offset),
        value: Some(serde_json::to_vec(&failure).expect("a failure serialises")),
    }
}

/// One delivery thread per destination, started as destinations appear and ended as they
/// are deleted; each sleeps briefly when it has nothing to do.
pub struct DeliveryThreads {
    stop: Arc<AtomicBool>,
    manager: JoinHandle<()>,
}

/// How long an idle worker waits before looking again: the bound it adds to delivery
/// latency.
pub const IDLE_WAIT: Duration = Duration::from_millis(20);

impl DeliveryThreads {
    pub fn start(store: Arc<dyn Store>) -> DeliveryThreads {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let manager = std::thread::Builder::new()
            .name("destinations".into())
            .spawn(move || {
                let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
                while !flag.load(Ordering::Acquire) {
                    workers.retain(|_, h| !h.is_finished());
                    match super::list(store.as_ref()) {
                        Ok(list) => {
                            for d in list {
                                if workers.contains_key(&d.id) {
                                    continue;
                                }
                                let (store, flag, id) = (store.clone(), flag.clone(), d.id.clone());
                                let handle = std::thread::Builder::new()
                                    .name(format!("deliver {}", d.spec.name))
                                    .spawn(move || run(store, &id, &flag))
                                    .expect("spawn a delivery worker");
                                workers.insert(d.id, handle);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot list destinations"),
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                for (_, h) in workers {
                    let _ = h.join();
                }
            })
            .expect("spawn the destinations manager");
        DeliveryThreads { stop, manager }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.manager.join();
    }
}

fn run(store: Arc<dyn Store>, id: &str, stop: &AtomicBool) {
    let mut worker = Worker::new(store, id);
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Ordering::Acquire) {
        match worker.step(Utc::now()) {
            Ok(None) => return,
            Ok(Some(0)) => std::thread::sleep(IDLE_WAIT),
            Ok(Some(_)) => backoff = Duration::from_millis(50),
            Err(e) => {
                tracing::error!(destination = id, error = %e, "delivery failed; retrying");
                crate::health::storage_error("destinations");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
