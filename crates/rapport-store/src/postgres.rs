//! The PostgreSQL backend: the same four traits as the embedded store, on tables that a
//! sharding extension such as Citus can distribute, for deployments that outgrow one machine
//! or already run PostgreSQL.
//!
//! The store talks to the server with the synchronous `postgres` client through a small pool
//! of connections (the traits are synchronous and called from several threads). The schema is
//! created and migrated when the store opens, under an advisory lock, and each applied
//! migration is recorded in `schema_migrations`, so opening is idempotent and safe from
//! several processes at once.
//!
//! Tables, with the column a Citus deployment distributes each by:
//! - `log(log_offset, payload)`: the event log, by `log_offset`;
//! - `dedup(dedup_key, received_ms)`: de-duplication keys, by `dedup_key`; expired keys are
//!   deleted in bounded batches found through the `received_ms` index;
//! - `events_by_time`, `events_by_user`, `events_by_anon`: the query index, by `log_offset`,
//!   `user_id` and `anonymous_id` respectively (each is queried by that column);
//! - `state(profile_id, namespace, key, value)`: processor state, by `profile_id`;
//! - `consumers`, `sources`, `api_keys`: small tables, Citus reference tables.
//!
//! Durability mirrors the embedded store. An append, a rewrite, a registry write and a
//! profile deletion are committed with `synchronous_commit = on`: durable when the call
//! returns. Index and state commits use `synchronous_commit = off`: a crash may lose the last
//! few of them, but each is atomic with its consumer's offset, so derived data may lag the log
//! after a crash and is rebuilt by replaying it, never ahead of it.
//!
//! Appends take a transaction-level advisory lock, so two processes appending to the same
//! database serialise and offsets stay dense. See `docs/postgres.md`.

use crate::{
    ApiKey, AppendItem, Appended, Cursor, EventIndex, EventLog, EventPage, EventQuery, IndexEntry,
    KeyKind, Offset, Registry, Result, Source, SourceSettings, StateStore, StateWrite, StoreError,
};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Advisory lock key held by each append transaction ("rapport log").
const LOG_LOCK: i64 = 0x7261_7070_6f72_7401;
/// Advisory lock key held while the schema is checked and migrated.
const MIGRATION_LOCK: i64 = 0x7261_7070_6f72_7402;
/// How often (in the callers' clock) appends look for expired de-duplication keys.
const PURGE_EVERY_MS: i64 = 60_000;

/// Schema migrations, applied in order; a released migration is never edited, only followed.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
    create table log (
        log_offset bigint primary key,
        payload bytea not null
    );
    create table dedup (
        dedup_key bytea primary key,
        received_ms bigint not null
    );
    create index dedup_received_ms on dedup (received_ms);
    create table consumers (
        consumer text primary key,
        log_offset bigint not null
    );
    create table events_by_time (
        ts bigint not null,
        log_offset bigint not null,
        kind text not null,
        name text,
        primary key (ts, log_offset)
    );
    create table events_by_user (
        user_id text not null,
        ts bigint not null,
        log_offset bigint not null,
        anonymous_id text,
        kind text not null,
        name text,
        primary key (user_id, ts, log_offset)
    );
    create table events_by_anon (
        anonymous_id text not null,
        ts bigint not null,
        log_offset bigint not null,
        kind text not null,
        name text,
        primary key (anonymous_id, ts, log_offset)
    );
    create table state (
        profile_id text not null,
        namespace text not null,
        key bytea not null,
        value bytea not null,
        primary key (profile_id, namespace, key)
    );
    create table sources (
        id text primary key,
        name text not null,
        created_at_ms bigint not null
    );
    create table api_keys (
        id text primary key,
        kind text not null,
        source_id text,
        name text not null,
        secret_hash text not null,
        secret_prefix text not null,
        created_at_ms bigint not null,
        revoked_at_ms bigint
    );
    create index api_keys_secret_hash on api_keys (secret_hash);
    ",
    ),
    (
        2,
        // A source's settings as JSON text; null (every row written before) reads as the
        // default settings: no restriction.
        "alter table sources add column settings text;",
    ),
];

/// The tables [`EventLog::disk_bytes`] sums.
const TABLES: &[&str] = &[
    "log",
    "dedup",
    "consumers",
    "events_by_time",
    "events_by_user",
    "events_by_anon",
    "state",
    "sources",
    "api_keys",
];

