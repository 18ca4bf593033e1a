//! A journey version run over a past range of the log, to see before publishing it how many
//! customers would have entered, passed each step, converted and been messaged. Nothing is
//! written to the store and no action leaves Rapport: the run is the pure crate's [`Sim`],
//! in memory, with a clock that is the log's own receive times.
//!
//! What it reads:
//! - the log entries received in `[from, to)` — found by binary search over offsets (offsets
//!   are dense and receive times grow with them, but for requests appended in one group
//!   commit, which the slack of [`SLACK`] covers), each event taken at its receive time, as
//!   the processor takes it at its clock;
//! - when the journey enters on a segment, that segment's entries and exits in the audience
//!   feed within the range, at the time they were decided (the feed is dense by sequence
//!   and in time order, so it is binary-searched too);
//! - each customer **as resolved now**: an event goes to the profile that holds its user id
//!   (else its anonymous id) today, and conditions read the profile's traits, computed
//!   traits, segments and consent as they are now, not as they were then. Events not yet
//!   applied by the processor go to a profile of their own, with nothing known of it.
//!
//! Timers fire up to `to`; those waiting then are counted where they wait. Entries by API
//! call or by schedule are not replayed (nothing in the log records them); the answer's
//! notes say so.

use crate::EngineError;
use crate::audiences::ChangeKind;
use crate::audiences::store::Audiences;
use crate::dead_letters::{Entry as LogEntry, read_entry};
use crate::journeys::{Journeys, journey_event};
use crate::profiles::{Profiles, parse_reference};
use chrono::{DateTime, TimeDelta, Utc};
use rapport_core::audience::ProfileSnapshot;
use rapport_core::event::Event;
use rapport_core::identity::ProfileId;
use rapport_journeys::definition::Entry;
use rapport_journeys::sim::{Record, Sim, SimInput, What};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::VersionState;
use rapport_journeys::{ActionKind, Decision};
use rapport_store::{Offset, Store};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The longest range a preview covers.
pub const MAX_RANGE: TimeDelta = TimeDelta::days(90);
/// The most log entries and audience changes one preview reads.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// How far receive times may run out of offset order (requests appended in one group
/// commit): the search starts this much earlier and ends this much later, and filters.
const SLACK: TimeDelta = TimeDelta::seconds(60);
const PAGE: usize = 1000;

/// What a preview is asked.
#[derive(Clone, Debug)]
pub struct PreviewRequest {
    /// The version to run; `None`: the draft, else the live version.
    pub version: Option<u32>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What the version would have done over the range.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preview {
    pub journey: String,
    pub version: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Log entries read (events and others) and audience feed changes read.
    pub log_entries_read: u64,
    pub events: u64,
    pub segment_changes: u64,
    /// Customers the events and changes were about.
    pub profiles: u64,
    /// The flow, as `GET …/flow` counts it; `waiting` is at `to`.
    pub flow: FlowStats,
    /// Messages that would have been sent, by destination.
    pub messages: BTreeMap<String, u64>,
    /// Events that would have been emitted, by name.
    pub emitted: BTreeMap<String, u64>,
    /// Trait changes (`set_trait`, `remove_trait`) that would have been made.
    pub trait_changes: u64,
    /// Messages not sent, by reason (`consent`, `capped`, `quiet_hours`).
    pub skipped: BTreeMap<String, u64>,
    /// The approximations that apply to this run, in words.
    pub notes: Vec<String>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field,
        message: message.into(),
    }
}

/// Runs `request` over `name`'s version; `now` bounds `to`.
pub fn preview(
    store: &dyn Store,
    name: &str,
    request: &PreviewRequest,
    now: DateTime<Utc>,
) -> Result<Preview, EngineError> {
    preview_within(store, name, request, now, MAX_ENTRIES)
}

