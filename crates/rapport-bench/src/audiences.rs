//! `rapport-bench audiences`: measures segments and computed traits under load.
//!
//! Three figures, each against a goal in docs/benchmarks.md:
//! 1. processing throughput (identity, profiles, computed traits, segments) with many
//!    definitions in place;
//! 2. backfill: how fast a new segment is evaluated over every existing profile;
//! 3. latency from sending an event over HTTP to the profile entering a segment, with the
//!    server running and other traffic flowing.

use crate::profiles::{fill_log, message};
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rapport_core::identity::IdentityRules;
use rapport_engine::audiences::definitions::{ComputedTraitSpec, Definitions, SegmentSpec};
use rapport_engine::audiences::store::Audiences;
use rapport_engine::processor::Processor;
use rapport_store::Store;
use rapport_store::embedded::EmbeddedStore;
use rapport_testkit::Server;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchSegmentsArgs {
    /// Events to process.
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Distinct people the events come from.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Segments defined before processing.
    #[arg(long, default_value_t = 100)]
    segments: usize,
    /// Computed traits defined before processing.
    #[arg(long, default_value_t = 50)]
    traits: usize,
    /// Background events per second during the latency phase.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    events: u64,
    users: u64,
    segments: usize,
    computed_traits: usize,
    aggregates: usize,
    process_seconds: f64,
    processed_events_per_second: f64,
    backfill_profiles: u64,
    backfill_seconds: f64,
    backfill_profiles_per_second: f64,
    latency_probes: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    background_events_per_second: f64,
}

/// A spread of computed traits over the benchmark's events, with distinct windows so that
/// each is its own aggregate.
fn trait_specs(n: usize) -> Vec<ComputedTraitSpec> {
    (0..n)
        .map(|i| {
            let expression = match i % 5 {
                0 => format!("count(event == \"Product Viewed\", within {}h)", 1 + i),
                1 => format!(
                    "sum(properties.price, event == \"Product Viewed\", within {}d)",
                    1 + i
                ),
                2 => format!(
                    "unique_count(properties.product_id, event == \"Product Viewed\", within {}h)",
                    1 + i
                ),
                3 => format!("last_seen(type == \"page\", within {}d)", 1 + i),
                _ => format!(
                    "count(type == \"page\" and properties.path == \"/p/{}\", within {}d)",
                    i % 3,
                    1 + i
                ),
            };
            ComputedTraitSpec {
                name: format!("t{i}"),
                expression: Some(expression),
                ..Default::default()
            }
        })
        .collect()
}

fn segment_specs(n: usize, traits: usize) -> Vec<SegmentSpec> {
    (0..n)
        .map(|j| {
            // Every fifth trait is a count (see trait_specs).
            let t = |k: usize| format!("t{}", ((j / 4 + k) * 5) % traits.max(1));
            let expression = match (j % 4, traits) {
                (0, 1..) => format!("computed.{} >= {}", t(0), 1 + j % 3),
                (1, _) => format!(
                    "traits.plan == \"pro\" and count(event == \"Product Viewed\", within {}h) >= 2",
                    1 + j
                ),
                (2, _) => format!("traits.seats > {}", j % 50),
                (3, _) if j > 0 => format!(
                    "in_segment(\"s{}\") or exists(type == \"page\", within {}d)",
                    j - 1,
                    1 + j % 7
                ),
                _ => format!("exists(event == \"Product Viewed\", within {}m)", 10 + j),
            };
            SegmentSpec {
                name: format!("s{j}"),
                description: None,
                expression,
            }
        })
        .collect()
}

fn wait_backfill(store: &dyn Store, version: u64) -> anyhow::Result<()> {
    let audiences = Audiences { store };
    while audiences.meta()?.backfill.version != version || audiences.meta()?.backfill.running() {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub fn run(args: BenchSegmentsArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let data_dir = temp.path().join("data");
    let (events, process_seconds, aggregates, backfill_profiles, backfill_seconds, admin, write) = {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&data_dir)?);
        let defs = Definitions {
            store: store.as_ref(),
        };
        for spec in trait_specs(args.traits) {
            defs.put_trait(&spec, 0)?;
        }
        for spec in segment_specs(args.segments, args.traits) {
            defs.put_segment(&spec, 0)?;
        }
        let catalogue = rapport_engine::audiences::Catalogue::compile(
            &defs.load()?,
            rapport_engine::audiences::RfmSource::default(),
        );
        eprintln!(
            "{} segments and {} computed traits ({} distinct aggregates); writing {} events…",
            args.segments,
            args.traits,
            catalogue.aggregates.len(),
            args.events
        );
        let mut rng = SmallRng::seed_from_u64(7);
        fill_log(
            store.as_ref(),
            (0..args.events).map(|seq| message(&mut rng, args.users, seq)),
        )?;
        let events = store.last_offset()?;
        eprintln!("processing…");
        let started = Instant::now();
        Processor::new(store.clone(), IdentityRules::default()).run_to_end()?;
        let process_seconds = started.elapsed().as_secs_f64();

        eprintln!(
            "processed in {process_seconds:.1} s ({:.0} events/s); backfilling a new segment…",
            events as f64 / process_seconds
        );
        defs.put_segment(
            &SegmentSpec {
                name: "backfilled".into(),
                description: None,
                expression: if args.traits > 0 {
                    "traits.plan == \"pro\" and computed.t0 >= 1".into()
                } else {
                    "traits.plan == \"pro\" and exists(event == \"Product Viewed\", within 2d)"
                        .into()
                },
            },
            0,
        )?;
        let version = defs.version()?;
        let started = Instant::now();
        let mut processor = Processor::new(store.clone(), IdentityRules::default());
        while processor.step()? > 0 {}
        wait_backfill(store.as_ref(), version)?;
        let backfill_seconds = started.elapsed().as_secs_f64();
        let backfill_profiles = Audiences {
            store: store.as_ref(),
        }
        .meta()?
        .backfill
        .processed;

        defs.put_segment(
            &SegmentSpec {
                name: "latency_probe".into(),
                description: None,
                expression: "traits.probe == true".into(),
            },
            0,
        )?;
        let access = rapport_engine::access::Access::new(store.clone());
        let now = chrono::Utc::now().timestamp_millis();
        let admin = access
            .create_key(rapport_store::KeyKind::Admin, None, "bench", now)?
            .secret;
        let (_, write) = access.create_source("bench", now)?;
        (
            events,
            process_seconds,
            catalogue.aggregates.len(),
            backfill_profiles,
            backfill_seconds,
            admin,
            write.secret,
        )
    };

    let (hist, probes, background) = latency_phase(&data_dir, &args, &admin, &write)?;
    let report = Report {
        events,
        users: args.users,
        segments: args.segments,
        computed_traits: args.traits,
        aggregates,
        process_seconds,
        processed_events_per_second: events as f64 / process_seconds,
        backfill_profiles,
        backfill_seconds,
        backfill_profiles_per_second: backfill_profiles as f64 / backfill_seconds,
        latency_probes: probes,
        latency_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        latency_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        latency_max_ms: hist.max() as f64 / 1000.0,
        background_events_per_second: background,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "processing  {} events, {} segments + {} computed traits ({} aggregates): {:.1} s, {:.0} events/s",
            report.events,
            report.segments,
            report.computed_traits,
            report.aggregates,
            report.process_seconds,
            report.processed_events_per_second
        );
        println!(
            "backfill    {} profiles in {:.2} s: {:.0} profiles/s",
            report.backfill_profiles, report.backfill_seconds, report.backfill_profiles_per_second
        );
        println!(
            "latency     event sent -> segment entered over {} probes at {:.0} background events/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            report.latency_probes,
            report.background_events_per_second,
            report.latency_p50_ms,
            report.latency_p99_ms,
            report.latency_max_ms
        );
    }
    Ok(())
}

