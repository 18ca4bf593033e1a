//! The identity administration API: the workspace's identity rules, the probabilistic
//! matching job and its review queue.
//!
//! Merges decided here (automatically by the job, or by accepting a pair) are appended to
//! the log through the ingestor like tracked events, and applied by the processor; so an
//! accepted merge answers with what the processor made of it, which may be a refusal by
//! the identity rules.

use crate::error::{ApiError, Code};
use crate::extract::{AdminKey, Json, Query, parse_body};
use crate::now_ms;
use crate::openapi::AdminErrors;
use crate::request::read_body;
use crate::{AppState, blocking};
use axum::Json as Answer;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rapport_api::identity as wire;
use rapport_api::page::{List, Page, PageQuery};
use rapport_core::event::format_timestamp;
use rapport_core::identity::{IdentifierKind, IdentifierRule, IdentityRules};
use rapport_engine::EngineError;
use rapport_engine::identity::control::{Outcome, RulesChange, StoredOutcome};
use rapport_engine::identity::matching::{
    self, Estimation, JobState, MatchingOptions, MatchingStatus,
};
use rapport_engine::identity::review::{Candidate, Decided, Review, Verdict};
use rapport_engine::identity::rules::{ChangeOutcome, RulesStore, StoredRules};
use rapport_store::Appended;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const MAX_BODY: usize = crate::extract::MAX_BODY_BYTES;
/// How long accepting a pair waits for the processor to apply the merge.
const OUTCOME_WAIT: Duration = Duration::from_secs(10);

/// Review decisions one at a time, so that a pair accepted and rejected at once ends with
/// one decision, the first.
static DECIDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PAIR: &str = "The pair's id (`<left>~<right>`), as the review queue lists it";

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| format_timestamp(&t))
        .unwrap_or_default()
}

/// The rules as the API shows them: every field present.
fn rules_to_wire(r: IdentityRules) -> wire::IdentityRules {
    wire::IdentityRules {
        identifiers: Some(
            r.identifiers
                .into_iter()
                .map(|i| wire::IdentifierRule {
                    kind: i.kind.as_str().to_owned(),
                    limit: i.limit,
                    window_days: i.window_days,
                })
                .collect(),
        ),
        custom_limit: Some(r.custom_limit),
        blocked_values: Some(r.blocked_values),
        block_all_zeros: Some(r.block_all_zeros),
        default_country_code: r.default_country_code,
    }
}

/// The rules of a request: fields left out take their defaults; an identifier type that is
/// no valid name is refused naming it (`identifiers[1].type`).
fn rules_from_wire(w: wire::IdentityRules) -> Result<IdentityRules, ApiError> {
    let defaults = IdentityRules::default();
    let identifiers = match w.identifiers {
        None => defaults.identifiers,
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let kind = IdentifierKind::parse(&r.kind).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidField,
                        format!("invalid request body: invalid identifier type {:?}", r.kind),
                    )
                    .with_field(format!("identifiers[{i}].type"))
                })?;
                Ok(IdentifierRule {
                    kind,
                    limit: r.limit,
                    window_days: r.window_days,
                })
            })
            .collect::<Result<_, ApiError>>()?,
    };
    Ok(IdentityRules {
        identifiers,
        custom_limit: w.custom_limit.unwrap_or(defaults.custom_limit),
        blocked_values: w.blocked_values.unwrap_or(defaults.blocked_values),
        block_all_zeros: w.block_all_zeros.unwrap_or(defaults.block_all_zeros),
        default_country_code: w.default_country_code,
    })
}

fn version_to_wire(s: StoredRules) -> wire::RulesVersion {
    wire::RulesVersion {
        version: s.version,
        updated_at: s.updated_at_ms.map(ts),
        offset: s.offset,
        changed_by: s.changed_by,
        rules: rules_to_wire(s.rules),
    }
}

/// `GET /api/v1/identity/rules`: the rules in force.
#[utoipa::path(get, path = "/api/v1/identity/rules", tag = "identity",
    security(("admin_key" = [])),
    responses((status = 200, description = "The rules in force", body = wire::RulesVersion), AdminErrors))]
