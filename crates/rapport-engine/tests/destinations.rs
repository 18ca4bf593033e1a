//! Destinations deliver to real HTTP receivers started by the test, on both stores: signed
//! per Standard Webhooks with the profile attached, filtered by the destination's
//! selection, retried with the same `webhook-id` after a 5xx, dead-lettered at once on a
//! 4xx and replayed after the fix, and one hanging receiver never holds another back.

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use rapport_destinations::DestinationSpec;
use rapport_engine::destinations::{self, worker::Worker};
use rapport_store::Store;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Received {
    /// (path, headers, body) of every request.
    requests: Vec<(String, HeaderMap, Vec<u8>)>,
    /// Statuses to answer on `/flaky`, in order; then 200.
    flaky: Vec<u16>,
    /// What `/broken` answers.
    broken: u16,
}

type Shared = Arc<Mutex<Received>>;

/// An HTTP receiver on a free loopback port, served by its own runtime.
struct Receiver {
    url: String,
    state: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let state: Shared = Arc::new(Mutex::new(Received {
            broken: 400,
            ..Received::default()
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        async fn record(s: &Shared, path: &str, headers: HeaderMap, body: axum::body::Bytes) {
            s.lock()
                .unwrap()
                .requests
                .push((path.into(), headers, body.to_vec()));
        }
        let app = axum::Router::new()
            .route(
                "/ok",
                post(
                    |State(s): State<Shared>, h: HeaderMap, b: axum::body::Bytes| async move {
                        record(&s, "/ok", h, b).await;
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .route(
                "/flaky",
                post(
                    |State(s): State<Shared>, h: HeaderMap, b: axum::body::Bytes| async move {
                        record(&s, "/flaky", h, b).await;
                        let next = {
                            let mut g = s.lock().unwrap();
                            if g.flaky.is_empty() {
                                200
                            } else {
                                g.flaky.remove(0)
                            }
                        };
                        (
                            StatusCode::from_u16(next).unwrap(),
                            [("retry-after", "0")],
                            "busy",
                        )
                    },
                ),
            )
            .route(
                "/broken",
                post(
                    |State(s): State<Shared>, h: HeaderMap, b: axum::body::Bytes| async move {
                        record(&s, "/broken", h, b).await;
                        let status = s.lock().unwrap().broken;
                        (
                            StatusCode::from_u16(status).unwrap(),
                            "{\"error\":\"unknown field plan\"}",
                        )
                    },
                ),
            )
            .route(
                "/hang",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }),
            )
            .with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            state,
            _runtime: runtime,
        }
    }

    fn requests(&self, path: &str) -> Vec<(HeaderMap, Value)> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), serde_json::from_slice(b).unwrap()))
            .collect()
    }
}

fn stores() -> Vec<(&'static str, Option<tempfile::TempDir>, Arc<dyn Store>)> {
    let (dir, embedded) = common::store();
    let url = rapport_store::testing::TestPostgres::shared().create_database();
    let pg: Arc<dyn Store> = Arc::new(rapport_store::postgres::PostgresStore::open(&url).unwrap());
    vec![("embedded", Some(dir), embedded), ("postgres", None, pg)]
}

fn webhook(name: &str, url: String, extra: Value) -> DestinationSpec {
    let mut spec =
        json!({"name": name, "kind": {"type": "webhook", "url": url, "timeout_secs": 1}});
    if let (Value::Object(s), Value::Object(e)) = (&mut spec, extra) {
        s.extend(e);
    }
    serde_json::from_value(spec).unwrap()
}

fn orders(users: &[&str]) -> Vec<Value> {
    users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            json!({"type": "track", "userId": u, "event": "Order Completed",
                   "properties": {"revenue": 10 * (i + 1)}, "timestamp": "2024-06-01T00:00:00Z"})
        })
        .collect()
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

