//! Previews of a definition before it is saved: what the dashboard's editor shows while
//! someone types (validation, then how many profiles match a segment or hold a value of a
//! computed trait). A preview evaluates the definition exactly as the processor would —
//! the same catalogue compiled with the definition added, the same stored audience state,
//! aggregates the definition adds built from each profile's history — but over at most
//! `limit` profiles and without writing anything. Profiles are read in profile-id order,
//! which is the order they were created: past the limit the count is of the oldest
//! profiles only and is marked inexact; the exact figure comes with the backfill after
//! saving.

use super::definitions::{
    ComputedTraitDef, ComputedTraitSpec, DefinitionSet, Definitions, SegmentDef, SegmentSpec,
    value_type,
};
use super::profile::{ProfileInputs, Trigger};
use super::store::{Audiences, NS_PROFILE_LIST, PART_ALL, committed_history};
use super::{Catalogue, ProfileAudience, RfmSource};
use crate::EngineError;
use crate::profiles::Profiles;
use chrono::{DateTime, Utc};
use rapport_core::identity::ProfileId;
use rapport_store::Store;
use serde_json::Value;

/// The most profiles one preview reads.
pub const MAX_PREVIEW_PROFILES: usize = 100_000;
/// Profiles read when the caller does not say.
pub const DEFAULT_PREVIEW_PROFILES: usize = 10_000;
/// Matching profiles returned as examples.
const EXAMPLES: usize = 5;
const PAGE: usize = 1_000;

/// What a preview found.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Live (not merged) profiles evaluated.
    pub profiles_read: u64,
    /// Live profiles in the store.
    pub profiles_total: u64,
    /// Whether every live profile was evaluated, so that `matching` is the size the
    /// definition would have now.
    pub exact: bool,
    /// Profiles in the segment, or for which the computed trait's value is not empty.
    pub matching: u64,
    /// The first matching profiles (id, main identifier, the trait's value).
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub profile: String,
    pub main_identifier: Option<String>,
    /// The computed trait's value (`None` for a segment).
    pub value: Option<Value>,
}

/// A name for a definition being typed before it has one: any name no definition has.
fn unused_name(taken: impl Fn(&str) -> bool) -> String {
    (1..)
        .map(|i| format!("preview_{i}"))
        .find(|n| !taken(n))
        .expect("some name is free")
}

