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
//!
//! Each source's settings bound what its (often public) write key can do here: a message
//! setting a trait the source may not set is refused with `400 trait_not_allowed` naming the
//! field (`traits.plan`) — refused, not trimmed, so that what is stored stays what the
//! client sent — and rate limits per source and per client IP answer `429 rate_limited`
//! ([`crate::rate_limit`]). See `docs/security.md`.
//!
//! A source's tracking plan is checked here too, after the trait policy: a message whose
//! rule blocks is refused like a refused trait (`400 tracking_plan_violation` naming the
//! field; in a batch, listed under `rejected`), a flagged one is stored with its violations
//! in `planViolations`, and every violation is counted in the source's report
//! (`docs/tracking-plans.md`).

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::TrackingErrors;
use crate::request::{presented_key, read_body};
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rapport_api::Code;
use rapport_core::event::{Event, EventType, ParsedRequest, Stamp};
use rapport_engine::access::Principal;
use rapport_engine::tracking_plans::ActivePlan;
use rapport_plans::{Check, CompiledPlan, Message, Outcome, SubjectKind};
use rapport_store::{AppendItem, Appended, SourceSettings, TraitPolicy};
use std::net::SocketAddr;
use std::sync::Arc;

/// The peer's address, when the server runs with connection info.
pub type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Why a tracking request was refused.
pub enum IngestError {
    Api(ApiError),
    Limited(crate::rate_limit::Limited),
}

impl From<ApiError> for IngestError {
    fn from(e: ApiError) -> Self {
        IngestError::Api(e)
    }
}

impl From<rapport_core::event::PayloadError> for IngestError {
    fn from(e: rapport_core::event::PayloadError) -> Self {
        IngestError::Api(e.into())
    }
}

impl From<rapport_engine::EngineError> for IngestError {
    fn from(e: rapport_engine::EngineError) -> Self {
        IngestError::Api(e.into())
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        match self {
            IngestError::Api(e) => e.into_response(),
            IngestError::Limited(l) => {
                metrics::counter!("rapport_requests_rate_limited_total", "scope" => l.scope)
                    .increment(1);
                l.into_response()
            }
        }
    }
}

pub use rapport_api::tracking::{IngestResponse, RejectedItem};

#[derive(Clone, Copy)]
pub enum Endpoint {
    Single(EventType),
    Batch,
}

/// A tracking endpoint, at its path and at the one-letter alias analytics.js 2.0 and the
/// mobile SDKs post to, each described in the OpenAPI document.
macro_rules! endpoint {
    ($name:ident, $alias:ident, $path:literal, $short:literal, $body:ty, $endpoint:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "tracking", security(("write_key" = [])),
            request_body(content = $body, content_type = "application/json",
                description = "Read as JSON whatever the Content-Type; gzip allowed"),
            responses((status = 200, description = "stored and fsynced", body = IngestResponse), TrackingErrors))]
        pub async fn $name(
            State(state): State<AppState>,
            peer: Peer,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<IngestResponse>, IngestError> {
            ingest(state, peer, headers, body, $endpoint, $path).await
        }

        #[doc = concat!("The same as `", $path, "`, at the path analytics.js 2.0 and the mobile SDKs use.")]
        #[utoipa::path(post, path = $short, tag = "tracking", security(("write_key" = [])),
            request_body(content = $body, content_type = "application/json"),
            responses((status = 200, description = "stored and fsynced", body = IngestResponse), TrackingErrors))]
        pub async fn $alias(
            State(state): State<AppState>,
            peer: Peer,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<IngestResponse>, IngestError> {
            ingest(state, peer, headers, body, $endpoint, $short).await
        }
    };
}

