//! The identity administration, tracking, settings and dead-letter routes through the real
//! router: what they accept, and their refusals pinned as snapshots of the error bodies.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::Harness;
use tower::ServiceExt;

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Sends a request with exactly these headers, answering the status and the JSON body.
fn send_with(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    payload: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(payload.to_owned())).unwrap();
    h.runtime.block_on(async {
        let response = h.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

/// Runs the indexer and the processor on another thread until dropped, for the routes that
/// wait for the processor's outcome.
struct Pipeline {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    fn start(h: &Harness) -> Pipeline {
        let stop = Arc::new(AtomicBool::new(false));
        let store = h.store.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                while rapport_engine::indexer::index_available(store.as_ref()).unwrap() > 0 {}
                rapport_engine::processor::Processor::new(store.clone(), Default::default())
                    .run_to_end()
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        Pipeline {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn identity_rules_are_read_replaced_and_listed() {
    let h = Harness::new();
    let rules = h.get("/api/v1/identity/rules");
    assert_eq!(rules["version"], 0);
    assert!(rules.get("updated_at").is_none(), "{rules}");
    assert_eq!(
        rules["rules"]["identifiers"][0],
        json!({"type": "user_id", "limit": 1})
    );
    assert_eq!(rules["rules"]["default_country_code"], Value::Null);
    assert_eq!(h.get("/api/v1/identity/rules/history"), json!({"data": []}));

    let _pipeline = Pipeline::start(&h);
    let (status, saved) = h.send(
        "PUT",
        "/api/v1/identity/rules",
        &h.admin_key,
        body(json!({"identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 2}], "blocked_values": ["n/a"]})),
    );
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["version"], 1);
    assert!(saved["offset"].is_u64(), "{saved}");
    assert!(saved["changed_by"].as_str().unwrap().starts_with("key_"));
    // Fields left out take their defaults.
    assert_eq!(saved["rules"]["custom_limit"], 5);
    assert_eq!(saved["rules"]["block_all_zeros"], true);
    let history = h.get("/api/v1/identity/rules/history");
    assert_eq!(history["data"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["data"][0], saved);
    assert_eq!(h.get("/api/v1/identity/rules"), saved);
}

#[test]
fn identity_refusals() {
    let h = Harness::new();
    let put = |v: Value| h.send("PUT", "/api/v1/identity/rules", &h.admin_key, body(v));
    for (name, rules, field) in [
        // An unknown field: it used to be refused too, now with its path.
        ("rules_unknown_field", json!({"limits": {}}), "limits"),
        (
            "rules_unknown_nested_field",
            json!({"identifiers": [{"type": "email", "limit": 1, "window": 3}]}),
            "identifiers[0].window",
        ),
        (
            "rules_wrong_type",
            json!({"custom_limit": "five"}),
            "custom_limit",
        ),
        (
            "rules_invalid_identifier_type",
            json!({"identifiers": [{"type": "", "limit": 1}]}),
            "identifiers[0].type",
        ),
        (
            "rules_invalid_limit",
            json!({"identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 0}]}),
            "identifiers[1].limit",
        ),
    ] {
        let (status, err) = put(rules);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(err["error"]["field"], field, "{name}: {err}");
        insta::assert_json_snapshot!(name, err);
    }
    let (status, err) = h.send(
        "PUT",
        "/api/v1/identity/rules",
        &h.admin_key,
        b"{not json".to_vec(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Not pinned as a snapshot: the shared extractor names the field `?` here (a position
    // serde_path_to_error could not name), which is for it to fix.
    assert_eq!(err["error"]["code"], "invalid_json", "{err}");

    let run = |v: Value| {
        h.send(
            "POST",
            "/api/v1/identity/matching/run",
            &h.admin_key,
            body(v),
        )
    };
    let (status, err) = run(json!({"review_probabilty": 0.5}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("matching_unknown_field", err);
    let (status, err) = run(json!({"estimation": "guess"}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("matching_wrong_estimation", err);
    let (status, err) = run(json!({"review_probability": 1.5}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["field"], "review_probability");
    insta::assert_json_snapshot!("matching_invalid_probability", err);

    let (status, never) = h.send("GET", "/api/v1/identity/matching", &h.admin_key, vec![]);
    assert_eq!(
        (status, never),
        (StatusCode::OK, json!({"state": "never_run"}))
    );

    let (status, page) = h.send("GET", "/api/v1/identity/review", &h.admin_key, vec![]);
    assert_eq!(
        (status, page),
        (StatusCode::OK, json!({"data": [], "next_cursor": null}))
    );
    let (status, err) = h.send(
        "GET",
        "/api/v1/identity/review?colour=red",
        &h.admin_key,
        vec![],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("review_unknown_parameter", err);
    let (status, err) = h.send(
        "GET",
        "/api/v1/identity/review?limit=0",
        &h.admin_key,
        vec![],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("review_limit_out_of_range", err);

    for (name, method, path) in [
        ("pair_not_found", "GET", "/api/v1/identity/review/p_1~p_2"),
        (
            "accept_not_found",
            "POST",
            "/api/v1/identity/review/p_1~p_2/accept",
        ),
        (
            "reject_not_found",
            "POST",
            "/api/v1/identity/review/p_1~p_2/reject",
        ),
    ] {
        let (status, err) = h.send(method, path, &h.admin_key, vec![]);
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {err}");
        insta::assert_json_snapshot!(name, err);
    }

    // A write key is no admin key.
    let (status, err) = h.send("GET", "/api/v1/identity/rules", &h.write_key, vec![]);
    assert_eq!(status, StatusCode::FORBIDDEN);
    insta::assert_json_snapshot!("identity_with_write_key", err);
}

#[test]
fn tracking_accepts_unknown_fields_any_content_type_and_every_alias() {
    let h = Harness::new();
    let auth = format!("Bearer {}", h.write_key);
    let message = |kind: &str| {
        let mut m = json!({"userId": "u1", "myOwnField": {"kept": true}, "timestamp": "2024-06-01T10:00:00Z"});
        match kind {
            "track" => m["event"] = json!("Signed Up"),
            "group" => m["groupId"] = json!("g1"),
            "alias" => m["previousId"] = json!("old"),
            _ => {}
        }
        m
    };
    for (kind, path, short) in [
        ("track", "/v1/track", "/v1/t"),
        ("identify", "/v1/identify", "/v1/i"),
        ("page", "/v1/page", "/v1/p"),
        ("screen", "/v1/screen", "/v1/s"),
        ("group", "/v1/group", "/v1/g"),
        ("alias", "/v1/alias", "/v1/a"),
    ] {
        for (p, content_type) in [(path, "text/plain"), (short, "application/x-whatever")] {
            let (status, answer) = send_with(
                &h,
                "POST",
                p,
                &[("authorization", &auth), ("content-type", content_type)],
                &message(kind).to_string(),
            );
            assert_eq!(status, StatusCode::OK, "{p}: {answer}");
            assert_eq!(
                answer,
                json!({"success": true, "accepted": 1, "duplicates": 0}),
                "{p}"
            );
        }
    }
    let mut batch = message("track");
    batch["type"] = json!("track");
    for path in ["/v1/batch", "/v1/b", "/v1/import"] {
        let (status, answer) = send_with(
            &h,
            "POST",
            path,
            &[("authorization", &auth)],
            &json!({"batch": [batch, {"type": "identify"}], "extra": 1}).to_string(),
        );
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer["accepted"], 1, "{path}: {answer}");
        assert_eq!(answer["rejected"][0]["index"], 1, "{path}: {answer}");
    }
}

#[test]
fn tracking_refusals() {
    let h = Harness::new();
    let auth = format!("Bearer {}", h.write_key);
    let (status, err) = send_with(
        &h,
        "POST",
        "/v1/track",
        &[("authorization", &auth)],
        r#"{"event": "x"}"#,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("track_without_id", err);
    let (status, err) = send_with(
        &h,
        "POST",
        "/v1/t",
        &[("authorization", &auth)],
        r#"{"userId": "u1", "event": 3}"#,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("track_wrong_type", err);
    let (status, err) = send_with(
        &h,
        "POST",
        "/v1/identify",
        &[("authorization", &auth)],
        "{not json",
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!("track_not_json", err);
    let (status, err) = send_with(
        &h,
        "POST",
        "/v1/batch",
        &[],
        r#"{"batch": [{"type": "track", "userId": "u1", "event": "x"}]}"#,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_json_snapshot!("batch_without_key", err);
    let (status, err) = send_with(
        &h,
        "POST",
        "/v1/track",
        &[("authorization", "Bearer wk_nothing")],
        r#"{"userId": "u1", "event": "x"}"#,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_json_snapshot!("track_unknown_key", err);
}

#[test]
fn settings_document_and_its_refusals() {
    let h = Harness::new();
    let path = format!("/v1/projects/{}/settings", h.write_key);
    let (status, doc) = send_with(&h, "GET", &path, &[("host", "cdp.example.org")], "");
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["integrations"]["Segment.io"]["apiHost"], "cdp.example.org/v1",
        "{doc}"
    );
    let (status, err) = send_with(
        &h,
        "GET",
        "/v1/projects/wk_nothing/settings",
        &[("host", "cdp.example.org")],
        "",
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    insta::assert_json_snapshot!("settings_unknown_key", err);
    let (status, err) = send_with(
        &h,
        "GET",
        &format!("/v1/projects/{}/settings", h.admin_key),
        &[("host", "cdp.example.org")],
        "",
    );
    assert_eq!(status, StatusCode::NOT_FOUND, "an admin key is no project");
    assert_eq!(err["error"]["code"], "unknown_write_key");
}

#[test]
fn dead_letters_list_and_refusals() {
    let h = Harness::new();
    assert_eq!(
        h.get("/api/v1/dead-letters"),
        json!({"data": [], "next_cursor": null})
    );
    assert_eq!(
        h.get("/api/v1/dead-letters?consumer=processor&limit=5"),
        json!({"data": [], "next_cursor": null})
    );
    for (name, query) in [
        ("dead_letters_unknown_consumer", "consumer=nobody"),
        ("dead_letters_bad_cursor", "cursor=zzz"),
        ("dead_letters_unknown_parameter", "offset=3"),
        ("dead_letters_limit_not_a_number", "limit=ten"),
    ] {
        let (status, err) = h.send(
            "GET",
            &format!("/api/v1/dead-letters?{query}"),
            &h.admin_key,
            vec![],
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
        insta::assert_json_snapshot!(name, err);
    }
}

#[test]
fn these_routes_state_their_key_scheme_in_the_document() {
    let doc = serde_json::to_value(rapport_server::openapi()).unwrap();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let scheme = if path.starts_with("/api/v1/identity/") || path == "/api/v1/dead-letters" {
            json!([{"admin_key": []}])
        } else if path.starts_with("/v1/projects/") {
            json!([{}])
        } else if path.starts_with("/v1/") {
            json!([{"write_key": []}])
        } else {
            continue;
        };
        for (method, op) in item.as_object().unwrap() {
            assert_eq!(op["security"], scheme, "{method} {path}");
            seen += 1;
        }
    }
    // 9 identity operations, 15 tracking paths, the settings document, the dead letters.
    assert_eq!(seen, 26);
}

#[test]
fn review_pairs_are_listed_read_accepted_and_rejected_once() {
    use rapport_core::identity::ProfileId;
    use rapport_engine::identity::review::{Candidate, Review};
    let h = Harness::new();
    let pair = |a: &str, b: &str| Candidate {
        pair: format!("{a}~{b}"),
        left: ProfileId::new(a),
        right: ProfileId::new(b),
        score: 4.5,
        probability: 0.7,
        fields: Vec::new(),
        found_at_ms: 1_700_000_000_000,
    };
    h.store
        .state_commit(
            &Review::propose(&[pair("p_a", "p_b"), pair("p_c", "p_d")]),
            None,
        )
        .unwrap();

    let page = h.get("/api/v1/identity/review?limit=1");
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["data"][0]["pair"], "p_a~p_b");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = h.get(&format!("/api/v1/identity/review?limit=1&cursor={cursor}"));
    assert_eq!(next["data"][0]["pair"], "p_c~p_d", "{next}");

    let pending = h.get("/api/v1/identity/review/p_a~p_b");
    assert_eq!(
        pending,
        json!({"status": "pending", "pair": "p_a~p_b", "left": "p_a", "right": "p_b",
            "score": 4.5, "probability": 0.7, "fields": [], "found_at_ms": 1_700_000_000_000i64})
    );

    let (status, rejected) = h.send(
        "POST",
        "/api/v1/identity/review/p_c~p_d/reject",
        &h.admin_key,
        vec![],
    );
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert!(rejected["reviewer"].as_str().unwrap().starts_with("key_"));
    assert!(rejected.get("outcome").is_none(), "{rejected}");

    let _pipeline = Pipeline::start(&h);
    let (status, accepted) = h.send(
        "POST",
        "/api/v1/identity/review/p_a~p_b/accept",
        &h.admin_key,
        vec![],
    );
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    // Neither profile exists: the processor says so.
    assert_eq!(accepted["outcome"]["status"], "missing", "{accepted}");
    assert_eq!(accepted["outcome"]["pair"], "p_a~p_b");
    assert_eq!(accepted["offset"], accepted["outcome"]["offset"]);
    assert_eq!(h.get("/api/v1/identity/review/p_a~p_b"), accepted);

    for (name, path) in [
        ("accept_decided", "/api/v1/identity/review/p_c~p_d/accept"),
        ("reject_decided", "/api/v1/identity/review/p_a~p_b/reject"),
    ] {
        let (status, err) = h.send("POST", path, &h.admin_key, vec![]);
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {err}");
        insta::assert_json_snapshot!(name, err);
    }
    assert_eq!(
        h.get("/api/v1/identity/review"),
        json!({"data": [], "next_cursor": null})
    );
}

/// Profile search is paged like every list: `limit`, and `next_cursor` passed back as
/// `cursor` reads the next page, `null` on the last; a cursor the API never returned is
/// refused naming `cursor`.
#[test]
fn profile_search_pages_by_cursor() {
    let h = Harness::new();
    let batch: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|u| json!({"type": "identify", "userId": u, "traits": {"plan": "pro"}}))
        .collect();
    let write = h.write_key.clone();
    let (status, body) = h.send(
        "POST",
        "/v1/batch",
        &write,
        json!({ "batch": batch }).to_string().into_bytes(),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    h.drain();
    let first = h.get("/api/v1/profiles?trait=plan&value=pro&limit=2");
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next_cursor")
        .to_owned();
    let rest = h.get(&format!(
        "/api/v1/profiles?trait=plan&value=pro&limit=2&cursor={cursor}"
    ));
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let mut ids: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let all = h.get("/api/v1/profiles?trait=plan&value=pro");
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    let admin = h.admin_key.clone();
    let (status, err) = h.send(
        "GET",
        "/api/v1/profiles?trait=plan&value=pro&cursor=nonsense",
        &admin,
        Vec::new(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "invalid_parameter", "{err}");
    assert_eq!(err["error"]["field"], "cursor", "{err}");
}
