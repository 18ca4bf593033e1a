//! Destinations end to end: a webhook defined through the REST API receives every event
//! sent to the tracking API, signed; what a failing receiver could not take is retried
//! across a `kill -9` of the server and delivered once it recovers; a refused message waits
//! in the dead-letter queue, with its request and answer, until it is replayed. A
//! PostgreSQL warehouse defined the same way gets every event as rows, and its test send
//! connects.

mod common;

use common::receiver::{Receiver, wait_for};
use common::{TestServer, fails, ok};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

fn send(s: &TestServer, ids: std::ops::Range<usize>) {
    let batch: Vec<Value> = ids
        .map(|i| {
            json!({"type": "track", "messageId": format!("m{i}"), "userId": format!("u{}", i % 7),
                        "event": "Order Completed", "properties": {"n": i}})
        })
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_webhook_receives_every_event_through_failures_and_a_kill_9() {
    let receiver = Receiver::start();
    let mut s = TestServer::start();
    let (status, created) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "crm", "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
                    "delivery": {"retry": {"base_delay_ms": 200, "max_delay_ms": 1000}}})),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["destination"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, shown) = s.admin_get(&format!("/api/v1/destinations/{id}"));
    assert_ne!(
        shown["spec"]["kind"]["secret"], secret,
        "the secret is masked when read back"
    );

    send(&s, 0..50);
    wait_for("50 deliveries", || receiver.delivered().len() == 50);
    let first = receiver.inbox.lock().unwrap().got[0].1.clone();
    assert_eq!(
        receiver.by_message().len(),
        50,
        "nothing sent twice while all went well"
    );
    assert!(
        first["rapport"]["profile_id"]
            .as_str()
            .unwrap()
            .starts_with("p_"),
        "{first}"
    );

    // The receiver fails: messages park for retries, and the server dies with them parked.
    receiver.answer(503);
    send(&s, 50..70);
    wait_for("20 parked retries", || {
        s.admin_get(&format!("/api/v1/destinations/{id}/retries")).1["data"]
            .as_array()
            .is_some_and(|a| a.len() == 20)
    });
    s.kill9();
    receiver.answer(204);
    s.spawn();
    wait_for("every event delivered after the restart", || {
        let got = receiver.delivered();
        (0..70).all(|i| got.contains_key(&format!("m{i}")))
    });
    for (message, webhook_ids) in receiver.by_message() {
        let distinct: HashSet<_> = webhook_ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "{message}: every attempt carries one webhook-id"
        );
    }

    // A refusal is dead-lettered at once and waits for a replay.
    receiver.answer(422);
    send(&s, 70..71);
    wait_for("a dead letter", || {
        let (_, d) = s.admin_get(&format!("/api/v1/destinations/{id}/dead-letters"));
        d["data"].as_array().is_some_and(|a| a.len() == 1)
    });
    let (_, dead) = s.admin_get(&format!("/api/v1/destinations/{id}/dead-letters"));
    let letter = &dead["data"][0];
    assert_eq!(letter["reason"], "refused");
    assert_eq!(letter["status"], 422);
    assert!(letter["request_body"].as_str().unwrap().contains("m70"));
    assert_eq!(letter["response_body"], "{\"ok\":false}");
    receiver.answer(204);
    let before = receiver.inbox.lock().unwrap().got.len();
    let (status, replayed) = s.admin_send(
        "POST",
        &format!("/api/v1/destinations/{id}/dead-letters/replay"),
        Some(json!({})),
    );
    assert_eq!((status, replayed["replayed"].as_u64()), (200, Some(1)));
    wait_for("the replayed message", || {
        receiver.inbox.lock().unwrap().got.len() > before
    });
    let (_, state) = s.admin_get(&format!("/api/v1/destinations/{id}"));
    assert_eq!(state["delivery"]["dead_lettered"], 0, "{state}");
}

