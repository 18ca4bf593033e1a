//! `/api/v1/journeys`: define journeys as drafts, publish versions, pause, resume and
//! archive them, and see where customers flow and stall (`docs/journeys.md`). Decisions
//! are taken by the processor; this module only writes definitions and reads state.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{AdminKey, Json, Query};
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
        .routes(routes!(enter_journey))
        .routes(routes!(get_caps, put_caps))
        .routes(routes!(check_journey))
        .routes(routes!(migrate_journey))
        .routes(routes!(preview_journey))
}

/// How long a caps change waits for the processor before answering 202.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Profiles one entry request may name.
const MAX_ENTRIES: usize = 1_000;

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
        migrated_in: s.migrated_in,
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

/// Checks a definition as saving it would — against the segments, computed traits and
/// destinations that exist now, and against the journeys: as a new journey (`as=create`,
/// its name must be free) or as the next draft of the journey it names (`as=draft`) — and
/// lists every problem by field, saving nothing.
#[utoipa::path(post, path = "/api/v1/journeys/check", tag = "journeys",
    params(wire::CheckQuery),
    request_body = wire::JourneySpec,
    responses((status = 200, description = "The problems found (none: it can be saved)", body = wire::SpecCheck), AdminErrors))]
pub async fn check_journey(
    State(state): State<AppState>,
    Query(q): Query<wire::CheckQuery>,
    Json(spec): Json<wire::JourneySpec>,
) -> Result<axum::Json<wire::SpecCheck>, ApiError> {
    let store = state.store.clone();
    let intent = match q.check_as {
        wire::CheckAs::Create => rapport_engine::journeys::CheckIntent::Create,
        wire::CheckAs::Draft => rapport_engine::journeys::CheckIntent::Draft,
    };
    crate::blocking(move || {
        let errors = Journeys {
            store: store.as_ref(),
        }
        .problems_for(&spec, intent)?;
        Ok(axum::Json(wire::SpecCheck {
            valid: errors.is_empty(),
            errors: errors
                .into_iter()
                .map(|e| wire::SpecProblem {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        }))
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

/// Enters customers into a journey whose entry is `api` (`{"type": "api"}`): each is
/// written to the log as a control entry and entered by the processor in log order with
/// the journey's live version, under its re-entry rules, limits and holdout (an entry they
/// refuse enters no one, and the timeline says why). `properties` are the instance's
/// `entry.properties`. Answers 202
/// with the request id of each entry; the entry shows on the profile's timeline and in
/// the flow once processed.
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/entries", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    request_body = wire::JourneyEntryRequest,
    responses((status = 202, body = wire::JourneyEntriesAccepted),
        (status = 400, description = "the journey's entry is not `api` (field `entry`), or a bad `profile`, `profiles` or `properties`", body = rapport_api::ErrorEnvelope),
        (status = 404, description = "no such journey, or no such profile (field `profile` or `profiles[i]`)", body = rapport_api::ErrorEnvelope),
        (status = 409, description = "the journey is not published, or paused or archived", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn enter_journey(
    State(state): State<AppState>,
    admin: AdminKey,
    audit: crate::audit::Audit,
    Path(name): Path<String>,
    Json(body): Json<wire::JourneyEntryRequest>,
) -> Result<(StatusCode, axum::Json<wire::JourneyEntriesAccepted>), ApiError> {
    // The customers named are personal data: the trail keeps their digests, nothing else.
    audit.after(&serde_json::json!({
        "profiles": body
            .profile
            .iter()
            .chain(body.profiles.iter().flatten())
            .map(|r| rapport_engine::audit::person_digest(r))
            .collect::<Vec<_>>(),
    }));
    let invalid = |field: &str, message: String| rapport_engine::EngineError::InvalidAt {
        field: field.to_owned(),
        message,
    };
    let properties = match body.properties {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => {
            return Err(invalid("properties", "`properties` must be a JSON object".into()).into());
        }
    };
    let single = body.profile.is_some();
    let (references, field): (Vec<String>, fn(usize) -> String) =
        match (body.profile, body.profiles) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "profiles",
                    "name one `profile` or a list of `profiles`, not both".into(),
                )
                .into());
            }
            (None, None) => {
                return Err(invalid("profile", "`profile` is required".into()).into());
            }
            (Some(p), None) => (vec![p], |_| "profile".to_owned()),
            (None, Some(ps)) if ps.is_empty() || ps.len() > MAX_ENTRIES => {
                return Err(invalid(
                    "profiles",
                    format!(
                        "`profiles` names {} profiles; name 1 to {MAX_ENTRIES}",
                        ps.len()
                    ),
                )
                .into());
            }
            (None, Some(ps)) => (ps, |i| format!("profiles[{i}]")),
        };
    for (i, r) in references.iter().enumerate() {
        // A body field, not the path parameter `check_reference` speaks of.
        crate::profiles_api::check_reference(r).map_err(|e| {
            let name = field(i);
            let message = e.body.message.replace("`reference`", &format!("`{name}`"));
            ApiError::new(rapport_api::Code::InvalidField, message).with_field(name)
        })?;
    }
    let store = state.store.clone();
    let asked = references.clone();
    let journey = name.clone();
    let profiles = crate::blocking(move || {
        Journeys {
            store: store.as_ref(),
        }
        .check_api_entry(&journey)?;
        let profiles = rapport_engine::profiles::Profiles {
            store: store.as_ref(),
        };
        asked
            .iter()
            .enumerate()
            .map(|(i, r)| {
                profiles.resolve(r).map(|p| p.id).map_err(|e| match e {
                    rapport_engine::EngineError::NotFound(m) => {
                        ApiError::not_found(m).with_field(field(i))
                    }
                    rapport_engine::EngineError::Invalid { message, .. } => {
                        ApiError::from(invalid(&field(i), message))
                    }
                    e => ApiError::from(e),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    let now = Utc::now();
    let entries: Vec<rapport_engine::journeys::ApiEntry> = profiles
        .into_iter()
        .map(|p| {
            rapport_engine::journeys::ApiEntry::new(
                &name,
                p,
                properties.clone(),
                now,
                Some(admin.id.clone()),
            )
        })
        .collect();
    let appended = state
        .ingestor
        .append(entries.iter().map(|e| e.append_item()).collect())
        .await?;
    let accepted: Vec<wire::AcceptedEntry> = entries
        .into_iter()
        .zip(references)
        .enumerate()
        .map(|(i, (e, profile))| wire::AcceptedEntry {
            profile,
            request: e.request,
            offset: match appended.get(i) {
                Some(rapport_store::Appended::Stored(o)) => Some(*o),
                _ => None,
            },
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(wire::JourneyEntriesAccepted {
            status: "accepted".into(),
            request: single.then(|| accepted[0].request.clone()),
            entries: accepted,
        }),
    ))
}

fn caps_view(c: rapport_engine::journeys::StoredCaps) -> wire::JourneyCaps {
    wire::JourneyCaps {
        caps: c.caps,
        updated_at: c.updated_at.as_ref().map(rapport_api::time::to_wire),
        request: c.request,
    }
}

async fn read_caps(state: &AppState) -> Result<wire::JourneyCaps, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        Ok(caps_view(
            Journeys {
                store: store.as_ref(),
            }
            .caps()?,
        ))
    })
    .await
}

/// The frequency caps across journeys in force (none until set).
#[utoipa::path(get, path = "/api/v1/journeys/caps", tag = "journeys",
    responses((status = 200, body = wire::JourneyCaps), AdminErrors))]
pub async fn get_caps(
    State(state): State<AppState>,
) -> Result<axum::Json<wire::JourneyCaps>, ApiError> {
    read_caps(&state).await.map(axum::Json)
}

/// Replaces the frequency caps across journeys (`[]` removes them). Written to the log as
/// a control entry and put in force by the processor in log order, so a replay caps the
/// same messages; answers 200 with the caps in force once applied, 202 if the processor
/// has not applied them within 10 s. Every problem is named by its field (`caps[1].per`).
#[utoipa::path(put, path = "/api/v1/journeys/caps", tag = "journeys",
    request_body = wire::CapsUpdate,
    responses(
        (status = 200, description = "Applied: the caps in force", body = wire::JourneyCaps),
        (status = 202, description = "In the log, not applied yet", body = wire::CapsPending),
        AdminErrors))]
pub async fn put_caps(
    State(state): State<AppState>,
    admin: AdminKey,
    Json(body): Json<wire::CapsUpdate>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    rapport_journeys::caps::check_rules(&body.caps).map_err(|e| {
        rapport_engine::EngineError::InvalidAt {
            field: e.field,
            message: e.message,
        }
    })?;
    let change = rapport_engine::journeys::CapsChange::new(body.caps, Utc::now(), Some(admin.id));
    let appended = state.ingestor.append(vec![change.append_item()]).await?;
    let offset = match appended.first() {
        Some(rapport_store::Appended::Stored(o)) => Some(*o),
        _ => None,
    };
    let deadline = std::time::Instant::now() + APPLY_WAIT;
    if let Some(offset) = offset {
        loop {
            let store = state.store.clone();
            let applied = crate::blocking(move || {
                Ok(store.consumer_offset(rapport_engine::processor::CONSUMER)? >= offset)
            })
            .await?;
            if applied {
                return Ok(axum::Json(read_caps(&state).await?).into_response());
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let pending = wire::CapsPending {
        status: "pending".into(),
        request: change.request,
        offset,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(pending)).into_response())
}

/// Moves the customers inside `from_version` to `to_version`, each to the image of its
/// node (`nodes`: old node → new node; a node not named maps to the node of the same
/// name), keeping its time on the node and its timer. Checked at once (every node a
/// customer can be on needs an image of a kind that can hold them; errors name
/// `nodes.<node>`), then written to the log as a control entry and applied by the
/// processor in log order to every instance of `from_version` active at that point: each
/// gets a timeline line `migrated from v1 node X to v2 node Y`, and the flow counts them
/// (`exited.migrated` in the old version, `migrated_in` in the new).
#[utoipa::path(post, path = "/api/v1/journeys/{journey}/migrate", tag = "journeys",
    params(("journey" = String, Path, description = PARAM)),
    request_body = wire::MigrateRequest,
    responses((status = 202, body = wire::MigrationAccepted),
        (status = 400, description = "a version that does not exist or is a draft (`from_version`, `to_version`), or a node without an image (`nodes.<node>`)", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn migrate_journey(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(name): Path<String>,
    Json(body): Json<wire::MigrateRequest>,
) -> Result<(StatusCode, axum::Json<wire::MigrationAccepted>), ApiError> {
    let migration = rapport_journeys::version::Migration {
        from_version: body.from_version,
        to_version: body.to_version,
        map: body.nodes,
    };
    let store = state.store.clone();
    let journey = name.clone();
    let checked = migration.clone();
    crate::blocking(move || {
        let j = Journeys {
            store: store.as_ref(),
        }
        .get(&journey)?;
        rapport_engine::journeys::plan_for(&j, &checked).map_err(|e| match e {
            // The domain names the map `map`; the API calls it `nodes`.
            rapport_engine::EngineError::InvalidAt { field, message } => {
                rapport_engine::EngineError::InvalidAt {
                    field: field
                        .strip_prefix("map.")
                        .map_or(field.clone(), |n| format!("nodes.{n}")),
                    message,
                }
            }
            e => e,
        })?;
        Ok(())
    })
    .await?;
    let request = rapport_engine::journeys::MigrationRequest::new(
        &name,
        migration,
        Utc::now(),
        Some(admin.id),
    );
    let appended = state.ingestor.append(vec![request.append_item()]).await?;
    let offset = match appended.first() {
        Some(rapport_store::Appended::Stored(o)) => Some(*o),
        _ => None,
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(wire::MigrationAccepted {
            status: "accepted".into(),
            request: request.request,
            offset,
        }),
    ))
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
