//! Typed extractors for the REST API, so that handlers receive checked values and every
//! refusal has Rapport's error shape: a JSON body ([`Json`]) or a query ([`Query`]) that does
//! not fit its type is refused with 400 naming the field by its full path
//! (`settings.traits.allow[0]`), unknown fields and parameters included, and the admin key
//! is checked once for all of `/api/v1` ([`require_admin`]) so that no route can forget it.

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::request::{presented_key, read_body};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rapport_engine::access::Principal;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The largest REST request body, after decompression.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body of type `T` (at most [`MAX_BODY_BYTES`], gzip allowed).
///
/// Errors: `400 invalid_json` (not JSON), `400 invalid_field` (JSON not of the shape: a
/// field unknown, missing or of the wrong type; `field` is its path, `$` for the body
/// itself), `413 payload_too_large`, `415 unsupported_content_encoding`.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, MAX_BODY_BYTES).await?;
        parse_body(&bytes).map(Json)
    }
}

/// Reads a JSON body into `T`, naming the field at fault by its path.
///
/// One rule for every REST body: text that is not JSON (a syntax error, trailing text, no
/// body) is `invalid_json`; JSON of the wrong shape — a field of the wrong type, unknown or
/// missing, at any depth — is `invalid_field` naming the field by its path, `$` for the
/// body itself (an array or a string where an object is expected).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            Code::InvalidJson,
            "a JSON body is required; send a JSON object",
        ));
    }
    // Syntax first, so that a shape error is only ever reported on text that is JSON.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!(
                "the request body is not valid JSON: at line {}, column {}, {}; send a JSON object such as {{\"name\": \"…\"}}",
                e.line(),
                e.column(),
                syntax_problem(&e)
            ),
        )
    })?;
    // serde would read an array as a struct's fields in order: every body is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            Code::InvalidField,
            "the request body must be a JSON object, not an array",
        )
        .with_field(ROOT));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        // Inside a tagged enum serde buffers the object and the path stops at it: name the
        // unknown field itself (`kind.retries`), as elsewhere.
        // A missing field is reported at the object that lacks it: name the field.
        if let Some(named) = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
            .and_then(|r| r.split('`').next())
            && path != named
            && !path.ends_with(&format!(".{named}"))
        {
            path = match path.as_str() {
                "." | "" | "?" => named.to_owned(),
                p => format!("{p}.{named}"),
            };
        }
        let field = match path.as_str() {
            "." | "" | "?" => ROOT.to_owned(),
            p => p.to_owned(),
        };
        let problem = json_problem(&inner);
        // An unknown or missing field's message names it already.
        let message =
            if problem.starts_with("unknown field") || problem.starts_with("missing field") {
                format!("invalid request body: {problem}")
            } else {
                format!("invalid request body: `{field}`: {problem}")
            };
        ApiError::new(Code::InvalidField, message).with_field(field)
    })
}

/// The field name of the body itself in a shape error.
pub const ROOT: &str = "$";

/// serde_json's description of a shape error without its position (` at line 1 column
/// 9`), Rust's type names put in JSON's words (`expected struct NewKey` is `expected a JSON
/// object`, `expected u32` a whole number).
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let text = text.strip_suffix(&suffix).unwrap_or(&text);
    let Some((head, expected)) = text.rsplit_once("expected ") else {
        return text.to_owned();
    };
    let plain = match expected {
        e if e.starts_with("struct ") || e.starts_with("map") => "a JSON object",
        e if e.starts_with("a sequence") || e.starts_with("tuple") => "a JSON array",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        // `expected value`: serde_json's word for an enum that met the wrong type.
        "value" if head.is_empty() => "one of the names this field takes (a JSON string)",
        _ => return text.to_owned(),
    };
    format!("{head}expected {plain}")
}

/// What is wrong with text that is not JSON, in plain words.
fn syntax_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let text = text.strip_suffix(&suffix).unwrap_or(&text);
    match text {
        t if t.starts_with("EOF while parsing") => {
            "the text ends before the JSON is complete".into()
        }
        "expected value" => {
            "a JSON value was expected (JSON strings and keys take double quotes)".into()
        }
        "trailing characters" | "trailing comma" => format!(
            "{text}: there is more after the JSON value, or a comma before a closing bracket"
        ),
        "key must be a string" => "an object key must be a string in double quotes".into(),
        t => t.to_owned(),
    }
}

