//! Survey metrics (NPS, CES, CSAT) and Reichheld's earned growth rate.
//!
//! Customers answer surveys through the `Survey Answered` track event (properties `survey`,
//! `score`, `comment`, `reason`). This module turns the answers into the numbers a team
//! follows — with response counts and confidence intervals, so that a move from 42 to 45 on
//! thirty answers is not mistaken for progress — and aggregates them by any group key or
//! time bucket the caller chooses. It also splits new customers into *earned* (came through
//! referral or recommendation) and *bought* (came through advertising or promotions) and
//! computes the earned growth rate from per-customer revenue.
//!
//! Pure functions: callers pass the answers and timestamps; nothing here reads a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why survey input or configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SurveyError {
    #[error("score {score} at position {index} is outside [{min}, {max}]")]
    ScoreOutOfRange {
        index: usize,
        score: f64,
        min: f64,
        max: f64,
    },
    #[error("score {score} at position {index} must be a whole number")]
    NotAWholeNumber { index: usize, score: f64 },
    #[error("no responses")]
    NoResponses,
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("revenue at position {index} must be finite and ≥ 0, got {value}")]
    InvalidRevenue { index: usize, value: f64 },
    #[error("previous-period revenue is zero; growth rates are undefined")]
    NoPreviousRevenue,
}

/// Scales and confidence level of the survey metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SurveyConfig {
    /// Confidence level of the intervals, in (0, 1). Default 0.95.
    pub confidence: f64,
    /// CES answer scale, inclusive. Default 1–7.
    pub ces_min: f64,
    pub ces_max: f64,
    /// CSAT answer scale, inclusive, whole numbers. Default 1–5.
    pub csat_min: f64,
    pub csat_max: f64,
    /// Lowest CSAT answer that counts as satisfied. Default 4 (so 4 and 5 count).
    pub csat_satisfied_min: f64,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        Self {
            confidence: 0.95,
            ces_min: 1.0,
            ces_max: 7.0,
            csat_min: 1.0,
            csat_max: 5.0,
            csat_satisfied_min: 4.0,
        }
    }
}

impl SurveyConfig {
    /// Checks the confidence level and the scales.
    pub fn validate(&self) -> Result<(), SurveyError> {
        let bad = |m: &str| Err(SurveyError::InvalidConfig(m.into()));
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return bad("confidence must be in (0, 1)");
        }
        let finite = [
            self.ces_min,
            self.ces_max,
            self.csat_min,
            self.csat_max,
            self.csat_satisfied_min,
        ];
        if finite.iter().any(|v| !v.is_finite()) {
            return bad("scales must be finite");
        }
        if self.ces_min >= self.ces_max {
            return bad("ces_min must be below ces_max");
        }
        if self.csat_min >= self.csat_max {
            return bad("csat_min must be below csat_max");
        }
        if !(self.csat_min..=self.csat_max).contains(&self.csat_satisfied_min) {
            return bad("csat_satisfied_min must be inside the CSAT scale");
        }
        Ok(())
    }
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Complementary error function, |relative error| < 1.2e-7 (Chebyshev fit of
/// `erfc(x) = t·exp(−x² + P(t))` with `t = 1/(1 + x/2)`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The two-sided critical value `z` with `P(|Z| ≤ z) = confidence` (1.96 for 0.95), by
/// bisection on the normal CDF. `confidence` must be in (0, 1).
pub fn z_value(confidence: f64) -> f64 {
    let target = 0.5 + confidence / 2.0;
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < target {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

fn check_scores(scores: &[f64], min: f64, max: f64, whole: bool) -> Result<(), SurveyError> {
    if scores.is_empty() {
        return Err(SurveyError::NoResponses);
    }
    for (index, &score) in scores.iter().enumerate() {
        if !(score >= min && score <= max) {
            return Err(SurveyError::ScoreOutOfRange {
                index,
                score,
                min,
                max,
            });
        }
        if whole && score.fract() != 0.0 {
            return Err(SurveyError::NotAWholeNumber { index, score });
        }
    }
    Ok(())
}

/// Newcombe's hybrid score interval for the difference of two proportions
/// `s1/n1 − s2/n2` (Newcombe 1998, "Interval estimation for the difference between
/// independent proportions", method 10): built from each proportion's Wilson interval, so
/// it stays inside [−1, 1] and behaves with small groups and rates near 0 or 1. `None`
/// when a group is empty.
pub fn difference_interval(s1: usize, n1: usize, s2: usize, n2: usize, z: f64) -> Option<Interval> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (s1 as f64 / n1 as f64, s2 as f64 / n2 as f64);
    let (w1, w2) = (wilson(s1, n1, z), wilson(s2, n2, z));
    let d = p1 - p2;
    Some(Interval {
        low: d - ((p1 - w1.low).powi(2) + (w2.high - p2).powi(2)).sqrt(),
        high: d + ((w1.high - p1).powi(2) + (p2 - w2.low).powi(2)).sqrt(),
    })
}

/// Wilson score interval for a proportion, as fractions in [0, 1].
pub fn wilson(successes: usize, n: usize, z: f64) -> Interval {
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    }
}

/// Net Promoter Score of a set of 0–10 answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NpsReport {
    pub responses: usize,
    /// Answers 9–10.
    pub promoters: usize,
    /// Answers 7–8.
    pub passives: usize,
    /// Answers 0–6.
    pub detractors: usize,
    /// `100 × (promoters − detractors) / responses`, in [−100, 100].
    pub nps: f64,
    /// Standard error of `nps`, in NPS points.
    pub std_error: f64,
    /// `nps ± z·std_error`, clipped to [−100, 100].
    pub ci: Interval,
    pub confidence: f64,
}

