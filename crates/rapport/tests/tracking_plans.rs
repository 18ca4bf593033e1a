//! Tracking plans end to end on a real server (docs/tracking-plans.md): a plan saved
//! through the REST API and the CLI, each mode at ingest — block (400 naming the field, and
//! a batch keeping its good messages), flag (stored as sent, the violations beside it),
//! allow (stored, counted) —, the violations report, and all of it after a restart.

mod common;

use common::{TestServer, cli, fails, ok};
use serde_json::{Value, json};

const ORDER_SCHEMA: &str = r#"{
    "type": "object",
    "properties": {"price": {"type": "number"}, "sku": {"type": "string"}},
    "required": ["sku"]
}"#;

fn plan_path(s: &TestServer) -> String {
    format!("/api/v1/sources/{}/tracking-plan", s.source_id)
}

fn put_plan(s: &TestServer, plan: Value) -> Value {
    let (status, body) = s.admin_send("PUT", &plan_path(s), Some(plan));
    assert_eq!(status, 200, "{body}");
    body
}

fn order_plan(mode: &str) -> Value {
    json!({
        "mode": mode,
        "events": {"Order Completed": {"schema": serde_json::from_str::<Value>(ORDER_SCHEMA).unwrap()}},
        "identify": {"mode": "flag", "schema": {
            "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer"}}
        }}
    })
}

fn report(s: &TestServer) -> Value {
    let (status, body) = s.admin_get(&format!("{}/violations", plan_path(s)));
    assert_eq!(status, 200, "{body}");
    body
}

fn entry<'a>(report: &'a Value, kind: &str, event: Option<&str>) -> &'a Value {
    report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["event"].as_str() == event)
        .unwrap_or_else(|| panic!("no {kind} {event:?} entry in {report}"))
}

fn order_events(s: &TestServer) -> Vec<Value> {
    s.all_events("event=Order%20Completed")
}

