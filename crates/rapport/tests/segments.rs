//! Computed traits and segments over HTTP and the CLI: definitions validated against each
//! other, kept current on every event, windows expiring with time, backfill of a new
//! segment over existing profiles, entries and exits on the feed and on the timeline.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn send(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    s.admin_send(method, path, body)
}

fn cli(s: &TestServer, args: &[&str]) -> Value {
    s.admin_cli(args)
}

/// The CLI's table output against this server.
fn cli_table(s: &TestServer, args: &[&str]) -> String {
    let url = s.url("");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", &url, "--admin-key", &s.admin_key]);
    let out = common::cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An ISO-8601 UTC time to the second: `2026-01-02T03:04:05Z`.
fn is_time_to_the_second(s: &str) -> bool {
    s.len() == 20 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn wait_backfilled(s: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (_, status) = s.admin_get("/api/v1/audiences/status");
        if status["backfill"]["state"] == "done" {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the backfill did not finish");
}

fn members(s: &TestServer, segment: &str) -> Vec<String> {
    let (status, page) = s.admin_get(&format!("/api/v1/segments/{segment}/members"));
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["profile"].as_str().unwrap().to_owned())
        .collect()
}

fn profile(s: &TestServer, reference: &str) -> Value {
    let (status, p) = s.admin_get(&format!("/api/v1/profiles/{reference}"));
    assert_eq!(status, 200, "{p}");
    p
}

fn segment_names(p: &Value) -> Vec<String> {
    p["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["segment"].as_str().unwrap().to_owned())
        .collect()
}

fn now_iso(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn segments_follow_events_time_and_definitions() {
    let s = TestServer::start();

    // Definitions through the CLI and the API.
    let t = cli(
        &s,
        &[
            "traits",
            "create",
            "orders_30d",
            "--function",
            "count",
            "--event",
            "Order Completed",
            "--window",
            "30d",
        ],
    );
    assert_eq!(
        t["expression"],
        "count(event == \"Order Completed\", within 30d)"
    );
    assert_eq!(t["value_type"], "number");
    let (status, t) = send(
        &s,
        "POST",
        "/api/v1/computed-traits",
        Some(json!({"name": "revenue_total",
                    "expression": "sum(properties.revenue, event == \"Order Completed\")"})),
    );
    assert_eq!(status, 201, "{t}");
    cli(
        &s,
        &[
            "segments",
            "create",
            "repeat_buyers",
            "--expression",
            "computed.orders_30d >= 2",
            "--wait",
        ],
    );
    let (status, _) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "pro_users", "expression": "traits.plan == \"pro\""})),
    );
    assert_eq!(status, 201);
    let (status, _) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "pro_repeat",
                    "expression": "in_segment(\"pro_users\") and in_segment(\"repeat_buyers\")"})),
    );
    assert_eq!(status, 201);

    // Definitions are checked against each other.
    for (body, field, needle) in [
        (
            json!({"name": "x", "expression": "computed.nope > 1"}),
            "expression",
            "unknown computed trait",
        ),
        (
            json!({"name": "x", "expression": "count(event == \"A\") >"}),
            "expression",
            "expected",
        ),
        (
            json!({"name": "Bad Name", "expression": "true"}),
            "name",
            "valid name",
        ),
    ] {
        let (status, err) = send(&s, "POST", "/api/v1/segments", Some(body));
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{err}"
        );
    }
    let (status, err) = send(
        &s,
        "PUT",
        "/api/v1/segments/pro_users",
        Some(json!({"expression": "in_segment(\"pro_repeat\")"})),
    );
    assert_eq!(status, 400, "a cycle is refused: {err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("cycle"),
        "{err}"
    );
    let (status, err) = send(&s, "DELETE", "/api/v1/computed-traits/orders_30d", None);
    assert_eq!(status, 409, "a trait a segment reads stays: {err}");
    let (status, err) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "repeat_buyers", "expression": "true"})),
    );
    assert_eq!(status, 409, "{err}");
    let (status, err) = s.admin_get("/api/v1/segments/repeat_buyers/members?limit=0");
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    let (status, _) = s.admin_get("/api/v1/segments/nope/members");
    assert_eq!(status, 404);

    // Events move profiles in.
    let batch = json!({"batch": [
        {"type": "identify", "userId": "42", "traits": {"plan": "pro"}, "timestamp": now_iso(-60)},
        {"type": "track", "userId": "42", "event": "Order Completed", "properties": {"revenue": 40}, "timestamp": now_iso(-50)},
        {"type": "track", "userId": "42", "event": "Order Completed", "properties": {"revenue": 60}, "timestamp": now_iso(-40)},
        {"type": "track", "userId": "7", "event": "Order Completed", "properties": {"revenue": 5}, "timestamp": now_iso(-30)},
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    let p42 = profile(&s, "user_id:42");
    let id42 = p42["id"].as_str().unwrap().to_owned();
    assert_eq!(p42["computed"]["orders_30d"], 2);
    assert_eq!(p42["computed"]["revenue_total"], 100);
    assert_eq!(p42["computed"]["rfm_orders"], 2);
    assert_eq!(
        segment_names(&p42),
        vec!["pro_repeat", "pro_users", "repeat_buyers"]
    );
    let p7 = profile(&s, "user_id:7");
    assert_eq!(p7["computed"]["orders_30d"], 1);
    assert!(segment_names(&p7).is_empty());
    assert_eq!(members(&s, "repeat_buyers"), vec![id42.clone()]);
    let (_, seg) = s.admin_get("/api/v1/segments/repeat_buyers");
    assert_eq!(seg["size"], 1);
    // Members are listed with the identifier people know them by, times to the second.
    let (_, page) = s.admin_get("/api/v1/segments/repeat_buyers/members");
    assert_eq!(page["data"][0]["main_identifier"], "user_id:42", "{page}");
    let table = cli_table(&s, &["segments", "members", "repeat_buyers"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], [id42.as_str(), "user_id:42"], "{table}");
    assert!(is_time_to_the_second(row[2]), "{table}");
    let table = cli_table(&s, &["segments", "changes"]);
    for line in table.lines().skip(1) {
        let at = line.split_whitespace().nth(1).unwrap();
        assert!(is_time_to_the_second(at), "{table}");
    }

    // The feed says who entered, in order, and why.
    let feed = cli(&s, &["segments", "changes"]);
    let entries: Vec<(String, String)> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["cause"]["type"], "event", "{c}");
            (
                c["segment"].as_str().unwrap().to_owned(),
                c["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("pro_users".to_owned(), "entered".to_owned()),
            ("repeat_buyers".to_owned(), "entered".to_owned()),
            ("pro_repeat".to_owned(), "entered".to_owned()),
        ]
    );
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:42/events");
    let kinds: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "segment_entered").count(),
        3,
        "{timeline}"
    );

    // A new segment is evaluated over the existing profiles.
    let created = cli(
        &s,
        &[
            "segments",
            "create",
            "big_spenders",
            "--expression",
            "computed.revenue_total > 50",
            "--wait",
        ],
    );
    assert_eq!(created["backfill"]["state"], "done", "{created}");
    assert_eq!(created["size"], 1);
    assert_eq!(members(&s, "big_spenders"), vec![id42.clone()]);

    // A window slides past with no new event: the scheduler notices.
    let (status, _) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "just_bought",
                    "expression": "count(event == \"Order Completed\", within 3s) >= 1"})),
    );
    assert_eq!(status, 201);
    wait_backfilled(&s);
    let (status, _) = s.post(
        "/v1/track",
        &json!({"userId": "7", "event": "Order Completed", "timestamp": now_iso(0)}).to_string(),
    );
    assert_eq!(status, 200);
    s.wait_processed();
    // Their second order also makes them a repeat buyer.
    assert_eq!(
        segment_names(&profile(&s, "user_id:7")),
        vec!["just_bought", "repeat_buyers"]
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if !segment_names(&profile(&s, "user_id:7")).contains(&"just_bought".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "the window never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, feed) = s.admin_get("/api/v1/audience-changes?segment=just_bought");
    let last = feed["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["change"].as_str(), last["cause"]["type"].as_str()),
        (Some("exited"), Some("schedule")),
        "{feed}"
    );

    // Editing re-evaluates everyone; deleting lets every member go.
    let (status, _) = send(
        &s,
        "PUT",
        "/api/v1/segments/big_spenders",
        Some(json!({"expression": "computed.revenue_total > 1000"})),
    );
    assert_eq!(status, 200);
    wait_backfilled(&s);
    assert!(members(&s, "big_spenders").is_empty());
    let out = common::cli(&[
        "segments",
        "delete",
        "pro_repeat",
        "--url",
        &s.url(""),
        "--admin-key",
        &s.admin_key,
    ]);
    assert!(out.status.success());
    wait_backfilled(&s);
    assert!(!segment_names(&profile(&s, "user_id:42")).contains(&"pro_repeat".to_owned()));
    let (_, feed) = s.admin_get("/api/v1/audience-changes?segment=pro_repeat");
    let last = feed["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["cause"]["type"], "deleted", "{feed}");

    // Everything survives a crash.
    let mut s = s;
    s.kill9();
    s.spawn();
    let p42 = profile(&s, "user_id:42");
    assert_eq!(segment_names(&p42), vec!["pro_users", "repeat_buyers"]);
    assert_eq!(p42["computed"]["orders_30d"], 2);
    let (_, history) = s.admin_get("/api/v1/segments/repeat_buyers/size-history");
    assert_eq!(
        history["data"].as_array().unwrap().last().unwrap()["size"],
        2
    );
    assert_eq!(members(&s, "repeat_buyers").len(), 2);
}

/// `segments members` pages as `destinations dead-letters` does: `--limit` above the
/// server's maximum is refused naming the flag and the maximum (it was clamped out of
/// sight), `--cursor` continues from a page read before, `--all` reads every page.
#[test]
fn segment_members_page_by_cursor_and_refuse_a_limit_over_the_maximum() {
    let s = TestServer::start();
    let (status, _) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "everyone", "expression": "count(true) >= 1"})),
    );
    assert_eq!(status, 201);
    for user in ["a", "b", "c"] {
        let (status, _) = s.post(
            "/v1/track",
            &json!({"userId": user, "event": "Seen"}).to_string(),
        );
        assert_eq!(status, 200);
    }
    s.wait_processed();

    let url = s.url("");
    for args in [
        &["segments", "members", "everyone"][..],
        &["segments", "changes", "--segment", "everyone"],
    ] {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--limit",
            "5000",
            "--url",
            &url,
            "--admin-key",
            &s.admin_key,
        ]);
        let out = common::cli(&all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--limit") && err.contains("1000"),
            "{all:?}: {err}"
        );
    }

    let first = cli(&s, &["segments", "members", "everyone", "--limit", "2"]);
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let rest = cli(
        &s,
        &[
            "segments", "members", "everyone", "--limit", "2", "--cursor", &cursor,
        ],
    );
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let every = cli(
        &s,
        &["segments", "members", "everyone", "--limit", "1", "--all"],
    );
    let profiles: Vec<&Value> = every["data"].as_array().unwrap().iter().collect();
    assert_eq!(profiles.len(), 3, "{every}");
    let paged: Vec<&Value> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .collect();
    assert_eq!(profiles, paged);
}

