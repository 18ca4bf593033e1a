//! `rapport import`: bulk import of history from CSV or NDJSON files.
//!
//! Imported messages go through the running server's tracking API (`POST /v1/import`), so
//! they take exactly the path of live events: the same validation, de-duplication and
//! durable acknowledgement. This module is split in two:
//!
//! - a pure part — column mapping, cell types, NDJSON rewriting, message ids, local
//!   validation, batching — unit-tested with data;
//! - a thin shell — a reader thread that streams the file into batches, and a small async
//!   loop that keeps a few requests in flight, retries transient failures and maps the
//!   server's per-item rejections back to file lines.
//!
//! Every message carries a deterministic `messageId` (unless the file gives one), so retries
//! and whole re-runs are de-duplicated by the server. See `docs/import.md`.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rapport_core::event::{EventType, Limits, ParsedRequest, Stamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import: CSV (`.csv`) or one JSON message per line (`.ndjson`, `.jsonl`).
    pub file: PathBuf,
    /// Base URL of the running server.
    #[arg(long, env = "RAPPORT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A source's write key (not needed with --dry-run).
    #[arg(
        long,
        env = "RAPPORT_WRITE_KEY",
        hide_env_values = true,
        required_unless_present = "dry_run"
    )]
    pub write_key: Option<String>,
    /// File format [default: from the extension]. (`--format` is the output format of
    /// every command.)
    #[arg(long = "input-format", value_enum)]
    pub input_format: Option<Format>,
    /// Name the message ids are derived from [default: the file's name]. Keep it when a file
    /// is renamed so that a re-run is still recognised.
    #[arg(long)]
    pub source: Option<String>,
    /// Message type of rows (CSV) or lines (NDJSON) that do not give one.
    #[arg(long = "type", value_parser = parse_event_type)]
    pub kind: Option<EventType>,
    /// CSV: the event name of track rows that do not give one, e.g. `--event "Order
    /// Completed"` for an orders export without an `event` column.
    #[arg(long, value_name = "NAME")]
    pub event: Option<String>,
    /// CSV: map a column to a target, e.g. `email=traits.email` (repeatable).
    #[arg(long = "map", value_name = "COLUMN=TARGET")]
    pub map: Vec<String>,
    /// CSV: a TOML mapping file (see docs/import.md); --map and the type flags override it.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// CSV: columns whose cells are numbers (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub numeric: Vec<String>,
    /// CSV: columns whose cells are booleans (true/false, yes/no, 1/0).
    #[arg(long = "bool", value_delimiter = ',', value_name = "COLUMN")]
    pub boolean: Vec<String>,
    /// CSV: columns whose cells are JSON values (arrays, objects…).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub json: Vec<String>,
    /// CSV: columns to drop.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN")]
    pub ignore: Vec<String>,
    /// CSV: field delimiter [default: `,`, or a tab for `.tsv` files].
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Write rejected lines with their reasons to this file, as NDJSON.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
    /// Parse and validate locally; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar (it is also hidden when standard error is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// Requests in flight at once (1 keeps the file's order in the log).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Most messages per request (the server accepts up to 2,500).
    #[arg(long, default_value_t = 2500)]
    pub batch_size: usize,
    /// Largest request body in bytes (the server accepts up to 500 KB).
    #[arg(long, default_value_t = 500_000)]
    pub batch_bytes: usize,
    /// Retries of a request after a connection error or a 5xx, with exponential backoff.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

fn parse_event_type(s: &str) -> Result<EventType, String> {
    EventType::parse(s)
        .ok_or_else(|| "one of track, identify, page, screen, group, alias".to_owned())
}

// ---------------------------------------------------------------------------------------
// Pure core: errors, message ids, validation.
// ---------------------------------------------------------------------------------------

/// Why one line was not imported.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl LineError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        LineError {
            code: code.to_owned(),
            message: message.into(),
            field: None,
        }
    }
}

/// A rejected line, with what was read (the raw line, or the CSV cells by column).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub line: u64,
    pub error: LineError,
    pub record: Value,
}

/// One message ready to send, and the file line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub line: u64,
    pub json: String,
}

/// What reading one record yields.
#[derive(Debug)]
pub enum Parsed {
    Message(Prepared),
    Rejected(Rejection),
}

/// Derives message ids: `import-<name hash>-L<line>-<content hash>`. The line number keeps
/// identical rows apart; the content hash keeps two different files of the same name apart.
#[derive(Debug, Clone)]
pub struct MessageIds {
    prefix: String,
}

impl MessageIds {
    pub fn new(name: &str) -> Self {
        MessageIds {
            prefix: format!("import-{}", hex16(name.as_bytes())),
        }
    }

    pub fn id(&self, line: u64, content: &[u8]) -> String {
        format!("{}-L{line}-{}", self.prefix, hex16(content))
    }
}

fn hex16(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Validates one message exactly as the server's tracking API would.
pub fn validate(json: &str, kind: EventType, limits: &Limits) -> Result<(), LineError> {
    let to_line = |e: rapport_core::event::PayloadError| LineError {
        code: e.code.as_str().to_owned(),
        message: e.message,
        field: e.field,
    };
    let parsed = ParsedRequest::single(json.as_bytes(), kind, limits).map_err(to_line)?;
    let stamp = Stamp {
        received_at: chrono::Utc::now(),
        source_id: "import",
    };
    let mut no_id = String::new;
    match parsed.events(&stamp, limits, &mut no_id).pop() {
        Some(Err(e)) => Err(to_line(e)),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// NDJSON.
// ---------------------------------------------------------------------------------------

/// The fields an NDJSON line is inspected for; everything else is passed through untouched.
/// `None` when the key is absent, `Some("null")` when it is present but null.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow, default, deserialize_with = "present")]
    message_id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
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

// ---------------------------------------------------------------------------------------
// CSV: mapping and cell types.
// ---------------------------------------------------------------------------------------

/// How a CSV cell becomes a JSON value. Without a declared type every cell is a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellType {
    String,
    Number,
    Bool,
    Json,
}

impl CellType {
    fn parse(s: &str) -> Result<CellType, String> {
        match s {
            "string" => Ok(CellType::String),
            "number" => Ok(CellType::Number),
            "bool" | "boolean" => Ok(CellType::Bool),
            "json" => Ok(CellType::Json),
            _ => Err(format!(
                "unknown cell type {s:?}: use string, number, bool or json"
            )),
        }
    }
}

/// Converts one non-empty cell.
pub fn convert_cell(text: &str, kind: CellType) -> Result<Value, String> {
    match kind {
        CellType::String => Ok(Value::String(text.to_owned())),
        CellType::Number => {
            let t = text.trim();
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::from(i));
            }
            if let Ok(u) = t.parse::<u64>() {
                return Ok(Value::from(u));
            }
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("expected a number, got {text:?}"))
        }
        CellType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "expected a boolean (true/false, yes/no, 1/0), got {text:?}"
            )),
        },
        CellType::Json => {
            serde_json::from_str(text).map_err(|e| format!("expected a JSON value: {e}"))
        }
    }
}

