//! `rapport import` end to end: a real server, the real CLI, files with good and bad lines.

mod common;

use common::{BIN, TestServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn import(server: &TestServer, file: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("import")
        .arg(file)
        .arg("--url")
        .arg(server.url(""))
        .arg("--write-key")
        .arg(&server.write_key)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run rapport import")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `FILE:LINE: message` lines of a run, as `(line, message)`.
fn line_errors(out: &Output, file: &Path) -> Vec<(u64, String)> {
    let prefix = format!("{}:", file.display());
    let mut errors: Vec<(u64, String)> = stderr(out)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (line, message) = rest.split_once(": ").expect("FILE:LINE: message");
            (line.parse().expect("a line number"), message.to_owned())
        })
        .collect();
    errors.sort();
    errors
}

fn by_user<'a>(events: &'a [Value], user: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["userId"] == user).collect()
}

const CSV_ARGS: &[&str] = &[
    "--type",
    "identify",
    "--map",
    "signed_up=timestamp",
    "--numeric",
    "age",
    "--bool",
    "vip",
];

#[test]
fn csv_import_maps_columns_reports_bad_lines_and_is_idempotent() {
    let server = TestServer::start();
    let file = data("import_customers.csv");
    let errors_file = server.dir.path().join("rejected.ndjson");
    let mut args = CSV_ARGS.to_vec();
    args.extend(["--errors", errors_file.to_str().unwrap()]);
    let out = import(&server, &file, &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = line_errors(&out, &file);
    assert_eq!(
        errors,
        vec![
            (
                5,
                r#"column "age": expected a number, got "abc""#.to_owned()
            ),
            (6, "either `userId` or `anonymousId` is required".to_owned()),
            (
                7,
                r#"`timestamp` is not an ISO-8601 timestamp with a year from 0000 to 9999: "not-a-date""#.to_owned()
            ),
            (
                8,
                "expected 8 columns (as in the header), found 4".to_owned()
            ),
        ]
    );
    assert!(
        stdout(&out).contains("7 lines read, 3 accepted, 0 duplicates, 4 rejected"),
        "{}",
        stdout(&out)
    );

    // The errors file: one JSON object per rejected line, with the cells that were read.
    let rejected: Vec<Value> = std::fs::read_to_string(&errors_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![5, 6, 7, 8]);
    assert_eq!(rejected[2]["code"], "invalid_timestamp");
    assert_eq!(rejected[2]["field"], "timestamp");
    assert_eq!(rejected[2]["record"]["user_id"], "u-5");

    let events = server.all_events("type=identify");
    assert_eq!(events.len(), 3, "{events:#?}");
    let ann = by_user(&events, "u-1");
    assert_eq!(ann.len(), 1);
    let ann = ann[0];
    assert_eq!(
        ann["traits"],
        serde_json::json!({
            "email": "ann@example.com", "plan": "pro", "age": 41, "vip": true,
            "zip": "01234", "note": "first line\nsecond line"
        })
    );
    assert_eq!(ann["timestamp"], "2024-01-02T10:00:00.000Z");
    assert!(ann["messageId"].as_str().unwrap().starts_with("import-"));
    let bob = by_user(&events, "u-2")[0];
    // Empty cells are absent; undeclared cells stay strings.
    assert_eq!(
        bob["traits"],
        serde_json::json!({"email": "bob@example.com", "plan": "free", "vip": false, "zip": "007"})
    );
    let gus = by_user(&events, "u-7")[0];
    assert_eq!(gus["timestamp"], "2024-01-07T06:30:00.000Z");

    // Importing the same file again stores nothing new.
    let again = import(&server, &file, CSV_ARGS);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stdout(&again).contains("7 lines read, 0 accepted, 3 duplicates, 4 rejected"),
        "{}",
        stdout(&again)
    );
    assert_eq!(server.all_events("type=identify").len(), 3);
}

