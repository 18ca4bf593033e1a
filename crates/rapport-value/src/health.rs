//! Customer health score: one 0–100 number and a band that customer-success teams act on.
//!
//! Rapport already knows many signals about an account — activity trend, support load, the
//! latest NPS answer, P(alive) from the CLV models, churn risk from [`crate::churn`] and the
//! days left until renewal. This module blends them into a single, explainable score:
//!
//! 1. each present component's raw value is mapped to `[0, 1]` by a piecewise-linear
//!    [`Normalisation`] with configurable thresholds and direction;
//! 2. the score is `100 × Σ wᵢ nᵢ / Σ wᵢ` over the **present** components only — a missing
//!    component is left out and the others are re-weighted, never imputed; the share of
//!    configured weight that was present is reported as `coverage`;
//! 3. the score falls in the first configured [`Band`] whose `min_score` it reaches.
//!
//! [`detect_alerts`] compares a new score with the previous one and says when to act (the
//! band got worse, or a renewal is near with a low score) and why: which components moved,
//! largest contributors to the drop first. Everything is pure: no clock, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The signals a health score can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Change of activity, e.g. (events last 30 days − previous 30) / previous 30.
    ActivityTrend,
    /// Open or recent support tickets.
    SupportTickets,
    /// Latest NPS answer, 0–10.
    Nps,
    /// Probability the customer is still active (BG/NBD, Pareto/NBD).
    PAlive,
    /// Probability of churn from the churn model.
    ChurnRisk,
    /// Days until the contract renews.
    DaysToRenewal,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::ActivityTrend,
        Component::SupportTickets,
        Component::Nps,
        Component::PAlive,
        Component::ChurnRisk,
        Component::DaysToRenewal,
    ];
}

/// Whether a larger raw value is healthier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

/// Maps a raw value to `[0, 1]`, linear between two thresholds and clamped outside.
///
/// With `HigherIsBetter`, `raw ≤ low` gives 0 and `raw ≥ high` gives 1; with `LowerIsBetter`,
/// `raw ≤ low` gives 1 and `raw ≥ high` gives 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    pub low: f64,
    pub high: f64,
    pub direction: Direction,
}

impl Normalisation {
    pub fn apply(&self, raw: f64) -> f64 {
        let t = ((raw - self.low) / (self.high - self.low)).clamp(0.0, 1.0);
        match self.direction {
            Direction::HigherIsBetter => t,
            Direction::LowerIsBetter => 1.0 - t,
        }
    }
}

/// One weighted component of the score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComponentConfig {
    pub component: Component,
    /// Relative weight, ≥ 0; weights need not sum to 1 (they are divided by their sum).
    pub weight: f64,
    pub normalisation: Normalisation,
}

/// A named score band, e.g. `healthy` from 70.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub name: String,
    pub min_score: f64,
}

/// When to raise alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertConfig {
    /// A renewal this many days away or fewer is "approaching".
    pub renewal_window_days: f64,
    /// An approaching renewal with a score below this raises an alert.
    pub renewal_min_score: f64,
    /// Component moves smaller than this many score points are left out of the reasons.
    pub min_component_change: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            renewal_window_days: 60.0,
            renewal_min_score: 60.0,
            min_component_change: 0.5,
        }
    }
}

/// A validated health-score configuration. Deserialising validates too, so a stored config
/// that loads is a config that works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HealthConfigSpec", into = "HealthConfigSpec")]
pub struct HealthConfig {
    components: Vec<ComponentConfig>,
    bands: Vec<Band>,
    alerts: AlertConfig,
}

/// The unvalidated shape of [`HealthConfig`], as written in a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthConfigSpec {
    pub components: Vec<ComponentConfig>,
    /// Bands from best to worst; the last one must start at 0.
    pub bands: Vec<Band>,
    #[serde(default)]
    pub alerts: AlertConfig,
}

