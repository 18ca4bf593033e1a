//! `/api/v1/destinations`: define where Rapport delivers (`docs/destinations.md`), pause
//! and resume delivery, send a test message, and look after the dead-letter queue.

use crate::error::{ApiError, Code};
use crate::extract::{Json, Query};
use crate::openapi::AdminErrors;
use crate::{AppState, now_ms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rapport_api::destinations as wire;
use rapport_api::page::{DEFAULT_LIMIT, MAX_LIMIT};
use rapport_api::{List, Page};
use rapport_destinations::overview::{HOUR_MS, HourStats, hour_of};
use rapport_engine::destinations::{self, DestinationRecord, Feed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_destinations, create_destination))
        .routes(routes!(
            get_destination,
            replace_destination,
            delete_destination
        ))
        .routes(routes!(pause_destination))
        .routes(routes!(resume_destination))
        .routes(routes!(test_destination))
        .routes(routes!(get_secret))
        .routes(routes!(list_retries))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
        .routes(routes!(delivery_overview))
        .routes(routes!(start_backfill, cancel_backfill))
}

fn backfill_state(b: destinations::Backfill) -> wire::DestinationBackfill {
    wire::DestinationBackfill {
        since: rapport_api::time::from_ms(b.since_ms),
        until: rapport_api::time::from_ms(b.until_ms),
        position: b.position,
        through: b.through,
        sent: b.sent,
        started_at: rapport_api::time::from_ms(b.started_at_ms),
        finished_at: b.finished_at_ms.map(rapport_api::time::from_ms),
    }
}

fn to_wire(
    store: &dyn rapport_store::Store,
    r: DestinationRecord,
) -> Result<wire::Destination, ApiError> {
    let (offset, lag, retrying, dead_lettered) = destinations::delivery_state(store, &r.id)?;
    let backfill = destinations::backfill(store, &r.id)?.map(backfill_state);
    let suspended = destinations::suspension(store, &r.id)?.map(|s| wire::Suspended {
        since: rapport_api::time::from_ms(s.since_ms),
        failures: s.failures,
        last_error: s.last_error,
        probes: s.probes,
        next_probe_at: rapport_api::time::from_ms(s.next_probe_ms),
    });
    Ok(wire::Destination {
        spec: destinations::masked(&r.spec),
        id: r.id,
        paused: r.paused,
        created_at: rapport_api::time::from_ms(r.created_at_ms),
        updated_at: rapport_api::time::from_ms(r.updated_at_ms),
        delivery: wire::DeliveryState {
            offset,
            lag,
            retrying,
            dead_lettered,
            backfill,
            suspended,
        },
    })
}

fn secret_of(r: &DestinationRecord) -> Option<String> {
    match &r.spec.kind {
        wire::Kind::Webhook { secret, .. } => secret.clone(),
        _ => None,
    }
}

const PARAM: &str = "The destination's id (`dst_…`) or name";

/// Every destination, with where its delivery stands.
#[utoipa::path(get, path = "/api/v1/destinations", tag = "destinations",
    responses((status = 200, body = List<wire::Destination>), AdminErrors))]
pub async fn list_destinations(
    State(state): State<AppState>,
) -> Result<axum::Json<List<wire::Destination>>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let data = destinations::list(store.as_ref())?
            .into_iter()
            .map(|r| to_wire(store.as_ref(), r))
            .collect::<Result<_, _>>()?;
        Ok(axum::Json(List { data }))
    })
    .await
}

/// Creates a destination; it receives what is logged from now on. A webhook created
/// without a `secret` gets one, shown in this answer only.
#[utoipa::path(post, path = "/api/v1/destinations", tag = "destinations",
    request_body = wire::DestinationSpec,
    responses((status = 201, body = wire::CreatedDestination),
        (status = 409, description = "a destination with that name exists", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn create_destination(
    State(state): State<AppState>,
    Json(spec): Json<wire::DestinationSpec>,
) -> Result<(StatusCode, axum::Json<wire::CreatedDestination>), ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let record = destinations::create(store.as_ref(), spec, now_ms())?;
        let secret = secret_of(&record);
        Ok((
            StatusCode::CREATED,
            axum::Json(wire::CreatedDestination {
                destination: to_wire(store.as_ref(), record)?,
                secret,
            }),
        ))
    })
    .await
}

/// A destination, by id or name.
#[utoipa::path(get, path = "/api/v1/destinations/{destination}", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Destination), AdminErrors))]
pub async fn get_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        Ok(axum::Json(to_wire(store.as_ref(), r)?))
    })
    .await
}

