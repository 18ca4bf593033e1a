//! A restart at any point gives the same decisions: each case's journey is run over random
//! inputs straight through, and again with its whole state written out as JSON and read
//! back at a random point, as the engine reads instances back from its store after a
//! `kill -9`. The flow counts agree with the instances the run holds.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use rapport_core::audience::{Schema, Type};
use rapport_journeys::caps::CapRule;
use rapport_journeys::sim::{Record, Sim, SimInput, SimState, What};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::{CheckedJourney, JourneyEvent, JourneySpec, check};
use serde_json::{Map, Value, json};
use std::path::Path;

fn journeys() -> Vec<(CheckedJourney, Vec<CapRule>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let case: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            let spec: JourneySpec = serde_json::from_value(case["journey"].clone()).unwrap();
            let mut schema = Schema::new();
            for s in case["segments"].as_array().into_iter().flatten() {
                schema = schema.with_segment(s.as_str().unwrap());
            }
            for c in case["computed_traits"].as_array().into_iter().flatten() {
                schema = schema.with_computed_trait(c.as_str().unwrap(), Type::Number);
            }
            let caps = serde_json::from_value(case["caps"].clone()).unwrap_or_default();
            (check(&spec, &schema).unwrap(), caps)
        })
        .collect()
}

fn event(name: &str, at: DateTime<Utc>, cart: u8, n: usize) -> What {
    What::Event(JourneyEvent {
        message_id: format!("m{n}"),
        timestamp: at,
        event_type: "track".into(),
        event: Some(name.into()),
        properties: json!({"cart_id": format!("c{cart}")}),
        timezone: None,
    })
}

fn what(kind: u8, cart: u8, flag: bool, at: DateTime<Utc>, n: usize) -> What {
    let traits = |k: &str, v: Value| What::Traits(Map::from_iter([(k.to_owned(), v)]));
    match kind {
        0 => event("Cart Updated", at, cart, n),
        1 => event("Order Completed", at, cart, n),
        2 => event("Meeting Booked", at, cart, n),
        3 => event("Unsubscribed", at, cart, n),
        4 => traits("activated", json!(flag)),
        5 => traits("ready", json!(flag)),
        6 => traits("plan", json!(if flag { "pro" } else { "free" })),
        7 => traits(
            "renewal_date",
            json!((at + TimeDelta::days(i64::from(cart) * 20)).to_rfc3339()),
        ),
        8 => What::Computed(Map::from_iter([(
            "p_alive".to_owned(),
            json!(f64::from(cart) / 4.0),
        )])),
        9 => What::Consent {
            purpose: "marketing".into(),
            granted: flag,
        },
        10 => {
            let s = ["signed_up", "lapsed"][usize::from(cart % 2)];
            if flag {
                What::SegmentEntered(s.into())
            } else {
                What::SegmentExited(s.into())
            }
        }
        11 => What::Api(Map::from_iter([("reason".to_owned(), json!("test"))])),
        12 => What::Schedule,
        _ => What::Tick,
    }
}

fn inputs() -> impl Strategy<Value = Vec<SimInput>> {
    proptest::collection::vec(
        (0u8..14, 0u8..3, any::<bool>(), 0u8..3, 0u32..(36 * 3600)),
        1..60,
    )
    .prop_map(|raw| {
        let mut at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        raw.into_iter()
            .enumerate()
            .map(|(n, (kind, cart, flag, who, gap))| {
                at += TimeDelta::seconds(i64::from(gap));
                SimInput {
                    at,
                    profile: format!("p{who}"),
                    what: what(kind, cart, flag, at, n),
                }
            })
            .collect()
    })
}

fn run(sim: &mut Sim, inputs: &[SimInput]) -> Vec<Record> {
    inputs.iter().flat_map(|i| sim.feed(i)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_restart_anywhere_gives_the_same_decisions(inputs in inputs(), cut in any::<prop::sample::Index>()) {
        let end = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        for (journey, caps) in journeys() {
            let mut straight = Sim::new(journey.clone(), 1, caps.clone());
            let mut want = run(&mut straight, &inputs);
            want.extend(straight.fire_until(end));

            let k = cut.index(inputs.len() + 1);
            let mut first = Sim::new(journey.clone(), 1, caps.clone());
            let mut got = run(&mut first, &inputs[..k]);
            let stored = serde_json::to_string(&first.state).unwrap();
            let state: SimState = serde_json::from_str(&stored).unwrap();
            prop_assert_eq!(&state, &first.state);
            let mut second = Sim::resume(journey.clone(), 1, caps.clone(), state);
            got.extend(run(&mut second, &inputs[k..]));
            got.extend(second.fire_until(end));
            prop_assert_eq!(&got, &want, "{} cut at {}", journey.spec.name, k);

            // The counts agree with what the run holds.
            let mut stats = FlowStats::default();
            for r in &want {
                stats.add(&r.decision);
            }
            let active = straight.state.instances.values().filter(|i| i.is_active()).count() as u64;
            let held = straight.state.instances.values().filter(|i| i.is_active() && i.holdout).count() as u64;
            prop_assert_eq!(straight.state.totals.active, active);
            prop_assert_eq!(stats.active(), active - held);
            prop_assert_eq!(
                stats.entered + stats.holdout_entered,
                straight.state.instances.len() as u64
            );
        }
    }
}
