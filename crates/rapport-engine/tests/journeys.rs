//! Journeys decided by the processor: entries, waits that time out through the durable
//! timer index, exits, goals, trait changes on the profile, actions in the feed, flow
//! counts and the timeline — and the same decisions whether the processor runs straight
//! through or is stopped and started again at every batch, as after a `kill -9`, on the
//! embedded store and on PostgreSQL.

mod common;

use chrono::{DateTime, Utc};
use common::append;
use rapport_core::identity::IdentityRules;
use rapport_engine::audiences::definitions::{Definitions, SegmentSpec};
use rapport_engine::journeys::{JourneyAction, Journeys};
use rapport_engine::processor::Processor;
use rapport_engine::profiles::{Profiles, TimelineItem};
use rapport_journeys::JourneySpec;
use rapport_store::Store;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn abandoned_cart() -> JourneySpec {
    serde_json::from_value(json!({
        "name": "abandoned_cart",
        "entry": {"type": "event", "condition": "event == \"Cart Updated\""},
        "reentry": {"type": "per_key", "property": "cart_id"},
        "goal": {"event": "event == \"Order Completed\"", "within": "1d",
                 "match_entry_property": "cart_id"},
        "exits": [{"name": "unsubscribed", "event": "event == \"Unsubscribed\""}],
        "start": "wait_for_order",
        "nodes": {
            "wait_for_order": {"type": "wait_for_event", "timeout": "4h", "timeout_next": "remind",
                "branches": [{"name": "ordered", "condition": "event == \"Order Completed\"",
                              "match_entry_property": "cart_id"}]},
            "remind": {"type": "send", "destination": "email", "next": "mark"},
            "mark": {"type": "set_trait", "trait": "cart_reminded", "value": true}
        }
    }))
    .unwrap()
}

fn onboarding() -> JourneySpec {
    serde_json::from_value(json!({
        "name": "onboarding",
        "entry": {"type": "segment_entered", "segment": "pro"},
        "start": "day_one",
        "nodes": {
            "day_one": {"type": "wait", "duration": "1d", "next": "welcome"},
            "welcome": {"type": "emit", "event": "Pro Welcome Due", "properties": {"plan": "pro"}}
        }
    }))
    .unwrap()
}

fn track(user: &str, event: &str, cart: Option<&str>, n: usize) -> Value {
    let mut m = json!({"type": "track", "userId": user, "event": event, "messageId": format!("m{n}"),
                       "timestamp": "2024-06-01T00:00:00Z"});
    if let Some(c) = cart {
        m["properties"] = json!({"cart_id": c});
    }
    m
}

/// What happens, in batches, with the clock at each step.
fn scenario() -> Vec<(DateTime<Utc>, Vec<Value>)> {
    vec![
        (
            t("2026-03-02T10:00:00Z"),
            vec![
                track("ann", "Cart Updated", Some("c1"), 1),
                track("bob", "Cart Updated", Some("c9"), 2),
                json!({"type": "identify", "userId": "cy", "traits": {"plan": "pro"}, "messageId": "m3",
                       "timestamp": "2024-06-01T00:00:00Z"}),
            ],
        ),
        (
            t("2026-03-02T11:00:00Z"),
            vec![
                track("ann", "Cart Updated", Some("c1"), 4),
                track("bob", "Order Completed", Some("c9"), 5),
                track("ann", "Cart Updated", Some("c2"), 6),
            ],
        ),
        (
            t("2026-03-02T12:00:00Z"),
            vec![track("ann", "Unsubscribed", None, 7)],
        ),
        (t("2026-03-02T14:30:00Z"), vec![]),
        (t("2026-03-03T11:00:00Z"), vec![]),
    ]
}

struct Run {
    _dir: Option<tempfile::TempDir>,
    store: Arc<dyn Store>,
}

/// A fresh embedded store, or a database of the shared PostgreSQL server the tests start,
/// with the webhook destinations `email`, `sms` and `csm` the journeys send to (no delivery worker runs
/// here: the action feed is what is checked).
fn new_store(postgres: bool) -> (Option<tempfile::TempDir>, Arc<dyn Store>) {
    let (dir, store) = if postgres {
        let url = rapport_store::testing::TestPostgres::shared().create_database();
        let store: Arc<dyn Store> =
            Arc::new(rapport_store::postgres::PostgresStore::open(&url).unwrap());
        (None, store)
    } else {
        let (dir, store) = common::store();
        (Some(dir), store)
    };
    for name in ["email", "sms", "csm"] {
        let spec = serde_json::from_value(json!({"name": name,
            "kind": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}))
        .unwrap();
        rapport_engine::destinations::create(store.as_ref(), spec, 0).unwrap();
    }
    (dir, store)
}

/// A processor on `store` reading the time from `now`; with `restart`, one that takes a
/// log entry per step (each step then runs on a processor made afresh, see [`drain`]).
fn clocked(store: &Arc<dyn Store>, now: &Arc<Mutex<DateTime<Utc>>>, restart: bool) -> Processor {
    let now = now.clone();
    let p = Processor::new(store.clone(), IdentityRules::default())
        .with_clock(Arc::new(move || *now.lock().unwrap()));
    if restart { p.with_batch_size(1) } else { p }
}

/// Processes the log to its end; with `restart`, on a new processor at every step, as
/// after a restart between any two batches.
fn drain(
    processor: &mut Processor,
    store: &Arc<dyn Store>,
    now: &Arc<Mutex<DateTime<Utc>>>,
    restart: bool,
) {
    if restart {
        loop {
            *processor = clocked(store, now, restart);
            if processor.step().unwrap() == 0 {
                break;
            }
        }
    } else {
        processor.run_to_end().unwrap();
    }
}

