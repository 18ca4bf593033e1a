//! `rapport-bench delivery`: webhook delivery end to end. It starts a fresh server and, in
//! this process, HTTP receivers on loopback (one that answers `204` at once and counts what
//! it gets, one that never answers), defines destinations through the REST API and
//! measures:
//!
//! - **throughput**: a backlog of `--events` events waits in the log behind two paused
//!   destinations (one unbatched, one batched); each is resumed alone and timed until its
//!   receiver has every event (the unbatched one for at most `--unbatched-seconds`);
//! - **latency**: while events flow in at a steady `--rate`, the time from building each
//!   event (its `properties.sent_ns`) to its arrival at the receiver;
//! - **isolation**: the same latency with a destination beside it whose receiver hangs,
//!   in alternating rounds (alone, beside, alone, beside…) on a second fresh server, so
//!   that the machine's noise falls on both sides; after each "beside" measure the
//!   hanging destination is deleted and its receiver released.
//!
//! Receivers and the load share the machine with the server, so every figure includes
//! their cost.

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use clap::Args;
use hdrhistogram::Histogram;
use rapport_testkit::Server;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct BenchDeliveryArgs {
    /// Events put in the log before the throughput measures.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Messages per request of the batched destination (`kind.batch.max_events`, 1–1000).
    #[arg(long, default_value_t = 500)]
    max_events: u32,
    /// Seconds the unbatched destination is timed for at most (it may not get through the
    /// whole backlog).
    #[arg(long, default_value_t = 15)]
    unbatched_seconds: u64,
    /// Events per second sent during each latency measure.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Events per tracking request during the latency measures.
    #[arg(long, default_value_t = 20)]
    events_per_request: u64,
    /// Seconds of each latency measure (after a warm-up that is not counted: 2 s, 6 s
    /// before the first).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds of latency measures, each one alone and then one beside a destination whose
    /// receiver hangs (the comparison takes the median of each).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// `kind.timeout_secs` of the destination whose receiver hangs.
    #[arg(long, default_value_t = 10)]
    hang_timeout_secs: u32,
    /// Distinct users the events come from.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    events: u64,
    ingest_seconds: f64,
    ingest_events_per_second: f64,
    processed_after_seconds: f64,
    batched: Throughput,
    unbatched: Throughput,
    /// One per round, in order.
    latency_alone: Vec<Latency>,
    /// One per round: the same measure with a destination beside whose receiver hangs.
    latency_beside_hanging: Vec<Latency>,
    median_p99_alone_ms: f64,
    median_p99_beside_hanging_ms: f64,
    /// The median p99 beside the hanging destination over the median p99 alone.
    isolation_p99_ratio: f64,
    /// Requests the hanging receivers took while their destinations existed (none
    /// answered).
    hanging_requests: u64,
    /// Messages the hanging destinations had parked for a retry when each was deleted.
    hanging_retrying: u64,
}

#[derive(Debug, serde::Serialize)]
struct Throughput {
    max_events: Option<u32>,
    events: u64,
    requests: u64,
    seconds: f64,
    events_per_second: f64,
    /// Whether it got through the whole backlog (else it was stopped at its time limit).
    complete: bool,
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    sent_events_per_second: f64,
    measured_events: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The tracking API's acknowledgements of the same events (fsync included).
    ack_p50_ms: f64,
    ack_p99_ms: f64,
}

/// Sent before each latency measure and not counted.
const WARM_UP: Duration = Duration::from_secs(2);
/// Before the first measure on a fresh server, whose first seconds are slower (its
/// acknowledgements' p99 too): without it the first round's tail was twice the others'.
const FIRST_WARM_UP: Duration = Duration::from_secs(6);

pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// What a fast receiver has seen.
pub(crate) struct Tally {
    pub(crate) events: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// When the last request arrived (Unix ns).
    last_ns: AtomicU64,
    /// Events sent (by `properties.sent_ns`) before this time are not timed.
    measure_from_ns: AtomicU64,
    /// Event → arrival, µs.
    latency: Mutex<Histogram<u64>>,
}