/// Replaces a destination's definition; its place in the log, retries and dead letters
/// stay. A webhook sent without `secret` keeps its current one.
#[utoipa::path(put, path = "/api/v1/destinations/{destination}", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    request_body = wire::DestinationSpec,
    responses((status = 200, body = wire::Destination),
        (status = 409, description = "another destination has that name", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn replace_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Json(spec): Json<wire::DestinationSpec>,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::update(store.as_ref(), &reference, spec, now_ms())?;
        Ok(axum::Json(to_wire(store.as_ref(), r)?))
    })
    .await
}

/// Deletes a destination with its retries and dead letters.
#[utoipa::path(delete, path = "/api/v1/destinations/{destination}", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, description = "the deleted destination", body = wire::Destination), AdminErrors))]
pub async fn delete_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let shown = to_wire(store.as_ref(), r.clone())?;
        destinations::delete(store.as_ref(), &r.id)?;
        Ok(axum::Json(shown))
    })
    .await
}

async fn set_paused(
    state: AppState,
    reference: String,
    paused: bool,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::set_paused(store.as_ref(), &reference, paused, now_ms())?;
        Ok(axum::Json(to_wire(store.as_ref(), r)?))
    })
    .await
}

/// Pauses delivery; the destination keeps its place in the log.
#[utoipa::path(post, path = "/api/v1/destinations/{destination}/pause", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Destination), AdminErrors))]
pub async fn pause_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    set_paused(state, reference, true).await
}

/// Resumes delivery from where it paused.
#[utoipa::path(post, path = "/api/v1/destinations/{destination}/resume", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Destination), AdminErrors))]
pub async fn resume_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Destination>, ApiError> {
    set_paused(state, reference, false).await
}

/// Sends one synthetic `Rapport Test Event` now, outside the log: checks the address,
/// the credentials and the template. A receiver's refusal is reported in the answer
/// (`delivered: false`), not as an error.
#[utoipa::path(post, path = "/api/v1/destinations/{destination}/test", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::TestSend), AdminErrors))]
pub async fn test_destination(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::TestSend>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let t = destinations::test_send(&r, chrono::Utc::now())?;
        Ok(axum::Json(wire::TestSend {
            delivered: t.delivered,
            status: t.status,
            latency_ms: t.latency.as_millis() as u64,
            response_body: t.response_body,
            message: t.message,
        }))
    })
    .await
}

/// A webhook's signing secret.
#[utoipa::path(get, path = "/api/v1/destinations/{destination}/secret", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = wire::Secret), AdminErrors))]
pub async fn get_secret(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<wire::Secret>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let secret = secret_of(&r).ok_or_else(|| {
            ApiError::not_found("only webhook destinations have a signing secret")
        })?;
        Ok(axum::Json(wire::Secret { secret }))
    })
    .await
}

/// The messages parked for a retry, soonest first (at most 1000).
#[utoipa::path(get, path = "/api/v1/destinations/{destination}/retries", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 200, body = List<wire::PendingRetry>), AdminErrors))]
pub async fn list_retries(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<axum::Json<List<wire::PendingRetry>>, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let data = destinations::retries(store.as_ref(), &r.id, MAX_LIMIT as usize)?
            .into_iter()
            .map(|x| wire::PendingRetry {
                feed: x.feed.as_str().into(),
                offset: x.offset,
                attempts: x.attempts,
                first_attempt_at: rapport_api::time::from_ms(x.first_attempt_ms),
                next_attempt_at: rapport_api::time::from_ms(x.next_attempt_ms),
                last_error: x.last_error,
                held: x.held,
            })
            .collect();
        Ok(axum::Json(List { data }))
    })
    .await
}

/// The destination's dead-letter queue, by log offset, paged.
#[utoipa::path(get, path = "/api/v1/destinations/{destination}/dead-letters", tag = "destinations",
    params(("destination" = String, Path, description = PARAM), wire::FailuresQuery),
    responses((status = 200, body = Page<wire::DeliveryFailure>), AdminErrors))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<wire::FailuresQuery>,
) -> Result<axum::Json<Page<wire::DeliveryFailure>>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            Code::InvalidParameter,
            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
        )
        .with_field("limit"));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::new(
                Code::InvalidParameter,
                "`cursor` is not a cursor this API returned",
            )
            .with_field("cursor")
        })?),
    };
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let mut rows =
            destinations::failures(store.as_ref(), &r.id, after.as_deref(), limit as usize + 1)?;
        let next_cursor = (rows.len() > limit as usize).then(|| {
            rows.truncate(limit as usize);
            rows.last()
                .map(|f| cursor_of(f.feed, f.offset))
                .unwrap_or_default()
        });
        let data = rows
            .into_iter()
            .map(|f| wire::DeliveryFailure {
                feed: f.feed.as_str().into(),
                offset: f.offset,
                attempts: f.attempts,
                reason: f.reason,
                status: f.status,
                error: f.error,
                request_body: f.request_body,
                response_body: f.response_body,
                at: rapport_api::time::from_ms(f.at_ms),
            })
            .collect();
        Ok(axum::Json(Page { data, next_cursor }))
    })
    .await
}

