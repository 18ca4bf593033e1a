//! The Segment-spec event model: parsing, validation and normalisation of tracking-API
//! payloads.
//!
//! Ingest must accept whatever an existing Segment or RudderStack SDK sends, refuse what the
//! spec forbids with an error that names the field, and store the client's `properties`,
//! `traits` and `context` byte for byte. So messages are read into borrowed raw JSON
//! fragments: only the fields Rapport interprets are decoded, the rest is kept verbatim.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// The six Segment message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size and shape limits of the tracking API. Defaults are Segment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted single message, in bytes of JSON.
    pub max_event_bytes: usize,
    /// Largest accepted request body (after decompression), in bytes.
    pub max_batch_bytes: usize,
    /// Most messages in one batch request.
    pub max_batch_events: usize,
    /// Deepest nesting of JSON objects and arrays in a request.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            max_batch_events: 2500,
            max_depth: 64,
        }
    }
}

/// Why a payload or one of its messages was refused. `code` is stable and documented;
/// `field` names the offending JSON field where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PayloadError {
    pub code: PayloadErrorCode,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadErrorCode {
    InvalidJson,
    InvalidUtf8,
    TooDeep,
    PayloadTooLarge,
    EventTooLarge,
    TooManyEvents,
    EmptyBatch,
    MissingField,
    MissingIdentity,
    InvalidFieldType,
    InvalidTimestamp,
    InvalidType,
}

impl PayloadErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadErrorCode::InvalidJson => "invalid_json",
            PayloadErrorCode::InvalidUtf8 => "invalid_utf8",
            PayloadErrorCode::TooDeep => "too_deep",
            PayloadErrorCode::PayloadTooLarge => "payload_too_large",
            PayloadErrorCode::EventTooLarge => "event_too_large",
            PayloadErrorCode::TooManyEvents => "too_many_events",
            PayloadErrorCode::EmptyBatch => "empty_batch",
            PayloadErrorCode::MissingField => "missing_field",
            PayloadErrorCode::MissingIdentity => "missing_identity",
            PayloadErrorCode::InvalidFieldType => "invalid_field_type",
            PayloadErrorCode::InvalidTimestamp => "invalid_timestamp",
            PayloadErrorCode::InvalidType => "invalid_type",
        }
    }
}

impl PayloadError {
    fn new(code: PayloadErrorCode, message: impl Into<String>, field: Option<&str>) -> Self {
        PayloadError {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    fn field_type(field: &str, expected: &str) -> Self {
        PayloadError::new(
            PayloadErrorCode::InvalidFieldType,
            format!("`{field}` must be {expected}"),
            Some(field),
        )
    }

    /// The same error with its field path placed under `prefix` (e.g. `batch[3]`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("{prefix}.{f}"),
            None => prefix.to_owned(),
        });
        self
    }
}

/// A raw JSON object kept verbatim.
pub type RawObject = Box<RawValue>;

/// One accepted message, normalised and ready to be logged. Serialises to the stored form:
/// Segment's field names, with the client's objects unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Track: the event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Page / screen: the page or screen name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Page: the page category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<RawObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traits: Option<RawObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<RawObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrations: Option<RawObject>,
    /// When the event happened, corrected for client clock skew.
    #[serde(with = "millis_rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// The client's own `timestamp`, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When Rapport received the request.
    #[serde(with = "millis_rfc3339")]
    pub received_at: DateTime<Utc>,
    /// The source whose write key sent the event.
    pub source_id: String,
}

impl Event {
    /// The key under which repeated deliveries of this message are recognised.
    pub fn dedup_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.source_id.len() + 1 + self.message_id.len());
        key.extend_from_slice(self.source_id.as_bytes());
        key.push(0);
        key.extend_from_slice(self.message_id.as_bytes());
        key
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Renders timestamps as RFC 3339 with milliseconds and `Z`, the form Segment uses.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

