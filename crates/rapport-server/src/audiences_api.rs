//! The audience API: computed traits and segments (define, edit, delete, list), segment
//! members (paged), size over time, backfill progress, and the feed of segment entries and
//! exits that journeys and destinations consume.

use crate::error::ApiError;
use crate::extract::Query;
use crate::now_ms;
use crate::openapi::AdminErrors;
use crate::request::{parse_json_body, read_body};
use crate::{AppState, blocking};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rapport_api::Code;
use rapport_api::page::PageQuery;
use rapport_core::event::format_timestamp;
use rapport_engine::EngineError;
use rapport_engine::audiences::AudienceChange;
use rapport_engine::audiences::definitions::{
    ComputedTraitDef, ComputedTraitSpec, Definitions, SegmentDef, SegmentSpec, validate_name,
};
use rapport_engine::audiences::store::{AudienceMeta, Audiences};
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

#[derive(Serialize)]
pub struct ComputedTraitView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub expression: String,
    pub value_type: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ComputedTraitDef> for ComputedTraitView {
    fn from(d: ComputedTraitDef) -> Self {
        ComputedTraitView {
            name: d.name,
            description: d.description,
            expression: d.expression,
            value_type: d.value_type.to_string(),
            created_at: ts(d.created_at_ms),
            updated_at: ts(d.updated_at_ms),
        }
    }
}

/// How far evaluating the current definitions over existing profiles has come.
#[derive(Serialize)]
pub struct BackfillView {
    /// `running` while existing profiles are being evaluated, `done` when every profile
    /// reflects the current definitions, `pending` until the processor has started.
    pub state: &'static str,
    pub processed: u64,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

fn backfill_view(meta: &AudienceMeta, version: u64) -> BackfillView {
    let b = &meta.backfill;
    if b.version != version {
        return BackfillView {
            state: "pending",
            processed: 0,
            total: meta.profiles,
            started_at: None,
            finished_at: None,
        };
    }
    BackfillView {
        state: if b.running() { "running" } else { "done" },
        processed: b.processed,
        total: b.total,
        started_at: Some(ts(b.started_at_ms)),
        finished_at: b.finished_at_ms.map(ts),
    }
}

#[derive(Serialize)]
pub struct SegmentView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub expression: String,
    pub size: u64,
    pub created_at: String,
    pub updated_at: String,
    pub backfill: BackfillView,
}

fn segment_view(d: SegmentDef, meta: &AudienceMeta, version: u64) -> SegmentView {
    SegmentView {
        size: meta.sizes.get(&d.name).copied().unwrap_or(0),
        backfill: backfill_view(meta, version),
        name: d.name,
        description: d.description,
        expression: d.expression,
        created_at: ts(d.created_at_ms),
        updated_at: ts(d.updated_at_ms),
    }
}

#[derive(Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
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

fn name_from_path(name: &str) -> Result<(), ApiError> {
    validate_name("name", name).map_err(ApiError::from)
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

#[utoipa::path(get, path = "/api/v1/computed-traits", tag = "audiences", responses((status = 200, description = "every computed trait: `{\"data\": [...]}`", body = Object), AdminErrors))]
pub async fn list_computed_traits(
    State(state): State<AppState>,
) -> Result<Json<List<ComputedTraitView>>, ApiError> {
    with_audiences(&state, |d, _| {
        Ok(List {
            data: d.load()?.traits.into_values().map(Into::into).collect(),
        })
    })
    .await
    .map(Json)
}

async fn put_trait(
    state: AppState,
    spec: ComputedTraitSpec,
) -> Result<(StatusCode, Json<ComputedTraitView>), ApiError> {
    let (def, created) =
        with_audiences(&state, move |d, _| Ok(d.put_trait(&spec, now_ms())?)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(def.into())))
}

/// `POST /api/v1/computed-traits`: defines a new computed trait (409 if the name is taken).
#[utoipa::path(post, path = "/api/v1/computed-traits", tag = "audiences", request_body(content = Object, description = "`name`, `expression`, `description` (`docs/segments.md`)"), responses((status = 201, description = "defined", body = Object), (status = 409, description = "the name is taken", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn create_computed_trait(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ComputedTraitView>), ApiError> {
    let spec: ComputedTraitSpec =
        parse_json_body(&read_body(&headers, body, MAX_DEFINITION_BYTES).await?)?;
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
#[utoipa::path(put, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), request_body(content = Object, description = "the definition"), responses((status = 200, description = "replaced", body = Object), (status = 201, description = "defined", body = Object), AdminErrors))]
pub async fn replace_computed_trait(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<ComputedTraitView>), ApiError> {
    name_from_path(&name)?;
    let mut spec: ComputedTraitSpec =
        parse_json_body(&read_body(&headers, body, MAX_DEFINITION_BYTES).await?)?;
    same_name(&name, &mut spec.name)?;
    put_trait(state, spec).await
}

