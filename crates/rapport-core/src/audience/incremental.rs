//! Incremental state of an event aggregate for one profile.
//!
//! Evaluating `count(event == "Order Completed", within 30d)` by rescanning a profile's history
//! on every event and every window expiry costs time proportional to the history. The engine
//! instead keeps, per profile and per [`EventAggregate`], an [`AggregateState`]: it observes
//! each matching event once, folds in another profile's state when two profiles merge, and
//! answers the value and the next instant the value changes by itself. The state is stored as
//! JSON with each profile (about 150 aggregates each), so it is kept small:
//!
//! - without a window, a constant-size summary (a count, a sum, the earliest pick, …; for
//!   `most_frequent`, `unique` and `unique_count`, one entry per distinct value), plus the
//!   events stamped in the future, which join the summary once their time comes;
//! - with a window, one entry per event still inside it (its timestamp, its log position only
//!   when ties matter, its property value only when the function reads it), dropped once the
//!   event has left the window. Events already out of the window when observed are not kept.
//!
//! [`super::compute_aggregate`] and [`super::next_expiry`] define what the state must answer;
//! the tests below check the two agree on random streams.
//!
//! # The clock
//!
//! Every method takes `now`, and the caller guarantees that `now` never goes backwards across
//! the calls made on one state (including the state passed to [`AggregateState::merge`]).
//! That is what lets the state forget events that left a window and fold future-stamped
//! events into the summary for good.
//!
//! # Serialised form
//!
//! One key naming the function, holding `s` (the summary, for aggregates without a window;
//! omitted while empty) and `e` (the entries, sorted by time; omitted when empty). Timestamps
//! (`t`) are Unix milliseconds, or `[seconds, nanoseconds]` when they carry a finer fraction
//! (or fall in a leap second):
//!
//! | function        | key  | `s`                                   | an entry of `e`            |
//! |-----------------|------|---------------------------------------|----------------------------|
//! | `count`         | `c`  | count                                 | `t`                        |
//! | `sum`           | `s`  | sum                                   | `[t, x]` (`x` null if not a number) |
//! | `avg`           | `a`  | `[sum, count of numbers]`             | `[t, x]`                   |
//! | `min` / `max`   | `mn` / `mx` | least / greatest number        | `[t, x]`                   |
//! | `first` / `last`| `f` / `l` | `[t, seq, value]`                | `[t, seq, value]`          |
//! | `first_seen` / `last_seen` | `fs` / `ls` | `t`                 | `t`                        |
//! | `most_frequent` | `mf` | `[[value, count, t, seq], …]` (`t`, `seq`: latest occurrence) | `[t, seq, value]` |
//! | `unique` / `unique_count` | `u` / `uc` | `[value, …]`          | `[t, value]`               |
//!
//! For example `{"c":{"s":12}}` (12 events), `{"s":{"e":[[1717236000000,30.0]]}}` (one order of
//! 30 in the window) or `{"mf":{"s":[["shoes",3,1717236000000,42]]}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::aggregate::{
    AggregateFunction, Distinct, EventAggregate, EventLike, format_timestamp, number_value,
    window_end,
};
use super::value::lookup;

/// The incremental state of one [`EventAggregate`] for one profile.
///
/// Create it with [`AggregateState::new`] (or [`AggregateState::from_history`] for backfill)
/// and always pass it the aggregate it was created for. See the module documentation for the
/// clock contract and the serialised form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AggregateState(Repr);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Repr {
    #[serde(rename = "c")]
    Count(Track<CountOf>),
    #[serde(rename = "s")]
    Sum(Track<SumOf>),
    #[serde(rename = "a")]
    Avg(Track<AvgOf>),
    #[serde(rename = "mn")]
    Min(Track<Bound<false>>),
    #[serde(rename = "mx")]
    Max(Track<Bound<true>>),
    #[serde(rename = "f")]
    First(Track<Pick<false>>),
    #[serde(rename = "l")]
    Last(Track<Pick<true>>),
    #[serde(rename = "fs")]
    FirstSeen(Track<Seen<false>>),
    #[serde(rename = "ls")]
    LastSeen(Track<Seen<true>>),
    #[serde(rename = "mf")]
    MostFrequent(Track<Tally>),
    #[serde(rename = "u")]
    Unique(Track<Set>),
    #[serde(rename = "uc")]
    UniqueCount(Track<Set>),
}

/// Runs `$body` with `$track` bound to the track inside `$repr`, whatever its kind.
macro_rules! with_track {
    ($repr:expr, $track:ident => $body:expr) => {
        match $repr {
            Repr::Count($track) => $body,
            Repr::Sum($track) => $body,
            Repr::Avg($track) => $body,
            Repr::Min($track) => $body,
            Repr::Max($track) => $body,
            Repr::First($track) => $body,
            Repr::Last($track) => $body,
            Repr::FirstSeen($track) => $body,
            Repr::LastSeen($track) => $body,
            Repr::MostFrequent($track) => $body,
            Repr::Unique($track) => $body,
            Repr::UniqueCount($track) => $body,
        }
    };
}

impl AggregateState {
    /// Whether the state holds nothing: no event counted, none pending. Such a state equals
    /// [`AggregateState::new`], so callers may store it as nothing.
    pub fn is_empty(&self) -> bool {
        with_track!(&self.0, t => t.entries.is_empty() && is_default(&t.summary))
    }

    /// The state of a profile with no matching event yet.
    pub fn new(aggregate: &EventAggregate) -> AggregateState {
        AggregateState(match aggregate.function {
            AggregateFunction::Count => Repr::Count(Track::default()),
            AggregateFunction::Sum => Repr::Sum(Track::default()),
            AggregateFunction::Avg => Repr::Avg(Track::default()),
            AggregateFunction::Min => Repr::Min(Track::default()),
            AggregateFunction::Max => Repr::Max(Track::default()),
            AggregateFunction::First => Repr::First(Track::default()),
            AggregateFunction::Last => Repr::Last(Track::default()),
            AggregateFunction::FirstSeen => Repr::FirstSeen(Track::default()),
            AggregateFunction::LastSeen => Repr::LastSeen(Track::default()),
            AggregateFunction::MostFrequent => Repr::MostFrequent(Track::default()),
            AggregateFunction::Unique => Repr::Unique(Track::default()),
            AggregateFunction::UniqueCount => Repr::UniqueCount(Track::default()),
        })
    }

    /// Records one event. The caller has checked `aggregate.filter.matches(event)`; `seq` is the
    /// event's log position (events of one profile are observed in increasing `seq`, except
    /// after [`merge`](Self::merge), though the state does not rely on it). Ties in timestamp
    /// are broken by `seq` exactly as [`super::compute_aggregate`] breaks them by slice order.
    pub fn observe<E: EventLike + ?Sized>(
        &mut self,
        aggregate: &EventAggregate,
        event: &E,
        seq: u64,
        now: DateTime<Utc>,
    ) {
        with_track!(&mut self.0, t => t.observe(aggregate, event, seq, now))
    }

