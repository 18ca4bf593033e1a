//! `GET /api/v1/overview` (the pipeline at a glance: offsets and lags, storage, events per
//! minute and source, refusals, dead letters) and `GET /api/v1/rejections` (the messages
//! this server's tracking API refused, newest first), for the dashboard and the CLI.
//!
//! The events per minute are the processor's durable counts (`rapport_engine::stats`),
//! one range read of at most `minutes` × sources small keys; the refusals are this
//! server's, in memory since it started (`crate::rejections`).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{AdminKey, Query};
use crate::openapi::AdminErrors;
use axum::Json;
use axum::extract::State;
use rapport_api::overview::{
    DEFAULT_MINUTES, EventsPerMinute, MAX_MINUTES, Overview, OverviewQuery, Rejection,
    RejectionSource, RejectionsQuery, SourceMinutes,
};
use rapport_api::{Code, Page};
use rapport_core::event::format_timestamp;
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(list_rejections))
}

/// Dead letters counted per stage at most.
const MAX_DEAD_LETTERS_COUNTED: usize = 1_000;

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| format_timestamp(&t))
        .unwrap_or_default()
}

/// The pipeline at a glance: how far each stage is, the store's size, and the events each
/// source sent per minute over the last `minutes` minutes (the processor's durable counts,
/// by `receivedAt`), with this server's refusals per minute beside them.
#[utoipa::path(get, path = "/api/v1/overview", tag = "pipeline", params(OverviewQuery),
    security(("admin_key" = [])),
    responses((status = 200, description = "The pipeline at a glance", body = Overview), AdminErrors))]
pub async fn overview(
    State(state): State<AppState>,
    Query(q): Query<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let minutes = q.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::new(
            Code::InvalidParameter,
            format!("`minutes` must be a whole number from 1 to {MAX_MINUTES}"),
        )
        .with_field("minutes"));
    }
    let now_ms = crate::now_ms();
    let rejected_per_minute = state.rejections.per_minute(now_ms, minutes as usize);
    let store = state.store.clone();
    // Off the async threads even on the embedded store: several reads and a walk of the
    // data directory (its allocated size) are more than a brief read.
    crate::blocking(move || {
        let (log, indexed, processed) = crate::pipeline_offsets(store.as_ref())?;
        let counts = rapport_engine::stats::per_minute(store.as_ref(), now_ms, minutes)?;
        let names: BTreeMap<String, String> = store
            .sources()?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        let first = rapport_engine::stats::minute_of(now_ms) - i64::from(minutes) + 1;
        let mut series: BTreeMap<String, Vec<u64>> = names
            .keys()
            .map(|id| (id.clone(), vec![0; minutes as usize]))
            .collect();
        for c in counts {
            let row = series
                .entry(c.source_id)
                .or_insert_with(|| vec![0; minutes as usize]);
            if let Some(slot) = usize::try_from(c.minute - first)
                .ok()
                .and_then(|i| row.get_mut(i))
            {
                *slot += c.count;
            }
        }
        let sources = series
            .into_iter()
            .map(|(id, counts)| SourceMinutes {
                source_name: names.get(&id).cloned(),
                total: counts.iter().sum(),
                source_id: id,
                counts,
            })
            .collect();
        let mut dead_letters = 0;
        for consumer in rapport_engine::dead_letters::CONSUMERS {
            dead_letters += rapport_engine::dead_letters::list(
                store.as_ref(),
                consumer,
                None,
                MAX_DEAD_LETTERS_COUNTED,
            )?
            .len() as u64;
        }
        Ok(Json(Overview {
            at: rfc3339_ms(now_ms),
            log_offset: log,
            indexed_offset: indexed,
            processed_offset: processed,
            indexer_lag: log.saturating_sub(indexed),
            processor_lag: log.saturating_sub(processed),
            storage_bytes: store.disk_bytes(),
            events_per_minute: EventsPerMinute {
                minutes,
                from: rfc3339_ms(first * 60_000),
                sources,
            },
            rejected_per_minute,
            dead_letters,
        }))
    })
    .await
}

/// The messages this server's tracking API refused, newest first: why (code, field, the
/// message the client got), which message (`type`, `event`, `messageId` when readable),
/// the source and the path; never the payload. Per server and since it started: the last
/// 1,000 refusals, none older than an hour.
#[utoipa::path(get, path = "/api/v1/rejections", tag = "pipeline", params(RejectionsQuery),
    security(("admin_key" = [])),
    responses((status = 200, description = "Refusals, newest first", body = Page<Rejection>), AdminErrors))]
pub async fn list_rejections(
    State(state): State<AppState>,
    admin: AdminKey,
    Query(q): Query<RejectionsQuery>,
) -> Result<Json<Page<Rejection>>, ApiError> {
    let limit = q.limit.unwrap_or_default().get();
    let before = match q.cursor.as_deref() {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::new(
                Code::InvalidParameter,
                "`cursor` is not a cursor this API returned",
            )
            .with_field("cursor")
        })?),
    };
    let (refusals, next) =
        state
            .rejections
            .list(q.source.as_deref(), before, limit, crate::now_ms());
    // A message id may be a person's (it is the client's to choose): not for masked keys.
    let masked = crate::scopes::is_masked(&admin.scopes);
    let store = state.store.clone();
    let names: BTreeMap<String, String> = crate::read(&state.store, move || {
        Ok(store
            .sources()?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect())
    })
    .await?;
    let data = refusals
        .into_iter()
        .map(|r| Rejection {
            at: rfc3339_ms(r.at_ms),
            source: r.source_id.map(|id| RejectionSource {
                name: names.get(&id).cloned(),
                id,
            }),
            code: r.code,
            field: r.field,
            message: r.message,
            kind: r.summary.kind,
            event: r.summary.event,
            message_id: r.summary.message_id.filter(|_| !masked),
            path: r.path.to_owned(),
        })
        .collect();
    Ok(Json(Page {
        data,
        next_cursor: next.map(|n| n.to_string()),
    }))
}
