//! Identity resolution: which profile an event belongs to, and what the graph must change.
//!
//! One pure function, [`resolve`], reads the identity graph through the narrow
//! [`GraphView`] trait and returns a [`Resolution`]: the profile, merges with their
//! reasons, identifiers added and refused, and the [`GraphChange`]s to persist. The engine
//! calls it once per event, in log order, and applies the changes before the next event;
//! the same event sequence therefore always builds the same graph.
//!
//! # The algorithm
//!
//! The event's identifiers are sorted by priority (highest first; the order found breaks
//! ties). Starting from nothing, each is considered in turn:
//!
//! - an identifier already on a profile that is part of the result is simply kept;
//! - an identifier on another profile would bring that whole profile in (a merge): it is
//!   kept only if the union of the profiles and new identifiers so far respects every
//!   limit, otherwise it is refused (`MergeWouldBreakLimit`) and the profiles stay apart;
//! - a new identifier is kept only if it fits under its type's limit, otherwise refused
//!   (`LimitReached`).
//!
//! Since higher-priority identifiers are placed first, a conflict always drops the
//! lower-priority identifier that causes it — the result of Segment Unify's "drop the
//! lowest-priority identifier and retry", reached in one pass. A shared device or a shared
//! e-mail can therefore never join two profiles with different user ids.
//!
//! Limits are checked only for types whose count the step would raise, so a profile that
//! already exceeds a limit (after the rules were tightened) still receives its events.
//!
//! If no identifier matched, a new profile is created with the caller's id. If several
//! profiles matched, the one with the **smallest id** (byte-wise) survives and the others
//! are merged into it; with ids that sort by creation (UUIDv7, zero-padded counters) that
//! is the oldest profile.

use super::explain::{IdentityEvent, IdentityLogEntry, Refusal, RefusalReason};
use super::extract::{EventMeta, Extracted, ExtractedIdentifier, extract};
use super::identifier::{Identifier, IdentifierKind, MAX_IDENTIFIER_LEN};
use super::rules::IdentityRules;
use crate::event::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The id of a person profile. Opaque to identity; minted by the engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(pub String);

impl ProfileId {
    pub fn new(id: impl Into<String>) -> ProfileId {
        ProfileId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An identifier attached to a profile, with when it was seen and which event added it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierRecord {
    pub identifier: Identifier,
    /// Earliest event timestamp that carried it.
    pub first_seen: DateTime<Utc>,
    /// Latest event timestamp that carried it; drives limit windows.
    pub last_seen: DateTime<Utc>,
    /// Message id of the event that attached it.
    pub added_by: String,
}

impl IdentifierRecord {
    /// Widens `[first_seen, last_seen]` to include `at` (what a `TouchIdentifier` does).
    pub fn seen_at(&mut self, at: DateTime<Utc>) {
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
    }
}

/// A read-only view of the identity graph, as of the previous event.
pub trait GraphView {
    /// The live profile holding `id`, if any. After a merge this is the survivor.
    fn profile_of(&self, id: &Identifier) -> Option<ProfileId>;
    /// Every identifier of a live profile.
    fn identifiers_of(&self, p: &ProfileId) -> Vec<IdentifierRecord>;
    /// Whether `p` is already a member of the account. The default (`false`) is correct
    /// but makes every group call emit a [`GraphChange::LinkAccount`] and a log entry.
    fn is_account_member(&self, _account_id: &str, _p: &ProfileId) -> bool {
        false
    }
}

/// One change to persist, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GraphChange {
    /// A new, empty profile.
    CreateProfile { profile: ProfileId },
    /// Move every identifier (listed) and account membership of `from` to `into`, and make
    /// `from` resolve to `into` from now on (as should every id merged into `from` before).
    MergeProfiles {
        from: ProfileId,
        into: ProfileId,
        identifiers: Vec<Identifier>,
    },
    /// Attach a new identifier to `profile`.
    AddIdentifier {
        profile: ProfileId,
        record: IdentifierRecord,
    },
    /// An existing identifier of `profile` (after the merges above) was seen at `seen_at`,
    /// outside its `[first_seen, last_seen]`: widen that interval.
    TouchIdentifier {
        profile: ProfileId,
        identifier: Identifier,
        seen_at: DateTime<Utc>,
    },
    /// Make `profile` a member of the account (group) `account_id`.
    LinkAccount {
        account_id: String,
        profile: ProfileId,
    },
}

/// One profile merged into another by an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub from: ProfileId,
    pub into: ProfileId,
    /// The event's identifier that was on `from`.
    pub linked_by: Identifier,
    /// The event's identifier that was on `into`.
    pub anchored_by: Identifier,
}

