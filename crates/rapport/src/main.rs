//! The `rapport` binary: `serve` runs the server; `sources` and `keys` manage access through
//! a running server's REST API, like every other management command (`keys create
//! --offline` is the one way in when every admin key is lost); `fit` and `report` run the
//! value models through a running server. The load generators are a separate binary,
//! `rapport-bench`, not shipped in this one.
//!
//! No command but `serve` creates a store: a mistyped `--data-dir` is an error, never a new
//! empty data directory.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audience_cli;
mod config;
mod identity_cli;
mod import;
mod serve;
mod sources_cli;
mod value_cli;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use rapport_engine::access::Access;
use rapport_store::KeyKind;
use rapport_store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    #[arg(
        long,
        global = true,
        env = "RAPPORT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: tracking API, REST API, metrics.
    Serve(config::ServeArgs),
    /// Manage the sources of a running server (each has write keys).
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Manage the API keys of a running server.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Import history from a CSV or NDJSON file through a running server's tracking API.
    Import(import::ImportArgs),
    /// Fit a value model on a running server's data (CLV, churn, health) and wait for it.
    #[command(subcommand)]
    Fit(value_cli::FitCommand),
    /// Value reports from a running server: NPS/CES/CSAT, silent majority, earned growth,
    /// health, alerts.
    #[command(subcommand)]
    Report(value_cli::ReportCommand),
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: a cause whose text its parent
/// already quotes (`I/O error: Permission denied` over `Permission denied`) is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !previous.is_empty() && previous.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        previous = text;
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
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
        Command::Sources(cmd) => sources(cmd),
        Command::Keys(cmd) => keys(cmd, data_dir, database_url.as_deref()),
        Command::Import(args) => import::run(args),
        Command::Fit(cmd) => value_cli::fit(cmd),
        Command::Report(cmd) => value_cli::report(cmd),
        Command::Segments(cmd) => audience_cli::segments(cmd),
        Command::Traits(cmd) => audience_cli::traits(cmd),
        Command::Identity(cmd) => identity_cli::identity(cmd),
    }
}

/// Opens the configured store: PostgreSQL when a URL is given, else the embedded store in
/// the data directory.
pub fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
    connect_timeout: Duration,
) -> anyhow::Result<Arc<dyn rapport_store::Store>> {
    use rapport_store::postgres::{PostgresOptions, PostgresStore};
    match database_url {
        Some(url) => {
            let options = PostgresOptions {
                connect_timeout,
                ..PostgresOptions::default()
            };
            let Some(target) = PostgresStore::describe_target(url, &options) else {
                bail!(
                    "the database URL is not a PostgreSQL URL (expected e.g. postgres://user@host:5432/database)"
                );
            };
            tracing::info!("connecting to PostgreSQL at {target}");
            Ok(Arc::new(
                PostgresStore::open_with(url, options)
                    .with_context(|| format!("cannot open the PostgreSQL store at {target}"))?,
            ))
        }
        None => Ok(Arc::new(EmbeddedStore::open(data_dir).with_context(
            || format!("cannot open the data directory {}", data_dir.display()),
        )?)),
    }
}

/// Whether `dir` holds an embedded store (what `rapport serve` creates on first start).
fn holds_store(dir: &Path) -> bool {
    dir.join("log").is_dir() && dir.join("state").is_dir()
}

