//! The engine's value-model reports as wire types: the one place that maps
//! `rapport_engine::value` (which knows nothing of the wire) onto `rapport_api::value`.
//! Every mapping is a field-by-field copy, so that a field added on either side without the
//! other is a compile error here, not a silent difference on the wire.

use rapport_api::value as api;
use rapport_engine::value as engine;
use rapport_engine::value::ModelKind;
use rapport_value::health::{AlertKind, Component, ComponentChange};
use rapport_value::survey::{self, Metric, MetricReport, TimeBucket};

/// An engine value as its wire type.
pub trait Wire {
    type Out;
    fn wire(self) -> Self::Out;
}

impl<T: Wire> Wire for Vec<T> {
    type Out = Vec<T::Out>;
    fn wire(self) -> Vec<T::Out> {
        self.into_iter().map(Wire::wire).collect()
    }
}

impl<T: Wire> Wire for Option<T> {
    type Out = Option<T::Out>;
    fn wire(self) -> Option<T::Out> {
        self.map(Wire::wire)
    }
}

fn count(n: usize) -> u64 {
    n as u64
}

fn counts(v: Vec<(String, usize)>) -> api::Counts {
    api::Counts(v.into_iter().map(|(k, n)| (k, count(n))).collect())
}

impl Wire for ModelKind {
    type Out = api::ModelName;
    fn wire(self) -> api::ModelName {
        match self {
            ModelKind::Clv => api::ModelName::Clv,
            ModelKind::Churn => api::ModelName::Churn,
            ModelKind::Health => api::ModelName::Health,
        }
    }
}

impl Wire for engine::JobState {
    type Out = api::JobState;
    fn wire(self) -> api::JobState {
        match self {
            engine::JobState::Running => api::JobState::Running,
            engine::JobState::Succeeded => api::JobState::Succeeded,
            engine::JobState::Failed => api::JobState::Failed,
        }
    }
}

impl Wire for engine::JobView {
    type Out = api::Job;
    fn wire(self) -> api::Job {
        api::Job {
            id: self.id,
            model: self.model.wire(),
            state: self.state.wire(),
            phase: self.phase.to_owned(),
            done: self.done,
            total: self.total,
            started_at: self.started_at,
            finished_at: self.finished_at,
            result: self.result.wire(),
            warnings: self.warnings,
            error: self.error,
        }
    }
}

impl Wire for engine::FitSummary {
    type Out = api::ModelSummary;
    fn wire(self) -> api::ModelSummary {
        match self {
            engine::FitSummary::Clv(s) => api::ModelSummary::Clv(s.wire()),
            engine::FitSummary::Churn(s) => api::ModelSummary::Churn(s.wire()),
            engine::FitSummary::Health(s) => api::ModelSummary::Health(s.wire()),
        }
    }
}

impl Wire for engine::PurchaseParams {
    type Out = api::PurchaseParams;
    fn wire(self) -> api::PurchaseParams {
        api::PurchaseParams {
            r: self.r,
            alpha: self.alpha,
            a: self.a,
            b: self.b,
            s: self.s,
            beta: self.beta,
        }
    }
}

impl Wire for engine::SpendParams {
    type Out = api::SpendParams;
    fn wire(self) -> api::SpendParams {
        api::SpendParams {
            p: self.p,
            q: self.q,
            v: self.v,
        }
    }
}

impl Wire for engine::Holdout {
    type Out = api::Holdout;
    fn wire(self) -> api::Holdout {
        match self {
            engine::Holdout::Checked(h) => api::Holdout::Checked(api::HoldoutCheck {
                calibration_end: h.calibration_end,
                days: h.days,
                customers: count(h.customers),
                predicted_purchases: h.predicted_purchases,
                actual_purchases: h.actual_purchases,
                mae: h.mae,
                rmse: h.rmse,
                by_frequency: h
                    .by_frequency
                    .into_iter()
                    .map(|b| api::HoldoutBucket {
                        frequency: b.frequency,
                        customers: count(b.customers),
                        actual_mean: b.actual_mean,
                        predicted_mean: b.predicted_mean,
                    })
                    .collect(),
            }),
            engine::Holdout::Failed(h) => api::Holdout::Failed(api::HoldoutFailure {
                days: h.days,
                error: h.error,
            }),
        }
    }
}

impl Wire for engine::ScoreFailures {
    type Out = api::ScoreFailures;
    fn wire(self) -> api::ScoreFailures {
        api::ScoreFailures {
            count: count(self.count),
            example: self.example.map(|e| api::ScoreFailure {
                frequency: e.frequency,
                recency: e.recency,
                age: e.age,
                monetary: e.monetary,
                error: e.error,
            }),
        }
    }
}

