//! `/api/v1/keys`: write keys (send events for one source) and admin keys (this API).
//! Secrets are shown once, when a key is created; the API never shows them again, nor
//! their hashes.

use crate::error::{ApiError, Code};
use crate::extract::AdminKey;
use crate::extract::Json;
use crate::openapi::AdminErrors;
use crate::{AppState, now_ms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rapport_api::List;
use rapport_api::keys as wire;
use rapport_engine::access::{IssuedKey, KeyInfo, Scope, Scopes};
use rapport_store::KeyKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

fn kind_to_wire(k: KeyKind) -> wire::KeyKind {
    match k {
        KeyKind::Write => wire::KeyKind::Write,
        KeyKind::Admin => wire::KeyKind::Admin,
    }
}

/// A key as the API shows it.
pub fn to_wire(k: KeyInfo) -> wire::Key {
    wire::Key {
        id: k.id,
        kind: kind_to_wire(k.kind),
        source_id: k.source_id,
        name: k.name,
        secret_prefix: k.secret_prefix,
        created_at_ms: k.created_at_ms,
        revoked_at_ms: k.revoked_at_ms,
        scopes: k.scopes.map(|s| s.into_iter().map(scope_to_wire).collect()),
    }
}

pub fn scope_to_wire(s: Scope) -> wire::Scope {
    match s {
        Scope::Read => wire::Scope::Read,
        Scope::ReadMasked => wire::Scope::ReadMasked,
        Scope::Configure => wire::Scope::Configure,
        Scope::Delete => wire::Scope::Delete,
    }
}

pub fn scope_from_wire(s: wire::Scope) -> Scope {
    match s {
        wire::Scope::Read => Scope::Read,
        wire::Scope::ReadMasked => Scope::ReadMasked,
        wire::Scope::Configure => Scope::Configure,
        wire::Scope::Delete => Scope::Delete,
    }
}

/// A refusal to give (or take away) a scope the acting key does not hold itself.
fn escalation(scope: Scope) -> ApiError {
    ApiError::new(
        Code::MissingScope,
        format!(
            "this key does not hold the `{}` scope, so it cannot give it, nor revoke a key that holds it",
            scope.as_str()
        ),
    )
    .with_field(scope.as_str())
}

/// A key as created, with its secret.
pub fn issued_to_wire(k: IssuedKey) -> wire::IssuedKey {
    wire::IssuedKey {
        key: to_wire(k.key),
        secret: k.secret,
    }
}

/// Every key, revoked ones included.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = List<wire::Key>), AdminErrors))]
pub async fn list_keys(
    State(state): State<AppState>,
) -> Result<axum::Json<List<wire::Key>>, ApiError> {
    let access = state.access.clone();
    let keys = crate::blocking(move || Ok(access.keys()?)).await?;
    Ok(axum::Json(List {
        data: keys.into_iter().map(to_wire).collect(),
    }))
}

/// Creates a key; the answer carries its secret, shown this once. An admin key gets the
/// `scopes` asked for (default: those of the key creating it), never one its creator does
/// not hold (`403 missing_scope`).
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = wire::NewKey,
    responses((status = 201, body = wire::IssuedKey), AdminErrors))]
pub async fn create_key(
    State(state): State<AppState>,
    admin: AdminKey,
    Json(new): Json<wire::NewKey>,
) -> Result<(StatusCode, axum::Json<wire::IssuedKey>), ApiError> {
    let kind = match new.kind {
        wire::KeyKind::Write => KeyKind::Write,
        wire::KeyKind::Admin => KeyKind::Admin,
    };
    if kind == KeyKind::Admin && new.source.is_some() {
        return Err(ApiError::new(
            Code::InvalidField,
            "an admin key is for this API, not for one source: leave `source` out",
        )
        .with_field("source"));
    }
    // An admin key gets the scopes asked for, or else those of its creator: never more.
    let scopes: Option<Scopes> = match (kind, new.scopes) {
        (KeyKind::Write, None) => None,
        (KeyKind::Write, Some(_)) => {
            return Err(ApiError::new(
                Code::InvalidField,
                "scopes are for admin keys; a write key only sends events",
            )
            .with_field("scopes"));
        }
        (KeyKind::Admin, None) => Some(admin.scopes.clone()),
        (KeyKind::Admin, Some(asked)) => {
            if asked.is_empty() {
                return Err(ApiError::new(
                    Code::InvalidField,
                    "an admin key needs at least one scope",
                )
                .with_field("scopes"));
            }
            Some(asked.into_iter().map(scope_from_wire).collect())
        }
    };
    if let Some(beyond) = scopes.iter().flatten().find(|s| !admin.scopes.contains(s)) {
        return Err(escalation(*beyond));
    }
    let name = new
        .name
        .unwrap_or_else(|| format!("{kind:?} key").to_lowercase());
    let access = state.access.clone();
    let key = crate::blocking(move || {
        Ok(access.create_key_with_scopes(
            kind,
            new.source.as_deref(),
            &name,
            scopes.as_ref(),
            now_ms(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(issued_to_wire(key))))
}

/// Revokes a key at once (within the auth cache's lifetime on other servers).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses((status = 200, body = wire::Key), AdminErrors))]
pub async fn revoke_key(
    State(state): State<AppState>,
    admin: AdminKey,
    audit: crate::audit::Audit,
    Path(id): Path<String>,
) -> Result<axum::Json<wire::Key>, ApiError> {
    let access = state.access.clone();
    let (before, key) = crate::blocking(move || {
        let before = access.keys()?.into_iter().find(|k| k.id == id);
        // Revoking a key is taking its scopes away: only a key holding them all may.
        if let Some(beyond) = before
            .iter()
            .filter_map(|k| k.scopes.as_ref())
            .flatten()
            .find(|s| !admin.scopes.contains(s))
        {
            return Err(escalation(*beyond));
        }
        Ok((before, access.revoke_key(&id, now_ms())?))
    })
    .await?;
    if let Some(before) = before {
        audit.before(&to_wire(before));
    }
    Ok(axum::Json(to_wire(key)))
}
