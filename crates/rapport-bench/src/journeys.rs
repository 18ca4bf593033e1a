//! `rapport-bench journeys`: journeys end to end on fresh servers, with the receivers in
//! this process.
//!
//! - **latency**: while events flow in at a steady `--rate` (a quarter of them
//!   `Checkout Started`), each checkout enters a journey that sets a trait and sends a
//!   message to a webhook; timed from building the event (its `properties.sent_ns`, which
//!   the message carries as `entry.properties.sent_ns`) to the message's arrival;
//! - **waiting customers**: `--waiting` customers sign up and each enters a journey that
//!   sets a trait, splits and waits 30 days. The server's resident memory is read after
//!   every `--checkpoint` customers are in (processed), so that memory is shown against
//!   the number waiting; the processing time gives the steps executed per second, end to
//!   end (identity and profiles of each new customer included) and against a baseline
//!   run of the same sign-ups on a server without the journey.

use crate::delivery::{Api, Load, fast_receiver, send_all, steady, unix_ns};
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rapport_testkit::Server;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchJourneysArgs {
    /// Events per second sent during the latency measure.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of the latency measure (after 6 s of warm-up that are not counted).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Events per tracking request during the latency measure.
    #[arg(long, default_value_t = 20)]
    events_per_request: u64,
    /// Distinct users the latency measure's events come from.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Customers put in a 30-day wait.
    #[arg(long, default_value_t = 1_000_000)]
    waiting: u64,
    /// Memory is read after each this many customers are waiting.
    #[arg(long, default_value_t = 250_000)]
    checkpoint: u64,
    /// Skip the baseline run without the journey.
    #[arg(long)]
    no_baseline: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    latency: Latency,
    waiting: Waiting,
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    rate: u64,
    sent_events_per_second: f64,
    messages: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, serde::Serialize)]
struct Checkpoint {
    waiting: u64,
    rss_mib: f64,
    /// Seconds from the first sign-up sent to this many processed.
    seconds: f64,
}

#[derive(Debug, serde::Serialize)]
struct Waiting {
    customers: u64,
    /// Steps each customer passes: set_trait, split, wait.
    steps_per_customer: u64,
    checkpoints: Vec<Checkpoint>,
    /// Sign-ups sent and processed, with the journey.
    seconds: f64,
    steps_per_second: f64,
    /// The same sign-ups on a server without the journey.
    baseline_seconds: Option<f64>,
    /// Steps over the time the journey added to the baseline.
    marginal_steps_per_second: Option<f64>,
    waiting_reported: u64,
}

/// A sign-up of customer `i`.
fn sign_up(i: u64, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"type":"track","messageId":"jw-{i:016x}","userId":"waiting-{i}","event":"Signed Up","properties":{{"plan":"pro","n":{i}}}}}"#
    );
}

fn batch_of(from: u64, n: u64, make: impl Fn(u64, &mut String)) -> String {
    let mut body = String::with_capacity(n as usize * 200 + 16);
    body.push_str(r#"{"batch":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        make(from + i, &mut body);
    }
    body.push_str("]}");
    body
}

async fn define(api: &Api, journey: Value) -> anyhow::Result<()> {
    let name = journey["name"].as_str().unwrap_or_default().to_owned();
    api.call(reqwest::Method::POST, "/api/v1/journeys", journey)
        .await?;
    api.call(
        reqwest::Method::POST,
        &format!("/api/v1/journeys/{name}/publish"),
        json!({}),
    )
    .await?;
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(16)
        .build()?)
}

fn api_of(server: &Server, client: &reqwest::Client) -> Api {
    Api {
        client: client.clone(),
        base: server.url(""),
        admin: server.admin_key.clone(),
    }
}

