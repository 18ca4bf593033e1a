//! An in-memory identity graph: the reference model of what a store must do with a
//! [`Resolution`], used by tests and small tools.
//!
//! A storage backend is correct when, fed the same resolutions, it answers
//! [`GraphView`] exactly as this model does.

use super::identifier::Identifier;
use super::resolve::{GraphChange, GraphView, IdentifierRecord, ProfileId, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The identity graph in memory. Serialises to JSON (profiles with their identifiers,
/// merge redirects and account members); the identifier index is rebuilt on load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct MemoryGraph {
    profiles: BTreeMap<ProfileId, Vec<IdentifierRecord>>,
    /// Retired profile → the live profile it was merged into (kept compressed).
    merged_into: BTreeMap<ProfileId, ProfileId>,
    /// Account id → member profiles (live ones only).
    accounts: BTreeMap<String, BTreeSet<ProfileId>>,
    index: BTreeMap<Identifier, ProfileId>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    profiles: BTreeMap<ProfileId, Vec<IdentifierRecord>>,
    #[serde(default)]
    merged_into: BTreeMap<ProfileId, ProfileId>,
    #[serde(default)]
    accounts: BTreeMap<String, BTreeSet<ProfileId>>,
}

impl From<Stored> for MemoryGraph {
    fn from(s: Stored) -> Self {
        let index = s
            .profiles
            .iter()
            .flat_map(|(p, rs)| rs.iter().map(move |r| (r.identifier.clone(), p.clone())))
            .collect();
        MemoryGraph {
            profiles: s.profiles,
            merged_into: s.merged_into,
            accounts: s.accounts,
            index,
        }
    }
}

impl From<MemoryGraph> for Stored {
    fn from(g: MemoryGraph) -> Self {
        Stored {
            profiles: g.profiles,
            merged_into: g.merged_into,
            accounts: g.accounts,
        }
    }
}

impl GraphView for MemoryGraph {
    fn profile_of(&self, id: &Identifier) -> Option<ProfileId> {
        self.index.get(id).cloned()
    }

    fn identifiers_of(&self, p: &ProfileId) -> Vec<IdentifierRecord> {
        self.profiles.get(p).cloned().unwrap_or_default()
    }

    fn is_account_member(&self, account_id: &str, p: &ProfileId) -> bool {
        self.accounts
            .get(account_id)
            .is_some_and(|members| members.contains(p))
    }
}

impl MemoryGraph {
    pub fn new() -> MemoryGraph {
        MemoryGraph::default()
    }

    /// Applies the changes of a resolution, in order.
    pub fn apply(&mut self, resolution: &Resolution) {
        for change in &resolution.changes {
            self.apply_change(change);
        }
    }

    pub fn apply_change(&mut self, change: &GraphChange) {
        match change {
            GraphChange::CreateProfile { profile } => {
                self.profiles.entry(profile.clone()).or_default();
            }
            GraphChange::MergeProfiles { from, into, .. } => {
                let moved = self.profiles.remove(from).unwrap_or_default();
                for r in &moved {
                    self.index.insert(r.identifier.clone(), into.clone());
                }
                self.profiles.entry(into.clone()).or_default().extend(moved);
                for target in self.merged_into.values_mut() {
                    if target == from {
                        *target = into.clone();
                    }
                }
                self.merged_into.insert(from.clone(), into.clone());
                for members in self.accounts.values_mut() {
                    if members.remove(from) {
                        members.insert(into.clone());
                    }
                }
            }
            GraphChange::AddIdentifier { profile, record } => {
                self.index
                    .insert(record.identifier.clone(), profile.clone());
                self.profiles
                    .entry(profile.clone())
                    .or_default()
                    .push(record.clone());
            }
            GraphChange::TouchIdentifier {
                profile,
                identifier,
                seen_at,
            } => {
                if let Some(r) = self
                    .profiles
                    .get_mut(profile)
                    .and_then(|rs| rs.iter_mut().find(|r| &r.identifier == identifier))
                {
                    r.seen_at(*seen_at);
                }
            }
            GraphChange::LinkAccount {
                account_id,
                profile,
            } => {
                self.accounts
                    .entry(account_id.clone())
                    .or_default()
                    .insert(profile.clone());
            }
        }
    }

    /// The live profile an id stands for: itself if live, its survivor if merged.
    pub fn live_profile(&self, p: &ProfileId) -> Option<ProfileId> {
        if self.profiles.contains_key(p) {
            return Some(p.clone());
        }
        self.merged_into.get(p).cloned()
    }

    /// Live profiles, in id order.
    pub fn profiles(&self) -> impl Iterator<Item = (&ProfileId, &[IdentifierRecord])> {
        self.profiles.iter().map(|(p, rs)| (p, rs.as_slice()))
    }

    /// Every (identifier, live profile) pair.
    pub fn identifiers(&self) -> impl Iterator<Item = (&Identifier, &ProfileId)> {
        self.index.iter()
    }

    /// Retired profile ids and where they now resolve.
    pub fn redirects(&self) -> impl Iterator<Item = (&ProfileId, &ProfileId)> {
        self.merged_into.iter()
    }

    pub fn account_members(&self, account_id: &str) -> Vec<ProfileId> {
        self.accounts
            .get(account_id)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&String, &BTreeSet<ProfileId>)> {
        self.accounts.iter()
    }
}
