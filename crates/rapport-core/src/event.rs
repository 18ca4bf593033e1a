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
    InvalidCharacter,
    ValueTooLong,
    NumberOutOfRange,
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
            PayloadErrorCode::InvalidCharacter => "invalid_character",
            PayloadErrorCode::ValueTooLong => "value_too_long",
            PayloadErrorCode::NumberOutOfRange => "number_out_of_range",
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

/// A raw JSON value kept verbatim.
pub type RawObject = Box<RawValue>;

/// The top-level field in which ingest records the violations of a flagged message against
/// its source's tracking plan (`docs/tracking-plans.md`): Rapport's to say, like `receivedAt`.
pub const PLAN_VIOLATIONS_FIELD: &str = "planViolations";

/// Top-level names Rapport sets itself or must never store: a client's value for them is
/// not kept among an event's [`Event::extra`] fields (`writeKey` is a secret; `receivedAt`,
/// `sourceId` and `planViolations` are Rapport's to say).
const RESERVED_FIELDS: [&str; 20] = [
    "messageId",
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "sourceId",
    "writeKey",
    PLAN_VIOLATIONS_FIELD,
];

/// One accepted message, normalised and ready to be logged. Serialises to the stored form:
/// Segment's field names, with the client's objects unchanged, followed by the top-level
/// fields Rapport does not interpret (RudderStack's `channel`, `rudderId`, …) as sent.
#[derive(Debug, Clone)]
pub struct Event {
    pub message_id: String,
    pub kind: EventType,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// Track: the event name.
    pub event: Option<String>,
    /// Page / screen: the page or screen name.
    pub name: Option<String>,
    /// Page: the page category.
    pub category: Option<String>,
    pub group_id: Option<String>,
    pub previous_id: Option<String>,
    pub properties: Option<RawObject>,
    pub traits: Option<RawObject>,
    pub context: Option<RawObject>,
    pub integrations: Option<RawObject>,
    /// When the event happened: the client's time corrected for clock skew, within
    /// [`MIN_TIMESTAMP`, `received_at` + [`MAX_FUTURE_SKEW`]] (see [`event_time`]).
    pub timestamp: DateTime<Utc>,
    /// The client's own `timestamp` (or RudderStack's `originalTimestamp`), as sent.
    pub original_timestamp: Option<String>,
    pub sent_at: Option<String>,
    /// When Rapport received the request.
    pub received_at: DateTime<Utc>,
    /// The source whose write key sent the event.
    pub source_id: String,
    /// Top-level fields Rapport does not interpret, in the order sent, values verbatim.
    pub extra: Vec<(String, RawObject)>,
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

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("messageId", &self.message_id)?;
        m.serialize_entry("type", &self.kind)?;
        let strings = [
            ("userId", &self.user_id),
            ("anonymousId", &self.anonymous_id),
            ("event", &self.event),
            ("name", &self.name),
            ("category", &self.category),
            ("groupId", &self.group_id),
            ("previousId", &self.previous_id),
        ];
        for (k, v) in strings {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        let objects = [
            ("properties", &self.properties),
            ("traits", &self.traits),
            ("context", &self.context),
            ("integrations", &self.integrations),
        ];
        for (k, v) in objects {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.serialize_entry("timestamp", &format_timestamp(&self.timestamp))?;
        if let Some(v) = &self.original_timestamp {
            m.serialize_entry("originalTimestamp", v)?;
        }
        if let Some(v) = &self.sent_at {
            m.serialize_entry("sentAt", v)?;
        }
        m.serialize_entry("receivedAt", &format_timestamp(&self.received_at))?;
        m.serialize_entry("sourceId", &self.source_id)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        d.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

/// A stored timestamp: always in the form [`format_timestamp`] writes, so [`parse_timestamp`]
/// reads it back.
struct StoredTime(DateTime<Utc>);

impl<'de> Deserialize<'de> for StoredTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_timestamp(&s)
            .map(StoredTime)
            .ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

impl<'de> serde::de::Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stored event")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        use serde::de::Error;
        let (mut message_id, mut kind, mut timestamp, mut received_at, mut source_id) =
            (None, None, None, None, None);
        let mut e = Event {
            message_id: String::new(),
            kind: EventType::Track,
            user_id: None,
            anonymous_id: None,
            event: None,
            name: None,
            category: None,
            group_id: None,
            previous_id: None,
            properties: None,
            traits: None,
            context: None,
            integrations: None,
            timestamp: DateTime::<Utc>::MIN_UTC,
            original_timestamp: None,
            sent_at: None,
            received_at: DateTime::<Utc>::MIN_UTC,
            source_id: String::new(),
            extra: Vec::new(),
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "messageId" => message_id = Some(map.next_value::<String>()?),
                "type" => kind = Some(map.next_value::<EventType>()?),
                "userId" => e.user_id = map.next_value()?,
                "anonymousId" => e.anonymous_id = map.next_value()?,
                "event" => e.event = map.next_value()?,
                "name" => e.name = map.next_value()?,
                "category" => e.category = map.next_value()?,
                "groupId" => e.group_id = map.next_value()?,
                "previousId" => e.previous_id = map.next_value()?,
                "properties" => e.properties = map.next_value()?,
                "traits" => e.traits = map.next_value()?,
                "context" => e.context = map.next_value()?,
                "integrations" => e.integrations = map.next_value()?,
                "timestamp" => timestamp = Some(map.next_value::<StoredTime>()?.0),
                "originalTimestamp" => e.original_timestamp = map.next_value()?,
                "sentAt" => e.sent_at = map.next_value()?,
                "receivedAt" => received_at = Some(map.next_value::<StoredTime>()?.0),
                "sourceId" => source_id = Some(map.next_value::<String>()?),
                _ => {
                    let value = map.next_value::<RawObject>()?;
                    e.extra.push((key.into_owned(), value));
                }
            }
        }
        e.message_id = message_id.ok_or_else(|| A::Error::missing_field("messageId"))?;
        e.kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        e.timestamp = timestamp.ok_or_else(|| A::Error::missing_field("timestamp"))?;
        e.received_at = received_at.ok_or_else(|| A::Error::missing_field("receivedAt"))?;
        e.source_id = source_id.ok_or_else(|| A::Error::missing_field("sourceId"))?;
        Ok(e)
    }
}

