//! Feeds arbitrary text to the segment parser and, when it parses, to the type checker, the
//! canonical printer and the evaluator. None may panic; canonical text must parse back to the
//! same tree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rapport_core::audience::{
    ProfileSnapshot, Schema, Type, check, evaluate, next_reevaluation, parse, parse_timestamp,
};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let expr = match parse(source) {
        Ok(expr) => expr,
        Err(diagnostic) => {
            assert!(diagnostic.span.start <= diagnostic.span.end);
            assert!(diagnostic.span.end <= source.len());
            let _ = diagnostic.render(source);
            return;
        }
    };
    let canonical = expr.to_string();
    let reparsed = parse(&canonical).expect("canonical text parses");
    assert_eq!(reparsed.without_spans(), expr.without_spans());

    let schema = Schema::new()
        .with_computed_trait("orders_30d", Type::Number)
        .with_computed_trait("last_order_at", Type::Timestamp)
        .with_segment("vip");
    let _ = check(&expr, &schema, Some("fuzzed"));

    let now = parse_timestamp("2024-06-01T00:00:00Z").expect("valid timestamp");
    let profile = ProfileSnapshot::default();
    let _ = evaluate(&expr, &profile, now);
    let _ = next_reevaluation(&expr.event_aggregates(), &profile.events, now);
});
