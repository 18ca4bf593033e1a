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
use rapport_core::identity::ProfileId;
use rapport_destinations::payload::{JourneyMessage, Template, journey_message_body};
use rapport_journeys::ActionKind;
use rapport_journeys::JourneyEvent;
use rapport_journeys::caps::CapRule;
use rapport_journeys::definition::Entry;
use rapport_journeys::machine::{Action, EntryContext};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::version::{Journey, LifecycleError, Status};
use rapport_journeys::{CheckedJourney, FieldError, JourneySpec};
use rapport_store::{AppendItem, StateStore, StateWrite};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
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
/// Schedule entries: partition [`PART_JOURNEYS`], key the journey, value a JSON
/// [`ScheduleRun`] — the last run and the run in progress (paged over the segment's
/// members), written by the processor in its atomic commit.
pub const NS_SCHEDULE: &str = "journey.schedule";
/// The frequency caps in force across journeys: partition [`PART_SETTINGS`], key
/// [`KEY_CAPS`], value a JSON [`StoredCaps`], written by the processor when it applies a
/// [`CapsChange`] met in the log.
pub const NS_CAPS: &str = "journey.caps";
/// The messages each customer was sent, for the caps: partition the profile id, key
/// [`KEY_SENDS`], value a JSON `rapport_journeys::caps::SendLog`.
pub const NS_SENDS: &str = "journey.sends";
/// The index of active instances per journey and version, so that a migration finds the
/// instances of a version without scanning profiles: partition the journey, key
/// [`active_key`], value empty; kept by the processor with the instances.
pub const NS_ACTIVE: &str = "journey.active";
pub const PART_SETTINGS: &str = "settings";
pub const KEY_CAPS: &[u8] = b"caps";
pub const KEY_SENDS: &[u8] = b"log";

pub const PART_JOURNEYS: &str = "journeys";
pub const PART_META: &str = "meta";
pub const PART_DUE: &str = "due";
pub const PART_FEED: &str = "feed";
const KEY_VERSION: &[u8] = b"version";
/// Under [`PART_META`] of [`NS_ACTION`]: the last sequence number given to an action.
pub const KEY_ACTION_SEQ: &[u8] = b"seq";

/// Names a journey cannot take: they are routes under `/api/v1/journeys/`.
pub const RESERVED_NAMES: [&str; 2] = ["caps", "check"];

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
    /// A `send`'s message, made when the step was taken (so it carries the profile as it
    /// was then): the journey message body, or the step's template rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    /// Why the step's template could not render this message: its destination
    /// dead-letters it (reason `render`) instead of sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_error: Option<String>,
}

/// The message a `send` step delivers, or why its template cannot make it.
///
/// Without a template it is `rapport_destinations::payload::journey_message_body`; with
/// one, the template's output (which must be JSON) rendered over `profile` (`id`,
/// `traits`, `identifiers`), `entry` (`event`, `message_id`, `properties`), `journey`
/// (`name`, `version`, `step`, `instance`) and `message` (the body it replaces).
pub fn send_message(
    action: &JourneyAction,
    record: &crate::profiles::ProfileRecord,
    template: Option<&Template>,
) -> Result<Value, String> {
    let ActionKind::Send {
        tag, transactional, ..
    } = &action.action.kind
    else {
        return Err("only a send step makes a message".into());
    };
    let profile = crate::destinations::worker::profile_ref(record);
    let traits = record.traits.values();
    let entry = serde_json::to_value(&action.entry).expect("an entry serialises");
    let at = rapport_core::event::format_timestamp(&action.at);
    let body = journey_message_body(
        &profile,
        &JourneyMessage {
            journey: &action.journey,
            version: action.version,
            step: &action.action.node,
            instance: &action.instance,
            idempotency_key: &action.action.key,
            tag,
            transactional: *transactional,
            timestamp: &at,
            entry: &entry,
            traits: &traits,
        },
    );
    let Some(template) = template else {
        return Ok(body);
    };
    let context = Map::from_iter([
        (
            "profile".to_owned(),
            json!({"id": record.id.as_str(), "traits": traits, "identifiers": profile.identifiers}),
        ),
        ("entry".to_owned(), entry),
        (
            "journey".to_owned(),
            json!({"name": action.journey, "version": action.version,
                   "step": action.action.node, "instance": action.instance}),
        ),
        ("message".to_owned(), body),
    ]);
    let rendered = template
        .render_context(&context)
        .map_err(|e| match e.line {
            Some(line) => format!("{} (template line {line})", e.message),
            None => e.message,
        })?;
    serde_json::from_slice(&rendered).map_err(|e| format!("the rendered body is not JSON: {e}"))
}