    /// Folds the state of another profile for the same aggregate into this one (the two
    /// profiles were merged): the result is as if this state had observed both event sets.
    /// `now` must not be earlier than any clock either state has seen.
    ///
    /// # Panics
    ///
    /// If the two states were made for aggregates with different functions.
    pub fn merge(&mut self, aggregate: &EventAggregate, other: AggregateState, now: DateTime<Utc>) {
        match (&mut self.0, other.0) {
            (Repr::Count(a), Repr::Count(b)) => a.merge(aggregate, b, now),
            (Repr::Sum(a), Repr::Sum(b)) => a.merge(aggregate, b, now),
            (Repr::Avg(a), Repr::Avg(b)) => a.merge(aggregate, b, now),
            (Repr::Min(a), Repr::Min(b)) => a.merge(aggregate, b, now),
            (Repr::Max(a), Repr::Max(b)) => a.merge(aggregate, b, now),
            (Repr::First(a), Repr::First(b)) => a.merge(aggregate, b, now),
            (Repr::Last(a), Repr::Last(b)) => a.merge(aggregate, b, now),
            (Repr::FirstSeen(a), Repr::FirstSeen(b)) => a.merge(aggregate, b, now),
            (Repr::LastSeen(a), Repr::LastSeen(b)) => a.merge(aggregate, b, now),
            (Repr::MostFrequent(a), Repr::MostFrequent(b)) => a.merge(aggregate, b, now),
            (Repr::Unique(a), Repr::Unique(b)) => a.merge(aggregate, b, now),
            (Repr::UniqueCount(a), Repr::UniqueCount(b)) => a.merge(aggregate, b, now),
            (a, b) => panic!(
                "cannot merge aggregate states of different functions ({} and {})",
                a.function().name(),
                b.function().name()
            ),
        }
    }

    /// Drops what can no longer count at `now` or later (events that left the window) and
    /// folds events whose (future) timestamp has come into scope into the summary.
    pub fn advance(&mut self, aggregate: &EventAggregate, now: DateTime<Utc>) {
        with_track!(&mut self.0, t => t.advance(aggregate, now))
    }

    /// The aggregate's value at `now`, as [`super::compute_aggregate`] gives it over the
    /// observed events (sums and means may differ by floating-point rounding, since they are
    /// added up in another order).
    pub fn value(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Value {
        with_track!(&self.0, t => t.value(aggregate, now))
    }

    /// When the value can next change with no new event, as [`super::next_expiry`] gives it
    /// over the observed events: the earliest instant after `now` at which an event leaves the
    /// window or a future-stamped event comes into scope.
    pub fn next_change(
        &self,
        aggregate: &EventAggregate,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        with_track!(&self.0, t => t.next_change(aggregate, now))
    }

    /// The state of a profile with the whole history `events` (backfill): each event with its
    /// log position, in any order. Events that do not match the aggregate's filter are skipped.
    /// Equal to observing the matching events one by one in log order at `now`.
    pub fn from_history<E: EventLike>(
        aggregate: &EventAggregate,
        events: &[(u64, E)],
        now: DateTime<Utc>,
    ) -> AggregateState {
        let mut in_order: Vec<&(u64, E)> = events.iter().collect();
        in_order.sort_by_key(|(seq, _)| *seq);
        let mut state = AggregateState::new(aggregate);
        for (seq, event) in in_order {
            if aggregate.filter.matches(event) {
                state.observe(aggregate, event, *seq, now);
            }
        }
        state
    }
}

impl Repr {
    fn function(&self) -> AggregateFunction {
        match self {
            Repr::Count(_) => AggregateFunction::Count,
            Repr::Sum(_) => AggregateFunction::Sum,
            Repr::Avg(_) => AggregateFunction::Avg,
            Repr::Min(_) => AggregateFunction::Min,
            Repr::Max(_) => AggregateFunction::Max,
            Repr::First(_) => AggregateFunction::First,
            Repr::Last(_) => AggregateFunction::Last,
            Repr::FirstSeen(_) => AggregateFunction::FirstSeen,
            Repr::LastSeen(_) => AggregateFunction::LastSeen,
            Repr::MostFrequent(_) => AggregateFunction::MostFrequent,
            Repr::Unique(_) => AggregateFunction::Unique,
            Repr::UniqueCount(_) => AggregateFunction::UniqueCount,
        }
    }
}

/// What one kind of aggregate keeps: per event (an entry) and over all events in scope (the
/// summary of an aggregate without a window).
trait Fold {
    /// One event's contribution, with its timestamp.
    type Entry: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// What an aggregate without a window keeps of the events in scope. The default is the
    /// summary of no event.
    type Summary: Clone + fmt::Debug + Default + PartialEq + Serialize + DeserializeOwned;

    fn entry<E: EventLike + ?Sized>(aggregate: &EventAggregate, event: &E, seq: u64)
    -> Self::Entry;
    /// The order of entries: by time, then by log position where it matters.
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64);
    fn add(summary: &mut Self::Summary, entry: &Self::Entry);
    fn merge(summary: &mut Self::Summary, other: Self::Summary);
    fn value(summary: &Self::Summary, function: AggregateFunction) -> Value;
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// The state of one aggregate, whatever its function. Without a window, `summary` holds the
/// events in scope and `entries` the events stamped after the clock. With a window, `summary`
/// stays empty and `entries` holds every event that has not left the window, in scope or in
/// the future. `entries` is sorted by [`Fold::key`].
#[derive(Serialize, Deserialize)]
struct Track<F: Fold> {
    #[serde(rename = "s", default, skip_serializing_if = "is_default")]
    summary: F::Summary,
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    entries: Vec<F::Entry>,
    #[serde(skip)]
    kind: PhantomData<F>,
}

// Written out because derives would ask `F` itself (a marker) for the traits.
impl<F: Fold> Default for Track<F> {
    fn default() -> Self {
        Track {
            summary: F::Summary::default(),
            entries: Vec::new(),
            kind: PhantomData,
        }
    }
}

impl<F: Fold> Clone for Track<F> {
    fn clone(&self) -> Self {
        Track {
            summary: self.summary.clone(),
            entries: self.entries.clone(),
            kind: PhantomData,
        }
    }
}

impl<F: Fold> fmt::Debug for Track<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track")
            .field("summary", &self.summary)
            .field("entries", &self.entries)
            .finish()
    }
}

