//! The profile API: one unified profile per person, its identity explanation, its event
//! timeline, and search by trait. Profiles are named by id (`p_…`) or by any identifier
//! (`user_id:42`, `email:ann@example.com`).

use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::AdminErrors;
use crate::request::check_value;
use crate::{AppState, blocking};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rapport_api::Code;
use rapport_core::event::{MAX_ID_BYTES, MAX_NAME_BYTES, format_timestamp};
use rapport_engine::profiles::{ProfileRecord, Profiles, TimelineItem, TimelinePosition};
use rapport_engine::value::ModelScores;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use rapport_api::profiles::{
    Account as AccountView, IdentifierView, IdentityExplanation as IdentityView,
    Profile as ProfileView, ProfileSearch, SegmentMembership, Timeline, TimelineQuery,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_profiles))
        .routes(routes!(get_profile))
        .routes(routes!(get_identity))
        .routes(routes!(get_profile_events))
}

pub(crate) const REFERENCE: &str =
    "A profile id (`p_…`) or an identifier as `type:value` (`user_id:42`, `email:ann@example.com`)";

fn identifiers(record: &ProfileRecord) -> Vec<IdentifierView> {
    record
        .identifiers
        .iter()
        .map(|r| IdentifierView {
            kind: r.identifier.kind.as_str().to_owned(),
            value: r.identifier.value.clone(),
            first_seen: format_timestamp(&r.first_seen),
            last_seen: format_timestamp(&r.last_seen),
            added_by: r.added_by.clone(),
        })
        .collect()
}

fn view(profiles: &Profiles<'_>, record: &ProfileRecord) -> Result<ProfileView, ApiError> {
    let mut accounts = Vec::new();
    for id in &record.accounts {
        let traits = profiles
            .account(id)?
            .map(|a| a.traits.values())
            .unwrap_or_default();
        accounts.push(AccountView {
            id: id.clone(),
            traits,
        });
    }
    let audience = crate::audiences_api::profile_audience(profiles.store, record.id.as_str())?;
    Ok(ProfileView {
        computed: audience.computed,
        segments: audience.segments,
        id: record.id.as_str().to_owned(),
        identifiers: identifiers(record),
        traits: record.traits.values(),
        accounts,
        first_seen: record.traits.first_seen.as_ref().map(format_timestamp),
        last_seen: record.traits.last_seen.as_ref().map(format_timestamp),
        merged_from: record
            .merged_from
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        scores: ModelScores {
            store: profiles.store,
        }
        .scores(record.id.as_str())?
        .unwrap_or_default(),
        consent: crate::consent_api::current(&record.consent),
    })
}

/// Refuses a reference no profile can have, before the store is asked: a NUL anywhere, or an
/// identifier value longer than ingest accepts (`MAX_ID_BYTES`). 400 naming `reference`.
pub(crate) fn check_reference(reference: &str) -> Result<(), ApiError> {
    check_value("reference", reference, MAX_ID_BYTES + MAX_NAME_BYTES)?;
    let value = reference.split_once(':').map_or(reference, |(_, v)| v);
    if value.trim().len() > MAX_ID_BYTES {
        return Err(ApiError::new(
            Code::InvalidParameter,
            format!(
                "`reference` names a value of {} bytes; identifiers are at most {MAX_ID_BYTES}",
                value.trim().len()
            ),
        )
        .with_field("reference"));
    }
    // A reference that names nothing readable is a fault of the path parameter, named as
    // such rather than as a body field.
    match rapport_engine::profiles::parse_reference(reference) {
        Err(rapport_engine::EngineError::Invalid { message, .. }) => {
            Err(ApiError::new(Code::InvalidParameter, message).with_field("reference"))
        }
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}

/// True when a string anywhere in `v` holds a NUL, which no store indexes.
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Resolves a profile reference (see [`crate::read`]) and hands the record to `f`.
pub(crate) async fn with_profile<T: Send + 'static>(
    state: &AppState,
    reference: String,
    f: impl FnOnce(&Profiles<'_>, ProfileRecord) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    check_reference(&reference)?;
    let store = state.store.clone();
    crate::read(&state.store, move || {
        let profiles = Profiles {
            store: store.as_ref(),
        };
        let record = profiles.resolve(&reference)?;
        f(&profiles, record)
    })
    .await
}

/// A profile, by id or by any of its identifiers, following merges.
#[utoipa::path(get, path = "/api/v1/profiles/{reference}", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE)),
    responses((status = 200, body = ProfileView), AdminErrors))]
pub async fn get_profile(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<ProfileView>, ApiError> {
    with_profile(&state, reference, |profiles, record| {
        view(profiles, &record)
    })
    .await
    .map(Json)
}

/// Why this profile holds what it holds: its identity decisions, oldest first.
#[utoipa::path(get, path = "/api/v1/profiles/{reference}/identity", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE)),
    responses((status = 200, body = IdentityView), AdminErrors))]
