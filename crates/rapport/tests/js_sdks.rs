//! The official JavaScript SDKs, unchanged but for their host, against a real `rapport
//! serve`: Segment's browser SDK (analytics.js 2.0) in headless Chromium on another
//! origin, RudderStack's Node SDK with its defaults (gzip bodies labelled
//! `application/x-www-form-urlencoded`) and Segment's Node SDK. Each sends every call type;
//! every message is then read back through `GET /api/v1/events`.
//!
//! The SDKs are npm packages pinned in `tests/sdk/package-lock.json`; `scripts/test.sh` runs
//! `npm ci` there. The browser is the system's Chromium (`CHROMIUM`, default
//! `/usr/bin/chromium`), driven by playwright-core, which downloads nothing.

mod common;

use common::{TestServer, node};
use serde_json::Value;

/// The stored event of each sent message (by `messageId`), checked field by field: ids,
/// names, and `properties`, `traits`, `context` (when given) exactly as the SDK sent them.
fn check_stored(s: &TestServer, sent: &[Value]) -> Vec<Value> {
    let stored = s.all_events("");
    assert_eq!(stored.len(), sent.len(), "every SDK message is stored once");
    let mut found = Vec::new();
    for msg in sent {
        let id = msg["messageId"].as_str().expect("a messageId");
        let e = stored
            .iter()
            .find(|e| e["messageId"] == id)
            .unwrap_or_else(|| panic!("message {id} not stored"));
        assert_eq!(e["type"], msg["type"], "{id}");
        for field in [
            "userId",
            "anonymousId",
            "event",
            "name",
            "category",
            "groupId",
            "previousId",
        ] {
            if !msg[field].is_null() {
                assert_eq!(e[field], msg[field], "{id}: {field}");
            }
        }
        for object in ["properties", "traits", "context"] {
            if msg[object].as_object().is_some_and(|o| !o.is_empty()) {
                for (k, v) in msg[object].as_object().unwrap() {
                    assert_eq!(&e[object][k], v, "{id}: {object}.{k}");
                }
            }
        }
        assert_eq!(e["sourceId"], s.source_id.as_str(), "{id}");
        found.push(e.clone());
    }
    found
}

#[test]
fn segment_browser_sdk_from_another_origin_delivers_every_call_type() {
    let s = TestServer::start();
    let report = node("browser.mjs", &[&s.url(""), &s.write_key]);
    assert_eq!(report["errors"], Value::Array(vec![]), "page errors");
    assert_eq!(
        report["foreign"],
        Value::Array(vec![]),
        "the page reached only its own origin and Rapport (no Segment host, no metrics)"
    );
    assert_ne!(report["site"].as_str(), Some(s.url("").as_str()));
    // Every call resolved as delivered, in both page loads (one request each, then batched).
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 12);
    for c in calls {
        assert_eq!(c["failed"], Value::Null, "{c}");
    }
    // What went on the wire: text/plain to the short paths, and once batched to /v1/b.
    let sent: Vec<&Value> = report["sent"].as_array().unwrap().iter().collect();
    let mut paths: Vec<&str> = sent.iter().map(|m| m["path"].as_str().unwrap()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(
        paths,
        [
            "/v1/a", "/v1/b", "/v1/g", "/v1/i", "/v1/p", "/v1/s", "/v1/t"
        ]
    );
    for m in &sent {
        assert_eq!(m["contentType"], "text/plain", "{m}");
    }
    let responses = report["responses"].as_array().unwrap();
    assert!(
        responses
            .iter()
            .any(|r| r["url"].as_str().unwrap().ends_with("/settings")),
        "the SDK loaded its settings from Rapport"
    );
    for r in responses {
        assert_eq!(r["status"], 200, "{r}");
    }
    let messages: Vec<Value> = sent.iter().map(|m| m["message"].clone()).collect();
    for c in calls {
        assert!(
            messages.iter().any(|m| m["messageId"] == c["messageId"]),
            "call {c} went out"
        );
    }
    let stored = check_stored(&s, &messages);
    for e in &stored {
        assert_eq!(e["context"]["library"]["name"], "analytics.js");
    }
    let order = stored
        .iter()
        .find(|e| e["event"] == "Order Completed" && e["userId"] == "browser-single")
        .unwrap();
    assert_eq!(order["properties"]["products"][0]["sku"], "A-1");
    assert!(
        order["context"]["userAgent"]
            .as_str()
            .unwrap()
            .contains("HeadlessChrome")
    );
}

#[test]
fn rudderstack_node_sdk_with_defaults_delivers_every_call_type() {
    let s = TestServer::start();
    let report = node("node_sdks.mjs", &["rudderstack", &s.url(""), &s.write_key]);
    // What was tested: the SDK's defaults, gzip labelled as a form.
    let heads = report["heads"].as_array().unwrap();
    assert!(!heads.is_empty());
    for h in heads {
        let h = h.as_str().unwrap().to_ascii_lowercase();
        assert!(h.starts_with("post /v1/batch "), "{h}");
        assert!(
            h.contains("content-type: application/x-www-form-urlencoded"),
            "{h}"
        );
        assert!(h.contains("content-encoding: gzip"), "{h}");
    }
    let sent = report["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 7);
    for e in check_stored(&s, sent) {
        assert_eq!(e["context"]["library"]["name"], "analytics-node");
    }
}

/// RudderStack's SDKs add top-level fields of their own (`channel`, `_metadata`) and send
/// the client time as `originalTimestamp`; a stored event keeps them, and its time is the
/// client's, corrected for skew (so not the arrival time).
#[test]
fn rudderstack_node_sdk_keeps_channel_and_original_timestamp() {
    let s = TestServer::start();
    let report = node("node_sdks.mjs", &["rudderstack", &s.url(""), &s.write_key]);
    let stored = check_stored(&s, report["sent"].as_array().unwrap());
    for e in stored {
        assert_eq!(e["channel"], "server", "{e}");
        assert!(e["originalTimestamp"].is_string(), "{e}");
        assert!(e["_metadata"]["nodeVersion"].is_string(), "{e}");
        let client = rapport_core::event::parse_timestamp(e["originalTimestamp"].as_str().unwrap());
        let stamped = rapport_core::event::parse_timestamp(e["timestamp"].as_str().unwrap());
        let received = rapport_core::event::parse_timestamp(e["receivedAt"].as_str().unwrap());
        assert!(client.is_some() && stamped.is_some(), "{e}");
        assert!(stamped <= received, "the client time is used: {e}");
    }
}

#[test]
fn segment_node_sdk_delivers_every_call_type() {
    let s = TestServer::start();
    let report = node("node_sdks.mjs", &["segment", &s.url(""), &s.write_key]);
    let sent = report["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 7);
    for e in check_stored(&s, sent) {
        assert_eq!(e["context"]["library"]["name"], "@segment/analytics-node");
    }
}
