//! Privacy end to end, on the store `RAPPORT_TEST_STORE` picks: a person known through
//! merged profiles, with segment memberships, journey instances and messages, consent set
//! through the API, deliveries and dead letters at destinations, is deleted through the
//! CLI with suppression. The receipt names each store; a webhook that takes deletion
//! requests gets one; after a clean restart no file of the data directory and no row of
//! any PostgreSQL table holds one of their identifiers or trait values; their new events
//! are dropped and nothing about them is delivered, while another customer keeps
//! everything. Also: deleting a range of a source's events, suppression on its own, and
//! bad input.

mod common;

use common::receiver::{Receiver, wait_for, webhook};
use common::{TestServer, cli, fails};
use serde_json::{Value, json};
use std::path::Path;

/// What must be gone: Ann's user id, anonymous id, e-mail, phone and a trait value.
const NEEDLES: [&str; 5] = [
    "ann-7f3k",
    "anon-ann-91x",
    "ann.secret@example.com",
    "+442079460958",
    "ultramarine-zx",
];

fn ann_events() -> Value {
    json!({"batch": [
        {"type": "page", "anonymousId": "anon-ann-91x", "name": "Home"},
        {"type": "identify", "userId": "ann-7f3k", "traits": {
            "email": "ann.secret@example.com", "phone": "+44 20 7946 0958",
            "colour": "ultramarine-zx", "plan": "pro"}},
        {"type": "track", "userId": "ann-7f3k", "anonymousId": "anon-ann-91x",
         "event": "Cart Updated", "properties": {"cart_id": "c1", "note": "ultramarine-zx"}},
        {"type": "track", "userId": "ann-7f3k", "event": "Signed Up"}
    ]})
}

