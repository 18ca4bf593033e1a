//! The shape of a set of scores (CLV, P(alive)): count, mean, total, quantiles and a
//! histogram, for a report a person reads at a glance. Pure: values in, summary out.
//!
//! Histogram edges are chosen by [`Scale`]: lifetime value is money, skewed with a long
//! tail (a few customers worth a hundred times the median), so its bins are log-spaced
//! between the smallest and largest positive value; equal-width bins would put nearly
//! everyone in the first. A probability is bounded, so P(alive) bins are equal-width on
//! `[0, 1]`.

use serde::Serialize;

/// How histogram edges are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Equal-width bins from the smallest to the largest value.
    Linear,
    /// Log-spaced bins from the smallest to the largest value, when every value is
    /// positive and they differ; otherwise linear (the scale used is reported).
    Log,
    /// Equal-width bins on `[0, 1]`, for probabilities.
    Unit,
}

/// Quantiles by linear interpolation between order statistics (Hyndman & Fan type 7,
/// what NumPy and R use by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub p10: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
}

/// `counts[i]` values lie in `[edges[i], edges[i + 1])`; the last bin also holds its
/// upper edge. `edges.len() == counts.len() + 1`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// The spacing actually used (`log` falls back to `linear` for values ≤ 0).
    pub scale: Scale,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// The summary of a set of values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub total: f64,
    pub min: f64,
    pub max: f64,
    pub quantiles: Quantiles,
    pub histogram: Histogram,
}

/// The quantile `q` in `[0, 1]` of sorted, non-empty `sorted` (type 7).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let x = sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]);
    // Interpolation cannot leave [sorted[lo], sorted[hi]], but rounding could by an ulp.
    x.clamp(sorted[lo], sorted[hi])
}

/// The summary of the finite values of `values` in `bins` bins (at least one), or `None`
/// when there is no finite value. Non-finite values are left out.
pub fn distribution(values: &[f64], bins: usize, scale: Scale) -> Option<Distribution> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let bins = bins.max(1);
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let total: f64 = sorted.iter().sum();
    let (scale, lo, hi) = match scale {
        Scale::Unit => (Scale::Unit, 0.0_f64.min(min), 1.0_f64.max(max)),
        Scale::Log if min > 0.0 && max > min => (Scale::Log, min, max),
        _ => (Scale::Linear, min, max),
    };
    let edges: Vec<f64> = if hi <= lo {
        // Every value is the same: one bin holds them all.
        vec![lo, hi]
    } else {
        (0..=bins)
            .map(|i| {
                let t = i as f64 / bins as f64;
                match i {
                    0 => lo,
                    _ if i == bins => hi,
                    _ if scale == Scale::Log => (lo.ln() + t * (hi.ln() - lo.ln())).exp(),
                    _ => lo + t * (hi - lo),
                }
            })
            .collect()
    };
    let n = edges.len() - 1;
    let mut counts = vec![0u64; n];
    for &v in &sorted {
        // The last edge not above v; values at the top edge go in the last bin.
        let i = edges[1..n].partition_point(|e| *e <= v);
        counts[i] += 1;
    }
    Some(Distribution {
        count: sorted.len() as u64,
        mean: total / sorted.len() as f64,
        total,
        min,
        max,
        quantiles: Quantiles {
            p10: quantile(&sorted, 0.10),
            p25: quantile(&sorted, 0.25),
            p50: quantile(&sorted, 0.50),
            p75: quantile(&sorted, 0.75),
            p90: quantile(&sorted, 0.90),
            p99: quantile(&sorted, 0.99),
        },
        histogram: Histogram {
            scale,
            edges,
            counts,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let d = distribution(&[1.0, 2.0, 3.0, 4.0, 5.0], 4, Scale::Linear).unwrap();
        assert_eq!(d.count, 5);
        assert_eq!(d.total, 15.0);
        assert_eq!(d.mean, 3.0);
        assert_eq!(d.quantiles.p50, 3.0);
        assert!((d.quantiles.p10 - 1.4).abs() < 1e-12);
        assert!((d.quantiles.p99 - 4.96).abs() < 1e-12);
        assert_eq!(d.histogram.edges, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        // [1,2) [2,3) [3,4) [4,5]: the top edge falls in the last bin.
        assert_eq!(d.histogram.counts, vec![1, 1, 1, 2]);
    }

    #[test]
    fn log_bins_spread_a_long_tail_and_fall_back_for_zero() {
        let d = distribution(&[1.0, 10.0, 100.0, 1000.0], 3, Scale::Log).unwrap();
        assert_eq!(d.histogram.scale, Scale::Log);
        assert!((d.histogram.edges[1] - 10.0).abs() < 1e-9);
        assert!((d.histogram.edges[2] - 100.0).abs() < 1e-9);
        assert_eq!(d.histogram.counts.iter().sum::<u64>(), 4);
        let d = distribution(&[0.0, 10.0], 2, Scale::Log).unwrap();
        assert_eq!(d.histogram.scale, Scale::Linear);
        assert_eq!(d.histogram.edges, vec![0.0, 5.0, 10.0]);
    }

    #[test]
    fn probabilities_bin_on_the_unit_interval_and_one_value_is_one_bin() {
        let d = distribution(&[0.3, 0.31, 1.0], 10, Scale::Unit).unwrap();
        assert_eq!(d.histogram.edges.len(), 11);
        assert_eq!((d.histogram.edges[0], d.histogram.edges[10]), (0.0, 1.0));
        assert_eq!(d.histogram.counts[3], 2);
        assert_eq!(d.histogram.counts[9], 1);
        let d = distribution(&[7.0, 7.0], 20, Scale::Log).unwrap();
        assert_eq!(d.histogram.edges, vec![7.0, 7.0]);
        assert_eq!(d.histogram.counts, vec![2]);
        assert!(distribution(&[], 5, Scale::Linear).is_none());
        assert!(distribution(&[f64::NAN], 5, Scale::Linear).is_none());
    }

    proptest! {
        #[test]
        fn counts_add_up_and_quantiles_are_monotone(
            values in prop::collection::vec(prop_oneof![0.0..1e6f64, Just(0.0), 1e-9..1e-6f64], 1..300),
            bins in 1usize..60,
            scale in prop_oneof![Just(Scale::Linear), Just(Scale::Log)],
        ) {
            let d = distribution(&values, bins, scale).unwrap();
            prop_assert_eq!(d.count as usize, values.len());
            prop_assert_eq!(d.histogram.counts.iter().sum::<u64>(), d.count);
            prop_assert_eq!(d.histogram.edges.len(), d.histogram.counts.len() + 1);
            prop_assert!(d.histogram.edges.windows(2).all(|w| w[0] <= w[1]));
            let q = d.quantiles;
            let chain = [d.min, q.p10, q.p25, q.p50, q.p75, q.p90, q.p99, d.max];
            prop_assert!(chain.windows(2).all(|w| w[0] <= w[1]), "{:?}", chain);
            prop_assert!(d.min <= d.mean * (1.0 + 1e-12) && d.mean <= d.max * (1.0 + 1e-12));
        }

        #[test]
        fn probabilities_stay_in_unit_bins(values in prop::collection::vec(0.0..=1.0f64, 1..200), bins in 1usize..50) {
            let d = distribution(&values, bins, Scale::Unit).unwrap();
            prop_assert_eq!(d.histogram.counts.iter().sum::<u64>(), values.len() as u64);
            prop_assert_eq!(d.histogram.edges[0], 0.0);
            prop_assert_eq!(*d.histogram.edges.last().unwrap(), 1.0);
        }
    }
}
