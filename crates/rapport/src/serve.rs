//! `rapport serve`: opens the store, starts the writer and the consumers, serves HTTP, and on
//! SIGTERM or Ctrl-C stops accepting, answers the requests in flight, drains the writer and
//! the indexer, and closes the store — nothing acknowledged is left behind.

use crate::config::{Config, LogFormat};
use anyhow::Context;
use rapport_engine::access::Access;
use rapport_engine::audiences::RfmSource;
use rapport_engine::identity::runner::{Matcher, MatchingSchedule};
use rapport_engine::indexer::Indexer;
use rapport_engine::ingest::{IngestOptions, Ingestor};
use rapport_engine::processor::ProcessorThread;
use rapport_engine::signal::LogSignal;
use rapport_engine::value::{Models, Schedule};
use rapport_server::{AppState, ServerConfig};
use rapport_store::Store;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

pub fn run(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format, std::io::stderr().is_terminal());
    // Counters exist (at zero) before the consumers start counting.
    rapport_server::telemetry::handle();
    // The port first: a server that cannot listen leaves no data directory behind.
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rapport-http")
        .build()?;
    // Opened outside the runtime: a blocking store (PostgreSQL's client runs its own) must
    // never be driven from async code; handlers reach it through `spawn_blocking`.
    let store = crate::open_store(
        &config.data_dir,
        config.database_url.as_deref(),
        Duration::from_secs(config.database_connect_timeout_secs),
    )?;
    let result = runtime.block_on(serve(config, store.clone(), listener));
    drop(runtime);
    drop(store);
    result
}

/// Logs to standard error; colours only when it is a terminal, so that files, pipes and
/// log collectors get plain text.
fn init_logging(format: LogFormat, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAPPORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    listener: std::net::TcpListener,
) -> anyhow::Result<()> {
    let access = Arc::new(Access::with_options(
        store.clone(),
        rapport_engine::access::AccessOptions {
            cache_ttl: std::time::Duration::from_secs(config.auth_cache_ttl_secs),
            ..Default::default()
        },
    ));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let first_start = {
        let access = access.clone();
        tokio::task::spawn_blocking(move || access.bootstrap(chrono::Utc::now().timestamp_millis()))
            .await??
    };
    if let Some((source, write, admin)) = first_start {
        print_welcome(
            &addr.to_string(),
            &source.name,
            &write.secret,
            &admin.secret,
        );
    }

    let last = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.last_offset()).await??
    };
    let signal = Arc::new(LogSignal::new(last));
    let (ingestor, writer) = Ingestor::start(
        store.clone(),
        signal.clone(),
        IngestOptions {
            dedup_window_ms: (config.dedup_window_hours as i64) * 3_600_000,
            queue_depth: config.ingest_queue_depth,
        },
    );
    let indexer = Indexer::start(store.clone(), signal.clone());
    let processor = ProcessorThread::start(
        store.clone(),
        signal.clone(),
        config.identity.clone(),
        RfmSource {
            event: config.models.purchase_event.clone(),
            revenue_property: config.models.revenue_property.clone(),
        },
    );
    // One delivery worker per destination, behind the processor.
    let deliveries = rapport_engine::destinations::worker::DeliveryThreads::start(store.clone());
    let models = Models::new(store.clone(), config.models.clone())?;
    let schedule = Schedule::start(models.clone());
    let matcher = {
        let (ingestor, runtime) = (ingestor.clone(), tokio::runtime::Handle::current());
        Matcher::new(
            store.clone(),
            Arc::new(move |items| runtime.block_on(ingestor.append(items))),
        )
    };
    // Journeys' `emit` steps reach the log through the same writer as the tracking API.
    let emitter = {
        let (ingestor, runtime) = (ingestor.clone(), tokio::runtime::Handle::current());
        rapport_engine::journey_emitter::Emitter::start(
            store.clone(),
            Arc::new(move |items| runtime.block_on(ingestor.append(items))),
        )
    };
    let privacy = {
        let store = store.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || rapport_engine::privacy::Privacy::new(store))
                .await??,
        )
    };
    let suppressions = rapport_engine::privacy::Privacy::start_refresh(privacy.clone());
    // Deletion requests and retention, appending their control entries through the writer.
    let eraser = {
        let (ingestor, runtime) = (ingestor.clone(), tokio::runtime::Handle::current());
        rapport_engine::privacy::eraser::Eraser::start(
            store.clone(),
            Arc::new(move |items| runtime.block_on(ingestor.append(items))),
            config.privacy.profile_expiry_days,
        )
    };
    let matching_schedule = MatchingSchedule::start(
        matcher.clone(),
        config.matching.interval_hours,
        config.matching.options.clone(),
    );
    let state = AppState {
        config: Arc::new(ServerConfig {
            limits: config.limits,
            identity: config.identity.clone(),
            matching: config.matching.options.clone(),
            cors_allowed_origins: config.cors_origins(),
            rate_limits: config.rate_limits.clone(),
            secure_cookies: config.dashboard.secure_cookies,
            ..ServerConfig::default()
        }),
        store: store.clone(),
        ingestor,
        access: access.clone(),
        signal,
        models: models.clone(),
        matcher: matcher.clone(),
        privacy: privacy.clone(),
        plans: Arc::new(rapport_engine::tracking_plans::TrackingPlans::new(
            store.clone(),
        )),
        sessions: Arc::new(rapport_engine::sessions::Sessions::new(
            store.clone(),
            access.clone(),
        )),
        rejections: Default::default(),
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "Rapport is listening");
    rapport_server::listen::serve(
        listener,
        rapport_server::app(state),
        config.connections,
        shutdown_signal(),
    )
    .await?;
    tracing::info!(
        "stopping: model jobs and matching, then draining the log writer, the indexer, the processor and the destinations"
    );
    // The router (and with it every ingest handle) is gone: the writer drains and exits.
    tokio::task::spawn_blocking(move || {
        // Running fits stop at their next batch; the schedule then finds nothing to start.
        models.shutdown();
        if let Some(s) = schedule {
            s.stop();
        }
        // A matching run holds a handle on the log writer: stop it and let the handle go.
        if let Some(s) = matching_schedule {
            s.stop();
        }
        matcher.shutdown();
        // They hold a handle on the log writer too.
        emitter.stop();
        eraser.stop();
        suppressions.stop();
        writer.join();
        indexer.stop();
        processor.stop();
        // Stopped last: what is not delivered yet stays in the log, delivered after a restart.
        deliveries.stop();
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

fn print_welcome(addr: &str, source: &str, write_key: &str, admin_key: &str) {
    use std::io::Write;
    // A closed standard output (a supervisor that does not read it) must not stop the
    // server: the keys are also recoverable with `rapport keys create --offline`.
    let _ = writeln!(
        std::io::stdout().lock(),
        r#"
Rapport created a source and two keys. The secrets are shown once: keep them.
  source     {source}
  write key  {write_key}
  admin key  {admin_key}

Send an event (any Segment SDK works too: set its host to http://{addr}):
  curl -u '{write_key}:' http://{addr}/v1/track \
    -H 'Content-Type: application/json' \
    -d '{{"userId":"user-42","event":"Signed Up","properties":{{"plan":"pro"}}}}'

Read it back:
  curl -H 'Authorization: Bearer {admin_key}' 'http://{addr}/api/v1/events?userId=user-42'

Or open the dashboard at http://{addr}/ and sign in with the admin key.
"#
    );
}
