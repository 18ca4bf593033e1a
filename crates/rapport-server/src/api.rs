//! The REST API under `/api/v1`, for admin keys: reading events back, managing sources and
//! keys.

use crate::AppState;
use crate::error::ApiError;
use crate::request::check_value;
use crate::request::{parse_json_body, presented_key, read_body};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rapport_api::Code;
use rapport_core::event::{MAX_ID_BYTES, MAX_NAME_BYTES, parse_timestamp};
use rapport_engine::access::{IssuedKey, KeyInfo, Principal};
use rapport_store::{Cursor, EventQuery, KeyKind, Source, SourceSettings};
use serde::{Deserialize, Serialize};

const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Requires an admin key.
pub async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    require_admin_key(state, headers).await.map(drop)
}

/// As [`require_admin`], answering the id of the admin key, for records of who changed what.
pub async fn require_admin_key(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(key) = presented_key(headers)? else {
        return Err(ApiError::new(
            Code::MissingKey,
            "send an admin key as `Authorization: Bearer <key>`",
        ));
    };
    match crate::authenticate(state, &key).await? {
        Some(Principal::Admin { key_id }) => Ok(key_id),
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

fn parse_events_query(raw: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery {
        limit: DEFAULT_PAGE,
        ..EventQuery::default()
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let field = k.as_ref();
        let bad = |msg: String| ApiError::new(Code::InvalidParameter, msg).with_field(field);
        let time = |v: &str| {
            parse_timestamp(v)
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| bad(format!("`{field}` must be an ISO-8601 timestamp")))
        };
        match field {
            "userId" | "anonymousId" => {
                check_value(field, &v, MAX_ID_BYTES)?;
                let slot = match field {
                    "userId" => &mut q.user_id,
                    _ => &mut q.anonymous_id,
                };
                *slot = Some(v.into_owned());
            }
            "type" => {
                if rapport_core::event::EventType::parse(&v).is_none() {
                    return Err(bad(
                        "`type` must be one of track, identify, page, screen, group, alias".into(),
                    ));
                }
                q.kind = Some(v.into_owned())
            }
            "event" => {
                check_value(field, &v, MAX_NAME_BYTES)?;
                q.name = Some(v.into_owned())
            }
            "since" => q.since_ms = Some(time(&v)?),
            "until" => q.until_ms = Some(time(&v)?),
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "`limit` must be a whole number from 1 to {MAX_PAGE}"
                        ))
                    })?
            }
            "cursor" => {
                q.cursor = Some(
                    Cursor::decode(&v)
                        .ok_or_else(|| bad("`cursor` is not a cursor this API returned".into()))?,
                )
            }
            _ => return Err(bad(format!("unknown parameter `{field}`"))),
        }
    }
    Ok(q)
}

