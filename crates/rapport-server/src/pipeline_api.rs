//! `GET /api/v1/dead-letters`: the log entries a pipeline stage could not read, with the
//! entry itself, so that an operator sees what the pipeline skipped and why.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::openapi::AdminErrors;
use axum::Json;
use axum::extract::State;
use rapport_api::Code;
use rapport_api::Page;
use rapport_api::pipeline::{DeadLetter, DeadLettersQuery};
use rapport_engine::dead_letters::{self, CONSUMERS};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_dead_letters))
}

/// The position after which a page starts: a consumer (index into [`CONSUMERS`]) and the
/// last offset listed for it.
fn parse_cursor(v: &str) -> Option<(usize, u64)> {
    let (c, o) = v.split_once('.')?;
    let c: usize = c.parse().ok().filter(|c| *c < CONSUMERS.len())?;
    Some((c, o.parse().ok()?))
}

/// The log entries the pipeline's stages could not read, by stage, then offset.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "pipeline", params(DeadLettersQuery),
    security(("admin_key" = [])),
    responses((status = 200, description = "Dead letters by stage, then offset", body = Page<DeadLetter>), AdminErrors))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Query(q): Query<DeadLettersQuery>,
) -> Result<Json<Page<DeadLetter>>, ApiError> {
    let limit = q.limit.unwrap_or_default().get();
    let only = match q.consumer.as_deref() {
        None => None,
        Some(v) => Some(CONSUMERS.iter().position(|c| *c == v).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParameter,
                format!("`consumer` must be one of {}", CONSUMERS.join(", ")),
            )
            .with_field("consumer")
        })?),
    };
    let start = match q.cursor.as_deref() {
        None => (0usize, None),
        Some(v) => {
            let (c, o) = parse_cursor(v).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidParameter,
                    "`cursor` is not a cursor this API returned",
                )
                .with_field("cursor")
            })?;
            (c, Some(o))
        }
    };
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
                data.push(DeadLetter {
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
        Ok(Json(Page { data, next_cursor }))
    })
    .await
}
