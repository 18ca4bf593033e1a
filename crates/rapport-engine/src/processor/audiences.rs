//! The audience side of the working set: after identity, each event re-evaluates its
//! profile's computed traits and segment memberships; between batches the scheduler
//! re-evaluates profiles whose windows expire, and after definitions change the backfill
//! walks every existing profile. All of it is committed with the batch that did it.

use super::working_set::WorkingSet;
use super::{BACKFILL_BATCH, SCHEDULE_BATCH};
use crate::EngineError;
use crate::audiences::profile::{Cause, ChangeKind, ProfileInputs, Trigger};
use crate::audiences::store::{
    AudienceMeta, Audiences, Backfill, NS_FEED, NS_MEMBER, NS_PROFILE_LIST, NS_SCHEDULE, PART_ALL,
    PART_DUE, PART_FEED, committed_history, decode_schedule_key, schedule_key,
};
use crate::audiences::{AudienceChange, Catalogue};
use crate::profiles::{NS_TIMELINE, timeline_key};
use chrono::{DateTime, Utc};
use rapport_core::identity::ProfileId;
use rapport_store::{Offset, StateWrite, Store};

impl WorkingSet {
    pub(super) fn meta_mut(&mut self, store: &dyn Store) -> Result<&mut AudienceMeta, EngineError> {
        if self.meta.is_none() {
            self.meta = Some(Audiences { store }.meta()?);
        }
        Ok(self.meta.as_mut().expect("read above"))
    }

    /// Loads the audience state of `id` and brings it up to `catalogue`, reading the
    /// profile's committed history if an aggregate must be materialised. Every profile is
    /// loaded before any event of the batch is applied to it, so the committed history is
    /// complete.
    pub(super) fn load_audience(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !self.audiences.contains_key(id) {
            let stored = Audiences { store }.profile(id.as_str())?;
            self.stored_wake
                .insert(id.clone(), stored.as_ref().and_then(|a| a.wake));
            self.audiences
                .insert(id.clone(), stored.unwrap_or_default());
        }
        let audience = self.audiences.get_mut(id).expect("inserted above");
        if audience.needs_history(catalogue) {
            let history = committed_history(store, id)?;
            audience.materialise(catalogue, &history, now);
            self.dirty_audiences.insert(id.clone());
        } else if audience.v != catalogue.version {
            audience.materialise(catalogue, &[], now);
            self.dirty_audiences.insert(id.clone());
        }
        Ok(())
    }

    pub(super) fn merge_audiences(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        from: &ProfileId,
        into: &ProfileId,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        self.load_audience(store, catalogue, from, now)?;
        self.load_audience(store, catalogue, into, now)?;
        let mut retired = self.audiences.remove(from).expect("loaded above");
        for segment in retired.leave_all() {
            self.record_membership(
                store,
                from,
                &segment,
                ChangeKind::Exited,
                Cause::Merge {
                    into: into.as_str().to_owned(),
                },
                None,
                now,
            )?;
        }
        self.audiences
            .get_mut(into)
            .expect("loaded above")
            .absorb(catalogue, retired, now);
        self.dirty_audiences.insert(into.clone());
        self.dirty_audiences.remove(from);
        self.retired_audiences.insert(from.clone());
        self.meta_mut(store)?.profiles = self.meta_mut(store)?.profiles.saturating_sub(1);
        self.writes.push(StateWrite {
            namespace: NS_PROFILE_LIST.into(),
            profile: PART_ALL.into(),
            key: from.as_str().as_bytes().to_vec(),
            value: None,
        });
        Ok(())
    }

    /// Re-evaluates the loaded profile `id` and records every membership change.
    pub(super) fn reevaluate(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        trigger: &Trigger<'_>,
        cause: Cause,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(Some(record)) = self.profiles.get(id) else {
            return Ok(());
        };
        for account_id in record.accounts.clone() {
            self.load_account(store, &account_id)?;
        }
        let scores = if catalogue.reads_scores {
            crate::value::ModelScores { store }.scores(id.as_str())?
        } else {
            None
        };
        let Some(Some(record)) = self.profiles.get(id) else {
            return Ok(());
        };
        let accounts = record
            .accounts
            .iter()
            .filter_map(|a| self.accounts.get(a).and_then(Option::as_ref))
            .collect();
        let inputs = ProfileInputs {
            record,
            accounts,
            scores,
        };
        let audience = self.audiences.get_mut(id).expect("loaded by the caller");
        let changes = audience.refresh(catalogue, &inputs, trigger, now);
        self.dirty_audiences.insert(id.clone());
        let offset = match cause {
            Cause::Event { offset } => Some(offset),
            _ => None,
        };
        for change in changes {
            let cause = if change.deleted {
                Cause::Deleted
            } else {
                cause.clone()
            };
            self.record_membership(store, id, &change.segment, change.kind, cause, offset, now)?;
        }
        Ok(())
    }

