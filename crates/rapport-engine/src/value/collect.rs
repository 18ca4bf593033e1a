//! One pass over the log gathering, per live profile, what the value models read:
//! purchases, activity, support tickets, cancellations and survey answers.
//!
//! The models need a customer's whole history, and the log is the only place holding all of
//! it in order, so each job reads it sequentially (faster than looking events up by name in
//! the index, which would scan the same entries and then fetch each payload at random). The
//! pass stops at the processor's committed offset: every event read has been resolved to a
//! profile by then.
//!
//! **Attribution.** An event belongs to the profile that holds its `userId` (else its
//! `anonymousId`) *when the job runs*, following merges. So a purchase made anonymously
//! before a sign-up counts for the customer once the two are linked, and a later merge moves
//! history to the survivor at the next run. Lookups are cached per identifier.
//!
//! **Skipping what cannot matter.** A job that keeps no activity (CLV, surveys, earned
//! growth) reads only its purchase and survey events. Parsing an event costs far more than
//! reading it, so an entry whose bytes cannot hold one of those names is counted and
//! skipped unparsed ([`Prefilter`]); that makes such a job several times faster on a log
//! where those events are a small share.

use super::Progress;
use crate::EngineError;
use crate::profiles::{Profiles, identifier_key};
use rapport_core::event::{Event, EventType};
use rapport_core::identity::{Identifier, IdentifierKind};
use rapport_store::Store;
use rapport_value::survey::Metric;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const READ_BATCH: usize = 5_000;

/// What to keep from the log.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub purchase_event: String,
    pub revenue_property: String,
    pub survey_event: String,
    /// Keep activity timestamps (track, page, screen), support tickets and cancellations.
    pub activity: bool,
    pub support_events: Vec<String>,
    pub cancel_events: Vec<String>,
    /// Keep purchases.
    pub purchases: bool,
    /// Keep survey answers.
    pub answers: bool,
}

/// One `Survey Answered` event.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyAnswer {
    /// Unix seconds.
    pub timestamp: i64,
    pub survey: String,
    pub score: Option<f64>,
    pub reason: Option<String>,
}

/// One profile's history, timestamps in Unix seconds.
#[derive(Debug, Clone, Default)]
pub struct ProfileData {
    /// The live profile's traits when the job ran.
    pub traits: Arc<Map<String, Value>>,
    /// Earliest event of any kind.
    pub first_seen: Option<i64>,
    /// Track, page and screen events (unsorted).
    pub activity: Vec<i64>,
    /// `(timestamp, value)` of each purchase.
    pub purchases: Vec<(i64, f64)>,
    pub support: Vec<i64>,
    pub cancels: Vec<i64>,
    pub answers: Vec<SurveyAnswer>,
}

/// Timestamps in `(from_exclusive, to_inclusive]`.
pub fn count_between(ts: &[i64], from_exclusive: i64, to_inclusive: i64) -> usize {
    ts.iter()
        .filter(|&&t| t > from_exclusive && t <= to_inclusive)
        .count()
}

impl ProfileData {
    /// The score of the latest NPS answer at or before `as_of`.
    pub fn latest_nps(&self, as_of: i64) -> Option<f64> {
        self.answers
            .iter()
            .filter(|a| {
                a.timestamp <= as_of && Metric::from_survey_name(&a.survey) == Some(Metric::Nps)
            })
            .filter_map(|a| Some((a.timestamp, a.score?)))
            .max_by_key(|a| a.0)
            .map(|a| a.1)
    }
}

/// The result of a pass: profiles by live id (sorted, so every run is in the same order).
#[derive(Debug, Default)]
pub struct Collected {
    pub profiles: BTreeMap<String, ProfileData>,
    /// Events in the log up to the processor's offset (erased ones not counted).
    pub events_read: u64,
    /// Events of use to the job whose identifiers no profile holds (blocked values, or not
    /// processed). A job that keeps activity counts every event; one that does not counts
    /// only its purchase and survey events.
    pub unattributed: u64,
}

/// Which payloads may hold an event the job keeps, decided on raw bytes.
///
/// It never skips a kept event: a skipped payload contains none of the kept names verbatim
/// and no backslash, so no JSON escape can spell one of them either. It only lets through
/// payloads that turn out to be of no use, which the parsed path then ignores.
#[derive(Debug)]
pub(crate) struct Prefilter {
    /// `None`: every event is of use (the job keeps activity or first-seen times).
    names: Option<Vec<memchr::memmem::Finder<'static>>>,
}

