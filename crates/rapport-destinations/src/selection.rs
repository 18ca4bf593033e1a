//! Which messages a destination receives: events (all, or of some types, names, or those
//! meeting a condition in the segment language's event-filter form, the one `count(…)`
//! takes: `event == "Order Completed" and properties.revenue > 100`), profile trait
//! changes, audience (segment) entries and exits, and value-model alerts — each kind chosen
//! per destination.

use chrono::{DateTime, Utc};
use rapport_core::audience::{EventFilter, EventLike};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of message a destination can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MessageKind {
    /// A stored event, as the events API shows it.
    Event,
    /// A profile's trait set, changed or removed.
    TraitChange,
    /// A profile entered or left a segment.
    AudienceChange,
    /// A value model's alert (a health band dropped, churn risk rose).
    Alert,
}

/// What a destination receives, as its definition states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Selection {
    /// Which events; absent (`null`): none.
    pub events: Option<EventSelection>,
    /// Trait changes of profiles.
    pub trait_changes: bool,
    /// Segment entries and exits; an empty list of `segments` means every segment.
    pub audience_changes: Option<AudienceSelection>,
    /// Value-model alerts.
    pub alerts: bool,
}

impl Default for Selection {
    /// Every event, nothing else: what a webhook or a forward is first made for.
    fn default() -> Self {
        Selection {
            events: Some(EventSelection::default()),
            trait_changes: false,
            audience_changes: None,
            alerts: false,
        }
    }
}

/// Which events: each list empty means "any"; all given parts must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventSelection {
    /// Event types (`track`, `identify`, `page`, `screen`, `group`, `alias`).
    pub types: Vec<String>,
    /// Track event names (for pages and screens: their names).
    pub names: Vec<String>,
    /// A condition on the event in the segment language's event-filter form.
    pub condition: Option<String>,
}

/// Which segments' entries and exits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AudienceSelection {
    pub segments: Vec<String>,
}

/// A selection, checked and ready to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    events: Option<(Vec<String>, Vec<String>, EventFilter)>,
    trait_changes: bool,
    audience_changes: Option<Vec<String>>,
    alerts: bool,
}

/// Why a selection cannot be used: `field` is its path inside the selection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SelectionError {
    pub field: String,
    pub message: String,
}

impl Selection {
    /// Checks the selection: known event types, a condition that parses as an event
    /// filter.
    pub fn compile(&self) -> Result<Matcher, SelectionError> {
        let events = match &self.events {
            None => None,
            Some(e) => {
                for (i, t) in e.types.iter().enumerate() {
                    if !rapport_core::audience::EVENT_TYPES.contains(&t.as_str()) {
                        return Err(SelectionError {
                            field: format!("events.types[{i}]"),
                            message: format!(
                                "`{t}` is not an event type; use one of {}",
                                rapport_core::audience::EVENT_TYPES.join(", ")
                            ),
                        });
                    }
                }
                let filter = match &e.condition {
                    None => EventFilter::All,
                    Some(text) => {
                        let bad = |message: String| SelectionError {
                            field: "events.condition".into(),
                            message,
                        };
                        let expr = rapport_core::audience::parse(text)
                            .map_err(|d| bad(d.message.clone()))?;
                        EventFilter::from_expr(&expr).map_err(|d| bad(d.message))?
                    }
                };
                Some((e.types.clone(), e.names.clone(), filter))
            }
        };
        Ok(Matcher {
            events,
            trait_changes: self.trait_changes,
            audience_changes: self.audience_changes.as_ref().map(|a| a.segments.clone()),
            alerts: self.alerts,
        })
    }
}

impl Matcher {
    /// Whether the destination receives any message of `kind` at all (a worker skips
    /// reading what no destination wants).
    pub fn wants_kind(&self, kind: MessageKind) -> bool {
        match kind {
            MessageKind::Event => self.events.is_some(),
            MessageKind::TraitChange => self.trait_changes,
            MessageKind::AudienceChange => self.audience_changes.is_some(),
            MessageKind::Alert => self.alerts,
        }
    }

