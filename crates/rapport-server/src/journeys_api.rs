//! `/api/v1/journeys`: define journeys as drafts, publish versions, pause, resume and
//! archive them, and see where customers flow and stall (`docs/journeys.md`). Decisions
//! are taken by the processor; this module only writes definitions and reads state.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::AdminErrors;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use rapport_api::List;
use rapport_api::journeys as wire;
use rapport_engine::journeys::Journeys;
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::{Journey, Status, VersionState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_journeys, create_journey))
        .routes(routes!(get_journey))
        .routes(routes!(save_draft))
        .routes(routes!(publish_journey))
        .routes(routes!(pause_journey))
        .routes(routes!(resume_journey))
        .routes(routes!(archive_journey))
        .routes(routes!(journey_flow))
        .routes(routes!(preview_journey))
}

const PARAM: &str = "The journey's name";

fn status(s: Status) -> &'static str {
    match s {
        Status::Draft => "draft",
        Status::Active => "active",
        Status::Paused => "paused",
        Status::Archived => "archived",
    }
}

fn to_wire(j: Journey) -> wire::Journey {
    wire::Journey {
        live_version: j.live().map(|v| v.version),
        name: j.name,
        status: status(j.status).to_owned(),
        versions: j
            .versions
            .into_iter()
            .map(|v| wire::JourneyVersion {
                version: v.version,
                state: match v.state {
                    VersionState::Draft => "draft",
                    VersionState::Live => "live",
                    VersionState::Retired => "retired",
                }
                .to_owned(),
                spec: v.spec,
                created_at: rapport_api::time::to_wire(&v.created_at),
                published_at: v.published_at.as_ref().map(rapport_api::time::to_wire),
            })
            .collect(),
    }
}

fn flow(version: u32, s: FlowStats) -> wire::VersionFlow {
    let lift = s.lift().map(|l| wire::Lift {
        treated_rate: l.treated_rate,
        holdout_rate: l.holdout_rate,
        difference: l.difference,
        low: l.low,
        high: l.high,
    });
    wire::VersionFlow {
        version,
        entered: s.entered,
        holdout_entered: s.holdout_entered,
        active: s.active(),
        converted: s.converted,
        holdout_converted: s.holdout_converted,
        exited: s.exited.clone(),
        nodes: s
            .nodes
            .iter()
            .map(|(id, n)| {
                let (median, p90) = n.time_quantiles();
                let node = wire::NodeFlow {
                    entered: n.entered,
                    waiting: n.waiting(),
                    passed: n.passed,
                    exited: n.exited.clone(),
                    actions: n.actions,
                    skipped: n.skipped.clone(),
                    conversions: n.conversions,
                    median_seconds: median,
                    p90_seconds: p90,
                    to: n.to.clone(),
                };
                (id.clone(), node)
            })
            .collect(),
        ways: s
            .ways
            .iter()
            .map(|(node, ways)| {
                let ways = ways
                    .iter()
                    .map(|(w, f)| {
                        let flow = wire::WayFlow {
                            entered: f.entered,
                            converted: f.converted,
                        };
                        (w.clone(), flow)
                    })
                    .collect();
                (node.clone(), ways)
            })
            .collect(),
        lift,
    }
}

/// Every journey with its versions.
#[utoipa::path(get, path = "/api/v1/journeys", tag = "journeys",
    responses((status = 200, body = List<wire::Journey>), AdminErrors))]
pub async fn list_journeys(
    State(state): State<AppState>,
) -> Result<axum::Json<List<wire::Journey>>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let data = Journeys {
            store: store.as_ref(),
        }
        .list()?
        .into_iter()
        .map(to_wire)
        .collect();
        Ok(axum::Json(List { data }))
    })
    .await
}

/// Creates a journey whose version 1 is the draft sent; nothing runs until it is
/// published. Every problem of the definition is named by its field
/// (`nodes.remind.template`).
#[utoipa::path(post, path = "/api/v1/journeys", tag = "journeys",
    request_body = wire::JourneySpec,
    responses((status = 201, body = wire::Journey),
        (status = 409, description = "a journey with that name exists", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn create_journey(
    State(state): State<AppState>,
    Json(spec): Json<wire::JourneySpec>,
) -> Result<(StatusCode, axum::Json<wire::Journey>), ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let journeys = Journeys {
            store: store.as_ref(),
        };
        if journeys.list()?.iter().any(|j| j.name == spec.name) {
            return Err(rapport_engine::EngineError::Conflict(format!(
                "a journey named {:?} exists: save a new draft of it with PUT /api/v1/journeys/{}/draft",
                spec.name, spec.name
            ))
            .into());
        }
        let (journey, _) = journeys.save_draft(spec, Utc::now())?;
        Ok((StatusCode::CREATED, axum::Json(to_wire(journey))))
    })
    .await
}

/// A journey, with every version.
#[utoipa::path(get, path = "/api/v1/journeys/{journey}", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Journey), AdminErrors))]
pub async fn get_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let j = Journeys {
            store: store.as_ref(),
        }
        .get(&name)?;
        Ok(axum::Json(to_wire(j)))
    })
    .await
}