impl<F: Fold> PartialEq for Track<F> {
    fn eq(&self, other: &Self) -> bool {
        self.summary == other.summary && self.entries == other.entries
    }
}

/// Whether an event at `at` has left the window for good at `now`.
fn expired(aggregate: &EventAggregate, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    aggregate
        .window_seconds
        .is_some_and(|w| window_end(at, w).is_some_and(|end| end <= now))
}

impl<F: Fold> Track<F> {
    fn at(entry: &F::Entry) -> DateTime<Utc> {
        F::key(entry).0
    }

    fn observe<E: EventLike + ?Sized>(
        &mut self,
        aggregate: &EventAggregate,
        event: &E,
        seq: u64,
        now: DateTime<Utc>,
    ) {
        self.advance(aggregate, now);
        let at = event.timestamp();
        if expired(aggregate, at, now) {
            return;
        }
        let entry = F::entry(aggregate, event, seq);
        if aggregate.window_seconds.is_none() && at <= now {
            F::add(&mut self.summary, &entry);
        } else {
            let key = F::key(&entry);
            let i = self.entries.partition_point(|e| F::key(e) <= key);
            self.entries.insert(i, entry);
        }
    }

    fn advance(&mut self, aggregate: &EventAggregate, now: DateTime<Utc>) {
        if aggregate.window_seconds.is_some() {
            // Entries are sorted by time and the window's end grows with it, so the expired
            // entries come first.
            let gone = self
                .entries
                .partition_point(|e| expired(aggregate, Self::at(e), now));
            self.entries.drain(..gone);
        } else {
            let due = self.entries.partition_point(|e| Self::at(e) <= now);
            for entry in self.entries.drain(..due) {
                F::add(&mut self.summary, &entry);
            }
        }
    }

    fn merge(&mut self, aggregate: &EventAggregate, other: Track<F>, now: DateTime<Utc>) {
        F::merge(&mut self.summary, other.summary);
        let mine = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(mine.len() + other.entries.len());
        let (mut a, mut b) = (
            mine.into_iter().peekable(),
            other.entries.into_iter().peekable(),
        );
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => F::key(x) <= F::key(y),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            merged.extend(if take_a { a.next() } else { b.next() });
        }
        self.entries = merged;
        self.advance(aggregate, now);
    }

    fn value(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Value {
        let due = self.entries.partition_point(|e| Self::at(e) <= now);
        if aggregate.window_seconds.is_some() {
            // In time order: expired entries (not yet dropped), those in scope, future ones.
            let gone =
                self.entries[..due].partition_point(|e| expired(aggregate, Self::at(e), now));
            let mut summary = F::Summary::default();
            for entry in &self.entries[gone..due] {
                F::add(&mut summary, entry);
            }
            F::value(&summary, aggregate.function)
        } else if due == 0 {
            F::value(&self.summary, aggregate.function)
        } else {
            // Future events whose time has come but that `advance` has not folded in yet.
            let mut summary = self.summary.clone();
            for entry in &self.entries[..due] {
                F::add(&mut summary, entry);
            }
            F::value(&summary, aggregate.function)
        }
    }

    fn next_change(&self, aggregate: &EventAggregate, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let due = self.entries.partition_point(|e| Self::at(e) <= now);
        // The first future event comes into scope; later ones come after it.
        let arrival = self.entries.get(due).map(Self::at);
        // Of the events in scope, the earliest leaves the window first.
        let departure = aggregate.window_seconds.and_then(|w| {
            let gone =
                self.entries[..due].partition_point(|e| expired(aggregate, Self::at(e), now));
            window_end(Self::at(self.entries[..due].get(gone)?), w)
        });
        match (arrival, departure) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }
}

/// The property the aggregate reads, on `event`.
fn property<'a, E: EventLike + ?Sized>(
    aggregate: &EventAggregate,
    event: &'a E,
) -> Option<&'a Value> {
    aggregate
        .property
        .as_ref()
        .and_then(|p| lookup(event.properties(), p))
}

/// The property as a number, for sum, avg, min and max: `None` if missing or not a number.
fn number<E: EventLike + ?Sized>(aggregate: &EventAggregate, event: &E) -> Option<f64> {
    property(aggregate, event)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
}

/// A timestamp as stored: Unix milliseconds, or `[seconds, nanoseconds]` (chrono's own
/// representation) when it has a finer fraction or falls in a leap second. Events are usually
/// stamped to the millisecond, but the state must not round them, and text such as RFC 3339
/// cannot hold every year a timestamp can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct At(DateTime<Utc>);

impl Serialize for At {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ns = self.0.timestamp_subsec_nanos();
        if ns < 1_000_000_000 && ns.is_multiple_of(1_000_000) {
            serializer.serialize_i64(self.0.timestamp_millis())
        } else {
            (self.0.timestamp(), ns).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AtVisitor;

        impl<'de> Visitor<'de> for AtVisitor {
            type Value = At;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Unix milliseconds, or [seconds, nanoseconds]")
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<At, E> {
                DateTime::from_timestamp_millis(ms)
                    .map(At)
                    .ok_or_else(|| E::custom(format!("timestamp out of range: {ms}")))
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<At, E> {
                let ms = i64::try_from(ms)
                    .map_err(|_| E::custom(format!("timestamp out of range: {ms}")))?;
                self.visit_i64(ms)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<At, A::Error> {
                let secs: i64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let ns: u32 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                DateTime::from_timestamp(secs, ns).map(At).ok_or_else(|| {
                    de::Error::custom(format!("timestamp out of range: [{secs}, {ns}]"))
                })
            }
        }
        deserializer.deserialize_any(AtVisitor)
    }
}

/// A running sum. It can overflow to an infinity (or NaN), which JSON cannot hold: that is
/// written as `null` and read back as NaN, which gives the same value (null) from then on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Total(f64);

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Total {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Total(
            Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN),
        ))
    }
}

// ---- the kinds -----------------------------------------------------------------------------

#[derive(Debug)]
struct CountOf;

impl Fold for CountOf {
    type Entry = At;
    type Summary = u64;

    fn entry<E: EventLike + ?Sized>(_: &EventAggregate, event: &E, _: u64) -> At {
        At(event.timestamp())
    }
    fn key(entry: &At) -> (DateTime<Utc>, u64) {
        (entry.0, 0)
    }
    fn add(summary: &mut u64, _: &At) {
        *summary += 1;
    }
    fn merge(summary: &mut u64, other: u64) {
        *summary += other;
    }
    fn value(summary: &u64, _: AggregateFunction) -> Value {
        Value::from(*summary)
    }
}

#[derive(Debug)]
struct SumOf;