#[test]
fn events_arrive_signed_with_their_profile_and_only_those_selected() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let all = destinations::create(
            store.as_ref(),
            webhook(
                &format!("all-{name}"),
                format!("{}/ok", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        let big = destinations::create(
            store.as_ref(),
            webhook(
                &format!("big-{name}"),
                format!("{}/ok", receiver.url),
                json!({"deliver": {"events": {"condition": "properties.revenue >= 30"}}}),
            ),
            0,
        )
        .unwrap();
        let before = receiver.requests("/ok").len();
        common::append(
            store.as_ref(),
            &[vec![json!({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"},
                          "timestamp": "2024-06-01T00:00:00Z"})],
              orders(&["ann", "bob", "ann"])]
            .concat(),
        );
        common::process(&store);
        let now = Utc::now();
        drain(&mut Worker::new(store.clone(), &all.id), now);
        drain(&mut Worker::new(store.clone(), &big.id), now);
        let got = &receiver.requests("/ok")[before..];
        assert_eq!(got.len(), 4 + 1, "{name}: 4 events to one, 1 to the other");
        let secret = |id: &str| match destinations::get(store.as_ref(), id).unwrap().spec.kind {
            rapport_destinations::Kind::Webhook { secret, .. } => secret.unwrap(),
            _ => unreachable!(),
        };
        let mut ids = std::collections::HashSet::new();
        for (headers, body) in got {
            let hook = standardwebhooks::Webhook::new(&secret(&all.id)).unwrap();
            let other = standardwebhooks::Webhook::new(&secret(&big.id)).unwrap();
            let raw = serde_json::to_vec(body).unwrap();
            let mut h = http::HeaderMap::new();
            for k in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
                h.insert(k, headers[k].to_str().unwrap().parse().unwrap());
            }
            assert!(
                hook.verify(&raw, &h).is_ok() || other.verify(&raw, &h).is_ok(),
                "{name}: the signature verifies"
            );
            assert!(ids.insert(headers["webhook-id"].to_str().unwrap().to_owned()));
            if body["type"] == "track" {
                assert_eq!(body["event"], "Order Completed");
                assert!(
                    body["rapport"]["profile_id"]
                        .as_str()
                        .unwrap()
                        .starts_with("p_"),
                    "{name}: {body}"
                );
            }
        }
        let ann = got
            .iter()
            .find(|(_, b)| b["type"] == "identify")
            .map(|(_, b)| b["rapport"]["identifiers"].clone())
            .unwrap();
        assert_eq!(ann["email"][0], "ann@example.com", "{name}");
        let big_bodies: Vec<_> = got
            .iter()
            .filter(|(_, b)| b["properties"]["revenue"] == 30)
            .collect();
        assert_eq!(big_bodies.len(), 2, "{name}: the third order went to both");
    }
}