impl Prefilter {
    pub(crate) fn new(wanted: &Wanted) -> Prefilter {
        if wanted.activity {
            return Prefilter { names: None };
        }
        let mut names = Vec::new();
        if wanted.purchases {
            names.push(wanted.purchase_event.as_str());
        }
        if wanted.answers {
            names.push(wanted.survey_event.as_str());
        }
        // A name that JSON writes escaped (quotes, backslashes, control characters) is not
        // found verbatim: read everything rather than guess its spelling.
        if names
            .iter()
            .any(|n| n.is_empty() || n.chars().any(|c| c == '"' || c == '\\' || c.is_control()))
        {
            return Prefilter { names: None };
        }
        Prefilter {
            names: Some(
                names
                    .into_iter()
                    .map(|n| memchr::memmem::Finder::new(n.as_bytes()).into_owned())
                    .collect(),
            ),
        }
    }

    /// Whether the payload may hold a kept event and must be parsed.
    pub(crate) fn may_keep(&self, payload: &[u8]) -> bool {
        match &self.names {
            None => true,
            Some(names) => {
                memchr::memchr(b'\\', payload).is_some()
                    || names.iter().any(|f| f.find(payload).is_some())
            }
        }
    }
}

/// An erased entry: the eraser overwrites a person's events with `{}`.
fn is_tombstone(payload: &[u8]) -> bool {
    payload.trim_ascii() == b"{}"
}

/// A live profile id and its traits.
type Holder = (Arc<str>, Arc<Map<String, Value>>);

/// Resolves identifiers to live profiles, remembering each answer.
struct Attributor<'a> {
    profiles: Profiles<'a>,
    /// Identifier key → live profile id and its traits.
    cache: HashMap<String, Option<Holder>>,
}

impl Attributor<'_> {
    fn lookup(&mut self, kind: IdentifierKind, value: &str) -> Result<Option<Holder>, EngineError> {
        let identifier = Identifier::new(kind, value);
        let key = identifier_key(&identifier);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit.clone());
        }
        let found = match self.profiles.holder(&identifier)? {
            Some(holder) => self
                .profiles
                .live(&holder)?
                .map(|r| (Arc::<str>::from(r.id.as_str()), Arc::new(r.traits.values()))),
            None => None,
        };
        self.cache.insert(key, found.clone());
        Ok(found)
    }

    fn profile_of(&mut self, e: &Event) -> Result<Option<Holder>, EngineError> {
        if let Some(u) = &e.user_id
            && let Some(hit) = self.lookup(IdentifierKind::UserId, u)?
        {
            return Ok(Some(hit));
        }
        if let Some(a) = &e.anonymous_id {
            return self.lookup(IdentifierKind::AnonymousId, a);
        }
        Ok(None)
    }
}

/// A number, or a string holding one (`"42.50"`), as stores often send.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// The value of a purchase: `revenue_property`, else `total`, else 0 (a purchase without a
/// value still counts as a purchase). Negative values (refund notes) count as 0.
pub fn purchase_value(properties: &Map<String, Value>, revenue_property: &str) -> f64 {
    properties
        .get(revenue_property)
        .and_then(number)
        .or_else(|| properties.get("total").and_then(number))
        .unwrap_or(0.0)
        .max(0.0)
}

