//! `GET /api/v1/dead-letters`: the log entries a pipeline stage could not read, with the
//! entry itself, so that an operator sees what the pipeline skipped and why.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::legacy_require_admin as require_admin;
use crate::request::{limit_param, unknown_param};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use rapport_api::Code;
use rapport_engine::dead_letters::{self, CONSUMERS};
use serde::Serialize;

#[derive(Serialize)]
pub struct DeadLetterItem {
    pub offset: u64,
    pub consumer: String,
    pub error: String,
    /// When the consumer met it (RFC 3339).
    pub at: String,
    /// The log entry as stored (lossy UTF-8), or `null` when it is no longer in the log.
    pub entry: Option<String>,
}

#[derive(Serialize)]
pub struct DeadLetterPage {
    pub data: Vec<DeadLetterItem>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// The position after which a page starts: a consumer (index into [`CONSUMERS`]) and the
/// last offset listed for it.
fn parse_cursor(v: &str) -> Option<(usize, u64)> {
    let (c, o) = v.split_once('.')?;
    let c: usize = c.parse().ok().filter(|c| *c < CONSUMERS.len())?;
    Some((c, o.parse().ok()?))
}

/// `GET /api/v1/dead-letters?consumer=&limit=&cursor=`: by consumer, then offset.
pub async fn list_dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeadLetterPage>, ApiError> {
    require_admin(&state, &headers).await?;
    let (mut limit, mut only, mut start) = (100usize, None, (0usize, None));
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => limit = limit_param(&v)?,
            "consumer" => {
                let i = CONSUMERS.iter().position(|c| *c == v).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidParameter,
                        format!("`consumer` must be one of {}", CONSUMERS.join(", ")),
                    )
                    .with_field("consumer")
                })?;
                only = Some(i);
            }
            "cursor" => {
                let (c, o) = parse_cursor(&v).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidParameter,
                        "`cursor` is not a cursor this API returned",
                    )
                    .with_field("cursor")
                })?;
                start = (c, Some(o));
            }
            _ => return Err(unknown_param(&k)),
        }
    }
    let store = state.store.clone();
    crate::blocking(move || {
        let mut data = Vec::new();
        let mut next_cursor = None;
        for (i, consumer) in CONSUMERS.iter().enumerate() {
            if only.is_some_and(|o| o != i) || i < start.0 {
                continue;
            }
            let after = if i == start.0 { start.1 } else { None };
            let want = limit - data.len();
            let letters = dead_letters::list(store.as_ref(), consumer, after, want + 1)?;
            let more = letters.len() > want;
            for letter in letters.into_iter().take(want) {
                let entry = store
                    .get(letter.offset)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                let at = chrono::DateTime::from_timestamp_millis(letter.at_ms)
                    .map(|t| rapport_core::event::format_timestamp(&t))
                    .unwrap_or_default();
                data.push(DeadLetterItem {
                    offset: letter.offset,
                    consumer: letter.consumer,
                    error: letter.error,
                    at,
                    entry,
                });
            }
            if more {
                let last = data.last().map_or(0, |d| d.offset);
                next_cursor = Some(format!("{i}.{last}"));
                break;
            }
            if data.len() == limit {
                // The page is full exactly at this consumer's end: go on from the next.
                if let Some(n) = (i + 1..CONSUMERS.len()).find(|n| only.is_none_or(|o| o == *n)) {
                    next_cursor = Some(format!("{n}.0"));
                }
                break;
            }
        }
        Ok(Json(DeadLetterPage { data, next_cursor }))
    })
    .await
}

/// This resource's routes (not yet described in the OpenAPI document).
pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::AppState> {
    use axum::routing::get;
    utoipa_axum::router::OpenApiRouter::new().route("/api/v1/dead-letters", get(list_dead_letters))
}
