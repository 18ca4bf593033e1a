//! Every error code Rapport's APIs answer with, its HTTP status, and the body that carries
//! it. One table ([`codes!`]) defines them all, so a code cannot exist without a status, and
//! `docs/api-errors.md` is checked against it by a test.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $status:literal), )*) => {
        /// A stable, documented error code (`docs/api-errors.md`). Clients branch on it; the
        /// message is for people and may change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as sent: `invalid_json`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> u16 {
                match self { $(Code::$variant => $status,)* }
            }

            /// The code sent as `name`, if there is one.
            pub fn parse(name: &str) -> Option<Code> {
                match name { $($name => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    /// The body is not valid JSON (a syntax error, trailing text, no body); for the
    /// tracking API also a body or message that is not a JSON object.
    InvalidJson = ("invalid_json", 400),
    /// The settings document was asked for without a usable `Host` header.
    InvalidHost = ("invalid_host", 400),
    /// The body is not UTF-8.
    InvalidUtf8 = ("invalid_utf8", 400),
    /// JSON nested deeper than `limits.max_depth`.
    TooDeep = ("too_deep", 400),
    /// `Content-Encoding: gzip` but the body is not gzip.
    InvalidGzip = ("invalid_gzip", 400),
    /// The body could not be read (a connection error).
    InvalidBody = ("invalid_body", 400),
    /// More messages than `limits.max_batch_events`.
    TooManyEvents = ("too_many_events", 400),
    /// `batch` holds no messages.
    EmptyBatch = ("empty_batch", 400),
    /// A required field is absent.
    MissingField = ("missing_field", 400),
    /// Neither `userId` nor `anonymousId`.
    MissingIdentity = ("missing_identity", 400),
    /// A field of a tracking message has the wrong JSON type.
    InvalidFieldType = ("invalid_field_type", 400),
    /// A timestamp is not ISO-8601, is outside the years 0000–9999, or is before 1970 once
    /// corrected.
    InvalidTimestamp = ("invalid_timestamp", 400),
    /// A batch message's `type` is not one of the six.
    InvalidType = ("invalid_type", 400),
    /// An id or a name holds a NUL character.
    InvalidCharacter = ("invalid_character", 400),
    /// An id is over 256 bytes or a name over 1,024.
    ValueTooLong = ("value_too_long", 400),
    /// The store refused a value of the request; nothing was written.
    UnstorableValue = ("unstorable_value", 400),
    /// A number beyond a 64-bit float.
    NumberOutOfRange = ("number_out_of_range", 400),
    /// A query or path parameter is unknown or invalid; `field` names it.
    InvalidParameter = ("invalid_parameter", 400),
    /// A header that must be sent once was sent more than once; `field` names it.
    DuplicateHeader = ("duplicate_header", 400),
    /// A REST request body is JSON of the wrong shape, or a field of it has an invalid
    /// value: a field unknown, missing or of the wrong type, at any depth; `field` names it
    /// by its path (`settings.traits.deny[1]`), `$` for the body itself.
    InvalidField = ("invalid_field", 400),
    /// The source's settings do not let it set this trait; `field` names it.
    TraitNotAllowed = ("trait_not_allowed", 400),
    /// The message breaks its source's tracking plan, whose rule blocks; `field` names the
    /// first field at fault (`properties.price`).
    TrackingPlanViolation = ("tracking_plan_violation", 400),
    /// No write key (tracking API).
    MissingWriteKey = ("missing_write_key", 401),
    /// The write key is unknown or revoked.
    InvalidWriteKey = ("invalid_write_key", 401),
    /// An admin key was used to send events.
    WrongKeyKind = ("wrong_key_kind", 401),
    /// No key (REST API).
    MissingKey = ("missing_key", 401),
    /// The key is unknown or revoked (REST API).
    InvalidKey = ("invalid_key", 401),
    /// The `Authorization` header is malformed.
    InvalidAuthorization = ("invalid_authorization", 401),
    /// A tracking request from a page whose `Origin` is not allowed.
    OriginNotAllowed = ("origin_not_allowed", 403),
    /// A write key was used on the REST API.
    Forbidden = ("forbidden", 403),
    /// The admin key lacks the scope the route needs; `field` names the scope.
    MissingScope = ("missing_scope", 403),
    /// A state change through a dashboard session without the session's `X-CSRF-Token`
    /// header, or sent from a page of another origin.
    CsrfRejected = ("csrf_rejected", 403),
    /// No such endpoint or object.
    NotFound = ("not_found", 404),
    /// The settings document was asked for with a key that is no live write key.
    UnknownWriteKey = ("unknown_write_key", 404),
    /// The endpoint exists, but not with this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// The request conflicts with what exists (a source with that name).
    Conflict = ("conflict", 409),
    /// The request body is larger than its limit.
    PayloadTooLarge = ("payload_too_large", 413),
    /// A single message is larger than `limits.max_event_bytes`.
    EventTooLarge = ("event_too_large", 413),
    /// A content encoding other than gzip.
    UnsupportedContentEncoding = ("unsupported_content_encoding", 415),
    /// The data cannot support the request yet (a model with nothing to fit on).
    InsufficientData = ("insufficient_data", 422),
    /// A rate limit is exhausted; retry after `Retry-After` seconds.
    RateLimited = ("rate_limited", 429),
    /// A bug; the details are in the server log.
    Internal = ("internal", 500),
    /// Stored data could not be decoded: not a passing condition, retrying does not help;
    /// the details are in the server log.
    CorruptData = ("corrupt_data", 500),
    /// The store failed; nothing was acknowledged, retry.
    StorageUnavailable = ("storage_unavailable", 503),
    /// The server is stopping; retry.
    ShuttingDown = ("shutting_down", 503),
    /// The server holds as many connections as it allows; retry.
    TooManyConnections = ("too_many_connections", 503),
}

/// What every error answer carries, under `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub code: Code,
    /// For people; may change between versions.
    pub message: String,
    /// The field, parameter or header at fault, as a path (`settings.traits.allow[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// A code equals its sent name: `assert_eq!(body.code, "invalid_json")`.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_sent_as_its_table_name_and_read_back() {
        for &code in Code::ALL {
            let sent = serde_json::to_value(code).unwrap();
            assert_eq!(sent, serde_json::json!(code.as_str()));
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(serde_json::from_value::<Code>(sent).unwrap(), code);
            assert!((400..600).contains(&code.status()), "{code:?}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
