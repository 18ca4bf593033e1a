//! Log entries a consumer could not read: kept where an operator can see them.
//!
//! Ingest refuses what a later stage cannot read, so this should stay empty. But a log is
//! long-lived — written by an older version, restored from a backup, or hit by a bug — and
//! a consumer that meets an entry it cannot parse must neither stop the pipeline behind it
//! nor skip it unseen. It records the entry here (offset, consumer, why), counts it in
//! `rapport_dead_letters_total{consumer}`, logs it at `warn`, and moves on. The entry itself
//! stays in the log: the listing reads it from there.
//!
//! Records are keyed by offset under the consumer's name, so writing one twice (a batch
//! retried after a crash) leaves one record.

use crate::EngineError;
use rapport_store::{Offset, StateWrite, Store};
use serde::{Deserialize, Serialize};

/// The namespace of dead-letter records; each consumer writes its own partition.
pub const NS_DEAD_LETTER: &str = "dead_letter";

/// The consumers that record dead letters, in the order the listing reads them.
pub const CONSUMERS: [&str; 2] = [crate::indexer::CONSUMER, crate::processor::CONSUMER];

/// One log entry a consumer could not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub offset: Offset,
    /// The consumer that could not read it (`event-indexer`, `processor`).
    pub consumer: String,
    /// Why, in words (the parser's message).
    pub error: String,
    /// When it was met, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// How a consumer reads one log entry.
pub enum Entry<'a> {
    /// A Segment event as ingest stored it.
    Event(Box<rapport_core::event::Event>),
    /// A control entry (identity rules, merges): not an event.
    Control(&'a [u8]),
    /// An erased entry (`{}`): an event whose personal data was removed.
    Erased,
    /// Anything else: the consumer records a dead letter.
    Unreadable(String),
}

/// Whether a log entry is an erased event (`{}`): offsets stay dense, nothing is left.
pub fn is_erased(payload: &[u8]) -> bool {
    payload == b"{}"
}

/// Classifies a log entry.
pub fn read_entry(payload: &[u8]) -> Entry<'_> {
    if crate::identity::control::is_control(payload) {
        return Entry::Control(payload);
    }
    if is_erased(payload) {
        return Entry::Erased;
    }
    match rapport_core::event::Event::from_json(payload) {
        Ok(e) => Entry::Event(Box::new(e)),
        Err(e) => Entry::Unreadable(e.to_string()),
    }
}

/// The write that records `offset` as unreadable by `consumer`, after logging and counting
/// it. The caller commits it with its offset.
pub fn record(consumer: &str, offset: Offset, error: &str, at_ms: i64) -> StateWrite {
    tracing::warn!(consumer, offset, %error, "log entry cannot be read; recorded as a dead letter");
    metrics::counter!("rapport_dead_letters_total", "consumer" => consumer.to_owned()).increment(1);
    let letter = DeadLetter {
        offset,
        consumer: consumer.to_owned(),
        error: error.to_owned(),
        at_ms,
    };
    StateWrite {
        namespace: NS_DEAD_LETTER.to_owned(),
        profile: consumer.to_owned(),
        key: offset.to_be_bytes().to_vec(),
        value: Some(serde_json::to_vec(&letter).expect("a dead letter serialises")),
    }
}

/// One page of a consumer's dead letters in offset order, after `after`.
pub fn list(
    store: &dyn Store,
    consumer: &str,
    after: Option<Offset>,
    limit: usize,
) -> Result<Vec<DeadLetter>, EngineError> {
    let after = after.map(|o| o.to_be_bytes());
    let rows = store.state_scan_range(
        NS_DEAD_LETTER,
        consumer,
        after.as_ref().map(|a| &a[..]),
        limit,
    )?;
    rows.into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| EngineError::Corrupt(format!("a dead-letter record is corrupt: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_classified() {
        assert!(matches!(read_entry(b"{}"), Entry::Erased));
        assert!(matches!(
            read_entry(br#"{"rapport_control":"identity_rules"}"#),
            Entry::Control(_)
        ));
        assert!(matches!(read_entry(b"not json"), Entry::Unreadable(_)));
        assert!(matches!(
            read_entry(br#"{"messageId":"m","type":"track","timestamp":"+10000-01-01T00:00:00.000Z","receivedAt":"2024-01-01T00:00:00.000Z","sourceId":"s"}"#),
            Entry::Unreadable(_)
        ));
        assert!(matches!(
            read_entry(br#"{"messageId":"m","type":"track","timestamp":"2024-01-01T00:00:00.000Z","receivedAt":"2024-01-01T00:00:00.000Z","sourceId":"s"}"#),
            Entry::Event(_)
        ));
    }
}