/// Settings beyond the connection URL.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections open at once; callers beyond it wait for one to come back.
    pub max_connections: usize,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// Most expired de-duplication keys one purge deletes.
    pub purge_batch: i64,
    /// How long opening one connection (per host tried) may take, TCP connection and
    /// start-up both, unless the URL sets `connect_timeout`.
    pub connect_timeout: Duration,
}

/// The default [`PostgresOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            purge_batch: 10_000,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    purge_batch: i64,
    /// The `now_ms` of the last purge of expired de-duplication keys.
    last_purge_ms: AtomicI64,
    /// The last purge hit its batch limit (or failed): purge again on the next append.
    purge_pending: AtomicBool,
}

fn pg(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        // Data exceptions (22: a NUL in text, a value out of range), integrity constraints
        // (23) and program limits (54: an index row too large) fail again on every retry.
        Some(db) if matches!(&db.code().code()[..2], "22" | "23" | "54") => StoreError::Rejected(
            format!("PostgreSQL error {}: {}", db.code().code(), db.message()),
        ),
        Some(db) => StoreError::Engine(format!(
            "PostgreSQL error {}: {}",
            db.code().code(),
            db.message()
        )),
        None => {
            let mut msg = if e.is_closed() {
                format!("PostgreSQL connection lost: {e}")
            } else {
                format!("PostgreSQL: {e}")
            };
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                msg.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Engine(msg)
        }
    }
}

fn to_i64(offset: Offset) -> Result<i64> {
    i64::try_from(offset)
        .map_err(|_| StoreError::Engine(format!("offset {offset} is beyond PostgreSQL's bigint")))
}

fn from_i64(v: i64) -> Result<Offset> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative offset {v}")))
}

/// Keeps the last of several items with the same key, in their original order.
fn last_wins<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut kept: Vec<&T> = items.iter().rev().filter(|i| seen.insert(key(i))).collect();
    kept.reverse();
    kept
}

/// One server connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Prepares `sql` once per connection.
fn prepare(
    client: &mut impl GenericClient,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql).map_err(pg)?;
    cache.insert(sql.to_owned(), s.clone());
    Ok(s)
}