use rapport_api::tracking as wire;
endpoint!(
    track,
    track_short,
    "/v1/track",
    "/v1/t",
    wire::Track,
    Endpoint::Single(EventType::Track),
    "Something the user did."
);
endpoint!(
    identify,
    identify_short,
    "/v1/identify",
    "/v1/i",
    wire::Identify,
    Endpoint::Single(EventType::Identify),
    "Who the user is: their traits."
);
endpoint!(
    page,
    page_short,
    "/v1/page",
    "/v1/p",
    wire::Page,
    Endpoint::Single(EventType::Page),
    "A page viewed."
);
endpoint!(
    screen,
    screen_short,
    "/v1/screen",
    "/v1/s",
    wire::Page,
    Endpoint::Single(EventType::Screen),
    "A screen viewed in an app."
);
endpoint!(
    group,
    group_short,
    "/v1/group",
    "/v1/g",
    wire::Group,
    Endpoint::Single(EventType::Group),
    "The user belongs to a group (an account)."
);
endpoint!(
    alias,
    alias_short,
    "/v1/alias",
    "/v1/a",
    wire::Alias,
    Endpoint::Single(EventType::Alias),
    "Two ids are one user."
);
endpoint!(
    batch,
    batch_short,
    "/v1/batch",
    "/v1/b",
    wire::Batch,
    Endpoint::Batch,
    "Many messages at once; each is stored or refused on its own (`rejected`)."
);

/// The same as `/v1/batch`: Segment's path for historical imports.
#[utoipa::path(post, path = "/v1/import", tag = "tracking", security(("write_key" = [])),
    request_body(content = wire::Batch, content_type = "application/json"),
    responses((status = 200, description = "stored and fsynced", body = IngestResponse), TrackingErrors))]
