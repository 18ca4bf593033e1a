//! Admin key scopes: one table, [`TABLE`], maps every route of `/api/v1` (method and
//! template) to what it needs, checked by a route layer ([`require_scope`]) before any
//! handler runs, so that no route can forget it (a test walks the OpenAPI document and
//! checks every route has a line). A key holding `read_masked` but not `read` gets every
//! JSON answer with personal data masked by the same layer
//! (`rapport_engine::personal_data::PersonalData::mask`), new routes included.
//!
//! Refusal: `403 missing_scope`, `field` naming the scope.

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::AdminKey;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rapport_engine::access::{Scope, Scopes};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `read` or `read_masked` (a masked key gets masked answers).
    Read,
    /// `configure`.
    Configure,
    /// `configure` and `read`: what could let personal data out unmasked (a destination
    /// receives raw events; the personal-data configuration decides what is masked; a
    /// destination's secret).
    ConfigureUnmasked,
    /// `delete`.
    Delete,
}

use Need::{Configure, ConfigureUnmasked, Delete, Read};
const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// Every route of `/api/v1` and what it needs.
#[rustfmt::skip]
pub const TABLE: &[(Method, &str, Need)] = &[
    (GET, "/api/v1/alerts", Read),
    (GET, "/api/v1/audience-changes", Read),
    (GET, "/api/v1/audiences/status", Read),
    (GET, "/api/v1/audit", Read),
    (GET, "/api/v1/computed-traits", Read),
    (POST, "/api/v1/computed-traits", Configure),
    (POST, "/api/v1/computed-traits/check", Read),
    (DELETE, "/api/v1/computed-traits/{name}", Configure),
    (GET, "/api/v1/computed-traits/{name}", Read),
    (PUT, "/api/v1/computed-traits/{name}", Configure),
    (GET, "/api/v1/dead-letters", Read),
    (GET, "/api/v1/destinations", Read),
    (POST, "/api/v1/destinations", ConfigureUnmasked),
    (DELETE, "/api/v1/destinations/{destination}", Configure),
    (GET, "/api/v1/destinations/{destination}", Read),
    (PUT, "/api/v1/destinations/{destination}", ConfigureUnmasked),
    (DELETE, "/api/v1/destinations/{destination}/backfill", Configure),
    (POST, "/api/v1/destinations/{destination}/backfill", ConfigureUnmasked),
    (GET, "/api/v1/destinations/{destination}/dead-letters", Read),
    (POST, "/api/v1/destinations/{destination}/dead-letters/replay", ConfigureUnmasked),
    (GET, "/api/v1/destinations/{destination}/overview", Read),
    (POST, "/api/v1/destinations/{destination}/pause", Configure),
    (POST, "/api/v1/destinations/{destination}/resume", Configure),
    (GET, "/api/v1/destinations/{destination}/retries", Read),
    (GET, "/api/v1/destinations/{destination}/secret", ConfigureUnmasked),
    (POST, "/api/v1/destinations/{destination}/test", Configure),
    (GET, "/api/v1/events", Read),
    (GET, "/api/v1/identity/matching", Read),
    (POST, "/api/v1/identity/matching/run", Configure),
    (GET, "/api/v1/identity/review", Read),
    (GET, "/api/v1/identity/review/{pair}", Read),
    (POST, "/api/v1/identity/review/{pair}/accept", Configure),
    (POST, "/api/v1/identity/review/{pair}/reject", Configure),
    (GET, "/api/v1/identity/rules", Read),
    (PUT, "/api/v1/identity/rules", Configure),
    (GET, "/api/v1/identity/rules/history", Read),
    (GET, "/api/v1/jobs", Read),
    (GET, "/api/v1/jobs/{id}", Read),
    (GET, "/api/v1/journeys", Read),
    (POST, "/api/v1/journeys", Configure),
    (GET, "/api/v1/journeys/caps", Read),
    (PUT, "/api/v1/journeys/caps", Configure),
    (POST, "/api/v1/journeys/check", Read),
    (GET, "/api/v1/journeys/{journey}", Read),
    (POST, "/api/v1/journeys/{journey}/archive", Configure),
    (PUT, "/api/v1/journeys/{journey}/draft", Configure),
    (POST, "/api/v1/journeys/{journey}/entries", Configure),
    (GET, "/api/v1/journeys/{journey}/flow", Read),
    (POST, "/api/v1/journeys/{journey}/migrate", Configure),
    (POST, "/api/v1/journeys/{journey}/pause", Configure),
    (POST, "/api/v1/journeys/{journey}/preview", Read),
    (POST, "/api/v1/journeys/{journey}/publish", Configure),
    (POST, "/api/v1/journeys/{journey}/resume", Configure),
    (GET, "/api/v1/keys", Read),
    (POST, "/api/v1/keys", Configure),
    (DELETE, "/api/v1/keys/{id}", Configure),
    (GET, "/api/v1/models/{model}", Read),
    (POST, "/api/v1/models/{model}/fit", Configure),
    (GET, "/api/v1/overview", Read),
    (GET, "/api/v1/profiles", Read),
    (GET, "/api/v1/profiles/{reference}", Read),
    (GET, "/api/v1/profiles/{reference}/consent", Read),
    (POST, "/api/v1/profiles/{reference}/consent", Configure),
    (PUT, "/api/v1/profiles/{reference}/consent", Configure),
    (GET, "/api/v1/profiles/{reference}/events", Read),
    (GET, "/api/v1/profiles/{reference}/identity", Read),
    (GET, "/api/v1/rejections", Read),
    (GET, "/api/v1/reports/ces", Read),
    (GET, "/api/v1/reports/clv-distribution", Read),
    (GET, "/api/v1/reports/csat", Read),
    (GET, "/api/v1/reports/earned-growth", Read),
    (GET, "/api/v1/reports/health", Read),
    (GET, "/api/v1/reports/nps", Read),
    (GET, "/api/v1/reports/silent-majority", Read),
    (GET, "/api/v1/segments", Read),
    (POST, "/api/v1/segments", Configure),
    (POST, "/api/v1/segments/check", Read),
    (DELETE, "/api/v1/segments/{name}", Configure),
    (GET, "/api/v1/segments/{name}", Read),
    (PUT, "/api/v1/segments/{name}", Configure),
    (GET, "/api/v1/segments/{name}/members", Read),
    (GET, "/api/v1/segments/{name}/size-history", Read),
    (GET, "/api/v1/sources", Read),
    (POST, "/api/v1/sources", Configure),
    (GET, "/api/v1/sources/{source}", Read),
    (PATCH, "/api/v1/sources/{source}", Configure),
    (PUT, "/api/v1/sources/{source}", Configure),
    (GET, "/api/v1/sources/{source}/tracking-plan", Read),
    (PUT, "/api/v1/sources/{source}/tracking-plan", Configure),
    (DELETE, "/api/v1/sources/{source}/tracking-plan", Configure),
    (GET, "/api/v1/sources/{source}/tracking-plan/violations", Read),
    (GET, "/api/v1/privacy/personal-data", Read),
    (PUT, "/api/v1/privacy/personal-data", ConfigureUnmasked),
];

