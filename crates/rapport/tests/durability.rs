//! An acknowledged event is never lost and never stored twice, even when the server is
//! killed with SIGKILL in the middle of sustained load.

mod common;

use common::TestServer;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends batches from several connections until the server dies; returns acknowledged ids.
fn load_until_killed(s: &mut TestServer, round: usize) -> HashSet<String> {
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.url("/v1/batch");
    let key = s.write_key.clone();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, url, key) = (acked.clone(), stop.clone(), url.clone(), key.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ids: Vec<String> = (0..50).map(|i| format!("r{round}-w{w}-b{n}-{i}")).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type":"track","userId":format!("user-{}", n % 7),"event":"Load","messageId":id,"properties":{"pad":"x".repeat(300)}}))
                        .collect();
                    match client
                        .post(&url)
                        .basic_auth(&key, Some(""))
                        .json(&json!({ "batch": batch }))
                        .send()
                    {
                        Ok(r) if r.status().is_success() => {
                            let body: Value = r.json().unwrap();
                            assert_eq!(body["accepted"], 50, "{body}");
                            acked.lock().unwrap().extend(ids);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

#[test]
fn sigkill_during_load_loses_no_acknowledged_event_and_duplicates_none() {
    let mut s = TestServer::start();
    let mut all_acked = HashSet::new();
    for round in 0..2 {
        let acked = load_until_killed(&mut s, round);
        assert!(
            acked.len() >= 1000,
            "round {round}: only {} events acknowledged",
            acked.len()
        );
        all_acked.extend(acked);
        s.spawn();
    }
    let stored = s.all_events("event=Load");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in &stored {
        *counts
            .entry(e["messageId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let missing: Vec<&String> = all_acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");

    // The de-duplication index survived the crashes: a retry of an acknowledged batch is
    // acknowledged but not stored again.
    let retry: Vec<Value> = all_acked
        .iter()
        .take(100)
        .map(|id| json!({"type":"track","userId":"user-0","event":"Load","messageId":id}))
        .collect();
    let (status, body) = s.post("/v1/batch", &json!({ "batch": retry }).to_string());
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["duplicates"], 100);
}
