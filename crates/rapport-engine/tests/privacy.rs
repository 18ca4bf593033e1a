//! Deletion over a real embedded store, driven step by step: a person known through two
//! merged profiles is erased from the log, the index and everything derived, another
//! person is untouched, nothing of the deleted one is left in any file, and replaying the
//! surviving log into a new store does not bring them back.

mod common;

use common::{append, process, store};
use rapport_core::identity::IdentityRules;
use rapport_engine::EngineError;
use rapport_engine::identity::runner::SharedAppend;
use rapport_engine::privacy::deletion::PersonRequest;
use rapport_engine::privacy::{DeletionStatus, Privacy, eraser};
use rapport_engine::profiles::Profiles;
use rapport_store::{Appended, EventQuery, Store};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const NEEDLES: [&str; 4] = [
    "ann-7f3k",
    "anon-ann-91x",
    "ann.secret@example.com",
    "ultramarine-zx",
];

fn ann_and_bob() -> Vec<serde_json::Value> {
    vec![
        // Two profiles of Ann, then the event that merges them.
        json!({"type": "page", "anonymousId": "anon-ann-91x", "name": "Home",
               "timestamp": "2024-05-01T10:00:00Z"}),
        json!({"type": "identify", "userId": "ann-7f3k",
               "traits": {"email": "ann.secret@example.com", "colour": "ultramarine-zx"},
               "timestamp": "2024-05-01T10:01:00Z"}),
        json!({"type": "track", "userId": "ann-7f3k", "anonymousId": "anon-ann-91x",
               "event": "Order Completed", "properties": {"total": 30},
               "timestamp": "2024-05-01T10:02:00Z"}),
        json!({"type": "identify", "userId": "bob-2", "traits": {"email": "bob@example.com",
               "colour": "green"}, "timestamp": "2024-05-01T10:03:00Z"}),
        json!({"type": "track", "userId": "bob-2", "event": "Order Completed",
               "timestamp": "2024-05-01T10:04:00Z"}),
    ]
}

