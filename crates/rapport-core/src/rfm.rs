//! The RFM summary of one profile's purchases, maintained as purchases arrive.
//!
//! The lifetime-value models (BG/NBD, Pareto/NBD, Gamma-Gamma) only need four numbers per
//! customer: repeat purchases (frequency), the time from the first to the last purchase
//! (recency), the time from the first purchase to now (age, `T`) and the mean value of the
//! repeat purchases (monetary). Keeping them current on every purchase event lets segments
//! use them and lets a model fit read them without rescanning history.
//!
//! Conventions match `rapport_value::clv::summarize`: time is counted in whole UTC days;
//! purchases on the same day are one purchase period whose value is their sum; the first day
//! is the customer's "birth" and counts neither as a repeat purchase nor in the monetary
//! mean. Purchases stamped after `now` do not count until their day has come.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

const DAY_SECONDS: i64 = 86_400;

/// Purchases per UTC day (days since the Unix epoch): value and count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RfmState {
    #[serde(default)]
    days: BTreeMap<i64, (f64, u32)>,
}

/// The summary at a given instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rfm {
    /// Purchase days after the first one.
    pub frequency: u32,
    /// Days from the first to the last purchase day.
    pub recency: i64,
    /// Days from the first purchase day to today.
    pub age: i64,
    /// Mean value of the repeat purchase days (0 without repeats).
    pub monetary: f64,
    /// Every purchase (not day) so far.
    pub orders: u32,
    /// Total value of every purchase so far.
    pub revenue: f64,
}

fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(DAY_SECONDS)
}

impl RfmState {
    /// Records one purchase of `value` (use 0 when the event has none) at `at`.
    pub fn observe(&mut self, at: DateTime<Utc>, value: f64) {
        let value = if value.is_finite() { value } else { 0.0 };
        let day = self.days.entry(day_of(at)).or_insert((0.0, 0));
        day.0 += value;
        day.1 += 1;
    }

    /// Folds in the purchases of a profile merged into this one.
    pub fn merge(&mut self, other: &RfmState) {
        for (day, (value, count)) in &other.days {
            let d = self.days.entry(*day).or_insert((0.0, 0));
            d.0 += value;
            d.1 += count;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The summary at `now`; `None` before the first purchase.
    pub fn summary(&self, now: DateTime<Utc>) -> Option<Rfm> {
        let today = day_of(now);
        let mut days = self.days.range(..=today);
        let (&first, &(_, first_count)) = days.next()?;
        let (mut last, mut repeats, mut repeat_value) = (first, 0u32, 0.0);
        let mut orders = first_count;
        let mut revenue = self.days[&first].0;
        for (&day, &(value, count)) in days {
            last = day;
            repeats += 1;
            repeat_value += value;
            orders += count;
            revenue += value;
        }
        Some(Rfm {
            frequency: repeats,
            recency: last - first,
            age: today - first,
            monetary: if repeats == 0 {
                0.0
            } else {
                repeat_value / f64::from(repeats)
            },
            orders,
            revenue,
        })
    }

    /// The summary as the built-in computed traits `rfm_frequency`, `rfm_recency`, `rfm_age`,
    /// `rfm_monetary`, `rfm_orders` and `rfm_revenue` (absent before the first purchase).
    pub fn traits(&self, now: DateTime<Utc>) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(s) = self.summary(now) {
            out.insert("rfm_frequency".into(), s.frequency.into());
            out.insert("rfm_recency".into(), s.recency.into());
            out.insert("rfm_age".into(), s.age.into());
            out.insert("rfm_monetary".into(), number(s.monetary));
            out.insert("rfm_orders".into(), s.orders.into());
            out.insert("rfm_revenue".into(), number(s.revenue));
        }
        out
    }
}

fn number(n: f64) -> Value {
    serde_json::Number::from_f64((n * 1e6).round() / 1e6).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(day: i64, hour: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(day * DAY_SECONDS + hour * 3600, 0).unwrap()
    }

    #[test]
    fn same_day_purchases_are_one_period_and_the_first_day_is_birth() {
        let mut s = RfmState::default();
        assert_eq!(s.summary(at(100, 0)), None);
        s.observe(at(10, 1), 20.0);
        s.observe(at(10, 5), 5.0);
        s.observe(at(14, 3), 30.0);
        s.observe(at(20, 9), 10.0);
        let r = s.summary(at(30, 12)).unwrap();
        assert_eq!(
            r,
            Rfm {
                frequency: 2,
                recency: 10,
                age: 20,
                monetary: 20.0,
                orders: 4,
                revenue: 65.0
            }
        );
        // A purchase in the future does not count yet.
        s.observe(at(40, 0), 100.0);
        assert_eq!(s.summary(at(30, 12)).unwrap().frequency, 2);
        assert_eq!(s.summary(at(40, 0)).unwrap().frequency, 3);
    }

    proptest! {
        #[test]
        fn merging_equals_observing_everything(
            a in prop::collection::vec((0i64..60, 0i64..24, 0u32..500), 0..20),
            b in prop::collection::vec((0i64..60, 0i64..24, 0u32..500), 0..20),
            now in 0i64..70,
        ) {
            let (mut x, mut y, mut all) = (RfmState::default(), RfmState::default(), RfmState::default());
            for &(d, h, v) in &a { x.observe(at(d, h), f64::from(v)); all.observe(at(d, h), f64::from(v)); }
            for &(d, h, v) in &b { y.observe(at(d, h), f64::from(v)); all.observe(at(d, h), f64::from(v)); }
            x.merge(&y);
            let (m, e) = (x.summary(at(now, 0)), all.summary(at(now, 0)));
            prop_assert_eq!(m.map(|r| (r.frequency, r.recency, r.age, r.orders)), e.map(|r| (r.frequency, r.recency, r.age, r.orders)));
            if let (Some(m), Some(e)) = (m, e) {
                prop_assert!((m.monetary - e.monetary).abs() < 1e-9);
                prop_assert!(m.recency <= m.age);
            }
        }
    }
}
