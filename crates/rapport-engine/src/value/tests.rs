//! The value jobs end to end over a real embedded store: events go through the log and the
//! processor as in production, then each job runs and its stored results are checked against
//! computations made by hand or directly with `rapport_value`.

use super::*;
use crate::processor::Processor;
use crate::profiles::Profiles;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rapport_core::event::{Limits, ParsedRequest, Stamp, parse_timestamp};
use rapport_core::identity::IdentityRules;
use rapport_store::embedded::EmbeddedStore;
use rapport_store::{AppendItem, Store};
use rapport_value::clv::{
    BgNbd, Period, PurchaseModel, SummaryOptions, TimeUnit, Transaction, summarize,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z.
const START: i64 = 1_704_067_200;
/// Every job runs as of 2025-01-01.
const NOW: i64 = START + 366 * DAY;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        World { _dir: dir, store }
    }

    /// Logs Segment messages the way ingest does, then lets the processor resolve them.
    fn ingest(&self, messages: &[Value]) {
        let limits = Limits {
            max_batch_events: usize::MAX,
            max_batch_bytes: usize::MAX,
            ..Limits::default()
        };
        for chunk in messages.chunks(2_000) {
            let body = json!({ "batch": chunk }).to_string();
            let request = ParsedRequest::batch(body.as_bytes(), &limits).unwrap();
            let stamp = Stamp {
                received_at: parse_timestamp("2025-01-01T00:00:00Z").unwrap(),
                source_id: "src",
            };
            let mut next = self.store.last_offset().unwrap();
            let mut message_id = || {
                next += 1;
                format!("m-{next}")
            };
            let items: Vec<AppendItem> = request
                .events(&stamp, &limits, &mut message_id)
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    AppendItem {
                        dedup_key: e.dedup_key(),
                        payload: e.to_json(),
                    }
                })
                .collect();
            self.store.append(&items, NOW * 1000, DAY * 1000).unwrap();
        }
        Processor::new(self.store.clone(), IdentityRules::default())
            .run_to_end()
            .unwrap();
    }

    fn models(&self, config: ModelsConfig) -> Arc<Models> {
        Models::new(self.store.clone(), config).unwrap()
    }

    fn scores(&self, user: &str) -> Option<Map<String, Value>> {
        let store = self.store.as_ref();
        let p = Profiles { store }
            .resolve(&format!("user_id:{user}"))
            .ok()?;
        ModelScores { store }.scores(p.id.as_str()).unwrap()
    }
}

/// The JSON of a typed report, as the API sends it: the tests read what clients read.
fn json_of(x: &impl serde::Serialize) -> Value {
    serde_json::to_value(x).unwrap()
}

/// A page of the alert feed with each alert as JSON.
struct JsonPage {
    data: Vec<Value>,
}

impl JsonPage {
    fn of(page: AlertPage) -> JsonPage {
        JsonPage {
            data: page.data.iter().map(json_of).collect(),
        }
    }
}

fn time(unix_seconds: i64) -> String {
    rfc3339(unix_seconds * 1000)
}

fn track(user: &str, event: &str, at: i64, properties: Value) -> Value {
    json!({"type": "track", "userId": user, "event": event, "timestamp": time(at),
           "properties": properties})
}

fn purchase(user: &str, at: i64, revenue: f64) -> Value {
    track(user, "Order Completed", at, json!({ "revenue": revenue }))
}

fn identify(user: &str, at: i64, traits: Value) -> Value {
    json!({"type": "identify", "userId": user, "timestamp": time(at), "traits": traits})
}

fn answer(user: &str, at: i64, survey: &str, score: f64, reason: Option<&str>) -> Value {
    let mut p = json!({"survey": survey, "score": score});
    if let Some(r) = reason {
        p["reason"] = json!(r);
    }
    track(user, "Survey Answered", at, p)
}

/// A shop's history: loyal customers buying every 1–3 weeks until now, customers who
/// bought a few times early and vanished, and occasional buyers. Returns the messages and
/// every purchase `(user, time, value)`.
fn shop(customers: usize, seed: u64) -> (Vec<Value>, Vec<(String, i64, f64)>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages = Vec::new();
    let mut purchases = Vec::new();
    for i in 0..customers {
        let user = format!("u{i}");
        let first = START + rng.gen_range(0..250) * DAY + rng.gen_range(0..DAY);
        let plan = ["basic", "pro"][i % 2];
        let basket = rng.gen_range(15.0..120.0_f64);
        messages.push(identify(&user, first, json!({ "plan": plan })));
        let (stop, gap) = match i % 3 {
            0 => (NOW, 7..21),
            1 => (first + 40 * DAY, 5..15),
            _ => (NOW, 30..90),
        };
        let mut t = first;
        while t < stop.min(NOW) {
            let value = (basket * rng.gen_range(0.5..1.5_f64)).round();
            messages.push(purchase(&user, t, value));
            purchases.push((user.clone(), t, value));
            t += rng.gen_range(gap.clone()) * DAY + rng.gen_range(0..DAY);
        }
    }
    (messages, purchases)
}

