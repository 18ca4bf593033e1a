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
