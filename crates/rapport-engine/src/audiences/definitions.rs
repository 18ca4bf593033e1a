//! Computed-trait and segment definitions: how the API's input becomes a checked definition,
//! and how definitions are stored.
//!
//! Definitions depend on each other (a segment reads computed traits and other segments), so
//! every change is validated against the whole set: a segment that names an unknown trait, a
//! cycle of `in_segment` references, or deleting a trait a segment still reads is refused
//! when it is saved, not discovered later as an always-empty audience. Each change bumps one
//! version number, which is how the processor learns that it must reload and backfill.

use crate::EngineError;
use rapport_core::audience::{
    self, AggregateFunction, AggregateKind, EventAggregate, ExprKind, Schema, SegmentError, Type,
};
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

pub const NS_DEFINITION: &str = "definition";
const PART_TRAITS: &str = "computed_trait";
const PART_SEGMENTS: &str = "segment";
const PART_META: &str = "meta";
const KEY_VERSION: &[u8] = b"version";

/// Scores the value models write (`rapport_engine::value`), readable in segments as
/// computed traits.
pub const SCORE_TRAITS: [&str; 5] = [
    "clv",
    "p_alive",
    "expected_purchases_90d",
    "churn_risk",
    "health_score",
];

/// Computed traits every profile has without being defined: the RFM summary of its purchases
/// (see `rapport_core::rfm`) and the value models' scores ([`SCORE_TRAITS`]).
pub const BUILTIN_TRAITS: [(&str, Type); 11] = [
    ("clv", Type::Number),
    ("p_alive", Type::Number),
    ("expected_purchases_90d", Type::Number),
    ("churn_risk", Type::Number),
    ("health_score", Type::Number),
    ("rfm_frequency", Type::Number),
    ("rfm_recency", Type::Number),
    ("rfm_age", Type::Number),
    ("rfm_monetary", Type::Number),
    ("rfm_orders", Type::Number),
    ("rfm_revenue", Type::Number),
];

/// A computed trait as stored: one event aggregate under a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedTraitDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The aggregate in canonical segment-language form, e.g.
    /// `count(event == "Order Completed", within 30d)`.
    pub expression: String,
    pub value_type: Type,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl ComputedTraitDef {
    pub fn aggregate(&self) -> Result<EventAggregate, EngineError> {
        parse_aggregate(&self.expression).map_err(|e| {
            EngineError::Store(format!(
                "stored computed trait {} is invalid: {e}",
                self.name
            ))
        })
    }
}

