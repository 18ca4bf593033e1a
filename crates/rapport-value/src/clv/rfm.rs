//! Per-customer RFM summaries (frequency, recency, age, monetary value), built from a
//! transaction log, and the calibration/holdout split used to check a model out of sample.
//!
//! The models never look at raw transactions: the likelihoods only depend on how many repeat
//! purchases a customer made (`x`), when the last one was (`t_x`) and how long we have watched
//! them (`T`), all measured from their first purchase. This module is the one place that turns
//! timestamps into those numbers, so every caller gets the same conventions (the first purchase
//! is the "birth" and does not count; purchases in the same period count once).

use super::error::ClvError;

/// Seconds in a day; timestamps are Unix seconds, days are UTC days.
const DAY: i64 = 86_400;

/// What the models know about one customer, measured from their first purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmSummary {
    /// Number of repeat purchases (`x`): purchase periods after the first one.
    pub frequency: u32,
    /// Time of the last purchase since the first one (`t_x`); 0 when `frequency` is 0.
    pub recency: f64,
    /// Time since the first purchase up to the end of observation (`T`).
    pub age: f64,
    /// Mean value of the repeat purchases (first purchase excluded); 0 without repeats.
    pub monetary: f64,
}

impl RfmSummary {
    /// A summary without monetary value.
    pub fn new(frequency: u32, recency: f64, age: f64) -> Self {
        Self {
            frequency,
            recency,
            age,
            monetary: 0.0,
        }
    }

    /// The same summary with a mean repeat-purchase value.
    pub fn with_monetary(mut self, monetary: f64) -> Self {
        self.monetary = monetary;
        self
    }

    /// Checks the invariants every model relies on; `index` is reported in the error.
    pub fn validate(&self, index: usize) -> Result<(), ClvError> {
        let bad = |reason| Err(ClvError::InvalidSummary { index, reason });
        if !self.recency.is_finite() || !self.age.is_finite() || !self.monetary.is_finite() {
            return bad("recency, age and monetary value must be finite");
        }
        if self.recency < 0.0 {
            return bad("recency must be >= 0");
        }
        if self.age < 0.0 {
            return bad("age must be >= 0");
        }
        if self.recency > self.age {
            return bad("recency must not exceed age");
        }
        if self.frequency == 0 && self.recency != 0.0 {
            return bad("recency must be 0 when frequency is 0");
        }
        if self.monetary < 0.0 {
            return bad("monetary value must be >= 0");
        }
        Ok(())
    }
}

/// Validates a slice of summaries, failing on the first bad one.
pub fn validate_summaries(data: &[RfmSummary]) -> Result<(), ClvError> {
    if data.is_empty() {
        return Err(ClvError::EmptyData);
    }
    data.iter().enumerate().try_for_each(|(i, s)| s.validate(i))
}

/// One purchase in a transaction log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction<C> {
    /// Customer identifier.
    pub customer: C,
    /// When it happened, in Unix seconds (UTC).
    pub timestamp: i64,
    /// Purchase value (any currency; must be finite).
    pub amount: f64,
}

/// How purchases are grouped: two purchases in the same period count as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// UTC calendar days.
    #[default]
    Day,
    /// Weeks starting on Monday (UTC).
    Week,
}

impl Period {
    fn index(self, timestamp: i64) -> i64 {
        let day = timestamp.div_euclid(DAY);
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: shift by 3 so weeks start on Monday.
            Period::Week => (day + 3).div_euclid(7),
        }
    }

    fn days(self) -> f64 {
        match self {
            Period::Day => 1.0,
            Period::Week => 7.0,
        }
    }
}

/// The unit recency and age are expressed in (the unit of the fitted rate parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Days.
    #[default]
    Days,
    /// Weeks of 7 days (CDNOW's published fits use days / 7).
    Weeks,
}

impl TimeUnit {
    fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }
}