#[test]
fn clv_scores_every_buyer_and_the_silent_majority_adds_up() {
    let w = World::new();
    let (messages, purchases) = shop(300, 7);
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    let fit = models
        .run(ModelKind::Clv, NOW * 1000, &Progress::detached())
        .unwrap();
    let fit = json_of(&fit);
    assert_eq!(fit["customers"], 300, "{fit:#}");
    assert_eq!(fit["warnings"], json!([]), "{fit:#}");
    assert_eq!(fit["profiles_scored"], 300);
    assert_eq!(fit["transactions"].as_u64().unwrap() as usize, {
        // Purchases of one customer on the same day are one transaction period but
        // still separate transactions.
        purchases.len()
    });
    assert!(fit["holdout"]["customers"].as_u64().unwrap() > 0, "{fit:#}");
    assert_eq!(fit["spend_model"], "gamma_gamma", "{fit:#}");
    let stored = models.latest_fit(ModelKind::Clv).unwrap().unwrap();
    let stored = json_of(&stored);
    assert_eq!(stored["params"], fit["params"]);
    assert_eq!(stored["fitted_at"], "2025-01-01T00:00:00.000Z");

    for i in 0..300 {
        let s = w.scores(&format!("u{i}")).expect("every buyer is scored");
        let p = s["p_alive"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{s:?}");
        assert!(s["clv"].as_f64().unwrap() >= 0.0);
        assert!(s["expected_purchases_90d"].as_f64().unwrap() >= 0.0);
        assert_eq!(s["model"], "bg_nbd+gamma_gamma");
    }
    // u0 buys every few weeks up to now; u1 stopped after 40 days, months ago.
    let loyal = w.scores("u0").unwrap()["p_alive"].as_f64().unwrap();
    let gone = w.scores("u1").unwrap()["p_alive"].as_f64().unwrap();
    assert!(loyal > gone, "loyal {loyal} vs gone {gone}");
    assert!(
        w.scores("u0").unwrap()["clv"].as_f64().unwrap()
            > w.scores("u1").unwrap()["clv"].as_f64().unwrap()
    );

    // The distribution of the stored scores counts every scored buyer once.
    let d = clv_distribution(w.store.as_ref(), models.config(), 12, &Progress::detached()).unwrap();
    assert_eq!(d.profiles, 300);
    let clv = d.clv.as_ref().unwrap();
    assert_eq!(clv.histogram.counts.iter().sum::<u64>(), 300);
    assert_eq!(clv.histogram.counts.len(), 12);
    let direct: f64 = (0..300)
        .map(|i| w.scores(&format!("u{i}")).unwrap()["clv"].as_f64().unwrap())
        .sum();
    assert!((clv.total - direct).abs() < 1e-6 * direct.max(1.0));
    assert_eq!(d.p_alive.as_ref().unwrap().count, 300);
    for bins in [0, DISTRIBUTION_BINS_MAX + 1] {
        let e = clv_distribution(
            w.store.as_ref(),
            models.config(),
            bins,
            &Progress::detached(),
        );
        assert!(
            matches!(e, Err(EngineError::Invalid { field: "bins", .. })),
            "{e:?}"
        );
    }

    // The report against a direct computation from the same purchases and parameters.
    let report = silent_majority(
        w.store.as_ref(),
        models.config(),
        0.5,
        NOW * 1000,
        &Progress::detached(),
    )
    .unwrap();
    let report = json_of(&report);
    let p = &fit["params"];
    let bg = BgNbd::new(
        p["r"].as_f64().unwrap(),
        p["alpha"].as_f64().unwrap(),
        p["a"].as_f64().unwrap(),
        p["b"].as_f64().unwrap(),
    )
    .unwrap();
    let txs: Vec<Transaction<String>> = purchases
        .iter()
        .map(|(u, t, v)| Transaction {
            customer: u.clone(),
            timestamp: *t,
            amount: *v,
        })
        .collect();
    let opts = SummaryOptions {
        period: Period::Day,
        unit: TimeUnit::Weeks,
    };
    let mut by_cohort: BTreeMap<String, (usize, usize, f64, f64)> = BTreeMap::new();
    for c in summarize(&txs, NOW, opts).unwrap() {
        let mine = purchases.iter().filter(|p| p.0 == c.customer);
        let first = mine.clone().map(|p| p.1).min().unwrap();
        let revenue: f64 = mine.map(|p| p.2).sum();
        let gone = bg.p_alive(&c.summary).unwrap() < 0.5;
        let cohort = chrono::DateTime::from_timestamp(first, 0)
            .unwrap()
            .format("%Y-%m")
            .to_string();
        let e = by_cohort.entry(cohort).or_default();
        e.0 += 1;
        e.1 += usize::from(gone);
        e.2 += revenue;
        e.3 += if gone { revenue } else { 0.0 };
    }
    let total = &report["total"];
    assert_eq!(total["customers"], 300);
    let gone: usize = by_cohort.values().map(|c| c.1).sum();
    assert!(gone > 0 && gone < 300, "{report:#}");
    assert_eq!(total["probably_gone"].as_u64().unwrap() as usize, gone);
    let revenue_gone: f64 = by_cohort.values().map(|c| c.3).sum();
    assert!((total["revenue_gone"].as_f64().unwrap() - revenue_gone).abs() < 1e-6);
    let cohorts = report["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), by_cohort.len());
    for (row, (name, want)) in cohorts.iter().zip(&by_cohort) {
        assert_eq!(row["cohort"], name.as_str());
        assert_eq!(row["customers"].as_u64().unwrap() as usize, want.0);
        assert_eq!(row["probably_gone"].as_u64().unwrap() as usize, want.1);
        assert!((row["revenue"].as_f64().unwrap() - want.2).abs() < 1e-6);
    }

    // Bad thresholds name the field.
    let err = silent_majority(
        w.store.as_ref(),
        models.config(),
        1.5,
        NOW * 1000,
        &Progress::detached(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        EngineError::Invalid {
            field: "threshold",
            ..
        }
    ));
}

#[test]
fn a_shop_without_purchases_cannot_fit_and_says_why() {
    let w = World::new();
    w.ingest(&[identify("a", START, json!({}))]);
    let models = w.models(ModelsConfig::default());
    let err = models
        .run(ModelKind::Clv, NOW * 1000, &Progress::detached())
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InsufficientData(m) if m.contains("Order Completed")),
        "{err}"
    );
    let err = silent_majority(
        w.store.as_ref(),
        models.config(),
        0.5,
        NOW * 1000,
        &Progress::detached(),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)));
    let err =
        clv_distribution(w.store.as_ref(), models.config(), 20, &Progress::detached()).unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)));
}

