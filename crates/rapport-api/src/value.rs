//! Value models (CLV, churn, health) and survey reports: fits, jobs, scores, alerts.
//!
//! Units, unless a field says otherwise: times are RFC 3339 in UTC with milliseconds (see
//! [`crate::time`]); dates of periods and cohorts are UTC (`YYYY-MM-DD`, `YYYY-MM`);
//! probabilities and shares are fractions in `0..1`; money is in the unit of the purchase
//! events' revenue property. A number the model could not compute (not finite) is `null`.

use crate::List;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/models/{model}/fit`: a fit takes no options, so the only body
/// accepted is `{}`; any field is refused with `400 invalid_json` naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FitRequest {}

/// A value model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelName {
    /// Customer lifetime value and P(alive): BG/NBD or Pareto/NBD with Gamma-Gamma.
    Clv,
    /// Churn risk: a supervised model of "no activity in the next N days".
    Churn,
    /// Health scores and their alerts.
    Health,
}

impl ModelName {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Clv => "clv",
            ModelName::Churn => "churn",
            ModelName::Health => "health",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// A fit job: `POST /api/v1/models/{model}/fit` answers one (`202`), `GET /api/v1/jobs/{id}`
/// follows it. Jobs live in the server's memory: a restart forgets them, not their results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// `job_` and 32 hex digits.
    pub id: String,
    pub model: ModelName,
    pub state: JobState,
    /// What the job is doing (`queued`, `reading events`, `fitting`, `scoring`, `writing
    /// scores`, …); `done` once succeeded, `failed` once failed.
    pub phase: String,
    /// Steps of the current phase done, out of `total` (0 when the phase is not counted).
    pub done: u64,
    pub total: u64,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339; absent while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The fit summary, once succeeded (what `GET /api/v1/models/{model}` then answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ModelSummary>,
    /// What a succeeded fit could not stand behind, in plain words (the summary's
    /// `warnings`); empty otherwise.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Why the job failed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/jobs`: recent jobs, newest first.
pub type JobList = List<Job>;

/// The latest fit of a model (`GET /api/v1/models/{model}`), one shape per model, told
/// apart by `model`.
// One summary per answer, read once: boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelSummary {
    Clv(ClvSummary),
    Churn(ChurnSummary),
    Health(HealthSummary),
}

impl ModelSummary {
    pub fn model(&self) -> ModelName {
        match self {
            ModelSummary::Clv(s) => s.model,
            ModelSummary::Churn(s) => s.model,
            ModelSummary::Health(s) => s.model,
        }
    }

    /// What the fit could not stand behind, in plain words.
    pub fn warnings(&self) -> &[String] {
        match self {
            ModelSummary::Clv(s) => &s.warnings,
            ModelSummary::Churn(s) => &s.warnings,
            ModelSummary::Health(s) => &s.warnings,
        }
    }
}

impl<'de> Deserialize<'de> for ModelSummary {
    /// By `model`, so that a summary never reads as another model's.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ModelSummary, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let model = v
            .get("model")
            .cloned()
            .ok_or_else(|| D::Error::missing_field("model"))?;
        match ModelName::deserialize(model).map_err(D::Error::custom)? {
            ModelName::Clv => ClvSummary::deserialize(v).map(ModelSummary::Clv),
            ModelName::Churn => ChurnSummary::deserialize(v).map(ModelSummary::Churn),
            ModelName::Health => HealthSummary::deserialize(v).map(ModelSummary::Health),
        }
        .map_err(D::Error::custom)
    }
}

/// Parameters of the purchase-count model, fitted with time in weeks: `r`, `alpha` always;
/// `a`, `b` for BG/NBD; `s`, `beta` for Pareto/NBD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PurchaseParams {
    #[schema(required = true)]
    pub r: Option<f64>,
    #[schema(required = true)]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

/// Gamma-Gamma spend-model parameters `p`, `q`, `v` (or their standard errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpendParams {
    #[schema(required = true)]
    pub p: Option<f64>,
    #[schema(required = true)]
    pub q: Option<f64>,
    #[schema(required = true)]
    pub v: Option<f64>,
}

/// The out-of-sample check of a CLV fit: refitted without the last `days`, then predicted
/// against what those days brought; or why it could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Holdout {
    Checked(HoldoutCheck),
    Failed(HoldoutFailure),
}

