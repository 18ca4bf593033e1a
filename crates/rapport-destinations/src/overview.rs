//! A destination's delivery overview: per hour, how many messages were delivered, parked
//! for a retry and dead-lettered, how long its requests took (p50, p99), and the last
//! error. The worker adds each request's outcome to its hour; the API merges hours.
//!
//! Latencies go into the log-scale histogram of [`rapport_core::histogram`], in
//! milliseconds: percentiles at most 10 % above the true value, in constant space per hour
//! whatever the traffic (at most [`LATENCY_BUCKETS`] buckets, kept sparse).

use rapport_core::histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// Buckets of the latency histogram: 1.1^170 ms is about 3.6 days, beyond any timeout.
pub const LATENCY_BUCKETS: u16 = 170;

/// The start of the hour holding `ms` (Unix milliseconds).
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// What happened to a destination's messages in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourStats {
    /// Start of the hour, Unix milliseconds.
    pub hour_ms: i64,
    pub delivered: u64,
    /// Attempts that failed and were parked for another.
    pub retried: u64,
    pub dead_lettered: u64,
    /// Messages not sent because the person has not granted a purpose the destination's
    /// `consent` rule names.
    #[serde(default)]
    pub skipped_consent: u64,
    /// Messages not sent because the person is suppressed.
    #[serde(default)]
    pub skipped_suppressed: u64,
    /// Requests made (a batch is one request).
    pub requests: u64,
    /// Request latencies: bucket index → count.
    #[serde(default)]
    pub latency: BTreeMap<u16, u64>,
    /// The last failed attempt's error in this hour, and when (Unix milliseconds).
    #[serde(default)]
    pub last_error: Option<(i64, String)>,
}

/// The bucket of a latency in milliseconds.
pub fn bucket_of(ms: f64) -> u16 {
    histogram::bucket_of(ms, LATENCY_BUCKETS)
}

/// The upper bound of a bucket, milliseconds.
pub fn bucket_upper_ms(bucket: u16) -> f64 {
    histogram::bucket_upper(bucket)
}

impl HourStats {
    pub fn new(hour_ms: i64) -> HourStats {
        HourStats {
            hour_ms,
            ..HourStats::default()
        }
    }

    /// Adds one request's latency.
    pub fn record_latency(&mut self, ms: f64) {
        self.requests += 1;
        *self.latency.entry(bucket_of(ms)).or_default() += 1;
    }

    /// Adds another hour's (or another period's) counts into this one; the later error
    /// wins.
    pub fn absorb(&mut self, other: &HourStats) {
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.skipped_consent += other.skipped_consent;
        self.skipped_suppressed += other.skipped_suppressed;
        self.requests += other.requests;
        histogram::absorb(&mut self.latency, &other.latency);
        if other.last_error.as_ref().map(|e| e.0) > self.last_error.as_ref().map(|e| e.0) {
            self.last_error.clone_from(&other.last_error);
        }
    }

    /// The latency at quantile `q` (0..=1) in milliseconds, as the upper bound of its
    /// bucket; `None` without requests.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        histogram::quantile(&self.latency, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hours_start_on_the_hour_also_before_1970() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS + 5), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }

    #[test]
    fn quantiles_of_known_latencies() {
        let mut h = HourStats::new(0);
        assert_eq!(h.latency_quantile_ms(0.5), None);
        for ms in 1..=100 {
            h.record_latency(ms as f64);
        }
        let p50 = h.latency_quantile_ms(0.5).unwrap();
        let p99 = h.latency_quantile_ms(0.99).unwrap();
        assert!((50.0..=55.0).contains(&p50), "{p50}");
        assert!((99.0..=109.0).contains(&p99), "{p99}");
        assert_eq!(h.requests, 100);
    }

    #[test]
    fn sub_millisecond_and_absurd_latencies_land_in_the_end_buckets() {
        assert_eq!(bucket_of(0.2), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(1e30), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn the_later_error_wins_when_hours_merge() {
        let mut a = HourStats::new(0);
        a.last_error = Some((5, "503".into()));
        let mut b = HourStats::new(HOUR_MS);
        b.last_error = Some((HOUR_MS + 1, "timed out".into()));
        a.absorb(&b);
        assert_eq!(a.last_error.unwrap().1, "timed out");
    }

    proptest! {
        /// The quantile read is never below the true one and at most 10 % above it.
        #[test]
        fn a_quantile_is_within_ten_percent_above_the_truth(
            mut ms in proptest::collection::vec(1.0f64..100_000.0, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let mut h = HourStats::new(0);
            for x in &ms {
                h.record_latency(*x);
            }
            ms.sort_by(f64::total_cmp);
            let rank = ((q * ms.len() as f64).ceil() as usize).max(1);
            let truth = ms[rank - 1];
            let read = h.latency_quantile_ms(q).unwrap();
            prop_assert!(read >= truth, "{read} < {truth}");
            prop_assert!(read <= truth * 1.1 * 1.000_001, "{read} > 1.1 × {truth}");
        }

        /// Merging hours in any grouping gives the same totals and quantiles.
        #[test]
        fn merging_is_associative(
            a in proptest::collection::vec(1.0f64..5_000.0, 0..50),
            b in proptest::collection::vec(1.0f64..5_000.0, 0..50),
            c in proptest::collection::vec(1.0f64..5_000.0, 0..50),
        ) {
            let hour = |xs: &[f64]| {
                let mut h = HourStats::new(0);
                for x in xs { h.record_latency(*x); }
                h
            };
            let (ha, hb, hc) = (hour(&a), hour(&b), hour(&c));
            let mut left = ha.clone();
            left.absorb(&hb);
            left.absorb(&hc);
            let mut right = hb.clone();
            right.absorb(&hc);
            let mut right_all = ha.clone();
            right_all.absorb(&right);
            prop_assert_eq!(left, right_all);
        }
    }
}
