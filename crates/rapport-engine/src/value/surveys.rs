//! Survey metrics and earned growth on live data.
//!
//! Answers are `Survey Answered` track events (`survey`, `score`, `comment`, `reason`).
//! NPS, CES and CSAT come with response counts and confidence intervals, over time and by a
//! profile trait. Earned growth (Reichheld) compares each period's revenue per customer
//! with the period before; new customers are earned or bought by the `reason` they gave
//! (their first answer that has one), classified with the configured phrases.

use super::collect::{Wanted, collect};
use super::{ModelsConfig, Progress, rfc3339};
use crate::EngineError;
use rapport_store::Store;
use rapport_value::survey::{
    Acquisition, CustomerRevenue, EarnedGrowth, Metric, MetricReport, TimeBucket, bucket_start,
    earned_growth, metric_report, report_by,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

const DAY: i64 = 86_400;

/// What a survey report covers.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyQuery {
    /// The `survey` property to match (case-insensitive), e.g. `nps`.
    pub survey: String,
    /// The metric its scores feed; from the survey name when it is nps, ces or csat.
    pub metric: Option<Metric>,
    /// Time buckets of the series; `None` for no time split.
    pub by: Option<TimeBucket>,
    /// A profile trait to split by (its current value).
    pub group_by: Option<String>,
    /// Answers at or after / before, Unix seconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn date(unix_seconds: i64) -> String {
    super::utc_date(unix_seconds, "%Y-%m-%d")
}

/// The metric report of one survey, overall and per time bucket and/or trait value.
pub fn survey_report(
    store: &dyn Store,
    config: &ModelsConfig,
    q: &SurveyQuery,
    progress: &Progress,
) -> Result<SurveyReport, EngineError> {
    let metric = q
        .metric
        .or_else(|| Metric::from_survey_name(&q.survey))
        .ok_or_else(|| EngineError::Invalid {
            field: "metric",
            message: format!(
                "say which metric the scores of survey {:?} feed: nps, ces or csat",
                q.survey
            ),
        })?;
    let wanted = Wanted {
        survey_event: config.survey_event.clone(),
        answers: true,
        ..Wanted::default()
    };
    let collected = collect(store, &wanted, progress)?;
    let survey = q.survey.trim().to_lowercase();
    let cfg = &config.surveys;
    let mut answers = Vec::new();
    let mut invalid = 0usize;
    // What was read, so that an empty report says why it is empty.
    let (mut events, mut of_survey, mut in_range) = (0usize, 0usize, 0usize);
    let mut other_surveys = BTreeMap::<String, usize>::new();
    for data in collected.profiles.values() {
        let group = q.group_by.as_ref().map(|t| match data.traits.get(t) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        });
        for a in &data.answers {
            events += 1;
            if a.survey.to_lowercase() != survey {
                *other_surveys.entry(a.survey.clone()).or_default() += 1;
                continue;
            }
            of_survey += 1;
            if q.since.is_some_and(|s| a.timestamp < s) || q.until.is_some_and(|u| a.timestamp >= u)
            {
                continue;
            }
            in_range += 1;
            // An answer off the metric's scale is counted and left out, not fatal.
            match a.score {
                Some(s) if metric_report(metric, &[s], cfg).is_ok() => {
                    let period = q.by.map(|b| bucket_start(a.timestamp, b));
                    answers.push(((period, group.clone().flatten()), s));
                }
                _ => invalid += 1,
            }
        }
    }
    let scores: Vec<f64> = answers.iter().map(|a| a.1).collect();
    let overall = if scores.is_empty() {
        None
    } else {
        Some(metric_report(metric, &scores, cfg).map_err(bad_scores)?)
    };
    let series = if q.by.is_none() && q.group_by.is_none() {
        Vec::new()
    } else {
        report_by(answers, metric, cfg)
            .map_err(bad_scores)?
            .into_iter()
            .map(|((period, group), report)| SeriesRow {
                period: period.map(date),
                group: q.group_by.is_some().then_some(group),
                report,
            })
            .collect()
    };
    let event = &config.survey_event;
    let note = if !scores.is_empty() {
        None
    } else if events == 0 {
        Some(format!(
            "no `{event}` events among the {} events read: answers are `{event}` track events with the properties `survey` and `score` (`models.survey_event`)",
            collected.events_read
        ))
    } else if of_survey == 0 {
        let seen: Vec<String> = other_surveys
            .iter()
            .take(10)
            .map(|(s, n)| format!("{s:?} {n}"))
            .collect();
        Some(format!(
            "{events} `{event}` events, none with `survey` = {:?} (surveys seen: {}); choose one with --survey",
            q.survey,
            seen.join(", ")
        ))
    } else if in_range == 0 {
        Some(format!(
            "{of_survey} answers to survey {:?}, none in the time range asked",
            q.survey
        ))
    } else {
        Some(format!(
            "{of_survey} answers to survey {:?}, none with a `score` on the {} scale",
            q.survey,
            metric_name(metric)
        ))
    };
    Ok(SurveyReport {
        survey: q.survey.clone(),
        metric,
        read: SurveyRead {
            event: event.clone(),
            properties: vec!["survey".into(), "score".into()],
            events_read: collected.events_read,
            survey_events: events,
            answers_to_survey: of_survey,
            in_range,
        },
        note,
        by: q.by,
        group_by: q.group_by.as_ref().map(|t| format!("traits.{t}")),
        responses: scores.len(),
        invalid_answers: invalid,
        overall,
        series,
    })
}