/// [`preview`], reading at most `max_entries` log entries and audience changes.
pub fn preview_within(
    store: &dyn Store,
    name: &str,
    request: &PreviewRequest,
    now: DateTime<Utc>,
    max_entries: u64,
) -> Result<Preview, EngineError> {
    let journeys = Journeys { store };
    let journey = journeys.get(name)?;
    let version = match request.version {
        Some(n) => journey.version(n).ok_or_else(|| {
            let known: Vec<String> = journey
                .versions
                .iter()
                .map(|v| v.version.to_string())
                .collect();
            invalid(
                "version",
                format!(
                    "journey {name:?} has no version {n} (it has {})",
                    known.join(", ")
                ),
            )
        })?,
        None => journey
            .versions
            .iter()
            .rev()
            .find(|v| v.state == VersionState::Draft)
            .or_else(|| journey.live())
            .ok_or_else(|| {
                invalid(
                    "version",
                    format!("journey {name:?} has neither a draft nor a live version: name one"),
                )
            })?,
    };
    let (from, to) = (request.from, request.to);
    if to > now {
        return Err(invalid(
            "to",
            format!("`to` is in the future; a preview runs over the past, up to now ({now})"),
        ));
    }
    if from >= to {
        return Err(invalid("from", "`from` must be before `to`"));
    }
    if to - from > MAX_RANGE {
        return Err(invalid(
            "from",
            format!(
                "the range is longer than {} days: narrow `from`..`to`",
                MAX_RANGE.num_days()
            ),
        ));
    }
    let checked = journeys.check(&version.spec)?;
    let mut out = Preview {
        journey: journey.name.clone(),
        version: version.version,
        from,
        to,
        ..Preview::default()
    };
    out.notes.push(
        "customers are resolved as they are now: events go to the profile that holds their \
         identifiers today, and conditions read today's traits, computed traits, segments \
         and consent"
            .into(),
    );
    let caps = Journeys { store }.caps()?.caps;
    if !caps.is_empty() {
        out.notes.push(
            "the frequency caps in force now are applied to this journey's messages alone: \
             messages of other journeys do not count towards them"
                .into(),
        );
    }

    // What happened, in time order: events by receive time, segment changes by the time
    // they were decided (events first at one moment, as the processor enters on a segment
    // after the event that caused it).
    let mut inputs: Vec<(DateTime<Utc>, u8, String, What)> = Vec::new();
    let mut resolver = Resolver {
        profiles: Profiles { store },
        by_identifier: HashMap::new(),
    };
    let (first, end) = (
        first_offset_at(store, from - SLACK)?,
        first_offset_at(store, to + SLACK)?,
    );
    let count = end.saturating_sub(first);
    if count > max_entries {
        return Err(invalid(
            "from",
            format!(
                "the range holds about {count} log entries, more than the {max_entries} a preview reads: narrow `from`..`to`"
            ),
        ));
    }
    let mut after = first.saturating_sub(1);
    'log: while after + 1 < end {
        let page = store.read_after(after, PAGE)?;
        if page.is_empty() {
            break;
        }
        for (offset, payload) in page {
            if offset >= end {
                break 'log;
            }
            after = offset;
            out.log_entries_read += 1;
            let LogEntry::Event(e) = read_entry(&payload) else {
                continue;
            };
            if e.received_at < from || e.received_at >= to {
                continue;
            }
            let Some(profile) = resolver.profile_of(&e)? else {
                continue;
            };
            out.events += 1;
            inputs.push((e.received_at, 0, profile, What::Event(journey_event(&e))));
        }
    }
    match &checked.spec.entry {
        Entry::SegmentEntered { segment } => {
            let budget = max_entries - count;
            segment_changes(store, segment, from, to, budget, &mut resolver, &mut inputs)?;
        }
        Entry::Api => out.notes.push(
            "the journey enters by API call, whose entries the preview does not replay: no one \
             enters"
                .into(),
        ),
        Entry::Schedule { .. } => out
            .notes
            .push("the journey enters on a schedule, which is not replayed: no one enters".into()),
        Entry::Event { .. } => {}
    }
    out.segment_changes = inputs.iter().filter(|i| i.1 == 1).count() as u64;
    inputs.sort_by_key(|a| (a.0, a.1));

    let mut sim = Sim::new(checked, version.version, caps);
    let mut records: Vec<Record> = Vec::new();
    for (at, _, profile, what) in inputs {
        if !sim.state.profiles.contains_key(&profile) {
            let snapshot = snapshot_now(store, &profile)?;
            sim.state.profiles.insert(profile.clone(), snapshot);
        }
        records.extend(sim.feed(&SimInput { at, profile, what }));
    }
    records.extend(sim.fire_until(to));
    out.profiles = sim.state.profiles.len() as u64;

    for r in &records {
        out.flow.add(&r.decision);
        if let Decision::Act(a) = &r.decision {
            match &a.kind {
                ActionKind::Send { destination, .. } => {
                    *out.messages.entry(destination.clone()).or_default() += 1
                }
                ActionKind::Emit { event, .. } => {
                    *out.emitted.entry(event.clone()).or_default() += 1
                }
                ActionKind::SetTrait { .. } | ActionKind::RemoveTrait { .. } => {
                    out.trait_changes += 1
                }
            }
        }
    }
    for node in out.flow.nodes.values() {
        for (reason, n) in &node.skipped {
            *out.skipped.entry(reason.clone()).or_default() += n;
        }
    }
    Ok(out)
}

/// Maps identifiers and past profile ids to the profile that holds them now.
struct Resolver<'a> {
    profiles: Profiles<'a>,
    by_identifier: HashMap<String, String>,
}