#[test]
fn ndjson_import_maps_server_rejections_back_to_lines() {
    // A per-message limit below what the file has, so that the server (not the local check,
    // which uses the default limits) rejects lines 5 and 6. With batches of two they share
    // one request, which the server refuses whole; the importer splits it to find out.
    let server = TestServer::start_with(&["--max-event-bytes", "1024"]);
    let file = data("import_events.ndjson");
    let out = import(&server, &file, &["--batch-size", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = line_errors(&out, &file);
    let lines: Vec<u64> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![3, 5, 6, 7], "{errors:?}");
    assert!(errors[0].1.starts_with("invalid JSON"), "{errors:?}");
    assert!(errors[1].1.contains("the limit is 1024"), "{errors:?}");
    assert_eq!(errors[3].1, "`type` is required (or pass --type)");
    assert!(
        stdout(&out).contains("8 lines read, 4 accepted, 0 duplicates, 4 rejected"),
        "{}",
        stdout(&out)
    );

    let events = server.all_events("");
    assert_eq!(events.len(), 4, "{events:#?}");
    let n1 = by_user(&events, "n-1");
    assert_eq!(n1.len(), 2);
    let identify = n1.iter().find(|e| e["type"] == "identify").unwrap();
    // Objects are stored byte for byte as the file wrote them.
    assert_eq!(identify["traits"]["score"], 1.5);
    let raw = server
        .client()
        .get(server.url("/api/v1/events?userId=n-1&type=identify"))
        .bearer_auth(&server.admin_key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(raw.contains(r#""score":1.50"#), "{raw}");
    let page = events.iter().find(|e| e["type"] == "page").unwrap();
    assert_eq!(page["messageId"], "page-view-6", "a line's own id is kept");
    assert!(events.iter().any(|e| e["type"] == "alias"));

    let again = import(&server, &file, &["--batch-size", "2"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stdout(&again).contains("8 lines read, 0 accepted, 4 duplicates, 4 rejected"),
        "{}",
        stdout(&again)
    );
    assert_eq!(server.all_events("").len(), 4);

    // --type supplies the missing type of line 7; its id is the same as before, so only
    // that line is new.
    let typed = import(&server, &file, &["--type", "identify"]);
    assert!(stdout(&typed).contains("1 accepted"), "{}", stdout(&typed));
    assert_eq!(by_user(&server.all_events(""), "n-5").len(), 1);
}

#[test]
fn fatal_errors_exit_with_1_and_dry_runs_send_nothing() {
    let mut server = TestServer::start();
    let file = data("import_customers.csv");

    let dry = import(&server, &file, &[CSV_ARGS, &["--dry-run"]].concat());
    assert_eq!(dry.status.code(), Some(2));
    assert!(
        stdout(&dry).contains("dry run, nothing sent: 7 lines read, 3 valid, 4 rejected"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(line_errors(&dry, &file).len(), 4);
    assert!(server.all_events("").is_empty());

    let missing = import(&server, &data("import_nope.csv"), CSV_ARGS);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("cannot open"),
        "{}",
        stderr(&missing)
    );

    let bad_map = import(&server, &file, &["--map", "nope=userId"]);
    assert_eq!(bad_map.status.code(), Some(1));
    assert!(
        stderr(&bad_map).contains("not in the header"),
        "{}",
        stderr(&bad_map)
    );

    let bad_key = Command::new(BIN)
        .args(["import", file.to_str().unwrap(), "--write-key", "wk_nope"])
        .arg("--url")
        .arg(server.url(""))
        .args(CSV_ARGS)
        .output()
        .unwrap();
    assert_eq!(bad_key.status.code(), Some(1));
    assert!(
        stderr(&bad_key).contains("invalid_write_key"),
        "{}",
        stderr(&bad_key)
    );

    server.kill9();
    let down = import(&server, &file, &[CSV_ARGS, &["--retries", "1"]].concat());
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("after 2 attempts"),
        "{}",
        stderr(&down)
    );
}

/// An orders export has no `event` column: `--event` names every row's event, and a row
/// that gives its own keeps it.
#[test]
fn an_orders_export_without_an_event_column_imports_with_a_constant_event_name() {
    let server = TestServer::start();
    let file = server.dir.path().join("orders.csv");
    std::fs::write(
        &file,
        "order_id,customer_id,total,ordered_at\n\
         o-1,c-1,42.50,2024-03-01T10:00:00Z\n\
         o-2,c-2,19.99,2024-03-02T11:30:00Z\n",
    )
    .unwrap();
    let orders_args = [
        "--type",
        "track",
        "--map",
        "customer_id=userId",
        "--map",
        "ordered_at=timestamp",
        "--numeric",
        "total",
    ];
    // Without --event every row is refused: a track call needs an event name.
    let out = import(&server, &file, &orders_args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(line_errors(&out, &file).len(), 2, "{}", stderr(&out));

    let mut args = orders_args.to_vec();
    args.extend(["--event", "Order Completed"]);
    let out = import(&server, &file, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = server.all_events("type=track");
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["event"], "Order Completed", "{e}");
    }
    let c1 = by_user(&events, "c-1");
    assert_eq!(c1[0]["properties"]["total"], 42.5);
    assert_eq!(c1[0]["properties"]["order_id"], "o-1");

    // A file that has an event column keeps its own names; --event fills the empty cells.
    let mixed = server.dir.path().join("mixed.csv");
    std::fs::write(&mixed, "userId,event,total\nc-3,Order Refunded,5\nc-4,,7\n").unwrap();
    let out = import(
        &server,
        &mixed,
        &["--type", "track", "--event", "Order Completed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = server.all_events("type=track");
    assert_eq!(by_user(&events, "c-3")[0]["event"], "Order Refunded");
    assert_eq!(by_user(&events, "c-4")[0]["event"], "Order Completed");

    // NDJSON lines carry their own names: --event is refused rather than ignored.
    let nd = server.dir.path().join("e.ndjson");
    std::fs::write(
        &nd,
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\"}\n",
    )
    .unwrap();
    let out = import(&server, &nd, &["--event", "X"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("CSV files only"), "{}", stderr(&out));
}
