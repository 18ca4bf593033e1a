//! Property tests: model outputs stay in their domains for any valid parameters and
//! customers, ₂F₁ agrees with its defining series, and fits recover the parameters of data
//! simulated from the model.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rapport_value::clv::special::hyp2f1;
use rapport_value::clv::*;

/// The defining series, summed naively; returns (sum, Σ|terms|) for a scale-aware tolerance.
fn naive_series(a: f64, b: f64, c: f64, z: f64) -> (f64, f64) {
    let (mut sum, mut abs, mut term) = (1.0, 1.0, 1.0);
    for n in 0..20_000 {
        let nf = n as f64;
        term *= (a + nf) * (b + nf) / ((c + nf) * (nf + 1.0)) * z;
        sum += term;
        abs += term.abs();
        if term.abs() < 1e-18 * abs && nf > (a.abs() + b.abs()) * 4.0 {
            break;
        }
    }
    (sum, abs)
}

fn bgnbd() -> impl Strategy<Value = BgNbd> {
    (0.05..5.0f64, 0.1..50.0f64, 0.1..5.0f64, 0.1..10.0f64)
        .prop_map(|(r, alpha, a, b)| BgNbd::new(r, alpha, a, b).unwrap())
}

fn pareto() -> impl Strategy<Value = ParetoNbd> {
    (0.05..5.0f64, 0.1..50.0f64, 0.1..5.0f64, 0.1..50.0f64)
        .prop_map(|(r, alpha, s, beta)| ParetoNbd::new(r, alpha, s, beta).unwrap())
}

fn customer() -> impl Strategy<Value = RfmSummary> {
    (0u32..60, 0.0..1.0f64, 0.01..150.0f64).prop_map(|(x, frac, age)| {
        let recency = if x == 0 { 0.0 } else { frac * age };
        RfmSummary::new(x, recency, age)
    })
}

