//! Computed traits and segments maintained by the processor equal a full recomputation from
//! each profile's event history, on random event streams (with merges and events stamped in
//! the future) processed at random, advancing clocks.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::append;
use proptest::prelude::*;
use rapport_core::audience::{
    HistoryEvent, ProfileSnapshot, Schema, compile, compute_aggregate, evaluate,
};
use rapport_core::event::parse_timestamp;
use rapport_core::identity::IdentityRules;
use rapport_engine::audiences::definitions::{
    ComputedTraitSpec, Definitions, SegmentSpec, value_type,
};
use rapport_engine::audiences::profile::history_event;
use rapport_engine::audiences::store::Audiences;
use rapport_engine::processor::Processor;
use rapport_engine::profiles::{ProfileRecord, Profiles, profile_id_for};
use rapport_store::Store;
use rapport_store::embedded::EmbeddedStore;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const BASE: &str = "2024-05-01T00:00:00Z";

fn base() -> DateTime<Utc> {
    parse_timestamp(BASE).unwrap()
}

const TRAITS: [(&str, &str); 4] = [
    (
        "orders_2h",
        "count(event == \"Order Completed\", within 2h)",
    ),
    (
        "revenue",
        "sum(properties.revenue, event == \"Order Completed\")",
    ),
    (
        "categories",
        "unique(properties.category, event == \"Order Completed\")",
    ),
    (
        "top_page",
        "most_frequent(properties.page, event == \"Viewed\", within 3h)",
    ),
];

/// In dependency order.
const SEGMENTS: [(&str, &str); 5] = [
    ("active", "computed.orders_2h >= 1"),
    (
        "pro_buyer",
        "traits.plan == \"pro\" and count(event == \"Order Completed\", within 90m) >= 2",
    ),
    ("big", "computed.revenue > 100"),
    (
        "lapsed",
        "computed.revenue > 0 and not in_segment(\"active\")",
    ),
    (
        "browsing",
        "has_identifier(\"email\") and exists(event == \"Viewed\", within 30m)",
    ),
];

fn define(store: &dyn Store) {
    let defs = Definitions { store };
    for (name, expression) in TRAITS {
        defs.put_trait(
            &ComputedTraitSpec {
                name: name.into(),
                expression: Some(expression.into()),
                ..Default::default()
            },
            0,
        )
        .unwrap();
    }
    for (name, expression) in SEGMENTS {
        defs.put_segment(
            &SegmentSpec {
                name: name.into(),
                description: None,
                expression: expression.into(),
            },
            0,
        )
        .unwrap();
    }
}

/// The membership and values a profile must have at `now`, computed from scratch.
fn expected(
    store: &dyn Store,
    record: &ProfileRecord,
    now: DateTime<Utc>,
) -> (BTreeSet<String>, Map<String, Value>) {
    let profiles = Profiles { store };
    let mut offsets = Vec::new();
    for p in profiles.lineage(record).unwrap() {
        offsets.extend(profiles.timeline_offsets(&p).unwrap());
    }
    offsets.sort_unstable();
    let events: Vec<HistoryEvent> = offsets
        .iter()
        .map(|o| {
            let payload = store.get(*o).unwrap().unwrap();
            history_event(&rapport_core::event::Event::from_json(&payload).unwrap())
        })
        .collect();
    let mut schema = Schema::new();
    let mut computed = Map::new();
    for (name, expression) in TRAITS {
        let expr = rapport_core::audience::parse(expression).unwrap();
        let agg = expr.event_aggregates().remove(0);
        schema = schema.with_computed_trait(name, value_type(agg.function));
        computed.insert(name.into(), compute_aggregate(&agg, &events, now));
    }
    for (name, _) in SEGMENTS {
        schema = schema.with_segment(name);
    }
    let mut identifiers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &record.identifiers {
        identifiers
            .entry(r.identifier.kind.as_str().to_owned())
            .or_default()
            .push(r.identifier.value.clone());
    }
    let mut snapshot = ProfileSnapshot {
        traits: record.traits.values(),
        computed: computed
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        identifiers,
        events,
        ..ProfileSnapshot::default()
    };
    for (name, expression) in SEGMENTS {
        let checked = compile(expression, &schema, Some(name)).unwrap();
        if evaluate(&checked.expr, &snapshot, now).unwrap() {
            snapshot.segments.insert(name.to_owned());
        }
    }
    (snapshot.segments, computed)
}

