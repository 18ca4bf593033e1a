//! The embedded backend: two `fjall` keyspaces (a pure-Rust LSM tree) in the data directory.
//!
//! The log keyspace holds only what ingest writes and fsyncs before acknowledging (the log
//! and the de-duplication keys); everything derived from the log lives in the state keyspace.
//! Each keyspace has its own journal, so consumers never wait for the ingest fsync and the
//! fsync never flushes their writes. Derived data may lag the log after a crash, never lead
//! it: a consumer's offset is committed with its writes, in the same keyspace.
//!
//! Layout, one partition each:
//! - `log`: offset (u64 BE) → stored event JSON;
//! - `dedup_<day>`: dedup key → receive time, one partition per UTC day, so that forgetting
//!   keys older than the window is dropping whole partitions rather than scanning;
//! - `idx_time`, `idx_user`, `idx_anon`: `[len-prefixed id] ts offset` → kind, source and
//!   name (see [`index_value`]);
//! - `state`: `len-prefixed profile, namespace, key` → value, profile first so that one
//!   profile's data is one prefix;
//! - `meta`: consumer offsets, sources, API keys.

use crate::{
    ApiKey, AppendItem, Appended, Cursor, EventIndex, EventLog, EventPage, EventQuery, IndexEntry,
    Offset, Registry, Result, Source, StateStore, StateWrite, StoreError,
};
use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

const DAY_MS: i64 = 86_400_000;
/// Most index entries one query examines before it returns a partial page with a cursor.
const MAX_SCAN: usize = 200_000;

pub struct EmbeddedStore {
    /// The open keyspaces; `None` while they are being (or could not be) reopened.
    open: RwLock<Option<Open>>,
    /// When the keyspaces were last reopened after a failed write, to try at most once per
    /// [`REOPEN_INTERVAL`] while the disk stays full.
    last_reopen: Mutex<Option<std::time::Instant>>,
    path: PathBuf,
    _lock: File,
}

/// How often a store whose writes fail tries to reopen its keyspaces.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The keyspaces and partitions of one opening of the data directory.
///
/// A write that fails in fjall's journal (a full disk) poisons the keyspace: every later
/// write fails, even once space is free. The only way back is to close it and open it again,
/// which replays the journal up to the last durable write — what was acknowledged. So the
/// store keeps its opening behind a lock and replaces it after a failed write.
struct Open {
    log_ks: Keyspace,
    state_ks: Keyspace,
    log: PartitionHandle,
    /// Written by [`EventLog::probe`] (the log keyspace's own health check) and by a purge's
    /// move of the garbage-collection watermark; never read.
    probe: PartitionHandle,
    meta: PartitionHandle,
    idx_time: PartitionHandle,
    idx_user: PartitionHandle,
    idx_anon: PartitionHandle,
    state: PartitionHandle,
    dedup: Mutex<BTreeMap<i64, PartitionHandle>>,
    last_offset: AtomicU64,
    /// Serialises appends: offsets and de-duplication assume one writer.
    append_lock: Mutex<()>,
    /// Holds its own handles to the state keyspace; stopped (and joined) on drop, before the
    /// keyspaces close.
    _flush_watch: FlushWatch,
    path: PathBuf,
}

/// Nudges the state keyspace's flusher when memtables pile up.
///
/// Under a sustained stream of large batches (the processor's profile and audience state),
/// fjall's flusher can leave sealed memtables queued with no wake-up pending; writers then
/// halt on the full write buffer (or journal) forever. Rotating a memtable queues a flush
/// and wakes the flusher, which then takes every queued memtable. This thread does that
/// whenever the write buffer or the journal grows past a threshold.
struct FlushWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FlushWatch {
    fn start(keyspace: Keyspace, partitions: Vec<PartitionHandle>, buffer_limit: u64) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("flush-watch".into())
            .spawn(move || {
                let mut ticks = 0u32;
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    ticks = ticks.wrapping_add(1);
                    // Every ten seconds, so that background compactions drop what was
                    // overwritten or deleted instead of resurrecting it.
                    // (The second partition is `meta`, where the watermark's writes go.)
                    if ticks.is_multiple_of(40)
                        && let Some(p) = partitions.get(1)
                    {
                        // A failure here fails the next write, which reports it.
                        let _ = advance_gc_watermark(p);
                    }
                    let pressed = keyspace.write_buffer_size() > buffer_limit / 2
                        || keyspace.journal_count() > 8;
                    if !pressed {
                        continue;
                    }
                    for p in &partitions {
                        // A rotation that fails here fails the next write, which reports it.
                        let _ = p.rotate_memtable();
                    }
                }
            })
            .expect("spawn the flush watch");
        FlushWatch {
            stop,
            handle: Some(handle),
        }
    }
}

/// How many snapshots fjall closes between two moves of its garbage-collection watermark
/// (its `SnapshotTracker`'s safety gap).
const GC_WATERMARK_GAP: u64 = 50;

