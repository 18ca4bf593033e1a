//! The answers of tracking plans, pinned as snapshots (`tests/snapshots/`), through the real
//! router in process: a plan refused for an invalid schema, a blocked message, a batch with
//! one blocked message, and the violations report. A change to one of these bodies is a
//! change to the API (docs/tracking-plans.md).

mod support;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use support::Harness;
use tower::ServiceExt;

fn admin(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Value {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, body) = h.send(method, path, &h.admin_key.clone(), bytes);
    json!({"status": status.as_u16(), "body": body})
}

/// A tracking request with the write key as HTTP Basic user name, as SDKs send it.
fn track(h: &Harness, path: &str, body: &str) -> Value {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{}:", h.write_key));
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", format!("Basic {credentials}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    h.runtime.block_on(async {
        let response = h.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        json!({"status": status, "body": serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)})
    })
}

const PLAN: &str = "/api/v1/sources/test/tracking-plan";

fn with_plan() -> Harness {
    let h = Harness::new();
    let saved = admin(
        &h,
        "PUT",
        PLAN,
        Some(json!({
            "mode": "block",
            "events": {"Order Completed": {"schema": {
                "properties": {"price": {"type": "number"}, "sku": {"type": "string"}},
                "required": ["sku"]
            }}}
        })),
    );
    assert_eq!(saved["status"], 200, "{saved}");
    h
}

#[test]
fn an_invalid_schema_is_refused_naming_it() {
    let h = Harness::new();
    insta::assert_json_snapshot!(admin(
        &h,
        "PUT",
        PLAN,
        Some(json!({"events": {"Order Completed": {"schema": {"type": "nope"}}}}))
    ));
    insta::assert_json_snapshot!(
        "remote_ref",
        admin(
            &h,
            "PUT",
            PLAN,
            Some(json!({"events": {"E": {"schema": {"$ref": "https://example.com/s.json"}}}}))
        )
    );
}

#[test]
fn a_blocked_message_and_a_batch_with_one() {
    let h = with_plan();
    insta::assert_json_snapshot!(
        "blocked_track",
        track(
            &h,
            "/v1/track",
            r#"{"userId":"u","event":"Order Completed","properties":{"price":"12.50"}}"#
        )
    );
    let mut batch = track(
        &h,
        "/v1/batch",
        r#"{"batch":[
            {"type":"track","userId":"u","event":"Order Completed","properties":{"sku":"a"}},
            {"type":"track","userId":"u","event":"Order Completed","properties":{"sku":1,"price":"x"}}
        ]}"#,
    );
    assert_eq!(batch["status"], 200, "{batch}");
    insta::assert_json_snapshot!("batch_with_a_blocked_message", batch.take());
    let mut report = admin(&h, "GET", &format!("{PLAN}/violations"), None);
    // Times and ids vary from run to run.
    report["body"]["source_id"] = json!("…");
    for e in report["body"]["data"].as_array_mut().unwrap() {
        e["last_at_ms"] = json!(0);
        for x in e["recent"].as_array_mut().unwrap() {
            x["at_ms"] = json!(0);
        }
    }
    insta::assert_json_snapshot!("violations_report", report);
}
