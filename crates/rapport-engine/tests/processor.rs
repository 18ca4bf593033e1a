//! The processor end to end over a real embedded store: data-driven identity cases, replay
//! determinism, and restart at any point.

mod common;

use common::{append, process, store};
use proptest::prelude::*;
use rapport_core::identity::IdentityRules;
use rapport_engine::processor::Processor;
use rapport_engine::profiles::{ProfileRecord, Profiles, TimelineItem, profile_id_for};
use rapport_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;

fn profile(store: &Arc<dyn Store>, reference: &str) -> ProfileRecord {
    Profiles {
        store: store.as_ref(),
    }
    .resolve(reference)
    .unwrap()
}

fn ids(r: &ProfileRecord) -> Vec<String> {
    let mut v: Vec<String> = r
        .identifiers
        .iter()
        .map(|i| i.identifier.to_string())
        .collect();
    v.sort();
    v
}

fn events(offsets: &[u64]) -> Vec<TimelineItem> {
    offsets.iter().map(|&o| TimelineItem::Event(o)).collect()
}

fn ev(kind: &str, fields: Value) -> Value {
    let mut m = fields;
    m["type"] = json!(kind);
    m
}

#[test]
fn anonymous_visitor_becomes_known_and_keeps_history() {
    let (_d, s) = store();
    append(
        s.as_ref(),
        &[
            ev(
                "page",
                json!({"anonymousId": "a1", "name": "Home", "timestamp": "2024-05-01T10:00:00Z"}),
            ),
            ev(
                "track",
                json!({"anonymousId": "a1", "event": "Added", "timestamp": "2024-05-01T10:01:00Z"}),
            ),
            ev(
                "identify",
                json!({"anonymousId": "a1", "userId": "u1", "traits": {"email": "Ann@Example.com", "plan": "free"}, "timestamp": "2024-05-01T10:02:00Z"}),
            ),
            ev(
                "track",
                json!({"userId": "u1", "event": "Bought", "timestamp": "2024-05-01T10:03:00Z"}),
            ),
        ],
    );
    process(&s);
    let p = profile(&s, "user_id:u1");
    assert_eq!(p.id, profile(&s, "anonymous_id:a1").id);
    assert_eq!(p.id, profile(&s, "email:ann@example.com").id);
    assert_eq!(
        ids(&p),
        vec!["anonymous_id:a1", "email:ann@example.com", "user_id:u1"]
    );
    assert_eq!(p.traits.get("plan"), Some(&json!("free")));
    let profiles = Profiles { store: s.as_ref() };
    let (timeline, next) = profiles.timeline(&p, None, 10).unwrap();
    assert_eq!(timeline, events(&[4, 3, 2, 1]));
    assert_eq!(next, None);
    let (page, next) = profiles.timeline(&p, None, 3).unwrap();
    assert_eq!(page, events(&[4, 3, 2]));
    assert_eq!(profiles.timeline(&p, next, 3).unwrap().0, events(&[1]));
    let (found, _) = profiles.search("plan", &json!("free"), None, 10).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, p.id);
}

#[test]
fn cross_device_merge_keeps_the_oldest_profile_and_explains_it() {
    let (_d, s) = store();
    append(
        s.as_ref(),
        &[
            ev(
                "identify",
                json!({"anonymousId": "phone", "traits": {"email": "bo@example.com"}, "timestamp": "2024-05-01T10:00:00Z"}),
            ),
            ev(
                "identify",
                json!({"userId": "u2", "anonymousId": "laptop", "traits": {"city": "Lyon"}, "timestamp": "2024-05-01T11:00:00Z"}),
            ),
            // The e-mail joins the laptop's known user with the phone's profile.
            ev(
                "identify",
                json!({"userId": "u2", "traits": {"email": "bo@example.com"}, "timestamp": "2024-05-01T12:00:00Z"}),
            ),
        ],
    );
    process(&s);
    let p = profile(&s, "anonymous_id:phone");
    assert_eq!(p.id, profile_id_for(1), "the oldest profile survives");
    assert_eq!(profile(&s, "anonymous_id:laptop").id, p.id);
    assert_eq!(
        profile(&s, &profile_id_for(2).0).id,
        p.id,
        "old ids resolve to the survivor"
    );
    assert_eq!(p.traits.get("city"), Some(&json!("Lyon")));
    let profiles = Profiles { store: s.as_ref() };
    let story = serde_json::to_value(profiles.explanation(&p).unwrap()).unwrap();
    let merges: Vec<&Value> = story
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "profile_merged")
        .collect();
    assert_eq!(merges.len(), 1, "{story}");
    assert_eq!(merges[0]["from"], profile_id_for(2).0);
    assert_eq!(
        profiles.timeline(&p, None, 10).unwrap().0,
        events(&[3, 2, 1])
    );
}

