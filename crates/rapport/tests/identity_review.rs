//! Probabilistic matching and identity rules over HTTP and the CLI, on a real server: the
//! job merges a sure pair through the log (explained as a probabilistic match), reports a
//! merge the rules forbid as refused, queues borderline pairs; accepting merges, rejecting
//! is remembered across runs; rules edited through the API apply to later events.

mod common;

use common::TestServer;
use common::people::{planted, population};
use serde_json::{Value, json};

fn send(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    s.admin_send(method, path, body)
}

fn cli(s: &TestServer, args: &[&str]) -> Value {
    s.admin_cli(args)
}

fn profile_id(s: &TestServer, reference: &str) -> String {
    let (status, p) = s.admin_get(&format!("/api/v1/profiles/{reference}"));
    assert_eq!(status, 200, "{reference}: {p}");
    p["id"].as_str().unwrap().to_owned()
}

fn pair(s: &TestServer, a: &str, b: &str) -> String {
    let (a, b) = (profile_id(s, a), profile_id(s, b));
    let (l, r) = if a <= b { (a, b) } else { (b, a) };
    format!("{l}~{r}")
}

#[test]
fn matching_review_and_rules() {
    let s = TestServer::start();
    let mut batch = population();
    batch.extend(planted());
    let (status, body) = s.post("/v1/batch", &json!({ "batch": batch }).to_string());
    assert_eq!(status, 200, "{body}");
    s.wait_processed();
    let (_, never) = s.admin_get("/api/v1/identity/matching");
    assert_eq!(never["state"], "never_run");

    // Bad options are refused naming the field.
    let (status, err) = send(
        &s,
        "POST",
        "/api/v1/identity/matching/run",
        Some(json!({"review_probability": 1.5})),
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("review_probability")),
        "{err}"
    );

    // The CLI starts the run and follows it to the end.
    let run = cli(&s, &["identity", "match"]);
    assert_eq!(run["state"], "done", "{run}");
    // The run says what it read: live profiles, those comparable, each field's coverage.
    assert_eq!(
        run["live_profiles"].as_u64().unwrap(),
        run["records"].as_u64().unwrap() + run["too_few_fields"].as_u64().unwrap(),
        "{run}"
    );
    assert!(
        run["fields_present"]["email"].as_u64().unwrap() > 0,
        "{run}"
    );
    assert_eq!(
        (run["matches"].as_u64(), run["review"].as_u64()),
        (Some(2), Some(2)),
        "{run}"
    );
    s.wait_processed();

    // Ann's profiles are one, explained as a probabilistic match with its score.
    let ann = profile_id(&s, "user_id:ann-1");
    assert_eq!(profile_id(&s, "anonymous_id:cookie-ann"), ann);
    let (_, identity) = s.admin_get("/api/v1/profiles/email:annabel.f@example.org/identity");
    let merged = identity["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "profile_merged")
        .unwrap_or_else(|| panic!("{identity}"));
    assert_eq!(merged["reason"]["kind"], "probabilistic match");
    assert_eq!(merged["reason"]["decided_by"], "automatic");
    assert!(
        merged["reason"]["score"].as_f64().unwrap() > 10.0,
        "{merged}"
    );

    // Cressida's two user ids cannot be one profile: the merge is reported refused.
    let cy = pair(&s, "user_id:cy-1", "user_id:cy-2");
    let (_, p) = s.admin_get(&format!("/api/v1/identity/review/{cy}"));
    assert_eq!(p["status"], "automatic", "{p}");
    assert_eq!(p["outcome"]["status"], "refused", "{p}");
    assert_eq!(p["outcome"]["kind"], "user_id", "{p}");
    assert_ne!(
        profile_id(&s, "user_id:cy-1"),
        profile_id(&s, "user_id:cy-2")
    );

    // Two borderline pairs await review, paged.
    let bo = pair(&s, "user_id:bo-1", "anonymous_id:cookie-bo");
    let dot = pair(&s, "user_id:dot-1", "anonymous_id:cookie-dot");
    let (_, first) = s.admin_get("/api/v1/identity/review?limit=1");
    assert_eq!(first["data"].as_array().unwrap().len(), 1, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = s.admin_get(&format!("/api/v1/identity/review?limit=1&cursor={cursor}"));
    let mut ids = vec![
        first["data"][0]["pair"].clone(),
        second["data"][0]["pair"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    let mut expected = vec![json!(bo), json!(dot)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(ids, expected);
    assert!(second["next_cursor"].is_null());
    assert!(first["data"][0]["fields"].as_array().unwrap().len() == 8);
    let (status, err) = s.admin_get("/api/v1/identity/review?limit=0");
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    let listed = cli(&s, &["identity", "review", "list"]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    // Accept merges through the log and answers with the outcome; reject is remembered.
    let accepted = cli(&s, &["identity", "review", "accept", &bo]);
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    assert_eq!(accepted["outcome"]["status"], "merged", "{accepted}");
    let reviewer = accepted["reviewer"]
        .as_str()
        .expect("the accepting key")
        .to_owned();
    let (_, identity) = s.admin_get("/api/v1/profiles/user_id:bo-1/identity");
    let by_review = identity["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "profile_merged" && e["reason"]["decided_by"] == "review")
        .unwrap_or_else(|| panic!("{identity}"));
    assert_eq!(by_review["reason"]["reviewer"], reviewer.as_str());
    assert_eq!(
        profile_id(&s, "anonymous_id:cookie-bo"),
        profile_id(&s, "user_id:bo-1")
    );
    let (status, _) = send(
        &s,
        "POST",
        &format!("/api/v1/identity/review/{bo}/accept"),
        None,
    );
    assert_eq!(status, 409);
    let rejected = cli(&s, &["identity", "review", "reject", &dot]);
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reviewer"], reviewer.as_str());
    let (status, err) = send(&s, "POST", "/api/v1/identity/review/p_1~p_2/reject", None);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let again = cli(&s, &["identity", "match"]);
    assert_eq!(
        (again["merges_appended"].as_u64(), again["review"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    let (_, empty) = s.admin_get("/api/v1/identity/review");
    assert_eq!(empty["data"], json!([]));
    assert_ne!(
        profile_id(&s, "anonymous_id:cookie-dot"),
        profile_id(&s, "user_id:dot-1")
    );

    // Rules: the configuration's until saved; validated naming the field; applied to
    // later events.
    let (_, rules) = s.admin_get("/api/v1/identity/rules");
    assert_eq!(rules["version"], 0);
    assert_eq!(rules["rules"]["identifiers"][0]["type"], "user_id");
    let bad =
        json!({"identifiers": [{"type": "user_id", "limit": 1}, {"type": "email", "limit": 0}]});
    let (status, err) = send(&s, "PUT", "/api/v1/identity/rules", Some(bad));
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("identifiers[1].limit")),
        "{err}"
    );
    let (status, err) = send(
        &s,
        "PUT",
        "/api/v1/identity/rules",
        Some(json!({"limits": {}})),
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("limits")),
        "{err}"
    );
    let file = s.dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[identity]\nblocked_values = [\"n/a\"]\n\n[[identity.identifiers]]\ntype = \"user_id\"\nlimit = 1\n\n[[identity.identifiers]]\ntype = \"email\"\nlimit = 1\n",
    )
    .unwrap();
    let saved = cli(&s, &["identity", "rules", "set", file.to_str().unwrap()]);
    assert_eq!(saved["version"], 1, "{saved}");
    assert!(saved["offset"].as_u64().is_some(), "{saved}");
    assert!(saved["changed_by"].as_str().is_some(), "{saved}");
    let shown = cli(&s, &["identity", "rules", "show"]);
    assert_eq!(shown["rules"]["blocked_values"], json!(["n/a"]));
    let history = cli(&s, &["identity", "rules", "history"]);
    assert_eq!(history["data"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["data"][0]["offset"], saved["offset"]);

    let ev = |email: &str| json!({"type": "identify", "userId": "rule-1", "traits": {"email": email}, "timestamp": "2024-06-01T10:00:00Z"});
    for email in ["first@example.org", "second@example.org"] {
        let (status, _) = s.post("/v1/identify", &ev(email).to_string());
        assert_eq!(status, 200);
    }
    s.wait_processed();
    let (_, p) = s.admin_get("/api/v1/profiles/user_id:rule-1");
    let emails: Vec<&Value> = p["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "email")
        .collect();
    assert_eq!(emails.len(), 1, "{p}");
}
