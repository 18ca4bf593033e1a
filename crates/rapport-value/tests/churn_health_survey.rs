//! Property tests of the churn, health and survey models through their public API.

use proptest::prelude::*;
use rapport_value::churn::{ColumnStats, Standardizer, roc_auc};
use rapport_value::health::{HealthConfig, HealthInputs, health_score};
use rapport_value::survey::{SurveyConfig, csat, nps};

/// Scores with both classes present.
fn scored_labels() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
    prop::collection::vec((-1e3f64..1e3, any::<bool>()), 2..60).prop_map(|mut v| {
        v[0].1 = true;
        v[1].1 = false;
        v.into_iter().unzip()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn auc_is_in_unit_interval((scores, labels) in scored_labels()) {
        let auc = roc_auc(&scores, &labels).unwrap();
        prop_assert!((0.0..=1.0).contains(&auc));
    }

    #[test]
    fn auc_is_invariant_under_monotone_transforms(
        (scores, labels) in scored_labels(),
        a in 0.01f64..100.0,
        b in -100.0f64..100.0,
    ) {
        let auc = roc_auc(&scores, &labels).unwrap();
        // Strictly increasing maps keep the order (and the ties).
        let affine: Vec<f64> = scores.iter().map(|s| a * s + b).collect();
        let cubed: Vec<f64> = scores.iter().map(|s| (s / 1e3).powi(3)).collect();
        let logistic: Vec<f64> = scores.iter().map(|s| 1.0 / (1.0 + (-s / 100.0).exp())).collect();
        for t in [&affine, &cubed, &logistic] {
            prop_assert!((roc_auc(t, &labels).unwrap() - auc).abs() < 1e-12);
        }
        // A decreasing map mirrors it.
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        prop_assert!((roc_auc(&neg, &labels).unwrap() - (1.0 - auc)).abs() < 1e-12);
    }

    #[test]
    fn standardisation_round_trips(
        rows in prop::collection::vec(prop::collection::vec(-1e6f64..1e6, 3), 1..40),
    ) {
        let s = Standardizer::fit(&rows).unwrap();
        for r in &rows {
            let z = s.transform(r).unwrap();
            let back = s.inverse(&z).unwrap();
            for (x, y) in r.iter().zip(&back) {
                prop_assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
        // Standardised training columns have mean 0.
        for j in 0..3 {
            let st: ColumnStats = s.stats[j];
            let mean: f64 = rows.iter().map(|r| st.transform(r[j])).sum::<f64>() / rows.len() as f64;
            prop_assert!(mean.abs() < 1e-6, "mean {mean}");
        }
    }

    #[test]
    fn nps_is_bounded(scores in prop::collection::vec(0u8..=10, 1..200)) {
        let s: Vec<f64> = scores.iter().map(|&x| f64::from(x)).collect();
        let r = nps(&s, &SurveyConfig::default()).unwrap();
        prop_assert!((-100.0..=100.0).contains(&r.nps));
        prop_assert!(r.ci.low <= r.nps && r.nps <= r.ci.high);
        prop_assert!(r.ci.low >= -100.0 && r.ci.high <= 100.0);
        prop_assert_eq!(r.promoters + r.passives + r.detractors, s.len());
    }

    #[test]
    fn csat_is_bounded(scores in prop::collection::vec(1u8..=5, 1..200)) {
        let s: Vec<f64> = scores.iter().map(|&x| f64::from(x)).collect();
        let r = csat(&s, &SurveyConfig::default()).unwrap();
        prop_assert!((0.0..=100.0).contains(&r.csat));
        prop_assert!(r.ci.low <= r.csat + 1e-9 && r.csat <= r.ci.high + 1e-9);
    }

    #[test]
    fn health_score_is_bounded(
        values in prop::collection::vec(prop::option::of(-1e6f64..1e6), 6),
    ) {
        let inputs = HealthInputs {
            activity_trend: values[0],
            support_tickets: values[1],
            nps: values[2],
            p_alive: values[3],
            churn_risk: values[4],
            days_to_renewal: values[5],
        };
        let cfg = HealthConfig::default();
        match health_score(&inputs, &cfg) {
            Ok(s) => {
                prop_assert!((0.0..=100.0).contains(&s.score));
                prop_assert!(s.coverage > 0.0 && s.coverage <= 1.0 + 1e-12);
                let w: f64 = s.components.iter().map(|c| c.effective_weight).sum();
                prop_assert!((w - 1.0).abs() < 1e-9);
            }
            Err(_) => prop_assert!(values.iter().all(Option::is_none)),
        }
    }
}
