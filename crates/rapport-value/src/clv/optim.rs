//! Maximum-likelihood driver: minimises a mean negative log-likelihood over log-parameters
//! with `argmin`'s L-BFGS and a Moré–Thuente line search.
//!
//! Kept separate so that the three models share one convergence policy and one error mapping.
//! The objective returns value and gradient together; a one-entry cache stops the optimiser's
//! separate cost and gradient calls from evaluating the likelihood twice at the same point.

use std::sync::Mutex;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use super::error::ClvError;

/// Options for the maximum-likelihood fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Iteration cap for L-BFGS.
    pub max_iterations: u64,
    /// Stop when the gradient norm of the mean negative log-likelihood (per customer, with
    /// respect to the log-parameters) falls below this.
    pub gradient_tolerance: f64,
    /// A fit whose final gradient norm exceeds this is reported as
    /// [`ClvError::NonConvergence`].
    pub accept_gradient: f64,
    /// L2 penalty λ·Σθ² on the (untransformed) parameters, added to the mean negative
    /// log-likelihood, as the `penalizer_coef` of the `lifetimes` package. 0 (the default) is
    /// plain maximum likelihood; a small value (e.g. 0.001) stops parameters running off to
    /// infinity together (e.g. r and α when purchase rates hardly vary between customers).
    /// The reported log-likelihood never includes it.
    pub penalty: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            max_iterations: 500,
            gradient_tolerance: 1e-8,
            accept_gradient: 1e-5,
            penalty: 0.0,
        }
    }
}

/// A smooth objective over ℝⁿ (log-parameters).
pub(crate) trait Objective {
    /// Mean negative log-likelihood and its gradient.
    fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError>;
}

/// `inner` plus λ·Σ exp(2pᵢ), the L2 penalty on the parameters θᵢ = exp(pᵢ).
struct Penalized<'a, O> {
    inner: &'a O,
    lambda: f64,
}

impl<O: Objective> Objective for Penalized<'_, O> {
    fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
        let (mut v, mut g) = self.inner.value_grad(p)?;
        if self.lambda > 0.0 {
            for (gi, pi) in g.iter_mut().zip(p) {
                let sq = (2.0 * pi).exp();
                v += self.lambda * sq;
                *gi += 2.0 * self.lambda * sq;
            }
        }
        Ok((v, g))
    }
}

/// Result of a minimisation.
#[derive(Debug, Clone)]
pub(crate) struct Minimum {
    pub params: Vec<f64>,
    pub value: f64,
    pub iterations: u64,
}

type Cached = Option<(Vec<f64>, f64, Vec<f64>)>;

type Best = Mutex<Option<(f64, Vec<f64>)>>;

struct Problem<'a, O> {
    objective: &'a O,
    cache: Mutex<Cached>,
    /// Lowest value seen and where, kept even when a run is cut short.
    best: &'a Best,
}

impl<O: Objective> Problem<'_, O> {
    fn eval(&self, p: &[f64]) -> Result<(f64, Vec<f64>), argmin::core::Error> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cp, v, g)) = cache.as_ref()
            && cp.as_slice() == p
        {
            return Ok((*v, g.clone()));
        }
        let (v, g) = self.objective.value_grad(p)?;
        if !v.is_finite() || g.iter().any(|x| !x.is_finite()) {
            return Err(ClvError::Numerical("log-likelihood is not finite").into());
        }
        let mut best = self.best.lock().unwrap_or_else(|e| e.into_inner());
        if best.as_ref().is_none_or(|(bv, _)| v < *bv) {
            *best = Some((v, p.to_vec()));
        }
        *cache = Some((p.to_vec(), v, g.clone()));
        Ok((v, g))
    }
}

impl<O: Objective> CostFunction for Problem<'_, O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.eval(p)?.0)
    }
}

impl<O: Objective> Gradient for Problem<'_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p)?.1)
    }
}

