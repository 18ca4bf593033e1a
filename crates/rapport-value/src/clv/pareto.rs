//! The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987), in the likelihood form of
//! Fader & Hardie's 2005 note "A note on deriving the Pareto/NBD model and related
//! expressions".
//!
//! While alive a customer buys as a Poisson process with rate λ ~ Gamma(r, α) and has an
//! exponential lifetime with rate μ ~ Gamma(s, β). Drop-out can happen at any time, not only
//! right after a purchase as in BG/NBD, which makes it the reference model for
//! non-contractual settings; the price is a Gauss hypergeometric function in the likelihood,
//! which is why fitting it costs more than BG/NBD.

use std::collections::HashMap;

use rayon::prelude::*;

use super::error::{ClvError, check_horizon, check_param};
use super::optim::{FitOptions, Objective, minimize};
use super::rfm::{Aggregated, RfmSummary, Row};
use super::special::{digamma, hyp2f1, hyp2f1_shifted_with_grad, ln_gamma, log_add_exp, log1m_exp};
use super::{PurchaseModel, gauss_legendre_integral, nbd_pmf};

/// Fitted (or given) Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    /// Shape of the Gamma distribution of purchase rates.
    pub r: f64,
    /// Scale (in time units) of the Gamma distribution of purchase rates.
    pub alpha: f64,
    /// Shape of the Gamma distribution of drop-out rates.
    pub s: f64,
    /// Scale (in time units) of the Gamma distribution of drop-out rates.
    pub beta: f64,
}

/// Result of [`ParetoNbd::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbdFit {
    /// Maximum-likelihood parameters.
    pub params: ParetoNbd,
    /// Total log-likelihood at the optimum.
    pub log_likelihood: f64,
    /// Number of customers fitted.
    pub customers: usize,
    /// L-BFGS iterations used.
    pub iterations: u64,
}

/// Rows above this count are summed in parallel, in chunks of [`CHUNK`] rows.
const PARALLEL_ROWS: usize = 16_384;
const CHUNK: usize = 4_096;

/// The two parts of one customer's likelihood, without the common factor
/// Γ(r+x)αʳβˢ/Γ(r): "alive at T" and "died between tₓ and T".
struct Parts {
    ln_alive: f64,
    ln_died: f64,
}

impl ParetoNbd {
    /// Checks that every parameter is finite and positive.
    pub fn new(r: f64, alpha: f64, s: f64, beta: f64) -> Result<Self, ClvError> {
        check_param("r", r)?;
        check_param("alpha", alpha)?;
        check_param("s", s)?;
        check_param("beta", beta)?;
        Ok(Self { r, alpha, s, beta })
    }

    /// Checks the parameters (useful when the struct was built field by field).
    pub fn validate(&self) -> Result<(), ClvError> {
        Self::new(self.r, self.alpha, self.s, self.beta).map(|_| ())
    }

    /// Maximum-likelihood fit on per-customer summaries (monetary value is ignored).
    pub fn fit(data: &[RfmSummary], opts: &FitOptions) -> Result<ParetoNbdFit, ClvError> {
        let agg = Aggregated::new(data)?;
        if agg.sum_x == 0.0 {
            return Err(ClvError::NonConvergence {
                iterations: 0,
                gradient_norm: f64::INFINITY,
            });
        }
        let objective = Likelihood { agg: &agg };
        let mean_age = (agg.sum_age / agg.total_weight).max(1e-6);
        let alpha0 = (agg.sum_age / agg.sum_x).max(1e-6);
        let start = vec![0.0, alpha0.ln(), 0.0, mean_age.ln()];
        let m = minimize(&objective, start, opts)?;
        let params = Self::new(
            m.params[0].exp(),
            m.params[1].exp(),
            m.params[2].exp(),
            m.params[3].exp(),
        )?;
        Ok(ParetoNbdFit {
            params,
            log_likelihood: -m.value * agg.total_weight,
            customers: data.len(),
            iterations: m.iterations,
        })
    }