pub async fn get_identity(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<IdentityView>, ApiError> {
    with_profile(&state, reference, |profiles, record| {
        Ok(IdentityView {
            id: record.id.as_str().to_owned(),
            identifiers: identifiers(&record),
            history: profiles
                .explanation(&record)?
                .iter()
                .map(|e| serde_json::to_value(e).expect("an identity log entry serialises"))
                .collect(),
        })
    })
    .await
    .map(Json)
}

fn encode_position(p: TimelinePosition) -> String {
    format!("{:x}.{:x}.{:x}", p.0 as u64, p.1, p.2)
}

fn decode_position(s: &str) -> Option<TimelinePosition> {
    let mut parts = s.split('.');
    let t = u64::from_str_radix(parts.next()?, 16).ok()? as i64;
    let o = u64::from_str_radix(parts.next()?, 16).ok()?;
    let q = match parts.next() {
        Some(q) => u64::from_str_radix(q, 16).ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((t, o, q))
}

/// A segment entry or exit as the timeline shows it, beside the events.
fn audience_item(json: &[u8]) -> Option<Vec<u8>> {
    let change: rapport_engine::audiences::AudienceChange = serde_json::from_slice(json).ok()?;
    let kind = match change.change {
        rapport_engine::audiences::ChangeKind::Entered => "segment_entered",
        rapport_engine::audiences::ChangeKind::Exited => "segment_exited",
    };
    serde_json::to_vec(&serde_json::json!({
        "type": kind,
        "segment": change.segment,
        "timestamp": format_timestamp(&change.at),
        "cause": change.cause,
        "seq": change.seq,
    }))
    .ok()
}

/// A journey decision as the timeline shows it: `type` `journey`, the journey, version and
/// instance, the decision's fields and its explanation.
fn journey_item(json: &[u8]) -> Option<Vec<u8>> {
    let mut item: serde_json::Map<String, Value> = serde_json::from_slice(json).ok()?;
    item.insert("type".into(), Value::from("journey"));
    serde_json::to_vec(&item).ok()
}

/// The profile's timeline, newest first: its events and segment entries and exits,
/// those of every profile merged into it included.
#[utoipa::path(get, path = "/api/v1/profiles/{reference}/events", tag = "profiles",
    params(("reference" = String, Path, description = REFERENCE), TimelineQuery),
    responses((status = 200, body = Timeline), AdminErrors))]
pub async fn get_profile_events(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Response, ApiError> {
    check_reference(&reference)?;
    let limit = q.limit.unwrap_or_default().get();
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(v) => Some(decode_position(v).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParameter,
                "`cursor` is not a cursor this API returned",
            )
            .with_field("cursor")
        })?),
    };
    let store = state.store.clone();
    let (payloads, next) = blocking(move || {
        let profiles = Profiles {
            store: store.as_ref(),
        };
        let record = profiles.resolve(&reference)?;
        let (items, next) = profiles.timeline(&record, cursor, limit)?;
        let mut payloads = Vec::with_capacity(items.len());
        for item in items {
            match item {
                // Erased events (range deletions, retention) leave their place, not `{}`.
                TimelineItem::Event(o) => payloads.extend(
                    store
                        .get(o)?
                        .filter(|p| !rapport_engine::dead_letters::is_erased(p)),
                ),
                TimelineItem::Audience(json) => payloads.extend(audience_item(&json)),
                TimelineItem::Journey(json) => payloads.extend(journey_item(&json)),
            }
        }
        Ok((payloads, next))
    })
    .await?;
    let mut body = b"{\"data\":[".to_vec();
    for (i, p) in payloads.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(p);
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    body.extend_from_slice(
        serde_json::to_string(&next.map(encode_position))
            .expect("cursor serialises")
            .as_bytes(),
    );
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Profiles whose trait equals the value, by profile id, paged by cursor.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", params(ProfileSearch),
    responses((status = 200, body = rapport_api::Page<ProfileView>), AdminErrors))]
pub async fn search_profiles(
    State(state): State<AppState>,
    Query(q): Query<ProfileSearch>,
) -> Result<Json<rapport_api::Page<ProfileView>>, ApiError> {
    let limit = q.limit.unwrap_or_default().get();
    // The cursor is the id of the last profile of the previous page.
    let cursor = match q.cursor {
        None => None,
        Some(c) if c.starts_with("p_") && c.len() <= MAX_ID_BYTES && !c.contains('\0') => Some(c),
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidParameter,
                "`cursor` is not a cursor this API returned: pass the `next_cursor` of the previous page",
            )
            .with_field("cursor"));
        }
    };
    let name = q.trait_name.ok_or_else(|| {
        ApiError::new(
            Code::InvalidParameter,
            "`trait` is required: the trait to search by",
        )
        .with_field("trait")
    })?;
    check_value("trait", &name, MAX_NAME_BYTES)?;
    let value = q.value.ok_or_else(|| {
        ApiError::new(
            Code::InvalidParameter,
            "`value` is required: the trait value to match",
        )
        .with_field("value")
    })?;
    let value = serde_json::from_str::<Value>(&value).unwrap_or(Value::String(value));
    if holds_nul(&value) {
        return Err(ApiError::new(
            Code::InvalidParameter,
            "`value` contains a NUL character (\\u0000)",
        )
        .with_field("value"));
    }
    let store = state.store.clone();
    blocking(move || {
        let profiles = Profiles {
            store: store.as_ref(),
        };
        let (found, next_cursor) = profiles.search(&name, &value, cursor.as_deref(), limit)?;
        let data = found
            .iter()
            .map(|r| view(&profiles, r))
            .collect::<Result<_, _>>()?;
        Ok(rapport_api::Page { data, next_cursor })
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_no_profile_can_have_are_refused() {
        assert!(check_reference("user_id:42").is_ok());
        assert!(check_reference(&format!("user_id:{}", "u".repeat(MAX_ID_BYTES))).is_ok());
        for bad in [
            "user_id:x\0y".to_owned(),
            format!("user_id:{}", "u".repeat(MAX_ID_BYTES + 1)),
            format!("email:{}", "e".repeat(5_000)),
        ] {
            let e = check_reference(&bad).unwrap_err();
            assert_eq!(e.body.code, "invalid_parameter");
            assert_eq!(e.body.field.as_deref(), Some("reference"));
        }
        assert!(holds_nul(&serde_json::json!({"a": ["x\u{0}"]})));
        assert!(!holds_nul(&serde_json::json!({"a": ["x"]})));
    }
}