/// Renders timestamps as RFC 3339 with milliseconds and `Z`, the form Segment uses.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The earliest event time Rapport stores: the Unix epoch. Earlier corrected times are
/// refused (`invalid_timestamp`); the stores and every consumer index times from here.
pub const MIN_TIMESTAMP: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// How far after its receipt an event may be stamped. A later corrected time comes from a
/// client clock that is wrong (and no `sentAt` to correct it): it would win last-write-wins
/// on traits for as long as it stays in the future, so the event is stamped at `receivedAt`
/// instead, and the client's value stays in `originalTimestamp`.
pub const MAX_FUTURE_SKEW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// When an event happened, by Segment's clock-skew correction, bounded to what Rapport
/// stores: `None` when the corrected time is before [`MIN_TIMESTAMP`] (the message is
/// refused); `received_at` when it is more than [`MAX_FUTURE_SKEW`] after it.
pub fn event_time(
    received_at: DateTime<Utc>,
    client_time: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let t = corrected_timestamp(received_at, client_time, sent_at)?;
    if t < MIN_TIMESTAMP {
        None
    } else if t > received_at + MAX_FUTURE_SKEW {
        Some(received_at)
    } else {
        Some(t)
    }
}

/// Parses the ISO-8601 forms SDKs send: RFC 3339 with any offset and fraction, a date-time
/// without offset (taken as UTC), or a bare date (midnight UTC). Years outside 0000–9999
/// are refused: they have no RFC 3339 form, so nothing stored could be read back.
/// This is the one timestamp parser: ingest reads clients' times with it, and every
/// consumer reads stored events with it.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    parse_iso8601(s.trim()).filter(|t| (0..=9999).contains(&t.year()))
}