/// A small blocking pool: idle connections are reused, at most `max` are open, and a
/// connection that the server closed is dropped rather than returned.
struct Pool {
    config: postgres::Config,
    max: usize,
    acquire_timeout: Duration,
    inner: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let mut state = self.pool.lock();
        // A panic may have left a transaction open on the connection: never reuse it then.
        if conn.client.is_closed() || std::thread::panicking() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is a list and a counter, consistent after every statement: a panic
        // elsewhere while holding the lock cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self) -> Result<Pooled<'_>> {
        let deadline = std::time::Instant::now() + self.acquire_timeout;
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Engine(format!(
                    "no PostgreSQL connection became free within {:?} ({} in use)",
                    self.acquire_timeout, self.max
                )));
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn connect(&self) -> Result<Conn> {
        // The client's `connect_timeout` bounds only the TCP connection: a server (or a
        // proxy) that accepts and never answers the start-up would hang the caller for
        // ever. So the whole opening runs on its own thread, waited for at most the
        // timeout per host; a connection that comes later is dropped with the thread.
        let config = self.config.clone();
        let hosts = self.config.get_hosts().len().max(1) as u32;
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
            * hosts;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("rapport-pg-connect".into())
            .spawn(move || {
                let _ = tx.send(config.connect(NoTls));
            })
            .map_err(StoreError::Io)?;
        let connected = rx.recv_timeout(limit).map_err(|_| {
            StoreError::Engine(format!(
                "cannot connect: PostgreSQL did not answer within {} s",
                limit.as_secs_f64()
            ))
        })?;
        let mut client = connected.map_err(|e| match pg(e) {
            StoreError::Engine(m) => StoreError::Engine(format!("cannot connect: {m}")),
            other => other,
        })?;
        // Durable commits unless a write says otherwise, whatever the server's default.
        // Statements are prepared once per connection, often while tables are still small:
        // a cached generic plan chosen then (a sequential scan of `dedup`, say) would stay
        // until the next ANALYZE, so every execution is planned for the data it meets.
        client
            .batch_execute("set synchronous_commit = on; set plan_cache_mode = force_custom_plan")
            .map_err(pg)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a libpq-style URL or key=value string, e.g.
    /// `postgres://rapport@db.internal:5432/rapport`), creating or migrating the schema.
    /// Connections are unencrypted (TLS is not supported yet).
    pub fn open(url: &str) -> Result<PostgresStore> {
        PostgresStore::open_with(url, PostgresOptions::default())
    }

    pub fn open_with(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Engine(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("rapport");
        }
        let store = PostgresStore {
            pool: Pool {
                config,
                max: options.max_connections.max(1),
                acquire_timeout: options.acquire_timeout,
                inner: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                returned: Condvar::new(),
            },
            purge_batch: options.purge_batch.max(1),
            last_purge_ms: AtomicI64::new(i64::MIN),
            purge_pending: AtomicBool::new(true),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where `url` points, for logs and error messages: hosts, ports, database, user and
    /// connect timeout — never the password. `None` when the URL does not parse.
    pub fn describe_target(url: &str, options: &PostgresOptions) -> Option<String> {
        let config: postgres::Config = url.parse().ok()?;
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.connect_timeout);
        Some(format!(
            "{hosts}, database {}, user {} (connect timeout {} s)",
            config.get_dbname().unwrap_or("(the user's)"),
            config.get_user().unwrap_or("(the OS user)"),
            timeout.as_secs_f64()
        ))
    }

    /// The schema version this build expects.
    pub fn schema_version() -> i32 {
        MIGRATIONS.last().map_or(0, |(v, _)| *v)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.get()?;
        let mut tx = conn.client.transaction().map_err(pg)?;
        tx.batch_execute(&format!(
            "select pg_advisory_xact_lock({MIGRATION_LOCK});
             create table if not exists schema_migrations (
                 version integer primary key,
                 applied_at timestamptz not null default now()
             );"
        ))
        .map_err(pg)?;
        let current: i32 = tx
            .query_one(
                "select coalesce(max(version), 0) from schema_migrations",
                &[],
            )
            .map_err(pg)?
            .get(0);
        let latest = PostgresStore::schema_version();
        if current > latest {
            return Err(StoreError::Engine(format!(
                "the database schema is at version {current}, newer than this Rapport's \
                 {latest}: upgrade Rapport"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).map_err(pg)?;
            tx.execute(
                "insert into schema_migrations (version) values ($1)",
                &[version],
            )
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)
    }

    /// The schema versions recorded as applied, oldest first.
    pub fn applied_migrations(&self) -> Result<Vec<i32>> {
        let mut conn = self.pool.get()?;
        let rows = conn
            .client
            .query(
                "select version from schema_migrations order by version",
                &[],
            )
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Deletes up to `max_rows` de-duplication keys received before `before_ms`, returning how
    /// many went. Appends call this every minute (of their clock) by themselves; the keys it
    /// deletes are already ignored by appends whose window starts after `before_ms`.
    pub fn purge_expired_dedup(&self, before_ms: i64, max_rows: i64) -> Result<u64> {
        let mut conn = self.pool.get()?;
        let Conn { client, statements } = &mut *conn;
        let s = prepare(
            client,
            statements,
            "delete from dedup where received_ms < $1 and dedup_key in (
                 select dedup_key from dedup where received_ms < $1
                 order by received_ms limit $2)",
        )?;
        client.execute(&s, &[&before_ms, &max_rows]).map_err(pg)
    }

    fn maybe_purge(&self, now_ms: i64, min_ms: i64) {
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        let due = last == i64::MIN || now_ms.abs_diff(last) >= PURGE_EVERY_MS as u64;
        if !due && !self.purge_pending.load(Ordering::Relaxed) {
            return;
        }
        self.last_purge_ms.store(now_ms, Ordering::Relaxed);
        // A failed purge is retried on the next append; the append itself has committed.
        let pending = match self.purge_expired_dedup(min_ms, self.purge_batch) {
            Ok(n) => n >= self.purge_batch as u64,
            Err(_) => true,
        };
        self.purge_pending.store(pending, Ordering::Relaxed);
    }

    /// Runs `setup` and `f` in one transaction on a pooled connection and commits.
    fn in_tx<T>(
        &self,
        setup: &str,
        f: impl FnOnce(&mut Client, &mut HashMap<String, Statement>) -> Result<T>,
    ) -> Result<T> {
        let begin = format!("begin; {setup}");
        let mut retried = false;
        let mut conn = loop {
            let mut conn = self.pool.get()?;
            match conn.client.batch_execute(&begin) {
                Ok(()) => break conn,
                // A pooled connection the server has closed (a restart, an administrator's
                // pg_terminate_backend) fails here, before anything was written: retry once
                // on a new one.
                Err(_) if !retried && conn.client.is_closed() => retried = true,
                Err(e) => {
                    let _ = conn.client.batch_execute("rollback");
                    return Err(pg(e));
                }
            }
        };
        let Conn { client, statements } = &mut *conn;
        match f(client, statements) {
            Ok(out) => {
                // A failed COMMIT ends the transaction too.
                client.batch_execute("commit").map_err(pg)?;
                Ok(out)
            }
            Err(e) => {
                let _ = client.batch_execute("rollback");
                Err(e)
            }
        }
    }

    /// Runs one statement outside an explicit transaction and returns its rows. Callers pass
    /// only reads and idempotent writes: a statement that fails because the connection was
    /// closed is retried once on a new connection.
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>> {
        let mut retried = false;
        loop {
            let mut conn = self.pool.get()?;
            let Conn { client, statements } = &mut *conn;
            let result =
                prepare(client, statements, sql).and_then(|s| client.query(&s, params).map_err(pg));
            match result {
                Err(_) if !retried && client.is_closed() => retried = true,
                other => return other,
            }
        }
    }

    fn commit_consumer(
        tx: &mut Client,
        cache: &mut HashMap<String, Statement>,
        consumer: &str,
        offset: Offset,
    ) -> Result<()> {
        let s = prepare(
            tx,
            cache,
            "insert into consumers (consumer, log_offset) values ($1, $2)
             on conflict (consumer) do update set log_offset = excluded.log_offset",
        )?;
        tx.execute(&s, &[&consumer, &to_i64(offset)?]).map_err(pg)?;
        Ok(())
    }
}

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

impl EventIndex for PostgresStore {
    fn index(&self, entries: &[IndexEntry], consumer: &str, upto: Offset) -> Result<()> {
        struct Rows<'a> {
            ids: Vec<&'a str>,
            ts: Vec<i64>,
            offsets: Vec<i64>,
            anon: Vec<Option<&'a str>>,
            kinds: Vec<&'a str>,
            names: Vec<Option<&'a str>>,
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
            };
            for &e in entries {
                r.ids.push(id(e));
                r.ts.push(e.timestamp_ms);
                r.offsets.push(to_i64(e.offset)?);
                r.anon.push(e.anonymous_id.as_deref());
                r.kinds.push(e.kind.as_str());
                r.names.push(e.name.as_deref());
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
                    "insert into events_by_time (ts, log_offset, kind, name)
                     select * from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
                     on conflict (ts, log_offset)
                     do update set kind = excluded.kind, name = excluded.name",
                )?;
                let r = &by_time;
                tx.execute(&s, &[&r.ts, &r.offsets, &r.kinds, &r.names])
                    .map_err(pg)?;
            }
            if !by_user.ts.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into events_by_user
                         (user_id, ts, log_offset, anonymous_id, kind, name)
                     select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                          $5::text[], $6::text[])
                     on conflict (user_id, ts, log_offset)
                     do update set anonymous_id = excluded.anonymous_id,
                                   kind = excluded.kind, name = excluded.name",
                )?;
                let r = &by_user;
                tx.execute(
                    &s,
                    &[&r.ids, &r.ts, &r.offsets, &r.anon, &r.kinds, &r.names],
                )
                .map_err(pg)?;
            }
            if !by_anon.ts.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into events_by_anon (anonymous_id, ts, log_offset, kind, name)
                     select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                          $5::text[])
                     on conflict (anonymous_id, ts, log_offset)
                     do update set kind = excluded.kind, name = excluded.name",
                )?;
                let r = &by_anon;
                tx.execute(&s, &[&r.ids, &r.ts, &r.offsets, &r.kinds, &r.names])
                    .map_err(pg)?;
            }
            PostgresStore::commit_consumer(tx, cache, consumer, upto)
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

