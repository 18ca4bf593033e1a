//! Sources' identity policies as the processor applies them: set by control entries in
//! the log (so a replay agrees with the first run) and committed with the batch.

use super::{NS_SOURCE_IDENTITY, PART_SOURCES};
use crate::EngineError;
use rapport_core::identity::{self, IdentifierKind};
use rapport_store::Store;
use std::collections::HashMap;

/// The identity policies of sources, as control entries in the log set them.
#[derive(Default)]
pub(super) struct SourcePolicies(pub(super) HashMap<String, rapport_store::IdentityPolicy>);

impl SourcePolicies {
    pub(super) fn load(store: &dyn Store) -> Result<SourcePolicies, EngineError> {
        let mut map = HashMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                store.state_scan_range(NS_SOURCE_IDENTITY, PART_SOURCES, after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                // Written by the processor itself; an unreadable one would mean corruption,
                // and unrestricted is what the source was before any policy.
                if let Ok(policy) = serde_json::from_slice(value) {
                    map.insert(String::from_utf8_lossy(key).into_owned(), policy);
                }
            }
        }
        Ok(SourcePolicies(map))
    }

    pub(super) fn restriction(&self, source_id: &str) -> identity::SourceRestriction {
        match self.0.get(source_id) {
            None => identity::SourceRestriction::default(),
            Some(p) => identity::SourceRestriction {
                source_id: source_id.to_owned(),
                no_merge: !p.merge,
                kinds: p.identifier_types.as_ref().map(|types| {
                    types
                        .iter()
                        .filter_map(|t| IdentifierKind::parse(t))
                        .collect()
                }),
            },
        }
    }
}
