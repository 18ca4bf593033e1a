//! Unsupervised estimation of the m and u probabilities by expectation–maximisation.
//!
//! Exists because labelled matches are never available at import time. Under the
//! Fellegi–Sunter model a candidate pair is a match with prior probability λ, and each
//! field's agreement level is drawn independently from `m` (for matches) or `u` (for
//! non-matches). EM alternates between the posterior match probability of every
//! comparison vector (E-step) and the maximum-likelihood λ, m, u given those posteriors
//! (M-step). Identical comparison vectors are aggregated into [`PatternTable`] rows first,
//! so an iteration costs one pass over the few hundred distinct patterns, not over the
//! candidate pairs. Probabilities are clamped away from 0 and 1 so that every weight stays
//! finite.

use serde::{Deserialize, Serialize};

use crate::compare::MISSING_LEVEL;
use crate::error::{LinkageError, Result};

/// Options of the EM estimation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmOptions {
    /// Initial proportion of matches among the candidate pairs.
    pub initial_match_prior: f64,
    /// Initial m probability of the strongest agreement level (the rest is spread over
    /// the other levels, most of it on the next-strongest).
    pub initial_m_agree: f64,
    /// Stop after this many iterations even if not converged.
    pub max_iterations: usize,
    /// Converged when no parameter moves by more than this in one iteration.
    pub tolerance: f64,
    /// Every probability is kept within `[min_probability, 1 - min_probability]`.
    pub min_probability: f64,
}

impl Default for EmOptions {
    fn default() -> Self {
        Self {
            initial_match_prior: 0.05,
            initial_m_agree: 0.9,
            max_iterations: 500,
            tolerance: 1e-7,
            min_probability: 1e-5,
        }
    }
}

