//! `rapport fit …` and `rapport report …`: the value models from the command line, through
//! a running server's REST API (the server holds the data and runs the jobs). A fit is
//! followed with a progress bar until its job ends; every result prints as a table or, with
//! `--format json`, as the API's JSON.

use crate::client::{Answer, ApiError, Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rapport_api::time::display as cli_time;
use rapport_api::value::{
    Alert, AlertKind, AlertPage, ClvDistribution, EarnedGrowthReport, HealthReport, Interval,
    JobState, MetricReport, ModelName, ModelSummary, SilentMajority, SurveyMetric, SurveyReport,
};
use serde::de::DeserializeOwned;
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
    /// CLV and P(alive) over the profiles the CLV fits scored: count, quantiles, mean, total
    /// and a histogram (log-spaced bins for CLV, bins on [0, 1] for P(alive)).
    ClvDistribution {
        /// Histogram bins, 1 to 200.
        #[arg(long, default_value_t = 20)]
        bins: u32,
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
        FitCommand::Clv(a) => (ModelName::Clv, a),
        FitCommand::Churn(a) => (ModelName::Churn, a),
        FitCommand::Health(a) => (ModelName::Health, a),
    };
    let api = Client::new(server)?;
    let mut attempts = 0;
    let job = loop {
        match api.start_fit(model.as_str()) {
            Ok(job) => break job,
            // A fit of this model is already running (the schedule's, or another user's):
            // follow that one rather than fail. If it ended between the refusal and the
            // listing, start ours again.
            Err(e) if is_conflict(&e) => {
                let jobs = api.jobs()?;
                let running = jobs
                    .value
                    .data
                    .iter()
                    .position(|j| j.model == model && j.state == JobState::Running)
                    .map(|i| Answer {
                        value: jobs.value.data[i].clone(),
                        json: jobs.json["data"][i].clone(),
                    });
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
        return emit(format, &job.json, |o| {
            out!(o, "job {} started", job.value.id)
        });
    }
    let id = job.value.id;
    if id.is_empty() {
        bail!("the server answered without a job id");
    }
    let progress = bar(quiet);
    let done = loop {
        let job = api.job(&id)?;
        if job.value.state != JobState::Running {
            break job;
        }
        progress.set_message(job.value.phase.clone());
        progress.set_length(job.value.total);
        progress.set_position(job.value.done);
        std::thread::sleep(Duration::from_millis(200));
    };
    progress.finish_and_clear();
    if done.value.state == JobState::Failed {
        bail!(
            "the {} fit failed: {}",
            model.as_str(),
            done.value.error.as_deref().unwrap_or("no reason given")
        );
    }
    let summary = done
        .value
        .result
        .context("the server answered a succeeded job without its result")?;
    // `--format json` prints the result as the server sent it.
    emit(format, &done.json["result"], |o| print_fit(&summary, o))
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == reqwest::StatusCode::CONFLICT)
}

/// The warnings of a fit, in plain words, before its figures.
fn print_warnings(model: ModelName, warnings: &[String], o: &mut String) {
    if warnings.is_empty() {
        return;
    }
    out!(
        o,
        "the {} fit succeeded with {} warning{}:",
        model.as_str(),
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    for w in warnings {
        out!(o, "  - {w}");
    }
    out!(o, "");
}

/// Reads a report as its type `T` (with a spinner: reports may read the whole log) and
/// prints it as a table, or as the server's JSON.
fn show<T: DeserializeOwned>(
    api: &Client,
    path: &str,
    query: &[(&str, String)],
    quiet: bool,
    format: Format,
    table: fn(&T, &mut String),
) -> anyhow::Result<()> {
    let spinner = bar(quiet);
    spinner.set_message("reading events");
    let answer = api.report::<T>(path, query);
    spinner.finish_and_clear();
    let answer = answer?;
    emit(format, &answer.json, |o| table(&answer.value, o))
}

pub fn report(
    cmd: ReportCommand,
    server: &ServerArgs,
    format: Format,
    quiet: bool,
) -> anyhow::Result<()> {
    let api = Client::new(server)?;
    match cmd {
        ReportCommand::Nps(a) => survey(&api, "/api/v1/reports/nps", a, quiet, format),
        ReportCommand::Ces(a) => survey(&api, "/api/v1/reports/ces", a, quiet, format),
        ReportCommand::Csat(a) => survey(&api, "/api/v1/reports/csat", a, quiet, format),
        ReportCommand::SilentMajority { threshold } => show(
            &api,
            "/api/v1/reports/silent-majority",
            &[("threshold", threshold.to_string())],
            quiet,
            format,
            print_silent_majority,
        ),
        ReportCommand::ClvDistribution { bins } => show(
            &api,
            "/api/v1/reports/clv-distribution",
            &[("bins", bins.to_string())],
            quiet,
            format,
            print_clv_distribution,
        ),
        ReportCommand::EarnedGrowth { period } => show(
            &api,
            "/api/v1/reports/earned-growth",
            &[("period", period)],
            quiet,
            format,
            print_earned_growth,
        ),
        ReportCommand::Health => show(
            &api,
            "/api/v1/reports/health",
            &[],
            quiet,
            format,
            print_health,
        ),
        ReportCommand::Alerts { after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = after {
                q.push(("after", a));
            }
            show(&api, "/api/v1/alerts", &q, quiet, format, print_alert_page)
        }
    }
}

fn survey(
    api: &Client,
    path: &str,
    a: SurveyArgs,
    quiet: bool,
    format: Format,
) -> anyhow::Result<()> {
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
    show(api, path, &q, quiet, format, print_survey)
}

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None if v.is_null() => "-".into(),
        None => v.to_string().trim_matches('"').to_owned(),
    }
}

