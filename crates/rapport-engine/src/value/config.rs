//! Settings of the value models on live data (`[models]` in the config file): which events
//! mean a purchase, a cancellation, a support ticket or a survey answer, how often to refit,
//! and the options of each model. Every default works without configuration for a shop that
//! sends the Segment e-commerce spec (`Order Completed` with `revenue`).

use crate::EngineError;
use rapport_value::health::{AlertConfig, Band, ComponentConfig, HealthConfig};
use rapport_value::survey::{AcquisitionMapping, SurveyConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// The track event that records a purchase.
    pub purchase_event: String,
    /// The property holding a purchase's value; `total` is read when it is absent.
    pub revenue_property: String,
    /// Hours between scheduled refits of every model (CLV, then churn, then health);
    /// 0 turns the schedule off.
    pub refit_interval_hours: u64,
    /// The track event carrying survey answers (`survey`, `score`, `comment`, `reason`).
    pub survey_event: String,
    pub clv: ClvSettings,
    pub churn: ChurnSettings,
    pub health: HealthSettings,
    /// Phrases that classify a new customer's `reason` as earned or bought.
    pub acquisition: AcquisitionMapping,
    /// Scales and confidence level of NPS, CES and CSAT.
    pub surveys: SurveyConfig,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            purchase_event: "Order Completed".into(),
            revenue_property: "revenue".into(),
            refit_interval_hours: 24,
            survey_event: "Survey Answered".into(),
            clv: ClvSettings::default(),
            churn: ChurnSettings::default(),
            health: HealthSettings::default(),
            acquisition: AcquisitionMapping::default(),
            surveys: SurveyConfig::default(),
        }
    }
}

/// Which purchase-count model the CLV fit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseModelKind {
    /// BG/NBD: fast, the default.
    BgNbd,
    /// Pareto/NBD: the reference model, slower to fit.
    ParetoNbd,
}

impl PurchaseModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseModelKind::BgNbd => "bg_nbd",
            PurchaseModelKind::ParetoNbd => "pareto_nbd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClvSettings {
    pub purchase_model: PurchaseModelKind,
    /// Days at the end of the history held out to check each fit out of sample; 0 skips
    /// the check (and halves the fitting time).
    pub holdout_days: u32,
    /// Horizon of the lifetime value, in months of 30.44 days.
    pub lifetime_months: u32,
    /// Discount rate per month applied to future purchases.
    pub monthly_discount_rate: f64,
    /// Fewer buyers than this and the fit fails without writing scores: four parameters
    /// are not determined by a handful of customers.
    pub min_customers: usize,
    /// Fewer repeat buyers than this and the fit fails without writing scores: only
    /// repeat purchases tell purchase rates and drop-out apart, and Gamma-Gamma learns
    /// spend from repeat buyers alone.
    pub min_repeat_customers: usize,
    /// A fitted parameter above this (or below its inverse) is implausible: the
    /// likelihood ran off along a ridge (e.g. r and α growing together when purchase rates
    /// hardly vary). The purchase fit then fails; a spend fit is dropped (no `clv`).
    pub max_parameter: f64,
    /// A standard error of a log-parameter above this is reported as a warning: the data
    /// determine that parameter only within a factor of e^this.
    pub max_log_standard_error: f64,
}

impl Default for ClvSettings {
    fn default() -> Self {
        ClvSettings {
            purchase_model: PurchaseModelKind::BgNbd,
            holdout_days: 90,
            lifetime_months: 12,
            monthly_discount_rate: 0.01,
            min_customers: 50,
            min_repeat_customers: 20,
            max_parameter: 1e4,
            max_log_standard_error: 1.0,
        }
    }
}

/// The learning algorithm of the churn model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnAlgorithmKind {
    Logistic,
    GradientBoosting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnSettings {
    /// A customer with no activity or purchase for this many days has churned.
    pub inactivity_days: u32,
    /// Track events that mean an explicit cancellation.
    pub cancel_events: Vec<String>,
    /// Profile traits used as categorical features (their current values).
    pub trait_features: Vec<String>,
    pub algorithm: ChurnAlgorithmKind,
    /// Share of the labelled customers held out to measure AUC.
    pub test_fraction: f64,
    /// Fewer training customers (active `inactivity_days` ago) than this and the
    /// training fails without writing scores.
    pub min_customers: usize,
    /// Fewer churned (or retained) training customers than this and the training fails:
    /// a model cannot learn a class it has barely seen.
    pub min_churned: usize,
    /// A held-out AUC below this is no better than chance on a test set of this size:
    /// the training fails without writing scores.
    pub min_auc: f64,
}

