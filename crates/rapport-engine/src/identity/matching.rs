//! The matching job: probabilistic record linkage over the live profiles.
//!
//! Deterministic resolution merges profiles that share an identifier. People also arrive
//! without one: an import with a typo in the e-mail, a store account and a newsletter
//! sign-up under different addresses. This job reads every live profile, turns its traits
//! into a linkage record (names, e-mail, phone, address, date of birth — where each is read
//! from is configurable), and runs the Fellegi–Sunter matcher of `rapport_linkage`, whose
//! m/u probabilities are estimated by EM on the profiles themselves.
//!
//! Pairs above the upper threshold are merged: a merge entry per pair is appended to the
//! log ([`super::control`]) and the processor applies it under the identity rules. Pairs
//! between the thresholds go to the review queue ([`super::review`]). Pairs already decided
//! are never proposed again. Progress and the last run's figures are stored under
//! [`NS_MATCHING`], which only the job writes.

use super::control::MatchMerge;
use super::review::{Candidate, Decided, PART_DECIDED, Review, Verdict, pair_id};
use crate::EngineError;
use crate::audiences::store::{NS_PROFILE_LIST, PART_ALL};
use crate::profiles::{ProfileRecord, Profiles};
use chrono::{DateTime, Utc};
use rapport_core::identity::{IdentifierKind, ProfileId};
use rapport_linkage::{
    BlockingOptions, BlockingRule, Comparator, Dataset, Decision, EmOptions, FieldComparison,
    FieldEvidence, KeyTransform, Level, LinkageError, LinkageResult, LinkageSpec, Linker, Model,
    Parameters, Schema, ThresholdPolicy, Thresholds,
};
use rapport_store::{AppendItem, Appended, StateWrite, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

pub const NS_MATCHING: &str = "identity.matching";
const PART_JOB: &str = "job";
const KEY_STATUS: &[u8] = b"last";
const PAGE: usize = 2_000;
/// Merge entries appended (and decisions committed) at a time.
const CHUNK: usize = 1_000;

/// The fields compared, in schema order.
pub const FIELDS: [&str; 8] = [
    "given_name",
    "surname",
    "email",
    "phone",
    "street",
    "city",
    "postcode",
    "date_of_birth",
];

/// How a run reads profiles and decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingOptions {
    /// Compared fields read from other traits than [`DEFAULT_FIELDS`]: for each, the trait
    /// paths, first present wins (a dotted path reads inside an object trait,
    /// `address.city`); an empty list leaves the field out. Fields not named keep their
    /// defaults.
    pub fields: BTreeMap<String, Vec<String>>,
    /// Posterior match probability at or above which a pair is merged automatically.
    pub match_probability: f64,
    /// Posterior match probability at or above which a pair goes to review.
    pub review_probability: f64,
    /// Expected share of candidate pairs that are one person (the prior λ).
    pub match_prior: f64,
    /// How m and u are obtained: `prior` (default: m from [`default_m`], u measured on
    /// random pairs of profiles) or `em` (both estimated by EM, as for imports).
    pub estimation: Estimation,
}

/// See [`MatchingOptions::estimation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimation {
    Prior,
    Em,
}

/// P(level | same person) for each compared field, levels strongest first as in
/// [`MatchingOptions::spec`].
///
/// Why not EM: among live profiles, deterministic resolution has already merged whoever
/// shared an identifier, so true matches are rare among candidate pairs and EM's two
/// classes do not separate — on a test population of 400 people it learnt agreement on
/// names as evidence *against* a match. What a match looks like hardly depends on the
/// workspace (people keep their names and birthday, move house sometimes, own several
/// e-mail addresses), so m is fixed here, close to what EM found on FEBRL; what is local —
/// how often strangers agree (u) — is measured on the workspace's own profiles.
pub fn default_m() -> Vec<Vec<f64>> {
    vec![
        vec![0.85, 0.06, 0.03, 0.02, 0.04],
        vec![0.85, 0.06, 0.03, 0.02, 0.04],
        vec![0.6, 0.4],
        vec![0.7, 0.1, 0.2],
        vec![0.7, 0.1, 0.05, 0.15],
        vec![0.85, 0.05, 0.1],
        vec![0.8, 0.1, 0.1],
        vec![0.9, 0.05, 0.02, 0.03],
    ]
}