impl Holdout {
    pub fn days(&self) -> u32 {
        match self {
            Holdout::Checked(h) => h.days,
            Holdout::Failed(h) => h.days,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldoutCheck {
    /// RFC 3339: the end of the calibration window, `days` before the fit.
    pub calibration_end: String,
    /// Days held out.
    pub days: u32,
    /// Customers of the calibration window.
    pub customers: u64,
    /// Purchases in the held-out days, predicted and actual, summed over customers.
    #[schema(required = true)]
    pub predicted_purchases: Option<f64>,
    #[schema(required = true)]
    pub actual_purchases: Option<f64>,
    /// Mean absolute and root-mean-square error per customer, in purchases.
    #[schema(required = true)]
    pub mae: Option<f64>,
    #[schema(required = true)]
    pub rmse: Option<f64>,
    /// Mean held-out purchases by calibration frequency (repeat purchases).
    pub by_frequency: Vec<HoldoutBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldoutBucket {
    pub frequency: u32,
    pub customers: u64,
    #[schema(required = true)]
    pub actual_mean: Option<f64>,
    #[schema(required = true)]
    pub predicted_mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HoldoutFailure {
    pub days: u32,
    pub error: String,
}

/// Customers whose scores could not all be computed (they keep P(alive)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreFailures {
    pub count: u64,
    /// One failing customer's summary (time in weeks) and the error; absent when none
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<ScoreFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreFailure {
    /// Repeat purchases.
    pub frequency: u32,
    /// Weeks from first to last purchase.
    pub recency: f64,
    /// Weeks from first purchase to the fit.
    pub age: f64,
    /// Mean spend of repeat purchases.
    pub monetary: f64,
    pub error: String,
}

/// A CLV fit: the purchase model, the spend model, their checks and what was scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClvSummary {
    /// `bg_nbd` or `pareto_nbd`.
    pub purchase_model: String,
    /// `gamma_gamma`, or `null` when no spend model passed its checks (no `clv` written).
    #[schema(required = true)]
    pub spend_model: Option<String>,
    pub params: PurchaseParams,
    /// Standard errors of the natural logarithms of `params`.
    #[serde(default)]
    pub standard_errors: PurchaseParams,
    /// Standard errors of the logarithms of `spend_params`; `null` without a spend model.
    #[serde(default)]
    #[schema(required = true)]
    pub spend_standard_errors: Option<SpendParams>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[schema(required = true)]
    pub log_likelihood: Option<f64>,
    pub iterations: u64,
    /// The penalty the fit needed to converge (0: plain maximum likelihood).
    pub penalty: f64,
    /// `null` without a spend model.
    #[schema(required = true)]
    pub spend_params: Option<SpendParams>,
    #[schema(required = true)]
    pub spend_log_likelihood: Option<f64>,
    /// Why there is no spend model; `null` when there is one.
    #[schema(required = true)]
    pub spend_error: Option<String>,
    /// True when the spend fit reached only a loose optimum.
    pub spend_fit_relaxed: bool,
    /// The time unit of the fit: `weeks`.
    pub time_unit: String,
    /// Buyers fitted on, and those of them who bought more than once.
    pub customers: u64,
    pub repeat_customers: u64,
    pub transactions: u64,
    pub profiles_scored: u64,
    pub events_read: u64,
    /// Events read that belong to no live profile.
    pub unattributed_events: u64,
    /// `null` when the check is off (`models.clv.holdout_days = 0`).
    #[schema(required = true)]
    pub holdout: Option<Holdout>,
    #[serde(default)]
    pub score_failures: ScoreFailures,
    /// The horizon of `clv`, in months.
    pub lifetime_months: u32,
    /// Fraction per month, e.g. 0.01.
    pub monthly_discount_rate: f64,
    /// `clv`.
    pub model: ModelName,
    /// RFC 3339: the time the fit is as of.
    pub fitted_at: String,
    /// How long the fit took, in milliseconds.
    pub duration_ms: u64,
}

/// What the churn label means: no activity for `inactivity_days`, or a cancel event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChurnLabel {
    /// Days.
    pub inactivity_days: u32,
    pub cancel_events: Vec<String>,
}

/// One input of the churn model and its weight: for logistic regression the coefficient of
/// the standardised feature (positive raises churn risk); for gradient boosting its share
/// of the split gain (`0..1`, summing to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureWeight {
    pub feature: String,
    #[schema(required = true)]
    pub weight: Option<f64>,
}

/// How training went and how the model does on held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChurnTraining {
    /// `logistic` or `gradient_boosting`.
    pub algorithm: String,
    pub n_train: u64,
    pub n_test: u64,
    /// Churned customers among the training and the held-out rows.
    pub positives_train: u64,
    pub positives_test: u64,
    /// ROC AUC on the held-out rows, `0..1`.
    #[schema(required = true)]
    pub auc_test: Option<f64>,
    #[schema(required = true)]
    pub log_loss_test: Option<f64>,
    #[schema(required = true)]
    pub auc_train: Option<f64>,
    #[schema(required = true)]
    pub log_loss_train: Option<f64>,
    /// Logistic intercept, or the boosted model's base log-odds.
    #[schema(required = true)]
    pub intercept: Option<f64>,
    /// Largest magnitude first.
    pub feature_weights: Vec<FeatureWeight>,
    /// Newton iterations (logistic) or trees (boosting).
    pub iterations: u64,
    pub converged: bool,
}

/// A churn model's training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChurnSummary {
    /// `logistic` or `gradient_boosting`.
    pub algorithm: String,
    /// Held-out ROC AUC, `0..1`.
    #[schema(required = true)]
    pub auc: Option<f64>,
    pub label: ChurnLabel,
    /// Traits used as categorical features (their current values).
    pub trait_features: Vec<String>,
    /// RFC 3339: the cut-off the training rows are as of (`inactivity_days` before the fit).
    pub training_as_of: String,
    /// Customers active at the cut-off, and those of them who churned since.
    pub customers: u64,
    pub churned_in_training: u64,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub report: ChurnTraining,
    pub profiles_scored: u64,
    /// Profiles churned as of the fit (their `churn_risk` is 1).
    pub currently_churned: u64,
    pub events_read: u64,
    pub unattributed_events: u64,
    /// `churn`.
    pub model: ModelName,
    /// RFC 3339.
    pub fitted_at: String,
    /// Milliseconds.
    pub duration_ms: u64,
}

