//! A journey's versions and their lifecycle, and the explicit migration of customers from
//! one version to another.
//!
//! A journey is a list of numbered versions. At most one is a `draft`, editable; publishing
//! it makes it the `live` version, the one new entries get, and the version live before
//! it `retired`: customers inside keep the version they entered with and run it out, but no
//! one enters it any more. A published version is never edited. The journey as a whole can
//! be paused (no entries, and customers inside hold where they are until it is resumed)
//! and archived (everyone inside exits with reason `archived`; for good).

use crate::check::FieldError;
use crate::definition::{JourneySpec, Node, NodeId};
use crate::machine::Instance;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Draft,
    Live,
    Retired,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub state: VersionState,
    pub spec: JourneySpec,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<DateTime<Utc>>,
}

/// Where the journey as a whole stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Never published.
    #[default]
    Draft,
    Active,
    Paused,
    Archived,
}

/// A journey: its versions, oldest first, and its status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    pub name: String,
    pub status: Status,
    pub versions: Vec<Version>,
}

/// A lifecycle step that the journey's state does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("the journey is archived: nothing can change it")]
    Archived,
    #[error("there is no draft to publish: save a draft first")]
    NoDraft,
    #[error("version {0} is published and cannot be edited: save a new draft")]
    Published(u32),
    #[error("the journey was never published")]
    NeverPublished,
    #[error("the journey is {0}")]
    Already(&'static str),
    #[error("the draft's name {found:?} is not the journey's {expected:?}")]
    Renamed { expected: String, found: String },
    #[error("no version {0}")]
    NoVersion(u32),
}

impl Journey {
    /// A new journey whose first version is the draft `spec`.
    pub fn new(spec: JourneySpec, now: DateTime<Utc>) -> Journey {
        Journey {
            name: spec.name.clone(),
            status: Status::Draft,
            versions: vec![Version {
                version: 1,
                state: VersionState::Draft,
                spec,
                created_at: now,
                published_at: None,
            }],
        }
    }

    /// The version new entries get.
    pub fn live(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.state == VersionState::Live)
    }

    pub fn draft(&self) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Draft)
    }

    pub fn version(&self, n: u32) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == n)
    }

    /// Whether customers may enter now.
    pub fn takes_entries(&self) -> bool {
        self.status == Status::Active && self.live().is_some()
    }

    /// Saves `spec` as the draft: replaces the draft there is, or starts a new version.
    /// Answers the draft's version number.
    pub fn save_draft(
        &mut self,
        spec: JourneySpec,
        now: DateTime<Utc>,
    ) -> Result<u32, LifecycleError> {
        if self.status == Status::Archived {
            return Err(LifecycleError::Archived);
        }
        if spec.name != self.name {
            return Err(LifecycleError::Renamed {
                expected: self.name.clone(),
                found: spec.name,
            });
        }
        if let Some(d) = self
            .versions
            .iter_mut()
            .find(|v| v.state == VersionState::Draft)
        {
            d.spec = spec;
            d.created_at = now;
            return Ok(d.version);
        }
        let version = self.versions.last().map_or(1, |v| v.version + 1);
        self.versions.push(Version {
            version,
            state: VersionState::Draft,
            spec,
            created_at: now,
            published_at: None,
        });
        Ok(version)
    }

    /// Publishes the draft: it becomes live, the live version before it retires. A draft
    /// journey becomes active; a paused one stays paused.
    pub fn publish(&mut self, now: DateTime<Utc>) -> Result<u32, LifecycleError> {
        if self.status == Status::Archived {
            return Err(LifecycleError::Archived);
        }
        let Some(i) = self
            .versions
            .iter()
            .position(|v| v.state == VersionState::Draft)
        else {
            return Err(LifecycleError::NoDraft);
        };
        for v in &mut self.versions {
            if v.state == VersionState::Live {
                v.state = VersionState::Retired;
            }
        }
        let v = &mut self.versions[i];
        v.state = VersionState::Live;
        v.published_at = Some(now);
        if self.status == Status::Draft {
            self.status = Status::Active;
        }
        Ok(v.version)
    }

    pub fn pause(&mut self) -> Result<(), LifecycleError> {
        match self.status {
            Status::Archived => Err(LifecycleError::Archived),
            Status::Draft => Err(LifecycleError::NeverPublished),
            Status::Paused => Err(LifecycleError::Already("paused")),
            Status::Active => {
                self.status = Status::Paused;
                Ok(())
            }
        }
    }

    pub fn resume(&mut self) -> Result<(), LifecycleError> {
        match self.status {
            Status::Archived => Err(LifecycleError::Archived),
            Status::Draft => Err(LifecycleError::NeverPublished),
            Status::Active => Err(LifecycleError::Already("active")),
            Status::Paused => {
                self.status = Status::Active;
                Ok(())
            }
        }
    }

    /// Archives the journey; the caller ends every instance with reason `archived`.
    pub fn archive(&mut self) -> Result<(), LifecycleError> {
        if self.status == Status::Archived {
            return Err(LifecycleError::Already("archived"));
        }
        self.status = Status::Archived;
        Ok(())
    }
}

/// Which node of the new version each node of the old one maps to. Nodes absent from the
/// map keep their name, when the new version has a node of that name and the same kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub from_version: u32,
    pub to_version: u32,
    #[serde(default)]
    pub map: BTreeMap<NodeId, NodeId>,
}

/// A checked migration: the image of every node an instance may wait on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationPlan {
    pub from_version: u32,
    pub to_version: u32,
    pub image: BTreeMap<NodeId, NodeId>,
}