#[test]
fn a_definition_is_checked_and_previewed_without_being_saved() {
    let s = TestServer::start();
    let mut batch = Vec::new();
    for i in 0..30 {
        let plan = if i % 3 == 0 { "pro" } else { "free" };
        batch.push(json!({"type": "identify", "userId": format!("c{i:02}"),
            "traits": {"plan": plan}}));
        for _ in 0..(i % 4) {
            batch.push(json!({"type": "track", "userId": format!("c{i:02}"),
                "event": "Order Completed", "properties": {"revenue": 10}}));
        }
    }
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    s.wait_processed();

    // A valid segment: counted over every profile, nothing saved.
    let check = |body: Value| send(&s, "POST", "/api/v1/segments/check", Some(body));
    let (status, c) = check(json!({"definition": {"expression": "traits.plan == \"pro\""}}));
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["valid"], true, "{c}");
    assert_eq!(c["preview"]["matching"], 10, "{c}");
    assert_eq!(c["preview"]["exact"], true);
    assert_eq!(c["preview"]["profiles_read"], 30);
    assert_eq!(
        c["preview"]["examples"][0]["main_identifier"],
        "user_id:c00"
    );
    assert_eq!(
        send(&s, "GET", "/api/v1/segments", None).1["data"],
        json!([])
    );

    // An aggregate no definition keeps yet is built from each profile's history, and the
    // preview agrees with the segment's size once it is saved and backfilled.
    let expression = "traits.plan == \"free\" and count(event == \"Order Completed\") >= 2";
    let (_, c) = check(json!({"definition": {"name": "busy_free", "expression": expression}}));
    assert_eq!(c["valid"], true, "{c}");
    let previewed = c["preview"]["matching"].as_u64().unwrap();
    // c{i}: free when i % 3 != 0, two or more orders when i % 4 >= 2.
    let expected = (0..30).filter(|i| i % 3 != 0 && i % 4 >= 2).count() as u64;
    assert_eq!(previewed, expected, "{c}");
    let (status, _) = send(
        &s,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "busy_free", "expression": expression})),
    );
    assert_eq!(status, 201);
    wait_backfilled(&s);
    assert_eq!(members(&s, "busy_free").len() as u64, previewed);

    // Over fewer profiles than exist: counted among the oldest, and said to be inexact.
    let (_, c) = check(json!({"definition": {"expression": "traits.plan == \"pro\""}, "limit": 7}));
    assert_eq!(c["preview"]["exact"], false, "{c}");
    assert_eq!(c["preview"]["profiles_read"], 7);
    assert_eq!(c["preview"]["matching"], 3, "c00, c03, c06: {c}");

    // Problems saving would refuse come back as a list naming the field; nothing else.
    let (status, c) = check(json!({"definition": {"expression": "traits.plan = "}}));
    assert_eq!(status, 200);
    assert_eq!(c["valid"], false);
    assert_eq!(c["errors"][0]["field"], "expression", "{c}");
    assert_eq!(c["preview"], Value::Null);
    let (_, c) = check(json!({"definition": {"name": "check", "expression": "true"}}));
    assert_eq!(c["errors"][0]["field"], "name", "{c}");
    let (status, e) = check(json!({"definition": {"expression": "true"}, "limit": 0}));
    assert_eq!(
        (status, &e["error"]["field"]),
        (400, &json!("limit")),
        "{e}"
    );
    let (status, e) = check(json!({"definition": {"expression": "true"}, "what": 1}));
    assert_eq!(status, 400, "{e}");

    // A computed trait: its canonical form, type, and who would hold a value.
    let (status, c) = send(
        &s,
        "POST",
        "/api/v1/computed-traits/check",
        Some(json!({"definition": {"name": "orders", "function": "count",
            "event": "Order Completed"}})),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["valid"], true, "{c}");
    assert_eq!(c["value_type"], "number");
    assert_eq!(
        c["expression"], "count(event == \"Order Completed\")",
        "{c}"
    );
    let holders = (0..30).filter(|i| i % 4 > 0).count() as u64;
    assert_eq!(c["preview"]["matching"], holders, "{c}");
    let first = &c["preview"]["examples"][0];
    assert_eq!(
        (
            first["main_identifier"].as_str(),
            first["computed"]["orders"].as_f64()
        ),
        (Some("user_id:c01"), Some(1.0)),
        "{c}"
    );
    let (_, c) = send(
        &s,
        "POST",
        "/api/v1/computed-traits/check",
        Some(json!({"definition": {"name": "orders", "function": "median"}})),
    );
    assert_eq!(c["errors"][0]["field"], "function", "{c}");
    assert_eq!(
        send(&s, "GET", "/api/v1/computed-traits", None).1["data"],
        json!([])
    );

    // The CLI: the same answer; a definition saving would refuse exits 1, naming the field.
    let c = cli(
        &s,
        &[
            "segments",
            "check",
            "--expression",
            "traits.plan == \"pro\"",
        ],
    );
    assert_eq!(c["preview"]["matching"], 10, "{c}");
    let table = cli_table(
        &s,
        &[
            "traits",
            "check",
            "--function",
            "count",
            "--event",
            "Order Completed",
        ],
    );
    assert!(
        table.contains(&format!(
            "valid: {holders} of 30 profiles would have a value now"
        )),
        "{table}"
    );
    let url = s.url("");
    let out = common::cli(&[
        "segments",
        "check",
        "--expression",
        "traits.plan =",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]);
    let stderr = common::fails(out);
    assert!(stderr.contains("would be refused"), "{stderr}");
}
