//! Privacy: deleting a person or a range of a source's events (requests run by the eraser,
//! each with a status and a receipt), and the suppression list.
//!
//! A deletion is accepted with 202 and runs in the background (`rapport_engine::privacy`):
//! `GET /api/v1/privacy/deletions/{id}` follows it to `done`. A suppression is in force
//! when the answer comes.

use crate::error::ApiError;
use crate::extract::{AdminKey, Json};
use crate::openapi::AdminErrors;
use crate::{AppState, blocking};
use axum::Json as Answer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rapport_api::privacy::{
    Deletion, EventsDeletion, NewSuppression, PersonDeletion, ReceiptLine, Suppression,
};
use rapport_api::{Code, List, time};
use rapport_engine::privacy::deletion::{DeletionRecord, PersonRequest};
use rapport_engine::privacy::suppression::{self, parse_identifier};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deletions, delete_person))
        .routes(routes!(delete_events))
        .routes(routes!(get_deletion))
        .routes(routes!(list_suppressions, add_suppression))
        .routes(routes!(remove_suppression))
}

fn status_name(record: &DeletionRecord) -> String {
    serde_json::to_value(record.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn deletion_view(r: DeletionRecord) -> Deletion {
    Deletion {
        status: status_name(&r),
        id: r.id,
        kind: r.kind,
        requested_at: time::to_wire(&r.requested_at),
        finished_at: r.finished_at.as_ref().map(time::to_wire),
        requested_by: r.requested_by,
        subject_hashes: r.subject_hashes,
        suppress: r.suppress,
        source: r.source_id,
        from: r.from.as_ref().map(time::to_wire),
        to: r.to.as_ref().map(time::to_wire),
        receipt: r
            .receipt
            .into_iter()
            .map(|l| ReceiptLine {
                store: l.store,
                removed: l.removed,
                detail: l.detail,
            })
            .collect(),
        error: r.error,
    }
}

fn suppression_view(s: suppression::Suppression) -> Suppression {
    Suppression {
        hash: s.hash,
        kind: s.kind,
        created_at: time::to_wire(&s.created_at),
        reason: s.reason,
        created_by: s.created_by,
        deletion: s.deletion,
    }
}

/// Deletes a person: every profile holding one of the identifiers, with everything merged
/// into it, from every store — the log included — and forwards the request to webhook
/// destinations that take one. Answers 202 with the request; follow it with `GET
/// /api/v1/privacy/deletions/{id}` until `status` is `done`, then read its receipt.
#[utoipa::path(post, path = "/api/v1/privacy/deletions", tag = "privacy",
    request_body = PersonDeletion,
    responses((status = 202, description = "Queued", body = Deletion), AdminErrors))]
pub async fn delete_person(
    State(state): State<AppState>,
    admin: AdminKey,
    audit: crate::audit::Audit,
    Json(body): Json<PersonDeletion>,
) -> Result<(StatusCode, Answer<Deletion>), ApiError> {
    // The audit trail names the person by the digest of the first identifier: the
    // request's first `subject_hashes` entry.
    if let Some(Ok(Err(identifier))) = body
        .identifiers
        .first()
        .map(|r| rapport_engine::profiles::parse_reference(r))
    {
        audit.resource_id(rapport_engine::profiles::identifier_key(&identifier));
    }
    let privacy = state.privacy.clone();
    blocking(move || {
        let record = privacy.deletions.request_person(
            PersonRequest {
                references: body.identifiers,
                suppress: body.suppress,
                requested_by: Some(admin.id),
            },
            &privacy.suppressions,
            chrono::Utc::now(),
        )?;
        Ok((StatusCode::ACCEPTED, Answer(deletion_view(record))))
    })
    .await
}

/// Deletes the events one source sent between two instants (by receive time): from the
/// log and the event index. What profiles derived from them (traits) is kept; delete the
/// person for that. Answers 202 with the request.
#[utoipa::path(post, path = "/api/v1/privacy/deletions/events", tag = "privacy",
    request_body = EventsDeletion,
    responses((status = 202, description = "Queued", body = Deletion), AdminErrors))]
