//! Segment's warehouse layout, as Rapport writes it into PostgreSQL: one table per event
//! type (`tracks`, `identifies`, `pages`, `screens`, `groups`, `aliases`), one table per
//! track event name with its properties as typed columns, `users` with each profile's
//! current traits, and `segment_memberships`. Names follow Segment's rule: lower-cased
//! snake_case, anything but ASCII letters, digits and `_` turned into `_` (a name that
//! starts with such a character keeps one leading `_`: `$revenue` → `_revenue`).
//!
//! Columns are added as new properties appear (never dropped nor retyped: a property seen
//! with another type later is written as text into a sibling column `<name>_text`).

use serde_json::Value;

/// The longest PostgreSQL identifier, bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks a schema or table name given by a user: 1 to 63 bytes of lower-case letters,
/// digits and `_`, not starting with a digit.
pub fn check_identifier(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENTIFIER_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {MAX_IDENTIFIER_BYTES} lower-case letters, digits or `_`, not starting with a digit"
        ))
    }
}

/// Segment's name for a table or column: `Order Completed` → `order_completed`,
/// `$revenue` → `_revenue`; a leading digit gets a `_` prefix; cut to 63 bytes; the empty
/// name is `_`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    let trimmed = out.trim_matches('_');
    let mut out = if trimmed.is_empty() {
        "_".to_owned()
    } else if name.starts_with(|c: char| !c.is_ascii_alphanumeric()) && !trimmed.is_empty() {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out.truncate(MAX_IDENTIFIER_BYTES);
    out
}

/// The table of an event type.
pub fn type_table(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "track" => "tracks",
        "identify" => "identifies",
        "page" => "pages",
        "screen" => "screens",
        "group" => "groups",
        "alias" => "aliases",
        _ => return None,
    })
}

/// Table names Rapport uses itself, which an event's table must not take (`Tracks` as an
/// event name gets `tracks_event`).
const RESERVED_TABLES: &[&str] = &[
    "tracks",
    "identifies",
    "pages",
    "screens",
    "groups",
    "aliases",
    "users",
    "segment_memberships",
    "rapport_destination_state",
];

/// The table of a track event's name.
pub fn event_table(event_name: &str) -> String {
    let t = snake_case(event_name);
    if RESERVED_TABLES.contains(&t.as_str()) {
        let mut t = format!("{t}_event");
        t.truncate(MAX_IDENTIFIER_BYTES);
        t
    } else {
        t
    }
}

/// A column's PostgreSQL type, as inferred from the first value seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    BigInt,
    Double,
    Timestamp,
    Text,
    Jsonb,
}

impl ColumnType {
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Timestamp => "timestamptz",
            ColumnType::Text => "text",
            ColumnType::Jsonb => "jsonb",
        }
    }

    /// The type of a JSON value; `None` for `null` (which says nothing).
    pub fn of(value: &Value) -> Option<ColumnType> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Boolean,
            Value::Number(n) if n.is_i64() => ColumnType::BigInt,
            Value::Number(_) => ColumnType::Double,
            Value::String(s) if looks_like_time(s) => ColumnType::Timestamp,
            Value::String(_) => ColumnType::Text,
            Value::Array(_) | Value::Object(_) => ColumnType::Jsonb,
        })
    }

    /// Whether a value of type `other` can be written into a column of this type.
    pub fn accepts(self, other: ColumnType) -> bool {
        self == other
            || (self == ColumnType::Double && other == ColumnType::BigInt)
            || (self == ColumnType::Text && other == ColumnType::Timestamp)
    }
}

fn looks_like_time(s: &str) -> bool {
    // Full ISO-8601 date-times only: a bare "2024" is a string, not a time.
    s.len() >= 20
        && s.as_bytes()[4] == b'-'
        && s.contains('T')
        && rapport_core::event::parse_timestamp(s).is_some()
}

