//! `rapport destinations …`: define, watch and repair the destinations of a running server
//! (docs/destinations.md) through `/api/v1/destinations`: list, show, create and update from
//! a JSON spec, delete, pause and resume, a test send, the webhook secret, retries, dead
//! letters and their replay.
//!
//! A spec file is read and checked against the definition's shape (`DestinationSpec`)
//! before anything is sent, so that a typo is reported with the file, line and column; it is
//! then sent as written, for the server to check the rest and name the field at fault.

use crate::client::{Client, Format, PageArgs, Pages, ServerArgs, emit};
use crate::out;
use anyhow::bail;
use clap::Subcommand;
use rapport_api::destinations::{BackfillRequest, Destination, DestinationSpec, Kind, Replay};
use rapport_api::time;
use serde_json::Value;

#[derive(Subcommand)]
pub enum DestinationsCommand {
    /// List destinations with where their delivery stands.
    List,
    /// Show one destination: its definition and where its delivery stands.
    Show {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// Create a destination from a JSON spec (docs/destinations.md); a webhook's signing
    /// secret is printed this once.
    Create {
        /// The spec: a JSON file, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Replace a destination's definition with a JSON spec; its place in the log, its
    /// retries and dead letters stay (a webhook spec without `secret` keeps its secret).
    Update {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        /// The new spec: a JSON file, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Delete a destination with its retries and dead letters (asks nothing: needs --yes).
    Delete {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        /// Confirm the deletion: its parked retries and dead letters are deleted with it.
        #[arg(long)]
        yes: bool,
    },
    /// Pause delivery; the destination keeps its place in the log.
    Pause {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// Resume delivery from where it paused.
    Resume {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// Send one synthetic `Rapport Test Event` now, outside the log; exits with 1 when the
    /// receiver does not accept it.
    Test {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// Print a webhook's signing secret.
    Secret {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// The messages parked for a retry, soonest first.
    Retries {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
    },
    /// The dead-letter queue: what the receiver refused or what was retried past the
    /// give-up age, with the last answer.
    DeadLetters {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Put dead letters back for delivery, once the cause is fixed: the ones named, or all
    /// with --all; each is tried at once, its attempts counted afresh.
    Replay {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        /// An event to replay, by log offset (repeat the flag for more).
        #[arg(long = "offset", value_name = "N")]
        offsets: Vec<u64>,
        /// A segment entry or exit to replay, by audience feed sequence number (repeatable).
        #[arg(long = "audience-change", value_name = "N")]
        audience_changes: Vec<u64>,
        /// A trait change to replay, by trait-change feed sequence number (repeatable).
        #[arg(long = "trait-change", value_name = "N")]
        trait_changes: Vec<u64>,
        /// A value-model alert to replay, by its position in the alert feed (repeatable).
        #[arg(long = "alert", value_name = "N")]
        alerts: Vec<u64>,
        /// A journey's message to replay, by journey action feed sequence number
        /// (repeatable).
        #[arg(long = "journey-action", value_name = "N")]
        journey_actions: Vec<u64>,
        /// Replay every dead letter of the destination.
        #[arg(long, conflicts_with_all = ["offsets", "audience_changes", "trait_changes", "alerts", "journey_actions"])]
        all: bool,
        /// Of those, only the ones that failed at or after this time, RFC 3339
        /// (`2024-06-01T00:00:00Z`); alone, every dead letter that failed since.
        #[arg(long, value_name = "TIME")]
        failed_since: Option<String>,
        /// Of those, only the ones that failed before this time, RFC 3339.
        #[arg(long, value_name = "TIME")]
        failed_until: Option<String>,
    },
    /// Per hour and in total: delivered, retried, dead-lettered, requests, request latency
    /// p50/p99 and the last error.
    Overview {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        /// The hours to show, up to now (1 to 744).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=744))]
        hours: u32,
    },
    /// Replay the events timestamped in [--since, --until) from the log into the
    /// destination, beside its live delivery; or stop its backfill with --cancel.
    Backfill {
        /// The destination, by id (`dst_…`) or name.
        destination: String,
        /// The first event time replayed, RFC 3339 (`2024-06-01T00:00:00Z`).
        #[arg(long, required_unless_present = "cancel")]
        since: Option<String>,
        /// The event time the replay stops before, RFC 3339.
        #[arg(long, required_unless_present = "cancel")]
        until: Option<String>,
        /// Stop the destination's backfill and forget it.
        #[arg(long, conflicts_with_all = ["since", "until"])]
        cancel: bool,
    },
}

/// Reads a spec from `file` (`-`: standard input) and checks it against the definition's
/// shape, naming the file, line and column of the first error; the JSON as written.
pub fn read_spec(file: &str) -> anyhow::Result<Value> {
    let (name, text) = crate::client::read_input(file, "spec")?;
    check_spec(&name, &text)
}

/// The JSON of `text`, once it reads as a [`DestinationSpec`]; an error that names `name`
/// and the line and column otherwise.
fn check_spec(name: &str, text: &str) -> anyhow::Result<Value> {
    Ok(crate::client::parse_input::<DestinationSpec>(name, text)?.0)
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Webhook { .. } => "webhook",
        Kind::Forward { .. } => "forward",
        Kind::Warehouse { .. } => "warehouse",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn header(o: &mut String) {
    out!(
        o,
        "{:<24} {:<36} {:<9} {:<9} {:>10} {:>8} {:>8} DEAD_LETTERED",
        "NAME",
        "ID",
        "KIND",
        "STATE",
        "OFFSET",
        "LAG",
        "RETRYING"
    );
}

/// Whether delivery runs: `paused` by a user, `suspended` after failing attempts in a row
/// (probes go on), else `active`.
fn state_name(d: &Destination) -> &'static str {
    if d.paused {
        "paused"
    } else if d.delivery.suspended.is_some() {
        "suspended"
    } else {
        "active"
    }
}

fn row(o: &mut String, d: &Destination) {
    let s = &d.delivery;
    out!(
        o,
        "{:<24} {:<36} {:<9} {:<9} {:>10} {:>8} {:>8} {}",
        d.spec.name,
        d.id,
        kind_name(&d.spec.kind),
        state_name(d),
        s.offset,
        s.lag,
        s.retrying,
        s.dead_lettered
    );
}

fn table(o: &mut String, d: &Destination) {
    header(o);
    row(o, d);
}

/// One destination for people: where it sends, what, and where delivery stands, then the
/// definition as JSON (secrets masked by the server).
fn show(o: &mut String, d: &Destination) -> anyhow::Result<()> {
    out!(o, "{}  {}", d.id, d.spec.name);
    let target = match &d.spec.kind {
        Kind::Webhook { url, method, .. } => format!("webhook, {method} {url}"),
        Kind::Forward { url, .. } => format!("forward to {url}/v1/batch"),
        Kind::Warehouse { schema, .. } => format!("warehouse, schema {schema}"),
    };
    out!(o, "  sends to:          {target}");
    let deliver = &d.spec.deliver;
    let events = match &deliver.events {
        None => "none".to_owned(),
        Some(e) => {
            let mut parts = Vec::new();
            if !e.types.is_empty() {
                parts.push(format!("types {}", e.types.join(",")));
            }
            if !e.names.is_empty() {
                parts.push(format!("names {}", e.names.join(",")));
            }
            if let Some(c) = &e.condition {
                parts.push(format!("where {c}"));
            }
            if parts.is_empty() {
                "all".to_owned()
            } else {
                parts.join("; ")
            }
        }
    };
    out!(o, "  events:            {events}");
    let audience = match &deliver.audience_changes {
        None => "none".to_owned(),
        Some(a) if a.segments.is_empty() => "every segment".to_owned(),
        Some(a) => a.segments.join(","),
    };
    out!(o, "  segment changes:   {audience}");
    out!(o, "  trait changes:     {}", yes_no(deliver.trait_changes));
    out!(o, "  paused:            {}", yes_no(d.paused));
    out!(o, "  created:           {}", time::display(&d.created_at));
    out!(o, "  updated:           {}", time::display(&d.updated_at));
    let s = &d.delivery;
    out!(o, "  offset:            {}", s.offset);
    out!(o, "  lag:               {}", s.lag);
    out!(o, "  retrying:          {}", s.retrying);
    out!(o, "  dead-lettered:     {}", s.dead_lettered);
    if let Some(x) = &s.suspended {
        out!(
            o,
            "  suspended:         since {} after {} failures ({}); {} probe(s), next {}",
            time::display(&x.since),
            x.failures,
            x.last_error,
            x.probes,
            time::display(&x.next_probe_at)
        );
    }
    if let Some(b) = &s.backfill {
        let state = match &b.finished_at {
            Some(f) => format!("finished {}", time::display(f)),
            None => format!("at offset {} of {}", b.position, b.through),
        };
        out!(
            o,
            "  backfill:          {} .. {}, {} sent, {state}",
            time::display(&b.since),
            time::display(&b.until),
            b.sent
        );
    }
    out!(o, "definition:");
    out!(o, "{}", serde_json::to_string_pretty(&d.spec)?);
    Ok(())
}

/// The start of a body, on one line, for a table.
fn start_of(text: &str, chars: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Refuses a replay that names nothing, before any request. `picked` is the flags'
/// lists: offsets, audience changes, trait changes, alerts, journey actions; `window` the
/// failure times.
fn replay_body(
    [
        offsets,
        audience_changes,
        trait_changes,
        alerts,
        journey_actions,
    ]: [Vec<u64>; 5],
    all: bool,
    (failed_since, failed_until): (Option<String>, Option<String>),
) -> anyhow::Result<Replay> {
    let named = !(offsets.is_empty()
        && audience_changes.is_empty()
        && trait_changes.is_empty()
        && alerts.is_empty()
        && journey_actions.is_empty());
    if !all && !named && failed_since.is_none() && failed_until.is_none() {
        bail!(
            "say which dead letters to replay: --offset N, --audience-change N, --trait-change N \
             --alert N or --journey-action N (each may be repeated), --failed-since/--failed-until TIME, or --all \
             for every one"
        );
    }
    let list = |v: Vec<u64>| (!v.is_empty()).then_some(v);
    Ok(Replay {
        offsets: list(offsets),
        audience_changes: list(audience_changes),
        trait_changes: list(trait_changes),
        alerts: list(alerts),
        journey_actions: list(journey_actions),
        failed_since,
        failed_until,
    })
}

pub fn run(cmd: DestinationsCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    // What can be refused without the server is refused before a client is made.
    if let DestinationsCommand::Delete {
        destination,
        yes: false,
    } = &cmd
    {
        bail!(
            "deleting destination {destination} deletes its retries and dead letters too: \
             pass --yes to confirm"
        );
    }
    let replay = match &cmd {
        DestinationsCommand::Replay {
            offsets,
            audience_changes,
            trait_changes,
            alerts,
            journey_actions,
            all,
            failed_since,
            failed_until,
            ..
        } => Some(replay_body(
            [
                offsets.clone(),
                audience_changes.clone(),
                trait_changes.clone(),
                alerts.clone(),
                journey_actions.clone(),
            ],
            *all,
            (failed_since.clone(), failed_until.clone()),
        )?),
        _ => None,
    };
    let spec = match &cmd {
        DestinationsCommand::Create { file } | DestinationsCommand::Update { file, .. } => {
            Some(read_spec(file)?)
        }
        _ => None,
    };
    let client = Client::new(server)?;
    match cmd {
        DestinationsCommand::List => {
            let list = client.destinations()?;
            emit(format, &list.json, |o| {
                header(o);
                for d in &list.value.data {
                    row(o, d);
                }
            })
        }
        DestinationsCommand::Show { destination } => {
            let d = client.destination(&destination)?;
            let mut text = String::new();
            show(&mut text, &d.value)?;
            emit(format, &d.json, |o| o.push_str(&text))
        }
        DestinationsCommand::Create { .. } => {
            let created = client.create_destination(&spec.expect("read above"))?;
            emit(format, &created.json, |o| {
                let c = &created.value;
                table(o, &c.destination);
                if let Some(secret) = &c.secret {
                    out!(
                        o,
                        "signing secret (shown this once; `rapport destinations secret {}` shows it again): {secret}",
                        c.destination.spec.name
                    );
                }
            })
        }
        DestinationsCommand::Update { destination, .. } => {
            let d = client.replace_destination(&destination, &spec.expect("read above"))?;
            emit(format, &d.json, |o| {
                out!(o, "destination {} updated", d.value.spec.name);
                table(o, &d.value);
            })
        }
        DestinationsCommand::Delete { destination, .. } => {
            let d = client.delete_destination(&destination)?;
            emit(format, &d.json, |o| {
                out!(
                    o,
                    "destination {} ({}) deleted, with its retries and dead letters",
                    d.value.spec.name,
                    d.value.id
                );
            })
        }
        DestinationsCommand::Pause { destination } => {
            let d = client.pause_destination(&destination, true)?;
            emit(format, &d.json, |o| {
                out!(o, "destination {} paused", d.value.spec.name);
                table(o, &d.value);
            })
        }
        DestinationsCommand::Resume { destination } => {
            let d = client.pause_destination(&destination, false)?;
            emit(format, &d.json, |o| {
                out!(o, "destination {} resumed", d.value.spec.name);
                table(o, &d.value);
            })
        }
        DestinationsCommand::Test { destination } => {
            let t = client.test_destination(&destination)?;
            let v = &t.value;
            emit(format, &t.json, |o| {
                out!(o, "delivered: {}", yes_no(v.delivered));
                let status = v.status.map_or("none".to_owned(), |s| s.to_string());
                out!(o, "status:    {status}");
                out!(o, "latency:   {} ms", v.latency_ms);
                let answer = match v.response_body.as_str() {
                    "" => "(empty)".to_owned(),
                    body => start_of(body, 200),
                };
                out!(o, "answer:    {answer}");
                out!(o, "message:   {}", v.message);
            })?;
            if !v.delivered {
                bail!("the test message was not delivered: {}", v.message);
            }
            Ok(())
        }
        DestinationsCommand::Secret { destination } => {
            let s = client.destination_secret(&destination)?;
            emit(format, &s.json, |o| out!(o, "{}", s.value.secret))
        }
        DestinationsCommand::Retries { destination } => {
            let r = client.destination_retries(&destination)?;
            emit(format, &r.json, |o| {
                out!(
                    o,
                    "{:<16} {:>10} {:>8} {:<20} {:<20} LAST_ERROR",
                    "FEED",
                    "OFFSET",
                    "ATTEMPTS",
                    "FIRST_ATTEMPT",
                    "NEXT_ATTEMPT"
                );
                for p in &r.value.data {
                    out!(
                        o,
                        "{:<16} {:>10} {:>8} {:<20} {:<20} {}",
                        p.feed,
                        p.offset,
                        p.attempts,
                        time::display(&p.first_attempt_at),
                        time::display(&p.next_attempt_at),
                        start_of(&p.last_error, 200)
                    );
                }
            })
        }
        DestinationsCommand::DeadLetters { destination, page } => {
            dead_letters(&client, &destination, &page, format)
        }
        DestinationsCommand::Overview { destination, hours } => {
            let v = client.destination_overview(&destination, hours)?;
            emit(format, &v.json, |o| {
                out!(
                    o,
                    "{:<20} {:>10} {:>8} {:>8} {:>10} {:>9} {:>8} {:>8}  LAST_ERROR",
                    "HOUR",
                    "DELIVERED",
                    "RETRIED",
                    "DEAD",
                    "NO_CONSENT",
                    "REQUESTS",
                    "P50_MS",
                    "P99_MS"
                );
                let ms = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1}"));
                for (label, p) in v
                    .value
                    .hours
                    .iter()
                    .map(|p| (p.start.clone(), p))
                    .chain([("total".to_owned(), &v.value.total)])
                {
                    out!(
                        o,
                        "{:<20} {:>10} {:>8} {:>8} {:>10} {:>9} {:>8} {:>8}  {}",
                        label,
                        p.delivered,
                        p.retried,
                        p.dead_lettered,
                        p.skipped_consent,
                        p.requests,
                        ms(p.latency_p50_ms),
                        ms(p.latency_p99_ms),
                        p.last_error.as_deref().unwrap_or("")
                    );
                }
            })
        }
        DestinationsCommand::Backfill {
            destination,
            since,
            until,
            cancel,
        } => {
            if cancel {
                client.cancel_backfill(&destination)?;
                return emit(format, &Value::Null, |o| out!(o, "backfill stopped"));
            }
            let request = BackfillRequest {
                since: since.expect("required by clap"),
                until: until.expect("required by clap"),
            };
            let b = client.start_backfill(&destination, &request)?;
            emit(format, &b.json, |o| {
                out!(
                    o,
                    "backfill of {} .. {} started: log offsets 1 to {}",
                    b.value.since,
                    b.value.until,
                    b.value.through
                )
            })
        }
        DestinationsCommand::Replay { destination, .. } => {
            let r = client.replay_dead_letters(&destination, &replay.expect("built above"))?;
            emit(format, &r.json, |o| {
                out!(
                    o,
                    "{} dead letter(s) put back for delivery",
                    r.value.replayed
                )
            })
        }
    }
}

fn dead_letters(
    client: &Client,
    destination: &str,
    page: &PageArgs,
    format: Format,
) -> anyhow::Result<()> {
    let pages = Pages::read(page, |limit, cursor| {
        client.dead_letters(destination, limit, cursor)
    })?;
    emit(format, &pages.json()?, |o| {
        out!(
            o,
            "{:<16} {:>10} {:<8} {:>6} {:>8} {:<20} ERROR",
            "FEED",
            "OFFSET",
            "REASON",
            "STATUS",
            "ATTEMPTS",
            "AT"
        );
        for f in pages.items() {
            let status = f.status.map_or("-".to_owned(), |s| s.to_string());
            out!(
                o,
                "{:<16} {:>10} {:<8} {:>6} {:>8} {:<20} {}",
                f.feed,
                f.offset,
                f.reason,
                status,
                f.attempts,
                time::display(&f.at),
                start_of(&f.error, 200)
            );
        }
    })?;
    pages.tell_more(format, "dead letters");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_spec_names_its_file_line_and_column() {
        let text = "{\n  \"name\": \"crm\",\n  \"kind\": {\"type\": \"webhook\", \"url\": \"http://h/\"},\n}\n";
        let e = check_spec("crm.json", text).unwrap_err().to_string();
        assert!(e.starts_with("crm.json: line 4, column 1: "), "{e}");
        assert!(e.ends_with("; nothing was sent"), "{e}");
        let unknown = "{\"name\": \"crm\",\n \"nmae\": 1}";
        let e = check_spec("crm.json", unknown).unwrap_err().to_string();
        assert!(e.starts_with("crm.json: line 2, column"), "{e}");
        assert!(e.contains("unknown field `nmae`"), "{e}");
        let ok = "{\"name\": \"crm\", \"kind\": {\"type\": \"webhook\", \"url\": \"http://h/\"}}";
        assert_eq!(check_spec("crm.json", ok).unwrap()["name"], "crm");
    }

    #[test]
    fn a_replay_must_name_what_it_replays() {
        let none = || [vec![], vec![], vec![], vec![], vec![]];
        let e = replay_body(none(), false, (None, None))
            .unwrap_err()
            .to_string();
        for flag in [
            "--offset",
            "--audience-change",
            "--trait-change",
            "--failed-since",
            "--all",
        ] {
            assert!(e.contains(flag), "{e}");
        }
        assert_eq!(
            replay_body(none(), true, (None, None)).unwrap(),
            Replay::default()
        );
        assert_eq!(
            replay_body(
                [vec![3, 4], vec![], vec![7], vec![], vec![9]],
                false,
                (None, None)
            )
            .unwrap(),
            Replay {
                offsets: Some(vec![3, 4]),
                trait_changes: Some(vec![7]),
                journey_actions: Some(vec![9]),
                ..Replay::default()
            }
        );
        // A time window alone picks every dead letter that failed in it.
        assert_eq!(
            replay_body(none(), false, (Some("2024-06-01T00:00:00Z".into()), None)).unwrap(),
            Replay {
                failed_since: Some("2024-06-01T00:00:00Z".into()),
                ..Replay::default()
            }
        );
    }

    #[test]
    fn a_body_start_is_one_line_and_bounded() {
        assert_eq!(start_of("a\nb", 10), "a b");
        assert_eq!(start_of("ééééé", 3), "ééé…");
    }
}
