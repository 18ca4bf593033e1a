//! Batching: messages grouped into requests within a message count and a body size.

use super::*;

// ---------------------------------------------------------------------------------------
// Batching.
// ---------------------------------------------------------------------------------------

/// Messages of one request, with the file line of each.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Prepared>,
    pub(super) bytes: usize,
}

pub(super) const ENVELOPE: &str = r#"{"batch":[]}"#;

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

    pub(super) fn split(mut self) -> (Batch, Batch) {
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