/// Why a configuration or an input was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HealthError {
    #[error("no components configured")]
    NoComponents,
    #[error("component {0:?} is configured twice")]
    DuplicateComponent(Component),
    #[error("weight of {component:?} must be finite and ≥ 0, got {weight}")]
    InvalidWeight { component: Component, weight: f64 },
    #[error("all component weights are zero")]
    ZeroTotalWeight,
    #[error("normalisation of {component:?} needs finite low < high, got {low} and {high}")]
    InvalidThresholds {
        component: Component,
        low: f64,
        high: f64,
    },
    #[error("no bands configured")]
    NoBands,
    #[error("band `{name}`: {reason}")]
    InvalidBand { name: String, reason: String },
    #[error("invalid alert settings: {0}")]
    InvalidAlertConfig(String),
    #[error("raw value of {component:?} is not finite: {value}")]
    NonFiniteInput { component: Component, value: f64 },
    #[error("none of the configured components has a value")]
    NoComponentPresent,
}

impl TryFrom<HealthConfigSpec> for HealthConfig {
    type Error = HealthError;

    fn try_from(spec: HealthConfigSpec) -> Result<Self, HealthError> {
        HealthConfig::new(spec.components, spec.bands, spec.alerts)
    }
}

impl From<HealthConfig> for HealthConfigSpec {
    fn from(c: HealthConfig) -> Self {
        HealthConfigSpec {
            components: c.components,
            bands: c.bands,
            alerts: c.alerts,
        }
    }
}

impl HealthConfig {
    /// Validates and builds a configuration.
    ///
    /// Rules: at least one component, each at most once, weights finite and ≥ 0 with a
    /// positive sum, thresholds finite with `low < high`; bands non-empty with unique
    /// non-empty names, `min_score` in `[0, 100]` strictly decreasing, the last one 0; alert
    /// settings finite and non-negative, `renewal_min_score ≤ 100`.
    pub fn new(
        components: Vec<ComponentConfig>,
        bands: Vec<Band>,
        alerts: AlertConfig,
    ) -> Result<Self, HealthError> {
        if components.is_empty() {
            return Err(HealthError::NoComponents);
        }
        for (i, c) in components.iter().enumerate() {
            if components[..i].iter().any(|d| d.component == c.component) {
                return Err(HealthError::DuplicateComponent(c.component));
            }
            if !c.weight.is_finite() || c.weight < 0.0 {
                return Err(HealthError::InvalidWeight {
                    component: c.component,
                    weight: c.weight,
                });
            }
            let n = c.normalisation;
            if !n.low.is_finite() || !n.high.is_finite() || n.low >= n.high {
                return Err(HealthError::InvalidThresholds {
                    component: c.component,
                    low: n.low,
                    high: n.high,
                });
            }
        }
        if components.iter().map(|c| c.weight).sum::<f64>() <= 0.0 {
            return Err(HealthError::ZeroTotalWeight);
        }
        if bands.is_empty() {
            return Err(HealthError::NoBands);
        }
        for (i, b) in bands.iter().enumerate() {
            let bad = |reason: &str| {
                Err(HealthError::InvalidBand {
                    name: b.name.clone(),
                    reason: reason.into(),
                })
            };
            if b.name.trim().is_empty() {
                return bad("empty name");
            }
            if bands[..i].iter().any(|a| a.name == b.name) {
                return bad("duplicate name");
            }
            if !(0.0..=100.0).contains(&b.min_score) {
                return bad("min_score must be in [0, 100]");
            }
            if i > 0 && b.min_score >= bands[i - 1].min_score {
                return bad("bands must be listed best first with decreasing min_score");
            }
        }
        if bands.last().is_some_and(|b| b.min_score != 0.0) {
            return Err(HealthError::InvalidBand {
                name: bands[bands.len() - 1].name.clone(),
                reason: "the last band must start at 0 so that every score has a band".into(),
            });
        }
        let a = alerts;
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !ok(a.renewal_window_days) || !ok(a.min_component_change) || !ok(a.renewal_min_score) {
            return Err(HealthError::InvalidAlertConfig(
                "values must be finite and ≥ 0".into(),
            ));
        }
        if a.renewal_min_score > 100.0 {
            return Err(HealthError::InvalidAlertConfig(
                "renewal_min_score must be ≤ 100".into(),
            ));
        }
        Ok(Self {
            components,
            bands,
            alerts,
        })
    }

    pub fn components(&self) -> &[ComponentConfig] {
        &self.components
    }

    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    pub fn alerts(&self) -> &AlertConfig {
        &self.alerts
    }

