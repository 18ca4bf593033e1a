//! Identity resolution, end to end: Segment messages in, profiles, identifiers, merges,
//! refusals and traits out. Cases are tables (calls → expected graph); property tests check
//! restart-independence, determinism and the graph invariants on random streams.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rapport_core::event::{Event, Limits, ParsedRequest, Stamp};
use rapport_core::identity::{
    GraphView, IdentityEvent, IdentityLog, IdentityRules, MemoryGraph, ProfileId, ProfileTraits,
    RefusalReason, Resolution, resolve_event, trait_updates,
};
use std::collections::{BTreeMap, BTreeSet};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// Builds an event from one Segment message (with its `type`), received `minute` minutes
/// after the base time; its message id is `m<minute>` unless it sets one.
fn event(json: &str, minute: i64) -> Event {
    let body = format!(r#"{{"batch":[{json}]}}"#);
    let limits = Limits::default();
    let req = ParsedRequest::batch(body.as_bytes(), &limits).expect(json);
    let stamp = Stamp {
        received_at: base() + Duration::minutes(minute),
        source_id: "src",
    };
    let mut ids = move || format!("m{minute:03}");
    req.events(&stamp, &limits, &mut ids)
        .pop()
        .unwrap()
        .expect(json)
}

/// The engine's per-event work, over the in-memory graph.
#[derive(Default)]
struct World {
    rules: IdentityRules,
    graph: MemoryGraph,
    next_id: u32,
    traits: BTreeMap<ProfileId, ProfileTraits>,
    account_traits: BTreeMap<String, ProfileTraits>,
    logs: BTreeMap<ProfileId, IdentityLog>,
    resolutions: Vec<Resolution>,
}

impl World {
    fn new(rules: IdentityRules) -> World {
        World {
            rules,
            ..World::default()
        }
    }

    fn process(&mut self, e: &Event) -> Resolution {
        let next = &mut self.next_id;
        let r = resolve_event(&self.rules, &self.graph, e, || {
            *next += 1;
            ProfileId::new(format!("p{next:02}"))
        });
        self.graph.apply(&r);
        for m in &r.merges {
            let from = self.traits.remove(&m.from).unwrap_or_default();
            self.traits.entry(m.into.clone()).or_default().merge(&from);
        }
        if let Some(p) = &r.profile {
            let updates = trait_updates(e);
            self.traits.entry(p.clone()).or_default().apply(
                &updates.profile,
                e.timestamp,
                &e.message_id,
            );
            if let (Some(link), Some((_, account))) = (&r.account, &updates.account) {
                self.account_traits
                    .entry(link.account_id.clone())
                    .or_default()
                    .apply(account, e.timestamp, &e.message_id);
            }
        }
        for entry in &r.log {
            self.logs
                .entry(entry.profile.clone())
                .or_default()
                .append(entry.clone());
        }
        self.resolutions.push(r.clone());
        r
    }

    /// The graph as lines: `p01: user_id:u1 email:x` per profile, `g1: p01 p02` per account.
    fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .graph
            .profiles()
            .map(|(p, rs)| {
                let mut ids: Vec<String> = rs.iter().map(|r| r.identifier.to_string()).collect();
                ids.sort();
                format!("{p}: {}", ids.join(" "))
            })
            .collect();
        for (a, members) in self.graph.accounts() {
            let m: Vec<&str> = members.iter().map(ProfileId::as_str).collect();
            out.push(format!("{a}: {}", m.join(" ")));
        }
        out
    }

    fn merges(&self) -> Vec<String> {
        self.resolutions
            .iter()
            .flat_map(|r| &r.merges)
            .map(|m| format!("{}>{} via {}", m.from, m.into, m.linked_by))
            .collect()
    }

    fn refusals(&self) -> Vec<String> {
        self.resolutions
            .iter()
            .flat_map(|r| &r.refused)
            .map(|f| {
                let reason = match &f.reason {
                    RefusalReason::BlockedValue => "blocked",
                    RefusalReason::InvalidFormat { .. } => "invalid",
                    RefusalReason::LimitReached { .. } => "limit",
                    RefusalReason::MergeWouldBreakLimit { .. } => "merge_refused",
                    RefusalReason::TypeNotAllowedForSource { .. } => "type_not_allowed",
                    RefusalReason::MergeNotAllowedForSource { .. } => "merge_not_allowed",
                };
                format!("{}={reason}", f.identifier)
            })
            .collect()
    }
}