/// Checks `spec` as saving it would, then counts the profiles that would be in the segment,
/// among the first `limit` (1 to [`MAX_PREVIEW_PROFILES`]). An empty name is allowed: the
/// segment is evaluated under a name no definition has.
///
/// Errors: `Invalid` naming `name` or `expression` (the message saving would give).
pub fn preview_segment(
    store: &dyn Store,
    rfm: RfmSource,
    spec: &SegmentSpec,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Preview, EngineError> {
    let definitions = Definitions { store };
    let mut set = definitions.load()?;
    let mut spec = spec.clone();
    if spec.name.is_empty() {
        spec.name = unused_name(|n| set.segments.contains_key(n));
    }
    definitions.check_segment(&set, &spec)?;
    set.segments.insert(
        spec.name.clone(),
        SegmentDef {
            name: spec.name.clone(),
            description: None,
            expression: spec.expression.clone(),
            created_at_ms: 0,
            updated_at_ms: 0,
        },
    );
    let name = spec.name;
    evaluate(store, set, rfm, limit, now, |audience| {
        audience.segments.contains_key(&name).then_some(None)
    })
}

/// Checks `spec` as saving it would, then counts the profiles for which the computed trait
/// would hold a value that is not empty (not absent, `null`, `0`, `false`, `""` or `[]`),
/// among the first `limit`, with examples of the values. An empty name is
/// allowed, as for [`preview_segment`].
///
/// Errors: `Invalid` naming the field at fault; `Conflict` when the change of type would
/// change the meaning of segments that read the trait.
pub fn preview_trait(
    store: &dyn Store,
    rfm: RfmSource,
    spec: &ComputedTraitSpec,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<(ComputedTraitDef, Preview), EngineError> {
    let definitions = Definitions { store };
    let mut set = definitions.load()?;
    let mut spec = spec.clone();
    if spec.name.is_empty() {
        spec.name = unused_name(|n| set.traits.contains_key(n));
    }
    let aggregate = definitions.check_trait(&set, &spec)?;
    let def = ComputedTraitDef {
        name: spec.name.clone(),
        description: spec.description.clone(),
        expression: aggregate.to_string(),
        value_type: value_type(aggregate.function),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    set.traits.insert(def.name.clone(), def.clone());
    let name = def.name.clone();
    let preview = evaluate(store, set, rfm, limit, now, |audience| {
        audience
            .values
            .get(&name)
            .filter(|v| !is_empty(v))
            .map(|v| Some(v.clone()))
    })?;
    Ok((def, preview))
}

/// A value that says nothing about the profile: absent, `null`, `0`, `false`, `""`, `[]`.
/// A count or a sum is defined for everyone; the preview counts who it says something of.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Evaluates the definitions `set` (the stored ones with one added or replaced) over the
/// first `limit` live profiles; `matches` says whether a profile's evaluated state matches,
/// with the value to show.
fn evaluate(
    store: &dyn Store,
    mut set: DefinitionSet,
    rfm: RfmSource,
    limit: usize,
    now: DateTime<Utc>,
    matches: impl Fn(&ProfileAudience) -> Option<Option<Value>>,
) -> Result<Preview, EngineError> {
    let limit = limit.clamp(1, MAX_PREVIEW_PROFILES);
    let audiences = Audiences { store };
    let meta = audiences.meta()?;
    // A version past the stored one: aggregates only this definition reads are new, so
    // each profile builds them from its history, as the backfill would.
    set.version += 1;
    let mut catalogue = Catalogue::compile(&set, rfm);
    let mut since = meta.since.clone();
    catalogue.track_since(&mut since);

    let profiles = Profiles { store };
    let mut preview = Preview {
        profiles_read: 0,
        profiles_total: meta.profiles,
        exact: false,
        matching: 0,
        examples: Vec::new(),
    };
    let mut cursor: Option<Vec<u8>> = None;
    'scan: loop {
        let page = store.state_scan_range(NS_PROFILE_LIST, PART_ALL, cursor.as_deref(), PAGE)?;
        for (k, _) in &page {
            if preview.profiles_read as usize >= limit {
                // More profiles remain than the preview may read.
                break 'scan;
            }
            cursor = Some(k.clone());
            let id = ProfileId::new(String::from_utf8_lossy(k).into_owned());
            let Some(record) = profiles.record(&id)? else {
                continue;
            };
            if record.merged_into.is_some() {
                continue;
            }
            let mut audience = audiences.profile(id.as_str())?.unwrap_or_default();
            if audience.needs_history(&catalogue) {
                let history = committed_history(store, &id)?;
                audience.materialise(&catalogue, &history, now);
            } else if audience.v != catalogue.version {
                audience.materialise(&catalogue, &[], now);
            }
            let accounts: Vec<_> = record
                .accounts
                .iter()
                .filter_map(|a| profiles.account(a).transpose())
                .collect::<Result<_, _>>()?;
            let scores = if catalogue.reads_scores {
                crate::value::ModelScores { store }.scores(id.as_str())?
            } else {
                None
            };
            let inputs = ProfileInputs {
                record: &record,
                accounts: accounts.iter().collect(),
                scores,
            };
            let trigger = Trigger {
                matched: &[],
                profile_changed: true,
                all: true,
            };
            audience.refresh(&catalogue, &inputs, &trigger, now);
            preview.profiles_read += 1;
            if let Some(value) = matches(&audience) {
                preview.matching += 1;
                if preview.examples.len() < EXAMPLES {
                    preview.examples.push(Example {
                        profile: id.as_str().to_owned(),
                        main_identifier: audiences.main_identifier(id.as_str())?,
                        value,
                    });
                }
            }
        }
        if page.len() < PAGE {
            preview.exact = true;
            // The list itself, rather than the processor's running count, which may trail.
            preview.profiles_total = preview.profiles_read;
            break;
        }
    }
    Ok(preview)
}
