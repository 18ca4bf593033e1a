//! `/api/v1/privacy/personal-data`: which trait names, property names and identifier
//! types are personal data, masked in every answer to a `read_masked` key (`scopes.rs`).
//! Changing it needs `configure` and `read`, so that a masked key cannot unmask.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Json;
use crate::openapi::AdminErrors;
use axum::extract::State;
use rapport_api::keys::PersonalData as Wire;
use rapport_engine::personal_data::{self, PersonalData};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_personal_data, put_personal_data))
}

fn to_wire(p: PersonalData) -> Wire {
    Wire {
        traits: p.traits,
        properties: p.properties,
        identifier_types: p.identifier_types,
    }
}

/// The names that are personal data (the defaults until one is saved).
#[utoipa::path(get, path = "/api/v1/privacy/personal-data", tag = "keys",
    responses((status = 200, body = Wire), AdminErrors))]
pub async fn get_personal_data(
    State(state): State<AppState>,
) -> Result<axum::Json<Wire>, ApiError> {
    let store = state.store.clone();
    let config = crate::read(&state.store, move || {
        Ok(personal_data::load(store.as_ref())?)
    })
    .await?;
    Ok(axum::Json(to_wire(config)))
}

/// Replaces the names that are personal data; in force for the next request.
#[utoipa::path(put, path = "/api/v1/privacy/personal-data", tag = "keys", request_body = Wire,
    responses((status = 200, body = Wire), AdminErrors))]
pub async fn put_personal_data(
    State(state): State<AppState>,
    Json(body): Json<Wire>,
) -> Result<axum::Json<Wire>, ApiError> {
    let config = PersonalData {
        traits: body.traits,
        properties: body.properties,
        identifier_types: body.identifier_types,
    };
    let store = state.store.clone();
    let saved = crate::blocking(move || {
        personal_data::save(store.as_ref(), &config)?;
        Ok(config)
    })
    .await?;
    Ok(axum::Json(to_wire(saved)))
}