#[test]
fn definitions_are_checked_and_a_test_send_reports_the_receiver_s_answer() {
    let receiver = Receiver::start();
    let s = TestServer::start();
    for (body, field) in [
        (
            json!({"name": "x", "kind": {"type": "webhook", "url": "ftp://example.com"}}),
            "kind.url",
        ),
        (
            json!({"name": "x", "kind": {"type": "webhook", "url": receiver.url, "urll": 1}}),
            "kind",
        ),
        (
            json!({"name": "x", "kind": {"type": "webhook", "url": receiver.url},
                "deliver": {"events": {"condition": "properties.n >"}}}),
            "deliver.events.condition",
        ),
        (
            json!({"name": "x", "kind": {"type": "warehouse", "database_url": "postgres://db/x",
                "schema": "Not A Schema"}}),
            "kind.schema",
        ),
    ] {
        let (status, e) = s.admin_send("POST", "/api/v1/destinations", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {e}");
        assert!(
            e["error"]["field"]
                .as_str()
                .is_some_and(|f| f.starts_with(field)),
            "{body}: {e}"
        );
    }
    let (status, created) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "t", "kind": {"type": "webhook", "url": receiver.url}})),
    );
    assert_eq!(status, 201, "{created}");
    let (status, dup) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "t", "kind": {"type": "webhook", "url": receiver.url}})),
    );
    assert_eq!(
        (status, dup["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    receiver.answer(500);
    let (status, t) = s.admin_send("POST", "/api/v1/destinations/t/test", None);
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        (t["delivered"].as_bool(), t["status"].as_u64()),
        (Some(false), Some(500))
    );
    receiver.answer(204);
    let (_, t) = s.admin_send("POST", "/api/v1/destinations/t/test", None);
    assert_eq!(t["delivered"], true, "{t}");
    let (status, paused) = s.admin_send("POST", "/api/v1/destinations/t/pause", None);
    assert_eq!((status, paused["paused"].as_bool()), (200, Some(true)));
    let (status, _) = s.admin_send("DELETE", "/api/v1/destinations/t", None);
    assert_eq!(status, 200);
    let (status, _) = s.admin_get("/api/v1/destinations/t");
    assert_eq!(status, 404);
}

#[test]
fn a_warehouse_gets_every_event_as_rows_and_its_test_send_connects() {
    let s = TestServer::start();
    let url = rapport_store::testing::TestPostgres::shared().create_database();
    let (status, created) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(
            json!({"name": "dw", "kind": {"type": "warehouse", "database_url": url,
                                           "schema": "analytics"}}),
        ),
    );
    assert_eq!(status, 201, "{created}");
    let (status, t) = s.admin_send("POST", "/api/v1/destinations/dw/test", None);
    assert_eq!((status, t["delivered"].as_bool()), (200, Some(true)), "{t}");
    send(&s, 0..30);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = |db: &mut postgres::Client, table: &str| -> i64 {
        db.query_one(&format!("SELECT count(*) FROM analytics.{table}"), &[])
            .map(|r| r.get(0))
            .unwrap_or(0)
    };
    wait_for("30 rows", || rows(&mut db, "order_completed") == 30);
    assert_eq!(rows(&mut db, "tracks"), 30);
    let sum: f64 = db
        .query_one("SELECT sum(n)::float8 FROM analytics.order_completed", &[])
        .unwrap()
        .get(0);
    assert_eq!(sum, (0..30).sum::<i32>() as f64);
    let (_, state) = s.admin_get("/api/v1/destinations/dw");
    assert_eq!(state["delivery"]["dead_lettered"], 0, "{state}");
    assert_eq!(state["delivery"]["retrying"], 0, "{state}");
}