/// The account a group call ties the profile to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLink {
    pub account_id: String,
    pub profile: ProfileId,
    /// False if the profile (or one merged into it) was already a member.
    pub new_link: bool,
}

/// Everything one event does to the identity graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub message_id: String,
    pub timestamp: DateTime<Utc>,
    /// The profile the event belongs to; `None` only if every identifier was refused.
    pub profile: Option<ProfileId>,
    /// Whether `profile` is new (created with the caller's id).
    pub created: bool,
    /// Profiles merged into `profile`, in profile id order.
    pub merges: Vec<Merge>,
    /// Identifiers attached to `profile` by this event.
    pub added: Vec<IdentifierRecord>,
    /// Identifiers found in the event and not attached, with the reason.
    pub refused: Vec<Refusal>,
    pub account: Option<AccountLink>,
    /// What to persist, in order.
    pub changes: Vec<GraphChange>,
    /// Entries to append to the identity logs of the profiles concerned.
    pub log: Vec<IdentityLogEntry>,
}

impl Resolution {
    /// Every profile id this event retired (merged away).
    pub fn retired(&self) -> impl Iterator<Item = &ProfileId> {
        self.merges.iter().map(|m| &m.from)
    }
}

/// Extracts the identifiers of `event` and resolves them: the usual per-event entry point.
pub fn resolve_event(
    rules: &IdentityRules,
    view: &impl GraphView,
    event: &Event,
    new_profile_id: impl FnOnce() -> ProfileId,
) -> Resolution {
    let extracted = extract(event, rules);
    resolve(
        rules,
        view,
        &extracted,
        &EventMeta::of(event),
        new_profile_id,
    )
}

/// What the settings of the event's source forbid it (see `docs/security.md`): a source
/// whose write key is public can be kept from asserting some identifier types and from
/// merging profiles. Identifiers it may not use are refused, with the source named in the
/// refusal, so that the profile's explanation says why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRestriction {
    /// The source the event came from.
    pub source_id: String,
    /// When true, an identifier that belongs to another profile than the one the event
    /// already resolved to is refused rather than merged. Identifiers new to the graph are
    /// still attached, so the source's events still land on a profile.
    pub no_merge: bool,
    /// When set, only these identifier types are used; the others are refused.
    pub kinds: Option<Vec<IdentifierKind>>,
}

impl SourceRestriction {
    pub fn is_none(&self) -> bool {
        !self.no_merge && self.kinds.is_none()
    }
}

/// Identifiers a step would leave on the resulting profile, counted per type.
struct Candidate<'a> {
    profiles: &'a [ProfileId],
    event_ids: &'a [&'a Identifier],
}

/// Resolves one event's identifiers against the graph. See the module docs.
pub fn resolve(
    rules: &IdentityRules,
    view: &impl GraphView,
    extracted: &Extracted,
    meta: &EventMeta,
    new_profile_id: impl FnOnce() -> ProfileId,
) -> Resolution {
    resolve_restricted(
        rules,
        view,
        extracted,
        meta,
        &SourceRestriction::default(),
        new_profile_id,
    )
}

