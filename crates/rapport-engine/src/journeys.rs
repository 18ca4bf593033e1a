//! Journeys in the store: their definitions and versions (written by the API, read by the
//! processor, which reloads them when their version counter moves), and what the processor
//! keeps of them — instances per profile, the durable timer index, entry bookkeeping,
//! flow counts, and the action feed that destinations deliver from.
//!
//! Decisions are taken by the processor (`processor/journeys.rs`) with the pure machine of
//! `rapport_journeys`, and committed in its atomic write with its log offset: a `kill -9`
//! resumes at the last committed batch and takes no decision twice.

use crate::EngineError;
use crate::audiences::definitions::Definitions;
use chrono::{DateTime, Utc};
use rapport_core::event::Event;
use rapport_journeys::JourneyEvent;
use rapport_journeys::machine::{Action, EntryContext};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::{Journey, LifecycleError};
use rapport_journeys::{CheckedJourney, JourneySpec};
use rapport_store::{StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Mutex;

/// Journey definitions with their versions: partition [`PART_JOURNEYS`], key the name,
/// value a JSON [`Journey`]; partition [`PART_META`] holds the version counter.
pub const NS_JOURNEY: &str = "journey.def";
/// Instances: partition the profile id, key `journey \0 instance`, value a JSON
/// `rapport_journeys::Instance`.
pub const NS_INSTANCE: &str = "journey.instance";
/// Re-entry bookkeeping: partition the profile id, key the journey, value a JSON
/// `rapport_journeys::EntryState`.
pub const NS_ENTRY: &str = "journey.entry";
/// The timer index: partition [`PART_DUE`], key [`timer_key`] (due time first, so the
/// processor pops due timers in order and never scans instances).
pub const NS_TIMER: &str = "journey.timer";
/// Per journey: entries so far, customers inside, the next instance number.
pub const NS_TOTALS: &str = "journey.totals";
/// Flow counts: partition the journey, key the version (big-endian u32), value a JSON
/// [`FlowStats`].
pub const NS_STATS: &str = "journey.stats";
/// The action feed: partition [`PART_FEED`], key a dense sequence (big-endian u64), value
/// a JSON [`JourneyAction`]; partition [`PART_META`] holds the last sequence.
pub const NS_ACTION: &str = "journey.action";

pub const PART_JOURNEYS: &str = "journeys";
pub const PART_META: &str = "meta";
pub const PART_DUE: &str = "due";
pub const PART_FEED: &str = "feed";
const KEY_VERSION: &[u8] = b"version";

/// Serialises definition changes within this process, so that version bumps never race.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

fn corrupt(e: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(format!("a journey record: {e}"))
}

/// A journey's counts across its versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyTotals {
    #[serde(flatten)]
    pub totals: rapport_journeys::Totals,
    /// The number the next instance gets.
    pub next_instance: u64,
}

/// An action a journey took that leaves Rapport (a message, an emitted event), as the
/// action feed holds it for the destinations to deliver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JourneyAction {
    pub seq: u64,
    pub journey: String,
    pub version: u32,
    pub instance: String,
    pub profile: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub action: Action,
    /// What put the customer in: templates read `entry.properties`.
    pub entry: EntryContext,
}

