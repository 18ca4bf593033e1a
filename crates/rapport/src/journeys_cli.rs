//! `rapport journeys …`: define, run and watch the journeys of a running server
//! (docs/journeys.md) through `/api/v1/journeys`: list and show them, create one or save a
//! draft from a JSON spec, publish, pause, resume and archive, the flow per version and
//! node with the holdout's lift, a preview of a version over a past range, entries by API,
//! migrations of customers between versions, and the frequency caps across journeys.
//!
//! A spec file is read and checked against the definition's shape (`JourneySpec`) before
//! anything is sent, so that a typo is reported with the file, line and column; the server
//! checks the rest and names the node and field at fault (`nodes.remind.template`).
//!
//! Each subcommand is one variant and one arm of [`run`]; the tables of a version's flow
//! ([`flow_table`]) are shared by `flow` and `preview`, for the commands to come.

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::{Context, bail};
use clap::Subcommand;
use rapport_api::journeys::{Journey, JourneySpec, Lift, PreviewRequest, VersionFlow};
use rapport_api::time;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Subcommand)]
pub enum JourneysCommand {
    /// List journeys: status, live version, versions.
    List,
    /// Show one journey: its status and every version (state, entry, steps, dates).
    Get {
        /// The journey's name.
        journey: String,
    },
    /// Check a JSON spec against the server's segments and computed traits without saving
    /// it, listing every problem by node and field (saving reports the first). It is checked
    /// as a new journey, whose name must be free, unless `--draft` is given.
    Check {
        /// The spec: a JSON file, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
        /// Check it as the next draft of the journey it names (`journeys draft`), which must
        /// exist and not be archived.
        #[arg(long)]
        draft: bool,
    },
    /// Create a journey from a JSON spec: version 1, a draft that runs nothing until it
    /// is published.
    Create {
        /// The spec: a JSON file, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Save a JSON spec as the draft of the journey's next version (replacing an
    /// unpublished draft).
    Draft {
        /// The journey's name (the spec's `name` must be the same).
        journey: String,
        /// The spec: a JSON file, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Publish the draft: it takes new entries from now on.
    Publish {
        /// The journey's name.
        journey: String,
    },
    /// Pause the journey: no one enters, customers inside hold where they are.
    Pause {
        /// The journey's name.
        journey: String,
    },
    /// Resume a paused journey.
    Resume {
        /// The journey's name.
        journey: String,
    },
    /// Archive the journey for good: customers inside exit when next woken.
    Archive {
        /// The journey's name.
        journey: String,
    },
    /// Where customers flow and stall, per version and node: entered, waiting now,
    /// passed, exited by reason, median and p90 time, conversions; the holdout's lift.
    Flow {
        /// The journey's name.
        journey: String,
    },
    /// Run a version over the events received in [--from, --to) and count what it would
    /// have done; nothing is written, nothing is sent.
    Preview {
        /// The journey's name.
        journey: String,
        /// The start of the range, RFC 3339 (`2026-03-01T00:00:00Z`).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// The end of the range, RFC 3339; not after now [default: now].
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// The version to run [default: the draft, else the live version].
        #[arg(long, value_name = "N")]
        version: Option<u32>,
    },
    /// Put customers into a journey whose entry is `api`: each entry goes through the log
    /// and is taken under the journey's re-entry rules, limits and holdout.
    Enter {
        /// The journey's name.
        journey: String,
        /// A customer, as a profile id (`p_…`) or `type:value` (`user_id:42`); repeat for
        /// up to 1,000.
        #[arg(long = "profile", value_name = "REF", required = true)]
        profiles: Vec<String>,
        /// The entry's properties, a JSON object (templates read `entry.properties`).
        #[arg(long, value_name = "JSON")]
        properties: Option<String>,
    },
    /// Move the customers inside one version to another, node by node.
    Migrate {
        /// The journey's name.
        journey: String,
        /// The version whose customers move.
        #[arg(long, value_name = "N")]
        from_version: u32,
        /// The version they move to.
        #[arg(long, value_name = "N")]
        to_version: u32,
        /// `OLD=NEW`: customers on node OLD go to node NEW (repeatable; a node not named
        /// maps to the node of the same name).
        #[arg(long = "node", value_name = "OLD=NEW")]
        nodes: Vec<String>,
    },
    /// Show or set the frequency caps across journeys.
    Caps {
        #[command(subcommand)]
        command: Option<CapsCommand>,
    },
}

/// `rapport journeys caps …`.
#[derive(Subcommand)]
pub enum CapsCommand {
    /// The caps in force (the default).
    Show,
    /// Replace the caps: `TAG=MAX/PER` each, such as `email=3/7d` (at most 3 `email`
    /// messages per customer in any 7 days; tag `*` counts every message).
    Set {
        /// `TAG=MAX/PER`, one or more.
        #[arg(value_name = "TAG=MAX/PER", required = true)]
        caps: Vec<String>,
    },
    /// Remove every cap.
    Clear,
}

/// Reads `TAG=MAX/PER` (`email=3/7d`); the error names the argument.
fn parse_cap(text: &str) -> anyhow::Result<rapport_api::journeys::CapRule> {
    let shape = || format!("{text:?} is not TAG=MAX/PER, such as email=3/7d");
    let (tag, rest) = text.split_once('=').with_context(shape)?;
    let (max, per) = rest.split_once('/').with_context(shape)?;
    let max: u32 = max
        .trim()
        .parse()
        .with_context(|| format!("{text:?}: {max:?} is not a whole number of messages"))?;
    let per = serde_json::from_value(Value::String(per.trim().to_owned()))
        .map_err(|e| anyhow::anyhow!("{text:?}: {per:?} is not a duration such as 7d: {e}"))?;
    Ok(rapport_api::journeys::CapRule {
        tag: tag.trim().to_owned(),
        max,
        per,
    })
}

/// Reads `OLD=NEW` node pairs.
fn parse_nodes(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
            _ => bail!("--node {p:?} is not OLD=NEW, such as --node wait=hold"),
        })
        .collect()
}

