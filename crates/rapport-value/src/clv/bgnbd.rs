//! The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").
//!
//! While alive a customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each
//! purchase they drop out with probability p ~ Beta(a, b). It is the cheap workhorse of
//! non-contractual CLV: its likelihood needs only log-gamma terms, so it fits a million
//! customers in about a second, and it answers "how many purchases next quarter?" and "is this
//! customer still alive?" from recency and frequency alone.

use rayon::prelude::*;

use super::error::{ClvError, check_horizon, check_param};
use super::optim::{FitOptions, Objective, minimize};
use super::rfm::{Aggregated, RfmSummary};
use super::special::{digamma, hyp2f1, ln_gamma, log_add_exp};
use super::{PurchaseModel, nbd_tail};

/// Fitted (or given) BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    /// Shape of the Gamma distribution of purchase rates.
    pub r: f64,
    /// Scale (in time units) of the Gamma distribution of purchase rates.
    pub alpha: f64,
    /// First shape of the Beta distribution of drop-out probabilities.
    pub a: f64,
    /// Second shape of the Beta distribution of drop-out probabilities.
    pub b: f64,
}

/// Result of [`BgNbd::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdFit {
    /// Maximum-likelihood parameters.
    pub params: BgNbd,
    /// Total log-likelihood at the optimum (the figure the papers report).
    pub log_likelihood: f64,
    /// Number of customers fitted.
    pub customers: usize,
    /// L-BFGS iterations used.
    pub iterations: u64,
}

/// Rows with more than this many entries are evaluated in parallel.
const PARALLEL_ROWS: usize = 32_768;
const CHUNK: usize = 8_192;

impl BgNbd {
    /// Checks that every parameter is finite and positive.
    pub fn new(r: f64, alpha: f64, a: f64, b: f64) -> Result<Self, ClvError> {
        check_param("r", r)?;
        check_param("alpha", alpha)?;
        check_param("a", a)?;
        check_param("b", b)?;
        Ok(Self { r, alpha, a, b })
    }

    /// Checks the parameters (useful when the struct was built field by field).
    pub fn validate(&self) -> Result<(), ClvError> {
        Self::new(self.r, self.alpha, self.a, self.b).map(|_| ())
    }

    /// Maximum-likelihood fit on per-customer summaries (monetary value is ignored).
    pub fn fit(data: &[RfmSummary], opts: &FitOptions) -> Result<BgNbdFit, ClvError> {
        let agg = Aggregated::new(data)?;
        if agg.sum_x == 0.0 {
            return Err(ClvError::NonConvergence {
                iterations: 0,
                gradient_norm: f64::INFINITY,
            });
        }
        let objective = Likelihood { agg: &agg };
        // r = 1 and α from the mean purchase rate; a = b = 1 (uniform drop-out probability).
        let alpha0 = (agg.sum_age / agg.sum_x).max(1e-6);
        let start = vec![0.0, alpha0.ln(), 0.0, 0.0];
        let m = minimize(&objective, start, opts)?;
        let params = Self::new(
            m.params[0].exp(),
            m.params[1].exp(),
            m.params[2].exp(),
            m.params[3].exp(),
        )?;
        Ok(BgNbdFit {
            params,
            log_likelihood: -m.value * agg.total_weight,
            customers: data.len(),
            iterations: m.iterations,
        })
    }

    /// Standard errors of (ln r, ln α, ln a, ln b) at these parameters on `data` (roughly
    /// the relative standard errors of r, α, a, b); `None` when the likelihood is flat in
    /// some direction, so the data do not determine the parameters.
    pub fn standard_errors(&self, data: &[RfmSummary]) -> Result<Option<Vec<f64>>, ClvError> {
        self.validate()?;
        let agg = Aggregated::new(data)?;
        let p = [self.r.ln(), self.alpha.ln(), self.a.ln(), self.b.ln()];
        super::optim::log_standard_errors(&Likelihood { agg: &agg }, &p, agg.total_weight)
    }

    /// Total log-likelihood of `data` under these parameters.
    pub fn log_likelihood(&self, data: &[RfmSummary]) -> Result<f64, ClvError> {
        self.validate()?;
        let agg = Aggregated::new(data)?;
        let p = [self.r.ln(), self.alpha.ln(), self.a.ln(), self.b.ln()];
        let (v, _) = Likelihood { agg: &agg }.value_grad(&p)?;
        Ok(-v * agg.total_weight)
    }