fn direct_append(store: Arc<dyn Store>) -> SharedAppend {
    Arc::new(move |items| {
        store
            .append(&items, chrono::Utc::now().timestamp_millis(), 86_400_000)
            .map_err(EngineError::from)
    })
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// Runs the processor, the indexer and the eraser until the request is done.
fn run_to_done(store: &Arc<dyn Store>, id: &str) -> rapport_engine::privacy::DeletionRecord {
    let append = direct_append(store.clone());
    let privacy = Privacy::new(store.clone()).unwrap();
    for _ in 0..50 {
        process(store);
        while rapport_engine::indexer::index_available(store.as_ref()).unwrap() > 0 {}
        eraser::tick(store, &append, chrono::Utc::now(), None).unwrap();
        let record = privacy.deletions.get(id).unwrap().unwrap();
        if record.status == DeletionStatus::Done {
            return record;
        }
    }
    panic!("the deletion did not finish");
}

#[test]
fn a_deleted_person_is_in_no_store_no_file_and_no_replay_and_others_keep_theirs() {
    let (dir, s) = store();
    append(s.as_ref(), &ann_and_bob());
    process(&s);
    while rapport_engine::indexer::index_available(s.as_ref()).unwrap() > 0 {}
    let profiles = Profiles { store: s.as_ref() };
    let ann = profiles.resolve("user_id:ann-7f3k").unwrap();
    assert_eq!(ann.merged_from.len(), 1, "Ann's two profiles were merged");

    let privacy = Privacy::new(s.clone()).unwrap();
    let record = privacy
        .deletions
        .request_person(
            PersonRequest {
                references: vec!["email:ann.secret@example.com".into()],
                suppress: true,
                requested_by: Some("key_test".into()),
            },
            &privacy.suppressions,
            chrono::Utc::now(),
        )
        .unwrap();
    let done = run_to_done(&s, &record.id);
    let removed = |store: &str| {
        done.receipt
            .iter()
            .find(|l| l.store == store)
            .map_or(0, |l| l.removed)
    };
    // Three events of Ann's and the request's own control entry.
    assert_eq!(removed("log"), 4, "{:?}", done.receipt);
    assert_eq!(removed("event index"), 3);
    assert_eq!(removed("profiles"), 2);
    assert!(removed("timelines") >= 3);
    assert!(done.subject.is_none());
    assert_eq!(done.subject_hashes.len(), 1);

    for reference in [
        "user_id:ann-7f3k",
        "anonymous_id:anon-ann-91x",
        "email:ann.secret@example.com",
    ] {
        assert!(
            matches!(profiles.resolve(reference), Err(EngineError::NotFound(_))),
            "{reference} still resolves"
        );
    }
    let by_user = |user: &str| {
        s.query(&EventQuery {
            user_id: Some(user.into()),
            limit: 100,
            ..EventQuery::default()
        })
        .unwrap()
        .events
        .len()
    };
    assert_eq!(by_user("ann-7f3k"), 0);
    // Bob keeps everything.
    assert_eq!(by_user("bob-2"), 2);
    let bob = profiles.resolve("email:bob@example.com").unwrap();
    assert_eq!(bob.traits.traits["colour"].value, json!("green"));

    // Suppressed: Ann's new events are recognised (ingest drops them).
    let again = rapport_core::event::Event::from_json(
        br#"{"type":"track","event":"x","userId":"u","properties":{"email":"ann.secret@example.com"},"messageId":"m","timestamp":"2024-01-01T00:00:00Z","receivedAt":"2024-01-01T00:00:00Z","sourceId":"src"}"#,
    )
    .unwrap();
    assert!(privacy.suppressions.event(&again));

    // A clean restart, then every file of the data directory.
    let log: Vec<(u64, Vec<u8>)> = s.read_after(0, 10_000).unwrap();
    drop(privacy);
    drop(s);
    for needle in NEEDLES {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} is still on disk"
        );
    }

    // Replaying what the log holds into a new store brings nobody back.
    let (_d2, replay) = store();
    let items: Vec<rapport_store::AppendItem> = log
        .into_iter()
        .map(|(o, payload)| rapport_store::AppendItem {
            dedup_key: format!("replay-{o}").into_bytes(),
            payload,
        })
        .collect();
    let out = replay
        .append(&items, 1_717_200_000_000, 86_400_000)
        .unwrap();
    assert!(out.iter().all(|o| matches!(o, Appended::Stored(_))));
    rapport_engine::processor::Processor::new(replay.clone(), IdentityRules::default())
        .run_to_end()
        .unwrap();
    let replayed = Profiles {
        store: replay.as_ref(),
    };
    assert!(replayed.resolve("user_id:ann-7f3k").is_err());
    assert!(replayed.resolve("email:ann.secret@example.com").is_err());
    assert!(replayed.resolve("user_id:bob-2").is_ok());
}

#[test]
fn events_of_a_source_in_a_range_are_erased_and_the_rest_kept() {
    let (_dir, s) = store();
    common::append_at(s.as_ref(), &ann_and_bob()[..3], "2024-06-01T00:00:00Z");
    common::append_at(s.as_ref(), &ann_and_bob()[3..], "2024-06-02T00:00:00Z");
    process(&s);
    while rapport_engine::indexer::index_available(s.as_ref()).unwrap() > 0 {}
    let privacy = Privacy::new(s.clone()).unwrap();
    let at = |t: &str| rapport_core::event::parse_timestamp(t).unwrap();
    let bad = privacy.deletions.request_events(
        "src",
        at("2024-06-02T00:00:00Z"),
        at("2024-06-01T00:00:00Z"),
        None,
        chrono::Utc::now(),
    );
    assert!(matches!(bad, Err(EngineError::Invalid { field: "to", .. })));
    let record = privacy
        .deletions
        .request_events(
            "src",
            at("2024-06-01T00:00:00Z"),
            at("2024-06-01T12:00:00Z"),
            None,
            chrono::Utc::now(),
        )
        .unwrap();
    let done = run_to_done(&s, &record.id);
    assert_eq!(
        done.receipt
            .iter()
            .find(|l| l.store == "log")
            .unwrap()
            .removed,
        3
    );
    let erased: Vec<u64> = s
        .read_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|(_, p)| p.as_slice() == b"{}")
        .map(|(o, _)| o)
        .collect();
    assert_eq!(erased, vec![1, 2, 3]);
}