impl StateStore for PostgresStore {
    fn state_get(&self, namespace: &str, profile: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let rows = self.rows(
            "select value from state where profile_id = $1 and namespace = $2 and key = $3",
            &[&profile, &namespace, &key],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn state_scan(&self, namespace: &str, profile: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let rows = self.rows(
            "select key, value from state where profile_id = $1 and namespace = $2
             order by key",
            &[&profile, &namespace],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn state_scan_range(
        &self,
        namespace: &str,
        profile: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let empty: &[u8] = &[];
        let rows = self.rows(
            "select key, value from state where profile_id = $1 and namespace = $2
             and ($3::boolean is false or key > $4) order by key limit $5",
            &[
                &profile,
                &namespace,
                &after.is_some(),
                &after.unwrap_or(empty),
                &limit,
            ],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn state_commit(&self, writes: &[StateWrite], consumer: Option<(&str, Offset)>) -> Result<()> {
        if writes.is_empty() && consumer.is_none() {
            return Ok(());
        }
        let writes = last_wins(writes, |w| (&w.profile, &w.namespace, &w.key));
        let (mut put_p, mut put_n, mut put_k, mut put_v) = (vec![], vec![], vec![], vec![]);
        let (mut del_p, mut del_n, mut del_k) = (vec![], vec![], vec![]);
        for w in writes {
            match &w.value {
                Some(v) => {
                    put_p.push(w.profile.as_str());
                    put_n.push(w.namespace.as_str());
                    put_k.push(w.key.as_slice());
                    put_v.push(v.as_slice());
                }
                None => {
                    del_p.push(w.profile.as_str());
                    del_n.push(w.namespace.as_str());
                    del_k.push(w.key.as_slice());
                }
            }
        }
        self.in_tx("set local synchronous_commit = off", |tx, cache| {
            if !put_p.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "insert into state (profile_id, namespace, key, value)
                     select * from unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
                     on conflict (profile_id, namespace, key)
                     do update set value = excluded.value",
                )?;
                tx.execute(&s, &[&put_p, &put_n, &put_k, &put_v])
                    .map_err(pg)?;
            }
            if !del_p.is_empty() {
                let s = prepare(
                    tx,
                    cache,
                    "delete from state s
                     using unnest($1::text[], $2::text[], $3::bytea[]) as d(p, n, k)
                     where s.profile_id = d.p and s.namespace = d.n and s.key = d.k",
                )?;
                tx.execute(&s, &[&del_p, &del_n, &del_k]).map_err(pg)?;
            }
            if let Some((name, offset)) = consumer {
                PostgresStore::commit_consumer(tx, cache, name, offset)?;
            }
            Ok(())
        })
    }

    fn delete_profile(&self, profile: &str) -> Result<()> {
        self.in_tx("set local synchronous_commit = on", |tx, cache| {
            let s = prepare(tx, cache, "delete from state where profile_id = $1")?;
            tx.execute(&s, &[&profile]).map_err(pg)?;
            Ok(())
        })
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Write => "write",
        KeyKind::Admin => "admin",
    }
}

fn api_key(r: &postgres::Row) -> Result<ApiKey> {
    let kind: String = r.get(1);
    let kind = match kind.as_str() {
        "write" => KeyKind::Write,
        "admin" => KeyKind::Admin,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown API key kind {other:?}"
            )));
        }
    };
    Ok(ApiKey {
        id: r.get(0),
        kind,
        source_id: r.get(2),
        name: r.get(3),
        secret_hash: r.get(4),
        secret_prefix: r.get(5),
        created_at_ms: r.get(6),
        revoked_at_ms: r.get(7),
    })
}