    /// ln of a / (b + x − 1) · ((α + T)/(α + tₓ))^(r + x): the log odds of having dropped out.
    fn log_odds_dead(&self, s: &RfmSummary) -> f64 {
        let x = f64::from(s.frequency);
        (self.a).ln() - (self.b + x - 1.0).ln()
            + (self.r + x) * ((self.alpha + s.age).ln() - (self.alpha + s.recency).ln())
    }

    /// The conditional expectation for a given `a` (so that a = 1 can be approached).
    fn conditional(&self, a: f64, s: &RfmSummary, t: f64) -> Result<f64, ClvError> {
        let x = f64::from(s.frequency);
        let (r, alpha, b) = (self.r, self.alpha, self.b);
        let big_t = s.age;
        let z = t / (alpha + big_t + t);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z)?;
        let lead = (a + b + x - 1.0) / (a - 1.0);
        let bracket = 1.0 - ((r + x) * ((alpha + big_t).ln() - (alpha + big_t + t).ln())).exp() * f;
        let denominator = if s.frequency == 0 {
            1.0
        } else {
            1.0 + self.log_odds_dead(s).exp()
        };
        Ok(lead * bracket / denominator)
    }
}

impl PurchaseModel for BgNbd {
    fn prob_purchases_given(&self, s: &RfmSummary, t: f64, n: u32) -> Result<f64, ClvError> {
        self.validate()?;
        let alive = self.p_alive(s)?;
        // Given alive at T: λ ~ Gamma(r + x, α + T) and p ~ Beta(a, b + x).
        let x = f64::from(s.frequency);
        let updated = Self::new(self.r + x, self.alpha + s.age, self.a, self.b + x)?;
        let p = alive * updated.prob_purchases(t, n)? + if n == 0 { 1.0 - alive } else { 0.0 };
        Ok(p.clamp(0.0, 1.0))
    }

    fn p_alive(&self, s: &RfmSummary) -> Result<f64, ClvError> {
        self.validate()?;
        s.validate(0)?;
        if s.frequency == 0 {
            return Ok(1.0);
        }
        Ok(1.0 / (1.0 + self.log_odds_dead(s).exp()))
    }

    fn expected_purchases(&self, s: &RfmSummary, t: f64) -> Result<f64, ClvError> {
        self.validate()?;
        s.validate(0)?;
        check_horizon("t", t)?;
        if t == 0.0 {
            return Ok(0.0);
        }
        const A_EPS: f64 = 1e-7;
        let e = if (self.a - 1.0).abs() < A_EPS {
            // (a − 1) cancels between numerator and denominator: average either side.
            0.5 * (self.conditional(1.0 - A_EPS, s, t)? + self.conditional(1.0 + A_EPS, s, t)?)
        } else {
            self.conditional(self.a, s, t)?
        };
        if e.is_finite() {
            Ok(e.max(0.0))
        } else {
            Err(ClvError::Numerical("BG/NBD expectation is not finite"))
        }
    }

    fn prob_purchases(&self, t: f64, n: u32) -> Result<f64, ClvError> {
        self.validate()?;
        check_horizon("t", t)?;
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let nf = f64::from(n);
        let ln_beta = |p: f64, q: f64| ln_gamma(p) + ln_gamma(q) - ln_gamma(p + q);
        let lb = ln_beta(a, b);
        if t == 0.0 {
            return Ok(if n == 0 { 1.0 } else { 0.0 });
        }
        let ln_p0 = (alpha / (alpha + t)).ln();
        let ln_q = (t / (alpha + t)).ln();
        let nbd = ln_gamma(r + nf) - ln_gamma(r) - ln_gamma(nf + 1.0) + r * ln_p0 + nf * ln_q;
        let mut p = (ln_beta(a, b + nf) - lb + nbd).exp();
        if n > 0 {
            p += (ln_beta(a + 1.0, b + nf - 1.0) - lb).exp() * nbd_tail(r, ln_p0, ln_q, n);
        }
        Ok(p.clamp(0.0, 1.0))
    }
}

/// Mean negative log-likelihood over log-parameters (ln r, ln α, ln a, ln b).
struct Likelihood<'a> {
    agg: &'a Aggregated,
}

/// Per-frequency terms of the log-likelihood and its partial derivatives.
#[derive(Clone, Copy)]
struct XTerms {
    x: f64,
    base: f64,
    ln_odds: f64,
    d_r: f64,
    d_alpha: f64,
    d_a: f64,
    d_b: f64,
    odds_a: f64,
    odds_b: f64,
}