/// Checks `m` between the two versions' definitions: every node of `from` where a customer
/// can be (the waiting nodes, and `send` nodes held by quiet hours) needs an image in `to`
/// of a kind that can hold them. Errors name `map.<node>`.
pub fn plan_migration(
    m: &Migration,
    from: &JourneySpec,
    to: &JourneySpec,
) -> Result<MigrationPlan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut image = BTreeMap::new();
    for old in m.map.keys() {
        if !from.nodes.contains_key(old) {
            errors.push(FieldError {
                field: format!("map.{old}"),
                message: format!("version {} has no node named {old:?}", m.from_version),
            });
        }
    }
    for (id, node) in &from.nodes {
        if !(node.waits() || matches!(node, Node::Send(_))) {
            continue;
        }
        let target = m.map.get(id).unwrap_or(id);
        match to.nodes.get(target) {
            Some(new) if new.kind() == node.kind() || new.waits() => {
                image.insert(id.clone(), target.clone());
            }
            Some(new) => errors.push(FieldError {
                field: format!("map.{id}"),
                message: format!(
                    "{id} is a {} node and version {}'s {target} is of kind {}: map it to a node where a customer can wait",
                    node.kind(),
                    m.to_version,
                    new.kind()
                ),
            }),
            None => errors.push(FieldError {
                field: format!("map.{id}"),
                message: format!(
                    "customers can be on {id}, and version {} has no node of that name: map it",
                    m.to_version
                ),
            }),
        }
    }
    if errors.is_empty() {
        Ok(MigrationPlan {
            from_version: m.from_version,
            to_version: m.to_version,
            image,
        })
    } else {
        Err(errors)
    }
}

/// Moves an instance of the plan's old version to its new version. The customer keeps the
/// time spent on their node and the timer the old version set (a 4-hour wait mapped to a
/// 2-hour one still ends 4 hours after it began); what happens next is the new version's.
/// Answers whether the instance was moved.
pub fn migrate(plan: &MigrationPlan, instance: &mut Instance) -> bool {
    if instance.version != plan.from_version || !instance.is_active() {
        return false;
    }
    match plan.image.get(&instance.node) {
        Some(node) => {
            instance.node = node.clone();
            instance.version = plan.to_version;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::EntryContext;

    fn spec(nodes: serde_json::Value) -> JourneySpec {
        serde_json::from_value(serde_json::json!({
            "name": "j", "entry": {"type": "api"}, "start": "a", "nodes": nodes
        }))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_journey_goes_from_draft_to_live_and_a_new_version_retires_the_old() {
        let v1 = spec(serde_json::json!({"a": {"type": "wait", "duration": "1d"}}));
        let mut j = Journey::new(v1.clone(), now());
        assert!(!j.takes_entries());
        assert_eq!(j.pause(), Err(LifecycleError::NeverPublished));
        assert_eq!(j.publish(now()), Ok(1));
        assert!(j.takes_entries());
        assert_eq!(j.publish(now()), Err(LifecycleError::NoDraft));
        assert_eq!(j.save_draft(v1.clone(), now()), Ok(2));
        assert_eq!(j.save_draft(v1.clone(), now()), Ok(2), "one draft, edited");
        assert_eq!(j.live().unwrap().version, 1, "the draft is not live");
        j.pause().unwrap();
        assert!(!j.takes_entries());
        assert_eq!(j.publish(now()), Ok(2));
        assert_eq!(j.status, Status::Paused, "publishing does not resume");
        assert_eq!(j.version(1).unwrap().state, VersionState::Retired);
        j.resume().unwrap();
        assert_eq!(j.live().unwrap().version, 2);
        let mut renamed = v1.clone();
        renamed.name = "k".into();
        assert!(matches!(
            j.save_draft(renamed, now()),
            Err(LifecycleError::Renamed { .. })
        ));
        j.archive().unwrap();
        assert_eq!(j.save_draft(v1, now()), Err(LifecycleError::Archived));
        assert!(!j.takes_entries());
    }

    #[test]
    fn a_migration_needs_an_image_for_every_node_a_customer_can_be_on() {
        let from = spec(serde_json::json!({
            "a": {"type": "wait", "duration": "1d", "next": "b"},
            "b": {"type": "wait_for_event", "timeout": "1d",
                  "branches": [{"condition": "event == \"X\""}]},
        }));
        let to = spec(serde_json::json!({
            "a": {"type": "wait", "duration": "2d", "next": "c"},
            "c": {"type": "set_trait", "trait": "t", "value": 1, "next": "d"},
            "d": {"type": "wait", "duration": "1h"},
        }));
        let plain = Migration {
            from_version: 1,
            to_version: 2,
            map: BTreeMap::new(),
        };
        let e = plan_migration(&plain, &from, &to).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "map.b");
        let mut to_c = plain.clone();
        to_c.map.insert("b".into(), "c".into());
        let e = plan_migration(&to_c, &from, &to).unwrap_err();
        assert!(e[0].message.contains("set_trait"), "{e:?}");
        let mut good = plain.clone();
        good.map.insert("b".into(), "d".into());
        let plan = plan_migration(&good, &from, &to).unwrap();
        assert_eq!(plan.image["a"], "a");
        assert_eq!(plan.image["b"], "d");

        let mut inst = Instance {
            id: "i1".into(),
            journey: "j".into(),
            version: 1,
            profile: "p".into(),
            node: "b".into(),
            entered_at: now(),
            node_since: now(),
            due: Some(now()),
            entry_key: None,
            entry: EntryContext::default(),
            holdout: false,
            path: BTreeMap::new(),
            steps: 2,
            converted_at: None,
            exited: None,
            held_send: false,
        };
        assert!(migrate(&plan, &mut inst));
        assert_eq!(
            (inst.version, inst.node.as_str(), inst.due),
            (2, "d", Some(now()))
        );
        assert!(!migrate(&plan, &mut inst), "already on version 2");
    }
}
