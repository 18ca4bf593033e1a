//! Journeys through the REST API on a running server (either store): a definition refused
//! with the field at fault, created, published, entered by tracked events, explained on
//! the profile's timeline, counted in its flow, and paused, resumed and archived; its
//! messages delivered to a real webhook receiver, its emitted events logged, neither made
//! twice across a `kill -9`.

mod common;

use common::TestServer;
use common::receiver::{Receiver, wait_for};
use serde_json::{Value, json};

/// Creates a webhook destination named `name` that posts to `receiver`.
fn webhook(s: &TestServer, name: &str, receiver: &Receiver) {
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": name, "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
                    "deliver": {"events": null}})),
    );
    assert_eq!(status, 201, "{body}");
}

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
    let receiver = Receiver::start();

    // A send names a destination that exists.
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(cart_journey()));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "nodes.remind.destination", "{e}");
    webhook(&s, "email", &receiver);

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

#[test]
fn a_journey_s_messages_reach_their_webhook_and_its_emits_the_log_once_across_a_kill_9() {
    let mut s = TestServer::start();
    let receiver = Receiver::start();
    webhook(&s, "email", &receiver);
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "archive", "kind": {"type": "warehouse",
            "database_url": "postgres://nobody@127.0.0.1:1/none"}})),
    );
    assert_eq!(status, 201, "{body}");
    let welcome = |destination: &str| {
        json!({
            "name": "welcome",
            "entry": {"type": "event", "condition": "event == \"Signed Up\""},
            "start": "greet",
            "nodes": {
                "greet": {"type": "send", "destination": destination, "cap_tag": "email",
                    "template": "{\"to\": {{ profile.traits.email }}, \"plan\": {{ entry.properties.plan }}, \"step\": {{ journey.step }}, \"key\": {{ message.idempotency_key }}}",
                    "next": "tell"},
                "tell": {"type": "emit", "event": "Welcome Sent", "properties": {"channel": "email"},
                    "next": "plain"},
                "plain": {"type": "send", "destination": destination}
            }
        })
    };
    // A warehouse takes events, not messages.
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(welcome("archive")));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "nodes.greet.destination", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("webhook"),
        "{e}"
    );
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(welcome("emial")));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "nodes.greet.destination", "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(welcome("email")));
    assert_eq!(status, 201, "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/welcome/publish", None);
    assert_eq!(status, 200, "{e}");

    let batch = json!({"batch": [
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {"type": "track", "userId": "ann", "event": "Signed Up", "properties": {"plan": "pro"}}
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    wait_for("two messages", || receiver.accepted().len() == 2);
    let got = receiver.accepted();
    let (templated, plain) = (&got[0], &got[1]);
    assert_eq!(
        templated,
        &json!({"to": "ann@example.com", "plan": "pro", "step": "greet",
                "key": templated["key"].clone()}),
        "the template reads the profile, the entry event and the journey"
    );
    let key = templated["key"].as_str().unwrap();
    assert!(key.starts_with("welcome:1:"), "{key}");
    assert_eq!(plain["idempotency_key"], "welcome:1:1:3", "{plain}");
    assert_eq!(plain["type"], "journey_message", "{plain}");
    assert_eq!(plain["journey"], "welcome");
    assert_eq!(plain["step"], "plain");
    assert_eq!(plain["entry"]["event"], "Signed Up");
    assert_eq!(plain["entry"]["properties"]["plan"], "pro");
    assert_eq!(plain["traits"]["email"], "ann@example.com");
    assert_eq!(
        plain["rapport"]["identifiers"]["user_id"][0], "ann",
        "{plain}"
    );

    // The emitted event is logged as the customer's, once.
    wait_for("the emitted event", || {
        s.all_events("userId=ann")
            .iter()
            .any(|e| e["event"] == "Welcome Sent")
    });
    let emitted: Vec<Value> = s
        .all_events("userId=ann")
        .into_iter()
        .filter(|e| e["event"] == "Welcome Sent")
        .collect();
    assert_eq!(emitted.len(), 1, "{emitted:?}");
    assert!(
        emitted[0]["messageId"]
            .as_str()
            .unwrap()
            .starts_with("journey:welcome:1:"),
        "{emitted:?}"
    );
    assert_eq!(emitted[0]["properties"]["channel"], "email");

    // A message its template cannot make is a dead letter, not a send.
    let nudge = json!({
        "name": "nudge",
        "entry": {"type": "event", "condition": "event == \"Browsed\""},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "destination": "email",
                            "template": "hello {{ profile.id }}"}}
    });
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(nudge));
    assert_eq!(status, 201, "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/nudge/publish", None);
    assert_eq!(status, 200, "{e}");

    // Nothing is made again after a kill -9.
    s.kill9();
    s.spawn();
    let (status, _) = s.post(
        "/v1/track",
        &json!({"userId": "bob", "event": "Browsed"}).to_string(),
    );
    assert_eq!(status, 200);
    s.wait_processed();
    let mut dead = Value::Null;
    wait_for("the dead letter", || {
        dead = s.admin_get("/api/v1/destinations/email/dead-letters").1["data"][0].clone();
        !dead.is_null()
    });
    assert_eq!(receiver.accepted().len(), 2);
    assert_eq!(dead["feed"], "journey_action", "{dead}");
    assert_eq!(dead["reason"], "render", "{dead}");
    assert!(
        dead["error"].as_str().unwrap().contains("not JSON"),
        "{dead}"
    );
    let again = s
        .all_events("userId=ann")
        .into_iter()
        .filter(|e| e["event"] == "Welcome Sent")
        .count();
    assert_eq!(again, 1);
}
