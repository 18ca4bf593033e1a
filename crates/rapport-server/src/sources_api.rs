//! `/api/v1/sources`: the sources events come from, and their settings — the limits on what
//! a holder of their write keys may do (`docs/security.md`).

use crate::error::{ApiError, Code};
use crate::extract::Json;
use crate::openapi::AdminErrors;
use crate::{AppState, now_ms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rapport_api::List;
use rapport_api::sources as wire;
use rapport_store::{IdentityPolicy, RateLimit, Source, SourceSettings, TraitPolicy};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, replace_source, patch_source))
}

/// A source as the API shows it.
pub fn to_wire(s: Source) -> wire::Source {
    wire::Source {
        id: s.id,
        name: s.name,
        created_at_ms: s.created_at_ms,
        settings: settings_to_wire(s.settings),
    }
}

fn settings_to_wire(s: SourceSettings) -> wire::SourceSettings {
    let limit = |r: RateLimit| wire::RateLimit {
        per_second: r.per_second,
        burst: r.burst,
    };
    wire::SourceSettings {
        traits: wire::TraitPolicy {
            allow: s.traits.allow,
            deny: s.traits.deny,
        },
        identity: wire::IdentityPolicy {
            merge: s.identity.merge,
            identifier_types: s.identity.identifier_types,
        },
        rate_limit: s.rate_limit.map(limit),
        ip_rate_limit: s.ip_rate_limit.map(limit),
        retention_days: s.retention_days,
    }
}

fn settings_from_wire(s: wire::SourceSettings) -> SourceSettings {
    let limit = |r: wire::RateLimit| RateLimit {
        per_second: r.per_second,
        burst: r.burst,
    };
    SourceSettings {
        traits: TraitPolicy {
            allow: s.traits.allow,
            deny: s.traits.deny,
        },
        identity: IdentityPolicy {
            merge: s.identity.merge,
            identifier_types: s.identity.identifier_types,
        },
        rate_limit: s.rate_limit.map(limit),
        ip_rate_limit: s.ip_rate_limit.map(limit),
        retention_days: s.retention_days,
    }
}

/// Reads settings sent as JSON, naming the offending field in full
/// (`settings.traits.allow[0]`): `400 invalid_field`.
pub fn parse_settings(value: serde_json::Value) -> Result<SourceSettings, ApiError> {
    // (serde would read an array as the struct's fields in order.)
    if !value.is_object() {
        return Err(
            ApiError::new(Code::InvalidField, "`settings` must be an object")
                .with_field("settings"),
        );
    }
    serde_path_to_error::deserialize::<_, wire::SourceSettings>(value)
        .map(settings_from_wire)
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_path_to_error's path includes an unknown key itself.
            let field = match path.as_str() {
                "." => "settings".to_owned(),
                p => format!("settings.{p}"),
            };
            ApiError::new(Code::InvalidField, format!("invalid settings: {inner}"))
                .with_field(field)
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
    let current =
        serde_json::to_value(settings_to_wire(current.clone())).expect("settings serialise");
    let mut merged = match current {
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

/// Every source.
#[utoipa::path(get, path = "/api/v1/sources", tag = "sources",
    responses((status = 200, body = List<wire::Source>), AdminErrors))]
pub async fn list_sources(
    State(state): State<AppState>,
) -> Result<axum::Json<List<wire::Source>>, ApiError> {
    let access = state.access.clone();
    let data = crate::blocking(move || Ok(access.sources()?)).await?;
    Ok(axum::Json(List {
        data: data.into_iter().map(to_wire).collect(),
    }))
}

/// Creates a source and its first write key, whose secret is shown in this answer only.
#[utoipa::path(post, path = "/api/v1/sources", tag = "sources", request_body = wire::NewSource,
    responses((status = 201, body = wire::CreatedSource),
        (status = 409, description = "a source with that name exists", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn create_source(
    State(state): State<AppState>,
    audit: crate::audit::Audit,
    Json(new): Json<serde_json::Value>,
) -> Result<(StatusCode, axum::Json<wire::CreatedSource>), ApiError> {
    // Settings are read on their own, so that their errors name `settings.…` as
    // `invalid_field`, as every settings error does.
    let mut new = new;
    let settings = match new.as_object_mut().and_then(|o| o.remove("settings")) {
        Some(serde_json::Value::Null) | None => SourceSettings::default(),
        Some(v) => parse_settings(v)?,
    };
    let new: wire::NewSource = crate::extract::parse_body(new.to_string().as_bytes())?;
    let access = state.access.clone();
    let (source, write_key) =
        crate::blocking(move || Ok(access.create_source_with(&new.name, settings, now_ms())?))
            .await?;
    // The answer nests the source beside its key, so the audit layer cannot find its id.
    audit.resource_id(source.id.clone());
    // Nobody holds the write key before this answer, so no event of the source can precede
    // the policy in the log.
    if !source.settings.identity.is_unrestricted() {
        log_identity_policy(&state, &source).await?;
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(wire::CreatedSource {
            source: to_wire(source),
            write_key: crate::keys_api::issued_to_wire(write_key),
        }),
    ))
}

/// A source, by id or name, with its settings.
#[utoipa::path(get, path = "/api/v1/sources/{source}", tag = "sources",
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::Source), AdminErrors))]
pub async fn get_source(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Source>, ApiError> {
    let access = state.access.clone();
    let source = crate::blocking(move || Ok(access.source_by_name_or_id(&reference)?)).await?;
    Ok(axum::Json(to_wire(source)))
}

/// Replaces a source's settings whole (parts left out take their defaults); `name`, when
/// given, renames it.
#[utoipa::path(put, path = "/api/v1/sources/{source}", tag = "sources", request_body = wire::SourceUpdate,
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::Source),
        (status = 409, description = "another source has that name", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn replace_source(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Json(update): Json<wire::SourceUpdate>,
) -> Result<axum::Json<wire::Source>, ApiError> {
    update_source(state, reference, update, false).await
}

/// Changes parts of a source's settings: each part given (`traits`, `identity`,
/// `rate_limit`, `ip_rate_limit`) replaces that part; `null` resets it.
#[utoipa::path(patch, path = "/api/v1/sources/{source}", tag = "sources", request_body = wire::SourceUpdate,
    params(("source" = String, Path, description = "The source's id or name")),
    responses((status = 200, body = wire::Source),
        (status = 409, description = "another source has that name", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn patch_source(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Json(update): Json<wire::SourceUpdate>,
) -> Result<axum::Json<wire::Source>, ApiError> {
    update_source(state, reference, update, true).await
}

async fn update_source(
    state: AppState,
    reference: String,
    update: wire::SourceUpdate,
    patch: bool,
) -> Result<axum::Json<wire::Source>, ApiError> {
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
    let name = update.name;
    let (_, source) =
        crate::blocking(move || Ok(access.update_source(&id, name.as_deref(), settings)?)).await?;
    Ok(axum::Json(to_wire(source)))
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
    fn wire_settings_mirror_stored_settings() {
        let stored = parse_settings(serde_json::json!({
            "traits": {"allow": ["plan"], "deny": ["is_admin"]},
            "identity": {"merge": false, "identifier_types": ["email"]},
            "rate_limit": {"per_second": 5, "burst": 10},
            "ip_rate_limit": {"per_second": 1, "burst": 2}
        }))
        .unwrap();
        // The store's own serialisation and the wire's agree field for field.
        assert_eq!(
            serde_json::to_value(&stored).unwrap(),
            serde_json::to_value(settings_to_wire(stored.clone())).unwrap()
        );
        assert_eq!(settings_from_wire(settings_to_wire(stored.clone())), stored);
    }
}