/// A body field holding an RFC 3339 time, in Unix milliseconds; `400 invalid_field`
/// naming `field` when it is not one.
fn time_field(field: &str, value: &str) -> Result<i64, ApiError> {
    rapport_core::event::parse_timestamp(value)
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidField,
                format!("`{field}` is not an RFC 3339 time"),
            )
            .with_field(field)
        })
}

/// Puts dead letters back for delivery — the ones named, or all — after the cause is
/// fixed; each is tried at once, its attempts counted afresh.
#[utoipa::path(post, path = "/api/v1/destinations/{destination}/dead-letters/replay", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    request_body = wire::Replay,
    responses((status = 200, body = wire::Replayed), (status = 404, description = "no such destination, or a dead letter named (`offsets`, `audience_changes`, `trait_changes`, `alerts`, `journey_actions`) is not stored: `field` names the list and the message the positions; nothing was replayed", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    audit: crate::audit::Audit,
    Path(reference): Path<String>,
    Json(body): Json<wire::Replay>,
) -> Result<axum::Json<wire::Replayed>, ApiError> {
    audit.before(&body);
    let time =
        |field, value: &Option<String>| value.as_deref().map(|v| time_field(field, v)).transpose();
    let since = time("failed_since", &body.failed_since)?;
    let until = time("failed_until", &body.failed_until)?;
    let store = state.store.clone();
    let replayed = crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let lists = [
            (Feed::Event, &body.offsets),
            (Feed::AudienceChange, &body.audience_changes),
            (Feed::TraitChange, &body.trait_changes),
            (Feed::Alert, &body.alerts),
            (Feed::JourneyAction, &body.journey_actions),
        ];
        let chosen = lists.iter().any(|(_, l)| l.is_some()).then(|| {
            lists
                .iter()
                .flat_map(|(feed, l)| l.iter().flatten().map(move |p| (*feed, *p)))
                .collect::<Vec<_>>()
        });
        // Dead letters named that are not stored are a client's mistake (a wrong offset, a
        // replay made twice), not an empty result: 404 naming them, and nothing replayed.
        // A selection by time or `--all` that matches nothing stays a 200 with 0.
        if let Some(chosen) = &chosen {
            let stored: std::collections::HashSet<(Feed, u64)> =
                destinations::failures(store.as_ref(), &r.id, None, usize::MAX)?
                    .into_iter()
                    .map(|f| (f.feed, f.offset))
                    .collect();
            let names = [
                (Feed::Event, "offsets"),
                (Feed::AudienceChange, "audience_changes"),
                (Feed::TraitChange, "trait_changes"),
                (Feed::Alert, "alerts"),
                (Feed::JourneyAction, "journey_actions"),
            ];
            let mut missing: Vec<String> = Vec::new();
            let mut field = None;
            for (feed, name) in names {
                let absent: Vec<String> = chosen
                    .iter()
                    .filter(|(f, p)| *f == feed && !stored.contains(&(*f, *p)))
                    .map(|(_, p)| p.to_string())
                    .collect();
                if !absent.is_empty() {
                    field.get_or_insert(name);
                    missing.push(format!("{name} {}", absent.join(", ")));
                }
            }
            if let Some(field) = field {
                return Err(ApiError::not_found(format!(
                    "destination {} holds no dead letter at {}; nothing was replayed (list them with GET …/dead-letters)",
                    r.spec.name,
                    missing.join("; ")
                ))
                .with_field(field));
            }
        }
        let n = destinations::replay_where(store.as_ref(), &r.id, now_ms(), |f| {
            chosen
                .as_ref()
                .is_none_or(|c| c.contains(&(f.feed, f.offset)))
                && since.is_none_or(|s| f.at_ms >= s)
                && until.is_none_or(|u| f.at_ms < u)
        })?;
        Ok(axum::Json(wire::Replayed { replayed: n as u64 }))
    })
    .await?;
    audit.after(&replayed.0);
    Ok(replayed)
}

/// A dead-letter page's cursor: the last message's position, prefixed `a` for the audience
/// feed, `t` for the trait-change feed, `l` for the alert feed and `j` for the journey
/// action feed (`1042`, `a17`, `t3`).
fn cursor_of(feed: Feed, position: u64) -> String {
    match feed {
        Feed::Event => position.to_string(),
        Feed::AudienceChange => format!("a{position}"),
        Feed::TraitChange => format!("t{position}"),
        Feed::Alert => format!("l{position}"),
        Feed::JourneyAction => format!("j{position}"),
    }
}