/// Options for [`summarize`] and [`calibration_holdout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SummaryOptions {
    /// Purchases within one period are merged (amounts summed).
    pub period: Period,
    /// Unit of recency and age in the output.
    pub unit: TimeUnit,
}

impl SummaryOptions {
    /// Converts a number of periods to the output unit.
    fn to_unit(self, periods: i64) -> f64 {
        periods as f64 * self.period.days() / self.unit.days()
    }
}

/// RFM summary of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerSummary<C> {
    /// Customer identifier.
    pub customer: C,
    /// Their summary.
    pub summary: RfmSummary,
}

/// One customer's purchase periods `(period index, summed amount)`, ascending.
type Periods<'a, C> = (&'a C, Vec<(i64, f64)>);

/// Per-customer purchase periods, in customer order.
fn periods_by_customer<C: Ord>(
    txs: &[Transaction<C>],
    observation_end: i64,
    opts: SummaryOptions,
) -> Result<Vec<Periods<'_, C>>, ClvError> {
    if txs.is_empty() {
        return Err(ClvError::EmptyData);
    }
    for (index, t) in txs.iter().enumerate() {
        if !t.amount.is_finite() {
            return Err(ClvError::InvalidTransaction {
                index,
                reason: "amount must be finite",
            });
        }
        if t.timestamp > observation_end {
            return Err(ClvError::InvalidTransaction {
                index,
                reason: "timestamp is after the end of observation",
            });
        }
    }
    let mut order: Vec<(&C, i64, f64)> = txs
        .iter()
        .map(|t| (&t.customer, opts.period.index(t.timestamp), t.amount))
        .collect();
    order.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<Periods<'_, C>> = Vec::new();
    for (c, p, amount) in order {
        match out.last_mut() {
            Some((last, periods)) if *last == c => match periods.last_mut() {
                Some((lp, sum)) if *lp == p => *sum += amount,
                _ => periods.push((p, amount)),
            },
            _ => out.push((c, vec![(p, amount)])),
        }
    }
    Ok(out)
}

fn summary_of(periods: &[(i64, f64)], end_period: i64, opts: SummaryOptions) -> RfmSummary {
    let first = periods[0].0;
    let last = periods[periods.len() - 1].0;
    let frequency = (periods.len() - 1) as u32;
    let monetary = if frequency == 0 {
        0.0
    } else {
        periods[1..].iter().map(|p| p.1).sum::<f64>() / f64::from(frequency)
    };
    RfmSummary {
        frequency,
        recency: opts.to_unit(last - first),
        age: opts.to_unit(end_period - first),
        monetary,
    }
}

/// Turns a transaction log into one RFM summary per customer, sorted by customer.
///
/// Purchases are grouped by [`Period`]; the first period is the customer's birth and is
/// excluded from frequency and monetary value (the convention of the BG/NBD and Gamma-Gamma
/// papers). `observation_end` (Unix seconds) closes the observation window; a transaction after
/// it is an error.
pub fn summarize<C: Ord + Clone>(
    txs: &[Transaction<C>],
    observation_end: i64,
    opts: SummaryOptions,
) -> Result<Vec<CustomerSummary<C>>, ClvError> {
    let end_period = opts.period.index(observation_end);
    Ok(periods_by_customer(txs, observation_end, opts)?
        .into_iter()
        .map(|(c, periods)| CustomerSummary {
            customer: c.clone(),
            summary: summary_of(&periods, end_period, opts),
        })
        .collect())
}

/// One customer of a calibration/holdout split.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutRow<C> {
    /// Customer identifier.
    pub customer: C,
    /// Summary of the calibration period (fit on these).
    pub calibration: RfmSummary,
    /// Purchase periods observed in the holdout period (what a model should predict).
    pub holdout_purchases: u32,
    /// Sum of the holdout purchases' amounts.
    pub holdout_value: f64,
    /// Length of the holdout period in the output unit.
    pub holdout_duration: f64,
}