pub async fn get_rules(
    State(state): State<AppState>,
) -> Result<Answer<wire::RulesVersion>, ApiError> {
    let initial = state.config.identity.clone();
    let store = state.store.clone();
    blocking(move || {
        Ok(version_to_wire(
            RulesStore {
                store: store.as_ref(),
            }
            .current(&initial)?,
        ))
    })
    .await
    .map(Answer)
}

/// `GET /api/v1/identity/rules/history`: every version of the rules, with who changed them,
/// when, and from which log offset they apply.
#[utoipa::path(get, path = "/api/v1/identity/rules/history", tag = "identity",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every change, oldest first; the configuration's rules (version 0) are not listed", body = List<wire::RulesVersion>), AdminErrors))]
pub async fn rules_history(
    State(state): State<AppState>,
) -> Result<Answer<List<wire::RulesVersion>>, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        let data = RulesStore {
            store: store.as_ref(),
        }
        .history()?
        .into_iter()
        .map(version_to_wire)
        .collect();
        Ok(List { data })
    })
    .await
    .map(Answer)
}

/// `PUT /api/v1/identity/rules`: validated, appended to the log, and in force for every
/// event after it. Answers 200 with the new version once the processor has applied it
/// (waiting up to 10 s), else 202 with the request id.
#[utoipa::path(put, path = "/api/v1/identity/rules", tag = "identity",
    security(("admin_key" = [])),
    request_body = wire::IdentityRules,
    responses(
        (status = 200, description = "Applied: the new version", body = wire::RulesVersion),
        (status = 202, description = "In the log, not applied yet", body = wire::RulesPending),
        AdminErrors))]
pub async fn put_rules(
    State(state): State<AppState>,
    admin: AdminKey,
    Json(body): Json<wire::IdentityRules>,
) -> Result<Response, ApiError> {
    let rules = rules_from_wire(body)?;
    rules.validate().map_err(|e| EngineError::InvalidAt {
        field: e.field,
        message: e.message,
    })?;
    let change = RulesChange::new(rules, chrono::Utc::now(), Some(admin.id));
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
                return Ok(Answer(version_to_wire(applied)).into_response());
            }
            Some((ChangeOutcome::Invalid { field, message, .. }, _)) => {
                return Err(EngineError::InvalidAt { field, message }.into());
            }
            None if Instant::now() >= deadline => {
                let pending = wire::RulesPending {
                    status: "pending".into(),
                    request: change.request,
                    offset,
                };
                return Ok((StatusCode::ACCEPTED, Answer(pending)).into_response());
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn status_view(status: Option<MatchingStatus>, running: bool) -> wire::MatchingStatus {
    let Some(s) = status else {
        return wire::MatchingStatus {
            state: "never_run".into(),
            ..Default::default()
        };
    };
    let state = match s.state {
        JobState::Running if !running => "interrupted",
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed => "failed",
    };
    wire::MatchingStatus {
        state: state.into(),
        phase: Some(s.phase),
        started_at_ms: Some(s.started_at_ms),
        finished_at_ms: s.finished_at_ms,
        profiles_total: Some(s.profiles_total),
        profiles_read: Some(s.profiles_read),
        live_profiles: Some(s.live_profiles),
        records: Some(s.records),
        too_few_fields: Some(s.too_few_fields),
        fields_present: Some(s.fields_present),
        notes: Some(s.notes),
        candidate_pairs: Some(s.candidate_pairs),
        matches: Some(s.matches),
        review: Some(s.review),
        merges_appended: Some(s.merges_appended),
        already_decided: Some(s.already_decided),
        vetoed: Some(s.vetoed),
        thresholds: s.thresholds.map(|t| wire::Thresholds {
            upper: t.upper,
            lower: t.lower,
        }),
        elapsed_ms: Some(s.elapsed_ms),
        error: s.error,
    }
}

/// `GET /api/v1/identity/matching`: the progress of the current run or the figures of the
/// last one.
#[utoipa::path(get, path = "/api/v1/identity/matching", tag = "identity",
    security(("admin_key" = [])),
    responses((status = 200, description = "The state of the job and the figures of its current or last run", body = wire::MatchingStatus), AdminErrors))]
pub async fn matching_status(
    State(state): State<AppState>,
) -> Result<Answer<wire::MatchingStatus>, ApiError> {
    let store = state.store.clone();
    let running = state.matcher.is_running();
    blocking(move || Ok(status_view(matching::last_status(store.as_ref())?, running)))
        .await
        .map(Answer)
}