impl Fold for SumOf {
    type Entry = (At, Option<f64>);
    type Summary = Total;

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, _: u64) -> Self::Entry {
        (At(event.timestamp()), number(a, event))
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, 0)
    }
    fn add(summary: &mut Total, entry: &Self::Entry) {
        summary.0 += entry.1.unwrap_or(0.0);
    }
    fn merge(summary: &mut Total, other: Total) {
        summary.0 += other.0;
    }
    fn value(summary: &Total, _: AggregateFunction) -> Value {
        number_value(summary.0)
    }
}

#[derive(Debug)]
struct AvgOf;

impl Fold for AvgOf {
    type Entry = (At, Option<f64>);
    /// The sum of the numbers and how many there are.
    type Summary = (Total, u64);

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, _: u64) -> Self::Entry {
        (At(event.timestamp()), number(a, event))
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, 0)
    }
    fn add(summary: &mut (Total, u64), entry: &Self::Entry) {
        if let Some(x) = entry.1 {
            summary.0.0 += x;
            summary.1 += 1;
        }
    }
    fn merge(summary: &mut (Total, u64), other: (Total, u64)) {
        summary.0.0 += other.0.0;
        summary.1 += other.1;
    }
    fn value(summary: &(Total, u64), _: AggregateFunction) -> Value {
        match summary.1 {
            0 => Value::Null,
            n => number_value(summary.0.0 / n as f64),
        }
    }
}

/// `min` (`MAX` false) or `max` (`MAX` true).
#[derive(Debug)]
struct Bound<const MAX: bool>;

impl<const MAX: bool> Fold for Bound<MAX> {
    type Entry = (At, Option<f64>);
    type Summary = Option<f64>;

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, _: u64) -> Self::Entry {
        (At(event.timestamp()), number(a, event))
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, 0)
    }
    fn add(summary: &mut Option<f64>, entry: &Self::Entry) {
        Self::merge(summary, entry.1);
    }
    fn merge(summary: &mut Option<f64>, other: Option<f64>) {
        *summary = match (*summary, other) {
            (Some(a), Some(b)) => Some(if MAX { a.max(b) } else { a.min(b) }),
            (a, b) => a.or(b),
        };
    }
    fn value(summary: &Option<f64>, _: AggregateFunction) -> Value {
        summary.map_or(Value::Null, number_value)
    }
}

/// `first` (`LAST` false) or `last` (`LAST` true): the property on the earliest or latest
/// event by (timestamp, log position).
#[derive(Debug)]
struct Pick<const LAST: bool>;

impl<const LAST: bool> Fold for Pick<LAST> {
    /// The timestamp, the log position and the property (null when missing).
    type Entry = (At, u64, Value);
    type Summary = Option<(At, u64, Value)>;

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, seq: u64) -> Self::Entry {
        let value = property(a, event).cloned().unwrap_or(Value::Null);
        (At(event.timestamp()), seq, value)
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, entry.1)
    }
    fn add(summary: &mut Self::Summary, entry: &Self::Entry) {
        let better = summary.as_ref().is_none_or(|best| {
            let (new, old) = (Self::key(entry), Self::key(best));
            if LAST { new > old } else { new < old }
        });
        if better {
            *summary = Some(entry.clone());
        }
    }
    fn merge(summary: &mut Self::Summary, other: Self::Summary) {
        if let Some(entry) = other {
            Self::add(summary, &entry);
        }
    }
    fn value(summary: &Self::Summary, _: AggregateFunction) -> Value {
        summary.as_ref().map_or(Value::Null, |(_, _, v)| v.clone())
    }
}

/// `first_seen` (`LAST` false) or `last_seen` (`LAST` true).
#[derive(Debug)]
struct Seen<const LAST: bool>;

impl<const LAST: bool> Fold for Seen<LAST> {
    type Entry = At;
    type Summary = Option<At>;

    fn entry<E: EventLike + ?Sized>(_: &EventAggregate, event: &E, _: u64) -> At {
        At(event.timestamp())
    }
    fn key(entry: &At) -> (DateTime<Utc>, u64) {
        (entry.0, 0)
    }
    fn add(summary: &mut Option<At>, entry: &At) {
        Self::merge(summary, Some(*entry));
    }
    fn merge(summary: &mut Option<At>, other: Option<At>) {
        *summary = match (*summary, other) {
            (Some(a), Some(b)) => Some(if LAST { a.max(b) } else { a.min(b) }),
            (a, b) => a.or(b),
        };
    }
    fn value(summary: &Option<At>, _: AggregateFunction) -> Value {
        summary.map_or(Value::Null, |t| Value::String(format_timestamp(t.0)))
    }
}

/// `most_frequent`: how often each value occurred, and its latest occurrence for ties.
#[derive(Debug)]
struct Tally;

/// Each distinct value with its count and its latest occurrence (timestamp, log position).
/// Written as a list of `[value, count, t, seq]`, since JSON object keys are only strings.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts(BTreeMap<Distinct, (u64, (At, u64))>);

impl Counts {
    fn add(&mut self, value: Distinct, n: u64, latest: (At, u64)) {
        let slot = self.0.entry(value).or_insert((0, latest));
        slot.0 += n;
        slot.1 = slot.1.max(latest);
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(v, (n, (t, seq)))| (v, n, t, seq)))
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = Vec::<(Distinct, u64, At, u64)>::deserialize(deserializer)?;
        let mut counts = Counts::default();
        for (v, n, t, seq) in rows {
            counts.add(v, n, (t, seq));
        }
        Ok(counts)
    }
}

impl Fold for Tally {
    /// The timestamp, the log position and the value (none when missing or null).
    type Entry = (At, u64, Option<Distinct>);
    type Summary = Counts;

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, seq: u64) -> Self::Entry {
        let value = property(a, event).and_then(Distinct::of);
        (At(event.timestamp()), seq, value)
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, entry.1)
    }
    fn add(summary: &mut Counts, entry: &Self::Entry) {
        if let Some(value) = &entry.2 {
            summary.add(value.clone(), 1, (entry.0, entry.1));
        }
    }
    fn merge(summary: &mut Counts, other: Counts) {
        for (value, (n, latest)) in other.0 {
            summary.add(value, n, latest);
        }
    }
    fn value(summary: &Counts, _: AggregateFunction) -> Value {
        summary
            .0
            .iter()
            .max_by_key(|(_, (n, latest))| (*n, *latest))
            .map_or(Value::Null, |(v, _)| v.to_value())
    }
}

/// `unique` and `unique_count`: the distinct values.
#[derive(Debug)]
struct Set;

impl Fold for Set {
    /// The timestamp and the value (none when missing or null).
    type Entry = (At, Option<Distinct>);
    type Summary = BTreeSet<Distinct>;