/// A number to `digits` decimals; `-` when there is none.
fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// A fraction as a percentage to one decimal; `-` when there is none.
fn pct(x: Option<f64>) -> String {
    num(x.map(|x| x * 100.0), 1)
}

/// Every scalar of a fit summary, nested objects flattened with dots (lists left out),
/// after its warnings.
fn print_fit(summary: &ModelSummary, o: &mut String) {
    print_warnings(summary.model(), summary.warnings(), o);
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
    let json = serde_json::to_value(summary).unwrap_or_default();
    walk("", &json, &mut rows);
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (k, x) in rows {
        out!(o, "{k:width$}  {x}");
    }
}

/// Responses, the metric's value as printed, and its interval.
fn metric_figures(report: &MetricReport) -> (u64, String, Option<Interval>) {
    match report {
        MetricReport::Nps(r) => (r.responses, format!("{:.1}", r.nps), Some(r.ci)),
        MetricReport::Ces(r) => (r.responses, format!("{:.2}", r.mean), r.ci),
        MetricReport::Csat(r) => (r.responses, format!("{:.1}", r.csat), Some(r.ci)),
    }
}

fn metric_name(m: SurveyMetric) -> &'static str {
    match m {
        SurveyMetric::Nps => "nps",
        SurveyMetric::Ces => "ces",
        SurveyMetric::Csat => "csat",
    }
}

