//! The identity administration API: the workspace's identity rules, the probabilistic
//! matching job and its review queue.
//!
//! Merges decided here (automatically by the job, or by accepting a pair) are appended to
//! the log through the ingestor like tracked events, and applied by the processor; so an
//! accepted merge answers with what the processor made of it, which may be a refusal by
//! the identity rules.

use crate::error::ApiError;
use crate::extract::{AdminKey, Query};
use crate::now_ms;
use crate::openapi::AdminErrors;
use crate::request::{parse_json_body, read_body};
use crate::{AppState, blocking};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rapport_api::page::PageQuery;
use rapport_core::event::format_timestamp;
use rapport_core::identity::IdentityRules;
use rapport_engine::EngineError;
use rapport_engine::identity::control::RulesChange;
use rapport_engine::identity::control::StoredOutcome;
use rapport_engine::identity::matching::{self, JobState, MatchingOptions, MatchingStatus};
use rapport_engine::identity::review::{Candidate, Decided, Review, Verdict};
use rapport_engine::identity::rules::{ChangeOutcome, RulesStore, StoredRules};
use rapport_store::Appended;
use serde::Serialize;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const MAX_BODY: usize = 64 * 1024;
/// How long accepting a pair waits for the processor to apply the merge.
const OUTCOME_WAIT: Duration = Duration::from_secs(10);

/// Review decisions one at a time, so that a pair accepted and rejected at once ends with
/// one decision, the first.
static DECIDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| format_timestamp(&t))
        .unwrap_or_default()
}

#[derive(Serialize)]
pub struct RulesView {
    /// 0 while the configuration's `[identity]` section applies.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The log offset from which these rules apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The id of the admin key that made the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub rules: IdentityRules,
}

impl From<StoredRules> for RulesView {
    fn from(s: StoredRules) -> Self {
        RulesView {
            version: s.version,
            updated_at: s.updated_at_ms.map(ts),
            offset: s.offset,
            changed_by: s.changed_by,
            rules: s.rules,
        }
    }
}