/// Runs the server on the data directory, sends background traffic plus probe events that
/// make a new profile enter `latency_probe`, and measures send → entered for each probe.
fn latency_phase(
    data_dir: &std::path::Path,
    args: &BenchSegmentsArgs,
    admin: &str,
    write: &str,
) -> anyhow::Result<(Histogram<u64>, u64, f64)> {
    // The prepared store has its source and keys: the server prints no welcome.
    let mut server = Server::builder(crate::rapport_bin()?)
        .data_dir(data_dir)
        .keys(write, admin)
        .start_timeout(Duration::from_secs(60))
        .start()
        .context("cannot start the server")?;
    let base = server.url("");
    eprintln!("measuring event → segment entered for {} s…", args.duration);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let (sent_at, background) = runtime.block_on(async {
        // Wait for the processor to take up the probe segment.
        loop {
            let status: serde_json::Value = client
                .get(format!("{base}/api/v1/audiences/status"))
                .bearer_auth(admin)
                .send()
                .await?
                .json()
                .await?;
            if status["backfill"]["state"] == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stop_at = Instant::now() + Duration::from_secs(args.duration);
        // Background: batches of 100 page views from known users.
        let background = {
            let (client, base, write) = (client.clone(), base.clone(), write.to_owned());
            let (rate, users) = (args.rate, args.users);
            tokio::spawn(async move {
                let mut sent = 0u64;
                let started = Instant::now();
                let mut n = 0u64;
                while Instant::now() < stop_at {
                    let batch: Vec<serde_json::Value> = (0..100)
                        .map(|i| {
                            n += 1;
                            json!({"type": "track", "userId": format!("user-{}", (n * 7919 + i) % users),
                                   "event": "Product Viewed", "properties": {"product_id": format!("p-{}", n % 5000), "price": 9.5}})
                        })
                        .collect();
                    if client
                        .post(format!("{base}/v1/batch"))
                        .basic_auth(&write, Some(""))
                        .json(&json!({ "batch": batch }))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                    {
                        sent += 100;
                    }
                    let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                sent as f64 / started.elapsed().as_secs_f64()
            })
        };
        // Probes: one new person every 20 ms, identified as a probe.
        let mut sent_at = Vec::new();
        let mut i = 0u64;
        while Instant::now() < stop_at {
            let t0 = chrono::Utc::now();
            let r = client
                .post(format!("{base}/v1/identify"))
                .basic_auth(write, Some(""))
                .json(&json!({"userId": format!("probe-{i}"), "traits": {"probe": true}}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "probe refused: {}", r.status());
            sent_at.push((i, t0));
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok((sent_at, background.await?))
    })?;
    // Let the processor catch up before reading when each probe entered.
    server
        .wait_processed(Duration::from_secs(600))
        .context("the processor did not catch up")?;
    let result = runtime.block_on(async {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        for (i, t0) in &sent_at {
            let p: serde_json::Value = client
                .get(format!("{base}/api/v1/profiles/user_id:probe-{i}"))
                .bearer_auth(admin)
                .send()
                .await?
                .json()
                .await?;
            let entered = p["segments"]
                .as_array()
                .and_then(|s| s.iter().find(|m| m["segment"] == "latency_probe"))
                .and_then(|m| m["entered_at"].as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .with_context(|| format!("probe {i} never entered the segment: {p}"))?;
            let micros = (entered.with_timezone(&chrono::Utc) - *t0)
                .num_microseconds()
                .unwrap_or(0)
                .max(1);
            hist.record(micros as u64)?;
        }
        anyhow::Ok((hist, sent_at.len() as u64, background))
    });
    server.terminate()?;
    result
}
