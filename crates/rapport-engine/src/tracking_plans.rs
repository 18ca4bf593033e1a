//! Sources' tracking plans in the state store, the compiled plans ingest checks messages
//! against, and the violations report (`docs/tracking-plans.md`). The rules themselves —
//! what a plan is, how a message is checked, how counts add up — are `rapport_plans`.
//!
//! Two namespaces, partitioned by source id:
//! - [`NS_TRACKING_PLAN`]: the plan (key `plan`), with a version bumped on every save;
//!   written by the tracking-plan REST API only.
//! - [`NS_PLAN_VIOLATIONS`]: one [`ReportEntry`] per subject (key [`Subject::key`]);
//!   written by ingest only, after it has checked a request, one request's counts at a
//!   time under this server's lock (a read of the entries, the sum, one commit).
//!
//! Ingest reads plans through a cache: a plan is read again from the store once its entry
//! is 5 seconds old (the bound on a change made through another server sharing the
//! database), and compiled again only when its version changed. A save or a removal
//! through this server takes effect here at once.

use crate::EngineError;
use rapport_plans::report::aggregate;
use rapport_plans::{Check, CompiledPlan, PlanError, ReportEntry, Subject, TrackingPlan};
use rapport_store::{StateWrite, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A source's tracking plan, by source id (key `plan`).
pub const NS_TRACKING_PLAN: &str = "tracking_plan";
/// A source's violations report, one entry per subject.
pub const NS_PLAN_VIOLATIONS: &str = "tracking_plan.violations";

const PLAN_KEY: &[u8] = b"plan";

/// How long ingest trusts its copy of a source's plan before reading it again.
pub const PLAN_CACHE_TTL: Duration = Duration::from_secs(5);

/// A plan as stored: the definition, its version and when it was saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// 1 for the first save of a source's plan, one more on every save after.
    pub version: u64,
    pub updated_at_ms: i64,
    pub plan: TrackingPlan,
}

/// A plan in force: compiled, with the version it was compiled from.
#[derive(Debug)]
pub struct ActivePlan {
    pub version: u64,
    pub compiled: CompiledPlan,
}

type CacheEntry = (Instant, Option<Arc<ActivePlan>>);

/// Plans and reports of every source.
pub struct TrackingPlans {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, CacheEntry>>,
    /// One save, or one request's counts, at a time on this server.
    write: Mutex<()>,
}

impl TrackingPlans {
    pub fn new(store: Arc<dyn Store>) -> TrackingPlans {
        TrackingPlans {
            store,
            cache: RwLock::new(HashMap::new()),
            write: Mutex::new(()),
        }
    }

    /// The plan in force for `source_id` if this server read it within
    /// [`PLAN_CACHE_TTL`] (`Some(None)`: it has none); `None` when it must be read.
    pub fn cached(&self, source_id: &str) -> Option<Option<Arc<ActivePlan>>> {
        self.cache
            .read()
            .expect("plan cache lock")
            .get(source_id)
            .filter(|(at, _)| at.elapsed() < PLAN_CACHE_TTL)
            .map(|(_, p)| p.clone())
    }

    /// The plan in force for `source_id`, from the cache or the store.
    pub fn active(&self, source_id: &str) -> Result<Option<Arc<ActivePlan>>, EngineError> {
        if let Some(p) = self.cached(source_id) {
            return Ok(p);
        }
        let stored = self.get(source_id)?;
        let previous = self
            .cache
            .read()
            .expect("plan cache lock")
            .get(source_id)
            .and_then(|(_, p)| p.clone());
        let active = match stored {
            None => None,
            Some(s) => match previous {
                Some(p) if p.version == s.version => Some(p),
                _ => Some(Arc::new(compile(s)?)),
            },
        };
        self.cache
            .write()
            .expect("plan cache lock")
            .insert(source_id.to_owned(), (Instant::now(), active.clone()));
        Ok(active)
    }

