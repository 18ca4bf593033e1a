//! API keys: write keys send events for one source; admin keys use the REST API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// May only send events, to one source.
    Write,
    /// May read and administer.
    Admin,
}

/// What an admin key may do (docs/security.md#admin-key-scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything, personal data included.
    Read,
    /// Read with personal data masked (`"***"`) in every answer.
    ReadMasked,
    /// Change configuration.
    Configure,
    /// Delete people's data.
    Delete,
}

/// A key as the API shows it: never its secret, nor anything derived from it but the
/// first characters that tell keys apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    /// `key_…`
    pub id: String,
    pub kind: KeyKind,
    /// The source of a write key.
    pub source_id: Option<String>,
    pub name: String,
    /// The secret's first characters, to recognise it.
    pub secret_prefix: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Milliseconds since the Unix epoch; `null` while the key works.
    pub revoked_at_ms: Option<i64>,
    /// An admin key's scopes (every scope for keys made without any); absent for write
    /// keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// A key as created: the only answer that carries its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub key: Key,
    /// The secret; shown this once, never stored in clear.
    pub secret: String,
}

/// The body of `POST /api/v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub kind: KeyKind,
    /// The source (id or name) of a write key; required for write keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absent: `write key` or `admin key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An admin key's scopes; absent: every scope the creating key holds. A key can only
    /// give scopes it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// `GET`/`PUT /api/v1/privacy/personal-data`: which names are personal data, masked for
/// `read_masked` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalData {
    /// Trait names whose values are personal data.
    pub traits: Vec<String>,
    /// Event property names whose values are personal data.
    pub properties: Vec<String>,
    /// Identifier types whose values are personal data (`email`, `phone`).
    pub identifier_types: Vec<String>,
}