fn bob_events() -> Value {
    json!({"batch": [
        {"type": "identify", "userId": "bob-2", "traits": {"email": "bob@example.com",
         "colour": "green", "plan": "pro"}},
        {"type": "track", "userId": "bob-2", "event": "Signed Up"}
    ]})
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// Every row of every table of the database, as text (`bytea` as hex), that holds the
/// needle in clear or in hex.
fn rows_containing(url: &str, needle: &str) -> Vec<String> {
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let tables = db
        .query(
            "select table_schema, table_name from information_schema.tables
             where table_schema not in ('pg_catalog', 'information_schema')
               and table_type = 'BASE TABLE'",
            &[],
        )
        .unwrap();
    assert!(tables.len() >= 5, "the scan sees Rapport's tables");
    let mut found = Vec::new();
    for t in tables {
        let (schema, table): (String, String) = (t.get(0), t.get(1));
        let sql = format!("select row_to_json(t)::text from \"{schema}\".\"{table}\" t");
        for row in db.query(&sql, &[]).unwrap() {
            let text: String = row.get(0);
            if text.contains(needle) || text.to_lowercase().contains(&hex) {
                found.push(format!(
                    "{schema}.{table}: {}",
                    &text[..text.len().min(200)]
                ));
            }
        }
    }
    found
}

fn profile_status(s: &TestServer, reference: &str) -> u16 {
    s.admin_get(&format!("/api/v1/profiles/{reference}")).0
}

#[test]
fn a_deleted_person_leaves_no_trace_in_any_store_and_is_suppressed_after() {
    let mut s = TestServer::start();
    let mail = Receiver::start();
    let hooks = Receiver::start();
    let broken = Receiver::start();
    broken.answer(400);
    webhook(&s, "mail", &mail);
    for (name, receiver, extra) in [
        ("hooks", &hooks, json!({"forward_deletions": true})),
        ("broken", &broken, json!({})),
    ] {
        let mut spec = json!({"name": name,
            "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
            "deliver": {"trait_changes": true}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, body) = s.admin_send("POST", "/api/v1/destinations", Some(spec));
        assert_eq!(status, 201, "{body}");
    }
    // A warehouse that erases its rows when a person is deleted.
    let warehouse = rapport_store::testing::TestPostgres::shared().create_database();
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "dw", "forward_deletions": true,
                    "kind": {"type": "warehouse", "database_url": warehouse, "schema": "analytics"}})),
    );
    assert_eq!(status, 201, "{body}");
    // A forward cannot pass deletions on.
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(json!({"name": "fwd", "forward_deletions": true,
                    "kind": {"type": "forward", "url": "http://127.0.0.1:9", "write_key": "k"}})),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "forward_deletions");

    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "pro", "expression": "traits.plan == \"pro\""})),
    );
    assert_eq!(status, 201, "{body}");
    for journey in [
        json!({"name": "cart", "entry": {"type": "event", "condition": "event == \"Cart Updated\""},
               "start": "wait", "nodes": {
                 "wait": {"type": "wait", "duration": "1d", "next": "remind"},
                 "remind": {"type": "send", "destination": "mail"}}}),
        json!({"name": "welcome", "entry": {"type": "event", "condition": "event == \"Signed Up\""},
               "start": "hello", "nodes": {"hello": {"type": "send", "destination": "mail"}}}),
    ] {
        let name = journey["name"].as_str().unwrap().to_owned();
        let (status, body) = s.admin_send("POST", "/api/v1/journeys", Some(journey));
        assert_eq!(status, 201, "{body}");
        let (status, body) = s.admin_post(&format!("/api/v1/journeys/{name}/publish"));
        assert_eq!(status, 200, "{body}");
    }

    assert_eq!(s.post("/v1/batch", &ann_events().to_string()).0, 200);
    assert_eq!(s.post("/v1/batch", &bob_events().to_string()).0, 200);
    s.wait_processed();
    let (status, body) = s.admin_send(
        "PUT",
        "/api/v1/profiles/user_id:ann-7f3k/consent",
        Some(json!({"categoryPreferences": {"marketing": true}})),
    );
    assert!(status == 200 || status == 202, "{body}");
    s.wait_processed();
    let (_, ann) = s.admin_get("/api/v1/profiles/user_id:ann-7f3k");
    assert_eq!(ann["traits"]["colour"], "ultramarine-zx", "{ann}");
    wait_for("the welcome messages", || mail.accepted().len() >= 2);
    wait_for("events delivered", || {
        hooks.accepted().iter().any(|b| b["userId"] == "ann-7f3k")
    });
    let mut dw = postgres::Client::connect(&warehouse, postgres::NoTls).unwrap();
    let rows_of = |dw: &mut postgres::Client, column: &str, id: &str| -> i64 {
        let tables = dw
            .query(
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = 'analytics' AND column_name = $1",
                &[&column],
            )
            .unwrap();
        tables
            .iter()
            .map(|t| {
                let table: String = t.get(0);
                dw.query_one(
                    &format!("SELECT count(*) FROM analytics.\"{table}\" WHERE {column} = $1"),
                    &[&id],
                )
                .unwrap()
                .get::<_, i64>(0)
            })
            .sum()
    };
    wait_for("Ann's and Bob's rows in the warehouse", || {
        rows_of(&mut dw, "user_id", "ann-7f3k") >= 3 && rows_of(&mut dw, "user_id", "bob-2") >= 2
    });
    wait_for("dead letters at the broken destination", || {
        let (_, d) = s.admin_get("/api/v1/destinations/broken/dead-letters");
        d["data"].as_array().is_some_and(|a| a.len() >= 4)
    });

    // Deleted through the CLI, with suppression, waiting for the receipt.
    let url = s.url("");
    let receipt = common::cli_json(&[
        "privacy",
        "delete",
        "email:Ann.Secret@example.com",
        "--suppress",
        "--wait",
        "120",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
        "--format",
        "json",
    ]);
    assert_eq!(receipt["status"], "done", "{receipt}");
    assert_eq!(receipt["kind"], "person");
    assert!(receipt["suppress"].as_bool().unwrap());
    let removed = |store: &str| -> u64 {
        receipt["receipt"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["store"].as_str().unwrap().starts_with(store))
            .map(|l| l["removed"].as_u64().unwrap())
            .sum()
    };
    // Four events, the consent change and the request's own entry.
    assert!(removed("log") >= 6, "{receipt}");
    assert!(removed("event index") >= 4, "{receipt}");
    assert_eq!(removed("profiles"), 2, "two merged profiles: {receipt}");
    assert!(removed("timelines") >= 4, "{receipt}");
    assert!(removed("segment memberships") >= 1, "{receipt}");
    assert!(removed("journey instances") >= 1, "{receipt}");
    assert!(removed("journey action feed") >= 1, "{receipt}");
    assert!(removed("trait change feed") >= 1, "{receipt}");
    assert!(removed("destination queues") >= 4, "{receipt}");
    assert_eq!(
        removed("destination hooks (deletion request forwarded)"),
        1,
        "{receipt}"
    );
    // The warehouse lost Ann's rows, in every table, and kept Bob's.
    assert!(
        removed("destination dw (warehouse rows deleted)") >= 4,
        "{receipt}"
    );
    assert_eq!(rows_of(&mut dw, "user_id", "ann-7f3k"), 0);
    assert_eq!(rows_of(&mut dw, "anonymous_id", "anon-ann-91x"), 0);
    assert_eq!(rows_of(&mut dw, "id", "ann-7f3k"), 0);
    assert!(rows_of(&mut dw, "user_id", "bob-2") >= 2);
    // The request a receiver got names the person by every identifier.
    let forwarded = hooks
        .accepted()
        .into_iter()
        .find(|b| b["type"] == "deletion_request")
        .expect("a deletion request at the webhook");
    assert_eq!(forwarded["userId"], "ann-7f3k");
    assert_eq!(forwarded["request_id"], receipt["id"]);
    let ids = forwarded["identifiers"].to_string();
    for id in ["anon-ann-91x", "ann.secret@example.com", "+442079460958"] {
        assert!(ids.contains(id), "{forwarded}");
    }
    assert!(
        broken
            .accepted()
            .iter()
            .all(|b| b["type"] != "deletion_request"),
        "only destinations that ask get deletion requests"
    );

    for reference in [
        "user_id:ann-7f3k",
        "anonymous_id:anon-ann-91x",
        "email:ann.secret@example.com",
    ] {
        assert_eq!(profile_status(&s, reference), 404, "{reference}");
    }
    assert!(s.all_events("userId=ann-7f3k").is_empty());
    let (_, bob) = s.admin_get("/api/v1/profiles/user_id:bob-2");
    assert_eq!(bob["traits"]["colour"], "green", "{bob}");
    assert_eq!(s.all_events("userId=bob-2").len(), 2);
    let (_, pro) = s.admin_get("/api/v1/segments/pro");
    assert_eq!(pro["size"], 1, "the segment lost Ann: {pro}");

    // Suppressed: Ann's new events are dropped, answered as accepted; Bob's are stored.
    let (status, answer) = s.post(
        "/v1/track",
        &json!({"userId": "u-new", "event": "Back", "context": {"traits": {"email": "ann.secret@example.com"}}}).to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["suppressed"], 1, "{answer}");
    assert_eq!(answer["accepted"], 0, "{answer}");
    // Every identifier she was known by is suppressed, not only the e-mail named (in
    // force here once this server reloads its copy of the list, every 2 s).
    let (_, list) = s.admin_get("/api/v1/privacy/suppressions");
    assert_eq!(list["data"].as_array().unwrap().len(), 4, "{list}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (_, answer) = s.post(
        "/v1/page",
        &json!({"anonymousId": "anon-ann-91x", "name": "Back"}).to_string(),
    );
    assert_eq!(answer["suppressed"], 1, "{answer}");
    assert_eq!(s.post("/v1/batch", &bob_events().to_string()).0, 200);
    s.wait_processed();
    assert_eq!(profile_status(&s, "user_id:u-new"), 404);
    assert_eq!(profile_status(&s, "anonymous_id:anon-ann-91x"), 404);
    let (_, list) = s.admin_get("/api/v1/privacy/suppressions");
    let types: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in ["email", "user_id", "anonymous_id", "phone"] {
        assert!(types.contains(&kind), "{list}");
    }
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["deletion"] == receipt["id"])
    );

    // The audit trail names the request's person by the receipt's digest, nothing more.
    let (_, audit) = s.admin_get("/api/v1/audit?action=privacy.deletion.create");
    assert_eq!(
        audit["data"][0]["resource"]["id"], receipt["subject_hashes"][0],
        "{audit}"
    );
    for needle in NEEDLES {
        assert!(!audit.to_string().contains(needle), "{audit}");
    }

    // A clean restart, then every file and every table.
    s.terminate();
    s.spawn();
    s.wait_processed();
    assert_eq!(profile_status(&s, "user_id:ann-7f3k"), 404);
    s.terminate();
    for needle in NEEDLES {
        assert_eq!(
            files_containing(&s.data_dir(), needle),
            Vec::<String>::new(),
            "{needle} is in a file of the data directory"
        );
        if let Some(url) = s.database_url() {
            assert_eq!(
                rows_containing(url, needle),
                Vec::<String>::new(),
                "{needle} is in a PostgreSQL table"
            );
        }
    }
    // Bob is still there, in files or rows.
    let bob_found = match s.database_url() {
        Some(url) => !rows_containing(url, "bob@example.com").is_empty(),
        None => !files_containing(&s.data_dir(), "bob@example.com").is_empty(),
    };
    assert!(bob_found, "the scan would see data that is there");
}