/// Moves the keyspace's garbage-collection watermark past every write made so far.
///
/// fjall only drops a key's older versions in a compaction when they are below that
/// watermark, and it moves the watermark only as snapshots close (once per
/// [`GC_WATERMARK_GAP`] of them), to just below the oldest snapshot still counted —
/// which includes snapshots closed within the last [`GC_WATERMARK_GAP`] sequence numbers.
/// Rapport takes no snapshots, so the watermark would stay at zero: compactions would
/// keep every version, and a compaction into the last level, which drops tombstones
/// whatever the watermark, would bring back the value a deletion hid (a version at or
/// above the watermark is not dropped with its tombstone). So: first write
/// [`GC_WATERMARK_GAP`] + 10 tiny versions of one key of `partition` (each a sequence
/// number of its own), so that no earlier snapshot is still counted, then open and close
/// that many snapshots: the watermark lands above every write made before the call.
fn advance_gc_watermark(partition: &PartitionHandle) -> fjall::Result<()> {
    for _ in 0..GC_WATERMARK_GAP + 10 {
        partition.insert("\0gc-watermark", [])?;
    }
    for _ in 0..GC_WATERMARK_GAP {
        drop(partition.snapshot());
    }
    Ok(())
}

impl Drop for FlushWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => {
                StoreError::Unavailable("a write to the journal failed (is the disk full?)".into())
            }
            e => StoreError::Engine(e.to_string()),
        }
    }
}