fn parse_iso8601(s: &str) -> Option<DateTime<Utc>> {
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

/// Replaces every lone UTF-16 surrogate escape in a JSON text (`"\ud83d"` without its
/// low half, as JavaScript emits when it cuts an emoji in two) with `\ufffd`, U+FFFD. Such
/// escapes are valid JSON syntax but no Unicode: a reader that decodes the string fails,
/// and would lose every sibling value with it. Everything else stays byte for byte; the
/// body comes back untouched (no copy) when it has none.
pub fn repair_lone_surrogates(body: Vec<u8>) -> Vec<u8> {
    let lone = lone_surrogates(&body);
    if lone.is_empty() {
        return body;
    }
    let mut out = body;
    for at in lone {
        out[at..at + 6].copy_from_slice(b"\\ufffd");
    }
    out
}

/// Byte positions of the `\uXXXX` escapes in JSON strings that are unpaired surrogates.
/// Backslashes stand only inside strings in JSON, so jumping from one to the next (with
/// `memchr`) finds every escape without tracking strings; a body with none costs one pass.
fn lone_surrogates(body: &[u8]) -> Vec<usize> {
    fn hex4(b: &[u8]) -> Option<u16> {
        let s = std::str::from_utf8(b.get(..4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    }
    let escape_at = |i: usize| -> Option<u16> {
        if body.get(i) == Some(&b'\\') && body.get(i + 1) == Some(&b'u') {
            hex4(&body[i + 2..])
        } else {
            None
        }
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let Some(at) = memchr::memchr(b'\\', &body[i..]) else {
            break;
        };
        let at = i + at;
        i = match escape_at(at) {
            Some(0xD800..=0xDBFF) if matches!(escape_at(at + 6), Some(0xDC00..=0xDFFF)) => at + 12,
            Some(0xD800..=0xDFFF) => {
                found.push(at);
                at + 6
            }
            Some(_) => at + 6,
            // Every other escape is two bytes long.
            None => at + 2,
        };
    }
    found
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
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => i = string_end(body, i),
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(PayloadError::new(
                        PayloadErrorCode::TooDeep,
                        format!("JSON is nested deeper than {max_depth} levels"),
                        None,
                    ));
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The position just after the string that opens at `body[open]` (a `"`), or the end of
/// `body` if it never closes. Jumps from quote or backslash to the next with `memchr`: most
/// bytes of an event are inside strings, and this is what keeps the scans of ingest cheap.
fn string_end(body: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < body.len() {
        let Some(at) = memchr::memchr2(b'"', b'\\', &body[i..]) else {
            break;
        };
        let at = i + at;
        if body[at] == b'"' {
            return at + 1;
        }
        i = at + 2;
    }
    body.len()
}

/// Refuses a number no reader can decode: JSON allows `1e400`, but it is beyond a 64-bit
/// float, and the usual decoders (serde_json, JavaScript gives `Infinity`, PostgreSQL's
/// `jsonb` refuses) fail on it or change it — a reader of traits would lose the whole object.
/// A linear scan of the message outside strings; only long or exponent numbers are parsed.
fn check_numbers(text: &str) -> Result<(), PayloadError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            i = string_end(bytes, i);
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = &text[start..i];
            let suspicious = token.len() > 15 || token.bytes().any(|c| c == b'e' || c == b'E');
            if suspicious && !token.parse::<f64>().is_ok_and(f64::is_finite) {
                let mut shown: String = token.chars().take(40).collect();
                if token.len() > 40 {
                    shown.push('…');
                }
                return Err(PayloadError::new(
                    PayloadErrorCode::NumberOutOfRange,
                    format!("the number {shown} is beyond the range of a 64-bit float"),
                    None,
                ));
            }
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// Names the top-level field that holds the number [`check_numbers`] refused (the error path
/// only: the scan itself does not track keys).
fn name_number_field(text: &str, mut e: PayloadError) -> PayloadError {
    if let Ok(entries) = serde_json::from_str::<Entries>(text)
        && let Some((key, _)) = entries
            .0
            .iter()
            .find(|(_, v)| check_numbers(v.get()).is_err())
    {
        e.field = Some(key.to_string());
    }
    e
}

/// The fields of a message as sent, each kept as raw JSON until validated, and the top-level
/// fields Rapport does not interpret, in the order sent.
#[derive(Default)]
struct RawMessage<'a> {
    kind: Option<&'a RawValue>,
    message_id: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    anonymous_id: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    category: Option<&'a RawValue>,
    group_id: Option<&'a RawValue>,
    previous_id: Option<&'a RawValue>,
    properties: Option<&'a RawValue>,
    traits: Option<&'a RawValue>,
    context: Option<&'a RawValue>,
    integrations: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    original_timestamp: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
    write_key: Option<&'a RawValue>,
    extra: Vec<(String, &'a RawValue)>,
}

impl<'a> RawMessage<'a> {
    /// Reads a message object. A key given twice is refused: which of its values counts
    /// would otherwise depend on the reader.
    fn parse(text: &'a str) -> Result<RawMessage<'a>, PayloadError> {
        let entries: Entries<'a> = parse_json(text.as_bytes())?;
        let mut m = RawMessage::default();
        // A message has a dozen top-level keys: comparing with the earlier ones costs less
        // than hashing them into a set.
        for (i, (key, _)) in entries.0.iter().enumerate() {
            if entries.0[..i].iter().any(|(k, _)| k == key) {
                return Err(PayloadError::new(
                    PayloadErrorCode::InvalidJson,
                    format!("`{key}` is given more than once"),
                    Some(key),
                ));
            }
        }
        for (key, value) in entries.0 {
            let slot = match key.as_ref() {
                "type" => &mut m.kind,
                "messageId" => &mut m.message_id,
                "userId" => &mut m.user_id,
                "anonymousId" => &mut m.anonymous_id,
                "event" => &mut m.event,
                "name" => &mut m.name,
                "category" => &mut m.category,
                "groupId" => &mut m.group_id,
                "previousId" => &mut m.previous_id,
                "properties" => &mut m.properties,
                "traits" => &mut m.traits,
                "context" => &mut m.context,
                "integrations" => &mut m.integrations,
                "timestamp" => &mut m.timestamp,
                "originalTimestamp" => &mut m.original_timestamp,
                "sentAt" => &mut m.sent_at,
                "writeKey" => &mut m.write_key,
                k if RESERVED_FIELDS.contains(&k) => continue,
                _ => {
                    m.extra.push((key.into_owned(), value));
                    continue;
                }
            };
            *slot = Some(value);
        }
        Ok(m)
    }
}

/// The entries of a JSON object in order, values unparsed.
struct Entries<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
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

/// The longest text a [`MessageSummary`] keeps of a field, in characters.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// What tells a message apart, read from it whether it is valid or not
/// ([`ParsedRequest::summary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// `type` as sent (or the endpoint's).
    pub kind: Option<String>,
    pub event: Option<String>,
    pub message_id: Option<String>,
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
        let msg = RawMessage::parse(raw.get())?;
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

    /// What can be read of message `index` to tell it apart, valid or not: its `type` (the
    /// endpoint's for single-message endpoints), `event` and `messageId` when they are
    /// JSON strings, each cut to [`MAX_SUMMARY_CHARS`] characters. Never anything else of
    /// the message: a refusal is recorded with this, not with the payload.
    pub fn summary(&self, index: usize) -> MessageSummary {
        let mut summary = MessageSummary {
            kind: self.endpoint_type.map(|t| t.as_str().to_owned()),
            ..MessageSummary::default()
        };
        let Some(raw) = self.items.get(index) else {
            return summary;
        };
        let Ok(msg) = RawMessage::parse(raw.get()) else {
            return summary;
        };
        let text = |v: Option<&RawValue>| {
            v.and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                .map(|s| s.chars().take(MAX_SUMMARY_CHARS).collect::<String>())
        };
        if summary.kind.is_none() {
            summary.kind = text(msg.kind);
        }
        summary.event = text(msg.event);
        summary.message_id = text(msg.message_id);
        summary
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
        check_numbers(text).map_err(|e| name_number_field(text, e))?;
        let msg = RawMessage::parse(text)?;
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
        let event = opt_name(msg.event, "event")?;
        let name = opt_name(msg.name, "name")?;
        let category = opt_name(msg.category, "category")?;
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
        // What the processor reads as consent must read: refuse it here, naming the field.
        if let Some(c) = &context {
            crate::consent::preferences_in_context(c.get()).map_err(|e| {
                PayloadError::new(
                    PayloadErrorCode::InvalidFieldType,
                    e.message,
                    Some(&e.field),
                )
            })?;
        }
        let integrations =
            merge_objects(self.batch_integrations, msg.integrations, "integrations")?;

        // RudderStack SDKs send the client's time as `originalTimestamp`; Segment's as
        // `timestamp`. Either is the client time, read the same way.
        let (original_timestamp, time_field) = match opt_string_strict(msg.timestamp, "timestamp")?
        {
            Some(t) => (Some(t), "timestamp"),
            None => (
                opt_string_strict(msg.original_timestamp, "originalTimestamp")?,
                "originalTimestamp",
            ),
        };
        let client_time = match &original_timestamp {
            Some(s) => Some(parse_timestamp(s).ok_or_else(|| bad_timestamp(time_field, s))?),
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
        let timestamp = event_time(stamp.received_at, client_time, sent_time).ok_or_else(|| {
            PayloadError::new(
                PayloadErrorCode::InvalidTimestamp,
                format!(
                    "`{time_field}` (corrected for the client clock) is before {}",
                    format_timestamp(&MIN_TIMESTAMP)
                ),
                Some(time_field),
            )
        })?;

        let message_id = match opt_id(msg.message_id, "messageId")? {
            Some(id) => id,
            None => new_message_id(),
        };
        let extra = msg
            .extra
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();

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
            extra,
        })
    }
}

/// Segment's clock-skew correction: the client's clock may be wrong, but the interval between
/// the event and the send is measured on that one clock, so it carries over to the server's:
/// `receivedAt − (sentAt − timestamp)`. `None` when that falls outside chrono's range.
pub fn corrected_timestamp(
    received_at: DateTime<Utc>,
    client_time: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (client_time, sent_at) {
        (Some(t), Some(sent)) => received_at.checked_sub_signed(sent.signed_duration_since(t)),
        (Some(t), None) => Some(t),
        (None, _) => Some(received_at),
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
        format!("`{field}` is not an ISO-8601 timestamp with a year from 0000 to 9999: {value:?}"),
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

/// The longest identifier accepted (`userId`, `anonymousId`, `groupId`, `previousId`,
/// `messageId`), in bytes of UTF-8: the longest value identity resolution keeps as an
/// identifier, so that an accepted id always joins a profile.
pub const MAX_ID_BYTES: usize = crate::identity::identifier::MAX_IDENTIFIER_LEN;

/// The longest name accepted (`event`, `name`, `category`), in bytes of UTF-8: well within
/// what every backend indexes (PostgreSQL's B-tree entries hold at most 2,704 bytes).
pub const MAX_NAME_BYTES: usize = 1024;

/// Refuses what no backend can store or index: a NUL character (PostgreSQL's `text` cannot
/// hold one) and values over `max` bytes.
fn check_stored_text(field: &str, value: &str, max: usize) -> Result<(), PayloadError> {
    if value.len() > max {
        return Err(PayloadError::new(
            PayloadErrorCode::ValueTooLong,
            format!(
                "`{field}` is {} bytes long, the limit is {max}",
                value.len()
            ),
            Some(field),
        ));
    }
    if value.contains('\0') {
        return Err(PayloadError::new(
            PayloadErrorCode::InvalidCharacter,
            format!("`{field}` contains a NUL character (\\u0000)"),
            Some(field),
        ));
    }
    Ok(())
}

/// A name (`event`, `name`, `category`): a string within the stored-text limits.
fn opt_name(v: Option<&RawValue>, field: &str) -> Result<Option<String>, PayloadError> {
    let s = opt_string_strict(v, field)?;
    if let Some(s) = &s {
        check_stored_text(field, s, MAX_NAME_BYTES)?;
    }
    Ok(s)
}

/// An identifier: a string, or a number that SDKs of typed languages send as-is, stored as
/// the exact text the client sent (`99999999999999999999` stays itself and never becomes
/// `1e20`, which would join two people). Blank and whitespace-only values count as absent.
fn opt_id(v: Option<&RawValue>, field: &str) -> Result<Option<String>, PayloadError> {
    let Some(v) = v.filter(|v| !is_null(v)) else {
        return Ok(None);
    };
    let text = v.get();
    let id = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|_| PayloadError::field_type(field, "a string"))?
    } else if serde_json::from_str::<serde_json::Number>(text).is_ok() {
        text.to_owned()
    } else {
        return Err(PayloadError::field_type(field, "a string or a number"));
    };
    if id.trim().is_empty() {
        return Ok(None);
    }
    check_stored_text(field, &id, MAX_ID_BYTES)?;
    Ok(Some(id))
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
    fn a_summary_names_the_message_but_keeps_nothing_else() {
        let limits = Limits::default();
        let long = "e".repeat(500);
        let body = format!(
            r#"{{"batch":[{{"type":"track","event":"{long}","messageId":"m1","properties":{{"email":"a@b.c"}}}},{{"type":7,"event":null}},"not an object"]}}"#
        );
        let req = ParsedRequest::batch(body.as_bytes(), &limits).unwrap();
        let first = req.summary(0);
        assert_eq!(first.kind.as_deref(), Some("track"));
        assert_eq!(first.event.map(|e| e.len()), Some(MAX_SUMMARY_CHARS));
        assert_eq!(first.message_id.as_deref(), Some("m1"));
        assert_eq!(req.summary(1), MessageSummary::default());
        assert_eq!(req.summary(2), MessageSummary::default());
        assert_eq!(req.summary(9), MessageSummary::default());
        let single =
            ParsedRequest::single(br#"{"event":"Signed Up"}"#, EventType::Track, &limits).unwrap();
        assert_eq!(single.summary(0).kind.as_deref(), Some("track"));
        assert_eq!(single.summary(0).event.as_deref(), Some("Signed Up"));
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
            (
                r#"{"userId":"u","event":"x","context":{"consent":{"categoryPreferences":{"ads":"yes"}}}}"#,
                "context.consent.categoryPreferences.ads",
            ),
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

    // Regression tests, one per kind of fault where ingest accepted what a later stage
    // could not read back as the client meant it.

    #[test]
    fn numeric_ids_keep_the_exact_text_sent() {
        let a = one(
            r#"{"userId":99999999999999999999,"event":"x"}"#,
            EventType::Track,
        )
        .unwrap();
        let b = one(
            r#"{"userId":99999999999999999998,"event":"x"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(a.user_id.as_deref(), Some("99999999999999999999"));
        assert_eq!(b.user_id.as_deref(), Some("99999999999999999998"));
        let c = one(
            r#"{"anonymousId":1e2,"groupId":-7,"userId":"u"}"#,
            EventType::Group,
        )
        .unwrap();
        assert_eq!(c.anonymous_id.as_deref(), Some("1e2"));
        assert_eq!(c.group_id.as_deref(), Some("-7"));
        let back = Event::from_json(&a.to_json()).unwrap();
        assert_eq!(back.user_id.as_deref(), Some("99999999999999999999"));
    }

    #[test]
    fn blank_ids_count_as_absent() {
        for blank in [r#""""#, r#""   ""#, r#""\t""#, r#""\n ""#] {
            let err = one(
                &format!(r#"{{"userId":{blank},"event":"x"}}"#),
                EventType::Track,
            )
            .unwrap_err();
            assert_eq!(err.code, PayloadErrorCode::MissingIdentity, "{blank}");
            let e = one(
                &format!(
                    r#"{{"userId":{blank},"anonymousId":"a","event":"x","messageId":{blank}}}"#
                ),
                EventType::Track,
            )
            .unwrap();
            assert_eq!(e.user_id, None);
            assert_eq!(e.message_id, "gen-1", "a blank messageId is replaced");
        }
        let err = one(r#"{"userId":"u","groupId":" "}"#, EventType::Group).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("groupId"));
    }

    #[test]
    fn far_future_client_time_is_stamped_at_receipt() {
        let received = stamp().received_at;
        // The year-9999 timestamp of the bug report, with a recent sentAt.
        let e = one(
            r#"{"userId":"u","event":"x","timestamp":"9999-12-31T23:59:59.999Z","sentAt":"2024-05-01T11:59:58Z"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(e.timestamp, received);
        assert_eq!(
            e.original_timestamp.as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        // Without sentAt: a clock two days fast.
        let e = one(
            r#"{"userId":"u","event":"x","timestamp":"2024-05-03T12:00:00Z"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(e.timestamp, received);
        // Within the bound the client's time stands.
        let e = one(
            r#"{"userId":"u","event":"x","timestamp":"2024-05-01T12:30:00Z"}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(e.timestamp, received + chrono::Duration::minutes(30));
        // What is stored reads back.
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back.timestamp, e.timestamp);
    }

    #[test]
    fn timestamps_outside_the_stored_range_are_refused() {
        for (body, field) in [
            (
                r#"{"userId":"u","event":"x","timestamp":"1969-12-31T23:59:59Z"}"#,
                "timestamp",
            ),
            (
                r#"{"userId":"u","event":"x","timestamp":"+10000-01-01T00:00:00Z"}"#,
                "timestamp",
            ),
            (
                r#"{"userId":"u","event":"x","sentAt":"+99999-01-01T00:00:00Z"}"#,
                "sentAt",
            ),
            // Corrected for the skew, the event would be before 1970.
            (
                r#"{"userId":"u","event":"x","timestamp":"1975-01-01T00:00:00Z","sentAt":"2030-01-01T00:00:00Z"}"#,
                "timestamp",
            ),
        ] {
            let err = one(body, EventType::Track).unwrap_err();
            assert_eq!(err.code, PayloadErrorCode::InvalidTimestamp, "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
        assert!(parse_timestamp("0000-01-01T00:00:00Z").is_some());
        assert!(parse_timestamp("+10000-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn rudderstack_original_timestamp_is_the_client_time() {
        let e = one(
            r#"{"userId":"u","event":"x","originalTimestamp":"2024-05-01T12:59:50Z","sentAt":"2024-05-01T13:00:00Z","channel":"server","rudderId":"r-1","context":{}}"#,
            EventType::Track,
        )
        .unwrap();
        assert_eq!(e.timestamp, stamp().received_at - Duration::seconds(10));
        assert_eq!(
            e.original_timestamp.as_deref(),
            Some("2024-05-01T12:59:50Z")
        );
        let stored: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(stored["channel"], "server");
        assert_eq!(stored["rudderId"], "r-1");
        let err = one(
            r#"{"userId":"u","event":"x","originalTimestamp":"soon"}"#,
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("originalTimestamp"));
    }

    #[test]
    fn unknown_top_level_fields_are_kept_but_reserved_ones_are_not() {
        let e = one(
            r#"{"userId":"u","event":"x","channel":"web","version":1.10,"writeKey":"wk_secret","receivedAt":"2000-01-01T00:00:00Z","sourceId":"forged","planViolations":"forged","request_ip":"1.2.3.4"}"#,
            EventType::Track,
        )
        .unwrap();
        let stored = String::from_utf8(e.to_json()).unwrap();
        assert!(
            stored.ends_with(r#","channel":"web","version":1.10,"request_ip":"1.2.3.4"}"#),
            "{stored}"
        );
        assert!(
            !stored.contains("wk_secret") && !stored.contains("forged"),
            "{stored}"
        );
        let back = Event::from_json(stored.as_bytes()).unwrap();
        assert_eq!(back.source_id, "src_1");
        assert_eq!(back.extra.len(), 3);
        assert_eq!(back.to_json(), e.to_json());
    }

    #[test]
    fn numbers_no_reader_can_decode_are_refused() {
        let err = one(
            r#"{"userId":"u","traits":{"n":1e400}}"#,
            EventType::Identify,
        )
        .unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::NumberOutOfRange);
        let big = "9".repeat(400);
        assert!(
            one(
                &format!(r#"{{"userId":"u","traits":{{"n":{big}}}}}"#),
                EventType::Identify
            )
            .is_err()
        );
        for fine in ["1e300", "-2.5E-400", "12345678901234567890123", "0.1"] {
            let e = one(
                &format!(r#"{{"userId":"u","traits":{{"n":{fine},"s":"1e400"}}}}"#),
                EventType::Identify,
            );
            assert!(e.is_ok(), "{fine}");
        }
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let err = one(
            r#"{"userId":"a","userId":"b","event":"x"}"#,
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::InvalidJson);
        assert_eq!(err.field.as_deref(), Some("userId"));
    }

    #[test]
    fn lone_surrogates_are_repaired_and_nothing_else_changes() {
        let body = br#"{"userId":"u","traits":{"bio":"Loves \ud83d","ok":"\ud83d\ude00","low":"\udc00x","esc":"\\ud83d","n":1.50}}"#;
        let repaired = repair_lone_surrogates(body.to_vec());
        assert_eq!(
            std::str::from_utf8(&repaired).unwrap(),
            r#"{"userId":"u","traits":{"bio":"Loves \ufffd","ok":"\ud83d\ude00","low":"\ufffdx","esc":"\\ud83d","n":1.50}}"#
        );
        let traits: serde_json::Value = serde_json::from_slice(&repaired).unwrap();
        assert_eq!(traits["traits"]["bio"], "Loves \u{fffd}");
        assert_eq!(traits["traits"]["ok"], "\u{1f600}");
        let clean = br#"{"a":"\u00e9"}"#.to_vec();
        let ptr = clean.as_ptr();
        let out = repair_lone_surrogates(clean);
        assert_eq!(out.as_ptr(), ptr, "no copy when clean");
    }

    #[test]
    fn values_no_backend_can_store_are_refused_with_the_field() {
        let err = one(r#"{"userId":"x\u0000y","event":"E"}"#, EventType::Track).unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::InvalidCharacter);
        assert_eq!(err.field.as_deref(), Some("userId"));
        let err = one(r#"{"userId":"u","event":"E\u0000"}"#, EventType::Track).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("event"));
        let name = "n".repeat(MAX_NAME_BYTES + 1);
        let err = one(
            &format!(r#"{{"userId":"u","event":"{name}"}}"#),
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::ValueTooLong);
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let err = one(
            &format!(r#"{{"userId":"{long}","event":"E"}}"#),
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.code, PayloadErrorCode::ValueTooLong);
        let err = one(
            &format!(r#"{{"userId":"u","event":"E","messageId":"{long}"}}"#),
            EventType::Track,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messageId"));
        let at_limit = "x".repeat(MAX_ID_BYTES);
        assert!(
            one(
                &format!(r#"{{"userId":"{at_limit}","event":"E"}}"#),
                EventType::Track
            )
            .is_ok()
        );
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