fn properties(e: &Event) -> Map<String, Value> {
    e.properties
        .as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

/// Reads the log up to the processor's offset and gathers what `wanted` asks for.
pub fn collect(
    store: &dyn Store,
    wanted: &Wanted,
    progress: &Progress,
) -> Result<Collected, EngineError> {
    let upto = store.consumer_offset(crate::processor::CONSUMER)?;
    progress.phase("reading events", upto);
    let mut attributor = Attributor {
        profiles: Profiles { store },
        cache: HashMap::new(),
    };
    let mut out = Collected::default();
    let prefilter = Prefilter::new(wanted);
    let mut after = 0;
    while after < upto {
        progress.check()?;
        let entries = store.read_after(after, READ_BATCH)?;
        let Some(&(last, _)) = entries.last() else {
            break;
        };
        for (offset, payload) in entries {
            if offset > upto {
                break;
            }
            if !prefilter.may_keep(&payload) {
                out.events_read += u64::from(!is_tombstone(&payload));
                continue;
            }
            // Erased events (tombstones) do not parse and carry nothing to model.
            let Ok(e) = Event::from_json(&payload) else {
                continue;
            };
            out.events_read += 1;
            let Some((id, traits)) = attributor.profile_of(&e)? else {
                out.unattributed += 1;
                continue;
            };
            let data = out
                .profiles
                .entry(id.to_string())
                .or_insert_with(|| ProfileData {
                    traits,
                    ..ProfileData::default()
                });
            gather(data, &e, wanted);
        }
        progress.set(last.min(upto));
        after = last;
    }
    Ok(out)
}

fn gather(data: &mut ProfileData, e: &Event, wanted: &Wanted) {
    let t = e.timestamp.timestamp();
    data.first_seen = Some(data.first_seen.map_or(t, |f| f.min(t)));
    let is_activity = matches!(
        e.kind,
        EventType::Track | EventType::Page | EventType::Screen
    );
    if wanted.activity && is_activity {
        data.activity.push(t);
    }
    let Some(name) = e.event.as_deref().filter(|_| e.kind == EventType::Track) else {
        return;
    };
    if wanted.purchases && name == wanted.purchase_event {
        data.purchases
            .push((t, purchase_value(&properties(e), &wanted.revenue_property)));
    }
    if wanted.activity {
        if wanted.support_events.iter().any(|s| s == name) {
            data.support.push(t);
        }
        if wanted.cancel_events.iter().any(|s| s == name) {
            data.cancels.push(t);
        }
    }
    if wanted.answers && name == wanted.survey_event {
        let p = properties(e);
        let text = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        data.answers.push(SurveyAnswer {
            timestamp: t,
            survey: text("survey").unwrap_or_default(),
            score: p.get("score").and_then(number),
            reason: text("reason"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn purchase_values_fall_back_to_total_and_read_numeric_strings() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            purchase_value(&m(json!({"revenue": 12.5})), "revenue"),
            12.5
        );
        assert_eq!(
            purchase_value(&m(json!({"revenue": "7.25"})), "revenue"),
            7.25
        );
        assert_eq!(purchase_value(&m(json!({"total": 30})), "revenue"), 30.0);
        assert_eq!(purchase_value(&m(json!({"value": 3})), "value"), 3.0);
        assert_eq!(purchase_value(&m(json!({})), "revenue"), 0.0);
        assert_eq!(purchase_value(&m(json!({"revenue": -5})), "revenue"), 0.0);
    }

    fn kept(name: &str) -> Wanted {
        Wanted {
            purchase_event: name.into(),
            revenue_property: "revenue".into(),
            survey_event: "Survey Answered".into(),
            purchases: true,
            answers: true,
            ..Wanted::default()
        }
    }

    /// Every character written as a `\uXXXX` escape (surrogate pairs past the BMP).
    fn escaped(s: &str) -> String {
        let mut out = String::from("\"");
        for unit in s.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
        out
    }

    #[test]
    fn the_prefilter_skips_only_events_it_can_prove_are_of_no_use() {
        let f = Prefilter::new(&kept("Order Completed"));
        let page = br#"{"type":"page","name":"Home","anonymousId":"a"}"#;
        assert!(!f.may_keep(page));
        assert!(f.may_keep(br#"{"type":"track","event":"Order Completed"}"#));
        assert!(f.may_keep(br#"{"type":"track","event":"Survey Answered"}"#));
        // An escape anywhere means the name may be spelled differently: parse it.
        assert!(f.may_keep(br#"{"type":"track","event":"Order\u0020Completed"}"#));
        // Jobs that keep activity read everything.
        let all = Prefilter::new(&Wanted {
            activity: true,
            ..kept("Order Completed")
        });
        assert!(all.may_keep(page));
        // So does a name JSON would escape.
        assert!(Prefilter::new(&kept("say \"hi\"")).may_keep(page));
        assert!(is_tombstone(b"{}"));
        assert!(!is_tombstone(page));
    }

    proptest::proptest! {
        /// Whatever the name and however the payload spells it, an event the job keeps is
        /// never skipped.
        #[test]
        fn a_kept_event_is_never_skipped(name in "\\PC{1,24}", escape in proptest::bool::ANY, other in "[a-z ]{0,12}") {
            let f = Prefilter::new(&kept(&name));
            let spelled = if escape {
                escaped(&name)
            } else {
                serde_json::to_string(&name).unwrap()
            };
            let payload = format!(
                r#"{{"messageId":"m","type":"track","event":{spelled},"userId":"u","timestamp":"2024-01-01T00:00:00Z","receivedAt":"2024-01-01T00:00:00Z","sourceId":"s","properties":{{"note":"{other}"}}}}"#
            );
            let e = Event::from_json(payload.as_bytes()).unwrap();
            proptest::prop_assert_eq!(e.event.as_deref(), Some(name.as_str()));
            proptest::prop_assert!(f.may_keep(payload.as_bytes()));
        }
    }
}
