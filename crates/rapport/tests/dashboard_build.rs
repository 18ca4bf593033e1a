//! Building journeys and destinations from the dashboard, in a real browser (Debian's
//! Chromium, driven by `tests/sdk/dashboard-build.mjs`): a journey created from the page
//! (an invalid definition's problem shown by field while typed first), published, its
//! version 2 drafted, previewed and published, and its customers migrated from version 1
//! (a mapping the API refuses shown at its step first); a webhook destination created,
//! edited and backfilled, another deleted — with axe-core's checks on every page. The Rust
//! side seeds the data and then asks the API and the receiver whether what the page did is
//! what happened.
//!
//! `SCREENSHOTS=<dir>` keeps a PNG of each page (the ones in `docs/dashboard.md`).

mod common;

use common::receiver::{Receiver, wait_for};
use common::{TestServer, browser_flows};
use serde_json::{Value, json};

const CUSTOMERS: u64 = 5;
const HISTORY: usize = 8;

/// Version 1: a week's wait, then a trait.
fn v1() -> Value {
    json!({
        "name": "onboarding",
        "entry": {"type": "event", "condition": "event == \"Signed Up\""},
        "start": "hold",
        "nodes": {
            "hold": {"type": "wait", "duration": "7d", "next": "bye"},
            "bye": {"type": "set_trait", "trait": "onboarded", "value": true}
        }
    })
}

/// Version 1 with its wait leading nowhere: refused with field `nodes.hold.next`.
fn invalid() -> Value {
    let mut v = v1();
    v["nodes"]["hold"]["next"] = json!("nowhere");
    v
}

/// Version 2: a welcome trait at once, then a shorter wait whose step is named `pause`
/// (so version 1's `hold` has no namesake: a migration must map it).
fn v2() -> Value {
    json!({
        "name": "onboarding",
        "entry": {"type": "event", "condition": "event == \"Signed Up\""},
        "start": "welcome",
        "nodes": {
            "welcome": {"type": "set_trait", "trait": "welcomed", "value": true, "next": "pause"},
            "pause": {"type": "wait", "duration": "3d", "next": "bye"},
            "bye": {"type": "set_trait", "trait": "onboarded", "value": true}
        }
    })
}

