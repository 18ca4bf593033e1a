//! A tracking plan as written ([`TrackingPlan`]), compiled once when saved or loaded
//! ([`CompiledPlan::compile`], which refuses an invalid schema naming its field), and the
//! check of one message against it ([`CompiledPlan::check`]).
//!
//! What is checked: `properties` of track calls against the schema of their event name,
//! `traits` of identify calls and of group calls against their schemas. A track event the
//! plan does not name is an `unplanned` violation (`/event`), handled by
//! [`TrackingPlan::unplanned`]. Page, screen and alias calls, and `context`, are not checked.
//! An absent `properties` or `traits` is checked as `{}`, so that `required` still holds.
//!
//! Violations name the field by JSON pointer from the message (`/properties/price`) and
//! say what the schema expected, never the value sent: they end up in the violations
//! report and in error answers, which must not carry personal data.

use boon::{Compiler, Draft, ErrorKind, SchemaIndex, Schemas, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// At most this many violations are kept for one message (the first found); the rest are
/// counted in [`Check::total`].
pub const MAX_VIOLATIONS_PER_MESSAGE: usize = 10;

/// The longest event name ingest takes (`rapport_core::event::MAX_NAME_BYTES`): a plan
/// naming a longer one names an event that can never arrive.
pub const MAX_EVENT_NAME_BYTES: usize = 1024;

/// A violation's message is cut to this many characters (an `enum` of a thousand values
/// would otherwise say them all).
pub const MAX_MESSAGE_CHARS: usize = 200;

/// What happens to a message that violates a rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Stored as sent; the violation is only counted in the report.
    Allow,
    /// Stored as sent, with the violations in the event's `planViolations` (a field of
    /// Rapport's, beside `receivedAt`), and counted.
    #[default]
    Flag,
    /// Refused (`400 tracking_plan_violation` naming the field); nothing is stored.
    Block,
}

/// What became of a message that violated the plan: its rule's mode, applied.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Flagged,
    Blocked,
}

impl From<Mode> for Outcome {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Allow => Outcome::Allowed,
            Mode::Flag => Outcome::Flagged,
            Mode::Block => Outcome::Blocked,
        }
    }
}

/// A source's tracking plan, as the user writes it and as it is stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlan {
    /// The mode of every rule that sets none; default `flag`.
    #[serde(default)]
    pub mode: Mode,
    /// What to do with track events whose name is not in `events`; default `allow`.
    #[serde(default = "allow")]
    pub unplanned: Mode,
    /// Track events by name: the schema of their `properties`.
    #[serde(default)]
    pub events: BTreeMap<String, Rule>,
    /// The schema of identify calls' `traits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify: Option<Rule>,
    /// The schema of group calls' `traits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Rule>,
}

fn allow() -> Mode {
    Mode::Allow
}

/// One JSON Schema and, optionally, its own mode.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A JSON Schema, draft 2020-12 unless its `$schema` names another (draft-07, 2019-09,
    /// 6 and 4 are read too): an object, or `true` / `false`. `$ref` may point only inside
    /// the schema itself.
    pub schema: Value,
    /// Overrides the plan's `mode` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// Why a plan cannot be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A schema is not a valid JSON Schema, or refers outside itself. `field` names it as
    /// the API does: `events.Order Completed.schema`.
    #[error("`{field}` is not a valid JSON Schema: {reason}")]
    InvalidSchema { field: String, reason: String },
    /// An event name no message can have: empty, or longer than an event name may be.
    #[error("{reason}")]
    InvalidEventName { field: String, reason: String },
}

impl PlanError {
    /// The plan's field at fault.
    pub fn field(&self) -> &str {
        match self {
            PlanError::InvalidSchema { field, .. } | PlanError::InvalidEventName { field, .. } => {
                field
            }
        }
    }
}

/// One message's content, as far as the plan reads it.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    Track {
        event: &'a str,
        properties: Option<&'a Value>,
    },
    Identify {
        traits: Option<&'a Value>,
    },
    Group {
        traits: Option<&'a Value>,
    },
}

