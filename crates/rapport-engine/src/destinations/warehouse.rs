//! The PostgreSQL warehouse writer: where a warehouse destination's messages go instead of
//! an HTTP request. A destination's worker keeps one [`Writer`] — one connection to the
//! user's database, opened when first needed and again after an error, and the columns of
//! every table it has written, read once from `information_schema.columns` — and writes
//! each run of messages in ONE transaction: the rows of Segment's layout (the pure rules
//! are `rapport_destinations::warehouse`'s), the schema, tables and columns they need,
//! and the profile's row in `users`.
//!
//! It exists apart from `send.rs` because a database answers differently from a receiver,
//! and the difference decides what is retried. Rows are keyed by the message's idempotency
//! key and inserted with `ON CONFLICT (id) DO NOTHING`, so a run written again (a crash
//! between the database's commit and the worker's offset commit, a retry) adds nothing.
//! A lost connection, a timeout, a serialization failure or a server short of resources
//! (SQLSTATE classes 08, 40, 53, 57) is a retry; a row the database refuses for its data
//! (classes 22, 23, and 54 for a table past its columns) is a dead letter with the
//! database's message — and when a run fails for its data, its messages are written one
//! by one, so only the poison one is dead-lettered. Any other error (a privilege, a column
//! changed by hand) is retried too, after the cached columns are forgotten: an operator can
//! fix it, and the retry schedule gives up in the end.

use rapport_destinations::retry::Attempt;
use rapport_destinations::signing::message_id;
use rapport_destinations::warehouse::{self as layout, ColumnType, Row, Rows};
use rapport_store::Offset;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What writing came to for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Delivered,
    /// Worth trying again: the database was unreachable, slow, busy, or lost a race.
    Retry {
        attempt: Attempt,
        error: String,
    },
    /// The database refuses this message's data: a dead letter, since writing it again
    /// cannot succeed.
    Refused {
        error: String,
    },
}

/// Why a transaction failed.
#[derive(Debug)]
enum Failed {
    Transient(Attempt, String),
    Data(String),
}

/// The columns of a table, as far as this writer knows them.
type Columns = Vec<(String, ColumnType)>;

/// One warehouse destination's connection and what it knows of the tables.
pub struct Writer {
    url: String,
    schema: String,
    timeout: Duration,
    client: Option<postgres::Client>,
    schema_ready: bool,
    columns: HashMap<String, Columns>,
}

impl Writer {
    /// A writer for `schema` in the database at `url`; nothing is opened yet. `timeout`
    /// bounds connecting and each statement.
    pub fn new(url: &str, schema: &str, timeout: Duration) -> Writer {
        Writer {
            url: url.to_owned(),
            schema: schema.to_owned(),
            timeout,
            client: None,
            schema_ready: false,
            columns: HashMap::new(),
        }
    }

    fn is_for(&self, url: &str, schema: &str, timeout: Duration) -> bool {
        self.url == url && self.schema == schema && self.timeout == timeout
    }