#[test]
fn jobs_run_one_at_a_time_per_model_and_report_their_result() {
    let w = World::new();
    let (messages, _) = shop(120, 3);
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    let job = models.start(ModelKind::Clv, NOW * 1000).unwrap();
    assert_eq!(job.state, JobState::Running);
    match models.start(ModelKind::Clv, NOW * 1000) {
        Err(EngineError::Conflict(m)) => assert!(m.contains(&job.id)),
        Ok(_) => panic!("a second clv job started while the first ran"),
        Err(e) => panic!("{e}"),
    }
    let done = models
        .wait(&job.id, std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(json_of(&done.result.unwrap())["customers"], 120);
    assert!(models.job("job_nope").is_none());
    models.shutdown();
    assert!(matches!(
        models.start(ModelKind::Clv, NOW * 1000),
        Err(EngineError::ShuttingDown)
    ));
}

#[test]
fn nps_over_time_and_by_plan_equals_a_hand_computation() {
    let w = World::new();
    let may = START + 130 * DAY; // 2024-05-10
    let june = START + 160 * DAY; // 2024-06-09
    let mut messages = Vec::new();
    // May: pro 10, 9, 8, 3 ; basic 6, 10.   June: pro 9 ; basic 0, 2.
    let answers = [
        ("a", "pro", may, 10.0),
        ("b", "pro", may, 9.0),
        ("c", "pro", may, 8.0),
        ("d", "pro", may, 3.0),
        ("e", "basic", may, 6.0),
        ("f", "basic", may, 10.0),
        ("g", "pro", june, 9.0),
        ("h", "basic", june, 0.0),
        ("i", "basic", june, 2.0),
    ];
    for (user, plan, at, score) in answers {
        messages.push(identify(user, START, json!({ "plan": plan })));
        messages.push(answer(user, at, "NPS", score, None));
    }
    // Off the scale, another survey, and a CSAT answer: none counts towards NPS.
    messages.push(answer("a", june, "nps", 11.0, None));
    messages.push(answer("a", june, "csat", 5.0, None));
    w.ingest(&messages);
    let config = ModelsConfig::default();
    let query = SurveyQuery {
        survey: "nps".into(),
        metric: None,
        by: Some(rapport_value::survey::TimeBucket::Month),
        group_by: Some("plan".into()),
        since: None,
        until: None,
    };
    let r = survey_report(w.store.as_ref(), &config, &query, &Progress::detached()).unwrap();
    let r = json_of(&r);
    assert_eq!(r["responses"], 9);
    assert_eq!(r["invalid_answers"], 1);
    // Overall: promoters 10, 9, 10, 9 = 4; detractors 3, 6, 0, 2 = 4 → NPS 0.
    assert_eq!(r["overall"]["nps"].as_f64().unwrap(), 0.0);
    assert_eq!(r["overall"]["responses"], 9);
    let ci = &r["overall"]["ci"];
    assert!(ci["low"].as_f64().unwrap() < 0.0 && ci["high"].as_f64().unwrap() > 0.0);
    let series = r["series"].as_array().unwrap();
    let find = |period: &str, group: &str| {
        series
            .iter()
            .find(|s| s["period"] == period && s["group"] == group)
            .unwrap()["report"]
            .clone()
    };
    // May, pro: 2 promoters, 1 passive, 1 detractor of 4 → 25.
    assert_eq!(find("2024-05-01", "pro")["nps"].as_f64().unwrap(), 25.0);
    // May, basic: 1 promoter, 1 detractor → 0.
    assert_eq!(find("2024-05-01", "basic")["nps"].as_f64().unwrap(), 0.0);
    // June, basic: 2 detractors → −100.
    assert_eq!(find("2024-06-01", "basic")["nps"].as_f64().unwrap(), -100.0);
    assert_eq!(series.len(), 4);

    let custom = SurveyQuery {
        survey: "onboarding".into(),
        by: None,
        group_by: None,
        ..query
    };
    assert!(matches!(
        survey_report(w.store.as_ref(), &config, &custom, &Progress::detached()),
        Err(EngineError::Invalid {
            field: "metric",
            ..
        })
    ));
}

#[test]
fn earned_growth_through_the_store_equals_a_hand_computation() {
    let w = World::new();
    let jan = START + 10 * DAY;
    let feb = jan + 31 * DAY;
    w.ingest(&[
        purchase("old1", jan, 100.0),
        purchase("old1", feb, 80.0),
        purchase("old2", jan, 50.0),
        answer(
            "new1",
            feb,
            "onboarding",
            9.0,
            Some("A friend recommended you"),
        ),
        purchase("new1", feb, 30.0),
        answer("new2", feb, "onboarding", 9.0, Some("Saw an ad on the bus")),
        purchase("new2", feb, 40.0),
        purchase("new3", feb, 5.0),
    ]);
    let r = earned_growth_report(
        w.store.as_ref(),
        &ModelsConfig::default(),
        &EarnedGrowthQuery {
            period: rapport_value::survey::TimeBucket::Month,
        },
        (feb + 40 * DAY) * 1000,
        &Progress::detached(),
    )
    .unwrap();
    let r = json_of(&r);
    assert_eq!(
        r["acquisition"],
        json!({"earned": 1, "bought": 1, "unknown": 3})
    );
    let feb_row = &r["periods"][0];
    assert_eq!(feb_row["period"], "2024-02-01");
    assert_eq!(feb_row["complete"], true);
    // NRR = 80/150, earned share = 30/150, EGR = 110/150 − 1.
    assert!((feb_row["nrr"].as_f64().unwrap() - 80.0 / 150.0).abs() < 1e-12);
    assert!((feb_row["egr"].as_f64().unwrap() - (110.0 / 150.0 - 1.0)).abs() < 1e-12);
    assert_eq!(feb_row["new_earned_customers"], 1);
    assert_eq!(feb_row["new_bought_customers"], 1);
    assert_eq!(feb_row["new_unknown_customers"], 1);
    assert_eq!(feb_row["new_unknown_revenue"].as_f64().unwrap(), 5.0);
    // March: only old1's and new customers' February revenue before, nothing after.
    let mar_row = &r["periods"][1];
    assert_eq!(mar_row["nrr"].as_f64().unwrap(), 0.0);
    assert_eq!(mar_row["complete"], false);
}

/// Customers on a monthly plan mostly stop using the product; annual ones mostly stay.
fn subscriptions(customers: usize, seed: u64) -> Vec<Value> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut messages = Vec::new();
    for i in 0..customers {
        let user = format!("s{i}");
        let first = START + rng.gen_range(0..120) * DAY;
        let plan = if i % 2 == 0 { "monthly" } else { "annual" };
        messages.push(identify(&user, first, json!({ "plan": plan })));
        let churn_p = if plan == "monthly" { 0.7 } else { 0.15 };
        let stop = if rng.gen_bool(churn_p) {
            // Leaves at some point in the last 200 days.
            NOW - rng.gen_range(100..200) * DAY
        } else {
            NOW
        };
        let mut t = first;
        while t < stop {
            messages.push(track(&user, "Report Viewed", t, json!({})));
            t += rng.gen_range(2..12) * DAY;
        }
        if stop < NOW && i % 4 == 0 {
            messages.push(track(&user, "Subscription Cancelled", stop, json!({})));
        }
    }
    messages
}

