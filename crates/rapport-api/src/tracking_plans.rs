//! A source's tracking plan and its violations report:
//! `/api/v1/sources/{source}/tracking-plan` and `…/tracking-plan/violations`
//! (`docs/tracking-plans.md`). The plan's own types are defined once, with the logic that
//! checks messages against them (`rapport_plans`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use rapport_plans::{Example, Mode, Outcome, ReportEntry, Rule, SubjectKind, TrackingPlan};

/// A source's tracking plan as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceTrackingPlan {
    pub source_id: String,
    /// 1 for the first save, one more on every save after.
    pub version: u64,
    /// When it was saved, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    pub plan: TrackingPlan,
}

/// The violations counted for a source, one entry per subject: planned track events by
/// name, then `identify`, `group`, and every `unplanned` track event together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ViolationsReport {
    pub source_id: String,
    /// The version of the plan in force now; `null` when the source has none.
    pub plan_version: Option<u64>,
    pub data: Vec<ReportEntry>,
}