    fn connect(&self) -> Result<postgres::Client, Failed> {
        let mut config: postgres::Config = self.url.parse().map_err(|e| {
            Failed::Transient(
                Attempt::ConnectionFailed,
                format!("the database URL does not parse: {e}"),
            )
        })?;
        // A server that vanishes mid-statement (a network partition) is noticed within a
        // few timeouts rather than the operating system's two hours of keepalive silence.
        config
            .connect_timeout(self.timeout)
            .tcp_user_timeout(self.timeout)
            .keepalives(true)
            .keepalives_idle(self.timeout)
            .keepalives_interval(self.timeout)
            .keepalives_retries(3)
            .application_name("rapport");
        // `connect_timeout` bounds only the TCP connection: a server that accepts and never
        // answers the start-up would hang the worker. So the opening runs on its own
        // thread, waited for at most the timeout per host.
        let hosts = config.get_hosts().len().max(1) as u32;
        let limit = self.timeout * hosts;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("rapport-warehouse-connect".into())
            .spawn(move || {
                let _ = tx.send(config.connect(postgres::NoTls));
            })
            .map_err(|e| {
                Failed::Transient(Attempt::ConnectionFailed, format!("cannot connect: {e}"))
            })?;
        let mut client = match rx.recv_timeout(limit) {
            Err(_) => {
                return Err(Failed::Transient(
                    Attempt::TimedOut,
                    format!(
                        "cannot connect: PostgreSQL did not answer within {} s",
                        limit.as_secs()
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(match classify(&e) {
                    Failed::Transient(a, m) => Failed::Transient(a, format!("cannot connect: {m}")),
                    // A refusal at start-up (a wrong password, say) is no data error.
                    Failed::Data(m) => {
                        Failed::Transient(Attempt::ConnectionFailed, format!("cannot connect: {m}"))
                    }
                });
            }
            Ok(Ok(c)) => c,
        };
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                self.timeout.as_millis()
            ))
            .map_err(|e| classify(&e))?;
        Ok(client)
    }

    /// Connects and creates the schema when missing: what a test send checks.
    pub fn check(&mut self) -> Result<(), String> {
        let mut client = match self.client.take() {
            Some(c) => c,
            None => self.connect().map_err(message)?,
        };
        client
            .batch_execute(&layout::create_schema_sql(&self.schema))
            .map_err(|e| message(classify(&e)))?;
        self.schema_ready = true;
        self.client = Some(client);
        Ok(())
    }

    /// Deletes a person's rows from every table of the schema, in one transaction: rows
    /// whose `user_id` is one of `user_ids` or whose `anonymous_id` is one of
    /// `anonymous_ids`, and the `users` rows whose `id` is one of `user_ids` (Segment's
    /// layout). Answers the rows deleted.
    pub fn delete_person(
        &mut self,
        user_ids: &[String],
        anonymous_ids: &[String],
    ) -> Result<u64, String> {
        let mut client = match self.client.take() {
            Some(c) => c,
            None => self.connect().map_err(message)?,
        };
        let columns = client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 AND column_name IN ('user_id', 'anonymous_id', 'id')",
                &[&self.schema],
            )
            .map_err(|e| message(classify(&e)))?;
        let mut tx = client.transaction().map_err(|e| message(classify(&e)))?;
        let mut deleted = 0;
        for row in columns {
            let (table, column): (String, String) = (row.get(0), row.get(1));
            let ids = match column.as_str() {
                "user_id" => user_ids,
                "anonymous_id" => anonymous_ids,
                "id" if table == "users" => user_ids,
                _ => continue,
            };
            if ids.is_empty() {
                continue;
            }
            let sql = format!(
                "DELETE FROM {}.{} WHERE {} = ANY($1)",
                layout::quote(&self.schema),
                layout::quote(&table),
                layout::quote(&column)
            );
            deleted += tx
                .execute(&sql, &[&ids])
                .map_err(|e| message(classify(&e)))?;
        }
        tx.commit().map_err(|e| message(classify(&e)))?;
        self.client = Some(client);
        Ok(deleted)
    }

    /// Writes `run` (message bodies by log offset, as `event_body` makes them) for
    /// `destination_id`, and answers what came of each message.
    pub fn write(
        &mut self,
        destination_id: &str,
        run: &[(Offset, Value)],
    ) -> Vec<(Offset, Written)> {
        let planned: Vec<(Offset, Option<Rows>)> = run
            .iter()
            .map(|(o, m)| {
                let key = message_id(destination_id, &o.to_string());
                (*o, layout::rows(m, &key))
            })
            .collect();
        let all: Vec<&Rows> = planned.iter().filter_map(|(_, r)| r.as_ref()).collect();
        let outcome = |o: Offset, w: Written| (o, w);
        match self.write_all(&all) {
            Ok(()) => planned
                .iter()
                .map(|(o, _)| outcome(*o, Written::Delivered))
                .collect(),
            Err(Failed::Transient(attempt, error)) => planned
                .iter()
                .map(|(o, r)| {
                    let w = match r {
                        None => Written::Delivered,
                        Some(_) => Written::Retry {
                            attempt,
                            error: error.clone(),
                        },
                    };
                    outcome(*o, w)
                })
                .collect(),
            Err(Failed::Data(error)) if all.len() == 1 => planned
                .iter()
                .map(|(o, r)| {
                    let w = match r {
                        None => Written::Delivered,
                        Some(_) => Written::Refused {
                            error: error.clone(),
                        },
                    };
                    outcome(*o, w)
                })
                .collect(),
            Err(Failed::Data(_)) => {
                // One message spoils the run: find it, writing them one by one.
                let mut transient: Option<(Attempt, String)> = None;
                planned
                    .iter()
                    .map(|(o, r)| {
                        let Some(rows) = r else {
                            return outcome(*o, Written::Delivered);
                        };
                        if let Some((attempt, error)) = &transient {
                            return outcome(
                                *o,
                                Written::Retry {
                                    attempt: *attempt,
                                    error: error.clone(),
                                },
                            );
                        }
                        let w = match self.write_all(&[rows]) {
                            Ok(()) => Written::Delivered,
                            Err(Failed::Data(error)) => Written::Refused { error },
                            Err(Failed::Transient(attempt, error)) => {
                                transient = Some((attempt, error.clone()));
                                Written::Retry { attempt, error }
                            }
                        };
                        outcome(*o, w)
                    })
                    .collect()
            }
        }
    }

    /// Writes the rows of `messages` in one transaction.
    fn write_all(&mut self, messages: &[&Rows]) -> Result<(), Failed> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut client = match self.client.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut touched: HashMap<String, Columns> = HashMap::new();
        let result = transact(
            &mut client,
            &self.schema,
            self.schema_ready,
            &self.columns,
            &mut touched,
            messages,
        );
        match &result {
            Ok(()) => {
                self.schema_ready = true;
                self.columns.extend(touched);
                self.client = Some(client);
            }
            // The transaction rolled back, DDL included: what was known before still holds,
            // and the connection is sound.
            Err(Failed::Data(_)) => self.client = Some(client),
            // The connection may be gone, or a table changed under us: start afresh.
            Err(Failed::Transient(..)) => {
                self.schema_ready = false;
                self.columns.clear();
            }
        }
        result
    }
}

