//! Typed errors for the customer-value models.
//!
//! Every public function of [`crate::clv`] that can be handed bad data returns one of these
//! instead of panicking, so a caller fitting on live data can report *which* row or argument
//! was wrong.

/// What went wrong while preparing data, fitting a model or predicting from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClvError {
    /// There was nothing to fit on (no customers, or all weights zero).
    #[error("no customers to fit on")]
    EmptyData,
    /// Gamma-Gamma needs customers with at least one repeat purchase and a positive spend.
    #[error("no repeat buyers with a positive monetary value")]
    NoRepeatBuyers,
    /// One RFM summary is not valid (`index` is its position in the input slice).
    #[error("customer summary #{index} is invalid: {reason}")]
    InvalidSummary {
        /// Position of the offending summary in the input.
        index: usize,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// One transaction is not valid (`index` is its position in the input slice).
    #[error("transaction #{index} is invalid: {reason}")]
    InvalidTransaction {
        /// Position of the offending transaction in the input.
        index: usize,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A model parameter is out of its domain (all must be finite and positive).
    #[error("parameter `{name}` must be finite and > 0, got {value}")]
    InvalidParameter {
        /// Parameter name as in the papers (`r`, `alpha`, …).
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A function argument (horizon, discount rate, split date, …) is out of its domain.
    #[error("argument `{name}` is invalid: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The optimiser stopped before reaching a stationary point.
    #[error(
        "maximum-likelihood fit did not converge after {iterations} iterations (gradient norm {gradient_norm:.3e})"
    )]
    NonConvergence {
        /// Iterations performed.
        iterations: u64,
        /// Norm of the gradient of the mean negative log-likelihood at the last point.
        gradient_norm: f64,
    },
    /// A special function could not be evaluated to full precision.
    #[error("numerical failure: {0}")]
    Numerical(&'static str),
}

/// Checks that a model parameter is finite and strictly positive.
pub(crate) fn check_param(name: &'static str, value: f64) -> Result<(), ClvError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ClvError::InvalidParameter { name, value })
    }
}

/// Checks that a time horizon is finite and non-negative.
pub(crate) fn check_horizon(name: &'static str, t: f64) -> Result<(), ClvError> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(ClvError::InvalidArgument {
            name,
            reason: "must be finite and >= 0",
        })
    }
}
