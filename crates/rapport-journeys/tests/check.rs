//! A definition is refused with every problem named by its field, before anything runs.

use rapport_core::audience::Schema;
use rapport_journeys::{JourneySpec, check};
use serde_json::json;

fn errors(spec: serde_json::Value) -> Vec<String> {
    let spec: JourneySpec = serde_json::from_value(spec).expect("the JSON reads");
    let schema = Schema::new().with_segment("vip");
    match check(&spec, &schema) {
        Ok(_) => Vec::new(),
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

fn has(errors: &[String], field: &str, words: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{field}: ")) && e.contains(words)),
        "no error at {field} saying {words:?} in {errors:#?}"
    );
}

#[test]
fn every_problem_is_named_by_its_node_and_field() {
    let es = errors(json!({
        "name": "bad name!",
        "entry": {"type": "segment_entered", "segment": "nobody"},
        "reentry": {"type": "per_key", "property": "cart_id"},
        "holdout_percent": 80,
        "exits": [{"name": "x", "event": "event ==", "condition": "traits.a == 1"}],
        "goal": {"condition": "count(event == \"Order Completed\") > 0", "within": "1d"},
        "start": "begin",
        "nodes": {
            "begin": {"type": "wait_for_event", "timeout": "0s", "timeout_next": "ghost",
                      "branches": [{"condition": "traits.plan == \"pro\"", "match_entry_property": "cart_id"}]},
            "pick": {"type": "split", "arms": [{"name": "a", "weight": 0}]},
            "mail": {"type": "send", "destination": "email", "template": "{{ unclosed",
                     "quiet_hours": {"from": "25:00", "to": "08:00", "zone": {"default": "Mars/Olympus"}}},
            "when": {"type": "wait_until", "until": {"local_time": "9am"}}
        }
    }));
    has(&es, "name", "1 to 64 letters");
    has(&es, "entry.segment", "no segment is named \"nobody\"");
    has(&es, "reentry", "needs an entry that carries properties");
    has(&es, "holdout_percent", "from 0 to 50");
    has(&es, "exits[0]", "exactly one of event and condition");
    has(&es, "goal.condition", "define a computed trait");
    has(&es, "nodes.begin.timeout", "longer than 0s");
    has(
        &es,
        "nodes.begin.timeout_next",
        "no node is named \"ghost\"",
    );
    has(&es, "nodes.begin.branches[0].condition", "");
    has(
        &es,
        "nodes.begin.branches[0].match_entry_property",
        "no event to match",
    );
    assert!(
        !es.iter().any(|e| e.contains("no path from start")),
        "a misnamed next is the one error, not also the nodes it leaves unreachable: {es:#?}"
    );
    has(&es, "nodes.pick.arms", "at least two arms");
    has(&es, "nodes.pick.arms[0].weight", "positive integer");
    has(&es, "nodes.mail.template", "");
    has(&es, "nodes.mail.quiet_hours.from", "HH:MM");
    has(&es, "nodes.mail.quiet_hours.zone.default", "IANA");
    has(&es, "nodes.when.until.local_time", "HH:MM");
    let fields: Vec<&str> = es.iter().map(|e| e.split(": ").next().unwrap()).collect();
    let mut sorted = fields.clone();
    sorted.sort();
    assert_eq!(fields, sorted, "errors come sorted by field");
}

#[test]
fn a_loop_without_a_wait_is_refused_and_one_through_a_wait_is_not() {
    let looping = |through_wait: bool| {
        json!({
            "name": "loop",
            "entry": {"type": "api"},
            "start": "a",
            "nodes": {
                "a": {"type": "branch", "cases": [{"condition": "traits.x == 1", "next": "b"}]},
                "b": if through_wait {
                    json!({"type": "wait", "duration": "1h", "next": "a"})
                } else {
                    json!({"type": "set_trait", "trait": "x", "value": 2, "next": "a"})
                }
            }
        })
    };
    has(&errors(looping(false)), "nodes.a", "a → b → a");
    assert_eq!(errors(looping(true)), Vec::<String>::new());
}

#[test]
fn an_event_condition_must_speak_of_events_and_a_profile_condition_of_the_profile() {
    let es = errors(json!({
        "name": "j",
        "entry": {"type": "event", "condition": "traits.plan == \"pro\""},
        "start": "w",
        "nodes": {"w": {"type": "wait_for_condition", "condition": "in_segment(\"ghosts\")", "timeout": "1d"}}
    }));
    has(&es, "entry.condition", "");
    has(&es, "nodes.w.condition", "ghosts");
    assert!(
        errors(json!({
            "name": "j",
            "entry": {"type": "event", "condition": "event == \"Signed Up\" and properties.plan == \"pro\""},
            "start": "w",
            "nodes": {"w": {"type": "wait_for_condition", "condition": "in_segment(\"vip\")", "timeout": "1d"}}
        }))
        .is_empty()
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused_when_read() {
    for (spec, words) in [
        (
            json!({"name": "j", "entry": {"type": "api"}, "start": "a", "colour": 1, "nodes": {}}),
            "colour",
        ),
        (
            json!({"name": "j", "entry": {"type": "api"}, "start": "a",
                "nodes": {"a": {"type": "teleport"}}}),
            "teleport",
        ),
        (
            json!({"name": "j", "entry": {"type": "api"}, "start": "a",
                "nodes": {"a": {"type": "wait", "duration": "soon"}}}),
            "expected a duration",
        ),
    ] {
        let e = serde_json::from_value::<JourneySpec>(spec)
            .unwrap_err()
            .to_string();
        assert!(e.contains(words), "{e}");
    }
}