pub async fn import(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, IngestError> {
    ingest(state, peer, headers, body, Endpoint::Batch, "/v1/import").await
}

/// The settings ingest applies to a source: from the cache, else from the store.
async fn settings_of(state: &AppState, source_id: &str) -> Result<Arc<SourceSettings>, ApiError> {
    if let Some(s) = state.access.cached_settings(source_id) {
        return Ok(s);
    }
    let (access, id) = (state.access.clone(), source_id.to_owned());
    crate::blocking(move || Ok(access.source_settings(&id)?)).await
}

/// Takes one request from the client address's bucket for this source, if it has a limit.
fn check_ip(
    state: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    source_id: &str,
    settings: &SourceSettings,
) -> Result<(), IngestError> {
    let options = &state.config.rate_limits;
    let Some(limit) = settings.ip_rate_limit.or(options.default_ip) else {
        return Ok(());
    };
    let peer = peer.as_ref().map(|Extension(ConnectInfo(addr))| *addr);
    let Some(ip) = crate::rate_limit::client_ip(peer, headers, &options.trusted_proxies) else {
        return Ok(());
    };
    state
        .config
        .limiters
        .check_ip(source_id, limit, ip, options.max_tracked_ips)
        .map_err(IngestError::Limited)
}

/// The first trait of `event` that `policy` refuses, as a field name (`traits.plan`,
/// `context.traits.plan`). `traits` of identify and group calls and `context.traits` of
/// every call are what become profile and account traits.
pub fn refused_trait(event: &Event, policy: &TraitPolicy) -> Option<String> {
    use rapport_core::identity::object_map;
    if matches!(event.kind, EventType::Identify | EventType::Group)
        && let Some(traits) = object_map(event.traits.as_ref())
        && let Some(name) = traits.keys().find(|k| !policy.permits(k))
    {
        return Some(format!("traits.{name}"));
    }
    let context = object_map(event.context.as_ref())?;
    let traits = context.get("traits")?.as_object()?;
    traits
        .keys()
        .find(|k| !policy.permits(k))
        .map(|name| format!("context.traits.{name}"))
}

// A plan may name only event names ingest takes.
const _: () =
    assert!(rapport_plans::plan::MAX_EVENT_NAME_BYTES == rapport_core::event::MAX_NAME_BYTES);

/// The tracking plan in force for a source: from the cache, else from the store.
async fn plan_of(state: &AppState, source_id: &str) -> Result<Option<Arc<ActivePlan>>, ApiError> {
    if let Some(p) = state.plans.cached(source_id) {
        return Ok(p);
    }
    let (plans, id) = (state.plans.clone(), source_id.to_owned());
    crate::blocking(move || Ok(plans.active(&id)?)).await
}

/// Checks a message against its source's plan: `properties` of track calls, `traits` of
/// identify and group calls (`None`: it keeps to the plan, or the plan does not cover it).
pub fn plan_check(plan: &CompiledPlan, event: &Event) -> Option<Check> {
    let parse = |raw: &Option<rapport_core::event::RawObject>| {
        raw.as_ref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
    };
    match event.kind {
        EventType::Track => {
            let properties = parse(&event.properties);
            plan.check(Message::Track {
                event: event.event.as_deref()?,
                properties: properties.as_ref(),
            })
        }
        EventType::Identify => plan.check(Message::Identify {
            traits: parse(&event.traits).as_ref(),
        }),
        EventType::Group => plan.check(Message::Group {
            traits: parse(&event.traits).as_ref(),
        }),
        _ => None,
    }
}

/// The refusal of a blocked message: `field` is the first field at fault, the message its
/// JSON pointer and what the plan expected.
fn plan_refusal(event: &Event, check: &Check) -> ErrorBody {
    let first = &check.violations[0];
    let subject = match check.subject.kind {
        SubjectKind::Identify => "identify traits".to_owned(),
        SubjectKind::Group => "group traits".to_owned(),
        _ => format!("`{}`", event.event.as_deref().unwrap_or_default()),
    };
    let more = match check.total {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    ErrorBody {
        code: Code::TrackingPlanViolation,
        message: format!(
            "{subject} breaks this source's tracking plan at {}: {}{more}",
            first.field, first.message
        ),
        field: Some(first.path()),
    }
}

/// Records a flagged message's violations in the stored event, in a field of Rapport's own
/// beside `receivedAt`: the client's objects stay as sent.
fn flag(event: &mut Event, check: &Check) {
    let raw = serde_json::value::to_raw_value(&check.violations).expect("violations serialise");
    event
        .extra
        .push((rapport_core::event::PLAN_VIOLATIONS_FIELD.to_owned(), raw));
}

/// Adds one request's violations to the source's report. The messages are already stored
/// or refused: a failure here is logged and counted, never the request's.
async fn record_violations(state: &AppState, source_id: &str, checks: Vec<(Check, i64)>) {
    if checks.is_empty() {
        return;
    }
    for (check, _) in &checks {
        let outcome = match check.outcome {
            Outcome::Allowed => "allowed",
            Outcome::Flagged => "flagged",
            Outcome::Blocked => "blocked",
        };
        metrics::counter!("rapport_plan_violations_total", "outcome" => outcome).increment(1);
    }
    let (plans, id) = (state.plans.clone(), source_id.to_owned());
    let result = crate::blocking(move || Ok(plans.record(&id, &checks)?)).await;
    if let Err(e) = result {
        metrics::counter!("rapport_plan_violations_unrecorded_total").increment(1);
        tracing::warn!(source = source_id, error = ?e.body.message, "tracking plan violations not recorded");
    }
}

/// What a request's refusals are recorded with (`crate::rejections`): gathered while it
/// is read, recorded once it is answered.
#[derive(Default)]
struct Refusals {
    /// The source of the write key, once it is known to be valid.
    source_id: Option<String>,
    /// The endpoint's message type, for refusals of the request as a whole.
    kind: Option<&'static str>,
    /// Each refused message: its error and what tells it apart.
    items: Vec<(ErrorBody, rapport_core::event::MessageSummary)>,
    /// Whether the request's error is the refusal of its every message (already in `items`).
    all_refused: bool,
}

async fn ingest(
    state: AppState,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
    path: &'static str,
) -> Result<Json<IngestResponse>, IngestError> {
    let mut refusals = Refusals {
        kind: match endpoint {
            Endpoint::Single(t) => Some(t.as_str()),
            Endpoint::Batch => None,
        },
        ..Refusals::default()
    };
    let result = ingest_request(&state, peer, headers, body, endpoint, &mut refusals).await;
    let at_ms = crate::now_ms();
    let record = |error: ErrorBody, summary| {
        state.rejections.record(crate::rejections::Refusal {
            seq: 0,
            at_ms,
            source_id: refusals.source_id.clone(),
            code: error.code,
            field: error.field,
            message: error.message,
            summary,
            path,
        })
    };
    let request_error = match &result {
        Err(IngestError::Api(e)) if !refusals.all_refused && e.status.is_client_error() => {
            Some(e.body.clone())
        }
        Err(IngestError::Limited(l)) => Some(ErrorBody {
            code: Code::RateLimited,
            message: l.message(),
            field: None,
        }),
        _ => None,
    };
    match request_error {
        Some(error) => {
            let summary = rapport_core::event::MessageSummary {
                kind: refusals.kind.map(str::to_owned),
                ..Default::default()
            };
            record(error, summary)
        }
        None => {
            for (error, summary) in std::mem::take(&mut refusals.items) {
                record(error, summary);
            }
        }
    }
    result
}

async fn ingest_request(
    state: &AppState,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
    refusals: &mut Refusals,
) -> Result<Json<IngestResponse>, IngestError> {
    let state = state.clone();
    let received_at = chrono::Utc::now();
    if let Some(origin) = headers.get(axum::http::header::ORIGIN)
        && !state
            .config
            .cors_allowed_origins
            .allows(origin.to_str().unwrap_or(""))
    {
        return Err(ApiError::new(
            Code::OriginNotAllowed,
            "pages of this origin may not send events here (cors_allowed_origins)",
        )
        .into());
    }
    let header_key = presented_key(&headers)?;
    // Authenticate before reading the body whenever the client sent a header, and apply
    // the per-IP limit before reading it too.
    let header_source = match &header_key {
        Some(key) => {
            let source_id = writer_source(&state, key).await?;
            refusals.source_id = Some(source_id.clone());
            let settings = settings_of(&state, &source_id).await?;
            check_ip(&state, &peer, &headers, &source_id, &settings)?;
            Some((source_id, settings))
        }
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
    let (source_id, settings) = match header_source {
        Some(s) => s,
        None => match &parsed.write_key {
            Some(key) => {
                let source_id = writer_source(&state, key).await?;
                refusals.source_id = Some(source_id.clone());
                let settings = settings_of(&state, &source_id).await?;
                check_ip(&state, &peer, &headers, &source_id, &settings)?;
                (source_id, settings)
            }
            None => {
                return Err(ApiError::new(
                    Code::MissingWriteKey,
                    "send the write key as HTTP Basic user name or as `writeKey` in the body",
                )
                .into());
            }
        },
    };
    let trait_policy = (!settings.traits.is_unrestricted()).then_some(&settings.traits);
    let plan = plan_of(&state, &source_id).await?;
    let received_ms = received_at.timestamp_millis();

    let stamp = Stamp {
        received_at,
        source_id: &source_id,
    };
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    let results = parsed.events(&stamp, &limits, &mut new_id);
    let mut items = Vec::with_capacity(results.len());
    let mut rejected = Vec::new();
    let mut suppressed = 0;
    // Violations of the tracking plan: blocked ones, and stored ones by their item's index
    // (counted only if the log stores them, not for a duplicate).
    let mut blocked: Vec<(Check, i64)> = Vec::new();
    let mut kept: Vec<(usize, Check)> = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        // A suppressed person's events are dropped before storage (docs/privacy.md).
        if let Ok(event) = &result
            && state.privacy.suppressions.event(event)
        {
            suppressed += 1;
            continue;
        }
        let refused = match (&result, trait_policy) {
            (Ok(event), Some(policy)) => refused_trait(event, policy),
            _ => None,
        };
        let mut result = result;
        if let (Ok(event), None, Some(plan)) = (&mut result, &refused, &plan)
            && let Some(check) = plan_check(&plan.compiled, event)
        {
            match check.outcome {
                Outcome::Blocked => {
                    rejected.push(RejectedItem {
                        index,
                        error: plan_refusal(event, &check),
                    });
                    blocked.push((check, received_ms));
                    continue;
                }
                Outcome::Flagged => {
                    flag(event, &check);
                    kept.push((items.len(), check));
                }
                Outcome::Allowed => kept.push((items.len(), check)),
            }
        }
        match result {
            Ok(_) if refused.is_some() => {
                let field = refused.expect("checked");
                rejected.push(RejectedItem {
                    index,
                    error: ErrorBody {
                        code: Code::TraitNotAllowed,
                        message: format!("this source may not set `{field}`"),
                        field: Some(field),
                    },
                })
            }
            Ok(event) => items.push(AppendItem {
                dedup_key: event.dedup_key(),
                payload: event.to_json(),
            }),
            Err(e) => rejected.push(RejectedItem {
                index,
                error: crate::error::payload_body(&e),
            }),
        }
    }
    metrics::counter!("rapport_events_rejected_total").increment(rejected.len() as u64);
    refusals.items = rejected
        .iter()
        .map(|r| (r.error.clone(), parsed.summary(r.index)))
        .collect();
    metrics::counter!("rapport_events_suppressed_total").increment(suppressed as u64);
    if items.is_empty() && rejected.is_empty() {
        return Ok(Json(IngestResponse {
            success: true,
            accepted: 0,
            duplicates: 0,
            suppressed,
            rejected,
        }));
    }
    if items.is_empty() {
        refusals.all_refused = true;
        record_violations(&state, &source_id, blocked).await;
        let first = rejected
            .into_iter()
            .next()
            .expect("a request has at least one message");
        return Err(ApiError {
            status: payload_status_of(&first.error),
            body: first.error,
        }
        .into());
    }
    if let Some(limit) = settings
        .rate_limit
        .or(state.config.rate_limits.default_source)
    {
        state
            .config
            .limiters
            .check_source(&source_id, limit, items.len())
            .map_err(IngestError::Limited)?;
    }
    let outcomes = state.ingestor.append(items).await?;
    let stored = kept
        .into_iter()
        .filter(|(i, _)| matches!(outcomes.get(*i), Some(Appended::Stored(_))))
        .map(|(_, check)| (check, received_ms));
    blocked.extend(stored);
    record_violations(&state, &source_id, blocked).await;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Stored(_)))
        .count();
    Ok(Json(IngestResponse {
        success: true,
        accepted,
        duplicates: outcomes.len() - accepted,
        suppressed,
        rejected,
    }))
}

fn payload_status_of(body: &ErrorBody) -> axum::http::StatusCode {
    axum::http::StatusCode::from_u16(body.code.status()).expect("the table's statuses are valid")
}

async fn writer_source(state: &AppState, key: &str) -> Result<String, ApiError> {
    match crate::authenticate(state, key).await? {
        Some(Principal::Writer { source_id, .. }) => Ok(source_id),
        Some(Principal::Admin { .. }) => Err(ApiError::new(
            Code::WrongKeyKind,
            "an admin key cannot send events; use a source's write key",
        )),
        None => Err(ApiError::new(
            Code::InvalidWriteKey,
            "the write key is unknown or revoked",
        )),
    }
}

pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(track))
        .routes(routes!(track_short))
        .routes(routes!(identify))
        .routes(routes!(identify_short))
        .routes(routes!(page))
        .routes(routes!(page_short))
        .routes(routes!(screen))
        .routes(routes!(screen_short))
        .routes(routes!(group))
        .routes(routes!(group_short))
        .routes(routes!(alias))
        .routes(routes!(alias_short))
        .routes(routes!(batch))
        .routes(routes!(batch_short))
        .routes(routes!(import))
}
