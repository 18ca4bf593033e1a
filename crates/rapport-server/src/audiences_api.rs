//! The audience API: computed traits and segments (define, edit, delete, list), segment
//! members (paged), size over time, backfill progress, and the feed of segment entries and
//! exits that journeys and destinations consume.

use crate::error::ApiError;
use crate::extract::Query;
use crate::now_ms;
use crate::openapi::AdminErrors;
use crate::request::read_body;
use crate::{AppState, blocking};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::SecondsFormat;
use rapport_api::Code;
use rapport_api::audiences::{self as wire, BackfillState};
use rapport_api::page::{List, Page, PageQuery};
use rapport_core::event::format_timestamp;
use rapport_engine::EngineError;
use rapport_engine::audiences::definitions::{
    ComputedTraitDef, ComputedTraitSpec, Definitions, SegmentDef, SegmentSpec, validate_name,
};
use rapport_engine::audiences::preview;
use rapport_engine::audiences::profile::Cause;
use rapport_engine::audiences::store::{AudienceMeta, Audiences};
use rapport_engine::audiences::{AudienceChange, ChangeKind};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const MAX_DEFINITION_BYTES: usize = 64 * 1024;

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| format_timestamp(&t))
        .unwrap_or_default()
}

fn trait_view(d: ComputedTraitDef) -> wire::ComputedTrait {
    wire::ComputedTrait {
        name: d.name,
        description: d.description,
        expression: d.expression,
        value_type: d.value_type.to_string(),
        created_at: ts(d.created_at_ms),
        updated_at: ts(d.updated_at_ms),
    }
}

fn trait_spec(w: wire::ComputedTraitDefinition) -> ComputedTraitSpec {
    ComputedTraitSpec {
        name: w.name,
        description: w.description,
        expression: w.expression,
        function: w.function,
        property: w.property,
        event: w.event,
        condition: w.condition,
        window: w.window,
    }
}

fn segment_spec(w: wire::SegmentDefinition) -> SegmentSpec {
    SegmentSpec {
        name: w.name,
        description: w.description,
        expression: w.expression,
    }
}

/// How far evaluating the current definitions over existing profiles has come.
fn backfill_view(meta: &AudienceMeta, version: u64) -> wire::Backfill {
    let b = &meta.backfill;
    if b.version != version {
        return wire::Backfill {
            state: BackfillState::Pending,
            processed: 0,
            total: meta.profiles,
            started_at: None,
            finished_at: None,
        };
    }
    wire::Backfill {
        state: if b.running() {
            BackfillState::Running
        } else {
            BackfillState::Done
        },
        processed: b.processed,
        total: b.total,
        started_at: Some(ts(b.started_at_ms)),
        finished_at: b.finished_at_ms.map(ts),
    }
}

fn segment_view(d: SegmentDef, meta: &AudienceMeta, version: u64) -> wire::Segment {
    wire::Segment {
        size: meta.sizes.get(&d.name).copied().unwrap_or(0),
        backfill: backfill_view(meta, version),
        name: d.name,
        description: d.description,
        expression: d.expression,
        created_at: ts(d.created_at_ms),
        updated_at: ts(d.updated_at_ms),
    }
}

/// A change of the feed as the API has always sent it: `at` in chrono's RFC 3339 form
/// (fractional seconds as precise as the clock, none when whole).
fn change_view(c: AudienceChange) -> wire::AudienceChange {
    wire::AudienceChange {
        seq: c.seq,
        segment: c.segment,
        profile: c.profile,
        change: match c.change {
            ChangeKind::Entered => wire::ChangeKind::Entered,
            ChangeKind::Exited => wire::ChangeKind::Exited,
        },
        at: c.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        cause: match c.cause {
            Cause::Event { offset } => wire::Cause::Event { offset },
            Cause::Schedule => wire::Cause::Schedule,
            Cause::Backfill => wire::Cause::Backfill,
            Cause::Merge { into } => wire::Cause::Merge { into },
            Cause::Deleted => wire::Cause::Deleted,
        },
    }
}

/// Runs `f` off the async threads with the definitions and audience data of the store.
async fn with_audiences<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Definitions<'_>, &Audiences<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        f(
            &Definitions {
                store: store.as_ref(),
            },
            &Audiences {
                store: store.as_ref(),
            },
        )
    })
    .await
}

