//! Churn risk: who is likely to leave, learned from past customers.
//!
//! Rapport keeps profile features (tenure, plan, spend, activity…) for every customer. This
//! module turns them into a probability of churn so that segments, journeys and the health
//! score can act before the customer is gone:
//!
//! - [`churn_label`] defines the label from activity timestamps and cancel events;
//! - [`FeatureEncoder`] standardises numbers and one-hot encodes categories (unseen levels
//!   are handled);
//! - [`ChurnModel`] is an L2-regularised logistic regression fitted by Newton/IRLS
//!   ([`fit_logistic`]), or gradient-boosted trees ([`fit_gbt`]) chosen by
//!   [`ChurnAlgorithm`];
//! - [`stratified_split`], [`roc_auc`] and [`log_loss`] evaluate it, and
//!   [`train_and_evaluate`] ties everything into a [`TrainingReport`].
//!
//! Pure numerics: the caller brings rows and the `as_of` time; nothing here reads a clock,
//! a file or the network, and bad input yields a [`ChurnError`], never a panic.

mod features;
mod gbt;
mod label;
mod logistic;
mod metrics;
mod split;

pub use features::{
    Column, ColumnKind, ColumnStats, DesignMatrix, EncoderConfig, FeatureEncoder, FeatureValue,
    Standardizer,
};
pub use gbt::{GbtConfig, GbtModel, fit_gbt};
pub use label::{ActivityTimeline, ChurnLabel, ChurnLabelRule, ChurnReason, churn_label};
pub use logistic::{LogisticConfig, LogisticModel, fit_logistic};
pub use metrics::{log_loss, roc_auc};
pub use split::{Split, SplitMix64, stratified_split};

use serde::{Deserialize, Serialize};

/// Errors of the churn module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChurnError {
    #[error("expected {expected} values, found {found}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("no data")]
    EmptyData,
    #[error("labels contain a single class; both churned and retained customers are needed")]
    SingleClass,
    #[error("non-finite value in {0}")]
    NonFinite(String),
    #[error("value of the wrong kind for column `{column}`")]
    TypeMismatch { column: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{field} = {timestamp} is after as_of = {as_of}")]
    FutureTimestamp {
        field: &'static str,
        timestamp: i64,
        as_of: i64,
    },
    #[error("row index {index} is out of range for {len} rows")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("numerical failure: {0}")]
    NumericalFailure(String),
}

/// Training data: one row of feature values per customer, and whether they churned.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<FeatureValue>>,
    pub labels: Vec<bool>,
}

impl Dataset {
    /// Checks that there is one label per row and one value per column in every row.
    pub fn new(
        columns: Vec<Column>,
        rows: Vec<Vec<FeatureValue>>,
        labels: Vec<bool>,
    ) -> Result<Self, ChurnError> {
        if rows.len() != labels.len() {
            return Err(ChurnError::LengthMismatch {
                expected: rows.len(),
                found: labels.len(),
            });
        }
        if let Some(r) = rows.iter().find(|r| r.len() != columns.len()) {
            return Err(ChurnError::LengthMismatch {
                expected: columns.len(),
                found: r.len(),
            });
        }
        Ok(Self {
            columns,
            rows,
            labels,
        })
    }

    /// The rows at `indices`, in that order. Errors on an index past the last row.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset, ChurnError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.rows.len()) {
            return Err(ChurnError::IndexOutOfRange {
                index: bad,
                len: self.rows.len(),
            });
        }
        Ok(Dataset {
            columns: self.columns.clone(),
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        })
    }
}

/// The learning algorithm and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChurnAlgorithm {
    Logistic(LogisticConfig),
    GradientBoosting(GbtConfig),
}

impl Default for ChurnAlgorithm {
    fn default() -> Self {
        ChurnAlgorithm::Logistic(LogisticConfig::default())
    }
}

/// Options of [`train_and_evaluate`] and [`ChurnModel::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChurnConfig {
    /// Share of rows held out for evaluation (stratified by label).
    pub test_fraction: f64,
    /// Seed of the train/test split.
    pub seed: u64,
    pub encoder: EncoderConfig,
    pub algorithm: ChurnAlgorithm,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            seed: 42,
            encoder: EncoderConfig::default(),
            algorithm: ChurnAlgorithm::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum Predictor {
    Logistic(LogisticModel),
    Boosted(GbtModel),
}

/// A trained churn model: the feature encoding learned on the training rows and the fitted
/// predictor. Serialisable, so it can be stored and loaded for scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    encoder: FeatureEncoder,
    predictor: Predictor,
}

/// One encoded feature and its weight in the model.
///
/// For logistic regression, the coefficient on the standardised feature (log-odds per
/// standard deviation, or per presence of a category level): positive raises churn risk.
/// For gradient boosting, the feature's share of the total split gain (≥ 0, sums to 1):
/// how much the feature is used, not in which direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub feature: String,
    pub weight: f64,
}