/// A profile among the lowest health scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LowScore {
    pub profile: String,
    /// `0..100`.
    #[schema(required = true)]
    pub score: Option<f64>,
    pub band: String,
}

/// A health run: how many profiles could be scored, the bands, the lowest scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthSummary {
    #[serde(default)]
    pub profiles_read: u64,
    pub profiles_scored: u64,
    /// Profiles with too few inputs known to be scored (`models.health.min_inputs`).
    pub profiles_without_signals: u64,
    /// Profiles that have each input: `activity_trend`, `support_tickets`, `nps`,
    /// `p_alive`, `churn_risk`, `days_to_renewal`.
    #[serde(default)]
    pub inputs_known: Counts,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Mean score of the profiles scored, `0..100`.
    #[schema(required = true)]
    pub mean_score: Option<f64>,
    /// Profiles per band, by band name.
    pub bands: Counts,
    pub alerts_raised: u64,
    /// The lowest scores (at most 20), lowest first.
    pub lowest: Vec<LowScore>,
    pub events_read: u64,
    pub unattributed_events: u64,
    /// `health`.
    pub model: ModelName,
    /// RFC 3339.
    pub fitted_at: String,
    /// Milliseconds.
    pub duration_ms: u64,
}

/// `GET /api/v1/reports/health`: the latest health run with the most recent alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    #[serde(flatten)]
    pub summary: HealthSummary,
    /// At most 20, newest first.
    pub recent_alerts: Vec<Alert>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The score fell across a band threshold into a worse band.
    BandDropped,
    /// The renewal is near and the score low (raised once per renewal date).
    RenewalAtRisk,
}

/// The facts of an alert, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AlertDetails {
    BandDropped {
        /// Band names.
        from: String,
        to: String,
        /// The lowest score of the band left, `0..100`.
        threshold: f64,
    },
    RenewalAtRisk {
        /// Days (negative once passed).
        days_to_renewal: f64,
        /// The renewal minimum score, `0..100`.
        min_score: f64,
    },
}

/// A signal of the health score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthComponent {
    ActivityTrend,
    SupportTickets,
    Nps,
    PAlive,
    ChurnRisk,
    DaysToRenewal,
}

/// How one component of the score moved since the previous run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComponentChange {
    pub component: HealthComponent,
    /// Raw values before and after (`null` when unknown).
    #[schema(required = true)]
    pub previous_raw: Option<f64>,
    #[schema(required = true)]
    pub current_raw: Option<f64>,
    /// Score points before and after (0 when unknown).
    pub previous_points: f64,
    pub current_points: f64,
    /// `current_points − previous_points`; negative pulls the score down.
    pub delta_points: f64,
}

/// A health alert of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// 24 hex digits; pass as `after` to read the alerts that follow.
    pub id: String,
    /// RFC 3339: the health run that raised it.
    pub at: String,
    pub profile: String,
    pub kind: AlertKind,
    /// `0..100`.
    #[schema(required = true)]
    pub score: Option<f64>,
    /// `null` on a profile's first run.
    #[schema(required = true)]
    pub previous_score: Option<f64>,
    pub band: String,
    #[schema(required = true)]
    pub previous_band: Option<String>,
    /// Why, in a sentence: the band change or the renewal, and the largest drops.
    pub reason: String,
    pub details: AlertDetails,
    /// Components that moved, those that pulled the score down the most first.
    pub changes: Vec<ComponentChange>,
}

