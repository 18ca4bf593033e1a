//! Customer lifetime value on live data: purchases → RFM summaries → BG/NBD (or Pareto/NBD)
//! and Gamma-Gamma fits → `clv`, `p_alive` and `expected_purchases_90d` on every buyer, and
//! the "silent majority" report (customers probably gone, and the revenue they brought).
//!
//! Time is measured in weeks with purchases grouped by UTC day, the convention of the
//! published fits (docs/value/clv.md); the outputs are converted back to days and months.

use super::collect::{Collected, Wanted, collect};
use super::{
    FitSummary, ModelKind, ModelScores, ModelsConfig, Progress, PurchaseModelKind, ScoreWriter,
    fin, num, rfc3339,
};
use crate::EngineError;
use rapport_store::Store;
use rapport_value::clv::{
    BgNbd, ClvError, ClvOptions, FitOptions, GammaGamma, ParetoNbd, Period, PurchaseModel,
    RfmSummary, ScoreOptions, SummaryOptions, TimeUnit, Transaction, calibration_holdout,
    evaluate_holdout, score_all, summarize,
};
use rapport_value::distribution::{Distribution, Scale, distribution};
use rapport_value::survey::{TimeBucket, bucket_start};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const OPTS: SummaryOptions = SummaryOptions {
    period: Period::Day,
    unit: TimeUnit::Weeks,
};
const DAYS_PER_MONTH: f64 = 30.4375;
/// `expected_purchases_90d`: 90 days in the fitted unit (weeks).
const HORIZON_WEEKS: f64 = 90.0 / 7.0;
/// Penalty a fit is retried with when plain maximum likelihood does not converge (see
/// `FitOptions::penalty`): it keeps r and α from running off together on data whose
/// purchase rates hardly vary.
const RETRY_PENALTY: f64 = 0.001;
/// Gamma-Gamma on spends that hardly vary between customers sits on a flat ridge (p and q
/// grow together while the expected spend stays put): accept a looser stationary point
/// rather than no spend model, and say so in the summary.
const RELAXED_SPEND_FIT: FitOptions = FitOptions {
    max_iterations: 2_000,
    gradient_tolerance: 1e-8,
    accept_gradient: 1e-3,
    penalty: 0.0,
};

fn wanted(config: &ModelsConfig) -> Wanted {
    Wanted {
        purchase_event: config.purchase_event.clone(),
        revenue_property: config.revenue_property.clone(),
        purchases: true,
        ..Wanted::default()
    }
}

/// Every purchase at or before `now` (Unix seconds), with customers numbered in profile-id
/// order. Purchases dated in the future are left out: the window ends now.
fn transactions(collected: &Collected, now: i64) -> (Vec<&str>, Vec<Transaction<u32>>) {
    let mut ids = Vec::new();
    let mut txs = Vec::new();
    for (id, data) in &collected.profiles {
        let before = txs.len();
        txs.extend(
            data.purchases
                .iter()
                .filter(|(t, _)| *t <= now)
                .map(|&(timestamp, amount)| Transaction {
                    customer: ids.len() as u32,
                    timestamp,
                    amount,
                }),
        );
        if txs.len() > before {
            ids.push(id.as_str());
        }
    }
    (ids, txs)
}

/// A fitted purchase-count model of either kind.
enum Fitted {
    Bg(BgNbd),
    Pareto(ParetoNbd),
}

impl Fitted {
    fn model(&self) -> &dyn PurchaseModel {
        match self {
            Fitted::Bg(m) => m,
            Fitted::Pareto(m) => m,
        }
    }

    fn params(&self) -> PurchaseParams {
        PurchaseParams::from_named(&self.named())
    }

    fn named(&self) -> Vec<(&'static str, f64)> {
        match self {
            Fitted::Bg(m) => vec![("r", m.r), ("alpha", m.alpha), ("a", m.a), ("b", m.b)],
            Fitted::Pareto(m) => vec![("r", m.r), ("alpha", m.alpha), ("s", m.s), ("beta", m.beta)],
        }
    }

