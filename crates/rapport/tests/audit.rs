//! The audit trail end to end on a real server (docs/audit.md): administrative actions are
//! recorded with who, when, from where, the outcome and the resource before and after; it
//! survives a restart; the API cannot edit or delete it; it never holds a created key's
//! secret nor a person's reference; every mutating route of the OpenAPI document leaves an
//! entry with a named action.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn audit(s: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = s.admin_get(&format!("/api/v1/audit?limit=1000&{query}"));
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

fn one(s: &TestServer, action: &str) -> Value {
    let entries = audit(s, &format!("action={action}"));
    assert_eq!(entries.len(), 1, "{action}: {entries:#?}");
    entries[0].clone()
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn admin_actions_are_recorded_with_before_after_address_and_outcome() {
    let mut s = TestServer::start();

    // A key: who made it, never its secret.
    let (status, key) = s.admin_send(
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": "ops"})),
    );
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    let created = one(&s, "key.create");
    assert_eq!(created["resource"], json!({"type": "key", "id": key["id"]}));
    assert_eq!(created["status"], 201);
    assert_eq!(created["method"], "POST");
    assert_eq!(created["route"], "/api/v1/keys");
    assert_eq!(created["address"], "127.0.0.1");
    assert_eq!(created["after"]["secret_prefix"], key["secret_prefix"]);
    assert_eq!(created["after"]["secret"], "[redacted]");
    let welcome = &created["actor"];
    assert!(
        welcome["key_id"].as_str().unwrap().starts_with("key_"),
        "{welcome}"
    );
    assert_eq!(welcome["key_name"], "admin key");

    // The new key's own actions name it.
    let r = s
        .client()
        .delete(s.url(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap())))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let revoked = one(&s, "key.revoke");
    assert_eq!(revoked["actor"]["key_name"], "ops");
    assert_eq!(revoked["actor"]["key_id"], key["id"]);
    assert_eq!(revoked["before"]["revoked_at_ms"], Value::Null);
    assert!(revoked["after"]["revoked_at_ms"].is_i64(), "{revoked}");

    // A source's settings: before and after.
    let path = format!("/api/v1/sources/{}", s.source_id);
    let (status, _) = s.admin_send(
        "PATCH",
        &path,
        Some(json!({"settings": {"traits": {"deny": ["plan"]}}})),
    );
    assert_eq!(status, 200);
    let updated = one(&s, "source.update");
    assert_eq!(updated["resource"]["id"], s.source_id.as_str());
    assert_eq!(updated["before"]["settings"]["traits"], json!({}));
    assert_eq!(
        updated["after"]["settings"]["traits"],
        json!({"deny": ["plan"]})
    );

    // A new source is named by its id, though its answer nests it beside the write key;
    // the key's secret is not recorded.
    let (status, created) = s.admin_send("POST", "/api/v1/sources", Some(json!({"name": "app"})));
    assert_eq!(status, 201, "{created}");
    let entry = one(&s, "source.create");
    assert_eq!(
        entry["resource"],
        json!({"type": "source", "id": created["source"]["id"]})
    );
    let write_key = created["write_key"]["secret"].as_str().unwrap();
    assert!(!entry.to_string().contains(write_key), "{entry}");

    // A segment's life: created, changed, deleted; a refused creation with its code.
    let segment = json!({"name": "pro", "expression": "traits.plan == \"pro\""});
    assert_eq!(
        s.admin_send("POST", "/api/v1/segments", Some(segment)).0,
        201
    );
    let changed = json!({"expression": "traits.plan == \"enterprise\""});
    let (status, body) = s.admin_send("PUT", "/api/v1/segments/pro", Some(changed));
    assert!(status == 200 || status == 201, "{status} {body}");
    assert_eq!(s.admin_send("DELETE", "/api/v1/segments/pro", None).0, 204);
    let (status, _) = s.admin_send("POST", "/api/v1/segments", Some(json!({"nme": "x"})));
    assert_eq!(status, 400);
    let entries = audit(&s, "resource_type=segment");
    let lines: Vec<(&str, u64)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            ("segment.create", 400),
            ("segment.delete", 204),
            ("segment.update", status_of(&entries[2])),
            ("segment.create", 201),
        ],
        "newest first"
    );
    assert_eq!(entries[0]["error"], "invalid_field");
    assert_eq!(entries[0]["before"], Value::Null);
    let update = &entries[2];
    assert!(
        update["before"]["expression"]
            .as_str()
            .unwrap()
            .contains("pro"),
        "{update}"
    );
    assert!(
        update["after"]["expression"]
            .as_str()
            .unwrap()
            .contains("enterprise"),
        "{update}"
    );
    assert!(entries[1]["before"]["expression"].is_string());
    assert_eq!(entries[1]["after"], Value::Null);
    assert_eq!(entries[3]["resource"]["id"], "pro");
    assert_eq!(entries[3]["before"], Value::Null);

    // A person: named by digest, no body.
    let person = "user_id:alice@example.com";
    let (status, body) = s.admin_send(
        "PUT",
        &format!("/api/v1/profiles/{person}/consent"),
        Some(json!({"categoryPreferences": {"marketing": false}})),
    );
    assert!(status < 500, "{status} {body}");
    let consent = one(&s, "consent.set");
    assert_eq!(
        consent["resource"],
        json!({"type": "profile", "id": sha256(person)})
    );
    assert_eq!(
        (&consent["before"], &consent["after"]),
        (&Value::Null, &Value::Null)
    );

    // Filters: by actor, by a prefix of actions, by time.
    let by_ops = audit(&s, &format!("actor={}", key["id"].as_str().unwrap()));
    assert_eq!(by_ops.len(), 1);
    assert_eq!(audit(&s, "action=key.*").len(), 2);
    assert!(audit(&s, "since=2100-01-01T00:00:00Z").is_empty());
    assert_eq!(
        audit(&s, "until=2100-01-01T00:00:00Z").len(),
        audit(&s, "").len()
    );
    let (status, err) = s.admin_get("/api/v1/audit?cursor=nope");
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
    // Paging: one entry at a time reaches every entry, newest first.
    let all = audit(&s, "");
    let (_, first) = s.admin_get("/api/v1/audit?limit=1");
    assert_eq!(first["data"][0]["id"], all[0]["id"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = s.admin_get(&format!("/api/v1/audit?limit=1&cursor={cursor}"));
    assert_eq!(second["data"][0]["id"], all[1]["id"]);

    // Reading is not recorded; the trail has no secret and no person in it.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&secret), "a key's secret is in the trail");
    assert!(
        !text.contains("alice@example.com"),
        "a person is in the trail"
    );
    assert!(all.iter().all(|e| e["method"] != "GET"));

    // The API cannot change it.
    for method in ["DELETE", "PUT", "PATCH", "POST"] {
        let (status, _) = s.admin_send(method, "/api/v1/audit", Some(json!({})));
        assert_eq!(status, 405, "{method} /api/v1/audit");
    }
    let id = all[0]["id"].as_str().unwrap();
    let (status, _) = s.admin_send("DELETE", &format!("/api/v1/audit/{id}"), None);
    assert_eq!(status, 404);
    assert_eq!(audit(&s, "").len(), all.len());

    // It survives a crash (kill -9) and restart, and the CLI reads it.
    s.spawn();
    let after = audit(&s, "");
    assert_eq!(after, all);
    let cli = s.admin_cli(&["audit", "--action", "segment.*", "--since", "2000-01-01"]);
    assert_eq!(cli["data"].as_array().unwrap().len(), 4, "{cli}");
    let table = common::ok(common::cli(&[
        "audit",
        "--action",
        "key.create",
        "--url",
        &s.url(""),
        "--admin-key",
        &s.admin_key,
    ]));
    assert!(
        table.contains("key.create") && table.contains("127.0.0.1"),
        "{table}"
    );
}

fn status_of(e: &Value) -> u64 {
    e["status"].as_u64().unwrap()
}

/// Every POST, PUT, PATCH and DELETE route of `/api/v1` in the OpenAPI document leaves an
/// entry with a named action (a line of `rapport_server::audit::ACTIONS`), whatever its
/// outcome.
#[test]
fn every_mutating_route_leaves_an_entry_with_a_named_action() {
    let s = TestServer::start();
    let doc: Value = s
        .client()
        .get(s.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 30, "{routes:?}");
    for (method, template) in &routes {
        // Placeholders for parameters and an empty body: most are refused, all recorded.
        let path: String = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "nope" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = s.admin_send(method, &path, Some(json!({})));
        assert!(
            status != 401 && status != 405,
            "{method} {path}: {status} {body}"
        );
    }
    let entries = audit(&s, "");
    for (method, template) in &routes {
        let entry = entries
            .iter()
            .find(|e| e["method"] == method.as_str() && e["route"] == template.as_str())
            .unwrap_or_else(|| panic!("no audit entry for {method} {template}"));
        let action = entry["action"].as_str().unwrap();
        assert!(
            action.contains('.') && !action.contains(' '),
            "{method} {template}: unnamed action {action:?}"
        );
        assert!(entry["address"].is_string(), "{entry}");
    }
}

/// Customers named in a journey-entries body are kept as digests only, whatever the
/// outcome.
#[test]
fn journey_entries_name_customers_by_digest_only() {
    let s = TestServer::start();
    let people = ["email:carl@example.com", "user_id:dora"];
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/journeys/nobody/entries",
        Some(json!({"profiles": people})),
    );
    assert_eq!(status, 404, "{body}");
    let entry = one(&s, "journey.entries.create");
    assert_eq!(
        entry["resource"],
        json!({"type": "journey", "id": "nobody"})
    );
    assert_eq!(entry["error"], "not_found");
    assert_eq!(
        entry["after"],
        json!({"profiles": [sha256(people[0]), sha256(people[1])]})
    );
    let text = entry.to_string();
    assert!(!text.contains("carl") && !text.contains("dora"), "{text}");
}
