//! End-to-end tests of the Segment tracking API and the REST API over real HTTP.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::io::Write;

fn log_offset(s: &TestServer) -> u64 {
    let h: Value = reqwest::blocking::get(s.url("/health"))
        .unwrap()
        .json()
        .unwrap();
    h["log_offset"].as_u64().unwrap()
}

#[test]
fn every_call_type_is_stored_and_read_back_unchanged() {
    let s = TestServer::start();
    let props = r#"{"revenue":19.990,"items":[{"sku":"A-1","qty":2}],"nested":{"deep":{"ok":true}},"unicode":"caf\u00e9 ☕","n":null}"#;
    let calls = [
        ("/v1/track", format!(r#"{{"userId":"u1","event":"Order Completed","properties":{props},"context":{{"ip":"203.0.113.9","library":{{"name":"curl"}}}}}}"#)),
        ("/v1/identify", r#"{"userId":"u1","traits":{"email":"ann@example.com","plan":"pro"}}"#.to_owned()),
        ("/v1/page", r#"{"anonymousId":"a1","name":"Pricing","category":"Docs","properties":{"path":"/pricing"}}"#.to_owned()),
        ("/v1/screen", r#"{"userId":"u1","name":"Home"}"#.to_owned()),
        ("/v1/group", r#"{"userId":"u1","groupId":"acme","traits":{"industry":"retail"}}"#.to_owned()),
        ("/v1/alias", r#"{"userId":"u1","previousId":"a1"}"#.to_owned()),
    ];
    for (path, body) in &calls {
        let (status, resp) = s.post(path, body);
        assert_eq!(status, 200, "{path}: {resp}");
        assert_eq!(
            resp,
            json!({"success": true, "accepted": 1, "duplicates": 0})
        );
    }
    let events = s.all_events("");
    assert_eq!(events.len(), 6);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["track", "identify", "page", "screen", "group", "alias"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    // The client's objects come back byte for byte.
    s.wait_indexed();
    let raw = s
        .client()
        .get(s.url("/api/v1/events?type=track"))
        .bearer_auth(&s.admin_key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(raw.contains(&format!(r#""properties":{props}"#)), "{raw}");
    let track = &s.all_events("type=track")[0];
    assert_eq!(track["event"], "Order Completed");
    assert_eq!(
        track["context"],
        json!({"ip":"203.0.113.9","library":{"name":"curl"}})
    );
    assert_eq!(track["sourceId"], s.source_id.as_str());
    assert!(track["messageId"].as_str().unwrap().len() >= 32);
    assert!(track["receivedAt"].as_str().unwrap().ends_with('Z'));
    let group = &s.all_events("type=group")[0];
    assert_eq!(group["groupId"], "acme");
    assert_eq!(group["traits"], json!({"industry":"retail"}));
    let page = &s.all_events("type=page")[0];
    assert_eq!(
        (page["name"].as_str(), page["category"].as_str()),
        (Some("Pricing"), Some("Docs"))
    );
}

#[test]
fn write_key_in_body_gzip_and_skew_correction() {
    let s = TestServer::start();
    let body = json!({
        "writeKey": s.write_key,
        "batch": [
            {"type": "track", "userId": "skew", "event": "Clicked", "messageId": "m-skew",
             "timestamp": "2020-01-01T00:00:00.000Z"}
        ],
        // The client's clock is off by years; the event happened 5 s before sending.
        "sentAt": "2020-01-01T00:00:05.000Z"
    })
    .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let r = s
        .client()
        .post(s.url("/v1/batch"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = &s.all_events("userId=skew")[0];
    let ts = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
    let received = chrono::DateTime::parse_from_rfc3339(e["receivedAt"].as_str().unwrap()).unwrap();
    assert_eq!((received - ts).num_milliseconds(), 5000);
    assert_eq!(e["originalTimestamp"], "2020-01-01T00:00:00.000Z");
    assert_eq!(e["sentAt"], "2020-01-01T00:00:05.000Z");
}

#[test]
fn repeated_message_ids_are_acknowledged_and_stored_once() {
    let s = TestServer::start();
    let one = r#"{"userId":"d","event":"E","messageId":"same-id"}"#;
    assert_eq!(s.post("/v1/track", one).1["accepted"], 1);
    let (status, resp) = s.post("/v1/track", one);
    assert_eq!(status, 200);
    assert_eq!(
        resp,
        json!({"success": true, "accepted": 0, "duplicates": 1})
    );
    let batch = format!(
        r#"{{"batch":[{one},{one},{}]}}"#,
        r#"{"type":"track","userId":"d","event":"E","messageId":"other"}"#
    );
    let batch = batch.replace(r#"{"userId""#, r#"{"type":"track","userId""#);
    let (_, resp) = s.post("/v1/batch", &batch);
    assert_eq!(
        resp,
        json!({"success": true, "accepted": 1, "duplicates": 2})
    );
    assert_eq!(s.all_events("userId=d").len(), 2);
}

#[test]
fn a_batch_with_bad_items_keeps_the_good_ones_and_names_the_bad() {
    let s = TestServer::start();
    let body = r#"{"batch":[
        {"type":"track","userId":"p","event":"Good 1"},
        {"type":"track","userId":"p"},
        {"type":"identify","userId":"p","traits":"not an object"},
        {"type":"track","userId":"p","event":"Good 2","timestamp":"2024-02-30T00:00:00Z"},
        {"type":"page","userId":"p","name":"Good 3"}
    ]}"#;
    let (status, resp) = s.post("/v1/batch", body);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["accepted"], 2);
    let rejected = resp["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"]["code"].as_str().unwrap(),
                r["error"]["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "missing_field", "batch[1].event"),
            (2, "invalid_field_type", "batch[2].traits"),
            (3, "invalid_timestamp", "batch[3].timestamp"),
        ]
    );
    let names: Vec<String> = s
        .all_events("userId=p")
        .iter()
        .map(|e| {
            e["event"]
                .as_str()
                .or(e["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Good 1".to_owned()) && names.contains(&"Good 3".to_owned()));
}

/// Every kind of bad request gets a 4xx with the error shape, changes nothing stored, and the
/// server keeps serving.
#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let s = TestServer::start_with(&["--max-batch-events", "10"]);
    assert_eq!(
        s.post("/v1/track", r#"{"userId":"keep","event":"Kept"}"#).0,
        200
    );
    let before = log_offset(&s);
    let big = "x".repeat(33 * 1024);
    let huge_batch = format!(
        r#"{{"batch":[{}]}}"#,
        vec![
            format!(
                r#"{{"type":"track","userId":"u","event":"E","properties":{{"p":"{}"}}}}"#,
                "y".repeat(30_000)
            );
            20
        ]
        .join(",")
    );
    let many = format!(
        r#"{{"batch":[{}]}}"#,
        [r#"{"type":"page","userId":"u"}"#; 11].join(",")
    );
    let deep = format!(
        r#"{{"userId":"u","event":"E","properties":{}1{}}}"#,
        r#"{"a":"#.repeat(100),
        "}".repeat(100)
    );
    // (name, path, body, content type, status, code, field)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<u8>,
        &'a str,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            "/v1/track",
            b"{\"userId\":".to_vec(),
            "application/json",
            400,
            "invalid_json",
            None,
        ),
        (
            "JSON array",
            "/v1/track",
            b"[1,2]".to_vec(),
            "application/json",
            400,
            "invalid_json",
            None,
        ),
        (
            // The label is never refused (see json_is_read_whatever_its_label), the body is.
            "a form body, not JSON",
            "/v1/track",
            b"userId=u&event=E".to_vec(),
            "application/x-www-form-urlencoded",
            400,
            "invalid_json",
            None,
        ),
        (
            "oversize event",
            "/v1/track",
            format!(r#"{{"userId":"u","event":"E","properties":{{"p":"{big}"}}}}"#).into_bytes(),
            "application/json",
            413,
            "payload_too_large",
            None,
        ),
        (
            "oversize batch",
            "/v1/batch",
            huge_batch.into_bytes(),
            "application/json",
            413,
            "payload_too_large",
            None,
        ),
        (
            "too many events",
            "/v1/batch",
            many.into_bytes(),
            "application/json",
            400,
            "too_many_events",
            Some("batch"),
        ),
        (
            "missing ids",
            "/v1/track",
            br#"{"event":"E"}"#.to_vec(),
            "application/json",
            400,
            "missing_identity",
            Some("userId"),
        ),
        (
            "missing event name",
            "/v1/track",
            br#"{"userId":"u"}"#.to_vec(),
            "application/json",
            400,
            "missing_field",
            Some("event"),
        ),
        (
            "missing groupId",
            "/v1/group",
            br#"{"userId":"u"}"#.to_vec(),
            "application/json",
            400,
            "missing_field",
            Some("groupId"),
        ),
        (
            "missing previousId",
            "/v1/alias",
            br#"{"userId":"u"}"#.to_vec(),
            "application/json",
            400,
            "missing_field",
            Some("previousId"),
        ),
        (
            "wrong field type",
            "/v1/track",
            br#"{"userId":"u","event":"E","properties":[]}"#.to_vec(),
            "application/json",
            400,
            "invalid_field_type",
            Some("properties"),
        ),
        (
            "wrong id type",
            "/v1/identify",
            br#"{"userId":{"id":1}}"#.to_vec(),
            "application/json",
            400,
            "invalid_field_type",
            Some("userId"),
        ),
        (
            "invalid timestamp",
            "/v1/track",
            br#"{"userId":"u","event":"E","timestamp":"last tuesday"}"#.to_vec(),
            "application/json",
            400,
            "invalid_timestamp",
            Some("timestamp"),
        ),
        (
            "invalid sentAt",
            "/v1/track",
            br#"{"userId":"u","event":"E","sentAt":"2024-99-01"}"#.to_vec(),
            "application/json",
            400,
            "invalid_timestamp",
            Some("sentAt"),
        ),
        (
            "invalid UTF-8",
            "/v1/track",
            b"{\"userId\":\"u\xff\xfe\",\"event\":\"E\"}".to_vec(),
            "application/json",
            400,
            "invalid_utf8",
            None,
        ),
        (
            "deeply nested",
            "/v1/track",
            deep.into_bytes(),
            "application/json",
            400,
            "too_deep",
            None,
        ),
        (
            "batch not an array",
            "/v1/batch",
            br#"{"batch":{"type":"track"}}"#.to_vec(),
            "application/json",
            400,
            "invalid_field_type",
            Some("batch"),
        ),
        (
            "empty batch",
            "/v1/batch",
            br#"{"batch":[]}"#.to_vec(),
            "application/json",
            400,
            "empty_batch",
            Some("batch"),
        ),
        (
            "unknown type in batch",
            "/v1/batch",
            br#"{"batch":[{"type":"click","userId":"u"}]}"#.to_vec(),
            "application/json",
            400,
            "invalid_type",
            Some("batch[0].type"),
        ),
    ];
    for (name, path, body, ctype, status, code, field) in cases {
        let r = s
            .client()
            .post(s.url(path))
            .basic_auth(&s.write_key, Some(""))
            .header("content-type", ctype)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let body: Value = r
            .json()
            .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
        assert_eq!(body["error"]["field"].as_str(), field, "{name}: {body}");
    }
    // Bad gzip, unknown encoding.
    for (encoding, status, code) in [
        ("gzip", 400, "invalid_gzip"),
        ("br", 415, "unsupported_content_encoding"),
    ] {
        let r = s
            .client()
            .post(s.url("/v1/track"))
            .basic_auth(&s.write_key, Some(""))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(b"definitely not compressed".to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.json::<Value>().unwrap()["error"]["code"], code);
    }
    // A gzip bomb inflating past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 2_000_000]).unwrap();
    let r = s
        .client()
        .post(s.url("/v1/batch"))
        .basic_auth(&s.write_key, Some(""))
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(log_offset(&s), before, "a refused request stored something");
    // The server still serves, and what was stored is intact.
    assert_eq!(
        s.post("/v1/track", r#"{"userId":"keep","event":"After"}"#)
            .0,
        200
    );
    let kept: Vec<String> = s
        .all_events("userId=keep")
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, vec!["After", "Kept"]);
}

#[test]
fn keys_are_checked_and_scoped() {
    let s = TestServer::start();
    let send = |auth: Option<(&str, &str)>, body: &str| {
        let mut r = s
            .client()
            .post(s.url("/v1/track"))
            .header("content-type", "application/json");
        if let Some((scheme, key)) = auth {
            r = match scheme {
                "basic" => r.basic_auth(key, Some("")),
                _ => r.bearer_auth(key),
            };
        }
        let r = r.body(body.to_owned()).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let event = r#"{"userId":"k","event":"E"}"#;
    assert_eq!(send(Some(("basic", &s.write_key)), event).0, 200);
    let (st, b) = send(None, event);
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (401, Some("missing_write_key"))
    );
    let (st, b) = send(Some(("basic", "wk_unknown")), event);
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (401, Some("invalid_write_key"))
    );
    let (st, b) = send(Some(("basic", &s.admin_key)), event);
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (401, Some("wrong_key_kind"))
    );
    let with_body_key = format!(
        r#"{{"userId":"k","event":"E","writeKey":"{}"}}"#,
        s.write_key
    );
    assert_eq!(send(None, &with_body_key).0, 200);

    // Write keys cannot read; no key cannot read.
    let r = s
        .client()
        .get(s.url("/api/v1/events"))
        .bearer_auth(&s.write_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s.client().get(s.url("/api/v1/events")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "missing_key");

    // A new source through the API, then revoke its key.
    let r = s
        .client()
        .post(s.url("/api/v1/sources"))
        .bearer_auth(&s.admin_key)
        .json(&json!({"name": "ios app"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().unwrap();
    let new_key = created["write_key"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(send(Some(("basic", &new_key)), event).0, 200);
    let key_id = created["write_key"]["id"].as_str().unwrap();
    let r = s
        .client()
        .delete(s.url(&format!("/api/v1/keys/{key_id}")))
        .bearer_auth(&s.admin_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(send(Some(("basic", &new_key)), event).0, 401);
    let (_, keys) = s.admin_get("/api/v1/keys");
    let listed = keys.to_string();
    assert!(
        !listed.contains(&new_key) && !listed.contains(&s.write_key),
        "secrets listed"
    );
    let r = s
        .client()
        .post(s.url("/api/v1/sources"))
        .bearer_auth(&s.admin_key)
        .json(&json!({"nmae": "typo"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["field"], "nmae");
}

#[test]
fn events_api_filters_and_pages_newest_first() {
    let s = TestServer::start();
    let mut batch = Vec::new();
    for i in 0..25 {
        batch.push(json!({
            "type": if i % 5 == 0 { "page" } else { "track" },
            "userId": if i % 2 == 0 { "even" } else { "odd" },
            "anonymousId": format!("anon-{}", i % 3),
            "event": format!("E{}", i % 4),
            "name": "P",
            "timestamp": format!("2024-03-01T00:00:{i:02}Z"),
        }));
    }
    let (status, _) = s.post("/v1/batch", &json!({"batch": batch}).to_string());
    assert_eq!(status, 200);
    let ts = |e: &Value| e["timestamp"].as_str().unwrap().to_owned();
    let all = s.all_events("limit=7");
    assert_eq!(all.len(), 25);
    let times: Vec<String> = all.iter().map(ts).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "not newest first");
    assert_eq!(s.all_events("userId=even").len(), 13);
    assert_eq!(s.all_events("anonymousId=anon-0").len(), 9);
    assert_eq!(s.all_events("userId=odd&anonymousId=anon-1").len(), 4);
    assert_eq!(s.all_events("type=page").len(), 5);
    // i % 4 == 1 gives 1, 5, 9, 13, 17, 21; 5 is a page.
    assert_eq!(s.all_events("type=track&event=E1").len(), 5);
    let window = s.all_events("since=2024-03-01T00:00:10Z&until=2024-03-01T00:00:20Z");
    assert_eq!(window.len(), 10);
    assert_eq!(ts(&window[0]), "2024-03-01T00:00:19.000Z");
    let (status, body) = s.admin_get("/api/v1/events?since=soon");
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("since"))
    );

    // By source: events sent with another source's write key are listed apart, by the API
    // and by `rapport events`, alone or with the other filters.
    let ios = s.admin_cli(&["sources", "create", "ios"]);
    let ios_id = ios["source"]["id"].as_str().unwrap().to_owned();
    let ios_key = ios["write_key"]["secret"].as_str().unwrap().to_owned();
    let batch: Vec<Value> = (0..4)
        .map(|i| {
            json!({"type": "track", "userId": if i % 2 == 0 { "even" } else { "odd" },
                   "event": "E1", "timestamp": format!("2024-03-02T00:00:0{i}Z")})
        })
        .collect();
    let (status, body) = s.post_as(
        &ios_key,
        "/v1/batch",
        &json!({ "batch": batch }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    s.wait_indexed();
    let from_ios = s.all_events(&format!("source={ios_id}"));
    assert_eq!(from_ios.len(), 4);
    assert!(from_ios.iter().all(|e| e["sourceId"] == ios_id.as_str()));
    assert_eq!(s.all_events(&format!("source={}", s.source_id)).len(), 25);
    assert_eq!(
        s.all_events(&format!("source={ios_id}&userId=even&event=E1"))
            .len(),
        2
    );
    assert_eq!(
        s.all_events(&format!("source={}&event=E1", s.source_id))
            .len(),
        6
    );
    assert_eq!(s.all_events("source=nothing").len(), 0);
    let listed = s.admin_cli(&["events", "--source", &ios_id, "--user-id", "odd", "--all"]);
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|e| e["userId"] == "odd"));
}

#[test]
fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let s = TestServer::start();
    let r = s.client().get(s.url("/v1/nothing")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "not_found");
    let r = s.client().get(s.url("/v1/track")).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[test]
fn metrics_are_labelled_by_route_template() {
    let s = TestServer::start();
    s.post("/v1/track", r#"{"userId":"m","event":"E"}"#);
    let _ = s
        .client()
        .delete(s.url("/api/v1/keys/key_secret123"))
        .bearer_auth(&s.admin_key)
        .send();
    let text = s.metrics_text();
    assert!(
        text.contains(
            r#"rapport_http_requests_total{route="/v1/track",method="POST",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="/api/v1/keys/{id}""#), "{text}");
    assert!(!text.contains("key_secret123"));
    assert!(text.contains("rapport_events_stored_total 1"));
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut s = TestServer::start();
    for i in 0..20 {
        let (status, _) = s.post("/v1/track", &format!(r#"{{"userId":"t","event":"E{i}"}}"#));
        assert_eq!(status, 200);
    }
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    s.spawn();
    assert_eq!(s.all_events("userId=t").len(), 20);
}

/// analytics.js 2.0 posts each call to `{apiHost}/t|i|p|s|g|a`, and it and the mobile SDKs
/// post batches to `{apiHost}/b`, with `apiHost` ending in `/v1` (issue 10).
#[test]
fn short_paths_reach_their_call_types() {
    let s = TestServer::start();
    let cases = [
        (
            "/v1/t",
            "track",
            r#"{"userId":"short","event":"Short Track"}"#,
        ),
        (
            "/v1/i",
            "identify",
            r#"{"userId":"short","traits":{"k":1}}"#,
        ),
        ("/v1/p", "page", r#"{"userId":"short","name":"Short Page"}"#),
        (
            "/v1/s",
            "screen",
            r#"{"userId":"short","name":"Short Screen"}"#,
        ),
        (
            "/v1/g",
            "group",
            r#"{"userId":"short","groupId":"g-short"}"#,
        ),
        ("/v1/a", "alias", r#"{"userId":"short","previousId":"old"}"#),
    ];
    for (path, _, body) in cases {
        let (status, r) = s.post(path, body);
        assert_eq!(
            (status, r["accepted"].as_u64()),
            (200, Some(1)),
            "{path}: {r}"
        );
    }
    let (status, r) = s.post(
        "/v1/b",
        r#"{"batch":[{"type":"track","userId":"short-b","event":"Batched"},{"type":"page","userId":"short-b"}]}"#,
    );
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(2)), "{r}");
    let stored = s.all_events("userId=short");
    assert_eq!(stored.len(), 6);
    for (path, ty, body) in cases {
        let sent: Value = serde_json::from_str(body).unwrap();
        let e = stored
            .iter()
            .find(|e| e["type"] == ty)
            .unwrap_or_else(|| panic!("{path}: no {ty} stored"));
        for (k, v) in sent.as_object().unwrap() {
            assert_eq!(&e[k], v, "{path}: {k}");
        }
    }
    let batched = s.all_events("userId=short-b");
    let mut types: Vec<_> = batched
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["page", "track"]);
}

/// Browsers post `text/plain` (no preflight for the body), RudderStack's Node SDK labels
/// its gzip bodies `application/x-www-form-urlencoded`, some clients send no label: the
/// body is read as JSON whatever the label, and only a body that is not JSON is refused.
#[test]
fn json_is_read_whatever_its_label() {
    let s = TestServer::start();
    let send = |content_type: Option<&str>, gzip: bool, body: &str| {
        let mut req = s
            .client()
            .post(s.url("/v1/track"))
            .basic_auth(&s.write_key, Some(""));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let bytes = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body.as_bytes()).unwrap();
            req = req.header("content-encoding", "gzip");
            gz.finish().unwrap()
        } else {
            body.as_bytes().to_vec()
        };
        let r = req.body(bytes).send().unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let labels = [
        (Some("text/plain"), false),
        (Some("text/plain;charset=UTF-8"), false),
        (Some("application/x-www-form-urlencoded"), true),
        (Some("application/x-www-form-urlencoded"), false),
        (Some("application/octet-stream"), false),
        (None, false),
    ];
    for (i, (ct, gzip)) in labels.iter().enumerate() {
        let body = format!(r#"{{"userId":"label","event":"Labelled {i}"}}"#);
        let (status, r) = send(*ct, *gzip, &body);
        assert_eq!(
            (status, r["accepted"].as_u64()),
            (200, Some(1)),
            "{ct:?}: {r}"
        );
    }
    let stored = s.all_events("userId=label");
    assert_eq!(stored.len(), labels.len());
    for i in 0..labels.len() {
        assert!(stored.iter().any(|e| e["event"] == format!("Labelled {i}")));
    }
    let before = log_offset(&s);
    for (ct, body) in [
        (Some("text/plain"), "userId=u&event=E"),
        (
            Some("application/x-www-form-urlencoded"),
            "userId=u&event=E",
        ),
        (None, "not json"),
    ] {
        let (status, r) = send(ct, false, body);
        assert_eq!(status, 400, "{ct:?}");
        assert_eq!(r["error"]["code"], "invalid_json", "{ct:?}: {r}");
    }
    assert_eq!(log_offset(&s), before, "a refused body writes nothing");
}

fn header<'a>(r: &'a reqwest::blocking::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A browser on another origin: the preflight is answered with the origin echoed (so that
/// credentialed requests work too), the SDKs' headers allowed and a max-age; every answer
/// of the tracking API, errors included, carries the origin; the admin REST API none.
#[test]
fn cors_for_the_tracking_api_only() {
    let s = TestServer::start();
    let origin = "http://shop.test:3000";
    let preflight = |path: &str, origin: &str| {
        s.client()
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization,x-retry-count",
            )
            .send()
            .unwrap()
    };
    for path in ["/v1/t", "/v1/b", "/v1/batch", "/v1/track", "/v1/import"] {
        let r = preflight(path, origin);
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(origin),
            "{path}"
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        let methods = header(&r, "access-control-allow-methods")
            .unwrap()
            .to_lowercase();
        assert!(methods.contains("post"), "{methods}");
        let allowed = header(&r, "access-control-allow-headers")
            .unwrap()
            .to_lowercase();
        for h in ["content-type", "authorization", "x-retry-count"] {
            assert!(allowed.contains(h), "{path}: {allowed}");
        }
        assert_eq!(header(&r, "access-control-max-age"), Some("7200"));
    }
    // The actual request, accepted and refused.
    let r = s
        .client()
        .post(s.url("/v1/t"))
        .header("origin", origin)
        .header("content-type", "text/plain")
        .basic_auth(&s.write_key, Some(""))
        .body(r#"{"userId":"cors","event":"From A Page"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    let exposed = header(&r, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    let r = s
        .client()
        .post(s.url("/v1/t"))
        .header("origin", origin)
        .body(r#"{"userId":"cors","event":"No Key"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    let r = s
        .client()
        .get(s.url(&format!("/v1/projects/{}/settings", s.write_key)))
        .header("origin", origin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    // A wrong method on a tracking path still answers in our shape.
    let r = s.client().get(s.url("/v1/t")).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "method_not_allowed"
    );
    // The REST API is not for web pages.
    let r = preflight("/api/v1/events", origin);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = s
        .client()
        .get(s.url("/api/v1/events"))
        .header("origin", origin)
        .bearer_auth(&s.admin_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(s.all_events("userId=cors").len(), 1);
}

#[test]
fn cors_origins_can_be_restricted() {
    let s = TestServer::start_with(&[
        "--cors-allowed-origins",
        "https://shop.example,http://localhost:3000",
    ]);
    let preflight = |origin: &str| {
        s.client()
            .request(reqwest::Method::OPTIONS, s.url("/v1/t"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
            .unwrap()
    };
    for allowed in ["https://shop.example", "http://localhost:3000"] {
        let r = preflight(allowed);
        assert_eq!(header(&r, "access-control-allow-origin"), Some(allowed));
    }
    for other in ["https://evil.example", "https://shop.example.evil", "null"] {
        let r = preflight(other);
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{other}");
    }
    // A page of another origin may still send a "simple" text/plain POST with the write key
    // in the body, which needs no preflight: the server refuses it and stores nothing.
    let post = |origin: Option<&str>| {
        let mut req = s
            .client()
            .post(s.url("/v1/t"))
            .header("content-type", "text/plain")
            .body(format!(
                r#"{{"writeKey":"{}","userId":"u","event":"From A Page"}}"#,
                s.write_key
            ));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    let (status, body) = post(Some("https://evil.example"));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert_eq!(post(Some("https://shop.example")).0, 200);
    assert_eq!(post(None).0, 200, "server-side SDKs send no Origin");
    s.wait_indexed();
    assert_eq!(
        s.all_events("").len(),
        2,
        "the refused request stored nothing"
    );
}

/// The settings document analytics.js 2.0 loads from `{cdnURL}/v1/projects/{key}/settings`
/// points the SDK back at this server, as a proxy in front names it when there is one.
#[test]
fn settings_document_for_analytics_js() {
    let s = TestServer::start();
    let path = format!("/v1/projects/{}/settings", s.write_key);
    let r = s.client().get(s.url(&path)).send().unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().unwrap();
    let segment = &doc["integrations"]["Segment.io"];
    assert_eq!(segment["apiKey"], s.write_key.as_str());
    assert_eq!(segment["apiHost"], format!("127.0.0.1:{}/v1", s.port));
    assert_eq!(segment["protocol"], "http");
    assert_eq!(
        doc["metrics"]["sampleRate"], 0,
        "no SDK metrics sent to Segment"
    );
    assert_eq!(doc["integrations"].as_object().unwrap().len(), 1);
    let forwarded = |s: &TestServer| -> Value {
        s.client()
            .get(s.url(&path))
            .header("x-forwarded-host", "cdp.example.com")
            .header("x-forwarded-proto", "https")
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // From a client that is no trusted proxy, the forwarded headers are ignored: a cache in
    // front would otherwise serve one client's choice of host to every visitor.
    let doc = forwarded(&s);
    assert_eq!(
        doc["integrations"]["Segment.io"]["apiHost"],
        format!("127.0.0.1:{}/v1", s.port)
    );
    assert_eq!(doc["integrations"]["Segment.io"]["protocol"], "http");
    drop(s);
    // Behind a trusted proxy they name the public address.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rapport.toml");
    std::fs::write(
        &config,
        "[rate_limits]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let s = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let path = format!("/v1/projects/{}/settings", s.write_key);
    let doc: Value = s
        .client()
        .get(s.url(&path))
        .header("x-forwarded-host", "cdp.example.com")
        .header("x-forwarded-proto", "https")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        doc["integrations"]["Segment.io"]["apiHost"],
        "cdp.example.com/v1"
    );
    assert_eq!(doc["integrations"]["Segment.io"]["protocol"], "https");
    for key in ["wk_unknown", s.admin_key.as_str()] {
        let r = s
            .client()
            .get(s.url(&format!("/v1/projects/{key}/settings")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], "unknown_write_key");
        assert!(!body.to_string().contains(key), "the key is not echoed");
    }
}
