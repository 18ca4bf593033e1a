//! Calendar periods (day, ISO week, month) in a time zone, numbered so that subtracting two
//! numbers counts the periods between them.
//!
//! Customers live in a time zone, and "came back the next day" means the next calendar day
//! where the business counts days, not 24 hours later: a period is a local calendar day,
//! week (Monday to Sunday, ISO 8601) or month, read off the event's instant in `tz` by the
//! IANA rules (daylight-saving changes included).

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

/// 1970-01-05, the first Monday of the Unix era.
fn first_monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 5).expect("a valid date")
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// The local calendar date of an instant in `tz`.
pub fn local_date(at_ms: i64, tz: Tz) -> NaiveDate {
    let utc = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    utc.with_timezone(&tz).date_naive()
}

/// The number of the period holding `at_ms` in `tz`: days since 1970-01-01, weeks since the
/// week of 1970-01-05, or months since January 1970 (all local).
pub fn index(at_ms: i64, period: Period, tz: Tz) -> i64 {
    let d = local_date(at_ms, tz);
    match period {
        Period::Day => (d - epoch()).num_days(),
        Period::Week => (d - first_monday()).num_days().div_euclid(7),
        Period::Month => i64::from(d.year() - 1970) * 12 + i64::from(d.month0()),
    }
}

/// The first local day of period number `i`.
pub fn start_date(i: i64, period: Period) -> NaiveDate {
    match period {
        Period::Day => epoch() + chrono::TimeDelta::days(i),
        Period::Week => first_monday() + chrono::TimeDelta::days(i * 7),
        Period::Month => {
            let y = 1970 + i.div_euclid(12);
            let m = i.rem_euclid(12) + 1;
            NaiveDate::from_ymd_opt(y as i32, m as u32, 1).unwrap_or_default()
        }
    }
}

/// The instant period number `i` starts in `tz`, Unix milliseconds: local midnight of its
/// first day, or the first instant of that day where midnight does not exist (a
/// daylight-saving gap).
pub fn start_ms(i: i64, period: Period, tz: Tz) -> i64 {
    let day = start_date(i, period);
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight");
    for _ in 0..48 {
        if let Some(at) = tz.from_local_datetime(&t).earliest() {
            return at.timestamp_millis();
        }
        t += chrono::TimeDelta::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn periods_follow_the_local_calendar() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // 23:30 UTC on a Sunday is already Monday in Paris.
        let t = ms("2026-03-01T23:30:00Z");
        assert_eq!(local_date(t, paris).to_string(), "2026-03-02");
        assert_eq!(local_date(t, Tz::UTC).to_string(), "2026-03-01");
        assert_eq!(
            index(t, Period::Week, paris),
            index(t, Period::Week, Tz::UTC) + 1
        );
        assert_eq!(
            start_date(index(t, Period::Week, paris), Period::Week).to_string(),
            "2026-03-02"
        );
        assert_eq!(
            start_date(index(t, Period::Month, paris), Period::Month).to_string(),
            "2026-03-01"
        );
        assert_eq!(
            start_ms(index(t, Period::Day, paris), Period::Day, paris),
            ms("2026-03-01T23:00:00Z")
        );
        // The day of a spring-forward change is 23 hours long; periods still count days.
        let before = ms("2026-03-29T00:30:00+01:00");
        let after = ms("2026-03-30T00:30:00+02:00");
        assert_eq!(
            index(after, Period::Day, paris) - index(before, Period::Day, paris),
            1
        );
        assert_eq!(after - before, 23 * 3_600_000);
    }

    #[test]
    fn a_midnight_that_does_not_exist_starts_the_day_at_its_first_instant() {
        // Chile springs forward at local midnight: 2026-09-06 00:00 does not exist.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let i = (day - epoch()).num_days();
        let start = start_ms(i, Period::Day, santiago);
        assert_eq!(local_date(start, santiago), day);
        assert_eq!(index(start - 1, Period::Day, santiago), i - 1);
    }

    proptest! {
        /// Every instant lies in the period whose start is at or before it and whose
        /// successor starts after it.
        #[test]
        fn an_instant_lies_in_its_period(t in -1_000_000_000_000i64..4_000_000_000_000, p in 0..3u8, tz in 0..4usize) {
            let tz: Tz = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"][tz].parse().unwrap();
            let period = [Period::Day, Period::Week, Period::Month][p as usize];
            let i = index(t, period, tz);
            prop_assert!(start_ms(i, period, tz) <= t);
            prop_assert!(start_ms(i + 1, period, tz) > t);
            prop_assert_eq!(index(start_ms(i, period, tz), period, tz), i);
        }
    }
}