mod millis_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_timestamp(&s).ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

/// Parses the ISO-8601 forms SDKs send: RFC 3339 with any offset and fraction, a date-time
/// without offset (taken as UTC), or a bare date (midnight UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // RFC 3339 requires a `T`, ISO-8601 lets clients use a space; also accept `+0000` offsets.
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Checks that `body` is UTF-8 JSON nested no deeper than `max_depth`, before any parsing,
/// so a hostile payload costs one linear scan and never a deep recursion.
pub fn check_shape(body: &[u8], max_depth: usize) -> Result<(), PayloadError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(PayloadError::new(
            PayloadErrorCode::InvalidUtf8,
            format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()),
            None,
        ));
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(PayloadError::new(
                        PayloadErrorCode::TooDeep,
                        format!("JSON is nested deeper than {max_depth} levels"),
                        None,
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The fields of a message as sent, each kept as raw JSON until validated.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMessage<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    category: Option<&'a RawValue>,
    #[serde(borrow)]
    group_id: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    write_key: Option<&'a RawValue>,
}

/// The envelope of a `/v1/batch` request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBatch<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
    #[serde(borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    write_key: Option<&'a RawValue>,
}

/// A request body parsed far enough to authenticate it and to validate each message on its
/// own, so one bad message in a batch never costs the good ones.
pub struct ParsedRequest<'a> {
    /// `writeKey` from the body, if the client put it there.
    pub write_key: Option<String>,
    items: Vec<&'a RawValue>,
    /// The endpoint's type for single-message endpoints (`/v1/track` …); `None` for batch.
    endpoint_type: Option<EventType>,
    batch_context: Option<&'a RawValue>,
    batch_integrations: Option<&'a RawValue>,
    batch_sent_at: Option<&'a RawValue>,
}

/// What ingest needs to turn a message into an [`Event`].
pub struct Stamp<'a> {
    pub received_at: DateTime<Utc>,
    pub source_id: &'a str,
}

impl<'a> ParsedRequest<'a> {
    /// Parses the body of a single-message endpoint such as `/v1/track`.
    pub fn single(
        body: &'a [u8],
        endpoint_type: EventType,
        limits: &Limits,
    ) -> Result<Self, PayloadError> {
        if body.len() > limits.max_event_bytes {
            return Err(PayloadError::new(
                PayloadErrorCode::EventTooLarge,
                format!(
                    "message is {} bytes, the limit is {}",
                    body.len(),
                    limits.max_event_bytes
                ),
                None,
            ));
        }
        check_shape(body, limits.max_depth)?;
        let raw: &RawValue = parse_json(body)?;
        if !raw.get().trim_start().starts_with('{') {
            return Err(PayloadError::new(
                PayloadErrorCode::InvalidJson,
                "body must be a JSON object",
                None,
            ));
        }
        let msg: RawMessage = parse_json(raw.get().as_bytes())?;
        Ok(ParsedRequest {
            write_key: opt_string(msg.write_key, "writeKey")?,
            items: vec![raw],
            endpoint_type: Some(endpoint_type),
            batch_context: None,
            batch_integrations: None,
            batch_sent_at: None,
        })
    }

