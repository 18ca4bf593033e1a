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

/// Runs `rapport journeys …` against `s` with its admin key (tables unless asked).
fn journeys_cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    let url = s.url("");
    let mut all = vec!["journeys"];
    all.extend_from_slice(args);
    all.extend(["--url", &url, "--admin-key", &s.admin_key]);
    common::cli(&all)
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The CLI drives a journey from a spec file to its flow: a misshapen file refused with
/// its line, a definition refused by node and field as the API names them, created,
/// previewed, published, entered, its flow as a table and as JSON, the lifecycle.
#[test]
fn the_cli_creates_previews_publishes_and_shows_the_flow_of_a_journey() {
    let s = TestServer::start();
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
        flow.contains("entered 2 (holdout 0), inside now 1, converted 1"),
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