impl Tally {
    fn new() -> Arc<Tally> {
        Arc::new(Tally {
            events: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            measure_from_ns: AtomicU64::new(u64::MAX),
            latency: Mutex::new(latency_histogram()),
        })
    }

    /// Starts timing events sent from `from_ns` on, with an empty histogram.
    pub(crate) fn measure_from(&self, from_ns: u64) {
        self.latency.lock().expect("latency lock").reset();
        self.measure_from_ns.store(from_ns, Ordering::Release);
    }

    /// Stops timing and answers what was timed.
    pub(crate) fn take_latency(&self) -> Histogram<u64> {
        self.measure_from_ns.store(u64::MAX, Ordering::Release);
        std::mem::replace(
            &mut *self.latency.lock().expect("latency lock"),
            latency_histogram(),
        )
    }
}

/// The part of a delivered message the receiver reads; serde skips the rest.
#[derive(serde::Deserialize)]
struct Delivered {
    #[serde(default)]
    properties: SentAt,
    /// A journey's message carries the event that put the customer in.
    #[serde(default)]
    entry: Entry,
}

#[derive(serde::Deserialize, Default)]
struct Entry {
    #[serde(default)]
    properties: SentAt,
}

impl Delivered {
    fn sent_ns(&self) -> Option<u64> {
        self.properties.sent_ns.or(self.entry.properties.sent_ns)
    }
}

#[derive(serde::Deserialize, Default)]
struct SentAt {
    sent_ns: Option<u64>,
}

/// Counts the messages of a request (one, or a JSON array of them when batched), times
/// those sent since the tally's mark, and answers 204 at once.
async fn receive(State(tally): State<Arc<Tally>>, body: Bytes) -> StatusCode {
    let now = unix_ns();
    let batched = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = if batched {
        serde_json::from_slice::<Vec<Delivered>>(&body).unwrap_or_default()
    } else {
        serde_json::from_slice::<Delivered>(&body)
            .map(|m| vec![m])
            .unwrap_or_default()
    };
    let from = tally.measure_from_ns.load(Ordering::Acquire);
    if messages
        .iter()
        .any(|m| m.sent_ns().is_some_and(|s| s >= from))
    {
        let mut hist = tally.latency.lock().expect("latency lock");
        for sent in messages.iter().filter_map(Delivered::sent_ns) {
            if sent >= from {
                let _ = hist.record((now.saturating_sub(sent) / 1000).max(1));
            }
        }
    }
    tally
        .events
        .fetch_add(messages.len() as u64, Ordering::AcqRel);
    tally.requests.fetch_add(1, Ordering::AcqRel);
    tally.last_ns.store(now, Ordering::Release);
    StatusCode::NO_CONTENT
}

/// A receiver that hangs until released, then answers `204` at once: a deleted
/// destination's worker goes on with the log entries of the step it is in before it sees
/// the deletion, and would otherwise keep a request hanging per entry, each for its
/// timeout, beside the next "alone" measure.
struct Hanging {
    requests: AtomicU64,
    released: tokio::sync::watch::Sender<bool>,
}

/// Counts a request and does not answer it until the receiver is released.
async fn hang(State(h): State<Arc<Hanging>>) -> StatusCode {
    h.requests.fetch_add(1, Ordering::AcqRel);
    let mut released = h.released.subscribe();
    let _ = released.wait_for(|r| *r).await;
    StatusCode::NO_CONTENT
}