impl Default for ChurnSettings {
    fn default() -> Self {
        ChurnSettings {
            inactivity_days: 90,
            cancel_events: vec!["Subscription Cancelled".into()],
            trait_features: vec!["plan".into()],
            algorithm: ChurnAlgorithmKind::Logistic,
            test_fraction: 0.25,
            min_customers: 50,
            min_churned: 10,
            min_auc: 0.6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// Weighted components; the built-in set when absent (see docs/models).
    pub components: Option<Vec<ComponentConfig>>,
    /// Bands from best to worst, the last starting at 0; healthy/at_risk/critical when absent.
    pub bands: Option<Vec<Band>>,
    pub alerts: AlertConfig,
    /// Track events that count as support tickets (over the last 90 days).
    pub support_events: Vec<String>,
    /// The profile trait holding the next renewal date (ISO-8601).
    pub renewal_trait: String,
    /// A profile is scored only with at least this many of its inputs known besides the
    /// ticket count (which is always known: zero tickets says little about a customer
    /// nobody has heard from); the others get no `health_score` rather than one made of
    /// next to nothing.
    pub min_inputs: usize,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            components: None,
            bands: None,
            alerts: AlertConfig::default(),
            support_events: vec!["Ticket Created".into()],
            renewal_trait: "renewal_date".into(),
            min_inputs: 2,
        }
    }
}

impl ModelsConfig {
    /// The validated health-score configuration.
    pub fn health_config(&self) -> Result<HealthConfig, EngineError> {
        let defaults = HealthConfig::default();
        HealthConfig::new(
            self.health
                .components
                .clone()
                .unwrap_or_else(|| defaults.components().to_vec()),
            self.health
                .bands
                .clone()
                .unwrap_or_else(|| defaults.bands().to_vec()),
            self.health.alerts,
        )
        .map_err(|e| EngineError::Invalid {
            field: "models.health",
            message: e.to_string(),
        })
    }

    /// Rejects settings no fit could run with, naming the setting.
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = |field: &'static str, message: &str| {
            Err(EngineError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.purchase_event.trim().is_empty() {
            return invalid("models.purchase_event", "must name a track event");
        }
        if self.revenue_property.trim().is_empty() {
            return invalid("models.revenue_property", "must name a property");
        }
        if self.survey_event.trim().is_empty() {
            return invalid("models.survey_event", "must name a track event");
        }
        if self.clv.lifetime_months == 0 {
            return invalid("models.clv.lifetime_months", "must be at least 1");
        }
        let d = self.clv.monthly_discount_rate;
        if !(d.is_finite() && (0.0..1.0).contains(&d)) {
            return invalid("models.clv.monthly_discount_rate", "must be in [0, 1)");
        }
        let m = self.clv.max_parameter;
        if !(m.is_finite() && m > 1.0) {
            return invalid(
                "models.clv.max_parameter",
                "must be a finite number above 1",
            );
        }
        let s = self.clv.max_log_standard_error;
        if !(s.is_finite() && s > 0.0) {
            return invalid("models.clv.max_log_standard_error", "must be positive");
        }
        let a = self.churn.min_auc;
        if !(a.is_finite() && (0.0..=1.0).contains(&a)) {
            return invalid("models.churn.min_auc", "must be between 0 and 1");
        }
        if self.churn.inactivity_days == 0 {
            return invalid("models.churn.inactivity_days", "must be at least 1");
        }
        let f = self.churn.test_fraction;
        if !(f.is_finite() && f > 0.0 && f < 1.0) {
            return invalid("models.churn.test_fraction", "must be between 0 and 1");
        }
        self.health_config()?;
        self.acquisition
            .validate()
            .map_err(|e| EngineError::Invalid {
                field: "models.acquisition",
                message: e.to_string(),
            })?;
        self.surveys.validate().map_err(|e| EngineError::Invalid {
            field: "models.surveys",
            message: e.to_string(),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        ModelsConfig::default().validate().unwrap();
        let mut c = ModelsConfig::default();
        c.churn.test_fraction = 1.5;
        let err = c.validate().unwrap_err();
        assert!(
            matches!(err, EngineError::Invalid { field, .. } if field == "models.churn.test_fraction")
        );
        let mut c = ModelsConfig::default();
        c.health.bands = Some(vec![Band {
            name: "all".into(),
            min_score: 10.0,
        }]);
        assert!(matches!(
            c.validate().unwrap_err(),
            EngineError::Invalid {
                field: "models.health",
                ..
            }
        ));
    }
}