/// Computes the NPS with a normal-approximation confidence interval.
///
/// Each answer is a value `xᵢ ∈ {+1 (promoter), 0 (passive), −1 (detractor)}` and the NPS is
/// 100 × their mean. With shares `p₊` and `p₋`, the variance of one `xᵢ` is
/// `p₊ + p₋ − (p₊ − p₋)²`, so `SE(NPS) = 100 × √((p₊ + p₋ − (p₊ − p₋)²) / n)`.
///
/// Errors: no answers, an answer outside 0–10 or not a whole number, a bad confidence level.
pub fn nps(scores: &[f64], config: &SurveyConfig) -> Result<NpsReport, SurveyError> {
    config.validate()?;
    check_scores(scores, 0.0, 10.0, true)?;
    let promoters = scores.iter().filter(|&&s| s >= 9.0).count();
    let detractors = scores.iter().filter(|&&s| s <= 6.0).count();
    let n = scores.len();
    let (pp, pd) = (promoters as f64 / n as f64, detractors as f64 / n as f64);
    let var = (pp + pd - (pp - pd).powi(2)).max(0.0);
    let std_error = 100.0 * (var / n as f64).sqrt();
    let nps = 100.0 * (pp - pd);
    let z = z_value(config.confidence);
    Ok(NpsReport {
        responses: n,
        promoters,
        passives: n - promoters - detractors,
        detractors,
        nps,
        std_error,
        ci: Interval {
            low: (nps - z * std_error).max(-100.0),
            high: (nps + z * std_error).min(100.0),
        },
        confidence: config.confidence,
    })
}

/// Customer Effort Score: the mean answer on the configured scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CesReport {
    pub responses: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 with one answer.
    pub std_dev: f64,
    pub std_error: f64,
    /// `mean ± z·s/√n`, clipped to the scale; `None` with fewer than two answers.
    pub ci: Option<Interval>,
    pub confidence: f64,
}

/// Computes the CES (mean answer) with a normal-approximation interval on the mean.
///
/// Errors: no answers, an answer outside `[ces_min, ces_max]`, a bad configuration.
pub fn ces(scores: &[f64], config: &SurveyConfig) -> Result<CesReport, SurveyError> {
    config.validate()?;
    check_scores(scores, config.ces_min, config.ces_max, false)?;
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let (std_dev, std_error, ci) = if scores.len() >= 2 {
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let sd = var.sqrt();
        let se = sd / n.sqrt();
        let z = z_value(config.confidence);
        let ci = Interval {
            low: (mean - z * se).max(config.ces_min),
            high: (mean + z * se).min(config.ces_max),
        };
        (sd, se, Some(ci))
    } else {
        (0.0, 0.0, None)
    };
    Ok(CesReport {
        responses: scores.len(),
        mean,
        std_dev,
        std_error,
        ci,
        confidence: config.confidence,
    })
}

