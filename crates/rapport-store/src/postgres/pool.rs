//! A small blocking pool of server connections, each with its prepared statements, so the
//! synchronous store traits can be called from several threads.

use super::{DEFAULT_CONNECT_TIMEOUT, pg};
use crate::{Result, StoreError};
use postgres::{Client, GenericClient, NoTls, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One server connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: HashMap<String, Statement>,
}

/// Prepares `sql` once per connection.
pub(super) fn prepare(
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
pub(super) struct Pool {
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

pub(super) struct Pooled<'a> {
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
    pub(super) fn new(config: postgres::Config, max: usize, acquire_timeout: Duration) -> Pool {
        Pool {
            config,
            max,
            acquire_timeout,
            inner: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is a list and a counter, consistent after every statement: a panic
        // elsewhere while holding the lock cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self) -> Result<Pooled<'_>> {
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

    pub(super) fn connect(&self) -> Result<Conn> {
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
