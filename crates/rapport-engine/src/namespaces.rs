//! Every namespace of the state store in one place, with the one stage that writes it and
//! who reads it. Two writers of one namespace would race (the processor commits its state
//! with its offset, and a second writer's changes would be neither ordered by the log nor
//! replayed with it), so a new namespace is added here with its single writer; a test
//! checks that every namespace constant of the engine is listed and that names are unique.

use crate::{
    audiences, audit, consent, dead_letters, destinations, identity, journey_emitter, journeys,
    privacy, profiles, tracking_plans, value,
};

/// A namespace, who writes it, and who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    pub name: &'static str,
    /// The one stage that writes it.
    pub writer: &'static str,
    /// Who reads it.
    pub readers: &'static str,
}

const fn ns(name: &'static str, writer: &'static str, readers: &'static str) -> Namespace {
    Namespace {
        name,
        writer,
        readers,
    }
}

/// Every namespace of the state store.
pub const ALL: &[Namespace] = &[
    ns(
        profiles::NS_PROFILE,
        "processor",
        "profile API, destinations, value jobs, matching",
    ),
    ns(
        profiles::NS_IDENTIFIER,
        "processor",
        "profile API (references), destinations",
    ),
    ns(
        profiles::NS_IDENTITY_LOG,
        "processor",
        "profile API (identity explanation)",
    ),
    ns(profiles::NS_TIMELINE, "processor", "profile API (timeline)"),
    ns(profiles::NS_ACCOUNT, "processor", "profile API"),
    ns(profiles::NS_TRAIT_INDEX, "processor", "profile search"),
    ns(
        consent::NS_CONSENT_HISTORY,
        "processor (events' consent, and the API's changes as control entries in the log)",
        "profile API (consent history)",
    ),
    ns(
        crate::processor::NS_SOURCE_IDENTITY,
        "processor (from the log's control entries)",
        "processor",
    ),
    ns(
        identity::control::NS_MATCH_OUTCOME,
        "processor (applying merge entries)",
        "review API",
    ),
    ns(
        identity::rules::NS_RULES,
        "processor (applying rules changes from the log)",
        "identity API, processor",
    ),
    ns(
        identity::matching::NS_MATCHING,
        "matching job",
        "identity API",
    ),
    ns(
        identity::review::NS_REVIEW,
        "matching job (proposals) and review decisions, one at a time",
        "identity API",
    ),
    ns(
        audiences::definitions::NS_DEFINITION,
        "audience definitions (REST API)",
        "processor, audience API",
    ),
    ns(
        audiences::store::NS_AUDIENCE,
        "processor",
        "profile and audience APIs",
    ),
    ns(
        audiences::store::NS_MEMBER,
        "processor",
        "audience API (members)",
    ),
    ns(
        audiences::store::NS_SIZE,
        "processor",
        "audience API (size history)",
    ),
    ns(
        audiences::store::NS_FEED,
        "processor",
        "audience API (changes), profile timelines",
    ),
    ns(
        audiences::store::NS_SCHEDULE,
        "processor",
        "processor (time-driven re-evaluation)",
    ),
    ns(
        audiences::store::NS_META,
        "processor (backfill)",
        "audience API (status)",
    ),
    ns(
        audiences::store::NS_PROFILE_LIST,
        "processor",
        "backfill, matching, value jobs",
    ),
    ns(value::NS_SCORE, "value-model jobs", "profile API, segments"),
    ns(value::NS_FIT, "value-model jobs", "value API"),
    ns(
        value::NS_HEALTH,
        "value-model jobs",
        "value API (health report)",
    ),
    ns(value::NS_ALERT, "value-model jobs", "value API (alerts)"),
    ns(
        dead_letters::NS_DEAD_LETTER,
        "indexer and processor, each its own partition",
        "pipeline API",
    ),
    ns(
        destinations::NS_DESTINATION,
        "destinations REST API",
        "delivery workers",
    ),
    ns(
        destinations::NS_RETRY,
        "the destination's delivery worker (replay through the API)",
        "delivery worker, destinations API",
    ),
    ns(
        destinations::NS_FAILED,
        "the destination's delivery worker (replay through the API)",
        "destinations API",
    ),
    ns(
        crate::trait_changes::NS_TRAIT_FEED,
        "the processor, while a destination delivers trait changes",
        "delivery workers",
    ),
    ns(
        destinations::NS_ORDER,
        "the destination's delivery worker",
        "delivery worker",
    ),
    ns(
        destinations::NS_OVERVIEW,
        "the destination's delivery worker",
        "destinations API",
    ),
    ns(
        destinations::NS_CURSOR,
        "the destination's delivery worker (started by the destinations API)",
        "delivery worker",
    ),
    ns(
        tracking_plans::NS_TRACKING_PLAN,
        "tracking-plan REST API",
        "ingest (through its cache), tracking-plan API",
    ),
    ns(
        tracking_plans::NS_PLAN_VIOLATIONS,
        "ingest (one request's counts at a time, under the server's lock)",
        "tracking-plan API (violations report)",
    ),
    ns(
        journeys::NS_JOURNEY,
        "journeys API (definitions, versions, lifecycle)",
        "processor, journeys API",
    ),
    ns(
        journeys::NS_INSTANCE,
        "processor",
        "journeys API, profile API",
    ),
    ns(
        journeys::NS_ENTRY,
        "processor",
        "processor (re-entry rules)",
    ),
    ns(journeys::NS_TIMER, "processor", "processor (due timers)"),
    ns(journeys::NS_TOTALS, "processor", "processor (entry limits)"),
    ns(journeys::NS_STATS, "processor", "journeys API (flow)"),
    ns(
        journeys::NS_CAPS,
        "processor (from caps changes in the log)",
        "processor, journeys API",
    ),
    ns(
        journeys::NS_SENDS,
        "processor",
        "processor (frequency caps)",
    ),
    ns(journeys::NS_ACTIVE, "processor", "processor (migrations)"),
    ns(
        journeys::NS_SCHEDULE,
        "processor",
        "processor (schedule entries)",
    ),
    ns(
        journeys::NS_ACTION,
        "processor",
        "journeys API, delivery of journey actions, journey emitter",
    ),
    ns(
        privacy::NS_SUPPRESSION,
        "privacy API (suppressions, deletions with suppression)",
        "ingest, delivery workers, privacy API",
    ),
    ns(
        privacy::NS_DELETION,
        "privacy API (new requests), then the eraser (their steps)",
        "eraser, privacy API",
    ),
    ns(
        privacy::NS_FORGOTTEN,
        "processor (at a deletion's control entry; the eraser removes it when done)",
        "eraser",
    ),
    ns(
        crate::access::NS_KEY_SCOPES,
        "key creation (keys API, `rapport keys create --offline`), before the key",
        "authentication, keys API",
    ),
    ns(
        crate::personal_data::NS_PERSONAL_DATA,
        "personal-data API (PUT /api/v1/privacy/personal-data)",
        "the admin layer's masker, personal-data API",
    ),
    ns(
        crate::sessions::NS_SESSION,
        "dashboard sign-in and sign-out (the server)",
        "the admin layer (dashboard requests)",
    ),
    ns(
        audit::NS_AUDIT,
        "the server's audit layer (append only)",
        "audit API",
    ),
    ns(
        crate::stats::NS_EVENTS_PER_MINUTE,
        "processor (with its offset; prunes minutes past a day)",
        "overview API",
    ),
    ns(
        journey_emitter::NS_EMIT,
        "journey emitter",
        "journey emitter (its cursor)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|n| n.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn every_namespace_constant_of_the_engine_is_listed() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    for line in std::fs::read_to_string(&p).unwrap().lines() {
                        let line = line.trim();
                        if let Some(rest) = line.strip_prefix("pub const NS_")
                            && let Some(value) = rest.split('"').nth(1)
                        {
                            out.push(value.to_owned());
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        for name in found {
            assert!(
                ALL.iter().any(|n| n.name == name),
                "namespace {name:?} is not listed in namespaces::ALL"
            );
        }
    }
}
