//! The eraser: the thread that carries deletion requests through their steps (see
//! [`super::deletion`]) and runs each source's retention limit.
//!
//! A person's request, step by step (the record is saved after each):
//! 1. **Queued → Forgetting**: its control entry is appended to the log (through the
//!    ingest writer; a repeat is de-duplicated), and the processor, on reaching it, drops
//!    what it derived and records what it found ([`super::Forgotten`]).
//! 2. **Forgetting → Erasing**: once the processor and the event indexer have passed the
//!    entry, every log entry before it that carries one of the person's identifiers (or,
//!    for control entries, names one of their profiles) is overwritten with `{}` and
//!    removed from the index; then what other stages keep about those entries and profiles
//!    goes: the pipeline's dead letters, destinations' retries, held messages and dead
//!    letters, the audience, trait-change, journey-action and alert feeds, value scores,
//!    the review queue and match outcomes. These stages write their namespaces themselves;
//!    the eraser only deletes in them, entries that can no longer be made again (the
//!    profiles and entries they derive from are gone), so a race costs nothing.
//! 3. **Forwarding**: each webhook destination that takes deletion requests
//!    (`forward_deletions`) is sent one, signed like its messages.
//! 4. **Purging**: the record drops the identifiers, and the store rewrites its files
//!    ([`rapport_store::EventLog::purge`]) so that no earlier version of anything erased —
//!    the record included — is left on disk.
//!
//! A range of a source's events (and a retention run) skips the processor: the entries are
//! erased from the log and the index; what profiles derived from them stays (see
//! `docs/privacy.md`).

