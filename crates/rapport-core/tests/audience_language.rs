//! The segment language, end to end: parsing, canonical printing, error messages, type
//! checking, evaluation against profile fixtures, windows at their boundaries, aggregate
//! normalisation, and property tests for the parser.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use rapport_core::audience::*;
use serde_json::json;

fn ts(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).unwrap_or_else(|| panic!("bad test timestamp {s}"))
}

fn schema() -> Schema {
    Schema::new()
        .with_computed_trait("orders_30d", Type::Number)
        .with_computed_trait("last_order_at", Type::Timestamp)
        .with_computed_trait("favourite_category", Type::String)
        .with_segment("churned")
        .with_segment("vip")
}

/// Source text and its canonical rendering.
const CANONICAL: &[(&str, &str)] = &[
    (
        r#"traits.plan == "pro" and count(event == "Order Completed", within 30d) >= 2 and not in_segment("churned")"#,
        r#"traits.plan == "pro" and count(event == "Order Completed", within 30d) >= 2 and not in_segment("churned")"#,
    ),
    (
        "traits.plan==\"pro\"\n  and\tconsent.email",
        r#"traits.plan == "pro" and consent.email"#,
    ),
    (
        "(traits.a == 1 or traits.b == 2) and traits.c == 3",
        "(traits.a == 1 or traits.b == 2) and traits.c == 3",
    ),
    (
        "traits.a == 1 or (traits.b == 2 or traits.c == 3)",
        "traits.a == 1 or (traits.b == 2 or traits.c == 3)",
    ),
    (
        "traits.a == 1 or traits.b == 2 and traits.c == 3",
        "traits.a == 1 or traits.b == 2 and traits.c == 3",
    ),
    (
        "not traits.a == 1 and traits.b",
        "not traits.a == 1 and traits.b",
    ),
    ("not (traits.a and traits.b)", "not (traits.a and traits.b)"),
    ("(((consent.sms)))", "consent.sms"),
    ("exists(traits.phone)", "traits.phone is not null"),
    ("traits.phone is null", "traits.phone is null"),
    (
        r#"traits."first name" starts_with "Jo""#,
        r#"traits."first name" starts_with "Jo""#,
    ),
    (
        r#"traits.x in [1, -2.5, "a", null, true,]"#,
        r#"traits.x in [1, -2.5, "a", null, true]"#,
    ),
    (r#"traits.x not in []"#, r#"traits.x not in []"#),
    (
        r#"identifiers.email != "a\"b\\c\u{e9}\t\/""#,
        "identifiers.email != \"a\\\"b\\\\cé\\t/\"",
    ),
    (
        r#"3 < traits.x and account.traits.industry == "SaaS""#,
        r#"3 < traits.x and account.traits.industry == "SaaS""#,
    ),
    (
        r#"sum(properties.revenue, properties.currency == "EUR" and event == "Order Completed", within 12h) > 100.5"#,
        r#"sum(properties.revenue, properties.currency == "EUR" and event == "Order Completed", within 12h) > 100.5"#,
    ),
    (
        r#"days_since(last_seen(type == "page")) <= 7"#,
        r#"days_since(last_seen(type == "page")) <= 7"#,
    ),
    (
        "since(last_seen(true)) > 90m",
        "since(last_seen(true)) > 90m",
    ),
    ("traits.created_at < ago(2w)", "traits.created_at < ago(2w)"),
    (
        "traits.tags contains \"vip\"",
        "traits.tags contains \"vip\"",
    ),
    (
        "computed.orders_30d >= 003.50",
        "computed.orders_30d >= 3.5",
    ),
    ("properties.type == \"x\"", "properties.type == \"x\""),
    (
        r#"most_frequent(properties.category,event=="Product Viewed",within 30d)=="shoes""#,
        r#"most_frequent(properties.category, event == "Product Viewed", within 30d) == "shoes""#,
    ),
    (
        r#"unique(properties.sku, event == "Order Completed") contains "A1""#,
        r#"unique(properties.sku, event == "Order Completed") contains "A1""#,
    ),
    (
        "unique_count(properties.sku, true) >= 3",
        "unique_count(properties.sku, true) >= 3",
    ),
];

#[test]
fn sources_print_canonically() {
    for (src, want) in CANONICAL {
        let expr = parse(src).unwrap_or_else(|e| panic!("{src}: {}", e.render(src)));
        assert_eq!(expr.to_string(), *want, "source: {src}");
        let again = parse(want).unwrap();
        assert_eq!(again.without_spans(), expr.without_spans(), "source: {src}");
    }
}

/// Source text and the error `compile` gives for segment "self".
const ERRORS: &[(&str, &str)] = &[
    (
        r#"count(event == "Order Completed""#,
        "syntax error: expected ')' after arguments of count(), found end of input at 1:33",
    ),
    (
        "traits.plan == 'pro'",
        "syntax error: strings are written in double quotes, e.g. \"pro\" at 1:16",
    ),
    (
        "traits.vip and count(true)",
        "type error: 'and' needs true/false conditions, found a number: count(true) at 1:16",
    ),
    (
        "",
        "syntax error: expected an expression, found end of input at 1:1",
    ),
    (
        r#"count(event == "x""#,
        "syntax error: expected ')' after arguments of count(), found end of input at 1:19",
    ),
    (
        r#"count(event == "x", within 30d, true)"#,
        "syntax error: expected ')' after the window of count(), found ',' at 1:31",
    ),
    (
        r#"count(event == "x", within 30x)"#,
        "syntax error: bad duration '30x': unknown unit 'x' (expected w, d, h, m or s, e.g. 30d) at 1:28",
    ),
    (
        r#"count(event == "x", within 1.5d)"#,
        "syntax error: bad duration '1.5d': the amount must be a whole number, e.g. 90m at 1:28",
    ),
    (
        r#"count(event == "x", within 0d)"#,
        "syntax error: bad duration: a window must be longer than zero at 1:28",
    ),
    (
        r#"count(event == "x", within 40000d)"#,
        "syntax error: bad duration '40000d': longer than the limit of 36500d at 1:28",
    ),
    (
        r#"count(event == "x", within "30d")"#,
        "syntax error: expected a duration after 'within', e.g. within 30d, found string \"30d\" at 1:28",
    ),
    (
        "since(traits.x) > -3d",
        "syntax error: bad duration: durations cannot be negative; use ago(…) for a past instant at 1:19",
    ),
    (
        "foo(1)",
        "syntax error: unknown function 'foo' (known: count, exists, sum, avg, min, max, first, last, first_seen, last_seen, most_frequent, unique, unique_count, in_segment, has_identifier, since, days_since, ago, timestamp) at 1:1",
    ),
    (
        "count(true, true)",
        "syntax error: wrong number of arguments to count(): expected count(<event filter>[, within <duration>]), found 2 arguments at 1:1",
    ),
    (
        "sum(properties.x)",
        "syntax error: wrong number of arguments to sum(): expected sum(properties.<name>, <event filter>[, within <duration>]), found 1 argument at 1:1",
    ),
    (
        r#"unique(event == "x")"#,
        "syntax error: wrong number of arguments to unique(): expected unique(properties.<name>, <event filter>[, within <duration>]), found 1 argument at 1:1",
    ),
    (
        "in_segment()",
        "syntax error: wrong number of arguments to in_segment(): expected in_segment(\"<segment name>\"), found 0 arguments at 1:1",
    ),
    (
        r#"in_segment("vip", within 3d)"#,
        "syntax error: in_segment() does not take a window at 1:19",
    ),
    (
        r#"sum("abc", event == "x") > 1"#,
        "syntax error: expected an event property such as properties.revenue as the first argument of sum(), found \"abc\" at 1:5",
    ),
    (
        "count",
        "syntax error: expected '(' after function name 'count' at 1:1",
    ),
    (
        "x.y",
        "syntax error: unknown field 'x': fields are traits.…, computed.…, account.traits.…, identifiers.…, consent.…, and inside event filters event, type and properties.… at 1:1",
    ),
    (
        "traits",
        "syntax error: expected a trait name after 'traits', e.g. traits.plan at 1:1",
    ),
    (
        "account.industry == 1",
        "syntax error: expected account.traits.<name>, e.g. account.traits.industry at 1:1",
    ),
    (
        "identifiers.email.x",
        "syntax error: identifier types are named by a single name, e.g. identifiers.email at 1:1",
    ),
    (
        "traits.a == 1 == 2",
        "syntax error: comparisons cannot be chained: found '==' after a comparison; join conditions with 'and' or 'or' at 1:15",
    ),
    (
        "traits.a = 1",
        "syntax error: unexpected '=': use '==' to compare at 1:10",
    ),
    (
        "traits.a == 'x'",
        "syntax error: strings are written in double quotes, e.g. \"pro\" at 1:13",
    ),
    (
        "traits.a && traits.b",
        "syntax error: unexpected character '&': use 'and' and 'or' at 1:10",
    ),
    (
        "traits.a ==",
        "syntax error: expected a value after '==', found end of input at 1:12",
    ),
    (
        "traits.a is nul",
        "syntax error: expected 'null' after 'is', found name 'nul' at 1:13",
    ),
    (
        "traits.a not like [1]",
        "syntax error: expected 'in' after 'not' (or 'and'/'or' to join a condition), found name 'like' at 1:14",
    ),
    (
        "traits.a in [traits.b]",
        "syntax error: expected a literal value in the list, found name 'traits' at 1:14",
    ),
    (
        "traits.x contains [1]",
        "syntax error: a list is only allowed after 'in', e.g. traits.plan in [\"pro\", \"team\"] at 1:19",
    ),
    (
        "\"unterminated",
        "syntax error: unterminated string: expected a closing '\"' at 1:1",
    ),
    (
        r#"traits.a == "\q""#,
        "syntax error: unknown escape '\\q' in string (expected \\\", \\\\, \\/, \\n, \\r, \\t or \\u{…}) at 1:14",
    ),
    (
        r#"traits.a == "\u{d800}""#,
        "syntax error: bad unicode escape: expected \\u{…} with 1 to 6 hex digits naming a character at 1:14",
    ),
    (
        "traits.a ==\n  (1",
        "syntax error: expected ')' to close the '(' at 2:3, found end of input at 2:5",
    ),
    (
        "traits.a and and",
        "syntax error: expected an expression, found 'and' at 1:14",
    ),
    (
        r#"count(event == "x") == "x""#,
        "type error: cannot compare a number (count(event == \"x\")) with a string (\"x\") using '==' at 1:1",
    ),
    (
        r#"sum(traits.x, event == "x") > 1"#,
        "type error: sum() aggregates an event property such as properties.revenue, found traits.x at 1:5",
    ),
    (
        r#"unique(properties.sku, true) == "x""#,
        "type error: cannot compare a list (unique(properties.sku, true)) with a string (\"x\") using '==' at 1:1",
    ),
    (
        r#"unique_count(properties.sku, true) == "x""#,
        "type error: cannot compare a number (unique_count(properties.sku, true)) with a string (\"x\") using '==' at 1:1",
    ),
    (
        r#"most_frequent(traits.x, true) == "x""#,
        "type error: most_frequent() aggregates an event property such as properties.revenue, found traits.x at 1:15",
    ),
    (
        "traits.a and count(true)",
        "type error: 'and' needs true/false conditions, found a number: count(true) at 1:14",
    ),
    (
        "count(true)",
        "type error: a segment condition must be true or false, found a number: count(true) at 1:1",
    ),
    (
        r#"in_segment("nope")"#,
        "type error: unknown segment 'nope' at 1:12",
    ),
    (
        r#"in_segment("self")"#,
        "type error: segment 'self' cannot refer to itself at 1:1",
    ),
    (
        "in_segment(traits.x)",
        "type error: in_segment() takes a name as a string literal: in_segment(\"<segment name>\") at 1:12",
    ),
    (
        "computed.nope > 1",
        "type error: unknown computed trait 'nope' (known: favourite_category, last_order_at, orders_30d) at 1:1",
    ),
    (
        r#"computed.orders_30d == "x""#,
        "type error: cannot compare a number (computed.orders_30d) with a string (\"x\") using '==' at 1:1",
    ),
    (
        r#"computed.last_order_at > "2024-13-01""#,
        "type error: \"2024-13-01\" is not a date or timestamp (expected YYYY-MM-DD or RFC 3339, e.g. 2024-05-01T12:00:00Z) at 1:26",
    ),
    (
        r#"count(traits.plan == "pro") > 1"#,
        "type error: profile field traits.plan cannot be used inside an event filter; filters speak of event, type and properties.… at 1:7",
    ),
    (
        "count(event == 3) > 1",
        "type error: 'event' is a string and cannot be compared with 3 using == at 1:16",
    ),
    (
        r#"count(type == "pages") > 1"#,
        "type error: unknown event type \"pages\" (expected one of track, page, screen, identify, group, alias) at 1:15",
    ),
    (
        "count(properties.x > 30d) > 1",
        "type error: duration 30d cannot be compared with an event field; use 'within 30d' to limit the events by age at 1:22",
    ),
    (
        "count(properties.x > properties.y) > 1",
        "type error: an event filter condition compares an event field with a literal value, e.g. properties.total > 100 at 1:7",
    ),
    (
        "count(count(true) > 1) > 1",
        "type error: count() cannot be used inside an event filter at 1:7",
    ),
    (
        r#"event == "x""#,
        "type error: event field event can only be used inside an event filter, e.g. count(event == …) at 1:1",
    ),
    (
        "since(traits.x) > 3",
        "type error: cannot compare a duration (since(traits.x)) with a number (3) using '>'; durations compare with since(…), e.g. since(last_seen(type == \"page\")) > 30d at 1:1",
    ),
    (
        "ago(3) < traits.x",
        "type error: ago() needs a duration such as 30d, found a number: 3 at 1:5",
    ),
    (
        "consent.email > 1 or count(true) == true",
        "type error: cannot compare a boolean (consent.email) with a number (1) using '>' at 1:1 (and 1 more)",
    ),
];

#[test]
fn errors_name_the_problem_and_its_place() {
    let schema = schema();
    let mut failures = Vec::new();
    for (src, want) in ERRORS {
        let got = match compile(src, &schema, Some("self")) {
            Ok(c) => format!("accepted as {}", c.expr),
            Err(e) => e.to_string(),
        };
        if got != *want {
            failures.push(format!("source: {src}\n  want: {want}\n  got:  {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn errors_render_with_a_caret() {
    let src = "traits.plan == \"pro\" and\n  count(event == \"x\"";
    let err = compile(src, &schema(), None).unwrap_err();
    assert_eq!(
        err.render(src),
        "syntax error: expected ')' after arguments of count(), found end of input at 2:21\n  |\n2 |   count(event == \"x\"\n  |                     ^"
            .replacen("syntax error: ", "", 1)
    );
    let src = "computed.orders_30d == \"é\"";
    let err = compile(src, &schema(), None).unwrap_err();
    assert_eq!(
        err.render(src),
        "cannot compare a number (computed.orders_30d) with a string (\"é\") using '==' at 1:1\n  |\n1 | computed.orders_30d == \"é\"\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^"
    );
}

#[test]
fn checked_segments_expose_references_aggregates_and_time_dependence() {
    let src = r#"in_segment("vip") and not in_segment("churned") and count(event == "A", within 30d) > 1 and exists(event == "A", within 720h)"#;
    let c = compile(src, &schema(), Some("new")).unwrap();
    assert_eq!(
        c.references,
        BTreeSet::from(["churned".to_string(), "vip".to_string()])
    );
    assert_eq!(
        c.aggregates.len(),
        1,
        "count and exists over the same window share one aggregate"
    );
    assert_eq!(
        c.aggregates[0].to_string(),
        r#"count(event == "A", within 30d)"#
    );
    assert!(c.time_dependent);
    let c = compile(
        r#"traits.plan == "pro" and count(event == "A") > 1"#,
        &schema(),
        None,
    )
    .unwrap();
    assert!(!c.time_dependent);
    assert!(
        compile("days_since(traits.signup_at) > 3", &schema(), None)
            .unwrap()
            .time_dependent
    );
}

#[test]
fn cycles_between_segments_are_found() {
    let existing = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::new()),
    ]);
    // Redefining c to use a closes c -> a -> b -> c.
    assert_eq!(
        find_cycle("c", &BTreeSet::from(["a".to_string()]), &existing),
        Some(vec!["c".into(), "a".into(), "b".into(), "c".into()])
    );
    assert_eq!(
        find_cycle("d", &BTreeSet::from(["a".to_string()]), &existing),
        None
    );
}

/// Pairs of aggregates that must normalise to the same value.
const SAME_AGGREGATE: &[(&str, &str)] = &[
    (
        r#"count(event == "A" and type == "track")"#,
        r#"count(type == "track" and event == "A")"#,
    ),
    (
        r#"exists(event == "A", within 1d)"#,
        r#"count(event == "A", within 24h)"#,
    ),
    (r#"count(not not event == "A")"#, r#"count(event == "A")"#),
    (r#"count(event != "A")"#, r#"count(not event == "A")"#),
    ("count(3 < properties.x)", "count(properties.x > 3)"),
    (
        "count(properties.x in [2, 1, 1])",
        "count(properties.x in [1, 2])",
    ),
    ("count(properties.x == 0)", "count(properties.x == -0)"),
    (
        r#"count(event == "A" or (event == "B" or event == "A"))"#,
        r#"count(event == "B" or event == "A")"#,
    ),
    (
        r#"count(true and event == "A")"#,
        r#"count(event == "A" or false)"#,
    ),
    ("count(properties.gift)", "count(properties.gift == true)"),
    (
        "count(properties.x is not null)",
        "count(not properties.x is null)",
    ),
];

fn aggregate_of(src: &str) -> EventAggregate {
    let aggs = parse(src).unwrap().event_aggregates();
    assert_eq!(aggs.len(), 1, "{src}");
    aggs.into_iter().next().unwrap()
}

#[test]
fn equal_aggregates_normalise_to_equal_values() {
    for (a, b) in SAME_AGGREGATE {
        assert_eq!(aggregate_of(a), aggregate_of(b), "{a}  vs  {b}");
    }
    let set: HashSet<EventAggregate> = SAME_AGGREGATE
        .iter()
        .map(|(a, _)| aggregate_of(a))
        .collect();
    assert_eq!(
        set.len(),
        SAME_AGGREGATE.len() - 1,
        "only the exists/count pair share a count"
    );
    let agg = aggregate_of(
        r#"sum(properties.order.total, event in ["A", "B"] and properties.n >= 2.5, within 90m)"#,
    );
    let json = serde_json::to_string(&agg).unwrap();
    assert_eq!(serde_json::from_str::<EventAggregate>(&json).unwrap(), agg);
    assert_eq!(
        agg.to_string(),
        r#"sum(properties.order.total, event in ["A", "B"] and properties.n >= 2.5, within 90m)"#
    );
}

fn fixture() -> ProfileSnapshot {
    serde_json::from_value(json!({
        "traits": {
            "plan": "pro",
            "address": {"city": "Lyon"},
            "tags": ["vip", "beta"],
            "signup_at": "2024-01-15",
            "age": 41,
            "newsletter": true
        },
        "computed": {"orders_30d": 3, "last_order_at": "2024-05-30T00:00:00Z"},
        "accounts": [{"industry": "SaaS", "seats": 40}, {"industry": "Retail"}],
        "consent": {"marketing": true, "sms": false},
        "identifiers": {"email": ["ann@example.com", "ann@work.example"], "user_id": ["u1"]},
        "segments": ["vip"],
        "events": [
            {"timestamp": "2024-02-01T00:00:00Z", "type": "track", "event": "Subscribed", "properties": {"plan": "free"}},
            {"timestamp": "2024-03-01T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"revenue": 50}},
            {"timestamp": "2024-04-01T00:00:00Z", "type": "track", "event": "Subscribed", "properties": {"plan": "pro"}},
            {"timestamp": "2024-05-10T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"revenue": 30, "currency": "EUR"}},
            {"timestamp": "2024-05-30T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"revenue": 120, "currency": "EUR", "gift": true}},
            {"timestamp": "2024-05-31T12:00:00Z", "type": "page", "properties": {"path": "/pricing"}}
        ]
    }))
    .unwrap()
}

/// Membership of the fixture profile at 2024-06-01T00:00:00Z.
const MEMBERSHIP: &[(&str, bool)] = &[
    (r#"traits.plan == "pro""#, true),
    (r#"traits.plan != "pro""#, false),
    (r#"traits.address.city == "Lyon""#, true),
    ("traits.address.zip == null", true),
    (
        "traits.address.zip is null and traits.address is not null",
        true,
    ),
    (r#"traits.missing != "x""#, true),
    ("traits.missing > 3 or traits.missing <= 3", false),
    (
        r#"traits.tags contains "vip" and not traits.tags contains "gold""#,
        true,
    ),
    (
        r#"traits.plan contains "ro" and traits.plan starts_with "p""#,
        true,
    ),
    ("traits.age >= 41 and traits.age < 42", true),
    (r#"traits.age == "41""#, false),
    ("traits.age in [40, 41]", true),
    ("traits.age not in [40, 41]", false),
    ("traits.newsletter", true),
    ("traits.plan", false),
    (r#"identifiers.email == "ann@work.example""#, true),
    (r#"identifiers.email != "ann@work.example""#, false),
    (r#"identifiers.email starts_with "ann@w""#, true),
    (
        "identifiers.phone is null and identifiers.email is not null",
        true,
    ),
    (
        r#"has_identifier("email") and not has_identifier("phone")"#,
        true,
    ),
    (r#"account.traits.industry == "Retail""#, true),
    ("account.traits.seats > 10", true),
    (r#"account.traits.industry in ["Finance"]"#, false),
    ("account.traits.region is null", true),
    (
        "consent.marketing and not consent.sms and not consent.push",
        true,
    ),
    ("computed.orders_30d >= 3", true),
    (r#"computed.last_order_at == "2024-05-30""#, true),
    (r#"in_segment("vip") and not in_segment("churned")"#, true),
    (r#"count(event == "Order Completed") == 3"#, true),
    (
        r#"count(event == "Order Completed", within 30d) == 2"#,
        true,
    ),
    (r#"count(event == "Order Completed", within 7d) == 1"#, true),
    // Exactly two days old: out of a 2-day window.
    (r#"count(event == "Order Completed", within 2d) == 0"#, true),
    (
        r#"count(event == "Order Completed", within 49h) == 1"#,
        true,
    ),
    (
        r#"computed.last_order_at > "2024-05-29T23:00:00+02:00" and computed.last_order_at < "2024-05-30T01:00:00Z""#,
        true,
    ),
    (
        r#"sum(properties.revenue, event == "Order Completed", within 30d) == 150"#,
        true,
    ),
    (r#"sum(properties.revenue, event == "Refund") == 0"#, true),
    (
        r#"avg(properties.revenue, event == "Order Completed") > 66 and avg(properties.revenue, event == "Order Completed") < 67"#,
        true,
    ),
    (
        r#"avg(properties.revenue, event == "Refund") is null"#,
        true,
    ),
    (
        r#"min(properties.revenue, event == "Order Completed") == 30 and max(properties.revenue, event == "Order Completed") == 120"#,
        true,
    ),
    (
        r#"first(properties.plan, event == "Subscribed") == "free" and last(properties.plan, event == "Subscribed") == "pro""#,
        true,
    ),
    (
        r#"last(properties.plan, event == "Order Completed") is null"#,
        true,
    ),
    (r#"days_since(last_seen(type == "page")) == 0"#, true),
    (
        r#"days_since(last_seen(event == "Order Completed")) == 2"#,
        true,
    ),
    (
        r#"since(last_seen(type == "page")) < 1d and since(last_seen(type == "page")) == 12h"#,
        true,
    ),
    ("since(first_seen(true)) > 90d", true),
    (
        r#"last_seen(event == "Order Completed") > "2024-05-29" and first_seen(true) == "2024-02-01""#,
        true,
    ),
    (
        r#"days_since(last_seen(event == "Refund")) > 0 or last_seen(event == "Refund") is null"#,
        true,
    ),
    (r#"exists(event == "Refund")"#, false),
    (
        r#"not exists(event == "Refund", within 90d) and exists(event == "Subscribed")"#,
        true,
    ),
    (
        r#"timestamp(traits.signup_at) < "2024-02-01" and traits.signup_at < ago(30d)"#,
        true,
    ),
    (r#"count(properties.path starts_with "/pri") == 1"#, true),
    (
        r#"count(event in ["Order Completed", "Subscribed"]) == 5"#,
        true,
    ),
    (r#"count(not event == "Order Completed") == 3"#, true),
    (
        r#"count(properties.currency != "EUR" and type == "track") == 3"#,
        true,
    ),
    (
        "count(properties.gift) == 1 and count(properties.revenue >= 50) == 2",
        true,
    ),
    (
        r#"count(type == "page" or properties.revenue < 40) == 2"#,
        true,
    ),
    (
        r#"traits.plan == "pro" and count(event == "Order Completed", within 30d) >= 2 and not in_segment("churned")"#,
        true,
    ),
];

#[test]
fn membership_of_a_profile_fixture() {
    let profile = fixture();
    let now = ts("2024-06-01T00:00:00Z");
    let schema = schema();
    let mut failures = Vec::new();
    for (src, want) in MEMBERSHIP {
        let checked =
            compile(src, &schema, None).unwrap_or_else(|e| panic!("{src}:\n{}", e.render(src)));
        let got = evaluate(&checked.expr, &profile, now).unwrap();
        if got != *want {
            failures.push(format!("{src}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn event_at(t: DateTime<Utc>, name: &str) -> HistoryEvent {
    HistoryEvent {
        timestamp: t,
        event_type: "track".into(),
        event: Some(name.into()),
        properties: json!({}),
    }
}

#[test]
fn windows_exclude_events_exactly_window_old_and_events_in_the_future() {
    let t = ts("2024-06-01T10:00:00Z");
    let events = vec![event_at(t, "A")];
    let agg = aggregate_of(r#"count(event == "A", within 1d)"#);
    let ms = TimeDelta::milliseconds(1);
    let day = TimeDelta::days(1);
    let count = |now| compute_aggregate(&agg, &events, now);
    assert_eq!(
        count(t - ms),
        json!(0),
        "an event after now does not count yet"
    );
    assert_eq!(count(t), json!(1));
    assert_eq!(count(t + day - ms), json!(1));
    assert_eq!(
        count(t + day),
        json!(0),
        "an event exactly one window old has left it"
    );
    assert_eq!(
        next_expiry(&agg, &events, t - ms),
        Some(t),
        "a future event enters at its time"
    );
    assert_eq!(next_expiry(&agg, &events, t), Some(t + day));
    assert_eq!(next_expiry(&agg, &events, t + day - ms), Some(t + day));
    assert_eq!(next_expiry(&agg, &events, t + day), None);

    let unwindowed = aggregate_of(r#"count(event == "A")"#);
    assert_eq!(next_expiry(&unwindowed, &events, t), None);
    assert_eq!(next_expiry(&unwindowed, &events, t - ms), Some(t));
}

#[test]
fn next_reevaluation_is_the_earliest_expiry_of_matching_events() {
    let t = ts("2024-06-01T00:00:00Z");
    let events = vec![
        event_at(t - TimeDelta::hours(20), "A"),
        event_at(t - TimeDelta::hours(2), "B"),
        event_at(t - TimeDelta::hours(1), "A"),
    ];
    let c = compile(
        r#"count(event == "A", within 1d) >= 2 or exists(event == "B", within 3h)"#,
        &Schema::new(),
        None,
    )
    .unwrap();
    assert_eq!(
        next_reevaluation(&c.aggregates, &events, t),
        Some(t + TimeDelta::hours(1))
    );
    let later = t + TimeDelta::hours(1);
    assert_eq!(
        next_reevaluation(&c.aggregates, &events, later),
        Some(t + TimeDelta::hours(4))
    );
}

#[test]
fn membership_flips_at_the_window_boundary() {
    let t = ts("2024-06-01T10:00:00Z");
    let profile = ProfileSnapshot {
        events: vec![
            event_at(t, "Order Completed"),
            event_at(t - TimeDelta::days(10), "Order Completed"),
        ],
        ..ProfileSnapshot::default()
    };
    let c = compile(
        r#"count(event == "Order Completed", within 30d) >= 2"#,
        &Schema::new(),
        None,
    )
    .unwrap();
    let expiry = next_reevaluation(&c.aggregates, &profile.events, t).unwrap();
    assert_eq!(expiry, t + TimeDelta::days(20));
    assert!(evaluate(&c.expr, &profile, expiry - TimeDelta::milliseconds(1)).unwrap());
    assert!(!evaluate(&c.expr, &profile, expiry).unwrap());
}

#[test]
fn first_and_last_break_ties_by_log_order() {
    let t = ts("2024-06-01T10:00:00Z");
    let mut a = event_at(t, "S");
    a.properties = json!({"plan": "a"});
    let mut b = event_at(t, "S");
    b.properties = json!({"plan": "b"});
    let events = vec![a, b];
    assert_eq!(
        compute_aggregate(
            &aggregate_of(r#"first(properties.plan, event == "S")"#),
            &events,
            t
        ),
        json!("a")
    );
    assert_eq!(
        compute_aggregate(
            &aggregate_of(r#"last(properties.plan, event == "S")"#),
            &events,
            t
        ),
        json!("b")
    );
    assert_eq!(
        compute_aggregate(&aggregate_of(r#"last_seen(event == "S")"#), &events, t),
        json!("2024-06-01T10:00:00Z")
    );
}

/// A profile whose events carry values of every JSON type, for the distinct-value functions.
fn catalogue_profile() -> ProfileSnapshot {
    serde_json::from_value(json!({
        "events": [
            {"timestamp": "2024-05-01T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "shoes", "sku": "A1", "price": 10}},
            {"timestamp": "2024-05-02T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "hats", "sku": 1, "price": 10.0}},
            {"timestamp": "2024-05-03T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "shoes", "sku": 1.0}},
            {"timestamp": "2024-05-20T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "hats", "sku": true}},
            {"timestamp": "2024-05-20T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "bags", "sku": null}},
            {"timestamp": "2024-05-25T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"sku": ["x", 2.0], "category": {"b": 1, "a": 2}}},
            {"timestamp": "2024-05-26T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"sku": {"b": 1.0, "a": 2}}},
            {"timestamp": "2024-05-27T00:00:00Z", "type": "track", "event": "Order Completed", "properties": {"sku": false}},
            {"timestamp": "2024-07-01T00:00:00Z", "type": "track", "event": "Product Viewed", "properties": {"category": "bags", "sku": "Z9"}}
        ]
    }))
    .unwrap()
}

/// Aggregates over [`catalogue_profile`] at 2024-06-01T00:00:00Z and their values.
fn distinct_value_cases() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        // 1 and 1.0 are one value; null and missing properties are skipped; the event of
        // July has not happened yet.
        ("unique_count(properties.sku, true)", json!(6)),
        (
            "unique(properties.sku, true)",
            json!([false, true, 1, "A1", ["x", 2], {"a": 2, "b": 1}]),
        ),
        (
            r#"unique(properties.sku, event == "Product Viewed")"#,
            json!([true, 1, "A1"]),
        ),
        ("unique(properties.price, true)", json!([10])),
        (
            r#"unique(properties.category, event == "Order Completed")"#,
            json!([{"a": 2, "b": 1}]),
        ),
        (
            "unique_count(properties.category, true, within 30d)",
            json!(4),
        ),
        // shoes and hats are both seen twice; hats was seen last.
        (
            r#"most_frequent(properties.category, event == "Product Viewed")"#,
            json!("hats"),
        ),
        ("most_frequent(properties.category, true)", json!("hats")),
        // hats and bags once each, at the same instant: bags came later in the log.
        (
            r#"most_frequent(properties.category, event == "Product Viewed", within 20d)"#,
            json!("bags"),
        ),
        ("most_frequent(properties.sku, true)", json!(1)),
        ("most_frequent(properties.nope, true)", json!(null)),
        ("unique(properties.nope, true)", json!([])),
        ("unique_count(properties.nope, true)", json!(0)),
        ("unique_count(properties.sku, false)", json!(0)),
    ]
}

#[test]
fn distinct_value_functions_over_a_profile_fixture() {
    let profile = catalogue_profile();
    let now = ts("2024-06-01T00:00:00Z");
    let mut failures = Vec::new();
    for (src, want) in distinct_value_cases() {
        let agg = aggregate_of(src);
        assert_eq!(agg.to_string(), src, "canonical text");
        let got = compute_aggregate(&agg, &profile.events, now);
        if got != want {
            failures.push(format!("{src}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn segments_use_the_distinct_value_functions() {
    let profile = catalogue_profile();
    let now = ts("2024-06-01T00:00:00Z");
    for (src, want) in [
        (r#"unique(properties.sku, true) contains "A1""#, true),
        ("unique(properties.sku, true) contains 1", true),
        (r#"unique(properties.sku, true) contains "Z9""#, false),
        ("unique_count(properties.sku, true) >= 6", true),
        (
            r#"most_frequent(properties.category, true) == "hats""#,
            true,
        ),
        (
            r#"most_frequent(properties.category, true, within 1d) is null"#,
            true,
        ),
        ("unique_count(properties.sku, true, within 1d) == 0", true),
    ] {
        let checked =
            compile(src, &schema(), None).unwrap_or_else(|e| panic!("{src}:\n{}", e.render(src)));
        assert_eq!(
            evaluate(&checked.expr, &profile, now).unwrap(),
            want,
            "{src}"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}consent.x{}", "(".repeat(10_000), ")".repeat(10_000));
    let err = parse(&deep).unwrap_err();
    assert!(err.message.contains("nested too deeply"), "{err}");
    let nots = format!("{}consent.x", "not ".repeat(10_000));
    assert!(parse(&nots).is_err());
    let long_and = vec!["consent.x"; 20_000].join(" and ");
    let expr = parse(&long_and).unwrap();
    assert!(
        !evaluate(
            &expr,
            &ProfileSnapshot::default(),
            ts("2024-06-01T00:00:00Z")
        )
        .unwrap()
    );
    assert_eq!(expr.to_string(), long_and);
}

#[test]
fn unchecked_expressions_fail_evaluation_cleanly() {
    let expr = parse(r#"event == "x""#).unwrap();
    assert!(matches!(
        evaluate(
            &expr,
            &ProfileSnapshot::default(),
            ts("2024-06-01T00:00:00Z")
        ),
        Err(EvalError::Invalid(_))
    ));
}

// ---- property tests -------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_][a-z0-9_]{0,6}",
        1 => ".{0,5}",
        1 => Just("and".to_string()),
    ]
}

fn profile_path() -> impl Strategy<Value = Path> {
    prop_oneof![
        prop::collection::vec(name(), 1..3).prop_map(Path::Trait),
        name().prop_map(Path::Computed),
        prop::collection::vec(name(), 1..3).prop_map(Path::AccountTrait),
        name().prop_map(Path::Identifier),
        name().prop_map(Path::Consent),
    ]
}

fn event_path() -> impl Strategy<Value = Path> {
    prop_oneof![
        Just(Path::EventName),
        Just(Path::EventType),
        prop::collection::vec(name(), 1..3).prop_map(Path::Property),
    ]
}

fn duration() -> impl Strategy<Value = DurationLit> {
    (
        1u64..5000,
        prop_oneof![
            Just(DurationUnit::Weeks),
            Just(DurationUnit::Days),
            Just(DurationUnit::Hours),
            Just(DurationUnit::Minutes),
            Just(DurationUnit::Seconds),
        ],
    )
        .prop_map(|(amount, unit)| DurationLit { amount, unit })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<f64>()
            .prop_filter("finite", |n| n.is_finite())
            .prop_map(Literal::Number),
        (-1000i32..1000).prop_map(|n| Literal::Number(n as f64 / 8.0)),
        ".{0,8}".prop_map(Literal::String),
        duration().prop_map(Literal::Duration),
    ]
}

fn node(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn leaf(path: BoxedStrategy<Path>) -> BoxedStrategy<Expr> {
    prop_oneof![
        literal().prop_map(|l| node(ExprKind::Literal(l))),
        path.prop_map(|p| node(ExprKind::Path(p))),
    ]
    .boxed()
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Contains),
        Just(CompareOp::StartsWith),
    ]
}

/// Boolean structure (not/and/or/comparisons) over the given leaves.
fn structure(leaves: BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    leaves
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| node(ExprKind::Not(Box::new(e)))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|es| node(ExprKind::And(es))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|es| node(ExprKind::Or(es))),
                (compare_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| node(
                    ExprKind::Compare {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r)
                    }
                )),
                (
                    any::<bool>(),
                    inner.clone(),
                    prop::collection::vec(literal(), 0..3)
                )
                    .prop_map(|(negated, l, items)| {
                        node(ExprKind::In {
                            negated,
                            lhs: Box::new(l),
                            items: items
                                .into_iter()
                                .map(|i| Spanned::new(i, Span::default()))
                                .collect(),
                        })
                    }),
                (any::<bool>(), inner).prop_map(|(negated, e)| node(ExprKind::IsNull {
                    negated,
                    expr: Box::new(e)
                })),
            ]
        })
        .boxed()
}

fn aggregate_kind() -> impl Strategy<Value = AggregateKind> {
    prop::sample::select(AggregateKind::ALL.to_vec())
}

fn scalar_function() -> impl Strategy<Value = ScalarFunction> {
    prop::sample::select(ScalarFunction::ALL.to_vec())
}

fn expr() -> impl Strategy<Value = Expr> {
    let filter = structure(leaf(event_path().boxed()));
    let aggregate = (
        aggregate_kind(),
        event_path(),
        filter,
        prop::option::of(duration()),
    )
        .prop_map(|(kind, prop, filter, window)| {
            node(ExprKind::Aggregate(AggregateCall {
                kind,
                property: kind
                    .takes_property()
                    .then(|| Spanned::new(prop, Span::default())),
                filter: Box::new(filter),
                window: window.map(|w| Spanned::new(w, Span::default())),
            }))
        });
    let call = (scalar_function(), leaf(profile_path().boxed())).prop_map(|(function, arg)| {
        node(ExprKind::Call {
            function,
            args: vec![arg],
        })
    });
    let leaves = prop_oneof![3 => leaf(profile_path().boxed()), 1 => aggregate, 1 => call].boxed();
    structure(leaves)
}

/// Token soup: fragments of the language glued at random, to reach deep parser paths.
fn soup() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "traits.",
        "plan",
        "computed.x",
        "account.traits.a",
        "identifiers.email",
        "consent.m",
        "event",
        "type",
        "properties.",
        "count(",
        "sum(",
        "exists(",
        "in_segment(",
        "days_since(",
        "since(",
        "ago(",
        "first(",
        "most_frequent(",
        "unique(",
        "unique_count(",
        ")",
        "(",
        "[",
        "]",
        ",",
        "within",
        "30d",
        "0d",
        "1.5h",
        "99999999d",
        "==",
        "!=",
        "<",
        ">=",
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "true",
        "contains",
        "starts_with",
        "\"x\"",
        "\"\\u{",
        "\"",
        "-",
        "3",
        "1e5",
        "0.5",
        ".",
        " ",
        "\n",
        "é",
    ]);
    prop::collection::vec(pieces, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_arbitrary_text(src in ".{0,80}") {
        if let Ok(expr) = parse(&src) {
            let _ = check(&expr, &schema(), Some("self"));
        }
    }

    #[test]
    fn parser_never_panics_on_token_soup(src in soup()) {
        match parse(&src) {
            Ok(expr) => {
                let _ = check(&expr, &schema(), Some("self"));
                let _ = evaluate(&expr, &ProfileSnapshot::default(), ts("2024-06-01T00:00:00Z"));
                let again = parse(&expr.to_string()).expect("canonical text parses");
                prop_assert_eq!(again.without_spans(), expr.without_spans());
            }
            Err(e) => {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= src.len());
                let _ = e.render(&src);
            }
        }
    }

    #[test]
    fn printing_then_parsing_gives_the_same_tree(expr in expr()) {
        let text = expr.to_string();
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{}\n{}", text, e.render(&text))))?;
        prop_assert_eq!(parsed.without_spans(), expr.without_spans(), "text: {}", text);
    }

    #[test]
    fn evaluation_never_panics(expr in expr(), hours in -100_000i64..100_000) {
        let now = ts("2024-06-01T00:00:00Z") + TimeDelta::hours(hours);
        let _ = evaluate(&expr, &fixture(), now);
        let _ = check(&expr, &schema(), None);
        for agg in expr.event_aggregates() {
            let _ = next_expiry(&agg, &fixture().events, now);
        }
    }
}
