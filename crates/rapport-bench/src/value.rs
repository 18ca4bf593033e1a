//! `rapport-bench value`: the value models end to end through the store. Writes a
//! synthetic shop (customers with a purchase rate and a chance to leave after each purchase,
//! page views, support tickets, cancellations, NPS answers) into the log of a fresh embedded
//! store (or PostgreSQL with `--database-url`), runs the processor, then times every job
//! and report as the server would run it.

use crate::profiles::fill_log;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rapport_core::identity::IdentityRules;
use rapport_engine::processor::Processor;
use rapport_engine::value::{
    EarnedGrowthQuery, FitSummary, Holdout, ModelKind, Models, ModelsConfig, Progress, SurveyQuery,
};
use rapport_store::Store;
use rapport_store::embedded::EmbeddedStore;
use rapport_value::survey::TimeBucket;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

const DAY: i64 = 86_400;
/// The bench's "now": 2026-01-01. Histories span the two years before.
const NOW: i64 = 1_767_225_600;

#[derive(Debug, Args)]
pub struct BenchModelsArgs {
    /// Customers in the synthetic shop.
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn at(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// One customer's history.
fn customer(i: u64) -> Vec<Value> {
    let mut rng = SmallRng::seed_from_u64(i);
    let user = format!("c{i}");
    let first = NOW - rng.gen_range(30..730) * DAY;
    let plan = ["basic", "pro", "team"][(i % 3) as usize];
    let mut out = vec![
        json!({"type": "identify", "userId": user, "timestamp": at(first),
        "traits": {"plan": plan, "email": format!("c{i}@example.com"),
                   "renewal_date": at(NOW + rng.gen_range(1..365) * DAY)}}),
    ];
    // Purchases every ~20–120 days; after each, a 10–30 % chance of leaving for good.
    let mean_gap = rng.gen_range(20.0..120.0_f64);
    let leave = rng.gen_range(0.1..0.3_f64);
    let basket = rng.gen_range(15.0..150.0_f64);
    let mut t = first;
    while t < NOW {
        out.push(json!({"type": "track", "userId": user, "event": "Order Completed",
            "timestamp": at(t), "properties": {"revenue": (basket * rng.gen_range(0.6..1.4)).round()}}));
        out.push(json!({"type": "page", "userId": user, "name": "Account",
            "timestamp": at(t - 3600)}));
        if rng.gen_bool(leave) {
            if rng.gen_bool(0.3) {
                out.push(json!({"type": "track", "userId": user,
                    "event": "Subscription Cancelled", "timestamp": at(t + DAY)}));
            }
            break;
        }
        t += (-(rng.gen_range(1e-9..1.0_f64)).ln() * mean_gap * DAY as f64) as i64 + DAY;
    }
    if rng.gen_bool(0.1) {
        out.push(
            json!({"type": "track", "userId": user, "event": "Ticket Created",
            "timestamp": at(NOW - rng.gen_range(1..80) * DAY)}),
        );
    }
    if rng.gen_bool(0.2) {
        let mut p = json!({"survey": "nps", "score": rng.gen_range(0..=10)});
        if rng.gen_bool(0.5) {
            p["reason"] = json!(["a friend told me", "saw an ad", "search"][(i % 3) as usize]);
        }
        out.push(
            json!({"type": "track", "userId": user, "event": "Survey Answered",
            "timestamp": at(first + DAY), "properties": p}),
        );
    }
    // Events dated after now (a late purchase) would be outside every window: drop them.
    out.retain(|m| {
        m["timestamp"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|d| d.timestamp() <= NOW)
    });
    out
}

#[derive(serde::Serialize)]
struct Step {
    step: &'static str,
    seconds: f64,
    detail: String,
}

pub fn run(args: BenchModelsArgs, database_url: Option<&str>) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let store: Arc<dyn Store> = match database_url {
        Some(url) => Arc::new(rapport_store::postgres::PostgresStore::open(url)?),
        None => Arc::new(EmbeddedStore::open(temp.path())?),
    };
    let mut steps = Vec::new();
    let mut timed = |step: &'static str, f: &mut dyn FnMut() -> anyhow::Result<String>| {
        eprintln!("{step}…");
        let started = Instant::now();
        let detail = f()?;
        steps.push(Step {
            step,
            seconds: started.elapsed().as_secs_f64(),
            detail,
        });
        anyhow::Ok(())
    };
    timed("write the log", &mut || {
        fill_log(store.as_ref(), (0..args.customers).flat_map(customer))?;
        Ok(format!("{} events", store.last_offset()?))
    })?;
    timed("processor", &mut || {
        Processor::new(store.clone(), IdentityRules::default()).run_to_end()?;
        Ok(String::new())
    })?;
    let models = Models::new(store.clone(), ModelsConfig::default())?;
    let progress = Progress::detached();
    let now_ms = NOW * 1000;
    timed("fit clv", &mut || {
        let FitSummary::Clv(f) = models.run(ModelKind::Clv, now_ms, &progress)? else {
            anyhow::bail!("a CLV fit answered another model's summary");
        };
        let holdout = match &f.holdout {
            Some(Holdout::Checked(h)) => Some(h),
            _ => None,
        };
        Ok(format!(
            "{} customers, {} transactions, holdout predicted {:.0} vs actual {} purchases, {} scoring failures",
            f.customers,
            f.transactions,
            holdout
                .and_then(|h| h.predicted_purchases)
                .unwrap_or(f64::NAN),
            holdout
                .and_then(|h| h.actual_purchases)
                .map_or("-".into(), |a| a.to_string()),
            f.score_failures.count
        ))
    })?;
    timed("fit churn", &mut || {
        let FitSummary::Churn(f) = models.run(ModelKind::Churn, now_ms, &progress)? else {
            anyhow::bail!("a churn fit answered another model's summary");
        };
        Ok(format!(
            "{} training customers, held-out AUC {:.3}",
            f.customers,
            f.auc.unwrap_or(f64::NAN)
        ))
    })?;
    timed("fit health", &mut || {
        let FitSummary::Health(f) = models.run(ModelKind::Health, now_ms, &progress)? else {
            anyhow::bail!("a health run answered another model's summary");
        };
        let bands: Vec<String> = f.bands.iter().map(|(b, n)| format!("{b} {n}")).collect();
        Ok(format!(
            "{} profiles, bands {}",
            f.profiles_scored,
            bands.join(", ")
        ))
    })?;
    timed("report silent-majority", &mut || {
        let r = rapport_engine::value::silent_majority(
            store.as_ref(),
            models.config(),
            0.5,
            now_ms,
            &progress,
        )?;
        Ok(format!(
            "{} of {} probably gone",
            r.table.total.probably_gone, r.table.total.customers
        ))
    })?;
    timed("report nps", &mut || {
        let q = SurveyQuery {
            survey: "nps".into(),
            metric: None,
            by: Some(TimeBucket::Month),
            group_by: Some("plan".into()),
            since: None,
            until: None,
        };
        let r =
            rapport_engine::value::survey_report(store.as_ref(), models.config(), &q, &progress)?;
        Ok(format!("{} responses", r.responses))
    })?;
    timed("report earned-growth", &mut || {
        let r = rapport_engine::value::earned_growth_report(
            store.as_ref(),
            models.config(),
            &EarnedGrowthQuery {
                period: TimeBucket::Quarter,
            },
            now_ms,
            &progress,
        )?;
        Ok(format!("{} quarters", r.periods.len()))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
    } else {
        for s in &steps {
            println!("{:<24} {:>8.2} s  {}", s.step, s.seconds, s.detail);
        }
    }
    Ok(())
}
