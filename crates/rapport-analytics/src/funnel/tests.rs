use super::*;
use proptest::prelude::*;
use rapport_core::audience;
use serde_json::json;

fn filter(text: &str) -> EventFilter {
    EventFilter::from_expr(&audience::parse(text).unwrap()).unwrap()
}

fn named(n: &str) -> EventFilter {
    filter(&format!("event == \"{n}\""))
}

const MIN: i64 = 60_000;

use crate::test_history as history;

fn spec(steps: &[&str], window_ms: i64, order: Order) -> FunnelSpec {
    FunnelSpec {
        steps: steps.iter().map(|s| named(s)).collect(),
        window_ms,
        order,
        exclusions: Vec::new(),
        from_ms: 0,
        to_ms: i64::MAX,
        breakdown: None,
    }
}

#[test]
fn steps_in_order_within_the_window() {
    let s = spec(&["A", "B", "C"], 10 * MIN, Order::Sequential);
    // A late A gives the attempt that completes; the first A is too far from C.
    let h = history(&[
        ("A", 0),
        ("B", 5 * MIN),
        ("A", 6 * MIN),
        ("B", 8 * MIN),
        ("C", 12 * MIN),
    ]);
    let c = convert(&h, &s);
    assert_eq!(c.reached, 3);
    assert_eq!(c.times, vec![6 * MIN, 8 * MIN, 12 * MIN]);
    assert_eq!(c.entry_seq, 2);
    // Out of order in the log, in order in time: sorted before.
    let h = history(&[("C", 3 * MIN), ("A", MIN), ("B", 2 * MIN)]);
    assert_eq!(convert(&h, &s).reached, 3);
    // Nothing entered: not in the funnel.
    assert_eq!(convert(&history(&[("B", 0), ("C", 1)]), &s).reached, 0);
}

#[test]
fn strict_order_allows_nothing_between() {
    let s = spec(&["A", "B"], 10 * MIN, Order::Strict);
    assert_eq!(
        convert(&history(&[("A", 0), ("X", 1), ("B", 2)]), &s).reached,
        1
    );
    assert_eq!(
        convert(&history(&[("A", 0), ("X", 1), ("A", 2), ("B", 3)]), &s).reached,
        2
    );
    let s = spec(&["A", "B"], 10 * MIN, Order::Sequential);
    assert_eq!(
        convert(&history(&[("A", 0), ("X", 1), ("B", 2)]), &s).reached,
        2
    );
}

#[test]
fn any_order_takes_the_steps_as_they_come() {
    let s = spec(&["A", "B", "C"], 10 * MIN, Order::Any);
    let c = convert(&history(&[("C", 0), ("B", MIN), ("A", 2 * MIN)]), &s);
    assert_eq!(c.reached, 3);
    assert_eq!(c.times, vec![0, 2 * MIN, 2 * MIN]);
    // B and C without A reach nothing: step 1 is part of every prefix.
    assert_eq!(convert(&history(&[("C", 0), ("B", MIN)]), &s).reached, 0);
}

#[test]
fn an_exclusion_between_steps_disqualifies_the_attempt() {
    let mut s = spec(&["A", "B", "C"], 60 * MIN, Order::Sequential);
    s.exclusions.push(Exclusion {
        filter: named("X"),
        after: 0,
        before: 1,
    });
    let h = history(&[("A", 0), ("X", MIN), ("B", 2 * MIN), ("C", 3 * MIN)]);
    assert_eq!(convert(&h, &s).reached, 1);
    // A new entry after the excluded event is clean.
    let h = history(&[
        ("A", 0),
        ("X", MIN),
        ("A", 2 * MIN),
        ("B", 3 * MIN),
        ("C", 4 * MIN),
    ]);
    let c = convert(&h, &s);
    assert_eq!((c.reached, c.times[0]), (3, 2 * MIN));
    // After step 2 the exclusion no longer applies.
    let h = history(&[("A", 0), ("B", MIN), ("X", 2 * MIN), ("C", 3 * MIN)]);
    assert_eq!(convert(&h, &s).reached, 3);
    s.order = Order::Strict;
    assert_eq!(
        s.validate().unwrap_err().to_string().split(':').next(),
        Some("exclusions[0]")
    );
}

