//! The bodies destinations receive: each message as JSON (the event as stored, with the
//! profile it resolved to), optionally rendered through the destination's template, and
//! batched into one request of up to N messages or bytes.
//!
//! Templates are MiniJinja (Jinja2 syntax) with *fuel*: every template instruction burns a
//! unit, and a render that runs out fails rather than hangs, so a marketer's template can
//! never stall delivery. Rendering is deterministic, so a failed render is a dead letter,
//! not a retry.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The most template source accepted, bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// The work one render may do, in MiniJinja fuel units (about one per instruction); a
/// template that loops over a large array runs out.
pub const TEMPLATE_FUEL: u64 = 100_000;
/// The largest rendered body, bytes.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The profile a message is about, as destinations receive it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProfileRef {
    /// `p_…`; `None` when the event was not resolved yet (a destination fed from ingest).
    pub profile_id: Option<String>,
    /// The profile's identifiers by type: `{"email": ["ann@example.com"], "user_id": ["42"]}`.
    pub identifiers: Map<String, Value>,
}

/// An event's body: the event as stored, with `rapport: {profile_id, identifiers}` added
/// at the top level (which Segment-compatible receivers keep as an unknown field).
pub fn event_body(stored: &Value, profile: &ProfileRef) -> Value {
    let mut body = stored.clone();
    if let Value::Object(o) = &mut body {
        o.insert("rapport".into(), json!(profile));
    }
    body
}

/// A trait change's body.
pub fn trait_change_body(
    profile: &ProfileRef,
    name: &str,
    value: &Value,
    previous: &Value,
    at: &str,
) -> Value {
    json!({
        "type": "trait_changed",
        "trait": name,
        "value": value,
        "previous": previous,
        "timestamp": at,
        "rapport": profile,
    })
}

/// A segment entry's or exit's body.
pub fn audience_change_body(profile: &ProfileRef, segment: &str, entered: bool, at: &str) -> Value {
    json!({
        "type": if entered { "segment_entered" } else { "segment_exited" },
        "segment": segment,
        "timestamp": at,
        "rapport": profile,
    })
}

/// A value-model alert's body: the alert as the alerts API shows it (`kind`, `score`,
/// `band`, `reason`, …) under `alert`, its time as `timestamp`.
pub fn alert_body(profile: &ProfileRef, alert: &Value) -> Value {
    json!({
        "type": "alert",
        "kind": alert.get("kind"),
        "timestamp": alert.get("at"),
        "alert": alert,
        "rapport": profile,
    })
}

/// A journey's message, as a `send` step hands it to its destination.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyMessage<'a> {
    /// The journey's name.
    pub journey: &'a str,
    pub version: u32,
    /// The `send` node's id.
    pub step: &'a str,
    /// The customer's instance of the journey (`"7"`).
    pub instance: &'a str,
    /// `journey:version:instance:step`: the same for every delivery of this step, so a
    /// receiver that de-duplicates on it sends once even if the step is taken again
    /// (a replay of the log).
    pub idempotency_key: &'a str,
    /// The channel tag frequency caps counted it under.
    pub tag: &'a str,
    pub transactional: bool,
    /// When the journey took the step (RFC 3339).
    pub timestamp: &'a str,
    /// What put the customer in: `event`, `message_id`, `properties`.
    pub entry: &'a Value,
    /// The profile's traits when the step was taken.
    pub traits: &'a Map<String, Value>,
}

/// A journey message's body: the message with `type: "journey_message"` and the profile
/// under `rapport` (like every other body).
pub fn journey_message_body(profile: &ProfileRef, message: &JourneyMessage<'_>) -> Value {
    let mut body = json!(message);
    if let Value::Object(o) = &mut body {
        o.insert("type".into(), json!("journey_message"));
        o.insert("rapport".into(), json!(profile));
    }
    body
}