#[test]
fn churn_training_reports_auc_and_scores_every_profile() {
    let w = World::new();
    w.ingest(&subscriptions(400, 11));
    let models = w.models(ModelsConfig::default());
    let fit = models
        .run(ModelKind::Churn, NOW * 1000, &Progress::detached())
        .unwrap();
    let fit = json_of(&fit);
    let auc = fit["auc"].as_f64().unwrap();
    assert!(auc > 0.6 && auc <= 1.0, "{fit:#}");
    assert_eq!(fit["report"]["auc_test"], fit["auc"]);
    assert!(fit["churned_in_training"].as_u64().unwrap() > 0);
    assert_eq!(fit["profiles_scored"], 400);
    for i in 0..400 {
        let s = w.scores(&format!("s{i}")).unwrap();
        let risk = s["churn_risk"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&risk), "{s:?}");
        if s["churned"] == true {
            assert_eq!(risk, 1.0);
        }
    }

    // A store where nobody ever churned cannot teach churn.
    let calm = World::new();
    let mut messages = Vec::new();
    for i in 0..20 {
        let mut t = START;
        while t < NOW {
            messages.push(track(&format!("c{i}"), "Report Viewed", t, json!({})));
            t += 5 * DAY;
        }
    }
    calm.ingest(&messages);
    let err = calm
        .models(ModelsConfig::default())
        .run(ModelKind::Churn, NOW * 1000, &Progress::detached())
        .unwrap_err();
    assert!(matches!(err, EngineError::InsufficientData(_)), "{err}");
}

