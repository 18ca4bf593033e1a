//! The processor's side of control entries: probabilistic merges, identity rules changes,
//! consent set through the API and journey entries asked through the API.
//!
//! A probabilistic merge arrives in the log like an event (see
//! [`crate::identity::control`]) and is resolved like one: the two profiles are each
//! represented by their highest-priority identifier, and `rapport_core::identity::resolve`
//! decides under the rules in force whether they may become one. So a merge the rules
//! forbid is refused and logged as such on both profiles, exactly as if an event had
//! carried both identifiers. A match is not a sighting: identifiers' last-seen times are not
//! touched. What came of each entry is recorded for the review API, in the same commit.
//!
//! Kept apart from the event path so that the identity features and the event path can
//! change independently.

use super::{Processor, WorkingSet};
use crate::EngineError;
use crate::audiences::Catalogue;
use crate::audiences::profile::Cause;
use crate::identity::control::{
    Control, MatchMerge, NS_MATCH_OUTCOME, Outcome, PART_OUTCOME, RulesChange, StoredOutcome,
};
use crate::identity::rules::{
    ChangeOutcome, RulesStore, StoredRules, applied_writes, refused_write,
};
use crate::profiles::profile_id_for;
use chrono::{DateTime, Utc};
use rapport_core::identity::{
    self, EventMeta, Extracted, ExtractedIdentifier, GraphChange, GraphView, IdentityEvent,
    IdentityRules, ProfileId, RefusalReason,
};
use rapport_store::{Offset, StateWrite, Store};

impl Processor {
    /// Makes the rules in use those the store says were applied last (the configuration's
    /// when none were): at start, and after a failed batch that may have met a change.
    pub(super) fn refresh_rules(&mut self) -> Result<(), EngineError> {
        let rules = RulesStore {
            store: self.store.as_ref(),
        };
        let version = rules.version()?;
        if self.rules_version == Some(version) {
            return Ok(());
        }
        self.rules = match rules.stored()? {
            Some(stored) if version != 0 => stored.rules,
            _ => self.initial_rules.clone(),
        };
        self.rules_version = Some(version);
        Ok(())
    }

    /// Applies one control entry at `offset`.
    pub(super) fn apply_control(
        &mut self,
        offset: Offset,
        control: &Control,
    ) -> Result<(), EngineError> {
        match control {
            Control::ProbabilisticMerge(m) => self.working.apply_merge(
                self.store.as_ref(),
                &self.rules,
                &self.catalogue,
                offset,
                m,
                (self.clock)(),
            ),
            Control::IdentityRules(change) => {
                self.apply_rules_change(offset, change);
                Ok(())
            }
            Control::SourceIdentity(change) => {
                self.apply_source_identity(offset, change);
                Ok(())
            }
            Control::Consent(change) => self.working.apply_consent_change(
                self.store.as_ref(),
                &self.catalogue,
                offset,
                change,
                (self.clock)(),
            ),
            Control::JourneyEntry(entry) => self.working.apply_journey_entry(
                self.store.as_ref(),
                &self.catalogue,
                offset,
                entry,
                (self.clock)(),
            ),
            Control::JourneyMigration(m) => {
                self.working
                    .apply_migration(self.store.as_ref(), offset, m, (self.clock)())
            }
            Control::JourneyCaps(change) => {
                self.working
                    .apply_caps_change(self.store.as_ref(), offset, change)
            }
            // Applied by `step` in a batch of its own; never reaches here.
            Control::Forget(_) => Ok(()),
        }
    }

    /// Puts new rules in force for the entries after `offset`, recorded in the batch's
    /// commit. Rules that do not validate (the API checks before appending; an entry
    /// written by an older Rapport could still fail a newer check) leave the rules as they
    /// were, and the request's outcome says why.
    fn apply_rules_change(&mut self, offset: Offset, change: &RulesChange) {
        if let Err(e) = change.rules.validate() {
            tracing::warn!(offset, field = %e.field, "identity rules change refused: {}", e.message);
            self.working.writes.push(refused_write(
                &change.request,
                &ChangeOutcome::Invalid {
                    offset,
                    field: e.field,
                    message: e.message,
                },
            ));
            return;
        }
        let version = self.rules_version.unwrap_or(0) + 1;
        let stored = StoredRules {
            version,
            updated_at_ms: Some(change.at.timestamp_millis()),
            offset: Some(offset),
            changed_by: change.changed_by.clone(),
            rules: change.rules.clone(),
        };
        tracing::info!(version, offset, "identity rules changed");
        self.working
            .writes
            .extend(applied_writes(&stored, &change.request));
        self.rules = stored.rules;
        self.rules_version = Some(version);
    }
}