impl Wire for engine::ClvFit {
    type Out = api::ClvSummary;
    fn wire(self) -> api::ClvSummary {
        api::ClvSummary {
            purchase_model: self.purchase_model,
            spend_model: self.spend_model,
            params: self.params.wire(),
            standard_errors: self.standard_errors.wire(),
            spend_standard_errors: self.spend_standard_errors.wire(),
            warnings: self.warnings,
            log_likelihood: self.log_likelihood,
            iterations: self.iterations,
            penalty: self.penalty,
            spend_params: self.spend_params.wire(),
            spend_log_likelihood: self.spend_log_likelihood,
            spend_error: self.spend_error,
            spend_fit_relaxed: self.spend_fit_relaxed,
            time_unit: self.time_unit,
            customers: count(self.customers),
            repeat_customers: count(self.repeat_customers),
            transactions: count(self.transactions),
            profiles_scored: count(self.profiles_scored),
            events_read: self.events_read,
            unattributed_events: self.unattributed_events,
            holdout: self.holdout.wire(),
            score_failures: self.score_failures.wire(),
            lifetime_months: self.lifetime_months,
            monthly_discount_rate: self.monthly_discount_rate,
            model: self.model.wire(),
            fitted_at: self.fitted_at,
            duration_ms: self.duration_ms,
        }
    }
}

impl Wire for engine::ChurnFit {
    type Out = api::ChurnSummary;
    fn wire(self) -> api::ChurnSummary {
        let r = self.report;
        api::ChurnSummary {
            algorithm: self.algorithm,
            auc: self.auc,
            label: api::ChurnLabel {
                inactivity_days: self.label.inactivity_days,
                cancel_events: self.label.cancel_events,
            },
            trait_features: self.trait_features,
            training_as_of: self.training_as_of,
            customers: count(self.customers),
            churned_in_training: count(self.churned_in_training),
            warnings: self.warnings,
            report: api::ChurnTraining {
                algorithm: r.algorithm,
                n_train: count(r.n_train),
                n_test: count(r.n_test),
                positives_train: count(r.positives_train),
                positives_test: count(r.positives_test),
                auc_test: r.auc_test,
                log_loss_test: r.log_loss_test,
                auc_train: r.auc_train,
                log_loss_train: r.log_loss_train,
                intercept: r.intercept,
                feature_weights: r
                    .feature_weights
                    .into_iter()
                    .map(|w| api::FeatureWeight {
                        feature: w.feature,
                        weight: w.weight,
                    })
                    .collect(),
                iterations: count(r.iterations),
                converged: r.converged,
            },
            profiles_scored: count(self.profiles_scored),
            currently_churned: count(self.currently_churned),
            events_read: self.events_read,
            unattributed_events: self.unattributed_events,
            model: self.model.wire(),
            fitted_at: self.fitted_at,
            duration_ms: self.duration_ms,
        }
    }
}

impl Wire for engine::HealthRun {
    type Out = api::HealthSummary;
    fn wire(self) -> api::HealthSummary {
        api::HealthSummary {
            profiles_read: count(self.profiles_read),
            profiles_scored: count(self.profiles_scored),
            profiles_without_signals: count(self.profiles_without_signals),
            inputs_known: counts(self.inputs_known),
            warnings: self.warnings,
            mean_score: self.mean_score,
            bands: counts(self.bands),
            alerts_raised: u64::from(self.alerts_raised),
            lowest: self
                .lowest
                .into_iter()
                .map(|l| api::LowScore {
                    profile: l.profile,
                    score: l.score,
                    band: l.band,
                })
                .collect(),
            events_read: self.events_read,
            unattributed_events: self.unattributed_events,
            model: self.model.wire(),
            fitted_at: self.fitted_at,
            duration_ms: self.duration_ms,
        }
    }
}

impl Wire for engine::HealthReport {
    type Out = api::HealthReport;
    fn wire(self) -> api::HealthReport {
        api::HealthReport {
            summary: self.summary.wire(),
            recent_alerts: self.recent_alerts.wire(),
        }
    }
}

impl Wire for Component {
    type Out = api::HealthComponent;
    fn wire(self) -> api::HealthComponent {
        match self {
            Component::ActivityTrend => api::HealthComponent::ActivityTrend,
            Component::SupportTickets => api::HealthComponent::SupportTickets,
            Component::Nps => api::HealthComponent::Nps,
            Component::PAlive => api::HealthComponent::PAlive,
            Component::ChurnRisk => api::HealthComponent::ChurnRisk,
            Component::DaysToRenewal => api::HealthComponent::DaysToRenewal,
        }
    }
}

