//! The pipeline overview and the tracking API's refusals end to end
//! (docs/rest-api.md#pipeline-overview): events per minute per source come from the
//! processor's durable counts and survive a restart; refusals name code and field, never
//! hold the payload, and keep the message id from masked keys; bad parameters are named.

mod common;

use common::TestServer;
use serde_json::{Value, json};

fn post_as(s: &TestServer, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = s
        .client()
        .post(s.url(path))
        .basic_auth(key, Some(""))
        .json(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get_as(s: &TestServer, key: &str, path: &str) -> (u16, Value) {
    let r = s.client().get(s.url(path)).bearer_auth(key).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// A source's row of the overview's events per minute.
fn row<'a>(overview: &'a Value, source_id: &str) -> &'a Value {
    overview["events_per_minute"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source_id"] == source_id)
        .unwrap_or_else(|| panic!("no row for {source_id}: {overview}"))
}

fn counts(row: &Value) -> Vec<u64> {
    row["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect()
}

#[test]
fn events_per_minute_are_counted_per_source_and_survive_a_restart() {
    let mut s = TestServer::start();
    let (status, created) =
        s.admin_send("POST", "/api/v1/sources", Some(json!({"name": "mobile"})));
    assert_eq!(status, 201, "{created}");
    let mobile = created["source"]["id"].as_str().unwrap().to_owned();
    let mobile_key = created["write_key"]["secret"].as_str().unwrap().to_owned();
    let batch = |n: usize| {
        json!({"batch": (0..n)
            .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "Viewed"}))
            .collect::<Vec<_>>()})
    };
    let (status, body) = post_as(&s, &s.write_key, "/v1/batch", &batch(5));
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (200, Some(5)),
        "{body}"
    );
    let (status, body) = post_as(&s, &mobile_key, "/v1/batch", &batch(3));
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (200, Some(3)),
        "{body}"
    );
    s.wait_processed();
    s.wait_indexed();

    let (status, o) = s.admin_get("/api/v1/overview?minutes=5");
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["events_per_minute"]["minutes"], 5);
    assert_eq!(o["log_offset"], 8, "{o}");
    assert_eq!(o["processed_offset"], 8, "{o}");
    assert_eq!(o["processor_lag"], 0, "{o}");
    assert_eq!(o["indexer_lag"], 0, "{o}");
    assert!(o["storage_bytes"].as_u64().unwrap() > 0, "{o}");
    assert_eq!(o["rejected_per_minute"].as_array().unwrap().len(), 5);
    assert_eq!(o["dead_letters"], 0);
    let default = row(&o, &s.source_id);
    let phone = row(&o, &mobile);
    assert_eq!(phone["source_name"], "mobile");
    assert_eq!(
        (default["total"].as_u64(), phone["total"].as_u64()),
        (Some(5), Some(3))
    );
    for r in [default, phone] {
        let c = counts(r);
        assert_eq!(c.len(), 5);
        // All in the last minute or the one before (the test may straddle a boundary).
        assert_eq!(c[3] + c[4], r["total"].as_u64().unwrap(), "{o}");
    }
    // The default window is an hour.
    let (_, o) = s.admin_get("/api/v1/overview");
    assert_eq!(counts(row(&o, &mobile)).len(), 60);

    // From durable state: the same after a restart on the same data.
    s.terminate();
    s.spawn();
    let (status, o) = s.admin_get("/api/v1/overview?minutes=10");
    assert_eq!(status, 200, "{o}");
    assert_eq!(row(&o, &s.source_id)["total"], 5, "{o}");
    assert_eq!(row(&o, &mobile)["total"], 3, "{o}");

    // The CLI prints the same, as JSON and for people.
    let json = s.admin_cli(&["overview", "--minutes", "10"]);
    assert_eq!(row(&json, &mobile)["total"], 3);
    let url = s.url("");
    let text = common::ok(common::cli(&[
        "overview",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
    ]));
    assert!(
        text.contains("processed") && text.contains("mobile"),
        "{text}"
    );
}

