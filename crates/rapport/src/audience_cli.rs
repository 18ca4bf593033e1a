//! `rapport segments …` and `rapport traits …`: define and inspect computed traits and
//! segments on a running server through its REST API, with a progress bar while existing
//! profiles are evaluated against a new definition.

use crate::client::{Client, Format, MAX_PAGE, PageArgs, Pages, ServerArgs, emit};
use crate::out;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rapport_api::audiences::{
    AudiencesStatus, BackfillState, ComputedTraitCheckRequest, ComputedTraitDefinition,
    DefinitionCheck, Segment, SegmentCheckRequest, SegmentDefinition,
};
use rapport_api::time;
use serde_json::Value;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SegmentsCommand {
    /// List segments with their sizes.
    List,
    /// Show one segment.
    Show {
        /// The segment's name.
        name: String,
    },
    /// Define a segment (or replace it with --replace) and, with --wait, follow the
    /// evaluation of existing profiles.
    Create {
        /// The segment's name, unique among segments.
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
    },
    /// Check a definition as saving it would and count the profiles it would hold now,
    /// saving nothing. Exits 1 when saving would refuse it.
    Check {
        /// The condition, in the segment language (docs/segment-language.md).
        #[arg(long)]
        expression: String,
        /// The name it would have (checked too; `in_segment` cycles are found through it).
        #[arg(long, default_value = "")]
        name: String,
        /// Profiles to evaluate, 1 to 100000, oldest first [default: 10000].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: Option<u64>,
    },
    /// Delete a segment.
    Delete {
        /// The segment's name.
        name: String,
    },
    /// List a segment's members (profile ids).
    Members {
        /// The segment's name.
        name: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// A segment's size at the end of every hour it changed.
    History {
        /// The segment's name.
        name: String,
    },
    /// Segment entries and exits, oldest first.
    Changes {
        /// Continue after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only the changes of this segment.
        #[arg(long)]
        segment: Option<String>,
        /// Changes to show, 1 to 1000 (the server's maximum); continue with --after and
        /// the last sequence number shown.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE as i64))]
        limit: u32,
    },
}

/// A computed trait's aggregate, as one expression or from its parts: what `traits create`
/// and `traits check` share.
#[derive(clap::Args)]
pub struct TraitParts {
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
}

impl TraitParts {
    fn definition(self, name: String, description: Option<String>) -> ComputedTraitDefinition {
        ComputedTraitDefinition {
            name,
            description,
            expression: self.expression,
            function: self.function,
            property: self.property,
            event: self.event,
            condition: self.condition,
            window: self.window,
        }
    }
}

#[derive(Subcommand)]
pub enum TraitsCommand {
    /// List computed traits.
    List,
    /// Define a computed trait, from an aggregate expression or from --function and friends.
    Create {
        /// The trait's name, unique among computed traits.
        name: String,
        #[command(flatten)]
        parts: TraitParts,
        /// What the trait is for, for people.
        #[arg(long)]
        description: Option<String>,
        /// Replace the trait if it exists.
        #[arg(long)]
        replace: bool,
        /// Wait until every existing profile has been evaluated, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Check a definition as saving it would and count the profiles for which it would
    /// hold a value that is not empty, saving nothing. Exits 1 when saving would refuse it.
    Check {
        /// The name it would have [default: none].
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        parts: TraitParts,
        /// Profiles to evaluate, 1 to 100000, oldest first [default: 10000].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: Option<u64>,
    },
    /// Delete a computed trait.
    Delete {
        /// The trait's name.
        name: String,
    },
}

/// Shows what a check found; a definition saving would refuse exits 1, naming the field.
fn emit_check(
    format: Format,
    answer: crate::client::Answer<DefinitionCheck>,
    verb: &str,
) -> anyhow::Result<()> {
    let check = &answer.value;
    emit(format, &answer.json, |o| {
        for p in &check.errors {
            out!(o, "invalid {}: {}", p.field, p.message);
        }
        if let Some(e) = &check.expression {
            out!(
                o,
                "aggregate: {e} ({})",
                check.value_type.as_deref().unwrap_or("?")
            );
        }
        if let Some(p) = &check.preview {
            if p.exact {
                out!(
                    o,
                    "valid: {} of {} profiles would {verb} now",
                    p.matching,
                    p.profiles_total
                );
            } else {
                out!(
                    o,
                    "valid: {} of the oldest {} profiles (of {}) would {verb}; the full count comes with the backfill after saving",
                    p.matching,
                    p.profiles_read,
                    p.profiles_total
                );
            }
            for x in &p.examples {
                let shown = x.main_identifier.as_deref().unwrap_or(&x.profile);
                match x.computed.as_ref().and_then(|c| c.values().next()) {
                    Some(v) => out!(o, "  {shown}: {v}"),
                    None => out!(o, "  {shown}"),
                }
            }
        }
    })?;
    if !check.valid {
        anyhow::bail!("the definition would be refused");
    }
    Ok(())
}

/// Follows the evaluation of existing profiles until it is done.
fn wait_for_backfill(client: &Client) -> anyhow::Result<AudiencesStatus> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "evaluating profiles {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
        )
        .expect("valid template"),
    );
    loop {
        let status = client.audiences_status()?.value;
        let b = &status.backfill;
        bar.set_length(b.total);
        bar.set_position(b.processed);
        if b.state == BackfillState::Done {
            bar.finish();
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn segment_header(o: &mut String) {
    out!(
        o,
        "{:<24} {:>10}  {:<8} EXPRESSION",
        "NAME",
        "MEMBERS",
        "BACKFILL"
    );
}

fn segment_row(o: &mut String, s: &Segment) {
    out!(
        o,
        "{:<24} {:>10}  {:<8} {}",
        s.name,
        s.size,
        s.backfill.state.as_str(),
        s.expression
    );
}

pub fn segments(cmd: SegmentsCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        SegmentsCommand::List => {
            let list = client.segments()?;
            emit(format, &list.json, |o| {
                segment_header(o);
                for s in &list.value.data {
                    segment_row(o, s);
                }
            })
        }
        SegmentsCommand::Show { name } => {
            let s = client.segment(&name)?;
            emit(format, &s.json, |o| {
                segment_header(o);
                segment_row(o, &s.value);
            })
        }
        SegmentsCommand::Create {
            name,
            expression,
            description,
            replace,
            wait,
        } => {
            let definition = SegmentDefinition {
                name: name.clone(),
                description,
                expression,
            };
            let created = client.save_segment(&name, &definition, replace)?;
            let shown = if wait {
                wait_for_backfill(&client)?;
                client.segment(&name)?
            } else {
                created
            };
            emit(format, &shown.json, |o| {
                out!(o, "segment {name} saved");
                segment_header(o);
                segment_row(o, &shown.value);
            })
        }
        SegmentsCommand::Check {
            expression,
            name,
            limit,
        } => {
            let request = SegmentCheckRequest {
                definition: SegmentDefinition {
                    name,
                    description: None,
                    expression,
                },
                limit,
            };
            emit_check(format, client.check_segment(&request)?, "be members")
        }
        SegmentsCommand::Delete { name } => {
            let answer = client.delete_segment(&name)?;
            emit_deleted(format, &answer, &format!("segment {name} deleted"))
        }
        SegmentsCommand::Members { name, page } => {
            let pages = Pages::read(&page, |limit, cursor| {
                client.segment_members(&name, limit, cursor)
            })?;
            emit(format, &pages.json()?, |o| {
                out!(o, "{:<20} {:<40} ENTERED", "PROFILE", "IDENTIFIER");
                for m in pages.items() {
                    out!(
                        o,
                        "{:<20} {:<40} {}",
                        m.profile,
                        m.main_identifier.as_deref().unwrap_or("-"),
                        time::display(&m.entered_at)
                    );
                }
            })?;
            pages.tell_more(format, "members");
            Ok(())
        }
        SegmentsCommand::History { name } => {
            let h = client.segment_size_history(&name)?;
            emit(format, &h.json, |o| {
                out!(o, "{:<26} MEMBERS", "HOUR");
                for p in &h.value.data {
                    out!(o, "{:<26} {}", time::display(&p.hour), p.size);
                }
            })
        }
        SegmentsCommand::Changes {
            after,
            segment,
            limit,
        } => {
            let page = client.audience_changes(after, segment.as_deref(), limit)?;
            emit(format, &page.json, |o| {
                out!(
                    o,
                    "{:>8}  {:<20} {:<8} {:<24} PROFILE",
                    "SEQ",
                    "AT",
                    "CHANGE",
                    "SEGMENT"
                );
                for c in &page.value.data {
                    out!(
                        o,
                        "{:>8}  {:<20} {:<8} {:<24} {}",
                        c.seq,
                        time::display(&c.at),
                        c.change.as_str(),
                        c.segment,
                        c.profile
                    );
                }
            })
        }
    }
}

/// A deletion's answer: in JSON the API's answer as it is (nothing for `204 No Content`),
/// in a table one line that says what was deleted.
fn emit_deleted(format: Format, answer: &Value, done: &str) -> anyhow::Result<()> {
    match (format, answer) {
        (Format::Json, Value::Null) => Ok(()),
        _ => emit(format, answer, |o| out!(o, "{done}")),
    }
}

pub fn traits(cmd: TraitsCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        TraitsCommand::List => {
            let list = client.computed_traits()?;
            emit(format, &list.json, |o| {
                out!(o, "{:<24} {:<10} EXPRESSION", "NAME", "TYPE");
                for t in &list.value.data {
                    out!(o, "{:<24} {:<10} {}", t.name, t.value_type, t.expression);
                }
            })
        }
        TraitsCommand::Create {
            name,
            parts,
            description,
            replace,
            wait,
        } => {
            let definition = parts.definition(name.clone(), description);
            let saved = client.save_computed_trait(&name, &definition, replace)?;
            if wait {
                wait_for_backfill(&client)?;
            }
            emit(format, &saved.json, |o| {
                out!(
                    o,
                    "computed trait {name} saved: {} ({})",
                    saved.value.expression,
                    saved.value.value_type
                )
            })
        }
        TraitsCommand::Check { name, parts, limit } => {
            let request = ComputedTraitCheckRequest {
                definition: parts.definition(name, None),
                limit,
            };
            emit_check(
                format,
                client.check_computed_trait(&request)?,
                "have a value",
            )
        }
        TraitsCommand::Delete { name } => {
            let answer = client.delete_computed_trait(&name)?;
            emit_deleted(format, &answer, &format!("computed trait {name} deleted"))
        }
    }
}