#[inline]
fn softplus_sigmoid(d: f64) -> (f64, f64) {
    if d > 0.0 {
        let e = (-d).exp();
        (d + e.ln_1p(), 1.0 / (1.0 + e))
    } else {
        let e = d.exp();
        (e.ln_1p(), e / (1.0 + e))
    }
}

impl Objective for Likelihood<'_> {
    fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
        let (r, alpha, a, b) = (p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp());
        for (name, v) in [("r", r), ("alpha", alpha), ("a", a), ("b", b)] {
            check_param(name, v)?;
        }
        let agg = self.agg;
        let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
        let (dg_r, dg_ab, dg_b) = (digamma(r), digamma(a + b), digamma(b));
        let ln_alpha = alpha.ln();
        let xt: Vec<XTerms> = agg
            .xs
            .iter()
            .map(|&xi| {
                let x = f64::from(xi);
                let (dg_rx, dg_bx, dg_abx) = (digamma(r + x), digamma(b + x), digamma(a + b + x));
                XTerms {
                    x,
                    base: ln_gamma(r + x) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + x)
                        - lg_b
                        - ln_gamma(a + b + x),
                    ln_odds: if xi > 0 {
                        a.ln() - (b + x - 1.0).ln()
                    } else {
                        f64::NEG_INFINITY
                    },
                    d_r: dg_rx - dg_r + ln_alpha,
                    d_alpha: r / alpha,
                    d_a: dg_ab - dg_abx,
                    d_b: dg_ab + dg_bx - dg_b - dg_abx,
                    odds_a: 1.0 / a,
                    odds_b: if xi > 0 { -1.0 / (b + x - 1.0) } else { 0.0 },
                }
            })
            .collect();
        let time_terms = |&tau: &f64| ((alpha + tau).ln(), 1.0 / (alpha + tau));
        let tt: Vec<(f64, f64)> = if agg.times.len() > PARALLEL_ROWS {
            agg.times.par_iter().map(time_terms).collect()
        } else {
            agg.times.iter().map(time_terms).collect()
        };
        let accumulate = |rows: &[super::rfm::Row]| {
            let mut acc = [0.0f64; 5];
            for row in rows {
                let k = &xt[row.xi as usize];
                let (l_t, i_t) = tt[row.ti as usize];
                let rx = r + k.x;
                let (ll, p4, l_tx, i_tx) = if k.x == 0.0 {
                    (k.base - rx * l_t, 0.0, 0.0, 0.0)
                } else {
                    let (l_tx, i_tx) = tt[row.txi as usize];
                    let d = k.ln_odds - rx * (l_tx - l_t);
                    let (sp, sg) = softplus_sigmoid(d);
                    (k.base - rx * l_t + sp, sg, l_tx, i_tx)
                };
                let p3 = 1.0 - p4;
                let w = row.w;
                acc[0] += w * ll;
                acc[1] += w * (k.d_r - p3 * l_t - p4 * l_tx);
                acc[2] += w * (k.d_alpha - rx * (p3 * i_t + p4 * i_tx));
                acc[3] += w * (k.d_a + p4 * k.odds_a);
                acc[4] += w * (k.d_b + p4 * k.odds_b);
            }
            acc
        };
        let sums = if agg.rows.len() > PARALLEL_ROWS {
            let parts: Vec<[f64; 5]> = agg.rows.par_chunks(CHUNK).map(accumulate).collect();
            parts.iter().fold([0.0; 5], |mut s, p| {
                s.iter_mut().zip(p).for_each(|(s, p)| *s += p);
                s
            })
        } else {
            accumulate(&agg.rows)
        };
        let n = agg.total_weight;
        let value = -sums[0] / n;
        let grad = vec![
            -sums[1] * r / n,
            -sums[2] * alpha / n,
            -sums[3] * a / n,
            -sums[4] * b / n,
        ];
        Ok((value, grad))
    }
}

