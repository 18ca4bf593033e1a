//! A journey as the user writes it: JSON through the API, kept as it was sent. Nothing here
//! is checked; [`crate::check`] turns a [`JourneySpec`] into something that can run, with
//! errors that name the node and the field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A node's name, unique within one journey version (`remind`, `wait_for_order`).
pub type NodeId = String;

/// One version of a journey's definition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneySpec {
    /// Unique among journeys: letters, digits, `_` and `-`, at most 64 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What brings a customer in.
    pub entry: Entry,
    #[serde(default)]
    pub reentry: Reentry,
    #[serde(default)]
    pub limits: Limits,
    /// Percentage (0–50, fractions allowed) of entering customers drawn into the control
    /// group: they are counted, and their conversions measured, but they go through no
    /// step. The draw hashes (journey, profile), so it is sticky across entries and replays.
    #[serde(default)]
    pub holdout_percent: f64,
    /// Rules that take a customer out at once, whatever node they are on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<ExitRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Decides between journeys when a frequency cap lets only some messages through:
    /// the higher goes first. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// The node an entering customer starts on.
    pub start: NodeId,
    pub nodes: BTreeMap<NodeId, Node>,
}

/// What brings a customer into a journey.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// The customer entered segment `segment`.
    SegmentEntered { segment: String },
    /// An event of the customer matching `condition`, an event filter of the segment
    /// language (`event == "Cart Updated" and properties.total > 0`).
    Event { condition: String },
    /// Only `POST /api/v1/journeys/{name}/entries` puts customers in.
    Api,
    /// Every `every` (a duration such as `1d`), from `starting` on, each member of
    /// `segment` at that moment enters.
    Schedule {
        segment: String,
        every: Duration,
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
        starting: DateTime<Utc>,
    },
}

/// When a customer may enter again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reentry {
    /// Once ever.
    #[default]
    Once,
    /// Again once `cooldown` has passed since the last entry and the last instance has
    /// ended.
    After { cooldown: Duration },
    /// One instance at a time per value of the entry event's `property` (one per
    /// `cart_id`): instances for different values run side by side; an entry whose value is
    /// missing is refused.
    PerKey { property: String },
}

/// Bounds on entries over the journey's life (all versions together).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// At most this many entries in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// At most this many customers inside at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u64>,
}

/// A rule that exits a customer at once: on an event matching `event`, or as soon as the
/// profile condition `condition` holds. Exactly one of the two.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRule {
    /// The reason recorded, e.g. `unsubscribed`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// What the journey is for: a conversion event (`event`) or a profile condition
/// (`condition`), exactly one, counted when it happens within `within` of the entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub within: Duration,
    /// With an event goal: the event must carry the entry event's value of this property
    /// (the order of the same `cart_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_entry_property: Option<String>,
    /// Whether a converted customer leaves the journey at once (reason `converted`).
    #[serde(default)]
    pub exit_on_conversion: bool,
}

/// A step. Nodes with a `next` go there when done; a missing `next` ends the journey
/// (reason `completed`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Waits for a duration.
    Wait {
        duration: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
    },
    /// Waits until a moment: see [`Until`].
    WaitUntil {
        until: Until,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
    },
    /// Waits for one of the branches' events, after the wait began, for at most `timeout`.
    WaitForEvent {
        branches: Vec<EventBranch>,
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_next: Option<NodeId>,
    },
    /// Waits for the profile condition to hold, for at most `timeout`.
    WaitForCondition {
        condition: String,
        timeout: Duration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_next: Option<NodeId>,
    },
    /// The first case whose profile condition holds, else `else`.
    Branch {
        cases: Vec<Case>,
        #[serde(rename = "else", default, skip_serializing_if = "Option::is_none")]
        otherwise: Option<NodeId>,
    },
    /// A random arm by weight, sticky per customer (a hash of journey, node and profile).
    Split { arms: Vec<Arm> },
    /// Sends a message to a destination (a webhook destination is "call a webhook").
    Send(Send),
    /// Sets a trait on the profile (source `journey`).
    SetTrait {
        #[serde(rename = "trait")]
        name: String,
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
    },
    /// Removes a trait from the profile.
    RemoveTrait {
        #[serde(rename = "trait")]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
    },
    /// Emits a track event for the customer into the log, as if a source had sent it.
    Emit {
        event: String,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        properties: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<NodeId>,
    },
    /// Ends the journey here (reason `exit_node`).
    Exit {},
}