/// A new store with the segment `pro`, the scenario's two journeys drafted, and those of
/// `live` published.
fn scenario_store(postgres: bool, live: &[&str]) -> (Option<tempfile::TempDir>, Arc<dyn Store>) {
    let (dir, store) = new_store(postgres);
    Definitions {
        store: store.as_ref(),
    }
    .put_segment(
        &SegmentSpec {
            name: "pro".into(),
            description: None,
            expression: "traits.plan == \"pro\"".into(),
        },
        0,
    )
    .unwrap();
    let journeys = Journeys {
        store: store.as_ref(),
    };
    for spec in [abandoned_cart(), onboarding()] {
        journeys
            .save_draft(spec, t("2026-03-01T00:00:00Z"))
            .unwrap();
    }
    for name in live {
        journeys.publish(name, t("2026-03-01T00:00:00Z")).unwrap();
    }
    (dir, store)
}

/// Runs the scenario; with `restart`, a new processor (batch size 1) at every step.
fn run(postgres: bool, restart: bool) -> Run {
    let (dir, store) = scenario_store(postgres, &["abandoned_cart", "onboarding"]);
    let now = Arc::new(Mutex::new(t("2026-03-01T00:00:00Z")));
    let clock_now = now.clone();
    let make = || {
        let clock_now = clock_now.clone();
        let p = Processor::new(store.clone(), IdentityRules::default())
            .with_clock(Arc::new(move || *clock_now.lock().unwrap()));
        if restart { p.with_batch_size(1) } else { p }
    };
    let mut processor = make();
    for (at, batch) in scenario() {
        *now.lock().unwrap() = at;
        append(store.as_ref(), &batch);
        if restart {
            loop {
                processor = make();
                if processor.step().unwrap() == 0 {
                    break;
                }
            }
        } else {
            processor.run_to_end().unwrap();
        }
    }
    Run { _dir: dir, store }
}

fn actions(store: &dyn Store) -> Vec<JourneyAction> {
    Journeys { store }.actions(0, 1000).unwrap()
}

fn profile_of(store: &dyn Store, user: &str) -> rapport_engine::profiles::ProfileRecord {
    Profiles { store }
        .resolve(&format!("user_id:{user}"))
        .unwrap()
}

#[test]
fn journeys_decide_in_the_processor_and_a_restart_at_every_batch_changes_nothing() {
    let straight = run(false, false);
    let store = straight.store.as_ref();
    let got = actions(store);
    let summary: Vec<(String, String, String, String)> = got
        .iter()
        .map(|a| {
            (
                a.journey.clone(),
                a.profile.clone(),
                a.action.node.clone(),
                a.at.to_rfc3339(),
            )
        })
        .collect();
    let ann = profile_of(store, "ann");
    let cy = profile_of(store, "cy");
    // Ann's c1 times out at 14:00 (4 h after entry at 10:00): but she unsubscribed at
    // 12:00, which exits every journey at once; Bob ordered his cart; Cy entered segment
    // `pro` and gets the welcome a day later.
    assert_eq!(
        summary,
        vec![(
            "onboarding".to_owned(),
            cy.id.as_str().to_owned(),
            "welcome".to_owned(),
            t("2026-03-03T11:00:00Z").to_rfc3339()
        )],
        "{got:#?}"
    );
    assert_eq!(
        serde_json::to_value(&got[0].action).unwrap()["action"],
        "emit",
        "{got:#?}"
    );
    // Nobody is left inside, and no timer is left behind.
    let journeys = Journeys { store };
    for who in [&ann, &cy, &profile_of(store, "bob")] {
        assert_eq!(journeys.instances(who.id.as_str()).unwrap(), vec![]);
    }
    assert!(store.state_scan("journey.timer", "due").unwrap().is_empty());
    let stats = journeys.stats("abandoned_cart").unwrap();
    let (version, flow) = &stats[0];
    assert_eq!(*version, 1);
    assert_eq!(flow.entered, 3, "ann c1, bob c9, ann c2: {flow:?}");
    assert_eq!(flow.converted, 1, "bob: {flow:?}");
    assert_eq!(flow.exited["rule:unsubscribed"], 2, "{flow:?}");
    assert_eq!(flow.exited["completed"], 1, "{flow:?}");
    // The timeline explains it.
    let (items, _) = Profiles { store }.timeline(&ann, None, 100).unwrap();
    let explained: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            TimelineItem::Journey(json) => {
                let v: Value = serde_json::from_slice(json).unwrap();
                Some(v["explanation"].as_str().unwrap().to_owned())
            }
            _ => None,
        })
        .collect();
    assert!(
        explained
            .iter()
            .any(|e| e == "exited on wait_for_order: rule:unsubscribed"),
        "{explained:#?}"
    );
    assert!(
        explained.iter().any(|e| e == "entered for c2"),
        "{explained:#?}"
    );

    for (postgres, restart) in [(false, true), (true, false), (true, true)] {
        let other = run(postgres, restart);
        let what = format!("postgres: {postgres}, restart at every batch: {restart}");
        assert_eq!(actions(other.store.as_ref()), got, "{what}");
        let other_stats = Journeys {
            store: other.store.as_ref(),
        }
        .stats("abandoned_cart")
        .unwrap();
        assert_eq!(other_stats, stats, "{what}");
    }
}