impl EmOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        let open_unit = |x: f64| x > 0.0 && x < 1.0;
        if !open_unit(self.initial_match_prior) {
            return Err(LinkageError::InvalidOption {
                option: "initial_match_prior",
                reason: "must be in (0, 1)".into(),
            });
        }
        if !open_unit(self.initial_m_agree) {
            return Err(LinkageError::InvalidOption {
                option: "initial_m_agree",
                reason: "must be in (0, 1)".into(),
            });
        }
        if !(self.min_probability > 0.0 && self.min_probability < 0.01) {
            return Err(LinkageError::InvalidOption {
                option: "min_probability",
                reason: "must be in (0, 0.01)".into(),
            });
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(LinkageError::InvalidOption {
                option: "tolerance",
                reason: "must be positive".into(),
            });
        }
        if self.max_iterations == 0 {
            return Err(LinkageError::InvalidOption {
                option: "max_iterations",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Distinct comparison vectors and how many candidate pairs have each.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternTable {
    levels_per_field: Vec<usize>,
    /// Flat rows of `levels_per_field.len()` level codes.
    patterns: Vec<u8>,
    counts: Vec<f64>,
}

impl PatternTable {
    /// An empty table for fields with these numbers of (non-missing) levels.
    pub fn new(levels_per_field: Vec<usize>) -> Self {
        Self {
            levels_per_field,
            patterns: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Adds a distinct pattern seen `count` times. `Level` codes are indices below the
    /// field's number of levels, or `None` for missing.
    pub fn push(&mut self, pattern: &[Option<u8>], count: f64) {
        assert_eq!(pattern.len(), self.levels_per_field.len(), "pattern arity");
        for (&level, &n) in pattern.iter().zip(&self.levels_per_field) {
            match level {
                Some(l) => {
                    assert!(usize::from(l) < n, "level out of range");
                    self.patterns.push(l);
                }
                None => self.patterns.push(MISSING_LEVEL),
            }
        }
        self.counts.push(count);
    }

    pub(crate) fn push_codes(&mut self, codes: &[u8], count: f64) {
        debug_assert_eq!(codes.len(), self.levels_per_field.len());
        self.patterns.extend_from_slice(codes);
        self.counts.push(count);
    }

    /// Number of distinct patterns.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn fields(&self) -> usize {
        self.levels_per_field.len()
    }

    fn rows(&self) -> impl Iterator<Item = (&[u8], f64)> {
        self.patterns
            .chunks_exact(self.fields().max(1))
            .zip(self.counts.iter().copied())
    }
}

/// Estimated Fellegi–Sunter parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// λ: proportion of matches among the candidate pairs.
    pub match_prior: f64,
    /// `m[field][level]`: P(level | match).
    pub m: Vec<Vec<f64>>,
    /// `u[field][level]`: P(level | non-match).
    pub u: Vec<Vec<f64>>,
    /// Iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached before the iteration cap.
    pub converged: bool,
    /// Log-likelihood (natural log) of the patterns under the final parameters.
    pub log_likelihood: f64,
}

fn clamp_and_normalise(p: &mut [f64], eps: f64) {
    let total: f64 = p.iter().sum();
    let n = p.len() as f64;
    for x in p.iter_mut() {
        *x = if total > 0.0 && total.is_finite() {
            *x / total
        } else {
            1.0 / n
        };
    }
    for x in p.iter_mut() {
        *x = x.clamp(eps, 1.0 - eps);
    }
    let total: f64 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= total;
    }
}

fn initial(levels: usize, agree: f64) -> Vec<f64> {
    // Strongest level gets `agree`; the rest decays geometrically down to disagreement.
    let mut p = vec![0.0; levels];
    p[0] = agree;
    let rest = 1.0 - agree;
    let mut share = 0.5;
    for (i, x) in p.iter_mut().enumerate().skip(1) {
        *x = if i + 1 == levels {
            rest * share * 2.0
        } else {
            rest * share
        };
        share /= 2.0;
    }
    p
}

/// Runs EM on the pattern table.
pub fn estimate(table: &PatternTable, options: &EmOptions) -> Result<Parameters> {
    options.validate()?;
    if table.is_empty() {
        return Err(LinkageError::NoCandidatePairs);
    }
    let fields = table.fields();
    let eps = options.min_probability;

    let mut lambda = options.initial_match_prior;
    let mut m: Vec<Vec<f64>> = table
        .levels_per_field
        .iter()
        .map(|&n| initial(n, options.initial_m_agree))
        .collect();
    // u starts from the observed level frequencies: most candidate pairs are non-matches.
    let mut u: Vec<Vec<f64>> = table
        .levels_per_field
        .iter()
        .map(|&n| vec![0.0; n])
        .collect();
    for (row, count) in table.rows() {
        for (f, &l) in row.iter().enumerate() {
            if l != MISSING_LEVEL {
                u[f][usize::from(l)] += count;
            }
        }
    }
    for p in m.iter_mut().chain(u.iter_mut()) {
        clamp_and_normalise(p, eps);
    }

    let mut posteriors = vec![0.0; table.len()];
    let mut iterations = 0;
    let mut converged = false;
    let mut log_likelihood = f64::NEG_INFINITY;
    while iterations < options.max_iterations {
        iterations += 1;
        // E-step.
        let (lm, lu) = (
            m.iter()
                .map(|p| p.iter().map(|x| x.ln()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            u.iter()
                .map(|p| p.iter().map(|x| x.ln()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        );
        log_likelihood = 0.0;
        for ((row, count), g) in table.rows().zip(posteriors.iter_mut()) {
            let mut a = lambda.ln();
            let mut b = (1.0 - lambda).ln();
            for (f, &l) in row.iter().enumerate() {
                if l != MISSING_LEVEL {
                    a += lm[f][usize::from(l)];
                    b += lu[f][usize::from(l)];
                }
            }
            let hi = a.max(b);
            let norm = hi + ((a - hi).exp() + (b - hi).exp()).ln();
            *g = (a - norm).exp();
            log_likelihood += count * norm;
        }
        // M-step.
        let mut new_m: Vec<Vec<f64>> = m.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut new_u: Vec<Vec<f64>> = u.iter().map(|p| vec![0.0; p.len()]).collect();
        let (mut matches, mut total) = (0.0, 0.0);
        for ((row, count), &g) in table.rows().zip(&posteriors) {
            matches += count * g;
            total += count;
            for (f, &l) in row.iter().enumerate() {
                if l != MISSING_LEVEL {
                    new_m[f][usize::from(l)] += count * g;
                    new_u[f][usize::from(l)] += count * (1.0 - g);
                }
            }
        }
        let new_lambda = (matches / total).clamp(eps, 1.0 - eps);
        for p in new_m.iter_mut().chain(new_u.iter_mut()) {
            clamp_and_normalise(p, eps);
        }
        let mut delta = (new_lambda - lambda).abs();
        for (old, new) in m.iter().chain(&u).zip(new_m.iter().chain(&new_u)) {
            for (a, b) in old.iter().zip(new) {
                delta = delta.max((a - b).abs());
            }
        }
        lambda = new_lambda;
        m = new_m;
        u = new_u;
        if delta < options.tolerance {
            converged = true;
            break;
        }
    }
    debug_assert_eq!(m.len(), fields);

    // EM is symmetric in the two classes; make sure "match" is the class that agrees.
    let evidence: f64 = m.iter().zip(&u).map(|(m, u)| (m[0] / u[0]).ln()).sum();
    if evidence < 0.0 {
        std::mem::swap(&mut m, &mut u);
        lambda = 1.0 - lambda;
    }
    Ok(Parameters {
        match_prior: lambda,
        m,
        u,
        iterations,
        converged,
        log_likelihood,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well-separated classes: EM must recover their proportions and agreement rates.
    #[test]
    fn recovers_a_clear_mixture() {
        let mut t = PatternTable::new(vec![2, 2, 2]);
        // 100 matches agreeing on all three fields, 10 matches disagreeing on one.
        t.push(&[Some(0), Some(0), Some(0)], 100.0);
        t.push(&[Some(1), Some(0), Some(0)], 5.0);
        t.push(&[Some(0), Some(1), Some(0)], 5.0);
        // 1000 non-matches disagreeing on all, 60 agreeing on one.
        t.push(&[Some(1), Some(1), Some(1)], 1000.0);
        t.push(&[Some(0), Some(1), Some(1)], 20.0);
        t.push(&[Some(1), Some(0), Some(1)], 20.0);
        t.push(&[Some(1), Some(1), Some(0)], 20.0);
        t.push(&[None, Some(1), Some(1)], 5.0);
        let p = estimate(&t, &EmOptions::default()).unwrap();
        assert!(p.converged);
        assert!(
            (p.match_prior - 110.0 / 1175.0).abs() < 0.01,
            "{}",
            p.match_prior
        );
        for f in 0..3 {
            assert!(p.m[f][0] > 0.85, "m {:?}", p.m);
            assert!(p.u[f][0] < 0.05, "u {:?}", p.u);
        }
    }

    #[test]
    fn empty_table_is_an_error() {
        let t = PatternTable::new(vec![2]);
        assert_eq!(
            estimate(&t, &EmOptions::default()),
            Err(LinkageError::NoCandidatePairs)
        );
    }

    #[test]
    fn invalid_options() {
        let mut t = PatternTable::new(vec![2]);
        t.push(&[Some(0)], 1.0);
        let o = EmOptions {
            min_probability: 0.0,
            ..EmOptions::default()
        };
        assert!(estimate(&t, &o).is_err());
    }

    #[test]
    fn initial_values_sum_to_one() {
        for n in 2..8 {
            let p = initial(n, 0.9);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
            assert!(p.iter().all(|&x| x > 0.0));
        }
    }
}
