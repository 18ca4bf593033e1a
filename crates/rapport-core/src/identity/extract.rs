//! Reading the identifiers out of one event.
//!
//! This is the only place that knows where identifiers live in a Segment message (top-level
//! ids, `traits`, `context.traits`, `properties`, `context.device`, `context.externalIds`),
//! so that the resolver works on a flat, normalised list and never on raw JSON.

use super::explain::{Refusal, RefusalReason};
use super::identifier::{Identifier, IdentifierKind, normalise};
use super::rules::IdentityRules;
use crate::event::{Event, EventType, RawObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An identifier found in an event, with the field it came from (`traits.email`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedIdentifier {
    pub identifier: Identifier,
    pub source: String,
}

/// Everything identity resolution needs from one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// Usable identifiers, normalised, without duplicates, in the order found.
    pub identifiers: Vec<ExtractedIdentifier>,
    /// Values found but refused: blocked placeholders and values that do not normalise.
    pub refused: Vec<Refusal>,
    /// `previousId` of an alias call, already checked against blocked values. Whether it
    /// is a user id or an anonymous id depends on the graph, so [`super::resolve`] decides.
    pub previous_id: Option<String>,
    /// `groupId` of a group call, if not blocked.
    pub group_id: Option<String>,
}

/// What resolution records about the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub message_id: String,
    /// The event's (skew-corrected) timestamp. Identity uses it, never the wall clock, as
    /// "now": first/last seen and limit windows, so a replay gives the same graph.
    pub timestamp: DateTime<Utc>,
}

impl EventMeta {
    pub fn of(event: &Event) -> EventMeta {
        EventMeta {
            message_id: event.message_id.clone(),
            timestamp: event.timestamp,
        }
    }
}

/// Reads a raw JSON object as a map; `None` if absent or not an object.
pub fn object_map(raw: Option<&RawObject>) -> Option<Map<String, Value>> {
    raw.and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok())
}

fn sub_object<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    map.get(key).and_then(Value::as_object)
}

/// A scalar JSON value as an identifier string: strings as they are, numbers in decimal.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

struct Collector<'r> {
    rules: &'r IdentityRules,
    out: Extracted,
}

impl Collector<'_> {
    fn push(&mut self, kind: IdentifierKind, raw: &str, source: &str) {
        let refuse = |reason| Refusal {
            identifier: Identifier::new(kind.clone(), raw),
            source: source.to_owned(),
            reason,
        };
        if self.rules.is_blocked(raw) {
            self.out.refused.push(refuse(RefusalReason::BlockedValue));
            return;
        }
        match normalise(&kind, raw, self.rules.default_country_code.as_deref()) {
            Err(e) => self.out.refused.push(refuse(RefusalReason::InvalidFormat {
                detail: e.to_string(),
            })),
            Ok(value) if self.rules.is_blocked(&value) => {
                self.out.refused.push(refuse(RefusalReason::BlockedValue))
            }
            Ok(value) => {
                let identifier = Identifier::new(kind, value);
                if !self
                    .out
                    .identifiers
                    .iter()
                    .any(|x| x.identifier == identifier)
                {
                    self.out.identifiers.push(ExtractedIdentifier {
                        identifier,
                        source: source.to_owned(),
                    });
                }
            }
        }
    }

    fn push_value(&mut self, kind: IdentifierKind, v: Option<&Value>, source: &str) {
        match v {
            None | Some(Value::Null) => {}
            Some(v) => match scalar(v) {
                Some(s) => self.push(kind, &s, source),
                None => self.out.refused.push(Refusal {
                    identifier: Identifier::new(kind, v.to_string()),
                    source: source.to_owned(),
                    reason: RefusalReason::InvalidFormat {
                        detail: "not a string or a number".into(),
                    },
                }),
            },
        }
    }
}