    /// The index of the band a score falls in (0 = best).
    pub fn band_index(&self, score: f64) -> usize {
        self.bands
            .iter()
            .position(|b| score >= b.min_score)
            .unwrap_or(self.bands.len() - 1)
    }
}

impl Default for HealthConfig {
    /// A starting point for a subscription business: churn risk and activity weigh most;
    /// bands healthy ≥ 70, at_risk ≥ 40, critical below.
    fn default() -> Self {
        use Direction::*;
        let c = |component, weight, low, high, direction| ComponentConfig {
            component,
            weight,
            normalisation: Normalisation {
                low,
                high,
                direction,
            },
        };
        let components = vec![
            // −50% activity or worse → 0, +20% or better → 1.
            c(Component::ActivityTrend, 0.25, -0.5, 0.2, HigherIsBetter),
            // No tickets → 1, five or more → 0.
            c(Component::SupportTickets, 0.10, 0.0, 5.0, LowerIsBetter),
            // Detractor floor at 4, promoter at 9.
            c(Component::Nps, 0.15, 4.0, 9.0, HigherIsBetter),
            c(Component::PAlive, 0.15, 0.2, 0.9, HigherIsBetter),
            c(Component::ChurnRisk, 0.30, 0.1, 0.6, LowerIsBetter),
            // Renewal within two weeks → 0, three months or more → 1.
            c(Component::DaysToRenewal, 0.05, 14.0, 90.0, HigherIsBetter),
        ];
        let band = |name: &str, min_score| Band {
            name: name.into(),
            min_score,
        };
        let bands = vec![
            band("healthy", 70.0),
            band("at_risk", 40.0),
            band("critical", 0.0),
        ];
        HealthConfig {
            components,
            bands,
            alerts: AlertConfig::default(),
        }
    }
}

/// Raw inputs of one customer; `None` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthInputs {
    pub activity_trend: Option<f64>,
    pub support_tickets: Option<f64>,
    pub nps: Option<f64>,
    pub p_alive: Option<f64>,
    pub churn_risk: Option<f64>,
    pub days_to_renewal: Option<f64>,
}

impl HealthInputs {
    pub fn get(&self, c: Component) -> Option<f64> {
        match c {
            Component::ActivityTrend => self.activity_trend,
            Component::SupportTickets => self.support_tickets,
            Component::Nps => self.nps,
            Component::PAlive => self.p_alive,
            Component::ChurnRisk => self.churn_risk,
            Component::DaysToRenewal => self.days_to_renewal,
        }
    }
}

/// One component's part in a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComponentScore {
    pub component: Component,
    pub raw: f64,
    /// The raw value mapped to `[0, 1]`.
    pub normalised: f64,
    /// Weight after re-weighting over the present components (these sum to 1).
    pub effective_weight: f64,
    /// Points this component adds to the score: `100 × effective_weight × normalised`.
    pub points: f64,
}

/// A computed health score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthScore {
    /// 0–100.
    pub score: f64,
    pub band: String,
    /// Position of the band in the config, 0 = best.
    pub band_index: usize,
    pub components: Vec<ComponentScore>,
    /// Configured components without a value.
    pub missing: Vec<Component>,
    /// Share of the configured weight that had a value, in `(0, 1]`.
    pub coverage: f64,
}

impl HealthScore {
    pub fn component(&self, c: Component) -> Option<&ComponentScore> {
        self.components.iter().find(|s| s.component == c)
    }
}

