//! Data-driven journeys: each file of `tests/cases/` holds a definition, what happened
//! (events, traits, segments, consent, time passing) and the decisions expected, one line
//! each as the profile's timeline would show them, with the flow counts expected.
//!
//! `RAPPORT_BLESS=1 cargo test -p rapport-journeys --test cases` prints the lines a case
//! produces, to write a new case; review every line before keeping it.

use chrono::{DateTime, Utc};
use rapport_core::audience::{Schema, Type};
use rapport_journeys::caps::CapRule;
use rapport_journeys::sim::{Sim, SimInput};
use rapport_journeys::stats::FlowStats;
use rapport_journeys::{JourneySpec, check};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    journey: JourneySpec,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    computed_traits: Vec<String>,
    #[serde(default)]
    caps: Vec<CapRule>,
    inputs: Vec<SimInput>,
    /// Run the timers due by this time at the end.
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    expect: Vec<String>,
    /// A subset of the flow counts, as JSON.
    #[serde(default)]
    stats: Option<Value>,
}

fn line(r: &rapport_journeys::sim::Record) -> String {
    format!(
        "{} {} {}",
        r.at.format("%d %H:%M"),
        r.profile,
        r.decision.explain()
    )
}

/// Whether every field of `want` is in `got` with the same value.
fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| subset(v, gv))),
        _ => want == got,
    }
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut schema = Schema::new();
    for s in &case.segments {
        schema = schema.with_segment(s);
    }
    for c in &case.computed_traits {
        schema = schema.with_computed_trait(c, Type::Number);
    }
    let journey = check(&case.journey, &schema).map_err(|e| format!("{e:?}"))?;
    let mut sim = Sim::new(journey, 1, case.caps.clone());
    let mut records = Vec::new();
    for input in &case.inputs {
        records.extend(sim.feed(input));
    }
    if let Some(until) = case.until {
        records.extend(sim.fire_until(until));
    }
    let got: Vec<String> = records.iter().map(line).collect();
    let mut stats = FlowStats::default();
    for r in &records {
        stats.add(&r.decision);
    }
    if std::env::var_os("RAPPORT_BLESS").is_some() {
        println!("{}:", path.display());
        for l in &got {
            println!("  {}", serde_json::to_string(l).unwrap());
        }
        println!("  stats: {}", serde_json::to_string(&stats).unwrap());
    }
    if got != case.expect {
        let mut diff = String::new();
        for i in 0..got.len().max(case.expect.len()) {
            let (g, w) = (got.get(i), case.expect.get(i));
            if g != w {
                diff += &format!("  line {i}: expected {w:?}\n           got      {g:?}\n");
            }
        }
        return Err(format!("{}: decisions differ\n{diff}", path.display()));
    }
    if let Some(want) = &case.stats {
        let got = serde_json::to_value(&stats).unwrap();
        if !subset(want, &got) {
            return Err(format!(
                "{}: stats differ: want {want}, got {got}",
                path.display()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_case_gives_the_decisions_it_expects() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let failures: Vec<String> = paths.iter().filter_map(|p| run(p).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(paths.len() >= 5, "the cases are in {}", dir.display());
}
