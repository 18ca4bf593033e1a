//! Schemathesis, a property-based API fuzzer (PyPI), generates requests from the OpenAPI
//! document that `GET /openapi.json` serves — valid ones, and ones that break the schema —
//! and sends them to a live server with an admin key and a write key. No answer may be a
//! 5xx, and every answer must conform to the document: a documented status, content type,
//! headers and body schema.

mod common;

use common::TestServer;
use std::process::Command;

/// What "conforms to the document" means here: Schemathesis's response checks, plus no
/// server error.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn schemathesis(s: &TestServer, filter: &[&str]) -> std::process::Output {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let report = s.dir.path().join("schemathesis-report");
    let seed = std::env::var("RAPPORT_FUZZ_SEED").unwrap_or_else(|_| "20261202".into());
    let examples = std::env::var("RAPPORT_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    Command::new("schemathesis")
        // Its cache (`.schemathesis/`) goes to the test's directory, not the repository.
        .current_dir(s.dir.path())
        .args(["--config-file", config, "run"])
        .arg(s.url("/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .arg("--report-dir")
        .arg(&report)
        .args(["--no-color"])
        .args(filter)
        .env("RAPPORT_FUZZ_ADMIN_KEY", &s.admin_key)
        .env("RAPPORT_FUZZ_WRITE_KEY", &s.write_key)
        .output()
        .expect("install the API fuzzer first: python3 -m pip install schemathesis (scripts/test.sh does)")
}

fn assert_passed(out: &std::process::Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures ({what}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
}

#[test]
fn generated_requests_get_no_5xx_and_answers_that_conform_to_the_document() {
    let s = TestServer::start();
    // Revoking keys last: the fuzzer lists keys and would revoke the ones it uses.
    let out = schemathesis(&s, &["--exclude-operation-id", "revoke_key"]);
    assert_passed(&out, "every operation but revoke_key");
    let out = schemathesis(&s, &["--include-operation-id", "revoke_key"]);
    assert_passed(&out, "revoke_key");
}