/// Matching options of a request: fields left out take their defaults.
fn options_from_wire(w: wire::MatchingOptions) -> MatchingOptions {
    let defaults = MatchingOptions::default();
    MatchingOptions {
        fields: w.fields.unwrap_or(defaults.fields),
        match_probability: w.match_probability.unwrap_or(defaults.match_probability),
        review_probability: w.review_probability.unwrap_or(defaults.review_probability),
        match_prior: w.match_prior.unwrap_or(defaults.match_prior),
        estimation: match w.estimation {
            None => defaults.estimation,
            Some(wire::Estimation::Prior) => Estimation::Prior,
            Some(wire::Estimation::Em) => Estimation::Em,
        },
    }
}

/// `POST /api/v1/identity/matching/run`: starts a run (optional body: matching options)
/// and answers 202; progress is read from `GET /api/v1/identity/matching`.
#[utoipa::path(post, path = "/api/v1/identity/matching/run", tag = "identity",
    security(("admin_key" = [])),
    request_body(content = Option<wire::MatchingOptions>, description = "Matching options; no body (or `null`): the configuration's `[matching]`"),
    responses(
        (status = 202, description = "Started", body = wire::RunStarted),
        (status = 409, description = "A run is going on (`conflict`)", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn run_matching(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Answer<wire::RunStarted>), ApiError> {
    // The body is optional, so it is read here rather than by the `Json` extractor, which
    // requires one; a body present is read exactly as `Json` would.
    let bytes = read_body(&headers, body, MAX_BODY).await?;
    // No body (or `null`): the configuration's options.
    let given: Option<wire::MatchingOptions> = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_body(&bytes)?
    };
    let options = match given {
        None => state.config.matching.clone(),
        Some(o) => options_from_wire(o),
    };
    // Starting only spawns the run's thread: no storage call on this one.
    let started_at_ms = state.matcher.start(options)?;
    Ok((
        StatusCode::ACCEPTED,
        Answer(wire::RunStarted {
            state: "running".into(),
            started_at_ms,
        }),
    ))
}

fn candidate_to_wire(c: Candidate) -> wire::Candidate {
    wire::Candidate {
        pair: c.pair,
        left: c.left.0,
        right: c.right.0,
        score: c.score,
        probability: c.probability,
        fields: c
            .fields
            .into_iter()
            .map(|f| wire::FieldEvidence {
                field: f.field,
                left_value: f.left_value,
                right_value: f.right_value,
                level: match f.level {
                    rapport_linkage::Level::Agreement(n) => wire::Level::Agreement(n),
                    rapport_linkage::Level::Missing => wire::Level::Missing,
                },
                level_label: f.level_label,
                m: f.m,
                u: f.u,
                weight: f.weight,
            })
            .collect(),
        found_at_ms: c.found_at_ms,
    }
}

fn outcome_to_wire(o: StoredOutcome) -> wire::PairOutcome {
    wire::PairOutcome {
        pair: o.pair,
        offset: o.offset,
        outcome: match o.outcome {
            Outcome::Merged { into, from } => wire::Outcome::Merged {
                into: into.0,
                from: from.0,
            },
            Outcome::Refused {
                kind,
                limit,
                identifier,
            } => wire::Outcome::Refused {
                kind: kind.as_str().to_owned(),
                limit,
                identifier: wire::Identifier {
                    kind: identifier.kind.as_str().to_owned(),
                    value: identifier.value,
                },
            },
            Outcome::AlreadyOne { profile } => wire::Outcome::AlreadyOne { profile: profile.0 },
            Outcome::Missing => wire::Outcome::Missing,
        },
    }
}

/// `GET /api/v1/identity/review?limit=&cursor=`: pending pairs by pair id, paged.
#[utoipa::path(get, path = "/api/v1/identity/review", tag = "identity",
    security(("admin_key" = [])),
    params(PageQuery),
    responses((status = 200, description = "Pending pairs by pair id", body = Page<wire::Candidate>), AdminErrors))]
