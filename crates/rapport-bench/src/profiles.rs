//! `rapport-bench profiles`: measures the processor (events/s through identity resolution
//! and profile updates) and then profile lookups over HTTP (lookups/s and latency) on the
//! profiles it built.

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rapport_core::event::{Limits, ParsedRequest, Stamp};
use rapport_core::identity::IdentityRules;
use rapport_engine::processor::Processor;
use rapport_store::embedded::EmbeddedStore;
use rapport_store::{AppendItem, Store};
use rapport_testkit::Server;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchProfilesArgs {
    /// Events to process.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Distinct people the events come from.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Concurrent connections for the lookup phase.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of lookups.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Result {
    events: u64,
    users: u64,
    process_seconds: f64,
    processed_events_per_second: f64,
    lookups: u64,
    lookups_per_second: f64,
    lookup_p50_ms: f64,
    lookup_p99_ms: f64,
    failed_lookups: u64,
    connections: usize,
}

/// One person's event: anonymous browsing, then identify with an e-mail, then tracked as
/// the user; a share of people also use a second device.
pub(crate) fn message(rng: &mut SmallRng, users: u64, seq: u64) -> serde_json::Value {
    let user = rng.gen_range(0..users);
    let roll = rng.gen_range(0..100);
    // Spread over the last 20 days, so that windowed segments see part of the history.
    let ts = (chrono::Utc::now() - chrono::TimeDelta::seconds(rng.gen_range(0..20 * 86_400)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let anon = format!(
        "anon-{user}-{}",
        if user % 4 == 0 {
            rng.gen_range(0..2)
        } else {
            0
        }
    );
    match roll {
        0..=9 => {
            serde_json::json!({"type": "identify", "userId": format!("user-{user}"), "anonymousId": anon,
            "messageId": format!("m{seq}"), "timestamp": ts,
            "traits": {"email": format!("user{user}@example.com"), "plan": if user % 3 == 0 { "pro" } else { "free" }, "seats": user % 50}})
        }
        10..=29 => serde_json::json!({"type": "page", "anonymousId": anon, "name": "Product",
            "messageId": format!("m{seq}"), "timestamp": ts, "properties": {"path": "/p/1"}}),
        _ => {
            serde_json::json!({"type": "track", "userId": format!("user-{user}"), "event": "Product Viewed",
            "messageId": format!("m{seq}"), "timestamp": ts,
            "properties": {"product_id": format!("p-{}", rng.gen_range(0..5000)), "price": 19.99},
            "context": {"device": {"id": format!("dev-{user}")}, "ip": "203.0.113.1"}})
        }
    }
}

/// Appends messages straight to the log, as ingest would store them (5,000 per append).
pub fn fill_log(
    store: &dyn Store,
    messages: impl IntoIterator<Item = serde_json::Value>,
) -> anyhow::Result<()> {
    let limits = Limits {
        max_batch_bytes: 64 << 20,
        max_batch_events: 10_000,
        ..Limits::default()
    };
    let stamp = Stamp {
        received_at: chrono::Utc::now(),
        source_id: "bench",
    };
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let batch: Vec<serde_json::Value> = messages.by_ref().take(5_000).collect();
        let body = serde_json::json!({ "batch": batch }).to_string();
        let req = ParsedRequest::batch(body.as_bytes(), &limits)?;
        let items: Vec<AppendItem> = req
            .events(&stamp, &limits, &mut || uuid::Uuid::new_v4().to_string())
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| AppendItem {
                dedup_key: e.dedup_key(),
                payload: e.to_json(),
            })
            .collect();
        store.append(&items, chrono::Utc::now().timestamp_millis(), 86_400_000)?;
    }
    Ok(())
}

