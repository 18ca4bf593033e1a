//! Probabilistic matching over live profiles on a real embedded store: automatic merges
//! through the log, the review queue, merges refused by the identity rules, replay of the
//! log into a fresh store, and identity rules changed through the log.

mod common;

use chrono::{DateTime, Utc};
use common::{append, process, store};
use rapport_core::identity::{IdentityEvent, IdentityRules};
use rapport_engine::EngineError;
use rapport_engine::identity::control::{Outcome, RulesChange};
use rapport_engine::identity::matching::{self, MatchingOptions};
use rapport_engine::identity::review::{Decided, Review, Verdict};
use rapport_engine::identity::rules::{ChangeOutcome, RulesStore};
use rapport_engine::processor::Processor;
use rapport_engine::profiles::{ProfileRecord, Profiles};
use rapport_store::{AppendItem, Appended, Store};
use serde_json::{Value, json};
use std::sync::Arc;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_717_300_000, 0).unwrap()
}

fn direct_append(
    store: &dyn Store,
) -> impl Fn(Vec<AppendItem>) -> Result<Vec<Appended>, EngineError> + '_ {
    move |items| Ok(store.append(&items, 1_717_300_000_000, 86_400_000)?)
}

fn profile(store: &Arc<dyn Store>, reference: &str) -> ProfileRecord {
    Profiles {
        store: store.as_ref(),
    }
    .resolve(reference)
    .unwrap()
}

const GIVEN: [&str; 24] = [
    "oliver", "amelia", "harry", "isla", "jack", "ava", "george", "mia", "noah", "ivy", "leo",
    "lily", "oscar", "grace", "arthur", "freya", "henry", "emily", "theo", "ella", "finley",
    "rosie", "archie", "poppy",
];
const SURNAMES: [&str; 24] = [
    "smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "patel",
    "wright", "robinson", "thompson", "evans", "walker", "white", "roberts", "green", "hall",
    "thomas", "clarke", "jackson", "wood", "harris", "edwards",
];
const CITIES: [&str; 8] = [
    "leeds", "york", "bath", "derby", "hull", "ely", "wells", "truro",
];

/// A deterministic population: `n` people, each known by a user id, with names, address
/// and date of birth drawn from small lists; a third without postcode.
fn population(n: usize) -> Vec<Value> {
    let mut x: u64 = 42;
    let mut next = |m: usize| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % m
    };
    (0..n)
        .map(|i| {
            let city = CITIES[next(CITIES.len())];
            let mut person = json!({
                "type": "identify",
                "userId": format!("bg-{i}"),
                "traits": {
                    "firstName": GIVEN[next(GIVEN.len())],
                    "lastName": SURNAMES[next(SURNAMES.len())],
                    "address": {
                        "street": format!("{} {} road", 1 + next(200), SURNAMES[next(SURNAMES.len())]),
                        "city": city,
                        "postalCode": format!("{}{} {}", &city[..2], 1 + next(30), next(9)),
                    },
                    "birthday": format!("19{:02}-{:02}-{:02}", 40 + next(60), 1 + next(12), 1 + next(28)),
                },
                "timestamp": "2024-05-01T10:00:00Z",
            });
            // A third of people gave their town but no postcode.
            if i % 3 == 0 {
                person["traits"]["address"]
                    .as_object_mut()
                    .expect("an address")
                    .remove("postalCode");
            }
            person
        })
        .collect()
}

fn person(id: (&str, &str), traits: Value) -> Value {
    json!({"type": "identify", id.0: id.1, "traits": traits, "timestamp": "2024-05-02T10:00:00Z"})
}

