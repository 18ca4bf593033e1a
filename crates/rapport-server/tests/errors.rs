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

/// One rule for every body: JSON of the wrong shape is `invalid_field` naming the field by
/// its path, `$` for the body itself, at the top level as deep inside; only text that is
/// not JSON is `invalid_json`.
#[test]
fn a_body_of_the_wrong_shape_is_invalid_field_at_any_depth() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    insta::assert_json_snapshot!(
        "array_body",
        send(
            &h,
            "POST",
            "/api/v1/sources",
            &admin,
            Some(json!([{"name": "s"}]))
        )
    );
    insta::assert_json_snapshot!(
        "string_body",
        send(&h, "POST", "/api/v1/keys", &admin, Some(json!("admin")))
    );
    insta::assert_json_snapshot!(
        "array_definition",
        send(&h, "POST", "/api/v1/segments", &admin, Some(json!([])))
    );
    let (status, body) = h.send("POST", "/api/v1/keys", &admin, b"{\"kind\": ".to_vec());
    insta::assert_json_snapshot!("not_json", json!({"status": status.as_u16(), "body": body}));
}

/// A path parameter at fault is named as the parameter it is, in the error shape of every
/// refusal.
#[test]
fn path_parameters_at_fault_are_named() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    insta::assert_json_snapshot!(
        "malformed_profile_reference",
        send(&h, "GET", "/api/v1/profiles/nocolon", &admin, None)
    );
    insta::assert_json_snapshot!(
        "unknown_identifier_type_in_path",
        send(&h, "GET", "/api/v1/profiles/%3A42/events", &admin, None)
    );
    insta::assert_json_snapshot!(
        "invalid_name_in_path",
        send(
            &h,
            "PUT",
            "/api/v1/segments/Bad%20Name",
            &admin,
            Some(json!({"expression": "true"}))
        )
    );
}

/// A replay of dead letters named by position that are not stored answers 404 naming them
/// (it answered 200 `replayed: 0`, as if done); a replay of all, or of a time window, that
/// matches nothing is a legitimate empty result and stays 200 with 0.
#[test]
fn replaying_dead_letters_that_do_not_exist_is_a_404() {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    let (status, created) = h.send(
        "POST",
        "/api/v1/destinations",
        &admin,
        json!({"name": "crm", "kind": {"type": "webhook", "url": "https://crm.example/hook"}})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(status, 201, "{created}");
    let replay = "/api/v1/destinations/crm/dead-letters/replay";
    insta::assert_json_snapshot!(
        "replay_unknown_offsets",
        send(&h, "POST", replay, &admin, Some(json!({"offsets": [5, 9]})))
    );
    insta::assert_json_snapshot!(
        "replay_unknown_audience_changes",
        send(
            &h,
            "POST",
            replay,
            &admin,
            Some(json!({"offsets": [], "audience_changes": [3]}))
        )
    );
    for body in [
        json!({}),
        json!({"failed_since": "2000-01-01T00:00:00Z"}),
        json!({"offsets": []}),
    ] {
        let answer = send(&h, "POST", replay, &admin, Some(body.clone()));
        assert_eq!(
            answer,
            json!({"status": 200, "body": {"replayed": 0}}),
            "{body}"
        );
    }
}