#[test]
fn a_range_of_a_sources_events_is_deleted_and_suppression_stands_alone() {
    let s = TestServer::start();
    let (status, _) = s.post(
        "/v1/track",
        &json!({"userId": "typo-1", "event": "Oops", "properties": {"card": "4111-mistake"}})
            .to_string(),
    );
    assert_eq!(status, 200);
    s.wait_processed();
    let after = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        s.post(
            "/v1/track",
            &json!({"userId": "typo-1", "event": "Fine"}).to_string()
        )
        .0,
        200
    );
    s.wait_processed();
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/privacy/deletions/events",
        Some(json!({"source": s.source_id, "from": "2020-01-01T00:00:00Z", "to": "yesterday"})),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "to");
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/privacy/deletions/events",
        Some(
            json!({"source": "nope", "from": "2020-01-01T00:00:00Z", "to": "2021-01-01T00:00:00Z"}),
        ),
    );
    assert_eq!(status, 404, "{e}");
    let url = s.url("");
    let to = rapport_api::time::to_wire(&after);
    let receipt = common::cli_json(&[
        "privacy",
        "delete-events",
        "--source",
        &s.source_id,
        "--from",
        "2020-01-01T00:00:00Z",
        "--to",
        &to,
        "--wait",
        "60",
        "--url",
        &url,
        "--admin-key",
        &s.admin_key,
        "--format",
        "json",
    ]);
    assert_eq!(receipt["status"], "done", "{receipt}");
    let events = s.all_events("userId=typo-1");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "Fine");
    // The profile's timeline lists the event left, and no trace of the one erased.
    let (_, timeline) = s.admin_get("/api/v1/profiles/user_id:typo-1/events");
    let items = timeline["data"].as_array().unwrap();
    assert!(items.iter().all(|e| e != &json!({})), "{timeline}");
    assert!(!timeline.to_string().contains("4111-mistake"), "{timeline}");
    assert!(items.iter().any(|e| e["event"] == "Fine"), "{timeline}");

    // Bad input names the field; nothing is queued.
    for (body, field) in [
        (json!({"identifiers": []}), "identifiers"),
        (
            json!({"identifiers": ["colour:blue:x", "nonsense"]}),
            "identifiers[1]",
        ),
        (
            json!({"identifiers": ["p_000000000001"], "suppress": true}),
            "suppress",
        ),
    ] {
        let (status, e) = s.admin_send("POST", "/api/v1/privacy/deletions", Some(body));
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    let (status, e) = s.admin_send(
        "POST",
        "/api/v1/privacy/suppressions",
        Some(json!({"identifier": "p_000000000001"})),
    );
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "identifier");
    let (_, list) = s.admin_get("/api/v1/privacy/deletions");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // Suppression on its own: events dropped while it stands, stored once lifted.
    let suppress = |args: &[&str]| {
        let mut all = vec!["privacy"];
        all.extend_from_slice(args);
        all.extend(["--url", &url, "--admin-key", &s.admin_key]);
        cli(&all)
    };
    common::ok(suppress(&[
        "suppress",
        "user_id:typo-1",
        "--reason",
        "asked by phone",
    ]));
    let (_, answer) = s.post(
        "/v1/track",
        &json!({"userId": "typo-1", "event": "Again"}).to_string(),
    );
    assert_eq!(answer["suppressed"], 1, "{answer}");
    common::ok(suppress(&["unsuppress", "user_id:typo-1"]));
    let err = fails(suppress(&["unsuppress", "user_id:typo-1"]));
    assert!(err.contains("no suppression"), "{err}");
    let (_, answer) = s.post(
        "/v1/track",
        &json!({"userId": "typo-1", "event": "Again"}).to_string(),
    );
    assert_eq!(answer["accepted"], 1, "{answer}");
}

