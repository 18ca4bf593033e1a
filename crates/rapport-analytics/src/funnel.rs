//! Funnels: how many customers take a sequence of steps, and how long they take.
//!
//! A step is an event filter of the segment language (`event == "Order Completed" and
//! properties.total > 50`). A customer *enters* with an event of the first step made inside
//! the report's range, and *reaches* step `k` when events of steps 1..k follow within the
//! conversion window of that entry, in the chosen [`Order`]. Each customer is counted once,
//! by their best attempt:
//!
//! - the attempt that reaches the most steps;
//! - of those, the one that reaches its last step first;
//! - of those, the one that started last (the shortest).
//!
//! That attempt gives everything else reported for the customer: its entry time (conversion
//! over time), its step times (time to convert), and the breakdown value — the property of
//! the event that entered it, or the customer's trait now. The people at a step and those
//! who dropped after it are the customers counted there, so a count always equals the
//! length of its list and its export.

use crate::period::{self, Period};
use crate::{AnalyticsError, History, at_path, label, nearest_rank};
use chrono_tz::Tz;
use rapport_core::audience::EventFilter;
use serde::Serialize;
use std::collections::BTreeMap;

/// Steps of a funnel at most.
pub const MAX_STEPS: usize = 20;

/// How the steps must follow one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// In order, anything else in between.
    #[default]
    Sequential,
    /// In order, each the customer's very next event after the one before.
    Strict,
    /// In any order, all within the window of the first of them. One event may stand for
    /// several steps when it matches several.
    Any,
}

/// An event that bars an attempt from step `before` when it happens after the attempt's
/// step `after` (steps numbered from 0): a customer who reaches `before` must do so without
/// one in between. The steps up to `before` still count.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusion {
    pub filter: EventFilter,
    pub after: usize,
    pub before: usize,
}

/// What a breakdown splits customers by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakdown {
    /// A property (dotted path) of the event that entered the counted attempt.
    Property(Vec<String>),
    /// A trait of the customer's profile, as it is now.
    Trait(String),
}

/// A funnel question.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelSpec {
    pub steps: Vec<EventFilter>,
    /// The conversion window: the last step at most this long after the entry, ms.
    pub window_ms: i64,
    pub order: Order,
    pub exclusions: Vec<Exclusion>,
    /// Entries count from `from_ms` (inclusive) to `to_ms` (exclusive); later steps may
    /// fall after `to_ms`, within the window.
    pub from_ms: i64,
    pub to_ms: i64,
    pub breakdown: Option<Breakdown>,
}

