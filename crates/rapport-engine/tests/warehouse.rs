//! Warehouse destinations write into a real PostgreSQL database started by the test, with
//! Rapport itself on both stores: every event type in its table, typed columns, columns
//! added as properties appear, a type conflict beside its column, `users` by profile, no
//! duplicate after a run written twice, a database that is down parked for a retry, and a
//! row the database refuses dead-lettered alone while the others land.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use rapport_destinations::DestinationSpec;
use rapport_engine::destinations::{self, worker::Worker};
use rapport_store::Store;
use serde_json::json;
use std::sync::Arc;

fn stores() -> Vec<(&'static str, Option<tempfile::TempDir>, Arc<dyn Store>)> {
    let (dir, embedded) = common::store();
    let url = rapport_store::testing::TestPostgres::shared().create_database();
    let pg: Arc<dyn Store> = Arc::new(rapport_store::postgres::PostgresStore::open(&url).unwrap());
    vec![("embedded", Some(dir), embedded), ("postgres", None, pg)]
}

fn warehouse(name: &str, url: &str) -> DestinationSpec {
    serde_json::from_value(json!({"name": name, "kind": {"type": "warehouse",
        "database_url": url, "schema": "rapport", "timeout_secs": 2}}))
    .unwrap()
}

/// Steps the worker until it makes no request.
fn drain(worker: &mut Worker, now: DateTime<Utc>) {
    for _ in 0..100 {
        if worker.step(now).unwrap() == Some(0) {
            return;
        }
    }
    panic!("the worker did not settle");
}