impl BgNbd {
    /// Log-likelihood of one customer (the direct formula).
    pub fn customer_log_likelihood(&self, s: &RfmSummary) -> Result<f64, ClvError> {
        self.validate()?;
        s.validate(0)?;
        let x = f64::from(s.frequency);
        let BgNbd { r, alpha, a, b } = *self;
        let head =
            ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
                - ln_gamma(b)
                - ln_gamma(a + b + x);
        let alive = -(r + x) * (alpha + s.age).ln();
        let dead = if s.frequency > 0 {
            a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + s.recency).ln()
        } else {
            f64::NEG_INFINITY
        };
        Ok(head + log_add_exp(alive, dead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn aggregated_likelihood_matches_direct_formula() {
        let data = vec![
            RfmSummary::new(0, 0.0, 38.86),
            RfmSummary::new(2, 30.43, 38.86),
            RfmSummary::new(0, 0.0, 38.86),
            RfmSummary::new(7, 29.43, 35.0),
        ];
        let direct: f64 = data
            .iter()
            .map(|s| CDNOW.customer_log_likelihood(s).unwrap())
            .sum();
        let agg = CDNOW.log_likelihood(&data).unwrap();
        assert!((direct - agg).abs() < 1e-10, "{direct} vs {agg}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data = vec![
            RfmSummary::new(0, 0.0, 38.86),
            RfmSummary::new(2, 30.43, 38.86),
            RfmSummary::new(7, 29.43, 35.0),
            RfmSummary::new(1, 1.0, 20.0),
        ];
        let agg = Aggregated::new(&data).unwrap();
        let obj = Likelihood { agg: &agg };
        let p = [-1.2, 1.3, -0.2, 0.9];
        let (_, g) = obj.value_grad(&p).unwrap();
        for i in 0..4 {
            let h = 1e-6;
            let mut hi = p;
            hi[i] += h;
            let mut lo = p;
            lo[i] -= h;
            let fd = (obj.value_grad(&hi).unwrap().0 - obj.value_grad(&lo).unwrap().0) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7, "param {i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn predictions_for_a_known_customer() {
        // x = 2, t_x = 30.43, T = 38.86 (CDNOW customer 1).
        let s = RfmSummary::new(2, 30.43, 38.86);
        let alive = CDNOW.p_alive(&s).unwrap();
        assert!(alive > 0.0 && alive < 1.0);
        let e39 = CDNOW.expected_purchases(&s, 39.0).unwrap();
        let e78 = CDNOW.expected_purchases(&s, 78.0).unwrap();
        assert!(e39 > 0.0 && e78 > e39);
        // Probabilities of n purchases sum to one.
        let total: f64 = (0..400)
            .map(|n| CDNOW.prob_purchases(39.0, n).unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // Mean of that distribution equals the unconditional expectation.
        let mean: f64 = (0..2000)
            .map(|n| f64::from(n) * CDNOW.prob_purchases(39.0, n).unwrap())
            .sum();
        let e = CDNOW.expected_purchases_new(39.0).unwrap();
        assert!((mean - e).abs() < 1e-6 * e, "{mean} vs {e}");
    }

    #[test]
    fn a_equal_to_one_is_handled() {
        let m = BgNbd::new(0.5, 5.0, 1.0, 2.0).unwrap();
        let s = RfmSummary::new(3, 10.0, 20.0);
        let e = m.expected_purchases(&s, 10.0).unwrap();
        let near = BgNbd::new(0.5, 5.0, 1.0 + 1e-4, 2.0).unwrap();
        let e2 = near.expected_purchases(&s, 10.0).unwrap();
        assert!((e - e2).abs() < 1e-3 * e, "{e} vs {e2}");
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(BgNbd::new(-1.0, 1.0, 1.0, 1.0).is_err());
        assert!(BgNbd::new(1.0, f64::NAN, 1.0, 1.0).is_err());
        // Built field by field, bypassing `new`: still an error, not a NaN.
        let bad = BgNbd { r: -1.0, ..CDNOW };
        let s = RfmSummary::new(1, 1.0, 2.0);
        assert!(matches!(
            bad.p_alive(&s),
            Err(ClvError::InvalidParameter { name: "r", .. })
        ));
        assert!(bad.expected_purchases(&s, 1.0).is_err());
        assert!(bad.prob_purchases(1.0, 1).is_err());
        assert!(BgNbd::fit(&[], &FitOptions::default()).is_err());
        assert!(
            CDNOW
                .expected_purchases(&RfmSummary::new(1, 2.0, 1.0), 1.0)
                .is_err()
        );
        assert!(
            CDNOW
                .expected_purchases(&RfmSummary::new(1, 1.0, 2.0), -1.0)
                .is_err()
        );
    }
}
