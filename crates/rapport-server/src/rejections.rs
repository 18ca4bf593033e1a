//! The messages this server's tracking API refused, kept in memory for
//! `GET /api/v1/rejections` and the overview's `rejected_per_minute`.
//!
//! A bounded ring: the last [`MAX_KEPT`] refusals, none older than [`MAX_AGE_MS`], per
//! server and since it started (nothing is stored, so nothing survives a restart and
//! servers sharing a database each keep their own). A refusal holds why (code, field, the
//! message the client got), which message (its `type`, `event`, `messageId` when
//! readable), the source and the path, never the payload: it carries personal data that
//! a deletion could not reach here. Per-minute counts of refusals are kept apart, for the
//! last [`MAX_MINUTES`] minutes, so that they stay exact when the ring wraps.

use rapport_api::Code;
use rapport_core::event::MessageSummary;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Refusals kept at most.
pub const MAX_KEPT: usize = 1_000;
/// How long a refusal is kept at most: an hour.
pub const MAX_AGE_MS: i64 = 3_600_000;
/// Minutes of per-minute counts kept.
pub const MAX_MINUTES: usize = rapport_api::overview::MAX_MINUTES as usize;

/// One refusal, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its place in the order of refusals: larger is more recent (the listing's cursor).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The source of the write key, when it was valid.
    pub source_id: Option<String>,
    pub code: Code,
    pub field: Option<String>,
    pub message: String,
    pub summary: MessageSummary,
    /// The tracking path posted to (`/v1/batch`).
    pub path: &'static str,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<Refusal>,
    next_seq: u64,
    /// (minute since the epoch, refusals in it), oldest first.
    minutes: VecDeque<(i64, u64)>,
}

/// The ring of refusals of one server.
#[derive(Default)]
pub struct Rejections {
    inner: Mutex<Inner>,
}

impl Rejections {
    /// Records a refusal made at `at_ms` (its `seq` is assigned here) and counts it in the
    /// `rapport_tracking_rejections_total` counter.
    pub fn record(&self, mut refusal: Refusal) {
        metrics::counter!("rapport_tracking_rejections_total").increment(1);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        refusal.seq = inner.next_seq;
        inner.next_seq += 1;
        let minute = refusal.at_ms.div_euclid(60_000);
        match inner.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => inner.minutes.push_back((minute, 1)),
        }
        while inner.minutes.len() > MAX_MINUTES {
            inner.minutes.pop_front();
        }
        inner.ring.push_back(refusal);
        while inner.ring.len() > MAX_KEPT {
            inner.ring.pop_front();
        }
    }

    /// Refusals most recent first: of `source` only when given, older than the one of seq
    /// `before` when given, not older than [`MAX_AGE_MS`] before `now_ms`, at most `limit`.
    /// The second value is the seq to pass as `before` for the next page, when there is one.
    pub fn list(
        &self,
        source: Option<&str>,
        before: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> (Vec<Refusal>, Option<u64>) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = now_ms - MAX_AGE_MS;
        let mut matching = inner
            .ring
            .iter()
            .rev()
            .filter(|r| before.is_none_or(|b| r.seq < b))
            .take_while(|r| r.at_ms >= oldest)
            .filter(|r| source.is_none_or(|s| r.source_id.as_deref() == Some(s)));
        let page: Vec<Refusal> = matching.by_ref().take(limit).cloned().collect();
        let next = match (page.last(), matching.next()) {
            (Some(last), Some(_)) => Some(last.seq),
            _ => None,
        };
        (page, next)
    }

    /// Refusals in each of the `minutes` minutes ending with the one of `now_ms`, oldest
    /// first.
    pub fn per_minute(&self, now_ms: i64, minutes: usize) -> Vec<u64> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms.div_euclid(60_000);
        let first = now - minutes as i64 + 1;
        let mut out = vec![0; minutes];
        for (m, n) in &inner.minutes {
            if (first..=now).contains(m) {
                out[(m - first) as usize] = *n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(at_ms: i64, source: Option<&str>) -> Refusal {
        Refusal {
            seq: 0,
            at_ms,
            source_id: source.map(str::to_owned),
            code: Code::MissingField,
            field: Some("event".into()),
            message: "`event` is required".into(),
            summary: MessageSummary::default(),
            path: "/v1/track",
        }
    }

    #[test]
    fn the_ring_is_bounded_and_lists_newest_first_by_pages() {
        let r = Rejections::default();
        let now = 1_000 * 60_000;
        for i in 0..(MAX_KEPT as i64 + 5) {
            r.record(refusal(
                now - 10_000 + i,
                Some(if i % 2 == 0 { "a" } else { "b" }),
            ));
        }
        let (all, next) = r.list(None, None, 2_000, now);
        assert_eq!(all.len(), MAX_KEPT);
        assert_eq!(next, None);
        assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
        assert_eq!(all[0].seq, MAX_KEPT as u64 + 4);

        let (page, next) = r.list(Some("a"), None, 3, now);
        assert_eq!(page.len(), 3);
        assert!(page.iter().all(|p| p.source_id.as_deref() == Some("a")));
        let (page2, _) = r.list(Some("a"), next, 3, now);
        assert!(page2[0].seq < page[2].seq);
        assert_eq!(r.list(Some("nobody"), None, 10, now).0, vec![]);
    }

    #[test]
    fn refusals_older_than_an_hour_are_not_listed_but_still_counted() {
        let r = Rejections::default();
        let now = 10_000 * 60_000;
        r.record(refusal(now - MAX_AGE_MS - 1, None));
        r.record(refusal(now - 61_000, None));
        r.record(refusal(now - 1, None));
        r.record(refusal(now, None));
        assert_eq!(r.list(None, None, 10, now).0.len(), 3);
        let per_minute = r.per_minute(now, 61);
        assert_eq!(per_minute.len(), 61);
        assert_eq!(&per_minute[58..], &[1, 1, 1]);
        assert_eq!(per_minute.iter().sum::<u64>(), 3);
        assert_eq!(r.per_minute(now, 62)[0], 1);
    }
}