/// What training produced and how well the model does on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub algorithm: String,
    pub n_train: usize,
    pub n_test: usize,
    pub positives_train: usize,
    pub positives_test: usize,
    /// ROC AUC on the held-out rows.
    pub auc_test: f64,
    pub log_loss_test: f64,
    pub auc_train: f64,
    pub log_loss_train: f64,
    /// Logistic intercept, or the boosted model's base log-odds.
    pub intercept: f64,
    /// Feature weights, largest magnitude first.
    pub feature_weights: Vec<FeatureWeight>,
    /// Newton iterations (logistic) or trees (boosting).
    pub iterations: usize,
    pub converged: bool,
}

impl ChurnModel {
    /// Fits the encoder and the predictor on all rows of `data` (no hold-out).
    pub fn fit(data: &Dataset, config: &ChurnConfig) -> Result<Self, ChurnError> {
        if data.rows.is_empty() {
            return Err(ChurnError::EmptyData);
        }
        let encoder = FeatureEncoder::fit(&data.columns, &data.rows, &config.encoder)?;
        let x = encoder.encode_all(&data.rows)?;
        let predictor = match &config.algorithm {
            ChurnAlgorithm::Logistic(c) => Predictor::Logistic(fit_logistic(&x, &data.labels, c)?),
            ChurnAlgorithm::GradientBoosting(c) => {
                Predictor::Boosted(fit_gbt(&x, &data.labels, c)?)
            }
        };
        Ok(Self { encoder, predictor })
    }

    /// The input columns the model expects, in order.
    pub fn columns(&self) -> &[Column] {
        self.encoder.columns()
    }

    pub fn encoder(&self) -> &FeatureEncoder {
        &self.encoder
    }

    /// Probability that the customer described by `row` churns.
    pub fn predict_proba(&self, row: &[FeatureValue]) -> Result<f64, ChurnError> {
        let x = self.encoder.encode(row)?;
        Ok(self.predict_encoded(&x))
    }

    /// Probabilities for many rows.
    pub fn predict_all(&self, rows: &[Vec<FeatureValue>]) -> Result<Vec<f64>, ChurnError> {
        let mut x = Vec::with_capacity(self.encoder.n_features());
        rows.iter()
            .map(|r| {
                x.clear();
                self.encoder.encode_into(r, &mut x)?;
                Ok(self.predict_encoded(&x))
            })
            .collect()
    }

    fn predict_encoded(&self, x: &[f64]) -> f64 {
        match &self.predictor {
            Predictor::Logistic(m) => m.predict_proba(x),
            Predictor::Boosted(m) => m.predict_proba(x),
        }
    }

    /// Feature weights, largest magnitude first.
    pub fn feature_weights(&self) -> Vec<FeatureWeight> {
        let raw: Vec<f64> = match &self.predictor {
            Predictor::Logistic(m) => m.weights.clone(),
            Predictor::Boosted(m) => {
                let total: f64 = m.gain_importance.iter().sum();
                let total = if total > 0.0 { total } else { 1.0 };
                m.gain_importance.iter().map(|g| g / total).collect()
            }
        };
        let mut out: Vec<FeatureWeight> = self
            .encoder
            .feature_names()
            .iter()
            .zip(raw)
            .map(|(f, w)| FeatureWeight {
                feature: f.clone(),
                weight: w,
            })
            .collect();
        out.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
        out
    }

    fn summary(&self) -> (String, f64, usize, bool) {
        match &self.predictor {
            Predictor::Logistic(m) => ("logistic".into(), m.intercept, m.iterations, m.converged),
            Predictor::Boosted(m) => ("gradient_boosting".into(), m.base_score, m.n_trees(), true),
        }
    }
}