#[test]
fn a_timeout_sends_and_sets_a_trait_on_the_profile() {
    for postgres in [false, true] {
        a_timeout_sends_and_sets_a_trait_on(postgres);
    }
}

fn a_timeout_sends_and_sets_a_trait_on(postgres: bool) {
    let (_dir, store) = new_store(postgres);
    let journeys = Journeys {
        store: store.as_ref(),
    };
    journeys
        .save_draft(abandoned_cart(), t("2026-03-01T00:00:00Z"))
        .unwrap();
    journeys
        .publish("abandoned_cart", t("2026-03-01T00:00:00Z"))
        .unwrap();
    let now = Arc::new(Mutex::new(t("2026-03-02T10:00:00Z")));
    let clock = now.clone();
    let mut p = Processor::new(store.clone(), IdentityRules::default())
        .with_clock(Arc::new(move || *clock.lock().unwrap()));
    append(
        store.as_ref(),
        &[track("dee", "Cart Updated", Some("c5"), 1)],
    );
    p.run_to_end().unwrap();
    let dee = profile_of(store.as_ref(), "dee");
    let inside = journeys.instances(dee.id.as_str()).unwrap();
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].due, Some(t("2026-03-02T14:00:00Z")));
    *now.lock().unwrap() = t("2026-03-02T13:59:00Z");
    p.run_to_end().unwrap();
    assert!(actions(store.as_ref()).is_empty(), "not yet");
    *now.lock().unwrap() = t("2026-03-02T14:00:00Z");
    p.run_to_end().unwrap();
    let sent = actions(store.as_ref());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].entry.properties["cart_id"], "c5");
    assert_eq!(sent[0].action.key, "abandoned_cart:1:1:2", "{sent:?}");
    let dee = profile_of(store.as_ref(), "dee");
    assert_eq!(dee.traits.traits["cart_reminded"].value, json!(true));
}

#[test]
fn a_merge_keeps_the_earlier_of_two_instances_for_one_cart() {
    for postgres in [false, true] {
        a_merge_keeps_the_earlier_instance_on(postgres);
    }
}

fn a_merge_keeps_the_earlier_instance_on(postgres: bool) {
    let (_dir, store) = new_store(postgres);
    let journeys = Journeys {
        store: store.as_ref(),
    };
    journeys
        .save_draft(abandoned_cart(), t("2026-03-01T00:00:00Z"))
        .unwrap();
    journeys
        .publish("abandoned_cart", t("2026-03-01T00:00:00Z"))
        .unwrap();
    let now = Arc::new(Mutex::new(t("2026-03-02T10:00:00Z")));
    let clock = now.clone();
    let mut p = Processor::new(store.clone(), IdentityRules::default())
        .with_clock(Arc::new(move || *clock.lock().unwrap()));
    let anon = json!({"type": "track", "anonymousId": "a1", "event": "Cart Updated", "messageId": "m1",
                      "properties": {"cart_id": "c1"}, "timestamp": "2024-06-01T00:00:00Z"});
    append(store.as_ref(), &[anon]);
    p.run_to_end().unwrap();
    *now.lock().unwrap() = t("2026-03-02T10:30:00Z");
    append(
        store.as_ref(),
        &[track("eve", "Cart Updated", Some("c1"), 2)],
    );
    p.run_to_end().unwrap();
    *now.lock().unwrap() = t("2026-03-02T11:00:00Z");
    append(
        store.as_ref(),
        &[
            json!({"type": "identify", "userId": "eve", "anonymousId": "a1", "messageId": "m3",
                 "timestamp": "2024-06-01T00:00:00Z"}),
        ],
    );
    p.run_to_end().unwrap();
    let eve = profile_of(store.as_ref(), "eve");
    let inside: Vec<_> = journeys
        .instances(eve.id.as_str())
        .unwrap()
        .into_iter()
        .filter(|i| i.is_active())
        .collect();
    assert_eq!(inside.len(), 1, "{inside:#?}");
    let indexed = store
        .state_scan("journey.active", "abandoned_cart")
        .unwrap();
    assert_eq!(indexed.len(), 1, "only the survivor's instance is indexed");
    let (version, holder) = rapport_engine::journeys::decode_active_key(&indexed[0].0).unwrap();
    assert_eq!((version, holder.as_str()), (1, eve.id.as_str()));
    assert_eq!(
        inside[0].entered_at,
        t("2026-03-02T10:00:00Z"),
        "the earlier entry continues"
    );
    let flow = &journeys.stats("abandoned_cart").unwrap()[0].1;
    assert_eq!(flow.exited.get("merged"), Some(&1), "{flow:?}");
    // Its timer still fires, for the survivor.
    *now.lock().unwrap() = t("2026-03-02T14:00:00Z");
    p.run_to_end().unwrap();
    let sent = actions(store.as_ref());
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].profile, eve.id.as_str());
    assert_eq!(store.state_scan("journey.timer", "due").unwrap(), vec![]);
    // The index of active instances followed the merge and the ends.
    assert_eq!(
        store
            .state_scan("journey.active", "abandoned_cart")
            .unwrap(),
        vec![]
    );
}

fn renewal() -> JourneySpec {
    serde_json::from_value(json!({
        "name": "renewal",
        "entry": {"type": "api"},
        "reentry": {"type": "per_key", "property": "contract"},
        "limits": {"max_entries": 3},
        "start": "soon",
        "nodes": {
            "soon": {"type": "wait", "duration": "1d", "next": "call"},
            "call": {"type": "send", "destination": "csm",
                     "template": "{\"contract\": {{ entry.properties.contract }}}"}
        }
    }))
    .unwrap()
}

