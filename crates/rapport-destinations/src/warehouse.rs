//! Segment's warehouse layout, as Rapport writes it into PostgreSQL: one table per event
//! type (`tracks`, `identifies`, `pages`, `screens`, `groups`, `aliases`), one table per
//! track event name with its properties as typed columns, `users` with each profile's
//! current traits, and `segment_memberships`. Names follow Segment's rule: lower-cased
//! snake_case, anything but ASCII letters, digits and `_` turned into `_` (a name that
//! starts with such a character keeps one leading `_`: `$revenue` → `_revenue`).
//!
//! Columns are added as new properties appear (never dropped nor retyped: a property seen
//! with another type later is written as text into a sibling column `<name>_text`).
//!
//! Here too are the rows a message makes ([`rows`]), their placement into a table's
//! columns ([`place_row`]) and the statements that write them, every identifier quoted
//! and every value a bind parameter; the engine's warehouse writer runs them.

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

/// The most columns a PostgreSQL table holds (columns dropped by hand still count there,
/// so the database may refuse sooner: that refusal is a dead letter too).
pub const MAX_COLUMNS: usize = 1600;

/// One row to write: its table and its values by column, each with the type its value
/// asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: String,
    pub columns: Vec<(String, ColumnType, Value)>,
}

impl Row {
    fn new(table: &str) -> Row {
        Row {
            table: table.to_owned(),
            columns: Vec::new(),
        }
    }

    /// Adds a column unless the row has one of that name already: the first wins, so the
    /// common columns, pushed first, win over a property of the same name.
    fn push(&mut self, name: &str, kind: ColumnType, value: Value) {
        if !self.columns.iter().any(|(n, _, _)| n == name) {
            self.columns.push((name.to_owned(), kind, value));
        }
    }

    fn extend(&mut self, columns: Vec<(String, ColumnType, Value)>) {
        for (n, t, v) in columns {
            self.push(&n, t, v);
        }
    }
}

/// The rows one message makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// Into the type table, and for a track into its event table too: inserted once, by
    /// `id` (a second delivery of the message inserts nothing).
    pub inserts: Vec<Row>,
    /// A row upserted by `id`, the latest `timestamp` winning per column: the profile's
    /// row in `users` (from an identify of a resolved profile), or its row in
    /// `segment_memberships` (from a segment entry or exit).
    pub user: Option<Row>,
}

/// A segment entry's or exit's row in `segment_memberships`, keyed `{profile}/{segment}`:
/// `member`, and `entered_at` or `exited_at`, with `timestamp` the change's time.
fn membership_row(message: &Value, entered: bool) -> Option<Rows> {
    let profile = message.pointer("/rapport/profile_id")?.as_str()?;
    let segment = message.get("segment")?.as_str()?;
    let at = message.get("timestamp")?.as_str()?;
    let mut row = Row::new("segment_memberships");
    row.push(
        "id",
        ColumnType::Text,
        format!("{profile}/{segment}").into(),
    );
    row.push("profile_id", ColumnType::Text, profile.into());
    row.push("segment", ColumnType::Text, segment.into());
    row.push("member", ColumnType::Boolean, entered.into());
    let stamp = if entered { "entered_at" } else { "exited_at" };
    row.push(stamp, ColumnType::Timestamp, at.into());
    row.push("timestamp", ColumnType::Timestamp, at.into());
    Some(Rows {
        inserts: Vec::new(),
        user: Some(row),
    })
}

