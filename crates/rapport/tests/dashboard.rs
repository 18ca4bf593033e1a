//! The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core
//! from `tests/sdk`): the flows of `tests/sdk/dashboard.mjs` — sign in, find a profile by
//! e-mail and read its timeline, create a segment and see it fill, create and revoke a key,
//! accept a review pair, sign out — with axe-core's checks on every page. Then, over plain HTTP, what the browser
//! cannot show: the headers of every dashboard answer, the session's end at sign-out, and
//! refusals of forged requests.
//!
//! `SCREENSHOTS=<dir>` keeps a PNG of each page (the ones in `docs/dashboard.md`).

mod common;

use common::people::{planted, population};
use common::{TestServer, browser_flows};
use serde_json::{Value, json};

/// A shop's worth of customers, one of them with a name that is markup.
fn seed(s: &TestServer) {
    let mut batch = vec![json!({"type": "identify", "userId": "ann", "traits": {
        "email": "ann@example.com", "name": "<img src=x onerror=alert(1)>", "plan": "pro"}})];
    for i in 0..40 {
        batch.push(
            json!({"type": "track", "userId": "ann", "event": "Product Viewed",
            "properties": {"sku": format!("SKU-{i}")}}),
        );
    }
    for i in 0..5 {
        batch.push(json!({"type": "identify", "userId": format!("u{i}"), "traits": {
            "email": format!("u{i}@example.com"), "plan": if i % 2 == 0 { "pro" } else { "free" }}}));
    }
    // Consent to marketing: ann, u0 and u2 grant it, u3 grants then withdraws it.
    for (user, granted) in [
        ("ann", true),
        ("u0", true),
        ("u2", true),
        ("u3", true),
        ("u3", false),
    ] {
        batch.push(
            json!({"type": "track", "userId": user, "event": "Consent Updated",
            "context": {"consent": {"categoryPreferences": {"marketing": granted}}}}),
        );
    }
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    // A town of people and a few known twice, for the review queue.
    let mut town = population();
    town.extend(planted());
    let (status, body) = s.post("/v1/batch", &json!({ "batch": town }).to_string());
    assert_eq!(status, 200, "{body}");
    // Ann also opened the app: events of a second source, for the live page's source filter.
    let ios = s.admin_cli(&["sources", "create", "ios app"]);
    let ios_key = ios["write_key"]["secret"].as_str().unwrap();
    let opened: Vec<Value> = (0..3)
        .map(|_| json!({"type": "track", "userId": "ann", "event": "App Opened"}))
        .collect();
    let (status, body) = s.post_as(
        ios_key,
        "/v1/batch",
        &json!({ "batch": opened }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    // A message the tracking API refuses, for the live page's list of refusals.
    let (status, _) = s.post("/v1/track", r#"{"userId": "ann"}"#);
    assert_eq!(status, 400);
    s.wait_processed();
    let (status, run) = s.admin_send("POST", "/api/v1/identity/matching/run", Some(json!({})));
    assert!(status == 200 || status == 202, "{run}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, m) = s.admin_get("/api/v1/identity/matching");
        if m["state"] == "done" {
            assert!(m["review"].as_u64().unwrap() > 0, "pairs for review: {m}");
            break;
        }
        // The run's thread may not have recorded its start yet.
        assert!(m["state"] == "running" || m["state"] == "never_run", "{m}");
        assert!(
            std::time::Instant::now() < deadline,
            "matching did not finish: {m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_user_signs_in_finds_a_customer_builds_a_segment_revokes_a_key_and_signs_out() {
    let s = TestServer::start();
    seed(&s);
    let report = browser_flows(
        "dashboard.mjs",
        &[&s.url(""), &s.admin_key, "ann@example.com"],
        &[
            "sign in",
            "watch live events and refusals",
            "find a profile by e-mail and read its timeline",
            "create a segment and see it fill",
            "define a computed trait and see who it would describe",
            "create and revoke a key",
            "accept a review pair",
            "count consent across profiles",
            "delete a person and read the receipt",
            "read the audit trail",
            "a change without the CSRF token is refused",
            "sign out",
        ],
        true,
    );

    // The live page filtered by source listed the events the API lists for that source.
    let (_, sources) = s.admin_get("/api/v1/sources");
    let ios = sources["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "ios app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        report["from_ios"],
        s.all_events(&format!("source={ios}&userId=ann")).len(),
        "{report:#}"
    );
    assert_eq!(report["from_ios"], 3, "{report:#}");

    // Consent counted from the page: the purpose's segment, the people who granted it.
    let (_, consent) = s.admin_get("/api/v1/segments/consent_marketing");
    assert_eq!(
        consent["expression"], "consent.marketing == true",
        "{consent}"
    );
    assert_eq!(
        report["consent_granted"], consent["size"],
        "{report:#} {consent}"
    );
    assert_eq!(report["consent_granted"], 3, "{report:#}");

    // What the browser did is what the API holds: the segment, the revoked key.
    let (_, segment) = s.admin_get("/api/v1/segments/pro_customers");
    assert_eq!(segment["expression"], r#"traits.plan == "pro""#);
    // The count previewed while typing is the size the segment reached.
    assert_eq!(report["previewed"], segment["size"], "{report:#} {segment}");
    // Ann viewed products: the one profile the trait says something of.
    assert_eq!(report["trait_previewed"], 1, "{report:#}");
    let (status, views) = s.admin_get("/api/v1/computed-traits/views");
    assert_eq!(status, 200, "{views}");
    let (_, keys) = s.admin_get("/api/v1/keys");
    let temporary = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "temporary")
        .expect("the key made in the browser");
    assert!(temporary["revoked_at_ms"].is_i64(), "{temporary}");
    // The pair accepted in the browser is merged.
    let (_, pairs) = s.admin_get("/api/v1/identity/review");
    let accepted = report["accepted"].as_str().expect("the accepted pair");
    assert!(
        !pairs["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pair"] == accepted),
        "{pairs}"
    );
    let (_, pair) = s.admin_get(&format!("/api/v1/identity/review/{accepted}"));
    assert_eq!(pair["status"], "accepted", "{pair}");
    // The audit trail names the key whose session made the changes.
    let (_, audit) = s.admin_get("/api/v1/audit?limit=100");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.iter().any(|a| a.contains("segment")), "{audit:#}");

    // The signed-out session's cookie opens nothing any more.
    let token = report["session"].as_str().expect("the session cookie");
    let r = s
        .client()
        .get(s.url("/api/v1/segments"))
        .header("cookie", format!("rapport_session={token}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers().get("www-authenticate").is_none(),
        "no browser prompt"
    );
}

fn sign_in(s: &TestServer, key: &str) -> (u16, Value, Option<String>) {
    let r = s
        .client()
        .post(s.url("/session"))
        .json(&json!({ "key": key }))
        .send()
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), r.json().unwrap_or(Value::Null), cookie)
}

#[test]
fn sessions_are_safe_cookies_and_forged_or_foreign_changes_are_refused() {
    let s = TestServer::start();
    // Every dashboard answer carries the policy that forbids inline script and other hosts.
    for path in [
        "/",
        "/assets/app/app.js",
        "/assets/vendor/lit-html/lit-html.js",
    ] {
        let r = s.client().get(s.url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
    let r = s.client().get(s.url("/assets/app/nope.js")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A write key, an unknown key: refused, naming the field.
    let (status, body, cookie) = sign_in(&s, &s.write_key);
    assert_eq!(
        (status, &body["error"]["field"]),
        (401, &json!("key")),
        "{body}"
    );
    assert!(cookie.is_none());
    let (status, _, _) = sign_in(&s, "ak_unknown");
    assert_eq!(status, 401);

    let (status, session, cookie) = sign_in(&s, &s.admin_key);
    assert_eq!(status, 200, "{session}");
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(s.admin_key.as_str()));
    let token = cookie.split(';').next().unwrap().to_owned();
    let csrf = session["csrf"].as_str().unwrap();
    assert!(
        session["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("configure"))
    );

    let change = |headers: &[(&str, &str)]| {
        let mut r = s
            .client()
            .post(s.url("/api/v1/segments"))
            .header("cookie", &token)
            .json(&json!({"name": "forged", "expression": "traits.plan == \"pro\""}));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    // Without the token, with a wrong one, from another site: refused, nothing made.
    for headers in [
        vec![],
        vec![("x-csrf-token", "wrong")],
        vec![("x-csrf-token", csrf), ("sec-fetch-site", "cross-site")],
        vec![("x-csrf-token", csrf), ("origin", "https://evil.example")],
    ] {
        let (status, body) = change(&headers);
        assert_eq!(status, 403, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "csrf_rejected");
    }
    assert_eq!(s.admin_get("/api/v1/segments/forged").0, 404);
    // With it: made, and reads need no token.
    let (status, body) = change(&[("x-csrf-token", csrf)]);
    assert_eq!(status, 201, "{body}");
    let r = s
        .client()
        .get(s.url("/api/v1/segments/forged"))
        .header("cookie", &token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Signing in from another site's page is refused too.
    let r = s
        .client()
        .post(s.url("/session"))
        .header("origin", "https://evil.example")
        .json(&json!({ "key": s.admin_key }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Revoking the key ends its sessions.
    let (_, me) = s.admin_get("/api/v1/keys");
    let (_, other) = s.admin_send(
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": "second"})),
    );
    let second = other["secret"].as_str().unwrap().to_owned();
    let (_, _, cookie) = sign_in(&s, &second);
    let second_token = cookie.unwrap().split(';').next().unwrap().to_owned();
    let get = |token: &str| {
        s.client()
            .get(s.url("/session"))
            .header("cookie", token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get(&second_token), 200);
    let id = other["id"].as_str().unwrap();
    assert_eq!(
        s.admin_send("DELETE", &format!("/api/v1/keys/{id}"), None)
            .0,
        200
    );
    assert_eq!(get(&second_token), 401, "{me}");
}

#[test]
fn a_read_masked_key_sees_personal_data_masked_and_no_change_forms() {
    let s = TestServer::start();
    let (status, body) = s.post(
        "/v1/batch",
        &json!({"batch": [
            {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com", "plan": "pro"}},
            {"type": "track", "userId": "ann", "event": "Signed Up",
             "properties": {"email": "ann@example.com"}}
        ]})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    s.wait_processed();
    let (_, profile) = s.admin_get("/api/v1/profiles/email:ann@example.com");
    let id = profile["id"].as_str().expect("the profile's id").to_owned();
    let (status, key) = s.admin_send(
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": "analyst", "scopes": ["read_masked"]})),
    );
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap();
    browser_flows(
        "dashboard-masked.mjs",
        &[&s.url(""), secret, &id, "ann@example.com"],
        &[
            "sign in with a read_masked key",
            "read a profile with its personal data masked",
            "no form offers a change the key may not make",
        ],
        false,
    );
}