/// Opens an existing store without a server, for `keys create --offline`: never creates a
/// data directory.
fn open_existing_store(
    data_dir: Option<PathBuf>,
    database_url: Option<&str>,
) -> anyhow::Result<Access> {
    let dir = data_dir.unwrap_or_else(|| config::DEFAULT_DATA_DIR.into());
    if database_url.is_none() && !holds_store(&dir) {
        bail!(
            "{} holds no Rapport store (the first `rapport serve` creates it); check --data-dir",
            dir.display()
        );
    }
    let store = open_store(
        &dir,
        database_url,
        rapport_store::postgres::DEFAULT_CONNECT_TIMEOUT,
    )?;
    Ok(Access::new(store))
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

/// Where the server is, and the admin key to use.
#[derive(Args, Clone)]
struct Remote {
    /// Base URL of the running server.
    #[arg(long, env = "RAPPORT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin key (the first `rapport serve` prints one).
    #[arg(long, env = "RAPPORT_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

impl Remote {
    fn client(&self) -> anyhow::Result<audience_cli::Client> {
        let Some(key) = &self.admin_key else {
            bail!(
                "an admin key is needed: pass --admin-key or set RAPPORT_ADMIN_KEY (the first `rapport serve` prints one)"
            );
        };
        audience_cli::Client::new(&audience_cli::ServerArgs {
            url: self.url.clone(),
            admin_key: key.clone(),
        })
    }
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// List sources.
    List {
        #[command(flatten)]
        server: Remote,
        #[arg(long)]
        json: bool,
    },
    /// Create a source and its first write key.
    Create {
        name: String,
        #[command(flatten)]
        server: Remote,
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Settings(sources_cli::SourceSettingsCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        server: Remote,
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
        /// Write the key into the store of a stopped server (--data-dir or --database-url)
        /// instead of asking a running one: the way back in when every admin key is lost.
        /// Refuses a directory that holds no store.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        server: Remote,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        server: Remote,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Write,
    Admin,
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("-")
}

fn time_of(v: &Value, field: &str) -> String {
    v[field].as_i64().map(fmt_time).unwrap_or_default()
}

fn print_source_header() {
    println!("{:<18} {:<24} CREATED", "ID", "NAME");
}

fn print_source_row(s: &Value) {
    println!(
        "{:<18} {:<24} {}",
        str_of(s, "id"),
        str_of(s, "name"),
        time_of(s, "created_at_ms")
    );
}

fn sources(cmd: SourcesCommand) -> anyhow::Result<()> {
    match cmd {
        SourcesCommand::Settings(cmd) => return sources_cli::run(cmd),
        SourcesCommand::List { server, json } => {
            let list = server.client()?.get("/api/v1/sources")?;
            if json {
                return print_json(&list);
            }
            print_source_header();
            for s in list["data"].as_array().into_iter().flatten() {
                print_source_row(s);
            }
        }
        SourcesCommand::Create { name, server, json } => {
            let created = server.client()?.call(
                reqwest::Method::POST,
                "/api/v1/sources",
                Some(json!({ "name": name })),
            )?;
            if json {
                return print_json(&created);
            }
            print_source_header();
            print_source_row(&created["source"]);
            let key = &created["write_key"];
            println!(
                "write key {} (shown once): {}",
                str_of(key, "id"),
                str_of(key, "secret")
            );
        }
    }
    Ok(())
}

fn print_key_header() {
    println!(
        "{:<18} {:<6} {:<18} {:<12} {:<20} STATUS",
        "ID", "KIND", "SOURCE", "PREFIX", "CREATED"
    );
}

fn print_key_row(k: &Value) {
    let status = match k["revoked_at_ms"].as_i64() {
        Some(t) => format!("revoked {}", fmt_time(t)),
        None => "active".into(),
    };
    println!(
        "{:<18} {:<6} {:<18} {:<12} {:<20} {}",
        str_of(k, "id"),
        str_of(k, "kind"),
        str_of(k, "source_id"),
        str_of(k, "secret_prefix"),
        time_of(k, "created_at_ms"),
        status
    );
}

fn keys(
    cmd: KeysCommand,
    data_dir: Option<PathBuf>,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { server, json } => {
            let list = server.client()?.get("/api/v1/keys")?;
            if json {
                return print_json(&list);
            }
            print_key_header();
            for k in list["data"].as_array().into_iter().flatten() {
                print_key_row(k);
            }
        }
        KeysCommand::Create {
            kind,
            source,
            name,
            offline,
            server,
            json,
        } => {
            let kind = match kind {
                KindArg::Write => KeyKind::Write,
                KindArg::Admin => KeyKind::Admin,
            };
            let key: Value = if offline {
                let access = open_existing_store(data_dir, database_url)?;
                let name = name.unwrap_or_else(|| match kind {
                    KeyKind::Write => "write key".into(),
                    KeyKind::Admin => "admin key".into(),
                });
                let now = chrono::Utc::now().timestamp_millis();
                serde_json::to_value(access.create_key(kind, source.as_deref(), &name, now)?)?
            } else {
                server.client()?.call(
                    reqwest::Method::POST,
                    "/api/v1/keys",
                    Some(json!({ "kind": kind, "source": source, "name": name })),
                )?
            };
            if json {
                return print_json(&key);
            }
            print_key_header();
            print_key_row(&key);
            println!("secret (shown once): {}", str_of(&key, "secret"));
        }
        KeysCommand::Revoke { id, server, json } => {
            let key = server.client()?.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/keys/{}", audience_cli::urlencode(&id)),
                None,
            )?;
            if json {
                return print_json(&key);
            }
            print_key_header();
            print_key_row(&key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let e = anyhow::Error::new(rapport_store::StoreError::Io(io))
            .context("cannot open the data directory /srv/rapport");
        assert_eq!(
            error_chain(&e),
            "cannot open the data directory /srv/rapport: I/O error: Permission denied"
        );
    }
}