/// The rows of a message as destinations receive it (the stored event with `rapport:
/// {profile_id, identifiers}`), `id` being its idempotency key. `None` for a type that
/// has no table.
pub fn rows(message: &Value, id: &str) -> Option<Rows> {
    let kind = message.get("type").and_then(Value::as_str)?;
    match kind {
        "segment_entered" => return membership_row(message, true),
        "segment_exited" => return membership_row(message, false),
        _ => {}
    }
    let table = type_table(kind)?;
    let text = |field: &str| message.get(field).and_then(Value::as_str);
    let mut common = Row::new(table);
    common.push("id", ColumnType::Text, Value::from(id));
    if let Some(v) = text("messageId") {
        common.push("message_id", ColumnType::Text, v.into());
    }
    for (field, column) in [("receivedAt", "received_at"), ("timestamp", "timestamp")] {
        // Rapport's own times, always in one form.
        if let Some(v) = text(field) {
            common.push(column, ColumnType::Timestamp, v.into());
        }
    }
    for (field, column) in [
        ("sentAt", "sent_at"),
        ("originalTimestamp", "original_timestamp"),
    ] {
        // The client's, as sent: a time only when it reads as one.
        if let Some(v) = message.get(field)
            && let Some(t) = ColumnType::of(v)
        {
            common.push(column, t, v.clone());
        }
    }
    for (field, column) in [("userId", "user_id"), ("anonymousId", "anonymous_id")] {
        if let Some(v) = text(field) {
            common.push(column, ColumnType::Text, v.into());
        }
    }
    let profile = message
        .get("rapport")
        .and_then(|r| r.get("profile_id"))
        .and_then(Value::as_str);
    if let Some(p) = profile {
        common.push("rapport_profile_id", ColumnType::Text, p.into());
    }
    if let Some(context) = message.get("context") {
        common.extend(property_columns(&serde_json::json!({ "context": context })));
    }
    let properties = || property_columns(message.get("properties").unwrap_or(&Value::Null));
    let traits = || property_columns(message.get("traits").unwrap_or(&Value::Null));
    let mut inserts = Vec::new();
    let mut user = None;
    match kind {
        "track" => {
            if let Some(name) = text("event") {
                let events = event_table(name);
                common.push("event", ColumnType::Text, Value::from(events.as_str()));
                common.push("event_text", ColumnType::Text, name.into());
                let mut row = common.clone();
                row.table = events;
                row.extend(properties());
                inserts.push(common);
                inserts.push(row);
            } else {
                inserts.push(common);
            }
        }
        "identify" => {
            if let Some(p) = profile {
                let mut u = Row::new("users");
                u.push("id", ColumnType::Text, p.into());
                for column in ["received_at", "timestamp", "user_id"] {
                    if let Some((n, t, v)) = common.columns.iter().find(|(n, _, _)| n == column) {
                        u.push(n, *t, v.clone());
                    }
                }
                u.extend(traits());
                user = Some(u);
            }
            common.extend(traits());
            inserts.push(common);
        }
        "page" | "screen" => {
            for (field, column) in [("name", "name"), ("category", "category")] {
                if let Some(v) = text(field) {
                    common.push(column, ColumnType::Text, v.into());
                }
            }
            common.extend(properties());
            inserts.push(common);
        }
        "group" => {
            if let Some(v) = text("groupId") {
                common.push("group_id", ColumnType::Text, v.into());
            }
            common.extend(traits());
            inserts.push(common);
        }
        _ => {
            if let Some(v) = text("previousId") {
                common.push("previous_id", ColumnType::Text, v.into());
            }
            inserts.push(common);
        }
    }
    Some(Rows { inserts, user })
}

/// A row's values placed into its table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// `(column, the column's type, value)`, each column once.
    pub values: Vec<(String, ColumnType, Value)>,
    /// The columns to add before inserting, in order.
    pub added: Vec<(String, ColumnType)>,
}

/// Places `row`'s values into the table whose columns are `columns` (by [`place`]), and
/// adds the new ones to `columns`. `Err` naming the property when the table would pass
/// [`MAX_COLUMNS`]: the message cannot be written, whatever the retries.
pub fn place_row(row: &Row, columns: &mut Vec<(String, ColumnType)>) -> Result<Placed, String> {
    let mut placed = Placed {
        values: Vec::with_capacity(row.columns.len()),
        added: Vec::new(),
    };
    for (name, kind, value) in &row.columns {
        let (column, column_type) = match place(name, *kind, columns) {
            Placement::Existing(c) => {
                let t = columns
                    .iter()
                    .find(|(n, _)| *n == c)
                    .map_or(ColumnType::Text, |(_, t)| *t);
                (c, t)
            }
            Placement::New(c, t) => {
                if columns.len() >= MAX_COLUMNS {
                    return Err(format!(
                        "the table {} has {MAX_COLUMNS} columns, PostgreSQL's limit: no column \
                         can be added for {name}",
                        row.table
                    ));
                }
                columns.push((c.clone(), t));
                placed.added.push((c.clone(), t));
                (c, t)
            }
        };
        if !placed.values.iter().any(|(n, _, _)| *n == column) {
            placed.values.push((column, column_type, value.clone()));
        }
    }
    Ok(placed)
}

