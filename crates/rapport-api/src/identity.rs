//! Identity: resolution rules, probabilistic matching runs and the review queue
//! (`/api/v1/identity/…`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The limit on one identifier type, per profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRule {
    /// `user_id`, `email`, `phone`, `anonymous_id`, `device_id`, `advertising_id`, or a
    /// custom type named in `context.externalIds[].type` (lower case).
    #[serde(rename = "type")]
    pub kind: String,
    /// Most identifiers of this type one profile may hold; at least 1.
    pub limit: u32,
    /// If set, only identifiers seen within this many days before the event count toward
    /// `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
}

/// The identity rules of the workspace (`docs/identity.md`). In a request a field left out
/// takes its default; in an answer every field is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRules {
    /// Identifier types in priority order, highest first, with their limits. Default:
    /// `user_id` 1, `email` 5, `phone` 5, `anonymous_id` 100, `device_id` 5,
    /// `advertising_id` 5.
    #[serde(default)]
    pub identifiers: Option<Vec<IdentifierRule>>,
    /// The limit of custom types not listed in `identifiers`. Default 5.
    #[serde(default)]
    pub custom_limit: Option<u32>,
    /// Values ignored in every identifier type, compared after trimming and ignoring case.
    #[serde(default)]
    pub blocked_values: Option<Vec<String>>,
    /// Also ignore values made only of zeros and separators (`0000-00`). Default `true`.
    #[serde(default)]
    pub block_all_zeros: Option<bool>,
    /// Country calling code (digits, no `+`) for phone numbers written without one;
    /// `null`: none.
    #[serde(default)]
    pub default_country_code: Option<String>,
}

/// A version of the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RulesVersion {
    /// 0 while the configuration's `[identity]` section applies.
    pub version: u64,
    /// When it was saved (RFC 3339); absent for version 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The log offset from which these rules apply; absent for version 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The id of the admin key that made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub rules: IdentityRules,
}

/// A change of the rules in the log that the processor has not reached yet (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RulesPending {
    /// `pending`.
    pub status: String,
    /// The change's request id.
    pub request: String,
    /// Its log offset.
    pub offset: Option<u64>,
}

/// The answer of `PUT /api/v1/identity/rules`: `200` with the new version once the
/// processor has applied it, else `202` while the change waits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RulesSaved {
    /// `202`: in the log, not applied yet (told apart by its `status`).
    Pending(RulesPending),
    /// `200`: applied.
    Applied(RulesVersion),
}

/// How a matching run obtains its m and u probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Estimation {
    /// m fixed, u measured on random pairs of profiles.
    Prior,
    /// Both estimated by EM.
    Em,
}

/// The options of a matching run (`docs/identity-matching.md`); a field left out takes
/// its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchingOptions {
    /// For each compared field (`given_name`, `surname`, `email`, `phone`, `street`,
    /// `city`, `postcode`, `date_of_birth`), the trait paths it is read from, first present
    /// wins; an empty list leaves the field out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, Vec<String>>>,
    /// Posterior match probability (0–1) at or above which a pair is merged automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_probability: Option<f64>,
    /// Posterior match probability (0–1) at or above which a pair goes to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_probability: Option<f64>,
    /// Expected share (0–1) of candidate pairs that are one person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_prior: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimation: Option<Estimation>,
}

/// Resolved total-weight thresholds of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Thresholds {
    /// At or above: merged.
    pub upper: f64,
    /// At or above (and below `upper`): to review.
    pub lower: f64,
}

