//! `rapport identity …`: run probabilistic matching, work through the review queue and edit
//! the identity rules of a running server, through its REST API.

use crate::audience_cli::{print, urlencode};
use crate::client::{Client, ServerArgs};
use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Find profiles that are one person without a shared identifier: merge the sure
    /// pairs, queue the uncertain ones for review. Shows progress until the run ends.
    Match {
        /// Matching options as JSON (fields read, thresholds; docs/identity-matching.md).
        #[arg(long)]
        options: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// The review queue of uncertain pairs.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The identity rules: priorities, limits, blocked values.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Pending pairs, by pair id.
    List {
        /// Pairs per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// One pair with its evidence, decision and outcome.
    Show {
        /// The pair's id, as `review list` shows it.
        pair: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Merge the pair (through the log; the identity rules may still refuse it).
    Accept {
        /// The pair's id, as `review list` shows it.
        pair: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Keep the pair apart; it is not proposed again.
    Reject {
        /// The pair's id, as `review list` shows it.
        pair: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// The rules in force and their version (TOML, or JSON with --json).
    Show {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Every change of the rules: version, when, by which key, from which log offset.
    History {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Replace the rules with those of a .toml or .json file (a TOML file may hold them
    /// under `[identity]`, as the configuration file does). They apply to every event
    /// received after the change, not to profiles already built.
    Set {
        /// A JSON file with the identity rules (`docs/identity.md`).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
}

pub fn identity(cmd: IdentityCommand) -> anyhow::Result<()> {
    match cmd {
        IdentityCommand::Match {
            options,
            server,
            json,
        } => run_match(options, &server, json),
        IdentityCommand::Review(cmd) => review(cmd),
        IdentityCommand::Rules(cmd) => rules(cmd),
    }
}

fn run_match(options: Option<PathBuf>, server: &ServerArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    let body = match options {
        Some(path) => Some(serde_json::from_str::<Value>(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => None,
    };
    let started = client.call(Method::POST, "/api/v1/identity/matching/run", body)?;
    let run = started["started_at_ms"].as_i64().unwrap_or(0);
    let bar = if crate::client::json(json) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} profiles ({elapsed})")
            .expect("valid template"),
    );
    let status = loop {
        let status = client.get("/api/v1/identity/matching")?;
        if status["started_at_ms"].as_i64() == Some(run) {
            bar.set_message(status["phase"].as_str().unwrap_or("").to_owned());
            bar.set_length(status["profiles_total"].as_u64().unwrap_or(0));
            bar.set_position(status["profiles_read"].as_u64().unwrap_or(0));
            match status["state"].as_str() {
                Some("running") => {}
                Some("done") => break status,
                _ => {
                    bar.abandon();
                    bail!(
                        "matching {}: {}",
                        status["state"].as_str().unwrap_or("?"),
                        status["error"].as_str().unwrap_or("see the server log")
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    bar.finish();
    if crate::client::json(json) {
        return print(&status);
    }
    let n = |k: &str| status[k].as_u64().unwrap_or(0);
    println!(
        "{} profiles read ({} live), {} with at least two fields to compare",
        n("profiles_read"),
        n("live_profiles"),
        n("records"),
    );
    for note in status["notes"].as_array().into_iter().flatten() {
        println!("  - {}", note.as_str().unwrap_or(""));
    }
    println!(
        "{} profiles compared, {} candidate pairs: {} merged automatically ({} sent to the log), {} to review, {} already decided; {} ms",
        n("records"),
        n("candidate_pairs"),
        n("matches"),
        n("merges_appended"),
        n("review"),
        n("already_decided"),
        n("elapsed_ms")
    );
    Ok(())
}

fn pair_path(pair: &str, action: &str) -> String {
    format!("/api/v1/identity/review/{}{action}", urlencode(pair))
}

fn print_pair_row(p: &Value) {
    println!(
        "{:<32} {:>7.2} {:>6.3}  {}",
        p["pair"].as_str().unwrap_or(""),
        p["score"].as_f64().unwrap_or(0.0),
        p["probability"].as_f64().unwrap_or(0.0),
        p["status"].as_str().unwrap_or("pending")
    );
}

fn print_pair(p: &Value) {
    print_pair_row(p);
    for f in p["fields"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {:<28} {:<28} {:<20} {:>6.2}",
            f["field"].as_str().unwrap_or(""),
            f["left_value"].as_str().unwrap_or("-"),
            f["right_value"].as_str().unwrap_or("-"),
            f["level_label"].as_str().unwrap_or(""),
            f["weight"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(o) = p.get("outcome").filter(|o| !o.is_null()) {
        println!("  outcome: {}", o["status"].as_str().unwrap_or(""));
        if o["status"] == "refused" {
            println!(
                "  refused by the identity rules: more than {} {} on one profile",
                o["limit"], o["kind"]
            );
        }
    }
}

fn show_pair(p: &Value, json: bool) -> anyhow::Result<()> {
    if crate::client::json(json) {
        return print(p);
    }
    print_pair(p);
    Ok(())
}

fn review(cmd: ReviewCommand) -> anyhow::Result<()> {
    match cmd {
        ReviewCommand::List {
            limit,
            cursor,
            server,
            json,
        } => {
            let mut path = format!("/api/v1/identity/review?limit={limit}");
            if let Some(c) = cursor {
                path.push_str(&format!("&cursor={}", urlencode(&c)));
            }
            let page = Client::new(&server)?.get(&path)?;
            if crate::client::json(json) {
                return print(&page);
            }
            println!("{:<32} {:>7} {:>6}  status", "pair", "score", "prob");
            for p in page["data"].as_array().into_iter().flatten() {
                print_pair_row(p);
            }
            if let Some(next) = page["next_cursor"].as_str() {
                println!("more: --cursor {next}");
            }
            Ok(())
        }
        ReviewCommand::Show { pair, server, json } => {
            let p = Client::new(&server)?.get(&pair_path(&pair, ""))?;
            show_pair(&p, json)
        }
        ReviewCommand::Accept { pair, server, json } => {
            let p = Client::new(&server)?.call(Method::POST, &pair_path(&pair, "/accept"), None)?;
            show_pair(&p, json)
        }
        ReviewCommand::Reject { pair, server, json } => {
            let p = Client::new(&server)?.call(Method::POST, &pair_path(&pair, "/reject"), None)?;
            show_pair(&p, json)
        }
    }
}

/// Reads rules from a TOML or JSON file, as JSON for the API.
fn read_rules(file: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let is_toml = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if !is_toml {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()));
    }
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", file.display()))?;
    let mut value = serde_json::to_value(table)?;
    if let Some(inner) = value.get("identity").filter(|v| v.is_object()).cloned() {
        value = inner;
    }
    Ok(value)
}

fn rules(cmd: RulesCommand) -> anyhow::Result<()> {
    let (json, view) = match cmd {
        RulesCommand::Show { server, json } => {
            (json, Client::new(&server)?.get("/api/v1/identity/rules")?)
        }
        RulesCommand::History { server, json } => {
            let history = Client::new(&server)?.get("/api/v1/identity/rules/history")?;
            if crate::client::json(json) {
                return print(&history);
            }
            println!(
                "{:>7}  {:<24} {:>12}  changed by",
                "version", "updated", "from offset"
            );
            for v in history["data"].as_array().into_iter().flatten() {
                println!(
                    "{:>7}  {:<24} {:>12}  {}",
                    v["version"],
                    v["updated_at"].as_str().unwrap_or(""),
                    v["offset"],
                    v["changed_by"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
        RulesCommand::Set { file, server, json } => {
            let body = read_rules(&file)?;
            let view =
                Client::new(&server)?.call(Method::PUT, "/api/v1/identity/rules", Some(body))?;
            (json, view)
        }
    };
    if crate::client::json(json) {
        return print(&view);
    }
    if view["status"] == "pending" {
        println!(
            "saved at log offset {}; the processor has not reached it yet (request {})",
            view["offset"],
            view["request"].as_str().unwrap_or("")
        );
        return Ok(());
    }
    println!("# version {}", view["version"]);
    println!("[identity]");
    print!("{}", toml::to_string(&view["rules"])?);
    Ok(())
}