fn norm(g: &[f64]) -> f64 {
    g.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// L-BFGS runs from the best point so far, when one stalls (its line search cannot make
/// progress, typically from rounding noise near the optimum) before the gradient is small.
const RESTARTS: usize = 3;

/// Minimises `objective` from `start`.
pub(crate) fn minimize<O: Objective>(
    raw: &O,
    start: Vec<f64>,
    opts: &FitOptions,
) -> Result<Minimum, ClvError> {
    if !(opts.gradient_tolerance >= 0.0 && opts.accept_gradient > 0.0) || opts.max_iterations == 0 {
        return Err(ClvError::InvalidArgument {
            name: "options",
            reason: "tolerances must be positive and max_iterations > 0",
        });
    }
    if !(opts.penalty.is_finite() && opts.penalty >= 0.0) {
        return Err(ClvError::InvalidArgument {
            name: "penalty",
            reason: "must be finite and >= 0",
        });
    }
    let objective = &Penalized {
        inner: raw,
        lambda: opts.penalty,
    };
    // Fail early, with the model's own error, if the start point cannot be evaluated.
    let (v0, _) = objective.value_grad(&start)?;
    // Stop when an iteration changes the objective by less than this: a few ulps of its value.
    let cost_tolerance = 1e-13 * v0.abs().max(1.0);
    let best_seen: Best = Mutex::new(None);
    let mut from = start;
    let mut iterations = 0;
    let mut last_gradient = f64::INFINITY;
    for _ in 0..RESTARTS {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 8)
            .with_tolerance_grad(opts.gradient_tolerance)
            .and_then(|s| s.with_tolerance_cost(cost_tolerance))
            .map_err(|_| ClvError::Numerical("invalid optimiser settings"))?;
        let budget = opts.max_iterations.saturating_sub(iterations);
        if budget == 0 {
            break;
        }
        // A failed run (e.g. a line-search step into a region where the likelihood cannot be
        // evaluated) still leaves its best point in `best_seen`.
        let problem = Problem {
            objective,
            cache: Mutex::new(None),
            best: &best_seen,
        };
        let run = Executor::new(problem, solver)
            .configure(|s| s.param(from.clone()).max_iters(budget))
            .timer(false)
            .run();
        if let Ok(r) = &run {
            iterations += r.state().get_iter();
        }
        let Some((_, best)) = best_seen.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            break;
        };
        let (_, grad) = objective.value_grad(&best)?;
        last_gradient = norm(&grad);
        if last_gradient <= opts.accept_gradient {
            return Ok(Minimum {
                value: raw.value_grad(&best)?.0,
                params: best,
                iterations,
            });
        }
        if run.is_err() && best == from {
            break;
        }
        from = best;
    }
    Err(ClvError::NonConvergence {
        iterations,
        gradient_norm: last_gradient,
    })
}

