//! Journeys through the REST API on a running server (either store): a definition refused
//! with the field at fault, created, published, entered by tracked events, explained on
//! the profile's timeline, counted in its flow, and paused, resumed and archived.

mod common;

use common::TestServer;
use serde_json::{Value, json};

fn cart_journey() -> Value {
    json!({
        "name": "abandoned_cart",
        "entry": {"type": "event", "condition": "event == \"Cart Updated\""},
        "reentry": {"type": "per_key", "property": "cart_id"},
        "goal": {"event": "event == \"Order Completed\"", "within": "1d",
                 "match_entry_property": "cart_id"},
        "start": "wait_for_order",
        "nodes": {
            "wait_for_order": {"type": "wait_for_event", "timeout": "4h", "timeout_next": "remind",
                "branches": [{"name": "ordered", "condition": "event == \"Order Completed\"",
                              "match_entry_property": "cart_id"}]},
            "remind": {"type": "send", "destination": "email"}
        }
    })
}

#[test]
fn a_journey_is_defined_published_entered_and_counted_through_the_api() {
    let s = TestServer::start();

    // Refused, naming the field.
    let mut bad = cart_journey();
    bad["nodes"]["remind"]["template"] = json!("{{ unclosed");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(bad));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "nodes.remind.template", "{e}");
    let mut unknown = cart_journey();
    unknown["colour"] = json!("blue");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(unknown));
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("colour"),
        "{e}"
    );

    // Created as a draft, which takes no one.
    let (status, created) = s.admin_send("POST", "/api/v1/journeys", Some(cart_journey()));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["versions"][0]["state"], "draft");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(cart_journey()));
    assert_eq!(status, 409, "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/abandoned_cart/pause", None);
    assert_eq!(status, 409, "a draft cannot be paused: {e}");
    let (status, published) = s.admin_send("POST", "/api/v1/journeys/abandoned_cart/publish", None);
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["status"], "active");
    assert_eq!(published["live_version"], 1);

    // Two carts of one customer, and a customer who orders hers.
    let batch = json!({"batch": [
        {"type": "track", "userId": "ann", "event": "Cart Updated", "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "ann", "event": "Cart Updated", "properties": {"cart_id": "c2"}},
        {"type": "track", "userId": "ann", "event": "Cart Updated", "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "bea", "event": "Cart Updated", "properties": {"cart_id": "c9"}},
        {"type": "track", "userId": "bea", "event": "Order Completed", "properties": {"cart_id": "c9"}}
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    let (status, flow) = s.admin_get("/api/v1/journeys/abandoned_cart/flow");
    assert_eq!(status, 200, "{flow}");
    let v1 = &flow["versions"][0];
    assert_eq!(v1["version"], 1, "{flow}");
    assert_eq!(v1["entered"], 3, "ann c1, ann c2, bea c9: {flow}");
    assert_eq!(v1["converted"], 1, "{flow}");
    assert_eq!(v1["active"], 2, "{flow}");
    assert_eq!(v1["nodes"]["wait_for_order"]["waiting"], 2, "{flow}");
    assert_eq!(
        v1["ways"]["wait_for_order"]["ordered"]["entered"], 1,
        "{flow}"
    );
    assert_eq!(
        v1["ways"]["wait_for_order"]["ordered"]["converted"], 1,
        "the order that ended the wait is its conversion: {flow}"
    );

    // The timeline explains each decision.
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:bea/events");
    let explained: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "journey")
        .map(|i| i["explanation"].as_str().unwrap())
        .collect();
    assert!(explained.contains(&"entered for c9"), "{timeline}");
    assert!(
        explained
            .contains(&"exited on wait_for_order: completed, Order Completed arrived (ordered)"),
        "{timeline}"
    );

    // A new draft, a name that is not the journey's, the lifecycle.
    let mut renamed = cart_journey();
    renamed["name"] = json!("other");
    let (status, e) = s.admin_send(
        "PUT",
        "/api/v1/journeys/abandoned_cart/draft",
        Some(renamed),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "name", "{e}");
    let (status, drafted) = s.admin_send(
        "PUT",
        "/api/v1/journeys/abandoned_cart/draft",
        Some(cart_journey()),
    );
    assert_eq!(status, 200, "{drafted}");
    assert_eq!(drafted["versions"][1]["state"], "draft");
    assert_eq!(drafted["live_version"], 1);
    for (step, want) in [
        ("pause", "paused"),
        ("resume", "active"),
        ("archive", "archived"),
    ] {
        let (status, j) = s.admin_send(
            "POST",
            &format!("/api/v1/journeys/abandoned_cart/{step}"),
            None,
        );
        assert_eq!(status, 200, "{step}: {j}");
        assert_eq!(j["status"], want);
    }
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/abandoned_cart/publish", None);
    assert_eq!(status, 409, "archived for good: {e}");
    let (status, list) = s.admin_get("/api/v1/journeys");
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (status, e) = s.admin_get("/api/v1/journeys/nobody");
    assert_eq!(status, 404, "{e}");
}

/// A draft previewed over the events just tracked: customers counted per step and
/// messages by destination, nothing written (the flow stays empty, no one is inside), and
/// bad ranges or versions refused naming the field.
#[test]
fn a_draft_is_previewed_over_past_events_without_running() {
    let s = TestServer::start();
    let mut quick = cart_journey();
    quick["nodes"]["wait_for_order"]["timeout"] = json!("1s");
    let (status, created) = s.admin_send("POST", "/api/v1/journeys", Some(quick));
    assert_eq!(status, 201, "{created}");
    let from = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let batch = json!({"batch": [
        {"type": "track", "userId": "ann", "event": "Cart Updated", "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "bea", "event": "Cart Updated", "properties": {"cart_id": "c9"}},
        {"type": "track", "userId": "bea", "event": "Order Completed", "properties": {"cart_id": "c9"}}
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let to = chrono::Utc::now();
    let range = json!({"from": from.to_rfc3339(), "to": to.to_rfc3339()});

    let (status, p) = s.admin_send(
        "POST",
        "/api/v1/journeys/abandoned_cart/preview",
        Some(range.clone()),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["version"], 1, "the draft: {p}");
    assert_eq!(p["events"], 3, "{p}");
    assert_eq!(p["profiles"], 2, "{p}");
    assert_eq!(p["flow"]["entered"], 2, "{p}");
    assert_eq!(p["flow"]["converted"], 1, "bea ordered: {p}");
    // Bea's order came within the second; Ann's wait timed out before `to`.
    assert_eq!(p["messages"]["email"], 1, "{p}");
    assert_eq!(p["flow"]["nodes"]["wait_for_order"]["passed"], 1, "{p}");
    assert!(!p["notes"].as_array().unwrap().is_empty(), "{p}");

    // Nothing ran: no flow, no one inside, nothing on the timeline.
    let (_, flow) = s.admin_get("/api/v1/journeys/abandoned_cart/flow");
    assert_eq!(flow["versions"], json!([]), "{flow}");
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:ann/events");
    assert!(
        !timeline["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "journey"),
        "{timeline}"
    );

    let later = (to + chrono::TimeDelta::hours(1)).to_rfc3339();
    for (body, field) in [
        (json!({"from": from.to_rfc3339(), "to": later}), "to"),
        (
            json!({"from": to.to_rfc3339(), "to": from.to_rfc3339()}),
            "from",
        ),
        (
            json!({"from": (to - chrono::TimeDelta::days(91)).to_rfc3339(), "to": to.to_rfc3339()}),
            "from",
        ),
        (json!({"from": "yesterday", "to": to.to_rfc3339()}), "from"),
        (
            json!({"version": 7, "from": from.to_rfc3339(), "to": to.to_rfc3339()}),
            "version",
        ),
    ] {
        let (status, e) = s.admin_send(
            "POST",
            "/api/v1/journeys/abandoned_cart/preview",
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys/abandoned_cart/preview",
        Some(json!({"from": from.to_rfc3339()})),
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("to"),
        "{e}"
    );
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/nobody/preview", Some(range));
    assert_eq!(status, 404, "{e}");
}
