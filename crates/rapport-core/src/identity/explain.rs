//! The explanation of a profile's identity: an append-only log of what each event did to
//! it.
//!
//! "Why are these two people one profile?" and "why was my user split?" must be answerable
//! without replaying the event log, so every resolution emits log entries — identifier
//! added, profiles merged and by which identifier, identifier or merge refused and why —
//! that the engine appends to the profile's log and serves from
//! `GET /api/v1/profiles/{id}/identity`.

use super::identifier::{Identifier, IdentifierKind};
use super::resolve::ProfileId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier found in an event was not attached to a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RefusalReason {
    /// The value is a placeholder in the workspace's blocked list.
    BlockedValue,
    /// The value could not be normalised (not an e-mail, not a phone number, too long…).
    InvalidFormat { detail: String },
    /// The profile already holds `limit` identifiers of this type (within the window).
    LimitReached { kind: IdentifierKind, limit: u32 },
    /// The identifier belongs to `profile`, and joining it to this event's profile would
    /// give one profile more than `limit` identifiers of type `kind` — for instance two
    /// user ids. The identifier is dropped from the event and the profiles stay apart.
    MergeWouldBreakLimit {
        profile: ProfileId,
        kind: IdentifierKind,
        limit: u32,
    },
    /// The event came from a source whose settings do not let it assert identifiers of
    /// this type (a browser source limited to `user_id` and `anonymous_id`, say).
    TypeNotAllowedForSource { source_id: String },
    /// The identifier belongs to `other`, another profile than the event's, and the
    /// event's source may not merge profiles: the profiles stay apart. (Not `profile`: the
    /// refusal is logged inside an entry that has a `profile` of its own.)
    MergeNotAllowedForSource { other: ProfileId, source_id: String },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::BlockedValue => f.write_str("blocked value"),
            RefusalReason::InvalidFormat { detail } => write!(f, "invalid: {detail}"),
            RefusalReason::LimitReached { kind, limit } => {
                write!(f, "limit of {limit} {kind} reached")
            }
            RefusalReason::MergeWouldBreakLimit {
                profile,
                kind,
                limit,
            } => write!(
                f,
                "merging with {profile} would exceed the limit of {limit} {kind}"
            ),
            RefusalReason::TypeNotAllowedForSource { source_id } => {
                write!(f, "source {source_id} may not assert this type")
            }
            RefusalReason::MergeNotAllowedForSource { other, source_id } => write!(
                f,
                "belongs to {other}, and source {source_id} may not merge profiles"
            ),
        }
    }
}

/// An identifier (or would-be identifier) refused, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The value as found when it was not normalised; normalised otherwise.
    pub identifier: Identifier,
    /// The event field it came from (`traits.email`, `context.externalIds[0]`).
    pub source: String,
    #[serde(flatten)]
    pub reason: RefusalReason,
}

/// One thing that happened to a profile's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IdentityEvent {
    /// The profile was created for an event none of whose identifiers was known.
    ProfileCreated,
    /// The identifier was attached to the profile.
    IdentifierAdded {
        identifier: Identifier,
        source: String,
    },
    /// The identifier, found in an event that resolved to this profile, was refused.
    IdentifierRefused(Refusal),
    /// `from` was merged into this profile: the event carried `linked_by`, which belonged
    /// to `from`, together with `anchored_by`, which belonged to this profile.
    ProfileMerged {
        from: ProfileId,
        linked_by: Identifier,
        anchored_by: Identifier,
        /// Set when the merge was not asked for by an event's identifiers but decided by
        /// probabilistic matching; `linked_by` and `anchored_by` are then the identifiers
        /// that stood for the two profiles.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<MergeReason>,
    },
    /// This profile was merged into `into`; its identifiers and id now resolve there.
    MergedInto {
        into: ProfileId,
        linked_by: Identifier,
        anchored_by: Identifier,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<MergeReason>,
    },
    /// An event tied this profile to `other` through `identifier`, but merging them would
    /// have exceeded the limit on `conflict` identifiers, so they were kept apart.
    MergeRefused {
        other: ProfileId,
        identifier: Identifier,
        conflict: IdentifierKind,
        limit: u32,
    },
    /// The profile became a member of the account `account_id` (a group call).
    AccountLinked { account_id: String },
}

/// Why two profiles that shared no identifier were merged: the matcher found them to be
/// one person. Kept in the log so that such a merge can be told from (and audited apart
/// from) the deterministic ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeReason {
    /// `probabilistic match`.
    pub kind: String,
    /// The pair the matcher proposed (see the review API).
    pub pair: String,
    /// Fellegi–Sunter total weight (log2 likelihood ratio) of the pair.
    pub score: f64,
    /// Posterior match probability of the pair.
    pub probability: f64,
    /// `automatic` (above the upper threshold) or `review` (accepted by a person).
    pub decided_by: String,
    /// For a merge accepted in review: the id of the admin key that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
}

/// The reason given for merges decided by the matcher.
pub const PROBABILISTIC_MATCH: &str = "probabilistic match";

// Scores are finite numbers computed by the matcher, never NaN, so equality is total.
impl Eq for MergeReason {}

/// One entry of a profile's identity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLogEntry {
    /// The profile whose log the entry belongs to.
    pub profile: ProfileId,
    /// The event that caused it.
    pub message_id: String,
    /// That event's timestamp.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: IdentityEvent,
}

/// The identity log of one profile, as the engine stores and serves it.
///
/// A merged profile keeps its own log, ending with [`IdentityEvent::MergedInto`]; the
/// survivor's log holds a [`IdentityEvent::ProfileMerged`] entry for it. To explain a
/// survivor in full, [`IdentityLog::combined`] interleaves its log with the logs of every
/// profile merged into it (found by following those entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLog {
    pub entries: Vec<IdentityLogEntry>,
}

impl IdentityLog {
    pub fn append(&mut self, entry: IdentityLogEntry) {
        self.entries.push(entry);
    }

    /// Profiles merged into this one, directly, in the order they were merged.
    pub fn merged_profiles(&self) -> impl Iterator<Item = &ProfileId> {
        self.entries.iter().filter_map(|e| match &e.event {
            IdentityEvent::ProfileMerged { from, .. } => Some(from),
            _ => None,
        })
    }

    /// The full explanation of a survivor: its log and those of the profiles merged into it,
    /// directly or not, fetched with `log_of`. Each log is kept in its own (processing)
    /// order; logs are interleaved by event timestamp, then profile id, then position, so
    /// the result is deterministic.
    pub fn combined(
        &self,
        mut log_of: impl FnMut(&ProfileId) -> Option<IdentityLog>,
    ) -> Vec<IdentityLogEntry> {
        let mut all: Vec<(usize, IdentityLogEntry)> =
            self.entries.iter().cloned().enumerate().collect();
        let mut pending: Vec<ProfileId> = self.merged_profiles().cloned().collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(p) = pending.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            if let Some(log) = log_of(&p) {
                pending.extend(log.merged_profiles().cloned());
                all.extend(log.entries.into_iter().enumerate());
            }
        }
        all.sort_by(|(i, a), (j, b)| (a.at, &a.profile, i).cmp(&(b.at, &b.profile, j)));
        all.into_iter().map(|(_, e)| e).collect()
    }
}
