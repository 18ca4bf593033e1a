//! The unified profile over HTTP: events in through the tracking API, one profile out, with
//! its explanation, its timeline and trait search.

mod common;

use common::TestServer;
use serde_json::{Value, json};

#[test]
fn one_profile_per_person_explained_with_timeline_and_search() {
    let s = TestServer::start();
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "cookie-1", "name": "Pricing", "timestamp": "2024-05-01T09:00:00Z"},
        {"type": "identify", "anonymousId": "cookie-1", "userId": "42", "timestamp": "2024-05-01T09:05:00Z",
         "traits": {"email": " Ann@Example.COM ", "plan": "pro", "name": "Ann"}},
        {"type": "track", "userId": "42", "event": "Order Completed", "timestamp": "2024-05-01T09:10:00Z",
         "properties": {"revenue": 42.5}, "context": {"device": {"id": "iphone-ann"}}},
        {"type": "group", "userId": "42", "groupId": "acme", "traits": {"industry": "retail"}},
        {"type": "track", "userId": "7", "event": "Login", "context": {"device": {"id": "iphone-ann"}}}
    ]});
    let (status, body) = s.post("/v1/batch", &batch.to_string());
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(5)));
    s.wait_processed();

    let (status, p) = s.admin_get("/api/v1/profiles/user_id:42");
    assert_eq!(status, 200, "{p}");
    for reference in [
        "anonymous_id:cookie-1",
        "email:ann@example.com",
        "device_id:iphone-ann",
    ] {
        let (_, other) = s.admin_get(&format!("/api/v1/profiles/{reference}"));
        assert_eq!(other["id"], p["id"], "{reference}");
    }
    let (_, by_id) = s.admin_get(&format!("/api/v1/profiles/{}", p["id"].as_str().unwrap()));
    assert_eq!(by_id["id"], p["id"]);
    assert_eq!(
        p["traits"],
        json!({"email": " Ann@Example.COM ", "plan": "pro", "name": "Ann"})
    );
    assert_eq!(
        p["accounts"],
        json!([{"id": "acme", "traits": {"industry": "retail"}}])
    );
    assert_eq!(p["first_seen"], "2024-05-01T09:00:00.000Z");
    let kinds: Vec<&str> = p["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4, "{p}");

    // User 7 shares the device but is another person: a separate profile.
    let (_, seven) = s.admin_get("/api/v1/profiles/user_id:7");
    assert_ne!(seven["id"], p["id"]);
    let (_, explained) = s.admin_get("/api/v1/profiles/user_id:7/identity");
    let refused: Vec<&Value> = explained["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].as_str().is_some_and(|e| e.contains("refused")))
        .collect();
    assert!(!refused.is_empty(), "{explained}");

    let (_, explained) = s.admin_get("/api/v1/profiles/email:ann@example.com/identity");
    let added: Vec<&Value> = explained["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "identifier_added")
        .collect();
    assert_eq!(added.len(), 4, "{explained}");
    assert!(
        explained["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["added_by"].is_string())
    );

    let (status, timeline) = s.admin_get("/api/v1/profiles/user_id:42/events?limit=2");
    assert_eq!(status, 200);
    let first: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(first.len(), 2);
    let cursor = timeline["next_cursor"].as_str().unwrap();
    let (_, rest) = s.admin_get(&format!(
        "/api/v1/profiles/user_id:42/events?cursor={cursor}"
    ));
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());

    let (_, found) = s.admin_get("/api/v1/profiles?trait=plan&value=pro");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], p["id"]);

    for (path, status, code) in [
        ("/api/v1/profiles/user_id:nobody", 404, "not_found"),
        // A malformed reference is a fault of the path parameter.
        ("/api/v1/profiles/nonsense", 400, "invalid_parameter"),
        ("/api/v1/profiles?trait=plan", 400, "invalid_parameter"),
        (
            "/api/v1/profiles/user_id:42/events?limit=0",
            400,
            "invalid_parameter",
        ),
    ] {
        let (st, body) = s.admin_get(path);
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
}

#[test]
fn profiles_survive_kill_and_restart_without_double_applying() {
    let mut s = TestServer::start();
    let mut sent = 0;
    for i in 0..30 {
        let (status, _) = s.post(
            "/v1/track",
            &format!(
                r#"{{"userId":"u{}","event":"E","messageId":"m{i}"}}"#,
                i % 3
            ),
        );
        assert_eq!(status, 200);
        sent += 1;
    }
    s.kill9();
    s.spawn();
    s.wait_processed();
    let mut total = 0;
    for u in 0..3 {
        let (_, t) = s.admin_get(&format!("/api/v1/profiles/user_id:u{u}/events?limit=1000"));
        total += t["data"].as_array().unwrap().len();
    }
    assert_eq!(total, sent, "every event on exactly one timeline, once");
}

/// Consent per purpose (docs/consent.md): recorded from events' Segment consent object and
/// through the API, newest decision by time wins, read by segments, shown by the profile,
/// its consent route and the CLI; bad input refused naming the field.
#[test]
fn consent_is_recorded_from_events_and_the_api_and_segments_read_it() {
    let s = TestServer::start();
    let (status, seg) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "marketable", "expression": "consent.marketing"})),
    );
    assert_eq!(status, 201, "{seg}");
    let track = |message_id: &str, at: &str, prefs: Value| {
        let body = json!({"userId": "c1", "event": "Visited", "messageId": message_id,
                          "timestamp": at, "context": {"consent": {"categoryPreferences": prefs}}});
        let (status, body) = s.post("/v1/track", &body.to_string());
        assert_eq!(status, 200, "{body}");
        s.wait_processed();
    };
    let consent = || {
        let (status, c) = s.admin_get("/api/v1/profiles/user_id:c1/consent");
        assert_eq!(status, 200, "{c}");
        c
    };
    let in_segment = || {
        let (_, p) = s.admin_get("/api/v1/profiles/user_id:c1");
        p["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["segment"] == "marketable")
    };

    track(
        "consent-1",
        "2024-05-01T10:00:00Z",
        json!({"marketing": true, "sms": false}),
    );
    let (_, p) = s.admin_get("/api/v1/profiles/user_id:c1");
    assert_eq!(
        p["consent"]["marketing"],
        json!({"granted": true, "at": "2024-05-01T10:00:00.000Z",
               "source": s.source_id, "message_id": "consent-1"}),
        "{p}"
    );
    assert_eq!(p["consent"]["sms"]["granted"], false);
    assert!(in_segment(), "granted marketing: in the segment");

    // A newer decision: out.
    track(
        "consent-2",
        "2024-05-01T11:00:00Z",
        json!({"marketing": false}),
    );
    assert!(!in_segment(), "denied marketing: out of the segment");
    // An older one arriving later: kept in the history, no effect.
    track(
        "consent-0",
        "2024-05-01T09:00:00Z",
        json!({"marketing": true}),
    );
    assert!(!in_segment());
    let c = consent();
    assert_eq!(c["current"]["marketing"]["message_id"], "consent-2", "{c}");
    let history: Vec<(&str, &str, bool)> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["message_id"].as_str().unwrap(),
                h["purpose"].as_str().unwrap(),
                h["effective"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("consent-2", "marketing", true),
            ("consent-1", "sms", true),
            ("consent-1", "marketing", true),
            ("consent-0", "marketing", false),
        ]
    );
    // Paged.
    let (_, page) = s.admin_get("/api/v1/profiles/user_id:c1/consent?limit=3");
    assert_eq!(page["history"].as_array().unwrap().len(), 3);
    let next = page["next_cursor"].as_str().unwrap();
    let (_, rest) = s.admin_get(&format!(
        "/api/v1/profiles/user_id:c1/consent?limit=3&cursor={next}"
    ));
    assert_eq!(rest["history"][0]["message_id"], "consent-0", "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);

    // The API: a later change wins (its time is now), and the segment follows.
    let (status, c) = s.admin_send(
        "PUT",
        "/api/v1/profiles/user_id:c1/consent",
        Some(json!({"categoryPreferences": {"marketing": true}})),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["current"]["marketing"]["granted"], true, "{c}");
    assert_eq!(c["current"]["marketing"]["source"], "api");
    s.wait_processed();
    assert!(in_segment(), "granted through the API: in again");
    // An event older than the API's decision does not override it.
    track(
        "consent-3",
        "2024-06-01T00:00:00Z",
        json!({"marketing": false}),
    );
    assert_eq!(consent()["current"]["marketing"]["source"], "api");
    assert!(in_segment());

    // The CLI shows it and sets it.
    let shown = s.admin_cli(&["profiles", "consent", "user_id:c1"]);
    assert_eq!(shown["current"]["marketing"]["granted"], true, "{shown}");
    let set = s.admin_cli(&["profiles", "consent", "user_id:c1", "--deny", "marketing"]);
    assert_eq!(set["current"]["marketing"]["granted"], false, "{set}");
    assert_eq!(set["current"]["marketing"]["source"], "api");
    let url = s.url("");
    let table = common::cli(&[
        "profiles",
        "consent",
        "user_id:c1",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]);
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("PURPOSE") && table.contains("marketing"),
        "{table}"
    );
    assert!(table.contains("no effect"), "{table}");
    s.wait_processed();
    assert!(!in_segment());

    // Bad input: refused with the field named, nothing recorded.
    let bad = json!({"userId": "c1", "event": "Visited",
                     "context": {"consent": {"categoryPreferences": {"marketing": "yes"}}}});
    let (status, body) = s.post("/v1/track", &bad.to_string());
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["field"], "context.consent.categoryPreferences.marketing",
        "{body}"
    );
    for (body, field) in [
        (
            json!({"categoryPreferences": {"marketing": true}, "purposes": {}}),
            "purposes",
        ),
        (
            json!({"categoryPreferences": {"marketing": "yes"}}),
            "categoryPreferences.marketing",
        ),
        (json!({"categoryPreferences": {}}), "categoryPreferences"),
    ] {
        let (status, answer) =
            s.admin_send("PUT", "/api/v1/profiles/user_id:c1/consent", Some(body));
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) = s.admin_send(
        "POST",
        "/api/v1/profiles/user_id:nobody/consent",
        Some(json!({"categoryPreferences": {"marketing": true}})),
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(consent()["current"]["marketing"]["granted"], false);
}

/// `rapport profiles search` pages as every list of the CLI does: `--limit`, `--cursor`
/// (the `next_cursor` of the API's page), `--all`.
#[test]
fn the_cli_searches_profiles_page_by_page() {
    let s = TestServer::start();
    let batch: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|u| json!({"type": "identify", "userId": u, "traits": {"plan": "pro"}}))
        .collect();
    let (status, _) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    let search = ["profiles", "search", "--trait", "plan", "--value", "pro"];
    let mut args = search.to_vec();
    args.extend(["--limit", "2"]);
    let first = s.admin_cli(&args);
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_owned();
    let mut args = search.to_vec();
    args.extend(["--limit", "2", "--cursor", &cursor]);
    let rest = s.admin_cli(&args);
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let mut args = search.to_vec();
    args.extend(["--limit", "1", "--all"]);
    let every = s.admin_cli(&args);
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut paged = ids(&first);
    paged.extend(ids(&rest));
    assert_eq!(ids(&every), paged);
    assert_eq!(paged.len(), 3);
}