#[test]
fn a_user_builds_a_journey_and_destinations_from_the_dashboard() {
    let s = TestServer::start();
    let receiver = Receiver::start();
    // Events logged before any destination exists reach one only by a backfill.
    let batch: Vec<Value> = (0..HISTORY)
        .map(|i| {
            json!({"type": "track", "userId": format!("h{i}"), "event": "Page Viewed",
            "messageId": format!("hist-{i}")})
        })
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    s.wait_processed();
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "legacy",
            "kind": {"type": "webhook", "url": "http://127.0.0.1:9/gone"},
            "deliver": {"events": null}})),
    );
    assert_eq!(status, 201, "{body}");

    let (invalid, v1, v2) = (invalid().to_string(), v1().to_string(), v2().to_string());
    let customers = CUSTOMERS.to_string();
    let report = browser_flows(
        "dashboard-build.mjs",
        &[
            &s.url(""),
            &s.admin_key,
            &s.write_key,
            &invalid,
            &v1,
            &v2,
            &customers,
            &receiver.url,
            "legacy",
        ],
        &[
            "sign in",
            "create a journey, its problems shown while typed",
            "publish it; customers enter",
            "save a draft of version 2",
            "preview the draft",
            "publish version 2",
            "migrate version 1 to version 2",
            "create a webhook destination",
            "edit the destination",
            "backfill the destination",
            "forget the finished backfill",
            "delete a destination",
        ],
        true,
    );

    // The problem was shown with its field, as the check route names it.
    let problem = report["problem"].as_str().unwrap();
    assert!(problem.contains("nodes.hold.next"), "{report:#}");
    assert!(problem.contains("nowhere"), "{report:#}");

    // The journey holds the definitions typed; version 2 is live, version 1 retired.
    let (status, journey) = s.admin_get("/api/v1/journeys/onboarding");
    assert_eq!(status, 200, "{journey}");
    assert_eq!(journey["live_version"], 2, "{journey:#}");
    let versions = journey["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{journey:#}");
    for (v, typed) in versions.iter().zip([v1, v2]) {
        let typed: Value = serde_json::from_str(&typed).unwrap();
        for part in ["name", "entry", "start", "nodes"] {
            assert_eq!(v["spec"][part], typed[part], "{part}: {v:#}");
        }
    }
    assert_eq!(versions[0]["state"], "retired", "{journey:#}");
    assert_eq!(versions[1]["state"], "live", "{journey:#}");

    // The preview counted the customers who signed up, as the API's own preview does.
    let (status, preview) = s.admin_send(
        "POST",
        "/api/v1/journeys/onboarding/preview",
        Some(json!({"version": 2,
            "from": rapport_api::time::to_wire(&(chrono::Utc::now() - chrono::Duration::days(1))),
            "to": rapport_api::time::to_wire(&chrono::Utc::now())})),
    );
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["flow"]["entered"], CUSTOMERS, "{preview:#}");
    assert_eq!(
        report["preview_entered"], preview["flow"]["entered"],
        "{report:#}"
    );
    assert_eq!(
        report["preview_welcome"], preview["flow"]["nodes"]["welcome"]["entered"],
        "{report:#}"
    );

    // The refusal was shown at the step it named; the valid mapping moved everyone.
    assert_eq!(report["refused"]["node"], "hold", "{report:#}");
    assert!(
        report["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("hold"),
        "{report:#}"
    );
    let (_, flow) = s.admin_get("/api/v1/journeys/onboarding/flow");
    let version = |n: u64| {
        flow["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["version"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no flow of version {n}: {flow:#}"))
    };
    assert_eq!(version(2)["migrated_in"], CUSTOMERS, "{flow:#}");
    assert_eq!(version(1)["exited"]["migrated"], CUSTOMERS, "{flow:#}");
    assert_eq!(
        version(2)["nodes"]["pause"]["waiting"],
        CUSTOMERS,
        "{flow:#}"
    );
    assert_eq!(report["migrated_in"], CUSTOMERS, "{report:#}");

    // The destination was created with the definition typed, then edited; the editor never
    // held its secret, and the secret it keeps is the one it was made with.
    assert_eq!(report["secret_shown"], false, "{report:#}");
    let (status, crm) = s.admin_get("/api/v1/destinations/crm");
    assert_eq!(status, 200, "{crm}");
    assert_eq!(crm["spec"]["kind"]["url"], receiver.url.as_str(), "{crm:#}");
    assert_eq!(crm["spec"]["kind"]["timeout_secs"], 7, "{crm:#}");
    assert_eq!(
        crm["spec"]["kind"]["headers"]["X-Source"], "dashboard",
        "{crm:#}"
    );
    let (_, secret) = s.admin_get("/api/v1/destinations/crm/secret");
    assert!(
        secret["secret"].as_str().unwrap().starts_with("whsec_"),
        "{secret}"
    );
    // The finished backfill was forgotten from the page.
    assert_eq!(crm["delivery"]["backfill"], Value::Null, "{crm:#}");

    // The backfill delivered the events logged before the destination existed.
    wait_for("the backfilled events to arrive", || {
        let got = receiver.delivered();
        (0..HISTORY).all(|i| got.contains_key(&format!("hist-{i}")))
    });
    let sent = report["backfill_sent"].as_u64().unwrap();
    assert!(sent >= HISTORY as u64 + CUSTOMERS, "{report:#}");

    // The deleted destination is gone.
    let (status, gone) = s.admin_get("/api/v1/destinations/legacy");
    assert_eq!(status, 404, "{gone}");
}

