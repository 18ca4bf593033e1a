//! The dashboard's Journeys and Destinations pages in a real browser (Debian's Chromium,
//! driven by `tests/sdk/dashboard-act.mjs`): a journey drawn as a flow with the counts the
//! API's `/flow` gives and its largest stall marked, paused from the page; a webhook
//! destination whose receiver failed, its dead letters replayed from the page and then
//! delivered, a test send, a pause — with axe-core's checks on every page. The Rust side
//! seeds the data and then asks the API and the receiver whether what the page showed and
//! did is what happened.
//!
//! `SCREENSHOTS=<dir>` keeps a PNG of each page (the ones in `docs/dashboard.md`).

mod common;

use common::receiver::{Receiver, wait_for};
use common::{TestServer, browser_flows};
use serde_json::{Value, json};

const SIGNED_UP: usize = 20;
const ACTIVATED: usize = 6;

/// Onboarding: a welcome message, then a wait of a week for activation (where most
/// customers stall), a thank-you trait for those who activate, a nudge for the others.
fn onboarding() -> Value {
    json!({
        "name": "onboarding",
        "entry": {"type": "event", "condition": "event == \"Signed Up\""},
        "holdout_percent": 20,
        "goal": {"event": "event == \"Activated\"", "within": "7d"},
        "start": "welcome",
        "nodes": {
            "welcome": {"type": "send", "destination": "hooks", "next": "wait_activation"},
            "wait_activation": {"type": "wait_for_event", "timeout": "7d", "timeout_next": "nudge",
                "branches": [{"name": "activated", "condition": "event == \"Activated\"", "next": "thanks"}]},
            "thanks": {"type": "set_trait", "trait": "activated", "value": true},
            "nudge": {"type": "send", "destination": "hooks"}
        }
    })
}

/// A webhook to `receiver` for journey messages, retried fast and given up on within a
/// second, so that a failing receiver makes dead letters in seconds.
fn seed(s: &TestServer, receiver: &Receiver) {
    receiver.answer(500);
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "hooks",
            "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
            "deliver": {"events": null},
            "delivery": {"pause_after_failures": 0,
                         "retry": {"base_delay_ms": 50, "max_delay_ms": 100, "give_up_after_ms": 300}}})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send("POST", "/api/v1/journeys", Some(onboarding()));
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send("POST", "/api/v1/journeys/onboarding/publish", None);
    assert_eq!(status, 200, "{body}");

    let batch: Vec<Value> = (0..SIGNED_UP)
        .map(|i| json!({"type": "track", "userId": format!("c{i}"), "event": "Signed Up"}))
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    s.wait_processed();

    // Every welcome message fails until given up on: dead letters, nothing retrying.
    let (_, flow) = s.admin_get("/api/v1/journeys/onboarding/flow");
    let welcomed = flow["versions"][0]["nodes"]["welcome"]["actions"]
        .as_u64()
        .unwrap();
    assert!(welcomed > 0, "{flow}");
    wait_for("the welcome messages to be dead letters", || {
        let (_, d) = s.admin_get("/api/v1/destinations/hooks");
        d["delivery"]["dead_lettered"] == welcomed && d["delivery"]["retrying"] == 0
    });
    // The receiver recovers; a few customers activate, the others stall in the wait.
    receiver.answer(200);
    let batch: Vec<Value> = (0..ACTIVATED)
        .map(|i| json!({"type": "track", "userId": format!("c{i}"), "event": "Activated"}))
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    s.wait_processed();
}

/// The journey messages the receiver accepted, by idempotency key.
fn accepted_messages(receiver: &Receiver) -> Vec<String> {
    receiver
        .accepted()
        .iter()
        .filter(|b| b["type"] == "journey_message")
        .map(|b| b["idempotency_key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_user_reads_a_journeys_flow_and_replays_a_destinations_dead_letters() {
    let s = TestServer::start();
    let receiver = Receiver::start();
    seed(&s, &receiver);
    let (_, flow) = s.admin_get("/api/v1/journeys/onboarding/flow");
    let v1 = &flow["versions"][0];
    let (_, before) = s.admin_get("/api/v1/destinations/hooks");
    let dead = before["delivery"]["dead_lettered"].as_u64().unwrap();
    assert!(dead > 1, "{before}");
    assert!(accepted_messages(&receiver).is_empty());

    let report = browser_flows(
        "dashboard-act.mjs",
        &[&s.url(""), &s.admin_key, "onboarding", "hooks"],
        &[
            "sign in",
            "list the journeys",
            "read a journey's flow",
            "pause a journey",
            "list the destinations",
            "read a destination's dead letters",
            "replay one dead letter, then all",
            "send a test message",
            "pause a destination",
        ],
        true,
    );

    // The flow on the page is the API's: customers inside, those waiting on the stall.
    let inside: u64 = flow["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["active"].as_u64().unwrap())
        .sum();
    assert_eq!(report["inside"], json!(inside), "{report:#} {flow:#}");
    let waiting = &v1["nodes"]["wait_activation"]["waiting"];
    assert!(waiting.as_u64().unwrap() > 0, "{flow}");
    assert_eq!(&report["waiting"], waiting, "{report:#} {flow:#}");
    assert_eq!(
        report["entered"], v1["nodes"]["welcome"]["entered"],
        "{report:#} {flow:#}"
    );
    assert_eq!(report["stall"], "wait_activation", "{report:#}");

    // Pausing from the page is what the API reports.
    let (_, journey) = s.admin_get("/api/v1/journeys/onboarding");
    assert_eq!(journey["status"], "paused", "{journey}");
    let (_, after) = s.admin_get("/api/v1/destinations/hooks");
    assert_eq!(after["paused"], true, "{after}");

    // The replayed letters reached the receiver: every welcome message, once accepted.
    wait_for("the replayed messages to be delivered", || {
        accepted_messages(&receiver).len() as u64 >= dead
    });
    let mut keys = accepted_messages(&receiver);
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as u64, dead, "{keys:?}");
    let (_, letters) = s.admin_get("/api/v1/destinations/hooks/dead-letters");
    assert_eq!(letters["data"], json!([]), "{letters}");
    // And the test send too, outside the log.
    assert!(
        receiver
            .accepted()
            .iter()
            .any(|b| b["type"] != "journey_message"),
        "the test message"
    );
}
