//! Probabilistic purchase models and customer lifetime value (CLV) for non-contractual
//! businesses, where customers never say they have left.
//!
//! The models here are the standard "buy till you die" family, fitted by maximum likelihood on
//! per-customer RFM summaries:
//!
//! * [`BgNbd`]: purchases with drop-out right after a purchase; the fast default.
//! * [`ParetoNbd`]: purchases with drop-out at any time; the reference model.
//! * [`GammaGamma`]: the value of each purchase, for turning purchase counts into money.
//!
//! Both purchase models implement [`PurchaseModel`] (P(alive), expected purchases, P(X(t)=n));
//! [`customer_lifetime_value`] and [`score_all`] combine one with [`GammaGamma`], and
//! [`evaluate_holdout`] checks a fit against a later period. [`summarize`] and
//! [`calibration_holdout`] turn a transaction log into the summaries the models read.
//!
//! Everything is pure: data in, numbers out, no I/O and no clock. Bad input is a
//! [`ClvError`], never a panic. `docs/value/clv.md` has the formulas and the validation on
//! the CDNOW data set.

mod bgnbd;
mod error;
mod gamma_gamma;
mod holdout;
mod optim;
mod pareto;
mod rfm;
mod simulate;
pub mod special;
mod value;

pub use bgnbd::{BgNbd, BgNbdFit};
pub use error::ClvError;
pub use gamma_gamma::{GammaGamma, GammaGammaFit};
pub use holdout::{FrequencyBucket, HoldoutReport, evaluate_holdout};
pub use optim::FitOptions;
pub use pareto::{ParetoNbd, ParetoNbdFit};
pub use rfm::{
    CustomerSummary, HoldoutRow, Period, RfmSummary, SummaryOptions, TimeUnit, Transaction,
    calibration_holdout, summarize, validate_summaries,
};
pub use simulate::{simulate_bgnbd, simulate_pareto_nbd};
pub use value::{ClvOptions, Score, ScoreOptions, customer_lifetime_value, score_all};

use special::ln_gamma;

/// What a fitted purchase-count model predicts. Time is in the unit the model was fitted in.
pub trait PurchaseModel: Sync {
    /// Probability that the customer is still active at the end of their observation, `age`.
    fn p_alive(&self, s: &RfmSummary) -> Result<f64, ClvError>;

    /// Expected number of purchases in the next `t` time units, given the customer's history.
    fn expected_purchases(&self, s: &RfmSummary, t: f64) -> Result<f64, ClvError>;

    /// Expected number of repeat purchases in `t` time units for a customer just acquired.
    fn expected_purchases_new(&self, t: f64) -> Result<f64, ClvError> {
        self.expected_purchases(&RfmSummary::new(0, 0.0, 0.0), t)
    }

    /// Probability that a customer just acquired makes exactly `n` repeat purchases in `t`.
    fn prob_purchases(&self, t: f64, n: u32) -> Result<f64, ClvError>;

    /// Probability that this customer makes exactly `n` purchases in the next `t`, given their
    /// history. Both models restart at the end of observation: a customer alive then behaves as
    /// a new customer of the same model with updated parameters, so this is
    /// P(alive) · P′(X(t) = n) + (1 − P(alive)) · 1{n = 0}.
    fn prob_purchases_given(&self, s: &RfmSummary, t: f64, n: u32) -> Result<f64, ClvError>;
}

/// Negative-binomial (Gamma–Poisson) probability of `n` events in `t` with rate ~ Gamma(r, α).
pub(crate) fn nbd_pmf(r: f64, alpha: f64, t: f64, n: u32) -> f64 {
    if t <= 0.0 {
        return if n == 0 { 1.0 } else { 0.0 };
    }
    let nf = f64::from(n);
    let ln_p0 = (alpha / (alpha + t)).ln();
    let ln_q = (t / (alpha + t)).ln();
    (ln_gamma(r + nf) - ln_gamma(r) - ln_gamma(nf + 1.0) + r * ln_p0 + nf * ln_q).exp()
}

/// P(N ≥ n) for N ~ NBD with success-probability logs `ln_p0` = ln(α/(α+t)) and
/// `ln_q` = ln(t/(α+t)).
pub(crate) fn nbd_tail(r: f64, ln_p0: f64, ln_q: f64, n: u32) -> f64 {
    let q = ln_q.exp();
    let mut term = (r * ln_p0).exp();
    let mut below = 0.0;
    for j in 0..n {
        below += term;
        let jf = f64::from(j);
        term *= (r + jf) / (jf + 1.0) * q;
    }
    (1.0 - below).max(0.0)
}

/// Composite Gauss–Legendre quadrature (16 panels of 16 nodes) of a smooth `f` on [a, b].
pub(crate) fn gauss_legendre_integral(a: f64, b: f64, f: impl Fn(f64) -> f64) -> f64 {
    const PANELS: usize = 16;
    let (nodes, weights) = legendre_16();
    let width = (b - a) / PANELS as f64;
    let mut total = 0.0;
    for k in 0..PANELS {
        let lo = a + width * k as f64;
        let mid = lo + 0.5 * width;
        let half = 0.5 * width;
        total += nodes
            .iter()
            .zip(weights)
            .map(|(x, w)| w * f(mid + half * x))
            .sum::<f64>()
            * half;
    }
    total
}

/// Nodes and weights of the 16-point Gauss–Legendre rule on [−1, 1], found once by Newton's
/// method on the Legendre polynomial.
fn legendre_16() -> &'static ([f64; 16], [f64; 16]) {
    static RULE: std::sync::OnceLock<([f64; 16], [f64; 16])> = std::sync::OnceLock::new();
    RULE.get_or_init(|| {
        const N: usize = 16;
        let mut nodes = [0.0; N];
        let mut weights = [0.0; N];
        for i in 0..N {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (N as f64 + 0.5)).cos();
            let mut deriv = 1.0;
            for _ in 0..100 {
                // P_N(x) and P_N'(x) by the three-term recurrence.
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=N {
                    let kf = k as f64;
                    let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
                    p0 = p1;
                    p1 = p2;
                }
                deriv = N as f64 * (x * p1 - p0) / (x * x - 1.0);
                let step = p1 / deriv;
                x -= step;
                if step.abs() < 1e-16 {
                    break;
                }
            }
            nodes[i] = x;
            weights[i] = 2.0 / ((1.0 - x * x) * deriv * deriv);
        }
        (nodes, weights)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrature_is_exact_enough() {
        let v = gauss_legendre_integral(0.0, std::f64::consts::PI, f64::sin);
        assert!((v - 2.0).abs() < 1e-14, "{v}");
        let v = gauss_legendre_integral(1.0, 50.0, |x| x.powf(-1.7));
        let want = (1.0 - 50f64.powf(-0.7)) / 0.7;
        assert!((v - want).abs() < 1e-12 * want, "{v} vs {want}");
    }

    #[test]
    fn nbd_tail_matches_pmf_sum() {
        let (r, alpha, t): (f64, f64, f64) = (0.7, 3.0, 10.0);
        let ln_p0 = (alpha / (alpha + t)).ln();
        let ln_q = (t / (alpha + t)).ln();
        let below: f64 = (0..5).map(|n| nbd_pmf(r, alpha, t, n)).sum();
        assert!((nbd_tail(r, ln_p0, ln_q, 5) - (1.0 - below)).abs() < 1e-14);
    }
}