/// What a survey report read, so that an empty report says why it is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurveyRead {
    pub event: String,
    pub properties: Vec<String>,
    pub events_read: u64,
    pub survey_events: usize,
    pub answers_to_survey: usize,
    pub in_range: usize,
}

/// One row of a survey report's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    /// First day of the time bucket; absent without time buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The trait's value (`Some(None)`: the profile has none, `null`); absent when the
    /// report is not split by a trait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Option<String>>,
    pub report: MetricReport,
}

/// A survey's metric overall and per time bucket and/or trait value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurveyReport {
    pub survey: String,
    pub metric: Metric,
    pub read: SurveyRead,
    /// Why the report is empty.
    pub note: Option<String>,
    pub by: Option<TimeBucket>,
    /// `traits.<name>`.
    pub group_by: Option<String>,
    pub responses: usize,
    pub invalid_answers: usize,
    pub overall: Option<MetricReport>,
    pub series: Vec<SeriesRow>,
}

fn metric_name(m: Metric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_uppercase))
        .unwrap_or_default()
}

fn bad_scores(e: rapport_value::survey::SurveyError) -> EngineError {
    EngineError::Store(format!(
        "survey scores failed validation after filtering: {e}"
    ))
}

/// Earned growth of one period against the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodGrowth {
    /// First day of the period (UTC).
    pub period: String,
    pub previous_period: String,
    /// False for the period still running.
    pub complete: bool,
    #[serde(flatten)]
    pub growth: Option<EarnedGrowth>,
    /// Why there is no rate (e.g. no revenue in the previous period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The start of the bucket after the one starting at `start`.
fn next_bucket(start: i64, bucket: TimeBucket) -> i64 {
    // Past the longest bucket of each kind, then back to its start.
    let days = match bucket {
        TimeBucket::Day => 1,
        TimeBucket::Week => 7,
        TimeBucket::Month => 31,
        TimeBucket::Quarter => 92,
        TimeBucket::Year => 366,
    };
    bucket_start(start + days * DAY, bucket)
}

/// Earned growth per period from each customer's purchases `(Unix seconds, value)` and
/// acquisition, for every period from the first purchase to the one holding `now`.
pub fn earned_growth_series(
    customers: &[(Vec<(i64, f64)>, Acquisition)],
    bucket: TimeBucket,
    now: i64,
) -> Vec<PeriodGrowth> {
    let mut revenue: Vec<BTreeMap<i64, f64>> = Vec::with_capacity(customers.len());
    let mut first = i64::MAX;
    for (purchases, _) in customers {
        let mut by_period = BTreeMap::new();
        for &(t, v) in purchases.iter().filter(|p| p.0 <= now) {
            let start = bucket_start(t, bucket);
            first = first.min(start);
            *by_period.entry(start).or_insert(0.0) += v;
        }
        revenue.push(by_period);
    }
    let mut out = Vec::new();
    if first == i64::MAX {
        return out;
    }
    let current = bucket_start(now, bucket);
    let (mut previous, mut period) = (first, next_bucket(first, bucket));
    while period <= current {
        let rows: Vec<CustomerRevenue> = customers
            .iter()
            .zip(&revenue)
            .map(|((_, acquisition), r)| CustomerRevenue {
                previous: r.get(&previous).copied().unwrap_or(0.0),
                current: r.get(&period).copied().unwrap_or(0.0),
                acquisition: *acquisition,
            })
            .filter(|c| c.previous > 0.0 || c.current > 0.0)
            .collect();
        let (growth, error) = match earned_growth(&rows) {
            Ok(g) => (Some(g), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(PeriodGrowth {
            period: date(period),
            previous_period: date(previous),
            complete: period < current,
            growth,
            error,
        });
        previous = period;
        period = next_bucket(period, bucket);
    }
    out
}

/// What an earned-growth report covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarnedGrowthQuery {
    pub period: TimeBucket,
}

/// Earned growth per period as of `now_ms`.
pub fn earned_growth_report(
    store: &dyn Store,
    config: &ModelsConfig,
    q: &EarnedGrowthQuery,
    now_ms: i64,
    progress: &Progress,
) -> Result<EarnedGrowthReport, EngineError> {
    let wanted = Wanted {
        purchase_event: config.purchase_event.clone(),
        revenue_property: config.revenue_property.clone(),
        survey_event: config.survey_event.clone(),
        purchases: true,
        answers: true,
        ..Wanted::default()
    };
    let collected = collect(store, &wanted, progress)?;
    let events_read = collected.events_read;
    let purchases: usize = collected.profiles.values().map(|d| d.purchases.len()).sum();
    let with_reason = collected
        .profiles
        .values()
        .filter(|d| d.answers.iter().any(|a| a.reason.is_some()))
        .count();
    let mut counts = BTreeMap::<&str, usize>::new();
    let customers: Vec<(Vec<(i64, f64)>, Acquisition)> = collected
        .profiles
        .into_values()
        .filter(|d| !d.purchases.is_empty())
        .map(|d| {
            let reason = d
                .answers
                .iter()
                .filter(|a| a.reason.is_some())
                .min_by_key(|a| a.timestamp)
                .and_then(|a| a.reason.as_deref());
            let acquisition =
                reason.map_or(Acquisition::Unknown, |r| config.acquisition.classify(r));
            *counts
                .entry(match acquisition {
                    Acquisition::Earned => "earned",
                    Acquisition::Bought => "bought",
                    Acquisition::Unknown => "unknown",
                })
                .or_default() += 1;
            (d.purchases, acquisition)
        })
        .collect();
    let periods = earned_growth_series(&customers, q.period, now_ms.div_euclid(1000));
    let note = if customers.is_empty() {
        Some(format!(
            "no `{}` events among the {events_read} events read: growth is measured on purchases (`models.purchase_event`, value from `{}`)",
            config.purchase_event, config.revenue_property
        ))
    } else if with_reason == 0 {
        Some(format!(
            "no customer gave a `reason` in a `{}` event: every new customer is unknown, neither earned nor bought",
            config.survey_event
        ))
    } else {
        None
    };
    Ok(EarnedGrowthReport {
        period: q.period,
        read: GrowthRead {
            purchase_event: config.purchase_event.clone(),
            revenue_property: config.revenue_property.clone(),
            survey_event: config.survey_event.clone(),
            reason_property: "reason".into(),
            events_read,
            purchases,
            customers_with_reason: with_reason,
        },
        note,
        as_of: rfc3339(now_ms),
        customers: customers.len(),
        acquisition: AcquisitionCounts {
            earned: counts.get("earned").copied().unwrap_or(0),
            bought: counts.get("bought").copied().unwrap_or(0),
            unknown: counts.get("unknown").copied().unwrap_or(0),
        },
        periods,
    })
}

/// What an earned-growth report read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrowthRead {
    pub purchase_event: String,
    pub revenue_property: String,
    pub survey_event: String,
    pub reason_property: String,
    pub events_read: u64,
    pub purchases: usize,
    pub customers_with_reason: usize,
}

