//! The Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value
//! curves for customer base analysis"; Fader & Hardie's note "The Gamma-Gamma model of
//! monetary value").
//!
//! Each transaction value is Gamma(p, ν) with a customer-specific ν ~ Gamma(q, v). Given the
//! mean value m̄ of a customer's x repeat purchases, the model shrinks m̄ towards the
//! population mean with a weight that grows with x. Purchase-count models say *how often*;
//! this says *how much*, and CLV multiplies the two (the model assumes spend is independent of
//! purchase frequency, which is worth checking on each data set).

use super::error::{ClvError, check_param};
use super::optim::{FitOptions, Objective, minimize};
use super::rfm::RfmSummary;
use super::special::{digamma, ln_gamma};

/// Fitted (or given) Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    /// Shape of each transaction value.
    pub p: f64,
    /// Shape of the Gamma distribution of the customer-level rate ν.
    pub q: f64,
    /// Scale of the Gamma distribution of ν (in money units).
    pub v: f64,
}

/// Result of [`GammaGamma::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaFit {
    /// Maximum-likelihood parameters.
    pub params: GammaGamma,
    /// Total log-likelihood at the optimum.
    pub log_likelihood: f64,
    /// Number of repeat buyers the fit used.
    pub customers: usize,
    /// L-BFGS iterations used.
    pub iterations: u64,
}

impl GammaGamma {
    /// Checks that every parameter is finite and positive.
    pub fn new(p: f64, q: f64, v: f64) -> Result<Self, ClvError> {
        check_param("p", p)?;
        check_param("q", q)?;
        check_param("v", v)?;
        Ok(Self { p, q, v })
    }

    /// Checks the parameters (useful when the struct was built field by field).
    pub fn validate(&self) -> Result<(), ClvError> {
        Self::new(self.p, self.q, self.v).map(|_| ())
    }

    /// Maximum-likelihood fit on the customers with at least one repeat purchase and a positive
    /// mean repeat value (the others carry no information about spend and are skipped).
    pub fn fit(data: &[RfmSummary], opts: &FitOptions) -> Result<GammaGammaFit, ClvError> {
        let rows = Rows::new(data)?;
        let mean = rows.items.iter().map(|r| r.1).sum::<f64>() / rows.items.len() as f64;
        // p = q = 2 puts the prior mean p·v/(q−1) at 2v: start there from the observed mean.
        let start = vec![2f64.ln(), 2f64.ln(), (mean / 2.0).max(1e-9).ln()];
        let m = minimize(&rows, start, opts)?;
        let params = Self::new(m.params[0].exp(), m.params[1].exp(), m.params[2].exp())?;
        Ok(GammaGammaFit {
            params,
            log_likelihood: -m.value * rows.items.len() as f64,
            customers: rows.items.len(),
            iterations: m.iterations,
        })
    }

    /// Standard errors of (ln p, ln q, ln v) at these parameters on the repeat buyers of
    /// `data`; `None` when the likelihood is flat in some direction (spends that hardly vary
    /// between customers leave p and q undetermined).
    pub fn standard_errors(&self, data: &[RfmSummary]) -> Result<Option<Vec<f64>>, ClvError> {
        self.validate()?;
        let rows = Rows::new(data)?;
        let p = [self.p.ln(), self.q.ln(), self.v.ln()];
        super::optim::log_standard_errors(&rows, &p, rows.items.len() as f64)
    }

    /// Total log-likelihood of the repeat buyers in `data`.
    pub fn log_likelihood(&self, data: &[RfmSummary]) -> Result<f64, ClvError> {
        self.validate()?;
        let rows = Rows::new(data)?;
        let p = [self.p.ln(), self.q.ln(), self.v.ln()];
        Ok(-rows.value_grad(&p)?.0 * rows.items.len() as f64)
    }

    /// Population mean transaction value p·v/(q − 1); needs q > 1.
    pub fn population_mean(&self) -> Result<f64, ClvError> {
        self.validate()?;
        if self.q <= 1.0 {
            return Err(ClvError::InvalidArgument {
                name: "q",
                reason: "the mean spend is infinite when q <= 1",
            });
        }
        Ok(self.p * self.v / (self.q - 1.0))
    }

