//! `rapport-bench`: Rapport's load generators and benchmarks, kept out of the shipped
//! `rapport` binary. Each subcommand measures one part of the system and prints the
//! figures `docs/benchmarks.md` records:
//!
//! - `ingest` — the tracking API: events/s and acknowledgement latency;
//! - `profiles` — the processor (identity, profiles) and profile lookups;
//! - `audiences` — computed traits and segments: processing, backfill, entry latency;
//! - `value` — the value models end to end through the store;
//! - `matching` — probabilistic matching: speed, precision and recall;
//! - `delivery` — webhook destinations: throughput, latency, isolation from a hanging one;
//! - `journeys` — event → journey message latency, customers waiting in timers, steps/s.
//!
//! Benchmarks that need a server start the `rapport` binary: the one named by
//! `RAPPORT_BIN`, else the `rapport` next to this executable (`cargo build --release -p
//! rapport -p rapport-bench` builds both into `target/release/`).

mod audiences;
mod dashboard;
mod delivery;
mod ingest;
mod journeys;
mod matching;
mod privacy;
mod profiles;
mod value;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rapport-bench",
    version,
    about = "Rapport's load generators and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load-test ingest against a fresh server and report throughput and latency.
    Ingest(ingest::BenchArgs),
    /// Measure the processor (identity and profiles) and profile lookups.
    Profiles(profiles::BenchProfilesArgs),
    /// Measure computed traits and segments: processing, backfill, event → entered latency.
    Audiences(audiences::BenchSegmentsArgs),
    /// Measure the value models end to end through the store on a synthetic shop.
    Value {
        #[command(flatten)]
        args: value::BenchModelsArgs,
        /// Run on PostgreSQL at this URL instead of a fresh embedded store.
        #[arg(long, env = "RAPPORT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Measure probabilistic matching of live profiles: speed, and precision and recall
    /// against planted duplicates.
    Matching(matching::BenchMatchingArgs),
    /// Measure webhook delivery: events/s unbatched and batched, event → webhook latency,
    /// and that latency beside a destination whose receiver hangs.
    Delivery(delivery::BenchDeliveryArgs),
    /// Measure journeys: event → message latency under load, memory with customers
    /// waiting in timers, and steps executed per second.
    Journeys(journeys::BenchJourneysArgs),
    /// Measure deleting one person on a store of many events: request to done, and the
    /// purge alone.
    Deletion(privacy::BenchDeletionArgs),
    /// Time every dashboard page in headless Chromium on a server holding many events.
    Dashboard(dashboard::BenchDashboardArgs),
}

/// The `rapport` binary benchmarks start as their server.
pub fn rapport_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAPPORT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let here = std::env::current_exe().context("locating rapport-bench")?;
    let sibling = here.with_file_name(format!("rapport{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sibling.is_file(),
        "no rapport binary at {}: build it (cargo build --release -p rapport) or set RAPPORT_BIN",
        sibling.display()
    );
    Ok(sibling)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest(args) => ingest::run(args),
        Command::Profiles(args) => profiles::run(args),
        Command::Audiences(args) => audiences::run(args),
        Command::Value { args, database_url } => value::run(args, database_url.as_deref()),
        Command::Matching(args) => matching::run(args),
        Command::Delivery(args) => delivery::run(args),
        Command::Journeys(args) => journeys::run(args),
        Command::Deletion(args) => privacy::run(args),
        Command::Dashboard(args) => dashboard::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every subcommand and every flag, hidden ones included, says what it is for.
    #[test]
    fn every_command_and_flag_has_help() {
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
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "rapport-bench", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