    /// Parses a `/v1/batch` (or `/v1/import`) body.
    pub fn batch(body: &'a [u8], limits: &Limits) -> Result<Self, PayloadError> {
        if body.len() > limits.max_batch_bytes {
            return Err(PayloadError::new(
                PayloadErrorCode::PayloadTooLarge,
                format!(
                    "request body is {} bytes, the limit is {}",
                    body.len(),
                    limits.max_batch_bytes
                ),
                None,
            ));
        }
        check_shape(body, limits.max_depth)?;
        let envelope: RawBatch = parse_json(body)?;
        let Some(batch) = envelope.batch.filter(|b| b.get() != "null") else {
            return Err(PayloadError::new(
                PayloadErrorCode::MissingField,
                "`batch` is required",
                Some("batch"),
            ));
        };
        let items: Vec<&RawValue> = serde_json::from_str(batch.get())
            .map_err(|_| PayloadError::field_type("batch", "an array of messages"))?;
        if items.is_empty() {
            return Err(PayloadError::new(
                PayloadErrorCode::EmptyBatch,
                "`batch` has no messages",
                Some("batch"),
            ));
        }
        if items.len() > limits.max_batch_events {
            return Err(PayloadError::new(
                PayloadErrorCode::TooManyEvents,
                format!(
                    "batch has {} messages, the limit is {}",
                    items.len(),
                    limits.max_batch_events
                ),
                Some("batch"),
            ));
        }
        check_object(envelope.context, "context")?;
        check_object(envelope.integrations, "integrations")?;
        Ok(ParsedRequest {
            write_key: opt_string(envelope.write_key, "writeKey")?,
            items,
            endpoint_type: None,
            batch_context: envelope.context,
            batch_integrations: envelope.integrations,
            batch_sent_at: envelope.sent_at,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Validates and normalises every message. Each result stands alone: a bad message
    /// yields its error, with the field path under `batch[i]` for batches.
    pub fn events(
        &self,
        stamp: &Stamp<'_>,
        limits: &Limits,
        new_message_id: &mut dyn FnMut() -> String,
    ) -> Vec<Result<Event, PayloadError>> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let result = self.event(raw, stamp, limits, new_message_id);
                match self.endpoint_type {
                    Some(_) => result,
                    None => result.map_err(|e| e.within(&format!("batch[{i}]"))),
                }
            })
            .collect()
    }

    fn event(
        &self,
        raw: &RawValue,
        stamp: &Stamp<'_>,
        limits: &Limits,
        new_message_id: &mut dyn FnMut() -> String,
    ) -> Result<Event, PayloadError> {
        let text = raw.get();
        if text.len() > limits.max_event_bytes {
            return Err(PayloadError::new(
                PayloadErrorCode::EventTooLarge,
                format!(
                    "message is {} bytes, the limit is {}",
                    text.len(),
                    limits.max_event_bytes
                ),
                None,
            ));
        }
        if !text.trim_start().starts_with('{') {
            return Err(PayloadError::new(
                PayloadErrorCode::InvalidFieldType,
                "a message must be a JSON object",
                None,
            ));
        }
        let msg: RawMessage = parse_json(text.as_bytes())?;
        let kind = match (self.endpoint_type, msg.kind) {
            (Some(t), _) => t,
            (None, None) => {
                return Err(PayloadError::new(
                    PayloadErrorCode::MissingField,
                    "`type` is required in a batch message",
                    Some("type"),
                ));
            }
            (None, Some(v)) => {
                let s = opt_string_strict(Some(v), "type")?.unwrap_or_default();
                EventType::parse(&s).ok_or_else(|| {
                    PayloadError::new(
                        PayloadErrorCode::InvalidType,
                        format!(
                            "`type` must be one of track, identify, page, screen, group, alias (got {s:?})"
                        ),
                        Some("type"),
                    )
                })?
            }
        };

        let user_id = opt_id(msg.user_id, "userId")?;
        let anonymous_id = opt_id(msg.anonymous_id, "anonymousId")?;
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(PayloadError::new(
                PayloadErrorCode::MissingIdentity,
                "either `userId` or `anonymousId` is required",
                Some("userId"),
            ));
        }
        let event = opt_string_strict(msg.event, "event")?;
        let name = opt_string_strict(msg.name, "name")?;
        let category = opt_string_strict(msg.category, "category")?;
        let group_id = opt_id(msg.group_id, "groupId")?;
        let previous_id = opt_id(msg.previous_id, "previousId")?;
        match kind {
            EventType::Track if event.as_deref().is_none_or(str::is_empty) => {
                return Err(required("event", "a track call"));
            }
            EventType::Group if group_id.is_none() => {
                return Err(required("groupId", "a group call"));
            }
            EventType::Alias if previous_id.is_none() => {
                return Err(required("previousId", "an alias call"));
            }
            _ => {}
        }

