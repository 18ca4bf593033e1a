//! Computed traits and segments, kept current on every event.
//!
//! Definitions ([`definitions`]) are compiled into a [`Catalogue`]: every distinct event
//! aggregate the traits and segments read, once, with the segments in dependency order. Each
//! profile carries a [`ProfileAudience`] ([`profile`]): the incremental state of each
//! aggregate, its RFM summary, the computed trait values and its segment memberships. The
//! processor updates it for the event's profile, re-evaluates the segments whose inputs
//! changed, and records entering and leaving on the profile's timeline and on the audience
//! feed ([`store`]). Time alone also changes windowed aggregates: each profile is scheduled
//! for the instant its next window expires.
//!
//! Storage, keyed for a sharded backend by the id it is read by:
//! - `definition` / `computed_trait`|`segment`, name → the definition; `meta`, `version`;
//! - `audience` / profile id → [`ProfileAudience`] (JSON);
//! - `segment.member` / segment name, profile id → entered-at (ms);
//! - `segment.size` / segment name, hour (ms) → members at the end of that hour;
//! - `audience.feed` / `feed`, sequence → one [`AudienceChange`];
//! - `audience.schedule` / `due`, due time + profile id → (empty): the scheduler's queue;
//! - `audience.meta` / `state` → processor bookkeeping (feed sequence, sizes, backfill);
//! - `profile.all` / `all`, profile id → (empty): every live profile, for backfill.

pub mod definitions;
pub mod preview;
pub mod profile;
pub mod store;

use definitions::DefinitionSet;
use rapport_core::audience::{
    self, EventAggregate, EventField, EventFilter, EventLike, Expr, ExprKind, FilterOp, Path,
    Scalar, ScalarFunction,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use profile::{AudienceChange, ChangeKind, ProfileAudience};

/// Where the RFM summary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmSource {
    /// The track event that is a purchase.
    pub event: String,
    /// The property holding its value (falls back to `total`, then 0).
    pub revenue_property: String,
}

impl Default for RfmSource {
    fn default() -> Self {
        RfmSource {
            event: "Order Completed".into(),
            revenue_property: "revenue".into(),
        }
    }
}

impl RfmSource {
    fn fingerprint(&self) -> String {
        format!("{}\u{1f}{}", self.event, self.revenue_property)
    }
}

/// A computed trait, compiled.
#[derive(Debug, Clone)]
pub struct TraitSlot {
    pub name: String,
    pub aggregate: usize,
}

/// A segment, compiled.
#[derive(Debug, Clone)]
pub struct SegmentSlot {
    pub name: String,
    pub expr: Expr,
    /// Aggregates read directly or through computed traits.
    pub aggregates: Vec<usize>,
    /// Computed traits read (built-in and defined).
    pub computed: BTreeSet<String>,
    /// Segments read through `in_segment`.
    pub segments: BTreeSet<String>,
    /// Reads traits, identifiers, consent or accounts.
    pub reads_profile: bool,
    /// Changes with time in a way the aggregate windows do not announce (`days_since`,
    /// `since`, `ago`, `rfm_age`): re-evaluated by the periodic sweep.
    pub swept: bool,
}

/// Every definition, compiled for evaluation.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub version: u64,
    /// Distinct aggregates; the index is the aggregate's slot.
    pub aggregates: Vec<EventAggregate>,
    /// Stable storage key of each aggregate: a short digest of its canonical text.
    pub keys: Vec<String>,
    /// For each aggregate, the definitions version since which it has been defined without
    /// interruption: a profile evaluated at or after it holds the aggregate's state (absent
    /// means empty); an older profile must build it from its history.
    pub since: Vec<u64>,
    slot_of: HashMap<EventAggregate, usize>,
    pub traits: Vec<TraitSlot>,
    /// Dependency order: a segment comes after every segment it reads.
    pub segments: Vec<SegmentSlot>,
    /// Aggregates that can only match track events of one name.
    by_event: HashMap<String, Vec<usize>>,
    /// Aggregates that may match any event.
    unnamed: Vec<usize>,
    pub rfm: RfmSource,
    /// Whether any segment needs the periodic sweep.
    pub any_swept: bool,
    /// Whether any segment reads a value-model score.
    pub reads_scores: bool,
}

