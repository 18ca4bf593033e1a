//! `rapport-bench dashboard`: how long each dashboard page takes to be usable on a server
//! holding many events — the goal is under 300 ms per page with 1,000,000 events on the
//! 2-core machine (docs/benchmarks.md).
//!
//! It starts the `rapport` binary beside it, sends the events through the tracking API
//! (the ingest benchmark's mix), defines what the pages list (segments, computed traits,
//! a journey, a destination), waits until every event is indexed and processed, then
//! drives Debian's Chromium headless (`tests/sdk/dashboard-bench.mjs`, Playwright from npm)
//! through every page: each page is opened `--rounds` times after an idle page, and timed
//! from the change of address to the page drawn with its data (`aria-busy` false on a new
//! `main`): the page usable, its API calls answered and drawn. "Complete" waits further,
//! until no section is still busy (the Value page draws its reports, read from every
//! profile's history, as they come). Above the goal, the slowest API calls are shown.

use anyhow::Context;
use clap::Args;
use rapport_testkit::Server;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The goal per page (issue: "every page is usable in under 300 ms").
const GOAL_MS: u64 = 300;

#[derive(Debug, Args)]
pub struct BenchDashboardArgs {
    /// Events stored before the pages are timed.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct users the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Times each page is opened (the median and the slowest are reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The browser scripts' directory (`crates/rapport/tests/sdk`, with its `node_modules`).
fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rapport/tests/sdk")
}

fn admin(server: &Server, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<()> {
    let r = reqwest::blocking::Client::new()
        .request(method, server.url(path))
        .bearer_auth(&server.admin_key)
        .json(&body)
        .timeout(Duration::from_secs(600))
        .send()?;
    let status = r.status();
    anyhow::ensure!(status.is_success(), "{path}: {status} {}", r.text()?);
    Ok(())
}

/// What the pages list: a few segments and computed traits of the kinds people define, a
/// journey, a paused webhook destination.
fn define(server: &Server) -> anyhow::Result<()> {
    use reqwest::Method;
    for (name, expression) in [
        ("buyers", r#"computed.orders >= 1"#),
        ("big_spenders", r#"computed.spend > 500"#),
        ("browsers", r#"computed.views_30d >= 3"#),
    ] {
        admin(
            server,
            Method::POST,
            "/api/v1/segments",
            json!({"name": name, "expression": expression}),
        )?;
    }
    admin(
        server,
        Method::POST,
        "/api/v1/destinations",
        json!({"name": "crm", "kind": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}),
    )?;
    admin(
        server,
        Method::POST,
        "/api/v1/destinations/crm/pause",
        json!({}),
    )?;
    admin(
        server,
        Method::POST,
        "/api/v1/journeys",
        json!({"name": "winback", "entry": {"type": "event", "condition": "event == \"Checkout Started\""},
               "start": "wait", "nodes": {
                 "wait": {"type": "wait_for_event", "timeout": "1d", "timeout_next": "nudge",
                          "branches": [{"name": "bought", "condition": "event == \"Order Completed\"", "next": "done"}]},
                 "nudge": {"type": "send", "destination": "crm"},
                 "done": {"type": "set_trait", "trait": "won_back", "value": true}}}),
    )?;
    admin(
        server,
        Method::POST,
        "/api/v1/journeys/winback/publish",
        json!({}),
    )
}

/// The computed traits, defined before the events so that they are kept as events arrive.
fn define_traits(server: &Server) -> anyhow::Result<()> {
    for (name, aggregate) in [
        ("orders", r#"count(event == "Order Completed")"#),
        (
            "spend",
            r#"sum(properties.price, event == "Order Completed")"#,
        ),
        (
            "views_30d",
            r#"count(event == "Product Viewed", within 30d)"#,
        ),
    ] {
        admin(
            server,
            reqwest::Method::POST,
            "/api/v1/computed-traits",
            json!({"name": name, "expression": aggregate}),
        )?;
    }
    Ok(())
}

pub fn run(args: BenchDashboardArgs) -> anyhow::Result<()> {
    let sdk = sdk_dir();
    anyhow::ensure!(
        sdk.join("node_modules").is_dir(),
        "install the browser test packages first: npm ci --prefix crates/rapport/tests/sdk"
    );
    let server = Server::builder(crate::rapport_bin()?)
        .start_timeout(Duration::from_secs(120))
        .start()?;
    define_traits(&server)?;
    let started = Instant::now();
    let sent = crate::ingest::send(&server.url(""), &server.write_key, args.events, args.users)?;
    server.wait_indexed(Duration::from_secs(3600))?;
    server.wait_processed(Duration::from_secs(3600))?;
    let caught_up = started.elapsed().as_secs_f64();
    define(&server)?;
    // The segments' backfill over every profile, before the pages are timed.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let status: Value = reqwest::blocking::Client::new()
            .get(server.url("/api/v1/audiences/status"))
            .bearer_auth(&server.admin_key)
            .send()?
            .json()?;
        if status["backfill"]["state"] == "done" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backfill did not finish: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let health = server.health()?;
    let out = std::process::Command::new("node")
        .current_dir(&sdk)
        .arg("dashboard-bench.mjs")
        .args([
            &server.url(""),
            &server.admin_key,
            "user_id:user-42",
            &args.rounds.to_string(),
        ])
        .output()
        .context("node is needed for this benchmark")?;
    anyhow::ensure!(
        out.status.success(),
        "dashboard-bench.mjs failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut timed: Value = serde_json::from_slice(&out.stdout)?;
    timed["events"] = json!(health["log_offset"]);
    timed["ingest_seconds"] = json!(sent);
    timed["caught_up_seconds"] = json!(caught_up);
    timed["server_rss_mib"] = json!(server.rss_kib().map(|k| k / 1024));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&timed)?);
        return Ok(());
    }
    println!(
        "{} log entries ({:.0} s to send, {:.0} s until indexed and processed); {} rounds per page",
        timed["events"], sent, caught_up, args.rounds
    );
    println!(
        "{:<28}  {:>10}  {:>10}  {:>12}",
        "page", "median ms", "max ms", "complete ms"
    );
    for p in timed["pages"].as_array().into_iter().flatten() {
        println!(
            "{:<28}  {:>10}  {:>10}  {:>12}{}",
            p["page"].as_str().unwrap_or(""),
            p["median_ms"].as_u64().unwrap_or_default(),
            p["max_ms"].as_u64().unwrap_or_default(),
            p["complete_median_ms"].as_u64().unwrap_or_default(),
            if p["error"].is_string() {
                format!("  ERROR {}", p["error"])
            } else {
                String::new()
            }
        );
        if p["complete_median_ms"].as_u64().unwrap_or_default() > GOAL_MS {
            for c in p["slowest_calls"].as_array().into_iter().flatten() {
                println!(
                    "    {:>8} ms  {}",
                    c["ms"].as_u64().unwrap_or_default(),
                    c["path"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