fn api_entry(store: &dyn Store, journey: &str, user: &str, contract: &str, n: u32) {
    let profile = profile_of(store, user).id;
    let properties = json!({"contract": contract}).as_object().unwrap().clone();
    let mut entry = rapport_engine::journeys::ApiEntry::new(
        journey,
        profile,
        properties,
        t("2026-03-02T10:00:00Z"),
        None,
    );
    entry.request = format!("r{n}");
    store
        .append(&[entry.append_item()], 1_717_200_000_000, 86_400_000)
        .unwrap();
}

/// API entries as control entries in the log; with `restart`, a new processor (batch size
/// 1) at every step.
fn run_api_entries(postgres: bool, restart: bool) -> Run {
    let (dir, store) = new_store(postgres);
    let journeys = Journeys {
        store: store.as_ref(),
    };
    journeys
        .save_draft(renewal(), t("2026-03-01T00:00:00Z"))
        .unwrap();
    journeys
        .publish("renewal", t("2026-03-01T00:00:00Z"))
        .unwrap();
    let now = Arc::new(Mutex::new(t("2026-03-02T10:00:00Z")));
    let make = || clocked(&store, &now, restart);
    let drain = |processor: &mut Processor| drain(processor, &store, &now, restart);
    let mut processor = make();
    let identify = |u: &str, n: usize| {
        json!({"type": "identify", "userId": u, "messageId": format!("m{n}"),
               "timestamp": "2024-06-01T00:00:00Z"})
    };
    append(
        store.as_ref(),
        &[identify("ann", 1), identify("bob", 2), identify("cy", 3)],
    );
    drain(&mut processor);
    // Ann twice for c1 (the second while the first is inside: refused by per-key
    // re-entry), Ann for c2, Bob for c3, Cy for c4 (past `max_entries`: refused).
    for (n, (user, contract)) in [("ann", "c1"), ("ann", "c1"), ("ann", "c2"), ("bob", "c3")]
        .into_iter()
        .enumerate()
    {
        api_entry(store.as_ref(), "renewal", user, contract, n as u32);
    }
    drain(&mut processor);
    api_entry(store.as_ref(), "renewal", "cy", "c4", 9);
    drain(&mut processor);
    *now.lock().unwrap() = t("2026-03-03T10:00:00Z");
    drain(&mut processor);
    Run { _dir: dir, store }
}

#[test]
fn api_entries_go_through_the_log_under_the_journey_s_rules_on_both_stores() {
    let straight = run_api_entries(false, false);
    let store = straight.store.as_ref();
    let got = actions(store);
    let sent: Vec<(String, Value)> = got
        .iter()
        .map(|a| (a.profile.clone(), a.entry.properties["contract"].clone()))
        .collect();
    let ann = profile_of(store, "ann").id.as_str().to_owned();
    let bob = profile_of(store, "bob").id.as_str().to_owned();
    assert_eq!(
        sent,
        vec![
            (ann.clone(), json!("c1")),
            (ann, json!("c2")),
            (bob, json!("c3"))
        ],
        "{got:#?}"
    );
    assert!(got.iter().all(|a| a.at == t("2026-03-03T10:00:00Z")));
    let flow = &Journeys { store }.stats("renewal").unwrap()[0].1;
    assert_eq!(flow.entered, 3, "{flow:?}");
    assert_eq!(flow.exited["completed"], 3, "{flow:?}");
    let cy = profile_of(store, "cy");
    assert_eq!(
        Journeys { store }.instances(cy.id.as_str()).unwrap(),
        vec![]
    );
    let (items, _) = Profiles { store }
        .timeline(&profile_of(store, "ann"), None, 100)
        .unwrap();
    let explained: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            TimelineItem::Journey(json) => {
                let v: Value = serde_json::from_slice(json).unwrap();
                Some(v["explanation"].as_str().unwrap().to_owned())
            }
            _ => None,
        })
        .collect();
    assert!(
        explained.iter().any(|e| e == "entered for c2"),
        "{explained:#?}"
    );
    assert!(
        explained
            .iter()
            .any(|e| e == "not entered through the API: inside for this entry key"),
        "{explained:#?}"
    );
    let (items, _) = Profiles { store }.timeline(&cy, None, 100).unwrap();
    assert!(
        items.iter().any(|i| matches!(i, TimelineItem::Journey(json)
            if serde_json::from_slice::<Value>(json).unwrap()["reason"] == "entry_limit")),
        "{items:?}"
    );
    for (postgres, restart) in [(false, true), (true, false), (true, true)] {
        let other = run_api_entries(postgres, restart);
        let what = format!("postgres: {postgres}, restart at every batch: {restart}");
        assert_eq!(actions(other.store.as_ref()), got, "{what}");
    }
}

fn win_back() -> JourneySpec {
    serde_json::from_value(json!({
        "name": "win_back",
        "entry": {"type": "schedule", "segment": "free", "every": "1d",
                  "starting": "2026-03-02T08:00:00Z"},
        "reentry": {"type": "after", "cooldown": "1h"},
        "start": "offer",
        "nodes": {"offer": {"type": "send", "destination": "email"}}
    }))
    .unwrap()
}

