//! Sources: where events come from (a website, an app, a backend), each with its write keys
//! and the limits on what a holder of those keys may do (`docs/security.md`).

use crate::keys::IssuedKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A source as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// `src_…`, assigned by Rapport.
    pub id: String,
    /// Unique among sources.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub settings: SourceSettings,
}

/// What a holder of the source's write keys may do. Every part left out keeps the behaviour
/// of a source without settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Which profile traits the source's events may set; checked at ingest.
    pub traits: TraitPolicy,
    /// What the source's events may do to the identity graph; applied by the processor.
    pub identity: IdentityPolicy,
    /// Events per second for the whole source; absent: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Events per second from one client IP address; absent: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_rate_limit: Option<RateLimit>,
    /// Days the source's events are kept (by receive time, 1 to 36500); older ones are
    /// erased from the log and the index once a day (docs/privacy.md). Absent: kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// Trait names a source may set (in `traits` and `context.traits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TraitPolicy {
    /// When set, only these trait names are accepted; absent: any name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Trait names refused even if allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// What a source's events may do to the identity graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityPolicy {
    /// Whether the source's events may merge two existing profiles (default true).
    pub merge: bool,
    /// The identifier types the source may assert (`user_id`, `email`, …); absent: every type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_types: Option<Vec<String>>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            merge: true,
            identifier_types: None,
        }
    }
}

/// A token bucket: `per_second` events sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// The body of `POST /api/v1/sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    /// Absent: no restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SourceSettings>,
}

/// The answer to `POST /api/v1/sources`: the source and its first write key, whose secret
/// is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedSource {
    pub source: Source,
    pub write_key: IssuedKey,
}

/// The body of `PUT /api/v1/sources/{source}` (`settings` required, replaced whole) and of
/// `PATCH` (each part of `settings` given replaces that part; `null` resets it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceUpdate {
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `PUT`: the settings, whole. `PATCH`: an object of the parts to replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}
