//! Deletion requests: what is asked, where it stands, and its receipt.
//!
//! A request is a record the API writes and the [`super::eraser`] advances step by step,
//! saving the record after each, so a restart resumes where it stopped and every step is
//! safe to repeat. While it runs, the record holds what it erases (the identifiers); once
//! the data is gone the record keeps only hashes, counts and times, and the store is then
//! purged so that no earlier version of the record survives either.
//!
//! Layout:
//! - `privacy.deletion` / `requests`, request id → [`DeletionRecord`]; ids sort by
//!   creation (`del_` + milliseconds + random), so listing is a range scan; `open`,
//!   request id → empty, for the requests not done yet (what the eraser reads);
//! - `privacy.forgotten` / request id → [`Forgotten`]: what the processor found and
//!   dropped at the request's control entry, read (then removed) by the eraser.

use super::suppression::{Suppressions, parse_identifier, subject_hash};
use crate::EngineError;
use crate::identity::control::Control;
use chrono::{DateTime, Utc};
use rapport_core::identity::{Identifier, ProfileId};
use rapport_store::{AppendItem, Offset, StateWrite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NS_DELETION: &str = "privacy.deletion";
pub const PART_REQUESTS: &str = "requests";
/// The requests not done yet: key the id, empty value.
pub const PART_OPEN: &str = "open";
pub const NS_FORGOTTEN: &str = "privacy.forgotten";

/// Most identifiers one request names.
pub const MAX_IDENTIFIERS: usize = 100;

/// What a request erases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A person: every profile holding one of these identifiers (or named by id), with
    /// everything merged into it.
    Person {
        identifiers: Vec<Identifier>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        profiles: Vec<ProfileId>,
    },
    /// The events a source sent between two instants (by receive time, `from` inclusive,
    /// `to` exclusive).
    Events {
        source_id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionStatus {
    /// Waiting for the eraser.
    Queued,
    /// The processor is dropping what it derived (a person's request waits for it to reach
    /// the request's control entry).
    Forgetting,
    /// The log, the index and the other stages' data are being erased.
    Erasing,
    /// The data is gone; destinations that take deletion requests are being told.
    Forwarding,
    /// The store is rewriting its files so that no old version survives.
    Purging,
    Done,
}

impl DeletionStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, DeletionStatus::Done)
    }
}

/// One line of a receipt: a store and what was removed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptLine {
    /// `log`, `event index`, `profiles`, `timelines`, `destination dst_… (webhook)`, …
    pub store: String,
    /// Entries removed (for a forwarded request: 1 when the receiver accepted it).
    pub removed: u64,
    /// What happened, in words, when a count alone does not say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A deletion request as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// `del_…`
    pub id: String,
    /// `person`, `events` (a time range of a source), `retention` (a source's retention
    /// limit) or `expiry` (a profile without activity).
    pub kind: String,
    pub status: DeletionStatus,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The admin key that asked; `None` for Rapport's own (retention, expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Hex SHA-256 of each identifier named (`kind:value`): lets an operator match a
    /// request to a person who asks, without keeping who it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_hashes: Vec<String>,
    /// For `events` and `retention`: the source and the range (no personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Whether the person's identifiers were suppressed with the request.
    #[serde(default)]
    pub suppress: bool,
    /// What is being erased, while it is; `None` once the data is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The log offset of the request's control entry, once the processor has applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_offset: Option<Offset>,
    /// Per-source retention runs: the first log offset the next run reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<Offset>,
    /// What was removed, store by store.
    #[serde(default)]
    pub receipt: Vec<ReceiptLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The control entry of a person's deletion: the processor drops what it derived for them
/// here, in log order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgetRequest {
    pub request: String,
    pub identifiers: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<ProfileId>,
}

impl ForgetRequest {
    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/forget/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&Control::Forget(self.clone()))
                .expect("control entries serialise"),
        }
    }
}

/// Whether a log entry is a person's deletion (a cheap test on the bytes: the control
/// entry's tag is its first key).
pub fn is_forget(payload: &[u8]) -> bool {
    payload.starts_with(br#"{"rapport_control":"forget""#)
}

/// What the processor found and dropped at a [`ForgetRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forgotten {
    /// The control entry's offset: the log before it is what the eraser scans.
    pub offset: Offset,
    /// Every profile id that held the person's data: the live profiles found and all
    /// merged into them.
    pub profiles: Vec<ProfileId>,
    /// Every identifier those profiles held, with those the request named.
    pub identifiers: Vec<Identifier>,
    /// Entries removed per store (`profiles`, `timelines`, …).
    pub removed: BTreeMap<String, u64>,
}

pub fn forgotten_write(request: &str, forgotten: Option<&Forgotten>) -> StateWrite {
    StateWrite {
        namespace: NS_FORGOTTEN.into(),
        profile: request.to_owned(),
        key: Vec::new(),
        value: forgotten.map(|f| serde_json::to_vec(f).expect("forgotten serialises")),
    }
}

/// A person's deletion as the API asks it.
#[derive(Debug, Clone, Default)]
pub struct PersonRequest {
    /// `kind:value` references (`user_id:42`, `email:ann@example.com`) or profile ids.
    pub references: Vec<String>,
    /// Suppress the identifiers too, so that the person's new events are dropped.
    pub suppress: bool,
    pub requested_by: Option<String>,
}

/// The requests in the store, and the API's operations on them.
pub struct Deletions {
    pub store: Arc<dyn rapport_store::Store>,
}