/// The forms offered to `key` on the journeys and destinations pages.
fn offers(s: &TestServer, key: &str) -> Value {
    let report = browser_flows(
        "dashboard-build-scopes.mjs",
        &[&s.url(""), key, "onboarding", "hooks"],
        &["sign in", "read the pages"],
        false,
    );
    report["offers"].clone()
}

/// A key with `scopes`; its secret.
fn key(s: &TestServer, name: &str, scopes: &[&str]) -> String {
    let (status, key) = s.admin_send(
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": name, "scopes": scopes})),
    );
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().unwrap().to_owned()
}

#[test]
fn the_build_forms_are_offered_only_to_keys_that_may_use_them() {
    let s = TestServer::start();
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "hooks", "kind": {"type": "webhook", "url": "http://127.0.0.1:9/x"}})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send("POST", "/api/v1/journeys", Some(v1()));
    assert_eq!(status, 201, "{body}");

    // Reading only: a preview (it changes nothing), no form that changes anything.
    let reader = key(&s, "reader", &["read"]);
    assert_eq!(
        offers(&s, &reader),
        json!({"create_journey": false, "edit_draft": false, "preview": true, "migrate": false,
               "create_destination": false, "edit_destination": false, "backfill": false,
               "delete_destination": false})
    );
    // `configure` with masked reads: journeys may be built, but no destination pointed
    // anywhere or fed the past (the API asks `read` too: they receive data unmasked).
    let masked = key(&s, "masked builder", &["read_masked", "configure"]);
    assert_eq!(
        offers(&s, &masked),
        json!({"create_journey": true, "edit_draft": true, "preview": true, "migrate": true,
               "create_destination": false, "edit_destination": false, "backfill": false,
               "delete_destination": true})
    );
    // Everything for the admin key.
    assert_eq!(
        offers(&s, &s.admin_key),
        json!({"create_journey": true, "edit_draft": true, "preview": true, "migrate": true,
               "create_destination": true, "edit_destination": true, "backfill": true,
               "delete_destination": true})
    );
}

/// The frequency caps and entries by hand, set from the pages: what the API then holds is
/// what was typed, and the customers entered went through the journey.
#[test]
fn a_user_sets_frequency_caps_and_enters_customers_by_hand() {
    let s = TestServer::start();
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"type": "identify", "userId": format!("c{i}"), "traits": {"plan": "pro"}}))
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    let call = json!({
        "name": "vip_call",
        "entry": {"type": "api"},
        "start": "mark",
        "nodes": {"mark": {"type": "set_trait", "trait": "called", "value": true}}
    });
    let (status, body) = s.admin_send("POST", "/api/v1/journeys", Some(call));
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send("POST", "/api/v1/journeys/vip_call/publish", None);
    assert_eq!(status, 200, "{body}");
    s.wait_processed();

    let report = browser_flows(
        "dashboard-caps.mjs",
        &[
            &s.url(""),
            &s.admin_key,
            "vip_call",
            "user_id:c0,user_id:c1",
        ],
        &["sign in", "set a frequency cap", "enter customers by hand"],
        true,
    );
    // The refusal was shown with the field the API named.
    assert!(
        report["caps_problem"]
            .as_str()
            .unwrap()
            .ends_with("caps[0].per"),
        "{report:#}"
    );
    let (_, caps) = s.admin_get("/api/v1/journeys/caps");
    assert_eq!(
        caps["caps"],
        json!([{"tag": "email", "max": 2, "per": "7d"}]),
        "{caps}"
    );
    assert!(
        report["entries_done"]
            .as_str()
            .unwrap()
            .starts_with("2 entries accepted"),
        "{report:#}"
    );
    s.wait_processed();
    for (user, called) in [("c0", true), ("c1", true), ("c2", false)] {
        let (_, p) = s.admin_get(&format!("/api/v1/profiles/user_id:{user}"));
        assert_eq!(p["traits"]["called"] == true, called, "{user}: {p}");
    }
    let (_, flow) = s.admin_get("/api/v1/journeys/vip_call/flow");
    assert_eq!(flow["versions"][0]["entered"], 2, "{flow}");
}
