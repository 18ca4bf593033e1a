//! A destination's definition as users write it (JSON through the API or the CLI), and its
//! check: every error names the field at fault by its path (`kind.url`,
//! `deliver.events.condition`), so the API can answer `400 invalid_field` with it.

use crate::payload::{BatchLimits, Template};
use crate::retry::RetryPolicy;
use crate::selection::{Matcher, Selection};
use rapport_core::consent::ConsentState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest destination name, bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// A destination as defined by its user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationSpec {
    /// Unique among destinations.
    pub name: String,
    /// Where and how messages are sent.
    pub kind: Kind,
    /// Which messages are sent.
    #[serde(default)]
    pub deliver: Selection,
    /// Retries, rate, ordering.
    #[serde(default)]
    pub delivery: DeliveryOptions,
    /// The consent purposes a person must have granted for any message about them to be
    /// sent here; absent: no purpose is asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentRule>,
    /// When a person is deleted, erase their copy here too: a webhook is sent a deletion
    /// request (body [`crate::payload::deletion_request_body`], signed like messages); a
    /// warehouse has their rows deleted from every table of its schema. Not for forwards
    /// (a tracking API has no deletion call).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_deletions: bool,
}

/// The consent a destination needs: every purpose of `purposes`, decided as the profile's
/// current consent says (`rapport_core::consent`) when the message is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentRule {
    /// Purpose names as the consent object writes them (`marketing`, `Advertising`).
    pub purposes: Vec<String>,
    /// A person who has decided nothing on a purpose: `skip` (the default: fail closed,
    /// as opt-in regimes such as the GDPR ask) or `deliver` (only a denial stops a
    /// message, as opt-out regimes allow).
    #[serde(default)]
    pub when_undecided: WhenUndecided,
}

/// What an undecided purpose means for a destination's [`ConsentRule`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WhenUndecided {
    #[default]
    Skip,
    Deliver,
}

impl ConsentRule {
    /// `None` when a message about a person with `consent` may go out; else the first
    /// purpose that stops it. A message of no known person (`None`) has no consent given:
    /// it is stopped by the first purpose unless undecided purposes deliver.
    pub fn blocks<'a>(&'a self, consent: Option<&ConsentState>) -> Option<&'a str> {
        self.purposes
            .iter()
            .find(|p| match consent.and_then(|c| c.purposes.get(p.as_str())) {
                Some(decision) => !decision.granted,
                None => self.when_undecided == WhenUndecided::Skip,
            })
            .map(String::as_str)
    }
}

/// The kinds of destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    /// Any HTTP endpoint, each request signed per Standard Webhooks.
    Webhook {
        url: String,
        /// `POST` (default), `PUT` or `PATCH`.
        #[serde(default = "default_method")]
        method: String,
        /// Extra request headers (an `Authorization` for the receiver, say).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// `whsec_…`; generated when the destination is created without one.
        #[serde(default)]
        secret: Option<String>,
        /// A MiniJinja template for the body; absent: the message as JSON.
        #[serde(default)]
        template: Option<String>,
        /// The rendered body's `Content-Type` (default `application/json`, which requires
        /// the rendered body to be JSON).
        #[serde(default = "default_content_type")]
        content_type: String,
        /// Send up to this many messages per request, as a JSON array; absent: one each.
        #[serde(default)]
        batch: Option<BatchLimits>,
        /// Seconds to wait for an answer (1 to 120; default 10).
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
    /// Another tracking API that speaks Segment's HTTP API (another Rapport, for a
    /// migration or a fan-out): events go to `{url}/v1/batch` with the write key.
    Forward {
        /// The base URL, such as `https://rapport.example.com`.
        url: String,
        write_key: String,
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
    /// A PostgreSQL database in Segment's warehouse layout (`tracks`, `identifies`,
    /// `pages`, a table per event name, `users`, segment memberships).
    Warehouse {
        database_url: String,
        /// The schema the tables are made in (default `rapport`).
        #[serde(default = "default_schema")]
        schema: String,
        /// Seconds allowed to connect and for each statement (1 to 120; default 10).
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
}

fn default_method() -> String {
    "POST".into()
}
fn default_content_type() -> String {
    "application/json".into()
}
fn default_timeout() -> u32 {
    10
}
fn default_schema() -> String {
    "rapport".into()
}

/// How delivery behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryOptions {
    /// Requests per second at most (0: unlimited).
    pub rate_limit_per_second: u32,
    /// When set, a failing message holds back that user's later messages to this
    /// destination until it is delivered or dead-lettered; other users go on.
    pub per_user_ordering: bool,
    pub retry: RetryPolicy,
    /// Pause the destination after this many consecutive failed attempts (0: never),
    /// raising an alert; a probe resumes it.
    pub pause_after_failures: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            rate_limit_per_second: 0,
            per_user_ordering: false,
            retry: RetryPolicy::default(),
            pause_after_failures: 100,
        }
    }
}

