//! The pipeline around the pure core: durable ingest with group commit, log consumers
//! (the event indexer now; identity, segments and journeys follow the same pattern),
//! sources and API keys.

pub mod access;
pub mod audiences;
pub mod audit;
pub mod consent;
pub mod dead_letters;
pub mod destinations;
pub mod health;
pub mod identity;
pub mod indexer;
pub mod ingest;
pub mod journey_emitter;
pub mod journeys;
pub mod journeys_preview;
pub mod namespaces;
pub mod periodic;
pub mod personal_data;
pub mod privacy;
pub mod processor;
pub mod profiles;
pub mod sessions;
pub mod signal;
pub mod stats;
pub mod tracking_plans;
pub mod trait_changes;
pub mod value;

use rapport_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("storage failed: {0}")]
    Store(String),
    /// The store refused the data: retrying the same write fails again.
    #[error("the store refuses the data: {0}")]
    Rejected(String),
    /// Stored data could not be decoded: retrying does not help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("Rapport is shutting down")]
    ShuttingDown,
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Like `Invalid`, for fields named at run time (`identifiers[2].limit`).
    #[error("{field}: {message}")]
    InvalidAt { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The data cannot support what was asked (a model without purchases to fit on, churn
    /// without churned customers to learn from).
    #[error("{0}")]
    InsufficientData(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(m) => EngineError::Rejected(m),
            StoreError::Corrupt(m) => EngineError::Corrupt(m),
            e => EngineError::Store(e.to_string()),
        }
    }
}