/// Reads a spec from `file` (`-`: standard input) and checks it against the definition's
/// shape, naming the file, line and column of the first error; the JSON as written.
fn read_spec(file: &str) -> anyhow::Result<(Value, JourneySpec)> {
    let (name, text) = crate::client::read_input(file, "spec")?;
    check_spec(&name, &text)
}

fn check_spec(name: &str, text: &str) -> anyhow::Result<(Value, JourneySpec)> {
    crate::client::parse_input(name, text)
}

pub fn run(cmd: JourneysCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    // What can be refused without the server is refused before a client is made.
    let spec = match &cmd {
        JourneysCommand::Create { file } | JourneysCommand::Draft { file, .. } => {
            Some(read_spec(file)?.0)
        }
        _ => None,
    };
    let properties = match &cmd {
        JourneysCommand::Enter {
            properties: Some(text),
            ..
        } => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Some(v),
            Ok(_) => bail!("--properties must be a JSON object, such as '{{\"plan\": \"pro\"}}'"),
            Err(e) => bail!("--properties is not JSON: {e}"),
        },
        _ => None,
    };
    let nodes = match &cmd {
        JourneysCommand::Migrate { nodes, .. } => parse_nodes(nodes)?,
        _ => BTreeMap::new(),
    };
    let caps = match &cmd {
        JourneysCommand::Caps {
            command: Some(CapsCommand::Set { caps }),
        } => Some(
            caps.iter()
                .map(|c| parse_cap(c))
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        JourneysCommand::Caps {
            command: Some(CapsCommand::Clear),
        } => Some(Vec::new()),
        _ => None,
    };
    let client = Client::new(server)?;
    match cmd {
        JourneysCommand::Enter {
            journey, profiles, ..
        } => {
            let one = profiles.len() == 1;
            let request = rapport_api::journeys::JourneyEntryRequest {
                profile: one.then(|| profiles[0].clone()),
                profiles: (!one).then_some(profiles),
                properties,
            };
            let a = client.enter_journey(&journey, &request)?;
            emit(format, &a.json, |o| {
                out!(
                    o,
                    "{} entr{} into {journey} written to the log; the processor takes each under the journey's rules (see `rapport journeys flow {journey}` and the profile's timeline)",
                    a.value.entries.len(),
                    if a.value.entries.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                );
                for e in &a.value.entries {
                    out!(o, "  {}  request {}", e.profile, e.request);
                }
            })
        }
        JourneysCommand::Migrate {
            journey,
            from_version,
            to_version,
            ..
        } => {
            let request = rapport_api::journeys::MigrateRequest {
                from_version,
                to_version,
                nodes,
            };
            let a = client.migrate_journey(&journey, &request)?;
            emit(format, &a.json, |o| {
                out!(
                    o,
                    "migration of {journey} v{from_version} → v{to_version} written to the log (request {}); migrated customers show as exited.migrated and migrated_in in `rapport journeys flow {journey}`",
                    a.value.request
                );
            })
        }
        // `show` (or nothing) reads them; `set` and `clear` were read into `caps` above.
        JourneysCommand::Caps { .. } => {
            let setting = caps.is_some();
            let json = match caps {
                Some(caps) => {
                    client.set_journey_caps(&rapport_api::journeys::CapsUpdate { caps })?
                }
                None => client.journey_caps()?.json,
            };
            emit(format, &json, |o| {
                if json["status"] == "pending" {
                    out!(
                        o,
                        "the change is in the log; the processor has not applied it yet (request {})",
                        json["request"].as_str().unwrap_or("?")
                    );
                    return;
                }
                let caps = json["caps"].as_array().cloned().unwrap_or_default();
                if setting {
                    out!(
                        o,
                        "written to the log (request {}) and in force:",
                        json["request"].as_str().unwrap_or("?")
                    );
                }
                if caps.is_empty() {
                    out!(o, "no frequency caps: every journey message goes out");
                }
                for c in caps {
                    out!(
                        o,
                        "{:<16} at most {} per {} per customer",
                        c["tag"].as_str().unwrap_or("?"),
                        c["max"],
                        c["per"].as_str().unwrap_or("?")
                    );
                }
            })
        }
        JourneysCommand::List => {
            let list = client.journeys()?;
            emit(format, &list.json, |o| {
                out!(o, "{:<32} {:<9} {:>5} VERSIONS", "NAME", "STATUS", "LIVE");
                for j in &list.value.data {
                    out!(
                        o,
                        "{:<32} {:<9} {:>5} {}",
                        j.name,
                        j.status,
                        j.live_version.map_or("-".into(), |v| v.to_string()),
                        versions_summary(j)
                    );
                }
            })
        }
        JourneysCommand::Get { journey } => {
            let j = client.journey(&journey)?;
            emit(format, &j.json, |o| show(o, &j.value))
        }
        JourneysCommand::Check { file, draft } => {
            let (json, spec) = read_spec(&file)?;
            let check = client.check_journey(&json, draft)?;
            let errors = &check.value.errors;
            let json = serde_json::json!({
                "name": spec.name,
                "valid": check.value.valid,
                "errors": check.json["errors"],
            });
            emit(format, &json, |o| {
                if errors.is_empty() {
                    out!(
                        o,
                        "{file}: journey {} checks ({} step{}, start {}); nothing was saved",
                        spec.name,
                        spec.nodes.len(),
                        if spec.nodes.len() == 1 { "" } else { "s" },
                        spec.start
                    );
                }
                for e in errors {
                    out!(o, "{}: {}", e.field, e.message);
                }
            })?;
            if !errors.is_empty() {
                bail!(
                    "{file}: journey {} has {} problem(s); nothing was saved",
                    spec.name,
                    errors.len()
                );
            }
            Ok(())
        }
        JourneysCommand::Create { .. } => {
            let j = client.create_journey(&spec.expect("read above"))?;
            emit(format, &j.json, |o| {
                out!(
                    o,
                    "journey {} created; version 1 is a draft: `rapport journeys publish {}` starts it",
                    j.value.name,
                    j.value.name
                );
            })
        }
        JourneysCommand::Draft { journey, .. } => {
            let j = client.save_journey_draft(&journey, &spec.expect("read above"))?;
            emit(format, &j.json, |o| {
                let draft = j.value.versions.iter().rev().find(|v| v.state == "draft");
                out!(
                    o,
                    "journey {}: draft version {} saved; the live version is {}",
                    j.value.name,
                    draft.map_or("?".into(), |v| v.version.to_string()),
                    j.value
                        .live_version
                        .map_or("none".into(), |v| v.to_string())
                );
            })
        }
        JourneysCommand::Publish { journey } => step(&client, format, &journey, "publish"),
        JourneysCommand::Pause { journey } => step(&client, format, &journey, "pause"),
        JourneysCommand::Resume { journey } => step(&client, format, &journey, "resume"),
        JourneysCommand::Archive { journey } => step(&client, format, &journey, "archive"),
        JourneysCommand::Flow { journey } => {
            let flow = client.journey_flow(&journey)?;
            // The journey's steps give the nodes their order (from the start, by `next`).
            let j = client.journey(&journey)?.value;
            emit(format, &flow.json, |o| {
                if flow.value.versions.is_empty() {
                    out!(o, "journey {journey}: no one has entered yet");
                }
                for v in &flow.value.versions {
                    let spec = j.versions.iter().find(|s| s.version == v.version);
                    out!(o, "version {}", v.version);
                    flow_table(o, v, spec.map(|s| &s.spec));
                    out!(o, "");
                }
            })
        }
        JourneysCommand::Preview {
            journey,
            from,
            to,
            version,
        } => {
            let request = PreviewRequest {
                version,
                from,
                to: to.unwrap_or_else(|| time::to_wire(&chrono::Utc::now())),
            };
            let p = client.preview_journey(&journey, &request)?;
            let j = client.journey(&journey)?.value;
            emit(format, &p.json, |o| {
                let p = &p.value;
                out!(
                    o,
                    "journey {} version {}, events received {} .. {}: {} events of {} customers{}",
                    p.journey,
                    p.version,
                    time::display(&p.from),
                    time::display(&p.to),
                    p.events,
                    p.profiles,
                    if p.segment_changes > 0 {
                        format!(", {} segment changes", p.segment_changes)
                    } else {
                        String::new()
                    }
                );
                out!(o, "nothing was written or sent");
                out!(o, "");
                let spec = j.versions.iter().find(|s| s.version == p.version);
                flow_table(o, &p.flow, spec.map(|s| &s.spec));
                out!(o, "");
                out!(
                    o,
                    "messages that would have been sent: {}",
                    counts(&p.messages)
                );
                out!(o, "messages skipped: {}", counts(&p.skipped));
                out!(o, "events emitted: {}", counts(&p.emitted));
                out!(o, "trait changes: {}", p.trait_changes);
                for note in &p.notes {
                    out!(o, "note: {note}");
                }
            })
        }
    }
}