/// What the report counts a violation under.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A track event the plan names.
    Track,
    Identify,
    Group,
    /// Track events the plan does not name, all under one entry, so that a client
    /// inventing names cannot grow the report (their names are in the examples).
    Unplanned,
}

/// The report entry a check counts under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub kind: SubjectKind,
    /// The event name, for [`SubjectKind::Track`].
    pub event: Option<String>,
}

impl Subject {
    /// The entry's key in storage: unique per subject, ordered as the report lists them.
    pub fn key(&self) -> Vec<u8> {
        let kind = match self.kind {
            SubjectKind::Track => "track",
            SubjectKind::Identify => "identify",
            SubjectKind::Group => "group",
            SubjectKind::Unplanned => "unplanned",
        };
        let mut key = kind.as_bytes().to_vec();
        if let Some(e) = &self.event {
            key.push(0);
            key.extend_from_slice(e.as_bytes());
        }
        key
    }
}

/// One way a message departs from the plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Violation {
    /// A JSON pointer into the message: `/properties/price`, `/traits/email`, `/event`.
    pub field: String,
    /// What the plan expected there (`expected number, got string`), never the value.
    pub message: String,
}

impl Violation {
    /// The field as the error body's `field` writes paths: `properties.price`,
    /// `properties.items[0].sku`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for token in self.field.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            if !out.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) && !token.is_empty() {
                out.push('[');
                out.push_str(&token);
                out.push(']');
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&token);
            }
        }
        out
    }
}

/// The outcome of checking one message that violates the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub subject: Subject,
    pub outcome: Outcome,
    /// The first [`MAX_VIOLATIONS_PER_MESSAGE`] violations found.
    pub violations: Vec<Violation>,
    /// How many were found in all.
    pub total: usize,
}

/// A plan whose schemas are compiled, ready to check messages.
pub struct CompiledPlan {
    plan: TrackingPlan,
    schemas: Schemas,
    events: HashMap<String, SchemaIndex>,
    identify: Option<SchemaIndex>,
    group: Option<SchemaIndex>,
}

impl fmt::Debug for CompiledPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPlan")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// The loader of every `$ref` outside the plan's own schemas: none is fetched, from the
/// network or from a file.
struct NoRemote;

impl boon::UrlLoader for NoRemote {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(
            format!("`{url}` is outside the schema; a plan's `$ref` may only point inside it")
                .into(),
        )
    }
}

/// Where schema `n` of a plan lives for the compiler: a name no loader resolves, so that a
/// relative `$ref` fails instead of reaching anything.
fn location(n: usize) -> String {
    format!("https://plan.rapport.invalid/{n}.json")
}