#[test]
fn a_5xx_is_retried_with_the_same_webhook_id_until_delivered() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        receiver.state.lock().unwrap().flaky = vec![503, 500];
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("flaky-{name}"),
                format!("{}/flaky", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        let before = receiver.requests("/flaky").len();
        common::append(store.as_ref(), &orders(&["carl"]));
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        let mut now = Utc::now();
        drain(&mut worker, now);
        assert_eq!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        for _ in 0..2 {
            now += TimeDelta::minutes(1);
            drain(&mut worker, now);
        }
        let got = &receiver.requests("/flaky")[before..];
        assert_eq!(got.len(), 3, "{name}: two failures, then delivered");
        let ids: std::collections::HashSet<_> = got
            .iter()
            .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{name}: one idempotency key for every attempt"
        );
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn a_4xx_is_dead_lettered_with_its_request_and_answer_and_replayed_after_the_fix() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        receiver.state.lock().unwrap().broken = 400;
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("broken-{name}"),
                format!("{}/broken", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        common::append(store.as_ref(), &orders(&["dora", "ed"]));
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        drain(&mut worker, Utc::now());
        let failed = destinations::failures(store.as_ref(), &d.id, None, 10).unwrap();
        assert_eq!(failed.len(), 2, "{name}");
        assert_eq!(failed[0].reason, "refused");
        assert_eq!(failed[0].status, Some(400));
        assert!(failed[0].response_body.contains("unknown field plan"));
        assert!(failed[0].request_body.contains("Order Completed"));
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty()
        );

        receiver.state.lock().unwrap().broken = 200;
        let before = receiver.requests("/broken").len();
        assert_eq!(
            destinations::replay(store.as_ref(), &d.id, None, Utc::now().timestamp_millis())
                .unwrap(),
            2
        );
        drain(&mut worker, Utc::now() + TimeDelta::seconds(1));
        assert_eq!(receiver.requests("/broken").len() - before, 2, "{name}");
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn a_hanging_receiver_does_not_hold_back_another_destination() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let hang = destinations::create(
            store.as_ref(),
            webhook(
                &format!("hang-{name}"),
                format!("{}/hang", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        destinations::create(
            store.as_ref(),
            webhook(
                &format!("fine-{name}"),
                format!("{}/ok", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        let before = receiver.requests("/ok").len();
        let threads = destinations::worker::DeliveryThreads::start(store.clone());
        common::append(store.as_ref(), &orders(&["f1", "f2", "f3", "f4", "f5"]));
        common::process(&store);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while receiver.requests("/ok").len() - before < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the healthy destination stalled"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The hanging one timed out and parked its messages for a retry meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while destinations::retries(store.as_ref(), &hang.id, 10)
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no retry parked"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        destinations::delete(store.as_ref(), &hang.id).unwrap();
        threads.stop();
    }
}

#[test]
fn segment_entries_and_exits_arrive_from_creation_on_and_retry_and_replay_like_events() {
    use rapport_engine::audiences::definitions::{Definitions, SegmentSpec};
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let defs = Definitions {
            store: store.as_ref(),
        };
        for (segment, expression) in [
            ("buyers", "count(event == \"Order Completed\") >= 1"),
            ("vip", "traits.plan == \"vip\""),
        ] {
            defs.put_segment(
                &SegmentSpec {
                    name: segment.into(),
                    description: None,
                    expression: expression.into(),
                },
                0,
            )
            .unwrap();
        }
        // Before the destination exists: not delivered to it.
        common::append(store.as_ref(), &orders(&["early"]));
        common::process(&store);
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("segments-{name}"),
                format!("{}/flaky", receiver.url),
                json!({"deliver": {"events": null, "audience_changes": {"segments": ["vip"]}}}),
            ),
            0,
        )
        .unwrap();
        let before = receiver.requests("/flaky").len();
        receiver.state.lock().unwrap().flaky = vec![503];
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "vera", "traits": {"plan": "vip", "email": "vera@example.com"},
                       "timestamp": "2024-06-01T00:00:00Z"}),
                json!({"type": "identify", "userId": "vera", "traits": {"plan": "free"},
                       "timestamp": "2024-06-01T00:01:00Z"}),
            ],
        );
        common::append(store.as_ref(), &orders(&["vera"]));
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        let now = Utc::now();
        drain(&mut worker, now);
        // The entry met a 503 and waits; the exit went through.
        let parked = destinations::retries(store.as_ref(), &d.id, 10).unwrap();
        assert_eq!(parked.len(), 1, "{name}: {parked:?}");
        assert_eq!(parked[0].feed, destinations::Feed::AudienceChange);
        drain(&mut worker, now + TimeDelta::hours(2));
        let got: Vec<Value> = receiver.requests("/flaky")[before..]
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        assert_eq!(
            got.len(),
            3,
            "{name}: the entry, the exit, the entry again: {got:?}"
        );
        assert!(
            got.iter().all(|b| b["segment"] == "vip"),
            "{name}: only vip"
        );
        let entered: Vec<_> = got
            .iter()
            .filter(|b| b["type"] == "segment_entered")
            .collect();
        assert_eq!(entered.len(), 2, "{name}: the retried entry");
        assert_eq!(entered[0], entered[1], "{name}: the same body again");
        assert_eq!(
            entered[0]["rapport"]["identifiers"]["email"][0], "vera@example.com",
            "{name}"
        );
        assert!(got.iter().any(|b| b["type"] == "segment_exited"), "{name}");
        let ids: Vec<_> = receiver.requests("/flaky")[before..]
            .iter()
            .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            ids.iter().collect::<std::collections::HashSet<_>>().len(),
            2,
            "{name}"
        );

        // A refusal dead-letters the change; a replay of that one delivers it.
        receiver.state.lock().unwrap().flaky = vec![400];
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "walt", "traits": {"plan": "vip"},
                     "timestamp": "2024-06-01T00:02:00Z"}),
            ],
        );
        common::process(&store);
        drain(&mut worker, now + TimeDelta::hours(3));
        let failed = destinations::failures(store.as_ref(), &d.id, None, 10).unwrap();
        assert_eq!(failed.len(), 1, "{name}");
        assert_eq!(failed[0].feed, destinations::Feed::AudienceChange);
        let chosen = [(failed[0].feed, failed[0].offset)];
        assert_eq!(
            destinations::replay(
                store.as_ref(),
                &d.id,
                Some(&chosen),
                Utc::now().timestamp_millis()
            )
            .unwrap(),
            1
        );
        let before = receiver.requests("/flaky").len();
        drain(&mut worker, Utc::now() + TimeDelta::hours(4));
        let again = &receiver.requests("/flaky")[before..];
        assert_eq!(again.len(), 1, "{name}");
        assert_eq!(again[0].1["type"], "segment_entered");
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn trait_changes_arrive_with_the_previous_value_only_when_they_change() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        // Before any destination takes trait changes, none are kept.
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "tess", "traits": {"plan": "trial"},
                     "timestamp": "2024-06-01T00:00:00Z"}),
            ],
        );
        common::process(&store);
        assert!(
            rapport_engine::trait_changes::read(store.as_ref(), 0, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("traits-{name}"),
                format!("{}/ok", receiver.url),
                json!({"deliver": {"events": null, "trait_changes": true}}),
            ),
            0,
        )
        .unwrap();
        let before = receiver.requests("/ok").len();
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "tess", "traits": {"plan": "pro", "seats": 3},
                       "timestamp": "2024-06-01T00:01:00Z"}),
                // The same values again: no change.
                json!({"type": "identify", "userId": "tess", "traits": {"plan": "pro"},
                       "timestamp": "2024-06-01T00:02:00Z"}),
                // Older than what is known: not applied, so no change.
                json!({"type": "identify", "userId": "tess", "traits": {"plan": "free"},
                       "timestamp": "2024-05-01T00:00:00Z"}),
            ],
        );
        common::append(store.as_ref(), &orders(&["tess"]));
        common::process(&store);
        drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
        let mut got: Vec<Value> = receiver.requests("/ok")[before..]
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        got.sort_by_key(|b| b["trait"].as_str().unwrap().to_owned());
        assert_eq!(got.len(), 2, "{name}: {got:?}");
        assert_eq!(got[0]["type"], "trait_changed");
        assert_eq!(got[0]["trait"], "plan");
        assert_eq!(got[0]["value"], "pro");
        assert_eq!(got[0]["previous"], "trial");
        assert_eq!(got[0]["timestamp"], "2024-06-01T00:01:00.000Z");
        assert_eq!(got[1]["trait"], "seats");
        assert_eq!(got[1]["previous"], Value::Null);
        assert_eq!(got[1]["rapport"]["identifiers"]["user_id"][0], "tess");
    }
}