pub fn run(args: BenchProfilesArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = temp.path().join("data");
    let admin_key;
    let (process_seconds, events) = {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&data_dir)?);
        eprintln!("writing {} events to the log…", args.events);
        let mut rng = SmallRng::seed_from_u64(7);
        fill_log(
            store.as_ref(),
            (0..args.events).map(|seq| message(&mut rng, args.users, seq)),
        )?;
        let events = store.last_offset()?;
        eprintln!("processing…");
        let started = Instant::now();
        Processor::new(store.clone(), IdentityRules::default()).run_to_end()?;
        let secs = started.elapsed().as_secs_f64();
        let access = rapport_engine::access::Access::new(store.clone());
        admin_key = access
            .create_key(
                rapport_store::KeyKind::Admin,
                None,
                "bench",
                chrono::Utc::now().timestamp_millis(),
            )?
            .secret;
        (secs, events)
    };

    // With the admin key made beforehand, rather than those the first start prints.
    let mut server = Server::builder(crate::rapport_bin()?)
        .data_dir(&data_dir)
        .keys("", &admin_key)
        .start()
        .context("cannot start the server")?;
    let port = server.port;
    // The server's indexer starts on the whole log: let it catch up, so that the figures
    // are those of lookups rather than of the index being built beside them.
    server
        .wait_indexed(Duration::from_secs(600))
        .context("the server's indexer did not catch up")?;
    eprintln!("looking profiles up for {} s…", args.duration);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (hist, lookups, failed, secs) = runtime.block_on(async {
        let stop_at = Instant::now() + Duration::from_secs(args.duration);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..args.connections {
            let (key, users) = (admin_key.clone(), args.users);
            tasks.push(tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64);
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut conn = None;
                while Instant::now() < stop_at {
                    let path = format!("/api/v1/profiles/user_id:user-{}", rng.gen_range(0..users));
                    let t = Instant::now();
                    if conn.is_none() {
                        conn = LeanConnection::open(port, &key).await.ok();
                    }
                    let status = match conn.as_mut() {
                        Some(c) => c.get(&path).await.ok(),
                        None => None,
                    };
                    match status {
                        // Users who never identified or tracked are a legitimate 404.
                        Some(200 | 404) => ok += 1,
                        Some(_) => failed += 1,
                        None => {
                            failed += 1;
                            conn = None;
                        }
                    }
                    let _ = hist.record(t.elapsed().as_micros() as u64);
                }
                (hist, ok, failed)
            }));
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            let (h, o, f) = t.await?;
            hist.add(h)?;
            ok += o;
            failed += f;
        }
        anyhow::Ok((hist, ok, failed, started.elapsed().as_secs_f64()))
    })?;
    server.terminate()?;
    let result = Result {
        events,
        users: args.users,
        process_seconds,
        processed_events_per_second: events as f64 / process_seconds,
        lookups,
        lookups_per_second: lookups as f64 / secs,
        lookup_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        lookup_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        failed_lookups: failed,
        connections: args.connections,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "processor   {} events from {} people in {:.1} s: {:.0} events/s",
            result.events, result.users, result.process_seconds, result.processed_events_per_second
        );
        println!(
            "lookups     {:.0} profiles/s over {} connections, p50 {:.2} ms, p99 {:.2} ms ({} failed)",
            result.lookups_per_second,
            result.connections,
            result.lookup_p50_ms,
            result.lookup_p99_ms,
            result.failed_lookups
        );
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 connection that sends GET requests and reads whole responses,
/// doing as little as a load generator can so that the machine's cores go to the server
/// (the load and the server share them). Responses must carry `Content-Length`, as the
/// server's JSON answers do.
struct LeanConnection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    authorization: String,
    head: String,
}

impl LeanConnection {
    async fn open(port: u16, key: &str) -> std::io::Result<LeanConnection> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(LeanConnection {
            stream: tokio::io::BufStream::new(stream),
            authorization: format!("Authorization: Bearer {key}\r\n"),
            head: String::new(),
        })
    }

    /// Sends `GET path` and answers the response's status once its body is read.
    async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
            self.authorization
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.stream.flush().await?;
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut status = None;
        let mut length = None;
        loop {
            self.head.clear();
            if self.stream.read_line(&mut self.head).await? == 0 {
                return Err(invalid("connection closed"));
            }
            let line = self.head.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
                continue;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<u64>().ok();
            }
        }
        let (Some(status), Some(length)) = (status, length) else {
            return Err(invalid("response without status or content-length"));
        };
        let mut body = (&mut self.stream).take(length);
        tokio::io::copy(&mut body, &mut tokio::io::sink()).await?;
        Ok(status)
    }
}