/// Saves the draft of the next version (replacing an unpublished draft). Published
/// versions are never edited; customers inside keep the version they entered with.
#[utoipa::path(put, path = "/api/v1/journeys/{journey}/draft", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    request_body = wire::JourneySpec,
    responses((status = 200, body = wire::Journey),
        (status = 409, description = "the journey is archived", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn save_draft(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(spec): Json<wire::JourneySpec>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let journeys = Journeys {
            store: store.as_ref(),
        };
        journeys.get(&name)?;
        if spec.name != name {
            return Err(rapport_engine::EngineError::InvalidAt {
                field: "name".into(),
                message: format!(
                    "the draft's name {:?} is not the journey's {name:?}: a journey keeps its name",
                    spec.name
                ),
            }
            .into());
        }
        let (journey, _) = journeys.save_draft(spec, Utc::now())?;
        Ok(axum::Json(to_wire(journey)))
    })
    .await
}

/// Publishes the draft: it takes new entries from now on; the version live before it
/// runs out the customers who entered it.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/publish", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Journey),
        (status = 409, description = "no draft to publish, or the journey is archived", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn publish_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let (journey, _) = Journeys {
            store: store.as_ref(),
        }
        .publish(&name, Utc::now())?;
        Ok(axum::Json(to_wire(journey)))
    })
    .await
}

async fn lifecycle(
    state: AppState,
    name: String,
    step: fn(&mut Journey) -> Result<(), rapport_journeys::version::LifecycleError>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let journey = Journeys {
            store: store.as_ref(),
        }
        .lifecycle(&name, step)?;
        Ok(axum::Json(to_wire(journey)))
    })
    .await
}

/// Pauses the journey: no one enters, and customers inside hold where they are.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/pause", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Journey),
        (status = 409, description = "not active", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn pause_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    lifecycle(state, name, Journey::pause).await
}

/// Resumes a paused journey.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/resume", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Journey),
        (status = 409, description = "not paused", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn resume_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    lifecycle(state, name, Journey::resume).await
}

/// Archives the journey for good: no one enters, and customers inside exit (reason
/// `archived`) when next woken.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/archive", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Journey),
        (status = 409, description = "already archived", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn archive_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::Journey>, ApiError> {
    lifecycle(state, name, Journey::archive).await
}

/// Where customers flow and stall, per version and node: entered, waiting now, passed,
/// exited by reason, time on each node (median, p90), conversions by branch and arm, and
/// the holdout's lift.
#[utoipa::path(get, path = "/api/v1/journeys/{journey}/flow", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::JourneyFlow), AdminErrors))]
pub async fn journey_flow(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<wire::JourneyFlow>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let journeys = Journeys {
            store: store.as_ref(),
        };
        journeys.get(&name)?;
        let versions = journeys
            .stats(&name)?
            .into_iter()
            .map(|(v, s)| flow(v, s))
            .collect();
        Ok(axum::Json(wire::JourneyFlow {
            journey: name,
            versions,
        }))
    })
    .await
}

/// A body field holding an RFC 3339 time; `400 invalid_field` naming `field` otherwise.
fn time_field(field: &'static str, value: &str) -> Result<chrono::DateTime<Utc>, ApiError> {
    rapport_api::time::parse(value).ok_or_else(|| {
        ApiError::from(rapport_engine::EngineError::Invalid {
            field,
            message: format!("`{field}` is not an RFC 3339 time (got {value:?})"),
        })
    })
}

/// Runs a version (by default the draft, else the live one) over the log entries received
/// in `[from, to)`: how many customers would have entered, reached and passed each step,
/// converted, been messaged (by destination) or skipped. Customers are resolved as they
/// are now (`notes` says what else is approximated); nothing is written and nothing is
/// sent. The range ends by now, spans at most 90 days and 1,000,000 log entries.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/preview", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    request_body = wire::PreviewRequest,
    responses((status = 200, body = wire::JourneyPreview), AdminErrors))]
pub async fn preview_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<wire::PreviewRequest>,
) -> Result<axum::Json<wire::JourneyPreview>, ApiError> {
    use rapport_engine::journeys_preview::{PreviewRequest, preview};
    let request = PreviewRequest {
        version: body.version,
        from: time_field("from", &body.from)?,
        to: time_field("to", &body.to)?,
    };
    let store = state.store.clone();
    crate::blocking(move || {
        let p = preview(store.as_ref(), &name, &request, Utc::now())?;
        Ok(axum::Json(wire::JourneyPreview {
            journey: p.journey,
            version: p.version,
            from: rapport_api::time::to_wire(&p.from),
            to: rapport_api::time::to_wire(&p.to),
            log_entries_read: p.log_entries_read,
            events: p.events,
            segment_changes: p.segment_changes,
            profiles: p.profiles,
            flow: flow(p.version, p.flow),
            messages: p.messages,
            emitted: p.emitted,
            trait_changes: p.trait_changes,
            skipped: p.skipped,
            notes: p.notes,
        }))
    })
    .await
}