#[test]
fn each_mode_at_ingest_and_the_report_across_a_restart() {
    let mut s = TestServer::start();

    // block: a bad message is refused with the field named, nothing stored.
    let saved = put_plan(&s, order_plan("block"));
    assert_eq!(saved["version"], 1, "{saved}");
    let (status, body) = s.post(
        "/v1/track",
        r#"{"userId":"u1","event":"Order Completed","properties":{"price":"12.50","sku":"A-1"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "tracking_plan_violation", "{body}");
    assert_eq!(body["error"]["field"], "properties.price", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/properties/price") && message.contains("expected number, got string"),
        "{message}"
    );
    assert!(
        !message.contains("12.50"),
        "a value sent is never echoed: {message}"
    );
    // A missing required property is named too.
    let (status, body) = s.post(
        "/v1/track",
        r#"{"userId":"u1","event":"Order Completed","properties":{"price":3}}"#,
    );
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("properties.sku"))
    );
    // A batch keeps its good messages and lists the bad one, as trait refusals are.
    let (status, body) = s.post(
        "/v1/batch",
        r#"{"batch":[
            {"type":"track","userId":"u1","event":"Order Completed","properties":{"price":3,"sku":"ok-1"}},
            {"type":"track","userId":"u1","event":"Order Completed","properties":{"sku":7}},
            {"type":"track","userId":"u1","event":"Unplanned Thing"}
        ]}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["error"]["code"], "tracking_plan_violation");
    assert_eq!(rejected[0]["error"]["field"], "properties.sku");
    // /v1/import is the same path: a request whose every message is blocked is a 400.
    let (status, body) = s.post(
        "/v1/import",
        r#"{"batch":[{"type":"track","userId":"u1","event":"Order Completed","properties":{"sku":"i-1","price":"1"}}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "tracking_plan_violation", "{body}");
    let stored = order_events(&s);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["properties"]["sku"], "ok-1");
    assert!(stored[0].get("planViolations").is_none(), "{}", stored[0]);

    // flag: stored byte for byte as sent, the violations in Rapport's own field.
    assert_eq!(put_plan(&s, order_plan("flag"))["version"], 2);
    let sent_properties = r#"{"price":"12.50","sku":"F-1","note":"as  sent"}"#;
    let (status, body) = s.post(
        "/v1/track",
        &format!(
            r#"{{"userId":"u2","event":"Order Completed","properties":{sent_properties},"planViolations":"forged"}}"#
        ),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.post(
        "/v1/identify",
        r#"{"userId":"u2","traits":{"email":"secret@example.com","age":"forty"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let flagged = order_events(&s)
        .into_iter()
        .find(|e| e["properties"]["sku"] == "F-1")
        .expect("the flagged event is stored");
    assert_eq!(
        serde_json::to_string(&flagged["properties"]).unwrap(),
        sent_properties,
        "properties are kept as sent"
    );
    assert_eq!(
        flagged["planViolations"],
        json!([{"field": "/properties/price", "message": "expected number, got string"}])
    );
    let identify = s.all_events("type=identify");
    assert_eq!(identify.len(), 1);
    assert_eq!(
        identify[0]["planViolations"],
        json!([{"field": "/traits/age", "message": "expected integer, got string"}])
    );

    // allow: stored, not flagged, counted.
    put_plan(&s, order_plan("allow"));
    let (status, _) = s.post(
        "/v1/track",
        r#"{"userId":"u3","event":"Order Completed","properties":{"price":"1","sku":"L-1"}}"#,
    );
    assert_eq!(status, 200);
    let allowed = order_events(&s)
        .into_iter()
        .find(|e| e["properties"]["sku"] == "L-1")
        .expect("the allowed event is stored");
    assert!(allowed.get("planViolations").is_none(), "{allowed}");

    // The report: per event name and outcome, examples without values.
    let check = |r: &Value| {
        assert_eq!(r["plan_version"], 3, "{r}");
        let order = entry(r, "track", Some("Order Completed"));
        assert_eq!(
            (&order["blocked"], &order["flagged"], &order["allowed"]),
            (&json!(4), &json!(1), &json!(1)),
            "{order}"
        );
        let recent = order["recent"].as_array().unwrap();
        assert_eq!(recent[0]["field"], "/properties/price", "{order}");
        assert_eq!(recent[0]["outcome"], "allowed", "{order}");
        assert_eq!(entry(r, "identify", None)["flagged"], 1, "{r}");
        // The unplanned event was allowed (the default), under one entry naming it.
        let unplanned = entry(r, "unplanned", None);
        assert_eq!(unplanned["allowed"], 1, "{r}");
        assert!(
            unplanned["recent"][0]["message"]
                .as_str()
                .unwrap()
                .contains("`Unplanned Thing`"),
            "{r}"
        );
        let text = r.to_string();
        for value in ["12.50", "secret@example.com", "forty", "F-1", "u2"] {
            assert!(!text.contains(value), "the report holds {value}: {text}");
        }
    };
    check(&report(&s));
    let metrics = s.metrics_text();
    for line in [
        r#"rapport_plan_violations_total{outcome="blocked"} 4"#,
        r#"rapport_plan_violations_total{outcome="flagged"} 2"#,
        r#"rapport_plan_violations_total{outcome="allowed"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }

    // After a crash and a restart: the plan is in force, the report intact.
    s.kill9();
    s.spawn();
    check(&report(&s));
    put_plan(&s, order_plan("block"));
    let (status, body) = s.post(
        "/v1/track",
        r#"{"userId":"u4","event":"Order Completed","properties":{"price":"x","sku":"B-2"}}"#,
    );
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("properties.price"))
    );
    let order = entry(&report(&s), "track", Some("Order Completed")).clone();
    assert_eq!(order["blocked"], 5, "{order}");
}