/// The planted cases, after a population: a pair that must merge (a store account and a
/// newsletter sign-up: no shared identifier, near-identical person), a borderline pair
/// for review, and a pair the identity rules forbid to merge (two user ids).
fn planted() -> Vec<Value> {
    vec![
        person(
            ("userId", "ann-1"),
            json!({"firstName": "Annabel", "lastName": "Fairweather", "address": {"street": "12 Quayside Lane", "city": "Whitby", "postalCode": "YO21 3PJ"}, "birthday": "1984-03-17"}),
        ),
        person(
            ("anonymousId", "cookie-ann"),
            json!({"email": "annabel.f@example.org", "firstName": "Anabel", "lastName": "Fairweather", "address": {"street": "12 Quayside Ln", "city": "Whitby", "postalCode": "YO21 3PJ"}, "birthday": "1984-03-17"}),
        ),
        person(
            ("userId", "bo-1"),
            json!({"firstName": "Bartholomew", "lastName": "Quigley", "address": {"city": "Penzance", "street": "3 Chapel Street"}}),
        ),
        person(
            ("anonymousId", "cookie-bo"),
            json!({"firstName": "Bartholomew", "lastName": "Quigley", "address": {"city": "Penzance"}}),
        ),
        person(
            ("userId", "cy-1"),
            json!({"firstName": "Cressida", "lastName": "Montgomery", "address": {"street": "7 Harbour Row", "city": "Oban", "postalCode": "PA34 4LW"}, "birthday": "1991-11-02"}),
        ),
        person(
            ("userId", "cy-2"),
            json!({"firstName": "Cressida", "lastName": "Montgomery", "address": {"street": "7 Harbour Row", "city": "Oban", "postalCode": "PA34 4LW"}, "birthday": "1991-11-02"}),
        ),
    ]
}

#[test]
fn matching_merges_reviews_and_replays() {
    let (_d, s) = store();
    append(s.as_ref(), &population(400));
    append(s.as_ref(), &planted());
    process(&s);
    let (ann, ann_cookie) = (
        profile(&s, "user_id:ann-1").id,
        profile(&s, "anonymous_id:cookie-ann").id,
    );
    assert_ne!(ann, ann_cookie);

    let status = matching::run(
        s.as_ref(),
        &direct_append(s.as_ref()),
        &MatchingOptions::default(),
        now(),
    )
    .unwrap();
    let review = Review { store: s.as_ref() };
    let (pending, next) = review.pending_page(None, 100).unwrap();
    assert_eq!(
        (status.matches, status.review, pending.len(), next),
        (2, 1, 1, None),
        "{status:#?} {pending:#?}"
    );
    process(&s);

    // Automatic: Ann's two profiles are one, and the explanation says why.
    let merged = profile(&s, "anonymous_id:cookie-ann");
    assert_eq!(merged.id, ann);
    assert_eq!(profile(&s, "email:annabel.f@example.org").id, ann);
    let history = Profiles { store: s.as_ref() }.explanation(&merged).unwrap();
    let reason = history
        .iter()
        .find_map(|e| match &e.event {
            IdentityEvent::ProfileMerged {
                from,
                reason: Some(r),
                ..
            } if *from == ann_cookie => Some(r.clone()),
            _ => None,
        })
        .expect("the merge is explained");
    assert_eq!(reason.kind, "probabilistic match");
    assert_eq!(reason.decided_by, "automatic");
    assert!(reason.score > 0.0);

    // Forbidden by the rules: reported as refused, profiles stay apart.
    let (cy1, cy2) = (
        profile(&s, "user_id:cy-1").id,
        profile(&s, "user_id:cy-2").id,
    );
    assert_ne!(cy1, cy2);
    let pair = rapport_engine::identity::review::pair_id(&cy1, &cy2).0;
    let outcome = review
        .outcome(&pair)
        .unwrap()
        .expect("the processor recorded an outcome");
    assert!(
        matches!(outcome.outcome, Outcome::Refused { .. }),
        "{outcome:?}"
    );
    assert!(review.decided(&pair).unwrap().is_some());

    // Borderline: Bartholomew Quigley twice in Penzance, nothing else in common, awaits review.
    let (bo, bo_cookie) = (
        profile(&s, "user_id:bo-1").id,
        profile(&s, "anonymous_id:cookie-bo").id,
    );
    let bo_pair = rapport_engine::identity::review::pair_id(&bo, &bo_cookie).0;
    let candidate = review
        .pending(&bo_pair)
        .unwrap()
        .expect("the borderline pair is pending");
    assert!(candidate.fields.iter().any(|f| f.field == "city"));

    // Running again proposes nothing new: decided pairs are remembered.
    let again = matching::run(
        s.as_ref(),
        &direct_append(s.as_ref()),
        &MatchingOptions::default(),
        now(),
    )
    .unwrap();
    assert_eq!(again.merges_appended, 0, "{again:#?}");

    // Accepting merges through the log.
    let c = review.to_decide(&bo_pair).unwrap();
    let appended = direct_append(s.as_ref())(vec![
        c.merge(Verdict::Accepted, now(), Some("k_reviewer".into()))
            .append_item(),
    ])
    .unwrap();
    let Appended::Stored(offset) = appended[0] else {
        panic!("stored")
    };
    s.state_commit(
        &Review::decide(&Decided {
            candidate: c,
            decision: Verdict::Accepted,
            decided_at_ms: 0,
            offset: Some(offset),
            reviewer: Some("k_reviewer".into()),
        }),
        None,
    )
    .unwrap();
    process(&s);
    assert_eq!(profile(&s, "anonymous_id:cookie-bo").id, bo);
    assert!(matches!(
        review.outcome(&bo_pair).unwrap().unwrap().outcome,
        Outcome::Merged { .. }
    ));
    assert!(review.pending(&bo_pair).unwrap().is_none());
    assert!(matches!(
        review.to_decide(&bo_pair),
        Err(EngineError::Conflict(_))
    ));

    // Replaying the log into a fresh store rebuilds identical profiles.
    let (_d2, fresh) = replay_into_fresh_store(&s);
    process(&fresh);
    for reference in [
        "user_id:ann-1",
        "anonymous_id:cookie-ann",
        "user_id:bo-1",
        "user_id:cy-1",
        "user_id:cy-2",
        "user_id:bg-7",
    ] {
        assert_eq!(
            profile(&s, reference),
            profile(&fresh, reference),
            "{reference}"
        );
    }
}