#[utoipa::path(get, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), responses((status = 200, description = "the definition and its state", body = Object), AdminErrors))]
pub async fn get_computed_trait(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ComputedTraitView>, ApiError> {
    with_audiences(&state, move |d, _| {
        d.load()?
            .traits
            .remove(&name)
            .map(Into::into)
            .ok_or_else(|| ApiError::not_found(format!("no computed trait {name}")))
    })
    .await
    .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/computed-traits/{name}", tag = "audiences", params(("name" = String, Path, description = "The computed trait's name")), responses((status = 200, description = "deleted", body = Object), (status = 204, description = "deleted"), (status = 409, description = "a segment or trait uses it", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn delete_computed_trait(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_audiences(&state, move |d, _| Ok(d.delete_trait(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/segments", tag = "audiences", responses((status = 200, description = "every segment with its size: `{\"data\": [...]}`", body = Object), AdminErrors))]
pub async fn list_segments(
    State(state): State<AppState>,
) -> Result<Json<List<SegmentView>>, ApiError> {
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
) -> Result<(StatusCode, Json<SegmentView>), ApiError> {
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
#[utoipa::path(post, path = "/api/v1/segments", tag = "audiences", request_body(content = Object, description = "`name`, `expression`, `description` (`docs/segments.md`)"), responses((status = 201, description = "defined", body = Object), (status = 409, description = "the name is taken", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn create_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<SegmentView>), ApiError> {
    let spec: SegmentSpec =
        parse_json_body(&read_body(&headers, body, MAX_DEFINITION_BYTES).await?)?;
    put_segment(state, spec, true).await
}

/// `PUT /api/v1/segments/{name}`: creates or replaces.
#[utoipa::path(put, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), request_body(content = Object, description = "the definition"), responses((status = 200, description = "replaced", body = Object), (status = 201, description = "defined", body = Object), AdminErrors))]
pub async fn replace_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<SegmentView>), ApiError> {
    name_from_path(&name)?;
    let mut spec: SegmentSpec =
        parse_json_body(&read_body(&headers, body, MAX_DEFINITION_BYTES).await?)?;
    same_name(&name, &mut spec.name)?;
    put_segment(state, spec, false).await
}

#[utoipa::path(get, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 200, description = "the definition, its size and backfill", body = Object), AdminErrors))]
pub async fn get_segment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SegmentView>, ApiError> {
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

#[utoipa::path(delete, path = "/api/v1/segments/{name}", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 200, description = "deleted", body = Object), (status = 204, description = "deleted"), (status = 409, description = "another definition uses it", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn delete_segment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_audiences(&state, move |d, _| Ok(d.delete_segment(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct Member {
    pub profile: String,
    /// The member's user id, else e-mail, phone or anonymous id, as `kind:value`; null
    /// when it has none.
    pub main_identifier: Option<String>,
    pub entered_at: String,
}

#[derive(Serialize)]
pub struct MemberPage {
    pub data: Vec<Member>,
    pub next_cursor: Option<String>,
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
#[utoipa::path(get, path = "/api/v1/segments/{name}/members", tag = "audiences", params(("name" = String, Path, description = "The segment's name"), PageQuery), responses((status = 200, description = "members by profile id: `{\"data\": [{profile, main_identifier, entered_at}], \"next_cursor\"}`", body = Object), AdminErrors))]
pub async fn list_members(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    let (limit, cursor) = (page.limit.unwrap_or_default().get(), page.cursor);
    require_segment(&state, &name).await?;
    with_audiences(&state, move |_, a| {
        let (page, next) = a.members(&name, cursor.as_deref(), limit)?;
        let data = page
            .into_iter()
            .map(|(profile, at)| {
                Ok(Member {
                    main_identifier: a.main_identifier(&profile)?,
                    profile,
                    entered_at: ts(at),
                })
            })
            .collect::<Result<_, rapport_engine::EngineError>>()?;
        Ok(MemberPage {
            data,
            next_cursor: next,
        })
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct SizePoint {
    /// Start of the hour (UTC).
    pub hour: String,
    /// Members at the end of that hour (or now, for the current hour).
    pub size: u64,
}

/// `GET /api/v1/segments/{name}/size-history`: size at the end of every hour it changed.
#[utoipa::path(get, path = "/api/v1/segments/{name}/size-history", tag = "audiences", params(("name" = String, Path, description = "The segment's name")), responses((status = 200, description = "the size at the end of every hour it changed: `{\"data\": [{hour, size}]}`", body = Object), AdminErrors))]
pub async fn size_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<List<SizePoint>>, ApiError> {
    require_segment(&state, &name).await?;
    with_audiences(&state, move |_, a| {
        let points = a.size_history(&name)?;
        Ok(List {
            data: points
                .into_iter()
                .map(|(hour, size)| SizePoint {
                    hour: ts(hour),
                    size,
                })
                .collect(),
        })
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct FeedPage {
    pub data: Vec<AudienceChange>,
    /// Pass as `after` to continue.
    pub next_after: u64,
}

/// `GET /api/v1/audience-changes?after=&limit=&segment=`: segment entries and exits in the
/// order they happened, for consumers that react to them.
#[utoipa::path(get, path = "/api/v1/audience-changes", tag = "audiences", params(rapport_api::audiences::FeedQuery), responses((status = 200, description = "entries and exits in order: `{\"data\": [...], \"next_after\"}`", body = Object), AdminErrors))]
pub async fn audience_changes(
    State(state): State<AppState>,
    Query(q): Query<rapport_api::audiences::FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
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
                    data.push(change);
                    if data.len() == limit {
                        break;
                    }
                }
            }
            if exhausted || data.len() == limit {
                break;
            }
        }
        Ok(FeedPage {
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

#[derive(Serialize)]
pub struct AudienceStatus {
    /// Version of the definitions; grows with every change.
    pub definitions_version: u64,
    pub profiles: u64,
    pub backfill: BackfillView,
}

/// `GET /api/v1/audiences/status`: whether existing profiles reflect the current definitions.
#[utoipa::path(get, path = "/api/v1/audiences/status", tag = "audiences", responses((status = 200, description = "the definitions' version, profiles and backfill progress", body = Object), AdminErrors))]
pub async fn audience_status(
    State(state): State<AppState>,
) -> Result<Json<AudienceStatus>, ApiError> {
    with_audiences(&state, |d, a| {
        let version = d.version()?;
        let meta = a.meta()?;
        Ok(AudienceStatus {
            definitions_version: version,
            profiles: meta.profiles,
            backfill: backfill_view(&meta, version),
        })
    })
    .await
    .map(Json)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_computed_traits, create_computed_trait))
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