impl From<fjall::LsmError> for StoreError {
    fn from(e: fjall::LsmError) -> Self {
        StoreError::Engine(e.to_string())
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Fails with [`StoreError::Locked`] if
    /// another process has it open.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir)?;
        let lock = File::create(dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.display().to_string()));
        }
        Ok(EmbeddedStore {
            open: RwLock::new(Some(Open::new(dir)?)),
            last_reopen: Mutex::new(None),
            path: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on the open keyspaces.
    fn read<R>(&self, f: impl FnOnce(&Open) -> Result<R>) -> Result<R> {
        let result = match self.open.read().expect("store lock").as_ref() {
            Some(open) => f(open),
            None => Err(StoreError::Unavailable(
                "the store is being reopened after a failed write".into(),
            )),
        };
        if result.is_err() && self.open.read().expect("store lock").is_none() {
            self.reopen();
        }
        result
    }

    /// Runs a write; when it fails for a reason other than the data, reopens the keyspaces
    /// (at most once per [`REOPEN_INTERVAL`]) so that the next write can succeed once the
    /// cause (a full disk) is gone.
    fn write<R>(&self, f: impl FnOnce(&Open) -> Result<R>) -> Result<R> {
        let result = self.read(f);
        if let Err(StoreError::Unavailable(_) | StoreError::Io(_) | StoreError::Engine(_)) = &result
        {
            self.reopen();
        }
        result
    }

    fn reopen(&self) {
        {
            let mut last = self.last_reopen.lock().expect("reopen lock");
            if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        // Waits for every operation on the old opening; dropping it closes its keyspaces
        // (fjall joins their background threads) before the directory is opened again.
        let mut slot = self.open.write().expect("store lock");
        drop(slot.take());
        match Open::new(&self.path) {
            Ok(open) => {
                tracing::warn!(dir = %self.path.display(), "embedded store reopened after a failed write");
                *slot = Some(open);
            }
            Err(e) => {
                tracing::error!(error = %e, dir = %self.path.display(), "embedded store could not be reopened; retrying");
            }
        }
    }
}

impl Open {
    fn new(dir: &Path) -> Result<Open> {
        let log_ks = Config::new(dir.join("log"))
            .max_write_buffer_size(192 * 1024 * 1024)
            .open()?;
        // Processor batches can write hundreds of megabytes a minute (profiles, audience
        // state, value-model scores). The journal may only be trimmed once every partition
        // has flushed past it, so flush early (small write buffer) and leave the journal room
        // to absorb a burst instead of halting writers.
        const STATE_BUFFER: u64 = 64 * 1024 * 1024;
        let state_ks = Config::new(dir.join("state"))
            .max_write_buffer_size(STATE_BUFFER)
            .max_journaling_size(2 * 1024 * 1024 * 1024)
            .flush_workers(4)
            .open()?;
        let opts = PartitionCreateOptions::default;
        let log = log_ks.open_partition("log", opts().max_memtable_size(64 * 1024 * 1024))?;
        let probe = log_ks.open_partition("probe", opts())?;
        let meta = state_ks.open_partition("meta", opts())?;
        // Index keys arrive in random order; small memtables keep each skiplist insert
        // within cache.
        let small = || opts().max_memtable_size(4 * 1024 * 1024);
        let idx_time = state_ks.open_partition("idx_time", small())?;
        let idx_user = state_ks.open_partition("idx_user", small())?;
        let idx_anon = state_ks.open_partition("idx_anon", small())?;
        let state = state_ks.open_partition("state", opts())?;
        let mut dedup = BTreeMap::new();
        for name in log_ks.list_partitions() {
            if let Some(day) = name
                .strip_prefix("dedup_")
                .and_then(|d| d.parse::<i64>().ok())
            {
                dedup.insert(day, log_ks.open_partition(&name, opts())?);
            }
        }
        let last = match log.last_key_value()? {
            Some((k, _)) => decode_u64(&k)?,
            None => 0,
        };
        let flush_watch = FlushWatch::start(
            state_ks.clone(),
            vec![
                state.clone(),
                meta.clone(),
                idx_time.clone(),
                idx_user.clone(),
                idx_anon.clone(),
            ],
            STATE_BUFFER,
        );
        Ok(Open {
            log_ks,
            state_ks,
            log,
            probe,
            meta,
            idx_time,
            idx_user,
            idx_anon,
            state,
            dedup: Mutex::new(dedup),
            last_offset: AtomicU64::new(last),
            append_lock: Mutex::new(()),
            _flush_watch: flush_watch,
            path: dir.to_path_buf(),
        })
    }

    /// The de-duplication partitions that may hold keys received at or after `min_ms`,
    /// creating today's and dropping those wholly older than the window.
    fn dedup_buckets(
        &self,
        now_ms: i64,
        min_ms: i64,
    ) -> Result<(PartitionHandle, Vec<PartitionHandle>)> {
        let mut map = self.dedup.lock().expect("dedup map lock");
        let today = now_ms.div_euclid(DAY_MS);
        if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(today) {
            slot.insert(
                self.log_ks
                    .open_partition(&format!("dedup_{today}"), PartitionCreateOptions::default())?,
            );
        }
        let oldest = min_ms.div_euclid(DAY_MS);
        let expired: Vec<i64> = map.range(..oldest).map(|(d, _)| *d).collect();
        for day in expired {
            if let Some(p) = map.remove(&day) {
                self.log_ks.delete_partition(p)?;
            }
        }
        let current = map[&today].clone();
        let live = map.range(oldest..).rev().map(|(_, p)| p.clone()).collect();
        Ok((current, live))
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn meta_scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        self.meta
            .prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    fn meta_put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut batch = self.state_ks.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, key, bytes);
        batch.commit()?;
        Ok(())
    }
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Timestamps sort as unsigned big-endian bytes once the sign bit is flipped.
fn ts_bytes(ts_ms: i64) -> [u8; 8] {
    ((ts_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn ts_from_bytes(b: &[u8]) -> Result<i64> {
    Ok((decode_u64(b)? ^ (1 << 63)) as i64)
}

/// A length-prefixed component, so that no id can be a prefix of another's key.
fn push_component(key: &mut Vec<u8>, part: &[u8]) {
    key.extend_from_slice(&(part.len() as u32).to_be_bytes());
    key.extend_from_slice(part);
}

fn index_key(id: Option<&str>, ts_ms: i64, offset: Offset) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.map_or(0, |i| i.len() + 4) + 16);
    if let Some(id) = id {
        push_component(&mut key, id.as_bytes());
    }
    key.extend_from_slice(&ts_bytes(ts_ms));
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

/// Marks an index value of format 2, which records the event's source. Format 1
/// (`[kind length][kind][name]`, written before sources were indexed) is still read: its
/// kind is shorter than 128 bytes, so the flag is never set in it, and its source is read
/// from the event itself when a query asks for one.
const WITH_SOURCE: u8 = 0x80;

/// `[WITH_SOURCE | kind length][kind][source length][source][name]`; an empty source is
/// an event without one. An entry whose kind or source does not fit the one-byte lengths
/// (no event the tracking API accepts) is written in format 1.
fn index_value(entry: &IndexEntry) -> Vec<u8> {
    let kind = entry.kind.as_bytes();
    let name = entry.name.as_deref().unwrap_or_default().as_bytes();
    let source = entry.source_id.as_deref().unwrap_or_default().as_bytes();
    let mut v = Vec::with_capacity(2 + kind.len() + source.len() + name.len());
    if kind.len() < usize::from(WITH_SOURCE) && source.len() <= usize::from(u8::MAX) {
        v.push(WITH_SOURCE | kind.len() as u8);
        v.extend_from_slice(kind);
        v.push(source.len() as u8);
        v.extend_from_slice(source);
    } else {
        let kind = &kind[..kind.len().min(usize::from(WITH_SOURCE) - 1)];
        v.push(kind.len() as u8);
        v.extend_from_slice(kind);
    }
    v.extend_from_slice(name);
    v
}

/// An index value read back: `source` is `None` when the value does not record it
/// (format 1), `Some(b"")` for an event without a source.
struct IndexValue<'a> {
    kind: &'a [u8],
    source: Option<&'a [u8]>,
    name: &'a [u8],
}

fn split_index_value(v: &[u8]) -> IndexValue<'_> {
    let empty = IndexValue {
        kind: &[],
        source: None,
        name: &[],
    };
    let Some(&first) = v.first() else {
        return empty;
    };
    if first & WITH_SOURCE == 0 {
        let n = first as usize;
        if v.len() < 1 + n {
            return empty;
        }
        return IndexValue {
            kind: &v[1..1 + n],
            source: None,
            name: &v[1 + n..],
        };
    }
    let n = (first & !WITH_SOURCE) as usize;
    let Some(&s) = v.get(1 + n) else {
        return empty;
    };
    let s = s as usize;
    if v.len() < 2 + n + s {
        return empty;
    }
    IndexValue {
        kind: &v[1..1 + n],
        source: Some(&v[2 + n..2 + n + s]),
        name: &v[2 + n + s..],
    }
}

/// The smallest key greater than every key starting with `key` (which is never all 0xff:
/// it ends in a length-prefixed component).
fn increment(key: &mut Vec<u8>) {
    while let Some(last) = key.pop() {
        if last < 0xff {
            key.push(last + 1);
            return;
        }
    }
}

fn state_prefix(profile: &str, namespace: Option<&str>) -> Vec<u8> {
    let mut key = Vec::new();
    push_component(&mut key, profile.as_bytes());
    if let Some(ns) = namespace {
        push_component(&mut key, ns.as_bytes());
    }
    key
}

fn consumer_key(consumer: &str) -> String {
    format!("consumer/{consumer}")
}

impl EventLog for Open {
    fn append(&self, items: &[AppendItem], now_ms: i64, window_ms: i64) -> Result<Vec<Appended>> {
        let _writer = self.append_lock.lock().expect("append lock");
        let min_ms = now_ms.saturating_sub(window_ms);
        let (today, live) = self.dedup_buckets(now_ms, min_ms)?;
        let mut batch = self.log_ks.batch().durability(Some(PersistMode::SyncAll));
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(items.len());
        let mut next = self.last_offset.load(Ordering::Acquire);
        let mut outcomes = Vec::with_capacity(items.len());
        let now_bytes = now_ms.to_be_bytes();
        'items: for item in items {
            if !seen.insert(&item.dedup_key) {
                outcomes.push(Appended::Duplicate);
                continue;
            }
            for bucket in &live {
                if let Some(v) = bucket.get(&item.dedup_key)?
                    && decode_u64(&v)? as i64 >= min_ms
                {
                    outcomes.push(Appended::Duplicate);
                    continue 'items;
                }
            }
            next += 1;
            batch.insert(&self.log, next.to_be_bytes(), item.payload.as_slice());
            batch.insert(&today, item.dedup_key.as_slice(), now_bytes);
            outcomes.push(Appended::Stored(next));
        }
        if !batch.is_empty() {
            batch.commit()?;
        }
        self.last_offset.store(next, Ordering::Release);
        Ok(outcomes)
    }

    fn read_after(&self, after: Offset, max: usize) -> Result<Vec<(Offset, Vec<u8>)>> {
        let start = after.saturating_add(1).to_be_bytes();
        self.log
            .range(start..)
            .take(max)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((decode_u64(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn get(&self, offset: Offset) -> Result<Option<Vec<u8>>> {
        Ok(self.log.get(offset.to_be_bytes())?.map(|v| v.to_vec()))
    }

    fn last_offset(&self) -> Result<Offset> {
        Ok(self.last_offset.load(Ordering::Acquire))
    }

    fn consumer_offset(&self, consumer: &str) -> Result<Offset> {
        match self.meta_get(&consumer_key(consumer))? {
            Some(v) => decode_u64(&v),
            None => Ok(0),
        }
    }

    fn rewrite(&self, entries: &[(Offset, Vec<u8>)]) -> Result<()> {
        let mut batch = self.log_ks.batch().durability(Some(PersistMode::SyncAll));
        for (offset, payload) in entries {
            // Only stored events are rewritten: offsets stay dense.
            if self.log.contains_key(offset.to_be_bytes())? {
                batch.insert(&self.log, offset.to_be_bytes(), payload.as_slice());
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// Seals and flushes every memtable (so that journals holding old versions are deleted),
    /// then compacts every partition fully, which drops shadowed versions and tombstones.
    fn purge(&self) -> Result<()> {
        let mut partitions = vec![
            &self.log,
            &self.probe,
            &self.meta,
            &self.idx_time,
            &self.idx_user,
            &self.idx_anon,
            &self.state,
        ];
        let dedup = self.dedup.lock().expect("dedup lock").clone();
        partitions.extend(dedup.values());
        for p in &partitions {
            p.rotate_memtable_and_wait()?;
        }
        advance_gc_watermark(&self.probe)?;
        advance_gc_watermark(&self.meta)?;
        for p in &partitions {
            p.major_compact()?;
        }
        self.log_ks.persist(PersistMode::SyncAll)?;
        self.state_ks.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Bytes the data directory occupies on disk: the blocks allocated to its files
    /// (`st_blocks` × 512), not their lengths, which miss preallocated journals and count
    /// sparse holes that take no space.
    fn disk_bytes(&self) -> u64 {
        allocated_bytes(&self.path)
    }

    /// A durable write to each keyspace's journal.
    fn probe(&self) -> Result<()> {
        let mut batch = self.log_ks.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.probe, "probe", []);
        batch.commit()?;
        let mut batch = self.state_ks.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, "health/probe", []);
        batch.commit()?;
        Ok(())
    }
}

/// The space allocated on disk to the files under `dir`, recursively; what cannot be read
/// (a file removed by compaction meanwhile) counts as nothing.
fn allocated_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += allocated_bytes(&entry.path());
        } else {
            total += allocated_size(&meta);
        }
    }
    total
}

#[cfg(unix)]
fn allocated_size(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated_size(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

impl EventIndex for Open {
    fn index(&self, entries: &[IndexEntry], consumer: &str, upto: Offset) -> Result<()> {
        let mut batch = self.state_ks.batch();
        for e in entries {
            let value = index_value(e);
            batch.insert(
                &self.idx_time,
                index_key(None, e.timestamp_ms, e.offset),
                value.clone(),
            );
            if let Some(user) = &e.user_id {
                batch.insert(
                    &self.idx_user,
                    index_key(Some(user), e.timestamp_ms, e.offset),
                    value.clone(),
                );
            }
            if let Some(anon) = &e.anonymous_id {
                batch.insert(
                    &self.idx_anon,
                    index_key(Some(anon), e.timestamp_ms, e.offset),
                    value,
                );
            }
        }
        batch.insert(&self.meta, consumer_key(consumer), upto.to_be_bytes());
        batch.commit()?;
        Ok(())
    }

    fn unindex(&self, entries: &[IndexEntry]) -> Result<()> {
        let mut batch = self.state_ks.batch().durability(Some(PersistMode::SyncAll));
        for e in entries {
            batch.remove(&self.idx_time, index_key(None, e.timestamp_ms, e.offset));
            if let Some(user) = &e.user_id {
                batch.remove(
                    &self.idx_user,
                    index_key(Some(user), e.timestamp_ms, e.offset),
                );
            }
            if let Some(anon) = &e.anonymous_id {
                batch.remove(
                    &self.idx_anon,
                    index_key(Some(anon), e.timestamp_ms, e.offset),
                );
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage> {
        let (partition, prefix, post_filter_anon) = match (&q.user_id, &q.anonymous_id) {
            (Some(user), anon) => (&self.idx_user, Some(user.as_str()), anon.as_deref()),
            (None, Some(anon)) => (&self.idx_anon, Some(anon.as_str()), None),
            (None, None) => (&self.idx_time, None, None),
        };
        let lower = index_key(prefix, q.since_ms.unwrap_or(i64::MIN), 0);
        let mut upper = match (q.until_ms, q.cursor) {
            (Some(until), Some(c)) if until <= c.timestamp_ms => index_key(prefix, until, 0),
            (_, Some(c)) => index_key(prefix, c.timestamp_ms, c.offset),
            (Some(until), None) => index_key(prefix, until, 0),
            (None, None) => {
                let mut k = index_key(prefix, i64::MAX, u64::MAX);
                k.push(0);
                k
            }
        };
        if upper < lower {
            upper.clone_from(&lower);
        }
        let id_len = prefix.map_or(0, |p| p.len() + 4);
        let limit = q.limit.max(1);
        let mut page = EventPage::default();
        let mut scanned = 0usize;
        let mut last_pushed = None;
        for kv in partition.range(lower..upper).rev() {
            let (k, v) = kv?;
            let ts = ts_from_bytes(&k[id_len..id_len + 8])?;
            let offset = decode_u64(&k[id_len + 8..id_len + 16])?;
            let pos = Cursor {
                timestamp_ms: ts,
                offset,
            };
            scanned += 1;
            if page.events.len() == limit {
                page.next = last_pushed;
                return Ok(page);
            }
            let value = split_index_value(&v);
            let kind_ok = q
                .kind
                .as_ref()
                .is_none_or(|want| want.as_bytes() == value.kind);
            let name_ok = q
                .name
                .as_ref()
                .is_none_or(|want| want.as_bytes() == value.name);
            // `None`: decided from the event itself (a format-1 entry).
            let source_ok = match (&q.source_id, value.source) {
                (None, _) => Some(true),
                (Some(want), Some(source)) => Some(want.as_bytes() == source),
                (Some(_), None) => None,
            };
            if kind_ok && name_ok && source_ok != Some(false) {
                let Some(payload) = self.get(offset)? else {
                    continue;
                };
                let want_source = q.source_id.as_deref().filter(|_| source_ok.is_none());
                if (post_filter_anon.is_some() || want_source.is_some())
                    && !PayloadIds::matches(&payload, post_filter_anon, want_source)
                {
                    continue;
                }
                page.events.push((offset, payload));
                last_pushed = Some(pos);
            }
            if scanned >= MAX_SCAN {
                page.next = Some(pos);
                return Ok(page);
            }
        }
        Ok(page)
    }
}

/// The ids a query may filter on after the index, read from a stored event without
/// decoding the rest of it.
#[derive(serde::Deserialize)]
struct PayloadIds<'a> {
    #[serde(rename = "anonymousId", borrow)]
    anonymous_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "sourceId", borrow)]
    source_id: Option<std::borrow::Cow<'a, str>>,
}

impl PayloadIds<'_> {
    /// Whether the stored event has the anonymous id and the source asked for (`None`:
    /// either may be anything); one decoding of it for both.
    fn matches(payload: &[u8], anonymous_id: Option<&str>, source_id: Option<&str>) -> bool {
        let Ok(ids) = serde_json::from_slice::<PayloadIds>(payload) else {
            return false;
        };
        anonymous_id.is_none_or(|want| ids.anonymous_id.as_deref() == Some(want))
            && source_id.is_none_or(|want| ids.source_id.as_deref() == Some(want))
    }
}

impl StateStore for Open {
    fn state_get(&self, namespace: &str, profile: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut k = state_prefix(profile, Some(namespace));
        k.extend_from_slice(key);
        Ok(self.state.get(k)?.map(|v| v.to_vec()))
    }

    fn state_scan(&self, namespace: &str, profile: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = state_prefix(profile, Some(namespace));
        self.state
            .prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[prefix.len()..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn state_scan_range(
        &self,
        namespace: &str,
        profile: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = state_prefix(profile, Some(namespace));
        let mut upper = prefix.clone();
        // Components are length-prefixed, so the prefix's successor bounds the partition.
        increment(&mut upper);
        let lower = match after {
            Some(a) => {
                let mut k = prefix.clone();
                k.extend_from_slice(a);
                std::ops::Bound::Excluded(k)
            }
            None => std::ops::Bound::Included(prefix.clone()),
        };
        self.state
            .range::<Vec<u8>, _>((lower, std::ops::Bound::Excluded(upper)))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[prefix.len()..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn state_commit(&self, writes: &[StateWrite], consumer: Option<(&str, Offset)>) -> Result<()> {
        let mut batch = self.state_ks.batch();
        for w in writes {
            let mut k = state_prefix(&w.profile, Some(&w.namespace));
            k.extend_from_slice(&w.key);
            match &w.value {
                Some(v) => batch.insert(&self.state, k, v.as_slice()),
                None => batch.remove(&self.state, k),
            }
        }
        if let Some((name, offset)) = consumer {
            batch.insert(&self.meta, consumer_key(name), offset.to_be_bytes());
        }
        batch.commit()?;
        Ok(())
    }

    fn delete_profile(&self, profile: &str) -> Result<()> {
        let prefix = state_prefix(profile, None);
        let mut batch = self.state_ks.batch().durability(Some(PersistMode::SyncAll));
        for kv in self.state.prefix(&prefix) {
            let (k, _) = kv?;
            batch.remove(&self.state, k);
        }
        batch.commit()?;
        Ok(())
    }
}

impl Registry for Open {
    fn put_source(&self, source: &Source) -> Result<()> {
        self.meta_put_json(&format!("source/{}", source.id), source)
    }

    fn sources(&self) -> Result<Vec<Source>> {
        self.meta_scan("source/")
    }

    fn put_key(&self, key: &ApiKey) -> Result<()> {
        let bytes = serde_json::to_vec(key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut batch = self.state_ks.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&self.meta, format!("key/{}", key.id), bytes);
        batch.insert(
            &self.meta,
            format!("keyhash/{}", key.secret_hash),
            key.id.as_bytes(),
        );
        batch.commit()?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.meta_scan("key/")
    }

    fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let Some(id) = self.meta_get(&format!("keyhash/{secret_hash}"))? else {
            return Ok(None);
        };
        let id = String::from_utf8(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self.meta_get(&format!("key/{id}"))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }
}

/// Every operation goes to the current opening: reads through [`EmbeddedStore::read`],
/// writes through [`EmbeddedStore::write`], which reopens after a failed write.
impl EventLog for EmbeddedStore {
    fn append(&self, items: &[AppendItem], now_ms: i64, window_ms: i64) -> Result<Vec<Appended>> {
        self.write(|o| o.append(items, now_ms, window_ms))
    }
    fn read_after(&self, after: Offset, max: usize) -> Result<Vec<(Offset, Vec<u8>)>> {
        self.read(|o| o.read_after(after, max))
    }
    fn get(&self, offset: Offset) -> Result<Option<Vec<u8>>> {
        self.read(|o| o.get(offset))
    }
    fn last_offset(&self) -> Result<Offset> {
        self.read(|o| o.last_offset())
    }
    fn consumer_offset(&self, consumer: &str) -> Result<Offset> {
        self.read(|o| o.consumer_offset(consumer))
    }
    fn rewrite(&self, entries: &[(Offset, Vec<u8>)]) -> Result<()> {
        self.write(|o| o.rewrite(entries))
    }
    fn disk_bytes(&self) -> u64 {
        self.read(|o| Ok(o.disk_bytes())).unwrap_or(0)
    }
    fn purge(&self) -> Result<()> {
        self.write(|o| o.purge())
    }
    fn probe(&self) -> Result<()> {
        self.write(|o| o.probe())
    }
}

impl EventIndex for EmbeddedStore {
    fn index(&self, entries: &[IndexEntry], consumer: &str, upto: Offset) -> Result<()> {
        self.write(|o| o.index(entries, consumer, upto))
    }
    fn query(&self, query: &EventQuery) -> Result<EventPage> {
        self.read(|o| o.query(query))
    }
    fn unindex(&self, entries: &[IndexEntry]) -> Result<()> {
        self.write(|o| o.unindex(entries))
    }
}

impl StateStore for EmbeddedStore {
    /// Reads are memtable, block-cache or page-cache lookups of a few microseconds.
    fn reads_in_place(&self) -> bool {
        true
    }
    fn state_get(&self, namespace: &str, profile: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(|o| o.state_get(namespace, profile, key))
    }
    fn state_scan(&self, namespace: &str, profile: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.read(|o| o.state_scan(namespace, profile))
    }
    fn state_scan_range(
        &self,
        namespace: &str,
        profile: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.read(|o| o.state_scan_range(namespace, profile, after, limit))
    }
    fn state_commit(&self, writes: &[StateWrite], consumer: Option<(&str, Offset)>) -> Result<()> {
        self.write(|o| o.state_commit(writes, consumer))
    }
    fn delete_profile(&self, profile: &str) -> Result<()> {
        self.write(|o| o.delete_profile(profile))
    }
}

impl Registry for EmbeddedStore {
    fn put_source(&self, source: &Source) -> Result<()> {
        self.write(|o| o.put_source(source))
    }
    fn sources(&self) -> Result<Vec<Source>> {
        self.read(|o| o.sources())
    }
    fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.write(|o| o.put_key(key))
    }
    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|o| o.keys())
    }
    fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.read(|o| o.key_by_hash(secret_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        crate::conformance::run_all(&store);
    }

    /// Entries indexed before the index recorded sources (format 1: kind and name only)
    /// still answer a source filter, from the event itself, beside entries of format 2.
    #[test]
    fn a_source_filter_reads_the_source_of_older_entries_from_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let items: Vec<AppendItem> = ["web", "ios", "web"]
            .iter()
            .enumerate()
            .map(|(i, source)| AppendItem {
                dedup_key: format!("k{i}").into_bytes(),
                payload: format!(r#"{{"type":"track","sourceId":"{source}"}}"#).into_bytes(),
            })
            .collect();
        store.append(&items, 1_000, 86_400_000).unwrap();
        let format_1 = |kind: &str, name: &str| {
            let mut v = vec![kind.len() as u8];
            v.extend_from_slice(kind.as_bytes());
            v.extend_from_slice(name.as_bytes());
            v
        };
        store
            .write(|o| {
                o.idx_time
                    .insert(index_key(None, 10, 1), format_1("track", "Viewed"))?;
                o.idx_time
                    .insert(index_key(None, 20, 2), format_1("track", "Viewed"))?;
                Ok(())
            })
            .unwrap();
        let third = IndexEntry {
            offset: 3,
            timestamp_ms: 30,
            user_id: None,
            anonymous_id: None,
            kind: "track".into(),
            name: Some("Viewed".into()),
            source_id: Some("web".into()),
        };
        store.index(&[third], "indexer", 3).unwrap();
        let offsets = |source: &str, name: Option<&str>| -> Vec<u64> {
            let q = EventQuery {
                source_id: Some(source.into()),
                name: name.map(str::to_owned),
                limit: 10,
                ..EventQuery::default()
            };
            store
                .query(&q)
                .unwrap()
                .events
                .iter()
                .map(|e| e.0)
                .collect()
        };
        assert_eq!(offsets("web", None), vec![3, 1]);
        assert_eq!(offsets("ios", Some("Viewed")), vec![2]);
        assert_eq!(offsets("ios", Some("Bought")), Vec::<u64>::new());
        assert_eq!(offsets("android", None), Vec::<u64>::new());
    }

    /// Every file of `dir` that contains `needle`.
    fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    found.push(p);
                }
            }
        }
        found
    }

    /// What is rewritten, unindexed and deleted is in no file after a purge and a restart,
    /// also after the store was restarted in between (its values in older files), and
    /// what was kept still reads back.
    #[test]
    fn purge_leaves_no_copy_of_what_was_erased_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"erase-me@example.com";
        let entry = IndexEntry {
            offset: 1,
            timestamp_ms: 1_000,
            user_id: Some("erase-me@example.com".into()),
            anonymous_id: None,
            kind: "track".into(),
            name: None,
            source_id: None,
        };
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let payload = br#"{"userId":"erase-me@example.com"}"#.to_vec();
            store
                .append(
                    &[
                        AppendItem {
                            dedup_key: b"k1".to_vec(),
                            payload,
                        },
                        AppendItem {
                            dedup_key: b"k2".to_vec(),
                            payload: b"{\"keep\":1}".to_vec(),
                        },
                    ],
                    0,
                    DAY_MS,
                )
                .unwrap();
            store
                .index(std::slice::from_ref(&entry), "indexer", 1)
                .unwrap();
            let write = |value: Option<&[u8]>| StateWrite {
                namespace: "profile".into(),
                profile: "erase-me@example.com".into(),
                key: b"k".to_vec(),
                value: value.map(<[u8]>::to_vec),
            };
            store
                .state_commit(&[write(Some(b"erase-me@example.com"))], None)
                .unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.rewrite(&[(1, b"{}".to_vec())]).unwrap();
        store.unindex(&[entry]).unwrap();
        store.delete_profile("erase-me@example.com").unwrap();
        store.purge().unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get(1).unwrap().as_deref(), Some(b"{}".as_slice()));
        assert_eq!(
            store.get(2).unwrap().as_deref(),
            Some(b"{\"keep\":1}".as_slice())
        );
        drop(store);
        assert_eq!(files_containing(dir.path(), secret), Vec::<PathBuf>::new());
    }

    /// A value written in several commits, then deleted: after a purge neither the API nor
    /// any file has any of its versions, however the versions were spread over memtables,
    /// journals and restarts.
    #[test]
    fn a_value_with_many_versions_stays_deleted_after_a_purge() {
        let dir = tempfile::tempdir().unwrap();
        let write = |value: Option<String>| StateWrite {
            namespace: "profile".into(),
            profile: "p_1".into(),
            key: Vec::new(),
            value: value.map(String::into_bytes),
        };
        for round in 0..3 {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            for i in 0..3 {
                store
                    .state_commit(&[write(Some(format!("secret-v{round}{i}")))], None)
                    .unwrap();
            }
            if round == 1 {
                store.purge().unwrap();
            }
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .state_commit(&[write(Some("secret-v-last".into()))], None)
            .unwrap();
        // The flush watch moves the watermark in between (every 10 s).
        std::thread::sleep(std::time::Duration::from_secs(11));
        store.state_commit(&[write(None)], None).unwrap();
        store.purge().unwrap();
        assert_eq!(store.state_get("profile", "p_1", b"").unwrap(), None);
        // Later writes and their compactions do not bring it back either.
        for i in 0..2000 {
            store
                .state_commit(
                    &[StateWrite {
                        namespace: "other".into(),
                        profile: format!("q{i}"),
                        key: Vec::new(),
                        value: Some(vec![b'x'; 512]),
                    }],
                    None,
                )
                .unwrap();
        }
        store.purge().unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.state_get("profile", "p_1", b"").unwrap(), None);
        drop(store);
        assert_eq!(
            files_containing(dir.path(), b"secret-v"),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn reopen_keeps_offsets_and_dedup() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::reopen(|| EmbeddedStore::open(dir.path()).unwrap());
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn disk_bytes_counts_allocated_blocks_not_file_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let before = store.disk_bytes();
        // A sparse gigabyte takes (almost) no space; a file length would count all of it.
        File::create(dir.path().join("sparse"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let sparse = store.disk_bytes();
        assert!(sparse < before + (1 << 20), "{before} -> {sparse}");
        // Written bytes are allocated, in a subdirectory too.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/data"), vec![7u8; 4 << 20]).unwrap();
        let written = store.disk_bytes();
        assert!(written >= sparse + (4 << 20), "{sparse} -> {written}");
    }

    proptest::proptest! {
        #[test]
        fn timestamp_keys_sort_like_timestamps(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(a.cmp(&b), ts_bytes(a).cmp(&ts_bytes(b)));
            proptest::prop_assert_eq!(ts_from_bytes(&ts_bytes(a)).unwrap(), a);
        }
    }
}
