use super::*;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use proptest::prelude::*;
use rapport_core::audience;

fn named(n: &str) -> EventFilter {
    EventFilter::from_expr(&audience::parse(&format!("event == \"{n}\"")).unwrap()).unwrap()
}

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

use crate::test_history as history;

fn spec(start: &str, returning: &str, period: Period, tz: &str) -> RetentionSpec {
    RetentionSpec {
        start: named(start),
        returning: named(returning),
        period,
        tz: tz.parse().unwrap(),
        periods: 4,
        cohorting: Cohorting::FirstTime,
        from_ms: 0,
        to_ms: i64::MAX,
    }
}

#[test]
fn a_same_day_return_counts_and_an_entry_is_not_its_own_return() {
    let s = spec("Visit", "Visit", Period::Day, "UTC");
    let t = ms("2026-03-02T09:00:00Z");
    let m = memberships(&history(&[("Visit", t)]), &s);
    assert_eq!(m[0].returned, Vec::<usize>::new());
    let m = memberships(&history(&[("Visit", t), ("Visit", t + HOUR)]), &s);
    assert_eq!(m[0].returned, vec![0]);
    // Same millisecond, later in the log: after the entry.
    let m = memberships(&history(&[("Visit", t), ("Visit", t)]), &s);
    assert_eq!(m[0].returned, vec![0]);
    // A return before the entry, in the same day, is not a return.
    let s = spec("Signup", "Visit", Period::Day, "UTC");
    let m = memberships(&history(&[("Visit", t), ("Signup", t + HOUR)]), &s);
    assert_eq!(m[0].returned, Vec::<usize>::new());
}

#[test]
fn the_next_day_is_the_next_calendar_day_of_the_time_zone() {
    // 22:30 and 00:30 the next day in Paris, 2 hours apart: day 1 in Paris, day 0 in UTC.
    let start = ms("2026-03-02T21:30:00Z");
    let back = ms("2026-03-02T23:30:00Z");
    let h = history(&[("Signup", start), ("Visit", back)]);
    let paris = memberships(&h, &spec("Signup", "Visit", Period::Day, "Europe/Paris"));
    let utc = memberships(&h, &spec("Signup", "Visit", Period::Day, "UTC"));
    assert_eq!(paris[0].returned, vec![1]);
    assert_eq!(utc[0].returned, vec![0]);
}

#[test]
fn first_time_and_recurring_cohorts() {
    let w = 7 * DAY;
    let t0 = ms("2026-03-02T10:00:00Z"); // a Monday
    let h = history(&[("Buy", t0), ("Buy", t0 + w), ("Buy", t0 + 3 * w)]);
    let mut s = spec("Buy", "Buy", Period::Week, "UTC");
    let first = memberships(&h, &s);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].returned, vec![1, 3]);
    s.cohorting = Cohorting::Recurring;
    let all = memberships(&h, &s);
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].returned, vec![2]);
    // First time outside the range: in no cohort; recurring still enters later.
    s.from_ms = t0 + DAY;
    assert_eq!(memberships(&h, &s).len(), 2);
    s.cohorting = Cohorting::FirstTime;
    assert!(memberships(&h, &s).is_empty());
}

#[test]
fn cells_not_begun_have_no_figure() {
    let s = spec("Buy", "Buy", Period::Week, "UTC");
    let t0 = ms("2026-03-02T10:00:00Z");
    let members: Vec<Membership> = [
        history(&[("Buy", t0), ("Buy", t0 + 7 * DAY)]),
        history(&[("Buy", t0 + DAY)]),
    ]
    .iter()
    .flat_map(|h| memberships(h, &s))
    .collect();
    let r = report(&members, &s, t0 + 10 * DAY);
    assert_eq!(r.cohorts.len(), 1);
    let row = &r.cohorts[0];
    assert_eq!(row.period, "2026-03-02");
    assert_eq!(row.customers, 2);
    assert_eq!(row.returned, vec![Some(0), Some(1), None, None]);
    assert_eq!(row.rates[1], Some(0.5));
    assert_eq!(r.overall[1], Some(0.5));
    assert_eq!(r.overall[2], None);
}

/// Periods counted another way: from the calendar fields of local dates.
fn local_period(t: i64, p: Period, tz: Tz) -> i64 {
    let d = DateTime::<Utc>::from_timestamp_millis(t)
        .unwrap()
        .with_timezone(&tz)
        .date_naive();
    match p {
        Period::Day => d.num_days_from_ce() as i64,
        Period::Week => {
            let monday = d - chrono::TimeDelta::days(d.weekday().num_days_from_monday() as i64);
            monday.num_days_from_ce() as i64 / 7
        }
        Period::Month => d.year() as i64 * 12 + d.month() as i64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Each cell is the number of cohort customers with a return event after their entry in
    /// that period, counted from local calendar fields; and each figure is the length of
    /// its list of people.
    #[test]
    fn cells_count_the_customers_who_came_back(
        people in proptest::collection::vec(proptest::collection::vec((0..3usize, 0..2_000i64), 0..6), 0..8),
        p in 0..3u8, tz in 0..3usize, recurring in proptest::bool::ANY,
    ) {
        let period = [Period::Day, Period::Week, Period::Month][p as usize];
        let tz_name = ["UTC", "Europe/Paris", "Pacific/Auckland"][tz];
        let mut s = spec("Start", "Back", period, tz_name);
        s.periods = 6;
        s.cohorting = if recurring { Cohorting::Recurring } else { Cohorting::FirstTime };
        let base = ms("2026-01-01T00:00:00Z");
        let names = ["Start", "Back", "Other"];
        let histories: Vec<History> = people
            .iter()
            .map(|evs| history(&evs.iter().map(|&(n, h)| (names[n], base + h * 3 * HOUR)).collect::<Vec<_>>()))
            .collect();
        let members: Vec<Membership> = histories.iter().flat_map(|h| memberships(h, &s)).collect();
        for (h, m) in histories.iter().flat_map(|h| memberships(h, &s).into_iter().map(move |m| (h, m))) {
            let entry = h.events.iter().position(|e| e.at_ms == m.entry_ms && s.start.matches(e)).unwrap();
            let c = local_period(m.entry_ms, period, s.tz);
            let expected: std::collections::BTreeSet<usize> = h.events.iter().enumerate()
                .filter(|(i, e)| *i > entry && s.returning.matches(*e))
                .filter_map(|(_, e)| usize::try_from(local_period(e.at_ms, period, s.tz) - c).ok())
                .filter(|&n| n < s.periods)
                .collect();
            prop_assert_eq!(m.returned.clone(), expected.into_iter().collect::<Vec<_>>());
        }
        let r = report(&members, &s, i64::MAX);
        for row in &r.cohorts {
            prop_assert_eq!(row.customers, members.iter().filter(|m| m.cohort == row.cohort).count() as u64);
            for (n, cell) in row.returned.iter().enumerate() {
                let listed = members.iter().filter(|m| in_cell(m, row.cohort, n)).count() as u64;
                prop_assert_eq!(*cell, Some(listed));
            }
        }
        let _ = NaiveDate::MIN;
    }
}
