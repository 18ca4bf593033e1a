//! Rapport's HTTP face: the Segment-compatible tracking API, the REST API, health and
//! Prometheus metrics. The only crate that knows HTTP status codes and wire formats; all
//! decisions are made by the engine and the core.

pub mod api;
pub mod audiences_api;
pub mod cors;
pub mod error;
pub mod identity_api;
pub mod listen;
pub mod pipeline_api;
pub mod profiles_api;
pub mod rate_limit;
pub mod request;
pub mod settings;
pub mod telemetry;
pub mod tracking;
pub mod value_api;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use error::ApiError;
use rapport_api::Code;
use rapport_core::event::Limits;
use rapport_engine::access::Access;
use rapport_engine::ingest::Ingestor;
use rapport_engine::signal::LogSignal;
use rapport_store::Store;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

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

pub fn app(state: AppState) -> Router {
    // The tracking API, with the one-letter paths analytics.js 2.0 posts to
    // (`{apiHost}/t` …, `{apiHost}/b` when batching, as the mobile SDKs do; their apiHost
    // ends in `/v1`), the settings document analytics.js loads, and CORS for browsers.
    let tracking = Router::new()
        .route("/v1/track", post(tracking::track))
        .route("/v1/t", post(tracking::track))
        .route("/v1/identify", post(tracking::identify))
        .route("/v1/i", post(tracking::identify))
        .route("/v1/page", post(tracking::page))
        .route("/v1/p", post(tracking::page))
        .route("/v1/screen", post(tracking::screen))
        .route("/v1/s", post(tracking::screen))
        .route("/v1/group", post(tracking::group))
        .route("/v1/g", post(tracking::group))
        .route("/v1/alias", post(tracking::alias))
        .route("/v1/a", post(tracking::alias))
        .route("/v1/batch", post(tracking::batch))
        .route("/v1/b", post(tracking::batch))
        .route("/v1/import", post(tracking::batch))
        .route(
            "/v1/projects/{write_key}/settings",
            get(settings::project_settings),
        )
        // Before the layer: a layered route no longer takes the outer router's fallback.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(no_store())
        .layer(cors::layer(&state.config.cors_allowed_origins));
    let rest = Router::new()
        .route("/api/v1/events", get(api::list_events))
        .route("/api/v1/dead-letters", get(pipeline_api::list_dead_letters))
        .route(
            "/api/v1/sources",
            get(api::list_sources).post(api::create_source),
        )
        .route(
            "/api/v1/sources/{source}",
            get(api::get_source)
                .put(api::replace_source)
                .patch(api::patch_source),
        )
        .route("/api/v1/keys", get(api::list_keys).post(api::create_key))
        .route("/api/v1/keys/{id}", delete(api::revoke_key))
        .route("/api/v1/profiles", get(profiles_api::search_profiles))
        .route(
            "/api/v1/computed-traits",
            get(audiences_api::list_computed_traits).post(audiences_api::create_computed_trait),
        )
        .route(
            "/api/v1/computed-traits/{name}",
            get(audiences_api::get_computed_trait)
                .put(audiences_api::replace_computed_trait)
                .delete(audiences_api::delete_computed_trait),
        )
        .route(
            "/api/v1/segments",
            get(audiences_api::list_segments).post(audiences_api::create_segment),
        )
        .route(
            "/api/v1/segments/{name}",
            get(audiences_api::get_segment)
                .put(audiences_api::replace_segment)
                .delete(audiences_api::delete_segment),
        )
        .route(
            "/api/v1/segments/{name}/members",
            get(audiences_api::list_members),
        )
        .route(
            "/api/v1/segments/{name}/size-history",
            get(audiences_api::size_history),
        )
        .route(
            "/api/v1/audiences/status",
            get(audiences_api::audience_status),
        )
        .route(
            "/api/v1/audience-changes",
            get(audiences_api::audience_changes),
        )
        .route(
            "/api/v1/profiles/{reference}",
            get(profiles_api::get_profile),
        )
        .route(
            "/api/v1/profiles/{reference}/identity",
            get(profiles_api::get_identity),
        )
        .route(
            "/api/v1/profiles/{reference}/events",
            get(profiles_api::get_profile_events),
        )
        .route("/api/v1/models/{model}", get(value_api::get_model))
        .route("/api/v1/models/{model}/fit", post(value_api::start_fit))
        .route("/api/v1/jobs", get(value_api::list_jobs))
        .route("/api/v1/jobs/{id}", get(value_api::get_job))
        .route("/api/v1/reports/nps", get(value_api::report_nps))
        .route("/api/v1/reports/ces", get(value_api::report_ces))
        .route("/api/v1/reports/csat", get(value_api::report_csat))
        .route(
            "/api/v1/reports/silent-majority",
            get(value_api::report_silent_majority),
        )
        .route(
            "/api/v1/reports/earned-growth",
            get(value_api::report_earned_growth),
        )
        .route("/api/v1/reports/health", get(value_api::report_health))
        .route("/api/v1/alerts", get(value_api::list_alerts))
        .route(
            "/api/v1/identity/rules",
            get(identity_api::get_rules).put(identity_api::put_rules),
        )
        .route(
            "/api/v1/identity/rules/history",
            get(identity_api::rules_history),
        )
        .route(
            "/api/v1/identity/matching",
            get(identity_api::matching_status),
        )
        .route(
            "/api/v1/identity/matching/run",
            post(identity_api::run_matching),
        )
        .route("/api/v1/identity/review", get(identity_api::list_review))
        .route(
            "/api/v1/identity/review/{pair}",
            get(identity_api::get_pair),
        )
        .route(
            "/api/v1/identity/review/{pair}/accept",
            post(identity_api::accept_pair),
        )
        .route(
            "/api/v1/identity/review/{pair}/reject",
            post(identity_api::reject_pair),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(no_store());
    Router::new()
        .merge(tracking)
        .merge(rest)
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
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

/// `GET /health`: 200 with `"status": "ok"` while the store takes durable writes, else 503
/// with `"status": "unavailable"` and the reason (a full disk), so that an orchestrator
/// stops routing to this server until it recovers.
async fn health(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    blocking(move || health_body(&state)).await
}

fn health_body(state: &AppState) -> Result<axum::response::Response, ApiError> {
    let offsets = (|| -> Result<_, rapport_store::StoreError> {
        Ok((
            state.store.last_offset()?,
            state
                .store
                .consumer_offset(rapport_engine::indexer::CONSUMER)?,
            state
                .store
                .consumer_offset(rapport_engine::processor::CONSUMER)?,
        ))
    })();
    let writable = state.ingestor.health().store_writable(state.store.as_ref());
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
                "ok"
            } else {
                "degraded"
            };
            let mut body = serde_json::json!({
                "status": status,
                "log_offset": log,
                "indexed_offset": indexed,
                "processed_offset": processed,
            });
            if !problems.is_empty() {
                body["problems"] = serde_json::json!(problems);
            }
            (StatusCode::OK, body)
        }
        (Err(e), _) | (Ok(()), Err(rapport_store::StoreError::Unavailable(e))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": format!("the store cannot write: {e}")}),
        ),
        (Ok(()), Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": format!("the store cannot be read: {e}")}),
        ),
    };
    Ok((status, axum::Json(body)).into_response())
}

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

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed(_headers: HeaderMap) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this endpoint does not accept that method",
    )
}
