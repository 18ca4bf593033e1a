//! The audit layer: every request of `/api/v1` that is not a read (POST, PUT, PATCH,
//! DELETE), once its admin key is known, is recorded in the audit trail
//! (`rapport_engine::audit`) with who, when, from which address, the action, the resource,
//! the outcome, and the resource before and after. It is a route layer on the REST router,
//! so that no route can forget it; [`ACTIONS`] names the action of every route (a test
//! checks that every mutating route of the OpenAPI document has an entry).
//!
//! How a route's entry is filled:
//! - the action, the resource type and what kind of subject it is come from [`ACTIONS`];
//! - the resource id is the route's path parameter, else (for a creation) the `id` or
//!   `name` of the answer, unless the handler names it through [`Audit`];
//! - for configuration ([`Subject::Config`]) `before` and `after` are read through the
//!   route named in [`ActionSpec::read`] (`GET /api/v1/segments/{name}`) just before and
//!   just after the request, or else the answer is `after`; a handler may give its own
//!   through [`Audit`]. Secrets are removed from both ([`redact`]);
//! - person-level routes ([`Subject::Person`]: consent, review decisions, journey entries,
//!   privacy requests) never record a body, and their path parameter is recorded as its hex
//!   SHA-256, so that the trail (which cannot be deleted) never holds personal data;
//! - operations ([`Subject::Operation`]: a test send, a replay, a fit) record what the
//!   handler notes, nothing else.
//!
//! Requests refused before an admin key is known (401, a write key's 403) are not
//! recorded: anyone could fill a trail that cannot be deleted. Every refusal after that
//! (400, 403 for a missing scope, 404, 409, …) is, with its status and error code.

use crate::AppState;
use crate::extract::AdminKey;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use rapport_engine::audit::{Actor, AuditEntry, Resource, person_digest};
use serde_json::Value;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::ServiceExt as _;

/// What a route acts on, which decides what its entry may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Configuration (keys, sources, definitions, rules, destinations, journeys): recorded
    /// in full before and after, secrets removed.
    Config,
    /// A person (a profile, a review pair): named only by the SHA-256 of the reference,
    /// and no body is recorded.
    Person,
    /// An operation on configuration (a test, a replay, a fit, a preview): what the
    /// handler notes.
    Operation,
}

/// The audit description of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    pub method: Method,
    /// The route template, as the router and the OpenAPI document write it.
    pub route: &'static str,
    pub action: Cow<'static, str>,
    pub resource: &'static str,
    pub subject: Subject,
    /// A GET route (template) that reads the resource, with the same path parameter (or
    /// none), for `before` and `after`.
    pub read: Option<&'static str>,
}

const fn spec(
    method: Method,
    route: &'static str,
    action: &'static str,
    resource: &'static str,
    subject: Subject,
    read: Option<&'static str>,
) -> ActionSpec {
    ActionSpec {
        method,
        route,
        action: Cow::Borrowed(action),
        resource,
        subject,
        read,
    }
}

use Subject::{Config, Operation, Person};
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

const TRAIT: Option<&str> = Some("/api/v1/computed-traits/{name}");
const SEGMENT: Option<&str> = Some("/api/v1/segments/{name}");
const DESTINATION: Option<&str> = Some("/api/v1/destinations/{destination}");
const JOURNEY: Option<&str> = Some("/api/v1/journeys/{journey}");
const SOURCE: Option<&str> = Some("/api/v1/sources/{source}");
const PLAN: Option<&str> = Some("/api/v1/sources/{source}/tracking-plan");

