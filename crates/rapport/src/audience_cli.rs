//! `rapport segments …` and `rapport traits …`: define and inspect computed traits and
//! segments on a running server through its REST API, with a progress bar while existing
//! profiles are evaluated against a new definition.

use crate::client::{Client, ServerArgs};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Subcommand)]
pub enum SegmentsCommand {
    /// List segments with their sizes.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Show one segment.
    Show {
        /// The segment's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Define a segment (or replace it with --replace) and, with --wait, follow the
    /// evaluation of existing profiles.
    Create {
        /// The segment's name.
        name: String,
        /// The condition, in the segment language (docs/segment-language.md).
        #[arg(long)]
        expression: String,
        /// What the segment is for, for people.
        #[arg(long)]
        description: Option<String>,
        /// Replace the segment if it exists.
        #[arg(long)]
        replace: bool,
        /// Wait until every existing profile has been evaluated, showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Delete a segment.
    Delete {
        /// The segment's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a segment's members (profile ids).
    Members {
        /// The segment's name.
        name: String,
        /// Members per page; with --all every page is read.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Every member, page after page.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// A segment's size at the end of every hour it changed.
    History {
        /// The segment's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Segment entries and exits, oldest first.
    Changes {
        /// Continue after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only this segment's changes.
        #[arg(long)]
        segment: Option<String>,
        /// How many changes at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TraitsCommand {
    /// List computed traits.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Define a computed trait, from an aggregate expression or from --function and friends.
    Create {
        /// The computed trait's name.
        name: String,
        /// One aggregate, e.g. `count(event == "Order Completed", within 30d)`.
        #[arg(long, conflicts_with_all = ["function", "property", "event", "condition", "window"])]
        expression: Option<String>,
        /// count, sum, avg, min, max, first, last, first_seen, last_seen, most_frequent,
        /// unique, unique_count.
        #[arg(long)]
        function: Option<String>,
        /// The event property aggregated (for all but count, first_seen, last_seen).
        #[arg(long)]
        property: Option<String>,
        /// Only events with this name.
        #[arg(long)]
        event: Option<String>,
        /// A further condition over event, type and properties.…
        #[arg(long = "where")]
        condition: Option<String>,
        /// Sliding window such as 30d or 12h [default: all time].
        #[arg(long)]
        window: Option<String>,
        /// What the trait is for, for people.
        #[arg(long)]
        description: Option<String>,
        /// Replace the trait if it exists (else refuse).
        #[arg(long)]
        replace: bool,
        /// Wait until existing profiles are evaluated, with a progress bar.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Delete a computed trait.
    Delete {
        /// The computed trait's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// What `segments` and `traits` add to the client: following a backfill.
trait Backfill {
    fn wait_for_backfill(&self) -> anyhow::Result<Value>;
}

impl Backfill for Client {
    /// Follows the evaluation of existing profiles until it is done.
    fn wait_for_backfill(&self) -> anyhow::Result<Value> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "evaluating profiles {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
            )
            .expect("valid template"),
        );
        loop {
            let status = self.get("/api/v1/audiences/status")?;
            let b = &status["backfill"];
            bar.set_length(b["total"].as_u64().unwrap_or(0));
            bar.set_position(b["processed"].as_u64().unwrap_or(0));
            if b["state"] == "done" {
                bar.finish();
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn segment_path(name: &str) -> String {
    format!("/api/v1/segments/{}", urlencode(name))
}

/// A time from the API (RFC 3339, to the nanosecond) as a table shows it: ISO-8601 UTC to
/// the second. Text that is not a time is shown as it is; JSON output keeps full precision.
pub(crate) fn cli_time(s: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_owned())
}

pub(crate) fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_segment_row(s: &Value) {
    println!(
        "{:<24} {:>10}  {:<8} {}",
        s["name"].as_str().unwrap_or(""),
        s["size"].as_u64().unwrap_or(0),
        s["backfill"]["state"].as_str().unwrap_or(""),
        s["expression"].as_str().unwrap_or("")
    );
}

pub fn segments(cmd: SegmentsCommand) -> anyhow::Result<()> {
    match cmd {
        SegmentsCommand::List { server, json } => {
            let list = Client::new(&server)?.get("/api/v1/segments")?;
            if crate::client::json(json) {
                return print(&list);
            }
            println!(
                "{:<24} {:>10}  {:<8} EXPRESSION",
                "NAME", "MEMBERS", "BACKFILL"
            );
            for s in list["data"].as_array().into_iter().flatten() {
                print_segment_row(s);
            }
        }
        SegmentsCommand::Show { name, server, json } => {
            let s = Client::new(&server)?.get(&segment_path(&name))?;
            if crate::client::json(json) {
                return print(&s);
            }
            println!(
                "{:<24} {:>10}  {:<8} EXPRESSION",
                "NAME", "MEMBERS", "BACKFILL"
            );
            print_segment_row(&s);
        }
        SegmentsCommand::Create {
            name,
            expression,
            description,
            replace,
            wait,
            server,
            json,
        } => {
            let client = Client::new(&server)?;
            let body =
                json!({ "name": name, "expression": expression, "description": description });
            let created = if replace {
                client.call(reqwest::Method::PUT, &segment_path(&name), Some(body))?
            } else {
                client.call(reqwest::Method::POST, "/api/v1/segments", Some(body))?
            };
            let shown = if wait {
                client.wait_for_backfill()?;
                client.get(&segment_path(&name))?
            } else {
                created
            };
            if crate::client::json(json) {
                return print(&shown);
            }
            println!("segment {name} saved");
            println!(
                "{:<24} {:>10}  {:<8} EXPRESSION",
                "NAME", "MEMBERS", "BACKFILL"
            );
            print_segment_row(&shown);
        }
        SegmentsCommand::Delete { name, server } => {
            Client::new(&server)?.call(reqwest::Method::DELETE, &segment_path(&name), None)?;
            println!("segment {name} deleted");
        }
        SegmentsCommand::Members {
            name,
            limit,
            all,
            server,
            json,
        } => {
            let client = Client::new(&server)?;
            let mut cursor: Option<String> = None;
            let mut members = Vec::new();
            loop {
                let mut path = format!(
                    "{}/members?limit={}",
                    segment_path(&name),
                    limit.clamp(1, 1000)
                );
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", urlencode(c)));
                }
                let page = client.get(&path)?;
                members.extend(page["data"].as_array().cloned().unwrap_or_default());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
                if !all || cursor.is_none() {
                    break;
                }
            }
            if crate::client::json(json) {
                return print(&json!({ "data": members, "next_cursor": cursor }));
            }
            println!("{:<20} {:<40} ENTERED", "PROFILE", "IDENTIFIER");
            for m in &members {
                println!(
                    "{:<20} {:<40} {}",
                    m["profile"].as_str().unwrap_or(""),
                    m["main_identifier"].as_str().unwrap_or("-"),
                    cli_time(m["entered_at"].as_str().unwrap_or(""))
                );
            }
            if let Some(c) = cursor {
                eprintln!("more members follow (--all reads every page; next cursor {c})");
            }
        }
        SegmentsCommand::History { name, server, json } => {
            let h = Client::new(&server)?.get(&format!("{}/size-history", segment_path(&name)))?;
            if crate::client::json(json) {
                return print(&h);
            }
            println!("{:<26} MEMBERS", "HOUR");
            for p in h["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<26} {}",
                    cli_time(p["hour"].as_str().unwrap_or("")),
                    p["size"].as_u64().unwrap_or(0)
                );
            }
        }
        SegmentsCommand::Changes {
            after,
            segment,
            limit,
            server,
            json,
        } => {
            let mut path = format!(
                "/api/v1/audience-changes?after={after}&limit={}",
                limit.clamp(1, 1000)
            );
            if let Some(s) = &segment {
                path.push_str(&format!("&segment={}", urlencode(s)));
            }
            let page = Client::new(&server)?.get(&path)?;
            if crate::client::json(json) {
                return print(&page);
            }
            println!(
                "{:>8}  {:<20} {:<8} {:<24} PROFILE",
                "SEQ", "AT", "CHANGE", "SEGMENT"
            );
            for c in page["data"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<20} {:<8} {:<24} {}",
                    c["seq"].as_u64().unwrap_or(0),
                    cli_time(c["at"].as_str().unwrap_or("")),
                    c["change"].as_str().unwrap_or(""),
                    c["segment"].as_str().unwrap_or(""),
                    c["profile"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

pub fn traits(cmd: TraitsCommand) -> anyhow::Result<()> {
    match cmd {
        TraitsCommand::List { server, json } => {
            let list = Client::new(&server)?.get("/api/v1/computed-traits")?;
            if crate::client::json(json) {
                return print(&list);
            }
            println!("{:<24} {:<10} EXPRESSION", "NAME", "TYPE");
            for t in list["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {}",
                    t["name"].as_str().unwrap_or(""),
                    t["value_type"].as_str().unwrap_or(""),
                    t["expression"].as_str().unwrap_or("")
                );
            }
        }
        TraitsCommand::Create {
            name,
            expression,
            function,
            property,
            event,
            condition,
            window,
            description,
            replace,
            wait,
            server,
            json,
        } => {
            let client = Client::new(&server)?;
            let mut body = json!({ "name": name });
            for (k, v) in [
                ("expression", expression),
                ("function", function),
                ("property", property),
                ("event", event),
                ("where", condition),
                ("window", window),
                ("description", description),
            ] {
                if let Some(v) = v {
                    body[k] = Value::String(v);
                }
            }
            let path = format!("/api/v1/computed-traits/{}", urlencode(&name));
            let saved = if replace {
                client.call(reqwest::Method::PUT, &path, Some(body))?
            } else {
                client.call(reqwest::Method::POST, "/api/v1/computed-traits", Some(body))?
            };
            if wait {
                client.wait_for_backfill()?;
            }
            if crate::client::json(json) {
                return print(&saved);
            }
            println!(
                "computed trait {name} saved: {} ({})",
                saved["expression"].as_str().unwrap_or(""),
                saved["value_type"].as_str().unwrap_or("")
            );
        }
        TraitsCommand::Delete { name, server } => {
            Client::new(&server)?.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/computed-traits/{}", urlencode(&name)),
                None,
            )?;
            println!("computed trait {name} deleted");
        }
    }
    Ok(())
}