struct Case {
    name: &'static str,
    /// Rules as JSON (`{}` for the defaults).
    rules: &'static str,
    /// Messages, received one minute apart.
    calls: &'static [&'static str],
    profiles: &'static [&'static str],
    merges: &'static [&'static str],
    refused: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "anonymous visitor signs up",
        rules: "{}",
        calls: &[
            r#"{"type":"page","anonymousId":"a1"}"#,
            r#"{"type":"track","anonymousId":"a1","event":"Viewed"}"#,
            r#"{"type":"identify","anonymousId":"a1","userId":"u1","traits":{"email":"ann@example.com"}}"#,
            r#"{"type":"track","userId":"u1","event":"Paid"}"#,
        ],
        profiles: &["p01: anonymous_id:a1 email:ann@example.com user_id:u1"],
        merges: &[],
        refused: &[],
    },
    Case {
        name: "anonymous history on a second browser is merged at login",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","anonymousId":"a1","userId":"u1"}"#,
            r#"{"type":"page","anonymousId":"a2"}"#,
            r#"{"type":"identify","anonymousId":"a2","userId":"u1"}"#,
        ],
        profiles: &["p01: anonymous_id:a1 anonymous_id:a2 user_id:u1"],
        merges: &["p02>p01 via anonymous_id:a2"],
        refused: &[],
    },
    Case {
        name: "cross-device by e-mail; smallest profile id survives",
        rules: "{}",
        calls: &[
            r#"{"type":"track","anonymousId":"phone","event":"Opened","context":{"device":{"id":"d1"}}}"#,
            r#"{"type":"identify","anonymousId":"laptop","userId":"u1","traits":{"email":"ann@example.com"}}"#,
            r#"{"type":"identify","anonymousId":"phone","traits":{"email":"ANN@example.com "}}"#,
        ],
        profiles: &[
            "p01: anonymous_id:laptop anonymous_id:phone device_id:d1 email:ann@example.com user_id:u1",
        ],
        merges: &["p02>p01 via email:ann@example.com"],
        refused: &[],
    },
    Case {
        name: "two users on one shared device are not merged",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","anonymousId":"a1","userId":"u1","context":{"device":{"id":"tablet"}}}"#,
            r#"{"type":"identify","anonymousId":"a1","userId":"u2","context":{"device":{"id":"tablet"}}}"#,
            r#"{"type":"track","userId":"u2","event":"X","context":{"device":{"id":"tablet"}}}"#,
        ],
        profiles: &[
            "p01: anonymous_id:a1 device_id:tablet user_id:u1",
            "p02: user_id:u2",
        ],
        merges: &[],
        refused: &[
            "anonymous_id:a1=merge_refused",
            "device_id:tablet=merge_refused",
            "device_id:tablet=merge_refused",
        ],
    },
    Case {
        name: "a shared e-mail never joins two user ids",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","userId":"u1","traits":{"email":"family@example.com"}}"#,
            r#"{"type":"identify","userId":"u2","traits":{"email":"family@example.com"}}"#,
        ],
        profiles: &[
            "p01: email:family@example.com user_id:u1",
            "p02: user_id:u2",
        ],
        merges: &[],
        refused: &["email:family@example.com=merge_refused"],
    },
    Case {
        name: "blocked and invalid values are ignored and reported",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","userId":"undefined","anonymousId":"a1","traits":{"email":"n/a","phone":"12"},"context":{"device":{"id":"00000000-0000-0000-0000-000000000000","advertisingId":"00000000-0000-0000-0000-000000000000"}}}"#,
            r#"{"type":"identify","userId":"NULL","anonymousId":"a2"}"#,
            r#"{"type":"track","userId":"0","event":"X"}"#,
        ],
        profiles: &["p01: anonymous_id:a1", "p02: anonymous_id:a2"],
        merges: &[],
        refused: &[
            "user_id:undefined=blocked",
            "email:n/a=invalid",
            "phone:12=invalid",
            "device_id:00000000-0000-0000-0000-000000000000=blocked",
            "advertising_id:00000000-0000-0000-0000-000000000000=blocked",
            "user_id:NULL=blocked",
            "user_id:0=blocked",
        ],
    },
    Case {
        name: "limit per type: the third e-mail is refused",
        rules: r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":2}]}"#,
        calls: &[
            r#"{"type":"identify","userId":"u1","traits":{"email":"a@x.io"}}"#,
            r#"{"type":"identify","userId":"u1","traits":{"email":"b@x.io"}}"#,
            r#"{"type":"identify","userId":"u1","traits":{"email":"c@x.io"}}"#,
            r#"{"type":"identify","userId":"u1","traits":{"email":"a@x.io"}}"#,
        ],
        profiles: &["p01: email:a@x.io email:b@x.io user_id:u1"],
        merges: &[],
        refused: &["email:c@x.io=limit"],
    },
    Case {
        name: "merge refused when the union would exceed a limit",
        rules: r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":2},{"type":"anonymous_id","limit":5}]}"#,
        calls: &[
            r#"{"type":"identify","anonymousId":"a1","traits":{"email":"a@x.io"}}"#,
            r#"{"type":"identify","anonymousId":"a1","traits":{"email":"b@x.io"}}"#,
            r#"{"type":"identify","anonymousId":"a2","traits":{"email":"c@x.io"}}"#,
            r#"{"type":"identify","anonymousId":"a2","traits":{"email":"a@x.io"}}"#,
        ],
        profiles: &[
            "p01: anonymous_id:a1 email:a@x.io email:b@x.io",
            "p02: anonymous_id:a2 email:c@x.io",
        ],
        merges: &[],
        refused: &["anonymous_id:a2=merge_refused"],
    },
    Case {
        name: "alias: previousId unknown is an anonymous id",
        rules: "{}",
        calls: &[
            r#"{"type":"track","anonymousId":"a1","event":"Viewed"}"#,
            r#"{"type":"alias","previousId":"a1","userId":"u1"}"#,
        ],
        profiles: &["p01: anonymous_id:a1 user_id:u1"],
        merges: &[],
        refused: &[],
    },
    Case {
        name: "alias: two known user ids are not merged",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","userId":"old"}"#,
            r#"{"type":"identify","userId":"new"}"#,
            r#"{"type":"alias","previousId":"old","userId":"new"}"#,
        ],
        profiles: &["p01: user_id:old", "p02: user_id:new"],
        merges: &[],
        refused: &["user_id:old=merge_refused"],
    },
    Case {
        name: "alias: previousId known as a user id stays a user id",
        rules: "{}",
        calls: &[
            r#"{"type":"identify","userId":"old"}"#,
            r#"{"type":"alias","previousId":"old","anonymousId":"a9"}"#,
        ],
        profiles: &["p01: anonymous_id:a9 user_id:old"],
        merges: &[],
        refused: &[],
    },
    Case {
        name: "group: account with members, merged member moves",
        rules: "{}",
        calls: &[
            r#"{"type":"group","userId":"u1","groupId":"acme","traits":{"name":"Acme","email":"billing@acme.io"}}"#,
            r#"{"type":"group","anonymousId":"a2","groupId":"acme"}"#,
            r#"{"type":"group","userId":"u3","groupId":"0"}"#,
            r#"{"type":"identify","userId":"u1","anonymousId":"a2"}"#,
        ],
        profiles: &[
            "p01: anonymous_id:a2 user_id:u1",
            "p03: user_id:u3",
            "acme: p01",
        ],
        merges: &["p02>p01 via anonymous_id:a2"],
        refused: &["group_id:0=blocked"],
    },
    Case {
        name: "custom externalIds link profiles",
        rules: "{}",
        calls: &[
            r#"{"type":"track","anonymousId":"a1","event":"X","context":{"externalIds":[{"id":"C-17","type":"crm_id","collection":"users","encoding":"none"}]}}"#,
            r#"{"type":"identify","userId":"u1","context":{"externalIds":[{"id":"C-17","type":"CRM_ID"},{"id":"Ann@X.io","type":"email"},{"id":"A1","type":"org_id","collection":"accounts"},{"id":"z","type":"bad type"}]}}"#,
        ],
        profiles: &["p01: anonymous_id:a1 crm_id:C-17 email:ann@x.io user_id:u1"],
        merges: &[],
        refused: &["unknown:z=invalid"],
    },
    Case {
        name: "e-mail and phone normalisation join spellings",
        rules: r#"{"default_country_code":"44"}"#,
        calls: &[
            r#"{"type":"identify","userId":"u1","traits":{"email":" Ann@Example.COM ","phone":"+44 (0)20 7946-0958"}}"#,
            r#"{"type":"identify","anonymousId":"a1","traits":{"phone":"020 7946 0958"}}"#,
            r#"{"type":"track","anonymousId":"a2","event":"Ordered","properties":{"email":"ann@example.com"}}"#,
            r#"{"type":"identify","anonymousId":"a3","context":{"traits":{"phone":"0044.20.7946.0958"}}}"#,
        ],
        profiles: &[
            "p01: anonymous_id:a1 anonymous_id:a2 anonymous_id:a3 email:ann@example.com phone:+442079460958 user_id:u1",
        ],
        merges: &[],
        refused: &[],
    },
    Case {
        name: "one event joins three profiles",
        rules: "{}",
        calls: &[
            r#"{"type":"page","anonymousId":"a1"}"#,
            r#"{"type":"page","anonymousId":"a2","context":{"device":{"id":"d2"}}}"#,
            r#"{"type":"identify","userId":"u3","traits":{"email":"u3@x.io"}}"#,
            r#"{"type":"identify","anonymousId":"a1","traits":{"email":"u3@x.io"},"context":{"device":{"id":"d2"}}}"#,
        ],
        profiles: &["p01: anonymous_id:a1 anonymous_id:a2 device_id:d2 email:u3@x.io user_id:u3"],
        merges: &["p02>p01 via device_id:d2", "p03>p01 via email:u3@x.io"],
        refused: &[],
    },
];

