//! `rapport sources plan show|set|clear|violations SOURCE`: a source's tracking plan on a
//! running server, through `/api/v1/sources/{source}/tracking-plan` (docs/tracking-plans.md).
//! A plan file is read as a plan before anything is sent, so that a typo is reported with
//! the file, line and column; the server checks the schemas themselves and names the one
//! at fault (`events.Order Completed.schema`).

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use clap::Subcommand;
use rapport_api::time;
use rapport_api::tracking_plans::{
    Mode, Outcome, ReportEntry, SourceTrackingPlan, SubjectKind, TrackingPlan, ViolationsReport,
};

#[derive(Subcommand)]
pub enum PlanCommand {
    /// The source's tracking plan.
    Show {
        /// The source, by name or id.
        source: String,
    },
    /// Replace the source's tracking plan with the one in FILE (JSON; `-` for standard
    /// input).
    Set {
        /// The source, by name or id.
        source: String,
        /// The plan, as JSON (`-`: standard input); see docs/tracking-plans.md.
        file: String,
    },
    /// Remove the source's tracking plan: its events are no longer checked.
    Clear {
        /// The source, by name or id.
        source: String,
    },
    /// What broke the plan: counts per event name and recent examples.
    Violations {
        /// The source, by name or id.
        source: String,
    },
}

pub fn run(cmd: PlanCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match cmd {
        PlanCommand::Show { source } => {
            let plan = client.tracking_plan(&source)?;
            emit(format, &plan.json, |o| show(o, &plan.value))
        }
        PlanCommand::Set { source, file } => {
            let plan = read_plan(&file)?;
            let saved = client.set_tracking_plan(&source, &plan)?;
            emit(format, &saved.json, |o| show(o, &saved.value))
        }
        PlanCommand::Clear { source } => {
            let json = client.clear_tracking_plan(&source)?;
            emit(format, &json, |o| {
                out!(o, "the tracking plan of {source} is removed");
            })
        }
        PlanCommand::Violations { source } => {
            let report = client.plan_violations(&source)?;
            emit(format, &report.json, |o| violations(o, &report.value))
        }
    }
}

/// Reads a plan from `file` (`-`: standard input), naming the file, line and column of the
/// first error.
pub fn read_plan(file: &str) -> anyhow::Result<TrackingPlan> {
    let (name, text) = crate::client::read_input(file, "plan")?;
    parse_plan(&name, &text)
}

fn parse_plan(name: &str, text: &str) -> anyhow::Result<TrackingPlan> {
    Ok(crate::client::parse_input::<TrackingPlan>(name, text)?.1)
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Allow => "allow",
        Mode::Flag => "flag",
        Mode::Block => "block",
    }
}

fn show(o: &mut String, p: &SourceTrackingPlan) {
    out!(
        o,
        "tracking plan of {}, version {} (saved {})",
        p.source_id,
        p.version,
        time::display_ms(p.updated_at_ms)
    );
    let plan = &p.plan;
    out!(o, "  mode:      {}", mode(plan.mode));
    out!(o, "  unplanned: {}", mode(plan.unplanned));
    let rule_mode = |m: Option<Mode>| mode(m.unwrap_or(plan.mode));
    for (name, rule) in &plan.events {
        out!(o, "  track {name:?}: {}", rule_mode(rule.mode));
    }
    if let Some(rule) = &plan.identify {
        out!(o, "  identify traits: {}", rule_mode(rule.mode));
    }
    if let Some(rule) = &plan.group {
        out!(o, "  group traits: {}", rule_mode(rule.mode));
    }
}

fn subject(e: &ReportEntry) -> String {
    match e.kind {
        SubjectKind::Track => format!("track {:?}", e.event.as_deref().unwrap_or_default()),
        SubjectKind::Identify => "identify".into(),
        SubjectKind::Group => "group".into(),
        SubjectKind::Unplanned => "unplanned events".into(),
    }
}

fn violations(o: &mut String, r: &ViolationsReport) {
    match r.plan_version {
        Some(v) => out!(
            o,
            "violations of {}'s tracking plan (now version {v})",
            r.source_id
        ),
        None => out!(
            o,
            "violations of {} (it has no tracking plan now)",
            r.source_id
        ),
    }
    if r.data.is_empty() {
        out!(o, "  none counted");
        return;
    }
    out!(
        o,
        "{:<32} {:>8} {:>8} {:>8} {:>10}  LAST",
        "SUBJECT",
        "ALLOWED",
        "FLAGGED",
        "BLOCKED",
        "VIOLATIONS"
    );
    for e in &r.data {
        out!(
            o,
            "{:<32} {:>8} {:>8} {:>8} {:>10}  {}",
            subject(e),
            e.allowed,
            e.flagged,
            e.blocked,
            e.violations,
            time::display_ms(e.last_at_ms)
        );
        for x in &e.recent {
            let outcome = match x.outcome {
                Outcome::Allowed => "allowed",
                Outcome::Flagged => "flagged",
                Outcome::Blocked => "blocked",
            };
            out!(o, "    {outcome:<8} {}: {}", x.field, x.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_plan_file_is_named_with_its_line_and_column() {
        let e = parse_plan("plan.json", "{\n  \"mode\": \"block\",\n  \"events\": 3\n}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("plan.json: line 3, column"), "{e}");
        assert!(e.ends_with("nothing was sent"), "{e}");
        let e = parse_plan("plan.json", "{\"mode\": \"strict\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("strict"), "{e}");
        let plan = parse_plan(
            "plan.json",
            r#"{"events": {"Order Completed": {"schema": {"type": "object"}}}}"#,
        )
        .unwrap();
        assert_eq!(plan.mode, Mode::Flag);
        assert_eq!(plan.unplanned, Mode::Allow);
    }
}