/// Routes under these prefixes (right-to-be-forgotten deletions and suppressions) need
/// `delete`, whatever their method, even before they have a line in [`TABLE`].
const DELETE_PREFIXES: &[&str] = &["/api/v1/privacy/deletions", "/api/v1/privacy/suppressions"];

/// What `method route` needs: its line; `delete` under the privacy prefixes; else, for a
/// route without a line, `read` for a GET and `configure` + `read` for anything else.
pub fn need_for(method: &Method, route: &str) -> Need {
    if let Some((_, _, need)) = TABLE.iter().find(|(m, r, _)| m == method && *r == route) {
        return *need;
    }
    if DELETE_PREFIXES.iter().any(|p| route.starts_with(p)) {
        return Delete;
    }
    if *method == Method::GET || *method == Method::HEAD {
        Read
    } else {
        ConfigureUnmasked
    }
}

/// The scope a key holding `scopes` lacks for `need`, if any.
pub fn missing(need: Need, scopes: &Scopes) -> Option<Scope> {
    let has = |s| scopes.contains(&s);
    match need {
        Read if has(Scope::Read) || has(Scope::ReadMasked) => None,
        Read => Some(Scope::Read),
        Configure if has(Scope::Configure) => None,
        Configure => Some(Scope::Configure),
        ConfigureUnmasked if !has(Scope::Configure) => Some(Scope::Configure),
        ConfigureUnmasked if !has(Scope::Read) => Some(Scope::Read),
        ConfigureUnmasked => None,
        Delete if has(Scope::Delete) => None,
        Delete => Some(Scope::Delete),
    }
}