/// Splits `data` (stratified, seeded), fits on the training part and evaluates on the rest.
///
/// Returns the model trained on the training part and its report. To deploy, either use that
/// model or refit on all rows with [`ChurnModel::fit`] once the report is satisfactory.
pub fn train_and_evaluate(
    data: &Dataset,
    config: &ChurnConfig,
) -> Result<(ChurnModel, TrainingReport), ChurnError> {
    if data.rows.is_empty() {
        return Err(ChurnError::EmptyData);
    }
    let split = stratified_split(&data.labels, config.test_fraction, config.seed)?;
    let train = data.subset(&split.train)?;
    let test = data.subset(&split.test)?;
    let model = ChurnModel::fit(&train, config)?;
    let p_train = model.predict_all(&train.rows)?;
    let p_test = model.predict_all(&test.rows)?;
    let (algorithm, intercept, iterations, converged) = model.summary();
    let report = TrainingReport {
        algorithm,
        n_train: train.rows.len(),
        n_test: test.rows.len(),
        positives_train: train.labels.iter().filter(|&&l| l).count(),
        positives_test: test.labels.iter().filter(|&&l| l).count(),
        auc_test: roc_auc(&p_test, &test.labels)?,
        log_loss_test: log_loss(&p_test, &test.labels)?,
        auc_train: roc_auc(&p_train, &train.labels)?,
        log_loss_train: log_loss(&p_train, &train.labels)?,
        intercept,
        feature_weights: model.feature_weights(),
        iterations,
        converged,
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic customers from a known logistic model:
    /// logit = −1 + 1.5·z(tenure_short) − 1.0·z(spend) + 1.2·[plan = monthly] + noise-free draw.
    fn synthetic(n: usize, seed: u64) -> Dataset {
        let mut rng = SplitMix64::new(seed);
        let columns = vec![
            Column::numeric("short_tenure"),
            Column::numeric("spend"),
            Column::categorical("plan"),
            Column::numeric("noise"),
        ];
        let mut rows = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let a = rng.next_normal();
            let b = 50.0 + 20.0 * rng.next_normal();
            let plan = if rng.next_f64() < 0.5 {
                "monthly"
            } else {
                "annual"
            };
            let noise = rng.next_normal();
            let logit = -1.0 + 1.5 * a - 1.0 * (b - 50.0) / 20.0
                + if plan == "monthly" { 1.2 } else { 0.0 };
            let p = 1.0 / (1.0 + (-logit).exp());
            labels.push(rng.next_f64() < p);
            let spend = if rng.next_f64() < 0.05 {
                FeatureValue::Missing
            } else {
                b.into()
            };
            rows.push(vec![a.into(), spend, plan.into(), noise.into()]);
        }
        Dataset::new(columns, rows, labels).unwrap()
    }

    #[test]
    fn recovers_signs_and_ranks_well_on_known_model() {
        let data = synthetic(3000, 11);
        let (model, report) = train_and_evaluate(&data, &ChurnConfig::default()).unwrap();
        assert!(report.converged);
        assert_eq!(report.n_train + report.n_test, 3000);
        assert!(report.auc_test > 0.75, "auc {}", report.auc_test);
        let w = |name: &str| {
            report
                .feature_weights
                .iter()
                .find(|f| f.feature == name)
                .unwrap()
                .weight
        };
        assert!(w("short_tenure") > 1.0);
        assert!(w("spend") < -0.6);
        assert!(w("plan=monthly") - w("plan=annual") > 0.8);
        assert!(w("noise").abs() < 0.2);
        // Largest first.
        assert_eq!(report.feature_weights[0].feature, "short_tenure");
        // Unseen category scores without error.
        let p = model
            .predict_proba(&[0.0.into(), 50.0.into(), "weekly".into(), 0.0.into()])
            .unwrap();
        assert!(p > 0.0 && p < 1.0);
    }

    #[test]
    fn boosted_trees_rank_well_on_known_model() {
        let data = synthetic(1500, 12);
        let config = ChurnConfig {
            algorithm: ChurnAlgorithm::GradientBoosting(GbtConfig {
                n_trees: 60,
                learning_rate: 0.1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (model, report) = train_and_evaluate(&data, &config).unwrap();
        assert_eq!(report.algorithm, "gradient_boosting");
        assert!(report.auc_test > 0.72, "auc {}", report.auc_test);
        let share: f64 = report.feature_weights.iter().map(|f| f.weight).sum();
        assert!((share - 1.0).abs() < 1e-9);
        assert_eq!(report.feature_weights[0].feature, "short_tenure");
        let json = serde_json::to_string(&model).unwrap();
        let back: ChurnModel = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.predict_all(&data.rows[..5]).unwrap(),
            model.predict_all(&data.rows[..5]).unwrap()
        );
    }

    #[test]
    fn model_round_trips_through_serde() {
        let data = synthetic(300, 3);
        let model = ChurnModel::fit(&data, &ChurnConfig::default()).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: ChurnModel = serde_json::from_str(&json).unwrap();
        let row = &data.rows[0];
        assert!(
            (model.predict_proba(row).unwrap() - back.predict_proba(row).unwrap()).abs() < 1e-12
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Dataset::new(vec![Column::numeric("a")], vec![vec![]], vec![true]).is_err());
        assert!(Dataset::new(vec![Column::numeric("a")], vec![], vec![true]).is_err());
        let empty = Dataset::new(vec![Column::numeric("a")], vec![], vec![]).unwrap();
        assert_eq!(
            ChurnModel::fit(&empty, &ChurnConfig::default()),
            Err(ChurnError::EmptyData)
        );
        let one = Dataset::new(
            vec![Column::numeric("a")],
            vec![vec![1.0.into()], vec![2.0.into()]],
            vec![true, true],
        )
        .unwrap();
        assert_eq!(
            train_and_evaluate(&one, &ChurnConfig::default()).map(|_| ()),
            Err(ChurnError::SingleClass)
        );
    }
}