    /// Writes one membership change: member index, size, feed and timeline.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_membership(
        &mut self,
        store: &dyn Store,
        id: &ProfileId,
        segment: &str,
        kind: ChangeKind,
        cause: Cause,
        offset: Option<Offset>,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let meta = self.meta_mut(store)?;
        meta.feed_seq += 1;
        let seq = meta.feed_seq;
        let size = meta.sizes.entry(segment.to_owned()).or_insert(0);
        match kind {
            ChangeKind::Entered => *size += 1,
            ChangeKind::Exited => *size = size.saturating_sub(1),
        }
        self.resized.insert(segment.to_owned());
        self.journeys
            .changes
            .push((id.clone(), segment.to_owned(), kind));
        let change = AudienceChange {
            seq,
            segment: segment.to_owned(),
            profile: id.as_str().to_owned(),
            change: kind,
            at: now,
            cause,
        };
        let json = serde_json::to_vec(&change).expect("audience changes serialise");
        self.writes.push(StateWrite {
            namespace: NS_MEMBER.into(),
            profile: segment.to_owned(),
            key: id.as_str().as_bytes().to_vec(),
            value: (kind == ChangeKind::Entered)
                .then(|| now.timestamp_millis().to_be_bytes().to_vec()),
        });
        let mut key = timeline_key(now.timestamp_millis(), offset.unwrap_or(0));
        key.extend_from_slice(&seq.to_be_bytes());
        self.writes.push(StateWrite {
            namespace: NS_TIMELINE.into(),
            profile: id.as_str().to_owned(),
            key,
            value: Some(json.clone()),
        });
        self.writes.push(StateWrite {
            namespace: NS_FEED.into(),
            profile: PART_FEED.into(),
            key: seq.to_be_bytes().to_vec(),
            value: Some(json),
        });
        Ok(())
    }

    /// Re-evaluates profiles whose scheduled time has come. Returns how many.
    pub(super) fn run_schedule(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let due: Vec<(i64, String)> = store
            .state_scan_range(NS_SCHEDULE, PART_DUE, None, SCHEDULE_BATCH)?
            .into_iter()
            .filter_map(|(k, _)| decode_schedule_key(&k))
            .take_while(|(at, _)| *at <= now.timestamp_millis())
            .collect();
        for (at, profile) in &due {
            self.writes.push(StateWrite {
                namespace: NS_SCHEDULE.into(),
                profile: PART_DUE.into(),
                key: schedule_key(*at, profile),
                value: None,
            });
            let id = ProfileId::new(profile.clone());
            self.reevaluate_existing(store, catalogue, &id, Cause::Schedule, now)?;
        }
        Ok(due.len())
    }

    /// Evaluates every segment for a stored profile (scheduler, backfill).
    pub(super) fn reevaluate_existing(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        id: &ProfileId,
        cause: Cause,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        self.load_profile(store, id)?;
        if !matches!(self.profiles.get(id), Some(Some(r)) if r.merged_into.is_none()) {
            return Ok(());
        }
        self.load_audience(store, catalogue, id, now)?;
        self.reevaluate(
            store,
            catalogue,
            id,
            &Trigger {
                matched: &[],
                profile_changed: true,
                all: true,
            },
            cause,
            now,
        )
    }

    /// Evaluates the next page of existing profiles while changed definitions are backfilled.
    /// Returns how many profiles it visited.
    pub(super) fn run_backfill(
        &mut self,
        store: &dyn Store,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let meta = self.meta_mut(store)?;
        let mut bookkeeping = 0;
        if meta.backfill.version != catalogue.version {
            bookkeeping = 1;
            meta.backfill = Backfill {
                version: catalogue.version,
                cursor: None,
                processed: 0,
                total: meta.profiles,
                started_at_ms: now.timestamp_millis(),
                finished_at_ms: None,
            };
        }
        if !meta.backfill.running() {
            return Ok(0);
        }
        let cursor = meta.backfill.cursor.clone();
        let page = store.state_scan_range(
            NS_PROFILE_LIST,
            PART_ALL,
            cursor.as_deref().map(str::as_bytes),
            BACKFILL_BATCH,
        )?;
        for (k, _) in &page {
            let id = ProfileId::new(String::from_utf8_lossy(k).into_owned());
            self.reevaluate_existing(store, catalogue, &id, Cause::Backfill, now)?;
        }
        let meta = self.meta_mut(store)?;
        meta.backfill.processed += page.len() as u64;
        meta.backfill.total = meta.backfill.total.max(meta.backfill.processed);
        if let Some((k, _)) = page.last() {
            meta.backfill.cursor = Some(String::from_utf8_lossy(k).into_owned());
        }
        if page.len() < BACKFILL_BATCH {
            meta.backfill.finished_at_ms = Some(now.timestamp_millis());
            meta.backfill.total = meta.backfill.processed;
            bookkeeping = 1;
        }
        // Starting and finishing are work too: they must be committed.
        Ok(page.len() + bookkeeping)
    }
}
