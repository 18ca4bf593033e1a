//! The dashboard's door: its page and assets, embedded in the binary (no CDN, nothing
//! fetched at run time), and the sessions that let a browser use the REST API without
//! holding an admin key.
//!
//! The dashboard is a client of the REST API like the CLI: its pages call `/api/v1` with the
//! session cookie, through the same scope checks, masking and audit trail as a key would
//! (`extract::require_admin` accepts a session in place of `Authorization`). So no value on a
//! page is computed twice, and a page can show nothing its key could not read.
//!
//! Sessions: `POST /session` with `{"key": "<admin key>"}` sets an HttpOnly, SameSite=Strict
//! cookie and answers the session's CSRF token, which the page then sends as
//! `X-CSRF-Token` on every request that changes something (checked with the request's
//! `Origin`); `GET /session` says who is signed in; `DELETE /session` signs out. See
//! `docs/dashboard.md`.

use crate::error::{ApiError, Code};
use crate::extract::{AdminKey, Json};
use crate::{AppState, blocking};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rapport_engine::access::Principal;
use rapport_engine::sessions::{SESSION_LIFETIME, Session, same_secret};
use rust_embed::Embed;
use serde::{Deserialize, Serialize};
use tower_http::set_header::SetResponseHeaderLayer;

/// The dashboard's own files: its page, scripts and styles.
#[derive(Embed)]
#[folder = "dashboard/app"]
struct AppFiles;

/// The npm packages the pages use, as `scripts/vendor-dashboard.sh` copied them.
#[derive(Embed)]
#[folder = "dashboard/vendor"]
struct VendorFiles;

/// The session cookie's name.
pub const COOKIE: &str = "rapport_session";

/// The header that carries the session's CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the dashboard's page may load and run: its own scripts and styles only — no inline
/// script, no `eval`, no other host — and it may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes: `/`, `/session` and `/assets/…`. Not part of the REST API's
/// OpenAPI document (they serve a browser, not a client program).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(
            "/session",
            get(current_session).post(sign_in).delete(sign_out),
        )
        .route("/assets/app/{*path}", get(app_file))
        .route("/assets/vendor/{*path}", get(vendor_file))
        .layer(axum::middleware::map_response(
            |mut res: Response| async move {
                no_login_prompt(&mut res);
                res
            },
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

async fn index() -> Response {
    match AppFiles::get("index.html") {
        Some(file) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            file.data,
        )
            .into_response(),
        None => ApiError::internal().into_response(),
    }
}

async fn app_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    asset(AppFiles::get(&path), &headers)
}

async fn vendor_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    asset(VendorFiles::get(&path), &headers)
}

/// An embedded file, revalidated by its hash on every load (`no-cache` + `ETag`): a new
/// binary's pages are never mixed with an old one's scripts.
fn asset(file: Option<rust_embed::EmbeddedFile>, headers: &HeaderMap) -> Response {
    let Some(file) = file else {
        return ApiError::not_found("no such file").into_response();
    };
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mime = match file.metadata.mimetype() {
        m if m.starts_with("text/") || m.ends_with("javascript") => format!("{m}; charset=utf-8"),
        m => m.to_owned(),
    };
    let common = [
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, etag),
        (header::CONTENT_TYPE, mime),
    ];
    if matches {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (common, file.data).into_response()
    }
}

/// Who is signed in, and the token to send as `X-CSRF-Token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    pub key_id: String,
    /// The key's name, as its creator gave it.
    pub name: String,
    pub scopes: rapport_engine::access::Scopes,
    pub csrf: String,
    /// When the session ends (RFC 3339); then the key is asked again.
    pub expires_at: String,
}

fn view(session: &Session, principal: &Principal) -> SessionView {
    let (name, scopes) = match principal {
        Principal::Admin { name, scopes, .. } => (name.clone(), scopes.clone()),
        Principal::Writer { .. } => (String::new(), Default::default()),
    };
    SessionView {
        key_id: session.key_id.clone(),
        name,
        scopes,
        csrf: session.csrf.clone(),
        expires_at: rapport_api::time::from_ms(session.expires_at_ms),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// An admin key's secret.
    key: String,
}

/// `POST /session`: signs in with an admin key. 200 with [`SessionView`] and the cookie;
/// `401 invalid_key` (field `key`) for an unknown or revoked key or a write key;
/// `403 csrf_rejected` from a page of another origin.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    same_origin(&headers)?;
    let sessions = state.sessions.clone();
    let now = chrono::Utc::now().timestamp_millis();
    let (opened, principal) = blocking(move || {
        sessions.open(&body.key, now).map_err(|e| match e {
            rapport_engine::EngineError::Invalid { field, message } => {
                ApiError::new(Code::InvalidKey, message).with_field(field)
            }
            other => other.into(),
        })
    })
    .await?;
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        opened.token,
        SESSION_LIFETIME.as_secs(),
        if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::Json(view(&opened.session, &principal)),
    )
        .into_response())
}

