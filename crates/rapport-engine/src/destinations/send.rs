//! Building a destination's HTTP request for a run of messages, and sending it: the one
//! place that speaks HTTP to receivers (webhooks and forwards).

use rapport_destinations::payload::{Template, batch_body};
use rapport_destinations::retry::{Attempt, parse_retry_after};
use rapport_destinations::{Kind, signing};
use serde_json::Value;
use std::time::Duration;

/// How much of a request's or an answer's body a dead letter keeps.
pub const SNIPPET_BYTES: usize = 2048;

/// One HTTP request to a receiver.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub basic_auth: Option<String>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// What sending came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub attempt: Attempt,
    /// The start of the answer's body.
    pub response_body: String,
    /// For people: `503 Service Unavailable`, `connection refused`, …
    pub error: String,
}

/// Cuts text to at most `SNIPPET_BYTES`, on a character boundary.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SNIPPET_BYTES)]);
    text.into_owned()
}

/// The request delivering `messages` (each a message body as JSON, with the idempotency
/// key's basis: `"{offset}"`) to a webhook or a forward at `now_s` (Unix seconds). `Err`
/// when the template cannot render one of them: a dead letter, since rendering again gives
/// the same.
pub fn build(
    destination_id: &str,
    kind: &Kind,
    template: Option<&Template>,
    messages: &[(String, Value)],
    now_s: i64,
) -> Result<Request, String> {
    match kind {
        Kind::Webhook {
            url,
            method,
            headers,
            secret,
            content_type,
            batch,
            timeout_secs,
            ..
        } => {
            let mut bodies = Vec::with_capacity(messages.len());
            for (_, m) in messages {
                bodies.push(match template {
                    Some(t) => t.render(m).map_err(|e| e.to_string())?,
                    None => serde_json::to_vec(m).expect("JSON serialises"),
                });
            }
            let body = match (batch, bodies.len()) {
                (None, 1) => bodies.pop().expect("one body"),
                _ => batch_body(&bodies),
            };
            let basis = match messages {
                [(one, _)] => one.clone(),
                [(first, _), .., (last, _)] => format!("{first}-{last}"),
                [] => String::new(),
            };
            let id = signing::message_id(destination_id, &basis);
            let mut all: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            all.push(("content-type".into(), content_type.clone()));
            if let Some(secret) = secret {
                let signed = signing::sign(secret, &id, now_s, &body).map_err(|e| e.to_string())?;
                all.extend(signed.pairs().map(|(k, v)| (k.to_owned(), v)));
            } else {
                all.push(("webhook-id".into(), id));
            }
            Ok(Request {
                method: method.clone(),
                url: url.clone(),
                headers: all,
                basic_auth: None,
                body,
                timeout: Duration::from_secs(u64::from(*timeout_secs)),
            })
        }
        Kind::Forward {
            url,
            write_key,
            timeout_secs,
        } => {
            // The events as stored; their messageId lets the receiving API de-duplicate a
            // repeated request.
            let batch: Vec<Value> = messages
                .iter()
                .map(|(_, m)| {
                    let mut m = m.clone();
                    if let Value::Object(o) = &mut m {
                        o.remove("rapport");
                    }
                    m
                })
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({ "batch": batch }))
                .expect("JSON serialises");
            Ok(Request {
                method: "POST".into(),
                url: format!("{}/v1/batch", url.trim_end_matches('/')),
                headers: vec![("content-type".into(), "application/json".into())],
                basic_auth: Some(write_key.clone()),
                body,
                timeout: Duration::from_secs(u64::from(*timeout_secs)),
            })
        }
        Kind::Warehouse { .. } => Err("warehouse destinations are not delivered over HTTP".into()),
    }
}

/// Sends `request`, never following more than 5 redirects.
pub fn send(
    client: &reqwest::blocking::Client,
    request: &Request,
    now: chrono::DateTime<chrono::Utc>,
) -> Sent {
    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut builder = client
        .request(method, &request.url)
        .timeout(request.timeout)
        .body(request.body.clone());
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    if let Some(user) = &request.basic_auth {
        builder = builder.basic_auth(user, Some(""));
    }
    match builder.send() {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let reason = response
                .status()
                .canonical_reason()
                .unwrap_or("")
                .to_owned();
            let body = response.bytes().map(|b| snippet(&b)).unwrap_or_default();
            Sent {
                attempt: Attempt::Answered {
                    status,
                    retry_after,
                },
                response_body: body,
                error: format!("{status} {reason}").trim().to_owned(),
            }
        }
        Err(e) if e.is_timeout() => Sent {
            attempt: Attempt::TimedOut,
            response_body: String::new(),
            error: format!("no answer within {} s", request.timeout.as_secs()),
        },
        Err(e) => Sent {
            attempt: Attempt::ConnectionFailed,
            response_body: String::new(),
            error: format!("could not reach the receiver: {e}"),
        },
    }
}

/// The HTTP client of a delivery worker: its own connection pool, so that one receiver's
/// slowness never occupies another's connections.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("Rapport/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with default TLS settings builds")
}