/// `GET /api/v1/events`: stored events, newest first, filtered and paged by cursor.
pub async fn list_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers).await?;
    let query = parse_events_query(raw.as_deref())?;
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&query))
        .await
        .map_err(|_| ApiError::internal())??;
    // Stored events are already JSON: splice them in rather than re-encoding.
    let mut body =
        Vec::with_capacity(page.events.iter().map(|e| e.1.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"data\":[");
    for (i, (_, payload)) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(payload);
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    match page.next {
        Some(c) => body.extend_from_slice(
            serde_json::to_string(&c.encode())
                .expect("string")
                .as_bytes(),
        ),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    /// Per-source limits (see `docs/security.md`); none when absent.
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

/// The body of `PUT` and `PATCH /api/v1/sources/{source}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

/// Reads settings, naming the offending field in full (`settings.traits.allow[0]`).
pub fn parse_settings(value: serde_json::Value) -> Result<SourceSettings, ApiError> {
    // (serde would read an array as the struct's fields in order.)
    if !value.is_object() {
        return Err(
            ApiError::new(Code::InvalidField, "`settings` must be an object")
                .with_field("settings"),
        );
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_path_to_error's path includes an unknown key itself.
        let field = match path.as_str() {
            "." => "settings".to_owned(),
            p => format!("settings.{p}"),
        };
        ApiError::new(Code::InvalidField, format!("invalid settings: {inner}")).with_field(field)
    })
}

/// `settings` of a `PATCH`: each top-level part given replaces that part; `null` resets it
/// to its default.
fn patched_settings(
    current: &SourceSettings,
    patch: serde_json::Value,
) -> Result<SourceSettings, ApiError> {
    let serde_json::Value::Object(patch) = patch else {
        return Err(
            ApiError::new(Code::InvalidField, "`settings` must be an object")
                .with_field("settings"),
        );
    };
    let mut merged = match serde_json::to_value(current).expect("settings serialise") {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    parse_settings(serde_json::Value::Object(merged))
}

/// Puts a source's identity policy in force through the log (see
/// `rapport_engine::identity::control::SourceIdentityChange`): the processor applies it to
/// the events logged after it.
async fn log_identity_policy(state: &AppState, source: &Source) -> Result<(), ApiError> {
    let change = rapport_engine::identity::control::SourceIdentityChange::new(
        &source.id,
        source.settings.identity.clone(),
        chrono::Utc::now(),
    );
    state.ingestor.append(vec![change.append_item()]).await?;
    Ok(())
}

#[derive(Serialize)]
pub struct CreatedSource {
    pub source: Source,
    pub write_key: IssuedKeyView,
}

/// A key as the API shows it. Its own type so that the wire shape is pinned here, and never
/// carries the hash of the secret (only the engine and the store know it).
#[derive(Serialize)]
pub struct KeyView {
    pub id: String,
    pub kind: KeyKind,
    pub source_id: Option<String>,
    pub name: String,
    pub secret_prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> KeyView {
        KeyView {
            id: k.id,
            kind: k.kind,
            source_id: k.source_id,
            name: k.name,
            secret_prefix: k.secret_prefix,
            created_at_ms: k.created_at_ms,
            revoked_at_ms: k.revoked_at_ms,
        }
    }
}

/// A key as created: the only answer that carries its secret.
#[derive(Serialize)]
pub struct IssuedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    pub secret: String,
}

impl From<IssuedKey> for IssuedKeyView {
    fn from(k: IssuedKey) -> IssuedKeyView {
        IssuedKeyView {
            key: k.key.into(),
            secret: k.secret,
        }
    }
}

pub async fn list_sources(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<List<Source>>, ApiError> {
    require_admin(&state, &headers).await?;
    let access = state.access.clone();
    let data = crate::blocking(move || Ok(access.sources()?)).await?;
    Ok(Json(List { data }))
}

pub async fn create_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CreatedSource>), ApiError> {
    require_admin(&state, &headers).await?;
    let new: NewSource = parse_json_body(&read_body(&headers, body, 64 * 1024).await?)?;
    let settings = match new.settings {
        Some(v) => parse_settings(v)?,
        None => SourceSettings::default(),
    };
    let access = state.access.clone();
    let (source, write_key) =
        crate::blocking(move || Ok(access.create_source_with(&new.name, settings, now_ms())?))
            .await?;
    // Nobody holds the write key before this answer, so no event of the source can precede
    // the policy in the log.
    if !source.settings.identity.is_unrestricted() {
        log_identity_policy(&state, &source).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedSource {
            source,
            write_key: write_key.into(),
        }),
    ))
}

/// `GET /api/v1/sources/{source}` (by id or name): the source with its settings.
pub async fn get_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Result<Json<Source>, ApiError> {
    require_admin(&state, &headers).await?;
    let access = state.access.clone();
    let source = crate::blocking(move || Ok(access.source_by_name_or_id(&reference)?)).await?;
    Ok(Json(source))
}

/// `PUT /api/v1/sources/{source}`: `settings` replaces the settings whole (parts left out
/// take their defaults); `name`, when given, renames.
pub async fn replace_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    body: Body,
) -> Result<Json<Source>, ApiError> {
    update_source(state, headers, reference, body, false).await
}

/// `PATCH /api/v1/sources/{source}`: each part of `settings` given (`traits`, `identity`,
/// `rate_limit`, `ip_rate_limit`) replaces that part; `null` resets it.
pub async fn patch_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    body: Body,
) -> Result<Json<Source>, ApiError> {
    update_source(state, headers, reference, body, true).await
}