/// Splits a transaction log at `calibration_end` (inclusive) into calibration summaries and
/// holdout purchase counts up to `observation_end` (inclusive).
///
/// Only customers whose first purchase falls in the calibration period are returned, sorted by
/// customer, as is usual for out-of-sample checks of these models.
pub fn calibration_holdout<C: Ord + Clone>(
    txs: &[Transaction<C>],
    calibration_end: i64,
    observation_end: i64,
    opts: SummaryOptions,
) -> Result<Vec<HoldoutRow<C>>, ClvError> {
    if calibration_end >= observation_end {
        return Err(ClvError::InvalidArgument {
            name: "calibration_end",
            reason: "must be before observation_end",
        });
    }
    let cal_period = opts.period.index(calibration_end);
    let end_period = opts.period.index(observation_end);
    let mut out = Vec::new();
    for (c, periods) in periods_by_customer(txs, observation_end, opts)? {
        let split = periods.partition_point(|p| p.0 <= cal_period);
        if split == 0 {
            continue;
        }
        let holdout = &periods[split..];
        out.push(HoldoutRow {
            customer: c.clone(),
            calibration: summary_of(&periods[..split], cal_period, opts),
            holdout_purchases: holdout.len() as u32,
            holdout_value: holdout.iter().map(|p| p.1).sum(),
            holdout_duration: opts.to_unit(end_period - cal_period),
        });
    }
    if out.is_empty() {
        return Err(ClvError::EmptyData);
    }
    Ok(out)
}

/// Identical `(x, t_x, T)` customers collapsed into weighted rows, with the distinct values of
/// `x` and of the times kept in side tables so that each likelihood evaluation computes the
/// expensive per-`x` (log-gamma) and per-time (logarithm) terms once.
#[derive(Debug, Clone)]
pub(crate) struct Aggregated {
    /// Distinct frequencies, ascending.
    pub xs: Vec<u32>,
    /// Distinct recency and age values, ascending.
    pub times: Vec<f64>,
    /// The weighted rows.
    pub rows: Vec<Row>,
    /// Σ weights (number of customers).
    pub total_weight: f64,
    /// Σ w·x and Σ w·T, for starting values.
    pub sum_x: f64,
    pub sum_age: f64,
}

/// One weighted row: indices into [`Aggregated::xs`] and [`Aggregated::times`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub xi: u32,
    pub txi: u32,
    pub ti: u32,
    pub w: f64,
}

