//! Per-source limits on what a (public) write key can do, end to end on a real server:
//! traits a source may not set, merges it may not make, identifier types it may not assert,
//! and rate limits per source and per client IP. See docs/security.md.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

fn set(s: &TestServer, settings: Value) -> Value {
    let path = format!("/api/v1/sources/{}", s.source_id);
    let (status, body) = s.admin_send("PATCH", &path, Some(json!({ "settings": settings })));
    assert_eq!(status, 200, "{body}");
    body
}

/// A tracking request from `from` (a loopback address), with the key in a header.
fn post_from(s: &TestServer, from: &str, path: &str, body: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(s.url(path))
        .basic_auth(&s.write_key, Some(""))
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn refusals(s: &TestServer, reference: &str) -> Vec<Value> {
    let (status, explained) = s.admin_get(&format!("/api/v1/profiles/{reference}/identity"));
    assert_eq!(status, 200, "{explained}");
    explained["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "identifier_refused")
        .cloned()
        .collect()
}

#[test]
fn settings_are_read_validated_and_default_to_no_restriction() {
    let s = TestServer::start();
    let path = format!("/api/v1/sources/{}", s.source_id);
    let (status, source) = s.admin_get(&path);
    assert_eq!(status, 200, "{source}");
    assert_eq!(
        source["settings"],
        json!({"traits": {}, "identity": {"merge": true}})
    );
    // By name too.
    let (status, by_name) = s.admin_get("/api/v1/sources/default");
    assert_eq!((status, &by_name["id"]), (200, &source["id"]));
    for (settings, field) in [
        (json!({"traits": {"deny": [""]}}), "settings.traits.deny[0]"),
        (json!({"traits": {"alow": ["x"]}}), "settings.traits.alow"),
        (
            json!({"identity": {"identifier_types": ["user id"]}}),
            "settings.identity.identifier_types[0]",
        ),
        (
            json!({"rate_limit": {"per_second": 0, "burst": 1}}),
            "settings.rate_limit.per_second",
        ),
        (
            json!({"ip_rate_limit": {"per_second": 1}}),
            "settings.ip_rate_limit",
        ),
    ] {
        let (status, err) = s.admin_send("PUT", &path, Some(json!({ "settings": settings })));
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    // Nothing was saved by the refused requests.
    assert_eq!(s.admin_get(&path).1, source);
    let (status, _) = s.admin_get("/api/v1/sources/nope");
    assert_eq!(status, 404);
    // A write key cannot read or change settings.
    let r = s
        .client()
        .put(s.url(&path))
        .bearer_auth(&s.write_key)
        .json(&json!({"settings": {}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A new source can be created with settings.
    let (status, created) = s.admin_send(
        "POST",
        "/api/v1/sources",
        Some(json!({"name": "web", "settings": {"traits": {"deny": ["plan"]}}})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["source"]["settings"]["traits"]["deny"],
        json!(["plan"])
    );
    let (_, list) = s.admin_get("/api/v1/sources");
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[test]
fn a_source_may_not_set_traits_it_is_denied() {
    let s = TestServer::start();
    set(&s, json!({"traits": {"deny": ["plan", "is_admin"]}}));
    let (status, err) = s.post(
        "/v1/identify",
        r#"{"userId":"u1","traits":{"name":"Ann","plan":"enterprise"}}"#,
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "trait_not_allowed");
    assert_eq!(err["error"]["field"], "traits.plan");
    // In a batch: the others are stored, the refused one is listed.
    let (status, res) = s.post(
        "/v1/batch",
        r#"{"batch":[
            {"type":"identify","userId":"u1","traits":{"name":"Ann"}},
            {"type":"track","userId":"u1","event":"x","context":{"traits":{"is_admin":true}}},
            {"type":"track","userId":"u1","event":"y","properties":{"plan":"ok in properties"}}
        ]}"#,
    );
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["accepted"], 2, "{res}");
    assert_eq!(res["rejected"][0]["index"], 1);
    assert_eq!(
        res["rejected"][0]["error"]["field"],
        "context.traits.is_admin"
    );
    s.wait_processed();
    let (_, p) = s.admin_get("/api/v1/profiles/user_id:u1");
    assert_eq!(p["traits"], json!({"name": "Ann"}), "{p}");
    assert_eq!(s.all_events("userId=u1").len(), 2);

    // An allow-list: only these names.
    set(&s, json!({"traits": {"allow": ["name"]}}));
    let (status, err) = s.post(
        "/v1/identify",
        r#"{"userId":"u1","traits":{"name":"Ann","email":"a@example.com"}}"#,
    );
    assert_eq!(
        (status, &err["error"]["field"]),
        (400, &json!("traits.email"))
    );
    let (status, _) = s.post("/v1/identify", r#"{"userId":"u1","traits":{"name":"Bo"}}"#);
    assert_eq!(status, 200);
    // Lifting the restriction restores today's behaviour.
    set(&s, json!({"traits": null}));
    let (status, _) = s.post("/v1/identify", r#"{"userId":"u1","traits":{"plan":"pro"}}"#);
    assert_eq!(status, 200);
}

#[test]
fn a_source_without_merge_permission_cannot_join_two_profiles() {
    let s = TestServer::start();
    // Two visitors, two profiles with their own history.
    for anon in ["a1", "a2"] {
        let (status, _) = s.post(
            "/v1/track",
            &format!(r#"{{"anonymousId":"{anon}","event":"Viewed"}}"#),
        );
        assert_eq!(status, 200);
    }
    set(&s, json!({"identity": {"merge": false}}));
    // Signing in on the first device attaches the user id (no merge needed)…
    s.post("/v1/identify", r#"{"userId":"u1","anonymousId":"a1"}"#);
    // …but the same user id from the second device would join two profiles: refused.
    s.post("/v1/identify", r#"{"userId":"u1","anonymousId":"a2"}"#);
    s.wait_processed();
    let (_, user) = s.admin_get("/api/v1/profiles/user_id:u1");
    let (_, first) = s.admin_get("/api/v1/profiles/anonymous_id:a1");
    let (_, second) = s.admin_get("/api/v1/profiles/anonymous_id:a2");
    assert_eq!(user["id"], first["id"]);
    assert_ne!(user["id"], second["id"], "the profiles were merged");
    for reference in ["user_id:u1", "anonymous_id:a2"] {
        let refused = refusals(&s, reference);
        assert!(
            refused
                .iter()
                .any(|r| r["reason"] == "merge_not_allowed_for_source"
                    && r["source_id"] == s.source_id.as_str()
                    && r["identifier"]["value"] == "a2"),
            "{reference}: {refused:?}"
        );
    }

    // The policy is in force from where its change is in the log: lifted, the same call
    // merges.
    set(&s, json!({"identity": null}));
    s.post("/v1/identify", r#"{"userId":"u1","anonymousId":"a2"}"#);
    s.wait_processed();
    let (_, second) = s.admin_get("/api/v1/profiles/anonymous_id:a2");
    assert_eq!(user["id"], second["id"]);

    // Identifier types: a source limited to user and anonymous ids cannot assert an e-mail.
    set(
        &s,
        json!({"identity": {"identifier_types": ["user_id", "anonymous_id"]}}),
    );
    s.post(
        "/v1/identify",
        r#"{"userId":"u9","traits":{"email":"nine@example.com"}}"#,
    );
    s.wait_processed();
    let (status, _) = s.admin_get("/api/v1/profiles/email:nine@example.com");
    assert_eq!(status, 404);
    let refused = refusals(&s, "user_id:u9");
    assert!(
        refused
            .iter()
            .any(|r| r["reason"] == "type_not_allowed_for_source" && r["source"] == "traits.email"),
        "{refused:?}"
    );
}

#[test]
fn the_source_rate_limit_answers_429_with_retry_after_then_recovers() {
    let s = TestServer::start();
    set(&s, json!({"rate_limit": {"per_second": 1, "burst": 2}}));
    let track = r#"{"userId":"u1","event":"x"}"#;
    for _ in 0..2 {
        assert_eq!(post_from(&s, "127.0.0.1", "/v1/track", track).status(), 200);
    }
    let r = post_from(&s, "127.0.0.1", "/v1/track", track);
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // From another address too: the limit is the source's.
    assert_eq!(post_from(&s, "127.0.0.2", "/v1/track", track).status(), 429);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(post_from(&s, "127.0.0.1", "/v1/track", track).status(), 200);
    // A refused request stored nothing.
    assert_eq!(s.all_events("userId=u1").len(), 3);
}

#[test]
fn the_ip_rate_limit_is_per_client_address() {
    let s = TestServer::start();
    set(&s, json!({"ip_rate_limit": {"per_second": 1, "burst": 2}}));
    let track = r#"{"userId":"u1","event":"x"}"#;
    for _ in 0..2 {
        assert_eq!(post_from(&s, "127.0.0.1", "/v1/track", track).status(), 200);
    }
    let r = post_from(&s, "127.0.0.1", "/v1/track", track);
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Another client is not held back by the first.
    assert_eq!(post_from(&s, "127.0.0.2", "/v1/track", track).status(), 200);
    // Without a trusted proxy, X-Forwarded-For is ignored: it cannot buy a fresh bucket.
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v1/track"))
        .basic_auth(&s.write_key, Some(""))
        .header("x-forwarded-for", "203.0.113.50")
        .body(track)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(post_from(&s, "127.0.0.1", "/v1/track", track).status(), 200);
}

#[test]
fn the_cli_shows_and_updates_a_source_s_settings() {
    let s = TestServer::start();
    let updated = s.admin_cli(&[
        "sources",
        "update",
        "default",
        "--deny-traits",
        "plan,is_admin",
        "--merge",
        "false",
        "--rate-limit",
        "50/200",
    ]);
    assert_eq!(
        updated["settings"]["traits"]["deny"],
        serde_json::json!(["plan", "is_admin"]),
        "{updated}"
    );
    let shown = s.admin_cli(&["sources", "show", "default"]);
    assert_eq!(shown["settings"]["identity"]["merge"], false, "{shown}");
    assert_eq!(shown["settings"]["rate_limit"]["per_second"], 50, "{shown}");
    let (status, answer) = s.post("/v1/identify", r#"{"userId":"u","traits":{"plan":"pro"}}"#);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "traits.plan");
}