#[test]
fn a_shared_device_never_merges_two_known_users() {
    let (_d, s) = store();
    append(
        s.as_ref(),
        &[
            ev(
                "track",
                json!({"userId": "alice", "event": "Login", "context": {"device": {"id": "kiosk-1"}}}),
            ),
            ev(
                "track",
                json!({"userId": "bob", "event": "Login", "context": {"device": {"id": "kiosk-1"}}}),
            ),
        ],
    );
    process(&s);
    assert_ne!(
        profile(&s, "user_id:alice").id,
        profile(&s, "user_id:bob").id
    );
    let bob = profile(&s, "user_id:bob");
    let story =
        serde_json::to_string(&Profiles { store: s.as_ref() }.explanation(&bob).unwrap()).unwrap();
    assert!(story.contains("refused"), "{story}");
}

#[test]
fn late_events_do_not_overwrite_newer_traits_and_groups_build_accounts() {
    let (_d, s) = store();
    append(
        s.as_ref(),
        &[
            ev(
                "identify",
                json!({"userId": "u", "traits": {"plan": "pro"}, "timestamp": "2024-05-02T00:00:00Z"}),
            ),
            ev(
                "identify",
                json!({"userId": "u", "traits": {"plan": "free", "seats": 3}, "timestamp": "2024-05-01T00:00:00Z"}),
            ),
            ev(
                "group",
                json!({"userId": "u", "groupId": "acme", "traits": {"industry": "retail"}}),
            ),
        ],
    );
    process(&s);
    let p = profile(&s, "user_id:u");
    assert_eq!(p.traits.get("plan"), Some(&json!("pro")));
    assert_eq!(p.traits.get("seats"), Some(&json!(3)));
    assert!(p.accounts.contains("acme"));
    let account = Profiles { store: s.as_ref() }
        .account("acme")
        .unwrap()
        .unwrap();
    assert_eq!(account.traits.get("industry"), Some(&json!("retail")));
    assert!(account.members.contains(&p.id));
}