#[test]
fn entries_count_only_inside_the_range_and_later_steps_may_fall_after_it() {
    let mut s = spec(&["A", "B"], 60 * MIN, Order::Sequential);
    s.from_ms = 10 * MIN;
    s.to_ms = 20 * MIN;
    assert_eq!(
        convert(&history(&[("A", 5 * MIN), ("B", 12 * MIN)]), &s).reached,
        0
    );
    assert_eq!(
        convert(&history(&[("A", 15 * MIN), ("B", 25 * MIN)]), &s).reached,
        2
    );
}

#[test]
fn breakdowns_read_the_entry_event_or_the_trait() {
    let mut s = spec(&["A", "B"], 60 * MIN, Order::Sequential);
    s.breakdown = Some(Breakdown::Property(vec!["plan".into()]));
    // Entered by the second A (seq 2, "pro"), the one that converts.
    let h = history(&[("X", 0), ("A", MIN), ("A", 2 * MIN), ("B", 3 * MIN)]);
    assert_eq!(convert(&h, &s).breakdown.as_deref(), Some("pro"));
    let mut h = h;
    h.traits.insert("country".into(), json!("FR"));
    s.breakdown = Some(Breakdown::Trait("country".into()));
    assert_eq!(convert(&h, &s).breakdown.as_deref(), Some("FR"));
}

#[test]
fn the_report_counts_steps_drops_and_times() {
    let s = spec(&["A", "B", "C"], 60 * MIN, Order::Sequential);
    let people = [
        history(&[("A", 0), ("B", MIN), ("C", 3 * MIN)]),
        history(&[("A", 0), ("B", 2 * MIN)]),
        history(&[("A", 0)]),
        history(&[("B", 0)]),
    ];
    let conversions: Vec<Conversion> = people.iter().map(|h| convert(h, &s)).collect();
    let r = report(&conversions, &s, Some((Period::Day, Tz::UTC)));
    assert_eq!(r.entered, 3);
    assert_eq!(r.converted, 1);
    let counts: Vec<u64> = r.steps.iter().map(|x| x.customers).collect();
    assert_eq!(counts, vec![3, 2, 1]);
    let dropped: Vec<u64> = r.steps.iter().map(|x| x.dropped).collect();
    assert_eq!(dropped, vec![1, 1, 0]);
    let t = r.steps[1].time_from_entry.as_ref().unwrap();
    assert_eq!((t.median_ms, t.p90_ms), (MIN, 2 * MIN));
    assert_eq!(
        r.steps[2].time_from_previous.as_ref().unwrap().median_ms,
        2 * MIN
    );
    assert_eq!(r.over_time.len(), 1);
    assert_eq!(r.over_time[0].period, "1970-01-01");
    assert!((r.steps[1].from_previous - 2.0 / 3.0).abs() < 1e-12);
}

/// The reference: every way of matching the steps to the customer's events, the best one
/// chosen by the module's rule. Exponential; for a few events only.
fn reference(h: &History, s: &FunnelSpec) -> (usize, Option<(i64, i64, u64)>) {
    fn go(h: &History, s: &FunnelSpec, path: &mut Vec<usize>, all: &mut Vec<Vec<usize>>) {
        all.push(path.clone());
        if path.len() == s.steps.len() {
            return;
        }
        let from = path.last().map_or(0, |&i| i + 1);
        let to = match (s.order, path.last()) {
            (Order::Strict, Some(&i)) => (i + 2).min(h.events.len()),
            _ => h.events.len(),
        };
        for i in from..to {
            let e = &h.events[i];
            if !s.steps[path.len()].matches(e) {
                continue;
            }
            if let Some(&first) = path.first() {
                if e.at_ms - h.events[first].at_ms > s.window_ms {
                    continue;
                }
            } else if e.at_ms < s.from_ms || e.at_ms >= s.to_ms {
                continue;
            }
            path.push(i);
            let excluded = s.exclusions.iter().any(|x| {
                x.before < path.len()
                    && (path[x.after] + 1..=path[x.before]).any(|j| x.filter.matches(&h.events[j]))
            });
            if !excluded {
                go(h, s, path, all);
            }
            path.pop();
        }
    }
    let mut all = Vec::new();
    go(h, s, &mut Vec::new(), &mut all);
    let k = all.iter().map(Vec::len).max().unwrap_or(0);
    if k == 0 {
        return (0, None);
    }
    let best = all
        .iter()
        .filter(|p| p.len() == k)
        .min_by_key(|p| (p[k - 1], std::cmp::Reverse((h.events[p[0]].at_ms, p[0]))))
        .unwrap();
    let e = |i: usize| &h.events[i];
    (
        k,
        Some((e(best[0]).at_ms, e(best[k - 1]).at_ms, e(best[0]).seq)),
    )
}

