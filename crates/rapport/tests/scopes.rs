//! Admin key scopes and personal-data masking end to end (docs/security.md#admin-key-scopes):
//! each route needs its scope (`403 missing_scope` naming it), a key cannot give what it
//! does not hold, and a `read_masked` key gets personal data masked in every answer and
//! cannot unmask it.

mod common;

use common::TestServer;
use serde_json::{Value, json};

/// Sends `method path` with `key`. Returns status and body.
fn send(s: &TestServer, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s
        .client()
        .request(method.parse().unwrap(), s.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn key_with(s: &TestServer, creator: &str, scopes: Value) -> (String, Value) {
    let (status, key) = send(
        s,
        creator,
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": "scoped", "scopes": scopes})),
    );
    assert_eq!(status, 201, "{key}");
    (key["secret"].as_str().unwrap().to_owned(), key)
}

fn refused(answer: (u16, Value), scope: &str) {
    let (status, body) = answer;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "missing_scope", "{body}");
    assert_eq!(body["error"]["field"], scope, "{body}");
}

#[test]
fn routes_need_their_scope_and_keys_cannot_escalate() {
    let s = TestServer::start();
    let full = s.admin_key.clone();
    // The welcome key holds every scope.
    let (_, keys) = s.admin_get("/api/v1/keys");
    let welcome = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "admin")
        .unwrap();
    assert_eq!(
        welcome["scopes"],
        json!(["read", "read_masked", "configure", "delete"])
    );

    let (reader, _) = key_with(&s, &full, json!(["read"]));
    assert_eq!(send(&s, &reader, "GET", "/api/v1/segments", None).0, 200);
    let segment = json!({"name": "pro", "expression": "traits.plan == \"pro\""});
    refused(
        send(
            &s,
            &reader,
            "POST",
            "/api/v1/segments",
            Some(segment.clone()),
        ),
        "configure",
    );
    let (configurer, _) = key_with(&s, &full, json!(["configure"]));
    refused(
        send(&s, &configurer, "GET", "/api/v1/segments", None),
        "read",
    );
    assert_eq!(
        send(&s, &configurer, "POST", "/api/v1/segments", Some(segment)).0,
        201
    );

    // No escalation: a key gives only what it holds; without `scopes` it gives its own.
    refused(
        send(
            &s,
            &configurer,
            "POST",
            "/api/v1/keys",
            Some(json!({"kind": "admin", "scopes": ["configure", "read"]})),
        ),
        "read",
    );
    let (_, inherited) = key_with(&s, &configurer, Value::Null);
    assert_eq!(inherited["scopes"], json!(["configure"]));
    // Nor revoke a key holding more than it does.
    let welcome_id = welcome["id"].as_str().unwrap();
    refused(
        send(
            &s,
            &configurer,
            "DELETE",
            &format!("/api/v1/keys/{welcome_id}"),
            None,
        ),
        "read",
    );
    // A write key has no scopes.
    let (status, body) = send(
        &s,
        &full,
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "write", "source": "default", "scopes": ["read"]})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("scopes"))
    );

    // A masked key that configures still cannot unmask: not the configuration of what is
    // masked, not a destination (which would receive raw events), not a broader key.
    let (masked, _) = key_with(&s, &full, json!(["read_masked", "configure"]));
    refused(
        send(
            &s,
            &masked,
            "PUT",
            "/api/v1/privacy/personal-data",
            Some(json!({"traits": [], "properties": [], "identifier_types": []})),
        ),
        "read",
    );
    refused(
        send(
            &s,
            &masked,
            "POST",
            "/api/v1/destinations",
            Some(json!({"name": "out", "kind": "webhook", "url": "http://127.0.0.1:9/"})),
        ),
        "read",
    );
    refused(
        send(
            &s,
            &masked,
            "POST",
            "/api/v1/keys",
            Some(json!({"kind": "admin", "scopes": ["read"]})),
        ),
        "read",
    );
    assert_eq!(
        send(&s, &masked, "GET", "/api/v1/privacy/personal-data", None).0,
        200
    );

    // The CLI gives scopes too.
    let created = s.admin_cli(&[
        "keys",
        "create",
        "--kind",
        "admin",
        "--scope",
        "read_masked",
        "--scope",
        "delete",
    ]);
    assert_eq!(
        created["scopes"],
        json!(["read_masked", "delete"]),
        "{created}"
    );

    // Refusals are in the audit trail.
    let (_, trail) = s.admin_get("/api/v1/audit?action=segment.create");
    let statuses: Vec<_> = trail["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["status"].as_u64().unwrap(), e["error"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [(201, Value::Null), (403, json!("missing_scope"))]
    );
}