    /// Standard errors of (ln r, ln α, ln s, ln β) at these parameters on `data`; `None`
    /// when the likelihood is flat in some direction (see [`BgNbd::standard_errors`]).
    ///
    /// [`BgNbd::standard_errors`]: super::BgNbd::standard_errors
    pub fn standard_errors(&self, data: &[RfmSummary]) -> Result<Option<Vec<f64>>, ClvError> {
        self.validate()?;
        let agg = Aggregated::new(data)?;
        let p = [self.r.ln(), self.alpha.ln(), self.s.ln(), self.beta.ln()];
        super::optim::log_standard_errors(&Likelihood { agg: &agg }, &p, agg.total_weight)
    }

    /// Total log-likelihood of `data` under these parameters.
    pub fn log_likelihood(&self, data: &[RfmSummary]) -> Result<f64, ClvError> {
        self.validate()?;
        let agg = Aggregated::new(data)?;
        let p = [self.r.ln(), self.alpha.ln(), self.s.ln(), self.beta.ln()];
        Ok(-Likelihood { agg: &agg }.value_grad(&p)?.0 * agg.total_weight)
    }

    /// ₂F₁ term of the "died" part at time τ, divided by (ρ + τ)^(r+s+x): the function A₀ of
    /// Fader & Hardie is the difference of this at tₓ and at T.
    fn ln_a0_term(&self, x: f64, tau: f64) -> Result<f64, ClvError> {
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let a1 = r + s + x;
        // Keep z ∈ [0, 1) by expanding around the larger of α and β.
        let (rho, b1) = if alpha >= beta {
            (alpha, s + 1.0)
        } else {
            (beta, r + x)
        };
        let z = (alpha - beta).abs() / (rho + tau);
        let f = hyp2f1(a1, b1, a1 + 1.0, z)?;
        if f.is_nan() || f <= 0.0 {
            return Err(ClvError::Numerical("Pareto/NBD: 2F1 is not positive"));
        }
        Ok(f.ln() - a1 * (rho + tau).ln())
    }

    fn parts_with(&self, x: f64, ln_a_tx: f64, ln_a_t: f64, age: f64) -> Parts {
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let ln_alive = -(r + x) * (alpha + age).ln() - s * (beta + age).ln();
        let ln_died = if ln_a_t >= ln_a_tx {
            // tₓ = T (or rounding): the customer cannot have died in between.
            f64::NEG_INFINITY
        } else {
            s.ln() - (r + s + x).ln() + ln_a_tx + log1m_exp(ln_a_t - ln_a_tx)
        };
        Parts { ln_alive, ln_died }
    }

    fn parts(&self, sm: &RfmSummary) -> Result<Parts, ClvError> {
        let x = f64::from(sm.frequency);
        let ln_a_tx = self.ln_a0_term(x, sm.recency)?;
        let ln_a_t = self.ln_a0_term(x, sm.age)?;
        Ok(self.parts_with(x, ln_a_tx, ln_a_t, sm.age))
    }

    /// Log-likelihood of one customer.
    pub fn customer_log_likelihood(&self, sm: &RfmSummary) -> Result<f64, ClvError> {
        self.validate()?;
        sm.validate(0)?;
        let x = f64::from(sm.frequency);
        let p = self.parts(sm)?;
        Ok(ln_gamma(self.r + x) - ln_gamma(self.r)
            + self.r * self.alpha.ln()
            + self.s * self.beta.ln()
            + log_add_exp(p.ln_alive, p.ln_died))
    }
}

impl PurchaseModel for ParetoNbd {
    fn prob_purchases_given(&self, sm: &RfmSummary, t: f64, n: u32) -> Result<f64, ClvError> {
        self.validate()?;
        let alive = self.p_alive(sm)?;
        // Given alive at T: λ ~ Gamma(r + x, α + T) and μ ~ Gamma(s, β + T).
        let x = f64::from(sm.frequency);
        let updated = Self::new(self.r + x, self.alpha + sm.age, self.s, self.beta + sm.age)?;
        let p = alive * updated.prob_purchases(t, n)? + if n == 0 { 1.0 - alive } else { 0.0 };
        Ok(p.clamp(0.0, 1.0))
    }

    fn p_alive(&self, sm: &RfmSummary) -> Result<f64, ClvError> {
        self.validate()?;
        sm.validate(0)?;
        let p = self.parts(sm)?;
        Ok(1.0 / (1.0 + (p.ln_died - p.ln_alive).exp()))
    }