#[test]
fn table() {
    for case in CASES {
        let rules = IdentityRules::from_json(case.rules).expect(case.name);
        let mut world = World::new(rules);
        for (i, call) in case.calls.iter().enumerate() {
            world.process(&event(call, i as i64));
        }
        assert_eq!(world.summary(), case.profiles, "{}: profiles", case.name);
        assert_eq!(world.merges(), case.merges, "{}: merges", case.name);
        assert_eq!(world.refusals(), case.refused, "{}: refused", case.name);
        check_invariants(&world);
    }
}

#[test]
fn limit_window_lets_old_identifiers_age_out() {
    let rules = IdentityRules::from_json(
        r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"device_id","limit":1,"window_days":30}]}"#,
    )
    .unwrap();
    let mut w = World::new(rules);
    let day = 24 * 60;
    let call = |d: &str| {
        format!(
            r#"{{"type":"track","userId":"u1","event":"X","context":{{"device":{{"id":"{d}"}}}}}}"#
        )
    };
    w.process(&event(&call("d1"), 0));
    w.process(&event(&call("d2"), 10 * day));
    w.process(&event(&call("d3"), 40 * day));
    w.process(&event(&call("d4"), 41 * day));
    assert_eq!(w.summary(), ["p01: device_id:d1 device_id:d3 user_id:u1"]);
    assert_eq!(w.refusals(), ["device_id:d2=limit", "device_id:d4=limit"]);
}