fn db(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

fn count(c: &mut postgres::Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM rapport.{table}"), &[])
        .unwrap()
        .get(0)
}

/// `column → data_type` of a warehouse table.
fn types(c: &mut postgres::Client, table: &str) -> std::collections::HashMap<String, String> {
    c.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'rapport' AND table_name::text = $1",
        &[&table],
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// One text value of the warehouse.
fn value(c: &mut postgres::Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn every_type_lands_in_its_table_typed_and_a_run_written_twice_adds_nothing() {
    for (name, _dir, store) in stores() {
        let url = rapport_store::testing::TestPostgres::shared().create_database();
        let d =
            destinations::create(store.as_ref(), warehouse(&format!("w-{name}"), &url), 0).unwrap();
        let start = store
            .consumer_offset(&destinations::consumer(&d.id))
            .unwrap();
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "ann", "anonymousId": "anon-1",
                       "traits": {"email": "ann@example.com", "plan": "pro", "age": 30,
                                  "vip": true, "address": {"city": "Lyon"}},
                       "context": {"ip": "1.2.3.4", "library": {"name": "analytics.js"}},
                       "timestamp": "2024-05-20T00:00:00Z"}),
                json!({"type": "track", "userId": "ann", "event": "Order Completed",
                       "properties": {"revenue": 12.5, "quantity": 2, "gift": false,
                                      "shipped_at": "2024-05-21T10:00:00Z", "coupon": "X",
                                      "items": [{"sku": "a"}]},
                       "timestamp": "2024-05-21T00:00:00Z"}),
                json!({"type": "page", "userId": "ann", "name": "Home", "properties": {"path": "/"},
                       "timestamp": "2024-05-21T00:00:00Z"}),
                json!({"type": "screen", "userId": "ann", "name": "Cart",
                       "timestamp": "2024-05-21T00:00:00Z"}),
                json!({"type": "group", "userId": "ann", "groupId": "g1", "traits": {"size": 3},
                       "timestamp": "2024-05-21T00:00:00Z"}),
                json!({"type": "alias", "userId": "ann", "previousId": "anon-1",
                       "timestamp": "2024-05-21T00:00:00Z"}),
            ],
        );
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        drain(&mut worker, Utc::now());
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        let mut c = db(&url);
        let tables = [
            ("identifies", 1),
            ("tracks", 1),
            ("order_completed", 1),
            ("pages", 1),
            ("screens", 1),
            ("groups", 1),
            ("aliases", 1),
            ("users", 1),
        ];
        for (table, n) in tables {
            assert_eq!(count(&mut c, table), n, "{name}: {table}");
        }
        let order = types(&mut c, "order_completed");
        for (column, t) in [
            ("id", "text"),
            ("received_at", "timestamp with time zone"),
            ("timestamp", "timestamp with time zone"),
            ("user_id", "text"),
            ("rapport_profile_id", "text"),
            ("event", "text"),
            ("event_text", "text"),
            ("revenue", "double precision"),
            ("quantity", "bigint"),
            ("gift", "boolean"),
            ("shipped_at", "timestamp with time zone"),
            ("coupon", "text"),
            ("items", "jsonb"),
        ] {
            assert_eq!(
                order.get(column).map(String::as_str),
                Some(t),
                "{name}: {column}"
            );
        }
        let identify = types(&mut c, "identifies");
        for (column, t) in [
            ("email", "text"),
            ("age", "bigint"),
            ("vip", "boolean"),
            ("address_city", "text"),
            ("context_ip", "text"),
            ("context_library_name", "text"),
            ("anonymous_id", "text"),
        ] {
            assert_eq!(
                identify.get(column).map(String::as_str),
                Some(t),
                "{name}: {column}"
            );
        }
        assert_eq!(
            value(
                &mut c,
                "SELECT revenue::text || ' ' || quantity::text || ' ' || gift::text || ' ' || \
                 (shipped_at = '2024-05-21T10:00:00Z')::text || ' ' || event || ' ' || event_text \
                 FROM rapport.order_completed"
            )
            .as_deref(),
            Some("12.5 2 false true order_completed Order Completed"),
            "{name}"
        );
        let profile = value(&mut c, "SELECT rapport_profile_id FROM rapport.tracks").unwrap();
        assert!(profile.starts_with("p_"), "{name}: {profile}");
        assert_eq!(
            value(
                &mut c,
                "SELECT id || ' ' || email || ' ' || plan || ' ' || address_city FROM rapport.users"
            ),
            Some(format!("{profile} ann@example.com pro Lyon")),
            "{name}"
        );
        assert_eq!(
            value(&mut c, "SELECT name FROM rapport.pages").as_deref(),
            Some("Home")
        );
        assert_eq!(
            value(&mut c, "SELECT group_id || size::text FROM rapport.groups").as_deref(),
            Some("g13")
        );
        assert_eq!(
            value(&mut c, "SELECT previous_id FROM rapport.aliases").as_deref(),
            Some("anon-1")
        );
        let id = value(&mut c, "SELECT id FROM rapport.order_completed").unwrap();
        assert_eq!(
            value(&mut c, "SELECT id FROM rapport.tracks"),
            Some(id.clone()),
            "{name}: one idempotency key in both tables"
        );
        assert!(id.starts_with("msg_"), "{name}: {id}");

        // A crash after the warehouse committed, before the offset did: the same run again.
        store
            .state_commit(&[], Some((&destinations::consumer(&d.id), start)))
            .unwrap();
        drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
        for (table, n) in tables {
            assert_eq!(
                count(&mut c, table),
                n,
                "{name}: {table} after a second delivery"
            );
        }

        // A new property gets a column; one seen with another type goes beside it; a
        // user's traits follow the latest identify, not the latest delivered.
        common::append(
            store.as_ref(),
            &[
                json!({"type": "track", "userId": "ann", "event": "Order Completed",
                       "properties": {"revenue": 20, "discount": 0.1},
                       "timestamp": "2024-05-22T00:00:00Z"}),
                json!({"type": "track", "userId": "ann", "event": "Order Completed",
                       "properties": {"revenue": "lots", "gift": "yes"},
                       "timestamp": "2024-05-23T00:00:00Z"}),
                json!({"type": "identify", "userId": "ann", "traits": {"plan": "free", "seats": 1},
                       "timestamp": "2024-05-01T00:00:00Z"}),
                json!({"type": "identify", "userId": "ann", "traits": {"age": 31},
                       "timestamp": "2024-05-25T00:00:00Z"}),
            ],
        );
        common::process(&store);
        drain(&mut worker, Utc::now());
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(count(&mut c, "order_completed"), 3, "{name}");
        let order = types(&mut c, "order_completed");
        assert_eq!(order["discount"], "double precision", "{name}");
        assert_eq!(
            order["revenue"], "double precision",
            "{name}: never retyped"
        );
        assert_eq!(order["revenue_text"], "text", "{name}");
        assert_eq!(order["gift_text"], "text", "{name}");
        assert_eq!(
            value(
                &mut c,
                "SELECT string_agg(coalesce(revenue::text, '-') || '/' || coalesce(revenue_text, '-'), ' ' \
                 ORDER BY \"timestamp\") FROM rapport.order_completed"
            )
            .as_deref(),
            Some("12.5/- 20/- -/lots"),
            "{name}"
        );
        assert_eq!(count(&mut c, "identifies"), 3, "{name}");
        assert_eq!(count(&mut c, "users"), 1, "{name}");
        assert_eq!(
            value(
                &mut c,
                "SELECT plan || ' ' || seats::text || ' ' || age::text || ' ' || \
                 (\"timestamp\" = '2024-05-25T00:00:00Z')::text FROM rapport.users"
            )
            .as_deref(),
            Some("pro 1 31 true"),
            "{name}: an older identify fills a blank, never overwrites"
        );
    }
}

