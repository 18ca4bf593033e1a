//! The dashboard's Value page in a real browser (`tests/sdk/dashboard-value.mjs`): a shop
//! with purchases and survey answers, the empty page first, then the CLV, health and churn
//! fits started from the page and followed to their end, and figures the page shows checked
//! against the API's answers. axe-core runs on the page before and after.
//!
//! `SCREENSHOTS=<dir>` keeps `value-empty.png` and `value.png` (docs/dashboard.md).

mod common;

use common::shop::shop;
use common::{TestServer, browser_flows};
use serde_json::json;

#[test]
fn the_value_page_fits_from_the_browser_and_shows_the_apis_figures() {
    let s = TestServer::start_with(&["--refit-interval-hours", "0"]);
    let now = chrono::Utc::now().timestamp();
    for chunk in shop(now).chunks(400) {
        let (status, body) = s.post("/v1/batch", &json!({ "batch": chunk }).to_string());
        assert_eq!(status, 200, "{body}");
    }
    s.wait_processed();
    let report = browser_flows(
        "dashboard-value.mjs",
        &[&s.url(""), &s.admin_key],
        &[
            "sign in",
            "empty states say what to do",
            "fit CLV from the page",
            "fit health from the page",
            "fit churn from the page",
            "read figures",
        ],
        true,
    );

    // What the page showed is what the API answers.
    let (status, dist) = s.admin_get("/api/v1/reports/clv-distribution");
    assert_eq!(status, 200, "{dist}");
    let shown: u64 = report["figures"]["customers"]
        .as_str()
        .unwrap()
        .replace([',', '\u{a0}', ' '], "")
        .parse()
        .unwrap();
    assert_eq!(shown, dist["profiles"].as_u64().unwrap(), "{report:#}");
    let (_, nps) = s.admin_get("/api/v1/reports/nps");
    let shown: f64 = report["figures"]["nps"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, nps["overall"]["nps"].as_f64().unwrap(), "{report:#}");
    // Health succeeds on this shop; the churn fit ends one way or the other, shown.
    assert!(
        report["figures"]["health"]
            .as_str()
            .unwrap()
            .contains("succeeded"),
        "{report:#}"
    );
    assert!(
        report["figures"]["churn"]
            .as_str()
            .unwrap()
            .contains("churn fit"),
        "{report:#}"
    );
}