/// As [`resolve`], under the restriction of the event's source: identifiers of types the
/// source may not assert are refused before anything else, and with `no_merge` an
/// identifier that would bring a second existing profile in is refused (logged on both
/// profiles) where [`resolve`] would merge.
pub fn resolve_restricted(
    rules: &IdentityRules,
    view: &impl GraphView,
    extracted: &Extracted,
    meta: &EventMeta,
    restriction: &SourceRestriction,
    new_profile_id: impl FnOnce() -> ProfileId,
) -> Resolution {
    let now = meta.timestamp;
    let mut refused: Vec<Refusal> = extracted.refused.clone();
    let mut candidates: Vec<ExtractedIdentifier> = extracted.identifiers.clone();

    // Alias: `previousId` is a user id if the graph knows it as one, otherwise an
    // anonymous id (what SDKs send when a visitor first signs up).
    if let Some(prev) = &extracted.previous_id {
        let as_user = Identifier::user_id(prev.clone());
        let identifier = if view.profile_of(&as_user).is_some() {
            as_user
        } else {
            Identifier::anonymous_id(prev.clone())
        };
        if prev.len() > MAX_IDENTIFIER_LEN {
            refused.push(Refusal {
                identifier,
                source: "previousId".into(),
                reason: RefusalReason::InvalidFormat {
                    detail: format!("value is longer than {MAX_IDENTIFIER_LEN} bytes"),
                },
            });
        } else if !candidates.iter().any(|c| c.identifier == identifier) {
            candidates.push(ExtractedIdentifier {
                identifier,
                source: "previousId".into(),
            });
        }
    }
    if let Some(kinds) = &restriction.kinds {
        let (kept, dropped): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|c| kinds.contains(&c.identifier.kind));
        candidates = kept;
        refused.extend(dropped.into_iter().map(|c| Refusal {
            identifier: c.identifier,
            source: c.source,
            reason: RefusalReason::TypeNotAllowedForSource {
                source_id: restriction.source_id.clone(),
            },
        }));
    }
    candidates.sort_by_cached_key(|c| rules.rank(&c.identifier.kind));

    let mut records: BTreeMap<ProfileId, Vec<IdentifierRecord>> = BTreeMap::new();
    let mut profiles: Vec<ProfileId> = Vec::new();
    let mut anchors: BTreeMap<ProfileId, Identifier> = BTreeMap::new();
    let mut accepted: Vec<(ExtractedIdentifier, Option<ProfileId>)> = Vec::new();
    // (refusal index, profile kept apart) for merges refused, to log on both sides.
    let mut refused_merges: Vec<(Refusal, ProfileId)> = Vec::new();
    // Merges the source may not make: (refusal, profile kept apart), logged on both.
    let mut forbidden_merges: Vec<(Refusal, ProfileId)> = Vec::new();

    for cand in candidates {
        let owner = view.profile_of(&cand.identifier);
        let event_ids: Vec<&Identifier> = accepted.iter().map(|(c, _)| &c.identifier).collect();
        match owner {
            Some(p) if profiles.contains(&p) => accepted.push((cand, Some(p))),
            Some(p) if restriction.no_merge && !profiles.is_empty() => {
                let refusal = Refusal {
                    identifier: cand.identifier,
                    source: cand.source,
                    reason: RefusalReason::MergeNotAllowedForSource {
                        other: p.clone(),
                        source_id: restriction.source_id.clone(),
                    },
                };
                forbidden_merges.push((refusal.clone(), p));
                refused.push(refusal);
            }
            Some(p) => {
                records
                    .entry(p.clone())
                    .or_insert_with(|| view.identifiers_of(&p));
                let mut with = profiles.clone();
                with.push(p.clone());
                let before = Candidate {
                    profiles: &profiles,
                    event_ids: &event_ids,
                };
                let part = Candidate {
                    profiles: std::slice::from_ref(&p),
                    event_ids: &[],
                };
                let after = Candidate {
                    profiles: &with,
                    event_ids: &event_ids,
                };
                match violation(rules, &records, now, &before, &part, &after) {
                    None => {
                        anchors.insert(p.clone(), cand.identifier.clone());
                        profiles.push(p.clone());
                        accepted.push((cand, Some(p)));
                    }
                    Some((kind, limit)) => {
                        let refusal = Refusal {
                            identifier: cand.identifier,
                            source: cand.source,
                            reason: RefusalReason::MergeWouldBreakLimit {
                                profile: p.clone(),
                                kind,
                                limit,
                            },
                        };
                        refused_merges.push((refusal.clone(), p));
                        refused.push(refusal);
                    }
                }
            }
            None => {
                let mut with_ids = event_ids.clone();
                with_ids.push(&cand.identifier);
                let own = [&cand.identifier];
                let before = Candidate {
                    profiles: &profiles,
                    event_ids: &event_ids,
                };
                let part = Candidate {
                    profiles: &[],
                    event_ids: &own,
                };
                let after = Candidate {
                    profiles: &profiles,
                    event_ids: &with_ids,
                };
                match violation(rules, &records, now, &before, &part, &after) {
                    None => accepted.push((cand, None)),
                    Some((kind, limit)) => refused.push(Refusal {
                        identifier: cand.identifier,
                        source: cand.source,
                        reason: RefusalReason::LimitReached { kind, limit },
                    }),
                }
            }
        }
    }

    let mut res = Resolution {
        message_id: meta.message_id.clone(),
        timestamp: now,
        profile: None,
        created: false,
        merges: Vec::new(),
        added: Vec::new(),
        refused,
        account: None,
        changes: Vec::new(),
        log: Vec::new(),
    };
    let entry = |profile: &ProfileId, event: IdentityEvent| IdentityLogEntry {
        profile: profile.clone(),
        message_id: meta.message_id.clone(),
        at: now,
        event,
    };

    let profile = if let Some(survivor) = profiles.iter().min().cloned() {
        let mut others: Vec<&ProfileId> = profiles.iter().filter(|p| **p != survivor).collect();
        others.sort();
        for from in others {
            let merge = Merge {
                from: from.clone(),
                into: survivor.clone(),
                linked_by: anchors[from].clone(),
                anchored_by: anchors[&survivor].clone(),
            };
            res.changes.push(GraphChange::MergeProfiles {
                from: from.clone(),
                into: survivor.clone(),
                identifiers: records[from].iter().map(|r| r.identifier.clone()).collect(),
            });
            res.log.push(entry(
                &survivor,
                IdentityEvent::ProfileMerged {
                    from: from.clone(),
                    linked_by: merge.linked_by.clone(),
                    anchored_by: merge.anchored_by.clone(),
                    reason: None,
                },
            ));
            res.log.push(entry(
                from,
                IdentityEvent::MergedInto {
                    into: survivor.clone(),
                    linked_by: merge.linked_by.clone(),
                    anchored_by: merge.anchored_by.clone(),
                    reason: None,
                },
            ));
            res.merges.push(merge);
        }
        survivor
    } else if !accepted.is_empty() {
        let p = new_profile_id();
        res.created = true;
        res.changes
            .push(GraphChange::CreateProfile { profile: p.clone() });
        res.log.push(entry(&p, IdentityEvent::ProfileCreated));
        p
    } else {
        return res;
    };

    for (cand, owner) in &accepted {
        match owner {
            None => {
                let record = IdentifierRecord {
                    identifier: cand.identifier.clone(),
                    first_seen: now,
                    last_seen: now,
                    added_by: meta.message_id.clone(),
                };
                res.changes.push(GraphChange::AddIdentifier {
                    profile: profile.clone(),
                    record: record.clone(),
                });
                res.log.push(entry(
                    &profile,
                    IdentityEvent::IdentifierAdded {
                        identifier: cand.identifier.clone(),
                        source: cand.source.clone(),
                    },
                ));
                res.added.push(record);
            }
            Some(p) => {
                let stale = records
                    .get(p)
                    .and_then(|rs| rs.iter().find(|r| r.identifier == cand.identifier))
                    .is_none_or(|r| now < r.first_seen || now > r.last_seen);
                if stale {
                    res.changes.push(GraphChange::TouchIdentifier {
                        profile: profile.clone(),
                        identifier: cand.identifier.clone(),
                        seen_at: now,
                    });
                }
            }
        }
    }

    for r in &res.refused {
        if !matches!(r.reason, RefusalReason::MergeWouldBreakLimit { .. }) {
            res.log
                .push(entry(&profile, IdentityEvent::IdentifierRefused(r.clone())));
        }
    }
    for (r, other) in forbidden_merges {
        res.log
            .push(entry(&other, IdentityEvent::IdentifierRefused(r)));
    }
    for (r, other) in refused_merges {
        let RefusalReason::MergeWouldBreakLimit { kind, limit, .. } = r.reason else {
            continue;
        };
        for (this, that) in [(&profile, &other), (&other, &profile)] {
            res.log.push(entry(
                this,
                IdentityEvent::MergeRefused {
                    other: that.clone(),
                    identifier: r.identifier.clone(),
                    conflict: kind.clone(),
                    limit,
                },
            ));
        }
    }

    if let Some(account_id) = &extracted.group_id {
        let member = profiles
            .iter()
            .any(|p| view.is_account_member(account_id, p));
        if !member {
            res.changes.push(GraphChange::LinkAccount {
                account_id: account_id.clone(),
                profile: profile.clone(),
            });
            res.log.push(entry(
                &profile,
                IdentityEvent::AccountLinked {
                    account_id: account_id.clone(),
                },
            ));
        }
        res.account = Some(AccountLink {
            account_id: account_id.clone(),
            profile: profile.clone(),
            new_link: !member,
        });
    }
    res.profile = Some(profile);
    res
}

