//! Rapport's HTTP face: the Segment-compatible tracking API, the REST API, health and
//! Prometheus metrics. The only crate that knows HTTP status codes and wire formats; all
//! decisions are made by the engine and the core.

pub mod audiences_api;
pub mod audit;
pub mod audit_api;
pub mod consent_api;
pub mod cors;
pub mod dashboard;
pub mod destinations_api;
pub mod error;
pub mod events_api;
pub mod extract;
pub mod identity_api;
pub mod journeys_api;
pub mod keys_api;
pub mod listen;
pub mod openapi;
pub mod overview_api;
pub mod pii_api;
pub mod pipeline_api;
pub mod privacy_api;
pub mod profiles_api;
pub mod rate_limit;
pub mod rejections;
pub mod request;
pub mod scopes;
pub mod settings;
pub mod sources_api;
pub mod telemetry;
pub mod tracking;
pub mod tracking_plans_api;
pub mod value_api;
pub mod value_wire;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use error::ApiError;
use rapport_api::Code;
use rapport_core::event::Limits;
use rapport_engine::access::Access;
use rapport_engine::ingest::Ingestor;
use rapport_engine::signal::LogSignal;
use rapport_store::Store;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Settings the HTTP layer needs.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub limits: Limits,
    /// The configuration's identity rules: in force until rules are saved through the API.
    pub identity: rapport_core::identity::IdentityRules,
    /// The configuration's matching options: used by runs started without options.
    pub matching: rapport_engine::identity::matching::MatchingOptions,
    /// Origins whose pages may call the tracking API (CORS); any by default.
    pub cors_allowed_origins: cors::AllowedOrigins,
    /// Trusted proxies and the default rate limits of sources that set none (none by
    /// default: unlimited, `X-Forwarded-For` ignored). See `docs/security.md`.
    pub rate_limits: rate_limit::RateLimitOptions,
    /// The rate limiters' buckets: state, not options, shared by every clone of the config.
    pub limiters: rate_limit::Limiters,
    /// Whether the dashboard's session cookie is marked `Secure` (sent over HTTPS only):
    /// set it when Rapport is reached over HTTPS, as it should be off the machine itself.
    pub secure_cookies: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    pub access: Arc<Access>,
    pub signal: Arc<LogSignal>,
    /// Value models: fits, jobs, reports.
    pub models: Arc<rapport_engine::value::Models>,
    /// Probabilistic matching runs.
    pub matcher: Arc<rapport_engine::identity::runner::Matcher>,
    /// Suppressions and deletion requests.
    pub privacy: Arc<rapport_engine::privacy::Privacy>,
    /// Sources' tracking plans (checked at ingest) and their violations reports.
    pub plans: Arc<rapport_engine::tracking_plans::TrackingPlans>,
    /// The dashboard's sessions.
    pub sessions: Arc<rapport_engine::sessions::Sessions>,
    /// The messages this server's tracking API refused, since it started (rejections.rs).
    pub rejections: Arc<rejections::Rejections>,
}

/// Runs a read of the store: in place when the store's reads are brief (the embedded
/// store: a lookup costs less than the hand-off to a blocking thread, and profile lookups
/// are the API's hottest path), else as [`blocking`] does.
pub async fn read<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if store.reads_in_place() {
        f()
    } else {
        blocking(f).await
    }
}

/// Runs store work off the async threads. Storage calls block (the PostgreSQL client even
/// runs its own runtime), so handlers never make them directly.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal())?
}

/// Who a presented key is: from the cache when it was seen recently, else from the store
/// (a secret too long to be a key is unknown at once, without a lookup).
pub async fn authenticate(
    state: &AppState,
    key: &str,
) -> Result<Option<rapport_engine::access::Principal>, ApiError> {
    if let Some(p) = state.access.cached(key) {
        return Ok(p);
    }
    let (access, key) = (state.access.clone(), key.to_owned());
    blocking(move || Ok(access.authenticate(&key)?)).await
}

/// Every documented route: the tracking API and the REST API, each resource from its own
/// module's router. The OpenAPI document is gathered from the same routers, so a route
/// cannot exist without its description (`tests/openapi.rs` checks both directions).
fn routers() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let tracking = OpenApiRouter::new()
        .merge(tracking::router())
        .merge(settings::router());
    let rest = OpenApiRouter::new()
        .merge(events_api::router())
        .merge(sources_api::router())
        .merge(keys_api::router())
        .merge(profiles_api::router())
        .merge(consent_api::router())
        .merge(audiences_api::router())
        .merge(value_api::router())
        .merge(identity_api::router())
        .merge(pipeline_api::router())
        .merge(overview_api::router())
        .merge(destinations_api::router())
        .merge(journeys_api::router())
        .merge(privacy_api::router())
        .merge(tracking_plans_api::router())
        .merge(audit_api::router())
        .merge(pii_api::router());
    (tracking, rest)
}

/// The OpenAPI 3.1 document of every route [`app`] serves but itself and `/docs`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (tracking, rest) = routers();
    let (_, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(tracking)
        .merge(rest)
        .merge(operations_router())
        .split_for_parts();
    openapi::finish(doc)
}

fn operations_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics_text))
}