/// What the API accepts for a computed trait: either `expression` (one aggregate in the
/// segment language) or the structured fields, which are turned into one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedTraitSpec {
    /// Optional when the URL names the trait.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub expression: Option<String>,
    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last`, `first_seen`, `last_seen`,
    /// `most_frequent`, `unique`, `unique_count`.
    #[serde(default)]
    pub function: Option<String>,
    /// The event property, `revenue` or `properties.revenue`.
    #[serde(default)]
    pub property: Option<String>,
    /// Only events with this name (track events).
    #[serde(default)]
    pub event: Option<String>,
    /// A further condition over `event`, `type` and `properties.…`.
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    /// A sliding window such as `30d` or `12h`; all time when absent.
    #[serde(default)]
    pub window: Option<String>,
}

/// A segment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub expression: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Optional when the URL names the segment.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub expression: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field,
        message: message.into(),
    }
}

/// `check` names the routes that check a definition without saving it
/// (`POST /api/v1/segments/check`), so no definition can be called that.
fn reserved(what: &str, name: &str) -> Result<(), EngineError> {
    if name == "check" {
        return Err(invalid(
            "name",
            format!("a {what} cannot be named `check`: the name is kept for checking definitions"),
        ));
    }
    Ok(())
}

/// Names are used in the language (`computed.name`, `in_segment("name")`) and in URLs.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{name:?} is not a valid name: use 1 to 64 lower-case letters, digits and _, starting with a letter"
            ),
        ))
    }
}

fn render(e: &SegmentError, source: &str) -> String {
    e.render(source)
}

/// Parses text that must be exactly one aggregate call.
fn parse_aggregate(source: &str) -> Result<EventAggregate, String> {
    let expr = audience::parse(source).map_err(|d| render(&SegmentError::Syntax(d), source))?;
    let ExprKind::Aggregate(call) = &expr.kind else {
        return Err(format!(
            "a computed trait is one aggregate such as count(event == \"Order Completed\", within 30d), found {expr}"
        ));
    };
    if call.kind == AggregateKind::Exists {
        return Err("exists() is a condition; use count() for a computed trait".into());
    }
    EventAggregate::from_call(call).map_err(|d| render(&SegmentError::Type(vec![d]), source))
}

/// The type of a computed trait's values, for the segment type checker.
pub fn value_type(function: AggregateFunction) -> Type {
    match function {
        AggregateFunction::Count
        | AggregateFunction::Sum
        | AggregateFunction::Avg
        | AggregateFunction::Min
        | AggregateFunction::Max
        | AggregateFunction::UniqueCount => Type::Number,
        AggregateFunction::FirstSeen | AggregateFunction::LastSeen => Type::Timestamp,
        AggregateFunction::Unique => Type::List,
        AggregateFunction::First | AggregateFunction::Last | AggregateFunction::MostFrequent => {
            Type::Any
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

impl ComputedTraitSpec {
    /// The aggregate this spec describes, in source form.
    fn source(&self) -> Result<String, EngineError> {
        let structured = self.function.is_some()
            || self.property.is_some()
            || self.event.is_some()
            || self.condition.is_some()
            || self.window.is_some();
        match (&self.expression, structured) {
            (Some(_), true) => Err(invalid(
                "expression",
                "give either expression or function/property/event/where/window, not both",
            )),
            (Some(e), false) => Ok(e.clone()),
            (None, false) => Err(invalid(
                "function",
                "a computed trait needs a function (count, sum, …) or an expression",
            )),
            (None, true) => {
                let function = self.function.as_deref().ok_or_else(|| {
                    invalid("function", "missing function (count, sum, avg, min, max, first, last, first_seen, last_seen, most_frequent, unique, unique_count)")
                })?;
                let kind = AggregateKind::ALL
                    .into_iter()
                    .find(|k| k.name() == function && *k != AggregateKind::Exists)
                    .ok_or_else(|| {
                        invalid(
                            "function",
                            format!("unknown function {function:?} (count, sum, avg, min, max, first, last, first_seen, last_seen, most_frequent, unique, unique_count)"),
                        )
                    })?;
                let mut args = Vec::new();
                match (&self.property, kind.takes_property()) {
                    (Some(p), true) => {
                        let p = p.strip_prefix("properties.").unwrap_or(p);
                        if p.is_empty() {
                            return Err(invalid("property", "empty property name"));
                        }
                        let path: Vec<&str> = p.split('.').collect();
                        if let Some(bad) = path.iter().find(|s| {
                            s.is_empty()
                                || s.starts_with(|c: char| c.is_ascii_digit())
                                || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }) {
                            return Err(invalid(
                                "property",
                                format!(
                                    "{bad:?} is not a property name (letters, digits and _, dot-separated)"
                                ),
                            ));
                        }
                        args.push(format!("properties.{}", path.join(".")));
                    }
                    (None, true) => {
                        return Err(invalid(
                            "property",
                            format!("{function} needs the event property it aggregates"),
                        ));
                    }
                    (Some(_), false) => {
                        return Err(invalid(
                            "property",
                            format!("{function} does not take a property"),
                        ));
                    }
                    (None, false) => {}
                }
                let mut filter = Vec::new();
                if let Some(e) = &self.event {
                    filter.push(format!("event == {}", quote(e)));
                }
                // `where` and `window` are spliced into one aggregate: each is checked on
                // its own first, so that an error names the field at fault rather than
                // the `expression` the client never sent.
                if let Some(c) = &self.condition {
                    parse_aggregate(&format!("count(({c}))")).map_err(|m| invalid("where", m))?;
                    filter.push(format!("({c})"));
                }
                if let Some(w) = &self.window {
                    parse_aggregate(&format!("count(true, within {w})"))
                        .map_err(|m| invalid("window", m))?;
                }
                args.push(if filter.is_empty() {
                    "true".into()
                } else {
                    filter.join(" and ")
                });
                if let Some(w) = &self.window {
                    args.push(format!("within {w}"));
                }
                Ok(format!("{function}({})", args.join(", ")))
            }
        }
    }
}

/// All definitions, as the validation of a change sees them.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSet {
    pub version: u64,
    pub traits: BTreeMap<String, ComputedTraitDef>,
    pub segments: BTreeMap<String, SegmentDef>,
}

impl DefinitionSet {
    /// What the segment type checker knows: computed traits (built-in and defined) and
    /// segments.
    pub fn schema(&self) -> Schema {
        let mut schema = Schema::new();
        for (name, ty) in BUILTIN_TRAITS {
            schema = schema.with_computed_trait(name, ty);
        }
        for t in self.traits.values() {
            schema = schema.with_computed_trait(t.name.clone(), t.value_type);
        }
        for s in self.segments.keys() {
            schema = schema.with_segment(s.clone());
        }
        schema
    }

    /// Each segment's `in_segment` references.
    pub fn segment_references(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.segments
            .values()
            .filter_map(|s| {
                let checked =
                    audience::compile(&s.expression, &self.schema(), Some(&s.name)).ok()?;
                Some((s.name.clone(), checked.references))
            })
            .collect()
    }

    /// Segments that read computed trait `name`.
    fn readers_of_trait(&self, name: &str) -> Vec<String> {
        self.segments
            .values()
            .filter(|s| {
                audience::parse(&s.expression).is_ok_and(|e| {
                    let mut reads = false;
                    e.walk(&mut |x| {
                        if let ExprKind::Path(audience::Path::Computed(n)) = &x.kind {
                            reads |= n == name;
                        }
                    });
                    reads
                })
            })
            .map(|s| s.name.clone())
            .collect()
    }
}

/// Serialises changes of definitions within this process, so that version bumps never race.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Reads and changes definitions in a [`StateStore`].
pub struct Definitions<'a> {
    pub store: &'a dyn StateStore,
}

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("corrupt definition: {e}"))
}

impl Definitions<'_> {
    /// The version of the definitions: it grows with every change.
    pub fn version(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .state_get(NS_DEFINITION, PART_META, KEY_VERSION)?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    pub fn load(&self) -> Result<DefinitionSet, EngineError> {
        let version = self.version()?;
        let traits = self
            .store
            .state_scan(NS_DEFINITION, PART_TRAITS)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<ComputedTraitDef>(&v).map_err(corrupt))
            .map(|t| t.map(|t| (t.name.clone(), t)))
            .collect::<Result<_, _>>()?;
        let segments = self
            .store
            .state_scan(NS_DEFINITION, PART_SEGMENTS)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<SegmentDef>(&v).map_err(corrupt))
            .map(|s| s.map(|s| (s.name.clone(), s)))
            .collect::<Result<_, _>>()?;
        Ok(DefinitionSet {
            version,
            traits,
            segments,
        })
    }

    /// Writes (or with `None` deletes) one definition and bumps the version.
    fn commit(
        &self,
        version: u64,
        part: &str,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), EngineError> {
        let writes = [
            StateWrite {
                namespace: NS_DEFINITION.into(),
                profile: part.into(),
                key: name.as_bytes().to_vec(),
                value,
            },
            StateWrite {
                namespace: NS_DEFINITION.into(),
                profile: PART_META.into(),
                key: KEY_VERSION.to_vec(),
                value: Some((version + 1).to_be_bytes().to_vec()),
            },
        ];
        self.store.state_commit(&writes, None)?;
        Ok(())
    }

    /// Tells the processor that the value models wrote new scores: when a segment reads one,
    /// the version is bumped so that every profile is evaluated again.
    pub fn scores_changed(&self) -> Result<bool, EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.load()?;
        let reads_scores = SCORE_TRAITS
            .iter()
            .any(|t| !set.readers_of_trait(t).is_empty());
        if reads_scores {
            self.store.state_commit(
                &[StateWrite {
                    namespace: NS_DEFINITION.into(),
                    profile: PART_META.into(),
                    key: KEY_VERSION.to_vec(),
                    value: Some((set.version + 1).to_be_bytes().to_vec()),
                }],
                None,
            )?;
        }
        Ok(reads_scores)
    }

    /// Checks a computed trait against the other definitions without saving it: the
    /// aggregate it defines, in canonical form. `409 conflict` when it would change the type
    /// of a trait that segments read.
    pub fn check_trait(
        &self,
        set: &DefinitionSet,
        spec: &ComputedTraitSpec,
    ) -> Result<EventAggregate, EngineError> {
        validate_name("name", &spec.name)?;
        reserved("computed trait", &spec.name)?;
        if BUILTIN_TRAITS.iter().any(|(n, _)| *n == spec.name) {
            return Err(invalid(
                "name",
                format!("{} is a built-in computed trait", spec.name),
            ));
        }
        let source = spec.source()?;
        let aggregate = parse_aggregate(&source).map_err(|m| invalid("expression", m))?;
        let ty = value_type(aggregate.function);
        if let Some(old) = set.traits.get(&spec.name)
            && old.value_type != ty
        {
            let readers = set.readers_of_trait(&spec.name);
            if !readers.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "computed trait {} is read by segment(s) {} as a {}; a {} would change their meaning",
                    spec.name,
                    readers.join(", "),
                    old.value_type,
                    ty
                )));
            }
        }
        Ok(aggregate)
    }

    /// Creates or replaces a computed trait. Returns the stored definition and whether it is
    /// new.
    pub fn put_trait(
        &self,
        spec: &ComputedTraitSpec,
        now_ms: i64,
    ) -> Result<(ComputedTraitDef, bool), EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.load()?;
        let aggregate = self.check_trait(&set, spec)?;
        let ty = value_type(aggregate.function);
        let existing = set.traits.get(&spec.name);
        let def = ComputedTraitDef {
            name: spec.name.clone(),
            description: spec.description.clone(),
            expression: aggregate.to_string(),
            value_type: ty,
            created_at_ms: existing.map_or(now_ms, |e| e.created_at_ms),
            updated_at_ms: now_ms,
        };
        self.commit(
            set.version,
            PART_TRAITS,
            &def.name,
            Some(serde_json::to_vec(&def).expect("definitions serialise")),
        )?;
        Ok((def, existing.is_none()))
    }

    pub fn delete_trait(&self, name: &str) -> Result<(), EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.load()?;
        if !set.traits.contains_key(name) {
            return Err(EngineError::NotFound(format!("no computed trait {name}")));
        }
        let readers = set.readers_of_trait(name);
        if !readers.is_empty() {
            return Err(EngineError::Conflict(format!(
                "computed trait {name} is read by segment(s) {}; change or delete them first",
                readers.join(", ")
            )));
        }
        self.commit(set.version, PART_TRAITS, name, None)
    }

    /// Checks a segment against the other definitions without saving it.
    pub fn check_segment(
        &self,
        set: &DefinitionSet,
        spec: &SegmentSpec,
    ) -> Result<audience::CheckedSegment, EngineError> {
        validate_name("name", &spec.name)?;
        reserved("segment", &spec.name)?;
        let mut schema = set.schema();
        schema.segments.insert(spec.name.clone());
        let checked = audience::compile(&spec.expression, &schema, Some(&spec.name))
            .map_err(|e| invalid("expression", render(&e, &spec.expression)))?;
        let mut existing = set.segment_references();
        existing.remove(&spec.name);
        if let Some(cycle) = audience::find_cycle(&spec.name, &checked.references, &existing) {
            return Err(invalid(
                "expression",
                format!(
                    "in_segment references would form a cycle: {}",
                    cycle.join(" → ")
                ),
            ));
        }
        Ok(checked)
    }

    pub fn put_segment(
        &self,
        spec: &SegmentSpec,
        now_ms: i64,
    ) -> Result<(SegmentDef, bool), EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.load()?;
        self.check_segment(&set, spec)?;
        let existing = set.segments.get(&spec.name);
        let def = SegmentDef {
            name: spec.name.clone(),
            description: spec.description.clone(),
            expression: spec.expression.clone(),
            created_at_ms: existing.map_or(now_ms, |e| e.created_at_ms),
            updated_at_ms: now_ms,
        };
        self.commit(
            set.version,
            PART_SEGMENTS,
            &def.name,
            Some(serde_json::to_vec(&def).expect("definitions serialise")),
        )?;
        Ok((def, existing.is_none()))
    }

    pub fn delete_segment(&self, name: &str) -> Result<(), EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let set = self.load()?;
        if !set.segments.contains_key(name) {
            return Err(EngineError::NotFound(format!("no segment {name}")));
        }
        let readers: Vec<String> = set
            .segment_references()
            .into_iter()
            .filter(|(s, refs)| s != name && refs.contains(name))
            .map(|(s, _)| s)
            .collect();
        if !readers.is_empty() {
            return Err(EngineError::Conflict(format!(
                "segment {name} is read by segment(s) {}; change or delete them first",
                readers.join(", ")
            )));
        }
        self.commit(set.version, PART_SEGMENTS, name, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: &str) -> ComputedTraitSpec {
        ComputedTraitSpec {
            name: "t".into(),
            function: Some(f.into()),
            ..Default::default()
        }
    }

    #[test]
    fn structured_specs_become_canonical_aggregates() {
        let s = ComputedTraitSpec {
            property: Some("revenue".into()),
            event: Some("Order Completed".into()),
            condition: Some("properties.currency == \"EUR\"".into()),
            window: Some("720h".into()),
            ..spec("sum")
        };
        let agg = parse_aggregate(&s.source().unwrap()).unwrap();
        assert_eq!(
            agg.to_string(),
            "sum(properties.revenue, event == \"Order Completed\" and properties.currency == \"EUR\", within 30d)"
        );
        let count = parse_aggregate(&spec("count").source().unwrap()).unwrap();
        assert_eq!(count.to_string(), "count(true)");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let field = |s: ComputedTraitSpec| match s
            .source()
            .and_then(|src| parse_aggregate(&src).map_err(|m| invalid("expression", m)))
        {
            Err(EngineError::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(field(spec("median")), "function");
        assert_eq!(field(spec("sum")), "property");
        assert_eq!(
            field(ComputedTraitSpec {
                property: Some("x".into()),
                ..spec("count")
            }),
            "property"
        );
        // The window is named when it is at fault, not the `expression` never sent.
        assert_eq!(
            field(ComputedTraitSpec {
                window: Some("soon".into()),
                ..spec("count")
            }),
            "window"
        );
        assert_eq!(
            field(ComputedTraitSpec {
                window: Some("30d) or (true".into()),
                ..spec("count")
            }),
            "window"
        );
        assert_eq!(
            field(ComputedTraitSpec {
                condition: Some("properties.x ==".into()),
                ..spec("count")
            }),
            "where"
        );
        assert_eq!(
            field(ComputedTraitSpec {
                expression: Some("traits.plan == \"pro\"".into()),
                ..Default::default()
            }),
            "expression"
        );
        assert_eq!(field(ComputedTraitSpec::default()), "function");
    }

    #[test]
    fn names() {
        assert!(validate_name("name", "orders_30d").is_ok());
        for bad in ["", "Orders", "1x", "a-b", &"x".repeat(65)] {
            assert!(validate_name("name", bad).is_err(), "{bad}");
        }
    }
}