/// Top-level message fields a column can map to.
const TOP_FIELDS: [&str; 11] = [
    "userId",
    "anonymousId",
    "event",
    "timestamp",
    "messageId",
    "groupId",
    "previousId",
    "name",
    "category",
    "type",
    "sentAt",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Traits,
    Properties,
    Context,
    Integrations,
}

impl Object {
    fn key(self) -> &'static str {
        match self {
            Object::Traits => "traits",
            Object::Properties => "properties",
            Object::Context => "context",
            Object::Integrations => "integrations",
        }
    }
}

/// Where a column's cells go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A top-level field such as `userId`.
    Field(&'static str),
    /// A key path inside `traits`, `properties`, `context` or `integrations`.
    Nested(Object, Vec<String>),
    /// Unmapped: `traits.<column>` for identify and group, `properties.<column>` otherwise.
    Default,
    Ignore,
}

pub fn parse_target(s: &str) -> Result<Target, String> {
    if let Some(f) = TOP_FIELDS.iter().find(|f| **f == s) {
        return Ok(Target::Field(f));
    }
    for object in [
        Object::Traits,
        Object::Properties,
        Object::Context,
        Object::Integrations,
    ] {
        if let Some(path) = s
            .strip_prefix(object.key())
            .and_then(|p| p.strip_prefix('.'))
        {
            let path: Vec<String> = path.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("target {s:?} has an empty key"));
            }
            return Ok(Target::Nested(object, path));
        }
    }
    Err(format!(
        "unknown target {s:?}: use one of {}, or traits.KEY, properties.KEY, context.PATH, \
         integrations.PATH",
        TOP_FIELDS.join(", ")
    ))
}

/// The Segment field a column is named after, if any: `userId`, `user_id`, `UserID`… all
/// name `userId`.
fn default_field(column: &str) -> Option<&'static str> {
    let norm: String = column
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    TOP_FIELDS
        .iter()
        .find(|f| f.to_ascii_lowercase() == norm)
        .copied()
}

/// What the user asked for one column (mapping file, then flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnSpec {
    pub target: Option<Target>,
    pub cell: Option<CellType>,
}