    fn standard_errors(&self, data: &[RfmSummary]) -> Option<Vec<f64>> {
        match self {
            Fitted::Bg(m) => m.standard_errors(data),
            Fitted::Pareto(m) => m.standard_errors(data),
        }
        .ok()
        .flatten()
    }

    /// The model a stored fit summary describes.
    fn from_summary(summary: &ClvFit) -> Option<Fitted> {
        let p = &summary.params;
        match summary.purchase_model.as_str() {
            "bg_nbd" => BgNbd::new(p.r?, p.alpha?, p.a?, p.b?).ok().map(Fitted::Bg),
            "pareto_nbd" => ParetoNbd::new(p.r?, p.alpha?, p.s?, p.beta?)
                .ok()
                .map(Fitted::Pareto),
            _ => None,
        }
    }
}

struct PurchaseFit {
    model: Fitted,
    log_likelihood: f64,
    iterations: u64,
    penalty: f64,
}

fn fit_purchases(kind: PurchaseModelKind, data: &[RfmSummary]) -> Result<PurchaseFit, ClvError> {
    let attempt = |penalty: f64| -> Result<PurchaseFit, ClvError> {
        let opts = FitOptions {
            penalty,
            ..FitOptions::default()
        };
        Ok(match kind {
            PurchaseModelKind::BgNbd => {
                let f = BgNbd::fit(data, &opts)?;
                PurchaseFit {
                    model: Fitted::Bg(f.params),
                    log_likelihood: f.log_likelihood,
                    iterations: f.iterations,
                    penalty,
                }
            }
            PurchaseModelKind::ParetoNbd => {
                let f = ParetoNbd::fit(data, &opts)?;
                PurchaseFit {
                    model: Fitted::Pareto(f.params),
                    log_likelihood: f.log_likelihood,
                    iterations: f.iterations,
                    penalty,
                }
            }
        })
    };
    match attempt(0.0) {
        Err(ClvError::NonConvergence { .. }) => attempt(RETRY_PENALTY),
        other => other,
    }
}

fn cannot_fit(e: ClvError) -> EngineError {
    EngineError::InsufficientData(format!(
        "the CLV model cannot be fitted: {e}; scores not written"
    ))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn model_label(kind: PurchaseModelKind) -> &'static str {
    match kind {
        PurchaseModelKind::BgNbd => "BG/NBD",
        PurchaseModelKind::ParetoNbd => "Pareto/NBD",
    }
}

/// Parameters outside [1/max, max], as `name = value` phrases.
fn implausible(named: &[(&str, f64)], max: f64) -> Vec<String> {
    named
        .iter()
        .filter(|(_, v)| !(v.is_finite() && *v <= max && *v >= 1.0 / max))
        .map(|(k, v)| format!("{k} = {v:.4e}"))
        .collect()
}

