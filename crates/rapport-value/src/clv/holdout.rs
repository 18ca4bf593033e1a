//! Out-of-sample check of a purchase model: fit on a calibration period, predict the holdout
//! period, compare with what customers actually did.
//!
//! This is how the models are judged in the literature (and how a user should judge a fit on
//! their own data before trusting its CLV): totals, per-customer error, and the conditional
//! expectation by calibration frequency.

use rayon::prelude::*;

use super::PurchaseModel;
use super::error::ClvError;
use super::rfm::HoldoutRow;

/// Mean predicted vs actual holdout purchases for customers with a given calibration
/// frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrequencyBucket {
    /// Calibration repeat purchases; the last bucket holds every frequency ≥ this value.
    pub frequency: u32,
    /// Customers in the bucket.
    pub customers: usize,
    /// Mean actual holdout purchases.
    pub actual_mean: f64,
    /// Mean predicted holdout purchases.
    pub predicted_mean: f64,
}

/// Summary of predicted vs actual holdout purchases.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutReport {
    /// Customers compared.
    pub customers: usize,
    /// Σ predicted holdout purchases.
    pub predicted_total: f64,
    /// Σ actual holdout purchases.
    pub actual_total: f64,
    /// Mean absolute error per customer.
    pub mae: f64,
    /// Root mean squared error per customer.
    pub rmse: f64,
    /// Buckets by calibration frequency 0, 1, …, `bucket_cap` (the last is "≥ bucket_cap").
    pub buckets: Vec<FrequencyBucket>,
}

/// Predicts each customer's holdout purchases from their calibration summary and compares.
pub fn evaluate_holdout<M: PurchaseModel + ?Sized, C: Sync>(
    model: &M,
    rows: &[HoldoutRow<C>],
    bucket_cap: u32,
) -> Result<HoldoutReport, ClvError> {
    if rows.is_empty() {
        return Err(ClvError::EmptyData);
    }
    let predicted: Vec<f64> = rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            row.calibration.validate(i)?;
            model.expected_purchases(&row.calibration, row.holdout_duration)
        })
        .collect::<Result<_, _>>()?;
    let mut buckets: Vec<FrequencyBucket> = (0..=bucket_cap)
        .map(|frequency| FrequencyBucket {
            frequency,
            customers: 0,
            actual_mean: 0.0,
            predicted_mean: 0.0,
        })
        .collect();
    let (mut abs, mut sq, mut predicted_total, mut actual_total) = (0.0, 0.0, 0.0, 0.0);
    for (row, &p) in rows.iter().zip(&predicted) {
        let actual = f64::from(row.holdout_purchases);
        abs += (p - actual).abs();
        sq += (p - actual).powi(2);
        predicted_total += p;
        actual_total += actual;
        let b = &mut buckets[row.calibration.frequency.min(bucket_cap) as usize];
        b.customers += 1;
        b.actual_mean += actual;
        b.predicted_mean += p;
    }
    for b in &mut buckets {
        if b.customers > 0 {
            b.actual_mean /= b.customers as f64;
            b.predicted_mean /= b.customers as f64;
        }
    }
    let n = rows.len() as f64;
    Ok(HoldoutReport {
        customers: rows.len(),
        predicted_total,
        actual_total,
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        buckets,
    })
}
