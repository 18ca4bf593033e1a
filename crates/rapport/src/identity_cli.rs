//! `rapport identity …`: run probabilistic matching, work through the review queue and edit
//! the identity rules of a running server, through its REST API.

use crate::client::{Answer, Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rapport_api::identity::{Candidate, Outcome, Pair, RulesSaved};
use rapport_api::time;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Find profiles that are one person without a shared identifier: merge the sure
    /// pairs, queue the uncertain ones for review. Shows progress until the run ends.
    Match {
        /// A file holding the matching options as JSON (fields read, thresholds;
        /// docs/identity-matching.md).
        #[arg(long, value_name = "FILE")]
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
        Some(path) => Some(
            serde_json::from_str::<Value>(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?,
        ),
        None => None,
    };
    let run = client.start_matching(body.as_ref())?.value.started_at_ms;
    let bar = if format == Format::Json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} profiles ({elapsed})")
            .expect("valid template"),
    );
    let answer = loop {
        let answer = client.matching()?;
        let status = &answer.value;
        if status.started_at_ms == Some(run) {
            bar.set_message(status.phase.clone().unwrap_or_default());
            bar.set_length(status.profiles_total.unwrap_or(0));
            bar.set_position(status.profiles_read.unwrap_or(0));
            match status.state.as_str() {
                "running" => {}
                "done" => break answer,
                state => {
                    bar.abandon();
                    bail!(
                        "matching {state}: {}",
                        status.error.as_deref().unwrap_or("see the server log")
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    bar.finish();
    let status = &answer.value;
    emit(format, &answer.json, |o| {
        let n = |v: Option<u64>| v.unwrap_or(0);
        out!(
            o,
            "{} profiles read ({} live), {} with at least two fields to compare",
            n(status.profiles_read),
            n(status.live_profiles),
            n(status.records),
        );
        for note in status.notes.iter().flatten() {
            out!(o, "  - {note}");
        }
        out!(
            o,
            "{} profiles compared, {} candidate pairs: {} merged automatically ({} sent to the log), {} to review, {} already decided; {} ms",
            n(status.records),
            n(status.candidate_pairs),
            n(status.matches),
            n(status.merges_appended),
            n(status.review),
            n(status.already_decided),
            n(status.elapsed_ms)
        );
    })
}

/// A whole number as the tables have always shown it, `null` when absent.
fn or_null(v: Option<u64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

/// One pair in a line; a pair of the queue is `pending`.
fn pair_row(o: &mut String, p: &Candidate, status: &str) {
    out!(
        o,
        "{:<32} {:>7.2} {:>6.3}  {}",
        p.pair,
        p.score,
        p.probability,
        status
    );
}

fn pair(o: &mut String, p: &Pair) {
    pair_row(o, &p.candidate, &p.status);
    for f in &p.candidate.fields {
        out!(
            o,
            "  {:<14} {:<28} {:<28} {:<20} {:>6.2}",
            f.field,
            f.left_value.as_deref().unwrap_or("-"),
            f.right_value.as_deref().unwrap_or("-"),
            f.level_label,
            f.weight
        );
    }
    if let Some(outcome) = &p.outcome {
        let status = match &outcome.outcome {
            Outcome::Merged { .. } => "merged",
            Outcome::Refused { .. } => "refused",
            Outcome::AlreadyOne { .. } => "already_one",
            Outcome::Missing => "missing",
        };
        out!(o, "  outcome: {status}");
        if let Outcome::Refused { kind, limit, .. } = &outcome.outcome {
            // The type in quotes, as it has always been shown.
            out!(
                o,
                "  refused by the identity rules: more than {limit} {} on one profile",
                Value::from(kind.as_str())
            );
        }
    }
}

fn review(cmd: ReviewCommand, client: &Client, format: Format) -> anyhow::Result<()> {
    let p = match cmd {
        ReviewCommand::List { limit, cursor } => {
            let page = client.review_queue(limit, cursor.as_deref())?;
            return emit(format, &page.json, |o| {
                out!(o, "{:<32} {:>7} {:>6}  status", "pair", "score", "prob");
                for p in &page.value.data {
                    pair_row(o, p, "pending");
                }
                if let Some(next) = &page.value.next_cursor {
                    out!(o, "more: --cursor {next}");
                }
            });
        }
        ReviewCommand::Show { pair } => client.review_pair(&pair)?,
        ReviewCommand::Accept { pair } => client.accept_pair(&pair)?,
        ReviewCommand::Reject { pair } => client.reject_pair(&pair)?,
    };
    emit(format, &p.json, |o| pair(o, &p.value))
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
    let answer = match cmd {
        RulesCommand::Show => {
            let a = client.identity_rules()?;
            Answer {
                value: RulesSaved::Applied(a.value),
                json: a.json,
            }
        }
        RulesCommand::History => {
            let history = client.identity_rules_history()?;
            return emit(format, &history.json, |o| {
                out!(
                    o,
                    "{:>7}  {:<24} {:>12}  changed by",
                    "version",
                    "updated",
                    "from offset"
                );
                for v in &history.value.data {
                    out!(
                        o,
                        "{:>7}  {:<24} {:>12}  {}",
                        v.version,
                        time::display(v.updated_at.as_deref().unwrap_or("")),
                        or_null(v.offset),
                        v.changed_by.as_deref().unwrap_or("")
                    );
                }
            });
        }
        RulesCommand::Set { file } => client.set_identity_rules(&read_rules(&file)?)?,
    };
    let view = match &answer.value {
        RulesSaved::Applied(view) if format == Format::Table => view,
        RulesSaved::Pending(pending) => {
            return emit(format, &answer.json, |o| {
                out!(
                    o,
                    "saved at log offset {}; the processor has not reached it yet (request {})",
                    or_null(pending.offset),
                    pending.request
                )
            });
        }
        RulesSaved::Applied(_) => return emit(format, &answer.json, |_| {}),
    };
    let rules = toml::to_string(&view.rules)?;
    emit(format, &answer.json, |o| {
        out!(o, "# version {}", view.version);
        out!(o, "[identity]");
        o.push_str(&rules);
    })
}

#[cfg(test)]
mod tests {
    use rapport_api::identity::{IdentifierRule, IdentityRules};

    #[test]
    fn rules_show_as_the_toml_of_the_answer() {
        let mut rules = IdentityRules {
            identifiers: Some(vec![IdentifierRule {
                kind: "email".into(),
                limit: 5,
                window_days: None,
            }]),
            custom_limit: Some(5),
            blocked_values: Some(vec!["n/a".into()]),
            block_all_zeros: Some(true),
            default_country_code: Some("44".into()),
        };
        // What the table printed when it read the answer as JSON.
        let from_json = toml::to_string(&serde_json::to_value(&rules).unwrap()).unwrap();
        assert_eq!(toml::to_string(&rules).unwrap(), from_json);
        // Without a country code the answer holds `null`, which TOML cannot write: read as
        // JSON the table failed; typed, the key is left out.
        rules.default_country_code = None;
        assert!(toml::to_string(&serde_json::to_value(&rules).unwrap()).is_err());
        let shown = toml::to_string(&rules).unwrap();
        assert!(!shown.contains("default_country_code"), "{shown}");
        assert!(shown.contains("block_all_zeros = true"), "{shown}");
    }
}