#[test]
fn health_scores_fall_across_a_band_and_raise_an_alert_with_the_reason() {
    let w = World::new();
    let day0 = NOW - 60 * DAY;
    let mut messages = vec![
        identify(
            "ann",
            START,
            json!({ "renewal_date": time(NOW + 20 * DAY) }),
        ),
        answer("ann", day0 - DAY, "nps", 10.0, None),
        identify("bob", START, json!({})),
    ];
    for k in 0..60 {
        messages.push(track("ann", "Report Viewed", day0 - k * DAY, json!({})));
        messages.push(track("bob", "Report Viewed", day0 - k * DAY, json!({})));
    }
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    let first = models
        .run(ModelKind::Health, day0 * 1000, &Progress::detached())
        .unwrap();
    let first = json_of(&first);
    // Bob has nothing but activity (one input besides the ticket count): not scored.
    assert_eq!(first["profiles_scored"], 1, "{first:#}");
    assert_eq!(first["profiles_without_signals"], 1, "{first:#}");
    assert_eq!(w.scores("bob"), None);
    assert_eq!(first["alerts_raised"], 0);
    let before = w.scores("ann").unwrap();
    assert_eq!(before["health_band"], "healthy", "{before:?}");

    // Two months later Ann has gone quiet, opened tickets and answered 2 on NPS.
    let mut later = vec![answer("ann", NOW - DAY, "nps", 2.0, None)];
    for k in 0..6 {
        later.push(track(
            "ann",
            "Ticket Created",
            NOW - 2 * DAY - k * 3600,
            json!({}),
        ));
    }
    w.ingest(&later);
    let second = models
        .run(ModelKind::Health, NOW * 1000, &Progress::detached())
        .unwrap();
    let second = json_of(&second);
    let after = w.scores("ann").unwrap();
    let score = after["health_score"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&score));
    assert_ne!(after["health_band"], "healthy", "{after:?}");
    assert!(second["alerts_raised"].as_u64().unwrap() >= 1, "{second:#}");

    let page = alerts(w.store.as_ref(), None, 100).unwrap();
    let page = JsonPage::of(page);
    let ann = Profiles {
        store: w.store.as_ref(),
    }
    .resolve("user_id:ann")
    .unwrap();
    let dropped = page
        .data
        .iter()
        .find(|a| a["profile"] == ann.id.as_str() && a["kind"] == "band_dropped")
        .expect("a band alert for ann");
    let reason = dropped["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("health fell from healthy to"),
        "{reason}"
    );
    assert!(reason.contains("nps"), "{reason}");
    assert_eq!(dropped["previous_band"], "healthy");
    // The renewal in 20 days with a low score is flagged once, not on every run.
    assert!(
        page.data
            .iter()
            .any(|a| a["profile"] == ann.id.as_str() && a["kind"] == "renewal_at_risk")
    );
    let third = models
        .run(ModelKind::Health, NOW * 1000 + 1, &Progress::detached())
        .unwrap();
    let third = json_of(&third);
    assert_eq!(third["alerts_raised"], 0, "{third:#}");

    // The feed pages by id.
    let first_page = alerts(w.store.as_ref(), None, 1).unwrap();
    assert_eq!(first_page.data.len(), 1);
    let rest = alerts(w.store.as_ref(), first_page.next_after.as_deref(), 100).unwrap();
    assert_eq!(rest.data.len(), page.data.len() - 1);
    assert!(matches!(
        alerts(w.store.as_ref(), Some("xyz"), 10),
        Err(EngineError::Invalid { field: "after", .. })
    ));
    let report = health_report(w.store.as_ref()).unwrap();
    let report = json_of(&report);
    assert_eq!(
        report["recent_alerts"].as_array().unwrap().len(),
        page.data.len()
    );
}