#[test]
fn a_sources_retention_erases_what_is_older_once_a_day_and_keeps_the_rest() {
    let (_dir, s) = store();
    common::append_at(s.as_ref(), &ann_and_bob()[..3], "2024-06-01T00:00:00Z");
    common::append_at(s.as_ref(), &ann_and_bob()[3..], "2024-06-20T00:00:00Z");
    process(&s);
    let now = rapport_core::event::parse_timestamp("2024-06-25T00:00:00Z").unwrap();
    let append = direct_append(s.clone());
    // No limit: nothing goes.
    eraser::tick(&s, &append, now, None).unwrap();
    let erased = |s: &Arc<dyn Store>| {
        s.read_after(0, 100)
            .unwrap()
            .into_iter()
            .filter(|(_, p)| p.as_slice() == b"{}")
            .count()
    };
    assert_eq!(erased(&s), 0);
    s.put_source(&rapport_store::Source {
        id: "src".into(),
        name: "web".into(),
        created_at_ms: 0,
        settings: rapport_store::SourceSettings {
            retention_days: Some(10),
            ..Default::default()
        },
    })
    .unwrap();
    // Within the day since the last run: not yet.
    eraser::tick(&s, &append, now + chrono::Duration::hours(1), None).unwrap();
    assert_eq!(erased(&s), 0);
    let later = now + chrono::Duration::days(1);
    eraser::tick(&s, &append, later, None).unwrap();
    assert_eq!(erased(&s), 3, "the events older than ten days");
    let list = Privacy::new(s.clone()).unwrap().deletions.list().unwrap();
    let run = list
        .iter()
        .find(|r| r.kind == "retention")
        .expect("a retention record");
    assert_eq!(run.status, DeletionStatus::Done);
    assert_eq!(
        run.receipt
            .iter()
            .find(|l| l.store == "log")
            .unwrap()
            .removed,
        3
    );
    // The next run reads from its watermark and finds nothing new to erase.
    eraser::tick(&s, &append, later + chrono::Duration::days(1), None).unwrap();
    assert_eq!(erased(&s), 3);
    assert_eq!(
        Privacy::new(s.clone())
            .unwrap()
            .deletions
            .list()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn profiles_without_activity_for_the_expiry_are_deleted_and_active_ones_kept() {
    let (dir, s) = store();
    // Ann's events are from May; Bob is seen again in late June.
    append(s.as_ref(), &ann_and_bob());
    append(
        s.as_ref(),
        &[json!({"type": "track", "userId": "bob-2", "event": "Back",
                 "timestamp": "2024-06-28T00:00:00Z"})],
    );
    process(&s);
    let now = rapport_core::event::parse_timestamp("2024-07-01T00:00:00Z").unwrap();
    let append_fn = direct_append(s.clone());
    let privacy = Privacy::new(s.clone()).unwrap();
    for _ in 0..50 {
        eraser::tick(&s, &append_fn, now, Some(30)).unwrap();
        process(&s);
        while rapport_engine::indexer::index_available(s.as_ref()).unwrap() > 0 {}
        let all = privacy.deletions.list().unwrap();
        if all
            .iter()
            .any(|r| r.kind == "expiry" && r.status == DeletionStatus::Done)
        {
            break;
        }
    }
    let record = privacy
        .deletions
        .list()
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "expiry")
        .expect("an expiry request");
    assert_eq!(record.status, DeletionStatus::Done, "{record:?}");
    let profiles = Profiles { store: s.as_ref() };
    assert!(profiles.resolve("user_id:ann-7f3k").is_err());
    assert!(profiles.resolve("user_id:bob-2").is_ok());
    drop(privacy);
    drop(s);
    assert!(files_containing(dir.path(), "ann.secret@example.com").is_empty());
}