fn parse_cursor(cursor: &str) -> Option<Vec<u8>> {
    let (feed, position) = if let Some(p) = cursor.strip_prefix('a') {
        (Feed::AudienceChange, p)
    } else if let Some(p) = cursor.strip_prefix('t') {
        (Feed::TraitChange, p)
    } else if let Some(p) = cursor.strip_prefix('l') {
        (Feed::Alert, p)
    } else if let Some(p) = cursor.strip_prefix('j') {
        (Feed::JourneyAction, p)
    } else {
        (Feed::Event, cursor)
    };
    Some(destinations::failure_key(feed, position.parse().ok()?))
}

fn tenth(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

fn period(h: &HourStats, start_ms: i64) -> wire::DeliveryPeriod {
    wire::DeliveryPeriod {
        start: rapport_api::time::from_ms(start_ms),
        delivered: h.delivered,
        retried: h.retried,
        dead_lettered: h.dead_lettered,
        skipped_consent: h.skipped_consent,
        skipped_suppressed: h.skipped_suppressed,
        requests: h.requests,
        // A bucket's bound, to 0.1 ms: more digits would claim a precision it has not.
        latency_p50_ms: h.latency_quantile_ms(0.5).map(tenth),
        latency_p99_ms: h.latency_quantile_ms(0.99).map(tenth),
        last_error: h.last_error.as_ref().map(|e| e.1.clone()),
        last_error_at: h
            .last_error
            .as_ref()
            .map(|e| rapport_api::time::from_ms(e.0)),
    }
}

/// Per hour — delivered, retried, dead-lettered, requests, latency p50/p99, last error —
/// over the last `hours` hours (those in which anything happened), and their total.
#[utoipa::path(get, path = "/api/v1/destinations/{destination}/overview", tag = "destinations",
    params(("destination" = String, Path, description = PARAM), wire::OverviewQuery),
    responses((status = 200, body = wire::DeliveryOverview), AdminErrors))]
pub async fn delivery_overview(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<wire::OverviewQuery>,
) -> Result<axum::Json<wire::DeliveryOverview>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=744).contains(&hours) {
        return Err(ApiError::new(
            Code::InvalidParameter,
            "`hours` must be a whole number from 1 to 744",
        )
        .with_field("hours"));
    }
    let store = state.store.clone();
    crate::blocking(move || {
        let r = destinations::get(store.as_ref(), &reference)?;
        let now = now_ms();
        let since = hour_of(now) - (i64::from(hours) - 1) * HOUR_MS;
        let list = destinations::overview(store.as_ref(), &r.id, since, i64::MAX)?;
        let mut total = HourStats::new(since);
        for h in &list {
            total.absorb(h);
        }
        Ok(axum::Json(wire::DeliveryOverview {
            hours: list.iter().map(|h| period(h, h.hour_ms)).collect(),
            total: period(&total, since),
        }))
    })
    .await
}

/// Replays the events timestamped in `[since, until)` from the log into the destination,
/// beside its live delivery, each under its usual idempotency key; progress shows in the
/// destination's `delivery.backfill`. One at a time: `409` while another runs.
#[utoipa::path(post, path = "/api/v1/destinations/{destination}/backfill", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    request_body = wire::BackfillRequest,
    responses((status = 202, description = "started", body = wire::DestinationBackfill),
        (status = 409, description = "a backfill is running", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn start_backfill(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Json(body): Json<wire::BackfillRequest>,
) -> Result<(StatusCode, axum::Json<wire::DestinationBackfill>), ApiError> {
    let (since, until) = (
        time_field("since", &body.since)?,
        time_field("until", &body.until)?,
    );
    let store = state.store.clone();
    crate::blocking(move || {
        let job = destinations::start_backfill(store.as_ref(), &reference, since, until, now_ms())?;
        Ok((StatusCode::ACCEPTED, axum::Json(backfill_state(job))))
    })
    .await
}

/// Stops the destination's backfill (a running one at its worker's next step) and forgets
/// it; what it sent keeps its outcomes.
#[utoipa::path(delete, path = "/api/v1/destinations/{destination}/backfill", tag = "destinations",
    params(("destination" = String, Path, description = PARAM)),
    responses((status = 204, description = "stopped"),
        (status = 404, description = "no backfill", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn cancel_backfill(
    State(state): State<AppState>,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.clone();
    crate::blocking(move || {
        if destinations::cancel_backfill(store.as_ref(), &reference)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::new(
                Code::NotFound,
                "this destination has no backfill",
            ))
        }
    })
    .await
}