/// Standard errors of the log-parameters at a minimum `at` of the mean negative
/// log-likelihood of `n` customers: √diag((n·H)⁻¹), with H the Hessian taken by central
/// differences of the analytic gradient. The standard error of ln θ is, to first order, the
/// relative standard error of θ. `None` when H is not positive definite: in some direction
/// the likelihood is flat (or curved the wrong way), so the data do not determine the
/// parameters there.
#[allow(clippy::needless_range_loop)] // matrix algebra reads best with indices
pub(crate) fn log_standard_errors<O: Objective>(
    objective: &O,
    at: &[f64],
    n: f64,
) -> Result<Option<Vec<f64>>, ClvError> {
    let k = at.len();
    let mut h = vec![vec![0.0; k]; k];
    for j in 0..k {
        let step = 1e-4 * at[j].abs().max(1.0);
        let mut up = at.to_vec();
        up[j] += step;
        let mut down = at.to_vec();
        down[j] -= step;
        let (_, gu) = objective.value_grad(&up)?;
        let (_, gd) = objective.value_grad(&down)?;
        for i in 0..k {
            h[i][j] = (gu[i] - gd[i]) / (2.0 * step) * n;
        }
    }
    // Symmetrise, then invert through a Cholesky factor (which exists iff H is positive
    // definite).
    for i in 0..k {
        for j in 0..i {
            let m = 0.5 * (h[i][j] + h[j][i]);
            h[i][j] = m;
            h[j][i] = m;
        }
    }
    if h.iter().flatten().any(|x| !x.is_finite()) {
        return Ok(None);
    }
    let mut l = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|m| l[i][m] * l[j][m]).sum();
            if i == j {
                let d = h[i][i] - sum;
                // Relative to the diagonal's scale, so rounding noise is not curvature.
                if d.is_nan() || d <= 1e-12 * h[i][i].abs().max(1e-300) {
                    return Ok(None);
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (h[i][j] - sum) / l[j][j];
            }
        }
    }
    // diag(H⁻¹)ᵢ = Σⱼ (L⁻¹)ⱼᵢ²: solve L·y = eᵢ for every i.
    let mut inv_l = vec![vec![0.0; k]; k];
    for c in 0..k {
        for i in 0..k {
            let e = if i == c { 1.0 } else { 0.0 };
            let sum: f64 = (0..i).map(|m| l[i][m] * inv_l[m][c]).sum();
            inv_l[i][c] = (e - sum) / l[i][i];
        }
    }
    let se: Vec<f64> = (0..k)
        .map(|i| (0..k).map(|j| inv_l[j][i].powi(2)).sum::<f64>().sqrt())
        .collect();
    Ok(se.iter().all(|x| x.is_finite()).then_some(se))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quadratic;
    impl Objective for Quadratic {
        fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
            let v = (p[0] - 1.0).powi(2) + 10.0 * (p[1] + 2.0).powi(2);
            Ok((v, vec![2.0 * (p[0] - 1.0), 20.0 * (p[1] + 2.0)]))
        }
    }

    #[test]
    fn finds_minimum_of_quadratic() {
        let m = minimize(&Quadratic, vec![5.0, 5.0], &FitOptions::default()).unwrap();
        assert!((m.params[0] - 1.0).abs() < 1e-8);
        assert!((m.params[1] + 2.0).abs() < 1e-8);
    }

    #[test]
    fn penalty_pulls_towards_zero_and_is_not_reported() {
        let opts = FitOptions {
            penalty: 1.0,
            ..FitOptions::default()
        };
        let m = minimize(&Quadratic, vec![0.0, 0.0], &opts).unwrap();
        let plain = minimize(&Quadratic, vec![0.0, 0.0], &FitOptions::default()).unwrap();
        assert!(m.params[0] < plain.params[0]);
        assert_eq!(m.value, Quadratic.value_grad(&m.params).unwrap().0);
        let bad = FitOptions {
            penalty: -1.0,
            ..FitOptions::default()
        };
        assert!(minimize(&Quadratic, vec![0.0, 0.0], &bad).is_err());
    }

    #[test]
    fn standard_errors_of_a_quadratic_are_its_inverse_curvature() {
        // H = diag(2, 20) per customer; over 100 customers the variances are 1/200, 1/2000.
        let se = log_standard_errors(&Quadratic, &[1.0, -2.0], 100.0)
            .unwrap()
            .unwrap();
        assert!((se[0] - (1.0f64 / 200.0).sqrt()).abs() < 1e-6, "{se:?}");
        assert!((se[1] - (1.0f64 / 2000.0).sqrt()).abs() < 1e-6, "{se:?}");
        struct Flat;
        impl Objective for Flat {
            fn value_grad(&self, p: &[f64]) -> Result<(f64, Vec<f64>), ClvError> {
                Ok((p[0] * p[0], vec![2.0 * p[0], 0.0]))
            }
        }
        assert_eq!(log_standard_errors(&Flat, &[0.0, 3.0], 10.0).unwrap(), None);
    }

    #[test]
    fn iteration_cap_is_non_convergence() {
        let opts = FitOptions {
            max_iterations: 1,
            gradient_tolerance: 0.0,
            accept_gradient: 1e-12,
            ..FitOptions::default()
        };
        assert!(matches!(
            minimize(&Quadratic, vec![50.0, -50.0], &opts),
            Err(ClvError::NonConvergence { .. })
        ));
    }
}
