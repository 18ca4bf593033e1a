//! `rapport overview` (the pipeline at a glance, `GET /api/v1/overview`),
//! `rapport events` (stored events, filtered, `GET /api/v1/events`) and
//! `rapport rejections` (the messages the server's tracking API refused,
//! `GET /api/v1/rejections`).

use crate::client::{self, Client, PageArgs, Pages, ServerArgs, emit};
use crate::out;
use clap::Args;
use rapport_api::overview::{MAX_MINUTES, Overview, Rejection};

/// What `rapport overview` reads.
#[derive(Debug, Args)]
pub struct OverviewArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: client::OutputArgs,
    /// Minutes of per-minute counts, ending with the current one (1 to 1440).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=MAX_MINUTES as i64))]
    pub minutes: u32,
}

/// What `rapport events` reads: every filter optional, combined with "and".
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: client::OutputArgs,
    /// Only events with this `userId`.
    #[arg(long)]
    pub user_id: Option<String>,
    /// Only events with this `anonymousId`.
    #[arg(long)]
    pub anonymous_id: Option<String>,
    /// Only events of this type: track, identify, page, screen, group or alias.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only track events of this name, or pages and screens of this name.
    #[arg(long)]
    pub event: Option<String>,
    /// Only events sent with a write key of this source (its id, see `rapport sources list`).
    #[arg(long)]
    pub source: Option<String>,
    /// Only events at or after this ISO-8601 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this ISO-8601 time.
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

impl EventsArgs {
    /// The API's query parameters for the filters given.
    fn filters(&self) -> Vec<(&'static str, String)> {
        [
            ("userId", &self.user_id),
            ("anonymousId", &self.anonymous_id),
            ("type", &self.kind),
            ("event", &self.event),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

pub fn run_events(args: EventsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let format = args.output.format();
    let filters = args.filters();
    let pages = Pages::read(&args.page, |limit, cursor| {
        client.events(&filters, limit, cursor)
    })?;
    emit(format, &pages.json()?, |o| {
        out!(
            o,
            "{:<24}  {:<10}  {:<28}  {:<24}  {}",
            "timestamp",
            "type",
            "event",
            "user",
            "source"
        );
        for e in pages.items() {
            let text = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let user = match text("userId") {
                "" => format!("anonymous {}", text("anonymousId")),
                u => u.to_owned(),
            };
            let name = match text("event") {
                "" => text("name"),
                n => n,
            };
            out!(
                o,
                "{:<24}  {:<10}  {:<28}  {:<24}  {}",
                text("timestamp"),
                text("type"),
                name,
                user,
                text("sourceId")
            );
        }
    })?;
    pages.tell_more(format, "events");
    Ok(())
}

/// What `rapport rejections` reads.
#[derive(Debug, Args)]
pub struct RejectionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: client::OutputArgs,
    /// Only refusals of messages sent with this source's write key (its id).
    #[arg(long)]
    pub source: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

pub fn run_overview(args: OverviewArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let answer = client.overview(args.minutes)?;
    emit(args.output.format(), &answer.json, |o| {
        summary(o, &answer.value)
    })
}

/// The overview for people: offsets and lags, storage, then one line per source.
fn summary(o: &mut String, v: &Overview) {
    out!(o, "at               {}", v.at);
    out!(o, "log offset       {}", v.log_offset);
    out!(
        o,
        "indexed          {} (lag {})",
        v.indexed_offset,
        v.indexer_lag
    );
    out!(
        o,
        "processed        {} (lag {})",
        v.processed_offset,
        v.processor_lag
    );
    out!(o, "storage          {}", human_bytes(v.storage_bytes));
    out!(o, "dead letters     {}", v.dead_letters);
    let rejected: u64 = v.rejected_per_minute.iter().sum();
    let window = v.events_per_minute.minutes;
    out!(
        o,
        "rejected         {rejected} in the last {window} min (this server)"
    );
    out!(o, "");
    out!(
        o,
        "events per source, last {window} min (from {}):",
        v.events_per_minute.from
    );
    out!(
        o,
        "{:<24}  {:<24}  {:>10}  {:>10}  {:>8}",
        "source",
        "id",
        "total",
        "last min",
        "peak/min"
    );
    for s in &v.events_per_minute.sources {
        out!(
            o,
            "{:<24}  {:<24}  {:>10}  {:>10}  {:>8}",
            s.source_name.as_deref().unwrap_or("-"),
            s.source_id,
            s.total,
            s.counts.last().copied().unwrap_or(0),
            s.counts.iter().max().copied().unwrap_or(0)
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn run_rejections(args: RejectionsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let format = args.output.format();
    let pages = Pages::read(&args.page, |limit, cursor| {
        client.rejections(args.source.as_deref(), limit, cursor)
    })?;
    emit(format, &pages.json()?, |o| {
        out!(
            o,
            "{:<24}  {:<20}  {:<26}  {:<20}  {:<10}  {:<24}  {}",
            "at",
            "source",
            "code",
            "field",
            "type",
            "event",
            "message"
        );
        for r in pages.items() {
            row(o, r);
        }
    })?;
    pages.tell_more(format, "rejections");
    Ok(())
}

fn row(o: &mut String, r: &Rejection) {
    let source = match &r.source {
        Some(s) => s.name.clone().unwrap_or_else(|| s.id.clone()),
        None => "-".into(),
    };
    let code = serde_json::to_value(r.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    out!(
        o,
        "{:<24}  {:<20}  {:<26}  {:<20}  {:<10}  {:<24}  {}",
        r.at,
        source,
        code,
        r.field.as_deref().unwrap_or("-"),
        r.kind.as_deref().unwrap_or("-"),
        r.event.as_deref().unwrap_or("-"),
        r.message
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
