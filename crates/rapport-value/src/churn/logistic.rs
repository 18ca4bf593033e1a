//! L2-regularised logistic regression fitted by Newton's method (IRLS) with step halving.
//!
//! Minimises `J(b, w) = Σᵢ [softplus(zᵢ) − yᵢ zᵢ] + (λ/2)‖w‖²` with `zᵢ = b + w·xᵢ`; the
//! intercept `b` is not penalised. Each iteration solves `H δ = g` by Cholesky, where
//! `g = Xᵀ(p − y) + λw` and `H = Xᵀ diag(p(1−p)) X + λI`, then halves the step until `J`
//! decreases. With `λ > 0` the objective is strictly convex, so this converges to the unique
//! optimum in a handful of iterations even when the classes are separable.

use serde::{Deserialize, Serialize};

use super::ChurnError;
use super::features::DesignMatrix;

/// Options of the logistic fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogisticConfig {
    /// L2 penalty λ on the (standardised) weights. Must be ≥ 0.
    pub l2: f64,
    /// Newton iterations at most.
    pub max_iterations: usize,
    /// Stop when the relative decrease of the objective falls below this.
    pub tolerance: f64,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            l2: 1.0,
            max_iterations: 100,
            tolerance: 1e-10,
        }
    }
}

/// A fitted logistic model over encoded features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    pub intercept: f64,
    pub weights: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
}

/// `ln(1 + eᶻ)` without overflow.
pub(crate) fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The logistic function, stable for large |z|.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl LogisticModel {
    /// Linear predictor `b + w·x` (log-odds).
    pub fn log_odds(&self, x: &[f64]) -> f64 {
        self.intercept + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()
    }

    /// Probability of the positive class.
    pub fn predict_proba(&self, x: &[f64]) -> f64 {
        sigmoid(self.log_odds(x))
    }
}

fn objective(x: &DesignMatrix, y: &[bool], beta: &[f64], l2: f64) -> f64 {
    let mut j = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        let z = linear(x.row(i), beta);
        j += softplus(z) - if yi { z } else { 0.0 };
    }
    j + 0.5 * l2 * beta[1..].iter().map(|w| w * w).sum::<f64>()
}

fn linear(row: &[f64], beta: &[f64]) -> f64 {
    beta[0] + row.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>()
}

/// Solves `A x = b` for symmetric positive-definite `A` (row-major, n×n) by Cholesky.
/// Returns `None` when `A` is not numerically positive-definite.
pub(crate) fn cholesky_solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    Some(x)
}

