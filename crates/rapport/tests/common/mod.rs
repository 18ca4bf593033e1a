//! A real `rapport serve` process on a loopback port with a fresh data directory, and the
//! keys to talk to it, read from what its first start prints, as a user would.
//!
//! A thin layer over `rapport_testkit::Server` (the harness the load generators share):
//! this binary's path, the store `RAPPORT_TEST_STORE` chooses, panics instead of errors,
//! and the HTTP and CLI helpers the tests call.

#![allow(dead_code)]

pub mod people;
pub mod receiver;
pub mod shop;

use rapport_testkit::Server;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_rapport");

/// How long the processor or the indexer may take to catch up with the log.
const CATCH_UP: Duration = Duration::from_secs(60);

/// A server of the tests: the harness's [`Server`] (port, keys, data directory, restarts;
/// reached through `Deref`) and the id of the source the first start created.
pub struct TestServer {
    server: Server,
    pub source_id: String,
}

impl std::ops::Deref for TestServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for TestServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// Where the npm packages of the tests are (`tests/sdk`, installed by `scripts/test.sh`).
pub const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

/// Runs `node <script> <args>` in [`SDK_DIR`], with `envs`, and parses the JSON it prints.
pub fn node_with(script: &str, args: &[&str], envs: &[(&str, &str)]) -> Value {
    assert!(
        std::path::Path::new(SDK_DIR).join("node_modules").is_dir(),
        "install the test packages first: npm ci --prefix crates/rapport/tests/sdk (scripts/test.sh does)"
    );
    let out = std::process::Command::new("node")
        .current_dir(SDK_DIR)
        .arg(script)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("node is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Runs a browser test script of `tests/sdk` (built on `dashboard-harness.mjs`) and checks
/// its report: exactly `steps` passed, with no script error, no serious accessibility
/// violation, no request to another host and no injected script run. With `screenshots`,
/// the pages' PNGs go to the directory `SCREENSHOTS` names, if set. Returns the report.
pub fn browser_flows(script: &str, args: &[&str], steps: &[&str], screenshots: bool) -> Value {
    let shots = if screenshots {
        std::env::var("SCREENSHOTS").unwrap_or_default()
    } else {
        String::new()
    };
    let report = node_with(script, args, &[("SCREENSHOTS", &shots)]);
    assert_eq!(report["errors"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["steps"], serde_json::json!(steps), "{report:#}");
    assert_eq!(
        report["violations"],
        serde_json::json!([]),
        "accessibility: {report:#}"
    );
    assert_eq!(
        report["foreign"],
        serde_json::json!([]),
        "the pages asked only Rapport"
    );
    assert_eq!(report["xss"], false, "injected markup ran: {report:#}");
    report
}

/// As [`node_with`], with no variables.
pub fn node(script: &str, args: &[&str]) -> Value {
    node_with(script, args, &[])
}

/// Runs the CLI with `args` (a management command talks to a server through `--url`).
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the rapport CLI")
}

pub fn cli_json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "rapport {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("CLI prints JSON with --format json")
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> TestServer {
        let server = Server::builder(BIN)
            .test_store()
            .args(extra_args)
            .start()
            .unwrap_or_else(|e| panic!("cannot start rapport serve: {e}"));
        let mut server = TestServer {
            server,
            source_id: String::new(),
        };
        let sources = server.admin_cli(&["sources", "list"]);
        server.source_id = sources["data"][0]["id"].as_str().unwrap().to_owned();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.server.data_dir().to_owned()
    }

    /// Starts the server again on its data, on a new port.
    pub fn spawn(&mut self) {
        self.server
            .respawn()
            .unwrap_or_else(|e| panic!("cannot restart rapport serve: {e}"));
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// POSTs a JSON text to a tracking endpoint with the write key. Returns status and body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.post_as(&self.write_key, path, body)
    }

    /// As [`TestServer::post`], with the write key of another source.
    pub fn post_as(&self, write_key: &str, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url(path))
            .basic_auth(write_key, Some(""))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.client()
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
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

    /// Waits until the processor (identity, profiles, segments) has caught up with the log.
    pub fn wait_processed(&self) {
        self.server
            .wait_processed(CATCH_UP)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until the indexer has caught up with the log.
    pub fn wait_indexed(&self) {
        self.server
            .wait_indexed(CATCH_UP)
            .unwrap_or_else(|e| panic!("{e}"));
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

    /// Runs the CLI against this server with the admin key and parses its `--format json`
    /// output.
    pub fn admin_cli(&self, args: &[&str]) -> Value {
        let url = self.url("");
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--url",
            &url,
            "--admin-key",
            &self.admin_key,
            "--format",
            "json",
        ]);
        cli_json(&all)
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

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.server
            .terminate()
            .unwrap_or_else(|e| panic!("cannot stop rapport serve: {e}"))
    }

    /// Starts a second `rapport serve` on this server's PostgreSQL database, with its own
    /// data directory and the same keys (issue 19: a key revoked through one process stops
    /// working on the others). `None` on the embedded store, where one process owns a data
    /// directory and there is nothing to share.
    pub fn start_sibling(&self) -> Option<TestServer> {
        let sibling = self
            .server
            .start_sibling()
            .unwrap_or_else(|e| panic!("cannot start a sibling server: {e}"))?;
        Some(TestServer {
            server: sibling,
            source_id: self.source_id.clone(),
        })
    }

    /// The resident memory of the server process, in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        self.server
            .rss_kib()
            .expect("VmRSS of a running server in /proc/<pid>/status")
    }
}

/// The standard output of a command that must succeed.
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The standard error of a command that must fail with exit code 1.
pub fn fails(out: std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}
