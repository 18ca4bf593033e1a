//! Retention: of the customers who started in a period, how many came back in each period
//! after.
//!
//! A customer's *cohort* is the local period (day, week or month in the report's time zone)
//! of their *entry*, an event of the start filter:
//!
//! - first-time cohorts: the customer's first start event ever; a customer whose first one
//!   falls outside the report's range is in no cohort of it;
//! - recurring cohorts: every period of the range in which the customer did a start event,
//!   entering at the first of them in that period.
//!
//! The customer *returned in period n* of the cohort when an event of the return filter
//! happened in the `n`-th period after the cohort's (local calendar periods, so "the next
//! day" is the next calendar day in the time zone, however few hours later). Period 0 counts
//! returns in the cohort's own period made after the entry (later in time, or later in the
//! log at the same millisecond): a same-day return is a return, and an entry is never its
//! own return, even when the start and return filters are the same. A cell whose period has
//! not begun is `None`, not 0.

use crate::period::{self, Period};
use crate::{AnalyticsError, History};
use chrono_tz::Tz;
use rapport_core::audience::EventFilter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Periods after the cohort's that a report may follow at most.
pub const MAX_PERIODS: usize = 366;

/// How customers are put into cohorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cohorting {
    /// By their first start event ever.
    #[default]
    FirstTime,
    /// In every period of the range with a start event.
    Recurring,
}

/// A retention question.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSpec {
    pub start: EventFilter,
    pub returning: EventFilter,
    pub period: Period,
    pub tz: Tz,
    /// Columns of the matrix: periods 0 to `periods - 1` after the cohort's.
    pub periods: usize,
    pub cohorting: Cohorting,
    /// Entries count from `from_ms` (inclusive) to `to_ms` (exclusive).
    pub from_ms: i64,
    pub to_ms: i64,
}

impl RetentionSpec {
    pub fn validate(&self) -> Result<(), AnalyticsError> {
        if self.periods == 0 || self.periods > MAX_PERIODS {
            return Err(AnalyticsError::invalid(
                "periods",
                format!("follow 1 to {MAX_PERIODS} periods, not {}", self.periods),
            ));
        }
        if self.from_ms >= self.to_ms {
            return Err(AnalyticsError::invalid(
                "from",
                "`from` must be before `to`",
            ));
        }
        Ok(())
    }
}

/// One customer in one cohort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The cohort's period number ([`period::index`]).
    pub cohort: i64,
    /// When the customer entered, Unix ms.
    pub entry_ms: i64,
    /// The periods after the cohort's (0-based, below `periods`) with a return, ascending.
    pub returned: Vec<usize>,
}

/// The cohorts a customer belongs to, each with the periods they returned in.
pub fn memberships(history: &History, spec: &RetentionSpec) -> Vec<Membership> {
    let events = &history.events;
    let in_range = |t: i64| t >= spec.from_ms && t < spec.to_ms;
    // Entries: index of the entering event, per cohort.
    let mut entries: Vec<usize> = Vec::new();
    match spec.cohorting {
        Cohorting::FirstTime => {
            if let Some(i) = events.iter().position(|e| spec.start.matches(e))
                && in_range(events[i].at_ms)
            {
                entries.push(i);
            }
        }
        Cohorting::Recurring => {
            let mut last = None;
            for (i, e) in events.iter().enumerate() {
                if !in_range(e.at_ms) || !spec.start.matches(e) {
                    continue;
                }
                let p = period::index(e.at_ms, spec.period, spec.tz);
                if last != Some(p) {
                    entries.push(i);
                    last = Some(p);
                }
            }
        }
    }
    // Period numbers of the customer's returns, in history order (indices kept so that
    // "after the entry" is decided by position).
    let returns: Vec<(usize, i64)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| spec.returning.matches(*e))
        .map(|(i, e)| (i, period::index(e.at_ms, spec.period, spec.tz)))
        .collect();
    entries
        .into_iter()
        .map(|entry| {
            let cohort = period::index(events[entry].at_ms, spec.period, spec.tz);
            let mut returned: Vec<usize> = returns
                .iter()
                .filter(|&&(i, _)| i > entry)
                .filter_map(|&(_, p)| usize::try_from(p - cohort).ok())
                .filter(|&n| n < spec.periods)
                .collect();
            returned.dedup();
            Membership {
                cohort,
                entry_ms: events[entry].at_ms,
                returned,
            }
        })
        .collect()
}

/// One cohort's row of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortRow {
    /// The first local day of the cohort's period.
    pub period: String,
    /// Its period number, to ask for the people of a cell.
    pub cohort: i64,
    pub customers: u64,
    /// Per period after the cohort's: customers who returned; `None` before it begins.
    pub returned: Vec<Option<u64>>,
    /// `returned / customers`.
    pub rates: Vec<Option<f64>>,
}

/// A retention matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionReport {
    pub cohorts: Vec<CohortRow>,
    /// Customers in every cohort.
    pub customers: u64,
    /// Per period: the returns of the cohorts that have reached it over their customers
    /// (a weighted mean of the column); `None` when no cohort has.
    pub overall: Vec<Option<f64>>,
}

/// The matrix of every customer's memberships, as of `now_ms` (a period that has not begun
/// by then has no figure).
pub fn report(members: &[Membership], spec: &RetentionSpec, now_ms: i64) -> RetentionReport {
    let mut by_cohort = BTreeMap::<i64, (u64, Vec<u64>)>::new();
    for m in members {
        let row = by_cohort
            .entry(m.cohort)
            .or_insert_with(|| (0, vec![0; spec.periods]));
        row.0 += 1;
        for &n in &m.returned {
            row.1[n] += 1;
        }
    }
    let mut totals = vec![(0u64, 0u64); spec.periods];
    let cohorts: Vec<CohortRow> = by_cohort
        .into_iter()
        .map(|(cohort, (customers, counts))| {
            let returned: Vec<Option<u64>> = counts
                .iter()
                .enumerate()
                .map(|(n, &r)| {
                    let begun = period::start_ms(cohort + n as i64, spec.period, spec.tz) <= now_ms;
                    begun.then_some(r)
                })
                .collect();
            for (n, r) in returned.iter().enumerate() {
                if let Some(r) = r {
                    totals[n].0 += r;
                    totals[n].1 += customers;
                }
            }
            CohortRow {
                period: period::start_date(cohort, spec.period).to_string(),
                cohort,
                customers,
                rates: returned
                    .iter()
                    .map(|r| r.map(|r| r as f64 / customers as f64))
                    .collect(),
                returned,
            }
        })
        .collect();
    RetentionReport {
        customers: members.len() as u64,
        overall: totals
            .iter()
            .map(|&(r, c)| (c > 0).then(|| r as f64 / c as f64))
            .collect(),
        cohorts,
    }
}

/// Whether a membership is in the cell (`cohort`, period `n`); the cell's figure counts
/// exactly these.
pub fn in_cell(m: &Membership, cohort: i64, n: usize) -> bool {
    m.cohort == cohort && m.returned.binary_search(&n).is_ok()
}

#[cfg(test)]
mod tests;