/// Extracts the identifiers of `event` under `rules`.
///
/// Sources, in this order: `userId`, `anonymousId`; e-mail from `traits.email`,
/// `context.traits.email` and `properties.email`; phone from `traits.phone` and
/// `context.traits.phone`; `context.device.id`; `context.device.advertisingId` (skipped
/// when `context.device.adTrackingEnabled` is `false`); then `context.externalIds[]` in
/// order. In a group call `traits` describe the account, so only `context.traits` is read
/// for the member. `externalIds` entries whose `collection` is not `users` are skipped.
pub fn extract(event: &Event, rules: &IdentityRules) -> Extracted {
    let mut c = Collector {
        rules,
        out: Extracted::default(),
    };
    if let Some(u) = &event.user_id {
        c.push(IdentifierKind::UserId, u, "userId");
    }
    if let Some(a) = &event.anonymous_id {
        c.push(IdentifierKind::AnonymousId, a, "anonymousId");
    }
    let traits = match event.kind {
        EventType::Group => None,
        _ => object_map(event.traits.as_ref()),
    };
    let context = object_map(event.context.as_ref()).unwrap_or_default();
    let context_traits = sub_object(&context, "traits");
    let properties = match event.kind {
        EventType::Track | EventType::Page | EventType::Screen => {
            object_map(event.properties.as_ref())
        }
        _ => None,
    };
    if let Some(t) = &traits {
        c.push_value(IdentifierKind::Email, t.get("email"), "traits.email");
    }
    if let Some(t) = context_traits {
        c.push_value(
            IdentifierKind::Email,
            t.get("email"),
            "context.traits.email",
        );
    }
    if let Some(p) = &properties {
        c.push_value(IdentifierKind::Email, p.get("email"), "properties.email");
    }
    if let Some(t) = &traits {
        c.push_value(IdentifierKind::Phone, t.get("phone"), "traits.phone");
    }
    if let Some(t) = context_traits {
        c.push_value(
            IdentifierKind::Phone,
            t.get("phone"),
            "context.traits.phone",
        );
    }
    if let Some(device) = sub_object(&context, "device") {
        c.push_value(
            IdentifierKind::DeviceId,
            device.get("id"),
            "context.device.id",
        );
        if device.get("adTrackingEnabled") != Some(&Value::Bool(false)) {
            c.push_value(
                IdentifierKind::AdvertisingId,
                device.get("advertisingId"),
                "context.device.advertisingId",
            );
        }
    }
    if let Some(Value::Array(items)) = context.get("externalIds") {
        for (i, item) in items.iter().enumerate() {
            let source = format!("context.externalIds[{i}]");
            let Some(item) = item.as_object() else {
                continue;
            };
            let collection = item.get("collection").and_then(Value::as_str);
            if collection.is_some_and(|c| !c.eq_ignore_ascii_case("users")) {
                continue;
            }
            let type_name = item.get("type").and_then(Value::as_str).unwrap_or("");
            match IdentifierKind::parse(type_name) {
                Some(kind) => c.push_value(kind, item.get("id"), &source),
                None => c.out.refused.push(Refusal {
                    identifier: Identifier::new(
                        IdentifierKind::Custom("unknown".into()),
                        item.get("id").and_then(scalar).unwrap_or_default(),
                    ),
                    source: format!("{source}.type"),
                    reason: RefusalReason::InvalidFormat {
                        detail: format!("invalid identifier type {type_name:?}"),
                    },
                }),
            }
        }
    }
    if event.kind == EventType::Alias
        && let Some(prev) = &event.previous_id
    {
        if rules.is_blocked(prev) {
            c.out.refused.push(Refusal {
                identifier: Identifier::new(IdentifierKind::UserId, prev.clone()),
                source: "previousId".into(),
                reason: RefusalReason::BlockedValue,
            });
        } else {
            c.out.previous_id = Some(prev.trim().to_owned());
        }
    }
    if event.kind == EventType::Group
        && let Some(g) = &event.group_id
    {
        if rules.is_blocked(g) {
            c.out.refused.push(Refusal {
                identifier: Identifier::new(IdentifierKind::Custom("group_id".into()), g.clone()),
                source: "groupId".into(),
                reason: RefusalReason::BlockedValue,
            });
        } else {
            c.out.group_id = Some(g.trim().to_owned());
        }
    }
    c.out
}

/// The trait updates an event carries: for the person, `traits` of an identify call or
/// `context.traits` of any other call; for the account, `traits` of a group call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraitUpdates {
    pub profile: Map<String, Value>,
    pub account: Option<(String, Map<String, Value>)>,
}

pub fn trait_updates(event: &Event) -> TraitUpdates {
    let context = object_map(event.context.as_ref()).unwrap_or_default();
    let context_traits = sub_object(&context, "traits").cloned().unwrap_or_default();
    match event.kind {
        EventType::Identify => {
            let mut profile = context_traits;
            for (k, v) in object_map(event.traits.as_ref()).unwrap_or_default() {
                profile.insert(k, v);
            }
            TraitUpdates {
                profile,
                account: None,
            }
        }
        EventType::Group => TraitUpdates {
            profile: context_traits,
            account: event
                .group_id
                .clone()
                .map(|g| (g, object_map(event.traits.as_ref()).unwrap_or_default())),
        },
        _ => TraitUpdates {
            profile: context_traits,
            account: None,
        },
    }
}