    fn expected_purchases(&self, sm: &RfmSummary, t: f64) -> Result<f64, ClvError> {
        self.validate()?;
        sm.validate(0)?;
        check_horizon("t", t)?;
        if t == 0.0 {
            return Ok(0.0);
        }
        let x = f64::from(sm.frequency);
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let big_t = sm.age;
        // ∫₀ᵗ P(alive at T+u | alive at T) du · E[λ | x, T] with the Lomax survival
        // ((β+T)/(β+T+u))^s: (β+T)/(s−1) · (1 − ((β+T)/(β+T+t))^(s−1)), and its s → 1 limit.
        let l = (t / (beta + big_t)).ln_1p();
        let integral = if (s - 1.0).abs() < 1e-10 {
            (beta + big_t) * l
        } else {
            (beta + big_t) * -(-(s - 1.0) * l).exp_m1() / (s - 1.0)
        };
        let e = self.p_alive(sm)? * (r + x) / (alpha + big_t) * integral;
        if e.is_finite() {
            Ok(e.max(0.0))
        } else {
            Err(ClvError::Numerical("Pareto/NBD expectation is not finite"))
        }
    }

    /// P(X(t) = n) for a new customer: purchases follow an NBD(r, α) count over the time alive,
    /// min(τ, t), with τ ~ Lomax(s, β), so
    /// P = S(t)·NBD(n; t) + ∫_{S(t)}^{1} NBD(n; τ(u)) du, u = S(τ) = (β/(β+τ))ˢ.
    fn prob_purchases(&self, t: f64, n: u32) -> Result<f64, ClvError> {
        self.validate()?;
        check_horizon("t", t)?;
        if t == 0.0 {
            return Ok(if n == 0 { 1.0 } else { 0.0 });
        }
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let survival = (s * (beta / (beta + t)).ln()).exp();
        let pmf = |tau: f64| nbd_pmf(r, alpha, tau, n);
        let integral = gauss_legendre_integral(survival, 1.0, |u| {
            let tau = beta * (u.powf(-1.0 / s) - 1.0);
            pmf(tau.clamp(0.0, t))
        });
        Ok((survival * pmf(t) + integral).clamp(0.0, 1.0))
    }
}

/// Mean negative log-likelihood over (ln r, ln α, ln s, ln β), with its analytic gradient.
struct Likelihood<'a> {
    agg: &'a Aggregated,
}

/// Softplus and logistic of the same argument: (ln(1 + eᵈ), 1/(1 + e⁻ᵈ)).
fn softplus_sigmoid(d: f64) -> (f64, f64) {
    if d > 0.0 {
        let e = (-d).exp();
        (d + e.ln_1p(), 1.0 / (1.0 + e))
    } else {
        let e = d.exp();
        (e.ln_1p(), e / (1.0 + e))
    }
}

impl ParetoNbd {
    /// G(τ) = ln ₂F₁(…; z(τ)) − (r+s+x)·ln(ρ+τ) (see [`Self::ln_a0_term`]) and its partial
    /// derivatives with respect to (r, α, s, β).
    fn a0_term_grad(&self, x: f64, tau: f64) -> Result<[f64; 5], ClvError> {
        let (r, alpha, s, beta) = (self.r, self.alpha, self.s, self.beta);
        let a1 = r + s + x;
        let alpha_ge = alpha >= beta;
        let (rho, b1) = if alpha_ge {
            (alpha, s + 1.0)
        } else {
            (beta, r + x)
        };
        let z = (alpha - beta).abs() / (rho + tau);
        let [f, fa, fb, fz] = hyp2f1_shifted_with_grad(a1, b1, z)?;
        if f.is_nan() || f <= 0.0 {
            return Err(ClvError::Numerical("Pareto/NBD: 2F1 is not positive"));
        }
        let ln_rho = (rho + tau).ln();
        let (ga, gb, gz) = (fa / f, fb / f, fz / f);
        let (dz_alpha, dz_beta) = if alpha_ge {
            (
                (beta + tau) / ((alpha + tau) * (alpha + tau)),
                -1.0 / (alpha + tau),
            )
        } else {
            (
                -1.0 / (beta + tau),
                (alpha + tau) / ((beta + tau) * (beta + tau)),
            )
        };
        let (b_r, b_s) = if alpha_ge { (0.0, gb) } else { (gb, 0.0) };
        let (own_alpha, own_beta) = if alpha_ge {
            (a1 / (alpha + tau), 0.0)
        } else {
            (0.0, a1 / (beta + tau))
        };
        Ok([
            f.ln() - a1 * ln_rho,
            ga + b_r - ln_rho,
            gz * dz_alpha - own_alpha,
            ga + b_s - ln_rho,
            gz * dz_beta - own_beta,
        ])
    }
}