    /// The stored plan of `source_id`, if it has one.
    pub fn get(&self, source_id: &str) -> Result<Option<StoredPlan>, EngineError> {
        match self
            .store
            .state_get(NS_TRACKING_PLAN, source_id, PLAN_KEY)?
        {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::Corrupt(format!("tracking plan of {source_id}: {e}"))),
        }
    }

    /// Saves `plan` as the plan of `source_id`, once every schema of it compiles; an
    /// invalid one is refused naming its field (`events.Order Completed.schema`).
    pub fn put(
        &self,
        source_id: &str,
        plan: TrackingPlan,
        now_ms: i64,
    ) -> Result<StoredPlan, EngineError> {
        let compiled = CompiledPlan::compile(plan).map_err(invalid)?;
        let _write = self.write.lock().expect("plan write lock");
        let version = self.get(source_id)?.map_or(0, |p| p.version) + 1;
        let stored = StoredPlan {
            version,
            updated_at_ms: now_ms,
            plan: compiled.plan().clone(),
        };
        self.store.state_commit(
            &[StateWrite {
                namespace: NS_TRACKING_PLAN.into(),
                profile: source_id.into(),
                key: PLAN_KEY.to_vec(),
                value: Some(serde_json::to_vec(&stored).expect("a plan serialises")),
            }],
            None,
        )?;
        self.cache.write().expect("plan cache lock").insert(
            source_id.to_owned(),
            (
                Instant::now(),
                Some(Arc::new(ActivePlan { version, compiled })),
            ),
        );
        Ok(stored)
    }

    /// Removes the plan of `source_id`: its events are no longer checked. The report stays.
    /// False when it had none.
    pub fn delete(&self, source_id: &str) -> Result<bool, EngineError> {
        let _write = self.write.lock().expect("plan write lock");
        let had = self.get(source_id)?.is_some();
        if had {
            self.store.state_commit(
                &[StateWrite {
                    namespace: NS_TRACKING_PLAN.into(),
                    profile: source_id.into(),
                    key: PLAN_KEY.to_vec(),
                    value: None,
                }],
                None,
            )?;
        }
        self.cache
            .write()
            .expect("plan cache lock")
            .insert(source_id.to_owned(), (Instant::now(), None));
        Ok(had)
    }

    /// Adds one request's checks (each with its receive time, in ms) to the report of
    /// `source_id`, in one commit.
    pub fn record(&self, source_id: &str, checks: &[(Check, i64)]) -> Result<(), EngineError> {
        if checks.is_empty() {
            return Ok(());
        }
        let entries = aggregate(checks.iter().map(|(c, at)| (c, *at)));
        let _write = self.write.lock().expect("plan write lock");
        let mut writes = Vec::with_capacity(entries.len());
        for (subject, entry) in entries {
            let key = subject.key();
            let mut total = match self.store.state_get(NS_PLAN_VIOLATIONS, source_id, &key)? {
                Some(bytes) => decode_entry(source_id, &bytes)?,
                None => ReportEntry::new(&subject),
            };
            total.merge(entry);
            writes.push(StateWrite {
                namespace: NS_PLAN_VIOLATIONS.into(),
                profile: source_id.into(),
                key,
                value: Some(serde_json::to_vec(&total).expect("a report entry serialises")),
            });
        }
        self.store.state_commit(&writes, None)?;
        Ok(())
    }

    /// The violations report of `source_id`: every entry, planned track events by name,
    /// then identify, group and unplanned events.
    pub fn report(&self, source_id: &str) -> Result<Vec<ReportEntry>, EngineError> {
        let mut entries = self
            .store
            .state_scan(NS_PLAN_VIOLATIONS, source_id)?
            .into_iter()
            .map(|(_, bytes)| decode_entry(source_id, &bytes))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.subject());
        Ok(entries)
    }

    /// The entry of one subject, if anything was counted under it.
    pub fn report_entry(
        &self,
        source_id: &str,
        subject: &Subject,
    ) -> Result<Option<ReportEntry>, EngineError> {
        self.store
            .state_get(NS_PLAN_VIOLATIONS, source_id, &subject.key())?
            .map(|b| decode_entry(source_id, &b))
            .transpose()
    }
}