pub fn app(state: AppState) -> Router {
    let (tracking, rest) = routers();
    // The tracking API, with the one-letter paths analytics.js 2.0 posts to, the settings
    // document analytics.js loads, and CORS for browsers.
    let tracking = Router::from(tracking)
        // Before the layer: a layered route no longer takes the outer router's fallback.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(no_store())
        .layer(cors::layer(&state.config.cors_allowed_origins));
    // The REST API: an admin key on every route, checked before its handler runs (a
    // route layer, so that an unknown path stays a 404 for anyone), then the query's
    // parameter names against the operation's description.
    let (rest, rest_doc) = rest.split_for_parts();
    let documented = Arc::new(extract::DocumentedParameters::from_openapi(&rest_doc));
    // Every request that is not a read is recorded once its admin key is known, refusals
    // of the layers inside included (audit.rs); it reads resources before and after
    // through the same routes, without layers.
    let audit = Arc::new(audit::AuditLayer {
        state: state.clone(),
        reads: Router::from(routers().1).with_state(state.clone()),
    });
    let rest = rest
        .route_layer(axum::middleware::from_fn_with_state(
            documented,
            extract::refuse_undocumented_parameters,
        ))
        // The key's scopes for the route, and masking for masked keys (scopes.rs).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            scopes::require_scope,
        ))
        .route_layer(axum::middleware::from_fn_with_state(audit, audit::record))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::require_admin,
        ))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(no_store());
    let document = Arc::new(openapi());
    Router::new()
        .merge(tracking)
        .merge(rest)
        .merge(Router::from(operations_router()))
        .merge(dashboard::router())
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .url("/openapi.json", (*document).clone())
                // The reference page asks no outside host (not swagger.io's validator).
                .config(utoipa_swagger_ui::Config::default().validator_url("none")),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request::refuse_unrepresentable))
        // Every answer names its type (an empty one, a CORS preflight's, too) and forbids
        // sniffing another: a browser never renders an answer as something it is not.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .with_state(state)
}

/// `Cache-Control: no-store` for answers that carry personal data or secrets (the REST API,
/// the tracking API's answers), unless the handler chose otherwise (the settings document
/// is public and meant for a CDN).
fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    )
}

/// Whether this server takes durable writes: 200 with `"status": "ok"` (or `"degraded"`
/// when a stage of the pipeline lags or is stuck, for alerting), else 503 with
/// `"status": "unavailable"` and the reason (a full disk), so that an orchestrator stops
/// routing to this server until it recovers.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses(
        (status = 200, description = "the store takes durable writes", body = rapport_api::health::Health),
        (status = 503, description = "the store cannot write or be read", body = rapport_api::health::Health),
    ))]
async fn health(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    blocking(move || health_body(&state)).await
}

/// How far the pipeline is: the log's last offset, then the indexer's and the processor's
/// committed offsets (`/health`, the overview).
pub(crate) fn pipeline_offsets(
    store: &dyn Store,
) -> Result<(u64, u64, u64), rapport_store::StoreError> {
    Ok((
        store.last_offset()?,
        store.consumer_offset(rapport_engine::indexer::CONSUMER)?,
        store.consumer_offset(rapport_engine::processor::CONSUMER)?,
    ))
}

fn health_body(state: &AppState) -> Result<axum::response::Response, ApiError> {
    use rapport_api::health::{Health, HealthStatus};
    let offsets = pipeline_offsets(state.store.as_ref());
    let writable = state.ingestor.health().store_writable(state.store.as_ref());
    let unavailable = |reason: String| Health {
        status: HealthStatus::Unavailable,
        log_offset: None,
        indexed_offset: None,
        processed_offset: None,
        problems: None,
        reason: Some(reason),
    };
    let (status, body) = match (writable, offsets) {
        (Ok(()), Ok((log, indexed, processed))) => {
            let problems = state.ingestor.health().consumer_problems(
                log,
                &[
                    (rapport_engine::indexer::CONSUMER, indexed),
                    (rapport_engine::processor::CONSUMER, processed),
                ],
            );
            // Still 200: ingest works and loses nothing; "degraded" is for alerting.
            let status = if problems.is_empty() {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            };
            let body = Health {
                status,
                log_offset: Some(log),
                indexed_offset: Some(indexed),
                processed_offset: Some(processed),
                problems: Some(problems).filter(|p| !p.is_empty()),
                reason: None,
            };
            (StatusCode::OK, body)
        }
        (Err(e), _) | (Ok(()), Err(rapport_store::StoreError::Unavailable(e))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            unavailable(format!("the store cannot write: {e}")),
        ),
        (Ok(()), Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            unavailable(format!("the store cannot be read: {e}")),
        ),
    };
    Ok((status, axum::Json(body)).into_response())
}

/// Prometheus metrics, in the text exposition format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "the metrics", content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let _ = tokio::task::spawn_blocking(move || record_store_gauges(&state)).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(),
    )
}

fn record_store_gauges(state: &AppState) {
    let log = state.store.last_offset().unwrap_or(0);
    let indexed = state
        .store
        .consumer_offset(rapport_engine::indexer::CONSUMER)
        .unwrap_or(0);
    metrics::gauge!("rapport_log_offset").set(log as f64);
    metrics::gauge!("rapport_indexer_lag_events").set(log.saturating_sub(indexed) as f64);
    let processed = state
        .store
        .consumer_offset(rapport_engine::processor::CONSUMER)
        .unwrap_or(0);
    metrics::gauge!("rapport_processor_lag_events").set(log.saturating_sub(processed) as f64);
    metrics::gauge!("rapport_store_disk_bytes").set(state.store.disk_bytes() as f64);
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed(_headers: HeaderMap) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
}
