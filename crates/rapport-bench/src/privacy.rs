//! `rapport-bench deletion`: how long deleting one person takes on a store of many events —
//! from the request to `done`, with the processor, the indexer and the eraser running in
//! this process on a fresh embedded store — and how much of it is the final purge.

use clap::Args;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rapport_core::identity::IdentityRules;
use rapport_engine::EngineError;
use rapport_engine::privacy::deletion::PersonRequest;
use rapport_engine::privacy::{DeletionStatus, Privacy, eraser};
use rapport_engine::processor::Processor;
use rapport_store::Store;
use rapport_store::embedded::EmbeddedStore;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchDeletionArgs {
    /// Events in the log before the deletion.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct people the events come from.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Outcome {
    events: u64,
    users: u64,
    load_seconds: f64,
    deletion_seconds: f64,
    purge_seconds: f64,
    log_entries_erased: u64,
    data_dir_bytes: u64,
}

pub fn run(args: BenchDeletionArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&temp.path().join("data"))?);
    let started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(7);
    let users = args.users;
    crate::profiles::fill_log(
        store.as_ref(),
        (0..args.events).map(|seq| crate::profiles::message(&mut rng, users, seq)),
    )?;
    let mut processor = Processor::new(store.clone(), IdentityRules::default());
    processor.run_to_end()?;
    while rapport_engine::indexer::index_available(store.as_ref())? > 0 {}
    let load_seconds = started.elapsed().as_secs_f64();

    let privacy = Privacy::new(store.clone())?;
    let appender = store.clone();
    let append: rapport_engine::identity::runner::SharedAppend = Arc::new(move |items| {
        appender
            .append(&items, chrono::Utc::now().timestamp_millis(), 86_400_000)
            .map_err(EngineError::from)
    });
    let started = Instant::now();
    let request = privacy.deletions.request_person(
        PersonRequest {
            references: vec!["user_id:user-42".into()],
            suppress: true,
            requested_by: None,
        },
        &privacy.suppressions,
        chrono::Utc::now(),
    )?;
    let done = loop {
        eraser::tick(&store, &append, chrono::Utc::now(), None)?;
        processor.run_to_end()?;
        while rapport_engine::indexer::index_available(store.as_ref())? > 0 {}
        let record = privacy
            .deletions
            .get(&request.id)?
            .expect("the request is stored");
        if record.status == DeletionStatus::Done {
            break record;
        }
    };
    let deletion_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.purge()?;
    let purge_seconds = started.elapsed().as_secs_f64();
    let outcome = Outcome {
        events: args.events,
        users,
        load_seconds,
        deletion_seconds,
        purge_seconds,
        log_entries_erased: done
            .receipt
            .iter()
            .find(|l| l.store == "log")
            .map_or(0, |l| l.removed),
        data_dir_bytes: store.disk_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "{} events of {} people (loaded and processed in {:.1} s, {:.0} MiB on disk)",
            outcome.events,
            outcome.users,
            outcome.load_seconds,
            outcome.data_dir_bytes as f64 / (1 << 20) as f64
        );
        println!(
            "deleting one person ({} log entries erased): {:.2} s from request to done, of which a purge alone takes {:.2} s",
            outcome.log_entries_erased, outcome.deletion_seconds, outcome.purge_seconds
        );
    }
    Ok(())
}
