//! Privacy operations on live data: suppression ([`suppression`]), deletion of a person
//! and of a range of events ([`deletion`], run by [`eraser`]), and per-source retention.
//!
//! Rapport keeps an append-only log as its source of truth, and everything else is derived
//! from it. So erasing a person is not a delete in one table: the processor drops what it
//! derived for them at a control entry's place in the log (so that nothing it does later
//! brings it back), the eraser then overwrites their log entries with `{}` (offsets stay
//! dense, replays find nothing), removes them from the index and from what other stages
//! keep, forwards the request to destinations that take one, and purges the store so that
//! no old version survives in its files. See `docs/privacy.md` for what each operation
//! guarantees and what it does not cover.

pub mod deletion;
pub mod eraser;
pub mod suppression;

pub use deletion::{
    DeletionRecord, DeletionStatus, Deletions, ForgetRequest, Forgotten, NS_DELETION, NS_FORGOTTEN,
    ReceiptLine, Subject,
};
pub use suppression::{NS_SUPPRESSION, Suppression, Suppressions, subject_hash};

/// What the API uses: the suppression list (with this server's copy) and the requests.
pub struct Privacy {
    pub suppressions: Suppressions,
    pub deletions: Deletions,
}

impl Privacy {
    /// Loads the suppression list (a store read: call it where blocking is allowed).
    pub fn new(
        store: std::sync::Arc<dyn rapport_store::Store>,
    ) -> Result<Privacy, crate::EngineError> {
        Ok(Privacy {
            suppressions: Suppressions::cached(store.clone())?,
            deletions: Deletions { store },
        })
    }

    /// Keeps this server's copy of the suppression list fresh, on a thread of its own.
    pub fn start_refresh(privacy: std::sync::Arc<Privacy>) -> crate::periodic::Periodic {
        let interval = suppression::REFRESH_INTERVAL;
        crate::periodic::Periodic::spawn(
            "suppressions",
            move || interval,
            interval,
            move || {
                if let Err(e) = privacy.suppressions.reload() {
                    tracing::warn!(error = %e, "cannot reload the suppression list");
                }
                true
            },
        )
    }
}