/// The `{name}` of the path: a name no definition could have is a fault of the path
/// parameter (`400 invalid_parameter` naming `name`).
fn name_from_path(name: &str) -> Result<(), ApiError> {
    validate_name("name", name).map_err(|e| match e {
        rapport_engine::EngineError::Invalid { message, .. } => {
            ApiError::new(Code::InvalidParameter, message).with_field("name")
        }
        e => e.into(),
    })
}

/// The body's `name`, which must agree with the URL's when both are given.
fn same_name(path: &str, body: &mut String) -> Result<(), ApiError> {
    if body.is_empty() {
        *body = path.to_owned();
    } else if body != path {
        return Err(ApiError::new(
            Code::InvalidField,
            format!("the body names {body:?} but the URL names {path:?}"),
        )
        .with_field("name"));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/computed-traits", tag = "audiences", responses((status = 200, description = "every computed trait, by name", body = List<wire::ComputedTrait>), AdminErrors))]
pub async fn list_computed_traits(
    State(state): State<AppState>,
) -> Result<Json<List<wire::ComputedTrait>>, ApiError> {
    with_audiences(&state, |d, _| {
        Ok(List {
            data: d.load()?.traits.into_values().map(trait_view).collect(),
        })
    })
    .await
    .map(Json)
}

async fn put_trait(
    state: AppState,
    spec: ComputedTraitSpec,
) -> Result<(StatusCode, Json<wire::ComputedTrait>), ApiError> {
    let (def, created) =
        with_audiences(&state, move |d, _| Ok(d.put_trait(&spec, now_ms())?)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(trait_view(def))))
}

/// Reads a definition body: not the `Json` extractor, for its own size limit, but its
/// parser, so that a definition's errors follow the rule of every REST body.
async fn definition_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    crate::extract::parse_body(&read_body(headers, body, MAX_DEFINITION_BYTES).await?)
}

/// `POST /api/v1/computed-traits`: defines a new computed trait (409 if the name is taken).
#[utoipa::path(post, path = "/api/v1/computed-traits", tag = "audiences", request_body(content = wire::ComputedTraitDefinition, description = "`name` and `expression`, or `function` and friends (`docs/segments.md`)"), responses((status = 201, description = "defined", body = wire::ComputedTrait), (status = 409, description = "the name is taken", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn create_computed_trait(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<wire::ComputedTrait>), ApiError> {
    let spec = trait_spec(definition_body(&headers, body).await?);
    let name = spec.name.clone();
    let exists =
        with_audiences(&state, move |d, _| Ok(d.load()?.traits.contains_key(&name))).await?;
    if exists {
        return Err(EngineError::Conflict(format!(
            "computed trait {} exists; PUT /api/v1/computed-traits/{} replaces it",
            spec.name, spec.name
        ))
        .into());
    }
    put_trait(state, spec).await
}

/// `PUT /api/v1/computed-traits/{name}`: creates or replaces.
#[utoipa::path(put, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), request_body(content = wire::ComputedTraitDefinition, description = "the definition; `name` may be left out"), responses((status = 200, description = "replaced", body = wire::ComputedTrait), (status = 201, description = "defined", body = wire::ComputedTrait), AdminErrors))]
pub async fn replace_computed_trait(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<wire::ComputedTrait>), ApiError> {
    name_from_path(&name)?;
    let mut spec = trait_spec(definition_body(&headers, body).await?);
    same_name(&name, &mut spec.name)?;
    put_trait(state, spec).await
}