        let properties = object(msg.properties, "properties")?;
        let traits = object(msg.traits, "traits")?;
        let context = merge_objects(self.batch_context, msg.context, "context")?;
        let integrations =
            merge_objects(self.batch_integrations, msg.integrations, "integrations")?;

        let original_timestamp = opt_string_strict(msg.timestamp, "timestamp")?;
        let client_time = match &original_timestamp {
            Some(s) => Some(parse_timestamp(s).ok_or_else(|| bad_timestamp("timestamp", s))?),
            None => None,
        };
        let sent_at = match opt_string_strict(msg.sent_at, "sentAt")? {
            Some(s) => Some(s),
            None => opt_string_strict(self.batch_sent_at, "sentAt")?,
        };
        let sent_time = match &sent_at {
            Some(s) => Some(parse_timestamp(s).ok_or_else(|| bad_timestamp("sentAt", s))?),
            None => None,
        };
        let timestamp = corrected_timestamp(stamp.received_at, client_time, sent_time);

        let message_id = match opt_id(msg.message_id, "messageId")? {
            Some(id) if !id.is_empty() => id,
            _ => new_message_id(),
        };

        Ok(Event {
            message_id,
            kind,
            user_id,
            anonymous_id,
            event,
            name,
            category,
            group_id,
            previous_id,
            properties,
            traits,
            context,
            integrations,
            timestamp,
            original_timestamp,
            sent_at,
            received_at: stamp.received_at,
            source_id: stamp.source_id.to_owned(),
        })
    }
}

/// Segment's clock-skew correction: the client's clock may be wrong, but the interval between
/// the event and the send is measured on that one clock, so it carries over to the server's.
pub fn corrected_timestamp(
    received_at: DateTime<Utc>,
    client_time: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    match (client_time, sent_at) {
        (Some(t), Some(sent)) => received_at - (sent - t),
        (Some(t), None) => t,
        (None, _) => received_at,
    }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| {
        PayloadError::new(
            PayloadErrorCode::InvalidJson,
            format!("body is not valid JSON: {e}"),
            None,
        )
    })
}

fn required(field: &str, what: &str) -> PayloadError {
    PayloadError::new(
        PayloadErrorCode::MissingField,
        format!("`{field}` is required in {what}"),
        Some(field),
    )
}

fn bad_timestamp(field: &str, value: &str) -> PayloadError {
    PayloadError::new(
        PayloadErrorCode::InvalidTimestamp,
        format!("`{field}` is not an ISO-8601 timestamp: {value:?}"),
        Some(field),
    )
}

fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

/// A string field that may be absent or null.
fn opt_string_strict(v: Option<&RawValue>, field: &str) -> Result<Option<String>, PayloadError> {
    match v {
        None => Ok(None),
        Some(v) if is_null(v) => Ok(None),
        Some(v) => serde_json::from_str::<String>(v.get())
            .map(Some)
            .map_err(|_| PayloadError::field_type(field, "a string")),
    }
}

fn opt_string(v: Option<&RawValue>, field: &str) -> Result<Option<String>, PayloadError> {
    opt_string_strict(v, field)
}

/// An identifier: a string, or a number that SDKs of typed languages send as-is and that
/// Segment stores as its decimal string.
fn opt_id(v: Option<&RawValue>, field: &str) -> Result<Option<String>, PayloadError> {
    let Some(v) = v.filter(|v| !is_null(v)) else {
        return Ok(None);
    };
    let text = v.get();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(Some)
            .map_err(|_| PayloadError::field_type(field, "a string"));
    }
    match serde_json::from_str::<serde_json::Number>(text) {
        Ok(n) => Ok(Some(n.to_string())),
        Err(_) => Err(PayloadError::field_type(field, "a string or a number")),
    }
}

