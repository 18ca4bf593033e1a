//! `GET /api/v1/audit`: the audit trail, newest first, filtered and paged. The API has no
//! route that edits or deletes an entry (`audit.rs` writes them; see `docs/audit.md`).

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::Query;
use crate::openapi::AdminErrors;
use axum::extract::State;
use rapport_api::Page;
use rapport_api::audit::{self as wire, AuditQuery};
use rapport_api::page::{DEFAULT_LIMIT, MAX_LIMIT};
use rapport_engine::audit::{AuditEntry, AuditFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::new(Code::InvalidParameter, message).with_field(field)
}

/// The engine's filter for the API's parameters: `400 invalid_parameter` naming the one at
/// fault.
pub fn filter(p: &AuditQuery) -> Result<(AuditFilter, usize), ApiError> {
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| {
                rapport_core::event::parse_timestamp(v)
                    .map(|t| t.timestamp_millis())
                    .ok_or_else(|| bad(field, format!("`{field}` must be an ISO-8601 timestamp")))
            })
            .transpose()
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(
            "limit",
            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
        ));
    }
    for (field, value) in [
        ("actor", &p.actor),
        ("action", &p.action),
        ("resource_type", &p.resource_type),
        ("resource_id", &p.resource_id),
    ] {
        if let Some(v) = value {
            crate::request::check_value(field, v, rapport_core::event::MAX_NAME_BYTES)?;
        }
    }
    Ok((
        AuditFilter {
            actor: p.actor.clone(),
            action: p.action.clone(),
            resource_type: p.resource_type.clone(),
            resource_id: p.resource_id.clone(),
            since_ms: time("since", &p.since)?,
            until_ms: time("until", &p.until)?,
        },
        limit as usize,
    ))
}

pub fn to_wire(e: AuditEntry) -> wire::AuditEntry {
    wire::AuditEntry {
        id: e.id,
        at: rapport_api::time::from_ms(e.at_ms),
        at_ms: e.at_ms,
        actor: wire::AuditActor {
            key_id: e.actor.key_id,
            key_name: e.actor.key_name,
        },
        action: e.action,
        resource: wire::AuditResource {
            kind: e.resource.kind,
            id: e.resource.id,
        },
        method: e.method,
        route: e.route,
        status: e.status,
        error: e.error,
        address: e.address,
        before: e.before,
        after: e.after,
    }
}

/// The audit trail: every POST, PUT, PATCH and DELETE of `/api/v1` made with an admin key,
/// refused ones included, newest first. `next_cursor` continues it; a page may be short
/// and still have a next one when the filters are selective.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<wire::AuditEntry>), AdminErrors))]
pub async fn list_audit(
    State(state): State<AppState>,
    Query(params): Query<AuditQuery>,
) -> Result<axum::Json<Page<wire::AuditEntry>>, ApiError> {
    let (filter, limit) = filter(&params)?;
    let store = state.store.clone();
    let cursor = params.cursor.clone();
    let (entries, next) = crate::blocking(move || {
        rapport_engine::audit::list(store.as_ref(), &filter, cursor.as_deref(), limit).map_err(
            |e| match e {
                rapport_engine::EngineError::InvalidAt { .. } => bad(
                    "cursor",
                    "`cursor` is not a cursor this API returned".into(),
                ),
                e => e.into(),
            },
        )
    })
    .await?;
    Ok(axum::Json(Page {
        data: entries.into_iter().map(to_wire).collect(),
        next_cursor: next,
    }))
}
