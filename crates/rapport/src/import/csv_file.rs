//! Reading CSV files: records with the line each starts on, each row made a message.

use super::*;

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
pub(super) fn cells_record(plan: &CsvPlan, cells: &[&str]) -> Value {
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
