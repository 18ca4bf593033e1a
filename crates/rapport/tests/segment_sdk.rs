//! Segment's official Python SDK, pointed at Rapport by changing its host, delivers every call
//! type (plain and gzip) and every field arrives intact.

mod common;

use common::TestServer;
use serde_json::Value;
use std::process::Command;

#[test]
fn segment_python_sdk_delivers_every_call_type() {
    let s = TestServer::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/segment_python.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(s.url(""))
        .arg(&s.write_key)
        .output()
        .expect("python3 is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'segment'"),
        "install the SDK first: python3 -m pip install segment-analytics-python"
    );
    assert!(
        out.status.success(),
        "SDK run failed: {}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = report["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 14);

    let stored = s.all_events("");
    assert_eq!(stored.len(), sent.len(), "every SDK message is stored once");
    for msg in sent {
        let id = msg["messageId"].as_str().unwrap();
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
            let sent_value = &msg[field];
            if !sent_value.is_null() {
                assert_eq!(&e[field], sent_value, "{id}: {field}");
            }
        }
        for object in ["properties", "traits"] {
            if msg[object].as_object().is_some_and(|o| !o.is_empty()) {
                assert_eq!(e[object], msg[object], "{id}: {object}");
            }
        }
        // The SDK's context (library name and version, plus ours) arrives whole.
        assert_eq!(e["context"]["library"]["name"], "analytics-python", "{id}");
        assert_eq!(e["sourceId"], s.source_id.as_str());
    }
    let order = stored
        .iter()
        .find(|e| e["event"] == "Order Completed")
        .unwrap();
    assert_eq!(order["context"]["ip"], "203.0.113.7");
    assert_eq!(order["properties"]["products"][0]["sku"], "A-1");
    assert_eq!(
        order["originalTimestamp"]
            .as_str()
            .map(|t| t.starts_with("2024-05-01T12:00:00")),
        Some(true)
    );
}
