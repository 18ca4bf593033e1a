//! The Segment HTTP Tracking API (`/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`,
//! `/v1/group`, `/v1/alias`, `/v1/batch`, `/v1/import`, and the short `/v1/t|i|p|s|g|a|b`
//! that analytics.js 2.0 and the mobile SDKs use), wire-compatible so that existing
//! Segment and RudderStack SDKs work by changing their host.
//!
//! Bodies are read as JSON whatever their `Content-Type`: browsers send `text/plain` to
//! avoid a preflight, RudderStack's Node SDK labels its gzip bodies
//! `application/x-www-form-urlencoded`, some clients send none. A body that is not JSON is
//! refused as such (`400 invalid_json`), which says more than a refusal of its label would.
//!
//! A batch with some invalid messages stores the valid ones and answers 200 with the
//! rejected items listed by index, code and field: retrying would not make them valid, and
//! refusing the whole batch would lose the good events. Only when no message is valid is the
//! answer a 4xx. See `docs/tracking-api.md`.

use crate::AppState;
use crate::error::{ApiError, ErrorBody, payload_status};
use crate::request::{presented_key, read_body};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use rapport_core::event::{EventType, ParsedRequest, Stamp};
use rapport_engine::access::Principal;
use rapport_store::{AppendItem, Appended};
use serde::Serialize;

#[derive(Serialize)]
pub struct IngestResponse {
    pub success: bool,
    /// Messages stored now.
    pub accepted: usize,
    /// Messages acknowledged but already stored under the same `messageId`.
    pub duplicates: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedItem>,
}

#[derive(Serialize)]
pub struct RejectedItem {
    pub index: usize,
    pub error: ErrorBody,
}

#[derive(Clone, Copy)]
pub enum Endpoint {
    Single(EventType),
    Batch,
}

macro_rules! single_endpoint {
    ($name:ident, $ty:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<IngestResponse>, ApiError> {
            ingest(state, headers, body, Endpoint::Single($ty)).await
        }
    };
}

single_endpoint!(track, EventType::Track);
single_endpoint!(identify, EventType::Identify);
single_endpoint!(page, EventType::Page);
single_endpoint!(screen, EventType::Screen);
single_endpoint!(group, EventType::Group);
single_endpoint!(alias, EventType::Alias);

pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    ingest(state, headers, body, Endpoint::Batch).await
}

async fn ingest(
    state: AppState,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<Json<IngestResponse>, ApiError> {
    let received_at = chrono::Utc::now();
    let header_key = presented_key(&headers)?;
    // Authenticate before reading the body whenever the client sent a header.
    let header_source = match &header_key {
        Some(key) => Some(writer_source(&state, key).await?),
        None => None,
    };
    let limits = state.config.limits;
    let limit = match endpoint {
        Endpoint::Single(_) => limits.max_event_bytes,
        Endpoint::Batch => limits.max_batch_bytes,
    };
    // Repaired before anything parses it, so every later reader decodes the same text.
    let bytes =
        rapport_core::event::repair_lone_surrogates(read_body(&headers, body, limit).await?);
    let parsed = match endpoint {
        Endpoint::Single(t) => ParsedRequest::single(&bytes, t, &limits)?,
        Endpoint::Batch => ParsedRequest::batch(&bytes, &limits)?,
    };
    let source_id = match header_source {
        Some(s) => s,
        None => match &parsed.write_key {
            Some(key) => writer_source(&state, key).await?,
            None => {
                return Err(ApiError::unauthorized(
                    "missing_write_key",
                    "send the write key as HTTP Basic user name or as `writeKey` in the body",
                ));
            }
        },
    };

    let stamp = Stamp {
        received_at,
        source_id: &source_id,
    };
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    let results = parsed.events(&stamp, &limits, &mut new_id);
    let mut items = Vec::with_capacity(results.len());
    let mut rejected = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(event) => items.push(AppendItem {
                dedup_key: event.dedup_key(),
                payload: event.to_json(),
            }),
            Err(e) => rejected.push(RejectedItem {
                index,
                error: ErrorBody::from(&e),
            }),
        }
    }
    metrics::counter!("rapport_events_rejected_total").increment(rejected.len() as u64);
    if items.is_empty() {
        let first = rejected
            .into_iter()
            .next()
            .expect("a request has at least one message");
        return Err(ApiError {
            status: payload_status_of(&first.error),
            body: first.error,
        });
    }
    let outcomes = state.ingestor.append(items).await?;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Stored(_)))
        .count();
    Ok(Json(IngestResponse {
        success: true,
        accepted,
        duplicates: outcomes.len() - accepted,
        rejected,
    }))
}

fn payload_status_of(body: &ErrorBody) -> axum::http::StatusCode {
    use rapport_core::event::PayloadErrorCode as C;
    let code = [C::EventTooLarge, C::PayloadTooLarge]
        .into_iter()
        .find(|c| c.as_str() == body.code)
        .unwrap_or(C::InvalidJson);
    payload_status(code)
}

async fn writer_source(state: &AppState, key: &str) -> Result<String, ApiError> {
    match crate::authenticate(state, key).await? {
        Some(Principal::Writer { source_id, .. }) => Ok(source_id),
        Some(Principal::Admin { .. }) => Err(ApiError::unauthorized(
            "wrong_key_kind",
            "an admin key cannot send events; use a source's write key",
        )),
        None => Err(ApiError::unauthorized(
            "invalid_write_key",
            "the write key is unknown or revoked",
        )),
    }
}