/// Buyers by how they came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcquisitionCounts {
    pub earned: usize,
    pub bought: usize,
    pub unknown: usize,
}

/// Earned growth per period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EarnedGrowthReport {
    pub period: TimeBucket,
    pub read: GrowthRead,
    /// Why the report is empty or partial.
    pub note: Option<String>,
    pub as_of: String,
    pub customers: usize,
    pub acquisition: AcquisitionCounts,
    pub periods: Vec<PeriodGrowth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_step_over_months_and_quarters() {
        // 2024-01-01, 2024-02-01, 2024-04-01, 2024-07-01, 2024-10-01.
        let jan = 1_704_067_200;
        assert_eq!(next_bucket(jan, TimeBucket::Month), 1_706_745_600);
        assert_eq!(next_bucket(jan, TimeBucket::Quarter), 1_711_929_600);
        assert_eq!(
            next_bucket(1_719_792_000, TimeBucket::Quarter),
            1_727_740_800
        );
    }

    #[test]
    fn earned_growth_by_month_on_a_tiny_example() {
        let jan = 1_704_067_200 + 10 * DAY;
        let feb = jan + 31 * DAY;
        let customers = vec![
            // Existing: 100 in January, 80 in February.
            (vec![(jan, 100.0), (feb, 80.0)], Acquisition::Unknown),
            // Existing: 50 then nothing.
            (vec![(jan, 50.0)], Acquisition::Earned),
            // New in February: earned 30, bought 40.
            (vec![(feb, 30.0)], Acquisition::Earned),
            (vec![(feb, 40.0)], Acquisition::Bought),
        ];
        let s = earned_growth_series(&customers, TimeBucket::Month, feb + DAY);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].period, "2024-02-01");
        assert_eq!(s[0].previous_period, "2024-01-01");
        assert!(!s[0].complete);
        let g = s[0].growth.unwrap();
        // NRR = 80 / 150; earned share = 30 / 150; EGR = 110/150 − 1.
        assert!((g.nrr - 80.0 / 150.0).abs() < 1e-12);
        assert!((g.egr - (110.0 / 150.0 - 1.0)).abs() < 1e-12);
        assert_eq!((g.new_earned_customers, g.new_bought_customers), (1, 1));
        // A month without previous revenue has no rate, and says why.
        let mar = feb + 29 * DAY;
        let gap = vec![(vec![(jan, 10.0), (mar, 10.0)], Acquisition::Unknown)];
        let s = earned_growth_series(&gap, TimeBucket::Month, mar + 25 * DAY);
        assert_eq!(s.len(), 3);
        assert!(s[0].growth.is_some());
        assert!(s[1].growth.is_none() && s[1].error.is_some());
        assert!(s[1].complete && !s[2].complete);
    }
}
