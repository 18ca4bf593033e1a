//! CSV columns to message fields: cell types, targets, the mapping file and flags, and the
//! plan they resolve to against a header.

use super::*;

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
pub(super) const TOP_FIELDS: [&str; 11] = [
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
pub(super) fn default_field(column: &str) -> Option<&'static str> {
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
pub(super) struct MappingFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    event: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, ColumnEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ColumnEntry {
    Target(String),
    Table(ColumnTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ColumnTable {
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

pub(super) fn insert_path(
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