/// The timer key: due time (ms, sign-flipped big-endian so that order is time order), then
/// `profile \0 journey \0 instance`.
pub fn timer_key(due: DateTime<Utc>, profile: &str, instance_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + profile.len() + 1 + instance_key.len());
    k.extend_from_slice(&((due.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(profile.as_bytes());
    k.push(0);
    k.extend_from_slice(instance_key);
    k
}

/// The parts of a [`timer_key`]: due (ms), profile, instance key.
pub fn decode_timer_key(k: &[u8]) -> Option<(i64, String, Vec<u8>)> {
    let due = (u64::from_be_bytes(k.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64;
    let rest = &k[8..];
    let split = rest.iter().position(|b| *b == 0)?;
    let profile = String::from_utf8(rest[..split].to_vec()).ok()?;
    Some((due, profile, rest[split + 1..].to_vec()))
}

/// An instance's key within its profile's partition.
pub fn instance_key(journey: &str, instance: &str) -> Vec<u8> {
    let mut k = journey.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(instance.as_bytes());
    k
}

/// An event as the journey machine reads it (the processor and the preview share it).
pub fn journey_event(e: &Event) -> JourneyEvent {
    let history = crate::audiences::profile::history_event(e);
    let timezone = e
        .context
        .as_ref()
        .and_then(|c| serde_json::from_str::<Map<String, Value>>(c.get()).ok())
        .and_then(|c| c.get("timezone").and_then(Value::as_str).map(str::to_owned));
    JourneyEvent {
        message_id: e.message_id.clone(),
        timestamp: e.timestamp,
        event_type: history.event_type,
        event: history.event,
        properties: history.properties,
        timezone,
    }
}

/// Reads and changes journey definitions.
pub struct Journeys<'a> {
    pub store: &'a dyn StateStore,
}

impl Journeys<'_> {
    /// The version of all journey definitions together: it grows with every change.
    pub fn version(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .state_get(NS_JOURNEY, PART_META, KEY_VERSION)?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    pub fn list(&self) -> Result<Vec<Journey>, EngineError> {
        self.store
            .state_scan(NS_JOURNEY, PART_JOURNEYS)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Journey, EngineError> {
        self.find(name)?
            .ok_or_else(|| EngineError::NotFound(format!("no journey is named {name:?}")))
    }

    fn find(&self, name: &str) -> Result<Option<Journey>, EngineError> {
        self.store
            .state_get(NS_JOURNEY, PART_JOURNEYS, name.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// Checks `spec` against the segments and computed traits that exist now.
    pub fn check(&self, spec: &JourneySpec) -> Result<CheckedJourney, EngineError> {
        let schema = Definitions { store: self.store }.load()?.schema();
        rapport_journeys::check(spec, &schema).map_err(|errors| {
            let first = &errors[0];
            let more = match errors.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more: {})",
                    n - 1,
                    errors[1..]
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            EngineError::InvalidAt {
                field: first.field.clone(),
                message: format!("{}{more}", first.message),
            }
        })
    }

    /// Saves `spec` as the draft of its journey, creating the journey when it is new.
    /// Answers the journey and the draft's version.
    pub fn save_draft(
        &self,
        spec: JourneySpec,
        now: DateTime<Utc>,
    ) -> Result<(Journey, u32), EngineError> {
        self.check(&spec)?;
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let (journey, version) = match self.find(&spec.name)? {
            None => (Journey::new(spec, now), 1),
            Some(mut j) => {
                let v = j.save_draft(spec, now).map_err(conflict)?;
                (j, v)
            }
        };
        self.commit(&journey)?;
        Ok((journey, version))
    }

    /// Publishes the draft (checked again: a segment it reads may be gone).
    pub fn publish(&self, name: &str, now: DateTime<Utc>) -> Result<(Journey, u32), EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut journey = self.get(name)?;
        if let Some(draft) = journey.draft() {
            self.check(&draft.spec)?;
        }
        let v = journey.publish(now).map_err(conflict)?;
        self.commit(&journey)?;
        Ok((journey, v))
    }

    /// Pauses, resumes or archives the journey.
    pub fn lifecycle(
        &self,
        name: &str,
        step: impl FnOnce(&mut Journey) -> Result<(), LifecycleError>,
    ) -> Result<Journey, EngineError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut journey = self.get(name)?;
        step(&mut journey).map_err(conflict)?;
        self.commit(&journey)?;
        Ok(journey)
    }

    fn commit(&self, journey: &Journey) -> Result<(), EngineError> {
        let version = self.version()?;
        self.store.state_commit(
            &[
                StateWrite {
                    namespace: NS_JOURNEY.into(),
                    profile: PART_JOURNEYS.into(),
                    key: journey.name.as_bytes().to_vec(),
                    value: Some(serde_json::to_vec(journey).expect("journeys serialise")),
                },
                StateWrite {
                    namespace: NS_JOURNEY.into(),
                    profile: PART_META.into(),
                    key: KEY_VERSION.to_vec(),
                    value: Some((version + 1).to_be_bytes().to_vec()),
                },
            ],
            None,
        )?;
        Ok(())
    }

    /// The flow counts of each version of `name`, oldest first.
    pub fn stats(&self, name: &str) -> Result<Vec<(u32, FlowStats)>, EngineError> {
        self.store
            .state_scan(NS_STATS, name)?
            .into_iter()
            .map(|(k, v)| {
                let version = u32::from_be_bytes(k.as_slice().try_into().map_err(corrupt)?);
                Ok((version, serde_json::from_slice(&v).map_err(corrupt)?))
            })
            .collect()
    }

    /// A profile's instances of every journey (ended ones too), by journey then instance.
    pub fn instances(&self, profile: &str) -> Result<Vec<rapport_journeys::Instance>, EngineError> {
        self.store
            .state_scan(NS_INSTANCE, profile)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
            .collect()
    }

    /// One page of the action feed after sequence `after`.
    pub fn actions(&self, after: u64, limit: usize) -> Result<Vec<JourneyAction>, EngineError> {
        let from = after.to_be_bytes();
        self.store
            .state_scan_range(NS_ACTION, PART_FEED, Some(&from), limit)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
            .collect()
    }
}

fn conflict(e: LifecycleError) -> EngineError {
    EngineError::Conflict(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_time_and_read_back() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let a = timer_key(t("1969-12-31T00:00:00Z"), "p2", b"j\0i1");
        let b = timer_key(t("2026-01-01T00:00:00Z"), "p1", b"j\0i9");
        assert!(a < b);
        let (due, profile, key) = decode_timer_key(&b).unwrap();
        assert_eq!(due, t("2026-01-01T00:00:00Z").timestamp_millis());
        assert_eq!((profile.as_str(), key.as_slice()), ("p1", &b"j\0i9"[..]));
    }
}