#[test]
fn late_events_do_not_overwrite_newer_traits() {
    let mut w = World::new(IdentityRules::default());
    w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"plan":"pro","name":"Ann"},"timestamp":"2024-05-01T12:00:00Z"}"#,
        0,
    ));
    // Delivered later, happened earlier (a mobile batch flushed late).
    w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"plan":"free","city":"Oslo"},"timestamp":"2024-04-30T08:00:00Z"}"#,
        5,
    ));
    let t = &w.traits[&ProfileId::new("p01")];
    assert_eq!(t.get("plan"), Some(&serde_json::json!("pro")));
    assert_eq!(t.get("city"), Some(&serde_json::json!("Oslo")));
    assert_eq!(
        t.first_seen,
        Some(Utc.with_ymd_and_hms(2024, 4, 30, 8, 0, 0).unwrap())
    );
    // A merge keeps the newest value per key whichever profile survives.
    w.process(&event(
        r#"{"type":"identify","anonymousId":"a1","traits":{"plan":"team"},"timestamp":"2024-05-02T00:00:00Z"}"#,
        6,
    ));
    w.process(&event(
        r#"{"type":"identify","anonymousId":"a1","userId":"u1","timestamp":"2024-05-02T01:00:00Z"}"#,
        7,
    ));
    let t = &w.traits[&ProfileId::new("p01")];
    assert_eq!(t.get("plan"), Some(&serde_json::json!("team")));
    assert_eq!(t.get("name"), Some(&serde_json::json!("Ann")));
}