/// The whole mapping request before the header is known.
#[derive(Debug, Clone, Default)]
pub struct MappingSpec {
    pub default_type: Option<EventType>,
    /// The event name of track rows without one.
    pub default_event: Option<String>,
    pub columns: BTreeMap<String, ColumnSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    event: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, ColumnEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ColumnEntry {
    Target(String),
    Table(ColumnTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnTable {
    target: Option<String>,
    #[serde(rename = "type")]
    cell: Option<String>,
    #[serde(default)]
    ignore: bool,
}

impl MappingSpec {
    /// Parses a TOML mapping file.
    pub fn from_toml(text: &str) -> Result<MappingSpec, String> {
        let file: MappingFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut spec = MappingSpec {
            default_type: match file.kind {
                Some(t) => Some(parse_event_type(&t).map_err(|e| format!("type: {e}"))?),
                None => None,
            },
            default_event: file.event,
            ..Default::default()
        };
        for (column, entry) in file.columns {
            let col = spec.columns.entry(column.clone()).or_default();
            match entry {
                ColumnEntry::Target(t) => {
                    col.target = Some(if t == "-" {
                        Target::Ignore
                    } else {
                        parse_target(&t).map_err(|e| format!("column {column:?}: {e}"))?
                    })
                }
                ColumnEntry::Table(t) => {
                    if t.ignore {
                        col.target = Some(Target::Ignore);
                    } else if let Some(target) = t.target {
                        col.target = Some(
                            parse_target(&target).map_err(|e| format!("column {column:?}: {e}"))?,
                        );
                    }
                    if let Some(c) = t.cell {
                        col.cell = Some(
                            CellType::parse(&c).map_err(|e| format!("column {column:?}: {e}"))?,
                        );
                    }
                }
            }
        }
        Ok(spec)
    }

    /// Applies the command-line flags over the mapping file.
    pub fn apply_flags(&mut self, args: &ImportArgs) -> Result<(), String> {
        if args.kind.is_some() {
            self.default_type = args.kind;
        }
        if args.event.is_some() {
            self.default_event.clone_from(&args.event);
        }
        if self
            .default_event
            .as_deref()
            .is_some_and(|e| e.trim().is_empty())
        {
            return Err("--event must not be empty".into());
        }
        for m in &args.map {
            let (column, target) = m
                .split_once('=')
                .ok_or_else(|| format!("--map {m:?}: expected COLUMN=TARGET"))?;
            let target = parse_target(target).map_err(|e| format!("--map {m:?}: {e}"))?;
            self.columns.entry(column.to_owned()).or_default().target = Some(target);
        }
        for (columns, cell) in [
            (&args.numeric, CellType::Number),
            (&args.boolean, CellType::Bool),
            (&args.json, CellType::Json),
        ] {
            for c in columns {
                self.columns.entry(c.clone()).or_default().cell = Some(cell);
            }
        }
        for c in &args.ignore {
            self.columns.entry(c.clone()).or_default().target = Some(Target::Ignore);
        }
        Ok(())
    }

    /// Resolves the mapping against a header row.
    pub fn plan(&self, headers: &[String]) -> Result<CsvPlan, String> {
        let mut seen = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            if let Some(first) = seen.insert(h.as_str(), i) {
                return Err(format!(
                    "column {h:?} appears twice in the header (columns {} and {})",
                    first + 1,
                    i + 1
                ));
            }
        }
        if let Some(missing) = self.columns.keys().find(|c| !seen.contains_key(c.as_str())) {
            return Err(format!(
                "the mapping names column {missing:?}, which is not in the header ({})",
                headers.join(", ")
            ));
        }
        let mut columns = Vec::with_capacity(headers.len());
        let mut fields: HashMap<&'static str, &str> = HashMap::new();
        for h in headers {
            let spec = self.columns.get(h);
            let explicit = spec.and_then(|s| s.target.clone());
            let implicit = explicit.is_none();
            let target = explicit.unwrap_or_else(|| match default_field(h) {
                Some(f) => Target::Field(f),
                None => Target::Default,
            });
            if let Target::Field(f) = target
                && let Some(other) = fields.insert(f, h)
            {
                return Err(format!(
                    "columns {other:?} and {h:?} both map to `{f}`; map or --ignore one of them"
                ));
            }
            let cell = spec.and_then(|s| s.cell).unwrap_or(CellType::String);
            if let Target::Field("type") = target
                && cell != CellType::String
            {
                return Err(format!("column {h:?} maps to `type`, which is a string"));
            }
            columns.push(ColumnPlan {
                name: h.clone(),
                target,
                cell,
                implicit,
            });
        }
        Ok(CsvPlan {
            columns,
            default_type: self.default_type,
            default_event: self.default_event.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub target: Target,
    pub cell: CellType,
    /// Mapped by its name rather than by the user.
    pub implicit: bool,
}

/// A mapping resolved against the header: one entry per column, in header order.
#[derive(Debug, Clone)]
pub struct CsvPlan {
    pub columns: Vec<ColumnPlan>,
    pub default_type: Option<EventType>,
    /// The event name of track rows whose own (an `event` column) is absent or empty.
    pub default_event: Option<String>,
}

impl CsvPlan {
    /// Builds the message of one row (without `messageId` unless a column gives one).
    /// Empty cells are absent.
    pub fn message(&self, cells: &[&str]) -> Result<(EventType, Map<String, Value>), LineError> {
        if cells.len() != self.columns.len() {
            return Err(LineError::new(
                "wrong_column_count",
                format!(
                    "expected {} columns (as in the header), found {}",
                    self.columns.len(),
                    cells.len()
                ),
            ));
        }
        let mut kind = self.default_type;
        for (col, cell) in self.columns.iter().zip(cells) {
            if col.target == Target::Field("type") && !cell.is_empty() {
                kind = Some(EventType::parse(cell.trim()).ok_or_else(|| LineError {
                    code: "invalid_type".into(),
                    message: format!(
                        "column {:?}: type must be one of track, identify, page, screen, group, \
                         alias (got {cell:?})",
                        col.name
                    ),
                    field: Some("type".into()),
                })?);
            }
        }
        let kind = kind.ok_or_else(|| LineError {
            code: "missing_field".into(),
            message: "no message type: add a `type` column or pass --type".into(),
            field: Some("type".into()),
        })?;
        let default_object = match kind {
            EventType::Identify | EventType::Group => Object::Traits,
            _ => Object::Properties,
        };
        let mut msg = Map::new();
        msg.insert("type".into(), Value::String(kind.as_str().into()));
        for (col, cell) in self.columns.iter().zip(cells) {
            if cell.is_empty() || matches!(col.target, Target::Ignore | Target::Field("type")) {
                continue;
            }
            let value = convert_cell(cell, col.cell).map_err(|e| LineError {
                code: "invalid_cell".into(),
                message: format!("column {:?}: {e}", col.name),
                field: None,
            })?;
            let page_like = matches!(kind, EventType::Page | EventType::Screen);
            match &col.target {
                // A column merely *named* `name` or `category` is the page's name on page and
                // screen rows, and an ordinary trait or property on the others.
                Target::Field("name" | "category") if col.implicit && !page_like => {
                    insert_path(
                        &mut msg,
                        default_object,
                        std::slice::from_ref(&col.name),
                        value,
                        col,
                    )?;
                }
                Target::Field(f) => {
                    msg.insert((*f).into(), value);
                }
                Target::Nested(object, path) => insert_path(&mut msg, *object, path, value, col)?,
                Target::Default => insert_path(
                    &mut msg,
                    default_object,
                    std::slice::from_ref(&col.name),
                    value,
                    col,
                )?,
                Target::Ignore => {}
            }
        }
        if kind == EventType::Track
            && !msg.contains_key("event")
            && let Some(event) = &self.default_event
        {
            msg.insert("event".into(), Value::String(event.clone()));
        }
        Ok((kind, msg))
    }
}

fn insert_path(
    msg: &mut Map<String, Value>,
    object: Object,
    path: &[String],
    value: Value,
    col: &ColumnPlan,
) -> Result<(), LineError> {
    let conflict = || LineError {
        code: "mapping_conflict".into(),
        message: format!(
            "column {:?}: `{}.{}` is already set to a non-object value",
            col.name,
            object.key(),
            path.join(".")
        ),
        field: None,
    };
    let mut current = msg
        .entry(object.key())
        .or_insert_with(|| Value::Object(Map::new()));
    for key in &path[..path.len() - 1] {
        current = current
            .as_object_mut()
            .ok_or_else(conflict)?
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let last = path.last().expect("a path has at least one key");
    current
        .as_object_mut()
        .ok_or_else(conflict)?
        .insert(last.clone(), value);
    Ok(())
}

/// Reads the header row and resolves the mapping against it.
pub fn csv_plan<R: Read>(rdr: &mut csv::Reader<R>, spec: &MappingSpec) -> anyhow::Result<CsvPlan> {
    let headers = rdr.byte_headers().context("cannot read the CSV header")?;
    let headers: Vec<String> = headers
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(|s| s.trim().to_owned())
                .map_err(|_| anyhow!("the CSV header is not valid UTF-8"))
        })
        .collect::<anyhow::Result<_>>()?;
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        bail!("the CSV file has no header row");
    }
    spec.plan(&headers).map_err(|e| anyhow!(e))
}

pub fn csv_reader<R: Read>(reader: R, delimiter: u8) -> csv::Reader<LineCounting<R>> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(256 * 1024)
        .from_reader(LineCounting::new(reader))
}

/// Remembers where the newlines are in what the CSV parser has read, so that each record
/// can be given the line it starts on. (The parser's own line count lags behind after
/// blank lines and `\r\n` endings.)
pub struct LineCounting<R> {
    inner: R,
    read: u64,
    /// Offsets of newlines read but not yet passed by a record.
    ahead: RefCell<VecDeque<u64>>,
    passed: Cell<u64>,
}

impl<R> LineCounting<R> {
    fn new(inner: R) -> Self {
        LineCounting {
            inner,
            read: 0,
            ahead: RefCell::new(VecDeque::new()),
            passed: Cell::new(0),
        }
    }

    /// The 1-based line of byte `offset`; offsets must not decrease between calls.
    fn line_at(&self, offset: u64) -> u64 {
        let mut ahead = self.ahead.borrow_mut();
        while ahead.front().is_some_and(|&n| n < offset) {
            ahead.pop_front();
            self.passed.set(self.passed.get() + 1);
        }
        self.passed.get() + 1
    }
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut ahead = self.ahead.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                ahead.push_back(self.read + i as u64);
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads CSV records after the header. A record's line is the line where it starts, so a
/// quoted cell spanning lines does not shift the numbers.
pub fn read_csv<R: Read>(
    rdr: &mut csv::Reader<LineCounting<R>>,
    plan: &CsvPlan,
    ids: &MessageIds,
    limits: &Limits,
    emit: &mut dyn FnMut(Parsed) -> bool,
) -> anyhow::Result<()> {
    let mut record = csv::ByteRecord::new();
    let mut content = Vec::new();
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => return Err(e).context("cannot read the file"),
                _ => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    let more = emit(Parsed::Rejected(Rejection {
                        line,
                        error: LineError::new("invalid_csv", e.to_string()),
                        record: Value::Null,
                    }));
                    if !more {
                        return Ok(());
                    }
                    continue;
                }
            },
        }
        // The parser stops just past the first byte of the record's terminator (or at the
        // end of the file); newlines inside quoted cells are the record's other lines.
        let end = rdr.position().byte().saturating_sub(1);
        let inner = record
            .iter()
            .map(|f| f.iter().filter(|b| **b == b'\n').count() as u64)
            .sum::<u64>();
        let line = rdr.get_ref().line_at(end).saturating_sub(inner);
        content.clear();
        for (i, field) in record.iter().enumerate() {
            if i > 0 {
                content.push(0x1f);
            }
            content.extend_from_slice(field);
        }
        let cells: Result<Vec<&str>, usize> = record
            .iter()
            .enumerate()
            .map(|(i, f)| std::str::from_utf8(f).map_err(|_| i))
            .collect();
        let parsed = match cells {
            Err(i) => Parsed::Rejected(Rejection {
                line,
                error: LineError::new(
                    "invalid_utf8",
                    format!(
                        "column {}: not valid UTF-8",
                        plan.columns
                            .get(i)
                            .map(|c| format!("{:?}", c.name))
                            .unwrap_or_else(|| (i + 1).to_string())
                    ),
                ),
                record: Value::Array(
                    record
                        .iter()
                        .map(|f| Value::String(String::from_utf8_lossy(f).into_owned()))
                        .collect(),
                ),
            }),
            Ok(cells) => match csv_row(plan, &cells, line, &content, ids, limits) {
                Ok(json) => Parsed::Message(Prepared { line, json }),
                Err(error) => Parsed::Rejected(Rejection {
                    line,
                    error,
                    record: cells_record(plan, &cells),
                }),
            },
        };
        if !emit(parsed) {
            return Ok(());
        }
    }
}