#[test]
fn a_database_that_is_down_parks_for_retry_and_a_refused_row_is_dead_lettered_alone() {
    for (name, _dir, store) in stores() {
        let url = rapport_store::testing::TestPostgres::shared().create_database();
        // Nothing listens on port 1.
        let down = "postgres://postgres@127.0.0.1:1/nowhere";
        let d = destinations::create(store.as_ref(), warehouse(&format!("down-{name}"), down), 0)
            .unwrap();
        let test = destinations::test_send(&d, Utc::now()).unwrap();
        assert!(!test.delivered, "{name}: {test:?}");
        assert!(test.message.contains("cannot connect"), "{name}: {test:?}");

        common::append(
            store.as_ref(),
            &[
                json!({"type": "track", "userId": "ed", "event": "Order Completed",
                       "properties": {"revenue": 10}, "timestamp": "2024-05-21T00:00:00Z"}),
                json!({"type": "track", "userId": "ed", "event": "Order Completed",
                       "properties": {"revenue": -5}, "timestamp": "2024-05-21T00:00:01Z"}),
                json!({"type": "track", "userId": "ed", "event": "Order Completed",
                       "properties": {"revenue": 30}, "timestamp": "2024-05-21T00:00:02Z"}),
            ],
        );
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        let now = Utc::now();
        drain(&mut worker, now);
        let parked = destinations::retries(store.as_ref(), &d.id, 10).unwrap();
        assert_eq!(parked.len(), 3, "{name}: {parked:?}");
        assert!(
            parked[0].last_error.contains("cannot connect"),
            "{parked:?}"
        );
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty(),
            "{name}: a database that is down is no reason to give up"
        );

        // The database comes back with a rule of its own that one of the events breaks.
        let mut c = db(&url);
        c.batch_execute(
            "CREATE SCHEMA rapport; CREATE TABLE rapport.order_completed \
             (id text PRIMARY KEY, revenue double precision CONSTRAINT revenue_positive CHECK (revenue >= 0))",
        )
        .unwrap();
        let mut spec = warehouse(&format!("down-{name}"), &url);
        spec.name = d.spec.name.clone();
        let d = destinations::update(store.as_ref(), &d.id, spec, 1).unwrap();
        assert!(destinations::test_send(&d, Utc::now()).unwrap().delivered);
        drain(&mut worker, now + TimeDelta::minutes(5));
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        let failed = destinations::failures(store.as_ref(), &d.id, None, 10).unwrap();
        assert_eq!(failed.len(), 1, "{name}: {failed:?}");
        assert_eq!(failed[0].reason, "refused");
        assert_eq!(failed[0].status, None);
        assert!(
            failed[0].error.contains("23514") && failed[0].error.contains("revenue_positive"),
            "{name}: the database's own words: {}",
            failed[0].error
        );
        assert!(failed[0].request_body.contains("-5"), "{name}");
        assert_eq!(count(&mut c, "order_completed"), 2, "{name}");
        assert_eq!(
            count(&mut c, "tracks"),
            2,
            "{name}: the refused event left no row"
        );
        assert_eq!(
            value(
                &mut c,
                "SELECT string_agg(revenue::text, ',' ORDER BY revenue) FROM rapport.order_completed"
            )
            .as_deref(),
            Some("10,30")
        );

        // A run of new messages with a poison one among them: the others land.
        common::append(
            store.as_ref(),
            &[
                json!({"type": "track", "userId": "ed", "event": "Order Completed",
                       "properties": {"revenue": 1}, "timestamp": "2024-05-22T00:00:00Z"}),
                json!({"type": "track", "userId": "ed", "event": "Order Completed",
                       "properties": {"revenue": -1}, "timestamp": "2024-05-22T00:00:01Z"}),
                json!({"type": "page", "userId": "ed", "name": "Home",
                       "timestamp": "2024-05-22T00:00:02Z"}),
            ],
        );
        common::process(&store);
        drain(&mut worker, now + TimeDelta::minutes(6));
        assert_eq!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .len(),
            2,
            "{name}"
        );
        assert_eq!(count(&mut c, "order_completed"), 3, "{name}");
        assert_eq!(count(&mut c, "pages"), 1, "{name}");
    }
}