/// `GET /session`: who is signed in; `401 invalid_key` when no session is.
async fn current_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (session, principal) = session_of(&state, &headers).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(view(&session, &principal)),
    )
        .into_response())
}

/// `DELETE /session`: signs out (with the CSRF token); the cookie is cleared. 204.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = session_cookie(&headers).unwrap_or_default();
    if let Ok((session, _)) = session_of(&state, &headers).await {
        check_csrf(&session, &headers)?;
        let sessions = state.sessions.clone();
        blocking(move || Ok(sessions.close(&token)?)).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
    )
        .into_response())
}

/// Removes `WWW-Authenticate` from a 401 answered to the dashboard: a browser would open its
/// own password prompt over the page (the page signs in with its own form).
pub fn no_login_prompt(res: &mut Response) {
    res.headers_mut().remove(header::WWW_AUTHENTICATE);
}

/// The session token of the request's cookie, if it carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Session, Principal), ApiError> {
    let ended = || {
        ApiError::new(
            Code::InvalidKey,
            "the dashboard session has ended (signed out, expired, or its key revoked); sign in again",
        )
    };
    let token = session_cookie(headers).ok_or_else(ended)?;
    let now = chrono::Utc::now().timestamp_millis();
    let found = match state.sessions.cached(&token, now) {
        Some(found) => found,
        None => {
            let sessions = state.sessions.clone();
            blocking(move || Ok(sessions.resolve(&token, now)?)).await?
        }
    };
    found.ok_or_else(ended)
}

/// The admin key a request's session acts as, for `/api/v1`: a change (any method but GET,
/// HEAD, OPTIONS) must carry the session's CSRF token and come from this origin.
pub async fn session_admin(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<AdminKey, ApiError> {
    let (session, principal) = session_of(state, headers).await?;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        check_csrf(&session, headers)?;
    }
    match principal {
        Principal::Admin {
            key_id,
            name,
            scopes,
        } => Ok(AdminKey {
            id: key_id,
            name,
            scopes,
        }),
        Principal::Writer { .. } => Err(ApiError::internal()),
    }
}

fn check_csrf(session: &Session, headers: &HeaderMap) -> Result<(), ApiError> {
    same_origin(headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if same_secret(sent, &session.csrf) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::CsrfRejected,
            "a change through a dashboard session needs the session's X-CSRF-Token header",
        )
        .with_field(CSRF_HEADER))
    }
}

/// Refuses a request a browser sent from a page of another origin: by `Sec-Fetch-Site`
/// when the browser sends it, else by `Origin` against `Host`.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            Code::CsrfRejected,
            "this request came from a page of another site",
        )
    };
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(refused()),
        };
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => Ok(()),
        (Some(origin), Some(host)) => {
            let authority = origin.split_once("://").map(|(_, rest)| rest);
            if authority == Some(host) {
                Ok(())
            } else {
                Err(refused())
            }
        }
        (Some(_), None) => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            session_cookie(&headers(&[("cookie", "a=1; rapport_session=ds_x ; b=2")])),
            Some("ds_x".into())
        );
        assert_eq!(
            session_cookie(&headers(&[
                ("cookie", "a=1"),
                ("cookie", "rapport_session=ds_y")
            ])),
            Some("ds_y".into())
        );
        assert_eq!(
            session_cookie(&headers(&[("cookie", "rapport_session=")])),
            None
        );
        assert_eq!(
            session_cookie(&headers(&[("cookie", "xrapport_session=1")])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn requests_from_other_sites_are_refused() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let from = |origin: &str| {
            same_origin(&headers(&[
                ("origin", origin),
                ("host", "rapport.example:8080"),
            ]))
        };
        assert!(from("https://rapport.example:8080").is_ok());
        assert!(from("https://evil.example").is_err());
        assert!(from("null").is_err());
        assert!(same_origin(&HeaderMap::new()).is_ok(), "not a browser");
    }

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let index = AppFiles::get("index.html").expect("index.html");
        let text = String::from_utf8_lossy(&index.data).to_string();
        for part in text.split("/assets/").skip(1) {
            let path = part.split('"').next().unwrap();
            let (dir, file) = path.split_once('/').unwrap();
            let found = match dir {
                "app" => AppFiles::get(file).is_some(),
                "vendor" => VendorFiles::get(file).is_some(),
                _ => false,
            };
            assert!(
                found,
                "index.html names /assets/{path}, which is not embedded"
            );
        }
    }
}