/// The event names a filter can match, if it can only match named track events.
fn required_names(filter: &EventFilter) -> Option<BTreeSet<String>> {
    match filter {
        EventFilter::Condition(c) if c.field == EventField::Name => match &c.op {
            FilterOp::Eq(Scalar::String(s)) => Some(BTreeSet::from([s.clone()])),
            FilterOp::In(items) => items
                .iter()
                .map(|i| match i {
                    Scalar::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        EventFilter::Nothing => Some(BTreeSet::new()),
        // Any conjunct that pins the name pins the whole conjunction.
        EventFilter::And(fs) => fs.iter().find_map(required_names),
        EventFilter::Or(fs) => fs.iter().try_fold(BTreeSet::new(), |mut acc, f| {
            acc.extend(required_names(f)?);
            Some(acc)
        }),
        _ => None,
    }
}

impl Catalogue {
    /// Compiles `set`. Definitions that no longer compile (which validation prevents) are
    /// skipped with a warning rather than stopping the processor.
    pub fn compile(set: &DefinitionSet, rfm: RfmSource) -> Catalogue {
        let mut c = Catalogue {
            version: set.version,
            rfm,
            ..Catalogue::default()
        };
        let mut trait_aggs: HashMap<String, usize> = HashMap::new();
        for def in set.traits.values() {
            match def.aggregate() {
                Ok(agg) => {
                    let slot = c.slot(agg);
                    trait_aggs.insert(def.name.clone(), slot);
                    c.traits.push(TraitSlot {
                        name: def.name.clone(),
                        aggregate: slot,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "computed trait skipped"),
            }
        }
        let schema = set.schema();
        let mut compiled = Vec::new();
        for def in set.segments.values() {
            match audience::compile(&def.expression, &schema, Some(&def.name)) {
                Ok(checked) => {
                    let mut computed = BTreeSet::new();
                    let mut reads_profile = false;
                    let mut swept = false;
                    checked.expr.walk(&mut |e| match &e.kind {
                        ExprKind::Path(Path::Computed(n)) => {
                            computed.insert(n.clone());
                        }
                        ExprKind::Path(
                            Path::Trait(_)
                            | Path::AccountTrait(_)
                            | Path::Identifier(_)
                            | Path::Consent(_),
                        ) => reads_profile = true,
                        ExprKind::Call {
                            function: ScalarFunction::HasIdentifier,
                            ..
                        } => reads_profile = true,
                        ExprKind::Call {
                            function:
                                ScalarFunction::Since | ScalarFunction::DaysSince | ScalarFunction::Ago,
                            ..
                        } => swept = true,
                        _ => {}
                    });
                    swept |= computed.contains("rfm_age");
                    let mut aggregates: Vec<usize> = checked
                        .aggregates
                        .iter()
                        .map(|a| c.slot(a.clone()))
                        .collect();
                    aggregates.extend(computed.iter().filter_map(|n| trait_aggs.get(n)));
                    aggregates.sort_unstable();
                    aggregates.dedup();
                    compiled.push(SegmentSlot {
                        name: def.name.clone(),
                        expr: checked.expr,
                        aggregates,
                        computed,
                        segments: checked.references,
                        reads_profile,
                        swept,
                    });
                }
                Err(e) => {
                    tracing::warn!(segment = %def.name, error = %e.render(&def.expression), "segment skipped")
                }
            }
        }
        c.segments = dependency_order(compiled);
        c.any_swept = c.segments.iter().any(|s| s.swept);
        c.reads_scores = c.segments.iter().any(|s| {
            s.computed
                .iter()
                .any(|n| definitions::SCORE_TRAITS.contains(&n.as_str()))
        });
        for (slot, agg) in c.aggregates.iter().enumerate() {
            match required_names(&agg.filter) {
                Some(names) => {
                    for n in names {
                        c.by_event.entry(n).or_default().push(slot);
                    }
                }
                None => c.unnamed.push(slot),
            }
        }
        c
    }

    fn slot(&mut self, agg: EventAggregate) -> usize {
        if let Some(&s) = self.slot_of.get(&agg) {
            return s;
        }
        let s = self.aggregates.len();
        self.keys.push(aggregate_key(&agg));
        self.since.push(0);
        self.slot_of.insert(agg.clone(), s);
        self.aggregates.push(agg);
        s
    }

    /// Records when each aggregate appeared, from and into `since` (aggregate key → version),
    /// which the processor keeps across restarts. Aggregates no longer defined are forgotten,
    /// so one defined again later counts as new.
    pub fn track_since(&mut self, since: &mut BTreeMap<String, u64>) {
        let current: BTreeSet<&String> = self.keys.iter().collect();
        since.retain(|k, _| current.contains(k));
        for (slot, key) in self.keys.iter().enumerate() {
            self.since[slot] = *since.entry(key.clone()).or_insert(self.version);
        }
    }

    pub fn slot_of(&self, agg: &EventAggregate) -> Option<usize> {
        self.slot_of.get(agg).copied()
    }

    /// The aggregates `event` counts for.
    pub fn matching<E: EventLike + ?Sized>(&self, event: &E) -> Vec<usize> {
        let named = event
            .event_name()
            .filter(|_| event.event_type() == "track")
            .and_then(|n| self.by_event.get(n));
        named
            .into_iter()
            .flatten()
            .chain(&self.unnamed)
            .copied()
            .filter(|&s| self.aggregates[s].filter.matches(event))
            .collect()
    }

    pub fn rfm_fingerprint(&self) -> String {
        self.rfm.fingerprint()
    }
}

/// A short, stable key for an aggregate: stored once per aggregate per profile, so it is a
/// digest of the canonical text rather than the text itself.
pub fn aggregate_key(agg: &EventAggregate) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(agg.to_string().as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Orders segments so that each follows the segments it reads (definitions are acyclic;
/// anything left in a cycle is appended as is).
fn dependency_order(mut pending: Vec<SegmentSlot>) -> Vec<SegmentSlot> {
    let names: BTreeSet<String> = pending.iter().map(|s| s.name.clone()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(pending.len());
    loop {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|s| {
            s.segments
                .iter()
                .all(|r| done.contains(r) || !names.contains(r))
        });
        for s in ready {
            done.insert(s.name.clone());
            out.push(s);
        }
        pending = rest;
        if pending.is_empty() || pending.len() == before {
            out.extend(pending);
            return out;
        }
    }
}