impl WorkingSet {
    /// The live profile `id` stands for, following merges; `None` if it does not exist.
    fn live_id(
        &mut self,
        store: &dyn Store,
        id: &ProfileId,
    ) -> Result<Option<ProfileId>, EngineError> {
        let mut current = id.clone();
        for _ in 0..64 {
            self.load_profile(store, &current)?;
            match self.profiles.get(&current) {
                Some(Some(r)) => match &r.merged_into {
                    Some(next) => current = next.clone(),
                    None => return Ok(Some(current)),
                },
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Applies purposes set through the API: to the live profile the entry names (nothing
    /// when it no longer exists), recorded in its history, and its segments re-evaluated
    /// when the current state changed.
    fn apply_consent_change(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        offset: Offset,
        change: &crate::consent::ConsentChange,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(live) = self.live_id(store, &change.profile)? else {
            tracing::warn!(offset, profile = %change.profile, "consent change for a missing profile");
            return Ok(());
        };
        let recorded = self.record_mut(&live).consent.apply(
            &change.preferences,
            change.at,
            crate::consent::API_SOURCE,
            &change.message_id(),
        );
        let changed = recorded.iter().any(|r| r.effective);
        self.writes.extend(
            recorded
                .iter()
                .map(|r| crate::consent::history_write(&live, offset, r)),
        );
        if changed {
            self.reevaluate_existing(store, catalogue, &live, Cause::Event { offset }, now)?;
        }
        Ok(())
    }

    /// Enters the live profile an API entry names into its journey (nothing when the
    /// profile no longer exists, or the journey no longer takes API entries: the machine
    /// decides, under the journey's re-entry rules and limits at this point of the log).
    fn apply_journey_entry(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        offset: Offset,
        entry: &crate::journeys::ApiEntry,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(live) = self.live_id(store, &entry.profile)? else {
            tracing::warn!(offset, profile = %entry.profile, journey = %entry.journey,
                "journey entry for a missing profile");
            return Ok(());
        };
        let wake = super::journeys::Wake::Api {
            journey: &entry.journey,
            properties: &entry.properties,
            offset,
        };
        self.run_journeys(store, catalogue, &live, wake, now)
    }

    /// Applies a merge entry at `offset` and records its outcome.
    fn apply_merge(
        &mut self,
        store: &dyn Store,
        rules: &IdentityRules,
        catalogue: &Catalogue,
        offset: Offset,
        m: &MatchMerge,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let outcome = self.apply_match(store, rules, catalogue, offset, m, now)?;
        self.writes.push(StateWrite {
            namespace: NS_MATCH_OUTCOME.into(),
            profile: PART_OUTCOME.into(),
            key: m.pair.as_bytes().to_vec(),
            value: Some(
                serde_json::to_vec(&StoredOutcome {
                    pair: m.pair.clone(),
                    offset,
                    outcome,
                })
                .expect("outcomes serialise"),
            ),
        });
        Ok(())
    }

    fn apply_match(
        &mut self,
        store: &dyn Store,
        rules: &IdentityRules,
        catalogue: &Catalogue,
        offset: Offset,
        m: &MatchMerge,
        now: DateTime<Utc>,
    ) -> Result<Outcome, EngineError> {
        let (Some(left), Some(right)) = (
            self.live_id(store, &m.left)?,
            self.live_id(store, &m.right)?,
        ) else {
            return Ok(Outcome::Missing);
        };
        if left == right {
            return Ok(Outcome::AlreadyOne { profile: left });
        }
        let strongest = |ws: &WorkingSet, p: &ProfileId| {
            ws.identifiers_of(p)
                .into_iter()
                .map(|r| r.identifier)
                .min_by_key(|i| (rules.rank(&i.kind), i.value.clone()))
        };
        let (Some(a), Some(b)) = (strongest(self, &left), strongest(self, &right)) else {
            return Ok(Outcome::Missing);
        };
        let extracted = Extracted {
            identifiers: vec![
                ExtractedIdentifier {
                    identifier: a,
                    source: format!("match.{left}"),
                },
                ExtractedIdentifier {
                    identifier: b,
                    source: format!("match.{right}"),
                },
            ],
            ..Extracted::default()
        };
        self.preload(store, &extracted)?;
        let meta = EventMeta {
            message_id: m.message_id(),
            timestamp: m.at,
        };
        let resolution =
            identity::resolve(rules, &*self, &extracted, &meta, || profile_id_for(offset));
        for change in &resolution.changes {
            if !matches!(change, GraphChange::TouchIdentifier { .. }) {
                self.apply_change(store, catalogue, change, now)?;
            }
        }
        for entry in &resolution.log {
            let mut entry = entry.clone();
            match &mut entry.event {
                IdentityEvent::ProfileMerged { reason, .. }
                | IdentityEvent::MergedInto { reason, .. } => *reason = Some(m.reason()),
                _ => {}
            }
            let record = self.record_mut(&entry.profile);
            let seq = record.log_seq;
            record.log_seq += 1;
            self.writes.push(StateWrite {
                namespace: crate::profiles::NS_IDENTITY_LOG.into(),
                profile: entry.profile.as_str().to_owned(),
                key: seq.to_be_bytes().to_vec(),
                value: Some(serde_json::to_vec(&entry).expect("log entries serialise")),
            });
        }
        if let Some(merge) = resolution.merges.first() {
            let into = merge.into.clone();
            self.reevaluate_existing(store, catalogue, &into, Cause::Event { offset }, now)?;
            return Ok(Outcome::Merged {
                into,
                from: merge.from.clone(),
            });
        }
        let refused = resolution.refused.iter().find_map(|r| match &r.reason {
            RefusalReason::MergeWouldBreakLimit { kind, limit, .. } => Some(Outcome::Refused {
                kind: kind.clone(),
                limit: *limit,
                identifier: r.identifier.clone(),
            }),
            _ => None,
        });
        Ok(refused.unwrap_or(Outcome::Missing))
    }
}