    /// Expected value of a customer's future transactions given their repeat purchases:
    /// (p(v + x·m̄))/(px + q − 1). Customers without repeat purchases get the population mean.
    pub fn expected_spend(&self, s: &RfmSummary) -> Result<f64, ClvError> {
        self.validate()?;
        s.validate(0)?;
        if s.frequency == 0 || s.monetary <= 0.0 {
            return self.population_mean();
        }
        let x = f64::from(s.frequency);
        let denominator = self.p * x + self.q - 1.0;
        if denominator <= 0.0 {
            return Err(ClvError::InvalidArgument {
                name: "q",
                reason: "p·x + q − 1 must be positive",
            });
        }
        Ok(self.p * (self.v + x * s.monetary) / denominator)
    }
}

/// The repeat buyers as (x, m̄) plus per-row constants.
struct Rows {
    /// (x, m̄, ln m̄, ln x)
    items: Vec<(f64, f64, f64, f64)>,
}

impl Rows {
    fn new(data: &[RfmSummary]) -> Result<Self, ClvError> {
        if data.is_empty() {
            return Err(ClvError::EmptyData);
        }
        let mut items = Vec::new();
        for (i, s) in data.iter().enumerate() {
            s.validate(i)?;
            if s.frequency > 0 && s.monetary > 0.0 {
                let x = f64::from(s.frequency);
                items.push((x, s.monetary, s.monetary.ln(), x.ln()));
            }
        }
        if items.is_empty() {
            return Err(ClvError::NoRepeatBuyers);
        }
        Ok(Self { items })
    }
}

impl Objective for Rows {
    fn value_grad(&self, params: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
        let (p, q, v) = (params[0].exp(), params[1].exp(), params[2].exp());
        for (name, val) in [("p", p), ("q", q), ("v", v)] {
            check_param(name, val)?;
        }
        let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let mut acc = [0.0f64; 4];
        for &(x, m, ln_m, ln_x) in &self.items {
            let px = p * x;
            let ln_denom = (v + x * m).ln();
            let (dg_pxq, dg_px) = (digamma(px + q), digamma(px));
            acc[0] +=
                ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_v + (px - 1.0) * ln_m + px * ln_x
                    - (px + q) * ln_denom;
            acc[1] += x * (dg_pxq - dg_px + ln_m + ln_x - ln_denom);
            acc[2] += dg_pxq - dg_q + ln_v - ln_denom;
            acc[3] += q / v - (px + q) / (v + x * m);
        }
        let n = self.items.len() as f64;
        let value = -acc[0] / n;
        if !value.is_finite() {
            return Err(ClvError::Numerical(
                "Gamma-Gamma log-likelihood is not finite",
            ));
        }
        Ok((
            value,
            vec![-acc[1] * p / n, -acc[2] * q / n, -acc[3] * v / n],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let data = vec![
            RfmSummary::new(1, 1.0, 2.0).with_monetary(10.0),
            RfmSummary::new(3, 1.0, 2.0).with_monetary(40.0),
            RfmSummary::new(0, 0.0, 2.0),
        ];
        let rows = Rows::new(&data).unwrap();
        let p = [1.5, 1.1, 2.5];
        let (_, g) = rows.value_grad(&p).unwrap();
        for i in 0..3 {
            let h = 1e-6;
            let mut hi = p;
            hi[i] += h;
            let mut lo = p;
            lo[i] -= h;
            let fd =
                (rows.value_grad(&hi).unwrap().0 - rows.value_grad(&lo).unwrap().0) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7, "{i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn spend_shrinks_towards_population_mean() {
        let gg = GammaGamma::new(6.25, 3.74, 15.44).unwrap();
        let pop = gg.population_mean().unwrap();
        let one = gg
            .expected_spend(&RfmSummary::new(1, 1.0, 2.0).with_monetary(100.0))
            .unwrap();
        let many = gg
            .expected_spend(&RfmSummary::new(20, 1.0, 2.0).with_monetary(100.0))
            .unwrap();
        assert!(pop < one && one < many && many < 100.0);
        assert_eq!(
            gg.expected_spend(&RfmSummary::new(0, 0.0, 2.0)).unwrap(),
            pop
        );
        assert!(GammaGamma::fit(&[RfmSummary::new(0, 0.0, 1.0)], &FitOptions::default()).is_err());
    }
}