/// Customer satisfaction: the share of satisfied answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CsatReport {
    pub responses: usize,
    /// Answers ≥ `csat_satisfied_min`.
    pub satisfied: usize,
    /// `100 × satisfied / responses`, in [0, 100].
    pub csat: f64,
    /// Wilson score interval, in percent.
    pub ci: Interval,
    pub confidence: f64,
}

/// Computes CSAT with a Wilson score interval (well-behaved near 0% and 100% and for small
/// samples, unlike `p ± z√(p(1−p)/n)`).
///
/// Errors: no answers, an answer outside `[csat_min, csat_max]` or not a whole number, a bad
/// configuration.
pub fn csat(scores: &[f64], config: &SurveyConfig) -> Result<CsatReport, SurveyError> {
    config.validate()?;
    check_scores(scores, config.csat_min, config.csat_max, true)?;
    let satisfied = scores
        .iter()
        .filter(|&&s| s >= config.csat_satisfied_min)
        .count();
    let n = scores.len();
    let w = wilson(satisfied, n, z_value(config.confidence));
    Ok(CsatReport {
        responses: n,
        satisfied,
        csat: 100.0 * satisfied as f64 / n as f64,
        ci: Interval {
            low: 100.0 * w.low,
            high: 100.0 * w.high,
        },
        confidence: config.confidence,
    })
}

/// Which metric a survey feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Nps,
    Ces,
    Csat,
}

impl Metric {
    /// The metric of a `Survey Answered` event's `survey` property (`nps`, `ces`, `csat`,
    /// case-insensitive); `None` for a custom survey.
    pub fn from_survey_name(name: &str) -> Option<Metric> {
        match name.trim().to_ascii_lowercase().as_str() {
            "nps" => Some(Metric::Nps),
            "ces" => Some(Metric::Ces),
            "csat" => Some(Metric::Csat),
            _ => None,
        }
    }
}

/// A report of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "metric")]
pub enum MetricReport {
    Nps(NpsReport),
    Ces(CesReport),
    Csat(CsatReport),
}

/// Computes one metric over a set of answers.
pub fn metric_report(
    metric: Metric,
    scores: &[f64],
    config: &SurveyConfig,
) -> Result<MetricReport, SurveyError> {
    Ok(match metric {
        Metric::Nps => MetricReport::Nps(nps(scores, config)?),
        Metric::Ces => MetricReport::Ces(ces(scores, config)?),
        Metric::Csat => MetricReport::Csat(csat(scores, config)?),
    })
}

/// Computes one metric per group. `answers` yields `(group key, score)`; any ordered key
/// works (plan, country, account manager, a time bucket from [`bucket_start`], a tuple).
/// Groups appear only when they have answers. The first invalid score fails the whole call.
pub fn report_by<K: Ord>(
    answers: impl IntoIterator<Item = (K, f64)>,
    metric: Metric,
    config: &SurveyConfig,
) -> Result<BTreeMap<K, MetricReport>, SurveyError> {
    let mut groups: BTreeMap<K, Vec<f64>> = BTreeMap::new();
    for (k, s) in answers {
        groups.entry(k).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(k, scores)| Ok((k, metric_report(metric, &scores, config)?)))
        .collect()
}