fn replay_into_fresh_store(s: &Arc<dyn Store>) -> (tempfile::TempDir, Arc<dyn Store>) {
    let (dir, fresh) = store();
    let entries = s.read_after(0, 1_000_000).unwrap();
    let items: Vec<AppendItem> = entries
        .iter()
        .enumerate()
        .map(|(i, (_, payload))| AppendItem {
            dedup_key: format!("replay-{i}").into_bytes(),
            payload: payload.clone(),
        })
        .collect();
    fresh.append(&items, 0, 1).unwrap();
    (dir, fresh)
}

#[test]
fn rules_changes_apply_from_their_place_in_the_log() {
    let (_d, s) = store();
    let ev = |user: &str, email: &str| json!({"type": "identify", "userId": user, "traits": {"email": email}, "timestamp": "2024-05-01T10:00:00Z"});
    let mut processor = Processor::new(s.clone(), IdentityRules::default()).with_batch_size(2);
    append(s.as_ref(), &[ev("u1", "a@x.org"), ev("u1", "b@x.org")]);
    processor.run_to_end().unwrap();
    // Under the default rules a second e-mail joins the profile.
    assert_eq!(profile(&s, "user_id:u1").identifiers.len(), 3);

    let strict = IdentityRules::from_json(
        r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":1}],"blocked_values":["c@x.org"]}"#,
    )
    .unwrap();
    let change = RulesChange::new(strict.clone(), now(), Some("ops".into()));
    // The change sits in the middle of a batch: the event before it obeys the old rules.
    append(s.as_ref(), &[ev("u4", "f@x.org"), ev("u4", "g@x.org")]);
    s.append(&[change.append_item()], 1_717_300_000_000, 86_400_000)
        .unwrap();
    append(
        s.as_ref(),
        &[
            ev("u2", "d@x.org"),
            ev("u2", "e@x.org"),
            ev("u3", "c@x.org"),
        ],
    );
    processor.run_to_end().unwrap();
    let rules = RulesStore { store: s.as_ref() };
    let applied = rules.outcome(&change.request).unwrap().unwrap();
    assert!(
        matches!(applied, ChangeOutcome::Applied { version: 1, .. }),
        "{applied:?}"
    );
    let current = rules.current(&IdentityRules::default()).unwrap();
    assert_eq!(
        (
            current.version,
            current.rules,
            current.changed_by.as_deref()
        ),
        (1, strict.clone(), Some("ops"))
    );
    // Not retroactive: u1 and u4 keep both e-mails; later events obey the limit and the
    // block list.
    assert_eq!(profile(&s, "user_id:u1").identifiers.len(), 3);
    assert_eq!(profile(&s, "user_id:u4").identifiers.len(), 3);
    assert_eq!(profile(&s, "user_id:u2").identifiers.len(), 2);
    assert_eq!(profile(&s, "user_id:u3").identifiers.len(), 1);

    // A new processor (a restart) resumes under the rules in force.
    append(s.as_ref(), &[ev("u5", "h@x.org"), ev("u5", "i@x.org")]);
    Processor::new(s.clone(), IdentityRules::default())
        .run_to_end()
        .unwrap();
    assert_eq!(profile(&s, "user_id:u5").identifiers.len(), 2);

    // Rules that fail validation when applied leave the rules as they were.
    let mut invalid = strict.clone();
    invalid.identifiers[1].limit = 0;
    let bad = RulesChange::new(invalid, now(), None);
    s.append(&[bad.append_item()], 1_717_300_000_000, 86_400_000)
        .unwrap();
    let second = RulesChange::new(IdentityRules::default(), now(), None);
    s.append(&[second.append_item()], 1_717_300_000_000, 86_400_000)
        .unwrap();
    append(s.as_ref(), &[ev("u6", "j@x.org"), ev("u6", "k@x.org")]);
    process(&s);
    match rules.outcome(&bad.request).unwrap().unwrap() {
        ChangeOutcome::Invalid { field, .. } => assert_eq!(field, "identifiers[1].limit"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        rules.outcome(&second.request).unwrap().unwrap(),
        ChangeOutcome::Applied { version: 2, .. }
    ));
    assert_eq!(profile(&s, "user_id:u6").identifiers.len(), 3);
    let history = rules.history().unwrap();
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // Replaying the log applies every change at the same place: identical profiles and
    // versions.
    let (_d2, fresh) = replay_into_fresh_store(&s);
    process(&fresh);
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        let reference = format!("user_id:{user}");
        assert_eq!(
            profile(&s, &reference),
            profile(&fresh, &reference),
            "{reference}"
        );
    }
    assert_eq!(
        RulesStore {
            store: fresh.as_ref()
        }
        .history()
        .unwrap(),
        history
    );
}

