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
    pub fn new(store: std::sync::Arc<dyn rapport_store::Store>) -> Privacy {
        Privacy {
            suppressions: Suppressions::new(store.clone()),
            deletions: Deletions { store },
        }
    }
}