/// Computes the health score of one customer.
///
/// Missing components are re-weighted away (see the module docs). Errors when a present raw
/// value is not finite or when no configured component has a value.
pub fn health_score(
    inputs: &HealthInputs,
    config: &HealthConfig,
) -> Result<HealthScore, HealthError> {
    let total_weight: f64 = config.components.iter().map(|c| c.weight).sum();
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for c in &config.components {
        match inputs.get(c.component) {
            Some(v) if !v.is_finite() => {
                return Err(HealthError::NonFiniteInput {
                    component: c.component,
                    value: v,
                });
            }
            Some(v) => present.push((c, v)),
            None => missing.push(c.component),
        }
    }
    let present_weight: f64 = present.iter().map(|(c, _)| c.weight).sum();
    if present.is_empty() || present_weight <= 0.0 {
        return Err(HealthError::NoComponentPresent);
    }
    let components: Vec<ComponentScore> = present
        .iter()
        .map(|(c, raw)| {
            let normalised = c.normalisation.apply(*raw);
            let effective_weight = c.weight / present_weight;
            ComponentScore {
                component: c.component,
                raw: *raw,
                normalised,
                effective_weight,
                points: 100.0 * effective_weight * normalised,
            }
        })
        .collect();
    let score = components
        .iter()
        .map(|c| c.points)
        .sum::<f64>()
        .clamp(0.0, 100.0);
    let band_index = config.band_index(score);
    Ok(HealthScore {
        score,
        band: config.bands[band_index].name.clone(),
        band_index,
        components,
        missing,
        coverage: present_weight / total_weight,
    })
}

/// How one component moved between two scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ComponentChange {
    pub component: Component,
    /// Raw values before and after (`None` when missing).
    pub previous_raw: Option<f64>,
    pub current_raw: Option<f64>,
    /// Score points before and after (0 when missing).
    pub previous_points: f64,
    pub current_points: f64,
    /// `current_points − previous_points`; negative pulls the score down.
    pub delta_points: f64,
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AlertKind {
    /// The score fell across a band threshold into a worse band.
    BandDropped {
        from: String,
        to: String,
        threshold: f64,
    },
    /// Renewal is within the window and the score is below the renewal minimum.
    RenewalAtRisk {
        days_to_renewal: f64,
        min_score: f64,
    },
}

/// An alert with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthAlert {
    pub kind: AlertKind,
    pub previous_score: Option<f64>,
    pub score: f64,
    /// Components that moved, those that pulled the score down the most first.
    pub changes: Vec<ComponentChange>,
}

/// Component moves between two scores, largest drop first, moves smaller than
/// `min_change` points left out.
pub fn component_changes(
    previous: &HealthScore,
    current: &HealthScore,
    min_change: f64,
) -> Vec<ComponentChange> {
    let mut by_component: BTreeMap<Component, ComponentChange> = BTreeMap::new();
    for s in &previous.components {
        by_component.insert(
            s.component,
            ComponentChange {
                component: s.component,
                previous_raw: Some(s.raw),
                current_raw: None,
                previous_points: s.points,
                current_points: 0.0,
                delta_points: 0.0,
            },
        );
    }
    for s in &current.components {
        let e = by_component.entry(s.component).or_insert(ComponentChange {
            component: s.component,
            previous_raw: None,
            current_raw: None,
            previous_points: 0.0,
            current_points: 0.0,
            delta_points: 0.0,
        });
        e.current_raw = Some(s.raw);
        e.current_points = s.points;
    }
    let mut out: Vec<ComponentChange> = by_component
        .into_values()
        .map(|mut c| {
            c.delta_points = c.current_points - c.previous_points;
            c
        })
        .filter(|c| c.delta_points.abs() >= min_change && c.delta_points != 0.0)
        .collect();
    out.sort_by(|a, b| a.delta_points.total_cmp(&b.delta_points));
    out
}

