//! Churn risk on live data: a supervised model of "will this customer churn in the next N
//! days", trained on what happened to the customers who were active N days ago.
//!
//! Training looks back: at the cut-off `now − N days`, every customer who was active then
//! (labelled `Retained` by `churn_label` as of the cut-off) becomes a row of features
//! computed only from events up to the cut-off, labelled by `churn_label` as of now (no
//! activity in the N days since, or an explicit cancellation). So the model learns from the
//! future it is asked to predict, and the held-out AUC of every run says how well. Scoring
//! then computes the same features as of now for every profile. Customers already churned
//! now get `churn_risk` 1 and `churned: true`.
//!
//! Traits used as categorical features are the profile's current values (profiles keep no
//! trait history), a small leak for traits that change at churn time (e.g. `plan: "none"`):
//! pick traits that describe the customer rather than their exit.

use super::collect::{ProfileData, Wanted, collect, count_between};
use super::{
    ChurnAlgorithmKind, ModelKind, ModelsConfig, NS_FIT, Progress, ScoreWriter, fin, num, rfc3339,
};
use crate::EngineError;
use rapport_store::{StateWrite, Store};
use rapport_value::churn::{
    ActivityTimeline, ChurnAlgorithm, ChurnConfig, ChurnLabel, ChurnLabelRule, Column, Dataset,
    FeatureValue, GbtConfig, LogisticConfig, TrainingReport, churn_label, train_and_evaluate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const DAY: i64 = 86_400;

fn wanted(config: &ModelsConfig) -> Wanted {
    Wanted {
        purchase_event: config.purchase_event.clone(),
        revenue_property: config.revenue_property.clone(),
        survey_event: config.survey_event.clone(),
        activity: true,
        support_events: config.health.support_events.clone(),
        cancel_events: config.churn.cancel_events.clone(),
        purchases: true,
        answers: true,
    }
}

/// The input columns, in the order of [`churn_features`].
pub fn churn_columns(trait_features: &[String]) -> Vec<Column> {
    let mut c: Vec<Column> = [
        "tenure_days",
        "days_since_activity",
        "events_30d",
        "events_90d",
        "activity_trend",
        "purchases",
        "revenue",
        "days_since_purchase",
        "support_tickets_90d",
        "last_nps",
    ]
    .into_iter()
    .map(Column::numeric)
    .collect();
    c.extend(
        trait_features
            .iter()
            .map(|t| Column::categorical(format!("traits.{t}"))),
    );
    c
}

fn days(seconds: i64) -> f64 {
    seconds as f64 / DAY as f64
}

/// A profile's features from its events up to `as_of` (Unix seconds).
pub fn churn_features(
    data: &ProfileData,
    as_of: i64,
    trait_features: &[String],
) -> Vec<FeatureValue> {
    let last = |ts: &mut dyn Iterator<Item = i64>| ts.filter(|&t| t <= as_of).max();
    let last_activity = last(&mut data.activity.iter().copied());
    let purchases: Vec<(i64, f64)> = data
        .purchases
        .iter()
        .copied()
        .filter(|(t, _)| *t <= as_of)
        .collect();
    let last_purchase = purchases.iter().map(|p| p.0).max();
    let e30 = count_between(&data.activity, as_of - 30 * DAY, as_of);
    let prev30 = count_between(&data.activity, as_of - 60 * DAY, as_of - 30 * DAY);
    let last_nps = data.latest_nps(as_of);
    let n = |x: f64| FeatureValue::Number(x);
    let mut row = vec![
        data.first_seen
            .map_or(FeatureValue::Missing, |f| n(days(as_of - f))),
        last_activity.map_or(FeatureValue::Missing, |t| n(days(as_of - t))),
        n(e30 as f64),
        n(count_between(&data.activity, as_of - 90 * DAY, as_of) as f64),
        n((e30 as f64 - prev30 as f64) / (prev30.max(1) as f64)),
        n(purchases.len() as f64),
        n(purchases.iter().map(|p| p.1).sum()),
        last_purchase.map_or(FeatureValue::Missing, |t| n(days(as_of - t))),
        n(count_between(&data.support, as_of - 90 * DAY, as_of) as f64),
        last_nps.map_or(FeatureValue::Missing, n),
    ];
    row.extend(trait_features.iter().map(|t| match data.traits.get(t) {
        None | Some(Value::Null) => FeatureValue::Missing,
        Some(Value::String(s)) => FeatureValue::Category(s.clone()),
        Some(other) => FeatureValue::Category(other.to_string()),
    }));
    row
}

/// What `churn_label` needs, from events up to `as_of`; `None` before the profile existed.
pub fn timeline_at(data: &ProfileData, as_of: i64) -> Option<ActivityTimeline> {
    let first_seen = data.first_seen.filter(|&f| f <= as_of)?;
    let last = |ts: &mut dyn Iterator<Item = i64>| ts.filter(|&t| t <= as_of).max();
    Some(ActivityTimeline {
        first_seen: Some(first_seen),
        last_activity: last(&mut data.activity.iter().copied()),
        last_purchase: last(&mut data.purchases.iter().map(|p| p.0)),
        cancelled_at: last(&mut data.cancels.iter().copied()),
    })
}

fn algorithm(kind: ChurnAlgorithmKind) -> ChurnAlgorithm {
    match kind {
        ChurnAlgorithmKind::Logistic => ChurnAlgorithm::Logistic(LogisticConfig::default()),
        ChurnAlgorithmKind::GradientBoosting => {
            ChurnAlgorithm::GradientBoosting(GbtConfig::default())
        }
    }
}

fn cannot_train(e: impl std::fmt::Display) -> EngineError {
    EngineError::InsufficientData(format!(
        "the churn model cannot be trained: {e}; scores not written"
    ))
}

fn customers(n: usize) -> String {
    format!("{n} {}", if n == 1 { "customer" } else { "customers" })
}

/// Trains the churn model as of `now_ms`, writes every profile's `churn_risk` and returns
/// the training summary (with the held-out AUC).
pub fn fit_churn(
    store: &dyn Store,
    config: &ModelsConfig,
    now_ms: i64,
    progress: &Progress,
    writer: &ScoreWriter,
) -> Result<ChurnFit, EngineError> {
    let settings = &config.churn;
    let collected = collect(store, &wanted(config), progress)?;
    let now = now_ms.div_euclid(1000);
    let cutoff = now - i64::from(settings.inactivity_days) * DAY;
    let rule = ChurnLabelRule {
        inactivity_days: settings.inactivity_days,
    };
    progress.phase("training", 0);
    let label = |data: &ProfileData, at: i64| -> Result<Option<ChurnLabel>, EngineError> {
        timeline_at(data, at)
            .map(|tl| churn_label(&tl, at, &rule).map_err(cannot_train))
            .transpose()
    };
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for data in collected.profiles.values() {
        if label(data, cutoff)? != Some(ChurnLabel::Retained) {
            continue;
        }
        let churned = label(data, now)?.is_some_and(|l| l.is_churned());
        rows.push(churn_features(data, cutoff, &settings.trait_features));
        labels.push(churned);
    }
    if rows.is_empty() {
        return Err(EngineError::InsufficientData(format!(
            "no customer of the {} profiles read was active {} days ago (`models.churn.inactivity_days`), so there is nothing to learn churn from yet; scores not written",
            collected.profiles.len(),
            settings.inactivity_days
        )));
    }
    let churned_in_training = labels.iter().filter(|&&l| l).count();
    let retained_in_training = rows.len() - churned_in_training;
    if rows.len() < settings.min_customers
        || churned_in_training < settings.min_churned
        || retained_in_training < settings.min_churned
    {
        return Err(EngineError::InsufficientData(format!(
            "{} active {} days ago, of whom {} churned and {} stayed: too few to learn churn from (need ≥ {} customers and ≥ {} of each: `models.churn.min_customers`, `models.churn.min_churned`); scores not written",
            customers(rows.len()),
            settings.inactivity_days,
            churned_in_training,
            retained_in_training,
            settings.min_customers,
            settings.min_churned,
        )));
    }
    let dataset = Dataset::new(churn_columns(&settings.trait_features), rows, labels)
        .map_err(cannot_train)?;
    let churn_config = ChurnConfig {
        test_fraction: settings.test_fraction,
        algorithm: algorithm(settings.algorithm),
        ..ChurnConfig::default()
    };
    let (model, report) = train_and_evaluate(&dataset, &churn_config).map_err(cannot_train)?;
    if report.auc_test.is_nan() || report.auc_test < settings.min_auc {
        return Err(EngineError::InsufficientData(format!(
            "the churn model's held-out AUC is {:.3}, not better than chance (need ≥ {}: `models.churn.min_auc`) on {} training customers: these features do not predict churn here; scores not written",
            report.auc_test,
            settings.min_auc,
            dataset.rows.len()
        )));
    }
    progress.check()?;

    progress.phase("scoring", collected.profiles.len() as u64);
    let mut ids = Vec::new();
    let mut active_rows = Vec::new();
    let mut churned_now = Vec::new();
    for (id, data) in &collected.profiles {
        let churned = label(data, now)?.is_some_and(|l| l.is_churned());
        ids.push(id.clone());
        churned_now.push(churned);
        active_rows.push(churn_features(data, now, &settings.trait_features));
    }
    let risks = model.predict_all(&active_rows).map_err(cannot_train)?;
    progress.phase("writing scores", ids.len() as u64);
    let scored_at = rfc3339(now_ms);
    let currently_churned = churned_now.iter().filter(|&&c| c).count();
    let updates =
        ids.into_iter()
            .zip(risks.iter().zip(&churned_now))
            .map(|(id, (&risk, &churned))| {
                let mut m = Map::new();
                m.insert("churn_risk".into(), num(if churned { 1.0 } else { risk }));
                m.insert("churned".into(), Value::Bool(churned));
                m.insert("scored_at".into(), Value::from(scored_at.clone()));
                m.insert("churn_model".into(), Value::from(report.algorithm.clone()));
                (id, m)
            });
    let scored = writer.merge(store, updates, progress)?;
    // The model itself, for scoring between fits.
    store.state_commit(
        &[StateWrite {
            namespace: NS_FIT.into(),
            profile: "churn".into(),
            key: b"model".to_vec(),
            value: Some(serde_json::to_vec(&model).expect("JSON")),
        }],
        None,
    )?;
    Ok(ChurnFit {
        algorithm: report.algorithm.clone(),
        auc: fin(report.auc_test),
        label: ChurnLabelInfo {
            inactivity_days: settings.inactivity_days,
            cancel_events: settings.cancel_events.clone(),
        },
        trait_features: settings.trait_features.clone(),
        training_as_of: rfc3339(cutoff * 1000),
        customers: dataset.rows.len(),
        churned_in_training,
        warnings: Vec::new(),
        report: ChurnTraining::from(report),
        profiles_scored: scored,
        currently_churned,
        events_read: collected.events_read,
        unattributed_events: collected.unattributed,
        model: ModelKind::Churn,
        fitted_at: rfc3339(now_ms),
        duration_ms: 0,
    })
}

/// What the churn label means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnLabelInfo {
    pub inactivity_days: u32,
    pub cancel_events: Vec<String>,
}