/// The matching job: `state` and, once a run has started, the figures of the current or
/// last run (every field but `state` is absent while `never_run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MatchingStatus {
    /// `never_run`, `running`, `done`, `failed`, or `interrupted` (the process running it
    /// stopped).
    pub state: String,
    /// `reading`, `linking`, `deciding`, `finished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Milliseconds since the Unix epoch; identifies the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Profile ids listed (live and merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_read: Option<u64>,
    /// Live profiles read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_profiles: Option<u64>,
    /// Live profiles with at least two fields to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Live profiles with fewer than two fields to compare (left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub too_few_fields: Option<u64>,
    /// For each compared field, how many live profiles have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_present: Option<BTreeMap<String, u64>>,
    /// Why the run found little, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
    /// Pairs proposed by blocking and scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_pairs: Option<u64>,
    /// Pairs at or above the upper threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<u64>,
    /// Pairs between the thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<u64>,
    /// Merge entries appended to the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merges_appended: Option<u64>,
    /// Pairs found again that were already decided (skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already_decided: Option<u64>,
    /// Pairs above the lower threshold left apart because names or dates of birth differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vetoed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run started (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunStarted {
    /// `running`.
    pub state: String,
    /// Identifies the run: `GET /api/v1/identity/matching` reports this `started_at_ms`
    /// once the run has written its first progress.
    pub started_at_ms: i64,
}

/// An agreement level: `{"agreement": n}` (0 = strongest agreement) or `"missing"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Agreement(u8),
    Missing,
}

/// The evidence one field gave for a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldEvidence {
    pub field: String,
    /// Normalised value on the left side.
    pub left_value: Option<String>,
    /// Normalised value on the right side.
    pub right_value: Option<String>,
    pub level: Level,
    /// Readable level: `exact`, `similarity >= 0.94`, `missing`.
    pub level_label: String,
    /// P(level | match); `null` for missing values.
    pub m: Option<f64>,
    /// P(level | non-match); `null` for missing values.
    pub u: Option<f64>,
    /// `log2(m / u)`; 0 for missing values.
    pub weight: f64,
}

/// A pair of profiles the matcher proposed, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    /// `<left>~<right>`, the smaller profile id first.
    pub pair: String,
    pub left: String,
    pub right: String,
    /// Total Fellegi–Sunter weight.
    pub score: f64,
    /// Posterior match probability, 0–1.
    pub probability: f64,
    pub fields: Vec<FieldEvidence>,
    /// Milliseconds since the Unix epoch.
    pub found_at_ms: i64,
}

/// An identifier: its type and normalised value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// What the processor made of a merge, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// `from` was merged into `into`.
    Merged { into: String, from: String },
    /// The identity rules forbid it: one profile would hold more than `limit` identifiers
    /// of type `kind`.
    Refused {
        kind: String,
        limit: u32,
        identifier: Identifier,
    },
    /// The two profiles had become one before.
    AlreadyOne { profile: String },
    /// One of the profiles no longer exists.
    Missing,
}

/// The outcome of a pair's merge entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PairOutcome {
    pub pair: String,
    /// The log offset of the merge entry.
    pub offset: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A pair of the review queue, pending or decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pair {
    /// `pending`, `automatic`, `accepted` or `rejected`.
    pub status: String,
    #[serde(flatten)]
    pub candidate: Candidate,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The id of the admin key that accepted or rejected the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// The log offset of the merge entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// What the processor made of the merge; absent until it has processed the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<PairOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_saved_change_of_the_rules_reads_as_applied_or_pending() {
        let pending = json!({"status": "pending", "request": "r1", "offset": 7});
        let read: RulesSaved = serde_json::from_value(pending.clone()).unwrap();
        assert!(matches!(read, RulesSaved::Pending(ref p) if p.offset == Some(7)));
        assert_eq!(serde_json::to_value(&read).unwrap(), pending);
        let applied = json!({"version": 2, "updated_at": "2026-12-02T11:02:14.000Z",
            "offset": 7, "changed_by": "key_1",
            "rules": {"identifiers": [{"type": "user_id", "limit": 1}], "custom_limit": 5,
                "blocked_values": [], "block_all_zeros": true, "default_country_code": null}});
        let read: RulesSaved = serde_json::from_value(applied.clone()).unwrap();
        assert!(matches!(read, RulesSaved::Applied(ref v) if v.version == 2));
        assert_eq!(serde_json::to_value(&read).unwrap(), applied);
    }
}