#[test]
fn the_schedule_fits_every_model_in_turn_and_stops_at_once() {
    let w = World::new();
    let (messages, _) = shop(60, 5);
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    let schedule = Schedule::every(
        models.clone(),
        std::time::Duration::from_secs(3600),
        Some(std::time::Duration::ZERO),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The schedule runs on the wall clock, long after this shop's history: health then
    // has p_alive alone to go on and fails, which still ends the round.
    while models
        .jobs()
        .iter()
        .all(|j| j.model != ModelKind::Health || j.state == JobState::Running)
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", models.jobs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    schedule.stop();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Newest first: health, churn, clv, each started by the schedule.
    let jobs = models.jobs();
    let order: Vec<ModelKind> = jobs.iter().map(|j| j.model).collect();
    assert_eq!(order, [ModelKind::Health, ModelKind::Churn, ModelKind::Clv]);
    assert_eq!(jobs[2].state, JobState::Succeeded);
    assert!(models.latest_fit(ModelKind::Clv).unwrap().is_some());
}

// Tiny and degenerate data: every job says why it cannot answer and writes nothing it
// cannot stand behind (issue 18).

/// `n` customers buying on a weekly rhythm, each twice or more when `repeat`.
fn few_buyers(n: usize, repeat: bool) -> Vec<Value> {
    let mut m = Vec::new();
    for i in 0..n {
        let user = format!("b{i}");
        let first = START + (i as i64 % 50) * DAY;
        m.push(identify(
            &user,
            first,
            json!({"email": format!("{user}@example.com")}),
        ));
        m.push(purchase(&user, first, 10.0 + i as f64));
        if repeat && i % 2 == 0 {
            m.push(purchase(&user, first + 20 * DAY, 30.0 + i as f64));
        }
    }
    m
}

fn insufficient(err: EngineError) -> String {
    match err {
        EngineError::InsufficientData(m) => m,
        other => panic!("expected InsufficientData, got {other}"),
    }
}

#[test]
fn clv_on_0_1_2_customers_fails_says_why_and_writes_nothing() {
    for n in 0..=2 {
        let w = World::new();
        let mut messages = few_buyers(n, true);
        messages.push(identify("visitor", START, json!({})));
        w.ingest(&messages);
        let models = w.models(ModelsConfig::default());
        let m = insufficient(
            models
                .run(ModelKind::Clv, NOW * 1000, &Progress::detached())
                .unwrap_err(),
        );
        let want = match n {
            0 => "no `Order Completed` events among the".to_owned(),
            1 => "1 customer, 1 repeat buyer: too few for a reliable BG/NBD fit (need ≥ 50 customers and ≥ 20 repeat buyers".to_owned(),
            _ => "2 customers, 1 repeat buyer: too few for a reliable BG/NBD fit (need ≥ 50 customers".to_owned(),
        };
        assert!(m.contains(&want), "{n}: {m}");
        assert!(m.ends_with("scores not written"), "{m}");
        for i in 0..n {
            assert_eq!(w.scores(&format!("b{i}")), None, "{n} customers");
        }
        assert_eq!(models.latest_fit(ModelKind::Clv).unwrap(), None);
    }
}

#[test]
fn clv_when_every_buyer_bought_once_fails_for_want_of_repeat_buyers() {
    let w = World::new();
    w.ingest(&few_buyers(80, false));
    let models = w.models(ModelsConfig::default());
    let m = insufficient(
        models
            .run(ModelKind::Clv, NOW * 1000, &Progress::detached())
            .unwrap_err(),
    );
    assert!(
        m.starts_with("80 customers, 0 repeat buyers: too few"),
        "{m}"
    );
    assert_eq!(w.scores("b0"), None);
}

#[test]
fn clv_with_identical_histories_says_what_it_could_not_fit() {
    // Every customer buys every 7 days from the same day, always the same amount: no
    // heterogeneity for r and α to describe and no spread of spend within a customer.
    // Plain maximum likelihood runs off; the penalised fit is kept with a warning, and the
    // spend fit, whose parameters run off too, is dropped: no `clv` is written.
    let w = World::new();
    let mut messages = Vec::new();
    for i in 0..60 {
        let user = format!("b{i}");
        for k in 0..10 {
            messages.push(purchase(
                &user,
                NOW - 100 * DAY + k * 7 * DAY,
                20.0 + i as f64,
            ));
        }
    }
    w.ingest(&messages);
    let mut config = ModelsConfig::default();
    config.clv.holdout_days = 0;
    let models = w.models(config);
    let fit = models
        .run(ModelKind::Clv, NOW * 1000, &Progress::detached())
        .unwrap();
    let fit = json_of(&fit);
    let warnings: Vec<&str> = fit["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings[0].starts_with("plain maximum likelihood did not converge"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("the spend fit ran off to implausible parameters (q = ")
            && warnings[1].ends_with("no spend model, so no `clv` written"),
        "{warnings:?}"
    );
    let s = w.scores("b0").unwrap();
    assert!(s.contains_key("p_alive") && !s.contains_key("clv"), "{s:?}");
}

#[test]
fn clv_with_identical_spends_succeeds_with_a_warning_and_writes_no_clv() {
    let w = World::new();
    let (messages, _) = shop(120, 3);
    // Every purchase is worth the same.
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|mut m| {
            if m["event"] == "Order Completed" {
                m["properties"]["revenue"] = json!(25.0);
            }
            m
        })
        .collect();
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    // A previous fit's clv must not outlive a fit that cannot compute one.
    let store = w.store.as_ref();
    let u0 = Profiles { store }.resolve("user_id:u0").unwrap().id;
    let mut stale = Map::new();
    stale.insert("clv".into(), json!(999.0));
    ScoreWriter::default()
        .merge(
            store,
            [(u0.as_str().to_owned(), stale)],
            &Progress::detached(),
        )
        .unwrap();
    let job = models.start(ModelKind::Clv, NOW * 1000).unwrap();
    let done = models
        .wait(&job.id, std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert!(
        done.warnings.iter().any(|w| w
            == "every repeat buyer spends the same on average (25.00): Gamma-Gamma cannot tell their spends apart: no spend model, so no `clv` written"),
        "{:?}",
        done.warnings
    );
    let fit = done.result.unwrap();
    let fit = json_of(&fit);
    assert_eq!(fit["spend_model"], Value::Null);
    assert_eq!(
        fit["warnings"].as_array().unwrap().len(),
        done.warnings.len()
    );
    let s = w.scores("u0").unwrap();
    assert!(s.get("p_alive").is_some(), "{s:?}");
    assert!(s.get("clv").is_none(), "{s:?}");
}

#[test]
fn churn_on_tiny_data_fails_says_why_and_writes_nothing() {
    for n in 0..=2 {
        let w = World::new();
        let mut messages = Vec::new();
        for i in 0..n {
            let user = format!("s{i}");
            messages.push(identify(&user, START, json!({"plan": "pro"})));
            messages.push(track(&user, "Report Viewed", NOW - 150 * DAY, json!({})));
        }
        messages.push(identify("x", START, json!({})));
        w.ingest(&messages);
        let models = w.models(ModelsConfig::default());
        let m = insufficient(
            models
                .run(ModelKind::Churn, NOW * 1000, &Progress::detached())
                .unwrap_err(),
        );
        assert!(
            m.contains("too few to learn churn from") || m.starts_with("no customer of the"),
            "{n}: {m}"
        );
        assert!(m.ends_with("scores not written"), "{m}");
        assert_eq!(w.scores("s0"), None);
    }
}

#[test]
fn churn_whose_auc_is_chance_fails_and_writes_nothing() {
    // Sixty identical histories up to the training cut-off; afterwards half stay and half
    // leave. The features cannot tell them apart: AUC 0.5.
    let w = World::new();
    let mut messages = Vec::new();
    let cutoff = NOW - 90 * DAY;
    for i in 0..60 {
        let user = format!("s{i}");
        messages.push(identify(&user, START, json!({"plan": "pro"})));
        let end = if i % 2 == 0 { NOW - DAY } else { cutoff };
        let mut t = START;
        while t <= end {
            messages.push(track(&user, "Report Viewed", t, json!({})));
            t += 5 * DAY;
        }
    }
    w.ingest(&messages);
    let models = w.models(ModelsConfig::default());
    let m = insufficient(
        models
            .run(ModelKind::Churn, NOW * 1000, &Progress::detached())
            .unwrap_err(),
    );
    assert!(m.contains("not better than chance"), "{m}");
    assert_eq!(w.scores("s0"), None);
    assert_eq!(models.latest_fit(ModelKind::Churn).unwrap(), None);
}

#[test]
fn health_without_inputs_fails_and_profiles_with_one_input_are_not_scored() {
    // No profile at all, then profiles with nothing but a ticket count.
    let w = World::new();
    let models = w.models(ModelsConfig::default());
    let m = insufficient(
        models
            .run(ModelKind::Health, NOW * 1000, &Progress::detached())
            .unwrap_err(),
    );
    assert!(m.starts_with("none of the 0 profiles read"), "{m}");
    w.ingest(&[
        identify("a", START, json!({})),
        identify("b", START, json!({})),
    ]);
    let m = insufficient(
        models
            .run(ModelKind::Health, NOW * 1000, &Progress::detached())
            .unwrap_err(),
    );
    assert!(
        m.starts_with("none of the 2 profiles read has 2 or more health inputs known besides the ticket count (activity_trend 0/2, support_tickets 2/2"),
        "{m}"
    );
    assert_eq!(w.scores("a"), None);
    // Activity alone is one input: still not enough. With an NPS answer as well, the
    // profile is scored; the other is not, and the summary says so.
    w.ingest(&[track("a", "Report Viewed", NOW - 3 * DAY, json!({}))]);
    let m = insufficient(
        models
            .run(ModelKind::Health, NOW * 1000, &Progress::detached())
            .unwrap_err(),
    );
    assert!(m.contains("activity_trend 1/2"), "{m}");
    w.ingest(&[answer("a", NOW - 2 * DAY, "nps", 9.0, None)]);
    let fit = models
        .run(ModelKind::Health, NOW * 1000, &Progress::detached())
        .unwrap();
    let fit = json_of(&fit);
    assert_eq!(fit["profiles_scored"], 1, "{fit:#}");
    let warnings: Vec<&str> = fit["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        warnings
            .contains(&"1 of 2 profiles have fewer than 2 health inputs known besides the ticket count and were not scored"),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("no profile has `p_alive`: run `rapport fit clv`")),
        "{warnings:?}"
    );
    assert!(w.scores("a").unwrap().contains_key("health_score"));
    assert_eq!(w.scores("b"), None);
}

/// Fit summaries as the first version of the value jobs wrote them (before standard
/// errors, warnings, score failures, inputs known): they still read, and what is missing
/// reads as empty.
#[test]
fn summaries_written_by_older_versions_still_read() {
    let w = World::new();
    let store = |model: &str, summary: Value| {
        w.store
            .state_commit(
                &[rapport_store::StateWrite {
                    namespace: NS_FIT.into(),
                    profile: model.into(),
                    key: Vec::new(),
                    value: Some(serde_json::to_vec(&summary).unwrap()),
                }],
                None,
            )
            .unwrap();
    };
    store(
        "clv",
        json!({
            "purchase_model": "bg_nbd", "spend_model": null,
            "params": {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43},
            "log_likelihood": null, "iterations": 31, "penalty": 0.0, "spend_params": null,
            "spend_log_likelihood": null, "spend_error": "the spend model cannot be fitted",
            "spend_fit_relaxed": false, "time_unit": "weeks", "customers": 300,
            "repeat_customers": 120, "transactions": 900, "profiles_scored": 300,
            "events_read": 1200, "unattributed_events": 0,
            "holdout": {"days": 90, "error": "too few customers"},
            "lifetime_months": 12, "monthly_discount_rate": 0.01,
            "model": "clv", "fitted_at": "2025-01-01T00:00:00.000Z", "duration_ms": 12,
        }),
    );
    store(
        "churn",
        json!({
            "algorithm": "logistic", "auc": 0.8,
            "label": {"inactivity_days": 60, "cancel_events": []}, "trait_features": [],
            "training_as_of": "2024-11-02T00:00:00.000Z", "customers": 100,
            "churned_in_training": 30,
            "report": {"algorithm": "logistic", "n_train": 80, "n_test": 20,
                "positives_train": 24, "positives_test": 6, "auc_test": 0.8,
                "log_loss_test": 0.5, "auc_train": null, "log_loss_train": 0.4,
                "intercept": -1.0, "feature_weights": [{"feature": "events_30d", "weight": -0.7}],
                "iterations": 6, "converged": true},
            "profiles_scored": 100, "currently_churned": 20, "events_read": 500,
            "unattributed_events": 1, "model": "churn",
            "fitted_at": "2025-01-01T00:00:00.000Z", "duration_ms": 5,
        }),
    );
    store(
        "health",
        json!({
            "profiles_scored": 3, "profiles_without_signals": 1, "mean_score": 55.0,
            "bands": {"healthy": 1, "at_risk": 1, "critical": 1}, "alerts_raised": 0,
            "lowest": [{"profile": "p_1", "score": 20.0, "band": "critical"}],
            "events_read": 40, "unattributed_events": 0, "model": "health",
            "fitted_at": "2025-01-01T00:00:00.000Z", "duration_ms": 2,
        }),
    );
    let scores = ModelScores {
        store: w.store.as_ref(),
    };
    let Some(FitSummary::Clv(clv)) = scores.latest_fit(ModelKind::Clv).unwrap() else {
        panic!("no CLV summary");
    };
    assert!(clv.warnings.is_empty() && clv.score_failures.count == 0);
    assert_eq!(clv.standard_errors, PurchaseParams::default());
    assert!(matches!(clv.holdout, Some(Holdout::Failed(_))));
    assert_eq!(clv.params.b, Some(2.43));
    let Some(FitSummary::Churn(churn)) = scores.latest_fit(ModelKind::Churn).unwrap() else {
        panic!("no churn summary");
    };
    assert_eq!(churn.report.auc_train, None);
    let Some(FitSummary::Health(health)) = scores.latest_fit(ModelKind::Health).unwrap() else {
        panic!("no health summary");
    };
    assert!(health.inputs_known.is_empty());
    // Bands keep the order they were written in.
    let bands: Vec<&str> = health.bands.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bands, ["healthy", "at_risk", "critical"]);
    let report = json_of(&health_report(w.store.as_ref()).unwrap());
    assert_eq!(report["recent_alerts"], json!([]));
    assert_eq!(
        report["bands"],
        json!({"healthy": 1, "at_risk": 1, "critical": 1})
    );
}