/// The traits each compared field is read from unless the options say otherwise.
pub const DEFAULT_FIELDS: [(&str, &[&str]); 8] = [
    ("given_name", &["firstName", "first_name", "given_name"]),
    ("surname", &["lastName", "last_name", "surname"]),
    ("email", &["email"]),
    ("phone", &["phone", "mobile"]),
    ("street", &["address.street", "street", "address.line1"]),
    ("city", &["address.city", "city"]),
    (
        "postcode",
        &[
            "address.postalCode",
            "address.postal_code",
            "address.postcode",
            "address.zip",
            "postalCode",
            "postal_code",
            "postcode",
            "zip",
        ],
    ),
    (
        "date_of_birth",
        &["birthday", "dateOfBirth", "date_of_birth", "dob"],
    ),
];

impl Default for MatchingOptions {
    fn default() -> Self {
        MatchingOptions {
            fields: BTreeMap::new(),
            match_probability: 0.99,
            review_probability: 0.5,
            match_prior: 0.001,
            estimation: Estimation::Prior,
        }
    }
}

impl MatchingOptions {
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = |field: String, message: &str| EngineError::InvalidAt {
            field,
            message: message.into(),
        };
        for (name, paths) in &self.fields {
            if !FIELDS.contains(&name.as_str()) {
                return Err(invalid(
                    format!("fields.{name}"),
                    "unknown field; compared fields are given_name, surname, email, phone, street, city, postcode, date_of_birth",
                ));
            }
            if paths.iter().any(|p| p.trim().is_empty()) {
                return Err(invalid(
                    format!("fields.{name}"),
                    "trait paths must not be empty",
                ));
            }
        }
        let p = |v: f64| v > 0.0 && v < 1.0;
        if !p(self.match_probability) {
            return Err(invalid(
                "match_probability".into(),
                "must be between 0 and 1, exclusive",
            ));
        }
        if !p(self.review_probability) || self.review_probability > self.match_probability {
            return Err(invalid(
                "review_probability".into(),
                "must be between 0 and 1, exclusive, and at most match_probability",
            ));
        }
        if !(self.match_prior > 0.0 && self.match_prior < 0.5) {
            return Err(invalid(
                "match_prior".into(),
                "must be above 0 and below 0.5",
            ));
        }
        Ok(())
    }

    /// The linkage spec: comparisons and blocking passes tuned on FEBRL (see
    /// docs/identity-matching.md), thresholds from the options.
    pub fn spec(&self) -> LinkageSpec {
        use Comparator::{DamerauLevenshtein, JaroWinkler, StreetAddress};
        let names = [1.0, 0.94, 0.88];
        LinkageSpec {
            comparisons: vec![
                FieldComparison::new("given_name", JaroWinkler, &names).swapped_with("surname"),
                FieldComparison::new("surname", JaroWinkler, &names).swapped_with("given_name"),
                // Exact only: e-mails that are merely alike are usually two people with
                // alike names, which the name fields already count.
                FieldComparison::new("email", DamerauLevenshtein, &[1.0]),
                FieldComparison::new("phone", DamerauLevenshtein, &[1.0, 0.8]),
                FieldComparison::new("street", StreetAddress, &names),
                FieldComparison::new("city", JaroWinkler, &[1.0, 0.9]),
                FieldComparison::new("postcode", DamerauLevenshtein, &[1.0, 0.75]),
                FieldComparison::new("date_of_birth", DamerauLevenshtein, &[1.0, 0.875, 0.75]),
            ],
            blocking: vec![
                BlockingRule::new("postcode").on("postcode", KeyTransform::Value),
                BlockingRule::new("surname soundex + birth year")
                    .on("surname", KeyTransform::Soundex)
                    .on("date_of_birth", KeyTransform::Year),
                BlockingRule::new("given name soundex + surname initial")
                    .on("given_name", KeyTransform::Soundex)
                    .on("surname", KeyTransform::Prefix(1)),
                BlockingRule::new("date of birth").on("date_of_birth", KeyTransform::Value),
                BlockingRule::new("phone").on("phone", KeyTransform::Value),
                BlockingRule::new("email").on("email", KeyTransform::Value),
            ],
            blocking_options: BlockingOptions::default(),
            em: EmOptions::default(),
            thresholds: ThresholdPolicy::Posterior {
                match_probability: self.match_probability,
                review_probability: self.review_probability,
            },
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn trait_at(record: &ProfileRecord, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut v = &record.traits.traits.get(parts.next()?)?.value;
    for p in parts {
        v = v.get(p)?;
    }
    scalar(v).filter(|s| !s.trim().is_empty())
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The linkage record of a profile, in [`FIELDS`] order. Names fall back to the `name`
/// trait split at its last space; e-mail and phone to the profile's identifiers; phone
/// numbers and dates keep only their digits (a date as `YYYYMMDD`); the town is left out
/// when there is a postcode.
pub fn linkage_values(record: &ProfileRecord, options: &MatchingOptions) -> Vec<Option<String>> {
    let read = |field: &str| match options.fields.get(field) {
        Some(paths) => paths.iter().find_map(|p| trait_at(record, p)),
        None => DEFAULT_FIELDS
            .iter()
            .find(|(name, _)| *name == field)
            .and_then(|(_, paths)| paths.iter().find_map(|p| trait_at(record, p))),
    };
    let identifier = |kind: IdentifierKind| {
        record
            .identifiers
            .iter()
            .find(|r| r.identifier.kind == kind)
            .map(|r| r.identifier.value.clone())
    };
    let full_name = trait_at(record, "name");
    let split = full_name
        .as_deref()
        .map(str::trim)
        .and_then(|n| n.rsplit_once(' '));
    let mut values: Vec<Option<String>> = FIELDS
        .iter()
        .map(|&field| {
            if options.fields.get(field).is_some_and(Vec::is_empty) {
                return None;
            }
            let v = read(field);
            match field {
                "given_name" => v.or_else(|| split.map(|(g, _)| g.to_owned())),
                "surname" => v.or_else(|| split.map(|(_, s)| s.to_owned())),
                "email" => v.or_else(|| identifier(IdentifierKind::Email)),
                "phone" => v
                    .or_else(|| identifier(IdentifierKind::Phone))
                    .map(|p| digits(&p))
                    .filter(|p| p.len() >= 6),
                // The date part of a timestamp (`1980-02-03T00:00:00Z`).
                "date_of_birth" => v
                    .map(|d| digits(&d.chars().take(10).collect::<String>()))
                    .filter(|d| d.len() == 8),
                _ => v,
            }
        })
        .collect();
    // A postcode says where someone lives more precisely than the town, and the two are not
    // independent evidence: counting both would add up the same fact twice (households and
    // neighbours would look like one person). The town is compared only without postcode.
    let (city, postcode) = (field_index("city"), field_index("postcode"));
    if values[postcode].is_some() {
        values[city] = None;
    }
    values
}

fn field_index(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .expect("a compared field")
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// Progress and figures of a run, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchingStatus {
    pub state: JobState,
    /// `reading`, `linking`, `deciding`, `finished`.
    pub phase: String,
    pub started_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Profile ids listed (live and merged).
    pub profiles_total: u64,
    pub profiles_read: u64,
    /// Live profiles read (the others were merged away).
    #[serde(default)]
    pub live_profiles: u64,
    /// Live profiles with at least two fields to compare.
    pub records: u64,
    /// Live profiles with fewer than two fields to compare (left out).
    #[serde(default)]
    pub too_few_fields: u64,
    /// For each compared field, how many live profiles have it.
    #[serde(default)]
    pub fields_present: BTreeMap<String, u64>,
    /// Why the run found little, in plain words; empty when nothing needs saying.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Pairs proposed by blocking and scored.
    pub candidate_pairs: u64,
    /// Pairs at or above the upper threshold.
    pub matches: u64,
    /// Pairs between the thresholds.
    pub review: u64,
    /// Merge entries appended to the log for this run.
    pub merges_appended: u64,
    /// Pairs found again that were already decided (skipped).
    pub already_decided: u64,
    /// Pairs above the lower threshold left apart because their given names or dates of
    /// birth plainly differ (see [`different_people`]).
    #[serde(default)]
    pub vetoed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    pub elapsed_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MatchingStatus {
    fn started(now: DateTime<Utc>) -> MatchingStatus {
        MatchingStatus {
            state: JobState::Running,
            phase: "reading".into(),
            started_at_ms: now.timestamp_millis(),
            finished_at_ms: None,
            profiles_total: 0,
            profiles_read: 0,
            live_profiles: 0,
            records: 0,
            too_few_fields: 0,
            fields_present: FIELDS.iter().map(|f| ((*f).to_owned(), 0)).collect(),
            notes: Vec::new(),
            candidate_pairs: 0,
            matches: 0,
            review: 0,
            merges_appended: 0,
            already_decided: 0,
            vetoed: 0,
            thresholds: None,
            elapsed_ms: 0,
            error: None,
        }
    }
}

fn status_write(status: &MatchingStatus) -> StateWrite {
    StateWrite {
        namespace: NS_MATCHING.into(),
        profile: PART_JOB.into(),
        key: KEY_STATUS.to_vec(),
        value: Some(serde_json::to_vec(status).expect("status serialises")),
    }
}

/// The last run's status, if a run ever started.
pub fn last_status(store: &dyn Store) -> Result<Option<MatchingStatus>, EngineError> {
    match store.state_get(NS_MATCHING, PART_JOB, KEY_STATUS)? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| EngineError::Corrupt(format!("stored matching status: {e}"))),
        None => Ok(None),
    }
}

/// Records that a run failed (the job's caller does, whatever the error).
pub fn record_failure(
    store: &dyn Store,
    error: &EngineError,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let mut status = last_status(store)?.unwrap_or_else(|| MatchingStatus::started(now));
    status.state = JobState::Failed;
    status.error = Some(error.to_string());
    status.finished_at_ms = Some(now.timestamp_millis());
    store.state_commit(&[status_write(&status)], None)?;
    Ok(())
}

/// Below this many comparable profiles a run says that u, measured on the profiles
/// themselves, includes the duplicates being looked for (docs/identity-matching.md).
const SMALL_WORKSPACE: u64 = 100;

/// What a run's reading says about what it can find, in plain words.
fn reading_notes(status: &MatchingStatus, options: &MatchingOptions) -> Vec<String> {
    let mut notes = Vec::new();
    let live = status.live_profiles;
    let present: Vec<String> = status
        .fields_present
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{f} {n}/{live}"))
        .collect();
    let missing: Vec<&str> = status
        .fields_present
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(f, _)| f.as_str())
        .collect();
    if status.too_few_fields > 0 {
        notes.push(format!(
            "{} of {live} profiles have fewer than two of the compared fields and were left out (present: {}; missing everywhere: {})",
            status.too_few_fields,
            if present.is_empty() { "none".to_owned() } else { present.join(", ") },
            if missing.is_empty() { "none".to_owned() } else { missing.join(", ") },
        ));
    }
    if status.records < 2 {
        notes.push(format!(
            "{} comparable profiles: nothing to compare; send traits such as `first_name`, `last_name`, `email`, `phone`, `address` (or map other traits in the matching options' `fields`)",
            status.records
        ));
    } else if status.records < SMALL_WORKSPACE && options.estimation == Estimation::Prior {
        notes.push(format!(
            "only {} comparable profiles: u is measured on these very profiles, duplicates included, so a workspace this small finds little (see docs/identity-matching.md)",
            status.records
        ));
    }
    notes
}

/// Scores the candidate pairs of `data` as [`MatchingOptions::estimation`] says.
fn link(
    linker: &Linker,
    data: &Dataset,
    options: &MatchingOptions,
) -> Result<LinkageResult, LinkageError> {
    if options.estimation == Estimation::Em {
        return linker.dedupe(data);
    }
    let comparisons = &linker.spec().comparisons;
    let parameters = Parameters {
        match_prior: options.match_prior,
        m: default_m(),
        u: random_pair_u(data, comparisons),
        iterations: 0,
        converged: true,
        log_likelihood: 0.0,
    };
    linker.dedupe_with_model(data, &Model::new(comparisons.clone(), parameters)?)
}

/// Whether a scored pair is two people whatever its total weight: both sides name a given
/// name, or a date of birth, and they disagree outright (neither alike, nor swapped with
/// the surname). Fellegi–Sunter adds up fields as if independent, so relatives and
/// neighbours sharing a street, a postcode and a surname can outweigh a different first
/// name or birthday; a person's own duplicate keeps those two, up to typos.
pub fn different_people(fields: &[FieldEvidence], comparisons: &[FieldComparison]) -> bool {
    fields.iter().zip(comparisons).any(|(f, c)| {
        matches!(f.field.as_str(), "given_name" | "date_of_birth")
            && f.level == Level::Agreement((c.levels() - 1) as u8)
    })
}

/// Random record pairs sampled to measure u.
const U_SAMPLES: usize = 50_000;

/// P(level | different people) for each comparison, measured on random pairs of records
/// (nearly all strangers). Candidate pairs would not do: blocking selects pairs that agree
/// on the blocking fields, which would make agreement on names look common. Every level
/// gets one pseudo-count so that none is impossible; the swapped-names level is left at
/// that (strangers almost never show it). Deterministic: the same profiles give the same u.
fn random_pair_u(data: &Dataset, comparisons: &[FieldComparison]) -> Vec<Vec<f64>> {
    let mut counts: Vec<Vec<f64>> = comparisons.iter().map(|c| vec![1.0; c.levels()]).collect();
    let n = data.len() as u64;
    if n >= 2 {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..U_SAMPLES {
            let (a, b) = (next() as u32, next() as u32);
            if a == b {
                continue;
            }
            for (f, c) in comparisons.iter().enumerate() {
                let Ok(field) = data.schema().index_of(&c.field) else {
                    continue;
                };
                let (Some(va), Some(vb)) = (data.value(a, field), data.value(b, field)) else {
                    continue;
                };
                let sim = c.comparator.similarity(va, vb);
                let level = c
                    .thresholds
                    .iter()
                    .position(|&t| sim >= t)
                    .unwrap_or(c.levels() - 1);
                counts[f][level] += 1.0;
            }
        }
    }
    counts
        .into_iter()
        .map(|c| {
            let total: f64 = c.iter().sum();
            c.into_iter().map(|x| x / total).collect()
        })
        .collect()
}

/// How the job appends merge entries: the ingestor's group commit in the server, the store
/// directly in tests and benchmarks.
pub type Append<'a> = dyn Fn(Vec<AppendItem>) -> Result<Vec<Appended>, EngineError> + 'a;

/// Runs the matching job once over the live profiles. `now` stamps the decisions.
pub fn run(
    store: &dyn Store,
    append: &Append<'_>,
    options: &MatchingOptions,
    now: DateTime<Utc>,
) -> Result<MatchingStatus, EngineError> {
    run_until(store, append, options, now, &|| false)
}

/// As [`run`], giving up with `ShuttingDown` when `stop` turns true (checked between pages
/// of profiles and between phases; merges already appended stay decided).
pub fn run_until(
    store: &dyn Store,
    append: &Append<'_>,
    options: &MatchingOptions,
    now: DateTime<Utc>,
    stop: &dyn Fn() -> bool,
) -> Result<MatchingStatus, EngineError> {
    let check = || {
        if stop() {
            Err(EngineError::ShuttingDown)
        } else {
            Ok(())
        }
    };
    options.validate()?;
    let clock = Instant::now();
    let mut status = MatchingStatus::started(now);
    let save = |status: &mut MatchingStatus| -> Result<(), EngineError> {
        status.elapsed_ms = clock.elapsed().as_millis() as u64;
        store.state_commit(&[status_write(status)], None)?;
        Ok(())
    };
    save(&mut status)?;

    // Reading: every live profile with something to compare.
    let mut ids = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.state_scan_range(NS_PROFILE_LIST, PART_ALL, after.as_deref(), 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        let n = page.len();
        ids.extend(page.into_iter().map(|(k, _)| k));
        if n < 10_000 {
            break;
        }
    }
    status.profiles_total = ids.len() as u64;
    let profiles = Profiles { store };
    let mut data = Dataset::new(Schema::new(FIELDS));
    for chunk in ids.chunks(PAGE) {
        check()?;
        for key in chunk {
            let id = ProfileId::new(String::from_utf8_lossy(key).into_owned());
            let Some(record) = profiles.record(&id)? else {
                continue;
            };
            if record.merged_into.is_some() {
                continue;
            }
            let values = linkage_values(&record, options);
            status.live_profiles += 1;
            for (field, v) in FIELDS.iter().zip(&values) {
                if v.is_some() {
                    *status
                        .fields_present
                        .entry((*field).to_owned())
                        .or_default() += 1;
                }
            }
            if values.iter().filter(|v| v.is_some()).count() >= 2 {
                data.push(id.as_str(), &values)
                    .expect("values follow the schema");
            } else {
                status.too_few_fields += 1;
            }
        }
        status.profiles_read += chunk.len() as u64;
        save(&mut status)?;
    }
    status.records = data.len() as u64;
    status.notes = reading_notes(&status, options);

    // Linking.
    check()?;
    status.phase = "linking".into();
    save(&mut status)?;
    let linker = Linker::new(options.spec()).map_err(|e| EngineError::InvalidAt {
        field: "options".into(),
        message: e.to_string(),
    })?;
    let result = match link(&linker, &data, options) {
        Ok(r) => Some(r),
        Err(LinkageError::NoCandidatePairs) => None,
        Err(e) => {
            return Err(EngineError::InvalidAt {
                field: "options".into(),
                message: format!("matching failed: {e}"),
            });
        }
    };

    // Deciding.
    check()?;
    status.phase = "deciding".into();
    let review = Review { store };
    let decided = review.keys(PART_DECIDED)?;
    let mut merges: Vec<Candidate> = Vec::new();
    let mut to_review: Vec<Candidate> = Vec::new();
    if let Some(result) = &result {
        status.candidate_pairs = result.pairs().len() as u64;
        status.thresholds = Some(result.thresholds());
        for (i, p) in result.pairs().iter().enumerate() {
            if p.decision == Decision::NonMatch {
                continue;
            }
            let a = ProfileId::new(data.external_id(p.left));
            let b = ProfileId::new(data.external_id(p.right));
            let (pair, left, right) = pair_id(&a, &b);
            if decided.contains(&pair) {
                status.already_decided += 1;
                continue;
            }
            let fields = result.explain(i, &data, &data).fields;
            if different_people(&fields, &linker.spec().comparisons) {
                status.vetoed += 1;
                continue;
            }
            let candidate = Candidate {
                pair,
                left,
                right,
                score: p.weight,
                probability: p.probability,
                fields,
                found_at_ms: now.timestamp_millis(),
            };
            match p.decision {
                Decision::Match => merges.push(candidate),
                _ => to_review.push(candidate),
            }
        }
    }
    status.matches = merges.len() as u64;
    status.review = to_review.len() as u64;
    save(&mut status)?;
    // Merges are ordered by pair so that a run over the same profiles appends the same log.
    merges.sort_by(|a, b| a.pair.cmp(&b.pair));
    for chunk in merges.chunks(CHUNK) {
        let entries: Vec<MatchMerge> = chunk
            .iter()
            .map(|c| c.merge(Verdict::Automatic, now, None))
            .collect();
        let appended = append(entries.iter().map(MatchMerge::append_item).collect())?;
        let mut writes = Vec::new();
        for (c, outcome) in chunk.iter().zip(appended) {
            let offset = match outcome {
                Appended::Stored(o) => Some(o),
                Appended::Duplicate => None,
            };
            status.merges_appended += u64::from(offset.is_some());
            writes.extend(Review::decide(&Decided {
                candidate: c.clone(),
                decision: Verdict::Automatic,
                decided_at_ms: now.timestamp_millis(),
                offset,
                reviewer: None,
            }));
        }
        status.elapsed_ms = clock.elapsed().as_millis() as u64;
        writes.push(status_write(&status));
        store.state_commit(&writes, None)?;
    }
    for chunk in to_review.chunks(CHUNK) {
        store.state_commit(&Review::propose(chunk), None)?;
    }
    status.state = JobState::Done;
    status.phase = "finished".into();
    status.finished_at_ms = Some(now.timestamp_millis() + clock.elapsed().as_millis() as i64);
    save(&mut status)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_core::identity::{Identifier, IdentifierRecord, TraitValue};
    use serde_json::json;

    fn record(traits: Value, identifiers: &[Identifier]) -> ProfileRecord {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut r = ProfileRecord::new(ProfileId::new("p_1"));
        for (k, v) in traits.as_object().unwrap() {
            r.traits.traits.insert(
                k.clone(),
                TraitValue {
                    value: v.clone(),
                    timestamp: at,
                    message_id: "m".into(),
                },
            );
        }
        r.identifiers = identifiers
            .iter()
            .map(|i| IdentifierRecord {
                identifier: i.clone(),
                first_seen: at,
                last_seen: at,
                added_by: "m".into(),
            })
            .collect();
        r
    }

    #[test]
    fn linkage_values_read_traits_with_fallbacks() {
        let cases = [
            (
                json!({"firstName": "Ann", "lastName": "Lee", "address": {"city": "Leeds", "postalCode": "LS1"}, "birthday": "1980-02-03T00:00:00Z"}),
                vec![],
                [
                    Some("Ann"),
                    Some("Lee"),
                    None,
                    None,
                    None,
                    None,
                    Some("LS1"),
                    Some("19800203"),
                ],
            ),
            (
                json!({"name": "Mary Ann Jones", "phone": "+44 20 7946 0018", "dob": "1980"}),
                vec![Identifier::new(IdentifierKind::Email, "m@x.org")],
                [
                    Some("Mary Ann"),
                    Some("Jones"),
                    Some("m@x.org"),
                    Some("442079460018"),
                    None,
                    None,
                    None,
                    None,
                ],
            ),
        ];
        let options = MatchingOptions::default();
        for (traits, ids, expected) in cases {
            let got = linkage_values(&record(traits.clone(), &ids), &options);
            let expected: Vec<Option<String>> =
                expected.iter().map(|v| v.map(str::to_owned)).collect();
            assert_eq!(got, expected, "{traits}");
        }
    }

    #[test]
    fn options_replace_only_the_fields_they_name() {
        let r = record(
            json!({"firstName": "Ann", "lastName": "Lee", "address": {"town": "Leeds", "city": "x"}, "phone": "+44 20 7946 0018"}),
            &[],
        );
        let options: MatchingOptions =
            serde_json::from_value(json!({"fields": {"city": ["address.town"], "phone": []}}))
                .unwrap();
        let got = linkage_values(&r, &options);
        assert_eq!(got[0].as_deref(), Some("Ann"));
        assert_eq!(got[field_index("city")].as_deref(), Some("Leeds"));
        assert_eq!(got[field_index("phone")], None);
    }

    #[test]
    fn pairs_with_different_given_names_or_birthdays_are_different_people() {
        let spec = MatchingOptions::default().spec();
        let evidence = |field: &str, level: Level| FieldEvidence {
            field: field.into(),
            left_value: None,
            right_value: None,
            level,
            level_label: String::new(),
            m: None,
            u: None,
            weight: 0.0,
        };
        let vector = |given: Level, dob: Level| -> Vec<FieldEvidence> {
            FIELDS
                .iter()
                .map(|&f| match f {
                    "given_name" => evidence(f, given),
                    "date_of_birth" => evidence(f, dob),
                    _ => evidence(f, Level::Agreement(0)),
                })
                .collect()
        };
        let given_disagree = Level::Agreement((spec.comparisons[0].levels() - 1) as u8);
        let dob_disagree = Level::Agreement((spec.comparisons[7].levels() - 1) as u8);
        let cases = [
            (Level::Agreement(0), Level::Agreement(0), false),
            (Level::Agreement(2), Level::Agreement(1), false),
            (Level::Agreement(3), Level::Missing, false), // swapped with the surname
            (Level::Missing, Level::Missing, false),
            (given_disagree, Level::Agreement(0), true),
            (Level::Agreement(0), dob_disagree, true),
        ];
        for (given, dob, expected) in cases {
            assert_eq!(
                different_people(&vector(given, dob), &spec.comparisons),
                expected,
                "{given:?} {dob:?}"
            );
        }
    }

    #[test]
    fn options_are_validated_naming_the_field() {
        let cases = [
            (
                json!({"fields": {"shoe_size": ["size"]}}),
                "fields.shoe_size",
            ),
            (json!({"match_probability": 1.0}), "match_probability"),
            (
                json!({"match_probability": 0.6, "review_probability": 0.7}),
                "review_probability",
            ),
        ];
        for (body, field) in cases {
            let options: MatchingOptions = serde_json::from_value(body).unwrap();
            match options.validate() {
                Err(EngineError::InvalidAt { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        MatchingOptions::default().validate().unwrap();
    }
}