impl CompiledPlan {
    /// Compiles every schema of `plan`, or says which one is invalid.
    pub fn compile(plan: TrackingPlan) -> Result<CompiledPlan, PlanError> {
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V2020_12);
        compiler.use_loader(Box::new(NoRemote));
        let mut schemas = Schemas::new();
        let mut n = 0;
        let mut compile = |field: String, schema: &Value| {
            n += 1;
            let loc = location(n);
            let invalid = |reason: String| PlanError::InvalidSchema {
                field: field.clone(),
                reason,
            };
            if !schema.is_object() && !schema.is_boolean() {
                return Err(invalid("a schema is an object or a boolean".into()));
            }
            compiler
                .add_resource(&loc, schema.clone())
                .map_err(|e| invalid(e.to_string()))?;
            compiler
                .compile(&loc, &mut schemas)
                .map_err(|e| invalid(compile_reason(&e)))
        };
        let mut events = HashMap::new();
        for name in plan.events.keys() {
            if name.is_empty() || name.len() > MAX_EVENT_NAME_BYTES || name.contains('\0') {
                return Err(PlanError::InvalidEventName {
                    field: "events".into(),
                    reason: format!(
                        "event names in a plan are 1 to {MAX_EVENT_NAME_BYTES} bytes without NUL, as ingest takes them"
                    ),
                });
            }
        }
        for (name, rule) in &plan.events {
            let index = compile(format!("events.{name}.schema"), &rule.schema)?;
            events.insert(name.clone(), index);
        }
        let identify = match &plan.identify {
            Some(rule) => Some(compile("identify.schema".into(), &rule.schema)?),
            None => None,
        };
        let group = match &plan.group {
            Some(rule) => Some(compile("group.schema".into(), &rule.schema)?),
            None => None,
        };
        Ok(CompiledPlan {
            plan,
            schemas,
            events,
            identify,
            group,
        })
    }

    /// The plan as written.
    pub fn plan(&self) -> &TrackingPlan {
        &self.plan
    }

    /// Checks one message: `None` when it keeps to the plan (or the plan says nothing
    /// about it), else its violations and what its rule's mode makes of them.
    pub fn check(&self, message: Message<'_>) -> Option<Check> {
        let empty = Value::Object(Default::default());
        let (subject, mode, index, object, prefix) = match message {
            Message::Track { event, properties } => match self.events.get(event) {
                Some(&index) => (
                    Subject {
                        kind: SubjectKind::Track,
                        event: Some(event.to_owned()),
                    },
                    self.mode_of(self.plan.events.get(event)),
                    index,
                    properties,
                    "/properties",
                ),
                None => {
                    return Some(Check {
                        subject: Subject {
                            kind: SubjectKind::Unplanned,
                            event: None,
                        },
                        outcome: self.plan.unplanned.into(),
                        violations: vec![Violation {
                            field: "/event".into(),
                            message: truncate(format!(
                                "event `{event}` is not in the tracking plan"
                            )),
                        }],
                        total: 1,
                    });
                }
            },
            Message::Identify { traits } => (
                Subject {
                    kind: SubjectKind::Identify,
                    event: None,
                },
                self.mode_of(self.plan.identify.as_ref()),
                self.identify?,
                traits,
                "/traits",
            ),
            Message::Group { traits } => (
                Subject {
                    kind: SubjectKind::Group,
                    event: None,
                },
                self.mode_of(self.plan.group.as_ref()),
                self.group?,
                traits,
                "/traits",
            ),
        };
        let value = object.unwrap_or(&empty);
        let error = self.schemas.validate(value, index).err()?;
        let mut violations = Vec::new();
        collect(&error, prefix, &mut violations);
        if violations.is_empty() {
            // (A failure with no leaf to name: say so at the object itself.)
            violations.push(Violation {
                field: prefix.into(),
                message: "does not match the schema".into(),
            });
        }
        let total = violations.len();
        violations.truncate(MAX_VIOLATIONS_PER_MESSAGE);
        Some(Check {
            subject,
            outcome: mode.into(),
            violations,
            total,
        })
    }

    fn mode_of(&self, rule: Option<&Rule>) -> Mode {
        rule.and_then(|r| r.mode).unwrap_or(self.plan.mode)
    }
}

/// A compile error in words, without the long metaschema URLs where the cause says more.
fn compile_reason(e: &boon::CompileError) -> String {
    match e {
        boon::CompileError::ValidationError { src, .. } => {
            let (at, what) = metaschema_reason(src);
            if at.is_empty() {
                what
            } else {
                format!("at `{at}`: {what}")
            }
        }
        _ => e.to_string(),
    }
}

/// Where a schema breaks its draft's metaschema, and what that wants there: the first
/// leaf, with the alternatives of an `anyOf` or `oneOf` said together ("expected one of
/// [\"array\", …] or expected array").
fn metaschema_reason(e: &ValidationError<'_, '_>) -> (String, String) {
    let wrapper = matches!(
        e.kind,
        ErrorKind::Group
            | ErrorKind::Schema { .. }
            | ErrorKind::Reference { .. }
            | ErrorKind::AllOf
    );
    if wrapper && let Some(first) = e.causes.first() {
        return metaschema_reason(first);
    }
    let alternatives = matches!(e.kind, ErrorKind::AnyOf | ErrorKind::OneOf(None));
    if alternatives && !e.causes.is_empty() {
        let at = e.instance_location.to_string();
        let said: Vec<String> = e.causes.iter().map(|c| metaschema_reason(c).1).collect();
        return (at, truncate(said.join(" or ")));
    }
    let mut v = Vec::new();
    collect(e, "", &mut v);
    match v.into_iter().next() {
        Some(first) => (first.field, first.message),
        None => (String::new(), e.to_string()),
    }
}