/// A value as the text bound for it: strings as they are, anything else as JSON; the
/// statement casts it to the column's type, so values are never spliced into SQL.
pub fn bind_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The [`ColumnType`] of a column as `information_schema.columns.data_type` names it.
/// Types Rapport does not make (a column someone altered by hand) are written as text
/// and left to PostgreSQL's assignment casts.
pub fn column_type_of(data_type: &str) -> ColumnType {
    match data_type {
        "boolean" => ColumnType::Boolean,
        "bigint" | "integer" | "smallint" => ColumnType::BigInt,
        "double precision" | "real" | "numeric" => ColumnType::Double,
        "timestamp with time zone" | "timestamp without time zone" => ColumnType::Timestamp,
        "jsonb" | "json" => ColumnType::Jsonb,
        _ => ColumnType::Text,
    }
}

fn table_name(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// `CREATE SCHEMA IF NOT EXISTS`.
pub fn create_schema_sql(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema))
}

/// A table as Rapport creates it: its `id` only; every other column is added as values
/// need it.
pub fn create_table_sql(schema: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"id\" text PRIMARY KEY)",
        table_name(schema, table)
    )
}

/// Adds a column (nothing when another writer added it meanwhile).
pub fn add_column_sql(schema: &str, table: &str, column: &str, kind: ColumnType) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
        table_name(schema, table),
        quote(column),
        kind.sql()
    )
}

fn values_sql(columns: &[(String, ColumnType)]) -> (String, String) {
    let names: Vec<String> = columns.iter().map(|(n, _)| quote(n)).collect();
    let params: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| match t {
            ColumnType::Text => format!("${}::text", i + 1),
            t => format!("${}::text::{}", i + 1, t.sql()),
        })
        .collect();
    (names.join(", "), params.join(", "))
}

/// Inserts one row, each value a text parameter (`$n`) cast to its column's type; a row
/// whose `id` is there already is left as it is.
pub fn insert_sql(schema: &str, table: &str, columns: &[(String, ColumnType)]) -> String {
    let (names, params) = values_sql(columns);
    format!(
        "INSERT INTO {} ({names}) VALUES ({params}) ON CONFLICT (\"id\") DO NOTHING",
        table_name(schema, table)
    )
}