/// `GET /api/v1/alerts`: alerts oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertPage {
    pub data: Vec<Alert>,
    /// Pass as `after` to read the alerts that follow: the id of the last one listed, or
    /// the `after` given when there is nothing new; `null` when the feed is empty.
    #[schema(required = true)]
    pub next_after: Option<String>,
}

/// Calendar buckets, in UTC; weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeBucket {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// Which metric a survey feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurveyMetric {
    /// Net Promoter Score, answers 0–10.
    Nps,
    /// Customer Effort Score, the mean answer on the configured scale.
    Ces,
    /// Customer satisfaction, the share of satisfied answers.
    Csat,
}

/// A two-sided confidence interval, in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Net Promoter Score of a set of 0–10 answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NpsReport {
    pub responses: u64,
    /// Answers 9–10.
    pub promoters: u64,
    /// Answers 7–8.
    pub passives: u64,
    /// Answers 0–6.
    pub detractors: u64,
    /// `100 × (promoters − detractors) / responses`, in `-100..100`.
    pub nps: f64,
    /// Standard error of `nps`, in NPS points.
    pub std_error: f64,
    /// `nps ± z·std_error`, clipped to `-100..100`.
    pub ci: Interval,
    /// The interval's confidence level, `0..1` (e.g. 0.95).
    pub confidence: f64,
}

/// Customer Effort Score: the mean answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CesReport {
    pub responses: u64,
    pub mean: f64,
    /// Sample standard deviation; 0 with one answer.
    pub std_dev: f64,
    pub std_error: f64,
    /// `mean ± z·std_error`, clipped to the scale; `null` with fewer than two answers.
    #[schema(required = true)]
    pub ci: Option<Interval>,
    /// `0..1`.
    pub confidence: f64,
}

/// Customer satisfaction: the share of satisfied answers, in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CsatReport {
    pub responses: u64,
    /// Answers at or above the satisfied minimum.
    pub satisfied: u64,
    /// `100 × satisfied / responses`, `0..100`.
    pub csat: f64,
    /// Wilson interval, in percent.
    pub ci: Interval,
    /// `0..1`.
    pub confidence: f64,
}

/// One metric's figures, told apart by `metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "metric")]
pub enum MetricReport {
    Nps(NpsReport),
    Ces(CesReport),
    Csat(CsatReport),
}

/// What a survey report read, so that an empty report says why it is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SurveyRead {
    /// The answers' track event (`models.survey_event`).
    pub event: String,
    /// The properties read: `survey`, `score`.
    pub properties: Vec<String>,
    pub events_read: u64,
    /// Answers of any survey.
    pub survey_events: u64,
    pub answers_to_survey: u64,
    /// Answers to the survey within `since`..`until`.
    pub in_range: u64,
}

/// One row of a survey report's series: a period, a trait value, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SurveySeriesRow {
    /// First day of the period (`YYYY-MM-DD`, UTC); absent when the report has no time
    /// buckets (`by=all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The trait's value; `null` for profiles without it; absent without `group_by`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<String>, required = false)]
    pub group: Option<Option<String>>,
    pub report: MetricReport,
}

/// A field that may be absent, `null` or a value: present (even `null`) is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /api/v1/reports/{nps,ces,csat}`: one survey's metric overall and per period
/// and/or trait value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SurveyReport {
    /// The survey read (`survey` property, matched case-insensitively).
    pub survey: String,
    pub metric: SurveyMetric,
    pub read: SurveyRead,
    /// Why the report is empty; `null` when it is not.
    #[schema(required = true)]
    pub note: Option<String>,
    /// The time buckets of `series`; `null` for none.
    #[schema(required = true)]
    pub by: Option<TimeBucket>,
    /// `traits.<name>` the series is split by; `null` for none.
    #[schema(required = true)]
    pub group_by: Option<String>,
    /// Answers counted.
    pub responses: u64,
    /// Answers without a score on the metric's scale, left out.
    pub invalid_answers: u64,
    /// `null` without answers.
    #[schema(required = true)]
    pub overall: Option<MetricReport>,
    /// Oldest period first; empty with neither `by` nor `group_by`.
    pub series: Vec<SurveySeriesRow>,
}

/// Customers of one cohort (month of first purchase), or all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cohort {
    /// `YYYY-MM` (UTC), or `all`.
    pub cohort: String,
    pub customers: u64,
    /// Customers with P(alive) below the threshold.
    pub probably_gone: u64,
    /// `probably_gone / customers`, `0..1`.
    pub share_gone: f64,
    /// Everything these customers ever spent.
    pub revenue: f64,
    pub revenue_gone: f64,
    /// `revenue_gone / revenue`, `0..1`.
    pub revenue_share_gone: f64,
}