fn step(client: &Client, format: Format, journey: &str, step: &str) -> anyhow::Result<()> {
    let j = client.journey_step(journey, step)?;
    emit(format, &j.json, |o| {
        out!(
            o,
            "journey {}: {} (live version {})",
            j.value.name,
            j.value.status,
            j.value
                .live_version
                .map_or("none".into(), |v| v.to_string())
        );
    })
}

/// `1 retired, 2 live, 3 draft`.
fn versions_summary(j: &Journey) -> String {
    j.versions
        .iter()
        .map(|v| format!("{} {}", v.version, v.state))
        .collect::<Vec<_>>()
        .join(", ")
}

fn entry_summary(spec: &JourneySpec) -> String {
    let v = serde_json::to_value(&spec.entry).unwrap_or(Value::Null);
    match v["type"].as_str() {
        Some("event") => format!("event {}", v["condition"].as_str().unwrap_or("")),
        Some("segment_entered") => {
            format!("entering segment {}", v["segment"].as_str().unwrap_or(""))
        }
        Some("schedule") => format!(
            "every {} from {}, members of {}",
            v["every"].as_str().unwrap_or("?"),
            v["starting"]
                .as_str()
                .map(time::display)
                .unwrap_or_default(),
            v["segment"].as_str().unwrap_or("")
        ),
        Some(other) => other.to_owned(),
        None => "?".into(),
    }
}

