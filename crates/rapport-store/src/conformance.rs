//! The behaviour every storage backend must show, as plain functions over `&dyn Store`.
//! Each backend's tests call [`run_all`] (and [`reopen`] with a factory), so the embedded
//! store and PostgreSQL are held to one definition of correct.

use crate::{
    ApiKey, AppendItem, Appended, EventQuery, IdentityPolicy, IndexEntry, KeyKind, RateLimit,
    Source, SourceSettings, StateWrite, Store, TraitPolicy,
};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

pub fn run_all(store: &dyn Store) {
    append_assigns_dense_offsets_and_dedups(store);
    dedup_window_expires(store);
    index_queries_newest_first_with_paging(store);
    state_is_per_profile_and_deletable(store);
    state_pages_by_key(store);
    registry_round_trips(store);
    rewrite_replaces_payloads(store);
    unindex_removes_entries_and_purge_keeps_the_rest(store);
    boundary_values(store);
}

/// The limits every caller keeps to ([`crate::MAX_KEY_TEXT_BYTES`] of text in keys, no
/// NUL in text) hold on this backend: ids and names of that length, in multi-byte and
/// astral characters, are indexed and found; partition keys of that length are written and
/// read; binary keys and payloads may hold any byte, NUL included; a large value round-trips.
fn boundary_values(store: &dyn Store) {
    use crate::MAX_KEY_TEXT_BYTES as MAX;
    let two_byte = "é".repeat(MAX / 2);
    let four_byte = "\u{1F600}".repeat(MAX / 4);
    let mixed = format!("{}{}", "x".repeat(MAX - 3), "€");
    for text in [&two_byte, &four_byte, &mixed] {
        assert_eq!(text.len(), MAX);
    }
    let base = store.last_offset().unwrap();
    let payload = "{\"n\":\"\u{0}\u{1}\"}\u{0}";
    let out = store
        .append(
            &[AppendItem {
                dedup_key: format!("limit:{mixed}\u{0}").into_bytes(),
                payload: payload.as_bytes().to_vec(),
            }],
            T0,
            DAY,
        )
        .unwrap();
    assert_eq!(out, vec![Appended::Stored(base + 1)]);
    assert_eq!(store.get(base + 1).unwrap().unwrap(), payload.as_bytes());
    let offset = base + 1;
    store
        .index(
            &[entry(
                offset,
                T0 + 7,
                Some(&two_byte),
                Some(&four_byte),
                "track",
                Some(&mixed),
            )],
            "boundary",
            offset,
        )
        .unwrap();
    let by_user = store
        .query(&EventQuery {
            user_id: Some(two_byte.clone()),
            limit: 10,
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(by_user.events.len(), 1);
    let by_anon = store
        .query(&EventQuery {
            anonymous_id: Some(four_byte.clone()),
            name: Some(mixed.clone()),
            limit: 10,
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(by_anon.events.len(), 1);

    let big = vec![0u8; 1 << 20];
    store
        .state_commit(
            &[
                StateWrite {
                    namespace: "boundary".into(),
                    profile: four_byte.clone(),
                    key: vec![0, 255, 0],
                    value: Some(big.clone()),
                },
                StateWrite {
                    namespace: "boundary".into(),
                    profile: mixed.clone(),
                    key: mixed.as_bytes().to_vec(),
                    value: Some(Vec::new()),
                },
            ],
            Some(("boundary", offset)),
        )
        .unwrap();
    assert_eq!(
        store
            .state_get("boundary", &four_byte, &[0, 255, 0])
            .unwrap(),
        Some(big)
    );
    assert_eq!(
        store.state_scan("boundary", &mixed).unwrap(),
        vec![(mixed.as_bytes().to_vec(), Vec::new())]
    );
}

fn item(key: &str, payload: &str) -> AppendItem {
    AppendItem {
        dedup_key: key.as_bytes().to_vec(),
        payload: payload.as_bytes().to_vec(),
    }
}

fn append_assigns_dense_offsets_and_dedups(store: &dyn Store) {
    let base = store.last_offset().unwrap();
    let out = store
        .append(
            &[item("s:a", "A"), item("s:b", "B"), item("s:a", "A again")],
            T0,
            7 * DAY,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Appended::Stored(base + 1),
            Appended::Stored(base + 2),
            Appended::Duplicate
        ]
    );
    let out = store
        .append(&[item("s:b", "B"), item("s:c", "C")], T0 + DAY, 7 * DAY)
        .unwrap();
    assert_eq!(out, vec![Appended::Duplicate, Appended::Stored(base + 3)]);
    assert_eq!(store.last_offset().unwrap(), base + 3);
    let read = store.read_after(base, 10).unwrap();
    let payloads: Vec<_> = read.iter().map(|(o, p)| (*o, p.as_slice())).collect();
    assert_eq!(
        payloads,
        vec![
            (base + 1, b"A".as_slice()),
            (base + 2, b"B".as_slice()),
            (base + 3, b"C".as_slice())
        ]
    );
    assert_eq!(store.read_after(base + 1, 1).unwrap()[0].0, base + 2);
    assert_eq!(
        store.get(base + 2).unwrap().as_deref(),
        Some(b"B".as_slice())
    );
    assert_eq!(store.get(base + 100).unwrap(), None);
}

fn dedup_window_expires(store: &dyn Store) {
    let base = store.last_offset().unwrap();
    let window = 2 * DAY;
    assert_eq!(
        store.append(&[item("w:x", "1")], T0, window).unwrap(),
        vec![Appended::Stored(base + 1)]
    );
    assert_eq!(
        store
            .append(&[item("w:x", "2")], T0 + window - 1, window)
            .unwrap(),
        vec![Appended::Duplicate]
    );
    assert_eq!(
        store
            .append(&[item("w:x", "3")], T0 + window + 1, window)
            .unwrap(),
        vec![Appended::Stored(base + 2)]
    );
}

fn entry(
    offset: u64,
    ts: i64,
    user: Option<&str>,
    anon: Option<&str>,
    kind: &str,
    name: Option<&str>,
) -> IndexEntry {
    IndexEntry {
        offset,
        timestamp_ms: ts,
        user_id: user.map(str::to_owned),
        anonymous_id: anon.map(str::to_owned),
        kind: kind.to_owned(),
        name: name.map(str::to_owned),
        // Most events come from `web`; the conformance test sets the others.
        source_id: Some("web".to_owned()),
    }
}

fn index_queries_newest_first_with_paging(store: &dyn Store) {
    let base = store.last_offset().unwrap();
    let payloads: Vec<AppendItem> = (0..6)
        .map(|i| {
            item(
                &format!("q:{i}"),
                &format!(
                    r#"{{"n":{i},"anonymousId":"{}"}}"#,
                    if i % 2 == 0 { "a1" } else { "a2" }
                ),
            )
        })
        .collect();
    store.append(&payloads, T0, DAY).unwrap();
    let o = |i: u64| base + 1 + i;
    let entries = vec![
        entry(
            o(0),
            T0 - 50,
            Some("u1"),
            Some("a1"),
            "track",
            Some("Viewed"),
        ),
        entry(
            o(1),
            T0 - 40,
            Some("u1"),
            Some("a2"),
            "track",
            Some("Bought"),
        ),
        entry(o(2), T0 - 30, None, Some("a1"), "page", Some("Home")),
        // Same timestamp as the next: order falls back to offset.
        entry(o(3), T0 - 20, Some("u2"), Some("a2"), "identify", None),
        entry(
            o(4),
            T0 - 20,
            Some("u1"),
            Some("a1"),
            "track",
            Some("Bought"),
        ),
        // A late event: older timestamp, newer offset.
        entry(
            o(5),
            T0 - 60,
            Some("u1"),
            Some("a2"),
            "track",
            Some("Viewed"),
        ),
    ];
    let mut entries = entries;
    entries[1].source_id = Some("ios".into());
    entries[3].source_id = None;
    store.index(&entries, "indexer", o(5)).unwrap();
    assert_eq!(store.consumer_offset("indexer").unwrap(), o(5));
    assert_eq!(store.consumer_offset("nobody").unwrap(), 0);

    let offsets = |q: EventQuery| -> Vec<u64> {
        store
            .query(&q)
            .unwrap()
            .events
            .into_iter()
            .map(|(o, _)| o)
            .collect()
    };
    let q = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = EventQuery {
            since_ms: Some(T0 - 1000),
            limit: 100,
            ..EventQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(
        offsets(q(&|_| {})),
        vec![o(4), o(3), o(2), o(1), o(0), o(5)]
    );
    assert_eq!(
        offsets(q(&|q| q.user_id = Some("u1".into()))),
        vec![o(4), o(1), o(0), o(5)]
    );
    assert_eq!(
        offsets(q(&|q| q.anonymous_id = Some("a1".into()))),
        vec![o(4), o(2), o(0)]
    );
    assert_eq!(
        offsets(q(&|q| {
            q.user_id = Some("u1".into());
            q.anonymous_id = Some("a2".into());
        })),
        vec![o(1), o(5)]
    );
    assert_eq!(offsets(q(&|q| q.kind = Some("page".into()))), vec![o(2)]);
    assert_eq!(
        offsets(q(&|q| q.name = Some("Bought".into()))),
        vec![o(4), o(1)]
    );
    assert_eq!(
        offsets(q(&|q| {
            q.since_ms = Some(T0 - 40);
            q.until_ms = Some(T0 - 20);
        })),
        vec![o(2), o(1)]
    );
    assert_eq!(
        offsets(q(&|q| q.user_id = Some("nobody".into()))),
        Vec::<u64>::new()
    );
    assert_eq!(
        offsets(q(&|q| q.source_id = Some("ios".into()))),
        vec![o(1)]
    );
    assert_eq!(
        offsets(q(&|q| q.source_id = Some("web".into()))),
        vec![o(4), o(2), o(0), o(5)]
    );
    assert_eq!(
        offsets(q(&|q| {
            q.source_id = Some("web".into());
            q.user_id = Some("u1".into());
            q.name = Some("Viewed".into());
        })),
        vec![o(0), o(5)]
    );
    assert_eq!(
        offsets(q(&|q| {
            q.source_id = Some("ios".into());
            q.anonymous_id = Some("a2".into());
        })),
        vec![o(1)]
    );

    // Paging visits every match once, in order.
    let mut seen = Vec::new();
    let mut query = q(&|q| q.limit = 2);
    loop {
        let page = store.query(&query).unwrap();
        seen.extend(page.events.iter().map(|(o, _)| *o));
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
        assert!(seen.len() <= 6, "paging does not terminate");
    }
    assert_eq!(seen, vec![o(4), o(3), o(2), o(1), o(0), o(5)]);
}

fn sw(ns: &str, profile: &str, key: &str, value: Option<&str>) -> StateWrite {
    StateWrite {
        namespace: ns.to_owned(),
        profile: profile.to_owned(),
        key: key.as_bytes().to_vec(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn state_is_per_profile_and_deletable(store: &dyn Store) {
    store
        .state_commit(
            &[
                sw("traits", "p1", "b", Some("2")),
                sw("traits", "p1", "a", Some("1")),
                sw("traits", "p10", "a", Some("x")),
                sw("ids", "p1", "email", Some("e")),
            ],
            Some(("processor", 42)),
        )
        .unwrap();
    assert_eq!(store.consumer_offset("processor").unwrap(), 42);
    assert_eq!(
        store.state_get("traits", "p1", b"a").unwrap().as_deref(),
        Some(b"1".as_slice())
    );
    let scan = store.state_scan("traits", "p1").unwrap();
    assert_eq!(
        scan,
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    store
        .state_commit(&[sw("traits", "p1", "a", None)], None)
        .unwrap();
    assert_eq!(store.state_get("traits", "p1", b"a").unwrap(), None);
    store.delete_profile("p1").unwrap();
    assert!(store.state_scan("traits", "p1").unwrap().is_empty());
    assert!(store.state_scan("ids", "p1").unwrap().is_empty());
    assert_eq!(
        store.state_get("traits", "p10", b"a").unwrap().as_deref(),
        Some(b"x".as_slice())
    );
}

fn state_pages_by_key(store: &dyn Store) {
    let writes: Vec<StateWrite> = [0u8, 1, 2, 0xff, 7]
        .iter()
        .map(|&b| StateWrite {
            namespace: "members".into(),
            profile: "seg".into(),
            key: vec![b, b],
            value: Some(vec![b]),
        })
        .chain([
            sw("members", "seg2", "x", Some("neighbour")),
            sw("member", "seg", "y", Some("other namespace")),
        ])
        .collect();
    store.state_commit(&writes, None).unwrap();
    let keys = |after: Option<&[u8]>, limit| -> Vec<Vec<u8>> {
        store
            .state_scan_range("members", "seg", after, limit)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(None, 2), vec![vec![0, 0], vec![1, 1]]);
    assert_eq!(keys(Some(&[1, 1]), 2), vec![vec![2, 2], vec![7, 7]]);
    assert_eq!(keys(Some(&[7, 7]), 10), vec![vec![0xff, 0xff]]);
    assert!(keys(Some(&[0xff, 0xff]), 10).is_empty());
    assert_eq!(keys(Some(&[1]), 1), vec![vec![1, 1]]);
    assert_eq!(keys(None, 100).len(), 5);
    assert!(keys(None, 0).is_empty());
}

fn registry_round_trips(store: &dyn Store) {
    let mut source = Source {
        id: "src_1".into(),
        name: "web".into(),
        created_at_ms: T0,
        settings: SourceSettings::default(),
    };
    store.put_source(&source).unwrap();
    assert!(store.sources().unwrap().contains(&source));
    // Settings round-trip, and a second put replaces them (and keeps one source).
    source.settings = SourceSettings {
        traits: TraitPolicy {
            allow: Some(vec!["name".into(), "email".into()]),
            deny: vec!["plan".into()],
        },
        identity: IdentityPolicy {
            merge: false,
            identifier_types: Some(vec!["user_id".into(), "anonymous_id".into()]),
        },
        rate_limit: Some(RateLimit {
            per_second: 50,
            burst: 100,
        }),
        ip_rate_limit: Some(RateLimit {
            per_second: 5,
            burst: 10,
        }),
        retention_days: Some(30),
    };
    store.put_source(&source).unwrap();
    let stored: Vec<Source> = store
        .sources()
        .unwrap()
        .into_iter()
        .filter(|s| s.id == "src_1")
        .collect();
    assert_eq!(stored, vec![source.clone()]);
    source.settings = SourceSettings::default();
    store.put_source(&source).unwrap();
    assert!(store.sources().unwrap().contains(&source));
    let mut key = ApiKey {
        id: "key_1".into(),
        kind: KeyKind::Write,
        source_id: Some("src_1".into()),
        name: "web write key".into(),
        secret_hash: "ab".repeat(32),
        secret_prefix: "wk_abcd".into(),
        created_at_ms: T0,
        revoked_at_ms: None,
    };
    store.put_key(&key).unwrap();
    assert_eq!(
        store.key_by_hash(&key.secret_hash).unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.key_by_hash(&"cd".repeat(32)).unwrap(), None);
    key.revoked_at_ms = Some(T0 + 1);
    store.put_key(&key).unwrap();
    assert_eq!(
        store
            .key_by_hash(&key.secret_hash)
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(T0 + 1)
    );
    assert_eq!(
        store
            .keys()
            .unwrap()
            .iter()
            .filter(|k| k.id == "key_1")
            .count(),
        1
    );
}

fn rewrite_replaces_payloads(store: &dyn Store) {
    let base = store.last_offset().unwrap();
    store.append(&[item("r:1", "secret")], T0, DAY).unwrap();
    store.rewrite(&[(base + 1, b"{}".to_vec())]).unwrap();
    assert_eq!(
        store.get(base + 1).unwrap().as_deref(),
        Some(b"{}".as_slice())
    );
    assert_eq!(store.last_offset().unwrap(), base + 1);
}

/// What `unindex` names is gone from every listing, the rest is untouched, and a purge
/// changes nothing a reader sees.
fn unindex_removes_entries_and_purge_keeps_the_rest(store: &dyn Store) {
    let base = store.last_offset().unwrap();
    store
        .append(&[item("u:1", "{}"), item("u:2", "{}")], T0, DAY)
        .unwrap();
    let gone = entry(
        base + 1,
        T0 + 7,
        Some("forget-me"),
        Some("anon-f"),
        "track",
        None,
    );
    let kept = entry(
        base + 2,
        T0 + 7,
        Some("keep-me"),
        Some("anon-k"),
        "track",
        None,
    );
    store
        .index(&[gone.clone(), kept.clone()], "unindex-test", base + 2)
        .unwrap();
    let offsets = |user: Option<&str>, anon: Option<&str>| -> Vec<u64> {
        let q = EventQuery {
            user_id: user.map(str::to_owned),
            anonymous_id: anon.map(str::to_owned),
            since_ms: Some(T0 + 7),
            until_ms: Some(T0 + 8),
            limit: 100,
            ..EventQuery::default()
        };
        store
            .query(&q)
            .unwrap()
            .events
            .iter()
            .map(|(o, _)| *o)
            .collect()
    };
    assert_eq!(offsets(Some("forget-me"), None), vec![base + 1]);
    store.unindex(std::slice::from_ref(&gone)).unwrap();
    store.purge().unwrap();
    assert!(offsets(Some("forget-me"), None).is_empty());
    assert!(offsets(None, Some("anon-f")).is_empty());
    assert_eq!(offsets(Some("keep-me"), None), vec![base + 2]);
    assert_eq!(offsets(None, Some("anon-k")), vec![base + 2]);
    assert_eq!(offsets(None, None), vec![base + 2]);
    assert_eq!(store.last_offset().unwrap(), base + 2);
}

/// Offsets, de-duplication and consumer offsets survive closing and reopening the store.
pub fn reopen<S: Store>(open: impl Fn() -> S) {
    {
        let store = open();
        store
            .append(&[item("k:1", "one"), item("k:2", "two")], T0, DAY)
            .unwrap();
        store.state_commit(&[], Some(("c", 2))).unwrap();
    }
    let store = open();
    assert_eq!(store.last_offset().unwrap(), 2);
    assert_eq!(store.consumer_offset("c").unwrap(), 2);
    assert_eq!(
        store
            .append(&[item("k:1", "one"), item("k:3", "three")], T0 + 1, DAY)
            .unwrap(),
        vec![Appended::Duplicate, Appended::Stored(3)]
    );
}