/// An entry into a journey asked through the API (`POST /api/v1/journeys/{journey}/entries`),
/// as a control entry in the log: the processor enters the customer in log order with the
/// journey's live version at that point (`Trigger::Api`), under its re-entry rules, limits
/// and holdout, so that a replay takes the same decisions. The properties are the
/// instance's `entry.properties`, as an entry event's are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiEntry {
    /// Identifies the request.
    pub request: String,
    pub journey: String,
    /// The profile named when asked; the processor follows merges from it.
    pub profile: ProfileId,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    /// When it was asked.
    pub at: DateTime<Utc>,
    /// The admin key that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl ApiEntry {
    pub fn new(
        journey: &str,
        profile: ProfileId,
        properties: Map<String, Value>,
        at: DateTime<Utc>,
        requested_by: Option<String>,
    ) -> Self {
        ApiEntry {
            request: uuid::Uuid::new_v4().to_string(),
            journey: journey.to_owned(),
            profile,
            properties,
            at,
            requested_by,
        }
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/journey-entry/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&crate::identity::control::Control::JourneyEntry(
                self.clone(),
            ))
            .expect("control entries serialise"),
        }
    }
}

/// A change of the frequency caps across journeys (`PUT /api/v1/journeys/caps`), as a
/// control entry in the log: the processor puts the caps in force in log order, so that a
/// replay caps the same messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapsChange {
    pub request: String,
    pub caps: Vec<CapRule>,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl CapsChange {
    pub fn new(caps: Vec<CapRule>, at: DateTime<Utc>, changed_by: Option<String>) -> Self {
        CapsChange {
            request: uuid::Uuid::new_v4().to_string(),
            caps,
            at,
            changed_by,
        }
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/journey-caps/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&crate::identity::control::Control::JourneyCaps(
                self.clone(),
            ))
            .expect("control entries serialise"),
        }
    }
}

/// The caps in force, as the processor last put them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredCaps {
    pub caps: Vec<CapRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The log offset of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The request that set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

/// A migration of a journey's active instances from one version to another
/// (`POST /api/v1/journeys/{journey}/migrate`), as a control entry in the log: the
/// processor applies it in log order to every instance of `from_version` active at that
/// point, so a replay migrates the same customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRequest {
    pub request: String,
    pub journey: String,
    pub migration: rapport_journeys::version::Migration,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl MigrationRequest {
    pub fn new(
        journey: &str,
        migration: rapport_journeys::version::Migration,
        at: DateTime<Utc>,
        requested_by: Option<String>,
    ) -> Self {
        MigrationRequest {
            request: uuid::Uuid::new_v4().to_string(),
            journey: journey.to_owned(),
            migration,
            at,
            requested_by,
        }
    }

    pub fn append_item(&self) -> AppendItem {
        AppendItem {
            dedup_key: format!("\0rapport-control/journey-migration/{}", self.request).into_bytes(),
            payload: serde_json::to_vec(&crate::identity::control::Control::JourneyMigration(
                self.clone(),
            ))
            .expect("control entries serialise"),
        }
    }
}

/// The key of an active instance in [`NS_ACTIVE`]: version (big-endian), profile, `\0`,
/// instance key.
pub fn active_key(version: u32, profile: &str, instance_key: &[u8]) -> Vec<u8> {
    let mut k = version.to_be_bytes().to_vec();
    k.extend_from_slice(profile.as_bytes());
    k.push(0);
    k.extend_from_slice(instance_key);
    k
}

/// The version and profile of an [`active_key`].
pub fn decode_active_key(k: &[u8]) -> Option<(u32, String)> {
    let version = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let rest = &k[4..];
    let split = rest.iter().position(|b| *b == 0)?;
    Some((version, String::from_utf8(rest[..split].to_vec()).ok()?))
}