fn compile(stored: StoredPlan) -> Result<ActivePlan, EngineError> {
    // A stored plan compiled when it was saved; one that no longer does is corrupt data.
    let compiled = CompiledPlan::compile(stored.plan)
        .map_err(|e| EngineError::Corrupt(format!("stored tracking plan: {e}")))?;
    Ok(ActivePlan {
        version: stored.version,
        compiled,
    })
}

fn invalid(e: PlanError) -> EngineError {
    EngineError::InvalidAt {
        field: e.field().to_owned(),
        message: e.to_string(),
    }
}

fn decode_entry(source_id: &str, bytes: &[u8]) -> Result<ReportEntry, EngineError> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Corrupt(format!("violations report of {source_id}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_plans::{Message, Outcome};
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = rapport_store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        (dir, Arc::new(store))
    }

    fn plan(v: serde_json::Value) -> TrackingPlan {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_saved_plan_is_in_force_and_versioned_and_removal_ends_it() {
        let (_dir, store) = store();
        let plans = TrackingPlans::new(store.clone());
        assert!(plans.active("src").unwrap().is_none());
        let p = plan(json!({"mode": "block", "events": {"E": {"schema": {"required": ["x"]}}}}));
        assert_eq!(plans.put("src", p.clone(), 1).unwrap().version, 1);
        assert_eq!(plans.put("src", p, 2).unwrap().version, 2);
        let active = plans.active("src").unwrap().unwrap();
        assert_eq!(active.version, 2);
        let props = json!({});
        let check = active
            .compiled
            .check(Message::Track {
                event: "E",
                properties: Some(&props),
            })
            .unwrap();
        assert_eq!(check.outcome, Outcome::Blocked);
        // Another server's view of the same store reads it too.
        let other = TrackingPlans::new(store);
        assert_eq!(other.get("src").unwrap().unwrap().version, 2);
        assert!(plans.delete("src").unwrap());
        assert!(plans.active("src").unwrap().is_none());
        assert!(!plans.delete("src").unwrap());
    }

    #[test]
    fn an_invalid_schema_is_refused_naming_its_field_and_nothing_is_saved() {
        let (_dir, store) = store();
        let plans = TrackingPlans::new(store);
        let e = plans
            .put(
                "src",
                plan(json!({"events": {"Order Completed": {"schema": {"minimum": "x"}}}})),
                1,
            )
            .unwrap_err();
        match e {
            EngineError::InvalidAt { field, .. } => {
                assert_eq!(field, "events.Order Completed.schema")
            }
            other => panic!("{other:?}"),
        }
        assert!(plans.get("src").unwrap().is_none());
    }

    #[test]
    fn counts_add_up_across_requests_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let check = {
            let store: Arc<dyn Store> =
                Arc::new(rapport_store::embedded::EmbeddedStore::open(dir.path()).unwrap());
            let plans = TrackingPlans::new(store);
            plans
                .put(
                    "src",
                    plan(json!({"events": {"E": {"schema": {"required": ["x"]}}}})),
                    1,
                )
                .unwrap();
            let active = plans.active("src").unwrap().unwrap();
            let props = json!({});
            let check = active
                .compiled
                .check(Message::Track {
                    event: "E",
                    properties: Some(&props),
                })
                .unwrap();
            plans
                .record("src", &[(check.clone(), 10), (check.clone(), 11)])
                .unwrap();
            plans.record("src", &[(check.clone(), 12)]).unwrap();
            check
        };
        let store: Arc<dyn Store> =
            Arc::new(rapport_store::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let plans = TrackingPlans::new(store);
        let report = plans.report("src").unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].flagged, 3);
        assert_eq!(report[0].recent[0].at_ms, 12);
        assert_eq!(report[0].recent[0].field, "/properties/x");
        assert_eq!(
            plans.report_entry("src", &check.subject).unwrap().unwrap(),
            report[0]
        );
        assert!(plans.report("other").unwrap().is_empty());
    }
}