#[test]
fn refusals_name_code_and_field_and_never_keep_the_payload() {
    let s = TestServer::start();
    let secret = "4111-1111-secret-card";
    // A batch with one good message and two bad ones.
    let (status, body) = post_as(
        &s,
        &s.write_key,
        "/v1/batch",
        &json!({"batch": [
            {"type": "track", "userId": "u1", "event": "Fine"},
            {"type": "track", "userId": "u1", "messageId": "m-bad-1", "properties": {"card": secret}},
            {"type": "identify", "traits": {"card": secret}},
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"].as_array().unwrap().len(), 2, "{body}");
    // A single message refused whole, a bad key, a body that is not JSON.
    let (status, _) = post_as(
        &s,
        &s.write_key,
        "/v1/track",
        &json!({"userId": "u2", "messageId": "m-bad-2", "properties": {"card": secret}}),
    );
    assert_eq!(status, 400);
    let (status, _) = post_as(&s, "not-a-key", "/v1/track", &json!({"event": "x"}));
    assert_eq!(status, 401);
    let r = s
        .client()
        .post(s.url("/v1/b"))
        .basic_auth(&s.write_key, Some(""))
        .body(format!("{{\"batch\": [{secret}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let (status, list) = s.admin_get("/api/v1/rejections");
    assert_eq!(status, 200, "{list}");
    let text = list.to_string();
    assert!(!text.contains(secret), "a refusal keeps no payload: {text}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 5, "{list}");
    // Newest first: the bad JSON, the bad key, the single track, then the batch's two.
    assert_eq!(data[0]["code"], "invalid_json", "{list}");
    assert_eq!(data[0]["path"], "/v1/b");
    assert_eq!(data[0]["source"]["id"], s.source_id.as_str());
    assert_eq!(data[1]["code"], "invalid_write_key");
    assert_eq!(data[1]["source"], Value::Null);
    assert_eq!(data[1]["type"], "track");
    assert_eq!(data[2]["code"], "missing_field");
    assert_eq!(data[2]["field"], "event");
    assert_eq!(data[2]["message_id"], "m-bad-2");
    assert_eq!(data[2]["path"], "/v1/track");
    let batch: Vec<_> = data[3..].iter().collect();
    assert!(
        batch
            .iter()
            .any(|r| r["field"] == "batch[1].event" && r["message_id"] == "m-bad-1"),
        "{list}"
    );
    assert!(
        batch
            .iter()
            .all(|r| r["path"] == "/v1/batch" && r["at"].is_string())
    );
    assert!(batch.iter().any(|r| r["type"] == "identify"), "{list}");

    // Paged by cursor, filtered by source.
    let (_, page) = s.admin_get("/api/v1/rejections?limit=2");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = s.admin_get(&format!("/api/v1/rejections?limit=2&cursor={cursor}"));
    assert_eq!(next["data"][0]["code"], "missing_field", "{next}");
    let (_, mine) = s.admin_get(&format!("/api/v1/rejections?source={}", s.source_id));
    assert_eq!(mine["data"].as_array().unwrap().len(), 4);

    // Counted in the overview and in a Prometheus counter.
    let (_, o) = s.admin_get("/api/v1/overview?minutes=2");
    let rejected: u64 = o["rejected_per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 5, "{o}");
    let metrics = s.metrics_text();
    assert!(
        metrics.contains("rapport_tracking_rejections_total 5"),
        "{metrics}"
    );

    // A masked key sees no message id (a client's id may be a person's).
    let (status, key) = s.admin_send(
        "POST",
        "/api/v1/keys",
        Some(json!({"kind": "admin", "name": "masked", "scopes": ["read_masked"]})),
    );
    assert_eq!(status, 201, "{key}");
    let (status, masked) = get_as(&s, key["secret"].as_str().unwrap(), "/api/v1/rejections");
    assert_eq!(status, 200, "{masked}");
    let items = masked["data"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|r| r["message_id"].is_null()), "{masked}");
    assert!(!masked.to_string().contains("m-bad"), "{masked}");
    assert_eq!(
        get_as(&s, key["secret"].as_str().unwrap(), "/api/v1/overview").0,
        200
    );

    // The CLI's table.
    let url = s.url("");
    let text = common::ok(common::cli(&[
        "rejections",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
        "--limit",
        "10",
    ]));
    assert!(
        text.contains("invalid_write_key") && text.contains("batch[1].event"),
        "{text}"
    );
    let json = s.admin_cli(&["rejections", "--source", &s.source_id]);
    assert_eq!(json["data"].as_array().unwrap().len(), 4, "{json}");
}

#[test]
fn bad_parameters_are_named() {
    let s = TestServer::start();
    for bad in ["0", "1441", "abc", "-1"] {
        let (status, body) = s.admin_get(&format!("/api/v1/overview?minutes={bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert_eq!(body["error"]["field"], "minutes", "{body}");
    }
    for bad in ["0", "1001", "x"] {
        let (status, body) = s.admin_get(&format!("/api/v1/rejections?limit={bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        assert_eq!(body["error"]["field"], "limit", "{body}");
    }
    let (status, body) = s.admin_get("/api/v1/rejections?cursor=nope");
    assert_eq!((status, &body["error"]["field"]), (400, &json!("cursor")));
}