/// Fits the model. Errors: a label count that differs from the rows, no rows, a single
/// class, or an invalid configuration.
pub fn fit_logistic(
    x: &DesignMatrix,
    y: &[bool],
    config: &LogisticConfig,
) -> Result<LogisticModel, ChurnError> {
    if !(config.l2 >= 0.0 && config.l2.is_finite()) {
        return Err(ChurnError::InvalidConfig(format!(
            "l2 must be ≥ 0, got {}",
            config.l2
        )));
    }
    if config.tolerance.is_nan() || config.tolerance <= 0.0 {
        return Err(ChurnError::InvalidConfig("tolerance must be > 0".into()));
    }
    x.validate()?;
    if y.len() != x.n_rows {
        return Err(ChurnError::LengthMismatch {
            expected: x.n_rows,
            found: y.len(),
        });
    }
    if y.is_empty() {
        return Err(ChurnError::EmptyData);
    }
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 || pos == y.len() {
        return Err(ChurnError::SingleClass);
    }
    let p = x.n_cols;
    let n = p + 1;
    let mut beta = vec![0.0; n];
    // Start at the base rate: the optimum with all weights at zero.
    let rate = pos as f64 / y.len() as f64;
    beta[0] = (rate / (1.0 - rate)).ln();
    let mut j_old = objective(x, y, &beta, config.l2);
    let mut converged = false;
    let mut iterations = 0;
    let mut grad = vec![0.0; n];
    let mut hess = vec![0.0; n * n];
    let mut xi = vec![0.0; n];
    while iterations < config.max_iterations {
        iterations += 1;
        grad.iter_mut().for_each(|g| *g = 0.0);
        hess.iter_mut().for_each(|h| *h = 0.0);
        for (i, &yi) in y.iter().enumerate() {
            xi[0] = 1.0;
            xi[1..].copy_from_slice(x.row(i));
            let mu = sigmoid(linear(x.row(i), &beta));
            let r = mu - if yi { 1.0 } else { 0.0 };
            let w = (mu * (1.0 - mu)).max(1e-12);
            for a in 0..n {
                grad[a] += r * xi[a];
                let wa = w * xi[a];
                if wa != 0.0 {
                    // Lower triangle only; mirrored below.
                    for b in 0..=a {
                        hess[a * n + b] += wa * xi[b];
                    }
                }
            }
        }
        for a in 1..n {
            grad[a] += config.l2 * beta[a];
            hess[a * n + a] += config.l2;
        }
        for a in 0..n {
            for b in 0..a {
                hess[b * n + a] = hess[a * n + b];
            }
        }
        // A tiny ridge keeps the solve defined for λ = 0 with collinear features.
        let mut delta = None;
        let mut jitter = 0.0;
        for _ in 0..8 {
            if jitter > 0.0 {
                for a in 0..n {
                    hess[a * n + a] += jitter;
                }
            }
            delta = cholesky_solve(&hess, &grad, n);
            if delta.is_some() {
                break;
            }
            jitter = if jitter == 0.0 { 1e-8 } else { jitter * 100.0 };
        }
        let Some(delta) = delta else {
            return Err(ChurnError::NumericalFailure(
                "Hessian is not positive-definite".into(),
            ));
        };
        let mut step = 1.0;
        let mut accepted = false;
        let mut j_new = j_old;
        let mut candidate = beta.clone();
        for _ in 0..40 {
            for a in 0..n {
                candidate[a] = beta[a] - step * delta[a];
            }
            j_new = objective(x, y, &candidate, config.l2);
            if j_new.is_finite() && j_new <= j_old {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            // No descent possible at machine precision: we are at the optimum.
            converged = true;
            break;
        }
        beta.copy_from_slice(&candidate);
        let decrease = j_old - j_new;
        j_old = j_new;
        let max_step = delta.iter().fold(0.0f64, |m, d| m.max((step * d).abs()));
        if decrease <= config.tolerance * (j_old.abs() + 1.0) || max_step < 1e-12 {
            converged = true;
            break;
        }
    }
    Ok(LogisticModel {
        intercept: beta[0],
        weights: beta[1..].to_vec(),
        iterations,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_are_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
        assert!((softplus(800.0) - 800.0).abs() < 1e-9);
        assert!(softplus(-800.0) >= 0.0);
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn one_feature_gradient_is_zero_at_optimum() {
        let xs = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0];
        let ys = [false, false, true, false, true, false, true, true];
        let x = DesignMatrix {
            n_rows: 8,
            n_cols: 1,
            data: xs.to_vec(),
        };
        let cfg = LogisticConfig {
            l2: 0.5,
            ..Default::default()
        };
        let m = fit_logistic(&x, &ys, &cfg).unwrap();
        assert!(m.converged);
        let (mut g0, mut g1) = (0.0, cfg.l2 * m.weights[0]);
        for (xi, yi) in xs.iter().zip(ys) {
            let r = m.predict_proba(&[*xi]) - if yi { 1.0 } else { 0.0 };
            g0 += r;
            g1 += r * xi;
        }
        assert!(g0.abs() < 1e-8 && g1.abs() < 1e-8, "{g0} {g1}");
        assert!(m.weights[0] > 0.0);
    }

    #[test]
    fn separable_data_stays_finite_with_penalty() {
        let x = DesignMatrix {
            n_rows: 4,
            n_cols: 1,
            data: vec![-2.0, -1.0, 1.0, 2.0],
        };
        let m = fit_logistic(&x, &[false, false, true, true], &LogisticConfig::default()).unwrap();
        assert!(m.weights[0].is_finite() && m.weights[0] > 0.0);
        assert!(m.converged);
    }

    #[test]
    fn rejects_bad_input() {
        let x = DesignMatrix {
            n_rows: 2,
            n_cols: 1,
            data: vec![0.0, 1.0],
        };
        let cfg = LogisticConfig::default();
        assert_eq!(
            fit_logistic(&x, &[true, true], &cfg),
            Err(ChurnError::SingleClass)
        );
        assert!(fit_logistic(&x, &[true], &cfg).is_err());
        let bad = LogisticConfig {
            l2: -1.0,
            ..Default::default()
        };
        assert!(fit_logistic(&x, &[true, false], &bad).is_err());
        let ragged = DesignMatrix {
            n_rows: 2,
            n_cols: 2,
            data: vec![0.0, 1.0],
        };
        assert!(matches!(
            fit_logistic(&ragged, &[true, false], &cfg),
            Err(ChurnError::LengthMismatch { .. })
        ));
        let nan = DesignMatrix {
            n_rows: 2,
            n_cols: 1,
            data: vec![0.0, f64::NAN],
        };
        assert!(matches!(
            fit_logistic(&nan, &[true, false], &cfg),
            Err(ChurnError::NonFinite(_))
        ));
    }
}