#[test]
fn consent_is_recorded_newest_wins_and_merges_combine_it() {
    let (_d, s) = store();
    let consent = |prefs: Value| json!({"consent": {"categoryPreferences": prefs}});
    append(
        s.as_ref(),
        &[
            ev(
                "track",
                json!({"userId": "u1", "event": "A", "messageId": "m1", "timestamp": "2024-05-01T10:00:00Z",
                       "context": consent(json!({"marketing": true, "sms": false}))}),
            ),
            // Older, arriving later: in the history, no effect.
            ev(
                "track",
                json!({"userId": "u1", "event": "B", "messageId": "m0", "timestamp": "2024-05-01T09:00:00Z",
                       "context": consent(json!({"marketing": false}))}),
            ),
            // Another profile with a newer decision on sms and an older one on marketing.
            ev(
                "track",
                json!({"anonymousId": "a2", "event": "C", "messageId": "m2", "timestamp": "2024-05-01T11:00:00Z",
                       "context": consent(json!({"sms": true}))}),
            ),
            ev(
                "track",
                json!({"anonymousId": "a2", "event": "D", "messageId": "m3", "timestamp": "2024-05-01T08:00:00Z",
                       "context": consent(json!({"marketing": false}))}),
            ),
        ],
    );
    process(&s);
    let p = profile(&s, "user_id:u1");
    assert!(p.consent.granted("marketing"));
    assert!(!p.consent.granted("sms"));
    assert!(!p.consent.granted("email"));
    assert_eq!(p.consent.purposes["marketing"].message_id, "m1");
    assert!(profile(&s, "anonymous_id:a2").consent.granted("sms"));
    // The two become one: per purpose, the newest decision of the two.
    append(
        s.as_ref(),
        &[ev(
            "identify",
            json!({"userId": "u1", "anonymousId": "a2", "timestamp": "2024-05-01T12:00:00Z"}),
        )],
    );
    process(&s);
    let p = profile(&s, "user_id:u1");
    assert!(p.consent.granted("marketing"));
    assert!(p.consent.granted("sms"));
    let profiles = Profiles { store: s.as_ref() };
    let (history, next) = profiles.consent_history(&p, None, 10).unwrap();
    assert_eq!(next, None);
    let seen: Vec<(&str, &str, bool)> = history
        .iter()
        .map(|h| (h.message_id.as_str(), h.purpose.as_str(), h.effective))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("m2", "sms", true),
            ("m1", "sms", true),
            ("m1", "marketing", true),
            ("m0", "marketing", false),
            ("m3", "marketing", true),
        ]
    );
    let (page, next) = profiles.consent_history(&p, None, 2).unwrap();
    assert_eq!(page, history[..2]);
    let (rest, next) = profiles.consent_history(&p, next.as_deref(), 10).unwrap();
    assert_eq!(rest, history[2..]);
    assert_eq!(next, None);
}

fn random_stream() -> impl Strategy<Value = Vec<Value>> {
    let user = prop::option::of(prop::sample::select(vec!["u1", "u2", "u3"]));
    let anon = prop::option::of(prop::sample::select(vec!["a1", "a2", "a3", "a4"]));
    let email = prop::option::of(prop::sample::select(vec!["x@e.com", "y@e.com"]));
    let device = prop::option::of(prop::sample::select(vec!["d1", "d2"]));
    let plan = prop::sample::select(vec!["free", "pro"]);
    let minute = 0u32..120;
    let kind = prop::sample::select(vec!["identify", "track", "alias", "group"]);
    prop::collection::vec((kind, user, anon, email, device, plan, minute), 1..40).prop_map(|rows| {
        rows.into_iter()
            .map(|(kind, user, anon, email, device, plan, minute)| {
                let mut m = json!({
                    "type": kind,
                    "timestamp": format!("2024-05-01T{:02}:{:02}:00Z", minute / 60, minute % 60),
                    "traits": {"plan": plan},
                    "context": {},
                });
                match (user, anon) {
                    (None, None) => m["anonymousId"] = json!("a1"),
                    (u, a) => {
                        if let Some(u) = u {
                            m["userId"] = json!(u);
                        }
                        if let Some(a) = a {
                            m["anonymousId"] = json!(a);
                        }
                    }
                }
                if let Some(e) = email {
                    m["traits"]["email"] = json!(e);
                }
                if let Some(d) = device {
                    m["context"]["device"] = json!({"id": d});
                }
                // Consent on some events, so that replays and restarts cover it too.
                if minute % 3 == 0 {
                    m["context"]["consent"] =
                        json!({"categoryPreferences": {"ads": plan == "pro", "sms": minute % 2 == 0}});
                }
                match kind {
                    "track" => m["event"] = json!("E"),
                    "alias" => m["previousId"] = json!("a2"),
                    "group" => m["groupId"] = json!("g1"),
                    _ => {}
                }
                m
            })
            .collect()
    })
}