/// Standard errors of the log-parameters by name; warnings for those above the limit.
fn uncertainty(
    named: &[(&'static str, f64)],
    se: &[f64],
    max: f64,
    what: &str,
) -> (Vec<(&'static str, f64)>, Option<String>) {
    let by_name: Vec<(&'static str, f64)> =
        named.iter().zip(se).map(|((k, _), s)| (*k, *s)).collect();
    let loose: Vec<String> = named
        .iter()
        .zip(se)
        .filter(|(_, s)| **s > max)
        .map(|((k, _), s)| format!("{k} (standard error of ln {k} {s:.2})"))
        .collect();
    let warning = (!loose.is_empty()).then(|| {
        format!(
            "the data determine {what} parameters {} only loosely (above {max}): treat its scores as rough",
            loose.join(", ")
        )
    });
    (by_name, warning)
}

/// A spend model that passed its checks, or why there is none.
fn check_spend(
    data: &[RfmSummary],
    spend: Result<rapport_value::clv::GammaGammaFit, ClvError>,
    relaxed: bool,
    settings: &super::ClvSettings,
    warnings: &mut Vec<String>,
) -> (
    Option<rapport_value::clv::GammaGammaFit>,
    Option<SpendParams>,
    String,
) {
    let spends: Vec<f64> = data
        .iter()
        .filter(|s| s.frequency > 0 && s.monetary > 0.0)
        .map(|s| s.monetary)
        .collect();
    let rejected = |reason: String, warnings: &mut Vec<String>| {
        warnings.push(format!("{reason}: no spend model, so no `clv` written"));
        (None, None, reason)
    };
    if let (Some(min), Some(max)) = (
        spends.iter().copied().reduce(f64::min),
        spends.iter().copied().reduce(f64::max),
    ) && spends.len() > 1
        && max - min <= 1e-9 * max.abs().max(1.0)
    {
        return rejected(
            format!(
                "every repeat buyer spends the same on average ({min:.2}): Gamma-Gamma cannot tell their spends apart"
            ),
            warnings,
        );
    }
    let fit = match spend {
        Ok(f) => f,
        Err(e) => return rejected(format!("the spend model cannot be fitted: {e}"), warnings),
    };
    let p = &fit.params;
    let named = [("p", p.p), ("q", p.q), ("v", p.v)];
    let off = implausible(&named, settings.max_parameter);
    if !off.is_empty() {
        return rejected(
            format!(
                "the spend fit ran off to implausible parameters ({}): spends hardly vary between customers",
                off.join(", ")
            ),
            warnings,
        );
    }
    if p.q <= 1.0 {
        return rejected(
            format!(
                "the spend fit has q = {:.3} ≤ 1, so its mean spend is infinite",
                p.q
            ),
            warnings,
        );
    }
    let Some(se) = p.standard_errors(data).ok().flatten() else {
        return rejected(
            "the spend likelihood is flat in some direction: the data do not determine the spend parameters".into(),
            warnings,
        );
    };
    if relaxed {
        warnings.push(
            "the spend fit reached only a loose optimum (spends hardly vary between customers)"
                .into(),
        );
    }
    let (se, warning) = uncertainty(&named, &se, settings.max_log_standard_error, "spend");
    warnings.extend(warning);
    (Some(fit), Some(SpendParams::from_named(&se)), String::new())
}

/// Fits on the last `days` held out and compares predicted with actual purchases.
fn holdout_check(
    kind: PurchaseModelKind,
    txs: &[Transaction<u32>],
    now: i64,
    days: u32,
) -> Holdout {
    let calibration_end = now - i64::from(days) * 86_400;
    let run = || -> Result<HoldoutCheck, ClvError> {
        let rows = calibration_holdout(txs, calibration_end, now, OPTS)?;
        let calibration: Vec<RfmSummary> = rows.iter().map(|r| r.calibration).collect();
        let fit = fit_purchases(kind, &calibration)?;
        let r = evaluate_holdout(fit.model.model(), &rows, 7)?;
        Ok(HoldoutCheck {
            calibration_end: rfc3339(calibration_end * 1000),
            days,
            customers: r.customers,
            predicted_purchases: fin(r.predicted_total),
            actual_purchases: fin(r.actual_total),
            mae: fin(r.mae),
            rmse: fin(r.rmse),
            by_frequency: r
                .buckets
                .iter()
                .map(|b| HoldoutBucket {
                    frequency: b.frequency,
                    customers: b.customers,
                    actual_mean: fin(b.actual_mean),
                    predicted_mean: fin(b.predicted_mean),
                })
                .collect(),
        })
    };
    match run() {
        Ok(check) => Holdout::Checked(check),
        Err(e) => Holdout::Failed(HoldoutFailure {
            days,
            error: e.to_string(),
        }),
    }
}

/// One customer's outputs; what could not be computed is left out.
struct CustomerScore {
    p_alive: f64,
    expected_purchases: Option<f64>,
    clv: Option<f64>,
}

/// Scores every customer, in parallel when all succeed. A customer whose expectation cannot
/// be evaluated (a special function out of its range for extreme histories) keeps what can
/// be: P(alive) always, the rest when it converges. Failures are counted with an example,
/// so one odd history never costs the other customers their scores.
fn score_each(
    model: &dyn PurchaseModel,
    spend: Option<&GammaGamma>,
    data: &[RfmSummary],
    options: &ScoreOptions,
) -> (Vec<CustomerScore>, ScoreFailures) {
    let full = |s: &rapport_value::clv::Score| CustomerScore {
        p_alive: s.p_alive,
        expected_purchases: Some(s.expected_purchases),
        clv: s.clv,
    };
    if let Ok(all) = score_all(model, spend, data, options) {
        return (all.iter().map(full).collect(), ScoreFailures::default());
    }
    let mut failures = 0usize;
    let mut example = None;
    let scores = data
        .iter()
        .map(
            |s| match score_all(model, spend, std::slice::from_ref(s), options) {
                Ok(one) => full(&one[0]),
                Err(e) => {
                    failures += 1;
                    if example.is_none() {
                        example = Some(ScoreFailure {
                            frequency: s.frequency,
                            recency: s.recency,
                            age: s.age,
                            monetary: s.monetary,
                            error: e.to_string(),
                        });
                    }
                    CustomerScore {
                        p_alive: model.p_alive(s).unwrap_or(f64::NAN),
                        expected_purchases: model.expected_purchases(s, options.horizon).ok(),
                        clv: None,
                    }
                }
            },
        )
        .collect();
    (
        scores,
        ScoreFailures {
            count: failures,
            example,
        },
    )
}

/// Fits the CLV models on every purchase up to `now_ms`, writes each buyer's scores and
/// returns the fit summary.
pub fn fit_clv(
    store: &dyn Store,
    config: &ModelsConfig,
    now_ms: i64,
    progress: &Progress,
    writer: &ScoreWriter,
) -> Result<ClvFit, EngineError> {
    let collected = collect(store, &wanted(config), progress)?;
    let now = now_ms.div_euclid(1000);
    let (ids, txs) = transactions(&collected, now);
    let settings = &config.clv;
    let kind = config.clv.purchase_model;
    if txs.is_empty() {
        return Err(EngineError::InsufficientData(format!(
            "no `{}` events among the {} events read (purchase value from `{}`): nothing to fit on; scores not written",
            config.purchase_event, collected.events_read, config.revenue_property
        )));
    }
    progress.phase("fitting", 0);
    let customers = summarize(&txs, now, OPTS).map_err(cannot_fit)?;
    let data: Vec<RfmSummary> = customers.iter().map(|c| c.summary).collect();
    let repeat = data.iter().filter(|s| s.frequency > 0).count();
    if data.len() < settings.min_customers || repeat < settings.min_repeat_customers {
        return Err(EngineError::InsufficientData(format!(
            "{}, {}: too few for a reliable {} fit (need ≥ {} customers and ≥ {} repeat buyers: `models.clv.min_customers`, `models.clv.min_repeat_customers`); scores not written",
            plural(data.len(), "customer", "customers"),
            plural(repeat, "repeat buyer", "repeat buyers"),
            model_label(kind),
            settings.min_customers,
            settings.min_repeat_customers,
        )));
    }
    let fit = fit_purchases(kind, &data).map_err(cannot_fit)?;
    let mut warnings = Vec::new();
    let named = fit.model.named();
    let off = implausible(&named, settings.max_parameter);
    if !off.is_empty() {
        return Err(EngineError::InsufficientData(format!(
            "the {} fit ran off to implausible parameters ({}; plausible: 1/{} to {}): purchase rates hardly vary between these {}, so the model cannot tell them apart; scores not written",
            model_label(kind),
            off.join(", "),
            settings.max_parameter,
            settings.max_parameter,
            plural(data.len(), "customer", "customers"),
        )));
    }
    let Some(se) = fit.model.standard_errors(&data) else {
        return Err(EngineError::InsufficientData(format!(
            "the {} likelihood is flat in some direction at its optimum: these {} do not determine its parameters; scores not written",
            model_label(kind),
            plural(data.len(), "customer", "customers"),
        )));
    };
    if fit.penalty > 0.0 {
        warnings.push(format!(
            "plain maximum likelihood did not converge; the {} fit used a small penalty ({}) that keeps its parameters finite",
            model_label(kind),
            fit.penalty
        ));
    }
    let (standard_errors, warning) = uncertainty(
        &named,
        &se,
        settings.max_log_standard_error,
        model_label(kind),
    );
    warnings.extend(warning);
    progress.check()?;
    let (spend, spend_relaxed) = match GammaGamma::fit(&data, &FitOptions::default()) {
        Err(ClvError::NonConvergence { .. }) => (GammaGamma::fit(&data, &RELAXED_SPEND_FIT), true),
        other => (other, false),
    };
    let (spend, spend_standard_errors, spend_rejected) =
        check_spend(&data, spend, spend_relaxed, settings, &mut warnings);
    let holdout = (config.clv.holdout_days > 0)
        .then(|| holdout_check(kind, &txs, now, config.clv.holdout_days));
    if let Some(Holdout::Failed(HoldoutFailure { error, .. })) = &holdout {
        warnings.push(format!(
            "the out-of-sample check on the last {} days could not run ({error}): the fit is unchecked",
            config.clv.holdout_days
        ));
    }
    progress.check()?;

    progress.phase("scoring", data.len() as u64);
    let clv_options = ClvOptions {
        periods: config.clv.lifetime_months,
        period_length: DAYS_PER_MONTH / 7.0,
        discount_rate: config.clv.monthly_discount_rate,
    };
    let options = ScoreOptions {
        horizon: HORIZON_WEEKS,
        clv: Some(clv_options),
    };
    let spend_model = spend.as_ref().map(|f| &f.params);
    let (scores, failures) = score_each(fit.model.model(), spend_model, &data, &options);
    let model_name = match &spend {
        Some(_) => format!("{}+gamma_gamma", kind.as_str()),
        None => kind.as_str().to_owned(),
    };

    progress.phase("writing scores", data.len() as u64);
    let scored_at = rfc3339(now_ms);
    let updates = customers.iter().zip(&scores).map(|(c, s)| {
        let mut m = Map::new();
        // Without a spend model an earlier fit's `clv` would be stale: null removes it.
        m.insert("clv".into(), s.clv.map_or(Value::Null, num));
        m.insert("p_alive".into(), num(s.p_alive));
        if let Some(e) = s.expected_purchases {
            m.insert("expected_purchases_90d".into(), num(e));
        }
        m.insert("scored_at".into(), Value::from(scored_at.clone()));
        m.insert("model".into(), Value::from(model_name.clone()));
        (ids[c.customer as usize].to_owned(), m)
    });
    let scored = writer.merge(store, updates, progress)?;

    let (spend_params, spend_log_likelihood, spend_error) = match &spend {
        Some(f) => (
            Some(SpendParams {
                p: Some(f.params.p),
                q: Some(f.params.q),
                v: Some(f.params.v),
            }),
            fin(f.log_likelihood),
            None,
        ),
        None => (None, None, Some(spend_rejected)),
    };
    Ok(ClvFit {
        purchase_model: kind.as_str().to_owned(),
        spend_model: spend.as_ref().map(|_| "gamma_gamma".to_owned()),
        params: fit.model.params(),
        standard_errors: PurchaseParams::from_named(&standard_errors),
        spend_standard_errors,
        warnings,
        log_likelihood: fin(fit.log_likelihood),
        iterations: fit.iterations,
        penalty: fit.penalty,
        spend_params,
        spend_log_likelihood,
        spend_error,
        spend_fit_relaxed: spend_relaxed,
        time_unit: "weeks".into(),
        customers: data.len(),
        repeat_customers: repeat,
        transactions: txs.len(),
        profiles_scored: scored,
        events_read: collected.events_read,
        unattributed_events: collected.unattributed,
        holdout,
        score_failures: failures,
        lifetime_months: config.clv.lifetime_months,
        monthly_discount_rate: config.clv.monthly_discount_rate,
        model: ModelKind::Clv,
        fitted_at: rfc3339(now_ms),
        duration_ms: 0,
    })
}

/// Parameters of the purchase-count model, time in weeks: `r`, `alpha` always; `a`, `b`
/// for BG/NBD; `s`, `beta` for Pareto/NBD. Also their standard errors, by the same names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PurchaseParams {
    pub r: Option<f64>,
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

impl PurchaseParams {
    fn from_named(named: &[(&str, f64)]) -> PurchaseParams {
        let mut p = PurchaseParams::default();
        for &(k, v) in named {
            let slot = match k {
                "r" => &mut p.r,
                "alpha" => &mut p.alpha,
                "a" => &mut p.a,
                "b" => &mut p.b,
                "s" => &mut p.s,
                "beta" => &mut p.beta,
                _ => continue,
            };
            // Not finite, it serialises as `null`, as the summary always did.
            *slot = Some(v);
        }
        p
    }
}

/// Gamma-Gamma parameters `p`, `q`, `v`, or their standard errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendParams {
    pub p: Option<f64>,
    pub q: Option<f64>,
    pub v: Option<f64>,
}

impl SpendParams {
    fn from_named(named: &[(&str, f64)]) -> SpendParams {
        let get = |name: &str| named.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        SpendParams {
            p: get("p"),
            q: get("q"),
            v: get("v"),
        }
    }
}

/// The out-of-sample check of a fit, or why it could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Holdout {
    Checked(HoldoutCheck),
    Failed(HoldoutFailure),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutCheck {
    pub calibration_end: String,
    pub days: u32,
    pub customers: usize,
    pub predicted_purchases: Option<f64>,
    pub actual_purchases: Option<f64>,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub by_frequency: Vec<HoldoutBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutBucket {
    pub frequency: u32,
    pub customers: usize,
    pub actual_mean: Option<f64>,
    pub predicted_mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutFailure {
    pub days: u32,
    pub error: String,
}

/// Customers whose scores could not all be computed, with one example.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreFailures {
    pub count: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<ScoreFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreFailure {
    pub frequency: u32,
    pub recency: f64,
    pub age: f64,
    pub monetary: f64,
    pub error: String,
}

/// The summary of a CLV fit, as `model.fit` keeps it. Fields added after the first
/// version default, so that older summaries still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClvFit {
    pub purchase_model: String,
    pub spend_model: Option<String>,
    pub params: PurchaseParams,
    #[serde(default)]
    pub standard_errors: PurchaseParams,
    #[serde(default)]
    pub spend_standard_errors: Option<SpendParams>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub log_likelihood: Option<f64>,
    pub iterations: u64,
    pub penalty: f64,
    pub spend_params: Option<SpendParams>,
    pub spend_log_likelihood: Option<f64>,
    pub spend_error: Option<String>,
    pub spend_fit_relaxed: bool,
    pub time_unit: String,
    pub customers: usize,
    pub repeat_customers: usize,
    pub transactions: usize,
    pub profiles_scored: usize,
    pub events_read: u64,
    pub unattributed_events: u64,
    pub holdout: Option<Holdout>,
    #[serde(default)]
    pub score_failures: ScoreFailures,
    pub lifetime_months: u32,
    pub monthly_discount_rate: f64,
    pub model: ModelKind,
    pub fitted_at: String,
    pub duration_ms: u64,
}

/// Customers of one cohort (month of first purchase), or all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortRow {
    /// `YYYY-MM`, or `all`.
    pub cohort: String,
    pub customers: usize,
    /// Customers with P(alive) below the threshold.
    pub probably_gone: usize,
    pub share_gone: f64,
    /// Everything these customers ever spent.
    pub revenue: f64,
    pub revenue_gone: f64,
    pub revenue_share_gone: f64,
}

impl CohortRow {
    fn new(cohort: String) -> CohortRow {
        CohortRow {
            cohort,
            customers: 0,
            probably_gone: 0,
            share_gone: 0.0,
            revenue: 0.0,
            revenue_gone: 0.0,
            revenue_share_gone: 0.0,
        }
    }

    fn add(&mut self, gone: bool, revenue: f64) {
        self.customers += 1;
        self.revenue += revenue;
        if gone {
            self.probably_gone += 1;
            self.revenue_gone += revenue;
        }
    }

    fn finish(&mut self) {
        self.share_gone = self.probably_gone as f64 / self.customers.max(1) as f64;
        self.revenue_share_gone = if self.revenue > 0.0 {
            self.revenue_gone / self.revenue
        } else {
            0.0
        };
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilentMajority {
    pub threshold: f64,
    pub total: CohortRow,
    /// Oldest cohort first.
    pub cohorts: Vec<CohortRow>,
}

/// Aggregates `(first purchase, P(alive), revenue)` per customer into cohorts by month of
/// first purchase: who is probably gone (P(alive) < `threshold`) and what they spent.
pub fn cohort_table(
    customers: impl IntoIterator<Item = (i64, f64, f64)>,
    threshold: f64,
) -> SilentMajority {
    let mut total = CohortRow::new("all".into());
    let mut cohorts = std::collections::BTreeMap::<i64, CohortRow>::new();
    for (first, p_alive, revenue) in customers {
        let start = bucket_start(first, TimeBucket::Month);
        let gone = p_alive < threshold;
        total.add(gone, revenue);
        cohorts
            .entry(start)
            .or_insert_with(|| CohortRow::new(super::utc_date(start, "%Y-%m")))
            .add(gone, revenue);
    }
    total.finish();
    let mut cohorts: Vec<CohortRow> = cohorts.into_values().collect();
    cohorts.iter_mut().for_each(CohortRow::finish);
    SilentMajority {
        threshold,
        total,
        cohorts,
    }
}

/// The silent-majority report as of `now_ms`, with the latest CLV fit's parameters: P(alive)
/// is recomputed for every buyer from their history up to now.
pub fn silent_majority(
    store: &dyn Store,
    config: &ModelsConfig,
    threshold: f64,
    now_ms: i64,
    progress: &Progress,
) -> Result<SilentMajorityReport, EngineError> {
    if !(threshold.is_finite() && threshold > 0.0 && threshold <= 1.0) {
        return Err(EngineError::Invalid {
            field: "threshold",
            message: "`threshold` must be a probability in (0, 1]".into(),
        });
    }
    let Some(FitSummary::Clv(fit)) = ModelScores { store }.latest_fit(ModelKind::Clv)? else {
        return Err(EngineError::NotFound(
            "no CLV fit yet: run `rapport fit clv` first".into(),
        ));
    };
    let model = Fitted::from_summary(&fit).ok_or_else(|| {
        EngineError::Corrupt("the stored CLV fit has no usable parameters".into())
    })?;
    let collected = collect(store, &wanted(config), progress)?;
    let now = now_ms.div_euclid(1000);
    let (ids, txs) = transactions(&collected, now);
    progress.phase("scoring", ids.len() as u64);
    let mut first = vec![i64::MAX; ids.len()];
    let mut revenue = vec![0.0; ids.len()];
    for t in &txs {
        let c = t.customer as usize;
        first[c] = first[c].min(t.timestamp);
        revenue[c] += t.amount;
    }
    let table = if txs.is_empty() {
        cohort_table(std::iter::empty(), threshold)
    } else {
        let customers = summarize(&txs, now, OPTS).map_err(cannot_fit)?;
        let data: Vec<RfmSummary> = customers.iter().map(|c| c.summary).collect();
        let scores = score_all(
            model.model(),
            None,
            &data,
            &ScoreOptions {
                horizon: 0.0,
                clv: None,
            },
        )
        .map_err(cannot_fit)?;
        cohort_table(
            customers.iter().zip(&scores).map(|(c, s)| {
                let i = c.customer as usize;
                (first[i], s.p_alive, revenue[i])
            }),
            threshold,
        )
    };
    Ok(SilentMajorityReport {
        table,
        as_of: rfc3339(now_ms),
        model: fit.purchase_model,
        fitted_at: fit.fitted_at,
    })
}

/// The silent-majority report: the cohort table, as of when, with which CLV fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilentMajorityReport {
    #[serde(flatten)]
    pub table: SilentMajority,
    pub as_of: String,
    /// The purchase model of the CLV fit used.
    pub model: String,
    pub fitted_at: String,
}

/// Bins of a CLV distribution report: the default, and the bounds a caller may ask for.
pub const DISTRIBUTION_BINS: usize = 20;
pub const DISTRIBUTION_BINS_MAX: usize = 200;

/// The shape of the scores the latest CLV fit wrote: CLV and P(alive) over the profiles
/// that hold them. Read from the stored scores (no model is re-run), so its counts match
/// what segments and the profile API see.
pub fn clv_distribution(
    store: &dyn Store,
    config: &ModelsConfig,
    bins: usize,
    progress: &Progress,
) -> Result<ClvDistributionReport, EngineError> {
    if !(1..=DISTRIBUTION_BINS_MAX).contains(&bins) {
        return Err(EngineError::Invalid {
            field: "bins",
            message: format!("`bins` must be a whole number from 1 to {DISTRIBUTION_BINS_MAX}"),
        });
    }
    let Some(FitSummary::Clv(fit)) = ModelScores { store }.latest_fit(ModelKind::Clv)? else {
        return Err(EngineError::NotFound(
            "no CLV fit yet: run `rapport fit clv` first".into(),
        ));
    };
    // The CLV fit scores buyers: the profiles with a purchase are the ones to read.
    let collected = collect(store, &wanted(config), progress)?;
    progress.phase("reading scores", collected.profiles.len() as u64);
    let scores = ModelScores { store };
    let (mut clv, mut p_alive) = (Vec::new(), Vec::new());
    for id in collected.profiles.keys() {
        progress.add(1);
        let Some(s) = scores.scores(id)? else {
            continue;
        };
        let Some(p) = s.get("p_alive").and_then(Value::as_f64) else {
            continue;
        };
        p_alive.push(p);
        if let Some(c) = s.get("clv").and_then(Value::as_f64) {
            clv.push(c);
        }
    }
    Ok(ClvDistributionReport {
        profiles: p_alive.len(),
        clv: distribution(&clv, bins, Scale::Log),
        p_alive: distribution(&p_alive, bins, Scale::Unit),
        bins,
        model: fit.purchase_model,
        spend_model: fit.spend_model,
        fitted_at: fit.fitted_at,
        profiles_scored_by_fit: fit.profiles_scored,
    })
}

/// The CLV distribution report: CLV and P(alive) summaries, with the fit they came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClvDistributionReport {
    /// Profiles holding a P(alive) score.
    pub profiles: usize,
    /// `None` when no profile holds a CLV (the fit had no spend model).
    pub clv: Option<Distribution>,
    pub p_alive: Option<Distribution>,
    pub bins: usize,
    pub model: String,
    pub spend_model: Option<String>,
    pub fitted_at: String,
    pub profiles_scored_by_fit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohorts_split_by_month_of_first_purchase() {
        // 2024-01-15, 2024-01-31, 2024-02-01 (Unix seconds).
        let (jan15, jan31, feb1) = (1_705_276_800, 1_706_659_200, 1_706_745_600);
        let t = cohort_table(
            [
                (jan15, 0.1, 100.0),
                (jan31, 0.9, 50.0),
                (feb1, 0.2, 10.0),
                (feb1, 0.5, 5.0),
            ],
            0.5,
        );
        assert_eq!(t.total.customers, 4);
        assert_eq!(t.total.probably_gone, 2);
        assert_eq!(t.total.revenue, 165.0);
        assert_eq!(t.total.revenue_gone, 110.0);
        assert_eq!(t.cohorts.len(), 2);
        assert_eq!(t.cohorts[0].cohort, "2024-01");
        assert_eq!(
            (t.cohorts[0].probably_gone, t.cohorts[0].revenue_gone),
            (1, 100.0)
        );
        // P(alive) equal to the threshold is not "gone".
        assert_eq!(t.cohorts[1].cohort, "2024-02");
        assert_eq!(t.cohorts[1].probably_gone, 1);
        assert!((t.cohorts[1].share_gone - 0.5).abs() < 1e-12);
        assert!((t.cohorts[1].revenue_share_gone - 10.0 / 15.0).abs() < 1e-12);
    }
}
