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

use super::error::{ClvError, check_horizon, check_param};
use super::optim::{FitOptions, Objective, minimize};
use super::rfm::{Aggregated, RfmSummary};
use super::special::{hyp2f1, ln_gamma, log_add_exp, log1m_exp};
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

    /// Total log-likelihood of `data` under these parameters.
    pub fn log_likelihood(&self, data: &[RfmSummary]) -> Result<f64, ClvError> {
        let agg = Aggregated::new(data)?;
        let p = [self.r.ln(), self.alpha.ln(), self.s.ln(), self.beta.ln()];
        Ok(-Likelihood { agg: &agg }.value(&p)? * agg.total_weight)
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
    fn p_alive(&self, sm: &RfmSummary) -> Result<f64, ClvError> {
        sm.validate(0)?;
        let p = self.parts(sm)?;
        Ok(1.0 / (1.0 + (p.ln_died - p.ln_alive).exp()))
    }

    fn expected_purchases(&self, sm: &RfmSummary, t: f64) -> Result<f64, ClvError> {
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

/// Mean negative log-likelihood over (ln r, ln α, ln s, ln β).
struct Likelihood<'a> {
    agg: &'a Aggregated,
}

impl Likelihood<'_> {
    fn value(&self, p: &[f64]) -> Result<f64, ClvError> {
        let m = ParetoNbd::new(p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp())?;
        let agg = self.agg;
        let lg_r = ln_gamma(m.r);
        let head = m.r * m.alpha.ln() + m.s * m.beta.ln() - lg_r;
        let mut memo: HashMap<(u32, u32), f64> = HashMap::with_capacity(agg.rows.len());
        let mut total = 0.0;
        let mut last_xi = u32::MAX;
        let mut lg_rx = 0.0;
        for row in &agg.rows {
            let x = f64::from(agg.xs[row.xi as usize]);
            if row.xi != last_xi {
                last_xi = row.xi;
                lg_rx = ln_gamma(m.r + x);
            }
            let mut term = |ti: u32| -> Result<f64, ClvError> {
                if let Some(&v) = memo.get(&(row.xi, ti)) {
                    return Ok(v);
                }
                let v = m.ln_a0_term(x, agg.times[ti as usize])?;
                memo.insert((row.xi, ti), v);
                Ok(v)
            };
            let ln_a_tx = term(row.txi)?;
            let ln_a_t = term(row.ti)?;
            let parts = m.parts_with(x, ln_a_tx, ln_a_t, agg.times[row.ti as usize]);
            total += row.w * (lg_rx + head + log_add_exp(parts.ln_alive, parts.ln_died));
        }
        let v = -total / agg.total_weight;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(ClvError::Numerical(
                "Pareto/NBD log-likelihood is not finite",
            ))
        }
    }
}

impl Objective for Likelihood<'_> {
    /// Value and central-difference gradient (the ₂F₁ terms have no cheap closed-form
    /// derivative in all four parameters).
    fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
        const H: f64 = 1e-5;
        let v = self.value(p)?;
        let mut g = vec![0.0; p.len()];
        let mut q = p.to_vec();
        for i in 0..p.len() {
            q[i] = p[i] + H;
            let hi = self.value(&q)?;
            q[i] = p[i] - H;
            let lo = self.value(&q)?;
            q[i] = p[i];
            g[i] = (hi - lo) / (2.0 * H);
        }
        Ok((v, g))
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