/// Calendar buckets for trends, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeBucket {
    Day,
    /// ISO weeks, starting Monday 00:00 UTC.
    Week,
    Month,
    Quarter,
    Year,
}

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1–12).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Count from 0000-03-01 so that the leap day is the last day of the "year".
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12) of a day count since 1970-01-01.
fn year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The start (Unix seconds, UTC) of the bucket holding `timestamp` (Unix seconds).
pub fn bucket_start(timestamp: i64, bucket: TimeBucket) -> i64 {
    let days = timestamp.div_euclid(DAY);
    let start_day = match bucket {
        TimeBucket::Day => days,
        // 1970-01-01 was a Thursday: shift so that Monday is 0.
        TimeBucket::Week => days - (days + 3).rem_euclid(7),
        TimeBucket::Month | TimeBucket::Quarter | TimeBucket::Year => {
            let (y, m) = year_month(days);
            let m = match bucket {
                TimeBucket::Month => m,
                TimeBucket::Quarter => (m - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(y, m, 1)
        }
    };
    start_day.saturating_mul(DAY)
}

/// Computes one metric per time bucket from `(timestamp, score)` answers; keys are bucket
/// starts in Unix seconds (UTC).
pub fn report_by_time(
    answers: impl IntoIterator<Item = (i64, f64)>,
    bucket: TimeBucket,
    metric: Metric,
    config: &SurveyConfig,
) -> Result<BTreeMap<i64, MetricReport>, SurveyError> {
    report_by(
        answers
            .into_iter()
            .map(|(t, s)| (bucket_start(t, bucket), s)),
        metric,
        config,
    )
}

/// How a new customer came to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acquisition {
    /// Came because someone recommended us: referral, word of mouth.
    Earned,
    /// Came because we paid: advertising, promotions, sales push.
    Bought,
    Unknown,
}

/// Keyword phrases that classify a new customer's stated `reason`.
///
/// Matching is case-insensitive and by whole words: the reason and each phrase are cut into
/// words (letters and digits); a phrase matches when its words appear consecutively in the
/// reason. So `ad` matches "saw an ad" but not "my dad". A reason matching phrases of both
/// lists, or of neither, is [`Acquisition::Unknown`] — ambiguity never inflates earned growth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcquisitionMapping {
    pub earned: Vec<String>,
    pub bought: Vec<String>,
}

impl Default for AcquisitionMapping {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Self {
            earned: v(&[
                "referral",
                "referred",
                "refer",
                "recommendation",
                "recommended",
                "recommend",
                "word of mouth",
                "friend",
                "friends",
                "colleague",
                "colleagues",
                "family",
                "heard about",
                "told me",
                "review",
                "reviews",
                "reputation",
                "repeat",
                "returning",
            ]),
            bought: v(&[
                "ad",
                "ads",
                "advert",
                "advertising",
                "advertisement",
                "commercial",
                "banner",
                "promotion",
                "promo",
                "promo code",
                "discount",
                "coupon",
                "voucher",
                "deal",
                "sale",
                "sales",
                "salesperson",
                "sales call",
                "cold call",
                "campaign",
                "sponsored",
                "paid search",
                "billboard",
                "influencer",
                "affiliate",
            ]),
        }
    }
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn contains_phrase(haystack: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && haystack.windows(phrase.len()).any(|w| w == phrase)
}

impl AcquisitionMapping {
    /// Errors when a phrase has no word in it (it could never match).
    pub fn validate(&self) -> Result<(), SurveyError> {
        for p in self.earned.iter().chain(&self.bought) {
            if words(p).is_empty() {
                return Err(SurveyError::InvalidConfig(format!(
                    "acquisition phrase {p:?} has no words"
                )));
            }
        }
        Ok(())
    }

    /// Classifies a new customer's stated reason.
    pub fn classify(&self, reason: &str) -> Acquisition {
        let text = words(reason);
        let any = |list: &[String]| list.iter().any(|p| contains_phrase(&text, &words(p)));
        match (any(&self.earned), any(&self.bought)) {
            (true, false) => Acquisition::Earned,
            (false, true) => Acquisition::Bought,
            _ => Acquisition::Unknown,
        }
    }
}

/// One customer's revenue in two consecutive periods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CustomerRevenue {
    /// Revenue in the previous period; > 0 makes this an existing customer.
    pub previous: f64,
    /// Revenue in the current period.
    pub current: f64,
    /// How the customer was acquired; used only for new customers (`previous == 0`).
    pub acquisition: Acquisition,
}