impl Deletions {
    pub fn get(&self, id: &str) -> Result<Option<DeletionRecord>, EngineError> {
        match self
            .store
            .state_get(NS_DELETION, PART_REQUESTS, id.as_bytes())?
        {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// Every request, oldest first.
    pub fn list(&self) -> Result<Vec<DeletionRecord>, EngineError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                self.store
                    .state_scan_range(NS_DELETION, PART_REQUESTS, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in &page {
                out.push(serde_json::from_slice::<DeletionRecord>(v).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    pub fn save(&self, record: &DeletionRecord) -> Result<(), EngineError> {
        let open = !record.status.is_finished();
        self.store
            .state_commit(&[record_write(record), open_write(&record.id, open)], None)?;
        Ok(())
    }

    /// The requests not done yet, oldest first.
    pub fn list_open(&self) -> Result<Vec<DeletionRecord>, EngineError> {
        let mut out = Vec::new();
        for (key, _) in self.store.state_scan(NS_DELETION, PART_OPEN)? {
            let id = String::from_utf8_lossy(&key).into_owned();
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Queues the deletion of a person; with `suppress`, their identifiers are suppressed
    /// before the answer, so nothing new about them is stored from then on.
    pub fn request_person(
        &self,
        request: PersonRequest,
        suppressions: &Suppressions,
        now: DateTime<Utc>,
    ) -> Result<DeletionRecord, EngineError> {
        if request.references.is_empty() {
            return Err(EngineError::Invalid {
                field: "identifiers",
                message: "name at least one identifier (type:value) or profile id".into(),
            });
        }
        if request.references.len() > MAX_IDENTIFIERS {
            return Err(EngineError::Invalid {
                field: "identifiers",
                message: format!("at most {MAX_IDENTIFIERS} identifiers per request"),
            });
        }
        let mut identifiers = Vec::new();
        let mut profiles = Vec::new();
        for (i, reference) in request.references.iter().enumerate() {
            match crate::profiles::parse_reference(reference) {
                Ok(Ok(p)) => profiles.push(p),
                Ok(Err(identifier)) if identifier.value.trim().is_empty() => {
                    return Err(EngineError::InvalidAt {
                        field: format!("identifiers[{i}]"),
                        message: format!("{reference:?} names no value"),
                    });
                }
                Ok(Err(identifier)) => identifiers.push(identifier),
                Err(e) => {
                    return Err(EngineError::InvalidAt {
                        field: format!("identifiers[{i}]"),
                        message: e.to_string(),
                    });
                }
            }
        }
        if request.suppress && identifiers.is_empty() {
            return Err(EngineError::Invalid {
                field: "suppress",
                message: "suppression names identifiers (type:value), not only profile ids".into(),
            });
        }
        let id = new_id(now);
        if request.suppress {
            for identifier in &identifiers {
                suppressions.add(
                    identifier,
                    Some("deletion request".into()),
                    request.requested_by.clone(),
                    Some(id.clone()),
                    now,
                )?;
            }
        }
        let record = DeletionRecord {
            id,
            kind: "person".into(),
            status: DeletionStatus::Queued,
            requested_at: now,
            finished_at: None,
            requested_by: request.requested_by,
            subject_hashes: identifiers.iter().map(subject_hash).collect(),
            source_id: None,
            from: None,
            to: None,
            suppress: request.suppress,
            subject: Some(Subject::Person {
                identifiers,
                profiles,
            }),
            forget_offset: None,
            resume_after: None,
            receipt: Vec::new(),
            error: None,
        };
        self.save(&record)?;
        Ok(record)
    }

    /// Queues the deletion of the events `source_id` sent in `[from, to)`.
    pub fn request_events(
        &self,
        source_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        requested_by: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<DeletionRecord, EngineError> {
        if from >= to {
            return Err(EngineError::Invalid {
                field: "to",
                message: "the range is empty: `to` must be after `from`".into(),
            });
        }
        let record = DeletionRecord {
            id: new_id(now),
            kind: "events".into(),
            status: DeletionStatus::Queued,
            requested_at: now,
            finished_at: None,
            requested_by,
            subject_hashes: Vec::new(),
            source_id: Some(source_id.to_owned()),
            from: Some(from),
            to: Some(to),
            suppress: false,
            subject: Some(Subject::Events {
                source_id: source_id.to_owned(),
                from,
                to,
            }),
            forget_offset: None,
            resume_after: None,
            receipt: Vec::new(),
            error: None,
        };
        self.save(&record)?;
        Ok(record)
    }
}

/// Parses an identifier for suppression (re-exported for the API's suppression routes).
pub fn identifier(reference: &str) -> Result<Identifier, EngineError> {
    parse_identifier(reference)
}

pub(crate) fn record_write(record: &DeletionRecord) -> StateWrite {
    StateWrite {
        namespace: NS_DELETION.into(),
        profile: PART_REQUESTS.into(),
        key: record.id.as_bytes().to_vec(),
        value: Some(serde_json::to_vec(record).expect("deletion records serialise")),
    }
}

/// Marks a request as open (`true`) or done.
pub(crate) fn open_write(id: &str, open: bool) -> StateWrite {
    StateWrite {
        namespace: NS_DELETION.into(),
        profile: PART_OPEN.into(),
        key: id.as_bytes().to_vec(),
        value: open.then(Vec::new),
    }
}

fn new_id(now: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("del_{:013}_{}", now.timestamp_millis().max(0), &random[..8])
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("a deletion request: {e}"))
}
