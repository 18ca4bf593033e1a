//! The value models on live data: customer lifetime value and P(alive), churn risk, health
//! scores with alerts, survey metrics and earned growth.
//!
//! The numerics are pure and live in `rapport_value`; this module is the shell around them:
//! it reads each profile's history from the log ([`collect`]), fits and scores, and writes
//! the results where segments and the API read them. Jobs run on their own threads, one at
//! a time per model ([`Models`]), on demand or on a schedule.
//!
//! What is stored, always keyed first by the id it is read by:
//! - `model.score` / live profile id, empty key → a JSON object of the profile's scores
//!   (`clv`, `p_alive`, `expected_purchases_90d`, `churn_risk`, `health_score`,
//!   `health_band`, …). Each job merges its own fields into it, so jobs never erase each
//!   other's results. The processor's `profile` namespace is never written.
//! - `model.fit` / model name (`clv`, `churn`, `health`), empty key → the latest fit summary;
//!   time-ordered keys keep a short history; `churn` / `model` holds the trained model.
//! - `model.health` / live profile id, empty key → the last health score with its
//!   components, which the next run compares against to explain an alert.
//! - `model.alert` / `alerts`, key = big-endian ms + sequence → one health alert, a feed.

mod churn;
mod clv;
pub mod collect;
mod config;
mod health;
mod jobs;
mod surveys;
#[cfg(test)]
mod tests;

pub use churn::{
    ChurnFit, ChurnLabelInfo, ChurnTraining, FeatureWeight, churn_features, fit_churn,
};
pub use clv::{
    ClvDistributionReport, ClvFit, CohortRow, DISTRIBUTION_BINS, DISTRIBUTION_BINS_MAX, Holdout,
    HoldoutBucket, HoldoutCheck, HoldoutFailure, PurchaseParams, ScoreFailure, ScoreFailures,
    SilentMajority, SilentMajorityReport, SpendParams, clv_distribution, cohort_table, fit_clv,
    silent_majority,
};
pub use config::{
    ChurnAlgorithmKind, ChurnSettings, ClvSettings, HealthSettings, ModelsConfig, PurchaseModelKind,
};
pub use health::{
    Alert, AlertPage, HealthReport, HealthRun, LowScore, alerts, health_report, run_health,
};
pub use jobs::{JobState, JobView, ModelKind, Models, Progress, Schedule};
pub use surveys::{
    AcquisitionCounts, EarnedGrowthQuery, EarnedGrowthReport, GrowthRead, PeriodGrowth, SeriesRow,
    SurveyQuery, SurveyRead, SurveyReport, earned_growth_report, earned_growth_series,
    survey_report,
};

use crate::EngineError;
use rapport_core::event::format_timestamp;
use rapport_store::{StateStore, StateWrite};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Mutex;

pub const NS_SCORE: &str = "model.score";
pub const NS_FIT: &str = "model.fit";
pub const NS_HEALTH: &str = "model.health";
pub const NS_ALERT: &str = "model.alert";
/// The one distribution key of the alert feed.
pub const ALERT_FEED: &str = "alerts";
/// Fit summaries kept per model besides the latest.
const FIT_HISTORY: usize = 20;
/// Profiles written per commit.
const WRITE_BATCH: usize = 1_000;

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("corrupt model data: {e}"))
}

/// RFC 3339 of a time in Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| format_timestamp(&t))
        .unwrap_or_default()
}

/// A UTC date of a time in Unix seconds, in a `chrono` format (`%Y-%m-%d`, `%Y-%m`).
fn utc_date(unix_seconds: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .map(|t| t.format(format).to_string())
        .unwrap_or_default()
}

/// Reads of the stored scores, for the profile API and segments.
pub struct ModelScores<'a> {
    pub store: &'a dyn StateStore,
}

impl ModelScores<'_> {
    /// The scores of a live profile, if any job has scored it.
    pub fn scores(&self, profile: &str) -> Result<Option<Map<String, Value>>, EngineError> {
        match self.store.state_get(NS_SCORE, profile, b"")? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// The latest fit summary of a model, as any version of Rapport wrote it.
    pub fn latest_fit(&self, model: ModelKind) -> Result<Option<FitSummary>, EngineError> {
        let Some(bytes) = self.store.state_get(NS_FIT, model.as_str(), b"")? else {
            return Ok(None);
        };
        Ok(Some(match model {
            ModelKind::Clv => FitSummary::Clv(serde_json::from_slice(&bytes).map_err(corrupt)?),
            ModelKind::Churn => FitSummary::Churn(serde_json::from_slice(&bytes).map_err(corrupt)?),
            ModelKind::Health => {
                FitSummary::Health(serde_json::from_slice(&bytes).map_err(corrupt)?)
            }
        }))
    }
}