fn check_object(v: Option<&RawValue>, field: &str) -> Result<(), PayloadError> {
    match v {
        Some(v) if !is_null(v) && !v.get().starts_with('{') => {
            Err(PayloadError::field_type(field, "an object"))
        }
        _ => Ok(()),
    }
}

fn object(v: Option<&RawValue>, field: &str) -> Result<Option<RawObject>, PayloadError> {
    check_object(v, field)?;
    Ok(v.filter(|v| !is_null(v)).map(|v| v.to_owned()))
}

/// Merges a batch-level object into a message's own: the message's keys win, and when the
/// batch has none the message's object is kept byte for byte.
fn merge_objects(
    batch: Option<&RawValue>,
    own: Option<&RawValue>,
    field: &str,
) -> Result<Option<RawObject>, PayloadError> {
    let own = object(own, field)?;
    let Some(batch) = batch.filter(|b| !is_null(b)) else {
        return Ok(own);
    };
    let mut merged: serde_json::Map<String, serde_json::Value> = serde_json::from_str(batch.get())
        .map_err(|_| PayloadError::field_type(field, "an object"))?;
    if let Some(own) = &own {
        let own_map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(own.get())
                .map_err(|_| PayloadError::field_type(field, "an object"))?;
        for (k, v) in own_map {
            merged.insert(k, v);
        }
    }
    let text = serde_json::to_string(&merged).expect("a JSON map always serialises");
    Ok(Some(
        RawValue::from_string(text).expect("serialised JSON is valid"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn stamp() -> Stamp<'static> {
        Stamp {
            received_at: parse_timestamp("2024-05-01T12:00:00Z").unwrap(),
            source_id: "src_1",
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("gen-{n}")
        }
    }

    fn one(body: &str, t: EventType) -> Result<Event, PayloadError> {
        let limits = Limits::default();
        let req = ParsedRequest::single(body.as_bytes(), t, &limits)?;
        req.events(&stamp(), &limits, &mut ids()).pop().unwrap()
    }

    fn batch(body: &str) -> Result<Vec<Result<Event, PayloadError>>, PayloadError> {
        let limits = Limits::default();
        let req = ParsedRequest::batch(body.as_bytes(), &limits)?;
        Ok(req.events(&stamp(), &limits, &mut ids()))
    }

    #[test]
    fn track_keeps_client_objects_verbatim() {
        let body = r#"{"userId":"u1","event":"Order Completed","properties":{"z":1,"a":[1.50,{"b":null}],"big":12345678901234567890},"context":{"ip":"1.2.3.4"},"messageId":"m1"}"#;
        let e = one(body, EventType::Track).unwrap();
        assert_eq!(e.kind, EventType::Track);
        assert_eq!(e.message_id, "m1");
        assert_eq!(
            e.properties.as_ref().unwrap().get(),
            r#"{"z":1,"a":[1.50,{"b":null}],"big":12345678901234567890}"#
        );
        let stored = e.to_json();
        let back = Event::from_json(&stored).unwrap();
        assert_eq!(back.properties.unwrap().get(), e.properties.unwrap().get());
        assert_eq!(back.context.unwrap().get(), r#"{"ip":"1.2.3.4"}"#);
    }

    #[test]
    fn required_fields_per_type() {
        let cases: &[(&str, EventType, &str)] = &[
            (r#"{"event":"x"}"#, EventType::Track, "userId"),
            (r#"{"userId":"u"}"#, EventType::Track, "event"),
            (r#"{"userId":"u","event":""}"#, EventType::Track, "event"),
            (r#"{"userId":"u"}"#, EventType::Group, "groupId"),
            (r#"{"userId":"u"}"#, EventType::Alias, "previousId"),
            (
                r#"{"userId":null,"anonymousId":null}"#,
                EventType::Identify,
                "userId",
            ),
        ];
        for (body, t, field) in cases {
            let err = one(body, *t).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(*field), "{body}");
        }
        assert!(one(r#"{"anonymousId":"a"}"#, EventType::Page).is_ok());
        assert!(one(r#"{"userId":"u","groupId":7}"#, EventType::Group).is_ok());
    }

    #[test]
    fn field_types_are_checked() {
        let cases: &[(&str, &str)] = &[
            (r#"{"userId":true,"event":"x"}"#, "userId"),
            (r#"{"userId":{"a":1},"event":"x"}"#, "userId"),
            (r#"{"userId":"u","event":5}"#, "event"),
            (
                r#"{"userId":"u","event":"x","properties":[1]}"#,
                "properties",
            ),
            (r#"{"userId":"u","event":"x","context":"c"}"#, "context"),
            (r#"{"userId":"u","event":"x","timestamp":12}"#, "timestamp"),
        ];
        for (body, field) in cases {
            let err = one(body, EventType::Track).unwrap_err();
            assert_eq!(err.code, PayloadErrorCode::InvalidFieldType, "{body}");
            assert_eq!(err.field.as_deref(), Some(*field), "{body}");
        }
        let e = one(r#"{"userId":42,"event":"x"}"#, EventType::Track).unwrap();
        assert_eq!(e.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn timestamps_are_parsed_and_skew_corrected() {
        let e = one(
            r#"{"userId":"u","event":"x","timestamp":"2024-05-01T11:00:00+02:00"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(format_timestamp(&e.timestamp), "2024-05-01T09:00:00.000Z");
        // Client clock one hour fast: event 10 s before send.
        let e = one(
            r#"{"userId":"u","event":"x","timestamp":"2024-05-01T12:59:50Z","sentAt":"2024-05-01T13:00:00Z"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(e.timestamp, stamp().received_at - Duration::seconds(10));
        assert_eq!(
            e.original_timestamp.as_deref(),
            Some("2024-05-01T12:59:50Z")
        );
        let err = one(
            r#"{"userId":"u","event":"x","timestamp":"yesterday"}"#,
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::InvalidTimestamp);
        assert_eq!(err.field.as_deref(), Some("timestamp"));
        let e = one(r#"{"userId":"u","event":"x"}"#, EventType::Track).unwrap();
        assert_eq!(e.timestamp, stamp().received_at);
    }

    #[test]
    fn accepted_timestamp_forms() {
        for s in [
            "2024-05-01T09:00:00Z",
            "2024-05-01T09:00:00.123456+00:00",
            "2024-05-01 09:00:00+00:00",
            "2024-05-01T09:00:00+0000",
            "2024-05-01T09:00:00",
            "2024-05-01",
        ] {
            assert!(parse_timestamp(s).is_some(), "{s}");
        }
        for s in [
            "",
            "2024-13-01",
            "1714554000",
            "May 1 2024",
            "2024-05-01T25:00:00Z",
        ] {
            assert!(parse_timestamp(s).is_none(), "{s}");
        }
    }

    #[test]
    fn batch_merges_context_and_reports_bad_items() {
        let body = r#"{"batch":[
            {"type":"track","userId":"u","event":"A","context":{"ip":"9.9.9.9"}},
            {"type":"track","userId":"u"},
            {"type":"nonsense","userId":"u"},
            {"type":"identify","anonymousId":"a","traits":{"email":"x@y.z"}}
          ],"context":{"ip":"1.1.1.1","library":{"name":"test"}},"sentAt":"2024-05-01T12:00:00Z"}"#;
        let items = batch(body).unwrap();
        assert_eq!(items.len(), 4);
        let first = items[0].as_ref().unwrap();
        let ctx: serde_json::Value =
            serde_json::from_str(first.context.as_ref().unwrap().get()).unwrap();
        assert_eq!(ctx["ip"], "9.9.9.9");
        assert_eq!(ctx["library"]["name"], "test");
        let e1 = items[1].as_ref().unwrap_err();
        assert_eq!(e1.field.as_deref(), Some("batch[1].event"));
        let e2 = items[2].as_ref().unwrap_err();
        assert_eq!(e2.code, PayloadErrorCode::InvalidType);
        assert_eq!(e2.field.as_deref(), Some("batch[2].type"));
        assert!(items[3].is_ok());
        assert_eq!(items[3].as_ref().unwrap().message_id, "gen-2");
    }

    #[test]
    fn batch_envelope_errors() {
        let limits = Limits::default();
        let err = |body: &str| {
            ParsedRequest::batch(body.as_bytes(), &limits)
                .err()
                .unwrap()
        };
        assert_eq!(err("{").code, PayloadErrorCode::InvalidJson);
        assert_eq!(err("{}").code, PayloadErrorCode::MissingField);
        assert_eq!(
            err(r#"{"batch":{}}"#).code,
            PayloadErrorCode::InvalidFieldType
        );
        assert_eq!(err(r#"{"batch":[]}"#).code, PayloadErrorCode::EmptyBatch);
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            err(&format!(r#"{{"batch":{deep}}}"#)).code,
            PayloadErrorCode::TooDeep
        );
        let many = format!(
            r#"{{"batch":[{}]}}"#,
            vec![r#"{"type":"page","userId":"u"}"#; 2501].join(",")
        );
        let small = Limits {
            max_batch_bytes: 10_000_000,
            ..limits
        };
        assert_eq!(
            ParsedRequest::batch(many.as_bytes(), &small)
                .err()
                .unwrap()
                .code,
            PayloadErrorCode::TooManyEvents
        );
        assert_eq!(
            ParsedRequest::batch(&[b'{', 0xff, b'}'], &limits)
                .err()
                .unwrap()
                .code,
            PayloadErrorCode::InvalidUtf8
        );
    }

    #[test]
    fn oversize_message_in_batch_fails_alone() {
        let big = "x".repeat(40_000);
        let body = format!(
            r#"{{"batch":[{{"type":"track","userId":"u","event":"A","properties":{{"p":"{big}"}}}},{{"type":"page","userId":"u"}}]}}"#
        );
        let items = batch(&body).unwrap();
        assert_eq!(
            items[0].as_ref().unwrap_err().code,
            PayloadErrorCode::EventTooLarge
        );
        assert!(items[1].is_ok());
    }

    #[test]
    fn depth_scan_ignores_brackets_inside_strings() {
        let s = format!(r#"{{"a":"{}"}}"#, "[{".repeat(200));
        assert!(check_shape(s.as_bytes(), 4).is_ok());
        assert!(check_shape(br#"{"a":"\"[[[["}"#, 2).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let limits = Limits::default();
            if let Ok(req) = ParsedRequest::batch(&body, &limits) {
                let _ = req.events(&stamp(), &limits, &mut ids());
            }
            if let Ok(req) = ParsedRequest::single(&body, EventType::Track, &limits) {
                let _ = req.events(&stamp(), &limits, &mut ids());
            }
        }

        #[test]
        fn valid_track_round_trips(user in "[a-zA-Z0-9@._-]{1,20}", name in "\\PC{1,30}", n in proptest::num::i64::ANY) {
            let body = serde_json::json!({"userId": user, "event": name, "properties": {"n": n}}).to_string();
            let e = one(&body, EventType::Track).unwrap();
            let back = Event::from_json(&e.to_json()).unwrap();
            proptest::prop_assert_eq!(back.user_id.as_deref(), Some(user.as_str()));
            proptest::prop_assert_eq!(back.event.as_deref(), Some(name.as_str()));
            let props = back.properties.unwrap();
            proptest::prop_assert_eq!(props.get(), format!("{{\"n\":{n}}}"));
        }
    }
}