fn show(o: &mut String, j: &Journey) {
    out!(o, "journey {}: {}", j.name, j.status);
    out!(
        o,
        "live version: {}",
        j.live_version.map_or("none".into(), |v| v.to_string())
    );
    out!(o, "");
    out!(
        o,
        "{:>7} {:<8} {:>5} {:<20} {:<20} ENTRY",
        "VERSION",
        "STATE",
        "STEPS",
        "CREATED",
        "PUBLISHED"
    );
    for v in &j.versions {
        out!(
            o,
            "{:>7} {:<8} {:>5} {:<20} {:<20} {}",
            v.version,
            v.state,
            v.spec.nodes.len(),
            time::display(&v.created_at),
            v.published_at
                .as_deref()
                .map(time::display)
                .unwrap_or("-".into()),
            entry_summary(&v.spec)
        );
    }
}

/// `email=3, sms=1`, or `none`.
fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds as people read them: `~0 s`, `42 s`, `3.5 min`, `4.0 h`, `2.1 d`.
fn duration(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 0.5 => "~0 s".into(),
        Some(s) if s < 60.0 => format!("{s:.0} s"),
        Some(s) if s < 3600.0 => format!("{:.1} min", s / 60.0),
        Some(s) if s < 86_400.0 => format!("{:.1} h", s / 3600.0),
        Some(s) => format!("{:.1} d", s / 86_400.0),
    }
}