/// The query string read into `T` (a struct of the parameters, refusing unknown ones).
///
/// Errors: `400 invalid_parameter` naming the parameter (unknown, repeated, of the wrong
/// type or range).
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// Reads a query string into `T`. A parameter given more than once takes its last value,
/// as it always has on this API.
pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match pairs.iter_mut().find(|(seen, _)| *seen == k) {
            Some(pair) => pair.1 = v.into_owned(),
            None => pairs.push((k.into_owned(), v.into_owned())),
        }
    }
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names an unknown or repeated field in backticks: that is the parameter.
        let named = inner.split('`').nth(1).map(str::to_owned);
        let field = match path.as_str() {
            "." | "" => named.clone().unwrap_or_default(),
            p => p.to_owned(),
        };
        let given = pairs
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.as_str());
        let message = if let (Some(v), true) = (given, is_number_error(&inner)) {
            if field == "limit" {
                // Every `limit` of the API is a page size of the same range.
                let max = rapport_api::page::MAX_LIMIT;
                format!("`limit` must be a whole number from 1 to {max}, not {v:?}")
            } else if inner.contains("float") {
                format!("`{field}` must be a number, not {v:?}")
            } else {
                format!("`{field}` must be a whole number, not {v:?}")
            }
        } else if inner.starts_with("unknown field") {
            format!("unknown parameter `{field}`")
        } else if inner.starts_with("duplicate field") {
            format!("`{field}` is given more than once")
        } else if inner.starts_with('`') {
            inner
        } else {
            format!("`{field}`: {inner}")
        };
        let err = ApiError::new(Code::InvalidParameter, message);
        if field.is_empty() {
            err
        } else {
            err.with_field(field)
        }
    })
}

/// Whether a query value failed to read as a number (`limit=abc`): Rust's words for it
/// (`invalid digit found in string`) say nothing to a client.
fn is_number_error(message: &str) -> bool {
    [
        "invalid digit",
        "cannot parse integer",
        "number too large",
        "number too small",
        "invalid float literal",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The admin key that authorised a request of `/api/v1`, for records of who changed what.
#[derive(Debug, Clone)]
pub struct AdminKey {
    pub id: String,
    /// The key's name, as its creator gave it.
    pub name: String,
    /// What it may do (`scopes.rs`).
    pub scopes: rapport_engine::access::Scopes,
}

impl<S: Send + Sync> FromRequestParts<S> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Present on every route behind `require_admin`; absent only if a route were
        // mounted outside it, which is a bug rather than a client's fault.
        parts
            .extensions
            .get::<AdminKey>()
            .cloned()
            .ok_or_else(ApiError::internal)
    }
}