#[test]
fn names_are_cut_to_postgres_identifiers_and_a_table_past_its_columns_refuses_the_message() {
    let (_dir, store) = common::store();
    let url = rapport_store::testing::TestPostgres::shared().create_database();
    let d = destinations::create(store.as_ref(), warehouse("wide", &url), 0).unwrap();
    let long = "A Very Long Property Name ".repeat(5);
    let mut wide = serde_json::Map::new();
    for i in 0..1700 {
        wide.insert(format!("p{i}"), json!(i));
    }
    common::append(
        store.as_ref(),
        &[
            json!({"type": "track", "userId": "wu", "event": long.clone(),
                   "properties": {long.clone(): 1}, "timestamp": "2024-05-21T00:00:00Z"}),
            json!({"type": "track", "userId": "wu", "event": "Wide", "properties": wide,
                   "timestamp": "2024-05-21T00:00:01Z"}),
            json!({"type": "track", "userId": "wu", "event": "Narrow", "properties": {"n": 1},
                   "timestamp": "2024-05-21T00:00:02Z"}),
        ],
    );
    common::process(&store);
    drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
    let mut c = db(&url);
    let table = rapport_destinations::warehouse::snake_case(&long);
    assert_eq!(table.len(), 63);
    assert_eq!(count(&mut c, &table), 1);
    assert!(
        types(&mut c, &table).contains_key(&table),
        "the property's column, cut to 63 bytes"
    );
    let failed = destinations::failures(store.as_ref(), &d.id, None, 10).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].reason, "refused");
    assert!(failed[0].error.contains("1600"), "{}", failed[0].error);
    assert_eq!(count(&mut c, "narrow"), 1, "the others land");
    assert_eq!(count(&mut c, "tracks"), 2);
}

#[test]
fn a_warehouse_read_back_and_put_again_keeps_its_password() {
    let (_dir, store) = common::store();
    let d = destinations::create(
        store.as_ref(),
        warehouse("pw", "postgres://rapport:s3cret@127.0.0.1:1/w"),
        0,
    )
    .unwrap();
    let shown = destinations::masked(&d.spec);
    let rapport_destinations::Kind::Warehouse { database_url, .. } = &shown.kind else {
        unreachable!()
    };
    assert!(!database_url.contains("s3cret"), "{database_url}");
    destinations::update(store.as_ref(), &d.id, shown, 1).unwrap();
    let again = destinations::get(store.as_ref(), &d.id).unwrap();
    assert_eq!(again.spec, d.spec, "the password stays");
}

#[test]
fn a_warehouse_refuses_trait_messages_it_cannot_write() {
    let (_dir, store) = common::store();
    let mut spec = serde_json::to_value(warehouse("w", "postgres://localhost/x")).unwrap();
    spec["deliver"] = json!({"trait_changes": true});
    let spec: DestinationSpec = serde_json::from_value(spec).unwrap();
    match destinations::create(store.as_ref(), spec, 0) {
        Err(rapport_engine::EngineError::InvalidAt { field, .. }) => {
            assert_eq!(field, "deliver.trait_changes")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn segment_entries_and_exits_keep_segment_memberships_current() {
    use rapport_engine::audiences::definitions::{Definitions, SegmentSpec};
    for (name, _dir, store) in stores() {
        let url = rapport_store::testing::TestPostgres::shared().create_database();
        Definitions {
            store: store.as_ref(),
        }
        .put_segment(
            &SegmentSpec {
                name: "vip".into(),
                description: None,
                expression: "traits.plan == \"vip\"".into(),
            },
            0,
        )
        .unwrap();
        let mut spec = serde_json::to_value(warehouse(&format!("m-{name}"), &url)).unwrap();
        spec["deliver"] = json!({"events": null, "audience_changes": {"segments": []}});
        let d =
            destinations::create(store.as_ref(), serde_json::from_value(spec).unwrap(), 0).unwrap();
        let identify = |user: &str, plan: &str, ts: &str| json!({"type": "identify", "userId": user, "traits": {"plan": plan}, "timestamp": ts});
        common::append(
            store.as_ref(),
            &[
                identify("vic", "vip", "2024-05-01T00:00:00Z"),
                identify("val", "vip", "2024-05-01T00:00:00Z"),
            ],
        );
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        drain(&mut worker, Utc::now());
        let mut c = db(&url);
        assert_eq!(count(&mut c, "segment_memberships"), 2, "{name}");
        common::append(
            store.as_ref(),
            &[identify("vic", "free", "2024-05-02T00:00:00Z")],
        );
        common::process(&store);
        drain(&mut worker, Utc::now());
        let rows = c
            .query(
                "SELECT segment, member, entered_at IS NOT NULL, exited_at IS NOT NULL \
                 FROM rapport.segment_memberships ORDER BY member",
                &[],
            )
            .unwrap();
        let got: Vec<(String, bool, bool, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            got,
            [
                ("vip".to_owned(), false, true, true),
                ("vip".to_owned(), true, true, false)
            ],
            "{name}"
        );
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'rapport' \
                 AND table_name = 'identifies'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(tables, 0, "{name}: no events selected, none written");
    }
}
