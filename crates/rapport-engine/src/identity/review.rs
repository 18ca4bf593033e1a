//! The review queue: pairs of profiles the matcher was unsure about, and every decision
//! taken on a pair (merged automatically, accepted, rejected).
//!
//! Decisions are remembered so that a pair is never proposed twice: a rejected pair stays
//! apart however often the matcher runs. Accepting appends a merge to the log (see
//! [`super::control`]); the processor records what came of it, which may be a refusal by
//! the identity rules.

use super::control::{MatchMerge, NS_MATCH_OUTCOME, PART_OUTCOME, StoredOutcome};
use crate::EngineError;
use rapport_core::identity::ProfileId;
use rapport_linkage::FieldEvidence;
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const NS_REVIEW: &str = "identity.review";
pub const PART_PENDING: &str = "pending";
pub const PART_DECIDED: &str = "decided";

/// The id of the pair of two profiles: the smaller id first, joined by `~` (unreserved in
/// URLs, never in a profile id).
pub fn pair_id(a: &ProfileId, b: &ProfileId) -> (String, ProfileId, ProfileId) {
    let (left, right) = if a <= b { (a, b) } else { (b, a) };
    (format!("{left}~{right}"), left.clone(), right.clone())
}

/// A pair the matcher proposed, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub pair: String,
    pub left: ProfileId,
    pub right: ProfileId,
    /// Total Fellegi–Sunter weight.
    pub score: f64,
    pub probability: f64,
    /// Per-field evidence: values compared, agreement level and its weight.
    pub fields: Vec<FieldEvidence>,
    pub found_at_ms: i64,
}

/// How a pair was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Above the upper threshold: merged by the matcher.
    Automatic,
    Accepted,
    Rejected,
}

impl Verdict {
    /// How a merge entry names who decided.
    pub fn decided_by(self) -> &'static str {
        match self {
            Verdict::Automatic => "automatic",
            Verdict::Accepted | Verdict::Rejected => "review",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    #[serde(flatten)]
    pub candidate: Candidate,
    pub decision: Verdict,
    pub decided_at_ms: i64,
    /// The log offset of the merge entry (not for rejections, nor for a retried decision
    /// whose entry the log had already stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The id of the admin key that accepted or rejected the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
}

impl Candidate {
    /// The merge entry that carries this pair through the log; `reviewer` names the admin key
    /// that accepted it.
    pub fn merge(
        &self,
        verdict: Verdict,
        at: chrono::DateTime<chrono::Utc>,
        reviewer: Option<String>,
    ) -> MatchMerge {
        MatchMerge {
            pair: self.pair.clone(),
            left: self.left.clone(),
            right: self.right.clone(),
            score: self.score,
            probability: self.probability,
            decided_by: verdict.decided_by().into(),
            reviewer,
            at,
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("stored review entry: {e}"))
}

pub struct Review<'a> {
    pub store: &'a dyn StateStore,
}

impl Review<'_> {
    /// Pending pairs by pair id after `cursor`, and the cursor of the next page.
    pub fn pending_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Candidate>, Option<String>), EngineError> {
        let page = self.store.state_scan_range(
            NS_REVIEW,
            PART_PENDING,
            cursor.map(str::as_bytes),
            limit + 1,
        )?;
        let more = page.len() > limit;
        let items: Vec<Candidate> = page
            .iter()
            .take(limit)
            .map(|(_, v)| serde_json::from_slice(v).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let next = more.then(|| items.last().map(|c| c.pair.clone())).flatten();
        Ok((items, next))
    }

    pub fn pending(&self, pair: &str) -> Result<Option<Candidate>, EngineError> {
        self.read(PART_PENDING, pair)
    }

    pub fn decided(&self, pair: &str) -> Result<Option<Decided>, EngineError> {
        self.read(PART_DECIDED, pair)
    }

    /// What the processor made of the pair's merge entry, once it has processed it.
    pub fn outcome(&self, pair: &str) -> Result<Option<StoredOutcome>, EngineError> {
        match self
            .store
            .state_get(NS_MATCH_OUTCOME, PART_OUTCOME, pair.as_bytes())?
        {
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    fn read<T: serde::de::DeserializeOwned>(
        &self,
        part: &str,
        pair: &str,
    ) -> Result<Option<T>, EngineError> {
        match self.store.state_get(NS_REVIEW, part, pair.as_bytes())? {
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// Every pair id in a partition.
    pub fn keys(&self, part: &str) -> Result<BTreeSet<String>, EngineError> {
        let mut out = BTreeSet::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .state_scan_range(NS_REVIEW, part, after.as_deref(), 5_000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let n = page.len();
            out.extend(
                page.into_iter()
                    .map(|(k, _)| String::from_utf8_lossy(&k).into_owned()),
            );
            if n < 5_000 {
                break;
            }
        }
        Ok(out)
    }

    /// The pending pair a reviewer decides on: not found if never proposed, a conflict if
    /// already decided.
    pub fn to_decide(&self, pair: &str) -> Result<Candidate, EngineError> {
        if let Some(d) = self.decided(pair)? {
            return Err(EngineError::Conflict(format!(
                "pair {pair} was already decided ({})",
                serde_json::to_value(d.decision)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        self.pending(pair)?
            .ok_or_else(|| EngineError::NotFound(format!("no pair {pair} awaits review")))
    }

    /// Writes for adding pairs to the queue.
    pub fn propose(candidates: &[Candidate]) -> Vec<StateWrite> {
        candidates
            .iter()
            .map(|c| StateWrite {
                namespace: NS_REVIEW.into(),
                profile: PART_PENDING.into(),
                key: c.pair.as_bytes().to_vec(),
                value: Some(serde_json::to_vec(c).expect("candidates serialise")),
            })
            .collect()
    }

    /// Writes recording a decision: the pair leaves the queue and is remembered.
    pub fn decide(decided: &Decided) -> Vec<StateWrite> {
        let key = decided.candidate.pair.as_bytes().to_vec();
        vec![
            StateWrite {
                namespace: NS_REVIEW.into(),
                profile: PART_PENDING.into(),
                key: key.clone(),
                value: None,
            },
            StateWrite {
                namespace: NS_REVIEW.into(),
                profile: PART_DECIDED.into(),
                key,
                value: Some(serde_json::to_vec(decided).expect("decisions serialise")),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_ids_do_not_depend_on_order() {
        let (a, b) = (ProfileId::new("p_2"), ProfileId::new("p_10"));
        assert_eq!(pair_id(&a, &b), pair_id(&b, &a));
        assert_eq!(pair_id(&a, &b).0, "p_10~p_2");
    }
}
