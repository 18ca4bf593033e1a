//! Journeys through the REST API on a running server (either store): a definition refused
//! with the field at fault, created, published, entered by tracked events, explained on
//! the profile's timeline, counted in its flow, and paused, resumed and archived; its
//! messages delivered to a real webhook receiver, its emitted events logged, neither made
//! twice across a `kill -9`.

mod common;

use common::receiver::{Receiver, wait_for, webhook};
use common::{TestServer, fails, ok};
use serde_json::{Value, json};

/// Creates webhook destinations `email`, `sms` and `csm` that no one listens to: for
/// tests of decisions, not deliveries (their messages wait for retries).
fn unheard_destinations(s: &TestServer) {
    for name in ["email", "sms", "csm"] {
        let (status, body) = s.admin_send(
            "POST",
            "/api/v1/destinations",
            Some(
                json!({"name": name, "kind": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
                        "deliver": {"events": null}}),
            ),
        );
        assert_eq!(status, 201, "{body}");
    }
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
        {"type": "track", "userId": "bea", "event": "Order Completed", "properties": {"cart_id": "c9"}},
        {"type": "track", "userId": "cal", "event": "Cart Updated", "properties": {"cartId": "c5"}}
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

    // An entry without its per-key value says why on the timeline.
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:cal/events");
    assert!(
        timeline["data"].as_array().unwrap().iter().any(|i| i["explanation"]
            == "not entered on Cart Updated: the entry has no value of the per-key re-entry property"),
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

#[test]
fn customers_are_entered_through_the_api_and_bad_requests_name_the_field() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let renewal = json!({
        "name": "renewal",
        "entry": {"type": "api"},
        "reentry": {"type": "per_key", "property": "contract"},
        "start": "soon",
        "nodes": {
            "soon": {"type": "wait", "duration": "30d", "next": "call"},
            "call": {"type": "send", "destination": "csm",
                     "template": "{\"contract\": {{ entry.properties.contract }}}"}
        }
    });
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(renewal));
    assert_eq!(status, 201, "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(cart_journey()));
    assert_eq!(status, 201, "{e}");
    let batch = json!({"batch": [
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {"type": "identify", "userId": "bea"}
    ]});
    assert_eq!(s.post("/v1/batch", &batch.to_string()).0, 200);
    s.wait_processed();
    let enter = |body: Value| s.admin_send("POST", "/api/v1/journeys/renewal/entries", Some(body));

    // Not published yet.
    let (status, e) = enter(json!({"profile": "user_id:ann"}));
    assert_eq!(status, 409, "{e}");
    for j in ["renewal", "abandoned_cart"] {
        let (status, e) = s.admin_send("POST", &format!("/api/v1/journeys/{j}/publish"), None);
        assert_eq!(status, 200, "{e}");
    }

    // Bad requests, each naming its field.
    for (path, body, want_status, field) in [
        (
            "renewal",
            json!({"profile": "user_id:nobody"}),
            404,
            "profile",
        ),
        ("renewal", json!({"profile": "nonsense"}), 400, "profile"),
        ("renewal", json!({}), 400, "profile"),
        (
            "renewal",
            json!({"profile": "user_id:ann", "properties": [1]}),
            400,
            "properties",
        ),
        (
            "renewal",
            json!({"profile": "user_id:ann", "properties": "x"}),
            400,
            "properties",
        ),
        (
            "renewal",
            json!({"profile": "user_id:ann", "profiles": ["user_id:bea"]}),
            400,
            "profiles",
        ),
        ("renewal", json!({"profiles": []}), 400, "profiles"),
        (
            "renewal",
            json!({"profiles": ["user_id:ann", "user_id:nobody"]}),
            404,
            "profiles[1]",
        ),
        (
            "abandoned_cart",
            json!({"profile": "user_id:ann"}),
            400,
            "entry",
        ),
    ] {
        let (status, e) = s.admin_send(
            "POST",
            &format!("/api/v1/journeys/{path}/entries"),
            Some(body.clone()),
        );
        assert_eq!(status, want_status, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys/nobody/entries",
        Some(json!({"profile": "user_id:ann"})),
    );
    assert_eq!(status, 404, "{e}");

    // One customer, then the same contract again (refused by per-key re-entry: she is
    // inside for it), then two customers at once for another contract.
    let (status, accepted) =
        enter(json!({"profile": "user_id:ann", "properties": {"contract": "k1"}}));
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert!(
        accepted["request"].as_str().is_some_and(|r| !r.is_empty()),
        "{accepted}"
    );
    assert_eq!(accepted["entries"][0]["profile"], "user_id:ann");
    let (status, again) =
        enter(json!({"profile": "user_id:ann", "properties": {"contract": "k1"}}));
    assert_eq!(status, 202, "{again}");
    let (status, both) = enter(json!({"profiles": ["user_id:ann", "user_id:bea"],
                                      "properties": {"contract": "k2"}}));
    assert_eq!(status, 202, "{both}");
    assert_eq!(both["entries"].as_array().unwrap().len(), 2, "{both}");
    assert!(both.get("request").is_none(), "{both}");
    s.wait_processed();

    let (_, flow) = s.admin_get("/api/v1/journeys/renewal/flow");
    let v1 = &flow["versions"][0];
    assert_eq!(v1["entered"], 3, "ann k1, ann k2, bea k2: {flow}");
    assert_eq!(v1["nodes"]["soon"]["waiting"], 3, "{flow}");
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:ann/events");
    let explained: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "journey")
        .map(|i| i["explanation"].as_str().unwrap())
        .collect();
    assert!(explained.contains(&"entered for k1"), "{timeline}");
    assert!(explained.contains(&"entered for k2"), "{timeline}");
    assert!(
        explained.contains(&"not entered through the API: inside for this entry key"),
        "the second k1: {timeline}"
    );

    // Paused: no entries.
    let (status, _) = s.admin_send("POST", "/api/v1/journeys/renewal/pause", None);
    assert_eq!(status, 200);
    let (status, e) = enter(json!({"profile": "user_id:bea", "properties": {"contract": "k3"}}));
    assert_eq!(status, 409, "{e}");
}

#[test]
fn a_schedule_enters_the_members_of_its_segment_once_for_its_latest_due_time() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "free", "expression": "traits.plan == \"free\""})),
    );
    assert_eq!(status, 201, "{e}");
    let batch = json!({"batch": [
        {"type": "identify", "userId": "ann", "traits": {"plan": "free"}},
        {"type": "identify", "userId": "bea", "traits": {"plan": "free"}},
        {"type": "identify", "userId": "cal", "traits": {"plan": "pro"}}
    ]});
    assert_eq!(s.post("/v1/batch", &batch.to_string()).0, 200);
    s.wait_processed();
    // Started long ago: the periods missed run once, now.
    let mut journey = json!({
        "name": "win_back",
        "entry": {"type": "schedule", "segment": "free", "every": "1d",
                  "starting": "2020-01-01T08:00:00Z"},
        "start": "offer",
        "nodes": {"offer": {"type": "send", "destination": "email"}}
    });
    journey["entry"]["every"] = json!("soon");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(journey.clone()));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "entry", "{e}");
    journey["entry"]["every"] = json!("1d");
    journey["entry"]["segment"] = json!("nobody");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(journey.clone()));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "entry.segment", "{e}");
    journey["entry"]["segment"] = json!("free");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(journey));
    assert_eq!(status, 201, "{e}");
    let (status, e) = s.admin_send("POST", "/api/v1/journeys/win_back/publish", None);
    assert_eq!(status, 200, "{e}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let flow = loop {
        let (_, flow) = s.admin_get("/api/v1/journeys/win_back/flow");
        if flow["versions"][0]["entered"] == 2 || std::time::Instant::now() > deadline {
            break flow;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(flow["versions"][0]["entered"], 2, "ann and bea: {flow}");
    // And not again within the period.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (_, flow) = s.admin_get("/api/v1/journeys/win_back/flow");
    assert_eq!(flow["versions"][0]["entered"], 2, "{flow}");
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:ann/events");
    assert!(
        timeline["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "journey" && i["explanation"] == "offer: sent to email"),
        "{timeline}"
    );
}

#[test]
fn caps_are_set_through_the_api_and_skip_the_lower_priority_journey_s_message() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let (status, none) = s.admin_get("/api/v1/journeys/caps");
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["caps"], json!([]), "{none}");
    for (body, field) in [
        (
            json!({"caps": [{"tag": "email", "max": 0, "per": "7d"}]}),
            "caps[0].max",
        ),
        (
            json!({"caps": [{"tag": "email", "max": 3, "per": "7d"}, {"tag": " ", "max": 1, "per": "1d"}]}),
            "caps[1].tag",
        ),
        (
            json!({"caps": [{"tag": "email", "max": 3, "per": "0s"}]}),
            "caps[0].per",
        ),
    ] {
        let (status, e) = s.admin_send("PUT", "/api/v1/journeys/caps", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (status, e) = s.admin_send(
        "PUT",
        "/api/v1/journeys/caps",
        Some(json!({"caps": [{"tag": "email", "max": 1, "per": "soon"}]})),
    );
    assert_eq!(status, 400, "{e}");
    let (status, e) = s.admin_send("PUT", "/api/v1/journeys/caps", Some(json!({"limits": []})));
    assert_eq!(status, 400, "{e}");
    let (status, set) = s.admin_send(
        "PUT",
        "/api/v1/journeys/caps",
        Some(json!({"caps": [{"tag": "email", "max": 1, "per": "7d"}]})),
    );
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["caps"],
        json!([{"tag": "email", "max": 1, "per": "7d"}]),
        "{set}"
    );
    let (_, got) = s.admin_get("/api/v1/journeys/caps");
    assert_eq!(got, set);

    for (name, priority) in [("alpha", 0), ("zeta", 5)] {
        let j = json!({
            "name": name, "priority": priority,
            "entry": {"type": "event", "condition": "event == \"Signed Up\""},
            "start": "hello",
            "nodes": {"hello": {"type": "send", "destination": "email"}}
        });
        let (status, e) = s.admin_send("POST", "/api/v1/journeys", Some(j));
        assert_eq!(status, 201, "{e}");
        let (status, e) = s.admin_send("POST", &format!("/api/v1/journeys/{name}/publish"), None);
        assert_eq!(status, 200, "{e}");
    }
    let batch = json!({"batch": [{"type": "track", "userId": "ann", "event": "Signed Up"}]});
    assert_eq!(s.post("/v1/batch", &batch.to_string()).0, 200);
    s.wait_processed();
    let (_, zeta) = s.admin_get("/api/v1/journeys/zeta/flow");
    assert_eq!(
        zeta["versions"][0]["nodes"]["hello"]["actions"], 1,
        "{zeta}"
    );
    let (_, alpha) = s.admin_get("/api/v1/journeys/alpha/flow");
    assert_eq!(
        alpha["versions"][0]["nodes"]["hello"]["skipped"]["capped"], 1,
        "{alpha}"
    );
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:ann/events");
    assert!(
        timeline["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["journey"] == "alpha"
                && i["explanation"] == "hello: not sent, email capped (1 of at most 1 per 7d)"),
        "{timeline}"
    );
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys",
        Some(
            json!({"name": "caps", "entry": {"type": "api"}, "start": "a",
                    "nodes": {"a": {"type": "exit"}}}),
        ),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "name", "{e}");
}

