use super::{PURGE_EVERY_MS, PostgresOptions, PostgresStore};
use crate::testing::TestPostgres;
use crate::{
    AppendItem, Appended, EventIndex, EventLog, EventQuery, IndexEntry, Registry, Source,
    SourceSettings, StateStore, StateWrite, StoreError,
};
use postgres::NoTls;
use std::time::Duration;

fn fresh() -> (String, PostgresStore) {
    let url = TestPostgres::shared().create_database();
    let store = PostgresStore::open(&url).unwrap();
    (url, store)
}

fn item(key: &str, payload: &str) -> AppendItem {
    AppendItem {
        dedup_key: key.as_bytes().to_vec(),
        payload: payload.as_bytes().to_vec(),
    }
}

#[test]
fn conformance() {
    let (_, store) = fresh();
    crate::conformance::run_all(&store);
}

#[test]
fn reopen_keeps_offsets_and_dedup() {
    let url = TestPostgres::shared().create_database();
    crate::conformance::reopen(|| PostgresStore::open(&url).unwrap());
}

#[test]
fn migrations_are_idempotent_on_reopen() {
    let (url, store) = fresh();
    store.append(&[item("m:1", "x")], 1_000, 10).unwrap();
    let applied = store.applied_migrations().unwrap();
    assert_eq!(
        applied,
        (1..=PostgresStore::schema_version()).collect::<Vec<_>>()
    );
    drop(store);
    // Opening again, and from several threads at once, applies nothing twice.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| PostgresStore::open(&url).unwrap());
        }
    });
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.applied_migrations().unwrap(), applied);
    assert_eq!(store.last_offset().unwrap(), 1);
    assert_eq!(store.get(1).unwrap().as_deref(), Some(b"x".as_slice()));
}

#[test]
fn sources_written_before_settings_read_as_unrestricted() {
    let (url, store) = fresh();
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    // A row as the first schema wrote it: no settings.
    client
        .execute(
            "insert into sources (id, name, created_at_ms) values ('src_old', 'old', 1)",
            &[],
        )
        .unwrap();
    let sources = store.sources().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].settings, SourceSettings::default());
}

/// Events indexed before the index recorded sources (schema 2) are listed by source once
/// the store has migrated: the migration reads each one's source from its event.
#[test]
fn events_indexed_before_sources_were_recorded_are_found_by_source() {
    let url = TestPostgres::shared().create_database();
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    client
        .batch_execute(
            "create table schema_migrations (version integer primary key,
                 applied_at timestamptz not null default now());",
        )
        .unwrap();
    for (version, sql) in super::MIGRATIONS.iter().filter(|(v, _)| *v <= 2) {
        client.batch_execute(sql).unwrap();
        client
            .execute(
                "insert into schema_migrations (version) values ($1)",
                &[version],
            )
            .unwrap();
    }
    // As schema 2 stored them; the third event's JSON holds a NUL, which `jsonb` refuses.
    client
        .batch_execute(
            r#"insert into log values
                 (1, convert_to('{"type":"track","userId":"u","sourceId":"web"}', 'UTF8')),
                 (2, convert_to('{"type":"track","anonymousId":"a","sourceId":"ios"}', 'UTF8')),
                 (3, convert_to('{"type":"track","userId":"u","event":"\u0000","sourceId":"web"}', 'UTF8')),
                 (4, convert_to('{"type":"track","userId":"u"}', 'UTF8'));
               insert into events_by_time values (1, 1, 'track', null), (2, 2, 'track', null),
                 (3, 3, 'track', null), (4, 4, 'track', null);
               insert into events_by_user values ('u', 1, 1, null, 'track', null),
                 ('u', 3, 3, null, 'track', null), ('u', 4, 4, null, 'track', null);
               insert into events_by_anon values ('a', 2, 2, 'track', null);
               insert into consumers values ('indexer', 4);"#,
        )
        .unwrap();
    let store = PostgresStore::open(&url).unwrap();
    let offsets = |f: &dyn Fn(&mut EventQuery)| -> Vec<u64> {
        let mut q = EventQuery {
            limit: 10,
            ..EventQuery::default()
        };
        f(&mut q);
        store
            .query(&q)
            .unwrap()
            .events
            .iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(offsets(&|q| q.source_id = Some("web".into())), vec![3, 1]);
    assert_eq!(
        offsets(&|q| {
            q.source_id = Some("web".into());
            q.user_id = Some("u".into());
        }),
        vec![3, 1]
    );
    assert_eq!(
        offsets(&|q| {
            q.source_id = Some("ios".into());
            q.anonymous_id = Some("a".into());
        }),
        vec![2]
    );
    assert_eq!(offsets(&|_| {}), vec![4, 3, 2, 1]);
}

