//! Rapport's wire contract: the request and response types of the tracking and REST APIs,
//! the error codes with their HTTP statuses, and the time format on the wire. The server
//! answers with these types, the CLI and the importer read them, the tests assert on them,
//! and the OpenAPI document (`GET /openapi.json`) is generated from them, so that the four
//! cannot drift apart.
//!
//! Types here are data only: no I/O, no storage, no HTTP framework. Request types refuse
//! unknown fields (`deny_unknown_fields`), so a misspelt option is an error, never ignored.

pub mod audiences;
pub mod audit;
pub mod destinations;
pub mod error;
pub mod events;
pub mod health;
pub mod identity;
pub mod journeys;
pub mod keys;
pub mod overview;
pub mod page;
pub mod pipeline;
pub mod privacy;
pub mod profiles;
pub mod sources;
pub mod time;
pub mod tracking;
pub mod tracking_plans;
pub mod value;

pub use error::{Code, ErrorBody, ErrorEnvelope};
pub use page::{List, Page};