#[test]
fn account_traits_are_kept_apart_from_members() {
    let mut w = World::new(IdentityRules::default());
    w.process(&event(
        r#"{"type":"group","userId":"u1","groupId":"acme","traits":{"name":"Acme","plan":"enterprise"},"context":{"traits":{"name":"Ann"}}}"#,
        0,
    ));
    assert_eq!(
        w.account_traits["acme"].get("name"),
        Some(&serde_json::json!("Acme"))
    );
    assert_eq!(
        w.traits[&ProfileId::new("p01")].get("name"),
        Some(&serde_json::json!("Ann"))
    );
    assert!(w.traits[&ProfileId::new("p01")].get("plan").is_none());
    // A repeated group call does not log a second link.
    let r = w.process(&event(
        r#"{"type":"group","userId":"u1","groupId":"acme"}"#,
        1,
    ));
    assert!(!r.account.unwrap().new_link);
    assert!(
        r.changes.is_empty()
            || r.changes.iter().all(|c| matches!(
                c,
                rapport_core::identity::GraphChange::TouchIdentifier { .. }
            ))
    );
}

#[test]
fn explanation_tells_the_story() {
    let mut w = World::new(IdentityRules::default());
    w.process(&event(
        r#"{"type":"page","anonymousId":"a1","messageId":"visit"}"#,
        0,
    ));
    w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"email":"ann@x.io"},"messageId":"signup"}"#,
        1,
    ));
    w.process(&event(
        r#"{"type":"identify","anonymousId":"a1","userId":"u1","messageId":"login"}"#,
        2,
    ));
    w.process(&event(
        r#"{"type":"identify","userId":"u2","traits":{"email":"ann@x.io"},"messageId":"share"}"#,
        3,
    ));
    let log = &w.logs[&ProfileId::new("p01")];
    let full = log.combined(|p| w.logs.get(p).cloned());
    let lines: Vec<String> = full
        .iter()
        .map(|e| {
            let what = match &e.event {
                IdentityEvent::ProfileCreated => "created".to_string(),
                IdentityEvent::IdentifierAdded { identifier, source } => {
                    format!("added {identifier} from {source}")
                }
                IdentityEvent::IdentifierRefused(r) => format!("refused {}", r.identifier),
                IdentityEvent::ProfileMerged {
                    from, linked_by, ..
                } => {
                    format!("merged {from} via {linked_by}")
                }
                IdentityEvent::MergedInto { into, .. } => format!("merged into {into}"),
                IdentityEvent::MergeRefused {
                    other,
                    identifier,
                    conflict,
                    ..
                } => format!("kept apart from {other} ({identifier}; {conflict} limit)"),
                IdentityEvent::AccountLinked { account_id } => format!("joined {account_id}"),
            };
            format!("{} {} {what}", e.profile, e.message_id)
        })
        .collect();
    assert_eq!(
        lines,
        [
            "p01 visit created",
            "p01 visit added anonymous_id:a1 from anonymousId",
            "p02 signup created",
            "p02 signup added user_id:u1 from userId",
            "p02 signup added email:ann@x.io from traits.email",
            "p01 login merged p02 via user_id:u1",
            "p02 login merged into p01",
            "p01 share kept apart from p03 (email:ann@x.io; user_id limit)",
        ]
    );
    // The log serialises for the API.
    let json = serde_json::to_value(&full[5]).unwrap();
    assert_eq!(json["event"], "profile_merged");
    assert_eq!(json["linked_by"]["type"], "user_id");
    let back: Vec<rapport_core::identity::IdentityLogEntry> =
        serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
    assert_eq!(back, full);
    // Old ids resolve to the survivor.
    assert_eq!(
        w.graph.live_profile(&ProfileId::new("p02")),
        Some(ProfileId::new("p01"))
    );
}