pub async fn delete_events(
    State(state): State<AppState>,
    admin: AdminKey,
    Json(body): Json<EventsDeletion>,
) -> Result<(StatusCode, Answer<Deletion>), ApiError> {
    let parse = |field: &'static str, value: &str| {
        time::parse(value).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParameter,
                format!("`{field}` is not an RFC 3339 time: {value:?}"),
            )
            .with_field(field)
        })
    };
    let (from, to) = (parse("from", &body.from)?, parse("to", &body.to)?);
    let (privacy, access) = (state.privacy.clone(), state.access.clone());
    blocking(move || {
        let source = access
            .source_by_name_or_id(&body.source)
            .map_err(|e| ApiError::from(e).with_field("source"))?;
        let record = privacy.deletions.request_events(
            &source.id,
            from,
            to,
            Some(admin.id),
            chrono::Utc::now(),
        )?;
        Ok((StatusCode::ACCEPTED, Answer(deletion_view(record))))
    })
    .await
}

/// Every deletion request, newest first.
#[utoipa::path(get, path = "/api/v1/privacy/deletions", tag = "privacy",
    responses((status = 200, body = List<Deletion>), AdminErrors))]
pub async fn list_deletions(
    State(state): State<AppState>,
) -> Result<Answer<List<Deletion>>, ApiError> {
    let privacy = state.privacy.clone();
    blocking(move || {
        let mut data: Vec<Deletion> = privacy
            .deletions
            .list()?
            .into_iter()
            .map(deletion_view)
            .collect();
        data.reverse();
        Ok(Answer(List { data }))
    })
    .await
}

/// One deletion request: its status and receipt.
#[utoipa::path(get, path = "/api/v1/privacy/deletions/{id}", tag = "privacy",
    params(("id" = String, Path, description = "The request's id (`del_…`)")),
    responses((status = 200, body = Deletion), AdminErrors))]
pub async fn get_deletion(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Answer<Deletion>, ApiError> {
    let privacy = state.privacy.clone();
    blocking(move || match privacy.deletions.get(&id)? {
        Some(r) => Ok(Answer(deletion_view(r))),
        None => Err(ApiError::not_found(format!("no deletion request {id}"))),
    })
    .await
}

/// The suppression list, newest first.
#[utoipa::path(get, path = "/api/v1/privacy/suppressions", tag = "privacy",
    responses((status = 200, body = List<Suppression>), AdminErrors))]
pub async fn list_suppressions(
    State(state): State<AppState>,
) -> Result<Answer<List<Suppression>>, ApiError> {
    let privacy = state.privacy.clone();
    blocking(move || {
        let data = privacy
            .suppressions
            .list()?
            .into_iter()
            .map(suppression_view)
            .collect();
        Ok(Answer(List { data }))
    })
    .await
}

/// Suppresses an identifier: from the answer on, new events carrying it are dropped before
/// storage (answered as accepted, so SDKs do not retry them), and nothing about a profile
/// holding it is delivered to any destination. Suppressing it again keeps the first entry.
#[utoipa::path(post, path = "/api/v1/privacy/suppressions", tag = "privacy",
    request_body = NewSuppression,
    responses((status = 201, description = "In force", body = Suppression), AdminErrors))]
pub async fn add_suppression(
    State(state): State<AppState>,
    admin: AdminKey,
    audit: crate::audit::Audit,
    Json(body): Json<NewSuppression>,
) -> Result<(StatusCode, Answer<Suppression>), ApiError> {
    let identifier = parse_identifier(&body.identifier)
        .map_err(|e| ApiError::from(e).with_field("identifier"))?;
    audit.resource_id(rapport_engine::profiles::identifier_key(&identifier));
    let privacy = state.privacy.clone();
    blocking(move || {
        let entry = privacy.suppressions.add(
            &identifier,
            body.reason,
            Some(admin.id),
            None,
            chrono::Utc::now(),
        )?;
        Ok((StatusCode::CREATED, Answer(suppression_view(entry))))
    })
    .await
}

/// Lifts a suppression, named by its identifier (`type:value`) or its hash.
#[utoipa::path(delete, path = "/api/v1/privacy/suppressions/{identifier}", tag = "privacy",
    params(("identifier" = String, Path, description = "`type:value`, or the entry's hash")),
    responses((status = 200, description = "Lifted", body = Suppression), AdminErrors))]
pub async fn remove_suppression(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Answer<Suppression>, ApiError> {
    let hash = if identifier.len() == 64 && identifier.bytes().all(|b| b.is_ascii_hexdigit()) {
        identifier.to_ascii_lowercase()
    } else {
        suppression::subject_hash(
            &parse_identifier(&identifier)
                .map_err(|e| ApiError::from(e).with_field("identifier"))?,
        )
    };
    let privacy = state.privacy.clone();
    blocking(move || {
        Ok(Answer(suppression_view(
            privacy.suppressions.remove(&hash)?,
        )))
    })
    .await
}