/// One row's message as JSON text, with its message id, validated like the server would.
pub fn csv_row(
    plan: &CsvPlan,
    cells: &[&str],
    line: u64,
    content: &[u8],
    ids: &MessageIds,
    limits: &Limits,
) -> Result<String, LineError> {
    let (kind, mut msg) = plan.message(cells)?;
    if !msg.contains_key("messageId") {
        msg.insert("messageId".into(), Value::String(ids.id(line, content)));
    }
    let json = Value::Object(msg).to_string();
    validate(&json, kind, limits)?;
    Ok(json)
}

/// The cells of a rejected row by column name (or as a list when the count is wrong).
fn cells_record(plan: &CsvPlan, cells: &[&str]) -> Value {
    if cells.len() != plan.columns.len() {
        return Value::Array(cells.iter().map(|c| Value::String((*c).into())).collect());
    }
    Value::Object(
        plan.columns
            .iter()
            .zip(cells)
            .map(|(c, v)| (c.name.clone(), Value::String((*v).into())))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Batching.
// ---------------------------------------------------------------------------------------

/// Messages of one request, with the file line of each.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Prepared>,
    bytes: usize,
}

const ENVELOPE: &str = r#"{"batch":[]}"#;

impl Batch {
    pub fn body(&self) -> String {
        let mut body = String::with_capacity(self.bytes + ENVELOPE.len());
        body.push_str(r#"{"batch":["#);
        for (i, m) in self.items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&m.json);
        }
        body.push_str("]}");
        body
    }

    fn split(mut self) -> (Batch, Batch) {
        let tail = self.items.split_off(self.items.len() / 2);
        let size = |items: &[Prepared]| items.iter().map(|m| m.json.len() + 1).sum();
        (
            Batch {
                bytes: size(&self.items),
                items: self.items,
            },
            Batch {
                bytes: size(&tail),
                items: tail,
            },
        )
    }
}

/// Groups messages into requests within a message count and a body size.
pub struct Batcher {
    max_messages: usize,
    max_bytes: usize,
    current: Batch,
}

impl Batcher {
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Batcher {
            max_messages: max_messages.max(1),
            max_bytes,
            current: Batch::default(),
        }
    }

    /// Adds a message; returns the previous batch when this one would not fit in it.
    pub fn push(&mut self, m: Prepared) -> Option<Batch> {
        let size = m.json.len() + 1;
        let full = !self.current.items.is_empty()
            && (self.current.items.len() >= self.max_messages
                || ENVELOPE.len() + self.current.bytes + size > self.max_bytes);
        let done = full.then(|| std::mem::take(&mut self.current));
        self.current.bytes += size;
        self.current.items.push(m);
        done
    }

    pub fn finish(self) -> Option<Batch> {
        (!self.current.items.is_empty()).then_some(self.current)
    }
}

// ---------------------------------------------------------------------------------------
// The shell: reading thread, requests, reporting.
// ---------------------------------------------------------------------------------------

enum Work {
    Batch(Batch),
    Rejected(Rejection),
    /// The reader is done: lines read, or a fatal error.
    Done(Result<u64, String>),
}

