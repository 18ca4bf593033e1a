//! Work repeated on an interval on a thread of its own, which a server stops promptly at
//! shutdown (the refit schedule of the value models, the matching schedule).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Periodic {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl Periodic {
    /// Starts thread `name`: it waits `first()` (computed on the thread, so that a caller in
    /// async code makes no storage call), then calls `tick` every `interval`, until stopped
    /// or until `tick` answers false.
    pub fn spawn(
        name: &str,
        first: impl FnOnce() -> Duration + Send + 'static,
        interval: Duration,
        mut tick: impl FnMut() -> bool + Send + 'static,
    ) -> Periodic {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut wait = first();
                loop {
                    let (lock, cvar) = &*flag;
                    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = cvar
                        .wait_timeout_while(guard, wait, |stopped| !*stopped)
                        .unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                    drop(guard);
                    if !tick() {
                        return;
                    }
                    wait = interval;
                }
            })
            .expect("spawn a periodic thread");
        Periodic { stop, handle }
    }

    /// Stops the thread, waiting for a tick in progress to end.
    pub fn stop(self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
        let _ = self.handle.join();
    }
}