#[test]
fn a_migration_through_the_api_moves_the_customers_of_a_version() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let v1 = json!({
        "name": "nurture", "entry": {"type": "api"}, "start": "wait_a",
        "nodes": {"wait_a": {"type": "wait", "duration": "30d", "next": "send_a"},
                  "send_a": {"type": "send", "destination": "email"}}
    });
    let v2 = json!({
        "name": "nurture", "entry": {"type": "api"}, "start": "hold",
        "nodes": {"hold": {"type": "wait", "duration": "30d", "next": "send_b"},
                  "send_b": {"type": "send", "destination": "sms", "next": "done"},
                  "done": {"type": "exit"}}
    });
    assert_eq!(s.admin_send("POST", "/api/v1/journeys", Some(v1)).0, 201);
    assert_eq!(
        s.admin_send("POST", "/api/v1/journeys/nurture/publish", None)
            .0,
        200
    );
    let batch = json!({"batch": [{"type": "identify", "userId": "ann"}]});
    assert_eq!(s.post("/v1/batch", &batch.to_string()).0, 200);
    s.wait_processed();
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys/nurture/entries",
        Some(json!({"profile": "user_id:ann"})),
    );
    assert_eq!(status, 202, "{e}");
    s.wait_processed();
    assert_eq!(
        s.admin_send("PUT", "/api/v1/journeys/nurture/draft", Some(v2))
            .0,
        200
    );
    let migrate =
        |body: Value| s.admin_send("POST", "/api/v1/journeys/nurture/migrate", Some(body));
    let good = json!({"from_version": 1, "to_version": 2,
                      "nodes": {"wait_a": "hold", "send_a": "send_b"}});
    let (status, e) = migrate(good.clone());
    assert_eq!(status, 400, "version 2 is a draft: {e}");
    assert_eq!(e["error"]["field"], "to_version", "{e}");
    assert_eq!(
        s.admin_send("POST", "/api/v1/journeys/nurture/publish", None)
            .0,
        200
    );
    for (body, field) in [
        (json!({"from_version": 9, "to_version": 2}), "from_version"),
        (json!({"from_version": 1, "to_version": 1}), "to_version"),
        (
            json!({"from_version": 1, "to_version": 2, "nodes": {"send_a": "send_b"}}),
            "nodes.wait_a",
        ),
        (
            json!({"from_version": 1, "to_version": 2, "nodes": {"wait_a": "done", "send_a": "send_b"}}),
            "nodes.wait_a",
        ),
        (
            json!({"from_version": 1, "to_version": 2, "nodes": {"wait_a": "hold", "send_a": "send_b", "ghost": "hold"}}),
            "nodes.ghost",
        ),
    ] {
        let (status, e) = migrate(body.clone());
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys/nobody/migrate",
        Some(good.clone()),
    );
    assert_eq!(status, 404, "{e}");
    let (status, accepted) = migrate(good);
    assert_eq!(status, 202, "{accepted}");
    assert!(accepted["request"].as_str().is_some(), "{accepted}");
    s.wait_processed();
    let (_, flow) = s.admin_get("/api/v1/journeys/nurture/flow");
    assert_eq!(flow["versions"][0]["exited"]["migrated"], 1, "{flow}");
    assert_eq!(flow["versions"][0]["active"], 0, "{flow}");
    assert_eq!(flow["versions"][1]["version"], 2, "{flow}");
    assert_eq!(flow["versions"][1]["migrated_in"], 1, "{flow}");
    assert_eq!(flow["versions"][1]["nodes"]["hold"]["waiting"], 1, "{flow}");
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:ann/events");
    assert!(
        timeline["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "journey"
                && i["explanation"] == "migrated from v1 node wait_a to v2 node hold"),
        "{timeline}"
    );
}

