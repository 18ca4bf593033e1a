//! Match weights, posterior probabilities, thresholds and decisions.
//!
//! Exists to turn estimated m/u probabilities into something a person and the identity
//! layer can act on. Each field level carries the weight `log2(m / u)`: positive when the
//! level is more likely among matches, negative otherwise, 0 for missing values. A pair's
//! total weight is the sum over fields; adding the prior log-odds `log2(λ / (1 - λ))`
//! gives the log-odds of a match, hence the posterior probability. Two thresholds on the
//! total weight split pairs into match (merge), review and non-match.

use serde::{Deserialize, Serialize};

use crate::compare::{FieldComparison, Level, MISSING_LEVEL};
use crate::em::Parameters;
use crate::error::{LinkageError, Result};

/// A fitted Fellegi–Sunter model: the comparisons and their estimated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    comparisons: Vec<FieldComparison>,
    parameters: Parameters,
    /// `weights[field][level] = log2(m / u)`.
    weights: Vec<Vec<f64>>,
}

impl Model {
    /// A model from comparisons and parameters (one m/u row per comparison, one entry
    /// per level).
    pub fn new(comparisons: Vec<FieldComparison>, parameters: Parameters) -> Result<Self> {
        let shape_ok = comparisons.len() == parameters.m.len()
            && comparisons.len() == parameters.u.len()
            && comparisons
                .iter()
                .zip(&parameters.m)
                .zip(&parameters.u)
                .all(|((c, m), u)| m.len() == c.levels() && u.len() == c.levels());
        if !shape_ok {
            return Err(LinkageError::InvalidOption {
                option: "parameters",
                reason: "m/u shape does not match the comparisons".into(),
            });
        }
        let weights = parameters
            .m
            .iter()
            .zip(&parameters.u)
            .map(|(m, u)| m.iter().zip(u).map(|(m, u)| (m / u).log2()).collect())
            .collect();
        Ok(Self {
            comparisons,
            parameters,
            weights,
        })
    }

    /// The comparisons, in comparison-vector order.
    pub fn comparisons(&self) -> &[FieldComparison] {
        &self.comparisons
    }

    /// The estimated parameters.
    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    /// Weight `log2(m / u)` of `level` for comparison `field` (0 for missing).
    pub fn weight(&self, field: usize, level: Level) -> f64 {
        match level {
            Level::Missing => 0.0,
            Level::Agreement(l) => self.weights[field][usize::from(l)],
        }
    }

    /// Prior log-odds of a match, `log2(λ / (1 - λ))`.
    pub fn prior_weight(&self) -> f64 {
        let l = self.parameters.match_prior;
        (l / (1.0 - l)).log2()
    }

    pub(crate) fn total_weight_codes(&self, codes: &[u8]) -> f64 {
        codes
            .iter()
            .zip(&self.weights)
            .map(|(&c, w)| {
                if c == MISSING_LEVEL {
                    0.0
                } else {
                    w[usize::from(c)]
                }
            })
            .sum()
    }

    /// Total match weight of a comparison vector.
    pub fn total_weight(&self, vector: &[Level]) -> f64 {
        vector
            .iter()
            .enumerate()
            .map(|(f, &l)| self.weight(f, l))
            .sum()
    }

    /// Posterior probability of a match for a total weight.
    pub fn probability(&self, total_weight: f64) -> f64 {
        let log_odds = total_weight + self.prior_weight();
        1.0 / (1.0 + (-log_odds).exp2())
    }

    /// The total weight at which the posterior match probability equals `probability`.
    pub fn weight_for_probability(&self, probability: f64) -> Result<f64> {
        if !(probability > 0.0 && probability < 1.0) {
            return Err(LinkageError::InvalidOption {
                option: "probability",
                reason: "must be in (0, 1)".into(),
            });
        }
        Ok((probability / (1.0 - probability)).log2() - self.prior_weight())
    }

    /// Resolves a threshold policy into weight thresholds for this model.
    pub fn thresholds(&self, policy: &ThresholdPolicy) -> Result<Thresholds> {
        let t = match *policy {
            ThresholdPolicy::Weights { upper, lower } => Thresholds { upper, lower },
            ThresholdPolicy::Posterior {
                match_probability,
                review_probability,
            } => Thresholds {
                upper: self.weight_for_probability(match_probability)?,
                lower: self.weight_for_probability(review_probability)?,
            },
        };
        if t.lower > t.upper || !t.lower.is_finite() || !t.upper.is_finite() {
            return Err(LinkageError::InvalidOption {
                option: "thresholds",
                reason: format!("lower {} must not exceed upper {}", t.lower, t.upper),
            });
        }
        Ok(t)
    }
}