/// Why a definition cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The path of the field at fault.
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A definition, checked: what a delivery worker runs with.
#[derive(Debug)]
pub struct Checked {
    pub matcher: Matcher,
    pub template: Option<Template>,
}

fn check_http_url(field: &str, raw: &str) -> Result<url::Url, SpecError> {
    let u = url::Url::parse(raw).map_err(|e| err(field, format!("not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(err(field, "must be an http:// or https:// URL with a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(err(
            field,
            "must not hold credentials; send them as a header instead",
        ));
    }
    Ok(u)
}

fn check_timeout(field: &str, secs: u32) -> Result<(), SpecError> {
    if (1..=120).contains(&secs) {
        Ok(())
    } else {
        Err(err(field, "must be from 1 to 120 seconds"))
    }
}

/// Header names a definition may not set: Rapport sets them on every request.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    "webhook-id",
    "webhook-signature",
    "webhook-timestamp",
];

impl DestinationSpec {
    /// Checks every part of the definition.
    pub fn check(&self) -> Result<Checked, SpecError> {
        let name = self.name.trim();
        if name.is_empty() || self.name.len() > MAX_NAME_BYTES || self.name.contains('\0') {
            return Err(err(
                "name",
                format!("must be 1 to {MAX_NAME_BYTES} bytes, without NUL"),
            ));
        }
        let mut template = None;
        match &self.kind {
            Kind::Webhook {
                url,
                method,
                headers,
                secret,
                template: source,
                content_type,
                batch,
                timeout_secs,
            } => {
                check_http_url("kind.url", url)?;
                if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                    return Err(err("kind.method", "must be POST, PUT or PATCH"));
                }
                for (k, v) in headers {
                    let field = format!("kind.headers.{k}");
                    let valid_name = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !valid_name {
                        return Err(err(&field, "not a valid header name"));
                    }
                    if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                        return Err(err(&field, "is set by Rapport on every request"));
                    }
                    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                        return Err(err(&field, "a header value cannot hold CR, LF or NUL"));
                    }
                }
                if let Some(s) = secret {
                    crate::signing::check_secret(s)
                        .map_err(|e| err("kind.secret", e.to_string()))?;
                }
                let json = content_type.eq_ignore_ascii_case("application/json")
                    || content_type
                        .to_ascii_lowercase()
                        .starts_with("application/json;");
                if content_type.bytes().any(|b| b.is_ascii_control()) || content_type.is_empty() {
                    return Err(err("kind.content_type", "not a media type"));
                }
                if let Some(src) = source {
                    template = Some(Template::compile(src, json).map_err(|e| {
                        let at = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                        err("kind.template", format!("{}{at}", e.message))
                    })?);
                }
                if let Some(b) = batch {
                    if !(1..=1000).contains(&b.max_events) {
                        return Err(err("kind.batch.max_events", "must be from 1 to 1000"));
                    }
                    if !(1024..=5 * 1024 * 1024).contains(&b.max_bytes) {
                        return Err(err(
                            "kind.batch.max_bytes",
                            "must be from 1024 to 5242880 bytes",
                        ));
                    }
                    if !json {
                        return Err(err(
                            "kind.batch",
                            "batches are JSON arrays: content_type must be application/json",
                        ));
                    }
                }
                check_timeout("kind.timeout_secs", *timeout_secs)?;
            }
            Kind::Forward {
                url,
                write_key,
                timeout_secs,
            } => {
                check_http_url("kind.url", url)?;
                if write_key.is_empty() || write_key.len() > 256 {
                    return Err(err("kind.write_key", "must be 1 to 256 bytes"));
                }
                check_timeout("kind.timeout_secs", *timeout_secs)?;
            }
            Kind::Warehouse {
                database_url,
                schema,
                timeout_secs,
            } => {
                let u = url::Url::parse(database_url)
                    .map_err(|e| err("kind.database_url", format!("not a URL: {e}")))?;
                if !matches!(u.scheme(), "postgres" | "postgresql") {
                    return Err(err(
                        "kind.database_url",
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
                crate::warehouse::check_identifier(schema).map_err(|m| err("kind.schema", m))?;
                check_timeout("kind.timeout_secs", *timeout_secs)?;
            }
        }
        if self.forward_deletions && matches!(self.kind, Kind::Forward { .. }) {
            return Err(err(
                "forward_deletions",
                "a forward cannot pass deletions on: a tracking API has no deletion call",
            ));
        }
        if matches!(self.kind, Kind::Forward { .. })
            && (self.deliver.trait_changes
                || self.deliver.audience_changes.is_some()
                || self.deliver.alerts)
        {
            return Err(err(
                "deliver",
                "a forward sends events only: a tracking API has no trait, segment or alert messages",
            ));
        }
        let matcher = self.deliver.compile().map_err(|e| SpecError {
            field: format!("deliver.{}", e.field),
            message: e.message,
        })?;
        if let Some(rule) = &self.consent {
            if rule.purposes.is_empty() {
                return Err(err(
                    "consent.purposes",
                    "name at least one purpose, or leave `consent` out",
                ));
            }
            for (i, p) in rule.purposes.iter().enumerate() {
                let field = format!("consent.purposes[{i}]");
                rapport_core::consent::check_purpose(p, &field)
                    .map_err(|e| err(&field, e.to_string()))?;
            }
        }
        let r = &self.delivery.retry;
        if r.base_delay_ms == 0 || r.base_delay_ms > r.max_delay_ms {
            return Err(err(
                "delivery.retry.base_delay_ms",
                "must be at least 1 and at most max_delay_ms",
            ));
        }
        if r.give_up_after_ms < r.base_delay_ms {
            return Err(err(
                "delivery.retry.give_up_after_ms",
                "must be at least base_delay_ms",
            ));
        }
        Ok(Checked { matcher, template })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> DestinationSpec {
        serde_json::from_value(v).unwrap()
    }

    fn field(v: serde_json::Value) -> String {
        spec(v).check().unwrap_err().field
    }

    #[test]
    fn a_consent_rule_fails_closed_unless_told_otherwise() {
        use rapport_core::consent::Decision;
        let rule = |v| -> ConsentRule { serde_json::from_value(v).unwrap() };
        let closed = rule(json!({"purposes": ["marketing", "sms"]}));
        let open = rule(json!({"purposes": ["marketing"], "when_undecided": "deliver"}));
        let decided = |granted: bool| Decision {
            granted,
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            source: "s".into(),
            message_id: "m".into(),
        };
        let mut consent = ConsentState::default();
        assert_eq!(closed.blocks(None), Some("marketing"));
        assert_eq!(open.blocks(None), None);
        consent.purposes.insert("marketing".into(), decided(true));
        assert_eq!(closed.blocks(Some(&consent)), Some("sms"), "undecided sms");
        assert_eq!(open.blocks(Some(&consent)), None);
        consent.purposes.insert("sms".into(), decided(true));
        assert_eq!(closed.blocks(Some(&consent)), None);
        consent.purposes.insert("marketing".into(), decided(false));
        assert_eq!(closed.blocks(Some(&consent)), Some("marketing"));
        assert_eq!(
            open.blocks(Some(&consent)),
            Some("marketing"),
            "a denial stops it"
        );

        let hook = json!({"type": "webhook", "url": "https://example.com/h"});
        assert_eq!(
            field(json!({"name": "x", "kind": hook, "consent": {"purposes": []}})),
            "consent.purposes"
        );
        assert_eq!(
            field(json!({"name": "x", "kind": hook, "consent": {"purposes": ["ok", "bad\u{1}"]}})),
            "consent.purposes[1]"
        );
    }

    #[test]
    fn a_webhook_with_defaults_is_checked_and_filled() {
        let s = spec(
            json!({"name": "crm", "kind": {"type": "webhook", "url": "https://crm.example.com/hook"}}),
        );
        s.check().unwrap();
        let Kind::Webhook {
            method,
            timeout_secs,
            content_type,
            ..
        } = &s.kind
        else {
            panic!()
        };
        assert_eq!(
            (method.as_str(), *timeout_secs, content_type.as_str()),
            ("POST", 10, "application/json")
        );
        assert_eq!(s.delivery.retry.give_up_after_ms, 72 * 3_600_000);
    }

    #[test]
    fn errors_name_the_field() {
        let hook = |extra: serde_json::Value| {
            let mut kind = json!({"type": "webhook", "url": "https://x.example/h"});
            kind.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"name": "n", "kind": kind})
        };
        assert_eq!(field(hook(json!({"url": "ftp://x/"}))), "kind.url");
        assert_eq!(
            field(hook(json!({"url": "https://u:p@x.example/"}))),
            "kind.url"
        );
        assert_eq!(field(hook(json!({"method": "GET"}))), "kind.method");
        assert_eq!(
            field(hook(json!({"headers": {"Bad Name": "x"}}))),
            "kind.headers.Bad Name"
        );
        assert_eq!(
            field(hook(json!({"headers": {"webhook-id": "x"}}))),
            "kind.headers.webhook-id"
        );
        assert_eq!(
            field(hook(json!({"headers": {"X-A": "a\r\nb"}}))),
            "kind.headers.X-A"
        );
        assert_eq!(field(hook(json!({"secret": "hunter2"}))), "kind.secret");
        assert_eq!(
            field(hook(json!({"template": "{{ event "}))),
            "kind.template"
        );
        assert_eq!(
            field(hook(json!({"batch": {"max_events": 0}}))),
            "kind.batch.max_events"
        );
        assert_eq!(field(hook(json!({"timeout_secs": 0}))), "kind.timeout_secs");
        assert_eq!(
            field(
                json!({"name": "n", "kind": {"type": "webhook", "url": "https://x.example"},
                         "deliver": {"events": {"condition": "nonsense("}}})
            ),
            "deliver.events.condition"
        );
        assert_eq!(
            field(json!({"name": "", "kind": {"type": "webhook", "url": "https://x.example"}})),
            "name"
        );
        assert_eq!(
            field(
                json!({"name": "n", "kind": {"type": "forward", "url": "https://r.example", "write_key": "wk"},
                         "deliver": {"alerts": true}})
            ),
            "deliver"
        );
        assert_eq!(
            field(
                json!({"name": "n", "kind": {"type": "warehouse", "database_url": "mysql://db/x"}})
            ),
            "kind.database_url"
        );
        assert_eq!(
            field(
                json!({"name": "n", "kind": {"type": "warehouse", "database_url": "postgres://db/x", "schema": "a b"}})
            ),
            "kind.schema"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(
            serde_json::from_value::<DestinationSpec>(json!({
                "name": "n", "kind": {"type": "webhook", "url": "https://x.example", "urll": 1}
            }))
            .is_err()
        );
        assert!(
            serde_json::from_value::<DestinationSpec>(json!({
                "name": "n", "kind": {"type": "carrier-pigeon"}
            }))
            .is_err()
        );
    }
}