fn percent(f: f64) -> String {
    format!("{:.1} %", f * 100.0)
}

/// `+20.0 pp (95 % interval +5.2 to +33.4 pp)`, then the two rates.
pub fn lift_line(l: &Lift, treated: u64, holdout: u64) -> String {
    format!(
        "{:+.1} pp (95 % interval {:+.1} to {:+.1} pp): treated {} of {treated}, holdout {} of {holdout}",
        l.difference * 100.0,
        l.low * 100.0,
        l.high * 100.0,
        percent(l.treated_rate),
        percent(l.holdout_rate)
    )
}

/// The nodes of `spec` from its start, in the order `next`s reach them, then any other
/// node of `names`.
fn node_order(spec: Option<&JourneySpec>, names: &BTreeSet<String>) -> Vec<String> {
    fn nexts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("next" | "timeout_next" | "else", Value::String(s)) => out.push(s.clone()),
                        _ => nexts(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| nexts(v, out)),
            _ => {}
        }
    }
    let mut order = Vec::new();
    if let Some(spec) = spec {
        let nodes = serde_json::to_value(&spec.nodes).unwrap_or(Value::Null);
        let mut queue = VecDeque::from([spec.start.to_string()]);
        let mut seen = BTreeSet::new();
        while let Some(n) = queue.pop_front() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let mut next = Vec::new();
            nexts(&nodes[&n], &mut next);
            queue.extend(next);
            order.push(n);
        }
    }
    for n in names {
        if !order.contains(n) {
            order.push(n.clone());
        }
    }
    order
}