/// Earned growth and its parts. Rates are fractions: 1.05 means 105%.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarnedGrowth {
    /// Total revenue of the previous period (all from existing customers by definition).
    pub previous_revenue: f64,
    /// Current-period revenue from customers who had revenue in the previous period.
    pub retained_revenue: f64,
    /// Current-period revenue from new customers, by acquisition.
    pub new_earned_revenue: f64,
    pub new_bought_revenue: f64,
    pub new_unknown_revenue: f64,
    pub existing_customers: usize,
    pub new_earned_customers: usize,
    pub new_bought_customers: usize,
    pub new_unknown_customers: usize,
    /// Net revenue retention: `retained_revenue / previous_revenue`.
    pub nrr: f64,
    /// `new_earned_revenue / previous_revenue`.
    pub earned_new_share: f64,
    /// Earned growth rate: `nrr + earned_new_share − 1`.
    pub egr: f64,
}

/// Computes the earned growth rate (Reichheld): net revenue retention plus revenue from
/// earned new customers as a share of last period's revenue, minus 100%.
///
/// A customer with previous revenue > 0 is existing; one with previous revenue 0 and current
/// revenue > 0 is new (a returning former customer counts as new). Customers with neither are
/// ignored. Errors: a negative or non-finite revenue, or no previous-period revenue.
pub fn earned_growth(customers: &[CustomerRevenue]) -> Result<EarnedGrowth, SurveyError> {
    let mut g = EarnedGrowth {
        previous_revenue: 0.0,
        retained_revenue: 0.0,
        new_earned_revenue: 0.0,
        new_bought_revenue: 0.0,
        new_unknown_revenue: 0.0,
        existing_customers: 0,
        new_earned_customers: 0,
        new_bought_customers: 0,
        new_unknown_customers: 0,
        nrr: 0.0,
        earned_new_share: 0.0,
        egr: 0.0,
    };
    for (index, c) in customers.iter().enumerate() {
        for value in [c.previous, c.current] {
            if !value.is_finite() || value < 0.0 {
                return Err(SurveyError::InvalidRevenue { index, value });
            }
        }
        if c.previous > 0.0 {
            g.existing_customers += 1;
            g.previous_revenue += c.previous;
            g.retained_revenue += c.current;
        } else if c.current > 0.0 {
            match c.acquisition {
                Acquisition::Earned => {
                    g.new_earned_customers += 1;
                    g.new_earned_revenue += c.current;
                }
                Acquisition::Bought => {
                    g.new_bought_customers += 1;
                    g.new_bought_revenue += c.current;
                }
                Acquisition::Unknown => {
                    g.new_unknown_customers += 1;
                    g.new_unknown_revenue += c.current;
                }
            }
        }
    }
    if g.previous_revenue <= 0.0 {
        return Err(SurveyError::NoPreviousRevenue);
    }
    g.nrr = g.retained_revenue / g.previous_revenue;
    g.earned_new_share = g.new_earned_revenue / g.previous_revenue;
    g.egr = g.nrr + g.earned_new_share - 1.0;
    Ok(g)
}

#[cfg(test)]
mod tests {

    #[test]
    fn newcombe_differences_match_the_paper() {
        // Newcombe (1998), Table II, method 10: 56/70 − 48/80 and 9/10 − 3/10.
        let a = difference_interval(56, 70, 48, 80, 1.959964).unwrap();
        assert!(
            (a.low - 0.0524).abs() < 5e-4 && (a.high - 0.3339).abs() < 5e-4,
            "{a:?}"
        );
        let b = difference_interval(9, 10, 3, 10, 1.959964).unwrap();
        assert!(
            (b.low - 0.1705).abs() < 5e-4 && (b.high - 0.8090).abs() < 5e-4,
            "{b:?}"
        );
        assert!(difference_interval(1, 0, 1, 2, 1.96).is_none());
    }
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn z_values() {
        assert!(close(z_value(0.95), 1.959_964, 1e-5), "{}", z_value(0.95));
        assert!(close(z_value(0.90), 1.644_854, 1e-5));
        assert!(close(z_value(0.99), 2.575_829, 1e-5));
    }