const KEY_COLUMNS: &str =
    "id, kind, source_id, name, secret_hash, secret_prefix, created_at_ms, revoked_at_ms";

impl Registry for PostgresStore {
    fn put_source(&self, source: &Source) -> Result<()> {
        self.rows(
            "insert into sources (id, name, created_at_ms, settings) values ($1, $2, $3, $4)
             on conflict (id) do update
             set name = excluded.name, created_at_ms = excluded.created_at_ms,
                 settings = excluded.settings",
            &[
                &source.id,
                &source.name,
                &source.created_at_ms,
                &serde_json::to_string(&source.settings).expect("settings serialise"),
            ],
        )?;
        Ok(())
    }

    fn sources(&self) -> Result<Vec<Source>> {
        let rows = self.rows(
            r#"select id, name, created_at_ms, settings from sources order by id collate "C""#,
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let settings = match r.get::<_, Option<String>>(3) {
                    None => SourceSettings::default(),
                    Some(text) => serde_json::from_str(&text).map_err(|e| {
                        StoreError::Engine(format!(
                            "the settings of source {}: {e}",
                            r.get::<_, String>(0)
                        ))
                    })?,
                };
                Ok(Source {
                    id: r.get(0),
                    name: r.get(1),
                    created_at_ms: r.get(2),
                    settings,
                })
            })
            .collect()
    }

    fn put_key(&self, key: &ApiKey) -> Result<()> {
        self.rows(
            &format!(
                "insert into api_keys ({KEY_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8)
                 on conflict (id) do update set
                 kind = excluded.kind, source_id = excluded.source_id, name = excluded.name,
                 secret_hash = excluded.secret_hash, secret_prefix = excluded.secret_prefix,
                 created_at_ms = excluded.created_at_ms, revoked_at_ms = excluded.revoked_at_ms"
            ),
            &[
                &key.id,
                &kind_name(key.kind),
                &key.source_id,
                &key.name,
                &key.secret_hash,
                &key.secret_prefix,
                &key.created_at_ms,
                &key.revoked_at_ms,
            ],
        )?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.rows(
            &format!(r#"select {KEY_COLUMNS} from api_keys order by id collate "C""#),
            &[],
        )?
        .iter()
        .map(api_key)
        .collect()
    }

    fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.rows(
            &format!(
                r#"select {KEY_COLUMNS} from api_keys where secret_hash = $1
                   order by id collate "C" limit 1"#
            ),
            &[&secret_hash],
        )?
        .first()
        .map(api_key)
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPostgres;

    fn fresh() -> (String, PostgresStore) {
        let url = TestPostgres::shared().create_database();
        let store = PostgresStore::open(&url).unwrap();
        (url, store)
    }

    fn item(key: &str, payload: &str) -> AppendItem {
        AppendItem {
            dedup_key: key.as_bytes().to_vec(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn conformance() {
        let (_, store) = fresh();
        crate::conformance::run_all(&store);
    }

    #[test]
    fn reopen_keeps_offsets_and_dedup() {
        let url = TestPostgres::shared().create_database();
        crate::conformance::reopen(|| PostgresStore::open(&url).unwrap());
    }

    #[test]
    fn migrations_are_idempotent_on_reopen() {
        let (url, store) = fresh();
        store.append(&[item("m:1", "x")], 1_000, 10).unwrap();
        let applied = store.applied_migrations().unwrap();
        assert_eq!(
            applied,
            (1..=PostgresStore::schema_version()).collect::<Vec<_>>()
        );
        drop(store);
        // Opening again, and from several threads at once, applies nothing twice.
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| PostgresStore::open(&url).unwrap());
            }
        });
        let store = PostgresStore::open(&url).unwrap();
        assert_eq!(store.applied_migrations().unwrap(), applied);
        assert_eq!(store.last_offset().unwrap(), 1);
        assert_eq!(store.get(1).unwrap().as_deref(), Some(b"x".as_slice()));
    }

    #[test]
    fn sources_written_before_settings_read_as_unrestricted() {
        let (url, store) = fresh();
        let mut client = postgres::Client::connect(&url, NoTls).unwrap();
        // A row as the first schema wrote it: no settings.
        client
            .execute(
                "insert into sources (id, name, created_at_ms) values ('src_old', 'old', 1)",
                &[],
            )
            .unwrap();
        let sources = store.sources().unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].settings, SourceSettings::default());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (url, store) = fresh();
        let mut client = postgres::Client::connect(&url, NoTls).unwrap();
        client
            .execute(
                "insert into schema_migrations (version) values ($1)",
                &[&(PostgresStore::schema_version() + 1)],
            )
            .unwrap();
        drop(store);
        let err = PostgresStore::open(&url)
            .err()
            .expect("a newer schema is refused");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn two_stores_appending_concurrently_keep_offsets_dense() {
        let (url, first) = fresh();
        let second = PostgresStore::open(&url).unwrap();
        const BATCHES: usize = 40;
        const PER_BATCH: usize = 5;
        let outcomes: Vec<Vec<Appended>> = std::thread::scope(|s| {
            let handles: Vec<_> = [&first, &second]
                .into_iter()
                .enumerate()
                .map(|(w, store)| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for b in 0..BATCHES {
                            let items: Vec<_> = (0..PER_BATCH)
                                .map(|i| item(&format!("{w}:{b}:{i}"), &format!("{w}:{b}:{i}")))
                                .collect();
                            out.extend(store.append(&items, 1_000, 60_000).unwrap());
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut offsets: Vec<u64> = outcomes
            .iter()
            .flatten()
            .map(|o| match o {
                Appended::Stored(o) => *o,
                Appended::Duplicate => panic!("distinct keys are never duplicates"),
            })
            .collect();
        offsets.sort_unstable();
        let total = (2 * BATCHES * PER_BATCH) as u64;
        assert_eq!(offsets, (1..=total).collect::<Vec<_>>());
        assert_eq!(first.last_offset().unwrap(), total);
        // Each writer's own offsets grow, and each batch got consecutive offsets.
        for out in &outcomes {
            for batch in out.chunks(PER_BATCH) {
                let os: Vec<u64> = batch
                    .iter()
                    .map(|o| match o {
                        Appended::Stored(o) => *o,
                        Appended::Duplicate => unreachable!(),
                    })
                    .collect();
                assert!(os.windows(2).all(|w| w[1] == w[0] + 1), "{os:?}");
            }
        }
        let log = second.read_after(0, 10_000).unwrap();
        assert_eq!(log.len() as u64, total);
        // The same key from both stores at once is stored once.
        let both: Vec<Vec<Appended>> = std::thread::scope(|s| {
            let a = s.spawn(|| first.append(&[item("same", "a")], 2_000, 60_000).unwrap());
            let b = s.spawn(|| second.append(&[item("same", "b")], 2_000, 60_000).unwrap());
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let stored = both
            .iter()
            .flatten()
            .filter(|o| matches!(o, Appended::Stored(_)))
            .count();
        assert_eq!(stored, 1, "{both:?}");
    }

    fn dedup_rows(url: &str) -> i64 {
        let mut client = postgres::Client::connect(url, NoTls).unwrap();
        client
            .query_one("select count(*) from dedup", &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn dedup_keys_older_than_the_window_are_forgotten_and_purged() {
        let (url, store) = fresh();
        let window = 10_000;
        assert_eq!(
            store.append(&[item("old", "1")], 1_000, window).unwrap(),
            vec![Appended::Stored(1)]
        );
        assert_eq!(
            store
                .append(&[item("old", "2")], 1_000 + window, window)
                .unwrap(),
            vec![Appended::Duplicate]
        );
        // A purge deletes only keys received before the window's start.
        assert_eq!(store.purge_expired_dedup(1_000, 100).unwrap(), 0);
        assert_eq!(dedup_rows(&url), 1);
        // A minute later the append's own purge removes the expired key, and the key is
        // accepted again.
        let later = 1_000 + 2 * PURGE_EVERY_MS;
        assert_eq!(
            store.append(&[item("new", "3")], later, window).unwrap(),
            vec![Appended::Stored(2)]
        );
        assert_eq!(dedup_rows(&url), 1, "the expired key was purged");
        assert_eq!(
            store.append(&[item("old", "4")], later, window).unwrap(),
            vec![Appended::Stored(3)]
        );
        assert_eq!(
            store
                .append(&[item("old", "5")], later + 1, window)
                .unwrap(),
            vec![Appended::Duplicate]
        );
        // Purges are bounded.
        let many: Vec<_> = (0..25).map(|i| item(&format!("b{i}"), "x")).collect();
        store.append(&many, later, window).unwrap();
        let removed = store.purge_expired_dedup(later + 1, 10).unwrap();
        assert_eq!(removed, 10);
        assert_eq!(dedup_rows(&url), 27 - 10);
    }

    #[test]
    fn state_and_index_writes_repeated_in_one_call_keep_the_last() {
        let (_, store) = fresh();
        let w = |v: Option<&str>| StateWrite {
            namespace: "n".into(),
            profile: "p".into(),
            key: b"k".to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        };
        store
            .state_commit(&[w(Some("1")), w(Some("2"))], None)
            .unwrap();
        assert_eq!(
            store.state_get("n", "p", b"k").unwrap().as_deref(),
            Some(b"2".as_slice())
        );
        store.state_commit(&[w(Some("3")), w(None)], None).unwrap();
        assert_eq!(store.state_get("n", "p", b"k").unwrap(), None);

        store.append(&[item("i", "{}")], 1, 1).unwrap();
        let e = |kind: &str| IndexEntry {
            offset: 1,
            timestamp_ms: 5,
            user_id: Some("u".into()),
            anonymous_id: Some("a".into()),
            kind: kind.into(),
            name: None,
        };
        store.index(&[e("track"), e("page")], "ix", 1).unwrap();
        // Re-indexing (after a crash, say) is harmless.
        store.index(&[e("page")], "ix", 1).unwrap();
        let page = store
            .query(&EventQuery {
                user_id: Some("u".into()),
                kind: Some("page".into()),
                name: Some(String::new()),
                limit: 10,
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(page.events, vec![(1, b"{}".to_vec())]);
        assert!(page.next.is_none());
    }

    #[test]
    fn the_described_target_never_shows_the_password() {
        let o = PostgresOptions::default();
        let d = PostgresStore::describe_target("postgres://ann:s3cret@db.internal:6543/crm", &o)
            .unwrap();
        assert_eq!(
            d,
            "db.internal:6543, database crm, user ann (connect timeout 10 s)"
        );
        let d = PostgresStore::describe_target(
            "host=a,b port=1,2 user=u password=s3cret dbname=x connect_timeout=3",
            &o,
        )
        .unwrap();
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.starts_with("a:1,b:2") && d.contains("timeout 3 s"), "{d}");
        assert!(PostgresStore::describe_target("not a url ::", &o).is_none());
    }

    #[test]
    fn the_connect_timeout_bounds_an_unanswered_connection() {
        // A listener that accepts and never answers: without a timeout, opening would hang.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let err = PostgresStore::open_with(
            &format!("postgres://nobody@127.0.0.1:{port}/none"),
            PostgresOptions {
                connect_timeout: Duration::from_millis(500),
                ..PostgresOptions::default()
            },
        )
        .err()
        .expect("nothing answers");
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(
            err.to_string().contains("did not answer within 0.5 s"),
            "{err}"
        );
        drop(silent);
    }

    #[test]
    fn database_errors_are_errors_not_panics() {
        let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
            .err()
            .expect("nothing listens on port 1");
        assert!(matches!(err, StoreError::Engine(_)), "{err}");
        assert!(PostgresStore::open("not a url ::").is_err());
        let (url, store) = fresh();
        let mut client = postgres::Client::connect(&url, NoTls).unwrap();
        client.batch_execute("drop table state").unwrap();
        assert!(matches!(
            store.state_get("n", "p", b"k"),
            Err(StoreError::Engine(_))
        ));
        // Text columns cannot hold NUL; the error is reported, and the pool still works.
        assert!(
            store
                .put_source(&Source {
                    id: "a\0b".into(),
                    name: "x".into(),
                    created_at_ms: 0,
                    settings: Default::default(),
                })
                .is_err()
        );
        assert_eq!(store.last_offset().unwrap(), 0);
    }

    #[test]
    fn connections_closed_by_the_server_are_replaced() {
        let (url, store) = fresh();
        store.append(&[item("c:1", "x")], 1, 1).unwrap();
        assert_eq!(store.last_offset().unwrap(), 1);
        let mut admin = postgres::Client::connect(&url, NoTls).unwrap();
        let kill = "select count(pg_terminate_backend(pid)) from pg_stat_activity
                    where application_name = 'rapport' and datname = current_database()";
        let killed: i64 = admin.query_one(kill, &[]).unwrap().get(0);
        assert!(killed >= 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(store.last_offset().unwrap(), 1);
        admin.query_one(kill, &[]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            store.append(&[item("c:2", "y")], 1, 1).unwrap(),
            vec![Appended::Stored(2)]
        );
    }

    #[test]
    fn opens_over_the_unix_socket() {
        let pg = TestPostgres::shared();
        let url = pg.create_database();
        let db = url.rsplit('/').next().unwrap();
        let socket_url = format!(
            "postgresql:///{db}?user=postgres&host={}&port={}",
            pg.dir.display(),
            pg.port
        );
        let store = PostgresStore::open(&socket_url).unwrap();
        store.append(&[item("s", "x")], 1, 1).unwrap();
        assert_eq!(PostgresStore::open(&url).unwrap().last_offset().unwrap(), 1);
    }

    #[test]
    #[ignore = "a throughput figure, not a check"]
    fn append_throughput() {
        let (_, store) = fresh();
        let start = std::time::Instant::now();
        let batches = 200;
        for b in 0..batches {
            let items: Vec<_> = (0..100)
                .map(|i| item(&format!("{b}:{i}:{}", "m".repeat(30)), &"x".repeat(200)))
                .collect();
            store.append(&items, 1_000, 86_400_000).unwrap();
        }
        let el = start.elapsed();
        eprintln!("append: {} events in {el:?}", batches * 100);
        let start = std::time::Instant::now();
        for b in 0..batches {
            let entries: Vec<_> = (0..100u64)
                .map(|i| IndexEntry {
                    offset: b * 100 + i + 1,
                    timestamp_ms: (i * 7 % 13) as i64,
                    user_id: Some(format!("u{}", i % 10)),
                    anonymous_id: Some(format!("a{i}")),
                    kind: "track".into(),
                    name: Some("Viewed".into()),
                })
                .collect();
            store.index(&entries, "ix", b * 100 + 100).unwrap();
        }
        eprintln!("index: {} entries in {:?}", batches * 100, start.elapsed());
        let start = std::time::Instant::now();
        for p in 0..1000 {
            let writes: Vec<_> = (0..10)
                .map(|k| StateWrite {
                    namespace: "traits".into(),
                    profile: format!("p{p}"),
                    key: vec![k],
                    value: Some(vec![1; 50]),
                })
                .collect();
            store.state_commit(&writes, Some(("proc", p))).unwrap();
        }
        eprintln!(
            "state: 10,000 writes in 1,000 commits in {:?}",
            start.elapsed()
        );
    }
}
