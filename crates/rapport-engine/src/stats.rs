//! Events accepted per minute and per source, for the pipeline overview
//! (`GET /api/v1/overview`).
//!
//! The processor counts every event it applies by the UTC minute of its `receivedAt` and
//! its source, and commits the counts with its offset in the same atomic write as the rest
//! of its state ([`NS_EVENTS_PER_MINUTE`]): so they survive restarts and always agree with
//! the log up to the processor's offset. Minutes older than [`KEEP_MINUTES`] (by the
//! processor's clock) are neither counted nor kept: the processor prunes them once per
//! minute boundary. Counts are not personal data; the eraser leaves them alone.
//!
//! Layout: one partition ([`PART`]); key = the minute (minutes since the Unix epoch, as
//! 8 big-endian bytes, sign bit flipped so that keys sort by time) followed by the source
//! id's bytes; value = the count as 8 big-endian bytes. A window of N minutes is one range
//! read of at most N × sources small keys.

use crate::EngineError;
use rapport_store::{StateStore, StateWrite};
use std::collections::BTreeMap;

/// Events the processor applied, per minute of their `receivedAt` and source.
pub const NS_EVENTS_PER_MINUTE: &str = "stats.events_per_minute";
/// The one partition of [`NS_EVENTS_PER_MINUTE`].
pub const PART: &str = "all";
/// Minutes of counts kept: 24 hours.
pub const KEEP_MINUTES: i64 = 1440;
/// Keys read per page (of a window, of pruning).
const PAGE: usize = 10_000;

/// The minute (since the Unix epoch, UTC) of a time in milliseconds since the epoch.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

fn minute_prefix(minute: i64) -> [u8; 8] {
    ((minute as u64) ^ (1 << 63)).to_be_bytes()
}

fn key(minute: i64, source_id: &str) -> Vec<u8> {
    let mut k = minute_prefix(minute).to_vec();
    k.extend_from_slice(source_id.as_bytes());
    k
}

/// The minute and source id of a key, `None` for a key this module did not write.
fn parse_key(k: &[u8]) -> Option<(i64, String)> {
    let (m, source) = k.split_at_checked(8)?;
    let m = u64::from_be_bytes(m.try_into().ok()?) ^ (1 << 63);
    Some((m as i64, String::from_utf8(source.to_vec()).ok()?))
}

fn parse_count(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// One minute's count of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCount {
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    pub source_id: String,
    pub count: u64,
}

/// The counts of one batch of the processor, added to the stored ones at its commit.
#[derive(Debug, Default)]
pub struct BatchCounts(BTreeMap<(i64, String), u64>);

impl BatchCounts {
    /// Counts one event received at `received_ms` (milliseconds since the epoch) from
    /// `source_id`.
    pub fn add(&mut self, received_ms: i64, source_id: &str) {
        *self
            .0
            .entry((minute_of(received_ms), source_id.to_owned()))
            .or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The writes that add these counts to the stored ones, reading each stored count once
    /// (the processor is the only writer). Minutes older than [`KEEP_MINUTES`] before
    /// `now_ms` are dropped, since pruning would remove them.
    pub fn into_writes(
        self,
        store: &dyn StateStore,
        now_ms: i64,
    ) -> Result<Vec<StateWrite>, EngineError> {
        let oldest = minute_of(now_ms) - KEEP_MINUTES;
        let mut writes = Vec::with_capacity(self.0.len());
        for ((minute, source), n) in self.0 {
            if minute <= oldest {
                continue;
            }
            let key = key(minute, &source);
            let stored = store
                .state_get(NS_EVENTS_PER_MINUTE, PART, &key)?
                .map_or(0, |v| parse_count(&v));
            writes.push(StateWrite {
                namespace: NS_EVENTS_PER_MINUTE.into(),
                profile: PART.into(),
                key,
                value: Some((stored + n).to_be_bytes().to_vec()),
            });
        }
        Ok(writes)
    }
}

/// Removes minutes older than [`KEEP_MINUTES`], once per minute boundary.
#[derive(Debug, Default)]
pub struct Pruner {
    /// The minute of the last complete pruning.
    done: Option<i64>,
    /// The minute of the pruning whose writes wait for a commit, and whether it was complete.
    pending: Option<(i64, bool)>,
}

impl Pruner {
    /// The deletions due at `now_ms`: none unless a new minute began since the last
    /// complete pruning. Call [`Pruner::committed`] once they are committed.
    pub fn due(
        &mut self,
        store: &dyn StateStore,
        now_ms: i64,
    ) -> Result<Vec<StateWrite>, EngineError> {
        let now = minute_of(now_ms);
        if self.done == Some(now) {
            return Ok(Vec::new());
        }
        let oldest = now - KEEP_MINUTES;
        let rows = store.state_scan_range(NS_EVENTS_PER_MINUTE, PART, None, PAGE)?;
        let full = rows.len() == PAGE;
        let writes: Vec<StateWrite> = rows
            .into_iter()
            .take_while(|(k, _)| parse_key(k).is_none_or(|(m, _)| m <= oldest))
            .map(|(key, _)| StateWrite {
                namespace: NS_EVENTS_PER_MINUTE.into(),
                profile: PART.into(),
                key,
                value: None,
            })
            .collect();
        // Complete unless a whole page was stale: the rest waits for the next step.
        self.pending = Some((now, !(full && writes.len() == PAGE)));
        Ok(writes)
    }