    #[test]
    fn nps_known_answer() {
        // 5 promoters, 3 passives, 2 detractors → NPS 30.
        let s = [10., 9., 9., 10., 9., 7., 8., 8., 3., 6.];
        let r = nps(&s, &SurveyConfig::default()).unwrap();
        assert_eq!(
            (r.promoters, r.passives, r.detractors, r.responses),
            (5, 3, 2, 10)
        );
        assert!(close(r.nps, 30.0, 1e-12));
        // Var = 0.5 + 0.2 − 0.09 = 0.61; SE = 100·√(0.061).
        assert!(close(r.std_error, 100.0 * 0.061f64.sqrt(), 1e-9));
        assert!(close(r.ci.low, 30.0 - 1.959_964 * r.std_error, 1e-3));
        let all_promoters = nps(&[10.0; 4], &SurveyConfig::default()).unwrap();
        assert_eq!(all_promoters.nps, 100.0);
        assert_eq!(
            all_promoters.ci,
            Interval {
                low: 100.0,
                high: 100.0
            }
        );
    }

    #[test]
    fn nps_errors() {
        let c = SurveyConfig::default();
        assert_eq!(nps(&[], &c), Err(SurveyError::NoResponses));
        assert!(matches!(
            nps(&[11.0], &c),
            Err(SurveyError::ScoreOutOfRange { .. })
        ));
        assert!(matches!(
            nps(&[-1.0], &c),
            Err(SurveyError::ScoreOutOfRange { .. })
        ));
        assert!(matches!(
            nps(&[f64::NAN], &c),
            Err(SurveyError::ScoreOutOfRange { .. })
        ));
        assert!(matches!(
            nps(&[7.5], &c),
            Err(SurveyError::NotAWholeNumber { .. })
        ));
        let bad = SurveyConfig {
            confidence: 1.0,
            ..c
        };
        assert!(matches!(
            nps(&[7.0], &bad),
            Err(SurveyError::InvalidConfig(_))
        ));
    }

    #[test]
    fn ces_and_csat_known_answers() {
        let c = SurveyConfig::default();
        let r = ces(&[2.0, 4.0, 6.0], &c).unwrap();
        assert!(close(r.mean, 4.0, 1e-12) && close(r.std_dev, 2.0, 1e-12));
        let ci = r.ci.unwrap();
        assert!(close(ci.high - r.mean, 1.959_964 * 2.0 / 3f64.sqrt(), 1e-4));
        assert!(ces(&[5.0], &c).unwrap().ci.is_none());
        assert!(ces(&[8.0], &c).is_err());

        let r = csat(&[5.0, 4.0, 3.0, 1.0], &c).unwrap();
        assert_eq!(r.satisfied, 2);
        assert_eq!(r.csat, 50.0);
        // Wilson 95% for 2/4: [15.0%, 85.0%].
        assert!(
            close(r.ci.low, 15.0, 0.1) && close(r.ci.high, 85.0, 0.1),
            "{:?}",
            r.ci
        );
        let ten = SurveyConfig {
            csat_min: 0.0,
            csat_max: 10.0,
            csat_satisfied_min: 8.0,
            ..c
        };
        assert_eq!(csat(&[8.0, 7.0], &ten).unwrap().csat, 50.0);
        assert!(matches!(
            csat(&[6.0], &c),
            Err(SurveyError::ScoreOutOfRange { .. })
        ));
        let wrong = SurveyConfig {
            csat_satisfied_min: 6.0,
            ..c
        };
        assert!(csat(&[5.0], &wrong).is_err());
    }