/// One input of the churn model and its weight (see `rapport_value::churn::FeatureWeight`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub feature: String,
    pub weight: Option<f64>,
}

/// How training went (`rapport_value::churn::TrainingReport`, with figures that could not
/// be computed as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnTraining {
    pub algorithm: String,
    pub n_train: usize,
    pub n_test: usize,
    pub positives_train: usize,
    pub positives_test: usize,
    pub auc_test: Option<f64>,
    pub log_loss_test: Option<f64>,
    pub auc_train: Option<f64>,
    pub log_loss_train: Option<f64>,
    pub intercept: Option<f64>,
    pub feature_weights: Vec<FeatureWeight>,
    pub iterations: usize,
    pub converged: bool,
}

impl From<TrainingReport> for ChurnTraining {
    fn from(r: TrainingReport) -> ChurnTraining {
        ChurnTraining {
            algorithm: r.algorithm,
            n_train: r.n_train,
            n_test: r.n_test,
            positives_train: r.positives_train,
            positives_test: r.positives_test,
            auc_test: fin(r.auc_test),
            log_loss_test: fin(r.log_loss_test),
            auc_train: fin(r.auc_train),
            log_loss_train: fin(r.log_loss_train),
            intercept: fin(r.intercept),
            feature_weights: r
                .feature_weights
                .into_iter()
                .map(|w| FeatureWeight {
                    feature: w.feature,
                    weight: fin(w.weight),
                })
                .collect(),
            iterations: r.iterations,
            converged: r.converged,
        }
    }
}