#[test]
fn a_destination_failing_in_a_row_is_suspended_probed_and_resumed_by_a_delivered_probe() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        receiver.state.lock().unwrap().broken = 503;
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("down-{name}"),
                format!("{}/broken", receiver.url),
                json!({"delivery": {"pause_after_failures": 3}}),
            ),
            0,
        )
        .unwrap();
        common::append(store.as_ref(), &orders(&["u1", "u2", "u3", "u4", "u5"]));
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        let t0 = Utc::now();
        drain(&mut worker, t0);
        let count = || receiver.requests("/broken").len();
        let sent = count();
        let s = destinations::suspension(store.as_ref(), &d.id)
            .unwrap()
            .expect("suspended");
        assert!(s.failures >= 3, "{name}: {s:?}");
        assert!(s.last_error.contains("503"), "{name}: {s:?}");
        assert_eq!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .len(),
            5,
            "{name}: every message waits"
        );
        // Before the first probe is due, nothing goes out even though retries are due.
        drain(&mut worker, t0 + TimeDelta::seconds(20));
        assert_eq!(count(), sent, "{name}");
        // A probe: one request, which fails; the next probe waits twice as long.
        drain(&mut worker, t0 + TimeDelta::seconds(31));
        assert_eq!(count(), sent + 1, "{name}: one probe");
        let s = destinations::suspension(store.as_ref(), &d.id)
            .unwrap()
            .unwrap();
        assert_eq!(s.probes, 1);
        assert!(s.next_probe_ms >= (t0 + TimeDelta::seconds(90)).timestamp_millis());
        // The receiver is back: the next probe is delivered, the rest follow.
        receiver.state.lock().unwrap().broken = 200;
        drain(&mut worker, t0 + TimeDelta::seconds(200));
        drain(&mut worker, t0 + TimeDelta::hours(2));
        assert!(
            destinations::suspension(store.as_ref(), &d.id)
                .unwrap()
                .is_none(),
            "{name}: resumed"
        );
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(
            destinations::failures(store.as_ref(), &d.id, None, 10)
                .unwrap()
                .is_empty(),
            "{name}: nothing was dead-lettered for the outage"
        );
        // Resuming by hand also lifts a suspension.
        receiver.state.lock().unwrap().broken = 503;
        common::append(store.as_ref(), &orders(&["v1", "v2", "v3"]));
        common::process(&store);
        drain(&mut worker, t0 + TimeDelta::hours(3));
        assert!(
            destinations::suspension(store.as_ref(), &d.id)
                .unwrap()
                .is_some()
        );
        destinations::set_paused(store.as_ref(), &d.id, false, 0).unwrap();
        assert!(
            destinations::suspension(store.as_ref(), &d.id)
                .unwrap()
                .is_none()
        );
        receiver.state.lock().unwrap().broken = 400;
    }
}

