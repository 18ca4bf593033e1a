//! Audiences: segments and computed traits, their definitions, members and changes.

use crate::page::Limit;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

/// The query of `GET /api/v1/audience-changes`: entries and exits after a sequence
/// number, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// `next_after` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// Only this segment's changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}