/// Whether a key's answers are masked: it may read only without personal data.
pub fn is_masked(scopes: &Scopes) -> bool {
    !scopes.contains(&Scope::Read)
}

/// The largest answer masked; a larger one is refused to a masked key rather than sent raw.
const MAX_MASKED_BYTES: usize = 64 * 1024 * 1024;

/// The route layer: refuses a key without the scope its route needs (`403 missing_scope`),
/// and masks personal data in the answers of masked keys.
pub async fn require_scope(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(matched), Some(admin)) = (matched, req.extensions().get::<AdminKey>().cloned())
    else {
        return next.run(req).await;
    };
    let need = need_for(req.method(), matched.as_str());
    if let Some(scope) = missing(need, &admin.scopes) {
        return ApiError::new(
            Code::MissingScope,
            format!(
                "{} {} needs the `{}` scope, which this key does not hold",
                req.method(),
                matched.as_str(),
                scope.as_str()
            ),
        )
        .with_field(scope.as_str())
        .into_response();
    }
    if !is_masked(&admin.scopes) {
        return next.run(req).await;
    }
    let store = state.store.clone();
    let config = match crate::read(&state.store, move || {
        Ok(rapport_engine::personal_data::load(store.as_ref())?)
    })
    .await
    {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_MASKED_BYTES).await else {
        return ApiError::internal().into_response();
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::empty());
    }
    // An answer that is not JSON could carry anything: a masked key does not get it.
    let Some(mut value) = is_json
        .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .flatten()
    else {
        return ApiError::new(
            Code::MissingScope,
            "this answer cannot be masked; it needs the `read` scope",
        )
        .with_field("read")
        .into_response();
    };
    config.mask(&mut value);
    let masked = serde_json::to_vec(&value).expect("JSON serialises");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(masked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_line_and_every_line_a_route() {
        let doc = crate::openapi();
        let mut missing_lines = Vec::new();
        for (path, item) in &doc.paths.paths {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (method, op) in [
                (GET, &item.get),
                (POST, &item.post),
                (PUT, &item.put),
                (PATCH, &item.patch),
                (DELETE, &item.delete),
            ] {
                // The privacy routes' prefix rule is their line (`delete`, whatever they are).
                let by_prefix = DELETE_PREFIXES.iter().any(|p| path.starts_with(p));
                if op.is_some()
                    && !by_prefix
                    && !TABLE.iter().any(|(m, r, _)| *m == method && r == path)
                {
                    missing_lines.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            missing_lines.is_empty(),
            "routes without a scope: {missing_lines:?}"
        );
        for (method, route, _) in TABLE {
            let item = doc
                .paths
                .paths
                .get(*route)
                .unwrap_or_else(|| panic!("{route}"));
            let op = match *method {
                Method::GET => &item.get,
                Method::POST => &item.post,
                Method::PUT => &item.put,
                Method::PATCH => &item.patch,
                _ => &item.delete,
            };
            assert!(op.is_some(), "{method} {route} is not a route");
        }
    }

    #[test]
    fn needs_and_scopes() {
        let of = |l: &[Scope]| l.iter().copied().collect::<Scopes>();
        let masked = of(&[Scope::ReadMasked, Scope::Configure]);
        assert_eq!(missing(Read, &masked), None);
        assert_eq!(missing(Configure, &masked), None);
        assert_eq!(missing(ConfigureUnmasked, &masked), Some(Scope::Read));
        assert_eq!(missing(Delete, &masked), Some(Scope::Delete));
        assert_eq!(missing(Read, &of(&[Scope::Delete])), Some(Scope::Read));
        assert!(is_masked(&masked) && !is_masked(&of(&[Scope::Read])));
        assert_eq!(need_for(&POST, "/api/v1/privacy/deletions"), Delete);
        assert_eq!(need_for(&GET, "/api/v1/privacy/suppressions/{id}"), Delete);
        assert_eq!(need_for(&POST, "/api/v1/unlisted"), ConfigureUnmasked);
        assert_eq!(
            need_for(&PUT, "/api/v1/privacy/personal-data"),
            ConfigureUnmasked
        );
    }
}