/// The leaves of a validation error, as violations under `prefix`. `anyOf` and `oneOf`
/// are reported where they failed rather than as every branch's complaints.
fn collect(e: &ValidationError<'_, '_>, prefix: &str, out: &mut Vec<Violation>) {
    let at = format!("{prefix}{}", e.instance_location);
    let message = match &e.kind {
        ErrorKind::Group
        | ErrorKind::Schema { .. }
        | ErrorKind::Reference { .. }
        | ErrorKind::AllOf
        | ErrorKind::PropertyName { .. }
            if !e.causes.is_empty() =>
        {
            for c in &e.causes {
                collect(c, prefix, out);
            }
            return;
        }
        ErrorKind::Required { want } => {
            for name in want {
                out.push(Violation {
                    field: format!("{at}/{}", escape(name)),
                    message: "required, missing".into(),
                });
            }
            return;
        }
        ErrorKind::AdditionalProperties { got } => {
            for name in got {
                out.push(Violation {
                    field: format!("{at}/{}", escape(name)),
                    message: "not in the schema (additionalProperties)".into(),
                });
            }
            return;
        }
        ErrorKind::DependentRequired { prop, missing }
        | ErrorKind::Dependency { prop, missing } => {
            for name in missing {
                out.push(Violation {
                    field: format!("{at}/{}", escape(name)),
                    message: format!("required when `{prop}` is present, missing"),
                });
            }
            return;
        }
        ErrorKind::Type { got, want } => {
            let want: Vec<String> = want.iter().map(|t| t.to_string()).collect();
            format!("expected {}, got {got}", want.join(" or "))
        }
        ErrorKind::Enum { want } => {
            format!("expected one of {}", Value::Array(want.to_vec()))
        }
        ErrorKind::Const { want } => format!("expected {want}"),
        ErrorKind::Format { want, .. } => format!("expected format `{want}`"),
        ErrorKind::Pattern { want, .. } => format!("expected to match pattern `{want}`"),
        ErrorKind::MinLength { want, .. } => format!("expected at least {want} characters"),
        ErrorKind::MaxLength { want, .. } => format!("expected at most {want} characters"),
        ErrorKind::Minimum { want, .. } => format!("expected at least {want}"),
        ErrorKind::Maximum { want, .. } => format!("expected at most {want}"),
        ErrorKind::ExclusiveMinimum { want, .. } => format!("expected more than {want}"),
        ErrorKind::ExclusiveMaximum { want, .. } => format!("expected less than {want}"),
        ErrorKind::MultipleOf { want, .. } => format!("expected a multiple of {want}"),
        ErrorKind::MinItems { want, .. } => format!("expected at least {want} items"),
        ErrorKind::MaxItems { want, .. } => format!("expected at most {want} items"),
        ErrorKind::MinProperties { want, .. } => format!("expected at least {want} properties"),
        ErrorKind::MaxProperties { want, .. } => format!("expected at most {want} properties"),
        ErrorKind::UniqueItems { .. } => "expected unique items".into(),
        ErrorKind::AdditionalItems { .. } => "more items than the schema allows".into(),
        ErrorKind::Contains | ErrorKind::MinContains { .. } | ErrorKind::MaxContains { .. } => {
            "expected items matching `contains`".into()
        }
        ErrorKind::FalseSchema => "not allowed by the schema".into(),
        ErrorKind::Not => "must not match `not`".into(),
        ErrorKind::AnyOf => "matches none of `anyOf`".into(),
        ErrorKind::OneOf(None) => "matches none of `oneOf`".into(),
        ErrorKind::OneOf(Some(_)) => "matches more than one of `oneOf`".into(),
        ErrorKind::AllOf => "does not match `allOf`".into(),
        ErrorKind::RefCycle { .. } => "the schema's `$ref` form a cycle".into(),
        ErrorKind::ContentEncoding { want, .. } => format!("expected content encoding `{want}`"),
        ErrorKind::ContentMediaType { want, .. } => format!("expected media type `{want}`"),
        ErrorKind::ContentSchema => "content does not match `contentSchema`".into(),
        ErrorKind::PropertyName { .. } => "property name does not match `propertyNames`".into(),
        ErrorKind::Group | ErrorKind::Schema { .. } | ErrorKind::Reference { .. } => {
            "does not match the schema".into()
        }
    };
    out.push(Violation {
        field: at,
        message: truncate(message),
    });
}