/// A daily schedule over segment `free`; with `restart`, a new processor (batch size 1)
/// at every step.
fn run_schedule(postgres: bool, restart: bool) -> Run {
    let (dir, store) = new_store(postgres);
    Definitions {
        store: store.as_ref(),
    }
    .put_segment(
        &SegmentSpec {
            name: "free".into(),
            description: None,
            expression: "traits.plan == \"free\"".into(),
        },
        0,
    )
    .unwrap();
    let journeys = Journeys {
        store: store.as_ref(),
    };
    journeys
        .save_draft(win_back(), t("2026-03-01T00:00:00Z"))
        .unwrap();
    journeys
        .publish("win_back", t("2026-03-01T00:00:00Z"))
        .unwrap();
    let now = Arc::new(Mutex::new(t("2026-03-01T12:00:00Z")));
    let clock_now = now.clone();
    let make = || {
        let clock_now = clock_now.clone();
        let p = Processor::new(store.clone(), IdentityRules::default())
            .with_clock(Arc::new(move || *clock_now.lock().unwrap()));
        if restart { p.with_batch_size(1) } else { p }
    };
    let identify = |u: &str, plan: &str, n: usize| {
        json!({"type": "identify", "userId": u, "traits": {"plan": plan},
               "messageId": format!("m{n}"), "timestamp": "2024-06-01T00:00:00Z"})
    };
    let mut processor = make();
    for (at, batch) in [
        (
            t("2026-03-01T12:00:00Z"),
            vec![
                identify("ann", "free", 1),
                identify("bob", "free", 2),
                identify("cy", "pro", 3),
            ],
        ),
        // The first run, at 08:00 the next day.
        (t("2026-03-02T09:00:00Z"), vec![]),
        (t("2026-03-02T10:00:00Z"), vec![identify("cy", "free", 4)]),
        // Down for three days: one run, not three.
        (t("2026-03-05T09:30:00Z"), vec![]),
        (t("2026-03-05T09:40:00Z"), vec![]),
    ] {
        *now.lock().unwrap() = at;
        append(store.as_ref(), &batch);
        if restart {
            loop {
                processor = make();
                if processor.step().unwrap() == 0 {
                    break;
                }
            }
        } else {
            processor.run_to_end().unwrap();
        }
    }
    Run { _dir: dir, store }
}

#[test]
fn a_schedule_enters_the_segment_s_members_once_per_due_time_on_both_stores() {
    let straight = run_schedule(false, false);
    let store = straight.store.as_ref();
    let got = actions(store);
    let id = |u: &str| profile_of(store, u).id.as_str().to_owned();
    let sent: Vec<(String, String)> = got
        .iter()
        .map(|a| (a.profile.clone(), a.at.to_rfc3339()))
        .collect();
    let first = t("2026-03-02T09:00:00Z").to_rfc3339();
    let late = t("2026-03-05T09:30:00Z").to_rfc3339();
    let mut want = vec![
        (id("ann"), first.clone()),
        (id("bob"), first),
        (id("ann"), late.clone()),
        (id("bob"), late.clone()),
        (id("cy"), late),
    ];
    want[..2].sort();
    want[2..].sort();
    assert_eq!(sent, want, "{got:#?}");
    let flow = &Journeys { store }.stats("win_back").unwrap()[0].1;
    assert_eq!(flow.entered, 5, "{flow:?}");
    for (postgres, restart) in [(false, true), (true, false), (true, true)] {
        let other = run_schedule(postgres, restart);
        let what = format!("postgres: {postgres}, restart at every batch: {restart}");
        assert_eq!(actions(other.store.as_ref()), got, "{what}");
    }
}

fn welcome(name: &str, priority: i32) -> JourneySpec {
    serde_json::from_value(json!({
        "name": name,
        "priority": priority,
        "entry": {"type": "event", "condition": "event == \"Signed Up\""},
        "start": "hello",
        "nodes": {
            "hello": {"type": "send", "destination": "email", "next": "receipt"},
            "receipt": {"type": "send", "destination": "email", "transactional": true}
        }
    }))
    .unwrap()
}

fn caps_change(store: &dyn Store, max: u32, n: u32) {
    let caps = vec![rapport_journeys::caps::CapRule {
        tag: "email".into(),
        max,
        per: rapport_journeys::definition::Duration(7 * 86_400),
    }];
    let mut change =
        rapport_engine::journeys::CapsChange::new(caps, t("2026-03-02T10:00:00Z"), None);
    change.request = format!("caps{n}");
    store
        .append(&[change.append_item()], 1_717_200_000_000, 86_400_000)
        .unwrap();
}

/// Two journeys send email on one event under a cap of one email a week, then of two;
/// with `restart`, a new processor (batch size 1) at every step.
fn run_caps(postgres: bool, restart: bool) -> Run {
    let (dir, store) = new_store(postgres);
    let journeys = Journeys {
        store: store.as_ref(),
    };
    // `zeta` has the higher priority: it decides first although its name sorts last.
    for spec in [welcome("alpha", 0), welcome("zeta", 5)] {
        let name = spec.name.clone();
        journeys
            .save_draft(spec, t("2026-03-01T00:00:00Z"))
            .unwrap();
        journeys.publish(&name, t("2026-03-01T00:00:00Z")).unwrap();
    }
    let now = Arc::new(Mutex::new(t("2026-03-02T10:00:00Z")));
    let make = || clocked(&store, &now, restart);
    let drain = |processor: &mut Processor| drain(processor, &store, &now, restart);
    let mut processor = make();
    caps_change(store.as_ref(), 1, 1);
    append(store.as_ref(), &[track("ann", "Signed Up", None, 1)]);
    drain(&mut processor);
    *now.lock().unwrap() = t("2026-03-03T10:00:00Z");
    caps_change(store.as_ref(), 2, 2);
    append(
        store.as_ref(),
        &[
            track("cy", "Signed Up", None, 2),
            track("ann", "Other", None, 3),
        ],
    );
    drain(&mut processor);
    Run { _dir: dir, store }
}

