//! Health scores on live data, and the alerts customer-success teams act on.
//!
//! Each run computes every profile's score from its recent activity, support tickets,
//! latest NPS answer, the stored `p_alive` and `churn_risk`, and the renewal date trait,
//! compares it with the score of the previous run (kept in `model.health`) and appends an
//! alert to the `model.alert` feed when the score fell into a worse band, or when a renewal
//! is near with a low score (once per renewal date). Each alert says why: which components
//! pulled the score down, by how many points.

use super::collect::{ProfileData, Wanted, collect, count_between};
use super::{
    ALERT_FEED, FitSummary, ModelKind, ModelScores, ModelsConfig, NS_ALERT, NS_HEALTH, Progress,
    ScoreWriter, corrupt, fin, num, rfc3339,
};
use crate::EngineError;
use rapport_core::event::parse_timestamp;
use rapport_store::{StateStore, StateWrite, Store};
use rapport_value::health::{
    AlertKind, ComponentChange, HealthAlert, HealthError, HealthInputs, HealthScore, detect_alerts,
    health_score,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const DAY: i64 = 86_400;
/// Lowest-scoring profiles listed in a run's summary.
const LOWEST: usize = 20;
/// Alerts listed with the health report.
const RECENT_ALERTS: usize = 20;

/// What a run keeps of a profile's score for the next one.
#[derive(Debug, Serialize, Deserialize)]
struct Previous {
    score: HealthScore,
    /// The renewal date a renewal alert was raised for (raised once per date).
    #[serde(default)]
    renewal_alerted: Option<String>,
}

fn wanted(config: &ModelsConfig) -> Wanted {
    Wanted {
        survey_event: config.survey_event.clone(),
        activity: true,
        support_events: config.health.support_events.clone(),
        answers: true,
        ..Wanted::default()
    }
}

/// The health inputs by name, with what to do when no profile has one.
const INPUTS: [(&str, &str); 6] = [
    (
        "activity_trend",
        "no activity in the last 60 days on any profile",
    ),
    ("support_tickets", ""),
    (
        "nps",
        "no survey answer with a score (`models.survey_event`)",
    ),
    (
        "p_alive",
        "run `rapport fit clv` (a CLV fit the data cannot support writes none)",
    ),
    (
        "churn_risk",
        "run `rapport fit churn` (a churn model the data cannot support writes none)",
    ),
    (
        "days_to_renewal",
        "no profile has the renewal date trait (`models.health.renewal_trait`)",
    ),
];

/// [`HealthInputs`] in the order of [`INPUTS`].
fn input_values(i: &HealthInputs) -> [Option<f64>; 6] {
    [
        i.activity_trend,
        i.support_tickets,
        i.nps,
        i.p_alive,
        i.churn_risk,
        i.days_to_renewal,
    ]
}

/// `name n/total` for every input.
fn coverage(have: &[usize], total: usize) -> String {
    INPUTS
        .iter()
        .zip(have)
        .map(|((name, _), n)| format!("{name} {n}/{total}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The raw health inputs of a profile as of `now` (Unix seconds). Activity trend is the
/// change of events in the last 30 days over the 30 before (from nothing to something counts
/// as +100%); unknown when both are empty.
pub fn health_inputs(
    data: &ProfileData,
    scores: Option<&Map<String, Value>>,
    renewal_trait: &str,
    now: i64,
) -> HealthInputs {
    let e30 = count_between(&data.activity, now - 30 * DAY, now);
    let prev30 = count_between(&data.activity, now - 60 * DAY, now - 30 * DAY);
    let score = |k: &str| scores.and_then(|s| s.get(k)).and_then(Value::as_f64);
    HealthInputs {
        activity_trend: (e30 + prev30 > 0)
            .then(|| (e30 as f64 - prev30 as f64) / prev30.max(1) as f64),
        support_tickets: Some(count_between(&data.support, now - 90 * DAY, now) as f64),
        nps: data.latest_nps(now),
        p_alive: score("p_alive"),
        churn_risk: score("churn_risk"),
        days_to_renewal: renewal(data, renewal_trait).map(|(_, t)| (t - now) as f64 / DAY as f64),
    }
}

/// The renewal date trait, as written and in Unix seconds.
fn renewal(data: &ProfileData, renewal_trait: &str) -> Option<(String, i64)> {
    let text = data.traits.get(renewal_trait)?.as_str()?;
    Some((text.to_owned(), parse_timestamp(text)?.timestamp()))
}

/// A sentence saying why an alert was raised.
pub fn alert_reason(alert: &HealthAlert) -> String {
    let mut reason = match &alert.kind {
        AlertKind::BandDropped {
            from,
            to,
            threshold,
        } => format!("health fell from {from} to {to} (below {threshold})"),
        AlertKind::RenewalAtRisk {
            days_to_renewal,
            min_score,
        } => format!(
            "renewal in {days_to_renewal:.0} days with a health score of {:.0} (below {min_score})",
            alert.score
        ),
    };
    let drops: Vec<String> = alert
        .changes
        .iter()
        .filter(|c| c.delta_points < 0.0)
        .take(3)
        .map(|c| {
            let name = serde_json::to_value(c.component)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{name} {:+.1} points", c.delta_points)
        })
        .collect();
    if !drops.is_empty() {
        reason.push_str("; largest drops: ");
        reason.push_str(&drops.join(", "));
    }
    reason
}

/// Alert keys sort by time, then by their order within a run.
fn alert_key(at_ms: i64, seq: u32) -> Vec<u8> {
    let mut k = (at_ms as u64).to_be_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Scores every profile's health as of `now_ms`, raises alerts, writes `health_score` and
/// `health_band`, and returns a summary of the run.
pub fn run_health(
    store: &dyn Store,
    config: &ModelsConfig,
    now_ms: i64,
    progress: &Progress,
    writer: &ScoreWriter,
) -> Result<HealthRun, EngineError> {
    let health = config.health_config()?;
    let collected = collect(store, &wanted(config), progress)?;
    let now = now_ms.div_euclid(1000);
    progress.phase("scoring", collected.profiles.len() as u64);
    let scores_store = ModelScores { store };
    let scored_at = rfc3339(now_ms);
    let mut updates = Vec::new();
    let mut writes = Vec::new();
    let mut seq = 0u32;
    let mut band_counts = vec![0usize; health.bands().len()];
    let mut all: Vec<(f64, &str, usize)> = Vec::new();
    let mut skipped = 0usize;
    let mut unscored = Vec::new();
    // Profiles that have each input, in the order of `INPUTS`.
    let mut have = [0usize; INPUTS.len()];
    for (id, data) in &collected.profiles {
        progress.add(1);
        let scores = scores_store.scores(id)?;
        let inputs = health_inputs(data, scores.as_ref(), &config.health.renewal_trait, now);
        let known = input_values(&inputs);
        for (n, v) in have.iter_mut().zip(&known) {
            *n += usize::from(v.is_some());
        }
        let signals = known
            .iter()
            .zip(INPUTS)
            .filter(|(v, (name, _))| v.is_some() && *name != "support_tickets")
            .count();
        if signals < config.health.min_inputs {
            skipped += 1;
            if scores
                .as_ref()
                .is_some_and(|s| s.contains_key("health_score"))
            {
                unscored.push(id.clone());
            }
            continue;
        }
        let score = match health_score(&inputs, &health) {
            Ok(s) => s,
            Err(HealthError::NoComponentPresent) => {
                skipped += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(profile = %id, error = %e, "health score skipped");
                skipped += 1;
                continue;
            }
        };
        let previous: Option<Previous> = store
            .state_get(NS_HEALTH, id, b"")?
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .transpose()?;
        let renewal_date = renewal(data, &config.health.renewal_trait).map(|r| r.0);
        let mut renewal_alerted = previous.as_ref().and_then(|p| p.renewal_alerted.clone());
        for alert in detect_alerts(
            previous.as_ref().map(|p| &p.score),
            &score,
            inputs.days_to_renewal,
            &health,
        ) {
            if matches!(alert.kind, AlertKind::RenewalAtRisk { .. }) {
                if renewal_alerted.is_some() && renewal_alerted == renewal_date {
                    continue;
                }
                renewal_alerted.clone_from(&renewal_date);
            }
            let key = alert_key(now_ms, seq);
            seq += 1;
            let value = Alert {
                id: hex(&key),
                at: scored_at.clone(),
                profile: id.clone(),
                kind: kind_name(&alert.kind).into(),
                score: fin(alert.score),
                previous_score: alert.previous_score.and_then(fin),
                band: score.band.clone(),
                previous_band: previous.as_ref().map(|p| p.score.band.clone()),
                reason: alert_reason(&alert),
                details: alert.kind,
                changes: alert.changes,
            };
            writes.push(StateWrite {
                namespace: NS_ALERT.into(),
                profile: ALERT_FEED.into(),
                key,
                value: Some(serde_json::to_vec(&value).expect("JSON")),
            });
        }
        band_counts[score.band_index] += 1;
        all.push((score.score, id.as_str(), score.band_index));
        let mut m = Map::new();
        m.insert("health_score".into(), num(score.score));
        m.insert("health_band".into(), Value::from(score.band.clone()));
        m.insert("scored_at".into(), Value::from(scored_at.clone()));
        updates.push((id.clone(), m));
        writes.push(StateWrite {
            namespace: NS_HEALTH.into(),
            profile: id.clone(),
            key: Vec::new(),
            value: Some(
                serde_json::to_vec(&Previous {
                    score,
                    renewal_alerted,
                })
                .expect("JSON"),
            ),
        });
        if writes.len() >= super::WRITE_BATCH {
            store.state_commit(&writes, None)?;
            writes.clear();
            progress.check()?;
        }
    }
    let read = collected.profiles.len();
    if updates.is_empty() {
        return Err(EngineError::InsufficientData(format!(
            "none of the {read} profiles read has {} or more health inputs known besides the ticket count ({}; `models.health.min_inputs`); scores not written",
            config.health.min_inputs,
            coverage(&have, read)
        )));
    }
    store.state_commit(&writes, None)?;
    progress.phase("writing scores", updates.len() as u64);
    let mut warnings = Vec::new();
    if skipped > 0 {
        warnings.push(format!(
            "{skipped} of {read} profiles have fewer than {} health inputs known besides the ticket count and were not scored",
            config.health.min_inputs
        ));
    }
    for ((name, hint), n) in INPUTS.iter().zip(&have) {
        if *n == 0 && !hint.is_empty() {
            warnings.push(format!("no profile has `{name}`: {hint}"));
        }
    }
    // Profiles no longer scorable lose their old score rather than keep a stale one.
    let cleared = unscored.into_iter().map(|id| {
        let mut m = Map::new();
        m.insert("health_score".into(), Value::Null);
        m.insert("health_band".into(), Value::Null);
        (id, m)
    });
    let scored = updates.len();
    writer.merge(store, updates.into_iter().chain(cleared), progress)?;
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    let mean = all.iter().map(|a| a.0).sum::<f64>() / all.len().max(1) as f64;
    let bands = health
        .bands()
        .iter()
        .zip(&band_counts)
        .map(|(b, &n)| (b.name.clone(), n))
        .collect();
    Ok(HealthRun {
        profiles_read: read,
        profiles_scored: scored,
        profiles_without_signals: skipped,
        inputs_known: INPUTS
            .iter()
            .zip(&have)
            .map(|((name, _), n)| ((*name).to_owned(), *n))
            .collect(),
        warnings,
        mean_score: fin(mean),
        bands,
        alerts_raised: seq,
        lowest: all
            .iter()
            .take(LOWEST)
            .map(|(s, id, b)| LowScore {
                profile: (*id).to_owned(),
                score: fin(*s),
                band: health.bands()[*b].name.clone(),
            })
            .collect(),
        events_read: collected.events_read,
        unattributed_events: collected.unattributed,
        model: ModelKind::Health,
        fitted_at: rfc3339(now_ms),
        duration_ms: 0,
    })
}

/// `band_dropped` or `renewal_at_risk`: the tag of an alert's details.
fn kind_name(kind: &AlertKind) -> &'static str {
    match kind {
        AlertKind::BandDropped { .. } => "band_dropped",
        AlertKind::RenewalAtRisk { .. } => "renewal_at_risk",
    }
}

/// A profile among the lowest health scores of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowScore {
    pub profile: String,
    pub score: Option<f64>,
    pub band: String,
}

/// The summary of a health run, as `model.fit` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthRun {
    #[serde(default)]
    pub profiles_read: usize,
    pub profiles_scored: usize,
    pub profiles_without_signals: usize,
    /// Profiles that have each input, in the order of the inputs.
    #[serde(default, with = "super::counts")]
    pub inputs_known: Vec<(String, usize)>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub mean_score: Option<f64>,
    /// Profiles per band, best band first.
    #[serde(with = "super::counts")]
    pub bands: Vec<(String, usize)>,
    pub alerts_raised: u32,
    pub lowest: Vec<LowScore>,
    pub events_read: u64,
    pub unattributed_events: u64,
    pub model: ModelKind,
    pub fitted_at: String,
    pub duration_ms: u64,
}

/// One alert of the feed, as `model.alert` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Hex of the feed key (time, then order within the run).
    pub id: String,
    pub at: String,
    pub profile: String,
    /// The tag of `details`: `band_dropped` or `renewal_at_risk`.
    pub kind: String,
    pub score: Option<f64>,
    pub previous_score: Option<f64>,
    pub band: String,
    pub previous_band: Option<String>,
    pub reason: String,
    pub details: AlertKind,
    pub changes: Vec<ComponentChange>,
}

/// One page of the alert feed.
#[derive(Debug, Serialize)]
pub struct AlertPage {
    pub data: Vec<Alert>,
    /// Pass as `after` to get the alerts that follow (the id of the last one listed, or the
    /// `after` given when there is nothing new).
    pub next_after: Option<String>,
}

/// Alerts after the one with id `after` (oldest first), at most `limit`.
pub fn alerts(
    store: &dyn StateStore,
    after: Option<&str>,
    limit: usize,
) -> Result<AlertPage, EngineError> {
    let after_key = match after {
        Some(a) => {
            Some(
                unhex(a)
                    .filter(|k| k.len() == 12)
                    .ok_or_else(|| EngineError::Invalid {
                        field: "after",
                        message: "`after` must be the id of an alert this API returned".into(),
                    })?,
            )
        }
        None => None,
    };
    let mut data = Vec::new();
    let mut last = after.map(str::to_owned);
    for (k, v) in store.state_scan(NS_ALERT, ALERT_FEED)? {
        if after_key.as_ref().is_some_and(|a| &k <= a) {
            continue;
        }
        if data.len() == limit {
            break;
        }
        last = Some(hex(&k));
        data.push(serde_json::from_slice(&v).map_err(corrupt)?);
    }
    Ok(AlertPage {
        data,
        next_after: last,
    })
}

/// The latest health run's summary with the most recent alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    #[serde(flatten)]
    pub summary: HealthRun,
    /// Newest first.
    pub recent_alerts: Vec<Alert>,
}

