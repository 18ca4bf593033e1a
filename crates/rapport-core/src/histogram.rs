//! A log-scale histogram: constant space whatever the count, quantiles within 10 %.
//!
//! Bucket `i` holds values in `[1.1^i, 1.1^(i+1))` (bucket 0 also everything under 1), so a
//! quantile read from it is its bucket's upper bound — at most 10 % above the true value.
//! Buckets are kept sparse (index → count); the unit (milliseconds of a request, seconds a
//! customer spends on a journey step) is the caller's.

use std::collections::BTreeMap;

const GROWTH: f64 = 1.1;

/// The bucket of `x`, at most `buckets − 1`.
pub fn bucket_of(x: f64, buckets: u16) -> u16 {
    if x.is_nan() || x < 1.0 {
        return 0;
    }
    let i = (x.ln() / GROWTH.ln()).floor();
    (i.min(f64::from(u16::MAX)) as u16).min(buckets.saturating_sub(1))
}

/// The upper bound of a bucket.
pub fn bucket_upper(bucket: u16) -> f64 {
    GROWTH.powi(i32::from(bucket) + 1)
}

/// The value at quantile `q` (0..=1) of a histogram (bucket → count), as the upper bound of
/// its bucket; `None` when it is empty.
pub fn quantile(histogram: &BTreeMap<u16, u64>, q: f64) -> Option<f64> {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return None;
    }
    // The smallest bucket whose cumulative count reaches ⌈q·total⌉ (at least 1).
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, n) in histogram {
        seen += n;
        if seen >= rank {
            return Some(bucket_upper(*b));
        }
    }
    histogram.keys().last().map(|b| bucket_upper(*b))
}

/// Adds `other`'s counts into `into`.
pub fn absorb(into: &mut BTreeMap<u16, u64>, other: &BTreeMap<u16, u64>) {
    for (b, n) in other {
        *into.entry(*b).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_quantile_is_at_most_ten_percent_above_the_true_value(
            xs in proptest::collection::vec(1.0f64..1e9, 1..200), q in 0.0f64..=1.0
        ) {
            let mut h = BTreeMap::new();
            for x in &xs {
                *h.entry(bucket_of(*x, u16::MAX)).or_default() += 1u64;
            }
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = ((q * xs.len() as f64).ceil() as usize).max(1);
            let truth = sorted[rank - 1];
            let got = quantile(&h, q).unwrap();
            prop_assert!(got >= truth && got <= truth * 1.1 * (1.0 + 1e-9), "{got} vs {truth}");
        }
    }
}