/// Middleware on every route of `/api/v1`: the request must carry an admin key
/// (`Authorization: Bearer <key>`, or a dashboard session's cookie — with its CSRF token on
/// a change, else `403 csrf_rejected`), else `401 missing_key` / `401 invalid_key` /
/// `401 invalid_authorization` / `403 forbidden` (a write key), before any handler runs.
pub async fn require_admin(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let session = !req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        && crate::dashboard::session_cookie(req.headers()).is_some();
    let mut res = match admin_key(&state, req.method(), req.headers()).await {
        Ok(key) => {
            req.extensions_mut().insert(key);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    if session {
        crate::dashboard::no_login_prompt(&mut res);
    }
    res
}

async fn admin_key(
    state: &AppState,
    method: &Method,
    headers: &axum::http::HeaderMap,
) -> Result<AdminKey, ApiError> {
    let Some(key) = presented_key(headers)? else {
        // The dashboard: a session cookie acts as the key that opened it.
        if crate::dashboard::session_cookie(headers).is_some() {
            return crate::dashboard::session_admin(state, method, headers).await;
        }
        return Err(ApiError::new(
            Code::MissingKey,
            "send an admin key as `Authorization: Bearer <key>`",
        ));
    };
    match crate::authenticate(state, &key).await? {
        Some(Principal::Admin {
            key_id,
            name,
            scopes,
        }) => Ok(AdminKey {
            id: key_id,
            name,
            scopes,
        }),
        Some(Principal::Writer { .. }) => Err(ApiError::new(
            Code::Forbidden,
            "write keys can only send events; this needs an admin key",
        )),
        None => Err(ApiError::new(
            Code::InvalidKey,
            "the key is unknown or revoked",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Fit {
        as_of: Option<String>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        allow: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<u32>,
        cursor: Option<String>,
    }

    #[test]
    fn body_errors_name_the_field_by_its_path() {
        let e = parse_body::<Fit>(br#"{"inner": {"allow": ["a", 3]}}"#).unwrap_err();
        assert_eq!(e.body.code, "invalid_field");
        assert_eq!(e.body.field.as_deref(), Some("inner.allow[1]"));
        let e = parse_body::<Fit>(br#"{"asof": "2024-01-01"}"#).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("asof"));
        assert!(
            e.body.message.contains("unknown field"),
            "{}",
            e.body.message
        );
        let e = parse_body::<Fit>(b"  ").unwrap_err();
        assert_eq!(e.body.field, None);
        let e = parse_body::<Fit>(b"{not json").unwrap_err();
        assert_eq!((e.body.code, e.body.field), (Code::InvalidJson, None));
        let e = parse_body::<Fit>(br#"{} {}"#).unwrap_err();
        assert_eq!(e.body.code, "invalid_json");
        assert!(parse_body::<Fit>(br#"{"as_of": null}"#).is_ok());
        // JSON of the wrong shape is `invalid_field` at every depth, the body itself
        // named `$`; only text that is not JSON is `invalid_json`.
        for body in [&b"[1]"[..], b"[]", b"\"x\"", b"3", br#"{"inner": 3}"#] {
            let e = parse_body::<Fit>(body).unwrap_err();
            assert_eq!(e.body.code, "invalid_field", "{body:?}: {}", e.body.message);
            let expected = if body.starts_with(b"{") { "inner" } else { "$" };
            assert_eq!(e.body.field.as_deref(), Some(expected), "{body:?}");
        }
        let e = parse_body::<Fit>(b"[1").unwrap_err();
        assert_eq!((e.body.code, e.body.field), (Code::InvalidJson, None));
        // Text that is not JSON is said to be so in plain words, with where and what.
        let e = parse_body::<Fit>(b"kind=admin").unwrap_err();
        assert!(
            e.body
                .message
                .starts_with("the request body is not valid JSON: at line 1, column 1")
                && e.body.message.contains("send a JSON object"),
            "{}",
            e.body.message
        );
        let e = parse_body::<Fit>(br#"{"as_of": "x""#).unwrap_err();
        assert!(e.body.message.contains("ends before"), "{}", e.body.message);
        // Rust's type names are put in JSON's words.
        let e = parse_body::<Fit>(br#"{"inner": []}"#).unwrap_err();
        assert!(!e.body.message.contains("struct"), "{}", e.body.message);
        // A required field left out is named, at its full path.
        let e = parse_body::<Fit>(br#"{"inner": {}}"#).unwrap_err();
        assert_eq!(
            e.body.field.as_deref(),
            Some("inner.allow"),
            "{}",
            e.body.message
        );
        assert!(e.body.message.contains("missing field"));
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<Params>("colour=red").unwrap_err();
        assert_eq!(e.body.code, "invalid_parameter");
        assert_eq!(e.body.field.as_deref(), Some("colour"));
        assert_eq!(e.body.message, "unknown parameter `colour`");
        let e = parse_query::<Params>("limit=x").unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("limit"));
        // In plain words, with the value given, not Rust's `invalid digit found in string`.
        assert_eq!(
            e.body.message,
            "`limit` must be a whole number from 1 to 1000, not \"x\""
        );
        let p = parse_query::<Params>("limit=1&limit=2").unwrap();
        assert_eq!(p.limit, Some(2));
        let p = parse_query::<Params>("limit=5&cursor=a%20b").unwrap();
        assert_eq!((p.limit, p.cursor.as_deref()), (Some(5), Some("a b")));
    }
}

/// The query parameters each documented operation accepts, by method and path template
/// (`/api/v1/segments/{name}`), read from the OpenAPI document of the routes it guards.
///
/// Handlers with parameters refuse unknown ones through [`Query`]; this covers the routes
/// that take none, so that `?limt=5` on any route is a `400 invalid_parameter` naming `limt`
/// instead of being ignored, and a route cannot accept what its description does not list.
#[derive(Debug, Default, Clone)]
pub struct DocumentedParameters {
    by_route: HashMap<(Method, String), HashSet<String>>,
}

impl DocumentedParameters {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> DocumentedParameters {
        use utoipa::openapi::path::ParameterIn;
        let mut by_route = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .chain(item.parameters.iter().flatten())
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                by_route.insert((method, path.clone()), names);
            }
        }
        DocumentedParameters { by_route }
    }

    /// The first query parameter of `raw` the operation does not document, if any. A
    /// route missing from the document (none should be) accepts anything.
    pub fn unknown(&self, method: &Method, route: &str, raw: &str) -> Option<String> {
        let allowed = self.by_route.get(&(method.clone(), route.to_owned()))?;
        form_urlencoded::parse(raw.as_bytes())
            .map(|(k, _)| k.into_owned())
            .find(|k| !allowed.contains(k))
    }
}

/// A route layer refusing query parameters the operation does not document (see
/// [`DocumentedParameters`]).
pub async fn refuse_undocumented_parameters(
    State(documented): State<Arc<DocumentedParameters>>,
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(matched), Some(raw)) = (matched, req.uri().query())
        && let Some(name) = documented.unknown(req.method(), matched.as_str(), raw)
    {
        return ApiError::new(
            Code::InvalidParameter,
            format!("unknown parameter `{name}`"),
        )
        .with_field(name)
        .into_response();
    }
    next.run(req).await
}