use super::deletion::{
    DeletionRecord, DeletionStatus, Deletions, Forgotten, NS_FORGOTTEN, ReceiptLine, Subject,
    forgotten_write, record_write,
};
use crate::EngineError;
use crate::dead_letters::NS_DEAD_LETTER;
use crate::destinations::{Failure, Feed, NS_FAILED, NS_ORDER, NS_RETRY, Retry};
use crate::identity::runner::SharedAppend;
use crate::periodic::Periodic;
use crate::profiles::identifier_key;
use chrono::{DateTime, Utc};
use rapport_core::identity;
use rapport_store::{Offset, StateWrite, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the eraser looks for work.
const INTERVAL: Duration = Duration::from_millis(250);
/// Log entries read per page while scanning.
const PAGE: usize = 2_000;
/// State entries read per page while sweeping a partition.
const SWEEP_PAGE: usize = 1_000;

/// The eraser thread.
pub struct Eraser(Periodic);

impl Eraser {
    /// `profile_expiry_days`: profiles without activity for that long are deleted daily.
    pub fn start(
        store: Arc<dyn Store>,
        append: SharedAppend,
        profile_expiry_days: Option<u32>,
    ) -> Eraser {
        Eraser(Periodic::spawn(
            "eraser",
            || INTERVAL,
            INTERVAL,
            move || {
                if let Err(e) = tick(&store, &append, Utc::now(), profile_expiry_days) {
                    tracing::warn!(error = %e, "the eraser will try again");
                }
                true
            },
        ))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

/// Advances every unfinished request by as many steps as it can take now, and runs the
/// sources' retention limits when a day has passed since they last ran.
pub fn tick(
    store: &Arc<dyn Store>,
    append: &SharedAppend,
    now: DateTime<Utc>,
    profile_expiry_days: Option<u32>,
) -> Result<(), EngineError> {
    let deletions = Deletions {
        store: store.clone(),
    };
    run_retention(store.as_ref(), now, profile_expiry_days)?;
    for mut record in deletions.list_open()? {
        loop {
            let before = record.status;
            match advance(store.as_ref(), append, &mut record, now) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(request = %record.id, error = %e, "a deletion step failed");
                    record.error = Some(e.to_string());
                    deletions.save(&record)?;
                    return Err(e);
                }
            }
            if record.status == before || record.status.is_finished() {
                break;
            }
        }
    }
    Ok(())
}

/// Takes the next step of `record`, if it can be taken now, and saves it.
fn advance(
    store: &dyn Store,
    append: &SharedAppend,
    record: &mut DeletionRecord,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    match (record.status, record.subject.clone()) {
        (
            DeletionStatus::Queued,
            Some(Subject::Person {
                identifiers,
                profiles,
            }),
        ) => {
            let request = super::ForgetRequest {
                request: record.id.clone(),
                identifiers,
                profiles,
            };
            append(vec![request.append_item()])?;
            record.status = DeletionStatus::Forgetting;
            save(store, record)
        }
        (DeletionStatus::Forgetting, Some(Subject::Person { .. })) => {
            let Some(forgotten) = forgotten(store, &record.id)? else {
                return Ok(());
            };
            if store.consumer_offset(crate::indexer::CONSUMER)? < forgotten.offset
                || store.consumer_offset(crate::processor::CONSUMER)? < forgotten.offset
            {
                return Ok(());
            }
            record.forget_offset = Some(forgotten.offset);
            for (name, n) in &forgotten.removed {
                add(&mut record.receipt, name, *n);
            }
            if forgotten.profiles.is_empty() {
                record.receipt.push(ReceiptLine {
                    store: "profiles".into(),
                    removed: 0,
                    detail: Some("no profile held these identifiers".into()),
                });
            }
            // Suppressing the person is suppressing every identifier they were known by
            // (their anonymous ids, devices, other e-mails), not only those named.
            let mut writes = Vec::new();
            if record.suppress {
                for identifier in &forgotten.identifiers {
                    writes.extend(super::Suppressions::write_for_deletion(
                        store, identifier, &record.id, now,
                    )?);
                }
            }
            record.status = DeletionStatus::Erasing;
            writes.push(record_write(record));
            store.state_commit(&writes, None)?;
            Ok(())
        }
        (DeletionStatus::Erasing, Some(Subject::Person { .. })) => {
            let forgotten = forgotten(store, &record.id)?.ok_or_else(|| {
                EngineError::Corrupt(format!(
                    "deletion {}: the processor's record is gone",
                    record.id
                ))
            })?;
            erase_person(store, &record.id, &forgotten, &mut record.receipt)?;
            record.status = DeletionStatus::Forwarding;
            save(store, record)
        }
        (DeletionStatus::Forwarding, Some(Subject::Person { .. })) => {
            let forgotten = forgotten(store, &record.id)?.unwrap_or_default();
            forward(store, &record.id, &forgotten, &mut record.receipt, now);
            finish_erasing(store, record)
        }
        (
            DeletionStatus::Queued | DeletionStatus::Erasing,
            Some(Subject::Events {
                source_id,
                from,
                to,
            }),
        ) => {
            record.status = DeletionStatus::Erasing;
            let after = record.resume_after.unwrap_or(0);
            let upto = store.last_offset()?;
            erase_log(
                store,
                after,
                upto,
                None,
                &mut record.receipt,
                |event| {
                    event.source_id == source_id
                        && event.received_at >= from
                        && event.received_at < to
                },
                |_| false,
            )?;
            finish_erasing(store, record)
        }
        (DeletionStatus::Purging, _) => {
            store.purge()?;
            record.status = DeletionStatus::Done;
            record.finished_at = Some(now);
            record.error = None;
            store.state_commit(
                &[
                    record_write(record),
                    super::deletion::open_write(&record.id, false),
                ],
                None,
            )?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn save(store: &dyn Store, record: &DeletionRecord) -> Result<(), EngineError> {
    store.state_commit(&[record_write(record)], None)?;
    Ok(())
}

/// Drops what the record still holds of the person and moves it to purging, atomically.
fn finish_erasing(store: &dyn Store, record: &mut DeletionRecord) -> Result<(), EngineError> {
    record.subject = None;
    record.status = DeletionStatus::Purging;
    record.error = None;
    store.state_commit(
        &[record_write(record), forgotten_write(&record.id, None)],
        None,
    )?;
    Ok(())
}

fn forgotten(store: &dyn Store, request: &str) -> Result<Option<Forgotten>, EngineError> {
    match store.state_get(NS_FORGOTTEN, request, b"")? {
        Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| {
            EngineError::Corrupt(format!("a deletion's processor record: {e}"))
        })?)),
        None => Ok(None),
    }
}

fn add(receipt: &mut Vec<ReceiptLine>, store: &str, n: u64) {
    match receipt
        .iter_mut()
        .find(|l| l.store == store && l.detail.is_none())
    {
        Some(line) => line.removed += n,
        None => receipt.push(ReceiptLine {
            store: store.to_owned(),
            removed: n,
            detail: None,
        }),
    }
}

/// Erases the log entries after `after` up to `upto` that `event` (for events) or
/// `control` (for control entries) selects: overwritten with `{}`, removed from the index.
/// With `stop_at`, the scan stops before the first event received at or after it (the
/// log is in receive order, to the skew of concurrent requests). Returns the offsets
/// erased and the last offset read.
fn erase_log(
    store: &dyn Store,
    after: Offset,
    upto: Offset,
    stop_at: Option<DateTime<Utc>>,
    receipt: &mut Vec<ReceiptLine>,
    event: impl Fn(&rapport_core::event::Event) -> bool,
    control: impl Fn(&[u8]) -> bool,
) -> Result<(HashSet<Offset>, Offset), EngineError> {
    use crate::dead_letters::{Entry, read_entry};
    let mut erased = HashSet::new();
    let mut at = after;
    let (mut events, mut indexed) = (0u64, 0u64);
    let mut stopped = false;
    while at < upto && !stopped {
        let page = store.read_after(at, PAGE)?;
        let Some(&(mut last, _)) = page.last() else {
            break;
        };
        let mut rewrite = Vec::new();
        let mut unindex = Vec::new();
        for (offset, payload) in &page {
            if *offset > upto {
                break;
            }
            let selected = match read_entry(payload) {
                Entry::Event(e) if stop_at.is_some_and(|t| e.received_at >= t) => {
                    stopped = true;
                    last = offset - 1;
                    break;
                }
                Entry::Event(e) => event(&e),
                Entry::Control(bytes) => control(bytes),
                Entry::Erased | Entry::Unreadable(_) => false,
            };
            if !selected {
                continue;
            }
            if let Ok(Some(entry)) = crate::indexer::index_entry(*offset, payload) {
                unindex.push(entry);
            }
            rewrite.push((*offset, b"{}".to_vec()));
            erased.insert(*offset);
        }
        events += rewrite.len() as u64;
        indexed += unindex.len() as u64;
        store.unindex(&unindex)?;
        store.rewrite(&rewrite)?;
        at = last.min(upto);
    }
    add(receipt, "log", events);
    add(receipt, "event index", indexed);
    // What consumers recorded about the entries they could not read, by offset.
    let mut letters = Vec::new();
    for consumer in crate::dead_letters::CONSUMERS {
        for (key, _) in store.state_scan(NS_DEAD_LETTER, consumer)? {
            if key.len() == 8
                && erased.contains(&u64::from_be_bytes(key[..8].try_into().expect("8 bytes")))
            {
                letters.push(delete(NS_DEAD_LETTER, consumer, key));
            }
        }
    }
    add(receipt, "pipeline dead letters", letters.len() as u64);
    store.state_commit(&letters, None)?;
    sweep_destinations(store, &erased, &[], receipt)?;
    Ok((erased, at))
}

fn delete(namespace: &str, profile: &str, key: Vec<u8>) -> StateWrite {
    StateWrite {
        namespace: namespace.into(),
        profile: profile.to_owned(),
        key,
        value: None,
    }
}

/// Every entry of one partition, page by page, whose key or value `pick` selects, deleted;
/// returns the keys deleted.
fn sweep(
    store: &dyn Store,
    namespace: &str,
    partition: &str,
    pick: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<Vec<Vec<u8>>, EngineError> {
    let mut gone = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.state_scan_range(namespace, partition, after.as_deref(), SWEEP_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let writes: Vec<StateWrite> = page
            .iter()
            .filter(|(k, v)| pick(k, v))
            .map(|(k, _)| delete(namespace, partition, k.clone()))
            .collect();
        store.state_commit(&writes, None)?;
        gone.extend(writes.into_iter().map(|w| w.key));
    }
    Ok(gone)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The person's part of everything but the processor's namespaces (which it dropped).
fn erase_person(
    store: &dyn Store,
    request: &str,
    forgotten: &Forgotten,
    receipt: &mut Vec<ReceiptLine>,
) -> Result<(), EngineError> {
    let keys: HashSet<String> = forgotten.identifiers.iter().map(identifier_key).collect();
    // Profile ids as they appear in JSON values (quoted) and raw in keys; ids have one
    // fixed shape (`p_` and 12 hex digits), so neither form is part of another id.
    let quoted: Vec<Vec<u8>> = forgotten
        .profiles
        .iter()
        .map(|p| format!("\"{p}\"").into_bytes())
        .collect();
    let raw: Vec<Vec<u8>> = forgotten
        .profiles
        .iter()
        .map(|p| p.as_str().as_bytes().to_vec())
        .collect();
    let names_profile = |bytes: &[u8]| quoted.iter().any(|n| contains(bytes, n));
    let rules = crate::identity::rules::RulesStore { store }
        .stored()?
        .map(|s| s.rules)
        .unwrap_or_default();
    let this_request = format!("\"{request}\"").into_bytes();
    erase_log(
        store,
        0,
        forgotten.offset,
        None,
        receipt,
        |event| {
            identity::extract(event, &rules)
                .identifiers
                .iter()
                .any(|x| keys.contains(&identifier_key(&x.identifier)))
        },
        // Consent changes, journey entries and merges name profiles; the request's own
        // entry names the identifiers.
        |bytes| {
            names_profile(bytes)
                || (super::deletion::is_forget(bytes) && contains(bytes, &this_request))
        },
    )?;

    // Feeds that name profiles in their entries, and the positions dropped from each (for
    // destinations' retries and dead letters of those messages).
    let mut positions: Vec<(Feed, HashSet<u64>)> = Vec::new();
    let feeds: [(Feed, &str, &str, &str); 4] = [
        (
            Feed::AudienceChange,
            crate::audiences::store::NS_FEED,
            crate::audiences::store::PART_FEED,
            "segment change feed",
        ),
        (
            Feed::TraitChange,
            crate::trait_changes::NS_TRAIT_FEED,
            crate::trait_changes::PART_FEED,
            "trait change feed",
        ),
        (
            Feed::JourneyAction,
            crate::journeys::NS_ACTION,
            crate::journeys::PART_FEED,
            "journey action feed",
        ),
        (
            Feed::Alert,
            crate::value::NS_ALERT,
            crate::value::ALERT_FEED,
            "health alerts",
        ),
    ];
    for (feed, namespace, partition, name) in feeds {
        let gone = sweep(store, namespace, partition, |_, v| names_profile(v))?;
        add(receipt, name, gone.len() as u64);
        let set = gone
            .iter()
            .filter_map(|key| match feed {
                Feed::Alert => crate::destinations::alert_position(key),
                _ => key
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes),
            })
            .collect();
        positions.push((feed, set));
    }
    // Value-model results, keyed by profile.
    let mut scores = 0;
    for id in &forgotten.profiles {
        for namespace in [crate::value::NS_SCORE, crate::value::NS_HEALTH] {
            let entries = store.state_scan(namespace, id.as_str())?;
            scores += entries.len() as u64;
            let writes: Vec<_> = entries
                .into_iter()
                .map(|(k, _)| delete(namespace, id.as_str(), k))
                .collect();
            store.state_commit(&writes, None)?;
        }
    }
    add(receipt, "value scores", scores);
    // The review queue and the outcomes of merges: pairs and evidence naming the profiles.
    let mut review = 0;
    for (namespace, partition) in [
        (
            crate::identity::review::NS_REVIEW,
            crate::identity::review::PART_PENDING,
        ),
        (
            crate::identity::review::NS_REVIEW,
            crate::identity::review::PART_DECIDED,
        ),
        (
            crate::identity::control::NS_MATCH_OUTCOME,
            crate::identity::control::PART_OUTCOME,
        ),
    ] {
        review += sweep(store, namespace, partition, |k, v| {
            raw.iter().any(|n| contains(k, n)) || names_profile(v)
        })?
        .len() as u64;
    }
    add(receipt, "identity review", review);
    sweep_destinations(store, &HashSet::new(), &positions, receipt)
}

/// Destinations' retries, held messages and dead letters of the messages made from
/// erased log entries (`erased`) or dropped feed entries (`positions`).
fn sweep_destinations(
    store: &dyn Store,
    erased: &HashSet<Offset>,
    positions: &[(Feed, HashSet<u64>)],
    receipt: &mut Vec<ReceiptLine>,
) -> Result<(), EngineError> {
    let dropped = |feed: Feed, position: u64| match feed {
        Feed::Event => erased.contains(&position),
        _ => positions
            .iter()
            .any(|(f, set)| *f == feed && set.contains(&position)),
    };
    let mut n = 0;
    for d in crate::destinations::list(store)? {
        n += sweep(store, NS_RETRY, &d.id, |_, v| {
            serde_json::from_slice::<Retry>(v).is_ok_and(|r| dropped(r.feed, r.offset))
        })?
        .len();
        n += sweep(store, NS_FAILED, &d.id, |_, v| {
            serde_json::from_slice::<Failure>(v).is_ok_and(|f| dropped(f.feed, f.offset))
        })?
        .len();
        // `user \0 offset`: the user's id is in the key.
        n += sweep(store, NS_ORDER, &d.id, |k, _| {
            k.len() >= 8
                && erased.contains(&u64::from_be_bytes(
                    k[k.len() - 8..].try_into().expect("8 bytes"),
                ))
        })?
        .len();
    }
    add(receipt, "destination queues", n as u64);
    Ok(())
}

/// Attempts per forwarded deletion request, and the pause after each failed one.
const FORWARD_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::ZERO,
];

/// Sends the deletion request to every webhook destination that takes one, each up to
/// three times; the receipt says what each receiver answered.
fn forward(
    store: &dyn Store,
    request: &str,
    forgotten: &Forgotten,
    receipt: &mut Vec<ReceiptLine>,
    now: DateTime<Utc>,
) {
    let destinations = match crate::destinations::list(store) {
        Ok(d) => d,
        Err(e) => {
            receipt.push(ReceiptLine {
                store: "destinations".into(),
                removed: 0,
                detail: Some(format!("deletion requests not forwarded: {e}")),
            });
            return;
        }
    };
    let identifiers: Vec<(String, String)> = forgotten
        .identifiers
        .iter()
        .map(|i| (i.kind.as_str().to_owned(), i.value.clone()))
        .collect();
    let body = rapport_destinations::payload::deletion_request_body(
        request,
        &identifiers,
        &rapport_core::event::format_timestamp(&now),
    );
    let client = crate::destinations::send::client();
    for d in destinations.iter().filter(|d| d.spec.forward_deletions) {
        if let rapport_destinations::Kind::Warehouse {
            database_url,
            schema,
            timeout_secs,
        } = &d.spec.kind
        {
            let of = |kind: &str| -> Vec<String> {
                identifiers
                    .iter()
                    .filter(|(k, _)| k == kind)
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let mut writer = crate::destinations::warehouse::Writer::new(
                database_url,
                schema,
                Duration::from_secs(u64::from(*timeout_secs)),
            );
            receipt.push(
                match writer.delete_person(&of("user_id"), &of("anonymous_id")) {
                    Ok(rows) => ReceiptLine {
                        store: format!("destination {} (warehouse rows deleted)", d.spec.name),
                        removed: rows,
                        detail: None,
                    },
                    Err(e) => ReceiptLine {
                        store: format!("destination {} (warehouse rows deleted)", d.spec.name),
                        removed: 0,
                        detail: Some(format!("not deleted: {e}")),
                    },
                },
            );
            continue;
        }
        let rapport_destinations::Kind::Webhook {
            url,
            method,
            headers,
            secret,
            timeout_secs,
            ..
        } = &d.spec.kind
        else {
            continue;
        };
        let bytes = serde_json::to_vec(&body).expect("JSON serialises");
        let id = rapport_destinations::signing::message_id(&d.id, &format!("deletion:{request}"));
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.push(("content-type".into(), "application/json".into()));
        match secret
            .as_deref()
            .map(|s| rapport_destinations::signing::sign(s, &id, now.timestamp(), &bytes))
        {
            Some(Ok(signed)) => all.extend(signed.pairs().map(|(k, v)| (k.to_owned(), v))),
            Some(Err(_)) | None => all.push(("webhook-id".into(), id.clone())),
        }
        let http = crate::destinations::send::Request {
            method: method.clone(),
            url: url.clone(),
            headers: all,
            basic_auth: None,
            body: bytes,
            timeout: Duration::from_secs(u64::from(*timeout_secs)),
        };
        let mut outcome = String::new();
        let mut accepted = false;
        for pause in FORWARD_PAUSES {
            let sent = crate::destinations::send::send(&client, &http, Utc::now());
            accepted = matches!(
                sent.attempt,
                rapport_destinations::retry::Attempt::Answered { status, .. } if (200..300).contains(&status)
            );
            outcome = sent.error;
            if accepted {
                break;
            }
            std::thread::sleep(pause);
        }
        receipt.push(ReceiptLine {
            store: format!("destination {} (deletion request forwarded)", d.spec.name),
            removed: u64::from(accepted),
            detail: Some(if accepted {
                format!("accepted: {outcome}")
            } else {
                format!(
                    "not accepted after {} attempts: {outcome}",
                    FORWARD_PAUSES.len()
                )
            }),
        });
    }
}

/// How often each source's retention limit is applied.
pub const RETENTION_INTERVAL_MS: i64 = 86_400_000;
const PART_RETENTION: &str = "retention";
const KEY_LAST_RUN: &[u8] = b"last_run";

fn retention_key(source_id: &str) -> Vec<u8> {
    format!("watermark/{source_id}").into_bytes()
}

/// Erases the events of each source with `retention_days` received before its limit,
/// once per [`RETENTION_INTERVAL_MS`]. Each source keeps a watermark (the log before it
/// holds nothing the limit still has to erase), so a run reads only what arrived since.
/// A run that erased something is recorded as a `retention` request with its receipt,
/// and the store is purged.
fn run_retention(
    store: &dyn Store,
    now: DateTime<Utc>,
    profile_expiry_days: Option<u32>,
) -> Result<(), EngineError> {
    use super::deletion::NS_DELETION;
    let read_u64 = |key: &[u8]| -> Result<Option<u64>, EngineError> {
        Ok(store
            .state_get(NS_DELETION, PART_RETENTION, key)?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes))
    };
    let last = read_u64(KEY_LAST_RUN)?.map(|v| v as i64);
    if last.is_some_and(|t| now.timestamp_millis() - t < RETENTION_INTERVAL_MS) {
        return Ok(());
    }
    let upto = store.last_offset()?;
    let mut writes = vec![StateWrite {
        namespace: NS_DELETION.into(),
        profile: PART_RETENTION.into(),
        key: KEY_LAST_RUN.to_vec(),
        value: Some((now.timestamp_millis() as u64).to_be_bytes().to_vec()),
    }];
    let mut purge = false;
    for source in store.sources()? {
        let Some(days) = source.settings.retention_days else {
            continue;
        };
        let cutoff = now - chrono::Duration::days(i64::from(days));
        let after = read_u64(&retention_key(&source.id))?.unwrap_or(0);
        let mut receipt = Vec::new();
        let (erased, reached) = erase_log(
            store,
            after,
            upto,
            Some(cutoff),
            &mut receipt,
            |e| e.source_id == source.id,
            |_| false,
        )?;
        writes.push(StateWrite {
            namespace: NS_DELETION.into(),
            profile: PART_RETENTION.into(),
            key: retention_key(&source.id),
            value: Some(reached.to_be_bytes().to_vec()),
        });
        if erased.is_empty() {
            continue;
        }
        purge = true;
        let id = format!(
            "del_{:013}_ret_{}",
            now.timestamp_millis(),
            &source.id.chars().take(12).collect::<String>()
        );
        tracing::info!(source = %source.id, erased = erased.len(), days, "retention applied");
        let record = DeletionRecord {
            id,
            kind: "retention".into(),
            status: DeletionStatus::Done,
            requested_at: now,
            finished_at: Some(now),
            requested_by: None,
            subject_hashes: Vec::new(),
            source_id: Some(source.id.clone()),
            from: None,
            to: Some(cutoff),
            suppress: false,
            subject: None,
            forget_offset: None,
            resume_after: Some(reached),
            receipt,
            error: None,
        };
        writes.push(record_write(&record));
    }
    if let Some(days) = profile_expiry_days
        && let Some(record) = expired_profiles(store, now, days)?
    {
        writes.push(record_write(&record));
        writes.push(super::deletion::open_write(&record.id, true));
    }
    store.state_commit(&writes, None)?;
    if purge {
        store.purge()?;
    }
    Ok(())
}

/// Most profiles one expiry request deletes; the rest wait for the next day's run.
const MAX_EXPIRED: usize = 10_000;

/// A deletion request (kind `expiry`) for the live profiles whose identifiers were all last
/// seen more than `days` ago, if there are any.
fn expired_profiles(
    store: &dyn Store,
    now: DateTime<Utc>,
    days: u32,
) -> Result<Option<DeletionRecord>, EngineError> {
    use crate::audiences::store::{NS_PROFILE_LIST, PART_ALL};
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let profiles = crate::profiles::Profiles { store };
    let mut expired = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    'pages: loop {
        let page =
            store.state_scan_range(NS_PROFILE_LIST, PART_ALL, after.as_deref(), SWEEP_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, _) in page {
            let id =
                rapport_core::identity::ProfileId::new(String::from_utf8_lossy(&key).into_owned());
            let Some(record) = profiles.record(&id)? else {
                continue;
            };
            let last_seen = record.identifiers.iter().map(|i| i.last_seen).max();
            if record.merged_into.is_none() && last_seen.is_some_and(|t| t < cutoff) {
                expired.push(id);
                if expired.len() == MAX_EXPIRED {
                    break 'pages;
                }
            }
        }
    }
    if expired.is_empty() {
        return Ok(None);
    }
    tracing::info!(
        profiles = expired.len(),
        days,
        "profiles expired; deleting them"
    );
    Ok(Some(DeletionRecord {
        id: format!("del_{:013}_expiry", now.timestamp_millis()),
        kind: "expiry".into(),
        status: DeletionStatus::Queued,
        requested_at: now,
        finished_at: None,
        requested_by: None,
        subject_hashes: Vec::new(),
        source_id: None,
        from: None,
        to: Some(cutoff),
        suppress: false,
        subject: Some(Subject::Person {
            identifiers: Vec::new(),
            profiles: expired,
        }),
        forget_offset: None,
        resume_after: None,
        receipt: Vec::new(),
        error: None,
    }))
}
