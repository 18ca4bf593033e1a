//! `GET /api/v1/events`: stored events read back, newest first, filtered and paged by
//! cursor — what was acknowledged, as it was stored.

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::Query;
use crate::openapi::AdminErrors;
use crate::request::check_value;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rapport_api::events::{EventPage, EventsQuery};
use rapport_api::page::{DEFAULT_LIMIT, MAX_LIMIT};
use rapport_core::event::{MAX_ID_BYTES, MAX_NAME_BYTES, parse_timestamp};
use rapport_store::{Cursor, EventQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::new(Code::InvalidParameter, message).with_field(field)
}

/// The store's query for the API's parameters: `400 invalid_parameter` naming the one at
/// fault.
pub fn store_query(p: EventsQuery) -> Result<EventQuery, ApiError> {
    let time = |field: &str, v: &str| {
        parse_timestamp(v)
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| bad(field, format!("`{field}` must be an ISO-8601 timestamp")))
    };
    for (field, value, max) in [
        ("userId", &p.user_id, MAX_ID_BYTES),
        ("anonymousId", &p.anonymous_id, MAX_ID_BYTES),
        ("event", &p.event, MAX_NAME_BYTES),
        ("source", &p.source, MAX_ID_BYTES),
    ] {
        if let Some(v) = value {
            check_value(field, v, max)?;
        }
    }
    if let Some(kind) = &p.kind
        && rapport_core::event::EventType::parse(kind).is_none()
    {
        return Err(bad(
            "type",
            "`type` must be one of track, identify, page, screen, group, alias".into(),
        ));
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(
            "limit",
            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(EventQuery {
        since_ms: p.since.as_deref().map(|v| time("since", v)).transpose()?,
        until_ms: p.until.as_deref().map(|v| time("until", v)).transpose()?,
        cursor: p
            .cursor
            .as_deref()
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    bad(
                        "cursor",
                        "`cursor` is not a cursor this API returned".into(),
                    )
                })
            })
            .transpose()?,
        user_id: p.user_id,
        anonymous_id: p.anonymous_id,
        kind: p.kind,
        name: p.event,
        source_id: p.source,
        limit: limit as usize,
    })
}

/// Stored events, newest first, filtered and paged by cursor.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventPage), AdminErrors))]
pub async fn list_events(
    State(state): State<AppState>,
    Query(params): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let query = store_query(params)?;
    let store = state.store.clone();
    let page = crate::blocking(move || Ok(store.query(&query)?)).await?;
    // Stored events are already JSON: splice them in rather than re-encoding.
    let mut body =
        Vec::with_capacity(page.events.iter().map(|e| e.1.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"data\":[");
    // An erased event (`{}`, see docs/privacy.md) is not listed, should an index entry
    // outlive its erasure.
    let listed = page
        .events
        .iter()
        .filter(|(_, p)| !rapport_engine::dead_letters::is_erased(p));
    for (i, (_, payload)) in listed.enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_query;

    fn parse_events_query(raw: Option<&str>) -> Result<EventQuery, ApiError> {
        store_query(parse_query(raw.unwrap_or(""))?)
    }

    #[test]
    fn events_query_parameters() {
        let q = parse_events_query(Some(
            "userId=u%201&type=track&event=Order+Completed&since=2024-01-01&limit=5&source=src_1",
        ))
        .unwrap();
        assert_eq!(q.user_id.as_deref(), Some("u 1"));
        assert_eq!(q.source_id.as_deref(), Some("src_1"));
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
            ("source=%00", "source"),
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