/// Decides which alerts a new score raises.
///
/// - `BandDropped` when `previous` exists and the new band is worse; `threshold` is the
///   lower bound of the band that was left behind (the crossed line just above the new one).
/// - `RenewalAtRisk` when `days_to_renewal` is known, `0 ≤ days ≤ renewal_window_days` and
///   the score is below `renewal_min_score`. It is raised on every call while that holds;
///   callers keep one per customer and renewal date.
///
/// Both carry the component moves since `previous` (empty without a previous score).
pub fn detect_alerts(
    previous: Option<&HealthScore>,
    current: &HealthScore,
    days_to_renewal: Option<f64>,
    config: &HealthConfig,
) -> Vec<HealthAlert> {
    let changes = previous
        .map(|p| component_changes(p, current, config.alerts.min_component_change))
        .unwrap_or_default();
    let mut alerts = Vec::new();
    if let Some(p) = previous
        && current.band_index > p.band_index
    {
        let crossed = current.band_index - 1;
        alerts.push(HealthAlert {
            kind: AlertKind::BandDropped {
                from: p.band.clone(),
                to: current.band.clone(),
                threshold: config.bands.get(crossed).map_or(0.0, |b| b.min_score),
            },
            previous_score: Some(p.score),
            score: current.score,
            changes: changes.clone(),
        });
    }
    if let Some(d) = days_to_renewal
        && d.is_finite()
        && (0.0..=config.alerts.renewal_window_days).contains(&d)
        && current.score < config.alerts.renewal_min_score
    {
        alerts.push(HealthAlert {
            kind: AlertKind::RenewalAtRisk {
                days_to_renewal: d,
                min_score: config.alerts.renewal_min_score,
            },
            previous_score: previous.map(|p| p.score),
            score: current.score,
            changes,
        });
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy_inputs() -> HealthInputs {
        HealthInputs {
            activity_trend: Some(0.3),
            support_tickets: Some(0.0),
            nps: Some(10.0),
            p_alive: Some(0.95),
            churn_risk: Some(0.05),
            days_to_renewal: Some(200.0),
        }
    }

    #[test]
    fn normalisation_directions_and_clamping() {
        let up = Normalisation {
            low: 0.0,
            high: 10.0,
            direction: Direction::HigherIsBetter,
        };
        assert_eq!(up.apply(-5.0), 0.0);
        assert_eq!(up.apply(2.5), 0.25);
        assert_eq!(up.apply(50.0), 1.0);
        let down = Normalisation {
            direction: Direction::LowerIsBetter,
            ..up
        };
        assert_eq!(down.apply(2.5), 0.75);
        assert_eq!(down.apply(50.0), 0.0);
    }

    #[test]
    fn perfect_and_known_scores() {
        let cfg = HealthConfig::default();
        let s = health_score(&healthy_inputs(), &cfg).unwrap();
        assert!((s.score - 100.0).abs() < 1e-9);
        assert_eq!(s.band, "healthy");
        assert_eq!(s.coverage, 1.0);

        // Only churn risk (0.35 → 0.5) and NPS (9 → 1): weights 0.30 and 0.15, re-weighted
        // to 2/3 and 1/3: 100 × (2/3 × 0.5 + 1/3 × 1) = 66.67.
        let partial = HealthInputs {
            churn_risk: Some(0.35),
            nps: Some(9.0),
            ..Default::default()
        };
        let s = health_score(&partial, &cfg).unwrap();
        assert!((s.score - 200.0 / 3.0).abs() < 1e-9, "{}", s.score);
        assert_eq!(s.band, "at_risk");
        assert!((s.coverage - 0.45).abs() < 1e-12);
        assert_eq!(s.missing.len(), 4);
    }

    #[test]
    fn input_errors() {
        let cfg = HealthConfig::default();
        assert_eq!(
            health_score(&HealthInputs::default(), &cfg),
            Err(HealthError::NoComponentPresent)
        );
        let bad = HealthInputs {
            nps: Some(f64::NAN),
            ..Default::default()
        };
        assert!(matches!(
            health_score(&bad, &cfg),
            Err(HealthError::NonFiniteInput { .. })
        ));
    }

    #[test]
    fn config_validation() {
        let base: HealthConfigSpec = HealthConfig::default().into();
        let check = |f: &dyn Fn(&mut HealthConfigSpec)| {
            let mut s = base.clone();
            f(&mut s);
            HealthConfig::try_from(s)
        };
        assert!(check(&|_| {}).is_ok());
        assert!(matches!(
            check(&|s| s.components[0].weight = -1.0),
            Err(HealthError::InvalidWeight { .. })
        ));
        assert!(matches!(
            check(&|s| s.components[0].weight = f64::NAN),
            Err(HealthError::InvalidWeight { .. })
        ));
        assert_eq!(
            check(&|s| s.components.iter_mut().for_each(|c| c.weight = 0.0)),
            Err(HealthError::ZeroTotalWeight)
        );
        assert!(matches!(
            check(&|s| s.components[1].component = s.components[0].component),
            Err(HealthError::DuplicateComponent(_))
        ));
        assert!(matches!(
            check(&|s| s.components[0].normalisation.high = s.components[0].normalisation.low),
            Err(HealthError::InvalidThresholds { .. })
        ));
        assert_eq!(
            check(&|s| s.components.clear()),
            Err(HealthError::NoComponents)
        );
        assert_eq!(check(&|s| s.bands.clear()), Err(HealthError::NoBands));
        assert!(matches!(
            check(&|s| s.bands.swap(0, 1)),
            Err(HealthError::InvalidBand { .. })
        ));
        assert!(matches!(
            check(&|s| s.bands[2].min_score = 10.0),
            Err(HealthError::InvalidBand { .. })
        ));
        assert!(matches!(
            check(&|s| s.alerts.renewal_window_days = -1.0),
            Err(HealthError::InvalidAlertConfig(_))
        ));
    }

    #[test]
    fn config_serde_validates() {
        let json = serde_json::to_string(&HealthConfig::default()).unwrap();
        let back: HealthConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, HealthConfig::default());
        let bad = json.replace("\"weight\":0.25", "\"weight\":-0.25");
        assert_ne!(bad, json);
        let err = serde_json::from_str::<HealthConfig>(&bad).unwrap_err();
        assert!(err.to_string().contains("weight"), "{err}");
        // Alerts are optional in a config file.
        let minimal = r#"{"components":[{"component":"nps","weight":1,
            "normalisation":{"low":0,"high":10,"direction":"higher_is_better"}}],
            "bands":[{"name":"ok","min_score":50},{"name":"bad","min_score":0}]}"#;
        let cfg: HealthConfig = serde_json::from_str(minimal).unwrap();
        assert_eq!(cfg.alerts(), &AlertConfig::default());
    }

    #[test]
    fn band_drop_alert_lists_largest_drop_first() {
        let cfg = HealthConfig::default();
        let before = health_score(&healthy_inputs(), &cfg).unwrap();
        let worse = HealthInputs {
            churn_risk: Some(0.6),      // 30 points → 0
            activity_trend: Some(-0.5), // 25 points → 0
            support_tickets: Some(2.5), // 10 points → 5
            ..healthy_inputs()
        };
        let after = health_score(&worse, &cfg).unwrap();
        assert!((after.score - 40.0).abs() < 1e-9);
        assert_eq!(after.band, "at_risk");
        let alerts = detect_alerts(Some(&before), &after, Some(200.0), &cfg);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            a.kind,
            AlertKind::BandDropped {
                from: "healthy".into(),
                to: "at_risk".into(),
                threshold: 70.0
            }
        );
        let order: Vec<Component> = a.changes.iter().map(|c| c.component).collect();
        assert_eq!(
            order,
            [
                Component::ChurnRisk,
                Component::ActivityTrend,
                Component::SupportTickets
            ]
        );
        assert!((a.changes[0].delta_points + 30.0).abs() < 1e-9);
        assert_eq!(a.changes[0].previous_raw, Some(0.05));
        assert_eq!(a.changes[0].current_raw, Some(0.6));
    }

    #[test]
    fn renewal_alert_and_no_alert_on_improvement() {
        let cfg = HealthConfig::default();
        let low = HealthInputs {
            churn_risk: Some(0.5),
            ..Default::default()
        };
        let s = health_score(&low, &cfg).unwrap();
        let alerts = detect_alerts(None, &s, Some(30.0), &cfg);
        assert_eq!(alerts.len(), 1);
        assert!(matches!(alerts[0].kind, AlertKind::RenewalAtRisk { .. }));
        assert!(detect_alerts(None, &s, Some(120.0), &cfg).is_empty());
        assert!(detect_alerts(None, &s, None, &cfg).is_empty());
        // Improving never raises a band alert.
        let good = health_score(&healthy_inputs(), &cfg).unwrap();
        assert!(detect_alerts(Some(&s), &good, None, &cfg).is_empty());
        // A drop two bands down names the crossed threshold just above the new band.
        let crit = health_score(
            &HealthInputs {
                churn_risk: Some(0.9),
                ..Default::default()
            },
            &cfg,
        )
        .unwrap();
        let a = detect_alerts(Some(&good), &crit, None, &cfg);
        assert_eq!(
            a[0].kind,
            AlertKind::BandDropped {
                from: "healthy".into(),
                to: "critical".into(),
                threshold: 40.0
            }
        );
    }
}
