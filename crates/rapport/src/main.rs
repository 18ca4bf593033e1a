//! The `rapport` binary: `serve` runs the server; `sources` and `keys` manage access on a
//! stopped server's data directory (or use the REST API while it runs); `bench` measures
//! ingest; `fit` and `report` run the value models through a running server.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audience_cli;
mod bench;
mod bench_matching;
mod bench_models;
mod bench_profiles;
mod bench_segments;
mod config;
mod identity_cli;
mod import;
mod models_cli;
mod serve;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rapport_engine::access::Access;
use rapport_store::KeyKind;
use rapport_store::embedded::EmbeddedStore;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "rapport",
    version,
    about = "Rapport: a real-time customer data platform"
)]
struct Cli {
    /// Data directory of the embedded store [default: ./rapport-data].
    #[arg(long, global = true, env = "RAPPORT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store everything in PostgreSQL at this URL instead of the embedded store
    /// (e.g. postgres://rapport@db/rapport).
    #[arg(long, global = true, env = "RAPPORT_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: tracking API, REST API, metrics.
    Serve(config::ServeArgs),
    /// Manage sources (each has write keys).
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Load-test ingest against a fresh server and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Measure the processor (identity and profiles) and profile lookups.
    BenchProfiles(bench_profiles::BenchProfilesArgs),
    /// Measure the value models end to end through the store on a synthetic shop.
    BenchModels(bench_models::BenchModelsArgs),
    /// Measure computed traits and segments: processing, backfill, event → entered latency.
    BenchSegments(bench_segments::BenchSegmentsArgs),
    /// Measure probabilistic matching of live profiles: speed, and precision and recall
    /// against planted duplicates.
    BenchMatching(bench_matching::BenchMatchingArgs),
    /// Import history from a CSV or NDJSON file through a running server's tracking API.
    Import(import::ImportArgs),
    /// Fit a value model on a running server's data (CLV, churn, health) and wait for it.
    #[command(subcommand)]
    Fit(models_cli::FitCommand),
    /// Value reports from a running server: NPS/CES/CSAT, silent majority, earned growth,
    /// health, alerts.
    #[command(subcommand)]
    Report(models_cli::ReportCommand),
    /// Define and inspect segments on a running server.
    #[command(subcommand)]
    Segments(audience_cli::SegmentsCommand),
    /// Define and inspect computed traits on a running server.
    #[command(subcommand)]
    Traits(audience_cli::TraitsCommand),
    /// Probabilistic matching, its review queue, and the identity rules of a running server.
    #[command(subcommand)]
    Identity(identity_cli::IdentityCommand),
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// List sources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a source and its first write key.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a key; its secret is shown once.
    Create {
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Source (name or id) of a write key.
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Write,
    Admin,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone();
    let database_url = cli.database_url.clone();
    match cli.command {
        Command::Serve(args) => {
            let mut config = config::Config::load(&args, data_dir.as_deref())?;
            if database_url.is_some() {
                config.database_url = database_url;
            }
            serve::run(config)
        }
        Command::Sources(cmd) => sources(cmd, open_access(data_dir, database_url.as_deref())?),
        Command::Keys(cmd) => keys(cmd, open_access(data_dir, database_url.as_deref())?),
        Command::Bench(args) => bench::run(args),
        Command::BenchProfiles(args) => bench_profiles::run(args),
        Command::BenchModels(args) => bench_models::run(args, database_url.as_deref()),
        Command::BenchSegments(args) => bench_segments::run(args),
        Command::BenchMatching(args) => bench_matching::run(args),
        Command::Import(args) => import::run(args),
        Command::Fit(cmd) => models_cli::fit(cmd),
        Command::Report(cmd) => models_cli::report(cmd),
        Command::Segments(cmd) => audience_cli::segments(cmd),
        Command::Traits(cmd) => audience_cli::traits(cmd),
        Command::Identity(cmd) => identity_cli::identity(cmd),
    }
}

/// Opens the configured store: PostgreSQL when a URL is given, else the embedded store in
/// the data directory.
pub fn open_store(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn rapport_store::Store>> {
    match database_url {
        Some(url) => Ok(Arc::new(
            rapport_store::postgres::PostgresStore::open(url)
                .context("cannot open the PostgreSQL store")?,
        )),
        None => Ok(Arc::new(EmbeddedStore::open(data_dir).with_context(
            || {
                format!(
                    "cannot open {} (while `rapport serve` runs, manage keys through /api/v1/keys)",
                    data_dir.display()
                )
            },
        )?)),
    }
}

fn open_access(data_dir: Option<PathBuf>, database_url: Option<&str>) -> anyhow::Result<Access> {
    let dir = data_dir.unwrap_or_else(|| config::DEFAULT_DATA_DIR.into());
    Ok(Access::new(open_store(&dir, database_url)?))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn sources(cmd: SourcesCommand, access: Access) -> anyhow::Result<()> {
    match cmd {
        SourcesCommand::List { json } => {
            let sources = access.sources()?;
            if json {
                return print_json(&sources);
            }
            println!("{:<18} {:<24} CREATED", "ID", "NAME");
            for s in sources {
                println!("{:<18} {:<24} {}", s.id, s.name, fmt_time(s.created_at_ms));
            }
        }
        SourcesCommand::Create { name, json } => {
            let (source, key) = access.create_source(&name, now_ms())?;
            if json {
                return print_json(&serde_json::json!({ "source": source, "write_key": key }));
            }
            println!("source {} ({})", source.name, source.id);
            println!("write key (shown once): {}", key.secret);
        }
    }
    Ok(())
}

fn keys(cmd: KeysCommand, access: Access) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { json } => {
            let keys = access.keys()?;
            if json {
                return print_json(&keys);
            }
            println!(
                "{:<18} {:<6} {:<18} {:<12} {:<20} STATUS",
                "ID", "KIND", "SOURCE", "PREFIX", "CREATED"
            );
            for k in keys {
                let status = match k.revoked_at_ms {
                    Some(t) => format!("revoked {}", fmt_time(t)),
                    None => "active".into(),
                };
                let kind = match k.kind {
                    KeyKind::Write => "write",
                    KeyKind::Admin => "admin",
                };
                println!(
                    "{:<18} {:<6} {:<18} {:<12} {:<20} {}",
                    k.id,
                    kind,
                    k.source_id.as_deref().unwrap_or("-"),
                    k.secret_prefix,
                    fmt_time(k.created_at_ms),
                    status
                );
            }
        }
        KeysCommand::Create {
            kind,
            source,
            name,
            json,
        } => {
            let kind = match kind {
                KindArg::Write => KeyKind::Write,
                KindArg::Admin => KeyKind::Admin,
            };
            let name = name.unwrap_or_else(|| match kind {
                KeyKind::Write => "write key".into(),
                KeyKind::Admin => "admin key".into(),
            });
            let key = access.create_key(kind, source.as_deref(), &name, now_ms())?;
            if json {
                return print_json(&key);
            }
            println!(
                "key {} created; secret (shown once): {}",
                key.key.id, key.secret
            );
        }
        KeysCommand::Revoke { id } => {
            let key = access.revoke_key(&id, now_ms())?;
            println!("key {} revoked", key.id);
        }
    }
    Ok(())
}
