//! A profile's consent per purpose: the current decision for each purpose with its time and
//! source, the history of every decision (paged), and changes through the API.
//!
//! A change is not written to the profile here: only the processor writes profiles. It is
//! appended to the log as a control entry (`rapport_engine::consent::ConsentChange`,
//! source `api`, time: when asked) and applied in log order, so a replay gives the same
//! state; the answer waits for the processor (up to 10 s) and shows the new state, else
//! says the change is pending (202).

use crate::error::ApiError;
use crate::extract::{AdminKey, Json, Query};
use crate::openapi::AdminErrors;
use crate::profiles_api::{REFERENCE, check_reference, with_profile};
use crate::{AppState, blocking};
use axum::Json as Answer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rapport_api::Code;
use rapport_api::profiles::{
    ConsentDecision, ConsentHistoryEntry, ConsentPending, ConsentUpdate, ProfileConsent,
    TimelineQuery,
};
use rapport_core::consent::ConsentState;
use rapport_core::event::format_timestamp;
use rapport_engine::EngineError;
use rapport_engine::consent::{ConsentChange, HistoryEntry};
use rapport_engine::profiles::Profiles;
use rapport_store::Appended;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a change waits for the processor before answering 202.
const APPLY_WAIT: Duration = Duration::from_secs(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_consent, put_consent, post_consent))
}

/// The current consent of a profile, as the profile view shows it.
pub fn current(state: &ConsentState) -> BTreeMap<String, ConsentDecision> {
    state
        .purposes
        .iter()
        .map(|(purpose, d)| {
            (
                purpose.clone(),
                ConsentDecision {
                    granted: d.granted,
                    at: format_timestamp(&d.at),
                    source: d.source.clone(),
                    message_id: d.message_id.clone(),
                },
            )
        })
        .collect()
}

fn history_view(h: HistoryEntry) -> ConsentHistoryEntry {
    ConsentHistoryEntry {
        purpose: h.purpose,
        granted: h.granted,
        at: format_timestamp(&h.at),
        source: h.source,
        message_id: h.message_id,
        effective: h.effective,
    }
}

fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() < 32 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn read_consent(
    state: &AppState,
    reference: String,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<ProfileConsent, ApiError> {
    with_profile(state, reference, move |profiles, record| {
        let (history, next) = profiles.consent_history(&record, cursor.as_deref(), limit)?;
        Ok(ProfileConsent {
            id: record.id.as_str().to_owned(),
            current: current(&record.consent),
            history: history.into_iter().map(history_view).collect(),
            next_cursor: next.as_deref().map(encode_cursor),
        })
    })
    .await
}

/// A profile's consent: the current decision per purpose (a purpose not listed is not
/// granted) and its history, newest first, paged.
#[utoipa::path(get, path = "/api/v1/profiles/{reference}/consent", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE), TimelineQuery),
    responses((status = 200, body = ProfileConsent), AdminErrors))]
pub async fn get_consent(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Answer<ProfileConsent>, ApiError> {
    let limit = q.limit.unwrap_or_default().get();
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParameter,
                "`cursor` is not a cursor this API returned",
            )
            .with_field("cursor")
        })?),
    };
    read_consent(&state, reference, cursor, limit)
        .await
        .map(Answer)
}

/// Sets purposes of a profile (source `api`, time: now); purposes not named are left as
/// they are. Answers 200 with the profile's consent once applied, 202 if the processor has
/// not applied it within 10 s.
#[utoipa::path(put, path = "/api/v1/profiles/{reference}/consent", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE)),
    request_body = ConsentUpdate,
    responses(
        (status = 200, description = "Applied: the profile's consent", body = ProfileConsent),
        (status = 202, description = "In the log, not applied yet", body = ConsentPending),
        AdminErrors))]
pub async fn put_consent(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(reference): Path<String>,
    Json(body): Json<ConsentUpdate>,
) -> Result<Response, ApiError> {
    set_consent(state, admin, reference, body).await
}

/// The same as `PUT`: sets the purposes named, leaves the others.
#[utoipa::path(post, path = "/api/v1/profiles/{reference}/consent", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE)),
    request_body = ConsentUpdate,
    responses(
        (status = 200, description = "Applied: the profile's consent", body = ProfileConsent),
        (status = 202, description = "In the log, not applied yet", body = ConsentPending),
        AdminErrors))]
pub async fn post_consent(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(reference): Path<String>,
    Json(body): Json<ConsentUpdate>,
) -> Result<Response, ApiError> {
    set_consent(state, admin, reference, body).await
}

async fn set_consent(
    state: AppState,
    admin: AdminKey,
    reference: String,
    body: ConsentUpdate,
) -> Result<Response, ApiError> {
    check_reference(&reference)?;
    let preferences = body.category_preferences;
    if preferences.is_empty() {
        return Err(EngineError::Invalid {
            field: "categoryPreferences",
            message: "`categoryPreferences` names no purpose".into(),
        }
        .into());
    }
    rapport_core::consent::check_preferences(&preferences, "categoryPreferences").map_err(|e| {
        EngineError::InvalidAt {
            field: e.field,
            message: e.message,
        }
    })?;
    let store = state.store.clone();
    let asked = reference.clone();
    let profile = blocking(move || {
        Ok(Profiles {
            store: store.as_ref(),
        }
        .resolve(&asked)?
        .id)
    })
    .await?;
    let change = ConsentChange::new(profile, preferences, chrono::Utc::now(), Some(admin.id));
    let appended = state.ingestor.append(vec![change.append_item()]).await?;
    let offset = match appended.first() {
        Some(Appended::Stored(o)) => Some(*o),
        _ => None,
    };
    let deadline = Instant::now() + APPLY_WAIT;
    if let Some(offset) = offset {
        loop {
            let store = state.store.clone();
            let applied = blocking(move || {
                Ok(store.consumer_offset(rapport_engine::processor::CONSUMER)? >= offset)
            })
            .await?;
            if applied {
                let view = read_consent(&state, reference, None, 100).await?;
                return Ok(Answer(view).into_response());
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let pending = ConsentPending {
        status: "pending".into(),
        request: change.request,
        offset,
    };
    Ok((StatusCode::ACCEPTED, Answer(pending)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let key = rapport_engine::consent::history_key(&chrono::Utc::now(), 7, "ads");
        assert_eq!(decode_cursor(&encode_cursor(&key)), Some(key));
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
    }
}