fn check_all(store: &dyn Store, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let profiles = Profiles { store };
    let audiences = Audiences { store };
    for o in 1..=store.last_offset().unwrap() {
        let Some(record) = profiles.record(&profile_id_for(o)).unwrap() else {
            continue;
        };
        if record.merged_into.is_some() {
            prop_assert!(audiences.profile(record.id.as_str()).unwrap().is_none());
            continue;
        }
        let audience = audiences.profile(record.id.as_str()).unwrap().unwrap();
        let (segments, values) = expected(store, &record, now);
        let actual: BTreeSet<String> = audience.segments.keys().cloned().collect();
        prop_assert_eq!(&actual, &segments, "segments of {} at {}", record.id, now);
        for (name, value) in values {
            prop_assert_eq!(
                audience.values.get(&name).unwrap_or(&Value::Null),
                &value,
                "{} of {} at {}",
                name,
                record.id,
                now
            );
        }
        // The member index agrees with the profiles.
        for s in &segments {
            prop_assert!(
                store
                    .state_get("segment.member", s, record.id.as_str().as_bytes())
                    .unwrap()
                    .is_some()
            );
        }
    }
    let meta = audiences.meta().unwrap();
    for (name, _) in SEGMENTS {
        let members = audiences.members(name, None, 10_000).unwrap().0.len() as u64;
        prop_assert_eq!(
            meta.sizes.get(name).copied().unwrap_or(0),
            members,
            "size of {}",
            name
        );
    }
    Ok(())
}

fn random_stream() -> impl Strategy<Value = Vec<Value>> {
    let user = prop::option::of(prop::sample::select(vec!["u1", "u2", "u3"]));
    let anon = prop::sample::select(vec!["a1", "a2", "a3", "a4"]);
    let email = prop::option::of(prop::sample::select(vec!["x@e.com", "y@e.com"]));
    let kind = prop::sample::select(vec!["identify", "order", "view", "view"]);
    let plan = prop::sample::select(vec!["free", "pro"]);
    let minute = 0i64..300;
    let amount = 0u32..80;
    let label = prop::sample::select(vec!["shoes", "hats", "home"]);
    prop::collection::vec(
        (kind, user, anon, email, plan, minute, amount, label),
        1..30,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .map(|(kind, user, anon, email, plan, minute, amount, label)| {
                let at = base() + TimeDelta::minutes(minute);
                let mut m = json!({
                    "anonymousId": anon,
                    "timestamp": at.to_rfc3339(),
                });
                if let Some(u) = user {
                    m["userId"] = json!(u);
                }
                match kind {
                    "identify" => {
                        m["type"] = json!("identify");
                        m["traits"] = json!({"plan": plan});
                        if let Some(e) = email {
                            m["traits"]["email"] = json!(e);
                        }
                    }
                    "order" => {
                        m["type"] = json!("track");
                        m["event"] = json!("Order Completed");
                        m["properties"] = json!({"revenue": amount, "category": label});
                    }
                    _ => {
                        m["type"] = json!("track");
                        m["event"] = json!("Viewed");
                        m["properties"] = json!({"page": label});
                    }
                }
                m
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// After every round (some events, then a jump of the clock), every profile's computed
    /// traits and segments equal a recomputation from its whole history at that instant,
    /// and the member index and sizes agree.
    #[test]
    fn incremental_evaluation_equals_recomputation(
        events in random_stream(),
        rounds in prop::collection::vec((0usize..8, 0i64..100), 1..8),
        define_after in 0usize..3,
        batch in 1usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let clock = Arc::new(Mutex::new(base()));
        let c = clock.clone();
        let mut processor = Processor::new(store.clone(), IdentityRules::default())
            .with_batch_size(batch)
            .with_clock(Arc::new(move || *c.lock().unwrap()));
        let mut rest = events.as_slice();
        for (i, (n, minutes)) in rounds.iter().enumerate() {
            // Definitions arrive after some history exists: the backfill must catch up.
            if i == define_after {
                define(store.as_ref());
            }
            let (now_events, later) = rest.split_at((*n).min(rest.len()));
            rest = later;
            append(store.as_ref(), now_events);
            let now = {
                let mut t = clock.lock().unwrap();
                *t += TimeDelta::minutes(*minutes);
                *t
            };
            processor.run_to_end().unwrap();
            if i >= define_after {
                check_all(store.as_ref(), now)?;
            }
        }
    }
}