#[test]
fn caps_set_through_the_log_skip_the_lower_priority_journey_s_message_on_both_stores() {
    let straight = run_caps(false, false);
    let store = straight.store.as_ref();
    let got = actions(store);
    let ann = profile_of(store, "ann").id.as_str().to_owned();
    let cy = profile_of(store, "cy").id.as_str().to_owned();
    let sent: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|a| {
            (
                a.journey.as_str(),
                a.profile.as_str(),
                a.action.node.as_str(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("zeta", ann.as_str(), "hello"),
            ("zeta", ann.as_str(), "receipt"),
            ("alpha", ann.as_str(), "receipt"),
            ("zeta", cy.as_str(), "hello"),
            ("zeta", cy.as_str(), "receipt"),
            ("alpha", cy.as_str(), "hello"),
            ("alpha", cy.as_str(), "receipt"),
        ],
        "ann's second email is capped (the transactional receipts bypass the cap); under a cap of two, cy gets both: {got:#?}"
    );
    let journeys = Journeys { store };
    let alpha = &journeys.stats("alpha").unwrap()[0].1;
    assert_eq!(
        alpha.nodes["hello"].skipped.get("capped"),
        Some(&1),
        "{alpha:?}"
    );
    assert_eq!(journeys.caps().unwrap().caps[0].max, 2);
    let (items, _) = Profiles { store }
        .timeline(&profile_of(store, "ann"), None, 100)
        .unwrap();
    let explained: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            TimelineItem::Journey(json) => {
                let v: Value = serde_json::from_slice(json).unwrap();
                Some(format!(
                    "{}: {}",
                    v["journey"].as_str().unwrap(),
                    v["explanation"].as_str().unwrap()
                ))
            }
            _ => None,
        })
        .collect();
    assert!(
        explained
            .iter()
            .any(|e| e.starts_with("alpha: hello: not sent, email capped (1 of at most 1 per 7d)")),
        "{explained:#?}"
    );
    for (postgres, restart) in [(false, true), (true, false), (true, true)] {
        let other = run_caps(postgres, restart);
        let what = format!("postgres: {postgres}, restart at every batch: {restart}");
        assert_eq!(actions(other.store.as_ref()), got, "{what}");
    }
}

fn nurture(version: u32) -> JourneySpec {
    let nodes = if version == 1 {
        json!({"wait_a": {"type": "wait", "duration": "1d", "next": "send_a"},
               "send_a": {"type": "send", "destination": "email"}})
    } else {
        json!({"hold": {"type": "wait", "duration": "2d", "next": "send_b"},
               "send_b": {"type": "send", "destination": "sms"}})
    };
    let start = if version == 1 { "wait_a" } else { "hold" };
    serde_json::from_value(json!({
        "name": "nurture", "entry": {"type": "api"}, "reentry": {"type": "per_key", "property": "k"},
        "start": start, "nodes": nodes
    }))
    .unwrap()
}

/// Two customers enter version 1, version 2 is published, and a migration control entry
/// moves them; with `restart`, a new processor (batch size 1) at every step.
fn run_migration(postgres: bool, restart: bool) -> Run {
    let (dir, store) = new_store(postgres);
    let journeys = Journeys {
        store: store.as_ref(),
    };
    journeys
        .save_draft(nurture(1), t("2026-03-01T00:00:00Z"))
        .unwrap();
    journeys
        .publish("nurture", t("2026-03-01T00:00:00Z"))
        .unwrap();
    let now = Arc::new(Mutex::new(t("2026-03-02T10:00:00Z")));
    let make = || clocked(&store, &now, restart);
    let drain = |processor: &mut Processor| drain(processor, &store, &now, restart);
    let mut processor = make();
    append(
        store.as_ref(),
        &[
            json!({"type": "identify", "userId": "ann", "messageId": "m1", "timestamp": "2024-06-01T00:00:00Z"}),
            json!({"type": "identify", "userId": "bob", "messageId": "m2", "timestamp": "2024-06-01T00:00:00Z"}),
        ],
    );
    drain(&mut processor);
    let enter = |user: &str, n: u32| {
        let mut e = rapport_engine::journeys::ApiEntry::new(
            "nurture",
            profile_of(store.as_ref(), user).id,
            json!({"k": format!("k{n}")}).as_object().unwrap().clone(),
            t("2026-03-02T10:00:00Z"),
            None,
        );
        e.request = format!("e{n}");
        store
            .append(&[e.append_item()], 1_717_200_000_000, 86_400_000)
            .unwrap();
    };
    enter("ann", 1);
    drain(&mut processor);
    enter("bob", 2);
    drain(&mut processor);
    journeys
        .save_draft(nurture(2), t("2026-03-02T11:00:00Z"))
        .unwrap();
    journeys
        .publish("nurture", t("2026-03-02T11:00:00Z"))
        .unwrap();
    let migration: rapport_journeys::version::Migration = serde_json::from_value(
        json!({"from_version": 1, "to_version": 2, "map": {"wait_a": "hold", "send_a": "send_b"}}),
    )
    .unwrap();
    let mut m = rapport_engine::journeys::MigrationRequest::new(
        "nurture",
        migration,
        t("2026-03-02T11:00:00Z"),
        None,
    );
    m.request = "mig".into();
    *now.lock().unwrap() = t("2026-03-02T11:00:00Z");
    store
        .append(&[m.append_item()], 1_717_200_000_000, 86_400_000)
        .unwrap();
    drain(&mut processor);
    // The timer version 1 set (a day after entry) still ends the wait.
    *now.lock().unwrap() = t("2026-03-03T10:00:00Z");
    drain(&mut processor);
    Run { _dir: dir, store }
}

