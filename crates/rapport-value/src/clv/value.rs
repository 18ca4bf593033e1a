//! Customer lifetime value and bulk scoring: the outputs other parts of Rapport store on a
//! profile (P(alive), expected purchases, expected spend, CLV).
//!
//! Scoring is embarrassingly parallel (each customer depends only on the fitted parameters and
//! their own summary), so [`score_all`] is a linear pass split across threads with rayon.

use rayon::prelude::*;

use super::PurchaseModel;
use super::error::{ClvError, check_horizon};
use super::gamma_gamma::GammaGamma;
use super::rfm::RfmSummary;

/// How to discount future purchases into a lifetime value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvOptions {
    /// Number of periods in the horizon (e.g. 12 monthly periods).
    pub periods: u32,
    /// Length of one period in the model's time unit (e.g. 30.0 days, or 4.345 weeks).
    pub period_length: f64,
    /// Discount rate per period (e.g. 0.01 per month); 0 for none.
    pub discount_rate: f64,
}

/// Discounted expected value of a customer's purchases over the horizon:
/// Σₖ spend · (E[Y(k·Δ)] − E[Y((k−1)·Δ)]) / (1 + d)ᵏ for k = 1..=periods.
pub fn customer_lifetime_value<M: PurchaseModel + ?Sized>(
    model: &M,
    spend: &GammaGamma,
    s: &RfmSummary,
    opts: &ClvOptions,
) -> Result<f64, ClvError> {
    if !(opts.period_length.is_finite() && opts.period_length > 0.0) {
        return Err(ClvError::InvalidArgument {
            name: "period_length",
            reason: "must be finite and > 0",
        });
    }
    if !(opts.discount_rate.is_finite() && opts.discount_rate > -1.0) {
        return Err(ClvError::InvalidArgument {
            name: "discount_rate",
            reason: "must be finite and > -1",
        });
    }
    let value = spend.expected_spend(s)?;
    let mut previous = 0.0;
    let mut total = 0.0;
    let mut factor = 1.0;
    for k in 1..=opts.periods {
        let e = model.expected_purchases(s, f64::from(k) * opts.period_length)?;
        factor /= 1.0 + opts.discount_rate;
        total += (e - previous) * factor;
        previous = e;
    }
    Ok(value * total)
}

/// What [`score_all`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    /// Horizon for `expected_purchases`, in the model's time unit.
    pub horizon: f64,
    /// Lifetime-value settings; `None` skips CLV.
    pub clv: Option<ClvOptions>,
}

/// Per-customer outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Probability the customer is still active.
    pub p_alive: f64,
    /// Expected purchases over [`ScoreOptions::horizon`].
    pub expected_purchases: f64,
    /// Expected value per purchase (when a spend model is given).
    pub expected_spend: Option<f64>,
    /// Discounted lifetime value (when a spend model and [`ScoreOptions::clv`] are given).
    pub clv: Option<f64>,
}

/// Scores every customer, in input order, in parallel. Fails on the first invalid summary.
pub fn score_all<M: PurchaseModel + ?Sized>(
    model: &M,
    spend: Option<&GammaGamma>,
    data: &[RfmSummary],
    opts: &ScoreOptions,
) -> Result<Vec<Score>, ClvError> {
    check_horizon("horizon", opts.horizon)?;
    data.par_iter()
        .enumerate()
        .map(|(i, s)| {
            s.validate(i)?;
            let expected_spend = spend.map(|g| g.expected_spend(s)).transpose()?;
            let clv = match (spend, opts.clv) {
                (Some(g), Some(c)) => Some(customer_lifetime_value(model, g, s, &c)?),
                _ => None,
            };
            Ok(Score {
                p_alive: model.p_alive(s)?,
                expected_purchases: model.expected_purchases(s, opts.horizon)?,
                expected_spend,
                clv,
            })
        })
        .collect()
}