/// The latest health run's summary with the most recent alerts.
pub fn health_report(store: &dyn Store) -> Result<HealthReport, EngineError> {
    let Some(FitSummary::Health(summary)) = ModelScores { store }.latest_fit(ModelKind::Health)?
    else {
        return Err(EngineError::NotFound(
            "no health scores yet: run `rapport fit health` first".into(),
        ));
    };
    let feed = store.state_scan(NS_ALERT, ALERT_FEED)?;
    let recent_alerts = feed
        .iter()
        .rev()
        .take(RECENT_ALERTS)
        .map(|(_, v)| serde_json::from_slice(v).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    Ok(HealthReport {
        summary,
        recent_alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::collect::SurveyAnswer;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn inputs_from_history_and_stored_scores() {
        let now = 1_000 * DAY;
        let data = ProfileData {
            traits: Arc::new(
                json!({"renewal_date": "1970-10-27T00:00:00Z"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            first_seen: Some(0),
            activity: vec![now - 45 * DAY, now - 40 * DAY, now - 10 * DAY],
            support: vec![now - DAY, now - 100 * DAY],
            answers: vec![
                SurveyAnswer {
                    timestamp: now - 5 * DAY,
                    survey: "NPS".into(),
                    score: Some(3.0),
                    reason: None,
                },
                SurveyAnswer {
                    timestamp: now - 50 * DAY,
                    survey: "nps".into(),
                    score: Some(9.0),
                    reason: None,
                },
            ],
            ..ProfileData::default()
        };
        let scores = json!({"p_alive": 0.4, "churn_risk": 0.7});
        let i = health_inputs(&data, scores.as_object(), "renewal_date", now);
        assert_eq!(i.activity_trend, Some(-0.5));
        assert_eq!(i.support_tickets, Some(1.0));
        assert_eq!(i.nps, Some(3.0));
        assert_eq!((i.p_alive, i.churn_risk), (Some(0.4), Some(0.7)));
        // 1970-10-27 is day 299.
        assert_eq!(i.days_to_renewal, Some(299.0 - 1000.0));
        let quiet = health_inputs(&ProfileData::default(), None, "renewal_date", now);
        assert_eq!(quiet.activity_trend, None);
    }

    #[test]
    fn alert_ids_round_trip_and_sort_by_time() {
        let a = alert_key(1_700_000_000_000, 7);
        assert_eq!(unhex(&hex(&a)).unwrap(), a);
        assert!(alert_key(1_700_000_000_000, 9) < alert_key(1_700_000_000_001, 0));
        assert!(unhex("zz").is_none());
    }
}