/// Serves `app` on a free loopback port and answers its URL.
async fn serve(app: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

pub(crate) async fn fast_receiver() -> anyhow::Result<(String, Arc<Tally>)> {
    let tally = Tally::new();
    let app = Router::new()
        .route("/hook", axum::routing::any(receive))
        .layer(DefaultBodyLimit::disable())
        .with_state(tally.clone());
    Ok((serve(app).await?, tally))
}

async fn hanging_receiver() -> anyhow::Result<(String, Arc<Hanging>)> {
    let hanging = Arc::new(Hanging {
        requests: AtomicU64::new(0),
        released: tokio::sync::watch::channel(false).0,
    });
    let app = Router::new()
        .route("/hook", axum::routing::any(hang))
        .layer(DefaultBodyLimit::disable())
        .with_state(hanging.clone());
    Ok((serve(app).await?, hanging))
}

/// The REST API, as the admin.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) admin: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let r = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Defines a webhook destination and answers its id.
    pub(crate) async fn create(
        &self,
        name: &str,
        url: &str,
        extra: Value,
    ) -> anyhow::Result<String> {
        let mut kind = json!({"type": "webhook", "url": url});
        if let (Some(kind), Some(extra)) = (kind.as_object_mut(), extra.as_object()) {
            kind.extend(extra.clone());
        }
        let d = self
            .call(
                reqwest::Method::POST,
                "/api/v1/destinations",
                json!({"name": name, "kind": kind}),
            )
            .await?;
        // The answer holds the destination and, once, its signing secret.
        d["destination"]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no id in the created destination: {d}"))
    }

    async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, json!({})).await
    }

    async fn delete(&self, id: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/v1/destinations/{id}"),
            Value::Null,
        )
        .await
        .map(drop)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, Value::Null).await
    }
}

const EVENTS: [&str; 4] = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
];

/// One realistic track message (~500 bytes) stamped with the time it is built.
fn event_json(seq: u64, users: u64, out: &mut String) {
    use std::fmt::Write;
    let user = seq.wrapping_mul(7919) % users;
    let product = seq.wrapping_mul(104_729) % 50_000;
    let _ = write!(
        out,
        r#"{{"type":"track","messageId":"dlv-{seq:016x}","userId":"user-{user}","event":"{event}","properties":{{"sent_ns":{sent},"product_id":"p-{product}","sku":"SKU-{product:06}","category":"Garden","name":"Item {product}","brand":"Acme","price":{price},"quantity":1,"currency":"EUR"}},"context":{{"ip":"203.0.113.7","locale":"en-GB","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","library":{{"name":"analytics.js","version":"5.2.0"}},"page":{{"path":"/p/{product}","title":"Item {product}"}}}}}}"#,
        event = EVENTS[(seq % EVENTS.len() as u64) as usize],
        sent = unix_ns(),
        price = (seq % 5000) as f64 / 100.0 + 1.0,
    );
}

fn batch_body(first: u64, n: u64, users: u64) -> String {
    let mut body = String::with_capacity(n as usize * 600 + 32);
    body.push_str(r#"{"batch":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        event_json(first + i, users, &mut body);
    }
    body.push_str("]}");
    body
}

async fn post_batch(
    client: &reqwest::Client,
    endpoint: &str,
    write: &str,
    body: String,
) -> anyhow::Result<()> {
    let r = client
        .post(endpoint)
        .basic_auth(write, Some(""))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    anyhow::ensure!(status.is_success(), "batch refused: {status}");
    Ok(())
}

/// Sends events `[first, first + n)` as fast as 4 connections allow, in batches of 100.
async fn preload(
    client: &reqwest::Client,
    endpoint: &str,
    write: &str,
    first: u64,
    n: u64,
    users: u64,
) -> anyhow::Result<()> {
    let body = move |at: u64, count: u64| batch_body(at, count, users);
    send_all(client, endpoint, write, first..first + n, 100, body).await
}