#[derive(Default)]
struct Totals {
    lines: u64,
    valid: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

struct Reporter {
    file: String,
    bar: ProgressBar,
    errors: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    totals: Totals,
}

impl Reporter {
    fn reject(&mut self, r: Rejection) -> anyhow::Result<()> {
        self.totals.rejected += 1;
        let text = format!("{}:{}: {}", self.file, r.line, r.error.message);
        self.bar.suspend(|| eprintln!("{text}"));
        if let Some((path, w)) = &mut self.errors {
            let mut entry = serde_json::json!({
                "line": r.line,
                "code": r.error.code,
                "message": r.error.message,
            });
            if let Some(f) = r.error.field {
                entry["field"] = Value::String(f);
            }
            entry["record"] = r.record;
            serde_json::to_writer(&mut *w, &entry)?;
            w.write_all(b"\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct IngestResponse {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<RejectedItem>,
}

#[derive(Deserialize)]
struct RejectedItem {
    index: usize,
    error: ErrorBody,
}

#[derive(Deserialize, Clone)]
struct ErrorBody {
    code: String,
    message: String,
    field: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

enum Sent {
    Done(IngestResponse),
    /// A 4xx other than an authentication failure: the request as a whole was refused.
    Refused(ErrorBody),
}

/// Strips the `batch[i].` prefix the server puts on field paths.
fn item_field(field: Option<String>) -> Option<String> {
    field.map(|f| match f.strip_prefix("batch[") {
        Some(rest) => match rest.split_once("].") {
            Some((_, tail)) => tail.to_owned(),
            None => f,
        },
        None => f,
    })
}

fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(6)).min(8_000);
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    body: String,
    retries: u32,
) -> anyhow::Result<Sent> {
    let mut attempt = 0;
    loop {
        let failure = match client
            .post(endpoint)
            .basic_auth(key, Some(""))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status();
                let bytes = r.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let resp: IngestResponse = serde_json::from_slice(&bytes)
                        .context("the server's answer is not an ingest response")?;
                    return Ok(Sent::Done(resp));
                }
                let error = serde_json::from_slice::<ErrorEnvelope>(&bytes)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| ErrorBody {
                        code: status.as_str().to_owned(),
                        message: String::from_utf8_lossy(&bytes).into_owned(),
                        field: None,
                    });
                if status.as_u16() == 401 || status.as_u16() == 403 {
                    bail!(
                        "the server refused the write key ({}): {}",
                        error.code,
                        error.message
                    );
                }
                if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                    format!("HTTP {status}: {}", error.message)
                } else {
                    return Ok(Sent::Refused(error));
                }
            }
            Err(e) => {
                // reqwest's message is generic; its causes say what happened.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let _ = write!(text, ": {s}");
                    source = s.source();
                }
                text
            }
        };
        if attempt >= retries {
            bail!(
                "cannot import into {endpoint} after {} attempts: {failure}",
                attempt + 1
            );
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

fn detect_format(path: &Path) -> anyhow::Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" => Ok(Format::Csv),
        "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
        _ => bail!(
            "cannot tell the format of {} from its extension; pass --format csv|ndjson",
            path.display()
        ),
    }
}

/// Runs the import. Exits with status 2 when some lines were rejected; returns an error
/// (status 1) on fatal failures.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let format = match args.input_format {
        Some(f) => f,
        None => detect_format(&args.file)?,
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let display = args.file.display().to_string();
    let name = args.source.clone().unwrap_or_else(|| {
        args.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| display.clone())
    });
    let ids = MessageIds::new(&name);
    let limits = Limits::default();

    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let input = BufReader::with_capacity(256 * 1024, bar.wrap_read(file));

    // Everything that can fail before the first line is read fails here, before any send.
    enum Input<R: Read> {
        Csv(Box<csv::Reader<LineCounting<R>>>, CsvPlan),
        Ndjson(R),
    }
    let input = match format {
        Format::Csv => {
            let mut spec = match &args.mapping {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    MappingSpec::from_toml(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
                }
                None => MappingSpec::default(),
            };
            spec.apply_flags(&args).map_err(|e| anyhow!(e))?;
            let tsv = args
                .file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            let delimiter = args.delimiter.unwrap_or(if tsv { '\t' } else { ',' });
            let delimiter = u8::try_from(delimiter)
                .map_err(|_| anyhow!("--delimiter must be one ASCII character"))?;
            let mut rdr = csv_reader(input, delimiter);
            let plan = csv_plan(&mut rdr, &spec).with_context(|| display.clone())?;
            Input::Csv(Box::new(rdr), plan)
        }
        Format::Ndjson => {
            if !args.map.is_empty() || args.mapping.is_some() || args.event.is_some() {
                bail!("--map, --mapping and --event apply to CSV files only");
            }
            Input::Ndjson(input)
        }
    };
    let errors = match &args.errors {
        Some(p) => Some((
            p.clone(),
            std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            ),
        )),
        None => None,
    };
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Work>(args.concurrency.max(1) * 2);
    let (batch_size, batch_bytes, default_type) = (args.batch_size, args.batch_bytes, args.kind);
    let reader = std::thread::spawn(move || {
        let mut batcher = Batcher::new(batch_size, batch_bytes);
        let mut lines = 0u64;
        // Returns false, stopping the read, once the sending side has given up.
        let mut emit = |p: Parsed| {
            lines += 1;
            let work = match p {
                Parsed::Message(m) => match batcher.push(m) {
                    Some(b) => Work::Batch(b),
                    None => return true,
                },
                Parsed::Rejected(r) => Work::Rejected(r),
            };
            tx.blocking_send(work).is_ok()
        };
        let result = match input {
            Input::Csv(mut rdr, plan) => read_csv(&mut rdr, &plan, &ids, &limits, &mut emit),
            Input::Ndjson(r) => read_ndjson(r, default_type, &ids, &limits, &mut emit)
                .context("cannot read the file"),
        };
        if let Some(b) = batcher.finish() {
            let _ = tx.blocking_send(Work::Batch(b));
        }
        let _ = tx.blocking_send(Work::Done(
            result.map(|()| lines).map_err(|e| format!("{e:#}")),
        ));
    });

    let mut reporter = Reporter {
        file: display.clone(),
        bar,
        errors,
        totals: Totals::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(drive(&args, rx, &mut reporter));
    drop(runtime);
    let _ = reader.join();
    reporter.bar.finish_and_clear();
    if let Some((path, mut w)) = reporter.errors.take() {
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let t = &reporter.totals;
    let secs = started.elapsed().as_secs_f64();
    if args.dry_run {
        println!(
            "{display}: dry run, nothing sent: {} lines read, {} valid, {} rejected",
            t.lines, t.valid, t.rejected
        );
    } else {
        println!(
            "{display}: {} lines read, {} accepted, {} duplicates, {} rejected in {secs:.1} s \
             ({:.0} lines/s)",
            t.lines,
            t.accepted,
            t.duplicates,
            t.rejected,
            t.lines as f64 / secs.max(1e-9)
        );
    }
    outcome?;
    if t.rejected > 0 {
        std::io::stdout().flush().ok();
        std::process::exit(2);
    }
    Ok(())
}

/// Receives work from the reader, keeps up to `concurrency` requests in flight and accounts
/// for every line.
async fn drive(
    args: &ImportArgs,
    mut rx: tokio::sync::mpsc::Receiver<Work>,
    reporter: &mut Reporter,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    let endpoint = format!("{}/v1/import", args.url.trim_end_matches('/'));
    let key = args.write_key.clone().unwrap_or_default();
    let concurrency = args.concurrency.max(1);
    let mut inflight = tokio::task::JoinSet::new();
    let mut pending: VecDeque<Batch> = VecDeque::new();
    let mut reader_done = false;
    loop {
        while inflight.len() < concurrency
            && let Some(batch) = pending.pop_front()
        {
            let (client, endpoint, key) = (client.clone(), endpoint.clone(), key.clone());
            let retries = args.retries;
            inflight.spawn(async move {
                let sent = send(&client, &endpoint, &key, batch.body(), retries).await;
                (batch, sent)
            });
        }
        if reader_done && inflight.is_empty() && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            work = rx.recv(), if !reader_done && inflight.len() < concurrency => match work {
                Some(Work::Batch(b)) => {
                    reporter.totals.valid += b.items.len() as u64;
                    if !args.dry_run {
                        pending.push_back(b);
                    }
                }
                Some(Work::Rejected(r)) => reporter.reject(r)?,
                Some(Work::Done(Ok(lines))) => {
                    reporter.totals.lines = lines;
                    reader_done = true;
                }
                Some(Work::Done(Err(e))) => {
                    inflight.abort_all();
                    bail!("{}: {e}", reporter.file);
                }
                None => reader_done = true,
            },
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let (batch, sent) = joined?;
                let sent = match sent {
                    Ok(s) => s,
                    Err(e) => {
                        inflight.abort_all();
                        return Err(e);
                    }
                };
                match sent {
                    Sent::Done(resp) => {
                        reporter.totals.accepted += resp.accepted;
                        reporter.totals.duplicates += resp.duplicates;
                        for item in resp.rejected {
                            let Some(m) = batch.items.get(item.index) else { continue };
                            reporter.totals.valid -= 1;
                            reporter.reject(server_rejection(m, item.error))?;
                        }
                    }
                    Sent::Refused(_) if batch.items.len() > 1 => {
                        // Only when no message is valid (or the request is over the server's
                        // limits) is a batch refused whole; halve it to learn which lines.
                        let (a, b) = batch.split();
                        pending.push_front(b);
                        pending.push_front(a);
                    }
                    Sent::Refused(error) => {
                        reporter.totals.valid -= 1;
                        reporter.reject(server_rejection(&batch.items[0], error))?;
                    }
                }
            }
        }
    }
}