/// `GET /api/v1/identity/rules`: the rules in force.
#[utoipa::path(get, path = "/api/v1/identity/rules", tag = "identity", responses((status = 200, description = "the rules in force: `version`, `updated_at`, `offset`, `changed_by`, `rules`", body = Object), AdminErrors))]
pub async fn get_rules(State(state): State<AppState>) -> Result<Json<RulesView>, ApiError> {
    let initial = state.config.identity.clone();
    let store = state.store.clone();
    blocking(move || {
        Ok(RulesStore {
            store: store.as_ref(),
        }
        .current(&initial)?
        .into())
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct RulesHistory {
    /// Every change, oldest first; the configuration's rules (version 0) are not listed.
    pub data: Vec<RulesView>,
}

/// `GET /api/v1/identity/rules/history`: every version of the rules, with who changed them,
/// when, and from which log offset they apply.
#[utoipa::path(get, path = "/api/v1/identity/rules/history", tag = "identity", responses((status = 200, description = "every version, oldest first: `{\"data\": [...]}`", body = Object), AdminErrors))]
pub async fn rules_history(State(state): State<AppState>) -> Result<Json<RulesHistory>, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        let data = RulesStore {
            store: store.as_ref(),
        }
        .history()?
        .into_iter()
        .map(RulesView::from)
        .collect();
        Ok(RulesHistory { data })
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct RulesPending {
    /// `pending`: the change is in the log, the processor has not reached it yet.
    pub status: &'static str,
    pub request: String,
    pub offset: Option<u64>,
}

/// `PUT /api/v1/identity/rules`: validated, appended to the log, and in force for every
/// event after it. Answers 200 with the new version once the processor has applied it
/// (waiting up to 10 s), else 202 with the request id.
#[utoipa::path(put, path = "/api/v1/identity/rules", tag = "identity", request_body(content = Object, description = "The identity rules (`docs/identity.md`)"), responses((status = 200, description = "applied: the new version", body = Object), (status = 202, description = "in the log, not applied yet: `status`, `request`, `offset`", body = Object), AdminErrors))]
pub async fn put_rules(
    State(state): State<AppState>,
    admin: AdminKey,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let key_id = admin.id;
    let rules: IdentityRules = parse_json_body(&read_body(&headers, body, MAX_BODY).await?)?;
    rules.validate().map_err(|e| EngineError::InvalidAt {
        field: e.field,
        message: e.message,
    })?;
    let change = RulesChange::new(rules, chrono::Utc::now(), Some(key_id));
    let appended = state.ingestor.append(vec![change.append_item()]).await?;
    let offset = match appended.first() {
        Some(Appended::Stored(o)) => Some(*o),
        _ => None,
    };
    let deadline = Instant::now() + OUTCOME_WAIT;
    loop {
        let store = state.store.clone();
        let request = change.request.clone();
        let outcome = blocking(move || {
            let rules = RulesStore {
                store: store.as_ref(),
            };
            Ok(match rules.outcome(&request)? {
                Some(o) => Some((o, rules.history()?)),
                None => None,
            })
        })
        .await?;
        match outcome {
            Some((ChangeOutcome::Applied { version, .. }, history)) => {
                let applied = history
                    .into_iter()
                    .find(|r| r.version == version)
                    .ok_or_else(ApiError::internal)?;
                return Ok(Json(RulesView::from(applied)).into_response());
            }
            Some((ChangeOutcome::Invalid { field, message, .. }, _)) => {
                return Err(EngineError::InvalidAt { field, message }.into());
            }
            None if Instant::now() >= deadline => {
                let pending = RulesPending {
                    status: "pending",
                    request: change.request,
                    offset,
                };
                return Ok((StatusCode::ACCEPTED, Json(pending)).into_response());
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[derive(Serialize)]
pub struct StatusView {
    /// `never_run`, `running`, `done`, `failed`, or `interrupted` (the process running it
    /// stopped).
    pub state: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<MatchingStatus>,
}

fn status_view(status: Option<MatchingStatus>, running: bool) -> StatusView {
    let state = match &status {
        None => "never_run",
        Some(s) => match s.state {
            JobState::Running if !running => "interrupted",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        },
    };
    StatusView { state, status }
}

/// `GET /api/v1/identity/matching`: the progress of the current run or the figures of the
/// last one.
#[utoipa::path(get, path = "/api/v1/identity/matching", tag = "identity", responses((status = 200, description = "`state` (`never_run`, `running`, `done`, `failed`, `interrupted`) and the run's figures", body = Object), AdminErrors))]
pub async fn matching_status(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let store = state.store.clone();
    let running = state.matcher.is_running();
    blocking(move || Ok(status_view(matching::last_status(store.as_ref())?, running)))
        .await
        .map(Json)
}

#[derive(Serialize)]
pub struct RunStarted {
    pub state: &'static str,
    /// Identifies the run: `GET /api/v1/identity/matching` reports this `started_at_ms`
    /// once the run has written its first progress.
    pub started_at_ms: i64,
}

/// `POST /api/v1/identity/matching/run`: starts a run (optional body: matching options)
/// and answers 202; progress is read from `GET /api/v1/identity/matching`.
#[utoipa::path(post, path = "/api/v1/identity/matching/run", tag = "identity", request_body(content = Option<Object>, description = "Matching options (`docs/identity-matching.md`); none: the configuration's"), responses((status = 202, description = "started: `state`, `started_at_ms`", body = Object), (status = 409, description = "a run is going on", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn run_matching(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    let bytes = read_body(&headers, body, MAX_BODY).await?;
    let options: MatchingOptions = if bytes.iter().all(u8::is_ascii_whitespace) {
        state.config.matching.clone()
    } else {
        parse_json_body(&bytes)?
    };
    // Starting only spawns the run's thread: no storage call on this one.
    let started_at_ms = state.matcher.start(options)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunStarted {
            state: "running",
            started_at_ms,
        }),
    ))
}

#[derive(Serialize)]
pub struct ReviewPage {
    pub data: Vec<Candidate>,
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/identity/review?limit=&cursor=`: pending pairs by pair id, paged.
#[utoipa::path(get, path = "/api/v1/identity/review", tag = "identity", params(PageQuery), responses((status = 200, description = "pending pairs by id: `{\"data\": [...], \"next_cursor\"}`", body = Object), AdminErrors))]
pub async fn list_review(
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<Json<ReviewPage>, ApiError> {
    let (limit, cursor) = (page.limit.unwrap_or_default().get(), page.cursor);
    let store = state.store.clone();
    blocking(move || {
        let (data, next_cursor) = Review {
            store: store.as_ref(),
        }
        .pending_page(cursor.as_deref(), limit)?;
        Ok(ReviewPage { data, next_cursor })
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct PairView {
    /// `pending`, `automatic`, `accepted` or `rejected`.
    pub status: &'static str,
    #[serde(flatten)]
    pub candidate: Candidate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The id of the admin key that accepted or rejected the pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// The log offset of the merge entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// What the processor made of the merge: `merged`, `refused` (by the identity rules),
    /// `already_one` or `missing`; absent until it has processed the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StoredOutcome>,
}

fn decided_view(d: Decided, outcome: Option<StoredOutcome>) -> PairView {
    PairView {
        status: match d.decision {
            Verdict::Automatic => "automatic",
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
        },
        candidate: d.candidate,
        decided_at: Some(ts(d.decided_at_ms)),
        reviewer: d.reviewer,
        offset: d.offset.or(outcome.as_ref().map(|o| o.offset)),
        outcome,
    }
}

/// `GET /api/v1/identity/review/{pair}`: a pair, pending or decided, with its outcome.
#[utoipa::path(get, path = "/api/v1/identity/review/{pair}", tag = "identity", params(("pair" = String, Path, description = "The pair's id, as the review queue lists it")), responses((status = 200, description = "the pair, its status and decision", body = Object), AdminErrors))]
pub async fn get_pair(
    State(state): State<AppState>,
    Path(pair): Path<String>,
) -> Result<Json<PairView>, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        let review = Review {
            store: store.as_ref(),
        };
        if let Some(d) = review.decided(&pair)? {
            return Ok(decided_view(d, review.outcome(&pair)?));
        }
        let candidate = review
            .pending(&pair)?
            .ok_or_else(|| ApiError::not_found(format!("no pair {pair}")))?;
        Ok(PairView {
            status: "pending",
            candidate,
            decided_at: None,
            reviewer: None,
            offset: None,
            outcome: None,
        })
    })
    .await
    .map(Json)
}

/// `POST /api/v1/identity/review/{pair}/accept`: appends the merge to the log, records the
/// decision, and waits (up to 10 s) for the processor's outcome: 200 with it, or 202 if the
/// processor has not reached the entry yet.
#[utoipa::path(post, path = "/api/v1/identity/review/{pair}/accept", tag = "identity", params(("pair" = String, Path, description = "The pair's id, as the review queue lists it")), responses((status = 200, description = "merged (or refused by the rules): the pair with its outcome", body = Object), (status = 202, description = "the merge is in the log, not applied yet", body = Object), (status = 409, description = "already decided", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn accept_pair(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(pair): Path<String>,
) -> Result<(StatusCode, Json<PairView>), ApiError> {
    let reviewer = admin.id;
    let _one_decision_at_a_time = DECIDING.lock().await;
    let store = state.store.clone();
    let key = pair.clone();
    let candidate = blocking(move || {
        Ok(Review {
            store: store.as_ref(),
        }
        .to_decide(&key)?)
    })
    .await?;
    let entry = candidate.merge(
        Verdict::Accepted,
        chrono::Utc::now(),
        Some(reviewer.clone()),
    );
    // The log first: once it is there the merge happens even if we stop right after.
    let appended = state.ingestor.append(vec![entry.append_item()]).await?;
    let offset = match appended.first() {
        Some(Appended::Stored(o)) => Some(*o),
        _ => None,
    };
    let decided = Decided {
        candidate,
        decision: Verdict::Accepted,
        decided_at_ms: now_ms(),
        offset,
        reviewer: Some(reviewer),
    };
    let store = state.store.clone();
    let record = decided.clone();
    blocking(move || Ok(store.state_commit(&Review::decide(&record), None)?)).await?;
    drop(_one_decision_at_a_time);
    let deadline = Instant::now() + OUTCOME_WAIT;
    loop {
        let store = state.store.clone();
        let key = pair.clone();
        let outcome = blocking(move || {
            Ok(Review {
                store: store.as_ref(),
            }
            .outcome(&key)?)
        })
        .await?;
        if outcome.is_some() || Instant::now() >= deadline {
            let status = if outcome.is_some() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok((status, Json(decided_view(decided, outcome))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /api/v1/identity/review/{pair}/reject`: the pair stays apart and is never proposed
/// again.
#[utoipa::path(post, path = "/api/v1/identity/review/{pair}/reject", tag = "identity", params(("pair" = String, Path, description = "The pair's id, as the review queue lists it")), responses((status = 200, description = "the pair, rejected", body = Object), (status = 409, description = "already decided", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn reject_pair(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(pair): Path<String>,
) -> Result<Json<PairView>, ApiError> {
    let reviewer = admin.id;
    let _one_decision_at_a_time = DECIDING.lock().await;
    let store = state.store.clone();
    blocking(move || {
        let review = Review {
            store: store.as_ref(),
        };
        let decided = Decided {
            candidate: review.to_decide(&pair)?,
            decision: Verdict::Rejected,
            decided_at_ms: now_ms(),
            offset: None,
            reviewer: Some(reviewer),
        };
        store.state_commit(&Review::decide(&decided), None)?;
        Ok(decided_view(decided, None))
    })
    .await
    .map(Json)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_rules, put_rules))
        .routes(routes!(rules_history))
        .routes(routes!(matching_status))
        .routes(routes!(run_matching))
        .routes(routes!(list_review))
        .routes(routes!(get_pair))
        .routes(routes!(accept_pair))
        .routes(routes!(reject_pair))
}
