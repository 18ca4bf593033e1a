//! The audience API's answers through the real router, pinned as snapshots: a segment with
//! its size and backfill, a page of its members, a page of the feed. Times of processing
//! (`created_at`, `entered_at`, `at`, …) are replaced by `[time]` once checked to be RFC
//! 3339; everything else — field names, nesting, `null` and absent fields — is as sent.

mod support;

use rapport_api::audiences::{AudienceChange, FeedPage, Member, Segment};
use rapport_api::page::Page;
use serde_json::{Value, json};
use support::Harness;

/// Every time field (`at` or `…_at`) checked and replaced by `[time]`.
fn redact_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if (k == "at" || k.ends_with("_at")) && x.is_string() {
                    let s = x.as_str().unwrap();
                    assert!(
                        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                        "{k}: {s} is no RFC 3339 time"
                    );
                    *x = Value::String("[time]".into());
                } else {
                    redact_times(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_times),
        _ => {}
    }
}

fn post(h: &Harness, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = h.send("POST", path, key, body.to_string().into_bytes());
    assert!(status.is_success(), "POST {path}: {status} {answer}");
    answer
}

/// A segment of buyers, two profiles that bought (one known by e-mail only) and one that
/// did not, processed.
fn buyers() -> Harness {
    let h = Harness::new();
    let admin = h.admin_key.clone();
    post(
        &h,
        "/api/v1/segments",
        &admin,
        json!({"name": "buyers", "description": "bought once",
               "expression": "count(event == \"Order Completed\") >= 1"}),
    );
    let write = h.write_key.clone();
    post(
        &h,
        "/v1/batch",
        &write,
        json!({"batch": [
            {"type": "track", "userId": "42", "event": "Order Completed"},
            {"type": "track", "anonymousId": "a-1", "event": "Product Viewed"},
            {"type": "identify", "anonymousId": "a-2", "traits": {"email": "ann@example.com"}},
            {"type": "track", "anonymousId": "a-2", "event": "Order Completed"}
        ]}),
    );
    h.drain();
    h
}

#[test]
fn a_segment_with_its_size_and_backfill() {
    let h = buyers();
    let mut segment = h.get("/api/v1/segments/buyers");
    let typed: Segment = serde_json::from_value(segment.clone()).unwrap();
    assert_eq!(typed.size, 2);
    assert_eq!(serde_json::to_value(&typed).unwrap(), segment);
    redact_times(&mut segment);
    insta::assert_json_snapshot!("segment_view", segment);
}

#[test]
fn a_page_of_members() {
    let h = buyers();
    let mut page = h.get("/api/v1/segments/buyers/members?limit=1");
    let typed: Page<Member> = serde_json::from_value(page.clone()).unwrap();
    assert!(typed.next_cursor.is_some());
    assert_eq!(serde_json::to_value(&typed).unwrap(), page);
    redact_times(&mut page);
    insta::assert_json_snapshot!("member_page", page);
    let mut rest = h.get(&format!(
        "/api/v1/segments/buyers/members?cursor={}",
        typed.next_cursor.unwrap()
    ));
    redact_times(&mut rest);
    insta::assert_json_snapshot!("member_page_last", rest);
}

#[test]
fn a_page_of_audience_changes() {
    let h = buyers();
    let (status, _) = h.send(
        "DELETE",
        "/api/v1/segments/buyers",
        &h.admin_key,
        Vec::new(),
    );
    assert_eq!(status, 204);
    h.drain();
    let mut page = h.get("/api/v1/audience-changes?limit=10");
    let typed: FeedPage = serde_json::from_value(page.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), page);
    let seqs: Vec<u64> = typed.data.iter().map(|c: &AudienceChange| c.seq).collect();
    assert_eq!(typed.next_after, *seqs.last().unwrap());
    redact_times(&mut page);
    insta::assert_json_snapshot!("audience_change_page", page);
}

#[test]
fn definitions_refuse_unknown_fields_naming_them() {
    let h = Harness::new();
    let refuse = |path: &str, body: Value| {
        let (status, answer) = h.send("POST", path, &h.admin_key, body.to_string().into_bytes());
        json!({"status": status.as_u16(), "body": answer})
    };
    insta::assert_json_snapshot!(
        "segment_unknown_field",
        refuse(
            "/api/v1/segments",
            json!({"name": "x", "expression": "true", "descripton": "typo"})
        )
    );
    insta::assert_json_snapshot!(
        "computed_trait_unknown_field",
        refuse(
            "/api/v1/computed-traits",
            json!({"name": "x", "function": "count", "windw": "30d"})
        )
    );
}

/// A bad `window` (or `where`) of a structured computed trait is named as such, not as the
/// `expression` the client never sent.
#[test]
fn a_bad_window_names_the_window() {
    let h = Harness::new();
    let refuse = |body: Value| {
        let (status, answer) = h.send(
            "POST",
            "/api/v1/computed-traits",
            &h.admin_key,
            body.to_string().into_bytes(),
        );
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{answer}");
        answer["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        refuse(json!({"name": "x", "function": "count", "window": "soon"})),
        "window"
    );
    assert_eq!(
        refuse(json!({"name": "x", "function": "count", "where": "properties.x =="})),
        "where"
    );
}
