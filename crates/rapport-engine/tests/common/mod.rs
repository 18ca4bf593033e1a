//! Helpers shared by the engine's integration tests.

use rapport_core::event::{Limits, ParsedRequest, Stamp, parse_timestamp};
use rapport_store::{AppendItem, Store};
use serde_json::{Value, json};

/// Appends Segment messages (a JSON array) to the log as ingest would.
#[allow(dead_code)]
pub fn append(store: &dyn Store, messages: &[Value]) {
    append_at(store, messages, "2024-06-01T00:00:00Z");
}

/// Appends Segment messages as ingest would have received them at `received_at`.
#[allow(dead_code)]
pub fn append_at(store: &dyn Store, messages: &[Value], received_at: &str) {
    if messages.is_empty() {
        return;
    }
    let body = json!({ "batch": messages }).to_string();
    let limits = Limits::default();
    let req = ParsedRequest::batch(body.as_bytes(), &limits).unwrap();
    let stamp = Stamp {
        received_at: parse_timestamp(received_at).unwrap(),
        source_id: "src",
    };
    let mut n = store.last_offset().unwrap();
    let mut ids = || {
        n += 1;
        format!("gen-{n}")
    };
    let items: Vec<AppendItem> = req
        .events(&stamp, &limits, &mut ids)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            AppendItem {
                dedup_key: e.dedup_key(),
                payload: e.to_json(),
            }
        })
        .collect();
    store.append(&items, 1_717_200_000_000, 86_400_000).unwrap();
}

/// A fresh embedded store in a temporary directory (kept alive by the returned guard).
#[allow(dead_code)]
pub fn store() -> (tempfile::TempDir, std::sync::Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(rapport_store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    (dir, store)
}

/// Runs a processor with the default identity rules to the end of the log.
#[allow(dead_code)]
pub fn process(store: &std::sync::Arc<dyn Store>) {
    rapport_engine::processor::Processor::new(
        store.clone(),
        rapport_core::identity::IdentityRules::default(),
    )
    .run_to_end()
    .unwrap();
}