fn server_rejection(m: &Prepared, error: ErrorBody) -> Rejection {
    Rejection {
        line: m.line,
        error: LineError {
            code: error.code,
            message: error.message,
            field: item_field(error.field),
        },
        record: serde_json::from_str(&m.json).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> MessageIds {
        MessageIds::new("test.csv")
    }

    fn spec(pairs: &[(&str, &str)], default_type: Option<EventType>) -> MappingSpec {
        let mut s = MappingSpec {
            default_type,
            ..Default::default()
        };
        for (c, t) in pairs {
            s.columns.entry((*c).into()).or_default().target = Some(parse_target(t).unwrap());
        }
        s
    }

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_default_event_names_track_rows_that_lack_one() {
        let mut s = spec(&[], Some(EventType::Track));
        s.default_event = Some("Order Completed".into());
        let plan = s.plan(&headers(&["userId", "event", "total"])).unwrap();
        let (_, own) = plan.message(&["u1", "Refunded", "5"]).unwrap();
        assert_eq!(own["event"], "Refunded");
        let (_, filled) = plan.message(&["u1", "", "5"]).unwrap();
        assert_eq!(filled["event"], "Order Completed");
        // Only track calls have an event name.
        let mut s = spec(&[], Some(EventType::Identify));
        s.default_event = Some("Order Completed".into());
        let plan = s.plan(&headers(&["userId", "plan"])).unwrap();
        let (_, msg) = plan.message(&["u1", "pro"]).unwrap();
        assert!(msg.get("event").is_none(), "{msg:?}");
        let file = MappingSpec::from_toml("type = \"track\"\nevent = \"Paid\"\n").unwrap();
        assert_eq!(file.default_event.as_deref(), Some("Paid"));
    }

    fn read_all_csv(text: &str, spec: &MappingSpec) -> Vec<Parsed> {
        let mut rdr = csv_reader(text.as_bytes(), b',');
        let plan = csv_plan(&mut rdr, spec).unwrap();
        let mut out = Vec::new();
        read_csv(&mut rdr, &plan, &ids(), &Limits::default(), &mut |p| {
            out.push(p);
            true
        })
        .unwrap();
        out
    }

    fn message(p: &Parsed) -> Value {
        match p {
            Parsed::Message(m) => serde_json::from_str(&m.json).unwrap(),
            Parsed::Rejected(r) => panic!("line {} rejected: {:?}", r.line, r.error),
        }
    }

    fn line_of(p: &Parsed) -> u64 {
        match p {
            Parsed::Message(m) => m.line,
            Parsed::Rejected(r) => r.line,
        }
    }

    #[test]
    fn cells_are_strings_unless_declared() {
        assert_eq!(convert_cell("007", CellType::String).unwrap(), "007");
        assert_eq!(convert_cell("007", CellType::Number).unwrap(), 7);
        assert_eq!(convert_cell("-3", CellType::Number).unwrap(), -3);
        assert_eq!(convert_cell("42.5", CellType::Number).unwrap(), 42.5);
        assert_eq!(
            convert_cell("18446744073709551615", CellType::Number).unwrap(),
            u64::MAX
        );
        assert!(convert_cell("12abc", CellType::Number).is_err());
        assert!(convert_cell("NaN", CellType::Number).is_err());
        assert!(convert_cell("inf", CellType::Number).is_err());
        for (t, v) in [("true", true), ("YES", true), ("1", true), ("False", false)] {
            assert_eq!(convert_cell(t, CellType::Bool).unwrap(), v);
        }
        assert!(convert_cell("maybe", CellType::Bool).is_err());
        assert_eq!(
            convert_cell(r#"["a",1]"#, CellType::Json).unwrap(),
            serde_json::json!(["a", 1])
        );
        assert!(convert_cell("[1,", CellType::Json).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(parse_target("userId").unwrap(), Target::Field("userId"));
        assert_eq!(
            parse_target("context.page.url").unwrap(),
            Target::Nested(Object::Context, vec!["page".into(), "url".into()])
        );
        assert_eq!(
            parse_target("traits.email").unwrap(),
            Target::Nested(Object::Traits, vec!["email".into()])
        );
        assert!(parse_target("traits.").is_err());
        assert!(parse_target("traits..x").is_err());
        assert!(parse_target("user").is_err());
        assert!(parse_target("traits").is_err());
    }

    #[test]
    fn columns_named_like_segment_fields_map_to_them() {
        let plan = MappingSpec::default()
            .plan(&headers(&["user_id", "AnonymousId", "event", "plan"]))
            .unwrap();
        let targets: Vec<_> = plan.columns.iter().map(|c| c.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::Field("userId"),
                Target::Field("anonymousId"),
                Target::Field("event"),
                Target::Default
            ]
        );
    }

    #[test]
    fn plan_errors() {
        let h = headers(&["userId", "user_id"]);
        assert!(
            MappingSpec::default()
                .plan(&h)
                .unwrap_err()
                .contains("both map")
        );
        let h = headers(&["a", "a"]);
        assert!(
            MappingSpec::default()
                .plan(&h)
                .unwrap_err()
                .contains("twice")
        );
        let s = spec(&[("missing", "userId")], None);
        assert!(
            s.plan(&headers(&["a"]))
                .unwrap_err()
                .contains("not in the header")
        );
    }

    #[test]
    fn unmapped_columns_become_traits_or_properties_by_type() {
        let plan = MappingSpec::default()
            .plan(&headers(&["userId", "type", "event", "plan", "name"]))
            .unwrap();
        let (_, m) = plan.message(&["u1", "identify", "", "pro", "Ann"]).unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"type":"identify","userId":"u1","traits":{"plan":"pro","name":"Ann"}})
        );
        let (_, m) = plan.message(&["u1", "track", "Paid", "pro", ""]).unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"type":"track","userId":"u1","event":"Paid","properties":{"plan":"pro"}})
        );
        // On a page row a column named `name` is the page's name.
        let (_, m) = plan.message(&["u1", "page", "", "", "Pricing"]).unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"type":"page","userId":"u1","name":"Pricing"})
        );
    }

    #[test]
    fn explicit_mapping_types_and_ignore() {
        let mut s = spec(
            &[
                ("id", "userId"),
                ("mail", "traits.email"),
                ("city", "traits.address.city"),
                ("ip", "context.ip"),
                ("when", "timestamp"),
            ],
            Some(EventType::Identify),
        );
        s.columns.entry("age".into()).or_default().cell = Some(CellType::Number);
        s.columns.entry("vip".into()).or_default().cell = Some(CellType::Bool);
        s.columns.entry("secret".into()).or_default().target = Some(Target::Ignore);
        let plan = s
            .plan(&headers(&[
                "id", "mail", "city", "ip", "when", "age", "vip", "secret", "zip",
            ]))
            .unwrap();
        let (kind, m) = plan
            .message(&[
                "007",
                "a@b.c",
                "Lyon",
                "203.0.113.9",
                "2024-01-02T03:04:05Z",
                "41",
                "yes",
                "hunter2",
                "01234",
            ])
            .unwrap();
        assert_eq!(kind, EventType::Identify);
        assert_eq!(
            Value::Object(m),
            serde_json::json!({
                "type": "identify",
                "userId": "007",
                "traits": {"email": "a@b.c", "address": {"city": "Lyon"}, "age": 41, "vip": true,
                           "zip": "01234"},
                "context": {"ip": "203.0.113.9"},
                "timestamp": "2024-01-02T03:04:05Z"
            })
        );
        let err = plan
            .message(&["u", "", "", "", "", "forty", "", "", ""])
            .unwrap_err();
        assert_eq!(
            err.message,
            "column \"age\": expected a number, got \"forty\""
        );
    }

    #[test]
    fn mapping_file() {
        let s = MappingSpec::from_toml(
            r#"
            type = "track"
            [columns]
            customer = "userId"
            amount = { target = "properties.revenue", type = "number" }
            internal = "-"
            notes = { ignore = true }
            flag = { type = "bool" }
            "#,
        )
        .unwrap();
        assert_eq!(s.default_type, Some(EventType::Track));
        let plan = s
            .plan(&headers(&[
                "customer", "event", "amount", "internal", "notes", "flag",
            ]))
            .unwrap();
        let (_, m) = plan
            .message(&["c1", "Order", "19.90", "x", "y", "0"])
            .unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"type":"track","userId":"c1","event":"Order",
                               "properties":{"revenue":19.9,"flag":false}})
        );
        assert!(MappingSpec::from_toml("[columns]\na = \"nope\"").is_err());
        assert!(MappingSpec::from_toml("[columns]\na = { type = \"date\" }").is_err());
        assert!(MappingSpec::from_toml("typo = 1").is_err());
    }

    #[test]
    fn csv_lines_are_where_records_start_even_with_quoted_newlines() {
        let text = "userId,event,note\n\
                    u1,Signed Up,plain\n\
                    u2,Paid,\"two\nlines\"\n\
                    u3,Paid,after\n\
                    \n\
                    u4,Paid\n\
                    ,Paid,no id\r\n\
                    \r\n\
                    u6,,no event";
        let out = read_all_csv(text, &spec(&[], Some(EventType::Track)));
        let lines: Vec<u64> = out.iter().map(line_of).collect();
        assert_eq!(lines, vec![2, 3, 5, 7, 8, 10]);
        assert_eq!(message(&out[1])["properties"]["note"], "two\nlines");
        assert_eq!(message(&out[2])["userId"], "u3");
        let errors: Vec<String> = out
            .iter()
            .filter_map(|p| match p {
                Parsed::Rejected(r) => Some(format!("{}: {}", r.line, r.error.message)),
                _ => None,
            })
            .collect();
        assert_eq!(
            errors,
            vec![
                "7: expected 3 columns (as in the header), found 2",
                "8: either `userId` or `anonymousId` is required",
                "10: `event` is required in a track call",
            ]
        );
    }

    #[test]
    fn csv_validation_matches_the_server() {
        let text = "userId,timestamp\nu1,2024-01-02\nu2,yesterday\n";
        let out = read_all_csv(text, &spec(&[], Some(EventType::Identify)));
        assert_eq!(message(&out[0])["timestamp"], "2024-01-02");
        match &out[1] {
            Parsed::Rejected(r) => {
                assert_eq!(r.line, 3);
                assert_eq!(r.error.code, "invalid_timestamp");
                assert_eq!(r.error.field.as_deref(), Some("timestamp"));
                assert_eq!(r.record["timestamp"], "yesterday");
            }
            _ => panic!("expected a rejection"),
        }
    }

    #[test]
    fn message_ids_are_deterministic() {
        let text = "userId,type\nu1,identify\nu1,identify\n";
        let a = read_all_csv(text, &MappingSpec::default());
        let b = read_all_csv(text, &MappingSpec::default());
        let id = |p: &Parsed| message(p)["messageId"].as_str().unwrap().to_owned();
        assert_eq!(id(&a[0]), id(&b[0]));
        assert_ne!(
            id(&a[0]),
            id(&a[1]),
            "identical rows on two lines stay apart"
        );
        assert!(id(&a[0]).contains("-L2-"));
        assert_ne!(
            MessageIds::new("a.csv").id(2, b"x"),
            MessageIds::new("b.csv").id(2, b"x")
        );
        assert_ne!(ids().id(2, b"x"), ids().id(2, b"y"));
        // A row's own messageId wins.
        let text = "userId,messageId\nu1,m-1\n";
        let out = read_all_csv(text, &spec(&[], Some(EventType::Identify)));
        assert_eq!(message(&out[0])["messageId"], "m-1");
    }

    fn nd(text: &str, default_type: Option<EventType>) -> Result<String, LineError> {
        ndjson_message(text, 5, default_type, &ids(), &Limits::default())
    }

    #[test]
    fn ndjson_lines_keep_their_bytes_and_gain_an_id() {
        let line = r#"{"type":"track","userId":"u","event":"E","properties":{"x":1.50}}"#;
        let out = nd(line, None).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{"messageId":"{}",{}"#,
                ids().id(5, line.as_bytes()),
                &line[1..]
            )
        );
        assert!(out.contains(r#""x":1.50"#), "numbers kept as written");
        // An id of its own is kept; the line is sent unchanged.
        let line = r#"{"type":"identify","userId":"u","messageId":"m1"}"#;
        assert_eq!(nd(line, None).unwrap(), line);
        // --type fills a missing type.
        let v: Value =
            serde_json::from_str(&nd(r#"{"userId":"u"}"#, Some(EventType::Identify)).unwrap())
                .unwrap();
        assert_eq!(v["type"], "identify");
        // A null messageId is replaced.
        let v: Value = serde_json::from_str(
            &nd(r#"{"type":"identify","userId":"u","messageId":null}"#, None).unwrap(),
        )
        .unwrap();
        assert!(v["messageId"].as_str().unwrap().starts_with("import-"));
        // A given type wins over --type.
        let v: Value = serde_json::from_str(
            &nd(
                r#"{"type":"track","event":"E","userId":"u"}"#,
                Some(EventType::Identify),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v["type"], "track");
    }

    #[test]
    fn ndjson_errors() {
        let code = |t: &str| nd(t, None).unwrap_err().code;
        assert_eq!(code(r#"{"type":"track","userId":"u""#), "invalid_json");
        assert_eq!(code("[1]"), "invalid_json");
        assert_eq!(code(r#"{"userId":"u"}"#), "missing_field");
        assert_eq!(code(r#"{"type":"buy","userId":"u"}"#), "invalid_type");
        assert_eq!(code(r#"{"type":"track","event":"E"}"#), "missing_identity");
        assert_eq!(
            code(r#"{"type":"track","userId":"u","event":"E","timestamp":"nope"}"#),
            "invalid_timestamp"
        );
        let big = format!(
            r#"{{"type":"identify","userId":"u","traits":{{"x":"{}"}}}}"#,
            "a".repeat(40_000)
        );
        assert_eq!(code(&big), "event_too_large");
    }

    #[test]
    fn ndjson_reader_numbers_lines_and_skips_blank_ones() {
        let text = "\u{feff}{\"type\":\"identify\",\"userId\":\"a\"}\n\n  \r\n{bad\r\n{\"type\":\"identify\",\"userId\":\"b\"}";
        let mut out = Vec::new();
        read_ndjson(
            text.as_bytes(),
            None,
            &ids(),
            &Limits::default(),
            &mut |p| {
                out.push(p);
                true
            },
        )
        .unwrap();
        let lines: Vec<u64> = out.iter().map(line_of).collect();
        assert_eq!(lines, vec![1, 4, 5]);
        assert!(matches!(&out[1], Parsed::Rejected(r) if r.record == "{bad"));
        assert_eq!(message(&out[2])["userId"], "b");
    }

    #[test]
    fn batches_stay_within_limits() {
        let m = |line: u64, len: usize| Prepared {
            line,
            json: "x".repeat(len),
        };
        let mut b = Batcher::new(3, 100);
        assert!(b.push(m(1, 10)).is_none());
        assert!(b.push(m(2, 10)).is_none());
        assert!(b.push(m(3, 10)).is_none());
        let full = b.push(m(4, 10)).unwrap();
        assert_eq!(full.items.len(), 3);
        let full = b.push(m(5, 80)).unwrap();
        assert_eq!(
            full.items.iter().map(|m| m.line).collect::<Vec<_>>(),
            vec![4]
        );
        let last = b.finish().unwrap();
        assert_eq!(last.items[0].line, 5);
        assert!(last.body().len() <= 100);
        let batch = Batch {
            items: vec![m(1, 1), m(2, 1), m(3, 1)],
            bytes: 6,
        };
        assert_eq!(batch.body(), r#"{"batch":[x,x,x]}"#);
        let (a, b) = batch.split();
        assert_eq!((a.items.len(), b.items.len()), (1, 2));
    }

    #[test]
    fn server_fields_lose_their_batch_prefix() {
        assert_eq!(
            item_field(Some("batch[12].timestamp".into())).as_deref(),
            Some("timestamp")
        );
        assert_eq!(
            item_field(Some("batch[0]".into())).as_deref(),
            Some("batch[0]")
        );
        assert_eq!(item_field(None), None);
    }
}