/// Any order, as the definition says: the first event (of a step, in the range) from
/// which the most steps have an event within the window.
fn reference_any(h: &History, s: &FunnelSpec) -> (usize, Option<u64>) {
    let mut best = (0, None);
    for (i, e) in h.events.iter().enumerate() {
        if e.at_ms < s.from_ms || e.at_ms >= s.to_ms || !s.steps.iter().any(|f| f.matches(e)) {
            continue;
        }
        let k = (0..s.steps.len())
            .take_while(|&k| {
                h.events[i..]
                    .iter()
                    .any(|f| f.at_ms - e.at_ms <= s.window_ms && s.steps[k].matches(f))
            })
            .count();
        if k > best.0 {
            best = (k, Some(e.seq));
        }
    }
    best
}

fn arb_history() -> impl Strategy<Value = History> {
    proptest::collection::vec((0..4usize, 0..40i64), 0..8).prop_map(|v| {
        let names = ["A", "B", "C", "X"];
        let events: Vec<(&str, i64)> = v.iter().map(|&(n, t)| (names[n], t * MIN)).collect();
        history(&events)
    })
}

fn arb_spec() -> impl Strategy<Value = FunnelSpec> {
    (
        proptest::collection::vec(0..3usize, 2..=3),
        1..30i64,
        0..3u8,
        proptest::option::of((0..2usize, 1..3usize)),
        0..10i64,
    )
        .prop_map(|(steps, window, order, exclusion, from)| {
            let names = ["A", "B", "C"];
            let order = [Order::Sequential, Order::Strict, Order::Any][order as usize];
            let n = steps.len();
            FunnelSpec {
                steps: steps.iter().map(|&i| named(names[i])).collect(),
                window_ms: window * MIN,
                order,
                exclusions: exclusion
                    .filter(|&(a, b)| order == Order::Sequential && a < b && b < n)
                    .map(|(after, before)| Exclusion {
                        filter: named("X"),
                        after,
                        before,
                    })
                    .into_iter()
                    .collect(),
                from_ms: from * MIN,
                to_ms: (from + 20) * MIN,
                breakdown: None,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// The counted attempt is the one the definition picks among every possible matching.
    #[test]
    fn the_counted_attempt_is_the_best_of_every_matching(h in arb_history(), s in arb_spec()) {
        s.validate().unwrap();
        let c = convert(&h, &s);
        if s.order == Order::Any {
            let (k, entry) = reference_any(&h, &s);
            prop_assert_eq!(c.reached, k);
            if k > 0 {
                prop_assert_eq!(Some(c.entry_seq), entry);
            }
        } else {
            let (k, best) = reference(&h, &s);
            prop_assert_eq!(c.reached, k);
            if let Some((start, end, seq)) = best {
                prop_assert_eq!(c.times[0], start);
                prop_assert_eq!(*c.times.last().unwrap(), end);
                prop_assert_eq!(c.entry_seq, seq);
                prop_assert!(c.times.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }

    /// Each count is the length of its list of people, and everyone who entered either
    /// dropped at a step or converted.
    #[test]
    fn counts_equal_the_people_listed(people in proptest::collection::vec(arb_history(), 0..12), s in arb_spec()) {
        let conversions: Vec<Conversion> = people.iter().map(|h| convert(h, &s)).collect();
        let r = report(&conversions, &s, None);
        let n = s.steps.len();
        for (k, step) in r.steps.iter().enumerate() {
            let listed = |st| conversions.iter().filter(|c| is_listed(c, k, st, n)).count() as u64;
            prop_assert_eq!(step.customers, listed(Status::Reached));
            prop_assert_eq!(step.dropped, listed(Status::Dropped));
        }
        let dropped: u64 = r.steps.iter().map(|x| x.dropped).sum();
        prop_assert_eq!(dropped + r.converted, r.entered);
    }
}
