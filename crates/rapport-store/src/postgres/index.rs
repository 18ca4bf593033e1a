//! The query index (`events_by_time`, `events_by_user`, `events_by_anon`), committed
//! atomically with the indexer's offset.

use super::pool::prepare;
use super::{PostgresStore, from_i64, last_wins, pg, to_i64};
use crate::{Cursor, EventIndex, EventPage, EventQuery, IndexEntry, Offset, Result};
use postgres::types::ToSql;
use std::collections::HashMap;

impl EventIndex for PostgresStore {
    fn index(&self, entries: &[IndexEntry], consumer: &str, upto: Offset) -> Result<()> {
        struct Rows<'a> {
            ids: Vec<&'a str>,
            ts: Vec<i64>,
            offsets: Vec<i64>,
            anon: Vec<Option<&'a str>>,
            kinds: Vec<&'a str>,
            names: Vec<Option<&'a str>>,
            sources: Vec<Option<&'a str>>,
        }
        fn rows<'a>(
            entries: &[&'a IndexEntry],
            id: impl Fn(&'a IndexEntry) -> &'a str,
        ) -> Result<Rows<'a>> {
            let mut r = Rows {
                ids: Vec::with_capacity(entries.len()),
                ts: Vec::with_capacity(entries.len()),
                offsets: Vec::with_capacity(entries.len()),
                anon: Vec::with_capacity(entries.len()),
                kinds: Vec::with_capacity(entries.len()),
                names: Vec::with_capacity(entries.len()),
                sources: Vec::with_capacity(entries.len()),
            };
            for &e in entries {
                r.ids.push(id(e));
                r.ts.push(e.timestamp_ms);
                r.offsets.push(to_i64(e.offset)?);
                r.anon.push(e.anonymous_id.as_deref());
                r.kinds.push(e.kind.as_str());
                r.names.push(e.name.as_deref());
                r.sources.push(e.source_id.as_deref());
            }
            Ok(r)
        }
        let by_time = last_wins(entries, |e| (e.timestamp_ms, e.offset));
        let by_time = rows(&by_time, |_| "")?;
        let with_user: Vec<&IndexEntry> = entries.iter().filter(|e| e.user_id.is_some()).collect();
        let with_user = last_wins(&with_user, |e| {
            (e.user_id.as_deref(), e.timestamp_ms, e.offset)
        });
        let by_user = rows(&with_user.into_iter().copied().collect::<Vec<_>>(), |e| {
            e.user_id.as_deref().unwrap_or_default()
        })?;
        let with_anon: Vec<&IndexEntry> = entries
            .iter()
            .filter(|e| e.anonymous_id.is_some())
            .collect();
        let with_anon = last_wins(&with_anon, |e| {
            (e.anonymous_id.as_deref(), e.timestamp_ms, e.offset)
        });
        let by_anon = rows(&with_anon.into_iter().copied().collect::<Vec<_>>(), |e| {
            e.anonymous_id.as_deref().unwrap_or_default()
        })?;
        self.in_tx("set local synchronous_commit = off", |tx, cache| {
            if !by_time.ts.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into events_by_time (ts, log_offset, kind, name, source_id)
                     select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                          $5::text[])
                     on conflict (ts, log_offset)
                     do update set kind = excluded.kind, name = excluded.name,
                                   source_id = excluded.source_id",
                )?;
                let r = &by_time;
                tx.execute(&s, &[&r.ts, &r.offsets, &r.kinds, &r.names, &r.sources])
                    .map_err(pg)?;
            }
            if !by_user.ts.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into events_by_user
                         (user_id, ts, log_offset, anonymous_id, kind, name, source_id)
                     select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                          $5::text[], $6::text[], $7::text[])
                     on conflict (user_id, ts, log_offset)
                     do update set anonymous_id = excluded.anonymous_id,
                                   kind = excluded.kind, name = excluded.name,
                                   source_id = excluded.source_id",
                )?;
                let r = &by_user;
                tx.execute(
                    &s,
                    &[
                        &r.ids, &r.ts, &r.offsets, &r.anon, &r.kinds, &r.names, &r.sources,
                    ],
                )
                .map_err(pg)?;
            }
            if !by_anon.ts.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into events_by_anon
                         (anonymous_id, ts, log_offset, kind, name, source_id)
                     select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                          $5::text[], $6::text[])
                     on conflict (anonymous_id, ts, log_offset)
                     do update set kind = excluded.kind, name = excluded.name,
                                   source_id = excluded.source_id",
                )?;
                let r = &by_anon;
                tx.execute(
                    &s,
                    &[&r.ids, &r.ts, &r.offsets, &r.kinds, &r.names, &r.sources],
                )
                .map_err(pg)?;
            }
            PostgresStore::commit_consumer(tx, cache, consumer, upto)
        })
    }

    fn unindex(&self, entries: &[IndexEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ts = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(entries.len());
        let (mut user_ts, mut user_offsets, mut users) = (Vec::new(), Vec::new(), Vec::new());
        let (mut anon_ts, mut anon_offsets, mut anons) = (Vec::new(), Vec::new(), Vec::new());
        for e in entries {
            let offset = to_i64(e.offset)?;
            ts.push(e.timestamp_ms);
            offsets.push(offset);
            if let Some(u) = &e.user_id {
                users.push(u.as_str());
                user_ts.push(e.timestamp_ms);
                user_offsets.push(offset);
            }
            if let Some(a) = &e.anonymous_id {
                anons.push(a.as_str());
                anon_ts.push(e.timestamp_ms);
                anon_offsets.push(offset);
            }
        }
        self.in_tx("set local synchronous_commit = on", |tx, cache| {
            let s = prepare(
                tx,
                cache,
                "delete from events_by_time t
                 using unnest($1::bigint[], $2::bigint[]) as r(ts, log_offset)
                 where t.ts = r.ts and t.log_offset = r.log_offset",
            )?;
            tx.execute(&s, &[&ts, &offsets]).map_err(pg)?;
            let s = prepare(
                tx,
                cache,
                "delete from events_by_user t
                 using unnest($1::text[], $2::bigint[], $3::bigint[]) as r(id, ts, log_offset)
                 where t.user_id = r.id and t.ts = r.ts and t.log_offset = r.log_offset",
            )?;
            tx.execute(&s, &[&users, &user_ts, &user_offsets])
                .map_err(pg)?;
            let s = prepare(
                tx,
                cache,
                "delete from events_by_anon t
                 using unnest($1::text[], $2::bigint[], $3::bigint[]) as r(id, ts, log_offset)
                 where t.anonymous_id = r.id and t.ts = r.ts and t.log_offset = r.log_offset",
            )?;
            tx.execute(&s, &[&anons, &anon_ts, &anon_offsets])
                .map_err(pg)?;
            Ok(())
        })
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage> {
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let param = |params: &mut Vec<Box<dyn ToSql + Sync>>, v: Box<dyn ToSql + Sync>| {
            params.push(v);
            format!("${}", params.len())
        };
        let table = match (&q.user_id, &q.anonymous_id) {
            (Some(user), anon) => {
                let p = param(&mut params, Box::new(user.clone()));
                conds.push(format!("user_id = {p}"));
                if let Some(anon) = anon {
                    let p = param(&mut params, Box::new(anon.clone()));
                    conds.push(format!("anonymous_id = {p}"));
                }
                "events_by_user"
            }
            (None, Some(anon)) => {
                let p = param(&mut params, Box::new(anon.clone()));
                conds.push(format!("anonymous_id = {p}"));
                "events_by_anon"
            }
            (None, None) => "events_by_time",
        };
        if let Some(kind) = &q.kind {
            let p = param(&mut params, Box::new(kind.clone()));
            conds.push(format!("kind = {p}"));
        }
        if let Some(name) = &q.name {
            // An event without a name matches the empty name, as in the embedded store.
            let p = param(&mut params, Box::new(name.clone()));
            conds.push(format!("coalesce(name, '') = {p}"));
        }
        if let Some(source) = &q.source_id {
            let p = param(&mut params, Box::new(source.clone()));
            conds.push(format!("source_id = {p}"));
        }
        if let Some(since) = q.since_ms {
            let p = param(&mut params, Box::new(since));
            conds.push(format!("ts >= {p}"));
        }
        if let Some(until) = q.until_ms {
            let p = param(&mut params, Box::new(until));
            conds.push(format!("ts < {p}"));
        }
        if let Some(c) = q.cursor {
            let t = param(&mut params, Box::new(c.timestamp_ms));
            // No stored offset exceeds i64::MAX, so clamping keeps the comparison exact.
            let o = param(
                &mut params,
                Box::new(i64::try_from(c.offset).unwrap_or(i64::MAX)),
            );
            conds.push(format!("(ts, log_offset) < ({t}, {o})"));
        }
        let limit = q.limit.max(1);
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let lim = param(&mut params, Box::new(fetch));
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!("where {}", conds.join(" and "))
        };
        let sql = format!(
            "select ts, log_offset from {table} {where_}
             order by ts desc, log_offset desc limit {lim}"
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut hits: Vec<(i64, i64)> = self
            .rows(&sql, &refs)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut page = EventPage::default();
        if hits.len() > limit {
            hits.truncate(limit);
            let (ts, offset) = hits[limit - 1];
            page.next = Some(Cursor {
                timestamp_ms: ts,
                offset: from_i64(offset)?,
            });
        }
        if hits.is_empty() {
            return Ok(page);
        }
        let offsets: Vec<i64> = hits.iter().map(|(_, o)| *o).collect();
        let mut payloads: HashMap<i64, Vec<u8>> = self
            .rows(
                "select log_offset, payload from log where log_offset = any($1)",
                &[&offsets],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (_, offset) in hits {
            // An indexed event whose payload is gone is skipped, as in the embedded store.
            if let Some(payload) = payloads.remove(&offset) {
                page.events.push((from_i64(offset)?, payload));
            }
        }
        Ok(page)
    }
}