async fn update_source(
    state: AppState,
    headers: HeaderMap,
    reference: String,
    body: Body,
    patch: bool,
) -> Result<Json<Source>, ApiError> {
    require_admin(&state, &headers).await?;
    let update: SourceUpdate = parse_json_body(&read_body(&headers, body, 64 * 1024).await?)?;
    let access = state.access.clone();
    let current = crate::blocking(move || Ok(access.source_by_name_or_id(&reference)?)).await?;
    let settings = match (update.settings, patch) {
        (None, true) => None,
        (None, false) => {
            return Err(ApiError::new(
                Code::InvalidField,
                "`settings` is required; PATCH changes parts",
            )
            .with_field("settings"));
        }
        (Some(v), true) => Some(patched_settings(&current.settings, v)?),
        (Some(v), false) => Some(parse_settings(v)?),
    };
    if let Some(s) = &settings {
        rapport_engine::access::validate_settings(s)?;
    }
    // The policy goes to the log before the registry: if saving then fails, the processor
    // still applies what the log says, and a retry saves the same.
    if let Some(s) = &settings
        && s.identity != current.settings.identity
    {
        let mut next = current.clone();
        next.settings = s.clone();
        log_identity_policy(&state, &next).await?;
    }
    let access = state.access.clone();
    let id = current.id.clone();
    let (_, source) =
        crate::blocking(move || Ok(access.update_source(&id, update.name.as_deref(), settings)?))
            .await?;
    Ok(Json(source))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub kind: KeyKind,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<List<KeyView>>, ApiError> {
    require_admin(&state, &headers).await?;
    let access = state.access.clone();
    let keys = crate::blocking(move || Ok(access.keys()?)).await?;
    Ok(Json(List {
        data: keys.into_iter().map(KeyView::from).collect(),
    }))
}

pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IssuedKeyView>), ApiError> {
    require_admin(&state, &headers).await?;
    let new: NewKey = parse_json_body(&read_body(&headers, body, 64 * 1024).await?)?;
    let name = new
        .name
        .unwrap_or_else(|| format!("{:?} key", new.kind).to_lowercase());
    let access = state.access.clone();
    let key = crate::blocking(move || {
        Ok(access.create_key(new.kind, new.source.as_deref(), &name, now_ms())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    require_admin(&state, &headers).await?;
    let access = state.access.clone();
    let key = crate::blocking(move || Ok(access.revoke_key(&id, now_ms())?)).await?;
    Ok(Json(key.into()))
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_name_the_field() {
        let field = |v: serde_json::Value| parse_settings(v).unwrap_err().body.field.unwrap();
        use serde_json::json;
        assert_eq!(
            field(json!({"traits": {"allow": "plan"}})),
            "settings.traits.allow"
        );
        assert_eq!(
            field(json!({"traits": {"deny": ["a", 3]}})),
            "settings.traits.deny[1]"
        );
        assert_eq!(
            field(json!({"traits": {"alow": []}})),
            "settings.traits.alow"
        );
        assert_eq!(field(json!({"colour": 1})), "settings.colour");
        assert_eq!(
            field(json!({"identity": {"merge": "no"}})),
            "settings.identity.merge"
        );
        assert_eq!(
            field(json!({"rate_limit": {"per_second": -1, "burst": 1}})),
            "settings.rate_limit.per_second"
        );
        assert_eq!(field(json!([])), "settings");
        let s = parse_settings(json!({"identity": {"merge": false}})).unwrap();
        assert!(!s.identity.merge && s.traits.is_unrestricted());
    }

    #[test]
    fn a_patch_replaces_the_parts_it_names() {
        use serde_json::json;
        let current = parse_settings(json!({
            "traits": {"deny": ["plan"]},
            "rate_limit": {"per_second": 5, "burst": 10}
        }))
        .unwrap();
        let s = patched_settings(&current, json!({"identity": {"merge": false}})).unwrap();
        assert_eq!(s.traits, current.traits);
        assert_eq!(s.rate_limit, current.rate_limit);
        assert!(!s.identity.merge);
        let s = patched_settings(&current, json!({"rate_limit": null})).unwrap();
        assert_eq!(s.rate_limit, None);
        assert_eq!(s.traits, current.traits);
        let e = patched_settings(&current, json!("x")).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("settings"));
    }

    #[test]
    fn events_query_parameters() {
        let q = parse_events_query(Some(
            "userId=u%201&type=track&event=Order+Completed&since=2024-01-01&limit=5",
        ))
        .unwrap();
        assert_eq!(q.user_id.as_deref(), Some("u 1"));
        assert_eq!(q.name.as_deref(), Some("Order Completed"));
        assert_eq!(q.since_ms, Some(1_704_067_200_000));
        assert_eq!(q.limit, 5);
        for (raw, field) in [
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("since=yesterday", "since"),
            ("type=click", "type"),
            ("cursor=zz", "cursor"),
            ("colour=red", "colour"),
            ("userId=x%00y", "userId"),
            ("anonymousId=%00", "anonymousId"),
            ("event=a%00", "event"),
        ] {
            let e = parse_events_query(Some(raw)).unwrap_err();
            assert_eq!(e.body.field.as_deref(), Some(field), "{raw}");
        }
        let at_limit = format!("userId={}", "u".repeat(MAX_ID_BYTES));
        assert!(parse_events_query(Some(&at_limit)).is_ok());
        let over = format!("userId={}", "u".repeat(MAX_ID_BYTES + 1));
        let e = parse_events_query(Some(&over)).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("userId"));
        let over = format!("event={}", "e".repeat(MAX_NAME_BYTES + 1));
        assert_eq!(
            parse_events_query(Some(&over))
                .unwrap_err()
                .body
                .field
                .as_deref(),
            Some("event")
        );
    }
}
