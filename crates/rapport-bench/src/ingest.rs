//! `rapport-bench ingest`: the ingest load generator. It starts a fresh server (or targets a running
//! one), posts batches of realistic ~600-byte events over concurrent keep-alive connections
//! for a while, and reports events/s, acknowledgement latency percentiles, bytes on disk per
//! event and the server's peak RSS.

use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rapport_testkit::Server;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Target a running server instead of starting one.
    #[arg(long, requires = "write_key")]
    url: Option<String>,
    /// Write key for --url.
    #[arg(long)]
    write_key: Option<String>,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Stop after this many events instead (rounded up to whole batches), or at the end of
    /// --duration, whichever comes first.
    #[arg(long)]
    events: Option<u64>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Distinct users the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct BenchResult {
    events: u64,
    requests: u64,
    failed_requests: u64,
    seconds: f64,
    events_per_second: f64,
    mean_event_bytes: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    disk_bytes_per_event: Option<f64>,
    server_peak_rss_mib: Option<f64>,
    connections: usize,
    batch_size: usize,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (url, key, server) = match (&args.url, &args.write_key) {
        (Some(u), Some(k)) => (u.trim_end_matches('/').to_owned(), k.clone(), None),
        _ => {
            let server = Server::builder(crate::rapport_bin()?).start()?;
            (server.url(""), server.write_key.clone(), Some(server))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(load(&args, &url, &key));
    // On an error the server is dropped, which kills it.
    let mut result = outcome?;
    if let Some(mut server) = server {
        result.server_peak_rss_mib = server.peak_rss_kib().map(|kib| kib as f64 / 1024.0);
        server.terminate()?;
        let stored = result.events as f64;
        result.disk_bytes_per_event = Some(dir_bytes(server.data_dir()) as f64 / stored.max(1.0));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} events in {:.1} s over {} connections, batches of {} (~{:.0} B/event)",
            result.events,
            result.seconds,
            result.connections,
            result.batch_size,
            result.mean_event_bytes
        );
        println!(
            "  throughput   {:>10.0} events/s (durable acks)",
            result.events_per_second
        );
        println!(
            "  ack latency  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            result.p50_ms, result.p99_ms, result.max_ms
        );
        if let Some(b) = result.disk_bytes_per_event {
            println!("  disk         {b:.0} bytes per event");
        }
        if let Some(r) = result.server_peak_rss_mib {
            println!("  server RSS   {r:.0} MiB peak");
        }
        if result.failed_requests > 0 {
            println!("  FAILED       {} requests", result.failed_requests);
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

const EVENTS: [&str; 6] = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Products Searched",
    "Cart Viewed",
];
const CATEGORIES: [&str; 5] = ["Games", "Books", "Garden", "Outdoor", "Kitchen"];

/// One realistic track message (~600 bytes), unique by `messageId`.
fn event_json(rng: &mut SmallRng, seq: u64, users: u64, out: &mut String) {
    use std::fmt::Write;
    let user = rng.gen_range(0..users);
    let product = rng.gen_range(0..50_000u32);
    let event = EVENTS[rng.gen_range(0..EVENTS.len())];
    let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
    let price = rng.gen_range(100..50_000u32) as f64 / 100.0;
    let _ = write!(
        out,
        r#"{{"type":"track","messageId":"bench-{seq:016x}-{r:08x}","userId":"user-{user}","anonymousId":"anon-{user:08x}-4c7e-9f3a","event":"{event}","timestamp":"2026-11-22T10:{m:02}:{s:02}.{ms:03}Z","properties":{{"product_id":"p-{product}","sku":"SKU-{product:06}","category":"{category}","name":"Item {product}","brand":"Acme","price":{price},"quantity":{q},"currency":"EUR","position":{pos},"url":"https://shop.example.com/p/{product}"}},"context":{{"ip":"203.0.113.{ip}","locale":"en-GB","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","library":{{"name":"analytics.js","version":"5.2.0"}},"page":{{"path":"/p/{product}","referrer":"https://www.example.org/","title":"Item {product}"}}}}}}"#,
        r = rng.r#gen::<u32>(),
        m = rng.gen_range(0..60),
        s = rng.gen_range(0..60),
        ms = rng.gen_range(0..1000),
        q = rng.gen_range(1..4),
        pos = rng.gen_range(1..30),
        ip = rng.gen_range(1..255),
    );
}

/// Sends about `events` events of this benchmark's mix, spread over `users` users, to the
/// running server at `url` (8 connections, batches of 100); the seconds it took.
pub(crate) fn send(url: &str, key: &str, events: u64, users: u64) -> anyhow::Result<f64> {
    let args = BenchArgs {
        url: Some(url.to_owned()),
        write_key: Some(key.to_owned()),
        duration: 24 * 3600,
        events: Some(events),
        connections: 8,
        batch_size: 100,
        users,
        json: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(load(&args, url, key))?;
    anyhow::ensure!(
        result.failed_requests == 0,
        "{} requests failed",
        result.failed_requests
    );
    Ok(result.seconds)
}

async fn load(args: &BenchArgs, url: &str, key: &str) -> anyhow::Result<BenchResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .build()?;
    let endpoint = format!("{url}/v1/batch");
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let client = client.clone();
        let endpoint = endpoint.clone();
        let key = key.to_owned();
        let seq = seq.clone();
        let batch = args.batch_size;
        let users = args.users;
        let limit = args.events;
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(c as u64);
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut events, mut requests, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
            let mut body = String::with_capacity(batch * 700);
            while Instant::now() < deadline {
                body.clear();
                body.push_str(r#"{"batch":["#);
                let base = seq.fetch_add(batch as u64, Ordering::Relaxed);
                if limit.is_some_and(|l| base >= l) {
                    break;
                }
                for i in 0..batch {
                    if i > 0 {
                        body.push(',');
                    }
                    event_json(&mut rng, base + i as u64, users, &mut body);
                }
                body.push_str(r#"],"sentAt":"2026-11-22T10:59:59.999Z"}"#);
                bytes += body.len() as u64;
                let sent = Instant::now();
                let response = client
                    .post(&endpoint)
                    .basic_auth(&key, Some(""))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        status.is_success()
                    }
                    Err(_) => false,
                };
                let _ = hist.record(sent.elapsed().as_micros() as u64);
                requests += 1;
                if ok {
                    events += batch as u64;
                } else {
                    failed += 1;
                }
            }
            (hist, events, requests, failed, bytes)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut events, mut requests, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for t in tasks {
        let (h, e, r, f, b) = t.await?;
        hist.add(h)?;
        events += e;
        requests += r;
        failed += f;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(BenchResult {
        events,
        requests,
        failed_requests: failed,
        seconds,
        events_per_second: events as f64 / seconds,
        mean_event_bytes: bytes as f64 / (requests.max(1) * args.batch_size as u64) as f64,
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: hist.max() as f64 / 1000.0,
        disk_bytes_per_event: None,
        server_peak_rss_mib: None,
        connections: args.connections,
        batch_size: args.batch_size,
    })
}
