//! The rule of ingest: what the tracking API acknowledges, every later stage can read.
//!
//! Arbitrary payloads — ids as strings and as numbers of any size, blank ids, timestamps
//! across and beyond the stored range, skewed client clocks, lone surrogates, unknown
//! top-level fields — go through the real router, the log writer, the indexer and the
//! processor. Every message the API acknowledged must then be listed by
//! `GET /api/v1/events` and be on the timeline of the profile its id names.

mod support;

use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::Harness;

/// Percent-encodes a path segment (every byte but the unreserved ones).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// JSON text of an identifier: strings (with blanks, padding, any characters), numbers of
/// any size and form.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9@._-]{1,12}".prop_map(|s| json!(s).to_string()),
        2 => "\\PC{1,16}".prop_map(|s| json!(s).to_string()),
        1 => "[ \t]{0,3}".prop_map(|s| json!(s).to_string()),
        1 => " [a-z]{1,6} ".prop_map(|s| json!(s).to_string()),
        1 => "[1-9][0-9]{0,30}",
        1 => "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?(e[+-]?[0-9]{1,2})?",
        1 => Just("null".to_owned()),
    ]
}

fn millis_text(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    json!(t.to_rfc3339()).to_string()
}

/// JSON text of a client time, from before 1970 to beyond year 9999.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1_600_000_000_000i64..1_900_000_000_000).prop_map(millis_text),
        2 => (-2_000_000_000_000i64..253_402_300_799_000).prop_map(millis_text),
        1 => Just(r#""9999-12-31T23:59:59.999Z""#.to_owned()),
        1 => Just(r#""0001-01-01""#.to_owned()),
        1 => Just(r#""+10000-01-01T00:00:00Z""#.to_owned()),
        1 => Just(r#""2024-05-01 10:00:00+0200""#.to_owned()),
    ]
}

/// A trait value, written as raw JSON text so that it can hold escapes no encoder would
/// produce (lone surrogates).
fn trait_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}".prop_map(|s| json!(s).to_string()),
        Just(r#""Loves \ud83d""#.to_owned()),
        Just(r#""\udc00 and \ud83d\ude00""#.to_owned()),
        Just(r#""\\ud83d is text""#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1e400".to_owned()),
    ]
}

#[derive(Debug, Clone)]
struct Message {
    kind: &'static str,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    timestamp: Option<String>,
    original_timestamp: Option<String>,
    sent_at: Option<String>,
    trait_value: String,
    extra: bool,
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop::sample::select(vec![
            "track", "identify", "page", "screen", "group", "alias",
        ]),
        proptest::option::weighted(0.8, id_text()),
        proptest::option::weighted(0.5, id_text()),
        proptest::option::weighted(0.4, time_text()),
        proptest::option::weighted(0.2, time_text()),
        proptest::option::weighted(0.4, time_text()),
        trait_text(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, user_id, anonymous_id, timestamp, original_timestamp, sent_at, t, extra)| {
                Message {
                    kind,
                    user_id,
                    anonymous_id,
                    timestamp,
                    original_timestamp,
                    sent_at,
                    trait_value: t,
                    extra,
                }
            },
        )
}

impl Message {
    fn json(&self, message_id: &str) -> String {
        let mut fields = vec![
            format!(r#""type":"{}""#, self.kind),
            format!(r#""messageId":"{message_id}""#),
            r#""event":"Clicked""#.to_owned(),
            r#""groupId":"g-1""#.to_owned(),
            r#""previousId":"prev-1""#.to_owned(),
            format!(
                r#""traits":{{"bio":{},"sent_as":"{message_id}"}}"#,
                self.trait_value
            ),
            format!(r#""properties":{{"note":{}}}"#, self.trait_value),
        ];
        for (name, v) in [
            ("userId", &self.user_id),
            ("anonymousId", &self.anonymous_id),
            ("timestamp", &self.timestamp),
            ("originalTimestamp", &self.original_timestamp),
            ("sentAt", &self.sent_at),
        ] {
            if let Some(v) = v {
                fields.push(format!(r#""{name}":{v}"#));
            }
        }
        if self.extra {
            fields.push(r#""channel":"server","rudderId":"r-1""#.to_owned());
        }
        format!("{{{}}}", fields.join(","))
    }
}

/// The identifier reference (`user_id:…`) of the profile an accepted event must be on,
/// from the stored event.
fn reference(stored: &Value) -> Option<String> {
    let blocked = rapport_core::identity::IdentityRules::default();
    for (field, kind) in [("userId", "user_id"), ("anonymousId", "anonymous_id")] {
        if let Some(v) = stored[field].as_str()
            && !blocked.is_blocked(v)
        {
            return Some(format!("{kind}:{v}"));
        }
    }
    None
}

#[test]
fn every_acknowledged_event_is_listed_and_on_its_profile() {
    let h = Harness::new();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let (checked, on_profiles) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    let config = ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    };
    proptest!(config, |(messages in proptest::collection::vec(message(), 1..8))| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = (0..messages.len()).map(|i| format!("m-{case}-{i}")).collect();
        let batch: Vec<String> = messages.iter().zip(&ids).map(|(m, id)| m.json(id)).collect();
        let body = format!(r#"{{"batch":[{}]}}"#, batch.join(","));
        let (status, answer) = h.send("POST", "/v1/batch", &h.write_key, body.into_bytes());
        if !status.is_success() {
            prop_assert!(status.is_client_error(), "{status}: {answer}");
            return Ok(());
        }
        let rejected: Vec<u64> = answer["rejected"]
            .as_array()
            .map(|r| r.iter().map(|i| i["index"].as_u64().unwrap()).collect())
            .unwrap_or_default();
        h.drain();
        let listed = h.get("/api/v1/events?limit=1000");
        for (i, id) in ids.iter().enumerate() {
            if rejected.contains(&(i as u64)) {
                continue;
            }
            let stored = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["messageId"] == id.as_str());
            prop_assert!(stored.is_some(), "acknowledged {} is not listed: {}", id, batch[i]);
            let stored = stored.unwrap();
            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(r) = reference(stored) {
                let timeline = h.get(&format!("/api/v1/profiles/{}/events?limit=1000", encode(&r)));
                let on_profile = timeline["data"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|e| e["messageId"] == id.as_str()));
                prop_assert!(on_profile, "acknowledged {} is not on {}: {}", id, r, batch[i]);
                on_profiles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if messages[i].kind == "identify" {
                    // Its traits reached the profile: each identify of a batch names its
                    // message in `sent_as`, so the profile holds one of this batch's values
                    // (last-write-wins by event time picks which).
                    let profile = h.get(&format!("/api/v1/profiles/{}", encode(&r)));
                    let sent_as = profile["traits"]["sent_as"].as_str().unwrap_or("");
                    prop_assert!(
                        sent_as.starts_with(&format!("m-{case}-")),
                        "{} has sent_as {:?} after {}", r, sent_as, batch[i]
                    );
                }
            }
        }
        // Nothing acknowledged was recorded as unreadable by a stage.
        let dead = h.get("/api/v1/dead-letters");
        prop_assert_eq!(dead["data"].as_array().map(Vec::len), Some(0), "{}", dead);
    });
    // The generator must reach the interesting cases, not only refusals.
    let (checked, on_profiles) = (checked.into_inner(), on_profiles.into_inner());
    eprintln!("{checked} acknowledged events checked, {on_profiles} on their profiles");
    assert!(
        checked >= 60 && on_profiles >= 40,
        "{checked} / {on_profiles}"
    );
}

/// A log entry no stage can read (written by another version, restored from a damaged
/// backup) neither stops the pipeline nor disappears: each consumer records it, the API
/// lists it with the entry, and the events after it are indexed and profiled.
#[test]
fn unreadable_log_entries_become_dead_letters_and_the_pipeline_goes_on() {
    let h = Harness::new();
    let bad_time = br#"{"messageId":"x","type":"track","userId":"u","event":"E","timestamp":"+10000-01-01T00:00:00.000Z","receivedAt":"2024-01-01T00:00:00.000Z","sourceId":"s"}"#;
    h.store
        .append(
            &[
                rapport_store::AppendItem {
                    dedup_key: b"garbage".to_vec(),
                    payload: b"not json at all".to_vec(),
                },
                rapport_store::AppendItem {
                    dedup_key: b"bad-time".to_vec(),
                    payload: bad_time.to_vec(),
                },
            ],
            0,
            1,
        )
        .unwrap();
    let (status, _) = h.send(
        "POST",
        "/v1/track",
        &h.write_key,
        br#"{"userId":"after","event":"Later","messageId":"later-1"}"#.to_vec(),
    );
    assert_eq!(status, StatusCode::OK);
    h.drain();

    let dead = h.get("/api/v1/dead-letters");
    let letters = dead["data"].as_array().unwrap();
    let by = |consumer: &str| -> Vec<u64> {
        letters
            .iter()
            .filter(|l| l["consumer"] == consumer)
            .map(|l| l["offset"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(by("event-indexer"), vec![1, 2], "{dead}");
    assert_eq!(by("processor"), vec![1, 2], "{dead}");
    assert_eq!(letters[0]["entry"], "not json at all");
    assert!(
        letters
            .iter()
            .all(|l| !l["error"].as_str().unwrap().is_empty())
    );
    let only = h.get("/api/v1/dead-letters?consumer=processor&limit=1");
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let next = only["next_cursor"].as_str().unwrap().to_owned();
    let rest = h.get(&format!(
        "/api/v1/dead-letters?consumer=processor&cursor={next}"
    ));
    assert_eq!(rest["data"][0]["offset"], 2, "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null);
    let (status, body) = h.send(
        "GET",
        "/api/v1/dead-letters?consumer=nobody",
        &h.admin_key,
        vec![],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "consumer");

    // The pipeline went past them.
    let timeline = h.get("/api/v1/profiles/user_id:after/events");
    assert_eq!(timeline["data"][0]["messageId"], "later-1");
    let listed = h.get("/api/v1/events?userId=after");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}