/// A draft previewed over the events just tracked: customers counted per step and
/// messages by destination, nothing written (the flow stays empty, no one is inside), and
/// bad ranges or versions refused naming the field.
#[test]
fn a_draft_is_previewed_over_past_events_without_running() {
    let s = TestServer::start();
    unheard_destinations(&s);
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

/// Runs `rapport journeys …` against `s` with its admin key (tables unless asked).
fn journeys_cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    let url = s.url("");
    let mut all = vec!["journeys"];
    all.extend_from_slice(args);
    all.extend(["--url", &url, "--admin-key", &s.admin_key]);
    common::cli(&all)
}

/// The CLI drives a journey from a spec file to its flow: a misshapen file refused with
/// its line, a definition refused by node and field as the API names them, created,
/// previewed, published, entered, its flow as a table and as JSON, the lifecycle.
#[test]
fn the_cli_creates_previews_publishes_and_shows_the_flow_of_a_journey() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(v).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    };

    let mut typo = cart_journey();
    typo["colour"] = json!("blue");
    let typo = file("typo.json", &typo);
    let e = fails(journeys_cli(&s, &["check", "--file", &typo]));
    assert!(e.contains("typo.json: line") && e.contains("colour"), "{e}");
    let e = fails(journeys_cli(&s, &["create", "--file", &typo]));
    assert!(e.contains("nothing was sent"), "{e}");
    let mut bad = cart_journey();
    bad["nodes"]["remind"]["template"] = json!("{{ unclosed");
    let bad = file("bad.json", &bad);
    let e = fails(journeys_cli(&s, &["create", "--file", &bad]));
    assert!(e.contains("(field `nodes.remind.template`)"), "{e}");

    // `check` runs every check saving runs: destinations and reserved names too.
    let mut nowhere = cart_journey();
    nowhere["name"] = json!("check");
    nowhere["nodes"]["remind"]["destination"] = json!("emial");
    let nowhere = file("nowhere.json", &nowhere);
    let out = journeys_cli(&s, &["check", "--file", &nowhere]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    fails(out);
    assert!(listed.contains("name: `check` is reserved"), "{listed}");
    assert!(
        listed.contains("nodes.remind.destination: no destination"),
        "{listed}"
    );

    // `check` lists every problem, by node and field, and saves nothing.
    let mut two = cart_journey();
    two["nodes"]["remind"]["template"] = json!("{{ unclosed");
    two["exits"] = json!([{"name": "gone", "condition": "in_segment(\"nope\")"}]);
    let two = file("two.json", &two);
    let out = journeys_cli(&s, &["check", "--file", &two]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let e = fails(out);
    assert!(e.contains("2 problem(s); nothing was saved"), "{e}");
    assert!(listed.contains("nodes.remind.template: "), "{listed}");
    assert!(listed.contains("exits[0].condition: "), "{listed}");
    let good = file("cart.json", &cart_journey());
    let checked = ok(journeys_cli(&s, &["check", "--file", &good]));
    assert!(
        checked.contains("journey abandoned_cart checks"),
        "{checked}"
    );
    let (_, list) = s.admin_get("/api/v1/journeys");
    assert_eq!(list["data"], json!([]), "check saves nothing: {list}");
    let created = ok(journeys_cli(&s, &["create", "--file", &good]));
    assert!(
        created.contains("journey abandoned_cart created"),
        "{created}"
    );
    let list = ok(journeys_cli(&s, &["list"]));
    assert!(
        list.contains("abandoned_cart") && list.contains("1 draft"),
        "{list}"
    );
    // Checked as a new journey, a name in use is a problem (saving would answer 409); as
    // the next draft of that journey it checks, and a draft of a missing journey does not.
    let out = journeys_cli(&s, &["check", "--file", &good]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    fails(out);
    assert!(
        listed.contains("name: a journey named \"abandoned_cart\" exists"),
        "{listed}"
    );
    let checked = ok(journeys_cli(&s, &["check", "--file", &good, "--draft"]));
    assert!(checked.contains("checks"), "{checked}");
    let mut nobody = cart_journey();
    nobody["name"] = json!("nobody");
    let (status, c) = s.admin_send("POST", "/api/v1/journeys/check?as=draft", Some(nobody));
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["valid"], false, "{c}");
    assert_eq!(c["errors"][0]["field"], "name", "{c}");
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/journeys/check?as=edit",
        Some(cart_journey()),
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("as"),
        "{e}"
    );

    let from = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let batch = json!({"batch": [
        {"type": "track", "userId": "ann", "event": "Cart Updated", "properties": {"cart_id": "c1"}},
        {"type": "track", "userId": "bea", "event": "Cart Updated", "properties": {"cart_id": "c9"}},
        {"type": "track", "userId": "bea", "event": "Order Completed", "properties": {"cart_id": "c9"}}
    ]});
    let (status, _) = s.post("/v1/batch", &batch.to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    let from = from.to_rfc3339();
    let preview = ok(journeys_cli(
        &s,
        &["preview", "abandoned_cart", "--from", &from],
    ));
    assert!(
        preview.contains("version 1") && preview.contains("3 events of 2 customers"),
        "{preview}"
    );
    assert!(preview.contains("nothing was written or sent"), "{preview}");
    assert!(preview.contains("wait_for_order"), "{preview}");
    let url = s.url("");
    let p = common::cli_json(&[
        "journeys",
        "preview",
        "abandoned_cart",
        "--from",
        &from,
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
        "--format",
        "json",
    ]);
    assert_eq!(p["flow"]["entered"], 2, "{p}");
    let e = fails(journeys_cli(
        &s,
        &[
            "preview",
            "abandoned_cart",
            "--from",
            &from,
            "--version",
            "5",
        ],
    ));
    assert!(e.contains("(field `version`)"), "{e}");

    let published = ok(journeys_cli(&s, &["publish", "abandoned_cart"]));
    assert!(published.contains("active (live version 1)"), "{published}");
    let (status, _) = s.post(
        "/v1/batch",
        &batch.to_string().replace("c1", "c2").replace("c9", "c8"),
    );
    assert_eq!(status, 200);
    s.wait_processed();
    let flow = ok(journeys_cli(&s, &["flow", "abandoned_cart"]));
    assert!(flow.contains("version 1"), "{flow}");
    assert!(
        flow.contains("entered 2 treated + 0 holdout, inside now 1, converted 1"),
        "{flow}"
    );
    let row = flow
        .lines()
        .find(|l| l.starts_with("wait_for_order"))
        .unwrap_or_else(|| panic!("{flow}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[1..5],
        ["2", "1", "0", "1"],
        "entered, waiting, passed, conversions: {flow}"
    );
    assert!(
        flow.contains("ways out of wait_for_order: ordered: 1 (1 converted)"),
        "{flow}"
    );
    assert!(flow.contains("holdout lift: no holdout entries"), "{flow}");
    let json_flow = s.admin_cli(&["journeys", "flow", "abandoned_cart"]);
    assert_eq!(json_flow["versions"][0]["entered"], 2, "{json_flow}");
    let shown = ok(journeys_cli(&s, &["get", "abandoned_cart"]));
    assert!(shown.contains("journey abandoned_cart: active"), "{shown}");

    let draft = ok(journeys_cli(
        &s,
        &["draft", "abandoned_cart", "--file", &good],
    ));
    assert!(
        draft.contains("draft version 2 saved; the live version is 1"),
        "{draft}"
    );
    for (step, want) in [
        ("pause", "paused"),
        ("resume", "active"),
        ("archive", "archived"),
    ] {
        let out = ok(journeys_cli(&s, &[step, "abandoned_cart"]));
        assert!(
            out.contains(&format!("abandoned_cart: {want}")),
            "{step}: {out}"
        );
    }
    let e = fails(journeys_cli(&s, &["get", "nobody"]));
    assert!(e.contains("404"), "{e}");
}

#[test]
fn the_cli_sets_caps_enters_customers_and_migrates_them() {
    let s = TestServer::start();
    unheard_destinations(&s);
    let out = ok(journeys_cli(&s, &["caps"]));
    assert!(out.contains("no frequency caps"), "{out}");
    let out = ok(journeys_cli(&s, &["caps", "set", "email=2/7d", "*=5/1d"]));
    assert!(out.contains("at most 2 per 7d"), "{out}");
    let e = fails(journeys_cli(&s, &["caps", "set", "email=two/7d"]));
    assert!(
        e.contains("email=two/7d") && e.contains("whole number"),
        "{e}"
    );
    let e = fails(journeys_cli(&s, &["caps", "set", "email=2/0s"]));
    assert!(e.contains("caps[0].per"), "the server names the field: {e}");
    let caps: Value =
        serde_json::from_str(&ok(journeys_cli(&s, &["caps", "show", "--format", "json"]))).unwrap();
    assert_eq!(caps["caps"][1]["tag"], "*", "{caps}");
    assert!(ok(journeys_cli(&s, &["caps", "clear"])).contains("no frequency caps"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("renewal.json");
    let spec = json!({
        "name": "renewal", "entry": {"type": "api"},
        "reentry": {"type": "per_key", "property": "contract"},
        "start": "soon",
        "nodes": {"soon": {"type": "wait", "duration": "30d", "next": "call"},
                  "call": {"type": "send", "destination": "csm"}}
    });
    std::fs::write(&path, spec.to_string()).unwrap();
    ok(journeys_cli(
        &s,
        &["create", "--file", path.to_str().unwrap()],
    ));
    ok(journeys_cli(&s, &["publish", "renewal"]));
    let (status, _) = s.post("/v1/identify", &json!({"userId": "ann"}).to_string());
    assert_eq!(status, 200);
    s.wait_processed();
    let e = fails(journeys_cli(
        &s,
        &[
            "enter",
            "renewal",
            "--profile",
            "user_id:ann",
            "--properties",
            "[1]",
        ],
    ));
    assert!(e.contains("--properties must be a JSON object"), "{e}");
    let out = ok(journeys_cli(
        &s,
        &[
            "enter",
            "renewal",
            "--profile",
            "user_id:ann",
            "--properties",
            r#"{"contract": "k1"}"#,
        ],
    ));
    assert!(out.contains("1 entry into renewal"), "{out}");
    s.wait_processed();
    let (_, flow) = s.admin_get("/api/v1/journeys/renewal/flow");
    assert_eq!(flow["versions"][0]["nodes"]["soon"]["waiting"], 1, "{flow}");

    // A second version, and the customer moved to it.
    let mut v2 = spec.clone();
    v2["nodes"]["soon"]["duration"] = json!("7d");
    std::fs::write(&path, v2.to_string()).unwrap();
    ok(journeys_cli(
        &s,
        &["draft", "renewal", "--file", path.to_str().unwrap()],
    ));
    ok(journeys_cli(&s, &["publish", "renewal"]));
    let e = fails(journeys_cli(
        &s,
        &[
            "migrate",
            "renewal",
            "--from-version",
            "1",
            "--to-version",
            "2",
            "--node",
            "soon",
        ],
    ));
    assert!(e.contains("is not OLD=NEW"), "{e}");
    let e = fails(journeys_cli(
        &s,
        &[
            "migrate",
            "renewal",
            "--from-version",
            "1",
            "--to-version",
            "9",
        ],
    ));
    assert!(e.contains("to_version"), "{e}");
    let out = ok(journeys_cli(
        &s,
        &[
            "migrate",
            "renewal",
            "--from-version",
            "1",
            "--to-version",
            "2",
            "--node",
            "soon=soon",
        ],
    ));
    assert!(out.contains("written to the log"), "{out}");
    s.wait_processed();
    let (_, flow) = s.admin_get("/api/v1/journeys/renewal/flow");
    let v2 = flow["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .cloned()
        .unwrap_or_else(|| panic!("{flow}"));
    assert_eq!(v2["nodes"]["soon"]["waiting"], 1, "{flow}");
}