/// Event → message latency at a steady rate.
fn latency(args: &BenchJourneysArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Latency> {
    let server = Server::builder(crate::rapport_bin()?)
        .start()
        .context("cannot start the server")?;
    let client = client()?;
    let api = api_of(&server, &client);
    let endpoint = server.url("/v1/batch");
    let write = server.write_key.clone();
    runtime.block_on(async {
        let (url, tally) = fast_receiver().await?;
        api.call(
            reqwest::Method::POST,
            "/api/v1/destinations",
            json!({"name": "bench-journey", "kind": {"type": "webhook", "url": url},
                   "deliver": {"events": null}}),
        )
        .await?;
        define(
            &api,
            json!({
                "name": "bench_checkout",
                "entry": {"type": "event", "condition": "event == \"Checkout Started\""},
                "reentry": {"type": "per_key", "property": "sent_ns"},
                "start": "mark",
                "nodes": {
                    "mark": {"type": "set_trait", "trait": "checking_out", "value": true,
                             "next": "notify"},
                    "notify": {"type": "send", "destination": "bench-journey"}
                }
            }),
        )
        .await?;
        // The destinations' manager looks for new ones every 250 ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let warm_up = Duration::from_secs(6);
        tally.measure_from(unix_ns() + warm_up.as_nanos() as u64);
        let before = tally.events.load(Ordering::Acquire);
        let started = Instant::now();
        let total = warm_up + Duration::from_secs(args.duration);
        let load = Load {
            rate: args.rate,
            events_per_request: args.events_per_request,
            users: args.users,
        };
        let (sent, _) = steady(&client, &endpoint, &write, 0, &load, total).await?;
        let seconds = started.elapsed().as_secs_f64();
        // A quarter of the events are checkouts (every fourth in `event_json`'s cycle).
        let messages = sent / 4;
        let deadline = Instant::now() + Duration::from_secs(120);
        while tally.events.load(Ordering::Acquire) < before + messages {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the receiver got {} of {messages} messages within 120 s",
                tally.events.load(Ordering::Acquire) - before
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let hist: Histogram<u64> = tally.take_latency();
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        anyhow::Ok(Latency {
            rate: args.rate,
            sent_events_per_second: sent as f64 / seconds,
            messages: hist.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: hist.max() as f64 / 1000.0,
        })
    })
}

/// Sends every sign-up, waiting for each checkpoint to be processed; answers the
/// checkpoints and the total seconds.
fn fill(
    server: &Server,
    args: &BenchJourneysArgs,
    runtime: &tokio::runtime::Runtime,
    label: &str,
) -> anyhow::Result<(Vec<Checkpoint>, f64)> {
    let client = client()?;
    let endpoint = server.url("/v1/batch");
    let write = server.write_key.clone();
    let started = Instant::now();
    let mut checkpoints = Vec::new();
    let mut done = 0;
    while done < args.waiting {
        let to = (done + args.checkpoint.max(1)).min(args.waiting);
        let body = |at: u64, n: u64| batch_of(at, n, sign_up);
        runtime.block_on(send_all(&client, &endpoint, &write, done..to, 500, body))?;
        server
            .wait_processed(Duration::from_secs(3600))
            .context("the processor did not catch up")?;
        done = to;
        let rss = server.rss_kib().unwrap_or(0) as f64 / 1024.0;
        eprintln!(
            "{label}: {done} customers in after {:.1} s, RSS {rss:.0} MiB",
            started.elapsed().as_secs_f64()
        );
        checkpoints.push(Checkpoint {
            waiting: done,
            rss_mib: rss,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok((checkpoints, started.elapsed().as_secs_f64()))
}

const STEPS_PER_CUSTOMER: u64 = 3;

fn waiting(args: &BenchJourneysArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Waiting> {
    let baseline_seconds = if args.no_baseline {
        None
    } else {
        let server = Server::builder(crate::rapport_bin()?)
            .start()
            .context("cannot start the baseline server")?;
        let (_, seconds) = fill(&server, args, runtime, "baseline, no journey")?;
        Some(seconds)
    };
    let server = Server::builder(crate::rapport_bin()?)
        .start()
        .context("cannot start the server")?;
    let client = client()?;
    let api = api_of(&server, &client);
    runtime.block_on(define(
        &api,
        json!({
            "name": "bench_onboarding",
            "entry": {"type": "event", "condition": "event == \"Signed Up\""},
            "start": "flag",
            "nodes": {
                "flag": {"type": "set_trait", "trait": "onboarding", "value": "started",
                         "next": "arm"},
                "arm": {"type": "split", "arms": [{"name": "a", "weight": 50, "next": "wait"},
                                                  {"name": "b", "weight": 50, "next": "wait"}]},
                "wait": {"type": "wait", "duration": "30d"}
            }
        }),
    ))?;
    let (checkpoints, seconds) = fill(&server, args, runtime, "journey")?;
    let flow = runtime.block_on(api.call(
        reqwest::Method::GET,
        "/api/v1/journeys/bench_onboarding/flow",
        Value::Null,
    ))?;
    let waiting_reported = flow["versions"][0]["nodes"]["wait"]["waiting"]
        .as_u64()
        .unwrap_or(0);
    let steps = (args.waiting * STEPS_PER_CUSTOMER) as f64;
    Ok(Waiting {
        customers: args.waiting,
        steps_per_customer: STEPS_PER_CUSTOMER,
        checkpoints,
        seconds,
        steps_per_second: steps / seconds,
        baseline_seconds,
        marginal_steps_per_second: baseline_seconds
            .filter(|b| seconds > *b)
            .map(|b| steps / (seconds - b)),
        waiting_reported,
    })
}

pub fn run(args: BenchJourneysArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!(
        "latency: {} events/s for {} s, a quarter of them entering a journey…",
        args.rate, args.duration
    );
    let latency = latency(&args, &runtime)?;
    let waiting = waiting(&args, &runtime)?;
    let report = Report { latency, waiting };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let l = &report.latency;
    println!(
        "event → journey message received, at {} events/s ({:.0} sent/s), {} messages: p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        l.rate, l.sent_events_per_second, l.messages, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    let w = &report.waiting;
    println!(
        "{} customers waiting (flow says {}), {} steps each:",
        w.customers, w.waiting_reported, w.steps_per_customer
    );
    for c in &w.checkpoints {
        println!(
            "  {:>9} waiting   RSS {:>6.0} MiB   after {:.1} s",
            c.waiting, c.rss_mib, c.seconds
        );
    }
    println!(
        "  {:.1} s with the journey: {:.0} steps/s end to end (identity and profiles of each new customer included)",
        w.seconds, w.steps_per_second
    );
    if let (Some(b), Some(m)) = (w.baseline_seconds, w.marginal_steps_per_second) {
        println!(
            "  {b:.1} s for the same sign-ups without it: {m:.0} steps/s over the time the journey added"
        );
    }
    Ok(())
}