#[test]
fn the_rate_limit_spaces_requests() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("limited-{name}"),
                format!("{}/ok", receiver.url),
                json!({"delivery": {"rate_limit_per_second": 5}}),
            ),
            0,
        )
        .unwrap();
        common::append(
            store.as_ref(),
            &orders(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]),
        );
        common::process(&store);
        let before = receiver.requests("/ok").len();
        let started = std::time::Instant::now();
        drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
        // 11 requests at 5 per second: a burst of 5, then one every 200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(1100),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(receiver.requests("/ok").len() - before, 11, "{name}");
    }
}

#[test]
fn the_overview_counts_each_hour_s_outcomes_and_latencies() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("overview-{name}"),
                format!("{}/flaky", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        receiver.state.lock().unwrap().flaky = vec![503];
        common::append(store.as_ref(), &orders(&["o1", "o2", "o3"]));
        common::process(&store);
        let t0 = Utc::now();
        let mut worker = Worker::new(store.clone(), &d.id);
        drain(&mut worker, t0);
        drain(&mut worker, t0 + TimeDelta::hours(1));
        let hours = destinations::overview(store.as_ref(), &d.id, 0, i64::MAX).unwrap();
        assert_eq!(hours.len(), 2, "{name}: {hours:?}");
        assert_eq!(
            (hours[0].delivered, hours[0].retried, hours[0].requests),
            (2, 1, 3),
            "{name}"
        );
        assert!(hours[0].last_error.as_ref().unwrap().1.contains("503"));
        assert!(hours[0].latency_quantile_ms(0.99).is_some());
        assert_eq!((hours[1].delivered, hours[1].retried), (1, 0), "{name}");
        assert_eq!(hours[1].hour_ms - hours[0].hour_ms, 3_600_000);
        // A new worker (a restart) adds to the stored hour rather than replacing it.
        common::append(store.as_ref(), &orders(&["o4"]));
        common::process(&store);
        drain(
            &mut Worker::new(store.clone(), &d.id),
            t0 + TimeDelta::hours(1),
        );
        let hours = destinations::overview(store.as_ref(), &d.id, 0, i64::MAX).unwrap();
        assert_eq!(hours[1].delivered, 2, "{name}");
    }
}