/// `GET /api/v1/reports/silent-majority`: customers probably gone, and what they spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SilentMajority {
    /// P(alive) below which a customer counts as probably gone, `0..1`.
    pub threshold: f64,
    pub total: Cohort,
    /// Oldest cohort first.
    pub cohorts: Vec<Cohort>,
    /// RFC 3339.
    pub as_of: String,
    /// The purchase model of the CLV fit used (`bg_nbd`, `pareto_nbd`).
    pub model: String,
    /// RFC 3339: when that fit was made.
    pub fitted_at: String,
}

/// How the edges of a histogram are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistogramScale {
    /// Equal-width bins from the smallest to the largest value.
    Linear,
    /// Log-spaced bins from the smallest to the largest value (every value positive).
    Log,
    /// Equal-width bins on `[0, 1]` (probabilities).
    Unit,
}

/// `counts[i]` values lie in `[edges[i], edges[i + 1])`; the last bin holds its top edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Histogram {
    pub scale: HistogramScale,
    /// One more than `counts`, ascending.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Quantiles by linear interpolation between order statistics (as NumPy and R do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quantiles {
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
}

/// The shape of one score over the profiles that hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreDistribution {
    pub count: u64,
    pub mean: f64,
    pub total: f64,
    pub min: f64,
    pub max: f64,
    pub quantiles: Quantiles,
    pub histogram: Histogram,
}

/// `GET /api/v1/reports/clv-distribution`: CLV and P(alive) over the profiles scored by
/// CLV fits, read from the stored scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClvDistribution {
    /// Profiles holding a P(alive) score.
    pub profiles: u64,
    /// CLV over the profiles holding one; `null` when none does (no spend model).
    #[schema(required = true)]
    pub clv: Option<ScoreDistribution>,
    #[schema(required = true)]
    pub p_alive: Option<ScoreDistribution>,
    /// Bins asked for.
    pub bins: u64,
    /// The purchase model of the latest CLV fit (`bg_nbd`, `pareto_nbd`).
    pub model: String,
    /// `gamma_gamma`, or `null` when the fit had no spend model.
    #[schema(required = true)]
    pub spend_model: Option<String>,
    /// RFC 3339: when that fit was made.
    pub fitted_at: String,
    /// Profiles that fit wrote scores for.
    pub profiles_scored_by_fit: u64,
}

/// What an earned-growth report read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrowthRead {
    pub purchase_event: String,
    pub revenue_property: String,
    pub survey_event: String,
    /// The property of the survey event that says why a customer came: `reason`.
    pub reason_property: String,
    pub events_read: u64,
    pub purchases: u64,
    pub customers_with_reason: u64,
}

/// Buyers by how they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AcquisitionCounts {
    pub earned: u64,
    pub bought: u64,
    pub unknown: u64,
}

/// Earned growth of one period against the one before (Reichheld). Rates are fractions:
/// 1.05 means 105%. The figures are all present, or all absent when there is no rate and
/// `error` says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeriodGrowth {
    /// First day of the period (`YYYY-MM-DD`, UTC).
    pub period: String,
    pub previous_period: String,
    /// False for the period still running.
    pub complete: bool,
    /// Revenue of the previous period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revenue: Option<f64>,
    /// This period's revenue from customers who had revenue in the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_revenue: Option<f64>,
    /// This period's revenue from new customers, by acquisition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_earned_revenue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_bought_revenue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_unknown_revenue: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_customers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_earned_customers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_bought_customers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_unknown_customers: Option<u64>,
    /// Net revenue retention: `retained_revenue / previous_revenue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nrr: Option<f64>,
    /// `new_earned_revenue / previous_revenue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned_new_share: Option<f64>,
    /// Earned growth rate: `nrr + earned_new_share − 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egr: Option<f64>,
    /// Why there is no rate (e.g. no revenue in the previous period); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/reports/earned-growth`: earned growth per period (Reichheld).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EarnedGrowthReport {
    /// `month`, `quarter` or `year`.
    pub period: TimeBucket,
    pub read: GrowthRead,
    /// Why the report is empty or partial; `null` otherwise.
    #[schema(required = true)]
    pub note: Option<String>,
    /// RFC 3339.
    pub as_of: String,
    /// Buyers.
    pub customers: u64,
    pub acquisition: AcquisitionCounts,
    /// From the first purchase's period to the current one, oldest first.
    pub periods: Vec<PeriodGrowth>,
}

/// Counts by name, in the order the server gives them (bands from best to worst, health
/// inputs in the order of the score's components): a JSON object of whole numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<(String, u64)>);