/// Distinct identifiers per type that count toward limits: the profiles' identifiers seen
/// within each type's window, plus the event's own (seen now).
fn counts<'a>(
    rules: &IdentityRules,
    records: &'a BTreeMap<ProfileId, Vec<IdentifierRecord>>,
    now: DateTime<Utc>,
    c: &Candidate<'a>,
) -> BTreeMap<&'a IdentifierKind, BTreeSet<&'a str>> {
    let mut out: BTreeMap<&IdentifierKind, BTreeSet<&str>> = BTreeMap::new();
    for p in c.profiles {
        for r in records.get(p).into_iter().flatten() {
            let (_, window) = rules.limit(&r.identifier.kind);
            if window.is_none_or(|w| r.last_seen >= now - w) {
                out.entry(&r.identifier.kind)
                    .or_default()
                    .insert(&r.identifier.value);
            }
        }
    }
    for id in c.event_ids {
        out.entry(&id.kind).or_default().insert(&id.value);
    }
    out
}

/// The highest-priority type whose limit `after` breaks, counting only types whose count
/// `after` raises above both `before` and `part` (what would be joined).
fn violation(
    rules: &IdentityRules,
    records: &BTreeMap<ProfileId, Vec<IdentifierRecord>>,
    now: DateTime<Utc>,
    before: &Candidate<'_>,
    part: &Candidate<'_>,
    after: &Candidate<'_>,
) -> Option<(IdentifierKind, u32)> {
    let before = counts(rules, records, now, before);
    let part = counts(rules, records, now, part);
    let after = counts(rules, records, now, after);
    let size = |m: &BTreeMap<&IdentifierKind, BTreeSet<&str>>, k: &IdentifierKind| {
        m.get(k).map_or(0, BTreeSet::len)
    };
    let mut broken: Vec<(IdentifierKind, u32)> = after
        .iter()
        .filter_map(|(kind, values)| {
            let (limit, _) = rules.limit(kind);
            let n = values.len();
            (n > limit as usize && n > size(&before, kind) && n > size(&part, kind))
                .then(|| ((*kind).clone(), limit))
        })
        .collect();
    broken.sort_by_cached_key(|(k, _)| rules.rank(k));
    broken.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::memory::MemoryGraph;

    fn at(minute: i64) -> EventMeta {
        EventMeta {
            message_id: format!("m{minute}"),
            timestamp: DateTime::from_timestamp(1_714_564_800 + minute * 60, 0).unwrap(),
        }
    }

    fn ids(list: &[Identifier]) -> Extracted {
        Extracted {
            identifiers: list
                .iter()
                .map(|i| ExtractedIdentifier {
                    identifier: i.clone(),
                    source: i.kind.as_str().to_owned(),
                })
                .collect(),
            ..Extracted::default()
        }
    }

    /// Two profiles, one per anonymous id; then one event carrying both ids and a user id.
    fn two_profiles_then_join(restriction: &SourceRestriction) -> (MemoryGraph, Resolution) {
        let rules = IdentityRules::default();
        let mut graph = MemoryGraph::new();
        for (n, anon) in ["a1", "a2"].into_iter().enumerate() {
            let r = resolve(
                &rules,
                &graph,
                &ids(&[Identifier::anonymous_id(anon)]),
                &at(n as i64),
                || ProfileId::new(format!("p{n}")),
            );
            graph.apply(&r);
        }
        let joining = ids(&[
            Identifier::user_id("u"),
            Identifier::anonymous_id("a1"),
            Identifier::anonymous_id("a2"),
        ]);
        let r = resolve_restricted(&rules, &graph, &joining, &at(5), restriction, || {
            ProfileId::new("p9")
        });
        graph.apply(&r);
        (graph, r)
    }

    #[test]
    fn without_restriction_the_event_merges() {
        let (_, r) = two_profiles_then_join(&SourceRestriction::default());
        assert_eq!(r.merges.len(), 1);
        assert_eq!(r.profile, Some(ProfileId::new("p0")));
    }

    #[test]
    fn a_source_without_merge_permission_keeps_profiles_apart_and_says_why() {
        let restriction = SourceRestriction {
            source_id: "src_web".into(),
            no_merge: true,
            kinds: None,
        };
        let (graph, r) = two_profiles_then_join(&restriction);
        assert!(r.merges.is_empty());
        assert_eq!(r.profile, Some(ProfileId::new("p0")));
        // The user id is new: it is attached; the second profile's id is refused.
        assert_eq!(
            graph.profile_of(&Identifier::user_id("u")),
            Some(ProfileId::new("p0"))
        );
        assert_eq!(
            graph.profile_of(&Identifier::anonymous_id("a2")),
            Some(ProfileId::new("p1"))
        );
        let expected = RefusalReason::MergeNotAllowedForSource {
            other: ProfileId::new("p1"),
            source_id: "src_web".into(),
        };
        assert_eq!(
            r.refused.iter().map(|f| &f.reason).collect::<Vec<_>>(),
            vec![&expected]
        );
        // Logged on both profiles.
        for p in ["p0", "p1"] {
            assert!(
                r.log.iter().any(|e| e.profile.as_str() == p
                    && matches!(&e.event, IdentityEvent::IdentifierRefused(f) if f.reason == expected)),
                "{p}: {:?}",
                r.log
            );
        }
    }

    #[test]
    fn a_source_may_be_limited_to_some_identifier_types() {
        let restriction = SourceRestriction {
            source_id: "src_web".into(),
            no_merge: false,
            kinds: Some(vec![IdentifierKind::UserId, IdentifierKind::AnonymousId]),
        };
        let graph = MemoryGraph::new();
        let r = resolve_restricted(
            &IdentityRules::default(),
            &graph,
            &ids(&[
                Identifier::anonymous_id("a1"),
                Identifier::new(IdentifierKind::Email, "x@example.com"),
            ]),
            &at(0),
            &restriction,
            || ProfileId::new("p0"),
        );
        assert_eq!(r.added.len(), 1);
        assert_eq!(r.added[0].identifier, Identifier::anonymous_id("a1"));
        assert_eq!(r.refused.len(), 1);
        assert_eq!(r.refused[0].identifier.kind, IdentifierKind::Email);
        assert_eq!(
            r.refused[0].reason,
            RefusalReason::TypeNotAllowedForSource {
                source_id: "src_web".into()
            }
        );
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn source_refusals_round_trip_in_the_explanation() {
        for reason in [
            RefusalReason::TypeNotAllowedForSource {
                source_id: "src_1".into(),
            },
            RefusalReason::MergeNotAllowedForSource {
                other: ProfileId::new("p_1"),
                source_id: "src_1".into(),
            },
        ] {
            let entry = IdentityLogEntry {
                profile: ProfileId::new("p_2"),
                message_id: "m".into(),
                at: DateTime::from_timestamp(0, 0).unwrap(),
                event: IdentityEvent::IdentifierRefused(Refusal {
                    identifier: Identifier::anonymous_id("a"),
                    source: "anonymousId".into(),
                    reason,
                }),
            };
            let json = serde_json::to_string(&entry).unwrap();
            let back: IdentityLogEntry = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, entry);
        }
    }
}