fn dump(store: &Arc<dyn Store>) -> Vec<Option<ProfileRecord>> {
    let profiles = Profiles {
        store: store.as_ref(),
    };
    (1..=store.last_offset().unwrap())
        .map(|o| profiles.record(&profile_id_for(o)).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Processing at once, or in batches with a restart at a random point, or replaying the
    /// log into a fresh store: the same profiles.
    #[test]
    fn restarts_and_replays_give_the_same_profiles(events in random_stream(), cut in 1usize..40, batch in 1usize..7) {
        let (_a, once) = store();
        append(once.as_ref(), &events);
        process(&once);

        let (_b, restarted) = store();
        append(restarted.as_ref(), &events);
        let mut first = Processor::new(restarted.clone(), IdentityRules::default()).with_batch_size(batch);
        let mut consumed = 0;
        while consumed < cut {
            let n = first.step().unwrap();
            if n == 0 { break; }
            consumed += n;
        }
        drop(first); // a restart: the working set is gone, only committed state remains
        Processor::new(restarted.clone(), IdentityRules::default()).with_batch_size(batch).run_to_end().unwrap();
        prop_assert_eq!(dump(&once), dump(&restarted));

        // Every identifier resolves to a live profile.
        for (o, r) in dump(&once).into_iter().enumerate() {
            if let Some(r) = r {
                for i in &r.identifiers {
                    let live = profile(&once, &i.identifier.to_string());
                    prop_assert!(live.merged_into.is_none(), "offset {}", o + 1);
                    prop_assert!(live.identifiers.iter().any(|x| x.identifier == i.identifier));
                }
            }
        }
    }
}

/// The events per minute ([`rapport_engine::stats`]) are counted once per event, with the
/// processor's offset: a second processor on the same store (a restart) counts nothing
/// again, and minutes past a day are pruned as the processor goes.
#[test]
fn events_are_counted_per_minute_once_and_pruned_after_a_day() {
    use rapport_core::event::parse_timestamp;
    use rapport_engine::stats::{self, MinuteCount};
    let (_d, s) = store();
    let t = |text: &str| parse_timestamp(text).unwrap();
    let at = |now: chrono::DateTime<chrono::Utc>| -> rapport_engine::processor::Clock {
        Arc::new(move || now)
    };
    let track = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                ev(
                    "track",
                    json!({"userId": format!("u{i}"), "event": "Viewed"}),
                )
            })
            .collect()
    };
    common::append_at(s.as_ref(), &track(3), "2024-06-01T10:00:05Z");
    common::append_at(s.as_ref(), &track(2), "2024-06-01T10:01:59Z");
    let now = t("2024-06-01T10:02:00Z");
    let run = |clock| {
        Processor::new(s.clone(), IdentityRules::default())
            .with_clock(clock)
            .run_to_end()
            .unwrap()
    };
    run(at(now));
    let minute = stats::minute_of(t("2024-06-01T10:00:00Z").timestamp_millis());
    let expected = vec![
        MinuteCount {
            minute,
            source_id: "src".into(),
            count: 3,
        },
        MinuteCount {
            minute: minute + 1,
            source_id: "src".into(),
            count: 2,
        },
    ];
    let window = |now: chrono::DateTime<chrono::Utc>| {
        stats::per_minute(s.as_ref(), now.timestamp_millis(), 1440).unwrap()
    };
    assert_eq!(window(now), expected);
    // Restarted: resumes at its offset, so nothing is counted twice.
    run(at(now));
    assert_eq!(window(now), expected);
    // A day later, the first minute is gone, the second not yet.
    let later = t("2024-06-02T10:00:30Z");
    common::append_at(s.as_ref(), &track(1), "2024-06-02T10:00:10Z");
    run(at(later));
    let left = window(later);
    assert_eq!(left[0], expected[1], "{left:?}");
    assert_eq!(left[1].count, 1);
    assert_eq!(
        s.state_scan(stats::NS_EVENTS_PER_MINUTE, stats::PART)
            .unwrap()
            .len(),
        2
    );
}