/// Checks a migration of `name` against its versions: both exist and are published
/// (errors name `from_version`, `to_version`), and every node a customer can be on has an
/// image (errors name `map.<node>`).
pub fn plan_for(
    journey: &Journey,
    m: &rapport_journeys::version::Migration,
) -> Result<rapport_journeys::version::MigrationPlan, EngineError> {
    use rapport_journeys::version::VersionState;
    let published = |n: u32, field: &'static str| match journey.version(n) {
        Some(v) if v.state != VersionState::Draft => Ok(v),
        Some(_) => Err(EngineError::Invalid {
            field,
            message: format!(
                "version {n} of {:?} is a draft: publish it first",
                journey.name
            ),
        }),
        None => Err(EngineError::Invalid {
            field,
            message: format!("{:?} has no version {n}", journey.name),
        }),
    };
    let from = published(m.from_version, "from_version")?;
    let to = published(m.to_version, "to_version")?;
    if m.from_version == m.to_version {
        return Err(EngineError::Invalid {
            field: "to_version",
            message: "`to_version` is `from_version`: nothing to migrate".into(),
        });
    }
    rapport_journeys::version::plan_migration(m, &from.spec, &to.spec).map_err(|errors| {
        let first = &errors[0];
        EngineError::InvalidAt {
            field: first.field.clone(),
            message: first.message.clone(),
        }
    })
}

/// Where a journey's schedule entry stands (`Entry::Schedule`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// The due time of the last run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DateTime<Utc>>,
    /// The due time of the run in progress, with the version it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<(DateTime<Utc>, u32)>,
    /// The last member (profile id) the run in progress has done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The latest due time of a schedule `starting + k·every` (k ≥ 0) at or before `now`, if
