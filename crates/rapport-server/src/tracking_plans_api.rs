//! `/api/v1/sources/{source}/tracking-plan`: a source's tracking plan — read, replaced whole,
//! removed — and `…/tracking-plan/violations`, the report of what broke it
//! (`docs/tracking-plans.md`). Ingest enforces the plan (`crate::tracking`).

use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::AdminErrors;
use crate::{AppState, now_ms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rapport_api::tracking_plans as wire;
use rapport_engine::tracking_plans::StoredPlan;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_plan, put_plan, delete_plan))
        .routes(routes!(get_violations))
}

fn to_wire(source_id: String, s: StoredPlan) -> wire::SourceTrackingPlan {
    wire::SourceTrackingPlan {
        source_id,
        version: s.version,
        updated_at_ms: s.updated_at_ms,
        plan: s.plan,
    }
}

/// The id of the source `reference` names (its id or name).
async fn source_id(state: &AppState, reference: String) -> Result<String, ApiError> {
    let access = state.access.clone();
    crate::blocking(move || Ok(access.source_by_name_or_id(&reference)?.id)).await
}

/// The source's tracking plan.
#[utoipa::path(get, path = "/api/v1/sources/{source}/tracking-plan", tag = "sources",
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::SourceTrackingPlan),
        (status = 404, description = "no such source, or it has no plan", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn get_plan(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::SourceTrackingPlan>, ApiError> {
    let id = source_id(&state, reference).await?;
    let plans = state.plans.clone();
    let stored = crate::blocking(move || {
        plans
            .get(&id)?
            .map(|p| to_wire(id.clone(), p))
            .ok_or_else(|| ApiError::not_found(format!("source {id} has no tracking plan")))
    })
    .await?;
    Ok(axum::Json(stored))
}

/// Replaces the source's tracking plan whole; its events are checked against it from this
/// answer on (on other servers sharing the database, within 5 seconds). A schema that is
/// not valid JSON Schema, or whose `$ref` points outside it, is refused with
/// `400 invalid_field` naming it (`events.Order Completed.schema`).
#[utoipa::path(put, path = "/api/v1/sources/{source}/tracking-plan", tag = "sources",
    request_body = wire::TrackingPlan,
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::SourceTrackingPlan), AdminErrors))]
pub async fn put_plan(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Json(plan): Json<wire::TrackingPlan>,
) -> Result<axum::Json<wire::SourceTrackingPlan>, ApiError> {
    let id = source_id(&state, reference).await?;
    let plans = state.plans.clone();
    let stored = crate::blocking(move || {
        let stored = plans.put(&id, plan, now_ms())?;
        Ok(to_wire(id, stored))
    })
    .await?;
    Ok(axum::Json(stored))
}

/// Removes the source's tracking plan: its events are no longer checked. Its violations
/// report stays.
#[utoipa::path(delete, path = "/api/v1/sources/{source}/tracking-plan", tag = "sources",
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 204, description = "removed"),
        (status = 404, description = "no such source, or it has no plan", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn delete_plan(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = source_id(&state, reference).await?;
    let plans = state.plans.clone();
    crate::blocking(move || {
        if plans.delete(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(format!(
                "source {id} has no tracking plan"
            )))
        }
    })
    .await
}

/// What broke the source's tracking plan: per planned event name (then identify, group and
/// unplanned events), how many messages were allowed, flagged and blocked, and the latest
/// examples — the field and what was expected, never the values sent.
#[utoipa::path(get, path = "/api/v1/sources/{source}/tracking-plan/violations", tag = "sources",
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::ViolationsReport), AdminErrors))]
pub async fn get_violations(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::ViolationsReport>, ApiError> {
    let id = source_id(&state, reference).await?;
    let plans = state.plans.clone();
    let report = crate::blocking(move || {
        let data = plans.report(&id)?;
        let plan_version = plans.get(&id)?.map(|p| p.version);
        Ok(wire::ViolationsReport {
            source_id: id,
            plan_version,
            data,
        })
    })
    .await?;
    Ok(axum::Json(report))
}