#[test]
fn scheduled_runs_one_at_a_time_and_stop_on_shutdown() {
    use rapport_engine::identity::matching::JobState;
    use rapport_engine::identity::runner::{Matcher, MatchingSchedule};
    use std::time::{Duration, Instant};

    let (_d, s) = store();
    append(s.as_ref(), &population(400));
    append(s.as_ref(), &planted());
    process(&s);
    // The log handle the runs append through, as a server's ingestor would be.
    let handle = Arc::new(());
    let appender = {
        let (s, handle) = (s.clone(), handle.clone());
        Arc::new(move |items: Vec<AppendItem>| {
            let _ = &handle;
            Ok(s.append(&items, 1_717_300_000_000, 86_400_000)?)
        })
    };
    let matcher = Matcher::new(s.clone(), appender);
    let schedule = MatchingSchedule::every(
        matcher.clone(),
        Duration::from_secs(3600),
        Some(Duration::from_millis(10)),
        MatchingOptions::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match matching::last_status(s.as_ref()).unwrap() {
            Some(st) if st.state == JobState::Done => break st,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled run did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!((status.matches, status.review), (2, 1), "{status:#?}");
    process(&s);
    assert_eq!(
        profile(&s, "anonymous_id:cookie-ann").id,
        profile(&s, "user_id:ann-1").id
    );

    // A run started by hand while none is going; a second one at once is refused.
    matcher.start(MatchingOptions::default()).unwrap();
    let second = matcher.start(MatchingOptions::default());
    assert!(
        matches!(second, Err(EngineError::Conflict(_))) || !matcher.is_running(),
        "{second:?}"
    );
    // Invalid options are refused naming the field before anything starts.
    let bad = MatchingOptions {
        match_prior: 0.7,
        ..MatchingOptions::default()
    };
    match matcher.start(bad) {
        Err(EngineError::InvalidAt { field, .. }) => assert_eq!(field, "match_prior"),
        other => panic!("{other:?}"),
    }

    // Shutdown waits for the run, lets the log handle go and refuses new runs.
    schedule.stop();
    matcher.shutdown();
    assert!(!matcher.is_running());
    assert_eq!(
        Arc::strong_count(&handle),
        1,
        "the runner still holds the log"
    );
    assert!(matches!(
        matcher.start(MatchingOptions::default()),
        Err(EngineError::ShuttingDown)
    ));
}
