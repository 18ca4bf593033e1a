//! Criterion benchmarks for the CLV models: fits on CDNOW and on a million synthetic
//! customers, and bulk scoring.
//!
//! Run with `cargo bench -p rapport-value --bench clv`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rapport_value::clv::*;

const SUMMARY: &str = include_str!("../tests/data/cdnow_customers_summary_with_transactions.csv");

fn cdnow() -> Vec<RfmSummary> {
    SUMMARY
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            RfmSummary::new(
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
            .with_monetary(f[4].parse().unwrap())
        })
        .collect()
}

/// `n` customers with CDNOW's fitted parameters, acquired uniformly over a year, observed to a
/// common end date, with times on a daily grid (expressed in weeks) as a transaction log gives.
fn synthetic(n: usize, pareto: bool) -> Vec<RfmSummary> {
    let bg = BgNbd::new(0.243, 4.414, 0.793, 2.426).unwrap();
    let pn = ParetoNbd::new(0.553, 10.578, 0.606, 11.668).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let age = (1 + i % 364) as f64 / 7.0;
            let mut s = if pareto {
                simulate_pareto_nbd(&pn, age, &mut rng).unwrap()
            } else {
                simulate_bgnbd(&bg, age, &mut rng).unwrap()
            };
            s.recency = (s.recency * 7.0).floor() / 7.0;
            s
        })
        .collect()
}

fn fits(c: &mut Criterion) {
    let data = cdnow();
    let opts = FitOptions::default();
    c.bench_function("bgnbd_fit_cdnow", |b| {
        b.iter(|| BgNbd::fit(&data, &opts).unwrap())
    });
    c.bench_function("pareto_nbd_fit_cdnow", |b| {
        b.iter(|| ParetoNbd::fit(&data, &opts).unwrap())
    });
    c.bench_function("gamma_gamma_fit_cdnow", |b| {
        b.iter(|| GammaGamma::fit(&data, &opts).unwrap())
    });
}

fn large(c: &mut Criterion) {
    let data = synthetic(1_000_000, false);
    let opts = FitOptions::default();
    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    group.bench_function("bgnbd_fit_1m_synthetic", |b| {
        b.iter(|| BgNbd::fit(&data, &opts).unwrap())
    });
    let fit = BgNbd::fit(&data, &opts).unwrap().params;
    let gg = GammaGamma::new(6.25, 3.74, 15.44).unwrap();
    let score = ScoreOptions {
        horizon: 52.0,
        clv: None,
    };
    group.bench_function("bgnbd_score_1m", |b| {
        b.iter(|| score_all(&fit, Some(&gg), &data, &score).unwrap())
    });
    let data = synthetic(1_000_000, true);
    group.bench_function("pareto_nbd_fit_1m_synthetic", |b| {
        b.iter(|| ParetoNbd::fit(&data, &opts).unwrap())
    });
    group.finish();
}

fn scoring(c: &mut Criterion) {
    let data = cdnow();
    let opts = FitOptions::default();
    let bg = BgNbd::fit(&data, &opts).unwrap().params;
    let pn = ParetoNbd::fit(&data, &opts).unwrap().params;
    let gg = GammaGamma::fit(&data, &opts).unwrap().params;
    let score = ScoreOptions {
        horizon: 39.0,
        clv: Some(ClvOptions {
            periods: 12,
            period_length: 52.0 / 12.0,
            discount_rate: 0.01,
        }),
    };
    c.bench_function("bgnbd_score_clv_cdnow", |b| {
        b.iter(|| score_all(&bg, Some(&gg), &data, &score).unwrap())
    });
    c.bench_function("pareto_nbd_score_clv_cdnow", |b| {
        b.iter(|| score_all(&pn, Some(&gg), &data, &score).unwrap())
    });
    c.bench_function("hyp2f1_near_one", |b| {
        b.iter_batched(
            || 0.97,
            |z| special::hyp2f1(1.3, 2.1, 3.7, z).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, fits, scoring, large);
criterion_main!(benches);