/// Every state-changing route of `/api/v1` and its action. A new route gets a line here
/// (the test `every_mutating_route_has_a_named_action` fails until it has one).
#[rustfmt::skip]
pub const ACTIONS: &[ActionSpec] = &[
    spec(POST, "/api/v1/keys", "key.create", "key", Config, None),
    spec(DELETE, "/api/v1/keys/{id}", "key.revoke", "key", Config, None),
    spec(POST, "/api/v1/sources", "source.create", "source", Config, SOURCE),
    spec(PUT, "/api/v1/sources/{source}", "source.update", "source", Config, SOURCE),
    spec(PATCH, "/api/v1/sources/{source}", "source.update", "source", Config, SOURCE),
    spec(PUT, "/api/v1/sources/{source}/tracking-plan", "tracking_plan.set", "tracking_plan", Config, PLAN),
    spec(DELETE, "/api/v1/sources/{source}/tracking-plan", "tracking_plan.clear", "tracking_plan", Config, PLAN),
    spec(POST, "/api/v1/computed-traits", "computed_trait.create", "computed_trait", Config, TRAIT),
    spec(PUT, "/api/v1/computed-traits/{name}", "computed_trait.update", "computed_trait", Config, TRAIT),
    spec(DELETE, "/api/v1/computed-traits/{name}", "computed_trait.delete", "computed_trait", Config, TRAIT),
    spec(POST, "/api/v1/computed-traits/check", "computed_trait.check", "computed_trait", Operation, None),
    spec(POST, "/api/v1/segments", "segment.create", "segment", Config, SEGMENT),
    spec(POST, "/api/v1/segments/check", "segment.check", "segment", Operation, None),
    spec(PUT, "/api/v1/segments/{name}", "segment.update", "segment", Config, SEGMENT),
    spec(DELETE, "/api/v1/segments/{name}", "segment.delete", "segment", Config, SEGMENT),
    spec(PUT, "/api/v1/identity/rules", "identity.rules.update", "identity_rules", Config, Some("/api/v1/identity/rules")),
    spec(POST, "/api/v1/identity/matching/run", "identity.matching.run", "matching", Operation, None),
    spec(POST, "/api/v1/identity/review/{pair}/accept", "identity.review.accept", "review_pair", Person, None),
    spec(POST, "/api/v1/identity/review/{pair}/reject", "identity.review.reject", "review_pair", Person, None),
    spec(POST, "/api/v1/destinations", "destination.create", "destination", Config, DESTINATION),
    spec(PUT, "/api/v1/destinations/{destination}", "destination.update", "destination", Config, DESTINATION),
    spec(DELETE, "/api/v1/destinations/{destination}", "destination.delete", "destination", Config, DESTINATION),
    spec(POST, "/api/v1/destinations/{destination}/pause", "destination.pause", "destination", Config, DESTINATION),
    spec(POST, "/api/v1/destinations/{destination}/resume", "destination.resume", "destination", Config, DESTINATION),
    spec(POST, "/api/v1/destinations/{destination}/backfill", "destination.backfill.start", "destination", Operation, None),
    spec(DELETE, "/api/v1/destinations/{destination}/backfill", "destination.backfill.cancel", "destination", Operation, None),
    spec(POST, "/api/v1/destinations/{destination}/dead-letters/replay", "destination.replay", "destination", Operation, None),
    spec(POST, "/api/v1/destinations/{destination}/test", "destination.test", "destination", Operation, None),
    spec(POST, "/api/v1/journeys", "journey.create", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/check", "journey.check", "journey", Operation, None),
    spec(PUT, "/api/v1/journeys/caps", "journey.caps.update", "journey_caps", Config, Some("/api/v1/journeys/caps")),
    spec(PUT, "/api/v1/journeys/{journey}/draft", "journey.draft.update", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/publish", "journey.publish", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/pause", "journey.pause", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/resume", "journey.resume", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/archive", "journey.archive", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/migrate", "journey.migrate", "journey", Config, JOURNEY),
    spec(POST, "/api/v1/journeys/{journey}/preview", "journey.preview", "journey", Operation, None),
    // The journey is configuration, but the body names customers: nothing of it is kept.
    spec(POST, "/api/v1/journeys/{journey}/entries", "journey.entries.create", "journey", Operation, None),
    spec(POST, "/api/v1/models/{model}/fit", "model.fit", "model", Operation, None),
    spec(PUT, "/api/v1/privacy/personal-data", "privacy.personal_data.update", "personal_data", Config, Some("/api/v1/privacy/personal-data")),
    spec(PUT, "/api/v1/profiles/{reference}/consent", "consent.set", "profile", Person, None),
    spec(POST, "/api/v1/profiles/{reference}/consent", "consent.update", "profile", Person, None),
];

/// Routes under these prefixes act on people (right-to-be-forgotten deletions and
/// suppressions): their entries are [`Subject::Person`] even before they have a line in
/// [`ACTIONS`], named `privacy.deletion.create`, `privacy.suppression.delete`, ….
const PERSON_PREFIXES: &[(&str, &str)] = &[
    ("/api/v1/privacy/deletions", "privacy.deletion"),
    ("/api/v1/privacy/suppressions", "privacy.suppression"),
];

/// Whether requests of `method` are recorded.
pub fn is_recorded(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The action of a route: its line in [`ACTIONS`]; a privacy route's derived name; else a
/// name made of the method and the template, kept person-level (hashed, no bodies), so that
/// a route without a line still leaves a safe entry.
pub fn action_for(method: &Method, route: &str) -> ActionSpec {
    if let Some(spec) = ACTIONS
        .iter()
        .find(|s| s.method == *method && s.route == route)
    {
        return spec.clone();
    }
    let verb = match *method {
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => "request",
    };
    let (action, resource): (String, &'static str) = match PERSON_PREFIXES
        .iter()
        .find(|(prefix, _)| route.starts_with(prefix))
    {
        Some((prefix, name)) => {
            // `POST …/deletions/{id}/cancel` is `privacy.deletion.cancel`.
            let tail = route[prefix.len()..]
                .rsplit('/')
                .find(|s| !s.is_empty() && !s.starts_with('{'));
            let verb = match (method, tail) {
                (&Method::POST, Some(t)) => t.to_owned(),
                _ => verb.to_owned(),
            };
            (format!("{name}.{verb}"), "profile")
        }
        None => (format!("{} {route}", method.as_str()), "unlisted"),
    };
    ActionSpec {
        method: method.clone(),
        route: "",
        action: Cow::Owned(action),
        resource,
        subject: Person,
        read: None,
    }
}

/// The first path parameter of `path` under `template`, percent-decoded.
pub fn path_parameter(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| t.starts_with('{'))
        .map(|(_, p)| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// Field names whose values are never recorded, at any depth.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "secret_hash",
    "password",
    "write_key",
    "writeKey",
    "token",
    "api_key",
    "authorization",
];

/// `value` with every secret-named field's value replaced by `"[redacted]"`.
pub fn redact(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if SECRET_FIELDS.iter().any(|s| k.eq_ignore_ascii_case(s)) && !v.is_null() {
                        *v = Value::String("[redacted]".into());
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// What a handler adds to its request's entry.
#[derive(Debug, Default)]
struct Note {
    resource_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
}

/// The recorder a handler takes to add to its entry: the resource's id, `before`, `after`.
/// Always available; it records nothing where no entry is made (a read, a test router).
#[derive(Debug, Clone, Default)]
pub struct Audit(Option<Arc<Mutex<Note>>>);

impl Audit {
    /// Names the resource (for creations whose answer has no `id` or `name`).
    pub fn resource_id(&self, id: impl Into<String>) {
        if let Some(n) = &self.0 {
            n.lock().expect("audit note").resource_id = Some(id.into());
        }
    }

    /// The resource as it was (secrets are removed when recorded).
    pub fn before(&self, value: &impl serde::Serialize) {
        if let (Some(n), Ok(v)) = (&self.0, serde_json::to_value(value)) {
            n.lock().expect("audit note").before = Some(v);
        }
    }

    /// The resource as it is now, or what the operation did.
    pub fn after(&self, value: &impl serde::Serialize) {
        if let (Some(n), Ok(v)) = (&self.0, serde_json::to_value(value)) {
            n.lock().expect("audit note").after = Some(v);
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Audit>().cloned().unwrap_or_default())
    }
}

/// The audit layer's state: the server's, and the REST routes without layers, through
/// which it reads a resource before and after a change.
#[derive(Clone)]
pub struct AuditLayer {
    pub state: AppState,
    pub reads: Router,
}

/// The largest answer read into an entry; larger ones are not recorded as `after`.
const MAX_RECORDED_BYTES: u64 = 256 * 1024;

/// The route layer (see the module documentation).
pub async fn record(
    State(layer): State<Arc<AuditLayer>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let (Some(matched), Some(admin)) = (matched, req.extensions().get::<AdminKey>().cloned())
    else {
        return next.run(req).await;
    };
    if !is_recorded(req.method()) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = matched.as_str().to_owned();
    let spec = action_for(&method, &route);
    let param = path_parameter(&route, req.uri().path());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let address = crate::rate_limit::client_ip(
        peer,
        req.headers(),
        &layer.state.config.rate_limits.trusted_proxies,
    )
    .map(|ip| ip.to_string());
    let note = Arc::new(Mutex::new(Note::default()));
    req.extensions_mut().insert(Audit(Some(note.clone())));
    let read_path = |id: Option<&str>| -> Option<String> {
        let template = spec.read?;
        match (template.find('{'), id) {
            (None, _) => Some(template.to_owned()),
            (Some(start), Some(id)) => {
                let end = template[start..].find('}')? + start + 1;
                let encoded =
                    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
                Some(format!(
                    "{}{encoded}{}",
                    &template[..start],
                    &template[end..]
                ))
            }
            (Some(_), None) => None,
        }
    };
    let before = match (spec.subject, read_path(param.as_deref())) {
        (Config, Some(path)) => read_resource(&layer.reads, &path, &admin).await,
        _ => None,
    };
    let response = next.run(req).await;
    let status = response.status();
    // The answer is read only where it may be recorded, or for an error's code.
    let capture = status.is_client_error()
        || status.is_server_error()
        || (spec.subject == Config && status.is_success());
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_RECORDED_BYTES);
    let (response, answer) = if capture && small {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_RECORDED_BYTES as usize).await {
            Ok(bytes) => {
                let answer = serde_json::from_slice::<Value>(&bytes).ok();
                (Response::from_parts(parts, Body::from(bytes)), answer)
            }
            Err(_) => (Response::from_parts(parts, Body::empty()), None::<Value>),
        }
    } else {
        (response, None)
    };
    let note = std::mem::take(&mut *note.lock().expect("audit note"));
    let error = answer
        .as_ref()
        .filter(|_| !status.is_success())
        .and_then(|a| a["error"]["code"].as_str())
        .map(str::to_owned);
    let resource_id = match spec.subject {
        Person => note.resource_id.or(param).map(|r| person_digest(&r)),
        _ => note.resource_id.or(param).or_else(|| {
            answer
                .as_ref()
                .filter(|_| status.is_success())
                .and_then(|a| a["id"].as_str().or(a["name"].as_str()).map(str::to_owned))
        }),
    };
    let (before, after) = match spec.subject {
        Person => (None, None),
        Operation => (note.before, note.after),
        Config => {
            let after = match note.after {
                Some(a) => Some(a),
                // A deleted resource has no `after`; a renamed one is no longer where the
                // parameter said, and its answer stands for it; without a route to read it
                // (a key: revoked, not deleted), the answer is `after`.
                None if status.is_success() => match read_path(resource_id.as_deref()) {
                    Some(_) if method == Method::DELETE => None,
                    Some(path) => read_resource(&layer.reads, &path, &admin)
                        .await
                        .or_else(|| answer.clone()),
                    None => answer.clone(),
                },
                None => None,
            };
            (note.before.or(before), after)
        }
    };
    let entry = AuditEntry {
        id: String::new(),
        at_ms: crate::now_ms(),
        actor: Actor {
            key_id: admin.id.clone(),
            key_name: admin.name.clone(),
        },
        action: spec.action.to_string(),
        resource: Resource {
            kind: spec.resource.to_owned(),
            id: resource_id,
        },
        method: method.as_str().to_owned(),
        route,
        status: status.as_u16(),
        error,
        address,
        before: before.map(redact),
        after: after.map(redact),
    };
    let store = layer.state.store.clone();
    let written = crate::blocking(move || {
        rapport_engine::audit::append(store.as_ref(), entry)?;
        Ok(())
    })
    .await;
    if written.is_err() {
        // The request's effect stands; that its record is missing must not go unnoticed.
        tracing::error!(action = %spec.action, "the audit trail could not be written");
        metrics::counter!("rapport_audit_write_failures_total").increment(1);
    }
    response
}

/// The resource at `path` as the API reads it (`None` when it does not exist).
async fn read_resource(reads: &Router, path: &str, admin: &AdminKey) -> Option<Value> {
    let mut req = Request::get(path).body(Body::empty()).ok()?;
    req.extensions_mut().insert(admin.clone());
    let response = reads.clone().oneshot(req).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = axum::body::to_bytes(response.into_body(), MAX_RECORDED_BYTES as usize)
        .await
        .ok()?;
    if !is_json {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_mutating_route_has_a_named_action() {
        let doc = crate::openapi();
        let mut missing = Vec::new();
        for (path, item) in &doc.paths.paths {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (method, op) in [
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                // The privacy routes' prefix rule names them (`privacy.deletion.create`, …).
                let by_prefix = PERSON_PREFIXES.iter().any(|(p, _)| path.starts_with(p));
                if op.is_some()
                    && !by_prefix
                    && !ACTIONS
                        .iter()
                        .any(|s| s.method == method && s.route == path)
                {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes without an audit action: {missing:?}"
        );
        // Every line names a documented route, and every `read` is a GET route.
        for s in ACTIONS {
            let item = doc
                .paths
                .paths
                .get(s.route)
                .unwrap_or_else(|| panic!("{}", s.route));
            if let Some(read) = s.read {
                assert!(
                    doc.paths
                        .paths
                        .get(read)
                        .and_then(|i| i.get.as_ref())
                        .is_some(),
                    "{read}"
                );
            }
            let _ = item;
            assert!(s.action.contains('.'), "{}", s.action);
        }
    }

    #[test]
    fn unlisted_and_privacy_routes_are_person_level() {
        let s = action_for(&Method::POST, "/api/v1/privacy/deletions");
        assert_eq!(
            (s.action.as_ref(), s.subject, s.resource),
            ("privacy.deletion.create", Person, "profile")
        );
        let s = action_for(&Method::POST, "/api/v1/privacy/deletions/{id}/cancel");
        assert_eq!(s.action, "privacy.deletion.cancel");
        let s = action_for(&Method::DELETE, "/api/v1/privacy/suppressions/{reference}");
        assert_eq!(s.action, "privacy.suppression.delete");
        let s = action_for(&Method::POST, "/api/v1/something/new");
        assert_eq!(
            (s.action.as_ref(), s.subject),
            ("POST /api/v1/something/new", Person)
        );
        assert_eq!(
            action_for(&Method::POST, "/api/v1/keys").action,
            "key.create"
        );
    }

    #[test]
    fn path_parameters_and_secrets() {
        assert_eq!(
            path_parameter("/api/v1/segments/{name}", "/api/v1/segments/big%20spenders").as_deref(),
            Some("big spenders")
        );
        assert_eq!(path_parameter("/api/v1/keys", "/api/v1/keys"), None);
        let v = redact(
            json!({"id": "d", "secret": "whsec_x", "config": {"password": "p", "url": "u"}, "list": [{"token": "t"}], "write_key": null}),
        );
        assert_eq!(
            v,
            json!({"id": "d", "secret": "[redacted]", "config": {"password": "[redacted]", "url": "u"}, "list": [{"token": "[redacted]"}], "write_key": null})
        );
    }
}
