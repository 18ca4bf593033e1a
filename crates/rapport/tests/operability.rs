//! What a data engineer meets first when running Rapport: metrics a Prometheus accepts,
//! sources and keys managed through the running server, start-up errors that say what
//! failed, plain logs when standard error is not a terminal.

mod common;

use common::{BIN, TestServer};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The value of an unlabelled sample, if present.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn metrics_are_described_start_at_zero_and_pass_promtool() {
    let s = TestServer::start();
    // Before anything happened: the counters are there, at zero, with the build.
    let first = s.metrics_text();
    for name in [
        "rapport_events_stored_total",
        "rapport_events_rejected_total",
        "rapport_events_duplicate_total",
        "rapport_ingest_queue_full_total",
        "rapport_storage_errors_total{stage=\"ingest\"}",
        "rapport_dead_letters_total{consumer=\"processor\"}",
        "rapport_events_indexed_total",
        "rapport_events_processed_total",
    ] {
        assert_eq!(sample(&first, name), Some(0.0), "{name}\n{first}");
    }
    assert!(
        first.contains(&format!(
            "rapport_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{first}"
    );

    // Traffic of every kind, including made-up methods and paths.
    s.post("/v1/track", r#"{"userId":"m","event":"E"}"#);
    s.post("/v1/track", r#"{"userId":"m"}"#);
    for method in ["BREW", "PROPFIND", "X-MADE-UP"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        s.client().request(m, s.url("/v1/track")).send().unwrap();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        s.client()
            .request(m, s.url("/no/such/path"))
            .send()
            .unwrap();
    }
    s.client().get(s.url("/another/unknown")).send().unwrap();
    s.wait_processed();
    let text = s.metrics_text();
    assert_eq!(sample(&text, "rapport_events_stored_total"), Some(1.0));
    assert_eq!(sample(&text, "rapport_events_rejected_total"), Some(1.0));
    assert!(
        text.contains(
            r#"rapport_http_requests_total{route="/v1/track",method="other",status="405"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"rapport_http_requests_total{route="unmatched",method="other",status="404"} 3"#
        ),
        "{text}"
    );
    for made_up in ["BREW", "PROPFIND", "X-MADE-UP", "/no/such/path", "/another"] {
        assert!(!text.contains(made_up), "{made_up} became a label\n{text}");
    }
    let undocumented = rapport_server::telemetry::undocumented_families(&text);
    assert!(undocumented.is_empty(), "{undocumented:?}\n{text}");

    // The disk gauge measures allocated space: at least what the log holds.
    assert!(sample(&text, "rapport_store_disk_bytes").unwrap() > 0.0);

    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => eprintln!("promtool is not installed: skipping `promtool check metrics`"),
    }
}

/// Runs the CLI against `s` with its admin key; never with a key from the environment.
fn cli_on(s: &TestServer, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--url", &s.url(""), "--admin-key", &s.admin_key])
        .env_remove("RAPPORT_ADMIN_KEY")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn sources_and_keys_are_managed_through_the_running_server() {
    let s = TestServer::start();

    // Tables by default.
    let created = ok(cli_on(&s, &["sources", "create", "ios app"]));
    assert!(created.starts_with("ID "), "{created}");
    assert!(
        created.contains("ios app") && created.contains("wk_"),
        "{created}"
    );
    let listed = ok(cli_on(&s, &["sources", "list"]));
    assert!(
        listed.contains("default") && listed.contains("ios app"),
        "{listed}"
    );
    let keys = ok(cli_on(&s, &["keys", "list"]));
    assert!(keys.starts_with("ID "), "{keys}");
    // Each key is shown with its name, under a NAME column.
    let header: Vec<&str> = keys.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "KIND", "SOURCE", "NAME", "PREFIX", "CREATED", "STATUS", "SCOPES"
        ],
        "{keys}"
    );
    assert!(keys.contains("admin key"), "{keys}");
    assert_eq!(keys.matches("active").count(), 3, "{keys}");

    // JSON with --format json: the same objects as the REST API.
    let sources: Value =
        serde_json::from_str(&ok(cli_on(&s, &["sources", "list", "--format", "json"]))).unwrap();
    assert_eq!(sources["data"].as_array().unwrap().len(), 2, "{sources}");
    let web: Value = serde_json::from_str(&ok(cli_on(
        &s,
        &["sources", "create", "web", "--format", "json"],
    )))
    .unwrap();
    let web_key = web["write_key"]["secret"].as_str().unwrap().to_owned();
    let (status, _) = {
        let r = s
            .client()
            .post(s.url("/v1/track"))
            .basic_auth(&web_key, Some(""))
            .header("content-type", "application/json")
            .body(r#"{"userId":"w","event":"E"}"#)
            .send()
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 200);

    let admin: Value = serde_json::from_str(&ok(cli_on(
        &s,
        &[
            "keys", "create", "--kind", "admin", "--name", "ops", "--format", "json",
        ],
    )))
    .unwrap();
    let (id, secret) = (
        admin["id"].as_str().unwrap().to_owned(),
        admin["secret"].as_str().unwrap().to_owned(),
    );
    let read = |key: &str| {
        s.client()
            .get(s.url("/api/v1/sources"))
            .bearer_auth(key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(read(&secret), 200);
    let write = ok(cli_on(
        &s,
        &["keys", "create", "--kind", "write", "--source", "web"],
    ));
    assert!(write.contains("secret (shown once): wk_"), "{write}");

    let revoked = ok(cli_on(&s, &["keys", "revoke", &id]));
    assert!(
        revoked.contains(&id) && revoked.contains("revoked"),
        "{revoked}"
    );
    assert_eq!(read(&secret), 401);
    let keys: Value =
        serde_json::from_str(&ok(cli_on(&s, &["keys", "list", "--format", "json"]))).unwrap();
    let ops = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(ops["revoked_at_ms"].is_i64(), "{keys}");
    assert!(!keys.to_string().contains(&secret));

    // The server's errors come back as they are.
    let bad = cli_on(&s, &["keys", "revoke", "key_nonexistent"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("404"), "{}", text(&bad.stderr));

    // Without an admin key, the command says how to give one.
    let out = Command::new(BIN)
        .args(["keys", "list", "--url", &s.url("")])
        .env_remove("RAPPORT_ADMIN_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("RAPPORT_ADMIN_KEY"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn no_command_creates_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("typo");
    let nobody = "http://127.0.0.1:1";
    for args in [
        &["keys", "list", "--url", nobody, "--admin-key", "ak_x"][..],
        &["sources", "list", "--url", nobody, "--admin-key", "ak_x"],
        &[
            "sources",
            "create",
            "web",
            "--url",
            nobody,
            "--admin-key",
            "ak_x",
        ],
        &[
            "keys",
            "revoke",
            "key_1",
            "--url",
            nobody,
            "--admin-key",
            "ak_x",
        ],
        &["keys", "create", "--kind", "admin", "--offline"],
    ] {
        // Both with a wrong data directory and with the default one in the working
        // directory. The wrong one is `--data-dir` where the command offers it, else the
        // variable `serve` reads (set for every command in a deployment).
        for with_dir in [true, false] {
            let mut cmd = Command::new(BIN);
            cmd.current_dir(dir.path()).env_remove("RAPPORT_DATA_DIR");
            cmd.args(args);
            if with_dir && args.contains(&"--offline") {
                cmd.arg("--data-dir").arg(&wrong);
            } else if with_dir {
                cmd.env("RAPPORT_DATA_DIR", &wrong);
            }
            let out = cmd.output().unwrap();
            assert!(!out.status.success(), "{args:?} succeeded");
            let err = text(&out.stderr);
            if args.contains(&"--offline") {
                assert!(err.contains("holds no Rapport store"), "{err}");
            } else {
                assert!(err.contains("cannot reach"), "{err}");
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}

#[test]
fn an_offline_admin_key_opens_a_stopped_server_again() {
    let mut s = TestServer::start();
    assert!(s.terminate().success());
    let mut cmd = Command::new(BIN);
    cmd.args([
        "keys",
        "create",
        "--kind",
        "admin",
        "--offline",
        "--format",
        "json",
    ]);
    cmd.arg("--data-dir").arg(s.data_dir());
    if let Some(url) = s.database_url() {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.output().unwrap();
    let key: Value = serde_json::from_slice(&ok_bytes(out)).unwrap();
    s.spawn();
    s.admin_key = key["secret"].as_str().unwrap().to_owned();
    let (status, body) = s.admin_get("/api/v1/keys");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3, "{body}");
}

fn ok_bytes(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout
}

/// Runs `rapport serve` with `args` and expects it to fail at once; answers its stderr.
fn failed_start(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RAPPORT_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .env_remove("RAPPORT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} started");
    let err = text(&out.stderr);
    // Only what failed: no backtrace, no advice about unrelated commands.
    assert!(!err.contains("backtrace"), "{err}");
    assert!(!err.contains("/api/v1/keys"), "{err}");
    assert!(!err.contains("--offline"), "{err}");
    err
}

#[test]
fn start_up_errors_say_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("data");

    // Port in use: said so, and no data directory left behind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = failed_start(&fresh, &["--listen", &addr]);
    assert!(
        err.contains(&format!("error: cannot listen on {addr}")),
        "{err}"
    );
    assert!(!fresh.exists());

    // Data directory not writable (under a plain file, so that root fails too).
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = failed_start(&file.join("data"), &["--listen", "127.0.0.1:0"]);
    let expected = format!(
        "error: cannot open the data directory {}",
        file.join("data").display()
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");

    // A URL that is not PostgreSQL's.
    let err = failed_start(
        &fresh,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://u:pw@h/x",
        ],
    );
    assert!(err.contains("not a PostgreSQL URL"), "{err}");

    // Nothing listening: the target is named, with no password, in the log and the error.
    let err = failed_start(
        &fresh,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://ann:s3cret@127.0.0.1:1/crm",
        ],
    );
    assert!(
        err.contains("connecting to PostgreSQL at 127.0.0.1:1, database crm, user ann"),
        "{err}"
    );
    assert!(
        err.contains("error: cannot open the PostgreSQL store at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");

    // A server that accepts and never answers: the connect timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://ann@127.0.0.1:{}/crm",
        silent.local_addr().unwrap().port()
    );
    let started = Instant::now();
    let err = failed_start(
        &fresh,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--database-connect-timeout-secs",
            "1",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("did not answer within 1 s"), "{err}");
    drop(silent);

    // Bad configuration files: which file, which line.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \n").unwrap();
    let err = failed_start(&fresh, &["--config", bad.to_str().unwrap()]);
    assert!(
        err.contains(&format!("error: invalid config file {}", bad.display()))
            && err.contains("line 1"),
        "{err}"
    );
    let err = failed_start(&fresh, &["--config", "/nonexistent/rapport.toml"]);
    assert!(
        err.contains("error: cannot read config file /nonexistent/rapport.toml"),
        "{err}"
    );
    assert!(!fresh.exists());
}

#[test]
fn logs_are_plain_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RAPPORT_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("Rapport is listening");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let all = seen.join("\n");
    assert!(all.contains("Rapport is listening"), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "ANSI escapes in piped logs:\n{all}"
    );
}

/// A relative `--url` and an empty `--admin-key` are refused before anything is sent, in
/// plain words naming the flag and what is expected (they failed deep in the HTTP client,
/// or reached the server as no key at all).
#[test]
fn a_relative_url_and_an_empty_admin_key_are_named() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("RAPPORT_ADMIN_KEY")
            .env_remove("RAPPORT_URL")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        text(&out.stderr)
    };
    for args in [
        &[
            "keys",
            "list",
            "--url",
            "localhost:8080",
            "--admin-key",
            "ak_x",
        ][..],
        &["keys", "list", "--url", "/api", "--admin-key", "ak_x"],
        &["import", "x.csv", "--url", "127.0.0.1:8080"],
    ] {
        let err = run(args);
        assert!(
            err.contains("--url") && err.contains("http://127.0.0.1:8080"),
            "{args:?}: {err}"
        );
    }
    let err = run(&[
        "keys",
        "list",
        "--url",
        "http://127.0.0.1:1",
        "--admin-key",
        "",
    ]);
    assert!(
        err.contains("--admin-key") && err.contains("empty"),
        "{err}"
    );
}
