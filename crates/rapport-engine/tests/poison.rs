//! A log entry that a store refuses to take (a value it cannot represent) must not stop a
//! consumer for good: it becomes a dead letter, and every entry after it is indexed and
//! processed. Run on both stores; the poison is appended directly, past ingest's checks, as
//! an older version or a restored backup could have left it.

mod common;

use rapport_engine::dead_letters;
use rapport_engine::indexer::{self, index_available};
use rapport_engine::processor;
use rapport_store::{AppendItem, EventQuery, Store};
use std::sync::Arc;

fn stores() -> Vec<(&'static str, Option<tempfile::TempDir>, Arc<dyn Store>)> {
    let (dir, embedded) = common::store();
    let url = rapport_store::testing::TestPostgres::shared().create_database();
    let pg: Arc<dyn Store> = Arc::new(rapport_store::postgres::PostgresStore::open(&url).unwrap());
    vec![("embedded", Some(dir), embedded), ("postgres", None, pg)]
}

fn event(id: &str, user: &str, group: Option<&str>) -> Vec<u8> {
    let group = group.map_or(String::new(), |g| format!(r#","groupId":"{g}""#));
    format!(
        r#"{{"messageId":"{id}","type":"{}","userId":"{user}"{group},"event":"E","timestamp":"2024-06-01T00:00:00.000Z","receivedAt":"2024-06-01T00:00:00.000Z","sourceId":"src"}}"#,
        if group.is_empty() { "track" } else { "group" }
    )
    .into_bytes()
}

#[test]
fn an_entry_the_store_refuses_becomes_a_dead_letter_and_consumers_go_on() {
    for (name, _dir, store) in stores() {
        let entries = [
            event("ok-1", "before", None),
            // A NUL in text columns and partition keys: PostgreSQL's text cannot hold it.
            event("poison", "x\\u0000y", Some("g\\u0000")),
            event("ok-2", "after", None),
        ];
        let items: Vec<AppendItem> = entries
            .iter()
            .enumerate()
            .map(|(i, p)| AppendItem {
                dedup_key: format!("k{i}").into_bytes(),
                payload: p.clone(),
            })
            .collect();
        store.append(&items, 0, 1).unwrap();

        while index_available(store.as_ref()).unwrap() > 0 {}
        common::process(&store);
        assert_eq!(
            store.consumer_offset(indexer::CONSUMER).unwrap(),
            3,
            "{name}"
        );
        assert_eq!(
            store.consumer_offset(processor::CONSUMER).unwrap(),
            3,
            "{name}"
        );

        for user in ["before", "after"] {
            let page = store
                .query(&EventQuery {
                    user_id: Some(user.into()),
                    limit: 10,
                    ..EventQuery::default()
                })
                .unwrap();
            assert_eq!(page.events.len(), 1, "{name}: {user} indexed");
            let profiles = rapport_engine::profiles::Profiles {
                store: store.as_ref(),
            };
            assert!(
                profiles.resolve(&format!("user_id:{user}")).is_ok(),
                "{name}: {user} profiled"
            );
        }
        // On PostgreSQL the indexer cannot store the NUL: a dead letter, not a stop. The
        // embedded store takes any bytes, so there the entry is simply indexed.
        let letters = dead_letters::list(store.as_ref(), indexer::CONSUMER, None, 10).unwrap();
        match name {
            "postgres" => {
                assert_eq!(letters.len(), 1, "{letters:?}");
                assert_eq!(letters[0].offset, 2);
                assert!(letters[0].error.contains("22021"), "{letters:?}");
            }
            _ => assert!(letters.is_empty(), "{letters:?}"),
        }
        // The processor's writes for it (the account keyed by the group id) are refused too:
        // the batch is taken apart, the entry recorded, the others applied.
        let letters = dead_letters::list(store.as_ref(), processor::CONSUMER, None, 10).unwrap();
        match name {
            "postgres" => {
                assert_eq!(letters.len(), 1, "{letters:?}");
                assert_eq!(letters[0].offset, 2);
                assert!(letters[0].error.contains("refused"), "{letters:?}");
            }
            _ => assert!(letters.is_empty(), "{letters:?}"),
        }
    }
}
