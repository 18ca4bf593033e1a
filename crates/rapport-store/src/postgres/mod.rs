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
//!
//! One module per part: `schema` (migrations and tables), `pool` (connections and prepared
//! statements), `log`, `index`, `state` and `registry` (the four traits' implementations);
//! this module opens the store and holds what they share.

use crate::{Offset, Result, StoreError};
use postgres::types::ToSql;
use postgres::{Client, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

mod index;
mod log;
mod pool;
mod registry;
mod schema;
mod state;
#[cfg(test)]
mod tests;

use pool::{Conn, Pool, prepare};
use schema::MIGRATIONS;

/// Advisory lock key held by each append transaction ("rapport log").
const LOG_LOCK: i64 = 0x7261_7070_6f72_7401;
/// Advisory lock key held while the schema is checked and migrated.
const MIGRATION_LOCK: i64 = 0x7261_7070_6f72_7402;
/// How often (in the callers' clock) appends look for expired de-duplication keys.
const PURGE_EVERY_MS: i64 = 60_000;

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
            pool: Pool::new(
                config,
                options.max_connections.max(1),
                options.acquire_timeout,
            ),
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