#[test]
fn nothing_about_a_suppressed_person_is_delivered_not_even_a_journey_message_already_due() {
    let s = TestServer::start();
    let mail = Receiver::start();
    webhook(&s, "mail", &mail);
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/journeys",
        Some(json!({"name": "later", "entry": {"type": "event", "condition": "event == \"Signed Up\""},
               "start": "wait", "nodes": {
                 "wait": {"type": "wait", "duration": "3s", "next": "hello"},
                 "hello": {"type": "send", "destination": "mail"}}})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(s.admin_post("/api/v1/journeys/later/publish").0, 200);
    let sign_up = |user: &str| {
        json!({"userId": user, "event": "Signed Up", "context": {"traits": {"email": format!("{user}@example.com")}}})
            .to_string()
    };
    assert_eq!(s.post("/v1/track", &sign_up("carol")).0, 200);
    assert_eq!(s.post("/v1/track", &sign_up("dave")).0, 200);
    s.wait_processed();
    // Carol is suppressed by her e-mail while she waits.
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/privacy/suppressions",
        Some(json!({"identifier": "email:carol@example.com"})),
    );
    assert_eq!(status, 201, "{body}");
    wait_for("Dave's message", || {
        mail.accepted()
            .iter()
            .any(|b| b["rapport"]["identifiers"].to_string().contains("dave"))
    });
    wait_for("Carol's message to be skipped", || {
        let (_, o) = s.admin_get("/api/v1/destinations/mail/overview");
        o["total"]["skipped_suppressed"] == 1
    });
    assert!(
        mail.accepted()
            .iter()
            .all(|b| !b.to_string().contains("carol")),
        "nothing about Carol was delivered"
    );
    // Her profile is kept: suppression is not deletion.
    assert_eq!(profile_status(&s, "user_id:carol"), 200);
}
