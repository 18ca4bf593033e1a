//! `rapport privacy`: delete a person (optionally suppressing them) or a range of a source's
//! events, follow requests to their receipts, and keep the suppression list, through
//! `/api/v1/privacy/…`. See docs/privacy.md.

use crate::client::{Client, Format, ServerArgs, emit};
use crate::out;
use anyhow::bail;
use clap::Subcommand;
use rapport_api::privacy::{Deletion, EventsDeletion, NewSuppression, PersonDeletion};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Delete a person by any of their identifiers (`type:value`) or profile ids: from
    /// every store, the log included.
    Delete {
        /// `user_id:42`, `email:ann@example.com`, `anonymous_id:…`, or `p_…`.
        #[arg(required = true)]
        identifiers: Vec<String>,
        /// Suppress the identifiers too: their new events are dropped from now on.
        #[arg(long)]
        suppress: bool,
        /// Wait (up to this many seconds) for the request to be done, and print its receipt.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Delete the events a source sent between two instants (receive time): data sent
    /// by mistake.
    DeleteEvents {
        /// The source, by name or id.
        #[arg(long)]
        source: String,
        /// Inclusive, RFC 3339.
        #[arg(long)]
        from: String,
        /// Exclusive, RFC 3339.
        #[arg(long)]
        to: String,
        /// Wait (up to this many seconds) for the request to be done, and print its receipt.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Deletion requests, newest first; with an id, one request and its receipt.
    Deletions {
        /// A request's id (`del_…`): show it with its receipt.
        id: Option<String>,
    },
    /// The suppression list.
    Suppressions,
    /// Suppress an identifier (`type:value`): its new events are dropped, nothing about
    /// its profile is delivered.
    Suppress {
        /// `type:value`: `user_id:42`, `email:ann@example.com`.
        identifier: String,
        /// Why (kept with the entry; keep personal data out of it).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a suppression, by identifier (`type:value`) or hash.
    Unsuppress {
        /// `type:value`, or the entry's hash as the list shows it.
        identifier: String,
    },
}

pub fn run(command: PrivacyCommand, server: &ServerArgs, format: Format) -> anyhow::Result<()> {
    let client = Client::new(server)?;
    match command {
        PrivacyCommand::Delete {
            identifiers,
            suppress,
            wait,
        } => {
            let asked = client.delete_person(&PersonDeletion {
                identifiers,
                suppress,
            })?;
            follow(&client, asked.value, wait, format)
        }
        PrivacyCommand::DeleteEvents {
            source,
            from,
            to,
            wait,
        } => {
            let asked = client.delete_events(&EventsDeletion { source, from, to })?;
            follow(&client, asked.value, wait, format)
        }
        PrivacyCommand::Deletions { id: Some(id) } => {
            let answer = client.deletion(&id)?;
            emit(format, &answer.json, |o| receipt(o, &answer.value))
        }
        PrivacyCommand::Deletions { id: None } => {
            let answer = client.deletions()?;
            emit(format, &answer.json, |o| {
                if answer.value.data.is_empty() {
                    out!(o, "no deletion requests");
                    return;
                }
                out!(
                    o,
                    "{:<30} {:<10} {:<11} {:<22} REMOVED",
                    "ID",
                    "KIND",
                    "STATUS",
                    "REQUESTED"
                );
                for d in &answer.value.data {
                    let removed: u64 = d.receipt.iter().map(|l| l.removed).sum();
                    out!(
                        o,
                        "{:<30} {:<10} {:<11} {:<22} {}",
                        d.id,
                        d.kind,
                        d.status,
                        rapport_api::time::display(&d.requested_at),
                        removed
                    );
                }
            })
        }
        PrivacyCommand::Suppressions => {
            let answer = client.suppressions()?;
            emit(format, &answer.json, |o| {
                if answer.value.data.is_empty() {
                    out!(o, "no suppressions");
                    return;
                }
                out!(o, "{:<66} {:<14} {:<22} REASON", "HASH", "TYPE", "SINCE");
                for s in &answer.value.data {
                    out!(
                        o,
                        "{:<66} {:<14} {:<22} {}",
                        s.hash,
                        s.kind,
                        rapport_api::time::display(&s.created_at),
                        s.reason.as_deref().unwrap_or("-")
                    );
                }
            })
        }
        PrivacyCommand::Suppress { identifier, reason } => {
            let answer = client.suppress(&NewSuppression { identifier, reason })?;
            emit(format, &answer.json, |o| {
                out!(
                    o,
                    "suppressed ({} {})",
                    answer.value.kind,
                    answer.value.hash
                );
            })
        }
        PrivacyCommand::Unsuppress { identifier } => {
            let answer = client.unsuppress(&identifier)?;
            emit(format, &answer.json, |o| {
                out!(
                    o,
                    "no longer suppressed ({} {})",
                    answer.value.kind,
                    answer.value.hash
                );
            })
        }
    }
}

/// Prints the request, or with `wait`, polls it until done and prints its receipt.
fn follow(
    client: &Client,
    asked: Deletion,
    wait: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    let Some(seconds) = wait else {
        let json = serde_json::to_value(&asked)?;
        return emit(format, &json, |o| {
            out!(
                o,
                "queued: {} (follow it with `rapport privacy deletions {}`)",
                asked.id,
                asked.id
            );
        });
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = client.deletion(&asked.id)?;
        if answer.value.status == "done" {
            return emit(format, &answer.json, |o| receipt(o, &answer.value));
        }
        if Instant::now() >= deadline {
            bail!(
                "deletion {} is still {} after {seconds} s{}; follow it with `rapport privacy deletions {}`",
                asked.id,
                answer.value.status,
                answer
                    .value
                    .error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default(),
                asked.id
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn receipt(o: &mut String, d: &Deletion) {
    out!(o, "deletion {} ({}): {}", d.id, d.kind, d.status);
    if let Some(e) = &d.error {
        out!(o, "last error: {e}");
    }
    for h in &d.subject_hashes {
        out!(o, "subject sha256 {h}");
    }
    if d.receipt.is_empty() {
        return;
    }
    out!(o, "{:<50} {:>8}  DETAIL", "STORE", "REMOVED");
    for l in &d.receipt {
        out!(
            o,
            "{:<50} {:>8}  {}",
            l.store,
            l.removed,
            l.detail.as_deref().unwrap_or("")
        );
    }
}