impl FunnelSpec {
    /// Refuses a question that has no answer, naming the field.
    pub fn validate(&self) -> Result<(), AnalyticsError> {
        if self.steps.len() < 2 || self.steps.len() > MAX_STEPS {
            return Err(AnalyticsError::invalid(
                "steps",
                format!(
                    "a funnel has 2 to {MAX_STEPS} steps, not {}",
                    self.steps.len()
                ),
            ));
        }
        if self.window_ms <= 0 {
            return Err(AnalyticsError::invalid(
                "window",
                "the conversion window must be longer than zero",
            ));
        }
        if self.from_ms >= self.to_ms {
            return Err(AnalyticsError::invalid(
                "from",
                "`from` must be before `to`",
            ));
        }
        for (i, x) in self.exclusions.iter().enumerate() {
            if self.order != Order::Sequential {
                return Err(AnalyticsError::invalid(
                    format!("exclusions[{i}]"),
                    "exclusion steps apply to the `sequential` order only (in `strict` nothing comes between steps; in `any` there is no between)",
                ));
            }
            if x.after >= x.before || x.before >= self.steps.len() {
                return Err(AnalyticsError::invalid(
                    format!("exclusions[{i}].between"),
                    format!(
                        "an exclusion lies between two steps, the first before the second, numbered 1 to {}",
                        self.steps.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One customer's counted attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Conversion {
    /// Steps reached; 0: the customer did not enter in the range.
    pub reached: usize,
    /// When each reached step was reached, Unix ms (`times[0]` is the entry).
    pub times: Vec<i64>,
    /// The log position of the event that entered the attempt.
    pub entry_seq: u64,
    /// The breakdown value (`None`: no value, or no breakdown asked).
    pub breakdown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    /// `(time, index)` of its entry event.
    start: (i64, usize),
    times: Vec<i64>,
    /// The first step (from 0) it may no longer reach: an exclusion happened after one of
    /// its steps and before that step (the number of steps when none did).
    barrier: usize,
}

impl Attempt {
    /// An attempt entered by event `i`, barred from nothing yet.
    fn entered(at_ms: i64, i: usize, steps: usize) -> Attempt {
        Attempt {
            start: (at_ms, i),
            times: vec![at_ms],
            barrier: steps,
        }
    }

    /// At least as good for every step to come: started no earlier, barred no sooner.
    fn dominates(&self, other: &Attempt) -> bool {
        self.start >= other.start && self.barrier >= other.barrier
    }
}

/// Adds `a` to the attempts kept at one step unless one of them dominates it, dropping
/// those it dominates.
fn keep(frontier: &mut Vec<Attempt>, a: Attempt) {
    if frontier.iter().any(|f| f.dominates(&a)) {
        return;
    }
    frontier.retain(|f| !a.dominates(f));
    frontier.push(a);
}

/// The counted attempt of one customer.
pub fn convert(history: &History, spec: &FunnelSpec) -> Conversion {
    let events = &history.events;
    let best = match spec.order {
        Order::Sequential => sequential(history, spec),
        Order::Strict => strict(history, spec),
        Order::Any => any_order(history, spec),
    };
    let Some(best) = best else {
        return Conversion::default();
    };
    let entry = &events[best.start.1];
    let breakdown = match &spec.breakdown {
        None => None,
        Some(Breakdown::Property(path)) => label(at_path(&entry.properties, path)),
        Some(Breakdown::Trait(t)) => label(history.traits.get(t)),
    };
    Conversion {
        reached: best.times.len(),
        times: best.times,
        entry_seq: entry.seq,
        breakdown,
    }
}

fn enters(spec: &FunnelSpec, at_ms: i64) -> bool {
    at_ms >= spec.from_ms && at_ms < spec.to_ms
}

/// Keeps, per step, the attempts that have reached it and may do best from there: the
/// latest entry has the most window left, and an attempt with an exclusion since one of
/// its steps may not reach the step that exclusion guards. Of every attempt, those are the
/// ones no other is at least as good as on both counts, so there are at most as many per
/// step as there are steps. Notes the first moment each new furthest step is reached.
fn sequential(history: &History, spec: &FunnelSpec) -> Option<Attempt> {
    let n = spec.steps.len();
    let mut partial: Vec<Vec<Attempt>> = vec![Vec::new(); n];
    let mut best: Option<Attempt> = None;
    for (i, e) in history.events.iter().enumerate() {
        // An exclusion counts before the event's own step: an event that is both bars the
        // attempts it excludes from that step.
        for x in spec.exclusions.iter().filter(|x| x.filter.matches(e)) {
            for frontier in &mut partial[x.after..x.before] {
                for a in frontier.iter_mut() {
                    a.barrier = a.barrier.min(x.before);
                }
                let all = std::mem::take(frontier);
                all.into_iter().for_each(|a| keep(frontier, a));
            }
        }
        // Later steps first, so that one event advances an attempt by one step only.
        for j in (1..n).rev() {
            if !spec.steps[j].matches(e) {
                continue;
            }
            // Each attempt that may take this step moves on with it.
            let moved: Vec<Attempt> = partial[j - 1]
                .iter()
                .filter(|p| p.barrier > j && e.at_ms - p.start.0 <= spec.window_ms)
                .map(|p| {
                    let mut a = p.clone();
                    a.times.push(e.at_ms);
                    a
                })
                .collect();
            // The first to reach a new furthest step is the latest entry among them.
            if best.as_ref().is_none_or(|b| b.times.len() < j + 1)
                && let Some(next) = moved.iter().max_by_key(|a| a.start)
            {
                best = Some(next.clone());
            }
            moved.into_iter().for_each(|a| keep(&mut partial[j], a));
        }
        if enters(spec, e.at_ms) && spec.steps[0].matches(e) {
            let a = Attempt::entered(e.at_ms, i, n);
            if best.is_none() {
                best = Some(a.clone());
            }
            keep(&mut partial[0], a);
        }
    }
    best
}

/// As [`sequential`], but an attempt lives only while each next event extends it.
fn strict(history: &History, spec: &FunnelSpec) -> Option<Attempt> {
    let n = spec.steps.len();
    let mut partial: Vec<Option<Attempt>> = vec![None; n];
    let mut best: Option<Attempt> = None;
    for (i, e) in history.events.iter().enumerate() {
        let mut next: Vec<Option<Attempt>> = vec![None; n];
        for j in (1..n).rev() {
            let Some(p) = &partial[j - 1] else { continue };
            if spec.steps[j].matches(e) && e.at_ms - p.start.0 <= spec.window_ms {
                let mut a = p.clone();
                a.times.push(e.at_ms);
                if best.as_ref().is_none_or(|b| b.times.len() < j + 1) {
                    best = Some(a.clone());
                }
                next[j] = Some(a);
            }
        }
        if enters(spec, e.at_ms) && spec.steps[0].matches(e) {
            let a = Attempt::entered(e.at_ms, i, n);
            if best.is_none() {
                best = Some(a.clone());
            }
            next[0] = Some(a);
        }
        partial = next;
    }
    best
}

/// Every event of a step opens a window; the window's steps done are those with an event
/// in it, and it reaches the longest run of them from step 1. The first window reaching
/// the most counts.
fn any_order(history: &History, spec: &FunnelSpec) -> Option<Attempt> {
    let n = spec.steps.len();
    let events = &history.events;
    let mut best: Option<Attempt> = None;
    for (i, e) in events.iter().enumerate() {
        if !enters(spec, e.at_ms) || !spec.steps.iter().any(|s| s.matches(e)) {
            continue;
        }
        let mut first: Vec<Option<i64>> = vec![None; n];
        for f in events[i..]
            .iter()
            .take_while(|f| f.at_ms - e.at_ms <= spec.window_ms)
        {
            for (s, filter) in spec.steps.iter().enumerate() {
                if first[s].is_none() && filter.matches(f) {
                    first[s] = Some(f.at_ms);
                }
            }
        }
        let mut times = Vec::new();
        let mut done = e.at_ms;
        for t in first.iter().map_while(|t| *t) {
            done = done.max(t);
            times.push(done);
        }
        if times.is_empty() {
            continue;
        }
        // The entry is the window's first event, whichever step it is.
        times[0] = e.at_ms;
        if best.as_ref().is_none_or(|b| b.times.len() < times.len()) {
            best = Some(Attempt {
                start: (e.at_ms, i),
                times,
                barrier: n,
            });
        }
    }
    best
}

/// Bounds of the time-to-convert distribution, ms: 1 minute, 5 minutes, 15 minutes, 1
/// hour, 6 hours, 1 day, 3 days, 7 days, 30 days, and past 30 days.
pub const DURATION_BOUNDS_MS: [i64; 9] = [
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
    259_200_000,
    604_800_000,
    2_592_000_000,
];

/// Durations of the customers who reached a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    /// Nearest-rank median, ms.
    pub median_ms: i64,
    /// Nearest-rank 90th percentile, ms.
    pub p90_ms: i64,
    pub mean_ms: f64,
    /// Customers per bin: `up_to_ms` is the bin's inclusive upper bound (`None`: past the
    /// last bound).
    pub distribution: Vec<DurationBin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DurationBin {
    pub up_to_ms: Option<i64>,
    pub customers: u64,
}

fn durations(mut v: Vec<i64>) -> Option<Durations> {
    v.sort_unstable();
    let median_ms = nearest_rank(&v, 0.5)?;
    let mut distribution: Vec<DurationBin> = DURATION_BOUNDS_MS
        .iter()
        .map(|&b| DurationBin {
            up_to_ms: Some(b),
            customers: 0,
        })
        .chain(std::iter::once(DurationBin {
            up_to_ms: None,
            customers: 0,
        }))
        .collect();
    for &d in &v {
        let bin = DURATION_BOUNDS_MS
            .iter()
            .position(|&b| d <= b)
            .unwrap_or(DURATION_BOUNDS_MS.len());
        distribution[bin].customers += 1;
    }
    Some(Durations {
        median_ms,
        p90_ms: nearest_rank(&v, 0.9)?,
        mean_ms: v.iter().map(|&d| d as f64).sum::<f64>() / v.len() as f64,
        distribution,
    })
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// Customers who reached it.
    pub customers: u64,
    /// Of those who reached the step before, the share who reached this one (1 for the
    /// first step).
    pub from_previous: f64,
    /// Of those who entered, the share who reached it.
    pub from_first: f64,
    /// Customers who reached it and no further (none at the last step).
    pub dropped: u64,
    /// From the entry to reaching this step (none for the first).
    pub time_from_entry: Option<Durations>,
    /// From reaching the step before to reaching this one (none for the first).
    pub time_from_previous: Option<Durations>,
}

/// Customers per step for one breakdown value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownRow {
    /// `None`: customers with no value.
    pub value: Option<String>,
    pub customers: Vec<u64>,
}

/// Entries and conversions of the customers who entered in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodRow {
    /// First local day of the period.
    pub period: String,
    pub entered: u64,
    /// Reached the last step.
    pub converted: u64,
    pub rate: f64,
}

/// A funnel's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelReport {
    pub entered: u64,
    pub converted: u64,
    pub steps: Vec<StepReport>,
    /// Per breakdown value, most customers entered first (empty without a breakdown).
    pub breakdown: Vec<BreakdownRow>,
    /// Per period of entry (empty unless asked).
    pub over_time: Vec<PeriodRow>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The report of the customers' counted attempts; conversion over time by the period of
/// entry in `tz` when `by` is given.
pub fn report(
    conversions: &[Conversion],
    spec: &FunnelSpec,
    by: Option<(Period, Tz)>,
) -> FunnelReport {
    let n = spec.steps.len();
    let reached = |k: usize| conversions.iter().filter(|c| c.reached > k).count() as u64;
    let entered = reached(0);
    let steps = (0..n)
        .map(|k| {
            let customers = reached(k);
            let timed = |f: &dyn Fn(&Conversion) -> i64| {
                (k > 0)
                    .then(|| {
                        durations(
                            conversions
                                .iter()
                                .filter(|c| c.reached > k)
                                .map(f)
                                .collect(),
                        )
                    })
                    .flatten()
            };
            StepReport {
                customers,
                from_previous: if k == 0 {
                    1.0
                } else {
                    share(customers, reached(k - 1))
                },
                from_first: share(customers, entered),
                dropped: if k + 1 == n {
                    0
                } else {
                    conversions.iter().filter(|c| c.reached == k + 1).count() as u64
                },
                time_from_entry: timed(&|c| c.times[k] - c.times[0]),
                time_from_previous: timed(&|c| c.times[k] - c.times[k - 1]),
            }
        })
        .collect();
    let mut breakdown = Vec::new();
    if spec.breakdown.is_some() {
        let mut by_value = BTreeMap::<Option<String>, Vec<u64>>::new();
        for c in conversions.iter().filter(|c| c.reached > 0) {
            let row = by_value
                .entry(c.breakdown.clone())
                .or_insert_with(|| vec![0; n]);
            row.iter_mut().take(c.reached).for_each(|x| *x += 1);
        }
        breakdown = by_value
            .into_iter()
            .map(|(value, customers)| BreakdownRow { value, customers })
            .collect();
        breakdown.sort_by(|a, b| b.customers[0].cmp(&a.customers[0]));
    }
    let mut over_time = Vec::new();
    if let Some((p, tz)) = by {
        let mut rows = BTreeMap::<i64, (u64, u64)>::new();
        for c in conversions.iter().filter(|c| c.reached > 0) {
            let r = rows.entry(period::index(c.times[0], p, tz)).or_default();
            r.0 += 1;
            r.1 += u64::from(c.reached == n);
        }
        over_time = rows
            .into_iter()
            .map(|(i, (entered, converted))| PeriodRow {
                period: period::start_date(i, p).to_string(),
                entered,
                converted,
                rate: share(converted, entered),
            })
            .collect();
    }
    FunnelReport {
        entered,
        converted: reached(n - 1),
        steps,
        breakdown,
        over_time,
    }
}

/// Who a list of people at a step holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Reached the step (some went further).
    Reached,
    /// Reached the step and no further.
    Dropped,
}

/// Whether a customer's attempt belongs in the list of `status` at step `k` (from 0) of a
/// funnel of `steps` steps; the report's `customers` and `dropped` count exactly these.
pub fn is_listed(c: &Conversion, k: usize, status: Status, steps: usize) -> bool {
    match status {
        Status::Reached => c.reached > k,
        Status::Dropped => k + 1 < steps && c.reached == k + 1,
    }
}

#[cfg(test)]
mod tests;
