//! Times on the wire: RFC 3339 in UTC with milliseconds (`2026-12-02T11:02:14.000Z`), the
//! form every answer uses; requests accept any ISO-8601 form the tracking API accepts.

use chrono::{DateTime, SecondsFormat, Utc};

/// A time in milliseconds since the Unix epoch, as the API sends it. Out of chrono's range
/// (beyond ±262,000 years), which no stored time is: the empty string.
pub fn from_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| to_wire(&t))
        .unwrap_or_default()
}

/// A time as the API sends it.
pub fn to_wire(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time sent by the API, read back (any RFC 3339 offset).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A time of the API as a table shows it: UTC to the second, `2026-12-02T11:02:14Z`. Text
/// that is not a time is shown as it is.
pub fn display(s: &str) -> String {
    parse(s)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| s.to_owned())
}

/// Milliseconds since the epoch as a table shows them (`2026-12-02 11:02:14`).
pub fn display_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_times_round_trip_to_the_millisecond() {
        let s = from_ms(1_764_673_334_123);
        assert_eq!(s, "2025-12-02T11:02:14.123Z");
        assert_eq!(parse(&s).unwrap().timestamp_millis(), 1_764_673_334_123);
        assert_eq!(display(&s), "2025-12-02T11:02:14Z");
        assert_eq!(display("soon"), "soon");
        assert_eq!(display_ms(0), "1970-01-01 00:00:00");
    }
}