/// Upserts a row of `table` (`users`, `segment_memberships`) by `id`: a value replaces
/// the stored one when its event is at least as recent as the row's `timestamp` (or the
/// stored one is null); `received_at` and `timestamp` keep the latest.
pub fn upsert_sql(schema: &str, table: &str, columns: &[(String, ColumnType)]) -> String {
    let (names, params) = values_sql(columns);
    let sets: Vec<String> = columns
        .iter()
        .filter(|(n, _)| n != "id")
        .map(|(n, _)| {
            let c = quote(n);
            if n == "received_at" || n == "timestamp" {
                format!("{c} = GREATEST(\"u\".{c}, EXCLUDED.{c})")
            } else {
                format!(
                    "{c} = CASE WHEN \"u\".{c} IS NULL OR \"u\".\"timestamp\" IS NULL \
                     OR \"u\".\"timestamp\" <= EXCLUDED.\"timestamp\" \
                     THEN EXCLUDED.{c} ELSE \"u\".{c} END"
                )
            }
        })
        .collect();
    let action = if sets.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", sets.join(", "))
    };
    format!(
        "INSERT INTO {} AS \"u\" ({names}) VALUES ({params}) ON CONFLICT (\"id\") {action}",
        table_name(schema, table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_segment_change_upserts_its_membership() {
        let entered = json!({"type": "segment_entered", "segment": "vip",
            "timestamp": "2024-06-01T00:00:00.000Z",
            "rapport": {"profile_id": "p_1", "identifiers": {}}});
        let r = rows(&entered, "k").unwrap();
        assert!(r.inserts.is_empty());
        let row = r.user.unwrap();
        assert_eq!(row.table, "segment_memberships");
        let get = |n: &str| row.columns.iter().find(|c| c.0 == n).map(|c| c.2.clone());
        assert_eq!(get("id"), Some(json!("p_1/vip")));
        assert_eq!(get("member"), Some(json!(true)));
        assert!(get("entered_at").is_some() && get("exited_at").is_none());
        let mut exited = entered.clone();
        exited["type"] = json!("segment_exited");
        let row = rows(&exited, "k").unwrap().user.unwrap();
        assert!(row.columns.iter().any(|c| c.0 == "exited_at"));
        assert!(
            row.columns
                .iter()
                .any(|c| c.0 == "member" && c.2 == json!(false))
        );
        // A change of no known profile has no row.
        exited["rapport"]["profile_id"] = Value::Null;
        assert!(rows(&exited, "k").is_none());
    }

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

    fn columns_of(row: &Row) -> Vec<(&str, ColumnType)> {
        row.columns
            .iter()
            .map(|(n, t, _)| (n.as_str(), *t))
            .collect()
    }

    #[test]
    fn a_track_makes_a_tracks_row_and_an_event_row_with_typed_properties() {
        let m = json!({"messageId": "m1", "type": "track", "userId": "42", "event": "Order Completed",
            "properties": {"revenue": 12.5, "id": "not-the-id", "coupon": null},
            "context": {"ip": "1.2.3.4", "page": {"path": "/buy"}},
            "timestamp": "2024-06-01T00:00:00.000Z", "receivedAt": "2024-06-01T00:00:01.000Z",
            "sentAt": "whenever", "sourceId": "src",
            "rapport": {"profile_id": "p_1", "identifiers": {}}});
        let r = rows(&m, "msg_a").unwrap();
        assert_eq!(r.user, None);
        assert_eq!(r.inserts.len(), 2);
        assert_eq!(r.inserts[0].table, "tracks");
        assert_eq!(r.inserts[1].table, "order_completed");
        let common = vec![
            ("id", ColumnType::Text),
            ("message_id", ColumnType::Text),
            ("received_at", ColumnType::Timestamp),
            ("timestamp", ColumnType::Timestamp),
            ("sent_at", ColumnType::Text),
            ("user_id", ColumnType::Text),
            ("rapport_profile_id", ColumnType::Text),
            ("context_ip", ColumnType::Text),
            ("context_page_path", ColumnType::Text),
            ("event", ColumnType::Text),
            ("event_text", ColumnType::Text),
        ];
        assert_eq!(columns_of(&r.inserts[0]), common);
        let mut with_properties = common.clone();
        with_properties.push(("revenue", ColumnType::Double));
        assert_eq!(
            columns_of(&r.inserts[1]),
            with_properties,
            "a property `id` loses to the id"
        );
        assert_eq!(r.inserts[1].columns[0].2, json!("msg_a"));
        assert_eq!(r.inserts[1].columns[9].2, json!("order_completed"));
        assert_eq!(r.inserts[1].columns[10].2, json!("Order Completed"));
    }

    #[test]
    fn an_identify_of_a_profile_upserts_its_user_and_other_types_their_columns() {
        let m = json!({"messageId": "m2", "type": "identify", "userId": "42",
            "traits": {"email": "a@b.c", "plan": {"seats": 3}},
            "timestamp": "2024-06-01T00:00:00.000Z", "receivedAt": "2024-06-01T00:00:01.000Z",
            "rapport": {"profile_id": "p_1"}});
        let r = rows(&m, "msg_b").unwrap();
        assert_eq!(r.inserts[0].table, "identifies");
        let user = r.user.unwrap();
        assert_eq!(
            columns_of(&user),
            vec![
                ("id", ColumnType::Text),
                ("received_at", ColumnType::Timestamp),
                ("timestamp", ColumnType::Timestamp),
                ("user_id", ColumnType::Text),
                ("email", ColumnType::Text),
                ("plan_seats", ColumnType::BigInt),
            ]
        );
        assert_eq!(user.columns[0].2, json!("p_1"));
        let unresolved = json!({"type": "identify", "anonymousId": "a", "traits": {"x": 1}});
        assert_eq!(rows(&unresolved, "k").unwrap().user, None);
        for (m, table, column) in [
            (
                json!({"type": "page", "name": "Home", "properties": {"path": "/"}}),
                "pages",
                "path",
            ),
            (json!({"type": "screen", "name": "Home"}), "screens", "name"),
            (
                json!({"type": "group", "groupId": "g", "traits": {"size": 3}}),
                "groups",
                "size",
            ),
            (
                json!({"type": "alias", "previousId": "old"}),
                "aliases",
                "previous_id",
            ),
        ] {
            let r = rows(&m, "k").unwrap();
            assert_eq!(r.inserts.len(), 1);
            assert_eq!(r.inserts[0].table, table);
            assert!(
                r.inserts[0].columns.iter().any(|(n, _, _)| n == column),
                "{m}"
            );
        }
        assert_eq!(rows(&json!({"type": "trait_changed"}), "k"), None);
    }

    #[test]
    fn placing_a_row_adds_columns_once_and_sends_conflicts_to_text() {
        let mut columns = vec![
            ("id".to_owned(), ColumnType::Text),
            ("plan".to_owned(), ColumnType::BigInt),
        ];
        let row = Row {
            table: "t".into(),
            columns: vec![
                ("id".into(), ColumnType::Text, json!("k")),
                ("plan".into(), ColumnType::Text, json!("pro")),
                ("plan_text".into(), ColumnType::Text, json!("dup")),
                ("seats".into(), ColumnType::BigInt, json!(3)),
            ],
        };
        let placed = place_row(&row, &mut columns).unwrap();
        assert_eq!(
            placed.added,
            vec![
                ("plan_text".to_owned(), ColumnType::Text),
                ("seats".to_owned(), ColumnType::BigInt)
            ]
        );
        let targets: Vec<&str> = placed.values.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            targets,
            vec!["id", "plan_text", "seats"],
            "each column once"
        );
        assert_eq!(columns.len(), 4);
        let again = place_row(&row, &mut columns).unwrap();
        assert!(again.added.is_empty());

        let mut full: Vec<(String, ColumnType)> = (0..MAX_COLUMNS)
            .map(|i| (format!("c{i}"), ColumnType::Text))
            .collect();
        let wide = Row {
            table: "wide".into(),
            columns: vec![
                ("c1".into(), ColumnType::Text, json!("x")),
                ("new".into(), ColumnType::Text, json!("x")),
            ],
        };
        let e = place_row(&wide, &mut full).unwrap_err();
        assert!(e.contains("1600") && e.contains("new"), "{e}");
    }

    #[test]
    fn statements_quote_every_name_and_bind_every_value() {
        let cols = vec![
            ("id".to_owned(), ColumnType::Text),
            ("n".to_owned(), ColumnType::BigInt),
            ("at".to_owned(), ColumnType::Timestamp),
        ];
        assert_eq!(
            insert_sql("rapport", "order_completed", &cols),
            "INSERT INTO \"rapport\".\"order_completed\" (\"id\", \"n\", \"at\") VALUES \
             ($1::text, $2::text::bigint, $3::text::timestamptz) ON CONFLICT (\"id\") DO NOTHING"
        );
        assert_eq!(
            create_schema_sql("rapport"),
            "CREATE SCHEMA IF NOT EXISTS \"rapport\""
        );
        assert_eq!(
            create_table_sql("s", "tracks"),
            "CREATE TABLE IF NOT EXISTS \"s\".\"tracks\" (\"id\" text PRIMARY KEY)"
        );
        assert_eq!(
            add_column_sql("s", "t", "a\"b", ColumnType::Double),
            "ALTER TABLE \"s\".\"t\" ADD COLUMN IF NOT EXISTS \"a\"\"b\" double precision"
        );
        let user = upsert_sql(
            "s",
            "users",
            &[
                ("id".to_owned(), ColumnType::Text),
                ("timestamp".to_owned(), ColumnType::Timestamp),
                ("email".to_owned(), ColumnType::Text),
            ],
        );
        assert!(
            user.starts_with(
                "INSERT INTO \"s\".\"users\" AS \"u\" (\"id\", \"timestamp\", \"email\")"
            ),
            "{user}"
        );
        assert!(
            user.contains("\"timestamp\" = GREATEST(\"u\".\"timestamp\", EXCLUDED.\"timestamp\")")
        );
        assert!(user.contains("\"email\" = CASE WHEN \"u\".\"email\" IS NULL"));
        assert_eq!(bind_text(&json!("a'b")), "a'b");
        assert_eq!(bind_text(&json!({"k": [1]})), "{\"k\":[1]}");
        assert_eq!(bind_text(&json!(2.5)), "2.5");
        assert_eq!(
            column_type_of("timestamp with time zone"),
            ColumnType::Timestamp
        );
        assert_eq!(column_type_of("character varying"), ColumnType::Text);
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