/// Runs `rapport destinations …` against `s` with its admin key, `stdin` on standard input.
fn destinations_cli(s: &TestServer, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let url = s.url("");
    let mut child = Command::new(common::BIN)
        .arg("destinations")
        .args(args)
        .args(["--url", &url, "--admin-key", &s.admin_key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the rapport CLI");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json_of(out: std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--format json prints JSON")
}

#[test]
fn the_cli_manages_a_destination_from_creation_through_replay_to_deletion() {
    let receiver = Receiver::start();
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("crm.json");
    std::fs::write(
        &spec,
        serde_json::to_string_pretty(&json!({
            "name": "crm",
            "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
            "delivery": {"retry": {"base_delay_ms": 200, "max_delay_ms": 1000}}
        }))
        .unwrap(),
    )
    .unwrap();
    let spec = spec.to_str().unwrap();

    // Created from a file: the id and, once, the signing secret.
    let created = ok(destinations_cli(&s, &["create", "--file", spec], None));
    assert!(created.contains("shown this once"), "{created}");
    let secret = created
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret in {created}"))
        .to_owned();
    let list = json_of(destinations_cli(&s, &["list", "--format", "json"], None));
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["spec"]["name"], "crm");
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(created.contains(&id), "{created}");
    let table = ok(destinations_cli(&s, &["list"], None));
    let header = table.lines().next().unwrap();
    for column in [
        "NAME",
        "ID",
        "KIND",
        "STATE",
        "OFFSET",
        "LAG",
        "RETRYING",
        "DEAD_LETTERED",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains(&id) && table.contains("webhook"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("active"), "{table}");
    assert_eq!(
        ok(destinations_cli(&s, &["secret", &id], None)).trim(),
        secret
    );

    // Shown by name or id; JSON is the server's answer as it is.
    let shown = json_of(destinations_cli(
        &s,
        &["show", "crm", "--format", "json"],
        None,
    ));
    let (_, api) = s.admin_get(&format!("/api/v1/destinations/{id}"));
    assert_eq!(shown["spec"], api["spec"]);
    assert_eq!(shown["id"], id.as_str());
    let text = ok(destinations_cli(&s, &["show", &id], None));
    assert!(
        text.contains("definition:") && text.contains(&receiver.url) && text.contains("lag:"),
        "{text}"
    );
    assert!(!text.contains(&secret), "the secret is masked: {text}");

    // Updated from standard input.
    let stdin =
        json!({"name": "crm", "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 3},
                       "delivery": {"retry": {"base_delay_ms": 200, "max_delay_ms": 1000}}})
        .to_string();
    let updated = json_of(destinations_cli(
        &s,
        &["update", "crm", "--file", "-", "--format", "json"],
        Some(&stdin),
    ));
    assert_eq!(updated["spec"]["kind"]["timeout_secs"], 3, "{updated}");
    assert_eq!(
        ok(destinations_cli(&s, &["secret", "crm"], None)).trim(),
        secret,
        "an update without a secret keeps it"
    );

    let paused = json_of(destinations_cli(
        &s,
        &["pause", "crm", "--format", "json"],
        None,
    ));
    assert_eq!(paused["paused"], true);
    let listed = ok(destinations_cli(&s, &["list"], None));
    assert!(
        listed.lines().nth(1).unwrap().contains("paused"),
        "{listed}"
    );
    let resumed = ok(destinations_cli(&s, &["resume", "crm"], None));
    assert!(resumed.contains("resumed"), "{resumed}");
    let (_, api) = s.admin_get(&format!("/api/v1/destinations/{id}"));
    assert_eq!(api["paused"], false);

    // A test send: exit code 0 when delivered, 1 when not.
    let tested = ok(destinations_cli(&s, &["test", "crm"], None));
    assert!(
        tested.contains("delivered: yes") && tested.contains("status:    204"),
        "{tested}"
    );
    receiver.answer(500);
    let out = destinations_cli(&s, &["test", "crm"], None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(fails(out).contains("not delivered"));
    assert!(
        stdout.contains("delivered: no") && stdout.contains("status:    500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("{\"ok\":false}"),
        "the answer's start: {stdout}"
    );

    // The receiver refuses three events; they wait as dead letters.
    receiver.answer(400);
    send(&s, 0..3);
    let dead_letters = |args: &[&str]| {
        let mut all = vec!["dead-letters", "crm", "--format", "json"];
        all.extend(args);
        json_of(destinations_cli(&s, &all, None))
    };
    wait_for("three dead letters", || {
        dead_letters(&[])["data"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    });
    let first = dead_letters(&["--limit", "1"]);
    assert_eq!(first["data"].as_array().unwrap().len(), 1, "{first}");
    assert!(first["next_cursor"].is_string(), "{first}");
    let every = dead_letters(&["--limit", "1", "--all"]);
    let letters = every["data"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "{every}");
    assert!(every["next_cursor"].is_null(), "{every}");
    assert_eq!(letters[0], first["data"][0], "each as the server sent it");
    assert!(
        letters
            .iter()
            .all(|l| l["reason"] == "refused" && l["status"] == 400)
    );
    let offsets: Vec<u64> = letters
        .iter()
        .map(|l| l["offset"].as_u64().unwrap())
        .collect();
    let table = ok(destinations_cli(&s, &["dead-letters", "crm"], None));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("refused"), "{table}");
    let retries = json_of(destinations_cli(
        &s,
        &["retries", "crm", "--format", "json"],
        None,
    ));
    assert_eq!(retries["data"], json!([]), "a refusal is not retried");

    // A replay names what it replays.
    let e = fails(destinations_cli(&s, &["replay", "crm"], None));
    assert!(
        ["--offset", "--audience-change", "--trait-change", "--all"]
            .iter()
            .all(|f| e.contains(f)),
        "{e}"
    );
    // A failure-time window picks by when each failed.
    let e = fails(destinations_cli(
        &s,
        &["replay", "crm", "--failed-since", "yesterday"],
        None,
    ));
    assert!(e.contains("failed_since"), "{e}");
    let none = json_of(destinations_cli(
        &s,
        &[
            "replay",
            "crm",
            "--failed-until",
            "2000-01-01T00:00:00Z",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(none["replayed"], 0, "nothing failed before 2000: {none}");
    receiver.answer(200);
    let one = offsets[0].to_string();
    let replayed = json_of(destinations_cli(
        &s,
        &["replay", "crm", "--offset", &one, "--format", "json"],
        None,
    ));
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    // The test send above was delivered too: count only the three refused events.
    let delivered_of_three = || {
        let got = receiver.delivered();
        (0..3)
            .filter(|i| got.contains_key(&format!("m{i}")))
            .count()
    };
    wait_for("the replayed event", || delivered_of_three() >= 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(delivered_of_three(), 1, "only the replayed one is sent");
    let rest = ok(destinations_cli(
        &s,
        &[
            "replay",
            "crm",
            "--all",
            "--failed-since",
            "2000-01-01T00:00:00Z",
        ],
        None,
    ));
    assert!(rest.contains("2 dead letter"), "{rest}");
    wait_for("every event delivered", || {
        let got = receiver.delivered();
        (0..3).all(|i| got.contains_key(&format!("m{i}")))
    });
    let shown = json_of(destinations_cli(
        &s,
        &["show", "crm", "--format", "json"],
        None,
    ));
    assert_eq!(shown["delivery"]["dead_lettered"], 0, "{shown}");

    // Deleted only with --yes.
    let e = fails(destinations_cli(&s, &["delete", "crm"], None));
    assert!(e.contains("--yes"), "{e}");
    let (status, _) = s.admin_get("/api/v1/destinations/crm");
    assert_eq!(status, 200, "nothing deleted without --yes");
    let deleted = ok(destinations_cli(&s, &["delete", "crm", "--yes"], None));
    assert!(
        deleted.contains("deleted") && deleted.contains(&id),
        "{deleted}"
    );
    let e = fails(destinations_cli(&s, &["show", "crm"], None));
    assert!(e.contains("not_found") && e.contains("[HTTP 404"), "{e}");

    // A bad spec file is named with its line before anything is sent.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(
            "{{\n  \"name\": \"bad\",\n  \"kind\": {{\"type\": \"webhook\", \"url\": \"{}\"}},\n}}\n",
            receiver.url
        ),
    )
    .unwrap();
    let e = fails(destinations_cli(
        &s,
        &["create", "--file", bad.to_str().unwrap()],
        None,
    ));
    assert!(e.contains("bad.json: line 4, column 1"), "{e}");
    assert!(e.contains("nothing was sent"), "{e}");
    // A spec the shape accepts but the server refuses: the server's error, field named.
    let refused = dir.path().join("refused.json");
    std::fs::write(
        &refused,
        json!({"name": "x", "kind": {"type": "webhook", "url": "ftp://example.com"}}).to_string(),
    )
    .unwrap();
    let e = fails(destinations_cli(
        &s,
        &["create", "--file", refused.to_str().unwrap()],
        None,
    ));
    assert!(
        e.contains("(field `kind.url`)") && e.contains("[HTTP 400"),
        "{e}"
    );
    let list = json_of(destinations_cli(&s, &["list", "--format", "json"], None));
    assert_eq!(list["data"], json!([]), "{list}");
}

#[test]
fn the_cli_backfills_a_past_range_into_a_new_destination_and_shows_its_overview() {
    let receiver = Receiver::start();
    let s = TestServer::start();
    // History before the destination exists.
    send(&s, 0..20);
    s.wait_processed();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("late.json");
    std::fs::write(
        &spec,
        json!({"name": "late", "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2}})
            .to_string(),
    )
    .unwrap();
    ok(destinations_cli(
        &s,
        &["create", "--file", spec.to_str().unwrap()],
        None,
    ));
    let out = fails(destinations_cli(
        &s,
        &[
            "backfill",
            "late",
            "--since",
            "2024-06-01T00:00:00Z",
            "--until",
            "yesterday",
        ],
        None,
    ));
    assert!(out.contains("(field `until`)"), "{out}");
    let started = json_of(destinations_cli(
        &s,
        &[
            "backfill",
            "late",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2100-01-01T00:00:00Z",
            "--format",
            "json",
        ],
        None,
    ));
    assert!(started["through"].as_u64().unwrap() >= 20, "{started}");
    wait_for("the backfill", || receiver.delivered().len() == 20);
    wait_for("its end", || {
        let d = json_of(destinations_cli(
            &s,
            &["show", "late", "--format", "json"],
            None,
        ));
        d["delivery"]["backfill"]["finished_at"].is_string()
    });
    let shown = ok(destinations_cli(&s, &["show", "late"], None));
    assert!(shown.contains("20 sent, finished"), "{shown}");
    // Live events go on beside it.
    send(&s, 20..25);
    wait_for("live events", || receiver.delivered().len() == 25);
    let overview = json_of(destinations_cli(
        &s,
        &["overview", "late", "--hours", "2", "--format", "json"],
        None,
    ));
    assert_eq!(overview["total"]["delivered"], 25, "{overview}");
    assert!(overview["total"]["latency_p99_ms"].as_f64().unwrap() > 0.0);
    let table = ok(destinations_cli(&s, &["overview", "late"], None));
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
    ok(destinations_cli(
        &s,
        &["backfill", "late", "--cancel"],
        None,
    ));
    let d = json_of(destinations_cli(
        &s,
        &["show", "late", "--format", "json"],
        None,
    ));
    assert!(d["delivery"]["backfill"].is_null(), "{d}");
}

#[test]
fn segment_entries_and_trait_changes_reach_a_webhook_through_the_api() {
    let receiver = Receiver::start();
    let s = TestServer::start();
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "vip", "expression": "traits.plan == \"vip\""})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(
            json!({"name": "crm", "kind": {"type": "webhook", "url": receiver.url},
                    "deliver": {"events": null, "trait_changes": true,
                                "audience_changes": {"segments": ["vip"]}}}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    let identify = json!({"batch": [
        {"type": "identify", "userId": "zoe", "traits": {"plan": "vip"}, "messageId": "i1"}
    ]});
    let (status, _) = s.post("/v1/batch", &identify.to_string());
    assert_eq!(status, 200);
    let kinds = || -> Vec<String> {
        receiver
            .inbox
            .lock()
            .unwrap()
            .got
            .iter()
            .map(|(_, b, _)| b["type"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    wait_for("a trait change and an entry", || kinds().len() == 2);
    let mut got = kinds();
    got.sort();
    assert_eq!(got, ["segment_entered", "trait_changed"]);
    let (_, d) = s.admin_get("/api/v1/destinations/crm");
    assert_eq!(d["delivery"]["dead_lettered"], 0, "{d}");
}

#[test]
fn a_destination_that_needs_a_consent_purpose_gets_only_the_messages_of_people_who_gave_it() {
    let strict = Receiver::start();
    let lenient = Receiver::start();
    let s = TestServer::start();
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(
            json!({"name": "bad", "kind": {"type": "webhook", "url": strict.url},
                    "consent": {"purposes": []}}),
        ),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "consent.purposes", "{e}");
    for (name, receiver, when) in [("ads", &strict, "skip"), ("crm", &lenient, "deliver")] {
        let (status, body) = s.admin_send(
            "POST",
            "/api/v1/destinations",
            Some(
                json!({"name": name, "kind": {"type": "webhook", "url": receiver.url},
                        "deliver": {"trait_changes": true},
                        "consent": {"purposes": ["marketing"], "when_undecided": when}}),
            ),
        );
        assert_eq!(status, 201, "{body}");
    }
    let consent =
        |granted: bool| json!({"consent": {"categoryPreferences": {"marketing": granted}}});
    let batch = json!({"batch": [
        {"type": "identify", "userId": "ann", "messageId": "a1", "traits": {"plan": "pro"},
         "context": consent(true)},
        {"type": "identify", "userId": "bob", "messageId": "b1", "traits": {"plan": "pro"},
         "context": consent(false)},
        {"type": "identify", "userId": "cid", "messageId": "c1", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "ann", "messageId": "a2", "event": "Order Completed"},
        {"type": "track", "userId": "bob", "messageId": "b2", "event": "Order Completed"},
        {"type": "track", "userId": "cid", "messageId": "c2", "event": "Order Completed"}
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    let users = |r: &Receiver| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = r
            .accepted()
            .iter()
            .map(|b| {
                (
                    b["rapport"]["identifiers"]["user_id"][0]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    b["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let pairs = |names: &[&str]| -> Vec<(String, String)> {
        let mut v = Vec::new();
        for n in names {
            for t in ["identify", "track", "trait_changed"] {
                v.push((n.to_string(), t.to_string()));
            }
        }
        v.sort();
        v
    };
    // Fail closed: only Ann, who granted it; an undecided purpose delivers to the other.
    wait_for("ann's messages", || strict.accepted().len() == 3);
    wait_for("ann's and cid's messages", || lenient.accepted().len() == 6);
    s.wait_processed();
    let overview = |name: &str| {
        let mut total = Value::Null;
        wait_for("the skips counted", || {
            total = s
                .admin_get(&format!("/api/v1/destinations/{name}/overview"))
                .1["total"]
                .clone();
            total["delivered"].as_u64().unwrap_or(0)
                + total["skipped_consent"].as_u64().unwrap_or(0)
                == 9
        });
        total
    };
    assert_eq!(overview("ads")["skipped_consent"], 6);
    assert_eq!(overview("crm")["skipped_consent"], 3);
    assert_eq!(users(&strict), pairs(&["ann"]));
    assert_eq!(users(&lenient), pairs(&["ann", "cid"]));

    // A withdrawal stops what follows.
    let (status, _) = s.post(
        "/v1/batch",
        &json!({"batch": [{"type": "track", "userId": "ann", "messageId": "a3",
                           "event": "Page Viewed", "context": consent(false)}]})
        .to_string(),
    );
    assert_eq!(status, 200);
    s.wait_processed();
    wait_for("the withdrawal counted", || {
        s.admin_get("/api/v1/destinations/ads/overview").1["total"]["skipped_consent"] == 7
    });
    assert_eq!(strict.accepted().len(), 3);
}