#[utoipa::path(get, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), responses((status = 200, description = "the definition", body = wire::ComputedTrait), AdminErrors))]
pub async fn get_computed_trait(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::ComputedTrait>, ApiError> {
    with_audiences(&state, move |d, _| {
        d.load()?
            .traits
            .remove(&name)
            .map(trait_view)
            .ok_or_else(|| ApiError::not_found(format!("no computed trait {name}")))
    })
    .await
    .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), responses((status = 204, description = "deleted"), (status = 409, description = "a segment or trait uses it", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn delete_computed_trait(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_audiences(&state, move |d, _| Ok(d.delete_trait(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/segments", tag = "audiences", responses((status = 200, description = "every segment with its size, by name", body = List<wire::Segment>), AdminErrors))]
pub async fn list_segments(
    State(state): State<AppState>,
) -> Result<Json<List<wire::Segment>>, ApiError> {
    with_audiences(&state, |d, a| {
        let set = d.load()?;
        let meta = a.meta()?;
        Ok(List {
            data: set
                .segments
                .into_values()
                .map(|d| segment_view(d, &meta, set.version))
                .collect(),
        })
    })
    .await
    .map(Json)
}

async fn put_segment(
    state: AppState,
    spec: SegmentSpec,
    must_be_new: bool,
) -> Result<(StatusCode, Json<wire::Segment>), ApiError> {
    let (view, created) = with_audiences(&state, move |definitions, a| {
        if must_be_new && definitions.load()?.segments.contains_key(&spec.name) {
            return Err(EngineError::Conflict(format!(
                "segment {} exists; PUT /api/v1/segments/{} replaces it",
                spec.name, spec.name
            ))
            .into());
        }
        let (def, created) = definitions.put_segment(&spec, now_ms())?;
        let version = definitions.version()?;
        Ok((segment_view(def, &a.meta()?, version), created))
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `POST /api/v1/segments`: defines a segment; existing profiles are evaluated in the
/// background (see `backfill`).
#[utoipa::path(post, path = "/api/v1/segments", tag = "audiences", request_body(content = wire::SegmentDefinition, description = "`name`, `expression`, `description` (`docs/segments.md`)"), responses((status = 201, description = "defined", body = wire::Segment), (status = 409, description = "the name is taken", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn create_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<wire::Segment>), ApiError> {
    let spec = segment_spec(definition_body(&headers, body).await?);
    put_segment(state, spec, true).await
}

/// `PUT /api/v1/segments/{name}`: creates or replaces.
#[utoipa::path(put, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), request_body(content = wire::SegmentDefinition, description = "the definition; `name` may be left out"), responses((status = 200, description = "replaced", body = wire::Segment), (status = 201, description = "defined", body = wire::Segment), AdminErrors))]
pub async fn replace_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<wire::Segment>), ApiError> {
    name_from_path(&name)?;
    let mut spec = segment_spec(definition_body(&headers, body).await?);
    same_name(&name, &mut spec.name)?;
    put_segment(state, spec, false).await
}

#[utoipa::path(get, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 200, description = "the definition, its size and backfill", body = wire::Segment), AdminErrors))]
pub async fn get_segment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Segment>, ApiError> {
    with_audiences(&state, move |d, a| {
        let mut set = d.load()?;
        let def = set
            .segments
            .remove(&name)
            .ok_or_else(|| ApiError::not_found(format!("no segment {name}")))?;
        Ok(segment_view(def, &a.meta()?, set.version))
    })
    .await
    .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 204, description = "deleted"), (status = 409, description = "another definition uses it", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn delete_segment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_audiences(&state, move |d, _| Ok(d.delete_segment(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn require_segment(state: &AppState, name: &str) -> Result<(), ApiError> {
    let name = name.to_owned();
    with_audiences(state, move |d, _| {
        if d.load()?.segments.contains_key(&name) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("no segment {name}")))
        }
    })
    .await
}

/// `GET /api/v1/segments/{name}/members?limit=&cursor=`: members by profile id, paged.
#[utoipa::path(get, path = "/api/v1/segments/{name}/members", tag = "audiences", params(("name" = String, Path, description = "The segment's name"), PageQuery), responses((status = 200, description = "members by profile id", body = Page<wire::Member>), AdminErrors))]
pub async fn list_members(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<wire::Member>>, ApiError> {
    let (limit, cursor) = (page.limit.unwrap_or_default().get(), page.cursor);
    require_segment(&state, &name).await?;
    with_audiences(&state, move |_, a| {
        let (page, next) = a.members(&name, cursor.as_deref(), limit)?;
        let data = page
            .into_iter()
            .map(|(profile, at)| {
                Ok(wire::Member {
                    main_identifier: a.main_identifier(&profile)?,
                    profile,
                    entered_at: ts(at),
                })
            })
            .collect::<Result<_, rapport_engine::EngineError>>()?;
        Ok(Page {
            data,
            next_cursor: next,
        })
    })
    .await
    .map(Json)
}

/// `GET /api/v1/segments/{name}/size-history`: size at the end of every hour it changed.
#[utoipa::path(get, path = "/api/v1/segments/{name}/size-history", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 200, description = "the size at the end of every hour it changed, oldest first", body = List<wire::SizePoint>), AdminErrors))]
pub async fn size_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<List<wire::SizePoint>>, ApiError> {
    require_segment(&state, &name).await?;
    with_audiences(&state, move |_, a| {
        let points = a.size_history(&name)?;
        Ok(List {
            data: points
                .into_iter()
                .map(|(hour, size)| wire::SizePoint {
                    hour: ts(hour),
                    size,
                })
                .collect(),
        })
    })
    .await
    .map(Json)
}

/// `GET /api/v1/audience-changes?after=&limit=&segment=`: segment entries and exits in the
/// order they happened, for consumers that react to them.
#[utoipa::path(get, path = "/api/v1/audience-changes", tag = "audiences", params(wire::FeedQuery), responses((status = 200, description = "entries and exits in order", body = wire::FeedPage), AdminErrors))]
pub async fn audience_changes(
    State(state): State<AppState>,
    Query(q): Query<wire::FeedQuery>,
) -> Result<Json<wire::FeedPage>, ApiError> {
    let limit = q.limit.unwrap_or_default().get();
    let segment = q.segment;
    let after = match q.after.as_deref() {
        None => 0u64,
        Some(v) => v.parse().map_err(|_| {
            ApiError::new(
                Code::InvalidParameter,
                "`after` must be a sequence number from a previous page",
            )
            .with_field("after")
        })?,
    };
    with_audiences(&state, move |_, audiences| {
        let mut data = Vec::new();
        let mut cursor = after;
        // Filtering by segment may skip many entries: read on until the page is full or
        // the feed ends.
        loop {
            let page = audiences.feed(cursor, limit)?;
            let exhausted = page.len() < limit;
            for change in page {
                cursor = change.seq;
                if segment.as_ref().is_none_or(|s| *s == change.segment) {
                    data.push(change_view(change));
                    if data.len() == limit {
                        break;
                    }
                }
            }
            if exhausted || data.len() == limit {
                break;
            }
        }
        Ok(wire::FeedPage {
            data,
            next_after: cursor,
        })
    })
    .await
    .map(Json)
}

/// The audience part of a profile: computed trait values and memberships.
#[derive(Serialize, Default)]
pub struct ProfileAudienceView {
    pub computed: serde_json::Map<String, Value>,
    pub segments: Vec<SegmentMembership>,
}

pub use rapport_api::profiles::SegmentMembership;

/// Reads the audience state of a live profile.
pub fn profile_audience(
    store: &dyn rapport_store::StateStore,
    profile: &str,
) -> Result<ProfileAudienceView, ApiError> {
    let Some(a) = (Audiences { store }).profile(profile)? else {
        return Ok(ProfileAudienceView::default());
    };
    Ok(ProfileAudienceView {
        computed: a.values.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        segments: a
            .segments
            .into_iter()
            .map(|(segment, at)| SegmentMembership {
                segment,
                entered_at: ts(at),
            })
            .collect(),
    })
}

/// `GET /api/v1/audiences/status`: whether existing profiles reflect the current definitions.
#[utoipa::path(get, path = "/api/v1/audiences/status", tag = "audiences", responses((status = 200, description = "the definitions' version, profiles and backfill progress", body = wire::AudiencesStatus), AdminErrors))]
pub async fn audience_status(
    State(state): State<AppState>,
) -> Result<Json<wire::AudiencesStatus>, ApiError> {
    with_audiences(&state, |d, a| {
        let version = d.version()?;
        let meta = a.meta()?;
        Ok(wire::AudiencesStatus {
            definitions_version: version,
            profiles: meta.profiles,
            backfill: backfill_view(&meta, version),
        })
    })
    .await
    .map(Json)
}

/// What a preview may read, from the request's `limit` (`400 invalid_field` naming `limit`
/// outside 1–100,000).
fn preview_limit(limit: Option<u64>) -> Result<usize, ApiError> {
    use rapport_engine::audiences::preview::{DEFAULT_PREVIEW_PROFILES, MAX_PREVIEW_PROFILES};
    match limit {
        None => Ok(DEFAULT_PREVIEW_PROFILES),
        Some(n) if (1..=MAX_PREVIEW_PROFILES as u64).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::new(
            Code::InvalidField,
            format!("limit must be from 1 to {MAX_PREVIEW_PROFILES}"),
        )
        .with_field("limit")),
    }
}

/// The preview as the API shows it; `name` is the computed trait's (none for a segment).
fn preview_view(p: preview::Preview, name: Option<&str>) -> wire::DefinitionPreview {
    wire::DefinitionPreview {
        profiles_read: p.profiles_read,
        profiles_total: p.profiles_total,
        exact: p.exact,
        matching: p.matching,
        examples: p
            .examples
            .into_iter()
            .map(|e| wire::PreviewExample {
                profile: e.profile,
                main_identifier: e.main_identifier,
                computed: match (name, e.value) {
                    (Some(name), Some(v)) => Some(serde_json::Map::from_iter([(name.into(), v)])),
                    _ => None,
                },
            })
            .collect(),
    }
}

/// A definition's problem as the check reports it; other errors (storage) stay errors.
fn problem(e: EngineError, conflict_field: &str) -> Result<wire::DefinitionProblem, ApiError> {
    match e {
        EngineError::Invalid { field, message } => Ok(wire::DefinitionProblem {
            field: field.into(),
            message,
            code: Code::InvalidField.as_str().into(),
        }),
        EngineError::Conflict(message) => Ok(wire::DefinitionProblem {
            field: conflict_field.into(),
            message,
            code: Code::Conflict.as_str().into(),
        }),
        e => Err(e.into()),
    }
}

fn rfm_source(state: &AppState) -> rapport_engine::audiences::RfmSource {
    let c = state.models.config();
    rapport_engine::audiences::RfmSource {
        event: c.purchase_event.clone(),
        revenue_property: c.revenue_property.clone(),
    }
}

/// `POST /api/v1/segments/check`: checks a segment as saving it would and, when it is
/// valid, counts the profiles it would hold now — exactly, or among the oldest `limit`
/// profiles (`exact: false`). Nothing is saved; what the editor shows while one types.
#[utoipa::path(post, path = "/api/v1/segments/check", tag = "audiences", request_body = wire::SegmentCheckRequest, responses((status = 200, description = "the problems, or none and the preview", body = wire::DefinitionCheck), AdminErrors))]
pub async fn check_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<wire::DefinitionCheck>, ApiError> {
    let request: wire::SegmentCheckRequest = definition_body(&headers, body).await?;
    let limit = preview_limit(request.limit)?;
    let spec = segment_spec(request.definition);
    let (store, rfm) = (state.store.clone(), rfm_source(&state));
    blocking(move || {
        let now = chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_default();
        Ok(Json(
            match preview::preview_segment(store.as_ref(), rfm, &spec, limit, now) {
                Ok(p) => wire::DefinitionCheck {
                    valid: true,
                    errors: vec![],
                    expression: None,
                    value_type: None,
                    preview: Some(preview_view(p, None)),
                },
                Err(e) => wire::DefinitionCheck {
                    valid: false,
                    errors: vec![problem(e, "expression")?],
                    expression: None,
                    value_type: None,
                    preview: None,
                },
            },
        ))
    })
    .await
}

/// `POST /api/v1/computed-traits/check`: checks a computed trait as saving it would and,
/// when it is valid, gives its canonical form and how many profiles would hold a value now,
/// with examples. Nothing is saved.
#[utoipa::path(post, path = "/api/v1/computed-traits/check", tag = "audiences", request_body = wire::ComputedTraitCheckRequest, responses((status = 200, description = "the problems, or none and the preview", body = wire::DefinitionCheck), AdminErrors))]
pub async fn check_computed_trait(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<wire::DefinitionCheck>, ApiError> {
    let request: wire::ComputedTraitCheckRequest = definition_body(&headers, body).await?;
    let limit = preview_limit(request.limit)?;
    let conflict_field = if request.definition.expression.is_some() {
        "expression"
    } else {
        "function"
    };
    let spec = trait_spec(request.definition);
    let (store, rfm) = (state.store.clone(), rfm_source(&state));
    blocking(move || {
        let now = chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_default();
        Ok(Json(
            match preview::preview_trait(store.as_ref(), rfm, &spec, limit, now) {
                Ok((def, p)) => wire::DefinitionCheck {
                    valid: true,
                    errors: vec![],
                    expression: Some(def.expression),
                    value_type: Some(def.value_type.to_string()),
                    preview: Some(preview_view(p, Some(&def.name))),
                },
                Err(e) => wire::DefinitionCheck {
                    valid: false,
                    errors: vec![problem(e, conflict_field)?],
                    expression: None,
                    value_type: None,
                    preview: None,
                },
            },
        ))
    })
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_computed_traits, create_computed_trait))
        .routes(routes!(check_computed_trait))
        .routes(routes!(check_segment))
        .routes(routes!(
            get_computed_trait,
            replace_computed_trait,
            delete_computed_trait
        ))
        .routes(routes!(list_segments, create_segment))
        .routes(routes!(get_segment, replace_segment, delete_segment))
        .routes(routes!(list_members))
        .routes(routes!(size_history))
        .routes(routes!(audience_status))
        .routes(routes!(audience_changes))
}