#[test]
fn a_newer_schema_is_refused() {
    let (url, store) = fresh();
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    client
        .execute(
            "insert into schema_migrations (version) values ($1)",
            &[&(PostgresStore::schema_version() + 1)],
        )
        .unwrap();
    drop(store);
    let err = PostgresStore::open(&url)
        .err()
        .expect("a newer schema is refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn two_stores_appending_concurrently_keep_offsets_dense() {
    let (url, first) = fresh();
    let second = PostgresStore::open(&url).unwrap();
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 5;
    let outcomes: Vec<Vec<Appended>> = std::thread::scope(|s| {
        let handles: Vec<_> = [&first, &second]
            .into_iter()
            .enumerate()
            .map(|(w, store)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for b in 0..BATCHES {
                        let items: Vec<_> = (0..PER_BATCH)
                            .map(|i| item(&format!("{w}:{b}:{i}"), &format!("{w}:{b}:{i}")))
                            .collect();
                        out.extend(store.append(&items, 1_000, 60_000).unwrap());
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut offsets: Vec<u64> = outcomes
        .iter()
        .flatten()
        .map(|o| match o {
            Appended::Stored(o) => *o,
            Appended::Duplicate => panic!("distinct keys are never duplicates"),
        })
        .collect();
    offsets.sort_unstable();
    let total = (2 * BATCHES * PER_BATCH) as u64;
    assert_eq!(offsets, (1..=total).collect::<Vec<_>>());
    assert_eq!(first.last_offset().unwrap(), total);
    // Each writer's own offsets grow, and each batch got consecutive offsets.
    for out in &outcomes {
        for batch in out.chunks(PER_BATCH) {
            let os: Vec<u64> = batch
                .iter()
                .map(|o| match o {
                    Appended::Stored(o) => *o,
                    Appended::Duplicate => unreachable!(),
                })
                .collect();
            assert!(os.windows(2).all(|w| w[1] == w[0] + 1), "{os:?}");
        }
    }
    let log = second.read_after(0, 10_000).unwrap();
    assert_eq!(log.len() as u64, total);
    // The same key from both stores at once is stored once.
    let both: Vec<Vec<Appended>> = std::thread::scope(|s| {
        let a = s.spawn(|| first.append(&[item("same", "a")], 2_000, 60_000).unwrap());
        let b = s.spawn(|| second.append(&[item("same", "b")], 2_000, 60_000).unwrap());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let stored = both
        .iter()
        .flatten()
        .filter(|o| matches!(o, Appended::Stored(_)))
        .count();
    assert_eq!(stored, 1, "{both:?}");
}

fn dedup_rows(url: &str) -> i64 {
    let mut client = postgres::Client::connect(url, NoTls).unwrap();
    client
        .query_one("select count(*) from dedup", &[])
        .unwrap()
        .get(0)
}

#[test]
fn dedup_keys_older_than_the_window_are_forgotten_and_purged() {
    let (url, store) = fresh();
    let window = 10_000;
    assert_eq!(
        store.append(&[item("old", "1")], 1_000, window).unwrap(),
        vec![Appended::Stored(1)]
    );
    assert_eq!(
        store
            .append(&[item("old", "2")], 1_000 + window, window)
            .unwrap(),
        vec![Appended::Duplicate]
    );
    // A purge deletes only keys received before the window's start.
    assert_eq!(store.purge_expired_dedup(1_000, 100).unwrap(), 0);
    assert_eq!(dedup_rows(&url), 1);
    // A minute later the append's own purge removes the expired key, and the key is
    // accepted again.
    let later = 1_000 + 2 * PURGE_EVERY_MS;
    assert_eq!(
        store.append(&[item("new", "3")], later, window).unwrap(),
        vec![Appended::Stored(2)]
    );
    assert_eq!(dedup_rows(&url), 1, "the expired key was purged");
    assert_eq!(
        store.append(&[item("old", "4")], later, window).unwrap(),
        vec![Appended::Stored(3)]
    );
    assert_eq!(
        store
            .append(&[item("old", "5")], later + 1, window)
            .unwrap(),
        vec![Appended::Duplicate]
    );
    // Purges are bounded.
    let many: Vec<_> = (0..25).map(|i| item(&format!("b{i}"), "x")).collect();
    store.append(&many, later, window).unwrap();
    let removed = store.purge_expired_dedup(later + 1, 10).unwrap();
    assert_eq!(removed, 10);
    assert_eq!(dedup_rows(&url), 27 - 10);
}

#[test]
fn state_and_index_writes_repeated_in_one_call_keep_the_last() {
    let (_, store) = fresh();
    let w = |v: Option<&str>| StateWrite {
        namespace: "n".into(),
        profile: "p".into(),
        key: b"k".to_vec(),
        value: v.map(|v| v.as_bytes().to_vec()),
    };
    store
        .state_commit(&[w(Some("1")), w(Some("2"))], None)
        .unwrap();
    assert_eq!(
        store.state_get("n", "p", b"k").unwrap().as_deref(),
        Some(b"2".as_slice())
    );
    store.state_commit(&[w(Some("3")), w(None)], None).unwrap();
    assert_eq!(store.state_get("n", "p", b"k").unwrap(), None);

    store.append(&[item("i", "{}")], 1, 1).unwrap();
    let e = |kind: &str| IndexEntry {
        offset: 1,
        timestamp_ms: 5,
        user_id: Some("u".into()),
        anonymous_id: Some("a".into()),
        kind: kind.into(),
        name: None,
        source_id: None,
    };
    store.index(&[e("track"), e("page")], "ix", 1).unwrap();
    // Re-indexing (after a crash, say) is harmless.
    store.index(&[e("page")], "ix", 1).unwrap();
    let page = store
        .query(&EventQuery {
            user_id: Some("u".into()),
            kind: Some("page".into()),
            name: Some(String::new()),
            limit: 10,
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(page.events, vec![(1, b"{}".to_vec())]);
    assert!(page.next.is_none());
}

#[test]
fn the_described_target_never_shows_the_password() {
    let o = PostgresOptions::default();
    let d =
        PostgresStore::describe_target("postgres://ann:s3cret@db.internal:6543/crm", &o).unwrap();
    assert_eq!(
        d,
        "db.internal:6543, database crm, user ann (connect timeout 10 s)"
    );
    let d = PostgresStore::describe_target(
        "host=a,b port=1,2 user=u password=s3cret dbname=x connect_timeout=3",
        &o,
    )
    .unwrap();
    assert!(!d.contains("s3cret"), "{d}");
    assert!(d.starts_with("a:1,b:2") && d.contains("timeout 3 s"), "{d}");
    assert!(PostgresStore::describe_target("not a url ::", &o).is_none());
}

#[test]
fn the_connect_timeout_bounds_an_unanswered_connection() {
    // A listener that accepts and never answers: without a timeout, opening would hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let err = PostgresStore::open_with(
        &format!("postgres://nobody@127.0.0.1:{port}/none"),
        PostgresOptions {
            connect_timeout: Duration::from_millis(500),
            ..PostgresOptions::default()
        },
    )
    .err()
    .expect("nothing answers");
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(
        err.to_string().contains("did not answer within 0.5 s"),
        "{err}"
    );
    drop(silent);
}

#[test]
fn database_errors_are_errors_not_panics() {
    let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .err()
        .expect("nothing listens on port 1");
    assert!(matches!(err, StoreError::Engine(_)), "{err}");
    assert!(PostgresStore::open("not a url ::").is_err());
    let (url, store) = fresh();
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    client.batch_execute("drop table state").unwrap();
    assert!(matches!(
        store.state_get("n", "p", b"k"),
        Err(StoreError::Engine(_))
    ));
    // Text columns cannot hold NUL; the error is reported, and the pool still works.
    assert!(
        store
            .put_source(&Source {
                id: "a\0b".into(),
                name: "x".into(),
                created_at_ms: 0,
                settings: Default::default(),
            })
            .is_err()
    );
    assert_eq!(store.last_offset().unwrap(), 0);
}

#[test]
fn connections_closed_by_the_server_are_replaced() {
    let (url, store) = fresh();
    store.append(&[item("c:1", "x")], 1, 1).unwrap();
    assert_eq!(store.last_offset().unwrap(), 1);
    let mut admin = postgres::Client::connect(&url, NoTls).unwrap();
    let kill = "select count(pg_terminate_backend(pid)) from pg_stat_activity
                where application_name = 'rapport' and datname = current_database()";
    let killed: i64 = admin.query_one(kill, &[]).unwrap().get(0);
    assert!(killed >= 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(store.last_offset().unwrap(), 1);
    admin.query_one(kill, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        store.append(&[item("c:2", "y")], 1, 1).unwrap(),
        vec![Appended::Stored(2)]
    );
}

#[test]
fn opens_over_the_unix_socket() {
    let pg = TestPostgres::shared();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap();
    let socket_url = format!(
        "postgresql:///{db}?user=postgres&host={}&port={}",
        pg.dir.display(),
        pg.port
    );
    let store = PostgresStore::open(&socket_url).unwrap();
    store.append(&[item("s", "x")], 1, 1).unwrap();
    assert_eq!(PostgresStore::open(&url).unwrap().last_offset().unwrap(), 1);
}

#[test]
#[ignore = "a throughput figure, not a check"]
fn append_throughput() {
    let (_, store) = fresh();
    let start = std::time::Instant::now();
    let batches = 200;
    for b in 0..batches {
        let items: Vec<_> = (0..100)
            .map(|i| item(&format!("{b}:{i}:{}", "m".repeat(30)), &"x".repeat(200)))
            .collect();
        store.append(&items, 1_000, 86_400_000).unwrap();
    }
    let el = start.elapsed();
    eprintln!("append: {} events in {el:?}", batches * 100);
    let start = std::time::Instant::now();
    for b in 0..batches {
        let entries: Vec<_> = (0..100u64)
            .map(|i| IndexEntry {
                offset: b * 100 + i + 1,
                timestamp_ms: (i * 7 % 13) as i64,
                user_id: Some(format!("u{}", i % 10)),
                anonymous_id: Some(format!("a{i}")),
                kind: "track".into(),
                name: Some("Viewed".into()),
                source_id: Some("web".into()),
            })
            .collect();
        store.index(&entries, "ix", b * 100 + 100).unwrap();
    }
    eprintln!("index: {} entries in {:?}", batches * 100, start.elapsed());
    let start = std::time::Instant::now();
    for p in 0..1000 {
        let writes: Vec<_> = (0..10)
            .map(|k| StateWrite {
                namespace: "traits".into(),
                profile: format!("p{p}"),
                key: vec![k],
                value: Some(vec![1; 50]),
            })
            .collect();
        store.state_commit(&writes, Some(("proc", p))).unwrap();
    }
    eprintln!(
        "state: 10,000 writes in 1,000 commits in {:?}",
        start.elapsed()
    );
}