impl Wire for ComponentChange {
    type Out = api::ComponentChange;
    fn wire(self) -> api::ComponentChange {
        api::ComponentChange {
            component: self.component.wire(),
            previous_raw: self.previous_raw,
            current_raw: self.current_raw,
            previous_points: self.previous_points,
            current_points: self.current_points,
            delta_points: self.delta_points,
        }
    }
}

impl Wire for AlertKind {
    type Out = api::AlertDetails;
    fn wire(self) -> api::AlertDetails {
        match self {
            AlertKind::BandDropped {
                from,
                to,
                threshold,
            } => api::AlertDetails::BandDropped {
                from,
                to,
                threshold,
            },
            AlertKind::RenewalAtRisk {
                days_to_renewal,
                min_score,
            } => api::AlertDetails::RenewalAtRisk {
                days_to_renewal,
                min_score,
            },
        }
    }
}

impl Wire for engine::Alert {
    type Out = api::Alert;
    fn wire(self) -> api::Alert {
        let details = self.details.wire();
        api::Alert {
            id: self.id,
            at: self.at,
            profile: self.profile,
            // The stored `kind` is always the tag of `details`.
            kind: match details {
                api::AlertDetails::BandDropped { .. } => api::AlertKind::BandDropped,
                api::AlertDetails::RenewalAtRisk { .. } => api::AlertKind::RenewalAtRisk,
            },
            score: self.score,
            previous_score: self.previous_score,
            band: self.band,
            previous_band: self.previous_band,
            reason: self.reason,
            details,
            changes: self.changes.wire(),
        }
    }
}

impl Wire for engine::AlertPage {
    type Out = api::AlertPage;
    fn wire(self) -> api::AlertPage {
        api::AlertPage {
            data: self.data.wire(),
            next_after: self.next_after,
        }
    }
}

impl Wire for TimeBucket {
    type Out = api::TimeBucket;
    fn wire(self) -> api::TimeBucket {
        match self {
            TimeBucket::Day => api::TimeBucket::Day,
            TimeBucket::Week => api::TimeBucket::Week,
            TimeBucket::Month => api::TimeBucket::Month,
            TimeBucket::Quarter => api::TimeBucket::Quarter,
            TimeBucket::Year => api::TimeBucket::Year,
        }
    }
}

impl Wire for Metric {
    type Out = api::SurveyMetric;
    fn wire(self) -> api::SurveyMetric {
        match self {
            Metric::Nps => api::SurveyMetric::Nps,
            Metric::Ces => api::SurveyMetric::Ces,
            Metric::Csat => api::SurveyMetric::Csat,
        }
    }
}

impl Wire for survey::Interval {
    type Out = api::Interval;
    fn wire(self) -> api::Interval {
        api::Interval {
            low: self.low,
            high: self.high,
        }
    }
}

impl Wire for MetricReport {
    type Out = api::MetricReport;
    fn wire(self) -> api::MetricReport {
        match self {
            MetricReport::Nps(r) => api::MetricReport::Nps(api::NpsReport {
                responses: count(r.responses),
                promoters: count(r.promoters),
                passives: count(r.passives),
                detractors: count(r.detractors),
                nps: r.nps,
                std_error: r.std_error,
                ci: r.ci.wire(),
                confidence: r.confidence,
            }),
            MetricReport::Ces(r) => api::MetricReport::Ces(api::CesReport {
                responses: count(r.responses),
                mean: r.mean,
                std_dev: r.std_dev,
                std_error: r.std_error,
                ci: r.ci.wire(),
                confidence: r.confidence,
            }),
            MetricReport::Csat(r) => api::MetricReport::Csat(api::CsatReport {
                responses: count(r.responses),
                satisfied: count(r.satisfied),
                csat: r.csat,
                ci: r.ci.wire(),
                confidence: r.confidence,
            }),
        }
    }
}

impl Wire for engine::SurveyReport {
    type Out = api::SurveyReport;
    fn wire(self) -> api::SurveyReport {
        let read = self.read;
        api::SurveyReport {
            survey: self.survey,
            metric: self.metric.wire(),
            read: api::SurveyRead {
                event: read.event,
                properties: read.properties,
                events_read: read.events_read,
                survey_events: count(read.survey_events),
                answers_to_survey: count(read.answers_to_survey),
                in_range: count(read.in_range),
            },
            note: self.note,
            by: self.by.wire(),
            group_by: self.group_by,
            responses: count(self.responses),
            invalid_answers: count(self.invalid_answers),
            overall: self.overall.wire(),
            series: self
                .series
                .into_iter()
                .map(|row| api::SurveySeriesRow {
                    period: row.period,
                    group: row.group,
                    report: row.report.wire(),
                })
                .collect(),
        }
    }
}