fn print_survey(v: &SurveyReport, o: &mut String) {
    let r = &v.read;
    out!(
        o,
        "{} ({}), {} responses, {} invalid answers left out",
        v.survey,
        metric_name(v.metric),
        v.responses,
        v.invalid_answers
    );
    out!(
        o,
        "read `{}` events (properties `survey`, `score`): {} of {} events, {} for this survey, {} in range",
        r.event,
        r.survey_events,
        r.events_read,
        r.answers_to_survey,
        r.in_range
    );
    if let Some(note) = &v.note {
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
    let mut row = |period: &str, group: &str, r: &MetricReport| {
        let (responses, value, ci) = metric_figures(r);
        out!(
            o,
            "{:<12} {:<16} {:>9} {:>8} {:>17}",
            period,
            group,
            responses,
            value,
            format!(
                "[{}, {}]",
                num(ci.map(|c| c.low), 1),
                num(ci.map(|c| c.high), 1)
            )
        );
    };
    if let Some(overall) = &v.overall {
        row("all", "all", overall);
    }
    for s in &v.series {
        let group = match &s.group {
            Some(Some(g)) => g.as_str(),
            _ => "-",
        };
        row(s.period.as_deref().unwrap_or("all"), group, &s.report);
    }
}

fn print_clv_distribution(v: &ClvDistribution, o: &mut String) {
    out!(
        o,
        "{} profiles scored by the CLV fit of {} (model {}{})",
        v.profiles,
        cli_time(&v.fitted_at),
        v.model,
        v.spend_model
            .as_deref()
            .map(|s| format!("+{s}"))
            .unwrap_or_default()
    );
    for (name, d) in [("clv", &v.clv), ("p_alive", &v.p_alive)] {
        out!(o, "");
        let Some(d) = d else {
            out!(o, "{name}: no profile holds one");
            continue;
        };
        let q = &d.quantiles;
        out!(
            o,
            "{name}: count {} mean {:.4} total {:.2} min {:.4} max {:.4}",
            d.count,
            d.mean,
            d.total,
            d.min,
            d.max
        );
        out!(
            o,
            "  p10 {:.4}  p25 {:.4}  p50 {:.4}  p75 {:.4}  p90 {:.4}  p99 {:.4}",
            q.p10,
            q.p25,
            q.p50,
            q.p75,
            q.p90,
            q.p99
        );
        let scale = serde_json::to_value(d.histogram.scale).unwrap_or_default();
        out!(
            o,
            "  {:>14} {:>14} {:>9}  ({} bins)",
            "FROM",
            "TO",
            "COUNT",
            f(&scale, 0)
        );
        for (i, c) in d.histogram.counts.iter().enumerate() {
            out!(
                o,
                "  {:>14.4} {:>14.4} {:>9}",
                d.histogram.edges[i],
                d.histogram.edges[i + 1],
                c
            );
        }
    }
}

fn print_silent_majority(v: &SilentMajority, o: &mut String) {
    out!(
        o,
        "customers with P(alive) < {} as of {} (model {} fitted {})",
        // As JSON writes it (`1.0`, not `1`).
        Value::from(v.threshold),
        cli_time(&v.as_of),
        v.model,
        cli_time(&v.fitted_at)
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
    for r in v.cohorts.iter().chain(std::iter::once(&v.total)) {
        out!(
            o,
            "{:<8} {:>9} {:>9} {:>7} {:>14} {:>14} {:>7}",
            r.cohort,
            r.customers,
            r.probably_gone,
            pct(Some(r.share_gone)),
            format!("{:.2}", r.revenue),
            format!("{:.2}", r.revenue_gone),
            pct(Some(r.revenue_share_gone)),
        );
    }
}

fn print_earned_growth(v: &EarnedGrowthReport, o: &mut String) {
    let a = &v.acquisition;
    out!(
        o,
        "{} customers: {} earned, {} bought, {} unknown (as of {})",
        v.customers,
        a.earned,
        a.bought,
        a.unknown,
        cli_time(&v.as_of)
    );
    let r = &v.read;
    out!(
        o,
        "read `{}` events (value from `{}`): {} purchases; `reason` of `{}` events from {} customers",
        r.purchase_event,
        r.revenue_property,
        r.purchases,
        r.survey_event,
        r.customers_with_reason
    );
    if let Some(note) = &v.note {
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
    let n = |x: Option<u64>| x.map_or_else(|| "-".into(), |x| x.to_string());
    for p in &v.periods {
        let mut note = p.error.clone().unwrap_or_default();
        if !p.complete {
            note = format!("in progress {note}");
        }
        out!(
            o,
            "{:<11} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}  {}",
            p.period,
            pct(p.nrr),
            pct(p.earned_new_share),
            pct(p.egr),
            n(p.new_earned_customers),
            n(p.new_bought_customers),
            n(p.new_unknown_customers),
            note.trim()
        );
    }
}

fn alert_kind(k: AlertKind) -> &'static str {
    match k {
        AlertKind::BandDropped => "band_dropped",
        AlertKind::RenewalAtRisk => "renewal_at_risk",
    }
}

fn print_alerts(list: &[Alert], o: &mut String) {
    out!(
        o,
        "{:<20} {:<16} {:<16} {:>6}  REASON",
        "AT",
        "PROFILE",
        "KIND",
        "SCORE"
    );
    for a in list {
        out!(
            o,
            "{:<20} {:<16} {:<16} {:>6}  {}",
            cli_time(&a.at),
            a.profile,
            alert_kind(a.kind),
            num(a.score, 1),
            a.reason
        );
    }
}

fn print_alert_page(v: &AlertPage, o: &mut String) {
    print_alerts(&v.data, o);
    if let Some(next) = &v.next_after {
        out!(o, "next: --after {next}");
    }
}

fn print_health(v: &HealthReport, o: &mut String) {
    let s = &v.summary;
    print_warnings(s.model, &s.warnings, o);
    out!(
        o,
        "{} profiles scored at {} (mean {}), {} alerts raised",
        s.profiles_scored,
        cli_time(&s.fitted_at),
        num(s.mean_score, 1),
        s.alerts_raised
    );
    for (band, n) in &s.bands.0 {
        out!(o, "  {band:<12} {n}");
    }
    out!(o, "lowest scores:");
    for l in &s.lowest {
        out!(o, "  {:<16} {:>6} {}", l.profile, num(l.score, 1), l.band);
    }
    out!(o, "recent alerts:");
    print_alerts(&v.recent_alerts, o);
}
