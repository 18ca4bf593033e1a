//! NDJSON: one message per line, kept byte for byte but for the `type` and `messageId`
//! added when absent.

use super::*;

// ---------------------------------------------------------------------------------------
// NDJSON.
// ---------------------------------------------------------------------------------------

/// The fields an NDJSON line is inspected for; everything else is passed through untouched.
/// `None` when the key is absent, `Some("null")` when it is present but null.
#[derive(Deserialize)]
pub(super) struct Probe<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow, default, deserialize_with = "present")]
    message_id: Option<&'a RawValue>,
}

pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Turns one NDJSON line into the message to send: the line's own text, with `type` (from
/// `default_type`) and a deterministic `messageId` added when absent. The client's bytes are
/// otherwise kept as written.
pub fn ndjson_message(
    text: &str,
    line: u64,
    default_type: Option<EventType>,
    ids: &MessageIds,
    limits: &Limits,
) -> Result<String, LineError> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Err(LineError::new(
            "invalid_json",
            "a line must be a JSON object (one message)",
        ));
    }
    let probe: Probe = serde_json::from_str(trimmed)
        .map_err(|e| LineError::new("invalid_json", format!("invalid JSON: {e}")))?;
    let given_type = match probe.kind.filter(|v| v.get() != "null") {
        Some(raw) => {
            let s: String = serde_json::from_str(raw.get()).map_err(|_| LineError {
                code: "invalid_type".into(),
                message: "`type` must be a string".into(),
                field: Some("type".into()),
            })?;
            Some(EventType::parse(&s).ok_or_else(|| LineError {
                code: "invalid_type".into(),
                message: format!(
                    "`type` must be one of track, identify, page, screen, group, alias (got {s:?})"
                ),
                field: Some("type".into()),
            })?)
        }
        None => None,
    };
    let kind = match given_type.or(default_type) {
        Some(k) => k,
        None => {
            return Err(LineError {
                code: "missing_field".into(),
                message: "`type` is required (or pass --type)".into(),
                field: Some("type".into()),
            });
        }
    };
    let needs_id = match probe.message_id {
        None => true,
        Some(raw) => matches!(raw.get(), "null" | "\"\""),
    };
    let needs_type = given_type.is_none();
    // Keys present with a null or empty value cannot simply be added again.
    let can_insert =
        (!needs_id || probe.message_id.is_none()) && (!needs_type || probe.kind.is_none());
    let json = if !needs_id && !needs_type {
        trimmed.to_owned()
    } else if can_insert {
        let mut added = String::new();
        if needs_type {
            let _ = write!(added, r#""type":"{}""#, kind.as_str());
        }
        if needs_id {
            if !added.is_empty() {
                added.push(',');
            }
            let _ = write!(
                added,
                r#""messageId":"{}""#,
                ids.id(line, trimmed.as_bytes())
            );
        }
        let rest = trimmed[1..].trim_start();
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{{added}{sep}{rest}")
    } else {
        // A key is present but null or empty: rewrite through a map (rare).
        let mut map: Map<String, Value> = serde_json::from_str(trimmed)
            .map_err(|e| LineError::new("invalid_json", format!("invalid JSON: {e}")))?;
        if needs_type {
            map.insert("type".into(), Value::String(kind.as_str().into()));
        }
        if needs_id {
            map.insert(
                "messageId".into(),
                Value::String(ids.id(line, trimmed.as_bytes())),
            );
        }
        Value::Object(map).to_string()
    };
    validate(&json, kind, limits)?;
    Ok(json)
}

/// Reads NDJSON records from `reader`, one per non-blank line, numbering lines from 1.
pub fn read_ndjson<R: BufRead>(
    mut reader: R,
    default_type: Option<EventType>,
    ids: &MessageIds,
    limits: &Limits,
    emit: &mut dyn FnMut(Parsed) -> bool,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line += 1;
        let mut bytes = &buf[..];
        if line == 1 && bytes.starts_with(b"\xEF\xBB\xBF") {
            bytes = &bytes[3..];
        }
        let parsed = match std::str::from_utf8(bytes) {
            Err(_) => Parsed::Rejected(Rejection {
                line,
                error: LineError::new("invalid_utf8", "the line is not valid UTF-8"),
                record: Value::String(String::from_utf8_lossy(bytes).trim_end().to_owned()),
            }),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match ndjson_message(text, line, default_type, ids, limits) {
                Ok(json) => Parsed::Message(Prepared { line, json }),
                Err(error) => Parsed::Rejected(Rejection {
                    line,
                    error,
                    record: Value::String(text.trim_end().to_owned()),
                }),
            },
        };
        if !emit(parsed) {
            return Ok(());
        }
    }
}
