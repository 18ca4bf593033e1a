//! The value-model API: start fits (answered `202` with a job to follow), read the latest
//! fit, the reports (surveys, silent majority, earned growth, health) and the health-alert
//! feed. Fits and reports read the whole log, so they always run off the async threads.

use crate::error::ApiError;
use crate::openapi::AdminErrors;
use crate::value_wire::Wire;
use crate::{AppState, blocking};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rapport_api::Code;
use rapport_api::page::Limit;
use rapport_api::value::{
    AlertPage, ClvDistribution, EarnedGrowthReport, HealthReport, Job, JobList, ModelSummary,
    SilentMajority, SurveyReport,
};
use rapport_core::event::parse_timestamp;
use rapport_engine::value::{self, EarnedGrowthQuery, ModelKind, Progress, SurveyQuery};
use rapport_value::survey::{Metric, TimeBucket};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn model(name: &str) -> Result<ModelKind, ApiError> {
    ModelKind::parse(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "no model named {name:?}; the models are clv, churn and health"
        ))
    })
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidParameter, message).with_field(field)
}

/// The query's parameters, each checked against the names an endpoint accepts.
fn params(raw: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| {
            if known.contains(&k.as_ref()) {
                Ok((k.into_owned(), v.into_owned()))
            } else {
                Err(bad(&k, format!("unknown parameter `{k}`")))
            }
        })
        .collect()
}

/// A time bucket among `allowed`; the error lists them and the words `also` accepted
/// beside them (`all` for `by`), so that it names every value the parameter takes.
fn bucket(
    field: &str,
    v: &str,
    allowed: &[TimeBucket],
    also: &[&str],
) -> Result<TimeBucket, ApiError> {
    serde_json::from_value::<TimeBucket>(Value::from(v))
        .ok()
        .filter(|b| allowed.contains(b))
        .ok_or_else(|| {
            let names: Vec<String> = allowed
                .iter()
                .map(|b| {
                    serde_json::to_value(b)
                        .expect("JSON")
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .chain(also.iter().map(|w| (*w).to_owned()))
                .collect();
            bad(
                field,
                format!("`{field}` must be one of {} (got {v:?})", names.join(", ")),
            )
        })
}

/// `POST /api/v1/models/{model}/fit`: starts a fit; `202` with the job.
#[utoipa::path(post, path = "/api/v1/models/{model}/fit", tag = "value", params(("model" = String, Path, description = "`clv`, `churn` or `health`")), request_body(content = Option<rapport_api::value::FitRequest>, description = "None, or `{}`: a fit takes no options"), responses((status = 202, description = "started: the job to follow", body = Job), (status = 409, description = "a fit of this model is running", body = rapport_api::ErrorEnvelope), AdminErrors))]
pub async fn start_fit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let kind = model(&name)?;
    // A fit takes no options: a body may be absent or `{}`, and anything in it is refused
    // rather than silently ignored (`{"as_of": …}` is not an option).
    let bytes = crate::request::read_body(&headers, body, crate::extract::MAX_BODY_BYTES).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        crate::extract::parse_body::<rapport_api::value::FitRequest>(&bytes)?;
    }
    // Starting only spawns the job's thread: no storage call on this one.
    let job = state.models.start(kind, now_ms())?;
    Ok((StatusCode::ACCEPTED, Json(job.wire())))
}

/// `GET /api/v1/jobs/{id}`
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "value", params(("id" = String, Path, description = "The job's id")), responses((status = 200, description = "the job: state, phase, progress, result", body = Job), AdminErrors))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    state
        .models
        .job(&id)
        .map(|job| Json(job.wire()))
        .ok_or_else(|| ApiError::not_found(format!("no job {id} (jobs are forgotten on restart)")))
}

/// `GET /api/v1/jobs`: recent jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "value", responses((status = 200, description = "recent jobs, newest first: `{\"data\": [...]}`", body = rapport_api::List<Job>), AdminErrors))]
pub async fn list_jobs(State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList {
        data: state.models.jobs().wire(),
    }))
}

