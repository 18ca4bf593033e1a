//! The settings document Segment's analytics.js 2.0 (`@segment/analytics-next`) fetches when
//! it loads: `GET {cdnURL}/v1/projects/{writeKey}/settings`. Serving it here means a site
//! changes one option (`cdnURL`) and the SDK sends every event back to this server: the
//! document's `integrations["Segment.io"].apiHost` and `protocol` name the server as the
//! request reached it: its `Host`, or `X-Forwarded-Host` / `X-Forwarded-Proto` when the
//! request comes from a trusted proxy (`[rate_limits] trusted_proxies`). From anyone else
//! those headers are ignored: the document is cacheable (`public, max-age=300`), and a
//! cache keyed by path and `Host` would otherwise keep, for every visitor, an address that
//! one client chose — sending their events to it.
//!
//! The document enables no device-mode destination, no middleware, no tracking plan and no
//! SDK metrics (`sampleRate: 0`): any of those would make the SDK load code or post data
//! to Segment's own hosts.

use crate::error::ApiError;
use crate::{AppState, authenticate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rapport_api::Code;
use rapport_api::tracking::{SegmentIo, Settings, SettingsIntegrations, SettingsMetrics};
use rapport_engine::access::Principal;
use serde_json::Value;

/// The settings document analytics.js loads at start, pointing it back at this server
/// (`integrations["Segment.io"].apiHost`); public and cacheable, as Segment's is. `404
/// unknown_write_key` for a key that is no live write key.
#[utoipa::path(get, path = "/v1/projects/{write_key}/settings", tag = "tracking", security(()),
    params(("write_key" = String, Path, description = "A source's write key")),
    responses(
        (status = 200, description = "Segment's settings document", body = Settings),
        (status = 400, description = "no usable `Host` header", body = rapport_api::ErrorEnvelope),
        (status = 404, description = "not a live write key", body = rapport_api::ErrorEnvelope),
        (status = 405, description = "the path does not take this method", body = rapport_api::ErrorEnvelope),
        (status = "default", description = "any other error", body = rapport_api::ErrorEnvelope),
    ))]
pub async fn project_settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let trusted = peer.is_some_and(|axum::Extension(axum::extract::ConnectInfo(p))| {
        state.config.rate_limits.trusted_proxies.contains(&p.ip())
    });
    match authenticate(&state, &write_key).await? {
        Some(Principal::Writer { .. }) => {}
        // An admin key is no project: answer as for an unknown key, and never echo it.
        _ => {
            return Err(ApiError::new(
                Code::UnknownWriteKey,
                "no source has this write key",
            ));
        }
    }
    let (protocol, host) = public_address(&headers, trusted)?;
    let mut response = Json(document(&write_key, &protocol, &host)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// The settings document for one write key, the SDK to send to `{protocol}://{host}/v1`.
pub fn document(write_key: &str, protocol: &str, host: &str) -> Settings {
    let empty = || Value::Object(Default::default());
    Settings {
        integrations: SettingsIntegrations {
            segment_io: SegmentIo {
                api_key: write_key.to_owned(),
                api_host: format!("{host}/v1"),
                protocol: protocol.to_owned(),
                add_bundled_metadata: true,
                unbundled_integrations: Vec::new(),
                bundled_config_ids: Vec::new(),
                unbundled_config_ids: Vec::new(),
                maybe_bundled_config_ids: empty(),
            },
        },
        plan: empty(),
        edge_function: empty(),
        analytics_next_enabled: true,
        middleware_settings: empty(),
        enabled_middleware: empty(),
        metrics: SettingsMetrics { sample_rate: 0 },
        legacy_video_plugins_enabled: false,
        remote_plugins: Vec::new(),
    }
}

/// The scheme and `host[:port]` clients reach this server at; the `X-Forwarded-*` headers
/// count only when `trust_forwarded` (the request comes from a trusted proxy).
fn public_address(
    headers: &HeaderMap,
    trust_forwarded: bool,
) -> Result<(String, String), ApiError> {
    let first = |name: &str| {
        if !trust_forwarded && name.starts_with("x-forwarded-") {
            return None;
        }
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let host = first("x-forwarded-host")
        .or_else(|| first(header::HOST.as_str()))
        .filter(|h| is_host(h))
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidHost,
                "the request needs a Host header naming this server",
            )
        })?;
    let protocol = match first("x-forwarded-proto").map(|p| p.to_ascii_lowercase()) {
        Some(p) if p == "https" => "https",
        _ => "http",
    };
    Ok((protocol.to_owned(), host))
}

/// A host name or address with an optional port: nothing else goes into the document.
fn is_host(h: &str) -> bool {
    h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(project_settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_address_comes_from_the_proxy_then_the_host() {
        let a = |pairs: &[(&'static str, &str)]| public_address(&headers(pairs), true).ok();
        let untrusted =
            |pairs: &[(&'static str, &str)]| public_address(&headers(pairs), false).ok();
        assert_eq!(
            untrusted(&[
                ("host", "10.0.0.2:8080"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https")
            ]),
            Some(("http".into(), "10.0.0.2:8080".into())),
            "forwarded headers count only from a trusted proxy"
        );
        assert_eq!(
            a(&[("host", "127.0.0.1:8080")]),
            Some(("http".into(), "127.0.0.1:8080".into()))
        );
        assert_eq!(
            a(&[
                ("host", "10.0.0.2:8080"),
                ("x-forwarded-host", "cdp.example.com, proxy"),
                ("x-forwarded-proto", "HTTPS")
            ]),
            Some(("https".into(), "cdp.example.com".into()))
        );
        assert_eq!(a(&[("host", "evil.example/\"x")]), None);
        assert_eq!(a(&[]), None);
    }

    #[test]
    fn the_document_points_the_sdk_back_here() {
        let d = serde_json::to_value(document("wk_1", "https", "cdp.example.com")).unwrap();
        let s = &d["integrations"]["Segment.io"];
        assert_eq!(s["apiKey"], "wk_1");
        assert_eq!(s["apiHost"], "cdp.example.com/v1");
        assert_eq!(s["protocol"], "https");
        assert_eq!(d["metrics"]["sampleRate"], 0);
        assert_eq!(d["integrations"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_document_is_the_json_it_always_was() {
        let d = serde_json::to_string(&document("wk_1", "https", "cdp.example.com")).unwrap();
        let before = serde_json::json!({
            "integrations": {
                "Segment.io": {
                    "apiKey": "wk_1",
                    "apiHost": "cdp.example.com/v1",
                    "protocol": "https",
                    "addBundledMetadata": true,
                    "unbundledIntegrations": [],
                    "bundledConfigIds": [],
                    "unbundledConfigIds": [],
                    "maybeBundledConfigIds": {},
                }
            },
            "plan": {},
            "edgeFunction": {},
            "analyticsNextEnabled": true,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": { "sampleRate": 0 },
            "legacyVideoPluginsEnabled": false,
            "remotePlugins": [],
        });
        assert_eq!(d, before.to_string(), "byte for byte");
    }
}