/// How the two thresholds are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ThresholdPolicy {
    /// Fixed total-weight thresholds.
    Weights {
        /// At or above: match.
        upper: f64,
        /// At or above (and below `upper`): review.
        lower: f64,
    },
    /// Thresholds where the posterior match probability reaches these values, so that
    /// they adapt to the estimated prior.
    Posterior {
        /// At or above: match.
        match_probability: f64,
        /// At or above (and below the match probability): review.
        review_probability: f64,
    },
}

impl Default for ThresholdPolicy {
    fn default() -> Self {
        ThresholdPolicy::Posterior {
            match_probability: 0.9,
            review_probability: 0.1,
        }
    }
}

/// Resolved total-weight thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: match.
    pub upper: f64,
    /// At or above (and below `upper`): review.
    pub lower: f64,
}

impl Thresholds {
    /// Decision for a total weight.
    pub fn decide(&self, total_weight: f64) -> Decision {
        if total_weight >= self.upper {
            Decision::Match
        } else if total_weight >= self.lower {
            Decision::Review
        } else {
            Decision::NonMatch
        }
    }
}

/// What to do with a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Same entity: merge.
    Match,
    /// Uncertain: a person should look.
    Review,
    /// Different entities.
    NonMatch,
}

/// The evidence one field gave for one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldEvidence {
    /// Field name.
    pub field: String,
    /// Normalised value on the left (or only) side.
    pub left_value: Option<String>,
    /// Normalised value on the right side.
    pub right_value: Option<String>,
    /// Agreement level.
    pub level: Level,
    /// Readable level, e.g. `"exact"`, `"similarity >= 0.94"`, `"missing"`.
    pub level_label: String,
    /// P(level | match), absent for missing values.
    pub m: Option<f64>,
    /// P(level | non-match), absent for missing values.
    pub u: Option<f64>,
    /// `log2(m / u)`, 0 for missing values.
    pub weight: f64,
}

/// Why a pair was (or was not) merged: what the identity layer stores with a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairExplanation {
    /// External id of the left record.
    pub left_id: String,
    /// External id of the right record.
    pub right_id: String,
    /// Per-field evidence, in comparison order (this is the comparison vector).
    pub fields: Vec<FieldEvidence>,
    /// Prior log-odds `log2(λ / (1 - λ))`.
    pub prior_weight: f64,
    /// Sum of the field weights.
    pub total_weight: f64,
    /// Posterior probability of a match.
    pub match_probability: f64,
    /// Thresholds in force.
    pub thresholds: Thresholds,
    /// Decision.
    pub decision: Decision,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::FieldComparison;

    fn model() -> Model {
        let params = Parameters {
            match_prior: 0.2,
            m: vec![vec![0.9, 0.1]],
            u: vec![vec![0.1, 0.9]],
            iterations: 1,
            converged: true,
            log_likelihood: 0.0,
        };
        Model::new(vec![FieldComparison::exact("a")], params).unwrap()
    }

    #[test]
    fn weights_and_posterior() {
        let m = model();
        assert!((m.weight(0, Level::Agreement(0)) - 9f64.log2()).abs() < 1e-12);
        assert!((m.weight(0, Level::Agreement(1)) + 9f64.log2()).abs() < 1e-12);
        assert_eq!(m.weight(0, Level::Missing), 0.0);
        // Prior odds 1:4, likelihood ratio 9 → posterior 9/13.
        let w = m.total_weight(&[Level::Agreement(0)]);
        assert!((m.probability(w) - 9.0 / 13.0).abs() < 1e-12);
        // Missing: posterior equals the prior.
        assert!((m.probability(0.0) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn posterior_thresholds_round_trip() {
        let m = model();
        let t = m
            .thresholds(&ThresholdPolicy::Posterior {
                match_probability: 0.9,
                review_probability: 0.5,
            })
            .unwrap();
        assert!((m.probability(t.upper) - 0.9).abs() < 1e-12);
        assert!((m.probability(t.lower) - 0.5).abs() < 1e-12);
        assert_eq!(t.decide(t.upper), Decision::Match);
        assert_eq!(t.decide(t.lower), Decision::Review);
        assert_eq!(t.decide(t.lower - 0.1), Decision::NonMatch);
        assert!(
            m.thresholds(&ThresholdPolicy::Weights {
                upper: 1.0,
                lower: 2.0
            })
            .is_err()
        );
    }

    #[test]
    fn shape_is_checked() {
        let params = Parameters {
            match_prior: 0.2,
            m: vec![vec![0.9, 0.1]],
            u: vec![vec![0.1, 0.9]],
            iterations: 1,
            converged: true,
            log_likelihood: 0.0,
        };
        let c = FieldComparison::jaro_winkler("a", &[1.0, 0.9]);
        assert!(Model::new(vec![c], params).is_err());
    }
}