/// `GET /api/v1/models/{model}`: the latest fit summary.
#[utoipa::path(get, path = "/api/v1/models/{model}", tag = "value", params(("model" = String, Path, description = "`clv`, `churn` or `health`")), responses((status = 200, description = "the latest fit's summary, in the shape of its model", body = ModelSummary), AdminErrors))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelSummary>, ApiError> {
    let kind = model(&name)?;
    let models = state.models.clone();
    blocking(move || {
        models.latest_fit(kind)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no {name} fit yet: start one with POST /api/v1/models/{name}/fit"
            ))
        })
    })
    .await
    .map(|summary| Json(summary.wire()))
}

/// Parameters of a survey report. The endpoint names the metric (`nps`, `ces`, `csat`) and
/// the default survey; `survey` picks another survey whose scores feed that metric.
fn survey_query(raw: Option<&str>, metric: &str) -> Result<SurveyQuery, ApiError> {
    let mut q = SurveyQuery {
        survey: metric.to_owned(),
        metric: Metric::from_survey_name(metric),
        by: Some(TimeBucket::Month),
        group_by: None,
        since: None,
        until: None,
    };
    for (k, v) in params(raw, &["survey", "by", "group_by", "since", "until"])? {
        let time = |v: &str| {
            parse_timestamp(v)
                .map(|t| t.timestamp())
                .ok_or_else(|| bad(&k, format!("`{k}` must be an ISO-8601 timestamp")))
        };
        match k.as_str() {
            "survey" => q.survey = v,
            "by" if v == "all" => q.by = None,
            "by" => {
                q.by = Some(bucket(
                    &k,
                    &v,
                    &[
                        TimeBucket::Day,
                        TimeBucket::Week,
                        TimeBucket::Month,
                        TimeBucket::Quarter,
                        TimeBucket::Year,
                    ],
                    &["all"],
                )?)
            }
            "group_by" => {
                let name = v
                    .strip_prefix("traits.")
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| bad(&k, "`group_by` names a trait: traits.<name>"))?;
                q.group_by = Some(name.to_owned())
            }
            "since" => q.since = Some(time(&v)?),
            _ => q.until = Some(time(&v)?),
        }
    }
    Ok(q)
}

async fn survey_report(
    state: AppState,
    raw: Option<String>,
    metric: &'static str,
) -> Result<Json<SurveyReport>, ApiError> {
    let q = survey_query(raw.as_deref(), metric)?;
    let models = state.models.clone();
    blocking(move || {
        Ok(value::survey_report(
            models.store(),
            models.config(),
            &q,
            &Progress::detached(),
        )?)
    })
    .await
    .map(|report| Json(report.wire()))
}