#[test]
fn a_backfill_replays_a_past_time_range_into_a_new_destination() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let at = |user: &str, ts: &str| {
            json!({"type": "track", "userId": user, "event": "Order Completed",
                   "properties": {"revenue": 1}, "timestamp": ts})
        };
        common::append(
            store.as_ref(),
            &[
                // (The log's receive time is 2024-06-01; later timestamps are clamped to it.)
                at("april", "2024-04-15T00:00:00Z"),
                at("may1", "2024-05-01T00:00:00Z"),
                at("may2", "2024-05-20T00:00:00Z"),
                at("late", "2024-05-28T00:00:00Z"),
            ],
        );
        common::process(&store);
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("backfill-{name}"),
                format!("{}/ok", receiver.url),
                json!({}),
            ),
            0,
        )
        .unwrap();
        let ms = |t: &str| {
            rapport_core::event::parse_timestamp(t)
                .unwrap()
                .timestamp_millis()
        };
        let job = destinations::start_backfill(
            store.as_ref(),
            &d.id,
            ms("2024-05-01T00:00:00Z"),
            ms("2024-05-28T00:00:00Z"),
            1,
        )
        .unwrap();
        assert!(job.through >= 4, "{name}: {job:?}");
        assert!(matches!(
            destinations::start_backfill(store.as_ref(), &d.id, 0, 1, 2),
            Err(rapport_engine::EngineError::Conflict(_))
        ));
        // Logged after the destination was made: delivered live, not by the backfill.
        common::append(store.as_ref(), &[at("live", "2024-05-10T00:00:00Z")]);
        common::process(&store);
        let before = receiver.requests("/ok").len();
        drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
        let users: std::collections::BTreeSet<String> = receiver.requests("/ok")[before..]
            .iter()
            .map(|(_, e)| e["userId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            users,
            ["live", "may1", "may2"].map(String::from).into(),
            "{name}"
        );
        let done = destinations::backfill(store.as_ref(), &d.id)
            .unwrap()
            .unwrap();
        assert!(done.finished_at_ms.is_some(), "{name}: {done:?}");
        assert_eq!(done.sent, 2, "{name}");
        assert!(destinations::cancel_backfill(store.as_ref(), &d.id).unwrap());
        assert!(
            destinations::backfill(store.as_ref(), &d.id)
                .unwrap()
                .is_none()
        );
        assert!(!destinations::cancel_backfill(store.as_ref(), &d.id).unwrap());
    }
}

