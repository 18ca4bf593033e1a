//! The harness against the real binary: keys from the welcome, restarts on the same data,
//! the consumers' waits, memory, a clean stop.
//!
//! The binary is `RAPPORT_BIN`, else the `rapport` that cargo built beside this test
//! (`cargo test --workspace` builds it; alone: `cargo build -p rapport` first).

use rapport_testkit::Server;
use std::path::PathBuf;
use std::time::Duration;

fn rapport_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RAPPORT_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/server-… → target/<profile>/rapport
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("rapport");
    assert!(
        bin.is_file(),
        "no rapport binary at {}: build it (cargo build -p rapport) or set RAPPORT_BIN",
        bin.display()
    );
    bin
}

#[test]
fn a_server_starts_restarts_and_stops() {
    let mut s = Server::builder(rapport_bin()).start().unwrap();
    assert!(s.write_key.starts_with("wk_"), "{}", s.write_key);
    assert!(s.admin_key.starts_with("ak_"), "{}", s.admin_key);
    assert!(s.data_dir().starts_with(s.dir.path()));
    assert!(s.rss_kib().is_some_and(|k| k > 0));
    assert!(s.peak_rss_kib() >= s.rss_kib());
    // Nothing to share on the embedded store.
    assert!(s.start_sibling().unwrap().is_none());

    let http = reqwest::blocking::Client::new();
    let sent = http
        .post(s.url("/v1/track"))
        .basic_auth(&s.write_key, Some(""))
        .json(&serde_json::json!({"userId": "u1", "event": "Signed Up"}))
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    s.wait_processed(Duration::from_secs(60)).unwrap();
    s.wait_indexed(Duration::from_secs(60)).unwrap();

    // A crash, then a start on the same data: the event and the keys are still there.
    let pid = s.pid();
    s.kill9();
    assert_eq!(s.pid(), None);
    assert!(s.rss_kib().is_none());
    s.respawn().unwrap();
    assert_ne!(s.pid(), pid);
    s.wait_indexed(Duration::from_secs(60)).unwrap();
    let events: serde_json::Value = http
        .get(s.url("/api/v1/events"))
        .bearer_auth(&s.admin_key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");

    assert!(s.terminate().unwrap().success());
    assert!(
        s.terminate().is_err(),
        "a stopped server cannot be stopped again"
    );
}

#[test]
fn a_prepared_data_directory_keeps_its_keys() {
    // A first start makes the store; a second server on it, told the keys, reads no welcome.
    let mut first = Server::builder(rapport_bin()).start().unwrap();
    assert!(first.terminate().unwrap().success());
    let again = Server::builder(rapport_bin())
        .data_dir(first.data_dir())
        .keys(&first.write_key, &first.admin_key)
        .args(["--refit-interval-hours", "0"])
        .start_timeout(Duration::from_secs(60))
        .start()
        .unwrap();
    assert_eq!(again.data_dir(), first.data_dir());
    let keys = reqwest::blocking::Client::new()
        .get(again.url("/api/v1/keys"))
        .bearer_auth(&again.admin_key)
        .send()
        .unwrap();
    assert_eq!(keys.status(), 200);
}