/// Every identifier on exactly one live profile and indexed there; no profile over a limit
/// (rules here have no windows); never two user ids on one profile (limit 1); every retired
/// id resolving to a live profile.
fn check_invariants(w: &World) {
    let mut seen = BTreeSet::new();
    for (p, records) in w.graph.profiles() {
        let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
        for r in records {
            assert!(seen.insert(r.identifier.clone()), "{} twice", r.identifier);
            assert_eq!(w.graph.profile_of(&r.identifier).as_ref(), Some(p));
            *per_kind.entry(r.identifier.kind.to_string()).or_default() += 1;
        }
        for (kind, n) in per_kind {
            let (limit, window) = w
                .rules
                .limit(&rapport_core::identity::IdentifierKind::parse(&kind).unwrap());
            if window.is_none() {
                assert!(n <= limit as usize, "{p} has {n} {kind} (limit {limit})");
            }
        }
    }
    assert_eq!(seen.len(), w.graph.identifiers().count());
    for (old, live) in w.graph.redirects() {
        assert!(
            w.graph.profiles().any(|(p, _)| p == live),
            "{old} -> {live}"
        );
    }
    for (_, members) in w.graph.accounts() {
        for m in members {
            assert!(
                w.graph.profiles().any(|(p, _)| p == m),
                "member {m} retired"
            );
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Call {
        kind: u8,
        user: Option<u8>,
        anon: u8,
        email: Option<u8>,
        device: Option<u8>,
        group: u8,
        /// Minutes relative to the base time; out of order on purpose.
        at: i64,
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            0u8..4,
            proptest::option::of(0u8..4),
            0u8..6,
            proptest::option::of(0u8..4),
            proptest::option::of(0u8..3),
            0u8..2,
            0i64..600,
        )
            .prop_map(|(kind, user, anon, email, device, group, at)| Call {
                kind,
                user,
                anon,
                email,
                device,
                group,
                at,
            })
    }

    fn to_event(c: &Call, i: usize) -> Event {
        let mut m = serde_json::json!({
            "anonymousId": format!("a{}", c.anon),
            "messageId": format!("m{i:04}"),
            "timestamp": rapport_core::event::format_timestamp(&(base() + Duration::minutes(c.at))),
        });
        if let Some(u) = c.user {
            m["userId"] = format!("u{u}").into();
        }
        let mut ctx = serde_json::json!({});
        if let Some(d) = c.device {
            ctx["device"] = serde_json::json!({"id": format!("d{d}")});
        }
        if let Some(e) = c.email {
            ctx["traits"] = serde_json::json!({"email": format!("e{e}@x.io")});
        }
        m["context"] = ctx;
        match c.kind {
            0 => {
                m["type"] = "identify".into();
                m["traits"] = serde_json::json!({"n": i});
            }
            1 => {
                m["type"] = "track".into();
                m["event"] = "E".into();
            }
            2 => {
                m["type"] = "alias".into();
                m["previousId"] = format!("a{}", (c.anon + 1) % 6).into();
            }
            _ => {
                m["type"] = "group".into();
                m["groupId"] = format!("g{}", c.group).into();
            }
        }
        event(&m.to_string(), i as i64)
    }

    fn rules(tight: bool) -> IdentityRules {
        if tight {
            IdentityRules::from_json(
                r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":1},{"type":"anonymous_id","limit":3},{"type":"device_id","limit":2}]}"#,
            )
            .unwrap()
        } else {
            IdentityRules::default()
        }
    }

    fn run(w: &mut World, events: &[Event]) {
        for e in events {
            w.process(e);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn restart_at_any_point_gives_the_same_graph(
            calls in proptest::collection::vec(call(), 1..40),
            cut in 0usize..40,
            tight in any::<bool>(),
        ) {
            let events: Vec<Event> = calls.iter().enumerate().map(|(i, c)| to_event(c, i)).collect();
            let cut = cut.min(events.len());
            let mut once = World::new(rules(tight));
            run(&mut once, &events);

            let mut before = World::new(rules(tight));
            run(&mut before, &events[..cut]);
            let stored = serde_json::to_string(&before.graph).unwrap();
            let mut after = World::new(rules(tight));
            after.graph = serde_json::from_str(&stored).unwrap();
            after.next_id = before.next_id;
            run(&mut after, &events[cut..]);

            prop_assert_eq!(&once.graph, &after.graph);
            prop_assert_eq!(&once.resolutions[cut..], &after.resolutions[..]);
        }

        #[test]
        fn invariants_hold_and_replay_is_identical(
            calls in proptest::collection::vec(call(), 1..40),
            tight in any::<bool>(),
        ) {
            let events: Vec<Event> = calls.iter().enumerate().map(|(i, c)| to_event(c, i)).collect();
            let mut w = World::new(rules(tight));
            for e in &events {
                let r = w.process(e);
                check_invariants(&w);
                // The engine stores resolutions and logs as JSON.
                let back: Resolution = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
                prop_assert_eq!(&back, &r);
                // The event's profile is live and holds every identifier it kept.
                if let Some(p) = &r.profile {
                    prop_assert!(w.graph.profiles().any(|(q, _)| q == p));
                    for a in &r.added {
                        prop_assert_eq!(w.graph.profile_of(&a.identifier), Some(p.clone()));
                    }
                }
            }
            let mut again = World::new(rules(tight));
            run(&mut again, &events);
            prop_assert_eq!(&w.graph, &again.graph);
            prop_assert_eq!(&w.resolutions, &again.resolutions);
            prop_assert_eq!(&w.traits, &again.traits);
        }
    }
}

#[test]
fn tightened_rules_do_not_lock_out_an_over_limit_profile() {
    let mut w = World::new(IdentityRules::default());
    w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"email":"a@x.io"}}"#,
        0,
    ));
    w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"email":"b@x.io"}}"#,
        1,
    ));
    w.rules = IdentityRules::from_json(
        r#"{"identifiers":[{"type":"user_id","limit":1},{"type":"email","limit":1}]}"#,
    )
    .unwrap();
    let r = w.process(&event(
        r#"{"type":"track","anonymousId":"a1","event":"X","properties":{"email":"b@x.io"}}"#,
        2,
    ));
    assert_eq!(r.profile, Some(ProfileId::new("p01")));
    let r = w.process(&event(
        r#"{"type":"identify","userId":"u1","traits":{"email":"c@x.io"}}"#,
        3,
    ));
    assert_eq!(w.refusals(), ["email:c@x.io=limit"]);
    assert_eq!(r.profile, Some(ProfileId::new("p01")));
}