pub async fn list_review(
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<Answer<Page<wire::Candidate>>, ApiError> {
    let (limit, cursor) = (page.limit.unwrap_or_default().get(), page.cursor);
    let store = state.store.clone();
    blocking(move || {
        let (data, next_cursor) = Review {
            store: store.as_ref(),
        }
        .pending_page(cursor.as_deref(), limit)?;
        Ok(Page {
            data: data.into_iter().map(candidate_to_wire).collect(),
            next_cursor,
        })
    })
    .await
    .map(Answer)
}

fn decided_view(d: Decided, outcome: Option<StoredOutcome>) -> wire::Pair {
    wire::Pair {
        status: match d.decision {
            Verdict::Automatic => "automatic",
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
        }
        .into(),
        candidate: candidate_to_wire(d.candidate),
        decided_at: Some(ts(d.decided_at_ms)),
        reviewer: d.reviewer,
        offset: d.offset.or(outcome.as_ref().map(|o| o.offset)),
        outcome: outcome.map(outcome_to_wire),
    }
}

/// `GET /api/v1/identity/review/{pair}`: a pair, pending or decided, with its outcome.
#[utoipa::path(get, path = "/api/v1/identity/review/{pair}", tag = "identity",
    security(("admin_key" = [])),
    params(("pair" = String, Path, description = PAIR)),
    responses((status = 200, description = "The pair, its status and decision", body = wire::Pair), AdminErrors))]
pub async fn get_pair(
    State(state): State<AppState>,
    Path(pair): Path<String>,
) -> Result<Answer<wire::Pair>, ApiError> {
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
        Ok(wire::Pair {
            status: "pending".into(),
            candidate: candidate_to_wire(candidate),
            decided_at: None,
            reviewer: None,
            offset: None,
            outcome: None,
        })
    })
    .await
    .map(Answer)
}

