//! `rapport identity …`: run probabilistic matching, work through the review queue and edit
//! the identity rules of a running server, through its REST API.

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rapport_api::time;
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
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One pair with its evidence, decision and outcome.
    Show {
        /// The pair's id (see `rapport identity review list`).
        pair: String,
    },
    /// Merge the pair (through the log; the identity rules may still refuse it).
    Accept {
        /// The pair's id (see `rapport identity review list`).
        pair: String,
    },
    /// Keep the pair apart; it is not proposed again.
    Reject {
        /// The pair's id (see `rapport identity review list`).
        pair: String,
    },
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// The rules in force and their version (TOML, or JSON with --format json).
    Show,
    /// Every change of the rules: version, when, by which key, from which log offset.
    History,
    /// Replace the rules with those of a .toml or .json file (a TOML file may hold them
    /// under `[identity]`, as the configuration file does). They apply to every event
    /// received after the change, not to profiles already built.
    Set {
        /// The rules, as a .toml or .json file.
        file: PathBuf,
    },
}

pub fn identity(cmd: IdentityCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        IdentityCommand::Match { options } => run_match(options, &client, format),
        IdentityCommand::Review(cmd) => review(cmd, &client, format),
        IdentityCommand::Rules(cmd) => rules(cmd, &client, format),
    }
}

fn run_match(options: Option<PathBuf>, client: &Client, format: Format) -> anyhow::Result<()> {
    let body = match options {
        Some(path) => Some(serde_json::from_str::<Value>(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => None,
    };
    let started = client.start_matching(body.as_ref())?;
    let run = started["started_at_ms"].as_i64().unwrap_or(0);
    let bar = if format == Format::Json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} profiles ({elapsed})")
            .expect("valid template"),
    );
    let status = loop {
        let status = client.matching()?;
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
    emit(format, &status, |o| {
        let n = |k: &str| status[k].as_u64().unwrap_or(0);
        out!(
            o,
            "{} profiles read ({} live), {} with at least two fields to compare",
            n("profiles_read"),
            n("live_profiles"),
            n("records"),
        );
        for note in status["notes"].as_array().into_iter().flatten() {
            out!(o, "  - {}", note.as_str().unwrap_or(""));
        }
        out!(
            o,
            "{} profiles compared, {} candidate pairs: {} merged automatically ({} sent to the log), {} to review, {} already decided; {} ms",
            n("records"),
            n("candidate_pairs"),
            n("matches"),
            n("merges_appended"),
            n("review"),
            n("already_decided"),
            n("elapsed_ms")
        );
    })
}

fn pair_row(o: &mut String, p: &Value) {
    out!(
        o,
        "{:<32} {:>7.2} {:>6.3}  {}",
        p["pair"].as_str().unwrap_or(""),
        p["score"].as_f64().unwrap_or(0.0),
        p["probability"].as_f64().unwrap_or(0.0),
        p["status"].as_str().unwrap_or("pending")
    );
}

fn pair(o: &mut String, p: &Value) {
    pair_row(o, p);
    for f in p["fields"].as_array().into_iter().flatten() {
        out!(
            o,
            "  {:<14} {:<28} {:<28} {:<20} {:>6.2}",
            f["field"].as_str().unwrap_or(""),
            f["left_value"].as_str().unwrap_or("-"),
            f["right_value"].as_str().unwrap_or("-"),
            f["level_label"].as_str().unwrap_or(""),
            f["weight"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(outcome) = p.get("outcome").filter(|x| !x.is_null()) {
        out!(o, "  outcome: {}", outcome["status"].as_str().unwrap_or(""));
        if outcome["status"] == "refused" {
            out!(
                o,
                "  refused by the identity rules: more than {} {} on one profile",
                outcome["limit"],
                outcome["kind"]
            );
        }
    }
}

fn review(cmd: ReviewCommand, client: &Client, format: Format) -> anyhow::Result<()> {
    let p = match cmd {
        ReviewCommand::List { limit, cursor } => {
            let page = client.review_queue(limit, cursor.as_deref())?;
            return emit(format, &page, |o| {
                out!(o, "{:<32} {:>7} {:>6}  status", "pair", "score", "prob");
                for p in page["data"].as_array().into_iter().flatten() {
                    pair_row(o, p);
                }
                if let Some(next) = page["next_cursor"].as_str() {
                    out!(o, "more: --cursor {next}");
                }
            });
        }
        ReviewCommand::Show { pair } => client.review_pair(&pair)?,
        ReviewCommand::Accept { pair } => client.accept_pair(&pair)?,
        ReviewCommand::Reject { pair } => client.reject_pair(&pair)?,
    };
    emit(format, &p, |o| pair(o, &p))
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

fn rules(cmd: RulesCommand, client: &Client, format: Format) -> anyhow::Result<()> {
    let view = match cmd {
        RulesCommand::Show => client.identity_rules()?,
        RulesCommand::History => {
            let history = client.identity_rules_history()?;
            return emit(format, &history, |o| {
                out!(
                    o,
                    "{:>7}  {:<24} {:>12}  changed by",
                    "version",
                    "updated",
                    "from offset"
                );
                for v in history["data"].as_array().into_iter().flatten() {
                    out!(
                        o,
                        "{:>7}  {:<24} {:>12}  {}",
                        v["version"],
                        time::display(v["updated_at"].as_str().unwrap_or("")),
                        v["offset"],
                        v["changed_by"].as_str().unwrap_or("")
                    );
                }
            });
        }
        RulesCommand::Set { file } => client.set_identity_rules(&read_rules(&file)?)?,
    };
    if format == Format::Json || view["status"] == "pending" {
        return emit(format, &view, |o| {
            out!(
                o,
                "saved at log offset {}; the processor has not reached it yet (request {})",
                view["offset"],
                view["request"].as_str().unwrap_or("")
            )
        });
    }
    let rules = toml::to_string(&view["rules"])?;
    emit(format, &view, |o| {
        out!(o, "# version {}", view["version"]);
        out!(o, "[identity]");
        o.push_str(&rules);
    })
}