/// Double-quotes an identifier for SQL (every name here is already snake_case, so this
/// is belt and braces).
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The columns a set of properties needs: `(column, type)` for every non-null property,
/// nested objects flattened Segment's way (`address.city` → `address_city`), arrays kept
/// as JSON.
pub fn property_columns(properties: &Value) -> Vec<(String, ColumnType, Value)> {
    let mut out = Vec::new();
    flatten("", properties, &mut out);
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, ColumnType, Value)>) {
    let Value::Object(o) = value else { return };
    for (k, v) in o {
        let name = if prefix.is_empty() {
            snake_case(k)
        } else {
            let mut n = format!("{prefix}_{}", snake_case(k));
            n.truncate(MAX_IDENTIFIER_BYTES);
            n
        };
        match v {
            Value::Object(_) => flatten(&name, v, out),
            v => {
                if let Some(t) = ColumnType::of(v) {
                    out.push((name, t, v.clone()));
                }
            }
        }
    }
}

/// Where a property's value goes, given the table's current columns: its own column when
/// the types fit, a new column, or, when the column exists with another type, the text
/// column beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Existing(String),
    New(String, ColumnType),
}

/// Plans one property's column against the existing `(name, type)` columns.
pub fn place(name: &str, kind: ColumnType, existing: &[(String, ColumnType)]) -> Placement {
    match existing.iter().find(|(n, _)| n == name) {
        None => Placement::New(name.to_owned(), kind),
        Some((_, t)) if t.accepts(kind) => Placement::Existing(name.to_owned()),
        Some(_) => {
            let mut text = format!("{name}_text");
            text.truncate(MAX_IDENTIFIER_BYTES);
            match existing.iter().find(|(n, _)| *n == text) {
                Some(_) => Placement::Existing(text),
                None => Placement::New(text, ColumnType::Text),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn names_follow_segment() {
        assert_eq!(snake_case("Order Completed"), "order_completed");
        assert_eq!(snake_case("orderCompleted"), "order_completed");
        assert_eq!(snake_case("$revenue"), "_revenue");
        assert_eq!(snake_case("2fa Enabled"), "_2fa_enabled");
        assert_eq!(snake_case("Ünïcödé!!"), "_n_c_d");
        assert_eq!(snake_case("..."), "_");
        assert_eq!(event_table("Tracks"), "tracks_event");
        assert_eq!(event_table("Users"), "users_event");
        assert_eq!(type_table("identify"), Some("identifies"));
    }

    #[test]
    fn columns_are_typed_from_values_and_flattened() {
        let cols = property_columns(&json!({
            "revenue": 42.5, "quantity": 2, "coupon": null, "gift": false,
            "shipped_at": "2026-12-02T10:00:00Z", "year": "2024",
            "address": {"city": "Lyon", "geo": {"lat": 45.7}}, "items": ["a"]
        }));
        let types: Vec<(&str, ColumnType)> =
            cols.iter().map(|(n, t, _)| (n.as_str(), *t)).collect();
        assert_eq!(
            types,
            vec![
                ("revenue", ColumnType::Double),
                ("quantity", ColumnType::BigInt),
                ("gift", ColumnType::Boolean),
                ("shipped_at", ColumnType::Timestamp),
                ("year", ColumnType::Text),
                ("address_city", ColumnType::Text),
                ("address_geo_lat", ColumnType::Double),
                ("items", ColumnType::Jsonb),
            ]
        );
    }

    #[test]
    fn a_property_that_changes_type_goes_beside_its_column() {
        let existing = vec![
            ("plan".to_owned(), ColumnType::BigInt),
            ("price".to_owned(), ColumnType::Double),
        ];
        assert_eq!(
            place("plan", ColumnType::BigInt, &existing),
            Placement::Existing("plan".into())
        );
        assert_eq!(
            place("price", ColumnType::BigInt, &existing),
            Placement::Existing("price".into())
        );
        assert_eq!(
            place("plan", ColumnType::Text, &existing),
            Placement::New("plan_text".into(), ColumnType::Text)
        );
        assert_eq!(
            place("new", ColumnType::Boolean, &existing),
            Placement::New("new".into(), ColumnType::Boolean)
        );
        assert!(check_identifier("rapport").is_ok());
        assert!(check_identifier("Rapport").is_err());
        assert!(check_identifier("1x").is_err());
    }

    proptest! {
        #[test]
        fn every_name_becomes_a_valid_identifier(name in "\\PC{0,80}") {
            let s = snake_case(&name);
            prop_assert!(!s.is_empty() && s.len() <= MAX_IDENTIFIER_BYTES);
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            prop_assert!(!s.as_bytes()[0].is_ascii_digit());
            prop_assert_eq!(snake_case(&s), s.clone());
        }
    }
}
