//! `rapport fit …` and `rapport report …`: the value models from the command line, through
//! a running server's REST API (the server holds the data and runs the jobs). A fit is
//! followed with a progress bar until its job ends; every result prints as a table or, with
//! `--format json`, as the API's JSON.

use crate::client::{ApiError, Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rapport_api::time::display as cli_time;
use serde_json::Value;
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum FitCommand {
    /// Customer lifetime value and P(alive) (BG/NBD or Pareto/NBD with Gamma-Gamma).
    Clv(FitArgs),
    /// Churn risk (a supervised model; prints the held-out AUC).
    Churn(FitArgs),
    /// Health scores and alerts (reads the latest CLV and churn scores).
    Health(FitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FitArgs {
    /// Print the started job and return without waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Net Promoter Score over time and by a trait, with response counts and intervals.
    Nps(SurveyArgs),
    /// Customer Effort Score.
    Ces(SurveyArgs),
    /// Customer satisfaction (share of satisfied answers).
    Csat(SurveyArgs),
    /// Customers probably gone (P(alive) below a threshold) and their past revenue, by cohort.
    SilentMajority {
        /// P(alive) below which a customer counts as probably gone.
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
    },
    /// Earned growth rate (Reichheld) per period, with earned and bought new customers.
    EarnedGrowth {
        /// month, quarter or year.
        #[arg(long, default_value = "month")]
        period: String,
    },
    /// The latest health run: bands, lowest scores, recent alerts.
    Health,
    /// Health alerts, oldest first.
    Alerts {
        /// Only alerts after this id (the `next_after` of a previous call).
        #[arg(long)]
        after: Option<String>,
        /// Alerts to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SurveyArgs {
    /// The survey whose answers to read [default: the metric's name].
    #[arg(long)]
    pub survey: Option<String>,
    /// Time buckets: day, week, month, quarter, year or all [default: month].
    #[arg(long)]
    pub by: Option<String>,
    /// Split by a trait, e.g. traits.plan.
    #[arg(long)]
    pub group_by: Option<String>,
    /// Only answers at or after (ISO-8601).
    #[arg(long)]
    pub since: Option<String>,
    /// Only answers before (ISO-8601).
    #[arg(long)]
    pub until: Option<String>,
}

fn bar(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:16} {bar:40} {pos}/{len} {elapsed}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn fit(
    cmd: FitCommand,
    server: &ServerArgs,
    format: Format,
    quiet: bool,
) -> anyhow::Result<()> {
    let (model, args) = match cmd {
        FitCommand::Clv(a) => ("clv", a),
        FitCommand::Churn(a) => ("churn", a),
        FitCommand::Health(a) => ("health", a),
    };
    let api = Client::new(server)?;
    let mut attempts = 0;
    let job = loop {
        match api.start_fit(model) {
            Ok(job) => break job,
            // A fit of this model is already running (the schedule's, or another user's):
            // follow that one rather than fail. If it ended between the refusal and the
            // listing, start ours again.
            Err(e) if is_conflict(&e) => {
                let jobs = api.jobs()?;
                let running = jobs["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|j| j["model"] == model && j["state"] == "running")
                    .cloned();
                attempts += 1;
                match running {
                    Some(job) => break job,
                    None if attempts < 5 => continue,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    };
    if args.no_wait {
        return emit(format, &job, |o| {
            out!(o, "job {} started", job["id"].as_str().unwrap_or(""))
        });
    }
    let id = job["id"]
        .as_str()
        .context("the server answered without a job id")?;
    let progress = bar(quiet);
    let done = loop {
        let job = api.job(id)?;
        if job["state"] != "running" {
            break job;
        }
        progress.set_message(job["phase"].as_str().unwrap_or("").to_owned());
        progress.set_length(job["total"].as_u64().unwrap_or(0));
        progress.set_position(job["done"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    };
    progress.finish_and_clear();
    if done["state"] == "failed" {
        bail!(
            "the {model} fit failed: {}",
            done["error"].as_str().unwrap_or("no reason given")
        );
    }
    let result = &done["result"];
    emit(format, result, |o| print_fit(result, o))
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == reqwest::StatusCode::CONFLICT)
}

/// The warnings of a fit, in plain words, before its figures.
fn print_warnings(v: &Value, o: &mut String) {
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if warnings.is_empty() {
        return;
    }
    out!(
        o,
        "the {} fit succeeded with {} warning{}:",
        v["model"].as_str().unwrap_or("model"),
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    for w in warnings {
        out!(o, "  - {w}");
    }
    out!(o, "");
}

/// A report request: where to send it, with which query, and how to print its answer.
struct ReportCall {
    path: &'static str,
    query: Vec<(&'static str, String)>,
    table: fn(&Value, &mut String),
}

pub fn report(
    cmd: ReportCommand,
    server: &ServerArgs,
    format: Format,
    quiet: bool,
) -> anyhow::Result<()> {
    let call = match cmd {
        ReportCommand::Nps(a) => survey("nps", a),
        ReportCommand::Ces(a) => survey("ces", a),
        ReportCommand::Csat(a) => survey("csat", a),
        ReportCommand::SilentMajority { threshold } => ReportCall {
            path: "/api/v1/reports/silent-majority",
            query: vec![("threshold", threshold.to_string())],
            table: print_silent_majority,
        },
        ReportCommand::EarnedGrowth { period } => ReportCall {
            path: "/api/v1/reports/earned-growth",
            query: vec![("period", period)],
            table: print_earned_growth,
        },
        ReportCommand::Health => ReportCall {
            path: "/api/v1/reports/health",
            query: vec![],
            table: print_health,
        },
        ReportCommand::Alerts { after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = after {
                q.push(("after", a));
            }
            ReportCall {
                path: "/api/v1/alerts",
                query: q,
                table: print_alerts,
            }
        }
    };
    let api = Client::new(server)?;
    let spinner = bar(quiet);
    spinner.set_message("reading events");
    let body = api.report(call.path, &call.query);
    spinner.finish_and_clear();
    let body = body?;
    emit(format, &body, |o| (call.table)(&body, o))
}

fn survey(metric: &'static str, a: SurveyArgs) -> ReportCall {
    let mut q = Vec::new();
    for (k, v) in [
        ("survey", a.survey),
        ("by", a.by),
        ("group_by", a.group_by),
        ("since", a.since),
        ("until", a.until),
    ] {
        if let Some(v) = v {
            q.push((k, v));
        }
    }
    let path = match metric {
        "nps" => "/api/v1/reports/nps",
        "ces" => "/api/v1/reports/ces",
        _ => "/api/v1/reports/csat",
    };
    ReportCall {
        path,
        query: q,
        table: print_survey,
    }
}

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None if v.is_null() => "-".into(),
        None => v.to_string().trim_matches('"').to_owned(),
    }
}

/// Every scalar of a fit summary, nested objects flattened with dots (lists left out),
/// after its warnings.
fn print_fit(v: &Value, o: &mut String) {
    print_warnings(v, o);
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            Value::Array(_) => {}
            Value::Number(n) if n.is_f64() => out.push((prefix.into(), f(v, 4))),
            Value::String(s) => out.push((prefix.into(), cli_time(s))),
            other => out.push((prefix.into(), f(other, 0))),
        }
    }
    let mut rows = Vec::new();
    walk("", v, &mut rows);
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (k, x) in rows {
        out!(o, "{k:width$}  {x}");
    }
}

fn metric_value(report: &Value) -> String {
    match report["metric"].as_str() {
        Some("nps") => f(&report["nps"], 1),
        Some("ces") => f(&report["mean"], 2),
        _ => f(&report["csat"], 1),
    }
}

fn print_survey(v: &Value, o: &mut String) {
    let r = &v["read"];
    out!(
        o,
        "{} ({}), {} responses, {} invalid answers left out",
        v["survey"].as_str().unwrap_or(""),
        v["metric"].as_str().unwrap_or(""),
        v["responses"],
        v["invalid_answers"]
    );
    out!(
        o,
        "read `{}` events (properties `survey`, `score`): {} of {} events, {} for this survey, {} in range",
        r["event"].as_str().unwrap_or(""),
        r["survey_events"],
        r["events_read"],
        r["answers_to_survey"],
        r["in_range"]
    );
    if let Some(note) = v["note"].as_str() {
        out!(o, "{note}");
        return;
    }
    out!(
        o,
        "{:<12} {:<16} {:>9} {:>8} {:>17}",
        "PERIOD",
        "GROUP",
        "RESPONSES",
        "SCORE",
        "INTERVAL"
    );
    let mut row = |period: &str, group: &str, r: &Value| {
        let ci = &r["ci"];
        out!(
            o,
            "{:<12} {:<16} {:>9} {:>8} {:>17}",
            period,
            group,
            f(&r["responses"], 0),
            metric_value(r),
            format!("[{}, {}]", f(&ci["low"], 1), f(&ci["high"], 1))
        );
    };
    if !v["overall"].is_null() {
        row("all", "all", &v["overall"]);
    }
    for s in v["series"].as_array().into_iter().flatten() {
        row(
            s["period"].as_str().unwrap_or("all"),
            &f(&s["group"], 0),
            &s["report"],
        );
    }
}

fn print_silent_majority(v: &Value, o: &mut String) {
    out!(
        o,
        "customers with P(alive) < {} as of {} (model {} fitted {})",
        v["threshold"],
        cli_time(v["as_of"].as_str().unwrap_or("")),
        v["model"].as_str().unwrap_or(""),
        cli_time(v["fitted_at"].as_str().unwrap_or(""))
    );
    out!(
        o,
        "{:<8} {:>9} {:>9} {:>7} {:>14} {:>14} {:>7}",
        "COHORT",
        "CUSTOMERS",
        "GONE",
        "%GONE",
        "REVENUE",
        "REVENUE GONE",
        "%REV"
    );
    let rows = v["cohorts"].as_array().into_iter().flatten();
    for r in rows.chain(std::iter::once(&v["total"])) {
        out!(
            o,
            "{:<8} {:>9} {:>9} {:>7} {:>14} {:>14} {:>7}",
            r["cohort"].as_str().unwrap_or(""),
            f(&r["customers"], 0),
            f(&r["probably_gone"], 0),
            f(&(r["share_gone"].as_f64().unwrap_or(0.0) * 100.0).into(), 1),
            f(&r["revenue"], 2),
            f(&r["revenue_gone"], 2),
            f(
                &(r["revenue_share_gone"].as_f64().unwrap_or(0.0) * 100.0).into(),
                1
            ),
        );
    }
}

fn print_earned_growth(v: &Value, o: &mut String) {
    let a = &v["acquisition"];
    out!(
        o,
        "{} customers: {} earned, {} bought, {} unknown (as of {})",
        v["customers"],
        a["earned"],
        a["bought"],
        a["unknown"],
        cli_time(v["as_of"].as_str().unwrap_or(""))
    );
    let r = &v["read"];
    out!(
        o,
        "read `{}` events (value from `{}`): {} purchases; `reason` of `{}` events from {} customers",
        r["purchase_event"].as_str().unwrap_or(""),
        r["revenue_property"].as_str().unwrap_or(""),
        r["purchases"],
        r["survey_event"].as_str().unwrap_or(""),
        r["customers_with_reason"]
    );
    if let Some(note) = v["note"].as_str() {
        out!(o, "{note}");
    }
    out!(
        o,
        "{:<11} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}  NOTE",
        "PERIOD",
        "NRR%",
        "EARNED%",
        "EGR%",
        "EARNED",
        "BOUGHT",
        "UNKNOWN"
    );
    let pct = |x: &Value| f(&x.as_f64().map(|x| x * 100.0).into(), 1);
    for p in v["periods"].as_array().into_iter().flatten() {
        let mut note = p["error"].as_str().unwrap_or("").to_owned();
        if p["complete"] == false {
            note = format!("in progress {note}");
        }
        out!(
            o,
            "{:<11} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}  {}",
            p["period"].as_str().unwrap_or(""),
            pct(&p["nrr"]),
            pct(&p["earned_new_share"]),
            pct(&p["egr"]),
            f(&p["new_earned_customers"], 0),
            f(&p["new_bought_customers"], 0),
            f(&p["new_unknown_customers"], 0),
            note.trim()
        );
    }
}

fn print_alerts(v: &Value, o: &mut String) {
    let list = v["data"].as_array().or_else(|| v.as_array());
    out!(
        o,
        "{:<20} {:<16} {:<16} {:>6}  REASON",
        "AT",
        "PROFILE",
        "KIND",
        "SCORE"
    );
    for a in list.into_iter().flatten() {
        out!(
            o,
            "{:<20} {:<16} {:<16} {:>6}  {}",
            cli_time(a["at"].as_str().unwrap_or("")),
            a["profile"].as_str().unwrap_or(""),
            a["kind"].as_str().unwrap_or(""),
            f(&a["score"], 1),
            a["reason"].as_str().unwrap_or("")
        );
    }
    if let Some(next) = v["next_after"].as_str() {
        out!(o, "next: --after {next}");
    }
}

fn print_health(v: &Value, o: &mut String) {
    print_warnings(v, o);
    out!(
        o,
        "{} profiles scored at {} (mean {}), {} alerts raised",
        v["profiles_scored"],
        cli_time(v["fitted_at"].as_str().unwrap_or("")),
        f(&v["mean_score"], 1),
        v["alerts_raised"]
    );
    for (band, n) in v["bands"].as_object().into_iter().flatten() {
        out!(o, "  {band:<12} {n}");
    }
    out!(o, "lowest scores:");
    for l in v["lowest"].as_array().into_iter().flatten() {
        out!(
            o,
            "  {:<16} {:>6} {}",
            l["profile"].as_str().unwrap_or(""),
            f(&l["score"], 1),
            l["band"].as_str().unwrap_or("")
        );
    }
    out!(o, "recent alerts:");
    print_alerts(&v["recent_alerts"], o);
}
