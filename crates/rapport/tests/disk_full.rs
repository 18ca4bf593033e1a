//! A real server whose data directory's disk fills up: requests answer 503 and nothing
//! unacknowledged is claimed, `/health` is not ok and the storage errors are counted; once
//! space is freed, writes succeed again without a restart, `/health` is ok, and every
//! acknowledged event is there. The embedded store's disk only (needs root to mount a small
//! tmpfs; elsewhere, and on the PostgreSQL run, it says so and passes without running).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Mounted(tempfile::TempDir);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_full_disk_is_unhealthy_and_recovers_without_a_restart() {
    if std::env::var("RAPPORT_TEST_STORE").as_deref() == Ok("postgres") {
        eprintln!("skipped: this test fills the embedded store's disk");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let disk = Mounted(dir);
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("serve")
        .arg("--data-dir")
        .arg(disk.0.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RAPPORT_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first start prints the keys it created.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let server = Server(child);
    let (mut write_key, mut admin_key) = (None, None);
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        for word in line.split_whitespace() {
            let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            if word.starts_with("wk_") && word.len() > 20 {
                write_key.get_or_insert(word.to_owned());
            }
            if word.starts_with("ak_") && word.len() > 20 {
                admin_key.get_or_insert(word.to_owned());
            }
        }
        if write_key.is_some() && admin_key.is_some() {
            break;
        }
    }
    // Keep reading what the server prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    let (write_key, admin_key) = (write_key.unwrap(), admin_key.unwrap());
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let health = || {
        client
            .get(url("/health"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while health() != 200 {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let send = |tag: &str| -> u16 {
        let batch: Vec<Value> = (0..50)
            .map(|j| {
                json!({"type": "track", "userId": format!("u{j}"), "event": "Filled",
                       "messageId": format!("{tag}-{j}"), "properties": {"pad": "x".repeat(600)}})
            })
            .collect();
        client
            .post(url("/v1/batch"))
            .basic_auth(&write_key, Some(""))
            .json(&json!({ "batch": batch }))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    // Leave a few megabytes, then fill them.
    assert!(
        Command::new("fallocate")
            .args(["-l", "34m"])
            .arg(disk.0.path().join("filler"))
            .status()
            .unwrap()
            .success()
    );
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..3_000 {
        let tag = format!("b{i}");
        match send(&tag) {
            200 => acknowledged.push(tag),
            status => {
                refused = Some(status);
                break;
            }
        }
    }
    assert_eq!(refused, Some(503), "a full disk answers 503");
    let deadline = Instant::now() + Duration::from_secs(10);
    while health() != 503 {
        assert!(
            Instant::now() < deadline,
            "/health stayed ok on a full disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = client.get(url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rapport_storage_errors_total") && !l.ends_with(" 0")),
        "storage errors are counted"
    );

    std::fs::remove_file(disk.0.path().join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tag = format!("after-{}", acknowledged.len());
        if send(&tag) == 200 {
            acknowledged.push(tag);
            break;
        }
        assert!(Instant::now() < deadline, "writes did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while health() != 200 {
        assert!(Instant::now() < deadline, "/health did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every acknowledged message is stored once; the indexer caught up after the outage.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = acknowledged.len() * 50;
    let stored = loop {
        let h: Value = client.get(url("/health")).send().unwrap().json().unwrap();
        if h["indexed_offset"] == h["log_offset"]
            && h["log_offset"].as_u64() == Some(expected as u64)
        {
            break h["log_offset"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the indexer did not catch up: {h}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stored as usize, expected);
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = client
            .get(url("/api/v1/events"))
            .bearer_auth(&admin_key)
            .query(&[("limit", "1000")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: Value = req.send().unwrap().json().unwrap();
        for e in page["data"].as_array().unwrap() {
            seen.insert(e["messageId"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for tag in &acknowledged {
        for j in 0..50 {
            assert!(seen.contains(&format!("{tag}-{j}")), "{tag}-{j} lost");
        }
    }
    drop(server);
}
