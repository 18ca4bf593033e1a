//! Wakes log consumers when the log grows, so they neither poll nor lag.

use rapport_store::Offset;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct LogSignal {
    last: Mutex<Offset>,
    grew: Condvar,
}

impl LogSignal {
    pub fn new(last: Offset) -> LogSignal {
        LogSignal {
            last: Mutex::new(last),
            grew: Condvar::new(),
        }
    }

    pub fn advance(&self, last: Offset) {
        let mut current = self.last.lock().expect("log signal lock");
        if last > *current {
            *current = last;
            self.grew.notify_all();
        }
    }

    pub fn last(&self) -> Offset {
        *self.last.lock().expect("log signal lock")
    }

    /// Waits until the log holds an offset greater than `seen`, or `timeout` passes.
    /// Returns the newest offset known.
    pub fn wait_beyond(&self, seen: Offset, timeout: Duration) -> Offset {
        let guard = self.last.lock().expect("log signal lock");
        let (guard, _) = self
            .grew
            .wait_timeout_while(guard, timeout, |last| *last <= seen)
            .expect("log signal lock");
        *guard
    }
}