impl Aggregated {
    /// Validates and aggregates summaries (monetary value is ignored).
    pub fn new(data: &[RfmSummary]) -> Result<Self, ClvError> {
        validate_summaries(data)?;
        // Non-negative floats order like their bit patterns.
        let mut keys: Vec<(u32, u64, u64)> = data
            .iter()
            .map(|s| (s.frequency, s.recency.to_bits(), s.age.to_bits()))
            .collect();
        keys.sort_unstable();
        let mut grouped: Vec<((u32, u64, u64), f64)> = Vec::new();
        for k in keys {
            match grouped.last_mut() {
                Some((last, w)) if *last == k => *w += 1.0,
                _ => grouped.push((k, 1.0)),
            }
        }
        let mut xs: Vec<u32> = grouped.iter().map(|g| g.0.0).collect();
        xs.dedup();
        let mut time_bits: Vec<u64> = grouped.iter().flat_map(|g| [g.0.1, g.0.2]).collect();
        time_bits.sort_unstable();
        time_bits.dedup();
        let times: Vec<f64> = time_bits.iter().map(|&b| f64::from_bits(b)).collect();
        let find_time = |b: u64| time_bits.binary_search(&b).unwrap_or(0) as u32;
        let mut sum_x = 0.0;
        let mut sum_age = 0.0;
        let mut total_weight = 0.0;
        let mut xi = 0usize;
        let rows = grouped
            .iter()
            .map(|&((x, tx, t), w)| {
                while xs[xi] != x {
                    xi += 1;
                }
                sum_x += w * f64::from(x);
                sum_age += w * f64::from_bits(t);
                total_weight += w;
                Row {
                    xi: xi as u32,
                    txi: find_time(tx),
                    ti: find_time(t),
                    w,
                }
            })
            .collect();
        Ok(Self {
            xs,
            times,
            rows,
            total_weight,
            sum_x,
            sum_age,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(c: u32, day: i64, amount: f64) -> Transaction<u32> {
        Transaction {
            customer: c,
            timestamp: day * DAY + 3600,
            amount,
        }
    }

    #[test]
    fn summary_excludes_first_purchase_and_merges_same_day() {
        let txs = vec![
            tx(1, 0, 10.0),
            tx(1, 0, 5.0),
            tx(1, 14, 20.0),
            tx(1, 14, 2.0),
            tx(1, 28, 30.0),
            tx(2, 7, 9.0),
        ];
        let opts = SummaryOptions {
            period: Period::Day,
            unit: TimeUnit::Weeks,
        };
        let s = summarize(&txs, 35 * DAY, opts).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].summary,
            RfmSummary::new(2, 4.0, 5.0).with_monetary(26.0)
        );
        assert_eq!(s[1].summary, RfmSummary::new(0, 0.0, 4.0));
    }

    #[test]
    fn weekly_periods_start_on_monday() {
        // Day 4 (1970-01-05) is a Monday; days 4..=10 are one week.
        let txs = vec![tx(1, 4, 1.0), tx(1, 10, 1.0), tx(1, 11, 1.0)];
        let opts = SummaryOptions {
            period: Period::Week,
            unit: TimeUnit::Days,
        };
        let s = summarize(&txs, 20 * DAY, opts).unwrap();
        assert_eq!(s[0].summary.frequency, 1);
        assert_eq!(s[0].summary.recency, 7.0);
        assert_eq!(s[0].summary.age, 14.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let opts = SummaryOptions::default();
        assert_eq!(summarize::<u32>(&[], 0, opts), Err(ClvError::EmptyData));
        assert!(matches!(
            summarize(&[tx(1, 5, 1.0)], 0, opts),
            Err(ClvError::InvalidTransaction { index: 0, .. })
        ));
        assert!(matches!(
            summarize(&[tx(1, 0, f64::NAN)], DAY, opts),
            Err(ClvError::InvalidTransaction { .. })
        ));
        assert!(RfmSummary::new(1, 5.0, 4.0).validate(0).is_err());
        assert!(RfmSummary::new(1, -1.0, 4.0).validate(0).is_err());
        assert!(RfmSummary::new(0, 1.0, 4.0).validate(0).is_err());
        assert!(calibration_holdout(&[tx(1, 0, 1.0)], DAY, DAY, opts).is_err());
    }

    #[test]
    fn holdout_split() {
        let txs = vec![tx(1, 0, 1.0), tx(1, 3, 1.0), tx(1, 12, 4.0), tx(2, 11, 1.0)];
        let rows =
            calibration_holdout(&txs, 10 * DAY, 20 * DAY, SummaryOptions::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].calibration,
            RfmSummary::new(1, 3.0, 10.0).with_monetary(1.0)
        );
        assert_eq!(rows[0].holdout_purchases, 1);
        assert_eq!(rows[0].holdout_value, 4.0);
        assert_eq!(rows[0].holdout_duration, 10.0);
    }

    #[test]
    fn aggregation_counts_duplicates() {
        let data = vec![
            RfmSummary::new(0, 0.0, 5.0),
            RfmSummary::new(2, 3.0, 5.0),
            RfmSummary::new(0, 0.0, 5.0),
        ];
        let agg = Aggregated::new(&data).unwrap();
        assert_eq!(agg.rows.len(), 2);
        assert_eq!(agg.xs, vec![0, 2]);
        assert_eq!(agg.times, vec![0.0, 3.0, 5.0]);
        assert_eq!(agg.total_weight, 3.0);
        assert_eq!(agg.rows[0].w, 2.0);
    }
}