impl Wire for engine::CohortRow {
    type Out = api::Cohort;
    fn wire(self) -> api::Cohort {
        api::Cohort {
            cohort: self.cohort,
            customers: count(self.customers),
            probably_gone: count(self.probably_gone),
            share_gone: self.share_gone,
            revenue: self.revenue,
            revenue_gone: self.revenue_gone,
            revenue_share_gone: self.revenue_share_gone,
        }
    }
}

impl Wire for engine::SilentMajorityReport {
    type Out = api::SilentMajority;
    fn wire(self) -> api::SilentMajority {
        api::SilentMajority {
            threshold: self.table.threshold,
            total: self.table.total.wire(),
            cohorts: self.table.cohorts.wire(),
            as_of: self.as_of,
            model: self.model,
            fitted_at: self.fitted_at,
        }
    }
}

impl Wire for rapport_value::distribution::Distribution {
    type Out = api::ScoreDistribution;
    fn wire(self) -> api::ScoreDistribution {
        use rapport_value::distribution::Scale;
        let q = self.quantiles;
        api::ScoreDistribution {
            count: self.count,
            mean: self.mean,
            total: self.total,
            min: self.min,
            max: self.max,
            quantiles: api::Quantiles {
                p10: q.p10,
                p25: q.p25,
                p50: q.p50,
                p75: q.p75,
                p90: q.p90,
                p99: q.p99,
            },
            histogram: api::Histogram {
                scale: match self.histogram.scale {
                    Scale::Linear => api::HistogramScale::Linear,
                    Scale::Log => api::HistogramScale::Log,
                    Scale::Unit => api::HistogramScale::Unit,
                },
                edges: self.histogram.edges,
                counts: self.histogram.counts,
            },
        }
    }
}

impl Wire for engine::ClvDistributionReport {
    type Out = api::ClvDistribution;
    fn wire(self) -> api::ClvDistribution {
        api::ClvDistribution {
            profiles: self.profiles as u64,
            clv: self.clv.wire(),
            p_alive: self.p_alive.wire(),
            bins: self.bins as u64,
            model: self.model,
            spend_model: self.spend_model,
            fitted_at: self.fitted_at,
            profiles_scored_by_fit: self.profiles_scored_by_fit as u64,
        }
    }
}

impl Wire for engine::PeriodGrowth {
    type Out = api::PeriodGrowth;
    fn wire(self) -> api::PeriodGrowth {
        let g = self.growth;
        api::PeriodGrowth {
            period: self.period,
            previous_period: self.previous_period,
            complete: self.complete,
            previous_revenue: g.map(|g| g.previous_revenue),
            retained_revenue: g.map(|g| g.retained_revenue),
            new_earned_revenue: g.map(|g| g.new_earned_revenue),
            new_bought_revenue: g.map(|g| g.new_bought_revenue),
            new_unknown_revenue: g.map(|g| g.new_unknown_revenue),
            existing_customers: g.map(|g| count(g.existing_customers)),
            new_earned_customers: g.map(|g| count(g.new_earned_customers)),
            new_bought_customers: g.map(|g| count(g.new_bought_customers)),
            new_unknown_customers: g.map(|g| count(g.new_unknown_customers)),
            nrr: g.map(|g| g.nrr),
            earned_new_share: g.map(|g| g.earned_new_share),
            egr: g.map(|g| g.egr),
            error: self.error,
        }
    }
}

impl Wire for engine::EarnedGrowthReport {
    type Out = api::EarnedGrowthReport;
    fn wire(self) -> api::EarnedGrowthReport {
        let read = self.read;
        api::EarnedGrowthReport {
            period: self.period.wire(),
            read: api::GrowthRead {
                purchase_event: read.purchase_event,
                revenue_property: read.revenue_property,
                survey_event: read.survey_event,
                reason_property: read.reason_property,
                events_read: read.events_read,
                purchases: count(read.purchases),
                customers_with_reason: count(read.customers_with_reason),
            },
            note: self.note,
            as_of: self.as_of,
            customers: count(self.customers),
            acquisition: api::AcquisitionCounts {
                earned: count(self.acquisition.earned),
                bought: count(self.acquisition.bought),
                unknown: count(self.acquisition.unknown),
            },
            periods: self.periods.wire(),
        }
    }
}