/// `POST /api/v1/identity/review/{pair}/accept`: appends the merge to the log, records the
/// decision, and waits (up to 10 s) for the processor's outcome: 200 with it, or 202 if the
/// processor has not reached the entry yet.
#[utoipa::path(post, path = "/api/v1/identity/review/{pair}/accept", tag = "identity",
    security(("admin_key" = [])),
    params(("pair" = String, Path, description = PAIR)),
    responses(
        (status = 200, description = "Merged (or refused by the rules): the pair with its outcome", body = wire::Pair),
        (status = 202, description = "The merge is in the log, not applied yet", body = wire::Pair),
        (status = 409, description = "Already decided (`conflict`)", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn accept_pair(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(pair): Path<String>,
) -> Result<(StatusCode, Answer<wire::Pair>), ApiError> {
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
            return Ok((status, Answer(decided_view(decided, outcome))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /api/v1/identity/review/{pair}/reject`: the pair stays apart and is never proposed
/// again.
#[utoipa::path(post, path = "/api/v1/identity/review/{pair}/reject", tag = "identity",
    security(("admin_key" = [])),
    params(("pair" = String, Path, description = PAIR)),
    responses(
        (status = 200, description = "The pair, rejected", body = wire::Pair),
        (status = 409, description = "Already decided (`conflict`)", body = rapport_api::ErrorEnvelope),
        AdminErrors))]
pub async fn reject_pair(
    State(state): State<AppState>,
    admin: AdminKey,
    Path(pair): Path<String>,
) -> Result<Answer<wire::Pair>, ApiError> {
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
    .map(Answer)
}

/// This resource's routes, each described in the OpenAPI document.
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

#[cfg(test)]
mod tests {
    //! The wire types answer exactly the JSON the engine's types gave before they existed.
    use super::*;
    use rapport_core::identity::{Identifier, ProfileId};
    use rapport_linkage::{FieldEvidence, Level, Thresholds};
    use serde_json::{Value, json};

    fn value(v: impl serde::Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    /// The JSON text, to compare byte for byte (field order included).
    fn text(v: impl serde::Serialize) -> String {
        serde_json::to_string(&v).unwrap()
    }

    fn candidate() -> Candidate {
        Candidate {
            pair: "p_1~p_2".into(),
            left: ProfileId::new("p_1"),
            right: ProfileId::new("p_2"),
            score: 12.5,
            probability: 0.97,
            fields: vec![
                FieldEvidence {
                    field: "email".into(),
                    left_value: Some("a@example.org".into()),
                    right_value: Some("a@example.org".into()),
                    level: Level::Agreement(0),
                    level_label: "exact".into(),
                    m: Some(0.6),
                    u: Some(0.001),
                    weight: 9.2,
                },
                FieldEvidence {
                    field: "phone".into(),
                    left_value: None,
                    right_value: None,
                    level: Level::Missing,
                    level_label: "missing".into(),
                    m: None,
                    u: None,
                    weight: 0.0,
                },
            ],
            found_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn candidates_and_outcomes_keep_their_json() {
        assert_eq!(text(candidate_to_wire(candidate())), text(candidate()));
        for outcome in [
            Outcome::Merged {
                into: ProfileId::new("p_1"),
                from: ProfileId::new("p_2"),
            },
            Outcome::Refused {
                kind: IdentifierKind::Email,
                limit: 1,
                identifier: Identifier::new(IdentifierKind::Email, "b@example.org"),
            },
            Outcome::AlreadyOne {
                profile: ProfileId::new("p_1"),
            },
            Outcome::Missing,
        ] {
            let stored = StoredOutcome {
                pair: "p_1~p_2".into(),
                offset: 7,
                outcome,
            };
            assert_eq!(text(outcome_to_wire(stored.clone())), text(stored));
        }
    }

    #[test]
    fn matching_status_keeps_its_json_with_one_state() {
        let status = MatchingStatus {
            state: JobState::Running,
            phase: "linking".into(),
            started_at_ms: 1,
            finished_at_ms: None,
            profiles_total: 10,
            profiles_read: 9,
            live_profiles: 8,
            records: 7,
            too_few_fields: 1,
            fields_present: [("email".to_owned(), 7)].into(),
            notes: vec!["few profiles".into()],
            candidate_pairs: 5,
            matches: 1,
            review: 2,
            merges_appended: 1,
            already_decided: 0,
            vetoed: 1,
            thresholds: Some(Thresholds {
                upper: 10.0,
                lower: 3.5,
            }),
            elapsed_ms: 42,
            error: Some("stopped".into()),
        };
        let mut before = value(&status);
        // The engine's own `state` used to follow the view's in the same object (a
        // duplicate key); the view's, which tells an interrupted run, is the one kept.
        before["state"] = json!("interrupted");
        assert_eq!(text(status_view(Some(status), false)), text(before));
        assert_eq!(
            value(status_view(None, false)),
            json!({"state": "never_run"})
        );
    }

    #[test]
    fn rules_read_and_answer_as_the_core_type_does() {
        for json in [
            "{}",
            r#"{"identifiers": [{"type": "email", "limit": 2, "window_days": 30}, {"type": "Crm_Id", "limit": 1}]}"#,
            r#"{"custom_limit": 3, "blocked_values": ["n/a"], "block_all_zeros": false}"#,
            r#"{"default_country_code": "44"}"#,
            r#"{"default_country_code": null}"#,
        ] {
            let core: IdentityRules = serde_json::from_str(json).unwrap();
            let wire: wire::IdentityRules = parse_body(json.as_bytes()).unwrap();
            assert_eq!(rules_from_wire(wire).unwrap(), core, "{json}");
            assert_eq!(text(rules_to_wire(core.clone())), text(&core), "{json}");
        }
        let wire: wire::IdentityRules = parse_body(
            br#"{"identifiers": [{"type": "email", "limit": 1}, {"type": " ", "limit": 1}]}"#,
        )
        .unwrap();
        let e = rules_from_wire(wire).unwrap_err();
        assert_eq!(e.body.code, "invalid_field");
        assert_eq!(e.body.field.as_deref(), Some("identifiers[1].type"));
    }

    #[test]
    fn matching_options_read_as_the_engine_type_does() {
        for text in [
            "{}",
            r#"{"review_probability": 1.5}"#,
            r#"{"estimation": "em", "match_prior": 0.01, "match_probability": 0.9}"#,
            r#"{"fields": {"email": ["work_email"], "phone": []}}"#,
        ] {
            let engine: MatchingOptions = serde_json::from_str(text).unwrap();
            let wire: wire::MatchingOptions = parse_body(text.as_bytes()).unwrap();
            assert_eq!(options_from_wire(wire), engine, "{text}");
        }
        let e = parse_body::<wire::MatchingOptions>(br#"{"estimation": "guess"}"#).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("estimation"));
    }
}