/// A JSON pointer token (RFC 6901).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn truncate(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> CompiledPlan {
        CompiledPlan::compile(serde_json::from_value(v).unwrap()).unwrap()
    }

    fn order_plan(mode: &str) -> CompiledPlan {
        plan(json!({
            "mode": mode,
            "events": {"Order Completed": {"schema": {
                "type": "object",
                "properties": {"price": {"type": "number"}, "sku": {"type": "string"}},
                "required": ["sku"]
            }}}
        }))
    }

    fn track<'a>(event: &'a str, properties: &'a Value) -> Message<'a> {
        Message::Track {
            event,
            properties: Some(properties),
        }
    }

    #[test]
    fn a_message_that_keeps_to_the_plan_has_no_check() {
        let p = order_plan("block");
        let props = json!({"price": 10, "sku": "a"});
        assert_eq!(p.check(track("Order Completed", &props)), None);
    }

    #[test]
    fn each_mode_gives_its_outcome_and_names_the_field_without_its_value() {
        for (mode, outcome) in [
            ("allow", Outcome::Allowed),
            ("flag", Outcome::Flagged),
            ("block", Outcome::Blocked),
        ] {
            let p = order_plan(mode);
            let props = json!({"price": "secret-value", "sku": "a"});
            let c = p.check(track("Order Completed", &props)).unwrap();
            assert_eq!(c.outcome, outcome);
            assert_eq!(
                c.subject,
                Subject {
                    kind: SubjectKind::Track,
                    event: Some("Order Completed".into())
                }
            );
            assert_eq!(
                c.violations,
                vec![Violation {
                    field: "/properties/price".into(),
                    message: "expected number, got string".into()
                }]
            );
            assert!(!format!("{c:?}").contains("secret-value"));
        }
    }

    #[test]
    fn missing_required_properties_are_named_and_absent_properties_read_as_empty() {
        let p = order_plan("flag");
        let c = p
            .check(Message::Track {
                event: "Order Completed",
                properties: None,
            })
            .unwrap();
        assert_eq!(c.violations[0].field, "/properties/sku");
        assert_eq!(c.violations[0].path(), "properties.sku");
        assert_eq!(c.violations[0].message, "required, missing");
    }

    #[test]
    fn a_rule_mode_overrides_the_plan_mode() {
        let p = plan(json!({
            "mode": "allow",
            "events": {"Signed Up": {"mode": "block", "schema": {"required": ["plan"]}}}
        }));
        let props = json!({});
        assert_eq!(
            p.check(track("Signed Up", &props)).unwrap().outcome,
            Outcome::Blocked
        );
    }

    #[test]
    fn unplanned_events_follow_the_unplanned_mode_under_one_entry() {
        let p = plan(json!({"unplanned": "block", "events": {}}));
        let props = json!({});
        let c = p.check(track("Anything", &props)).unwrap();
        assert_eq!(c.outcome, Outcome::Blocked);
        assert_eq!(c.subject.kind, SubjectKind::Unplanned);
        assert_eq!(c.violations[0].field, "/event");
        assert!(c.violations[0].message.contains("`Anything`"));
        // By default, unplanned events are allowed (and counted).
        let p = plan(json!({}));
        assert_eq!(
            p.check(track("Anything", &props)).unwrap().outcome,
            Outcome::Allowed
        );
    }

    #[test]
    fn identify_and_group_traits_are_checked_when_the_plan_has_a_schema() {
        let p = plan(json!({
            "mode": "flag",
            "identify": {"schema": {"properties": {"email": {"type": "string", "format": "email"}},
                                    "additionalProperties": false}},
        }));
        let traits = json!({"email": 3, "plan": "pro", "a/b": 1});
        let c = p
            .check(Message::Identify {
                traits: Some(&traits),
            })
            .unwrap();
        let fields: Vec<_> = c.violations.iter().map(|v| v.field.as_str()).collect();
        assert!(fields.contains(&"/traits/email"), "{fields:?}");
        assert!(fields.contains(&"/traits/plan"), "{fields:?}");
        assert!(fields.contains(&"/traits/a~1b"), "{fields:?}");
        // No group schema: group calls are not checked.
        assert_eq!(
            p.check(Message::Group {
                traits: Some(&traits)
            }),
            None
        );
    }

    #[test]
    fn draft_07_schemas_are_read_as_draft_07() {
        // `items` as an array is tuple validation in draft-07 (it is refused in 2020-12).
        let p = plan(json!({"events": {"E": {"schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"pair": {"items": [{"type": "string"}, {"type": "number"}]}}
        }}}}));
        let props = json!({"pair": ["a", "b"]});
        let c = p.check(track("E", &props)).unwrap();
        assert_eq!(c.violations[0].field, "/properties/pair/1");
        assert_eq!(c.violations[0].path(), "properties.pair[1]");
    }

    #[test]
    fn an_invalid_schema_is_refused_naming_its_field() {
        let e = CompiledPlan::compile(
            serde_json::from_value(
                json!({"events": {"Order Completed": {"schema": {"type": "nope"}}}}),
            )
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.field(), "events.Order Completed.schema");
        let e = CompiledPlan::compile(
            serde_json::from_value(json!({"identify": {"schema": [1]}})).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.field(), "identify.schema");
    }

    #[test]
    fn a_pattern_the_linear_time_regex_cannot_run_is_refused_when_saved() {
        for pattern in ["(?=a)b", "(a)\\1"] {
            let e = CompiledPlan::compile(
                serde_json::from_value(
                    json!({"events": {"E": {"schema": {"properties": {"p": {"pattern": pattern}}}}}}),
                )
                .unwrap(),
            )
            .unwrap_err();
            assert_eq!(e.field(), "events.E.schema", "{pattern}");
        }
    }

    #[test]
    fn event_names_no_message_can_have_are_refused() {
        for name in [String::new(), "x".repeat(MAX_EVENT_NAME_BYTES + 1)] {
            let mut plan = TrackingPlan::default();
            plan.events.insert(
                name,
                Rule {
                    schema: json!({}),
                    mode: None,
                },
            );
            assert_eq!(CompiledPlan::compile(plan).unwrap_err().field(), "events");
        }
    }

    #[test]
    fn references_outside_the_schema_are_refused_and_inside_ones_work() {
        for target in [
            "https://example.com/s.json",
            "file:///etc/passwd",
            "other.json",
        ] {
            let r = CompiledPlan::compile(
                serde_json::from_value(json!({"events": {"E": {"schema": {"$ref": target}}}}))
                    .unwrap(),
            );
            let e = r.unwrap_err();
            assert_eq!(e.field(), "events.E.schema", "{target}");
        }
        let p = plan(json!({"events": {"E": {"schema": {
            "$defs": {"money": {"type": "number"}},
            "properties": {"price": {"$ref": "#/$defs/money"}}
        }}}}));
        let props = json!({"price": "x"});
        assert_eq!(
            p.check(track("E", &props)).unwrap().violations[0].field,
            "/properties/price"
        );
    }

    #[test]
    fn violations_of_one_message_are_bounded() {
        let p = plan(json!({"events": {"E": {"schema": {"additionalProperties": false}}}}));
        let props: serde_json::Map<String, Value> =
            (0..50).map(|i| (format!("p{i}"), json!(1))).collect();
        let props = Value::Object(props);
        let c = p.check(track("E", &props)).unwrap();
        assert_eq!(c.total, 50);
        assert_eq!(c.violations.len(), MAX_VIOLATIONS_PER_MESSAGE);
    }

    #[test]
    fn anyof_is_reported_where_it_failed() {
        let p = plan(json!({"events": {"E": {"schema": {"properties": {"id": {
            "anyOf": [{"type": "string"}, {"type": "integer"}]
        }}}}}}));
        let props = json!({"id": 1.5});
        let c = p.check(track("E", &props)).unwrap();
        assert_eq!(
            c.violations,
            vec![Violation {
                field: "/properties/id".into(),
                message: "matches none of `anyOf`".into()
            }]
        );
    }
}
