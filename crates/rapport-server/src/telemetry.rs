//! Prometheus metrics: one process-wide recorder, and per-request counters labelled by
//! route template (never by raw path, which would carry ids).
//!
//! Every metric Rapport records is described here (its HELP line), and the unlabelled
//! counters are registered at zero when the recorder is installed, so that a scrape right
//! after start-up already shows them and `rate()` has a starting point.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The label value of every request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// The label value of every request whose method is not a standard HTTP method.
pub const OTHER_METHOD: &str = "other";

/// Counters without labels: registered at zero on start-up.
const COUNTERS: &[(&str, &str)] = &[
    (
        "rapport_events_stored_total",
        "Events appended to the log (after fsync).",
    ),
    (
        "rapport_events_duplicate_total",
        "Events not stored again because their messageId was seen within the de-duplication window.",
    ),
    (
        "rapport_events_rejected_total",
        "Messages refused by validation at the tracking API.",
    ),
    (
        "rapport_tracking_rejections_total",
        "Refusals by the tracking API recorded for GET /api/v1/rejections: each refused message, or the request when it is refused whole.",
    ),
    (
        "rapport_events_suppressed_total",
        "Messages dropped before storage because they carry a suppressed identifier.",
    ),
    (
        "rapport_events_indexed_total",
        "Log entries written to the query indexes.",
    ),
    (
        "rapport_events_processed_total",
        "Log entries applied by the processor (identity, profiles, audiences).",
    ),
    (
        "rapport_ingest_queue_full_total",
        "Times an ingest request waited because the log writer's queue was full.",
    ),
    (
        "rapport_connections_refused_total",
        "Connections refused because too many were open (in total or from one address).",
    ),
    (
        "rapport_rate_limit_ip_table_resets_total",
        "Times a source's table of client addresses was full and was reset.",
    ),
    (
        "rapport_plan_violations_unrecorded_total",
        "Requests whose tracking-plan violations could not be added to the report (the store failed).",
    ),
];

/// Counters with one label whose values are known: registered at zero for each.
const LABELLED_COUNTERS: &[(&str, &str, &str, &[&str])] = &[
    (
        "rapport_plan_violations_total",
        "Messages that broke their source's tracking plan, by what became of them.",
        "outcome",
        &["allowed", "flagged", "blocked"],
    ),
    (
        "rapport_storage_errors_total",
        "Failed storage calls, by the stage that met them.",
        "stage",
        &["ingest", "indexer", "processor", "api", "probe"],
    ),
    (
        "rapport_dead_letters_total",
        "Log entries a consumer could not read or store and went past (see /api/v1/dead-letters).",
        "consumer",
        &rapport_engine::dead_letters::CONSUMERS,
    ),
    (
        "rapport_requests_rate_limited_total",
        "Tracking requests refused with 429, by the limit that refused them.",
        "scope",
        &["source", "ip"],
    ),
];

/// Installs the recorder on first use; later calls share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
            .expect("static buckets are valid")
            .set_buckets_for_metric(
                Matcher::Full("rapport_log_group_events".into()),
                &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0],
            )
            .expect("static buckets are valid")
            .set_buckets_for_metric(
                Matcher::Full("rapport_model_fit_seconds".into()),
                &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0],
            )
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist in tests that embed Rapport; ours still renders.
        if metrics::set_global_recorder(recorder).is_ok() {
            register();
        }
        handle
    })
}

/// Describes every metric and registers the unlabelled counters and the build gauge.
fn register() {
    for (name, help) in COUNTERS {
        metrics::describe_counter!(*name, Unit::Count, *help);
        metrics::counter!(*name).increment(0);
    }
    for (name, help, label, values) in LABELLED_COUNTERS {
        metrics::describe_counter!(*name, Unit::Count, *help);
        for v in *values {
            metrics::counter!(*name, *label => *v).increment(0);
        }
    }
    metrics::describe_counter!(
        "rapport_http_requests_total",
        Unit::Count,
        "HTTP requests answered, by route template, method and status."
    );
    metrics::describe_histogram!(
        "rapport_http_request_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template and method."
    );
    metrics::describe_histogram!(
        "rapport_log_append_seconds",
        Unit::Seconds,
        "Time to append and fsync one group of events to the log."
    );
    metrics::describe_histogram!(
        "rapport_log_group_events",
        Unit::Count,
        "Events in one group commit to the log."
    );
    metrics::describe_counter!(
        "rapport_model_fits_total",
        Unit::Count,
        "Value-model fits finished, by model and outcome."
    );
    metrics::describe_histogram!(
        "rapport_model_fit_seconds",
        Unit::Seconds,
        "Duration of a value-model fit, by model."
    );
    metrics::describe_gauge!(
        "rapport_log_offset",
        Unit::Count,
        "Offset of the last event in the log."
    );
    metrics::describe_gauge!(
        "rapport_indexer_lag_events",
        Unit::Count,
        "Log entries the indexer has yet to index."
    );
    metrics::describe_gauge!(
        "rapport_processor_lag_events",
        Unit::Count,
        "Log entries the processor has yet to apply."
    );
    metrics::describe_gauge!(
        "rapport_store_disk_bytes",
        Unit::Bytes,
        "Disk space the store occupies (allocated blocks of the data directory; database size on PostgreSQL)."
    );
    metrics::describe_gauge!(
        "rapport_build_info",
        "Always 1; its labels say which build of Rapport is running."
    );
    metrics::gauge!("rapport_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

pub fn render() -> String {
    handle().render()
}

/// The method as a label value: one of the standard methods, or [`OTHER_METHOD`], so that
/// clients cannot mint label values (each new value is a new time series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}

pub async fn track_requests(request: Request, next: Next) -> Response {
    handle();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status),
    ];
    metrics::counter!("rapport_http_requests_total", &labels).increment(1);
    metrics::histogram!("rapport_http_request_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}

/// The metric families of a Prometheus exposition (sample names less the `_bucket`, `_sum`
/// and `_count` of histograms and summaries) that appear without both a HELP and a TYPE
/// line: empty when every family is described.
pub fn undocumented_families(text: &str) -> Vec<String> {
    let mut help = std::collections::HashSet::new();
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => {
                help.insert(name.to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name.to_owned(), words.next().unwrap_or("").to_owned());
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                sample.strip_suffix(s).filter(|f| {
                    matches!(
                        types.get(*f).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                })
            })
            .unwrap_or(sample);
        let described = help.contains(family) && types.contains_key(family);
        if !described && !missing.iter().any(|m| m == family) {
            missing.push(family.to_owned());
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for m in ["BREW", "PROPFIND", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                OTHER_METHOD
            );
        }
    }

    /// Every family in the exposition has a HELP and a TYPE line, and the unlabelled
    /// counters and the build gauge are there before anything happened.
    #[test]
    fn every_family_is_described_and_counters_start_at_zero() {
        handle();
        metrics::counter!("rapport_http_requests_total", "route" => "/x", "method" => "GET", "status" => "200").increment(1);
        metrics::histogram!("rapport_http_request_seconds", "route" => "/x", "method" => "GET")
            .record(0.01);
        let text = render();
        let problems = undocumented_families(&text);
        assert!(problems.is_empty(), "{problems:?}\n{text}");
        for (name, _) in COUNTERS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{name} "))),
                "{name} missing\n{text}"
            );
        }
        assert!(
            text.contains(&format!(
                "rapport_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