#[test]
fn a_migration_in_the_log_moves_the_active_instances_of_a_version_on_both_stores() {
    let straight = run_migration(false, false);
    let store = straight.store.as_ref();
    let got = actions(store);
    let sent: Vec<(String, u32, String)> = got
        .iter()
        .map(|a| (a.profile.clone(), a.version, a.action.node.clone()))
        .collect();
    let ann = profile_of(store, "ann").id.as_str().to_owned();
    let bob = profile_of(store, "bob").id.as_str().to_owned();
    assert_eq!(
        sent,
        vec![(ann, 2, "send_b".to_owned()), (bob, 2, "send_b".to_owned())],
        "{got:#?}"
    );
    let journeys = Journeys { store };
    let stats = journeys.stats("nurture").unwrap();
    let v1 = &stats[0].1;
    assert_eq!(v1.exited.get("migrated"), Some(&2), "{v1:?}");
    assert_eq!(v1.active(), 0, "{v1:?}");
    let v2 = &stats[1].1;
    assert_eq!(v2.migrated_in, 2, "{v2:?}");
    assert_eq!(v2.nodes["hold"].passed, 2, "{v2:?}");
    assert!(
        store
            .state_scan("journey.active", "nurture")
            .unwrap()
            .is_empty()
    );
    let (items, _) = Profiles { store }
        .timeline(&profile_of(store, "bob"), None, 100)
        .unwrap();
    assert!(
        items.iter().any(|i| matches!(i, TimelineItem::Journey(json)
            if serde_json::from_slice::<Value>(json).unwrap()["explanation"]
                == "migrated from v1 node wait_a to v2 node hold")),
        "{items:?}"
    );
    for (postgres, restart) in [(false, true), (true, false), (true, true)] {
        let other = run_migration(postgres, restart);
        let what = format!("postgres: {postgres}, restart at every batch: {restart}");
        assert_eq!(actions(other.store.as_ref()), got, "{what}");
        let other_stats = Journeys {
            store: other.store.as_ref(),
        }
        .stats("nurture")
        .unwrap();
        assert_eq!(other_stats, stats, "{what}");
    }
}

/// The scenario appended as ingest would have received it at each step's time, run by the
/// processor with its clock at those times, with `abandoned_cart` live and `onboarding` a
/// draft only: what the processor did is what a preview of the live version says, and a
/// preview of the draft enters by the segment changes of the range.
fn run_received(postgres: bool) -> Run {
    let (dir, store) = scenario_store(postgres, &["abandoned_cart"]);
    let now = Arc::new(Mutex::new(t("2026-03-01T00:00:00Z")));
    let clock = now.clone();
    let mut processor = Processor::new(store.clone(), IdentityRules::default())
        .with_clock(Arc::new(move || *clock.lock().unwrap()));
    for (at, batch) in scenario() {
        *now.lock().unwrap() = at;
        common::append_at(store.as_ref(), &batch, &at.to_rfc3339());
        processor.run_to_end().unwrap();
    }
    Run { _dir: dir, store }
}

/// Everything a preview could write if it wrote: the log's end and the journey state.
fn journey_state(store: &dyn Store) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut parts = vec![
        store.state_scan("journey.timer", "due").unwrap(),
        store.state_scan("journey.action", "feed").unwrap(),
        store.state_scan("journey.action", "meta").unwrap(),
        store.state_scan("journey.totals", "journeys").unwrap(),
        store.state_scan("journey.def", "journeys").unwrap(),
        store.state_scan("journey.stats", "abandoned_cart").unwrap(),
        store.state_scan("journey.stats", "onboarding").unwrap(),
        vec![(
            b"last".to_vec(),
            store.last_offset().unwrap().to_be_bytes().to_vec(),
        )],
    ];
    for user in ["ann", "bob", "cy"] {
        let id = profile_of(store, user).id;
        for ns in ["journey.instance", "journey.entry", "timeline", "profile"] {
            parts.push(store.state_scan(ns, id.as_str()).unwrap());
        }
    }
    parts
}

#[test]
fn a_preview_counts_what_the_processor_did_and_writes_nothing() {
    for postgres in [false, true] {
        a_preview_counts_what_the_processor_did_on(postgres);
    }
}