/// The body of a deletion request forwarded to a webhook (`forward_deletions`): which
/// person to erase, by every identifier Rapport knew them by.
///
/// `{"type": "deletion_request", "request_id": "del_…", "identifiers": [{"type":
/// "user_id", "value": "42"}, …], "userId": "42", "requested_at": "…"}`; `userId` is
/// the first user id, for receivers that key people by it (as Segment's user deletion
/// does), absent when there is none.
pub fn deletion_request_body(
    request_id: &str,
    identifiers: &[(String, String)],
    requested_at: &str,
) -> Value {
    let mut body = json!({
        "type": "deletion_request",
        "request_id": request_id,
        "identifiers": identifiers
            .iter()
            .map(|(kind, value)| json!({"type": kind, "value": value}))
            .collect::<Vec<_>>(),
        "requested_at": requested_at,
    });
    if let Some((_, user)) = identifiers.iter().find(|(k, _)| k == "user_id") {
        body["userId"] = json!(user);
    }
    body
}

/// Why a template cannot be used or a message cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// The template's line at fault, 1-based, when known.
    pub line: Option<usize>,
}

/// A destination's compiled body template.
pub struct Template {
    env: minijinja::Environment<'static>,
    json: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("json", &self.json)
            .finish()
    }
}

fn template_error(e: minijinja::Error) -> TemplateError {
    let message = match e.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            "the template does too much work for one message (out of fuel)".to_owned()
        }
        _ => e.detail().map_or_else(|| e.to_string(), str::to_owned),
    };
    TemplateError {
        message,
        line: e.line(),
    }
}

impl Template {
    /// Compiles `source`. With `json`, every rendered body must be JSON (the request's
    /// `Content-Type` says so), else the message is a dead letter naming the error.
    pub fn compile(source: &str, json: bool) -> Result<Template, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError {
                message: format!("the template is over {MAX_TEMPLATE_BYTES} bytes"),
                line: None,
            });
        }
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // JSON bodies: `{{ value }}` writes JSON, so strings are quoted and escaped.
        if json {
            env.set_formatter(|out, _state, value| {
                let text = serde_json::to_string(value).map_err(|e| {
                    minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
                })?;
                out.write_str(&text).map_err(minijinja::Error::from)
            });
        }
        env.add_template_owned("body", source.to_owned())
            .map_err(template_error)?;
        Ok(Template { env, json })
    }

    /// The body for `message` (the JSON a destination would receive without a template,
    /// available in the template as `message`, and its top-level fields by name).
    pub fn render(&self, message: &Value) -> Result<Vec<u8>, TemplateError> {
        let mut context = match message {
            Value::Object(o) => o.clone(),
            _ => Map::new(),
        };
        context.insert("message".into(), message.clone());
        self.render_context(&context)
    }

    /// The body rendered over `context`, whose fields are the template's variables (a
    /// journey's `send` step gives `profile`, `entry`, `journey` and `message`).
    pub fn render_context(&self, context: &Map<String, Value>) -> Result<Vec<u8>, TemplateError> {
        let template = self.env.get_template("body").map_err(template_error)?;
        let out = template.render(context).map_err(template_error)?;
        if out.len() > MAX_RENDERED_BYTES {
            return Err(TemplateError {
                message: format!("the rendered body is over {MAX_RENDERED_BYTES} bytes"),
                line: None,
            });
        }
        if self.json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&out)
        {
            return Err(TemplateError {
                message: format!("the rendered body is not JSON: {e}"),
                line: None,
            });
        }
        Ok(out.into_bytes())
    }
}

/// Limits of one batched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchLimits {
    /// At most this many messages (1 to 1,000).
    pub max_events: u32,
    /// At most this many body bytes (1 KiB to 5 MiB); a single larger message is sent
    /// alone.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: u32,
}

fn default_batch_bytes() -> u32 {
    512 * 1024
}