/// One version's flow: its totals, the holdout's lift, a line per node and the ways taken
/// at each choice.
pub fn flow_table(o: &mut String, v: &VersionFlow, spec: Option<&JourneySpec>) {
    out!(
        o,
        "entered {} treated + {} holdout{}, inside now {}, converted {} (holdout {}), exited: {}",
        v.entered,
        v.holdout_entered,
        if v.migrated_in > 0 {
            format!(", migrated in {}", v.migrated_in)
        } else {
            String::new()
        },
        v.active,
        v.converted,
        v.holdout_converted,
        counts(&v.exited)
    );
    match &v.lift {
        Some(l) => out!(
            o,
            "holdout lift: {}",
            lift_line(l, v.entered, v.holdout_entered)
        ),
        None if v.holdout_entered == 0 => out!(o, "holdout lift: no holdout entries"),
        None => out!(o, "holdout lift: not yet (no treated entries)"),
    }
    out!(
        o,
        "{:<24} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} EXITED",
        "NODE",
        "ENTERED",
        "WAITING",
        "PASSED",
        "CONVERSIONS",
        "ACTIONS",
        "MEDIAN",
        "P90"
    );
    let names: BTreeSet<String> = v.nodes.keys().cloned().collect();
    for name in node_order(spec, &names) {
        let Some(n) = v.nodes.get(&name) else {
            out!(
                o,
                "{name:<24} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} none",
                0,
                0,
                0,
                0,
                0,
                "-",
                "-"
            );
            continue;
        };
        let mut exited = counts(&n.exited);
        if !n.skipped.is_empty() {
            exited.push_str(&format!("; skipped: {}", counts(&n.skipped)));
        }
        out!(
            o,
            "{name:<24} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8} {:>8} {exited}",
            n.entered,
            n.waiting,
            n.passed,
            n.conversions,
            n.actions,
            duration(n.median_seconds),
            duration(n.p90_seconds)
        );
    }
    for (node, ways) in &v.ways {
        let ways: Vec<String> = ways
            .iter()
            .map(|(w, f)| format!("{w}: {} ({} converted)", f.entered, f.converted))
            .collect();
        out!(o, "ways out of {node}: {}", ways.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(0.001)), "~0 s");
        assert_eq!(duration(Some(42.0)), "42 s");
        assert_eq!(duration(Some(210.0)), "3.5 min");
        assert_eq!(duration(Some(4.0 * 3600.0)), "4.0 h");
        assert_eq!(duration(Some(2.1 * 86_400.0)), "2.1 d");
    }

    #[test]
    fn a_misshapen_spec_is_named_by_line_and_column() {
        let e = check_spec("cart.json", "{\n  \"name\": \"x\",\n  \"colour\": 1\n}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cart.json: line 3, column"), "{e}");
        assert!(
            e.contains("colour") && e.ends_with("nothing was sent"),
            "{e}"
        );
    }

    #[test]
    fn nodes_are_listed_from_the_start_by_next() {
        let spec: JourneySpec = serde_json::from_value(serde_json::json!({
            "name": "j", "entry": {"type": "api"}, "start": "w",
            "nodes": {
                "a_last": {"type": "exit"},
                "w": {"type": "wait", "duration": "1h", "next": "s"},
                "s": {"type": "send", "destination": "email", "next": "a_last"}
            }
        }))
        .unwrap();
        let names: BTreeSet<String> = ["a_last", "s", "w"].map(String::from).into();
        assert_eq!(node_order(Some(&spec), &names), ["w", "s", "a_last"]);
    }

    #[test]
    fn lift_is_shown_in_points_with_its_interval() {
        let l = Lift {
            treated_rate: 0.8,
            holdout_rate: 0.6,
            difference: 0.2,
            low: 0.0524,
            high: 0.3339,
        };
        assert_eq!(
            lift_line(&l, 70, 80),
            "+20.0 pp (95 % interval +5.2 to +33.4 pp): treated 80.0 % of 70, holdout 60.0 % of 80"
        );
    }
}