fn a_preview_counts_what_the_processor_did_on(postgres: bool) {
    use rapport_engine::journeys_preview::{PreviewRequest, preview};
    let run = run_received(postgres);
    let store = run.store.as_ref();
    let mut quick = serde_json::to_value(abandoned_cart()).unwrap();
    quick["nodes"]["wait_for_order"]["timeout"] = json!("1h");
    let quick: JourneySpec = serde_json::from_value(quick).unwrap();
    Journeys { store }
        .save_draft(quick, t("2026-03-04T00:00:00Z"))
        .unwrap();
    let before = journey_state(store);
    let now = t("2026-03-10T00:00:00Z");
    let range = |version| PreviewRequest {
        version,
        from: t("2026-03-02T00:00:00Z"),
        to: t("2026-03-03T12:00:00Z"),
    };

    // The live version over the range the processor ran: the same flow, no message
    // (Ann unsubscribed before her reminder, Bob ordered).
    let live = preview(store, "abandoned_cart", &range(Some(1)), now).unwrap();
    let (_, processed) = &Journeys { store }.stats("abandoned_cart").unwrap()[0];
    assert_eq!(live.version, 1);
    assert_eq!(&live.flow, processed, "postgres: {postgres}");
    assert_eq!(live.events, 7);
    assert_eq!(live.profiles, 3);
    assert!(live.messages.is_empty(), "{live:?}");

    // The draft of onboarding (never published) enters Cy by the segment change of the
    // range, waits a day, and would emit its welcome: the processor took no decision.
    let draft = preview(store, "onboarding", &range(None), now).unwrap();
    assert_eq!(draft.version, 1);
    assert_eq!(draft.segment_changes, 1, "{draft:?}");
    assert_eq!(draft.flow.entered, 1, "{draft:?}");
    assert_eq!(draft.emitted.get("Pro Welcome Due"), Some(&1), "{draft:?}");
    assert_eq!(draft.flow.exited.get("completed"), Some(&1), "{draft:?}");
    // Ending before the day is over, Cy is still waiting.
    let short = PreviewRequest {
        to: t("2026-03-02T20:00:00Z"),
        ..range(None)
    };
    let waiting = preview(store, "onboarding", &short, now).unwrap();
    assert_eq!(waiting.flow.nodes["day_one"].waiting(), 1, "{waiting:?}");
    assert!(waiting.emitted.is_empty());
    assert!(Journeys { store }.stats("onboarding").unwrap().is_empty());

    // A reminder sent when the range ends before Ann's unsubscribe is counted by
    // destination; so is its trait change.
    let early = PreviewRequest {
        from: t("2026-03-02T10:00:00Z"),
        to: t("2026-03-02T11:30:00Z"),
        version: Some(1),
    };
    let p = preview(store, "abandoned_cart", &early, now).unwrap();
    assert_eq!(p.flow.entered, 3, "{p:?}");
    assert_eq!(p.flow.nodes["wait_for_order"].waiting(), 2, "{p:?}");
    assert!(p.messages.is_empty());
    // A draft of version 2 that reminds after an hour: every cart is reminded before its
    // customer orders or unsubscribes — c1 twice, since its first instance has ended when
    // Ann updates it again at 11:00; the messages are counted by destination, none is in
    // the action feed.
    let p2 = preview(store, "abandoned_cart", &range(None), now).unwrap();
    assert_eq!(p2.version, 2);
    assert_eq!(p2.messages.get("email"), Some(&4), "{p2:?}");
    assert_eq!(p2.trait_changes, 4, "{p2:?}");
    assert_eq!(p2.flow.nodes["wait_for_order"].to.get("remind"), Some(&4));
    assert_eq!(p2.flow.exited.get("completed"), Some(&4), "{p2:?}");
    assert!(Journeys { store }.actions(0, 10).unwrap().is_empty());

    // Bad ranges and versions are refused by field.
    let field = |r: &PreviewRequest| match preview(store, "abandoned_cart", r, now) {
        Err(rapport_engine::EngineError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(&range(Some(9))), "version");
    assert_eq!(
        field(&PreviewRequest {
            to: t("2026-03-11T00:00:00Z"),
            ..range(None)
        }),
        "to"
    );
    assert_eq!(
        field(&PreviewRequest {
            from: t("2026-03-04T00:00:00Z"),
            ..range(None)
        }),
        "from"
    );
    assert_eq!(
        field(&PreviewRequest {
            from: t("2025-11-01T00:00:00Z"),
            ..range(None)
        }),
        "from"
    );

    assert_eq!(journey_state(store), before, "a preview writes nothing");
}

/// The range is found by receive time among entries that are not events (erased,
/// unreadable), events of customers the processor has not seen go to profiles of their
/// own, and a range holding more entries than the preview may read is refused naming
/// `from`.
#[test]
fn a_preview_finds_its_range_among_entries_that_are_not_events() {
    use rapport_engine::journeys_preview::{PreviewRequest, preview, preview_within};
    for postgres in [false, true] {
        let (_dir, store) = new_store(postgres);
        Journeys {
            store: store.as_ref(),
        }
        .save_draft(abandoned_cart(), t("2026-03-01T00:00:00Z"))
        .unwrap();
        for minute in 0..6 {
            let at = format!("2026-03-02T10:0{minute}:00Z");
            let user = format!("u{minute}");
            common::append_at(
                store.as_ref(),
                &[track(&user, "Cart Updated", Some("c"), minute)],
                &at,
            );
            let other = rapport_store::AppendItem {
                dedup_key: format!("raw{minute}").into_bytes(),
                payload: if minute % 2 == 0 {
                    b"{}".to_vec()
                } else {
                    b"not json".to_vec()
                },
            };
            store
                .append(&[other], 1_717_200_000_000, 86_400_000)
                .unwrap();
        }
        let request = PreviewRequest {
            version: None,
            from: t("2026-03-02T10:01:30Z"),
            to: t("2026-03-02T10:04:00Z"),
        };
        let now = t("2026-03-10T00:00:00Z");
        let p = preview(store.as_ref(), "abandoned_cart", &request, now).unwrap();
        assert_eq!((p.events, p.profiles), (2, 2), "10:02 and 10:03: {p:?}");
        assert_eq!(p.flow.entered, 2, "{p:?}");
        assert_eq!(p.flow.nodes["wait_for_order"].waiting(), 2, "{p:?}");
        match preview_within(store.as_ref(), "abandoned_cart", &request, now, 3) {
            Err(rapport_engine::EngineError::Invalid { field, message }) => {
                assert_eq!(field, "from", "{message}");
                assert!(message.contains("more than the 3"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
