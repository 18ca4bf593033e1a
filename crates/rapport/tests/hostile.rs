//! A hostile client, with a public write key or with no key at all, against a real server:
//! poison values, oversized ids, unknown bearer tokens by the hundred, made-up HTTP
//! methods, a trickled header, idle sockets, a body that never ends, a stalled client at
//! shutdown. Throughout, the server keeps serving, its memory and its metrics stay bounded,
//! and every acknowledged event is stored and processed. Runs on both stores; every loop is
//! bounded in count and time, and all traffic stays on loopback.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Short timeouts and small connection caps, so that each probe resolves in seconds.
const CONFIG: &str = r#"
[connections]
header_read_timeout_secs = 2
body_read_timeout_secs = 2
max_connections = 400
max_connections_per_ip = 60
shutdown_grace_secs = 2
"#;

/// A raw TCP connection to the server, from 127.0.0.1.
fn connect(s: &TestServer) -> TcpStream {
    let to: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent
/// and whether it closed in time.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Whether `/health` answers 200 to a client at `from` (another loopback address stands
/// for another machine).
fn health_ok(s: &TestServer, from: &str) -> bool {
    reqwest::blocking::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(s.url("/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

#[test]
fn a_hostile_client_cannot_exhaust_stall_or_poison_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rapport.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut s = TestServer::start_with(&["--config", config.to_str().unwrap()]);
    let mut acknowledged: Vec<String> = Vec::new();
    let send_good = |s: &TestServer, tag: &str| {
        let id = format!("good-{tag}");
        let (status, body) = s.post(
            "/v1/track",
            &json!({"userId": "steady", "event": "Still Here", "messageId": id}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        id
    };
    acknowledged.push(send_good(&s, "start"));

    // 1. Poison values are refused at the door, naming the field, on both stores alike.
    let long = "u".repeat(4000);
    let long_id = "m".repeat(3000);
    let poisons = [
        (json!({"userId": "x\u{0}y", "event": "E"}), "userId"),
        (json!({"userId": long, "event": "E"}), "userId"),
        (json!({"userId": "u", "event": "E\u{0}"}), "event"),
        (
            json!({"userId": "u", "event": "E", "messageId": long_id}),
            "messageId",
        ),
        (
            json!({"anonymousId": "a", "event": "E", "groupId": "g\u{0}"}),
            "groupId",
        ),
    ];
    for (body, field) in &poisons {
        let (status, answer) = s.post("/v1/track", &body.to_string());
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], *field, "{answer}");
    }
    // A poison in a batch beside good messages costs only itself, also under concurrency.
    let (batch_url, write_key) = (s.url("/v1/batch"), s.write_key.clone());
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (batch_url, write_key) = (&batch_url, &write_key);
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in 0..10 {
                    let batch = json!({"batch": [
                        {"type": "track", "userId": "x\u{0}y", "event": "E"},
                        {"type": "track", "userId": "mixed", "event": "Fine",
                         "messageId": format!("mixed-{t}-{i}")},
                    ]});
                    let r = client
                        .post(batch_url)
                        .basic_auth(write_key, Some(""))
                        .body(batch.to_string())
                        .send()
                        .unwrap();
                    let status = r.status().as_u16();
                    let answer: Value = r.json().unwrap();
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(answer["accepted"], 1, "{answer}");
                    assert_eq!(answer["rejected"][0]["error"]["field"], "batch[0].userId");
                }
            });
        }
    });
    for t in 0..4 {
        for i in 0..10 {
            acknowledged.push(format!("mixed-{t}-{i}"));
        }
    }

    // 2. Unknown bearer tokens, large ones, by the hundred: memory stays bounded.
    let rss_before = s.rss_kib();
    let client = s.client();
    for i in 0..300 {
        let token = format!("{i:04}{}", "t".repeat(200_000));
        let r = client
            .get(s.url("/api/v1/events"))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let rss_after = s.rss_kib();
    assert!(
        rss_after < rss_before + 40 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB after 300 unknown 200 KB tokens"
    );

    // 3. Made-up HTTP methods never become metric labels.
    let metrics_before = s.metrics_text();
    for i in 0..500 {
        let method = reqwest::Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let _ = client.request(method, s.url("/v1/track")).send().unwrap();
    }
    let metrics_after = s.metrics_text();
    assert!(
        !metrics_after.contains("PROBE"),
        "a made-up method became a label"
    );
    assert!(
        metrics_after.len() < metrics_before.len() + 8 * 1024,
        "metrics grew from {} to {} bytes",
        metrics_before.len(),
        metrics_after.len()
    );

    // 4. A header trickled one byte at a time is cut off at the header timeout.
    let mut trickle = connect(&s);
    trickle
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"X-Slow: ".iter().cycle().take(40) {
        if trickle.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let mut probe = [0u8; 1];
        trickle
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        if matches!(trickle.read(&mut probe), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a trickled header held the connection for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // 5. Idle sockets beyond the per-address cap are refused at once, and /health still
    // answers; the idle ones are closed at the header timeout.
    let mut idle: Vec<TcpStream> = (0..120).map(|_| connect(&s)).collect();
    let mut refused = 0;
    for stream in idle.iter_mut().skip(60) {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(2));
        if closed && answer.contains("too_many_connections") {
            refused += 1;
        }
    }
    assert!(
        refused >= 55,
        "{refused} of 60 sockets over the cap were refused"
    );
    // Another client is served meanwhile.
    assert!(
        health_ok(&s, "127.0.0.2"),
        "/health refused to another address"
    );
    let (answer, closed) = read_until_closed(&mut idle[0], Duration::from_secs(5));
    assert!(
        closed && answer.is_empty(),
        "an idle socket stayed open: {answer:?}"
    );
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !health_ok(&s, "127.0.0.1") {
        assert!(Instant::now() < deadline, "/health stopped answering");
        std::thread::sleep(Duration::from_millis(100));
    }

    // 6. A body that never ends is cut off at the body timeout; nothing of it is stored.
    let mut slow = connect(&s);
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"userId\":\"slow\",",
        s.write_key
    );
    slow.write_all(head.as_bytes()).unwrap();
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(6));
    assert!(closed, "a stalled body held the connection");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    acknowledged.push(send_good(&s, "after-probes"));
    s.wait_processed();
    let h: Value = s
        .client()
        .get(s.url("/health"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["status"], "ok", "{h}");

    // Nothing acknowledged was lost, and the steady user's profile has both of its events.
    let stored = s.all_events("");
    for id in &acknowledged {
        assert!(
            stored.iter().any(|e| e["messageId"] == id.as_str()),
            "{id} lost"
        );
    }
    assert!(!stored.iter().any(|e| e["userId"] == "slow"));
    let (status, timeline) = s.admin_get("/api/v1/profiles/user_id:steady/events");
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["data"].as_array().unwrap().len(), 2, "{timeline}");

    // 7. At shutdown a stalled client gets the grace period, not for ever.
    let mut stalled = connect(&s);
    stalled.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    assert!(s.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "shutdown waited {:?} for a stalled client",
        stopping.elapsed()
    );
}