/// Sends the messages of `range` as fast as 4 connections allow, `per` to a request,
/// each request's body made by `body(first, count)`.
pub(crate) async fn send_all(
    client: &reqwest::Client,
    endpoint: &str,
    write: &str,
    range: std::ops::Range<u64>,
    per: u64,
    body: impl Fn(u64, u64) -> String + Clone + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(range.start));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, endpoint, write, next, body) = (
            client.clone(),
            endpoint.to_owned(),
            write.to_owned(),
            next.clone(),
            body.clone(),
        );
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            loop {
                let at = next.fetch_add(per, Ordering::AcqRel);
                if at >= end {
                    return anyhow::Ok(());
                }
                post_batch(&client, &endpoint, &write, body(at, per.min(end - at))).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// How a steady load is sent.
pub(crate) struct Load {
    /// Events per second.
    pub(crate) rate: u64,
    pub(crate) events_per_request: u64,
    /// Distinct users the events come from.
    pub(crate) users: u64,
}

/// Sends events from `first` at a steady `rate` for `duration`, each request on its own
/// task so that a slow acknowledgement does not hold the next; answers how many were
/// sent and the acknowledgements' latency (µs).
pub(crate) async fn steady(
    client: &reqwest::Client,
    endpoint: &str,
    write: &str,
    first: u64,
    args: &Load,
    duration: Duration,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let per = args.events_per_request.max(1);
    let period = Duration::from_secs_f64(per as f64 / args.rate.max(1) as f64);
    let started = Instant::now();
    let failed = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(latency_histogram()));
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        let body = batch_body(first + sent, per, args.users);
        let (client, endpoint, write, failed, acks) = (
            client.clone(),
            endpoint.to_owned(),
            write.to_owned(),
            failed.clone(),
            acks.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            if post_batch(&client, &endpoint, &write, body).await.is_err() {
                failed.store(true, Ordering::Release);
            }
            let micros = t0.elapsed().as_micros() as u64;
            let _ = acks.lock().expect("ack lock").record(micros.max(1));
        }));
        sent += per;
        tokio::time::sleep_until((started + period * (sent / per) as u32).into()).await;
    }
    for t in tasks {
        t.await?;
    }
    anyhow::ensure!(
        !failed.load(Ordering::Acquire),
        "a tracking request failed during the latency measure"
    );
    let acks = std::mem::replace(&mut *acks.lock().expect("ack lock"), latency_histogram());
    Ok((sent, acks))
}

