//! Customer-value models as pure numerics: lifetime value and P(alive), churn risk, health
//! scores, survey metrics, earned growth and the distribution of scores. No I/O, no clock: data in, numbers out.

pub mod churn;
pub mod clv;
pub mod distribution;
pub mod health;
pub mod survey;