/// any: a schedule that missed several periods (the server was down) runs once, for the
/// latest.
pub fn latest_due(
    starting: DateTime<Utc>,
    every: chrono::TimeDelta,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if now < starting {
        return None;
    }
    let every_ms = every.num_milliseconds().max(1);
    let k = (now - starting).num_milliseconds() / every_ms;
    Some(starting + chrono::TimeDelta::milliseconds(k * every_ms))
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
/// What a definition is checked for ([`Journeys::problems_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckIntent {
    /// A journey of its own (`POST /api/v1/journeys`): its name must be free.
    #[default]
    Create,
    /// The next draft of the journey it names (`PUT /api/v1/journeys/{name}/draft`).
    Draft,
}

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

    /// Checks `spec` against the segments and computed traits that exist now, and its
    /// `send` steps against the destinations (one that exists, by id or name, and takes
    /// messages: a webhook).
    pub fn check(&self, spec: &JourneySpec) -> Result<CheckedJourney, EngineError> {
        let (checked, errors) = self.checked(spec)?;
        match checked {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(errors),
        }
        .map_err(|errors| {
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

    /// Every problem of `spec` that saving it would refuse, in the order [`Journeys::check`]
    /// reports them (empty: it can be saved).
    pub fn problems(&self, spec: &JourneySpec) -> Result<Vec<FieldError>, EngineError> {
        Ok(self.checked(spec)?.1)
    }

    /// [`Journeys::problems`], and first the one the save meant by `intent` would meet with
    /// the journey of that name: creating a journey whose name is taken (409 on
    /// `POST /api/v1/journeys`), or a draft of a journey that does not exist (404) or is
    /// archived (409). Each is reported at `name`.
    pub fn problems_for(
        &self,
        spec: &JourneySpec,
        intent: CheckIntent,
    ) -> Result<Vec<FieldError>, EngineError> {
        let mut errors = self.problems(spec)?;
        let name = &spec.name;
        let clash = match (intent, self.find(name)?) {
            (CheckIntent::Create, Some(_)) => Some(format!(
                "a journey named {name:?} exists: name this one otherwise, or check it as the next draft of {name:?}"
            )),
            (CheckIntent::Draft, None) => Some(format!(
                "no journey is named {name:?}: check it as a new journey, or name an existing one"
            )),
            (CheckIntent::Draft, Some(j)) if j.status == Status::Archived => Some(format!(
                "the journey {name:?} is archived: an archived journey takes no new draft"
            )),
            _ => None,
        };
        if let Some(message) = clash {
            errors.insert(
                0,
                FieldError {
                    field: "name".into(),
                    message,
                },
            );
        }
        Ok(errors)
    }

    fn checked(
        &self,
        spec: &JourneySpec,
    ) -> Result<(Option<CheckedJourney>, Vec<FieldError>), EngineError> {
        let mut errors = Vec::new();
        if RESERVED_NAMES.contains(&spec.name.as_str()) {
            errors.push(FieldError {
                field: "name".into(),
                message: format!(
                    "`{}` is reserved (/api/v1/journeys/{} is a route of its own): name the journey otherwise",
                    spec.name, spec.name
                ),
            });
        }
        let schema = Definitions { store: self.store }.load()?.schema();
        let checked = match rapport_journeys::check(spec, &schema) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        errors.extend(self.check_sends(spec)?);
        Ok((checked, errors))
    }

    fn check_sends(&self, spec: &JourneySpec) -> Result<Vec<FieldError>, EngineError> {
        let destinations = crate::destinations::list(self.store)?;
        let mut errors = Vec::new();
        for (id, node) in &spec.nodes {
            let rapport_journeys::Node::Send(send) = node else {
                continue;
            };
            let error = |field: &str, message: String| FieldError {
                field: format!("nodes.{id}.{field}"),
                message,
            };
            match destinations
                .iter()
                .find(|d| d.id == send.destination || d.spec.name == send.destination)
            {
                None => errors.push(error(
                    "destination",
                    format!(
                        "no destination is named {:?} (create it first; a send names a destination by name or id)",
                        send.destination
                    ),
                )),
                Some(d) if !matches!(d.spec.kind, rapport_destinations::Kind::Webhook { .. }) => {
                    errors.push(error(
                        "destination",
                        format!(
                            "{:?} is not a webhook: a send goes to a webhook destination (forward and warehouse destinations take events; an `emit` step logs one)",
                            send.destination
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(errors)
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

    /// Whether `name` takes entries through the API now: it exists (else `NotFound`), has a
    /// live version whose entry is `api` (else `Invalid` naming `entry`) and is neither
    /// paused nor archived (else `Conflict`). The processor decides again in log order.
    pub fn check_api_entry(&self, name: &str) -> Result<(), EngineError> {
        let journey = self.get(name)?;
        let Some(live) = journey.live() else {
            return Err(EngineError::Conflict(format!(
                "journey {name:?} has no published version: publish it first"
            )));
        };
        if !matches!(live.spec.entry, Entry::Api) {
            let kind = serde_json::to_value(&live.spec.entry)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Err(EngineError::Invalid {
                field: "entry",
                message: format!(
                    "journey {name:?} (version {}) is entered by `{kind}`, not through the API: its entry is not `{{\"type\": \"api\"}}`",
                    live.version
                ),
            });
        }
        if !journey.takes_entries() {
            return Err(EngineError::Conflict(format!(
                "journey {name:?} is paused or archived: it takes no entries"
            )));
        }
        Ok(())
    }

    /// The frequency caps in force (none until a change was applied).
    pub fn caps(&self) -> Result<StoredCaps, EngineError> {
        Ok(self
            .store
            .state_get(NS_CAPS, PART_SETTINGS, KEY_CAPS)?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()?
            .unwrap_or_default())
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

    /// The action feed's last sequence number (0 before the first action).
    pub fn last_action_seq(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .state_get(NS_ACTION, PART_META, KEY_ACTION_SEQ)?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
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
    fn a_schedule_is_due_at_its_latest_period_only() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let start = t("2026-03-02T08:00:00Z");
        let day = chrono::TimeDelta::days(1);
        assert_eq!(latest_due(start, day, t("2026-03-02T07:59:59Z")), None);
        assert_eq!(latest_due(start, day, start), Some(start));
        assert_eq!(
            latest_due(start, day, t("2026-03-05T09:00:00Z")),
            Some(t("2026-03-05T08:00:00Z")),
            "three missed periods: one run, for the last"
        );
    }

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