/// Waits until `tally` has `events` events, or `limit` has passed; answers whether it got
/// them all.
async fn wait_events(tally: &Tally, events: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while tally.events.load(Ordering::Acquire) < events {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Resumes destination `id` and times its receiver until it has `events` events (at most
/// `limit`).
async fn timed_drain(
    api: &Api,
    id: &str,
    tally: &Tally,
    events: u64,
    limit: Duration,
    max_events: Option<u32>,
) -> anyhow::Result<Throughput> {
    let (events0, requests0) = (
        tally.events.load(Ordering::Acquire),
        tally.requests.load(Ordering::Acquire),
    );
    let resumed_ns = unix_ns();
    api.post(&format!("/api/v1/destinations/{id}/resume"))
        .await?;
    let complete = wait_events(tally, events0 + events, limit).await;
    let got = tally.events.load(Ordering::Acquire) - events0;
    let requests = tally.requests.load(Ordering::Acquire) - requests0;
    let end_ns = if complete {
        tally.last_ns.load(Ordering::Acquire)
    } else {
        unix_ns()
    };
    api.post(&format!("/api/v1/destinations/{id}/pause"))
        .await?;
    let seconds = end_ns.saturating_sub(resumed_ns) as f64 / 1e9;
    Ok(Throughput {
        max_events,
        events: got,
        requests,
        seconds,
        events_per_second: got as f64 / seconds.max(1e-9),
        complete,
    })
}

/// One latency measure: a warm-up, then `--duration` seconds at `--rate`, then the wait
/// until the receiver has every event.
async fn latency_run(
    client: &reqwest::Client,
    endpoint: &str,
    write: &str,
    first: u64,
    tally: &Tally,
    args: &BenchDeliveryArgs,
    warm_up: Duration,
) -> anyhow::Result<(Latency, u64)> {
    let before = tally.events.load(Ordering::Acquire);
    tally.measure_from(unix_ns() + warm_up.as_nanos() as u64);
    let started = Instant::now();
    let total = warm_up + Duration::from_secs(args.duration);
    let load = Load {
        rate: args.rate,
        events_per_request: args.events_per_request,
        users: args.users,
    };
    let (sent, acks) = steady(client, endpoint, write, first, &load, total).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        wait_events(tally, before + sent, Duration::from_secs(120)).await,
        "the receiver got {} of {sent} events within 120 s",
        tally.events.load(Ordering::Acquire) - before
    );
    let hist = tally.take_latency();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok((
        Latency {
            sent_events_per_second: sent as f64 / seconds,
            measured_events: hist.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: hist.max() as f64 / 1000.0,
            ack_p50_ms: acks.value_at_quantile(0.5) as f64 / 1000.0,
            ack_p99_ms: acks.value_at_quantile(0.99) as f64 / 1000.0,
        },
        sent,
    ))
}

pub fn run(args: BenchDeliveryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.max_events),
        "--max-events must be from 1 to 1000"
    );
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let server = Server::builder(crate::rapport_bin()?)
        .start()
        .context("cannot start the server")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(16)
        .build()?;
    let api = Api {
        client: client.clone(),
        base: server.url(""),
        admin: server.admin_key.clone(),
    };
    let endpoint = server.url("/v1/batch");
    let write = server.write_key.clone();

    // Throughput: a backlog behind two paused destinations.
    let (batched, unbatched, ingest_seconds, batched_tally, unbatched_tally) =
        runtime.block_on(async {
            let (batched_url, batched_tally) = fast_receiver().await?;
            let (unbatched_url, unbatched_tally) = fast_receiver().await?;
            let batched = api
                .create(
                    "bench-batched",
                    &batched_url,
                    json!({"batch": {"max_events": args.max_events, "max_bytes": 5 * 1024 * 1024}}),
                )
                .await?;
            let unbatched = api
                .create("bench-unbatched", &unbatched_url, json!({}))
                .await?;
            for id in [&batched, &unbatched] {
                api.post(&format!("/api/v1/destinations/{id}/pause"))
                    .await?;
            }
            eprintln!("loading {} events…", args.events);
            let started = Instant::now();
            preload(&client, &endpoint, &write, 0, args.events, args.users).await?;
            anyhow::Ok((
                batched,
                unbatched,
                started.elapsed().as_secs_f64(),
                batched_tally,
                unbatched_tally,
            ))
        })?;
    let started = Instant::now();
    server
        .wait_processed(Duration::from_secs(600))
        .context("the processor did not catch up")?;
    let processed_after_seconds = ingest_seconds + started.elapsed().as_secs_f64();
    let (batched_run, unbatched_run) = runtime.block_on(async {
        eprintln!("delivering the backlog, batches of {}…", args.max_events);
        let b = timed_drain(
            &api,
            &batched,
            &batched_tally,
            args.events,
            Duration::from_secs(600),
            Some(args.max_events),
        )
        .await?;
        eprintln!(
            "delivering the backlog unbatched (at most {} s)…",
            args.unbatched_seconds
        );
        let u = timed_drain(
            &api,
            &unbatched,
            &unbatched_tally,
            args.events,
            Duration::from_secs(args.unbatched_seconds),
            None,
        )
        .await?;
        api.delete(&batched).await?;
        api.delete(&unbatched).await?;
        anyhow::Ok((b, u))
    })?;

    // Latency and isolation, on a fresh server: the backlog's flushes and compactions
    // would otherwise run beside the first measures and not the later ones.
    drop(server);
    let server = Server::builder(crate::rapport_bin()?)
        .start()
        .context("cannot start the second server")?;
    let api = Api {
        base: server.url(""),
        admin: server.admin_key.clone(),
        ..api
    };
    let endpoint = server.url("/v1/batch");
    let write = server.write_key.clone();
    let (alone, beside, hanging_requests, hanging_retrying) = runtime.block_on(async {
        let (url, tally) = fast_receiver().await?;
        api.create("bench-latency", &url, json!({})).await?;
        // The destinations' manager looks for new ones every 250 ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (mut alone, mut beside, mut retrying, mut hung) = (Vec::new(), Vec::new(), 0, 0);
        let mut next = 0;
        for round in 1..=args.rounds {
            eprintln!(
                "round {round}/{}: latency at {} events/s for {} s, alone…",
                args.rounds, args.rate, args.duration
            );
            let warm_up = if round == 1 { FIRST_WARM_UP } else { WARM_UP };
            let (l, sent) =
                latency_run(&client, &endpoint, &write, next, &tally, &args, warm_up).await?;
            alone.push(l);
            next += sent;
            let (hang_url, receiver) = hanging_receiver().await?;
            let hanging = api
                .create(
                    &format!("bench-hanging-{round}"),
                    &hang_url,
                    json!({"timeout_secs": args.hang_timeout_secs}),
                )
                .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            eprintln!(
                "round {round}/{}: …beside a destination whose receiver hangs",
                args.rounds
            );
            let (l, sent) =
                latency_run(&client, &endpoint, &write, next, &tally, &args, WARM_UP).await?;
            beside.push(l);
            next += sent;
            let state = api.get(&format!("/api/v1/destinations/{hanging}")).await?;
            retrying += state["delivery"]["retrying"].as_u64().unwrap_or(0);
            hung += receiver.requests.load(Ordering::Acquire);
            // Let its worker through the rest of its step, so that it sees the deletion.
            api.delete(&hanging).await?;
            receiver.released.send_replace(true);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::Ok((alone, beside, hung, retrying))
    })?;
    drop(server);

    let median_p99 = |runs: &[Latency]| {
        let mut p99: Vec<f64> = runs.iter().map(|l| l.p99_ms).collect();
        p99.sort_by(f64::total_cmp);
        let n = p99.len();
        if n % 2 == 1 {
            p99[n / 2]
        } else {
            (p99[n / 2 - 1] + p99[n / 2]) / 2.0
        }
    };
    let report = Report {
        events: args.events,
        ingest_seconds,
        ingest_events_per_second: args.events as f64 / ingest_seconds,
        processed_after_seconds,
        batched: batched_run,
        unbatched: unbatched_run,
        median_p99_alone_ms: median_p99(&alone),
        median_p99_beside_hanging_ms: median_p99(&beside),
        isolation_p99_ratio: median_p99(&beside) / median_p99(&alone),
        latency_alone: alone,
        latency_beside_hanging: beside,
        hanging_requests,
        hanging_retrying,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &args);
    }
    Ok(())
}

