//! A webhook receiver the tests start on a loopback port: it records every request
//! (its `webhook-id`, its JSON body, the status it answered) and answers the status the
//! test sets.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Inbox {
    /// (webhook-id, body, status answered) of every request, in arrival order.
    pub got: Vec<(String, Value, u16)>,
    pub status: u16,
}

pub struct Receiver {
    pub url: String,
    pub inbox: Arc<Mutex<Inbox>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox {
            status: 204,
            ..Inbox::default()
        }));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State(inbox): State<Arc<Mutex<Inbox>>>,
                     h: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let mut inbox = inbox.lock().unwrap();
                        let id = h["webhook-id"].to_str().unwrap().to_owned();
                        let status = inbox.status;
                        inbox
                            .got
                            .push((id, serde_json::from_slice(&body).unwrap(), status));
                        (StatusCode::from_u16(status).unwrap(), "{\"ok\":false}")
                    },
                ),
            )
            .with_state(inbox.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            inbox,
            _runtime: runtime,
        }
    }

    pub fn answer(&self, status: u16) {
        self.inbox.lock().unwrap().status = status;
    }

    /// messageId → the webhook-ids it arrived with, for the messages accepted (a 2xx
    /// answered) at least once.
    pub fn delivered(&self) -> HashMap<String, Vec<String>> {
        let all = self.by_message();
        let inbox = self.inbox.lock().unwrap();
        all.into_iter()
            .filter(|(m, _)| {
                inbox
                    .got
                    .iter()
                    .any(|(_, b, s)| b["messageId"] == m.as_str() && (200..300).contains(s))
            })
            .collect()
    }

    /// The bodies of the requests answered with a 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        let inbox = self.inbox.lock().unwrap();
        inbox
            .got
            .iter()
            .filter(|(_, _, s)| (200..300).contains(s))
            .map(|(_, b, _)| b.clone())
            .collect()
    }

    /// messageId → the webhook-ids of every attempt.
    pub fn by_message(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (id, body, _) in &self.inbox.lock().unwrap().got {
            out.entry(body["messageId"].as_str().unwrap().to_owned())
                .or_default()
                .push(id.clone());
        }
        out
    }
}

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates a webhook destination named `name` posting to `receiver` that takes journey
/// messages only (no events).
pub fn webhook(s: &super::TestServer, name: &str, receiver: &Receiver) {
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/destinations",
        Some(serde_json::json!({"name": name,
            "kind": {"type": "webhook", "url": receiver.url, "timeout_secs": 2},
            "deliver": {"events": null}})),
    );
    assert_eq!(status, 201, "{body}");
}