#[test]
fn with_per_user_ordering_a_failing_event_holds_back_only_its_user_s_later_ones() {
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("ordered-{name}"),
                format!("{}/flaky", receiver.url),
                json!({"delivery": {"per_user_ordering": true}}),
            ),
            0,
        )
        .unwrap();
        receiver.state.lock().unwrap().flaky = vec![503];
        let before = receiver.requests("/flaky").len();
        common::append(
            store.as_ref(),
            &orders(&["ann", "bob", "ann", "ann", "bob"]),
        );
        common::process(&store);
        let mut worker = Worker::new(store.clone(), &d.id);
        let t0 = Utc::now();
        drain(&mut worker, t0);
        let revenues = |user: &str| -> Vec<i64> {
            receiver.requests("/flaky")[before..]
                .iter()
                .filter(|(_, b)| b["userId"] == user)
                .map(|(_, b)| b["properties"]["revenue"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(
            revenues("ann"),
            [10],
            "{name}: ann's first failed, the rest wait"
        );
        assert_eq!(revenues("bob"), [20, 50], "{name}: bob is not held back");
        let waiting = destinations::retries(store.as_ref(), &d.id, 10).unwrap();
        assert_eq!(waiting.iter().filter(|r| r.held).count(), 2, "{name}");
        drain(&mut worker, t0 + TimeDelta::hours(1));
        assert_eq!(revenues("ann"), [10, 10, 30, 40], "{name}: in order");
        assert!(
            destinations::retries(store.as_ref(), &d.id, 10)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn value_model_alerts_arrive_from_creation_on() {
    use rapport_engine::value::{ALERT_FEED, NS_ALERT};
    let receiver = Receiver::start();
    for (name, _dir, store) in stores() {
        common::append(
            store.as_ref(),
            &[
                json!({"type": "identify", "userId": "al", "traits": {"email": "al@example.com"},
                     "timestamp": "2024-06-01T00:00:00Z"}),
            ],
        );
        common::process(&store);
        let profile = rapport_engine::profiles::Profiles {
            store: store.as_ref(),
        }
        .resolve("user_id:al")
        .unwrap()
        .id;
        let alert = |ms: u64, seq: u32| {
            let mut key = ms.to_be_bytes().to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            let value = json!({"id": "x", "at": "2024-06-02T00:00:00Z", "profile": profile.as_str(),
                "kind": "band_dropped", "score": 31.0, "previous_score": 74.0, "band": "at_risk",
                "previous_band": "healthy", "reason": "health fell from 74 to 31",
                "details": {"kind": "band_dropped"}, "changes": []});
            rapport_store::StateWrite {
                namespace: NS_ALERT.into(),
                profile: ALERT_FEED.into(),
                key,
                value: Some(serde_json::to_vec(&value).unwrap()),
            }
        };
        // An alert of a run before the destination exists is not sent.
        store.state_commit(&[alert(500_000, 0)], None).unwrap();
        let d = destinations::create(
            store.as_ref(),
            webhook(
                &format!("alerts-{name}"),
                format!("{}/ok", receiver.url),
                json!({"deliver": {"events": null, "alerts": true}}),
            ),
            1_000_000,
        )
        .unwrap();
        store
            .state_commit(&[alert(2_000_000, 0), alert(2_000_000, 1)], None)
            .unwrap();
        let before = receiver.requests("/ok").len();
        drain(&mut Worker::new(store.clone(), &d.id), Utc::now());
        let got = &receiver.requests("/ok")[before..];
        assert_eq!(got.len(), 2, "{name}");
        let body = &got[0].1;
        assert_eq!(body["type"], "alert");
        assert_eq!(body["kind"], "band_dropped");
        assert_eq!(body["alert"]["band"], "at_risk");
        assert_eq!(body["rapport"]["identifiers"]["email"][0], "al@example.com");
        assert_ne!(got[0].0["webhook-id"], got[1].0["webhook-id"]);
    }
}

#[test]
fn a_definition_read_back_masked_can_be_put_back_and_a_paused_backfill_cancelled() {
    let (_dir, store) = common::store();
    let d = destinations::create(
        store.as_ref(),
        webhook("roundtrip", "http://127.0.0.1:9/x".into(), json!({})),
        0,
    )
    .unwrap();
    let secret = |spec: &DestinationSpec| match &spec.kind {
        rapport_destinations::Kind::Webhook { secret, .. } => secret.clone().unwrap(),
        _ => unreachable!(),
    };
    let shown = destinations::masked(&d.spec);
    assert_ne!(secret(&shown), secret(&d.spec));
    let updated = destinations::update(store.as_ref(), &d.id, shown, 1).unwrap();
    assert_eq!(secret(&updated.spec), secret(&d.spec), "the secret is kept");

    common::append(store.as_ref(), &orders(&["p"]));
    common::process(&store);
    destinations::set_paused(store.as_ref(), &d.id, true, 2).unwrap();
    destinations::start_backfill(store.as_ref(), &d.id, 0, i64::MAX, 3).unwrap();
    assert!(destinations::cancel_backfill(store.as_ref(), &d.id).unwrap());
    assert!(
        destinations::backfill(store.as_ref(), &d.id)
            .unwrap()
            .is_none(),
        "no worker runs for a paused destination: stopped at once"
    );
}