#[test]
fn a_masked_key_reads_no_personal_data_in_any_answer() {
    let s = TestServer::start();
    let full = s.admin_key.clone();
    let (status, _) = s.post(
        "/v1/identify",
        r#"{"userId": "u1", "traits": {"email": "ann@example.com", "name": "Ann Lee", "plan": "pro"}}"#,
    );
    assert_eq!(status, 200);
    let (status, _) = s.post(
        "/v1/track",
        r#"{"userId": "u1", "event": "Order Completed", "properties": {"email": "ann@example.com", "total": 30}, "context": {"ip": "203.0.113.7"}}"#,
    );
    assert_eq!(status, 200);
    let segment = json!({"name": "pro", "expression": "traits.plan == \"pro\""});
    assert_eq!(
        s.admin_send("POST", "/api/v1/segments", Some(segment)).0,
        201
    );
    s.wait_processed();
    s.wait_indexed();

    let (masked, _) = key_with(&s, &full, json!(["read_masked"]));
    let routes = [
        "/api/v1/profiles/user_id:u1",
        "/api/v1/profiles/email:ann@example.com",
        "/api/v1/profiles/user_id:u1/events",
        "/api/v1/profiles/user_id:u1/identity",
        "/api/v1/profiles?trait=plan&value=pro",
        "/api/v1/events?userId=u1",
        "/api/v1/segments/pro/members",
        "/api/v1/audience-changes",
    ];
    for route in routes {
        let (status, raw) = send(&s, &full, "GET", route, None);
        assert_eq!(status, 200, "{route}: {raw}");
        let (status, body) = send(&s, &masked, "GET", route, None);
        assert_eq!(status, 200, "{route}: {body}");
        let text = body.to_string();
        for secret in ["ann@example.com", "Ann Lee", "203.0.113.7"] {
            assert!(
                !text.contains(secret),
                "{route} shows {secret:?} to a masked key: {text}"
            );
        }
        assert!(
            raw.to_string().contains("ann@example.com")
                || route.contains("audience")
                || route.contains("members"),
            "{route}: the full key sees the raw value: {raw}"
        );
    }
    let (_, profile) = send(&s, &masked, "GET", "/api/v1/profiles/user_id:u1", None);
    assert_eq!(profile["traits"]["email"], "***");
    assert_eq!(profile["traits"]["name"], "***");
    assert_eq!(profile["traits"]["plan"], "pro");
    let email = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "email")
        .unwrap();
    assert_eq!(email["value"], "***");
    let (_, events) = send(
        &s,
        &masked,
        "GET",
        "/api/v1/events?userId=u1&type=track",
        None,
    );
    assert_eq!(events["data"][0]["properties"]["email"], "***");
    assert_eq!(events["data"][0]["properties"]["total"], 30);
    // A computed trait of a personal name previewed: its values too.
    let draft = json!({"definition": {"name": "email", "function": "last",
        "event": "Order Completed", "property": "email"}});
    let (status, raw) = send(
        &s,
        &full,
        "POST",
        "/api/v1/computed-traits/check",
        Some(draft.clone()),
    );
    assert_eq!(status, 200, "{raw}");
    assert_eq!(
        raw["preview"]["examples"][0]["computed"]["email"], "ann@example.com",
        "{raw}"
    );
    let (status, body) = send(
        &s,
        &masked,
        "POST",
        "/api/v1/computed-traits/check",
        Some(draft),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["preview"]["examples"][0]["computed"]["email"], "***");
    assert!(!body.to_string().contains("ann@example.com"), "{body}");

    // Configuration's names are not customers' data: they stay readable.
    let (_, segment) = send(&s, &masked, "GET", "/api/v1/segments/pro", None);
    assert_eq!(segment["name"], "pro", "{segment}");
    let (_, keys) = send(&s, &masked, "GET", "/api/v1/keys", None);
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "scoped"),
        "{keys}"
    );

    // The configuration decides: `plan` made personal is masked at the next request.
    let (_, mut config) = s.admin_get("/api/v1/privacy/personal-data");
    config["traits"].as_array_mut().unwrap().push(json!("plan"));
    let (status, saved) = s.admin_send("PUT", "/api/v1/privacy/personal-data", Some(config));
    assert_eq!(status, 200, "{saved}");
    let (_, profile) = send(&s, &masked, "GET", "/api/v1/profiles/user_id:u1", None);
    assert_eq!(profile["traits"]["plan"], "***");
    let (_, profile) = s.admin_get("/api/v1/profiles/user_id:u1");
    assert_eq!(profile["traits"]["plan"], "pro");
}

/// A destination's dead letters hold the request body as text: a masked key reads it
/// masked, as JSON, and never the raw values.
#[test]
fn dead_letter_payloads_are_masked() {
    use common::receiver::{Receiver, wait_for};
    let receiver = Receiver::start();
    receiver.answer(422);
    let s = TestServer::start();
    let (status, created) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "crm", "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2}})),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["destination"]["id"].as_str().unwrap().to_owned();
    let (status, _) = s.post(
        "/v1/identify",
        r#"{"userId": "u2", "traits": {"email": "bob@example.com", "plan": "pro"}}"#,
    );
    assert_eq!(status, 200);
    let path = format!("/api/v1/destinations/{id}/dead-letters");
    wait_for("a dead letter", || {
        s.admin_get(&path).1["data"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let (_, raw) = s.admin_get(&path);
    assert!(raw.to_string().contains("bob@example.com"), "{raw}");
    let (masked, _) = key_with(&s, &s.admin_key, json!(["read_masked"]));
    let (status, body) = send(&s, &masked, "GET", &path, None);
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("bob@example.com"), "{body}");
    assert!(body.to_string().contains("pro"), "{body}");
    // Nor through the payload of a replay's or anything else's answer: replaying needs
    // `read` as well.
    refused(
        send(
            &s,
            &masked,
            "POST",
            &format!("{path}/replay"),
            Some(json!({})),
        ),
        "configure",
    );
}
