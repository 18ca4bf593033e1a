//! The `rapport` binary: `serve` runs the server; `sources` and `keys` manage access through
//! a running server's REST API, like every other management command (`keys create
//! --offline` is the one way in when every admin key is lost); the load generators are
//! a binary of their own, `rapport-bench`;
//! `fit` and `report` run the value models through a running server.
//!
//! No command but `serve` creates a store: a mistyped `--data-dir` is an error, never a new
//! empty data directory.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audience_cli;
mod audit_cli;
mod client;
mod config;
mod destinations_cli;
mod identity_cli;
mod import;
mod journeys_cli;
mod overview_cli;
mod privacy_cli;
mod profiles_cli;
mod serve;
mod sources_cli;
mod tracking_plans_cli;
mod value_cli;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use client::{Answer, Client, Format, ServerArgs, emit};
use rapport_api::keys::{IssuedKey, Key, KeyKind as ApiKeyKind, NewKey};
use rapport_api::sources::{NewSource, Source};
use rapport_api::time;
use rapport_engine::access::Access;
use rapport_store::KeyKind;
use rapport_store::embedded::EmbeddedStore;
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
    #[command(subcommand)]
    command: Command,
}

/// Where a store is, for the commands that open one (`serve`, `keys create --offline`).
#[derive(Args, Clone, Debug, Default)]
struct StoreArgs {
    /// Data directory of the embedded store [default: ./rapport-data].
    #[arg(long, env = "RAPPORT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store everything in PostgreSQL at this URL instead of the embedded store
    /// (e.g. postgres://rapport@db/rapport).
    #[arg(long, env = "RAPPORT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// A management command: the server's address and key, the output format, and what to do.
/// The options are global within the command, so they may follow any of its subcommands.
#[derive(Args)]
struct Managed<C: Subcommand> {
    #[command(flatten)]
    server: client::ServerArgs,
    #[command(flatten)]
    output: client::OutputArgs,
    #[command(subcommand)]
    command: C,
}

/// A value-model command: a management command that can show a progress bar.
#[derive(Args)]
struct WithProgress<C: Subcommand> {
    #[command(flatten)]
    server: client::ServerArgs,
    #[command(flatten)]
    output: client::OutputArgs,
    /// No progress bar or spinner.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: C,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: tracking API, REST API, metrics.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: config::ServeArgs,
    },
    /// Manage the sources of a running server (each has write keys).
    Sources(Managed<SourcesCommand>),
    /// Manage the API keys of a running server.
    Keys(Managed<KeysCommand>),
    /// Import history from a CSV or NDJSON file through a running server's tracking API.
    Import(import::ImportArgs),
    /// Fit a value model on a running server's data (CLV, churn, health) and wait for it.
    Fit(WithProgress<value_cli::FitCommand>),
    /// Value reports from a running server: NPS/CES/CSAT, silent majority, earned growth,
    /// health, alerts.
    Report(WithProgress<value_cli::ReportCommand>),
    /// Define and inspect segments on a running server.
    Segments(Managed<audience_cli::SegmentsCommand>),
    /// Define and inspect computed traits on a running server.
    Traits(Managed<audience_cli::TraitsCommand>),
    /// Probabilistic matching, its review queue, and the identity rules of a running server.
    Identity(Managed<identity_cli::IdentityCommand>),
    /// Define, watch and repair the destinations of a running server (webhooks, forwards,
    /// warehouses): delivery state, test sends, retries, dead letters and their replay,
    /// overview, backfill.
    Destinations(Managed<destinations_cli::DestinationsCommand>),
    /// Profiles of a running server: search by trait, consent per purpose.
    Profiles(Managed<profiles_cli::ProfilesCommand>),
    /// Define, publish and watch the journeys of a running server: drafts from JSON specs,
    /// lifecycle, the flow per step with the holdout's lift, previews over past events.
    Journeys(Managed<journeys_cli::JourneysCommand>),
    /// Delete a person or a range of events with a receipt, and keep the suppression list.
    Privacy(Managed<privacy_cli::PrivacyCommand>),
    /// The audit trail of a running server: who changed what, when, from where.
    Audit(audit_cli::AuditArgs),
    /// The pipeline of a running server at a glance: offsets and lags, storage, events per
    /// minute and source, refusals and dead letters.
    Overview(overview_cli::OverviewArgs),
    /// The events a running server stored, newest first, filtered by user, anonymous id,
    /// type, name, source and time.
    Events(overview_cli::EventsArgs),
    /// The messages a running server's tracking API refused (the last 1,000 of the last
    /// hour, since it started), newest first: code, field and message, never the payload.
    Rejections(overview_cli::RejectionsArgs),
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
    match cli.command {
        Command::Serve { store, args } => {
            let mut config = config::Config::load(&args, store.data_dir.as_deref())?;
            if store.database_url.is_some() {
                config.database_url = store.database_url;
            }
            serve::run(config)
        }
        Command::Sources(m) => sources(m.command, &m.server, m.output.format()),
        Command::Keys(m) => keys(m.command, &m.server, m.output.format()),
        Command::Import(args) => import::run(args),
        Command::Fit(m) => value_cli::fit(m.command, &m.server, m.output.format(), m.quiet),
        Command::Report(m) => value_cli::report(m.command, &m.server, m.output.format(), m.quiet),
        Command::Segments(m) => audience_cli::segments(m.command, &m.server, m.output.format()),
        Command::Traits(m) => audience_cli::traits(m.command, &m.server, m.output.format()),
        Command::Identity(m) => identity_cli::identity(m.command, &m.server, m.output.format()),
        Command::Destinations(m) => destinations_cli::run(m.command, &m.server, m.output.format()),
        Command::Profiles(m) => profiles_cli::run(m.command, &m.server, m.output.format()),
        Command::Privacy(m) => privacy_cli::run(m.command, &m.server, m.output.format()),
        Command::Journeys(m) => journeys_cli::run(m.command, &m.server, m.output.format()),
        Command::Audit(args) => audit_cli::run(args),
        Command::Overview(args) => overview_cli::run_overview(args),
        Command::Events(args) => overview_cli::run_events(args),
        Command::Rejections(args) => overview_cli::run_rejections(args),
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
fn open_existing_store(store: StoreArgs) -> anyhow::Result<Access> {
    let dir = store
        .data_dir
        .unwrap_or_else(|| config::DEFAULT_DATA_DIR.into());
    let database_url = store.database_url.as_deref();
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

#[derive(Subcommand)]
enum SourcesCommand {
    /// List sources.
    List,
    /// Create a source and its first write key.
    Create {
        /// The source's name, unique among sources (e.g. `ios app`).
        name: String,
    },
    #[command(flatten)]
    Settings(sources_cli::SourceSettingsCommand),
    /// A source's tracking plan: show it, set it from a file, clear it, and its violations.
    #[command(subcommand)]
    Plan(tracking_plans_cli::PlanCommand),
}

/// An admin key's scope, as `--scope` takes it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ScopeArg {
    Read,
    #[value(name = "read_masked")]
    ReadMasked,
    Configure,
    Delete,
}

impl ScopeArg {
    fn engine(self) -> rapport_engine::access::Scope {
        use rapport_engine::access::Scope;
        match self {
            ScopeArg::Read => Scope::Read,
            ScopeArg::ReadMasked => Scope::ReadMasked,
            ScopeArg::Configure => Scope::Configure,
            ScopeArg::Delete => Scope::Delete,
        }
    }

    fn wire(self) -> rapport_api::keys::Scope {
        use rapport_api::keys::Scope;
        match self {
            ScopeArg::Read => Scope::Read,
            ScopeArg::ReadMasked => Scope::ReadMasked,
            ScopeArg::Configure => Scope::Configure,
            ScopeArg::Delete => Scope::Delete,
        }
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List keys (never their secrets).
    List,
    /// Create a key; its secret is shown once.
    Create {
        /// What the key may do: send events for one source, or administer.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Source (name or id) of a write key.
        #[arg(long)]
        source: Option<String>,
        /// A name to tell the key apart in listings [default: `write key` or `admin key`].
        #[arg(long)]
        name: Option<String>,
        /// An admin key's scope (repeat for several): read, read_masked (read with personal
        /// data masked), configure, delete [default: the scopes of the key creating it; every
        /// scope with --offline].
        #[arg(long = "scope", value_enum)]
        scopes: Vec<ScopeArg>,
        /// Write the key into the store of a stopped server (--data-dir or --database-url)
        /// instead of asking a running one: the way back in when every admin key is lost.
        /// Refuses a directory that holds no store.
        #[arg(long)]
        offline: bool,
        /// With --offline: the store to write the key into.
        #[command(flatten)]
        store: OfflineStoreArgs,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key's id (`key_…`, see `rapport keys list`).
        id: String,
    },
}

/// [`StoreArgs`] as `keys create` offers them: read only with `--offline` (not refused
/// without it, so that the variables `serve` reads may be set for every command).
#[derive(Args, Clone, Debug, Default)]
struct OfflineStoreArgs {
    /// With --offline: data directory of the embedded store [default: ./rapport-data].
    #[arg(long, env = "RAPPORT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// With --offline: the PostgreSQL URL of the store, instead of the embedded one.
    #[arg(long, env = "RAPPORT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    /// Sends events for one source (`--source`).
    Write,
    /// Reads and administers through the REST API.
    Admin,
}

fn source_header(o: &mut String) {
    out!(o, "{:<18} {:<24} CREATED", "ID", "NAME");
}

fn source_row(o: &mut String, s: &Source) {
    out!(
        o,
        "{:<18} {:<24} {}",
        s.id,
        s.name,
        time::display_ms(s.created_at_ms)
    );
}

fn sources(cmd: SourcesCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    match cmd {
        SourcesCommand::Settings(cmd) => sources_cli::run(cmd, server, format),
        SourcesCommand::Plan(cmd) => tracking_plans_cli::run(cmd, server, format),
        SourcesCommand::List => {
            let list = Client::new(server)?.sources()?;
            emit(format, &list.json, |o| {
                source_header(o);
                for s in &list.value.data {
                    source_row(o, s);
                }
            })
        }
        SourcesCommand::Create { name } => {
            let created = Client::new(server)?.create_source(&NewSource {
                name,
                settings: None,
            })?;
            emit(format, &created.json, |o| {
                let c = &created.value;
                source_header(o);
                source_row(o, &c.source);
                out!(
                    o,
                    "write key {} (shown once): {}",
                    c.write_key.key.id,
                    c.write_key.secret
                );
            })
        }
    }
}

fn key_header(o: &mut String) {
    out!(
        o,
        "{:<18} {:<6} {:<18} {:<24} {:<12} {:<20} {:<20} SCOPES",
        "ID",
        "KIND",
        "SOURCE",
        "NAME",
        "PREFIX",
        "CREATED",
        "STATUS"
    );
}

fn key_row(o: &mut String, k: &Key) {
    let status = match k.revoked_at_ms {
        Some(t) => format!("revoked {}", time::display_ms(t)),
        None => "active".into(),
    };
    let kind = match k.kind {
        ApiKeyKind::Write => "write",
        ApiKeyKind::Admin => "admin",
    };
    let scopes = match &k.scopes {
        Some(list) => list
            .iter()
            .map(|s| match s {
                rapport_api::keys::Scope::Read => "read",
                rapport_api::keys::Scope::ReadMasked => "read_masked",
                rapport_api::keys::Scope::Configure => "configure",
                rapport_api::keys::Scope::Delete => "delete",
            })
            .collect::<Vec<_>>()
            .join(","),
        None => "-".into(),
    };
    out!(
        o,
        "{:<18} {:<6} {:<18} {:<24} {:<12} {:<20} {:<20} {}",
        k.id,
        kind,
        k.source_id.as_deref().unwrap_or("-"),
        if k.name.is_empty() { "-" } else { &k.name },
        k.secret_prefix,
        time::display_ms(k.created_at_ms),
        status,
        scopes
    );
}

fn keys(cmd: KeysCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List => {
            let list = Client::new(server)?.keys()?;
            emit(format, &list.json, |o| {
                key_header(o);
                for k in &list.value.data {
                    key_row(o, k);
                }
            })
        }
        KeysCommand::Create {
            kind,
            source,
            name,
            scopes,
            offline,
            store,
        } => {
            let scopes = (!scopes.is_empty()).then_some(scopes);
            let key: Answer<IssuedKey> = if offline {
                let access = open_existing_store(StoreArgs {
                    data_dir: store.data_dir,
                    database_url: store.database_url,
                })?;
                let kind = match kind {
                    KindArg::Write => KeyKind::Write,
                    KindArg::Admin => KeyKind::Admin,
                };
                let name = name.unwrap_or_else(|| match kind {
                    KeyKind::Write => "write key".into(),
                    KeyKind::Admin => "admin key".into(),
                });
                let now = chrono::Utc::now().timestamp_millis();
                let scopes: Option<rapport_engine::access::Scopes> =
                    scopes.map(|l| l.into_iter().map(ScopeArg::engine).collect());
                let json = serde_json::to_value(access.create_key_with_scopes(
                    kind,
                    source.as_deref(),
                    &name,
                    scopes.as_ref(),
                    now,
                )?)?;
                Answer {
                    value: serde_json::from_value(json.clone())?,
                    json,
                }
            } else {
                let kind = match kind {
                    KindArg::Write => ApiKeyKind::Write,
                    KindArg::Admin => ApiKeyKind::Admin,
                };
                Client::new(server)?.create_key(&NewKey {
                    kind,
                    source,
                    name,
                    scopes: scopes.map(|l| l.into_iter().map(ScopeArg::wire).collect()),
                })?
            };
            emit(format, &key.json, |o| {
                key_header(o);
                key_row(o, &key.value.key);
                out!(o, "secret (shown once): {}", key.value.secret);
            })
        }
        KeysCommand::Revoke { id } => {
            let key = Client::new(server)?.revoke_key(&id)?;
            emit(format, &key.json, |o| {
                key_header(o);
                key_row(o, &key.value);
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and every argument it has, hidden ones included (a hidden flag
    /// needs help text too, so that none is kept without a word on why), with a path to
    /// name it.
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if cmd
            .get_about()
            .is_none_or(|a| a.to_string().trim().is_empty())
        {
            missing.push(format!("{path} (command)"));
        }
        for arg in cmd.get_arguments() {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_command_and_flag_has_help() {
        use clap::CommandFactory;
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut cli = cli;
        // Built, so that global options are propagated to the subcommands that offer them.
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "rapport", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    /// Options that do nothing for a command are not offered by it.
    #[test]
    fn store_options_belong_to_the_commands_that_open_a_store() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let offers = |path: &[&str], long: &str| {
            let mut cmd = &cli;
            for name in path {
                cmd = cmd.find_subcommand(name).unwrap();
            }
            cmd.get_arguments()
                .any(|a| !a.is_hide_set() && a.get_long() == Some(long))
        };
        assert!(offers(&["serve"], "data-dir") && offers(&["serve"], "database-url"));
        assert!(offers(&["keys", "create"], "data-dir"));
        for path in [
            &["sources", "list"][..],
            &["segments", "list"],
            &["fit", "clv"],
        ] {
            assert!(!offers(path, "data-dir"), "{path:?}");
            assert!(!offers(path, "database-url"), "{path:?}");
            assert!(offers(path, "format") && offers(path, "url"), "{path:?}");
        }
        assert!(!offers(&["serve"], "format") && !offers(&["serve"], "admin-key"));
    }

    /// The former forms are gone: `--data-dir` and `--database-url` before the command,
    /// and `--json` for `--format json`, not even hidden.
    #[test]
    fn no_former_form_is_accepted() {
        use clap::CommandFactory;
        fn check(cmd: &clap::Command, path: &str, stores: bool, found: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let long = arg.get_long().unwrap_or_default();
                let misplaced = !stores && matches!(long, "data-dir" | "database-url");
                if misplaced || long == "json" {
                    found.push(format!("{path} --{long}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                // `import --json COL` types CSV cells: not the former output flag.
                if sub.get_name() == "import" {
                    continue;
                }
                let stores = path == "rapport serve" || path == "rapport keys create";
                check(sub, &path, stores, found);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut found = Vec::new();
        check(&cli, "rapport", false, &mut found);
        assert!(found.is_empty(), "former forms still accepted: {found:#?}");
        for args in [
            &["rapport", "--data-dir", "d", "serve"][..],
            &["rapport", "--database-url", "postgres://h/d", "serve"],
            &["rapport", "sources", "list", "--json"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["rapport", "serve", "--data-dir", "d"]).is_ok());
    }

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