    #[test]
    fn group_and_time_aggregation() {
        let c = SurveyConfig::default();
        let answers = vec![("pro", 10.0), ("basic", 3.0), ("pro", 9.0), ("basic", 9.0)];
        let r = report_by(answers, Metric::Nps, &c).unwrap();
        let MetricReport::Nps(pro) = r["pro"] else {
            panic!()
        };
        let MetricReport::Nps(basic) = r["basic"] else {
            panic!()
        };
        assert_eq!((pro.nps, basic.nps), (100.0, 0.0));

        // 2024-02-29 12:00 UTC is a Thursday.
        let t = 1_709_208_000;
        assert_eq!(bucket_start(t, TimeBucket::Day), 1_709_164_800); // 2024-02-29
        assert_eq!(bucket_start(t, TimeBucket::Week), 1_708_905_600); // Mon 2024-02-26
        assert_eq!(bucket_start(t, TimeBucket::Month), 1_706_745_600); // 2024-02-01
        assert_eq!(bucket_start(t, TimeBucket::Quarter), 1_704_067_200); // 2024-01-01
        assert_eq!(bucket_start(t, TimeBucket::Year), 1_704_067_200);
        assert_eq!(bucket_start(-1, TimeBucket::Month), -2_678_400); // 1969-12-01
        let by_month = report_by_time(
            [(t, 5.0), (t + 40 * DAY, 4.0), (t, 1.0)],
            TimeBucket::Month,
            Metric::Csat,
            &c,
        )
        .unwrap();
        assert_eq!(by_month.len(), 2);
        assert!(matches!(by_month[&1_706_745_600], MetricReport::Csat(r) if r.csat == 50.0));
        assert_eq!(Metric::from_survey_name(" NPS "), Some(Metric::Nps));
        assert_eq!(Metric::from_survey_name("onboarding"), None);
    }

    #[test]
    fn calendar_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m) = year_month(days);
            let first = days_from_civil(y, m, 1);
            assert!(first <= days && days - first < 31, "{days} {y} {m}");
        }
    }

    #[test]
    fn acquisition_classification() {
        let m = AcquisitionMapping::default();
        assert_eq!(m.classify("A friend recommended you"), Acquisition::Earned);
        assert_eq!(m.classify("WORD OF MOUTH"), Acquisition::Earned);
        assert_eq!(m.classify("Saw an ad on TV"), Acquisition::Bought);
        assert_eq!(
            m.classify("promo code in a newsletter"),
            Acquisition::Bought
        );
        assert_eq!(m.classify("my dad uses it"), Acquisition::Unknown); // not "ad"
        assert_eq!(
            m.classify("friend sent me a discount"),
            Acquisition::Unknown
        ); // both
        assert_eq!(m.classify(""), Acquisition::Unknown);
        let custom = AcquisitionMapping {
            earned: vec!["Podcast".into()],
            bought: vec![],
        };
        assert_eq!(
            custom.classify("heard it on a podcast"),
            Acquisition::Earned
        );
        assert!(
            AcquisitionMapping {
                earned: vec!["  ".into()],
                bought: vec![]
            }
            .validate()
            .is_err()
        );
        assert!(m.validate().is_ok());
    }

    #[test]
    fn earned_growth_known_answer() {
        let c = |previous, current, acquisition| CustomerRevenue {
            previous,
            current,
            acquisition,
        };
        let customers = [
            c(100.0, 110.0, Acquisition::Unknown), // existing, expanded
            c(100.0, 0.0, Acquisition::Earned),    // churned (acquisition ignored)
            c(0.0, 30.0, Acquisition::Earned),
            c(0.0, 50.0, Acquisition::Bought),
            c(0.0, 10.0, Acquisition::Unknown),
            c(0.0, 0.0, Acquisition::Earned), // ignored
        ];
        let g = earned_growth(&customers).unwrap();
        assert_eq!(g.previous_revenue, 200.0);
        assert!(close(g.nrr, 0.55, 1e-12));
        assert!(close(g.earned_new_share, 0.15, 1e-12));
        assert!(close(g.egr, -0.30, 1e-12));
        assert_eq!((g.existing_customers, g.new_earned_customers), (2, 1));
        assert_eq!((g.new_bought_customers, g.new_unknown_customers), (1, 1));
        assert_eq!(g.new_bought_revenue, 50.0);
        assert_eq!(
            earned_growth(&[c(0.0, 5.0, Acquisition::Earned)]),
            Err(SurveyError::NoPreviousRevenue)
        );
        assert!(matches!(
            earned_growth(&[c(-1.0, 5.0, Acquisition::Earned)]),
            Err(SurveyError::InvalidRevenue { index: 0, .. })
        ));
    }
}