fn message(f: Failed) -> String {
    match f {
        Failed::Transient(_, m) | Failed::Data(m) => m,
    }
}

fn transact(
    client: &mut postgres::Client,
    schema: &str,
    schema_ready: bool,
    known: &HashMap<String, Columns>,
    touched: &mut HashMap<String, Columns>,
    messages: &[&Rows],
) -> Result<(), Failed> {
    let pg = |e: postgres::Error| classify(&e);
    let mut tx = client.transaction().map_err(pg)?;
    if !schema_ready {
        tx.batch_execute(&layout::create_schema_sql(schema))
            .map_err(pg)?;
    }
    for rows in messages {
        for row in &rows.inserts {
            write_row(&mut tx, schema, known, touched, row, false)?;
        }
        if let Some(user) = &rows.user {
            write_row(&mut tx, schema, known, touched, user, true)?;
        }
    }
    tx.commit().map_err(pg)
}

fn write_row(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    known: &HashMap<String, Columns>,
    touched: &mut HashMap<String, Columns>,
    row: &Row,
    upsert: bool,
) -> Result<(), Failed> {
    let pg = |e: postgres::Error| classify(&e);
    if !touched.contains_key(&row.table) {
        let columns = match known.get(&row.table) {
            Some(c) => c.clone(),
            None => {
                tx.batch_execute(&layout::create_table_sql(schema, &row.table))
                    .map_err(pg)?;
                tx.query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema::text = $1 AND table_name::text = $2 \
                     ORDER BY ordinal_position",
                    &[&schema, &row.table],
                )
                .map_err(pg)?
                .into_iter()
                .map(|r| {
                    let data_type: String = r.get(1);
                    (r.get::<_, String>(0), layout::column_type_of(&data_type))
                })
                .collect()
            }
        };
        touched.insert(row.table.clone(), columns);
    }
    let columns = touched.get_mut(&row.table).expect("inserted above");
    let placed = layout::place_row(row, columns).map_err(Failed::Data)?;
    for (column, kind) in &placed.added {
        tx.batch_execute(&layout::add_column_sql(schema, &row.table, column, *kind))
            .map_err(pg)?;
    }
    let targets: Columns = placed
        .values
        .iter()
        .map(|(n, t, _)| (n.clone(), *t))
        .collect();
    let texts: Vec<String> = placed
        .values
        .iter()
        .map(|(_, _, v)| layout::bind_text(v))
        .collect();
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = texts
        .iter()
        .map(|t| t as &(dyn postgres::types::ToSql + Sync))
        .collect();
    let sql = if upsert {
        layout::upsert_sql(schema, &row.table, &targets)
    } else {
        layout::insert_sql(schema, &row.table, &targets)
    };
    tx.execute(&sql, &params).map_err(pg)?;
    Ok(())
}

/// What an error from the database means for the messages being written.
fn classify(e: &postgres::Error) -> Failed {
    let Some(db) = e.as_db_error() else {
        let mut text = if e.is_closed() {
            format!("PostgreSQL connection lost: {e}")
        } else {
            format!("PostgreSQL: {e}")
        };
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        return Failed::Transient(Attempt::ConnectionFailed, text);
    };
    let code = db.code().code();
    let mut text = format!("PostgreSQL error {code}: {}", db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" ({detail})"));
    }
    match &code[..2] {
        // Two writers creating the same schema, table or column race on the catalogues'
        // unique indexes: the loser tries again.
        "23" if db.constraint().is_some_and(|c| c.starts_with("pg_")) => {
            Failed::Transient(Attempt::ConnectionFailed, text)
        }
        "22" | "23" | "54" => Failed::Data(text),
        // A statement past the timeout.
        "57" if code == "57014" => Failed::Transient(Attempt::TimedOut, text),
        _ => Failed::Transient(Attempt::ConnectionFailed, text),
    }
}

/// A worker's writer, made for its destination's current definition (a new one when the
/// definition changes).
#[derive(Default)]
pub struct Slot(Mutex<Option<Writer>>);

impl Slot {
    /// Writes `run` through the writer for this definition.
    pub fn write(
        &self,
        destination_id: &str,
        database_url: &str,
        schema: &str,
        timeout: Duration,
        run: &[(Offset, Value)],
    ) -> Vec<(Offset, Written)> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_none_or(|w| !w.is_for(database_url, schema, timeout))
        {
            *slot = Some(Writer::new(database_url, schema, timeout));
        }
        slot.as_mut()
            .expect("made above")
            .write(destination_id, run)
    }
}