impl Counts {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, n)| *n)
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, n) in &self.0 {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Counts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of counts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Counts, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = a.next_entry::<String, u64>()? {
                    out.push(entry);
                }
                Ok(Counts(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl utoipa::PartialSchema for Counts {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .additional_properties(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some("Counts by name, in the server's order"))
            .into()
    }
}

impl ToSchema for Counts {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Serialises, reads back, and checks that nothing changed on the way.
    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: &T,
    ) -> Value {
        let json = serde_json::to_value(value).unwrap();
        let back: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, value, "{json:#}");
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        json
    }

    fn clv() -> ClvSummary {
        ClvSummary {
            purchase_model: "bg_nbd".into(),
            spend_model: Some("gamma_gamma".into()),
            params: PurchaseParams {
                r: Some(0.24),
                alpha: Some(4.41),
                a: Some(0.79),
                b: Some(2.43),
                s: None,
                beta: None,
            },
            standard_errors: PurchaseParams {
                r: Some(0.11),
                alpha: Some(0.2),
                a: Some(0.3),
                b: Some(0.4),
                s: None,
                beta: None,
            },
            spend_standard_errors: Some(SpendParams {
                p: Some(0.1),
                q: Some(0.2),
                v: None,
            }),
            warnings: vec!["the spend fit reached only a loose optimum".into()],
            log_likelihood: Some(-9582.4),
            iterations: 31,
            penalty: 0.0,
            spend_params: Some(SpendParams {
                p: Some(6.25),
                q: Some(3.74),
                v: Some(15.44),
            }),
            spend_log_likelihood: None,
            spend_error: None,
            spend_fit_relaxed: true,
            time_unit: "weeks".into(),
            customers: 2357,
            repeat_customers: 1011,
            transactions: 6919,
            profiles_scored: 2357,
            events_read: 12_000,
            unattributed_events: 3,
            holdout: Some(Holdout::Checked(HoldoutCheck {
                calibration_end: "2026-09-03T12:00:00.000Z".into(),
                days: 90,
                customers: 2100,
                predicted_purchases: Some(1210.5),
                actual_purchases: Some(1188.0),
                mae: Some(0.41),
                rmse: Some(0.77),
                by_frequency: vec![HoldoutBucket {
                    frequency: 0,
                    customers: 1300,
                    actual_mean: Some(0.2),
                    predicted_mean: None,
                }],
            })),
            score_failures: ScoreFailures {
                count: 1,
                example: Some(ScoreFailure {
                    frequency: 80,
                    recency: 51.9,
                    age: 52.0,
                    monetary: 12.5,
                    error: "2F1 did not converge".into(),
                }),
            },
            lifetime_months: 12,
            monthly_discount_rate: 0.01,
            model: ModelName::Clv,
            fitted_at: "2026-12-02T11:02:14.000Z".into(),
            duration_ms: 1834,
        }
    }

    fn churn() -> ChurnSummary {
        ChurnSummary {
            algorithm: "logistic".into(),
            auc: Some(0.81),
            label: ChurnLabel {
                inactivity_days: 60,
                cancel_events: vec!["Subscription Cancelled".into()],
            },
            trait_features: vec!["plan".into()],
            training_as_of: "2026-10-03T11:02:14.000Z".into(),
            customers: 400,
            churned_in_training: 120,
            warnings: vec![],
            report: ChurnTraining {
                algorithm: "logistic".into(),
                n_train: 320,
                n_test: 80,
                positives_train: 96,
                positives_test: 24,
                auc_test: Some(0.81),
                log_loss_test: Some(0.45),
                auc_train: Some(0.84),
                log_loss_train: None,
                intercept: Some(-1.2),
                feature_weights: vec![FeatureWeight {
                    feature: "days_since_activity".into(),
                    weight: Some(1.7),
                }],
                iterations: 7,
                converged: true,
            },
            profiles_scored: 400,
            currently_churned: 90,
            events_read: 20_000,
            unattributed_events: 0,
            model: ModelName::Churn,
            fitted_at: "2026-12-02T11:02:14.000Z".into(),
            duration_ms: 420,
        }
    }

    fn health() -> HealthSummary {
        HealthSummary {
            profiles_read: 60,
            profiles_scored: 43,
            profiles_without_signals: 17,
            inputs_known: Counts(vec![("activity_trend".into(), 50), ("nps".into(), 12)]),
            warnings: vec!["17 of 60 profiles have fewer than 2 health inputs known".into()],
            mean_score: Some(61.5),
            // Worst band last: the order is kept, not sorted.
            bands: Counts(vec![
                ("healthy".into(), 20),
                ("at_risk".into(), 15),
                ("critical".into(), 8),
            ]),
            alerts_raised: 1,
            lowest: vec![LowScore {
                profile: "p_12".into(),
                score: Some(12.5),
                band: "critical".into(),
            }],
            events_read: 900,
            unattributed_events: 0,
            model: ModelName::Health,
            fitted_at: "2026-12-02T11:02:14.000Z".into(),
            duration_ms: 35,
        }
    }

    fn alert() -> Alert {
        Alert {
            id: "0000019ade2b8c2000000000".into(),
            at: "2026-12-02T11:02:14.000Z".into(),
            profile: "p_12".into(),
            kind: AlertKind::BandDropped,
            score: Some(12.5),
            previous_score: None,
            band: "critical".into(),
            previous_band: Some("healthy".into()),
            reason: "health fell from healthy to critical (below 40)".into(),
            details: AlertDetails::BandDropped {
                from: "healthy".into(),
                to: "critical".into(),
                threshold: 40.0,
            },
            changes: vec![ComponentChange {
                component: HealthComponent::Nps,
                previous_raw: Some(9.0),
                current_raw: None,
                previous_points: 20.0,
                current_points: 0.0,
                delta_points: -20.0,
            }],
        }
    }

    #[test]
    fn model_summaries_and_jobs_round_trip_in_the_shape_of_their_model() {
        for summary in [
            ModelSummary::Clv(clv()),
            ModelSummary::Churn(churn()),
            ModelSummary::Health(health()),
        ] {
            let json = round_trip(&summary);
            assert_eq!(json["model"], summary.model().as_str());
        }
        let json = round_trip(&ModelSummary::Clv(clv()));
        // BG/NBD has no s and beta: absent, not null.
        assert!(json["params"].get("s").is_none(), "{json}");
        assert_eq!(json["spend_log_likelihood"], Value::Null);
        let json = round_trip(&health());
        let bands: Vec<&String> = json["bands"].as_object().unwrap().keys().collect();
        assert_eq!(bands, ["healthy", "at_risk", "critical"]);
        // A summary is read by its `model`, never as another model's.
        let mislabelled = json!({"model": "churn", "purchase_model": "bg_nbd"});
        assert!(serde_json::from_value::<ModelSummary>(mislabelled).is_err());

        let running = Job {
            id: "job_0193b1c2d3e4f5a6b7c8d9e0f1a2b3c4".into(),
            model: ModelName::Clv,
            state: JobState::Running,
            phase: "scoring".into(),
            done: 120,
            total: 2357,
            started_at: "2026-12-02T11:02:14.000Z".into(),
            finished_at: None,
            result: None,
            warnings: vec![],
            error: None,
        };
        let json = round_trip(&running);
        for absent in ["finished_at", "result", "error"] {
            assert!(json.get(absent).is_none(), "{json}");
        }
        let done = Job {
            state: JobState::Succeeded,
            phase: "done".into(),
            finished_at: Some("2026-12-02T11:02:16.000Z".into()),
            result: Some(ModelSummary::Churn(churn())),
            ..running.clone()
        };
        round_trip(&JobList {
            data: vec![done, running],
        });
        let failed = Holdout::Failed(HoldoutFailure {
            days: 90,
            error: "no customer in the calibration window".into(),
        });
        assert_eq!(round_trip(&failed).as_object().unwrap().len(), 2);
    }

    #[test]
    fn reports_and_alerts_round_trip() {
        let nps = MetricReport::Nps(NpsReport {
            responses: 10,
            promoters: 4,
            passives: 2,
            detractors: 4,
            nps: 0.0,
            std_error: 28.3,
            ci: Interval {
                low: -55.4,
                high: 55.4,
            },
            confidence: 0.95,
        });
        let report = SurveyReport {
            survey: "nps".into(),
            metric: SurveyMetric::Nps,
            read: SurveyRead {
                event: "Survey Answered".into(),
                properties: vec!["survey".into(), "score".into()],
                events_read: 500,
                survey_events: 11,
                answers_to_survey: 11,
                in_range: 11,
            },
            note: None,
            by: Some(TimeBucket::Month),
            group_by: Some("traits.plan".into()),
            responses: 10,
            invalid_answers: 1,
            overall: Some(nps.clone()),
            series: vec![
                SurveySeriesRow {
                    period: Some("2026-11-01".into()),
                    group: Some(Some("pro".into())),
                    report: nps.clone(),
                },
                SurveySeriesRow {
                    period: Some("2026-11-01".into()),
                    group: Some(None),
                    report: MetricReport::Ces(CesReport {
                        responses: 1,
                        mean: 3.0,
                        std_dev: 0.0,
                        std_error: 0.0,
                        ci: None,
                        confidence: 0.95,
                    }),
                },
                SurveySeriesRow {
                    period: None,
                    group: None,
                    report: MetricReport::Csat(CsatReport {
                        responses: 5,
                        satisfied: 4,
                        csat: 80.0,
                        ci: Interval {
                            low: 37.6,
                            high: 96.4,
                        },
                        confidence: 0.95,
                    }),
                },
            ],
        };
        let json = round_trip(&report);
        // A trait value, `null` for profiles without it, absent without `group_by`.
        assert_eq!(json["series"][0]["group"], "pro");
        assert_eq!(json["series"][1]["group"], Value::Null);
        assert!(json["series"][1].get("group").is_some());
        assert!(json["series"][2].get("group").is_none());
        assert!(json["series"][2].get("period").is_none());
        assert_eq!(json["overall"]["metric"], "nps");

        let cohort = |name: &str| Cohort {
            cohort: name.into(),
            customers: 60,
            probably_gone: 21,
            share_gone: 0.35,
            revenue: 18_250.5,
            revenue_gone: 4_100.0,
            revenue_share_gone: 0.2246,
        };
        round_trip(&SilentMajority {
            threshold: 0.5,
            total: cohort("all"),
            cohorts: vec![cohort("2026-01"), cohort("2026-02")],
            as_of: "2026-12-02T11:02:14.000Z".into(),
            model: "bg_nbd".into(),
            fitted_at: "2026-12-01T00:00:00.000Z".into(),
        });

        let dist = ScoreDistribution {
            count: 3,
            mean: 2.0,
            total: 6.0,
            min: 1.0,
            max: 3.0,
            quantiles: Quantiles {
                p10: 1.2,
                p25: 1.5,
                p50: 2.0,
                p75: 2.5,
                p90: 2.8,
                p99: 2.98,
            },
            histogram: Histogram {
                scale: HistogramScale::Log,
                edges: vec![1.0, 1.7, 3.0],
                counts: vec![1, 2],
            },
        };
        let json = round_trip(&ClvDistribution {
            profiles: 3,
            clv: Some(dist.clone()),
            p_alive: Some(dist),
            bins: 2,
            model: "bg_nbd".into(),
            spend_model: None,
            fitted_at: "2026-12-01T00:00:00.000Z".into(),
            profiles_scored_by_fit: 3,
        });
        assert_eq!(json["clv"]["histogram"]["scale"], "log");

        let growth = EarnedGrowthReport {
            period: TimeBucket::Quarter,
            read: GrowthRead {
                purchase_event: "Order Completed".into(),
                revenue_property: "revenue".into(),
                survey_event: "Survey Answered".into(),
                reason_property: "reason".into(),
                events_read: 900,
                purchases: 300,
                customers_with_reason: 0,
            },
            note: Some("no customer gave a `reason`".into()),
            as_of: "2026-12-02T11:02:14.000Z".into(),
            customers: 60,
            acquisition: AcquisitionCounts {
                earned: 0,
                bought: 0,
                unknown: 60,
            },
            periods: vec![
                PeriodGrowth {
                    period: "2026-07-01".into(),
                    previous_period: "2026-04-01".into(),
                    complete: true,
                    previous_revenue: Some(150.0),
                    retained_revenue: Some(80.0),
                    new_earned_revenue: Some(30.0),
                    new_bought_revenue: Some(40.0),
                    new_unknown_revenue: Some(5.0),
                    existing_customers: Some(2),
                    new_earned_customers: Some(1),
                    new_bought_customers: Some(1),
                    new_unknown_customers: Some(1),
                    nrr: Some(0.533),
                    earned_new_share: Some(0.2),
                    egr: Some(-0.267),
                    error: None,
                },
                PeriodGrowth {
                    period: "2026-10-01".into(),
                    previous_period: "2026-07-01".into(),
                    complete: false,
                    previous_revenue: None,
                    retained_revenue: None,
                    new_earned_revenue: None,
                    new_bought_revenue: None,
                    new_unknown_revenue: None,
                    existing_customers: None,
                    new_earned_customers: None,
                    new_bought_customers: None,
                    new_unknown_customers: None,
                    nrr: None,
                    earned_new_share: None,
                    egr: None,
                    error: Some("no revenue in the previous period".into()),
                },
            ],
        };
        let json = round_trip(&growth);
        assert_eq!(json["periods"][1].as_object().unwrap().len(), 4, "{json:#}");

        let renewal = Alert {
            kind: AlertKind::RenewalAtRisk,
            details: AlertDetails::RenewalAtRisk {
                days_to_renewal: 20.0,
                min_score: 50.0,
            },
            ..alert()
        };
        let json = round_trip(&AlertPage {
            data: vec![alert(), renewal],
            next_after: Some("0000019ade2b8c2000000001".into()),
        });
        assert_eq!(json["data"][1]["details"]["kind"], "renewal_at_risk");
        let json = round_trip(&HealthReport {
            summary: health(),
            recent_alerts: vec![alert()],
        });
        assert_eq!(json["model"], "health");
        assert_eq!(json["recent_alerts"][0]["kind"], "band_dropped");
    }
}