fn print_report(r: &Report, args: &BenchDeliveryArgs) {
    println!(
        "{} events logged in {:.1} s ({:.0} events/s), processed after {:.1} s",
        r.events, r.ingest_seconds, r.ingest_events_per_second, r.processed_after_seconds
    );
    for (label, t) in [("batched  ", &r.batched), ("unbatched", &r.unbatched)] {
        println!(
            "  {label}  {:>8.0} events/s   {} events in {:.2} s, {} requests ({:.0} events/request){}",
            t.events_per_second,
            t.events,
            t.seconds,
            t.requests,
            t.events as f64 / t.requests.max(1) as f64,
            if t.complete {
                ""
            } else {
                ", stopped at its time limit"
            }
        );
    }
    println!(
        "  latency (event built → webhook received) at {} events/s, {} s per measure:",
        args.rate, args.duration
    );
    for (round, (a, b)) in r
        .latency_alone
        .iter()
        .zip(&r.latency_beside_hanging)
        .enumerate()
    {
        for (label, l) in [("alone         ", a), ("beside hanging", b)] {
            println!(
                "    {} {label}  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms   ({} events, {:.0} sent/s; tracking ack p50 {:.2} ms, p99 {:.2} ms)",
                round + 1,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                l.measured_events,
                l.sent_events_per_second,
                l.ack_p50_ms,
                l.ack_p99_ms
            );
        }
    }
    println!(
        "  isolation      median p99 beside hanging {:.2} ms / alone {:.2} ms = {:.2}; the hanging receiver got {} requests, {} messages parked for retry",
        r.median_p99_beside_hanging_ms,
        r.median_p99_alone_ms,
        r.isolation_p99_ratio,
        r.hanging_requests,
        r.hanging_retrying
    );
}