impl Resolver<'_> {
    /// The profile an event belongs to now: the holder of its user id, else of its
    /// anonymous id; an event no profile holds yet (not processed) gets its own key.
    fn profile_of(&mut self, e: &Event) -> Result<Option<String>, EngineError> {
        let reference = match (&e.user_id, &e.anonymous_id) {
            (Some(u), _) if !u.trim().is_empty() => format!("user_id:{u}"),
            (_, Some(a)) if !a.trim().is_empty() => format!("anonymous_id:{a}"),
            _ => return Ok(None),
        };
        if let Some(p) = self.by_identifier.get(&reference) {
            return Ok(Some(p.clone()));
        }
        let found = match parse_reference(&reference) {
            Ok(Err(identifier)) => match self.profiles.holder(&identifier)? {
                Some(id) => self.profiles.live(&id)?.map(|r| r.id.as_str().to_owned()),
                None => None,
            },
            _ => None,
        };
        let p = found.unwrap_or_else(|| reference.clone());
        self.by_identifier.insert(reference, p.clone());
        Ok(Some(p))
    }

    /// The live profile a past profile id became (after merges).
    fn live(&mut self, id: &str) -> Result<String, EngineError> {
        if let Some(p) = self.by_identifier.get(id) {
            return Ok(p.clone());
        }
        let p = self
            .profiles
            .live(&ProfileId::new(id.to_owned()))?
            .map_or_else(|| id.to_owned(), |r| r.id.as_str().to_owned());
        self.by_identifier.insert(id.to_owned(), p.clone());
        Ok(p)
    }
}

/// The profile as conditions read it now: traits, computed traits, segments, consent,
/// identifiers, accounts. A profile the store does not hold is empty.
fn snapshot_now(store: &dyn Store, profile: &str) -> Result<ProfileSnapshot, EngineError> {
    let profiles = Profiles { store };
    let Some(record) = profiles.record(&ProfileId::new(profile.to_owned()))? else {
        return Ok(ProfileSnapshot::default());
    };
    let mut s = ProfileSnapshot {
        traits: record.traits.values(),
        consent: record
            .consent
            .purposes
            .keys()
            .map(|p| (p.clone(), record.consent.granted(p)))
            .collect(),
        ..ProfileSnapshot::default()
    };
    for i in &record.identifiers {
        s.identifiers
            .entry(i.identifier.kind.as_str().to_owned())
            .or_default()
            .push(i.identifier.value.clone());
    }
    for a in &record.accounts {
        if let Some(account) = profiles.account(a)? {
            s.accounts.push(Value::Object(account.traits.values()));
        }
    }
    if let Some(audience) = (Audiences { store }).profile(profile)? {
        s.computed = audience.values;
        s.segments = audience.segments.into_keys().collect();
    }
    Ok(s)
}

/// The first offset from which every event was received at or after `at` (one past the
/// last offset when none is).
fn first_offset_at(store: &dyn Store, at: DateTime<Utc>) -> Result<Offset, EngineError> {
    let last = store.last_offset()?;
    let (mut lo, mut hi) = (1, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match received_from(store, mid, hi)? {
            Some((_, r)) if r >= at => hi = mid,
            Some((o, _)) => lo = o + 1,
            None => hi = mid,
        }
    }
    Ok(lo)
}

/// The first event at or after `offset` (and before `end`): its offset and receive time.
fn received_from(
    store: &dyn Store,
    offset: Offset,
    end: Offset,
) -> Result<Option<(Offset, DateTime<Utc>)>, EngineError> {
    let mut after = offset - 1;
    while after + 1 < end {
        let page = store.read_after(after, 64)?;
        if page.is_empty() {
            return Ok(None);
        }
        for (o, payload) in page {
            if o >= end {
                return Ok(None);
            }
            after = o;
            if let LogEntry::Event(e) = read_entry(&payload) {
                return Ok(Some((o, e.received_at)));
            }
        }
    }
    Ok(None)
}

/// The entry segment's changes in `[from, to)` from the audience feed, at most `budget`
/// read.
fn segment_changes(
    store: &dyn Store,
    segment: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    budget: u64,
    resolver: &mut Resolver<'_>,
    inputs: &mut Vec<(DateTime<Utc>, u8, String, What)>,
) -> Result<(), EngineError> {
    let audiences = Audiences { store };
    let last = audiences.meta()?.feed_seq;
    let at_seq = |seq: u64| -> Result<Option<DateTime<Utc>>, EngineError> {
        Ok(audiences.feed(seq - 1, 1)?.first().map(|c| c.at))
    };
    // The first sequence decided at or after `from`.
    let (mut lo, mut hi) = (1, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at_seq(mid)? {
            Some(at) if at >= from => hi = mid,
            Some(_) => lo = mid + 1,
            None => hi = mid,
        }
    }
    let mut after = lo.saturating_sub(1);
    let mut read = 0;
    loop {
        let page = audiences.feed(after, PAGE)?;
        if page.is_empty() {
            return Ok(());
        }
        for c in page {
            after = c.seq;
            if c.at >= to {
                return Ok(());
            }
            read += 1;
            if read > budget {
                return Err(invalid(
                    "from",
                    "the range holds more log entries and segment changes than a preview reads: narrow `from`..`to`",
                ));
            }
            if c.segment != segment || c.at < from {
                continue;
            }
            let profile = resolver.live(&c.profile)?;
            let what = match c.change {
                ChangeKind::Entered => What::SegmentEntered(c.segment),
                ChangeKind::Exited => What::SegmentExited(c.segment),
            };
            inputs.push((c.at, 1, profile, what));
        }
    }
}