/// The summary of a churn training, as `model.fit` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnFit {
    pub algorithm: String,
    pub auc: Option<f64>,
    pub label: ChurnLabelInfo,
    pub trait_features: Vec<String>,
    pub training_as_of: String,
    pub customers: usize,
    pub churned_in_training: usize,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub report: ChurnTraining,
    pub profiles_scored: usize,
    pub currently_churned: usize,
    pub events_read: u64,
    pub unattributed_events: u64,
    pub model: ModelKind,
    pub fitted_at: String,
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn features_only_see_events_up_to_as_of() {
        let data = ProfileData {
            traits: Arc::new(
                json!({"plan": "pro", "seats": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            first_seen: Some(0),
            activity: vec![10 * DAY, 50 * DAY, 95 * DAY, 200 * DAY],
            purchases: vec![(50 * DAY, 20.0), (200 * DAY, 99.0)],
            support: vec![95 * DAY],
            cancels: vec![],
            answers: vec![],
        };
        let row = churn_features(
            &data,
            100 * DAY,
            &["plan".into(), "seats".into(), "x".into()],
        );
        assert_eq!(
            row.len(),
            churn_columns(&["a".into(), "b".into(), "c".into()]).len()
        );
        let n = |i: usize| match &row[i] {
            FeatureValue::Number(x) => *x,
            other => panic!("{other:?}"),
        };
        assert_eq!(n(0), 100.0); // tenure
        assert_eq!(n(1), 5.0); // days since activity
        assert_eq!(n(2), 1.0); // events in the last 30 days
        assert_eq!(n(3), 2.0); // events in the last 90 days
        assert_eq!(n(4), 0.0); // one event in each of the last two 30-day windows
        assert_eq!(n(5), 1.0);
        assert_eq!(n(6), 20.0);
        assert_eq!(n(7), 50.0);
        assert_eq!(n(8), 1.0);
        assert_eq!(row[9], FeatureValue::Missing);
        assert_eq!(row[10], FeatureValue::Category("pro".into()));
        assert_eq!(row[11], FeatureValue::Category("3".into()));
        assert_eq!(row[12], FeatureValue::Missing);
        assert!(timeline_at(&data, -1).is_none());
        let tl = timeline_at(&data, 100 * DAY).unwrap();
        assert_eq!(tl.last_activity, Some(95 * DAY));
        assert_eq!(tl.last_purchase, Some(50 * DAY));
    }
}