/// A message to a destination.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// The destination's name or id.
    pub destination: String,
    /// A body template (the destinations' template language) over `profile`, `entry` (the
    /// entry event) and `journey`; absent, the destination gets the action as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The channel tag frequency caps count this message under (`email`, `push`); the
    /// destination's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_tag: Option<String>,
    /// A transactional message (a receipt, a password reset) bypasses caps and quiet hours.
    #[serde(default)]
    pub transactional: bool,
    /// The consent purpose the customer must have granted (`marketing`); without it the
    /// message is skipped and the skip recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
}

/// Hours in the customer's local time when a message must not go out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, local; the window may pass midnight (`21:00` to `08:00`).
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub zone: ZoneSource,
    /// `delay` (default): hold the message until the window ends; `skip`: drop it.
    #[serde(default)]
    pub action: QuietAction,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuietAction {
    #[default]
    Delay,
    Skip,
}

/// Where a customer's time zone comes from: the trait `trait` (an IANA name such as
/// `Europe/Paris`), else the entry event's `context.timezone`, else `default`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSource {
    #[serde(rename = "trait", default = "default_zone_trait")]
    pub zone_trait: String,
    #[serde(default = "default_zone")]
    pub default: String,
}

fn default_zone_trait() -> String {
    "timezone".to_owned()
}

fn default_zone() -> String {
    "UTC".to_owned()
}

impl Default for ZoneSource {
    fn default() -> Self {
        ZoneSource {
            zone_trait: default_zone_trait(),
            default: default_zone(),
        }
    }
}

/// The moment a `wait_until` node waits for. Exactly one of `at`, `trait` and
/// `local_time`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Until {
    /// A fixed moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub at: Option<DateTime<Utc>>,
    /// A trait holding an RFC 3339 timestamp (`renewal_date`), optionally shifted by
    /// `offset` (`-30d` for a month before). A missing or unreadable trait goes on at once.
    #[serde(rename = "trait", default, skip_serializing_if = "Option::is_none")]
    pub from_trait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<SignedDuration>,
    /// The next `HH:MM` in the customer's zone (now, if it is that minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<String>,
    #[serde(default)]
    pub zone: ZoneSource,
}

/// An event branch of `wait_for_event`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBranch {
    /// The branch's name in explanations and statistics; `branch_<i>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An event filter of the segment language.
    pub condition: String,
    /// When set, the event must carry the same value of this property as the entry event
    /// did (`cart_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_entry_property: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
}

/// A case of a `branch` node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A profile condition of the segment language.
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
}

/// An arm of a `split` node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    /// A positive integer; arms get customers in proportion to their weights.
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NodeId>,
}

impl Node {
    /// The node's kind as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Wait { .. } => "wait",
            Node::WaitUntil { .. } => "wait_until",
            Node::WaitForEvent { .. } => "wait_for_event",
            Node::WaitForCondition { .. } => "wait_for_condition",
            Node::Branch { .. } => "branch",
            Node::Split { .. } => "split",
            Node::Send(_) => "send",
            Node::SetTrait { .. } => "set_trait",
            Node::RemoveTrait { .. } => "remove_trait",
            Node::Emit { .. } => "emit",
            Node::Exit {} => "exit",
        }
    }

    /// Whether a customer can stay on this node over time (the others are passed at once).
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Node::Wait { .. }
                | Node::WaitUntil { .. }
                | Node::WaitForEvent { .. }
                | Node::WaitForCondition { .. }
        )
    }

    /// Every node this one may lead to, with the field that names it
    /// (`next`, `branches[1].next`, `else`).
    pub fn successors(&self) -> Vec<(String, &NodeId)> {
        let mut out = Vec::new();
        match self {
            Node::Wait { next, .. }
            | Node::WaitUntil { next, .. }
            | Node::SetTrait { next, .. }
            | Node::RemoveTrait { next, .. }
            | Node::Emit { next, .. } => {
                out.extend(next.iter().map(|n| ("next".to_owned(), n)));
            }
            Node::Send(s) => out.extend(s.next.iter().map(|n| ("next".to_owned(), n))),
            Node::WaitForEvent {
                branches,
                timeout_next,
                ..
            } => {
                for (i, b) in branches.iter().enumerate() {
                    out.extend(b.next.iter().map(|n| (format!("branches[{i}].next"), n)));
                }
                out.extend(timeout_next.iter().map(|n| ("timeout_next".to_owned(), n)));
            }
            Node::WaitForCondition {
                next, timeout_next, ..
            } => {
                out.extend(next.iter().map(|n| ("next".to_owned(), n)));
                out.extend(timeout_next.iter().map(|n| ("timeout_next".to_owned(), n)));
            }
            Node::Branch { cases, otherwise } => {
                for (i, c) in cases.iter().enumerate() {
                    out.extend(c.next.iter().map(|n| (format!("cases[{i}].next"), n)));
                }
                out.extend(otherwise.iter().map(|n| ("else".to_owned(), n)));
            }
            Node::Split { arms } => {
                for (i, a) in arms.iter().enumerate() {
                    out.extend(a.next.iter().map(|n| (format!("arms[{i}].next"), n)));
                }
            }
            Node::Exit {} => {}
        }
        out
    }
}

