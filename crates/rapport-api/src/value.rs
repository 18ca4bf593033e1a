//! Value models (CLV, churn, health) and survey reports: fits, jobs, scores, alerts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/models/{model}/fit`: a fit takes no options, so the only body
/// accepted is `{}`; any field is refused with `400 invalid_json` naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FitRequest {}