impl Objective for Likelihood<'_> {
    fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
        let m = ParetoNbd::new(p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp())?;
        let (r, alpha, s, beta) = (m.r, m.alpha, m.s, m.beta);
        let agg = self.agg;
        let (ln_alpha, ln_beta) = (alpha.ln(), beta.ln());
        let head = r * ln_alpha + s * ln_beta - ln_gamma(r);
        let dg_r = digamma(r);
        // Sums over a run of rows. G and its gradient depend on (x, τ) only, and many customers
        // share them, so each run memoises them.
        let accumulate = |rows: &[Row]| -> Result<[f64; 5], ClvError> {
            let mut memo: HashMap<(u32, u32), [f64; 5]> = HashMap::with_capacity(rows.len());
            let mut acc = [0.0f64; 5];
            let mut last_xi = u32::MAX;
            let (mut lg_rx, mut dg_rx) = (0.0, 0.0);
            for row in rows {
                let x = f64::from(agg.xs[row.xi as usize]);
                if row.xi != last_xi {
                    last_xi = row.xi;
                    lg_rx = ln_gamma(r + x);
                    dg_rx = digamma(r + x);
                }
                let mut term = |ti: u32| -> Result<[f64; 5], ClvError> {
                    if let Some(v) = memo.get(&(row.xi, ti)) {
                        return Ok(*v);
                    }
                    let v = m.a0_term_grad(x, agg.times[ti as usize])?;
                    memo.insert((row.xi, ti), v);
                    Ok(v)
                };
                let g_tx = term(row.txi)?;
                let g_t = term(row.ti)?;
                let age = agg.times[row.ti as usize];
                let (la, lb) = ((alpha + age).ln(), (beta + age).ln());
                let alive = -(r + x) * la - s * lb;
                let d_alive = [-la, -(r + x) / (alpha + age), -lb, -s / (beta + age)];
                let (lse, d_lse) = if g_t[0] >= g_tx[0] {
                    (alive, d_alive)
                } else {
                    let e = (g_t[0] - g_tx[0]).exp();
                    let died = s.ln() - (r + s + x).ln() + g_tx[0] + log1m_exp(g_t[0] - g_tx[0]);
                    let inv = 1.0 / (r + s + x);
                    let own = [-inv, 0.0, 1.0 / s - inv, 0.0];
                    let (sp, pd) = softplus_sigmoid(died - alive);
                    let mut d = [0.0; 4];
                    for k in 0..4 {
                        let d_died = own[k] + (g_tx[k + 1] - e * g_t[k + 1]) / (1.0 - e);
                        d[k] = (1.0 - pd) * d_alive[k] + pd * d_died;
                    }
                    (alive + sp, d)
                };
                let w = row.w;
                acc[0] += w * (lg_rx + head + lse);
                acc[1] += w * (dg_rx - dg_r + ln_alpha + d_lse[0]);
                acc[2] += w * (r / alpha + d_lse[1]);
                acc[3] += w * (ln_beta + d_lse[2]);
                acc[4] += w * (s / beta + d_lse[3]);
            }
            Ok(acc)
        };
        let acc = if agg.rows.len() > PARALLEL_ROWS {
            let parts: Vec<[f64; 5]> = agg
                .rows
                .par_chunks(CHUNK)
                .map(accumulate)
                .collect::<Result<_, _>>()?;
            parts.iter().fold([0.0; 5], |mut sum, part| {
                sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
                sum
            })
        } else {
            accumulate(&agg.rows)?
        };
        let n = agg.total_weight;
        let value = -acc[0] / n;
        if !value.is_finite() {
            return Err(ClvError::Numerical(
                "Pareto/NBD log-likelihood is not finite",
            ));
        }
        let grad = vec![
            -acc[1] * r / n,
            -acc[2] * alpha / n,
            -acc[3] * s / n,
            -acc[4] * beta / n,
        ];
        Ok((value, grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED: ParetoNbd = ParetoNbd {
        r: 0.55,
        alpha: 10.58,
        s: 0.61,
        beta: 11.67,
    };

    #[test]
    fn alpha_above_and_below_beta_agree_at_the_boundary() {
        let s = RfmSummary::new(3, 10.0, 30.0);
        let lo = ParetoNbd::new(0.5, 10.0 - 1e-9, 0.7, 10.0).unwrap();
        let hi = ParetoNbd::new(0.5, 10.0 + 1e-9, 0.7, 10.0).unwrap();
        let a = lo.customer_log_likelihood(&s).unwrap();
        let b = hi.customer_log_likelihood(&s).unwrap();
        assert!((a - b).abs() < 1e-8, "{a} vs {b}");
    }

    #[test]
    fn likelihood_matches_integral_form() {
        // L = C·[(α+T)^-(r+x)(β+T)^-s + s ∫_{tₓ}^{T} (α+τ)^-(r+x) (β+τ)^-(s+1) dτ]
        for m in [PUBLISHED, ParetoNbd::new(0.9, 2.0, 1.4, 40.0).unwrap()] {
            for sm in [
                RfmSummary::new(4, 12.0, 38.0),
                RfmSummary::new(0, 0.0, 20.0),
            ] {
                let x = f64::from(sm.frequency);
                let integral = gauss_legendre_integral(sm.recency, sm.age, |tau| {
                    (m.alpha + tau).powf(-(m.r + x)) * (m.beta + tau).powf(-(m.s + 1.0))
                });
                let l = (m.alpha + sm.age).powf(-(m.r + x)) * (m.beta + sm.age).powf(-m.s)
                    + m.s * integral;
                let want = ln_gamma(m.r + x) - ln_gamma(m.r)
                    + m.r * m.alpha.ln()
                    + m.s * m.beta.ln()
                    + l.ln();
                let got = m.customer_log_likelihood(&sm).unwrap();
                assert!((got - want).abs() < 1e-9, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data = vec![
            RfmSummary::new(0, 0.0, 38.86),
            RfmSummary::new(2, 30.43, 38.86),
            RfmSummary::new(7, 29.43, 35.0),
            RfmSummary::new(1, 1.0, 20.0),
            RfmSummary::new(3, 20.0, 20.0),
        ];
        let agg = Aggregated::new(&data).unwrap();
        let obj = Likelihood { agg: &agg };
        // α > β, α < β, and scales far apart (2F1 argument close to 1).
        for p in [
            [-0.6, 2.4, -0.5, 2.1],
            [-0.6, 2.0, 0.3, 2.9],
            [0.2, 3.0, -0.3, -4.0],
        ] {
            let (_, g) = obj.value_grad(&p).unwrap();
            for i in 0..4 {
                let h = 1e-6;
                let mut hi = p;
                hi[i] += h;
                let mut lo = p;
                lo[i] -= h;
                let fd =
                    (obj.value_grad(&hi).unwrap().0 - obj.value_grad(&lo).unwrap().0) / (2.0 * h);
                assert!(
                    (fd - g[i]).abs() < 1e-6,
                    "{p:?} param {i}: {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn purchase_distribution_is_consistent() {
        let total: f64 = (0..300)
            .map(|n| PUBLISHED.prob_purchases(39.0, n).unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-8, "{total}");
        let mean: f64 = (0..1500)
            .map(|n| f64::from(n) * PUBLISHED.prob_purchases(39.0, n).unwrap())
            .sum();
        let e = PUBLISHED.expected_purchases_new(39.0).unwrap();
        assert!((mean - e).abs() < 1e-6 * e, "{mean} vs {e}");
    }

    #[test]
    fn s_equal_to_one_is_continuous() {
        let sm = RfmSummary::new(2, 5.0, 20.0);
        let at = ParetoNbd::new(0.5, 5.0, 1.0, 8.0).unwrap();
        let near = ParetoNbd::new(0.5, 5.0, 1.0 + 1e-7, 8.0).unwrap();
        let a = at.expected_purchases(&sm, 30.0).unwrap();
        let b = near.expected_purchases(&sm, 30.0).unwrap();
        assert!((a - b).abs() < 1e-6 * a);
    }
}