/// A duration written as a number and a unit: `90s`, `30m`, `4h`, `7d`, `2w`. Held in
/// seconds; shown in the largest of days, hours, minutes and seconds that divides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

/// A duration that may be negative (`-30d`): an offset from a trait's date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignedDuration(pub i64);

impl Duration {
    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.0 as i64)
    }
}

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w`, at most 100 years.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let expected = || {
        format!("expected a duration such as 30m, 4h or 7d (units s, m, h, d, w), found {text:?}")
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| expected())?;
    let unit = rapport_core::audience::DurationUnit::from_suffix(unit).ok_or_else(expected)?;
    let seconds = n.saturating_mul(unit.seconds());
    if seconds > rapport_core::audience::DurationLit::MAX_SECONDS {
        return Err(format!("{text} is over 100 years"));
    }
    Ok(seconds)
}

fn format_seconds(s: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_seconds(self.0))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Duration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A number and a unit (s, m, h, d, w): `30m`, `4h`, `7d`.",
            ))
            .pattern(Some("^[0-9]+[smhdw]$"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Duration {}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for SignedDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A duration that may be negative: `-30d`."))
            .pattern(Some("^[-+]?[0-9]+[smhdw]$"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for SignedDuration {}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for SignedDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sign = if self.0 < 0 { "-" } else { "" };
        s.collect_str(&format_args!(
            "{sign}{}",
            format_seconds(self.0.unsigned_abs())
        ))
    }
}

impl<'de> Deserialize<'de> for SignedDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let s = parse_duration(rest).map_err(serde::de::Error::custom)? as i64;
        Ok(SignedDuration(if negative { -s } else { s }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_show_as_written() {
        for (text, secs) in [("90s", 90), ("30m", 1800), ("4h", 14_400), ("7d", 604_800)] {
            let d: Duration = serde_json::from_value(Value::from(text)).unwrap();
            assert_eq!(d.0, secs);
            assert_eq!(serde_json::to_value(d).unwrap(), Value::from(text));
        }
        assert_eq!(Duration(14 * 86_400).to_string(), "14d");
        let w: Duration = serde_json::from_value(Value::from("2w")).unwrap();
        assert_eq!(w.to_string(), "14d");
        let neg: SignedDuration = serde_json::from_value(Value::from("-30d")).unwrap();
        assert_eq!(neg.0, -30 * 86_400);
        assert_eq!(serde_json::to_value(neg).unwrap(), Value::from("-30d"));
        for bad in ["", "4", "h", "4 h", "4y", "-4h", "99999999999w"] {
            let e = serde_json::from_value::<Duration>(Value::from(bad));
            assert!(e.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_spec_reads_from_json_and_refuses_unknown_fields() {
        let spec: JourneySpec = serde_json::from_value(serde_json::json!({
            "name": "cart",
            "entry": {"type": "event", "condition": "event == \"Cart Updated\""},
            "reentry": {"type": "per_key", "property": "cart_id"},
            "start": "wait",
            "nodes": {
                "wait": {"type": "wait_for_event", "timeout": "4h", "timeout_next": "remind",
                          "branches": [{"condition": "event == \"Order Completed\"",
                                        "match_entry_property": "cart_id"}]},
                "remind": {"type": "send", "destination": "email"}
            }
        }))
        .unwrap();
        assert_eq!(spec.nodes["wait"].kind(), "wait_for_event");
        let e = serde_json::from_value::<JourneySpec>(serde_json::json!({
            "name": "x", "entry": {"type": "api"}, "start": "a",
            "nodes": {"a": {"type": "exit", "colour": 1}}
        }));
        assert!(e.unwrap_err().to_string().contains("colour"));
    }
}