impl BatchLimits {
    /// How many of the leading `sizes` (bytes of each body) go into the next request:
    /// at least one, then as many as stay within both limits (a JSON array adds a byte
    /// per message and two for the brackets).
    pub fn take(&self, sizes: &[usize]) -> usize {
        let mut total = 2usize;
        let mut n = 0usize;
        for &size in sizes {
            if n == self.max_events as usize
                || (n > 0 && total + size + 1 > self.max_bytes as usize)
            {
                break;
            }
            total += size + 1;
            n += 1;
        }
        n
    }
}

/// A batched request's body: the messages' bodies as one JSON array.
pub fn batch_body(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message() -> Value {
        let stored = json!({"type": "track", "event": "Order Completed", "userId": "u1",
                            "properties": {"revenue": 42.5, "items": ["a", "b"]}});
        let profile = ProfileRef {
            profile_id: Some("p_1".into()),
            identifiers: serde_json::from_value(json!({"email": ["ann@example.com"]})).unwrap(),
        };
        event_body(&stored, &profile)
    }

    #[test]
    fn the_event_travels_as_stored_with_its_profile() {
        let m = message();
        assert_eq!(m["event"], "Order Completed");
        assert_eq!(m["rapport"]["profile_id"], "p_1");
        assert_eq!(m["rapport"]["identifiers"]["email"][0], "ann@example.com");
    }

    #[test]
    fn a_json_template_quotes_what_it_writes() {
        let t = Template::compile(
            r#"{"text": {{ event }}, "who": {{ rapport.identifiers.email[0] }}, "cents": {{ (properties.revenue * 100) | int }}, "missing": {{ properties.nope }}}"#,
            true,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&t.render(&message()).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"text": "Order Completed", "who": "ann@example.com", "cents": 4250, "missing": null})
        );
    }

    #[test]
    fn a_template_that_loops_forever_runs_out_of_fuel() {
        let t = Template::compile(
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            false,
        )
        .unwrap();
        let e = t.render(&message()).unwrap_err();
        assert!(e.message.contains("out of fuel"), "{e}");
    }

    #[test]
    fn template_errors_say_where() {
        let e = Template::compile("{\n  \"a\": {{ event ", true).unwrap_err();
        assert_eq!(e.line, Some(2));
        let t = Template::compile("not json {{ event }}", true).unwrap();
        assert!(
            t.render(&message())
                .unwrap_err()
                .message
                .contains("not JSON")
        );
        let plain = Template::compile("{{ event }} for {{ message.userId }}", false).unwrap();
        assert_eq!(plain.render(&message()).unwrap(), b"Order Completed for u1");
    }

    #[test]
    fn batches_respect_both_limits_and_always_move() {
        let l = BatchLimits {
            max_events: 3,
            max_bytes: 20,
        };
        assert_eq!(l.take(&[5, 5, 5, 5]), 3);
        assert_eq!(l.take(&[8, 8, 8]), 2);
        assert_eq!(l.take(&[100, 1]), 1);
        assert_eq!(l.take(&[]), 0);
        assert_eq!(batch_body(&[b"{}".to_vec(), b"1".to_vec()]), b"[{},1]");
    }

    proptest! {
        #[test]
        fn a_batch_body_is_the_json_array_of_its_messages(
            values in proptest::collection::vec(any::<i64>(), 0..20),
            max_events in 1u32..10,
            max_bytes in 1u32..200,
        ) {
            let bodies: Vec<Vec<u8>> = values.iter().map(|v| v.to_string().into_bytes()).collect();
            let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
            let l = BatchLimits { max_events, max_bytes };
            let n = l.take(&sizes);
            prop_assert!(n <= max_events as usize);
            prop_assert!(bodies.is_empty() || n >= 1);
            let body = batch_body(&bodies[..n]);
            prop_assert!(n <= 1 || body.len() <= max_bytes as usize);
            let back: Vec<i64> = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(&back[..], &values[..n]);
        }
    }
}