fn check_purchase_model<M: PurchaseModel>(
    m: &M,
    s: &RfmSummary,
    t1: f64,
    t2: f64,
) -> Result<(), TestCaseError> {
    let alive = m.p_alive(s).unwrap();
    prop_assert!((0.0..=1.0).contains(&alive), "P(alive) = {alive}");
    let (lo, hi) = (t1.min(t2), t1.max(t2));
    let e_lo = m.expected_purchases(s, lo).unwrap();
    let e_hi = m.expected_purchases(s, hi).unwrap();
    prop_assert!(e_lo >= 0.0 && e_lo.is_finite(), "E = {e_lo}");
    prop_assert!(e_hi >= e_lo - 1e-9 * e_hi.abs().max(1.0), "{e_lo} > {e_hi}");
    for n in 0..4 {
        let p = m.prob_purchases(hi, n).unwrap();
        prop_assert!((0.0..=1.0).contains(&p));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hyp2f1_agrees_with_its_series(
        a in -3.5..6.0f64,
        b in -3.5..6.0f64,
        c in 0.05..7.0f64,
        z in -0.9..0.9f64,
    ) {
        let got = hyp2f1(a, b, c, z).unwrap();
        let (want, scale) = naive_series(a, b, c, z);
        prop_assert!(
            (got - want).abs() <= 1e-8 * scale,
            "2F1({a}, {b}; {c}; {z}) = {got}, series {want}"
        );
    }

    #[test]
    fn bgnbd_outputs_stay_in_domain(
        m in bgnbd(), s in customer(), t1 in 0.0..200.0f64, t2 in 0.0..200.0f64,
    ) {
        check_purchase_model(&m, &s, t1, t2)?;
        // Having bought more recently can only make the customer more likely alive.
        if s.frequency > 0 && s.recency < s.age {
            let later = RfmSummary::new(s.frequency, s.age, s.age);
            prop_assert!(m.p_alive(&later).unwrap() >= m.p_alive(&s).unwrap() - 1e-12);
        }
    }

    #[test]
    fn pareto_outputs_stay_in_domain(
        m in pareto(), s in customer(), t1 in 0.0..200.0f64, t2 in 0.0..200.0f64,
    ) {
        check_purchase_model(&m, &s, t1, t2)?;
    }

    #[test]
    fn summaries_from_any_log_are_valid(
        log in prop::collection::vec((0u8..20, 0i64..400, 0.0..100.0f64), 1..200),
        weekly in any::<bool>(),
    ) {
        let txs: Vec<Transaction<u8>> = log
            .iter()
            .map(|&(customer, day, amount)| Transaction { customer, timestamp: day * 86_400, amount })
            .collect();
        let opts = SummaryOptions {
            period: if weekly { Period::Week } else { Period::Day },
            unit: TimeUnit::Days,
        };
        let out = summarize(&txs, 400 * 86_400, opts).unwrap();
        for c in &out {
            c.summary.validate(0).unwrap();
            let n = txs.iter().filter(|t| t.customer == c.customer).count();
            prop_assert!((c.summary.frequency as usize) < n);
        }
        let mut ids: Vec<u8> = txs.iter().map(|t| t.customer).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(out.len(), ids.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn bgnbd_fit_recovers_simulated_parameters(
        seed in any::<u64>(),
        r in 0.2..2.0f64,
        alpha in 1.0..20.0f64,
        a in 0.5..2.0f64,
        b in 1.0..6.0f64,
    ) {
        let truth = BgNbd::new(r, alpha, a, b).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let data: Vec<RfmSummary> = (0..40_000)
            .map(|i| simulate_bgnbd(&truth, 20.0 + (i % 60) as f64, &mut rng).unwrap())
            .collect();
        let fit = BgNbd::fit(&data, &FitOptions::default()).unwrap();
        let p = fit.params;
        // The MLE is at least as likely as the truth, and close to it.
        prop_assert!(fit.log_likelihood >= truth.log_likelihood(&data).unwrap() - 1e-6);
        for (got, want) in [(p.r, r), (p.alpha, alpha), (p.a, a), (p.b, b)] {
            prop_assert!((got / want - 1.0).abs() < 0.35, "{p:?} vs {truth:?}");
        }
        // Expected purchases of a new customer are pinned much more tightly.
        let (e_fit, e_true) = (p.expected_purchases_new(52.0).unwrap(), truth.expected_purchases_new(52.0).unwrap());
        prop_assert!((e_fit / e_true - 1.0).abs() < 0.05, "{e_fit} vs {e_true}");
    }
}

#[test]
fn pareto_fit_recovers_simulated_parameters() {
    let truth = ParetoNbd::new(0.8, 8.0, 0.6, 12.0).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let data: Vec<RfmSummary> = (0..8_000)
        .map(|i| simulate_pareto_nbd(&truth, 20.0 + (i % 40) as f64, &mut rng).unwrap())
        .collect();
    let fit = ParetoNbd::fit(&data, &FitOptions::default()).unwrap();
    let p = fit.params;
    assert!(fit.log_likelihood >= truth.log_likelihood(&data).unwrap() - 1e-6);
    for (got, want) in [(p.r, 0.8), (p.alpha, 8.0), (p.s, 0.6), (p.beta, 12.0)] {
        assert!((got / want - 1.0).abs() < 0.35, "{p:?} vs {truth:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any small data set — degenerate ones included — gives a fit or a typed error, never a
    /// panic or a non-finite result.
    #[test]
    fn fits_never_panic(
        rows in prop::collection::vec((0u32..6, 0.0..1.0f64, 0.0..40.0f64, 0.0..200.0f64), 1..40),
    ) {
        let data: Vec<RfmSummary> = rows
            .iter()
            .map(|&(x, frac, age, m)| {
                let recency = if x == 0 { 0.0 } else { frac * age };
                RfmSummary::new(x, recency, age).with_monetary(if x == 0 { 0.0 } else { m })
            })
            .collect();
        let opts = FitOptions::default();
        if let Ok(fit) = BgNbd::fit(&data, &opts) {
            prop_assert!(fit.log_likelihood.is_finite());
            fit.params.validate().unwrap();
        }
        if let Ok(fit) = ParetoNbd::fit(&data, &opts) {
            prop_assert!(fit.log_likelihood.is_finite());
            fit.params.validate().unwrap();
        }
        if let Ok(fit) = GammaGamma::fit(&data, &opts) {
            prop_assert!(fit.log_likelihood.is_finite());
        }
    }
}

/// The conditional purchase distribution sums to one and its mean is the conditional
/// expectation, for both models.
fn check_conditional_distribution<M: PurchaseModel>(m: &M, s: &RfmSummary, t: f64) {
    let (mut total, mut mean) = (0.0, 0.0);
    for n in 0..3000 {
        let p = m.prob_purchases_given(s, t, n).unwrap();
        total += p;
        mean += f64::from(n) * p;
    }
    let e = m.expected_purchases(s, t).unwrap();
    assert!((total - 1.0).abs() < 1e-8, "{s:?}: total {total}");
    assert!(
        (mean - e).abs() < 1e-6 * e.max(1e-3),
        "{s:?}: mean {mean} vs {e}"
    );
}

#[test]
fn conditional_purchase_distribution_matches_expectation() {
    let bg = BgNbd::new(0.243, 4.414, 0.793, 2.426).unwrap();
    let pn = ParetoNbd::new(0.553, 10.578, 0.606, 11.668).unwrap();
    for s in [
        RfmSummary::new(0, 0.0, 38.86),
        RfmSummary::new(2, 30.43, 38.86),
        RfmSummary::new(14, 37.0, 38.0),
        RfmSummary::new(5, 4.0, 35.0),
    ] {
        check_conditional_distribution(&bg, &s, 39.0);
        check_conditional_distribution(&pn, &s, 39.0);
    }
}