#[test]
fn advertising_id_respects_opt_out_and_is_lower_cased() {
    let rules = IdentityRules::default();
    let e = event(
        r#"{"type":"track","anonymousId":"a1","event":"X","context":{"device":{"advertisingId":"6D92078A-8246-4BA4-AE5B-76104861E7DC","adTrackingEnabled":false}}}"#,
        0,
    );
    let x = rapport_core::identity::extract(&e, &rules);
    assert_eq!(x.identifiers.len(), 1);
    let e = event(
        r#"{"type":"track","anonymousId":"a1","event":"X","context":{"device":{"advertisingId":"6D92078A-8246-4BA4-AE5B-76104861E7DC"}}}"#,
        0,
    );
    let x = rapport_core::identity::extract(&e, &rules);
    assert_eq!(
        x.identifiers[1].identifier.to_string(),
        "advertising_id:6d92078a-8246-4ba4-ae5b-76104861e7dc"
    );
}

#[test]
fn redelivered_event_changes_nothing() {
    let mut w = World::new(IdentityRules::default());
    let e = event(
        r#"{"type":"identify","userId":"u1","anonymousId":"a1","traits":{"email":"a@x.io"}}"#,
        0,
    );
    w.process(&e);
    let before = w.graph.clone();
    let r = w.process(&e);
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(w.graph, before);
}
