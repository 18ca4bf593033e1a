//! Fuzzes the tracking-API payload parser: any bytes, as a batch body and as each
//! single-message endpoint's body, must yield events or errors, never a panic, and every
//! accepted event must serialise and parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rapport_core::event::{Event, EventType, Limits, ParsedRequest, Stamp, parse_timestamp};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let stamp = Stamp {
        received_at: parse_timestamp("2024-05-01T12:00:00Z").unwrap(),
        source_id: "src_fuzz",
    };
    let mut n = 0u64;
    let mut ids = || {
        n += 1;
        format!("fuzz-{n}")
    };
    let mut check = |req: ParsedRequest<'_>| {
        for event in req.events(&stamp, &limits, &mut ids).into_iter().flatten() {
            let stored = event.to_json();
            let back = Event::from_json(&stored).expect("stored events parse back");
            assert_eq!(back.message_id, event.message_id);
        }
    };
    if let Ok(req) = ParsedRequest::batch(data, &limits) {
        check(req);
    }
    for t in EventType::ALL {
        if let Ok(req) = ParsedRequest::single(data, t, &limits) {
            check(req);
        }
    }
});
