//! The event log on `log(log_offset, payload)` and de-duplication on `dedup`: appends under
//! the log's advisory lock, so offsets stay dense across processes, committed synchronously.

use super::pool::prepare;
use super::schema::TABLES;
use super::{LOG_LOCK, PostgresStore, from_i64, last_wins, pg, to_i64};
use crate::{AppendItem, Appended, EventLog, Offset, Result};
use std::collections::HashSet;

impl EventLog for PostgresStore {
    fn append(&self, items: &[AppendItem], now_ms: i64, window_ms: i64) -> Result<Vec<Appended>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let min_ms = now_ms.saturating_sub(window_ms);
        let setup =
            format!("set local synchronous_commit = on; select pg_advisory_xact_lock({LOG_LOCK});");
        let outcomes = self.in_tx(&setup, |tx, cache| {
            let s = prepare(tx, cache, "select coalesce(max(log_offset), 0) from log")?;
            let mut next: i64 = tx.query_one(&s, &[]).map_err(pg)?.get(0);
            let keys: Vec<&[u8]> = items.iter().map(|i| i.dedup_key.as_slice()).collect();
            let s = prepare(
                tx,
                cache,
                "select dedup_key, received_ms from dedup where dedup_key = any($1)",
            )?;
            // Looked up by key alone, so that the planner always uses the primary key.
            let recent: HashSet<Vec<u8>> = tx
                .query(&s, &[&keys])
                .map_err(pg)?
                .iter()
                .filter(|r| r.get::<_, i64>(1) >= min_ms)
                .map(|r| r.get(0))
                .collect();
            let mut seen: HashSet<&[u8]> = HashSet::with_capacity(items.len());
            let mut outcomes = Vec::with_capacity(items.len());
            let (mut offsets, mut payloads, mut stored_keys) = (vec![], vec![], vec![]);
            for item in items {
                if !seen.insert(&item.dedup_key) || recent.contains(&item.dedup_key) {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                next += 1;
                offsets.push(next);
                payloads.push(item.payload.as_slice());
                stored_keys.push(item.dedup_key.as_slice());
                outcomes.push(Appended::Stored(from_i64(next)?));
            }
            if !offsets.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into log (log_offset, payload)
                     select * from unnest($1::bigint[], $2::bytea[])",
                )?;
                tx.execute(&s, &[&offsets, &payloads]).map_err(pg)?;
                let s = prepare(
                    tx,
                    cache,
                    "insert into dedup (dedup_key, received_ms)
                     select k, $2 from unnest($1::bytea[]) as k
                     on conflict (dedup_key) do update set received_ms = excluded.received_ms",
                )?;
                tx.execute(&s, &[&stored_keys, &now_ms]).map_err(pg)?;
            }
            Ok(outcomes)
        })?;
        self.maybe_purge(now_ms, min_ms);
        Ok(outcomes)
    }

    fn read_after(&self, after: Offset, max: usize) -> Result<Vec<(Offset, Vec<u8>)>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.rows(
            "select log_offset, payload from log where log_offset > $1
             order by log_offset limit $2",
            &[&after, &max],
        )?
        .iter()
        .map(|r| Ok((from_i64(r.get(0))?, r.get(1))))
        .collect()
    }

    fn get(&self, offset: Offset) -> Result<Option<Vec<u8>>> {
        let Ok(offset) = i64::try_from(offset) else {
            return Ok(None);
        };
        let rows = self.rows("select payload from log where log_offset = $1", &[&offset])?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn last_offset(&self) -> Result<Offset> {
        let rows = self.rows("select coalesce(max(log_offset), 0) from log", &[])?;
        from_i64(rows[0].get(0))
    }

    fn consumer_offset(&self, consumer: &str) -> Result<Offset> {
        let rows = self.rows(
            "select log_offset from consumers where consumer = $1",
            &[&consumer],
        )?;
        match rows.first() {
            Some(r) => from_i64(r.get(0)),
            None => Ok(0),
        }
    }

    /// Replaces the payloads of stored events; offsets that were never stored are ignored.
    fn rewrite(&self, entries: &[(Offset, Vec<u8>)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = last_wins(entries, |(o, _)| *o);
        let offsets = entries
            .iter()
            .map(|(o, _)| to_i64(*o))
            .collect::<Result<Vec<_>>>()?;
        let payloads: Vec<&[u8]> = entries.iter().map(|(_, p)| p.as_slice()).collect();
        self.in_tx("set local synchronous_commit = on", |tx, cache| {
            let s = prepare(
                tx,
                cache,
                "update log set payload = r.payload
                 from unnest($1::bigint[], $2::bytea[]) as r(log_offset, payload)
                 where log.log_offset = r.log_offset",
            )?;
            tx.execute(&s, &[&offsets, &payloads]).map_err(pg)?;
            Ok(())
        })
    }

    /// A transaction that takes a transaction id commits a WAL record: it fails when the
    /// server cannot write (a full disk, a lost connection).
    fn probe(&self) -> Result<()> {
        self.in_tx("set local synchronous_commit = on", |tx, _| {
            tx.batch_execute("select txid_current()").map_err(pg)
        })
    }

    /// Vacuums every table, so that the dead tuples rewrites and deletions left are
    /// reclaimed rather than waiting for autovacuum. (The server's WAL and its archives are
    /// outside what a client can purge: see docs/privacy.md.)
    fn purge(&self) -> Result<()> {
        let mut conn = self.pool.get()?;
        for table in TABLES {
            conn.client
                .batch_execute(&format!("vacuum {table}"))
                .map_err(pg)?;
        }
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        let tables: Vec<&str> = TABLES.to_vec();
        self.rows(
            "select coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint
             from unnest($1::text[]) as t",
            &[&tables],
        )
        .ok()
        .and_then(|rows| rows.first().map(|r| r.get::<_, i64>(0)))
        .map_or(0, |b| b.max(0) as u64)
    }
}
