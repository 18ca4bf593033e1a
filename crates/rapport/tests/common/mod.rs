//! A real `rapport serve` process on a loopback port with a fresh data directory, and the
//! keys to talk to it, read from what its first start prints, as a user would.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rapport");

/// With `RAPPORT_TEST_STORE=postgres` every end-to-end test runs against a throwaway
/// PostgreSQL server (a fresh database per test) instead of the embedded store.
fn database_url() -> Option<String> {
    match std::env::var("RAPPORT_TEST_STORE").as_deref() {
        Ok("postgres") => Some(rapport_store::testing::TestPostgres::shared().create_database()),
        Ok("embedded") | Err(_) => None,
        Ok(other) => panic!("RAPPORT_TEST_STORE must be embedded or postgres, not {other:?}"),
    }
}

pub struct TestServer {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub write_key: String,
    pub admin_key: String,
    pub source_id: String,
    extra_args: Vec<String>,
    database_url: Option<String>,
    /// The keys printed by the first start, while `start_with` waits for them.
    first_start: Option<std::sync::mpsc::Receiver<(String, String)>>,
}

/// Reads the first start's welcome (`write key  wk_…`, `admin key  ak_…`) from the server's
/// standard output, sends the two secrets, and drains the rest.
fn read_welcome(
    stdout: std::process::ChildStdout,
    keys: std::sync::mpsc::Sender<(String, String)>,
) {
    use std::io::BufRead;
    let mut write = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("write"), Some("key"), Some(secret)) => write = Some(secret.to_owned()),
            (Some("admin"), Some("key"), Some(secret)) => {
                if let Some(w) = write.take() {
                    let _ = keys.send((w, secret.to_owned()));
                }
            }
            _ => {}
        }
    }
}

pub fn cli(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    cmd.args(args).output().expect("run the rapport CLI")
}

pub fn cli_json(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> Value {
    let out = cli(data_dir, database_url, args);
    assert!(
        out.status.success(),
        "rapport {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("CLI prints JSON with --json")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> TestServer {
        let mut server = TestServer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            write_key: String::new(),
            admin_key: String::new(),
            source_id: String::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            database_url: database_url(),
            first_start: None,
        };
        server.spawn();
        let keys = server
            .first_start
            .take()
            .expect("spawn reads the first start")
            .recv_timeout(Duration::from_secs(30))
            .expect("the first start prints a write key and an admin key");
        (server.write_key, server.admin_key) = keys;
        let sources = server.admin_cli(&["sources", "list"]);
        server.source_id = sources["data"][0]["id"].as_str().unwrap().to_owned();
        server
    }

    /// The database URL of a PostgreSQL-backed server.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or restarts) the server process on a new port. On the first start the keys
    /// it prints are sent to `first_start`; its standard output is drained meanwhile.
    pub fn spawn(&mut self) {
        self.port = free_port();
        let mut cmd = Command::new(BIN);
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra_args)
            .env("RAPPORT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start rapport serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        if self.admin_key.is_empty() {
            self.first_start = Some(rx);
        }
        std::thread::spawn(move || read_welcome(stdout, tx));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(self.url("/health"))
                && r.status().is_success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("rapport serve did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// POSTs a JSON text to a tracking endpoint with the write key. Returns status and body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url(path))
            .basic_auth(&self.write_key, Some(""))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client()
            .get(self.url(path))
            .bearer_auth(&self.admin_key)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Waits until the consumer whose offset `/health` reports as `field` has caught up
    /// with the log.
    fn wait_consumer(&self, field: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let h: Value = reqwest::blocking::get(self.url("/health"))
                .unwrap()
                .json()
                .unwrap();
            if h["log_offset"] == h[field] {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{field} did not catch up with the log");
    }

    /// Waits until the processor (identity, profiles, segments) has caught up with the log.
    pub fn wait_processed(&self) {
        self.wait_consumer("processed_offset");
    }

    /// Waits until the indexer has caught up with the log.
    pub fn wait_indexed(&self) {
        self.wait_consumer("indexed_offset");
    }

    /// Sends `method path` with the admin key and an optional JSON body. Returns status and
    /// body.
    pub fn admin_send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client()
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(&self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Runs the CLI against this server with the admin key and parses its `--json` output.
    pub fn admin_cli(&self, args: &[&str]) -> Value {
        let url = self.url("");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &url, "--admin-key", &self.admin_key, "--json"]);
        cli_json(&self.data_dir(), None, &all)
    }

    /// POSTs with the admin key and no body. Returns status and body.
    pub fn admin_post(&self, path: &str) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url(path))
            .bearer_auth(&self.admin_key)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Every stored event matching a query string, following cursors.
    pub fn all_events(&self, query: &str) -> Vec<Value> {
        self.wait_indexed();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?limit=1000&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.admin_get(&path);
            assert_eq!(status, 200, "{body}");
            out.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("server running");
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let status = c.wait().unwrap();
        self.child = None;
        status
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Several servers on one data source (issue 19: a key revoked through one process stops
/// working on the others). Kept apart from the rest of the harness.
impl TestServer {
    /// Starts a second `rapport serve` on this server's PostgreSQL database, with its own
    /// data directory and the same keys. `None` on the embedded store, where one process
    /// owns a data directory and there is nothing to share.
    pub fn start_sibling(&self) -> Option<TestServer> {
        let database_url = self.database_url.clone()?;
        let mut sibling = TestServer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            write_key: self.write_key.clone(),
            admin_key: self.admin_key.clone(),
            source_id: self.source_id.clone(),
            extra_args: self.extra_args.clone(),
            database_url: Some(database_url),
            first_start: None,
        };
        sibling.spawn();
        Some(sibling)
    }

    /// The resident memory of the server process, in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("server running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}
