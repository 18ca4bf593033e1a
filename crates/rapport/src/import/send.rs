//! The shell's network side: requests kept in flight, retries of transient failures,
//! per-item rejections mapped back to file lines, and the progress report.

use super::*;

// ---------------------------------------------------------------------------------------
// The shell: reading thread, requests, reporting.
// ---------------------------------------------------------------------------------------

pub(super) enum Work {
    Batch(Batch),
    Rejected(Rejection),
    /// The reader is done: lines read, or a fatal error.
    Done(Result<u64, String>),
}

#[derive(Default)]
pub(super) struct Totals {
    pub(super) lines: u64,
    pub(super) valid: u64,
    pub(super) accepted: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
}

pub(super) struct Reporter {
    pub(super) file: String,
    pub(super) bar: ProgressBar,
    pub(super) errors: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    pub(super) totals: Totals,
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
pub(super) struct IngestResponse {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<RejectedItem>,
}

#[derive(Deserialize)]
pub(super) struct RejectedItem {
    index: usize,
    error: ErrorBody,
}

#[derive(Deserialize, Clone)]
pub(super) struct ErrorBody {
    code: String,
    message: String,
    field: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    error: ErrorBody,
}

pub(super) enum Sent {
    Done(IngestResponse),
    /// A 4xx other than an authentication failure: the request as a whole was refused.
    Refused(ErrorBody),
}

/// Strips the `batch[i].` prefix the server puts on field paths.
pub(super) fn item_field(field: Option<String>) -> Option<String> {
    field.map(|f| match f.strip_prefix("batch[") {
        Some(rest) => match rest.split_once("].") {
            Some((_, tail)) => tail.to_owned(),
            None => f,
        },
        None => f,
    })
}

pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(6)).min(8_000);
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    Duration::from_millis(base + jitter)
}

pub(super) async fn send(
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

/// Receives work from the reader, keeps up to `concurrency` requests in flight and accounts
/// for every line.
pub(super) async fn drive(
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

pub(super) fn server_rejection(m: &Prepared, error: ErrorBody) -> Rejection {
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