#[test]
fn plans_are_checked_when_saved_and_managed_from_the_cli() {
    let s = TestServer::start();
    let path = plan_path(&s);
    let (status, body) = s.admin_get(&path);
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    for (plan, field) in [
        (
            json!({"events": {"Order Completed": {"schema": {"type": "nope"}}}}),
            "events.Order Completed.schema",
        ),
        (
            json!({"events": {"E": {"schema": {"$ref": "https://example.com/s.json"}}}}),
            "events.E.schema",
        ),
        (
            json!({"identify": {"schema": {"$ref": "file:///etc/passwd"}}}),
            "identify.schema",
        ),
        (json!({"mode": "strict"}), "mode"),
        (
            json!({"events": {"E": {"schema": {}, "mode": "sometimes"}}}),
            "events.E.mode",
        ),
        (json!({"evnts": {}}), "evnts"),
    ] {
        let (status, body) = s.admin_send("PUT", &path, Some(plan.clone()));
        assert_eq!(status, 400, "{plan}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    assert_eq!(s.admin_get(&path).0, 404, "nothing was saved");
    let (status, _) = s.admin_send("PUT", "/api/v1/sources/nope/tracking-plan", Some(json!({})));
    assert_eq!(status, 404);

    // The CLI: set from a file, show, violations, clear.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(
        &file,
        format!(
            "{{\n  \"mode\": \"block\",\n  \"events\": {{\"Order Completed\": {{\"schema\": {ORDER_SCHEMA}}}}}\n}}\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let saved = s.admin_cli(&["sources", "plan", "set", "default", file]);
    assert_eq!(saved["version"], 1, "{saved}");
    assert_eq!(saved["plan"]["mode"], "block", "{saved}");
    let shown = s.admin_cli(&["sources", "plan", "show", "default"]);
    assert_eq!(shown["plan"], saved["plan"]);
    let (status, _) = s.post(
        "/v1/track",
        r#"{"userId":"u","event":"Order Completed","properties":{"price":"x","sku":"a"}}"#,
    );
    assert_eq!(status, 400);
    let url = s.url("");
    let table = ok(cli(&[
        "sources",
        "plan",
        "violations",
        "default",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]));
    assert!(table.contains("track \"Order Completed\""), "{table}");
    assert!(
        table.contains("/properties/price: expected number, got string"),
        "{table}"
    );
    // A bad file is named with its line, and nothing is sent.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"mode\": \"block\",\n  \"events\": 3\n}\n").unwrap();
    let bad = bad.to_str().unwrap();
    let err = fails(cli(&[
        "sources",
        "plan",
        "set",
        "default",
        bad,
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]));
    assert!(err.contains(&format!("{bad}: line 3, column")), "{err}");
    // An invalid schema: the server's answer names it.
    std::fs::write(
        dir.path().join("invalid.json"),
        r#"{"events": {"Order Completed": {"schema": {"minimum": "ten"}}}}"#,
    )
    .unwrap();
    let err = fails(cli(&[
        "sources",
        "plan",
        "set",
        "default",
        dir.path().join("invalid.json").to_str().unwrap(),
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]));
    assert!(err.contains("events.Order Completed.schema"), "{err}");
    assert_eq!(
        s.admin_cli(&["sources", "plan", "show", "default"])["version"],
        1
    );
    // Cleared: the source's events are no longer checked; the report stays.
    s.admin_cli(&["sources", "plan", "clear", "default"]);
    assert_eq!(s.admin_get(&path).0, 404);
    let (status, body) = s.post(
        "/v1/track",
        r#"{"userId":"u","event":"Order Completed","properties":{"price":"x","sku":"a"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let r = report(&s);
    assert_eq!(r["plan_version"], Value::Null, "{r}");
    assert_eq!(entry(&r, "track", Some("Order Completed"))["blocked"], 1);
}

#[test]
fn a_plan_saved_through_one_server_is_enforced_by_another_within_5_seconds() {
    let s = TestServer::start();
    // Only PostgreSQL is shared between servers; the embedded store has one per directory.
    let Some(sibling) = s.start_sibling() else {
        return;
    };
    let bad = r#"{"userId":"u","event":"Order Completed","properties":{"sku":1}}"#;
    // The sibling has read (and cached) "no plan" before the plan is saved elsewhere.
    assert_eq!(sibling.post("/v1/track", bad).0, 200);
    put_plan(&s, order_plan("block"));
    assert_eq!(
        s.post("/v1/track", bad).0,
        400,
        "at once where it was saved"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let (status, body) = sibling.post("/v1/track", bad);
        if status == 400 {
            assert_eq!(body["error"]["field"], "properties.sku", "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sibling still stores what the plan blocks: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // Both servers' counts are in the one report.
    let order = entry(&report(&sibling), "track", Some("Order Completed")).clone();
    assert!(order["blocked"].as_u64().unwrap() >= 2, "{order}");
}