    fn entry<E: EventLike + ?Sized>(a: &EventAggregate, event: &E, _: u64) -> Self::Entry {
        (
            At(event.timestamp()),
            property(a, event).and_then(Distinct::of),
        )
    }
    fn key(entry: &Self::Entry) -> (DateTime<Utc>, u64) {
        (entry.0.0, 0)
    }
    fn add(summary: &mut BTreeSet<Distinct>, entry: &Self::Entry) {
        if let Some(value) = &entry.1 {
            summary.insert(value.clone());
        }
    }
    fn merge(summary: &mut BTreeSet<Distinct>, other: BTreeSet<Distinct>) {
        summary.extend(other);
    }
    fn value(summary: &BTreeSet<Distinct>, function: AggregateFunction) -> Value {
        if function == AggregateFunction::UniqueCount {
            Value::from(summary.len() as u64)
        } else {
            summary.iter().map(Distinct::to_value).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::audience::{HistoryEvent, compute_aggregate, next_expiry, parse, parse_timestamp};

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap_or_else(|| panic!("bad test timestamp {s}"))
    }

    fn aggregate(src: &str) -> EventAggregate {
        let aggs = parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .event_aggregates();
        assert_eq!(aggs.len(), 1, "{src}");
        aggs.into_iter().next().unwrap()
    }

    fn event(at: DateTime<Utc>, name: &str, properties: Value) -> HistoryEvent {
        HistoryEvent {
            timestamp: at,
            event_type: "track".into(),
            event: Some(name.into()),
            properties,
        }
    }

    /// What the reference computation says over `events` (with their log positions).
    fn reference(
        agg: &EventAggregate,
        events: &[(u64, HistoryEvent)],
        now: DateTime<Utc>,
    ) -> (Value, Option<DateTime<Utc>>) {
        let mut matching: Vec<&(u64, HistoryEvent)> = events
            .iter()
            .filter(|(_, e)| agg.filter.matches(e))
            .collect();
        matching.sort_by_key(|(seq, _)| *seq);
        let in_log_order: Vec<HistoryEvent> =
            matching.into_iter().map(|(_, e)| e.clone()).collect();
        (
            compute_aggregate(agg, &in_log_order, now),
            next_expiry(agg, &in_log_order, now),
        )
    }

    /// Equal JSON, numbers within a relative 1e-9 (sums are added up in another order).
    fn close(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            (Value::Array(xs), Value::Array(ys)) => {
                xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| close(x, y))
            }
            (Value::Object(xs), Value::Object(ys)) => {
                xs.len() == ys.len()
                    && xs
                        .iter()
                        .all(|(k, x)| ys.get(k).is_some_and(|y| close(x, y)))
            }
            _ => a == b,
        }
    }

    /// Observes `events` (in the order given) into a new state at `now`.
    fn observed(
        agg: &EventAggregate,
        events: &[(u64, HistoryEvent)],
        now: DateTime<Utc>,
    ) -> AggregateState {
        let mut state = AggregateState::new(agg);
        for (seq, e) in events {
            if agg.filter.matches(e) {
                state.observe(agg, e, *seq, now);
            }
        }
        state
    }

    fn json_of(state: &AggregateState) -> String {
        serde_json::to_string(state).unwrap()
    }

    const T: &str = "2024-06-01T00:00:00Z";

    #[test]
    fn count_in_a_window_forgets_events_that_left_it() {
        let t = ts(T);
        let agg = aggregate(r#"count(event == "A", within 1d)"#);
        let h = TimeDelta::hours;
        let events = vec![
            (1, event(t - h(48), "A", json!({}))),
            (2, event(t - h(12), "A", json!({}))),
            (3, event(t, "A", json!({}))),
            (4, event(t + h(1), "A", json!({}))),
        ];
        let mut state = observed(&agg, &events, t);
        assert_eq!(
            json_of(&state),
            r#"{"c":{"e":[1717156800000,1717200000000,1717203600000]}}"#,
            "the event two days old is not kept"
        );
        assert_eq!(state.value(&agg, t), json!(2));
        assert_eq!(
            state.next_change(&agg, t),
            Some(t + h(1)),
            "the future event arrives"
        );
        assert_eq!(state.value(&agg, t + h(1)), json!(3));
        assert_eq!(state.next_change(&agg, t + h(1)), Some(t + h(12)));
        state.advance(&agg, t + h(12));
        assert_eq!(state.value(&agg, t + h(12)), json!(2));
        assert_eq!(
            json_of(&state),
            r#"{"c":{"e":[1717200000000,1717203600000]}}"#
        );
        assert_eq!(state.next_change(&agg, t + h(12)), Some(t + h(24)));
        state.advance(&agg, t + h(25));
        assert_eq!(state.value(&agg, t + h(25)), json!(0));
        assert_eq!(state.next_change(&agg, t + h(25)), None);
        assert_eq!(json_of(&state), r#"{"c":{}}"#);
    }

    #[test]
    fn future_events_join_the_summary_when_their_time_comes() {
        let t = ts(T);
        let agg = aggregate("count(true)");
        let mut state = AggregateState::new(&agg);
        state.observe(&agg, &event(t - TimeDelta::days(400), "A", json!({})), 1, t);
        state.observe(&agg, &event(t + TimeDelta::hours(1), "A", json!({})), 2, t);
        assert_eq!(json_of(&state), r#"{"c":{"s":1,"e":[1717203600000]}}"#);
        assert_eq!(state.value(&agg, t), json!(1));
        assert_eq!(state.next_change(&agg, t), Some(t + TimeDelta::hours(1)));
        let later = t + TimeDelta::hours(1);
        assert_eq!(
            state.value(&agg, later),
            json!(2),
            "counted before advance folds it in"
        );
        assert_eq!(state.next_change(&agg, later), None);
        state.advance(&agg, later);
        assert_eq!(json_of(&state), r#"{"c":{"s":2}}"#);
        assert_eq!(state.value(&agg, later), json!(2));
    }

    #[test]
    fn sum_avg_min_max_read_numbers_and_keep_the_timing_of_the_rest() {
        let t = ts(T);
        let m = TimeDelta::minutes;
        let events = vec![
            (1, event(t - m(50), "A", json!({"x": 2}))),
            (2, event(t - m(40), "A", json!({"x": "a"}))),
            (3, event(t - m(30), "A", json!({}))),
            (4, event(t - m(20), "A", json!({"x": 3.5}))),
        ];
        for (src, at_t, after) in [
            ("sum(properties.x, true, within 1h)", json!(5.5), json!(3.5)),
            (
                "avg(properties.x, true, within 1h)",
                json!(2.75),
                json!(3.5),
            ),
            ("min(properties.x, true, within 1h)", json!(2), json!(3.5)),
            ("max(properties.x, true, within 1h)", json!(3.5), json!(3.5)),
            ("sum(properties.x, true)", json!(5.5), json!(5.5)),
            ("avg(properties.x, true)", json!(2.75), json!(2.75)),
            ("min(properties.x, true)", json!(2), json!(2)),
            ("max(properties.x, true)", json!(3.5), json!(3.5)),
        ] {
            let agg = aggregate(src);
            let mut state = observed(&agg, &events, t);
            assert_eq!(state.value(&agg, t), at_t, "{src}");
            let windowed = agg.window_seconds.is_some();
            assert_eq!(
                state.next_change(&agg, t),
                windowed.then(|| t + m(10)),
                "{src}: the first event leaves at 00:10"
            );
            state.advance(&agg, t + m(30));
            assert_eq!(state.value(&agg, t + m(30)), after, "{src}");
            assert_eq!(
                state.next_change(&agg, t + m(30)),
                windowed.then(|| t + m(40)),
                "{src}: the event without a number leaves at 00:40, changing nothing"
            );
        }
        let agg = aggregate("sum(properties.x, true, within 1h)");
        assert_eq!(
            json_of(&observed(&agg, &events, t)),
            r#"{"s":{"e":[[1717197000000,2.0],[1717197600000,null],[1717198200000,null],[1717198800000,3.5]]}}"#
        );
        let agg = aggregate("avg(properties.x, true)");
        assert_eq!(
            json_of(&observed(&agg, &events, t)),
            r#"{"a":{"s":[5.5,2]}}"#
        );
        let agg = aggregate(r#"sum(properties.x, event == "Refund")"#);
        assert_eq!(AggregateState::new(&agg).value(&agg, t), json!(0));
        for src in [
            "avg(properties.x, true)",
            "min(properties.x, true)",
            "max(properties.x, true, within 1d)",
        ] {
            let agg = aggregate(src);
            assert_eq!(
                AggregateState::new(&agg).value(&agg, t),
                Value::Null,
                "{src}"
            );
        }
    }

    #[test]
    fn first_and_last_break_ties_by_log_position_whatever_the_arrival_order() {
        let t = ts(T);
        let a = event(t, "S", json!({"plan": "a"}));
        let b = event(t, "S", json!({"plan": "b"}));
        let c = event(t - TimeDelta::hours(1), "S", json!({}));
        for window in ["", ", within 1d"] {
            let first = aggregate(&format!(r#"first(properties.plan, event == "S"{window})"#));
            let last = aggregate(&format!(r#"last(properties.plan, event == "S"{window})"#));
            for agg in [&first, &last] {
                // b (log position 7) arrives in one profile, a (position 5) in another.
                let mut state = observed(agg, &[(7, b.clone())], t);
                let other = observed(agg, &[(5, a.clone())], t);
                state.merge(agg, other, t);
                let want = if agg == &first {
                    json!("a")
                } else {
                    json!("b")
                };
                assert_eq!(state.value(agg, t), want, "{agg}");
                state.observe(agg, &c, 9, t);
                let want = if agg == &first {
                    Value::Null
                } else {
                    json!("b")
                };
                assert_eq!(
                    state.value(agg, t),
                    want,
                    "{agg}: c is earlier and has no plan"
                );
            }
        }
        let first = aggregate(r#"first(properties.plan, event == "S")"#);
        let state = observed(&first, &[(7, b), (5, a)], t);
        assert_eq!(json_of(&state), r#"{"f":{"s":[1717200000000,5,"a"]}}"#);
    }

    #[test]
    fn first_seen_and_last_seen_give_timestamps() {
        let t = ts(T);
        let h = TimeDelta::hours;
        let events = vec![
            (1, event(t - h(5), "A", json!({}))),
            (2, event(t - h(1), "A", json!({}))),
            (3, event(t + h(2), "A", json!({}))),
        ];
        let first_seen = aggregate("first_seen(true)");
        let last_seen = aggregate("last_seen(true, within 3h)");
        let f = observed(&first_seen, &events, t);
        let l = observed(&last_seen, &events, t);
        assert_eq!(f.value(&first_seen, t), json!("2024-05-31T19:00:00Z"));
        assert_eq!(l.value(&last_seen, t), json!("2024-05-31T23:00:00Z"));
        assert_eq!(l.value(&last_seen, t + h(2)), json!("2024-06-01T02:00:00Z"));
        assert_eq!(l.next_change(&last_seen, t), Some(t + h(2)));
        assert_eq!(
            json_of(&f),
            r#"{"fs":{"s":1717182000000,"e":[1717207200000]}}"#
        );
        assert_eq!(
            AggregateState::new(&first_seen).value(&first_seen, t),
            Value::Null
        );
    }

    #[test]
    fn most_frequent_prefers_the_value_seen_last_among_equals() {
        let t = ts(T);
        let h = TimeDelta::hours;
        let agg = aggregate(r#"most_frequent(properties.c, event == "V", within 1d)"#);
        // Shoes were seen first and last: with two each, the latest occurrence decides.
        let events = vec![
            (1, event(t - h(20), "V", json!({"c": "shoes"}))),
            (2, event(t - h(10), "V", json!({"c": "hats"}))),
            (3, event(t - h(5), "V", json!({"c": "hats"}))),
            (4, event(t - h(2), "V", json!({"c": "shoes"}))),
            (5, event(t - h(1), "V", json!({"c": null}))),
        ];
        let mut state = observed(&agg, &events, t);
        assert_eq!(
            state.value(&agg, t),
            json!("shoes"),
            "two each; shoes seen last"
        );
        let hats = event(t + h(1), "V", json!({"c": "hats"}));
        state.observe(&agg, &hats, 6, t + h(1));
        assert_eq!(state.value(&agg, t + h(1)), json!("hats"), "three hats");
        state.advance(&agg, t + h(4));
        assert_eq!(state.value(&agg, t + h(4)), json!("hats"));
        let all_time = aggregate(r#"most_frequent(properties.c, event == "V")"#);
        let state = observed(&all_time, &events, t);
        assert_eq!(state.value(&all_time, t), json!("shoes"));
        assert_eq!(
            json_of(&state),
            r#"{"mf":{"s":[["hats",2,1717182000000,3],["shoes",2,1717192800000,4]]}}"#
        );
        assert_eq!(
            AggregateState::new(&all_time).value(&all_time, t),
            Value::Null
        );
    }

    #[test]
    fn unique_and_unique_count_tell_numbers_apart_by_value() {
        let t = ts(T);
        let events: Vec<(u64, HistoryEvent)> = [
            json!({"s": 1}),
            json!({"s": 1.0}),
            json!({"s": "A1"}),
            json!({"s": {"b": 1.0, "a": [2]}}),
            json!({"s": {"a": [2.0], "b": 1}}),
            json!({"s": false}),
            json!({"s": null}),
            json!({}),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as u64, event(t, "O", p)))
        .collect();
        let unique = aggregate("unique(properties.s, true)");
        let count = aggregate("unique_count(properties.s, true, within 1d)");
        let u = observed(&unique, &events, t);
        assert_eq!(
            u.value(&unique, t),
            json!([false, 1, "A1", {"a": [2], "b": 1}])
        );
        assert_eq!(json_of(&u), r#"{"u":{"s":[false,1,"A1",{"a":[2],"b":1}]}}"#);
        let c = observed(&count, &events, t);
        assert_eq!(c.value(&count, t), json!(4));
        assert_eq!(c.value(&count, t + TimeDelta::days(1)), json!(0));
        assert_eq!(AggregateState::new(&unique).value(&unique, t), json!([]));
        assert_eq!(AggregateState::new(&count).value(&count, t), json!(0));
    }

    #[test]
    fn merging_profiles_adds_their_events() {
        let t = ts(T);
        let h = TimeDelta::hours;
        let agg = aggregate(r#"count(event == "A", within 1d)"#);
        let mut ann = observed(&agg, &[(1, event(t - h(20), "A", json!({})))], t - h(10));
        let other = observed(
            &agg,
            &[
                (2, event(t - h(26), "A", json!({}))),
                (3, event(t + h(3), "A", json!({}))),
            ],
            t - h(10),
        );
        ann.merge(&agg, other, t);
        assert_eq!(
            ann.value(&agg, t),
            json!(1),
            "the event 26 hours old left two hours ago"
        );
        assert_eq!(ann.next_change(&agg, t), Some(t + h(3)));
        assert_eq!(
            json_of(&ann),
            r#"{"c":{"e":[1717128000000,1717210800000]}}"#
        );
    }

    #[test]
    #[should_panic(expected = "different functions (count and sum)")]
    fn merging_states_of_different_functions_is_a_bug() {
        let count = aggregate("count(true)");
        let sum = aggregate("sum(properties.x, true)");
        let mut state = AggregateState::new(&count);
        state.merge(&count, AggregateState::new(&sum), ts(T));
    }

    #[test]
    fn timestamps_finer_than_a_millisecond_are_kept_exactly() {
        let t = ts("2024-06-01T00:00:00.000000123Z");
        let agg = aggregate("first_seen(true)");
        let state = observed(&agg, &[(1, event(t, "A", json!({})))], t);
        let text = json_of(&state);
        assert_eq!(text, r#"{"fs":{"s":[1717200000,123]}}"#);
        let back: AggregateState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn every_timestamp_reads_back_exactly() {
        for t in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            ts("1969-12-31T23:59:59.999999999Z"),
            ts("1970-01-01T00:00:00Z"),
            ts("2016-12-31T23:59:60Z"),
            ts("2016-12-31T23:59:60.5Z"),
            ts("2024-06-01T12:34:56.789Z"),
        ] {
            let text = serde_json::to_string(&At(t)).unwrap();
            assert_eq!(serde_json::from_str::<At>(&text).unwrap(), At(t), "{text}");
        }
        assert_eq!(
            serde_json::to_string(&At(ts("1969-12-31T23:59:59.999999999Z"))).unwrap(),
            "[-1,999999999]"
        );
        assert_eq!(
            serde_json::to_string(&At(ts("2016-12-31T23:59:60.5Z"))).unwrap(),
            "[1483228799,1500000000]",
            "a leap second keeps its place before midnight"
        );
        assert!(serde_json::from_str::<At>("[0,2000000000]").is_err());
        assert!(serde_json::from_str::<At>(r#""2024-06-01T00:00:00Z""#).is_err());
    }

    #[test]
    fn events_whose_window_ends_beyond_the_calendar_never_leave_it() {
        let end_of_time = DateTime::<Utc>::MAX_UTC - TimeDelta::hours(1);
        let agg = aggregate("count(true, within 1d)");
        let events = vec![(1, event(end_of_time, "A", json!({})))];
        let mut state = observed(&agg, &events, end_of_time);
        for now in [end_of_time, DateTime::<Utc>::MAX_UTC] {
            state.advance(&agg, now);
            assert_eq!(
                (state.value(&agg, now), state.next_change(&agg, now)),
                reference(&agg, &events, now)
            );
        }
        let back: AggregateState = serde_json::from_str(&json_of(&state)).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn an_overflowing_sum_survives_serialisation_as_null() {
        let t = ts(T);
        let agg = aggregate("sum(properties.x, true)");
        let events = vec![
            (1, event(t, "A", json!({"x": 1.0e308}))),
            (2, event(t, "A", json!({"x": 1.0e308}))),
        ];
        let state = observed(&agg, &events, t);
        assert_eq!(state.value(&agg, t), Value::Null);
        assert_eq!(json_of(&state), r#"{"s":{"s":null}}"#);
        let back: AggregateState = serde_json::from_str(&json_of(&state)).unwrap();
        assert_eq!(back.value(&agg, t), Value::Null);
    }

    // ---- property tests -------------------------------------------------------------------

    /// 2024-06-01T00:00:00Z.
    const BASE_MS: i64 = 1_717_200_000_000;

    /// Few distinct values, so that `most_frequent` often sees ties; `1` and `1.0`, and
    /// objects with their keys in either order, are the same value.
    fn property_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => (-1i64..2).prop_map(|n| json!(n)),
            2 => (-1i64..2).prop_map(|n| json!(n as f64)),
            1 => (-8i64..8).prop_map(|n| json!(n as f64 / 4.0)),
            6 => prop::sample::select(vec!["a", "b"]).prop_map(|s| json!(s)),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => Just(Value::Null),
            1 => (0i64..2).prop_map(|n| json!([n, "a"])),
            1 => (0i64..2).prop_map(|n| json!([n as f64, "a"])),
            1 => (0i64..2).prop_map(|n| json!({"k": n, "j": "z"})),
            1 => (0i64..2).prop_map(|n| json!({"j": "z", "k": n as f64})),
        ]
    }

    /// Events within three days of [`BASE_MS`], on an hourly grid so that timestamps often
    /// tie, sometimes off the grid by less than a millisecond.
    fn history_event() -> impl Strategy<Value = HistoryEvent> {
        (
            -72i64..72,
            prop_oneof![9 => Just(0i64), 1 => 1i64..1_000_000],
            prop::sample::select(vec![Some("A"), Some("B"), Some("C"), None]),
            prop::option::weighted(0.8, property_value()),
            prop::option::of(prop::option::weighted(0.8, property_value())),
        )
            .prop_map(|(hours, nanos, name, x, y)| {
                let at = DateTime::from_timestamp_millis(BASE_MS + hours * 3_600_000).unwrap()
                    + TimeDelta::nanoseconds(nanos);
                let mut properties = serde_json::Map::new();
                if let Some(x) = x {
                    properties.insert("x".into(), x);
                }
                match y {
                    Some(Some(y)) => {
                        properties.insert("n".into(), json!({ "y": y }));
                    }
                    Some(None) => {
                        properties.insert("n".into(), json!("flat"));
                    }
                    None => {}
                }
                HistoryEvent {
                    timestamp: at,
                    event_type: if name.is_some() { "track" } else { "page" }.into(),
                    event: name.map(String::from),
                    properties: Value::Object(properties),
                }
            })
    }

    const FUNCTIONS: [&str; 12] = [
        "count",
        "first_seen",
        "last_seen",
        "sum",
        "avg",
        "min",
        "max",
        "first",
        "last",
        "most_frequent",
        "unique",
        "unique_count",
    ];

    /// An aggregate of every function over one random property, filter and window.
    fn aggregates() -> impl Strategy<Value = Vec<EventAggregate>> {
        let filters = vec![
            "true",
            r#"event == "A""#,
            r#"event in ["A", "B"]"#,
            r#"event != "C""#,
            "properties.x > 0",
            "properties.x is null",
            r#"properties.x is not null and event != "B""#,
            r#"type == "page" or properties.x == "a""#,
        ];
        let windows = vec![
            "",
            ", within 1h",
            ", within 6h",
            ", within 1d",
            ", within 2d",
        ];
        (
            prop::sample::select(vec!["properties.x", "properties.n.y"]),
            prop::sample::select(filters),
            prop::sample::select(windows),
        )
            .prop_map(|(property, filter, window)| {
                FUNCTIONS
                    .iter()
                    .map(|function| {
                        let takes_property =
                            !matches!(*function, "count" | "first_seen" | "last_seen");
                        let property = if takes_property {
                            format!("{property}, ")
                        } else {
                            String::new()
                        };
                        aggregate(&format!("{function}({property}{filter}{window})"))
                    })
                    .collect()
            })
    }

    fn any_aggregate() -> impl Strategy<Value = EventAggregate> {
        (aggregates(), 0..FUNCTIONS.len()).prop_map(|(mut aggs, i)| aggs.swap_remove(i))
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// An event of the first profile, or of the second before they merge.
        Observe {
            event: HistoryEvent,
            second: bool,
        },
        /// The clock moves forward by this many quarter-hours.
        Tick(i64),
        /// The clock moves to the first profile's next change, as a scheduler would wake it.
        Wake,
        Advance,
        /// The second profile merges into the first (only the first such step counts).
        Merge,
        /// The state is stored and read back.
        Reload,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (history_event(), any::<bool>()).prop_map(|(event, second)| Step::Observe { event, second }),
            3 => (0i64..40).prop_map(Step::Tick),
            1 => Just(Step::Wake),
            1 => Just(Step::Advance),
            1 => Just(Step::Merge),
            1 => Just(Step::Reload),
        ]
    }

    fn check(
        agg: &EventAggregate,
        state: &AggregateState,
        events: &[(u64, HistoryEvent)],
        now: DateTime<Utc>,
    ) -> Result<(), TestCaseError> {
        let (value, expiry) = reference(agg, events, now);
        let got = state.value(agg, now);
        prop_assert!(
            close(&got, &value),
            "value at {now}: got {got}, want {value}; state {state:?}"
        );
        prop_assert_eq!(
            state.next_change(agg, now),
            expiry,
            "next change at {}; state {:?}",
            now,
            state
        );
        Ok(())
    }

    /// Runs `steps` on two profiles' states for `agg` (the second merging into the first at
    /// the first `Merge`), checking both against the reference after every step. The clock
    /// starts `start` hours from [`BASE_MS`].
    fn run_steps(agg: &EventAggregate, steps: &[Step], start: i64) -> Result<(), TestCaseError> {
        let mut now = DateTime::from_timestamp_millis(BASE_MS).unwrap() + TimeDelta::hours(start);
        let (mut first, mut second) = (AggregateState::new(agg), Some(AggregateState::new(agg)));
        let (mut first_events, mut second_events) = (Vec::new(), Vec::new());
        let mut seq = 0u64;
        for step in steps.iter().cloned() {
            match step {
                Step::Observe {
                    event,
                    second: to_second,
                } => {
                    seq += 1;
                    let (state, events) = match (&mut second, to_second) {
                        (Some(s), true) => (s, &mut second_events),
                        _ => (&mut first, &mut first_events),
                    };
                    if agg.filter.matches(&event) {
                        state.observe(agg, &event, seq, now);
                    }
                    events.push((seq, event));
                }
                Step::Tick(quarters) => now += TimeDelta::minutes(15 * quarters),
                Step::Wake => now = first.next_change(agg, now).unwrap_or(now),
                Step::Advance => {
                    first.advance(agg, now);
                    if let Some(s) = &mut second {
                        s.advance(agg, now);
                    }
                }
                Step::Merge => {
                    if let Some(s) = second.take() {
                        first.merge(agg, s, now);
                        first_events.append(&mut second_events);
                    }
                }
                Step::Reload => {
                    let text = serde_json::to_string(&first).unwrap();
                    let back: AggregateState = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(&back, &first, "{}", text);
                    first = back;
                }
            }
            check(agg, &first, &first_events, now)?;
            if let Some(s) = &second {
                check(agg, s, &second_events, now)?;
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn state_agrees_with_the_reference_at_every_step(
            aggs in aggregates(),
            steps in prop::collection::vec(step(), 0..40),
            start in -48i64..24,
        ) {
            for agg in &aggs {
                run_steps(agg, &steps, start)?;
            }
        }

        #[test]
        fn backfill_equals_observing_in_log_order(
            agg in any_aggregate(),
            events in prop::collection::vec(history_event(), 0..30)
                .prop_map(|es| es.into_iter().enumerate().map(|(i, e)| (i as u64 * 3 + 1, e)).collect::<Vec<_>>())
                .prop_shuffle(),
            hours in -80i64..80,
        ) {
            let now = DateTime::from_timestamp_millis(BASE_MS).unwrap() + TimeDelta::hours(hours);
            let backfilled = AggregateState::from_history(&agg, &events, now);
            let mut in_order = events.clone();
            in_order.sort_by_key(|(seq, _)| *seq);
            prop_assert_eq!(&backfilled, &observed(&agg, &in_order, now));
            check(&agg, &backfilled, &events, now)?;
            // Observing in any order gives the same answers.
            check(&agg, &observed(&agg, &events, now), &events, now)?;
        }
    }
}