    /// Whether the destination receives this event.
    pub fn wants_event(&self, event: &impl EventLike) -> bool {
        let Some((types, names, filter)) = &self.events else {
            return false;
        };
        (types.is_empty() || types.iter().any(|t| t == event.event_type()))
            && (names.is_empty()
                || event
                    .event_name()
                    .is_some_and(|n| names.iter().any(|x| x == n)))
            && filter.matches(event)
    }

    /// Whether the destination receives an entry into or exit from `segment`.
    pub fn wants_audience_change(&self, segment: &str) -> bool {
        self.audience_changes
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.iter().any(|x| x == segment))
    }
}

/// A stored event (the JSON the events API shows) seen as the filter sees events.
#[derive(Debug, Clone)]
pub struct StoredEvent<'a> {
    json: &'a Value,
    timestamp: DateTime<Utc>,
    name: Option<&'a str>,
}

static EMPTY: Value = Value::Null;

impl<'a> StoredEvent<'a> {
    /// `None` when `json` is not a stored event (no `type` or no readable `timestamp`).
    pub fn new(json: &'a Value) -> Option<StoredEvent<'a>> {
        json.get("type")?.as_str()?;
        let timestamp = rapport_core::event::parse_timestamp(json.get("timestamp")?.as_str()?)?;
        let name = match json["type"].as_str() {
            Some("track") => json.get("event").and_then(Value::as_str),
            Some("page") | Some("screen") => json.get("name").and_then(Value::as_str),
            _ => None,
        };
        Some(StoredEvent {
            json,
            timestamp,
            name,
        })
    }
}

impl EventLike for StoredEvent<'_> {
    fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }
    fn event_type(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
    fn event_name(&self) -> Option<&str> {
        self.name
    }
    fn properties(&self) -> &Value {
        self.json.get("properties").unwrap_or(&EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(revenue: f64) -> Value {
        json!({"type": "track", "event": "Order Completed", "timestamp": "2026-12-02T10:00:00.000Z",
               "properties": {"revenue": revenue}, "userId": "u1"})
    }

    #[test]
    fn every_event_by_default_and_nothing_else() {
        let m = Selection::default().compile().unwrap();
        let e = order(1.0);
        assert!(m.wants_event(&StoredEvent::new(&e).unwrap()));
        assert!(!m.wants_kind(MessageKind::TraitChange));
        assert!(!m.wants_audience_change("vip"));
    }

    #[test]
    fn types_names_and_a_condition_must_all_hold() {
        let s: Selection = serde_json::from_value(json!({
            "events": {"types": ["track"], "names": ["Order Completed"],
                       "condition": "properties.revenue > 100"},
            "audience_changes": {"segments": ["vip"]}
        }))
        .unwrap();
        let m = s.compile().unwrap();
        let (big, small) = (order(250.0), order(20.0));
        assert!(m.wants_event(&StoredEvent::new(&big).unwrap()));
        assert!(!m.wants_event(&StoredEvent::new(&small).unwrap()));
        let page = json!({"type": "page", "name": "Order Completed", "timestamp": "2026-12-02T10:00:00Z",
                          "properties": {"revenue": 1000}});
        assert!(!m.wants_event(&StoredEvent::new(&page).unwrap()));
        assert!(m.wants_audience_change("vip"));
        assert!(!m.wants_audience_change("churned"));
    }

    #[test]
    fn errors_name_the_field() {
        let s: Selection =
            serde_json::from_value(json!({"events": {"types": ["track", "click"]}})).unwrap();
        assert_eq!(s.compile().unwrap_err().field, "events.types[1]");
        let s: Selection =
            serde_json::from_value(json!({"events": {"condition": "traits.plan == \"pro\""}}))
                .unwrap();
        assert_eq!(s.compile().unwrap_err().field, "events.condition");
        let s: Selection =
            serde_json::from_value(json!({"events": {"condition": "event == "}})).unwrap();
        assert_eq!(s.compile().unwrap_err().field, "events.condition");
        assert!(serde_json::from_value::<Selection>(json!({"evnts": {}})).is_err());
    }
}
