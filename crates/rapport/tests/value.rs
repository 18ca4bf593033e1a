//! The value models end to end: purchases and survey answers sent through the tracking API
//! of a real server, `rapport fit` and `rapport report` run as processes against it, scores
//! read back through the profile API, and bad parameters refused with the JSON error shape.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

use common::shop::{DAY, at, shop};

fn rapport(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .args(args)
        .arg("--url")
        .arg(server.url(""))
        .arg("--admin-key")
        .arg(&server.admin_key)
        .output()
        .expect("run rapport")
}

fn rapport_json(server: &TestServer, args: &[&str]) -> Value {
    let out = rapport(server, args);
    assert!(
        out.status.success(),
        "rapport {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON with --format json")
}

#[test]
fn fit_report_and_read_scores_through_the_api_and_the_cli() {
    let server = TestServer::start_with(&["--refit-interval-hours", "0"]);
    let now = chrono::Utc::now().timestamp();
    for chunk in shop(now).chunks(400) {
        let (status, body) = server.post("/v1/batch", &json!({ "batch": chunk }).to_string());
        assert_eq!(status, 200, "{body}");
    }
    server.wait_processed();
    // A segment over a score: empty until a fit writes scores.
    let r = server
        .client()
        .post(server.url("/api/v1/segments"))
        .bearer_auth(&server.admin_key)
        .json(&json!({"name": "scored", "expression": "computed.p_alive >= 0"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // `rapport fit clv` follows the job and prints its summary.
    let fit = rapport_json(&server, &["fit", "clv", "--format", "json"]);
    assert_eq!(fit["model"], "clv", "{fit:#}");
    assert_eq!(fit["customers"], 60);
    assert_eq!(fit["profiles_scored"], 60);
    assert!(fit["params"]["r"].as_f64().unwrap() > 0.0);
    let (status, latest) = server.admin_get("/api/v1/models/clv");
    assert_eq!(status, 200);
    assert_eq!(latest["params"], fit["params"]);

    // Scores appear on the profile.
    let (status, profile) = server.admin_get("/api/v1/profiles/user_id:u0");
    assert_eq!(status, 200, "{profile}");
    let scores = &profile["scores"];
    let p_alive = scores["p_alive"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p_alive), "{scores}");
    assert!(scores["clv"].as_f64().unwrap() >= 0.0, "{scores}");
    assert!(scores["expected_purchases_90d"].as_f64().is_some());
    // The segment reading p_alive was evaluated again over every profile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, seg) = server.admin_get("/api/v1/segments/scored");
        if seg["backfill"]["state"] == "done" && seg["size"] == 60 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scored profiles never entered: {seg}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // u1 stopped after a month, ten months ago: less likely alive than u0.
    let (_, gone) = server.admin_get("/api/v1/profiles/user_id:u1");
    assert!(
        gone["scores"]["p_alive"].as_f64().unwrap() < p_alive,
        "{gone}"
    );

    // NPS by hand: 4 promoters and 4 detractors of 10 answers.
    let nps = rapport_json(
        &server,
        &[
            "report",
            "nps",
            "--group-by",
            "traits.plan",
            "--format",
            "json",
        ],
    );
    assert_eq!(nps["responses"], 10, "{nps:#}");
    assert_eq!(nps["overall"]["nps"].as_f64().unwrap(), 0.0);
    let pro = nps["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["group"] == "pro")
        .unwrap();
    // Pro (even users): 10, 9, 9, 7, 2 → 3 promoters, 1 detractor of 5 → 40.
    assert_eq!(pro["report"]["nps"].as_f64().unwrap(), 40.0, "{nps:#}");

    // Table output of a report, with the silent majority after the fit.
    let out = rapport(
        &server,
        &["report", "silent-majority", "--threshold", "0.5"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("COHORT") && text.contains("all"), "{text}");
    let (status, sm) = server.admin_get("/api/v1/reports/silent-majority?threshold=0.5");
    assert_eq!(status, 200);
    assert_eq!(sm["total"]["customers"], 60);

    // The CLV distribution against the profiles' own scores, read one by one.
    let dist = rapport_json(
        &server,
        &[
            "report",
            "clv-distribution",
            "--bins",
            "8",
            "--format",
            "json",
        ],
    );
    let (mut holders, mut total) = (0u64, 0.0);
    for i in 0..60 {
        let (status, p) = server.admin_get(&format!("/api/v1/profiles/user_id:u{i}"));
        assert_eq!(status, 200, "{p}");
        if p["scores"]["p_alive"].is_f64() {
            holders += 1;
            total += p["scores"]["clv"].as_f64().unwrap();
        }
    }
    assert_eq!(dist["profiles"], holders, "{dist:#}");
    assert_eq!(dist["clv"]["count"], holders);
    assert_eq!(dist["profiles_scored_by_fit"], 60);
    let counts = dist["clv"]["histogram"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 8);
    assert_eq!(
        counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        holders
    );
    assert_eq!(dist["clv"]["histogram"]["scale"], "log", "{dist:#}");
    assert!((dist["clv"]["total"].as_f64().unwrap() - total).abs() < 1e-6 * total.max(1.0));
    let q = &dist["p_alive"]["quantiles"];
    assert!(q["p10"].as_f64() <= q["p50"].as_f64() && q["p50"].as_f64() <= q["p99"].as_f64());
    let out = rapport(&server, &["report", "clv-distribution"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("p_alive: count 60"),
        "{text}"
    );

    // A fit started over HTTP answers 202 with a job to follow.
    let (status, job) = server.admin_post("/api/v1/models/health/fit");
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (status, job) = server.admin_get(&format!("/api/v1/jobs/{id}"));
        assert_eq!(status, 200);
        if job["state"] != "running" || Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["state"], "succeeded", "{done:#}");
    // Health needs two inputs besides the ticket count: the 17 customers gone for months
    // who answered no survey have p_alive alone, and are not scored.
    assert_eq!(done["result"]["profiles_scored"], 43, "{done:#}");
    assert_eq!(done["result"]["profiles_without_signals"], 17);
    assert!(
        done["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("17 of 60 profiles have fewer than 2")),
        "{done:#}"
    );
    let (status, health) = server.admin_get("/api/v1/reports/health");
    assert_eq!(status, 200, "{health}");
    let (_, profile) = server.admin_get("/api/v1/profiles/user_id:u0");
    assert!(
        profile["scores"]["health_score"].as_f64().is_some(),
        "{profile}"
    );
    assert_eq!(
        profile["scores"]["p_alive"], scores["p_alive"],
        "jobs merge their fields"
    );
    let (status, eg) = server.admin_get("/api/v1/reports/earned-growth?period=quarter");
    assert_eq!(status, 200, "{eg}");
    assert!(!eg["periods"].as_array().unwrap().is_empty());
    // While a fit runs, `rapport fit` of the same model follows it instead of failing.
    assert_eq!(server.admin_post("/api/v1/models/clv/fit").0, 202);
    let again = rapport_json(&server, &["fit", "clv", "--format", "json"]);
    assert_eq!(again["customers"], 60);
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"rapport_model_fits_total{model="clv",outcome="succeeded"}"#),
        "{metrics}"
    );
}

#[test]
fn bad_requests_get_the_json_error_shape_naming_the_field() {
    let server = TestServer::start_with(&["--refit-interval-hours", "0"]);
    for (path, field) in [
        ("/api/v1/reports/silent-majority?threshold=2", "threshold"),
        ("/api/v1/reports/clv-distribution?bins=0", "bins"),
        ("/api/v1/reports/clv-distribution?bins=201", "bins"),
        ("/api/v1/reports/clv-distribution?bins=ten", "bins"),
        ("/api/v1/reports/nps?by=fortnight", "by"),
        ("/api/v1/reports/nps?group_by=plan", "group_by"),
        ("/api/v1/reports/earned-growth?period=week", "period"),
        ("/api/v1/alerts?after=zz", "after"),
        ("/api/v1/alerts?limit=0", "limit"),
        ("/api/v1/reports/health?colour=red", "colour"),
    ] {
        let (status, body) = server.admin_get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    // Nothing fitted yet, an unknown model, an unknown job.
    let (status, body) = server.admin_get("/api/v1/reports/silent-majority");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rapport fit clv")
    );
    let (status, body) = server.admin_get("/api/v1/reports/clv-distribution");
    assert_eq!(status, 404, "{body}");
    assert_eq!(server.admin_get("/api/v1/models/ltv").0, 404);
    assert_eq!(server.admin_get("/api/v1/jobs/job_nope").0, 404);
    // Admin only.
    let r = reqwest::blocking::get(server.url("/api/v1/reports/nps")).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A fit without purchases fails, and the CLI says why.
    let out = rapport(&server, &["fit", "clv"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Order Completed"), "{err}");
    let out = rapport(&server, &["report", "nps", "--by", "fortnight"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`by`"));
}

/// The README's tour: three profiles, two buyers. Every command answers honestly: the fits
/// fail saying why and write nothing, the reports say what they read.
#[test]
fn the_tour_data_gets_honest_answers_from_every_command() {
    let server = TestServer::start_with(&["--refit-interval-hours", "0"]);
    let now = chrono::Utc::now().timestamp();
    let batch = json!({"batch": [
        {"type": "identify", "userId": "user-42", "traits": {"email": "ann@example.com", "plan": "pro"}},
        {"type": "track", "userId": "user-42", "event": "Order Completed",
         "timestamp": at(now - 40 * DAY), "properties": {"revenue": 12.5}},
        {"type": "track", "userId": "user-42", "event": "Order Completed", "properties": {"revenue": 42.5}},
        {"type": "track", "userId": "user-7", "event": "Order Completed", "properties": {"revenue": 20}},
        {"type": "page", "anonymousId": "a-1", "name": "Pricing"},
    ]});
    let (status, body) = server.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200, "{body}");
    server.wait_processed();
    let failure = |args: &[&str]| {
        let out = rapport(&server, args);
        assert!(!out.status.success(), "rapport {args:?} claimed success");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = failure(&["fit", "clv"]);
    assert!(
        err.contains("the clv fit failed: 2 customers, 1 repeat buyer: too few for a reliable BG/NBD fit (need ≥ 50 customers and ≥ 20 repeat buyers"),
        "{err}"
    );
    assert!(err.contains("scores not written"), "{err}");
    let (status, _) = server.admin_get("/api/v1/models/clv");
    assert_eq!(status, 404, "a failed fit is not the latest fit");
    let (_, profile) = server.admin_get("/api/v1/profiles/user_id:user-42");
    assert!(
        profile["scores"].is_null() || profile["scores"].get("clv").is_none(),
        "{profile}"
    );
    // The job over HTTP ends `failed` with the same reason.
    let (status, job) = server.admin_post("/api/v1/models/clv/fit");
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = loop {
        let (_, job) = server.admin_get(&format!("/api/v1/jobs/{id}"));
        if job["state"] != "running" {
            break job;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["state"], "failed", "{done:#}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .starts_with("2 customers, 1 repeat buyer")
    );
    assert_eq!(done["warnings"], json!([]));

    let err = failure(&["fit", "churn"]);
    assert!(err.contains("nothing to learn churn from"), "{err}");
    let err = failure(&["fit", "health"]);
    assert!(
        err.contains("none of the 3 profiles read has 2 or more health inputs known"),
        "{err}"
    );
    assert!(err.contains("p_alive 0/3"), "{err}");

    let out = rapport(&server, &["report", "nps"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no `Survey Answered` events among the 5 events read"),
        "{text}"
    );
    let nps = rapport_json(&server, &["report", "nps", "--format", "json"]);
    assert_eq!(nps["read"]["event"], "Survey Answered", "{nps:#}");
    assert_eq!(nps["read"]["survey_events"], 0);
    let growth = rapport_json(&server, &["report", "earned-growth", "--format", "json"]);
    assert_eq!(growth["read"]["purchases"], 3, "{growth:#}");
    assert_eq!(growth["read"]["customers_with_reason"], 0);
    assert!(
        growth["note"]
            .as_str()
            .unwrap()
            .starts_with("no customer gave a `reason`")
    );

    let out = Command::new(common::BIN)
        .args(["identity", "match", "--url", &server.url(""), "--admin-key"])
        .arg(&server.admin_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 profiles read (3 live), 0 with at least two fields to compare"),
        "{text}"
    );
    assert!(
        text.contains("3 of 3 profiles have fewer than two of the compared fields and were left out (present: email 1/3;"),
        "{text}"
    );
    assert!(
        text.contains("0 comparable profiles: nothing to compare"),
        "{text}"
    );
}