/// `GET /api/v1/reports/nps?survey=&by=&group_by=&since=&until=` (also `ces`, `csat`).
#[utoipa::path(get, path = "/api/v1/reports/nps", tag = "value", params(("survey" = Option<String>, Query, description = "The survey's name (`survey` property); default: every survey"), ("by" = Option<String>, Query, description = "`day`, `week`, `month`, `quarter`, `year` or `all`"), ("group_by" = Option<String>, Query, description = "A trait to break the score down by"), ("since" = Option<String>, Query, description = "ISO-8601"), ("until" = Option<String>, Query, description = "ISO-8601")), responses((status = 200, description = "Net Promoter Score over time, with confidence intervals", body = SurveyReport), AdminErrors))]
pub async fn report_nps(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SurveyReport>, ApiError> {
    survey_report(state, raw, "nps").await
}

#[utoipa::path(get, path = "/api/v1/reports/ces", tag = "value", params(("survey" = Option<String>, Query, description = "The survey's name (`survey` property); default: every survey"), ("by" = Option<String>, Query, description = "`day`, `week`, `month`, `quarter`, `year` or `all`"), ("group_by" = Option<String>, Query, description = "A trait to break the score down by"), ("since" = Option<String>, Query, description = "ISO-8601"), ("until" = Option<String>, Query, description = "ISO-8601")), responses((status = 200, description = "Customer Effort Score over time", body = SurveyReport), AdminErrors))]
pub async fn report_ces(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SurveyReport>, ApiError> {
    survey_report(state, raw, "ces").await
}

#[utoipa::path(get, path = "/api/v1/reports/csat", tag = "value", params(("survey" = Option<String>, Query, description = "The survey's name (`survey` property); default: every survey"), ("by" = Option<String>, Query, description = "`day`, `week`, `month`, `quarter`, `year` or `all`"), ("group_by" = Option<String>, Query, description = "A trait to break the score down by"), ("since" = Option<String>, Query, description = "ISO-8601"), ("until" = Option<String>, Query, description = "ISO-8601")), responses((status = 200, description = "Customer satisfaction over time", body = SurveyReport), AdminErrors))]
pub async fn report_csat(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SurveyReport>, ApiError> {
    survey_report(state, raw, "csat").await
}

/// `GET /api/v1/reports/silent-majority?threshold=0.5`
#[utoipa::path(get, path = "/api/v1/reports/silent-majority", tag = "value", params(("threshold" = Option<f64>, Query, description = "P(alive) below which a customer counts as silent")), responses((status = 200, description = "the silent majority by cohort", body = SilentMajority), AdminErrors))]
pub async fn report_silent_majority(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SilentMajority>, ApiError> {
    let mut threshold = 0.5;
    for (k, v) in params(raw.as_deref(), &["threshold"])? {
        threshold = v
            .parse::<f64>()
            .ok()
            .filter(|t| *t > 0.0 && *t <= 1.0)
            .ok_or_else(|| bad(&k, "`threshold` must be a probability in (0, 1]"))?;
    }
    let models = state.models.clone();
    blocking(move || {
        Ok(value::silent_majority(
            models.store(),
            models.config(),
            threshold,
            now_ms(),
            &Progress::detached(),
        )?)
    })
    .await
    .map(|report| Json(report.wire()))
}

/// `GET /api/v1/reports/clv-distribution?bins=20`
#[utoipa::path(get, path = "/api/v1/reports/clv-distribution", tag = "value", params(("bins" = Option<u32>, Query, description = "Histogram bins, 1 to 200 (default 20)")), responses((status = 200, description = "CLV and P(alive) over the profiles the CLV fits scored: count, mean, total, quantiles, histogram (log-spaced for CLV, on [0, 1] for P(alive))", body = ClvDistribution), AdminErrors))]
pub async fn report_clv_distribution(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ClvDistribution>, ApiError> {
    let mut bins = value::DISTRIBUTION_BINS;
    for (k, v) in params(raw.as_deref(), &["bins"])? {
        bins = v
            .parse::<usize>()
            .ok()
            .filter(|b| (1..=value::DISTRIBUTION_BINS_MAX).contains(b))
            .ok_or_else(|| {
                bad(
                    &k,
                    format!(
                        "`bins` must be a whole number from 1 to {}",
                        value::DISTRIBUTION_BINS_MAX
                    ),
                )
            })?;
    }
    let models = state.models.clone();
    blocking(move || {
        Ok(value::clv_distribution(
            models.store(),
            models.config(),
            bins,
            &Progress::detached(),
        )?)
    })
    .await
    .map(|report| Json(report.wire()))
}

/// `GET /api/v1/reports/earned-growth?period=month|quarter|year`
#[utoipa::path(get, path = "/api/v1/reports/earned-growth", tag = "value", params(("period" = Option<String>, Query, description = "`month`, `quarter` or `year`")), responses((status = 200, description = "earned growth rate per period", body = EarnedGrowthReport), AdminErrors))]
pub async fn report_earned_growth(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EarnedGrowthReport>, ApiError> {
    let mut q = EarnedGrowthQuery {
        period: TimeBucket::Month,
    };
    for (k, v) in params(raw.as_deref(), &["period"])? {
        q.period = bucket(
            &k,
            &v,
            &[TimeBucket::Month, TimeBucket::Quarter, TimeBucket::Year],
            &[],
        )?;
    }
    let models = state.models.clone();
    blocking(move || {
        Ok(value::earned_growth_report(
            models.store(),
            models.config(),
            &q,
            now_ms(),
            &Progress::detached(),
        )?)
    })
    .await
    .map(|report| Json(report.wire()))
}

/// `GET /api/v1/reports/health`: the latest health run and the most recent alerts.
#[utoipa::path(get, path = "/api/v1/reports/health", tag = "value", responses((status = 200, description = "the latest health run (bands and their counts, the lowest scores) with the most recent alerts", body = HealthReport), AdminErrors))]
pub async fn report_health(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HealthReport>, ApiError> {
    params(raw.as_deref(), &[])?;
    let models = state.models.clone();
    blocking(move || Ok(value::health_report(models.store())?))
        .await
        .map(|report| Json(report.wire()))
}

/// A `limit` from the query, read as every paged list reads it ([`Limit`]).
fn read_limit(v: &str) -> Result<Limit, ApiError> {
    let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v);
    Limit::deserialize(text).map_err(|e| bad("limit", e.to_string()))
}

/// `GET /api/v1/alerts?after=&limit=`: health alerts, oldest first, from after `after`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "value", params(("after" = Option<String>, Query, description = "`next_after` of the previous page"), ("limit" = Option<Limit>, Query)), responses((status = 200, description = "health alerts, oldest first", body = AlertPage), AdminErrors))]
pub async fn list_alerts(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AlertPage>, ApiError> {
    let (mut after, mut limit) = (None, Limit::default());
    for (k, v) in params(raw.as_deref(), &["after", "limit"])? {
        match k.as_str() {
            "after" => after = Some(v),
            _ => limit = read_limit(&v)?,
        }
    }
    let models = state.models.clone();
    blocking(move || {
        Ok(value::alerts(
            models.store(),
            after.as_deref(),
            limit.get(),
        )?)
    })
    .await
    .map(|page| Json(page.wire()))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_model))
        .routes(routes!(start_fit))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(report_nps))
        .routes(routes!(report_ces))
        .routes(routes!(report_csat))
        .routes(routes!(report_silent_majority))
        .routes(routes!(report_clv_distribution))
        .routes(routes!(report_earned_growth))
        .routes(routes!(report_health))
        .routes(routes!(list_alerts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_limit_is_a_page_limit_with_the_message_it_always_had() {
        assert_eq!(read_limit("250").unwrap(), Limit(250));
        for v in ["0", "1001", "ten", "-1", ""] {
            let e = read_limit(v).unwrap_err();
            assert_eq!(e.body.field.as_deref(), Some("limit"), "{v}");
            assert_eq!(
                e.body.message, "`limit` must be a whole number from 1 to 1000",
                "{v}"
            );
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn report_parameters_are_checked_and_named() {
        let q = survey_query(
            Some("by=quarter&group_by=traits.plan&since=2024-01-01"),
            "nps",
        )
        .unwrap();
        assert_eq!(q.by, Some(TimeBucket::Quarter));
        assert_eq!(q.group_by.as_deref(), Some("plan"));
        assert_eq!(q.metric, Some(Metric::Nps));
        assert_eq!(q.since, Some(1_704_067_200));
        let q = survey_query(Some("survey=onboarding&by=all"), "csat").unwrap();
        assert_eq!((q.by, q.metric), (None, Some(Metric::Csat)));
        for (raw, field) in [
            ("by=fortnight", "by"),
            ("group_by=plan", "group_by"),
            ("since=soon", "since"),
            ("colour=red", "colour"),
        ] {
            let e = survey_query(Some(raw), "nps").unwrap_err();
            assert_eq!(e.body.field.as_deref(), Some(field), "{raw}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        // The refusal of `by` lists every value it takes, `all` included.
        let e = survey_query(Some("by=fortnight"), "nps").unwrap_err();
        assert!(
            e.body.message.contains("day")
                && e.body.message.contains("year")
                && e.body.message.contains("all"),
            "{}",
            e.body.message
        );
    }
}