/// Merges fields into `model.score`. Jobs of different models may run at once; the lock
/// makes each batch's read-merge-write atomic with respect to the others.
#[derive(Default)]
pub struct ScoreWriter {
    lock: Mutex<()>,
}

impl ScoreWriter {
    /// Merges each profile's fields into its stored scores, `WRITE_BATCH` profiles per
    /// commit; a field whose value is null is removed.
    pub fn merge(
        &self,
        store: &dyn StateStore,
        updates: impl IntoIterator<Item = (String, Map<String, Value>)>,
        progress: &Progress,
    ) -> Result<usize, EngineError> {
        let mut written = 0;
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut updates = updates.into_iter().peekable();
        while updates.peek().is_some() {
            progress.check()?;
            batch.clear();
            batch.extend(updates.by_ref().take(WRITE_BATCH));
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let scores = ModelScores { store };
            let mut writes = Vec::with_capacity(batch.len());
            for (profile, fields) in batch.drain(..) {
                let mut current = scores.scores(&profile)?.unwrap_or_default();
                // A null field removes a score the job can no longer stand behind.
                for (k, v) in fields {
                    if v.is_null() {
                        current.remove(&k);
                    } else {
                        current.insert(k, v);
                    }
                }
                writes.push(StateWrite {
                    namespace: NS_SCORE.into(),
                    profile,
                    key: Vec::new(),
                    value: Some(serde_json::to_vec(&current).expect("JSON object")),
                });
            }
            store.state_commit(&writes, None)?;
            written += writes.len();
            progress.add(writes.len() as u64);
        }
        if written > 0 {
            // Segments that read scores must see the new ones.
            crate::audiences::definitions::Definitions { store }.scores_changed()?;
        }
        Ok(written)
    }
}

/// Stores a fit summary as the model's latest and in its history, dropping the oldest.
fn store_fit(
    store: &dyn StateStore,
    model: ModelKind,
    at_ms: i64,
    summary: &FitSummary,
) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec(summary).expect("JSON");
    let mut writes = vec![
        StateWrite {
            namespace: NS_FIT.into(),
            profile: model.as_str().into(),
            key: Vec::new(),
            value: Some(bytes.clone()),
        },
        StateWrite {
            namespace: NS_FIT.into(),
            profile: model.as_str().into(),
            key: (at_ms as u64).to_be_bytes().to_vec(),
            value: Some(bytes),
        },
    ];
    let history: Vec<Vec<u8>> = store
        .state_scan(NS_FIT, model.as_str())?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.len() == 8)
        .collect();
    let excess = (history.len() + 1).saturating_sub(FIT_HISTORY);
    writes.extend(history.into_iter().take(excess).map(|key| StateWrite {
        namespace: NS_FIT.into(),
        profile: model.as_str().into(),
        key,
        value: None,
    }));
    store.state_commit(&writes, None)?;
    Ok(())
}

/// A finite float as JSON, `null` otherwise (JSON has no NaN).
fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A finite float, `None` otherwise: what a summary stores (as `null`) for a figure that
/// could not be computed.
fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A fit's summary, one type per model: what `Models::run` returns and `model.fit` keeps.
/// Each serialises as the object it always was (with `model`, `fitted_at` and
/// `duration_ms` last).
// One summary per fit, built once and moved whole: boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FitSummary {
    Clv(ClvFit),
    Churn(ChurnFit),
    Health(HealthRun),
}

impl FitSummary {
    pub fn model(&self) -> ModelKind {
        match self {
            FitSummary::Clv(_) => ModelKind::Clv,
            FitSummary::Churn(_) => ModelKind::Churn,
            FitSummary::Health(_) => ModelKind::Health,
        }
    }

    /// What the fit could not stand behind, in plain words.
    pub fn warnings(&self) -> &[String] {
        match self {
            FitSummary::Clv(s) => &s.warnings,
            FitSummary::Churn(s) => &s.warnings,
            FitSummary::Health(s) => &s.warnings,
        }
    }

    /// RFC 3339: the time the fit is as of.
    pub fn fitted_at(&self) -> &str {
        match self {
            FitSummary::Clv(s) => &s.fitted_at,
            FitSummary::Churn(s) => &s.fitted_at,
            FitSummary::Health(s) => &s.fitted_at,
        }
    }

    fn set_duration_ms(&mut self, ms: u64) {
        match self {
            FitSummary::Clv(s) => s.duration_ms = ms,
            FitSummary::Churn(s) => s.duration_ms = ms,
            FitSummary::Health(s) => s.duration_ms = ms,
        }
    }
}

/// Counts by name kept in their order, as a JSON object (`#[serde(with = "counts")]`).
mod counts {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(String, usize)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, n) in v {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, usize)>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, usize)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = a.next_entry::<String, usize>()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}
