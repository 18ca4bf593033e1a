//! The error bodies clients see, pinned as snapshots (`tests/snapshots/`), through the real
//! router in process: refusals of unknown fields and parameters, wrong types, missing
//! objects and keys. A change to one of these bodies is a change to the API.

mod support;

use serde_json::{Value, json};
use support::Harness;

fn send(h: &Harness, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, body) = h.send(method, path, key, bytes);
    json!({"status": status.as_u16(), "body": body})
}

#[test]
fn an_unknown_field_of_a_fit_is_refused_not_ignored() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    insta::assert_json_snapshot!(send(
        &h,
        "POST",
        "/api/v1/models/clv/fit",
        &admin,
        Some(json!({"as_of": "1997-09-30T23:59:59Z"}))
    ));
}

#[test]
fn unknown_fields_and_parameters_are_named() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    insta::assert_json_snapshot!(
        "unknown_body_field",
        send(
            &h,
            "POST",
            "/api/v1/keys",
            &admin,
            Some(json!({"kind": "admin", "nmae": "x"}))
        )
    );
    insta::assert_json_snapshot!(
        "unknown_query_parameter",
        send(&h, "GET", "/api/v1/events?colour=red", &admin, None)
    );
    insta::assert_json_snapshot!(
        "unknown_nested_field",
        send(
            &h,
            "POST",
            "/api/v1/destinations",
            &admin,
            Some(
                json!({"name": "d", "kind": {"type": "webhook", "url": "https://x.example", "retries": 3}})
            )
        )
    );
}

#[test]
fn wrong_types_and_ranges_name_the_field() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    insta::assert_json_snapshot!(
        "wrong_type",
        send(&h, "POST", "/api/v1/keys", &admin, Some(json!({"kind": 3})))
    );
    insta::assert_json_snapshot!(
        "limit_out_of_range",
        send(&h, "GET", "/api/v1/identity/review?limit=0", &admin, None)
    );
    insta::assert_json_snapshot!(
        "invalid_settings",
        send(
            &h,
            "POST",
            "/api/v1/sources",
            &admin,
            Some(json!({"name": "s", "settings": {"traits": {"deny": ["a", 3]}}}))
        )
    );
}

#[test]
fn missing_objects_keys_and_routes() {
    let h = Harness::new();
    let (admin, write) = (h.admin_key.clone(), h.write_key.clone());
    insta::assert_json_snapshot!(
        "missing_profile",
        send(&h, "GET", "/api/v1/profiles/user_id:nobody", &admin, None)
    );
    insta::assert_json_snapshot!(
        "missing_segment",
        send(&h, "GET", "/api/v1/segments/none", &admin, None)
    );
    insta::assert_json_snapshot!(
        "unknown_key",
        send(&h, "GET", "/api/v1/sources", "ak_nobody", None)
    );
    insta::assert_json_snapshot!(
        "write_key_on_rest",
        send(&h, "GET", "/api/v1/sources", &write, None)
    );
    insta::assert_json_snapshot!(
        "no_such_endpoint",
        send(&h, "GET", "/api/v1/nothing", &admin, None)
    );
    insta::assert_json_snapshot!(
        "method_not_allowed",
        send(&h, "DELETE", "/api/v1/sources", &admin, None)
    );
}
