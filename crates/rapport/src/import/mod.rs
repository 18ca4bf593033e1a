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
//! The files follow that split: the pure part is `ndjson.rs` (NDJSON lines), `mapping.rs`
//! (CSV columns to fields, cell types, the mapping file), `csv_file.rs` (CSV records and
//! rows) and `batch.rs` (requests within the limits), with the shared types and validation
//! here; the shell is `run` here (the reader thread) and `send.rs` (requests, retries,
//! rejections, progress).
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

mod batch;
mod csv_file;
mod mapping;
mod ndjson;
mod send;
#[cfg(test)]
mod tests;

pub use batch::*;
pub use csv_file::*;
pub use mapping::*;
pub use ndjson::*;
use send::*;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import: CSV (`.csv`) or one JSON message per line (`.ndjson`, `.jsonl`).
    pub file: PathBuf,
    /// Base URL of the running server.
    #[arg(
        long,
        env = "RAPPORT_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = crate::client::server_url
    )]
    pub url: String,
    /// A source's write key (not needed with --dry-run).
    #[arg(
        long,
        env = "RAPPORT_WRITE_KEY",
        hide_env_values = true,
        required_unless_present = "dry_run"
    )]
    pub write_key: Option<String>,
    /// File format [default: from the extension].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
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
    let format = match args.format {
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