    /// The writes of the last [`Pruner::due`] are committed.
    pub fn committed(&mut self) {
        if let Some((minute, complete)) = self.pending.take()
            && complete
        {
            self.done = Some(minute);
        }
    }

    /// The writes of the last [`Pruner::due`] were lost with a failed batch.
    pub fn failed(&mut self) {
        self.pending = None;
    }
}

/// The stored counts of the `minutes` minutes ending with the one of `now_ms` (the current
/// minute included), oldest first, then by source id. Minutes without events are absent.
pub fn per_minute(
    store: &dyn StateStore,
    now_ms: i64,
    minutes: u32,
) -> Result<Vec<MinuteCount>, EngineError> {
    let now = minute_of(now_ms);
    let first = now - i64::from(minutes) + 1;
    // Every key of minute `first` is longer than its prefix, so strictly after it.
    let mut after = minute_prefix(first).to_vec();
    let mut out = Vec::new();
    loop {
        let rows = store.state_scan_range(NS_EVENTS_PER_MINUTE, PART, Some(&after), PAGE)?;
        let full = rows.len() == PAGE;
        for (k, v) in &rows {
            let Some((minute, source_id)) = parse_key(k) else {
                continue;
            };
            if minute > now {
                return Ok(out);
            }
            out.push(MinuteCount {
                minute,
                source_id,
                count: parse_count(v),
            });
        }
        match rows.into_iter().last() {
            Some((k, _)) if full => after = k,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_store::embedded::EmbeddedStore;

    const MIN: i64 = 60_000;

    fn commit(store: &EmbeddedStore, writes: &[StateWrite]) {
        store.state_commit(writes, None).unwrap();
    }

    #[test]
    fn keys_round_trip_and_sort_by_minute() {
        assert_eq!(
            parse_key(&key(29_000_000, "src_a")),
            Some((29_000_000, "src_a".into()))
        );
        assert_eq!(parse_key(&key(-5, "s")), Some((-5, "s".into())));
        assert!(key(-1, "z") < key(0, "a"));
        assert!(key(10, "zzz") < key(11, "a"));
        assert_eq!(parse_key(b"short"), None);
    }

    #[test]
    fn counts_add_up_per_minute_and_source_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = 1_000_000 * MIN + 30_000;
        let mut batch = BatchCounts::default();
        batch.add(now, "a");
        batch.add(now - 1, "a");
        batch.add(now - MIN, "b");
        commit(&store, &batch.into_writes(&store, now).unwrap());
        let mut batch = BatchCounts::default();
        batch.add(now + 1, "a");
        commit(&store, &batch.into_writes(&store, now).unwrap());
        let counts = per_minute(&store, now, 60).unwrap();
        assert_eq!(
            counts,
            vec![
                MinuteCount {
                    minute: minute_of(now) - 1,
                    source_id: "b".into(),
                    count: 1
                },
                MinuteCount {
                    minute: minute_of(now),
                    source_id: "a".into(),
                    count: 3
                },
            ]
        );
        // A window of one minute holds the current minute only.
        assert_eq!(per_minute(&store, now, 1).unwrap().len(), 1);
    }

    #[test]
    fn minutes_past_a_day_are_not_counted_and_are_pruned_once_per_minute() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let start = 2_000_000 * MIN;
        let mut batch = BatchCounts::default();
        batch.add(start, "a");
        batch.add(start + MIN, "a");
        commit(&store, &batch.into_writes(&store, start).unwrap());
        // Too old to count at all.
        let mut late = BatchCounts::default();
        late.add(start - KEEP_MINUTES * MIN, "a");
        assert!(late.into_writes(&store, start).unwrap().is_empty());

        let mut pruner = Pruner::default();
        assert!(pruner.due(&store, start + MIN).unwrap().is_empty());
        pruner.committed();
        // The same minute again: nothing read.
        assert!(pruner.due(&store, start + MIN + 1).unwrap().is_empty());
        let later = start + KEEP_MINUTES * MIN;
        let writes = pruner.due(&store, later).unwrap();
        assert_eq!(writes.len(), 1);
        commit(&store, &writes);
        pruner.committed();
        let left = store.state_scan(NS_EVENTS_PER_MINUTE, PART).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            parse_key(&left[0].0),
            Some((minute_of(start) + 1, "a".into()))
        );
        // A failed batch's pruning is done again.
        let much_later = later + 5 * MIN;
        assert_eq!(pruner.due(&store, much_later).unwrap().len(), 1);
        pruner.failed();
        assert_eq!(pruner.due(&store, much_later).unwrap().len(), 1);
    }
}
