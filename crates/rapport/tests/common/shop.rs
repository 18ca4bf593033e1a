//! A synthetic shop the value models can be fitted on: purchases over ten months, some
//! customers gone early, and a few survey answers.

use serde_json::{Value, json};

pub const DAY: i64 = 86_400;

pub fn at(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap()
        .to_rfc3339()
}

/// A shop: 60 customers buying over the last ten months, a third of them gone after their
/// first weeks; ten NPS answers whose score is computed by hand below.
pub fn shop(now: i64) -> Vec<Value> {
    let mut messages = Vec::new();
    for i in 0..60i64 {
        let user = format!("u{i}");
        let first = now - (300 - 3 * i) * DAY;
        let plan = if i % 2 == 0 { "pro" } else { "basic" };
        messages.push(
            json!({"type": "identify", "userId": user, "timestamp": at(first),
                             "traits": {"plan": plan}}),
        );
        let (stop, gap) = if i % 3 == 1 {
            (first + 30 * DAY, 6)
        } else {
            (now, 9 + i % 7)
        };
        let mut t = first;
        while t < stop.min(now) {
            messages.push(json!({"type": "track", "userId": user, "event": "Order Completed",
                                 "timestamp": at(t),
                                 "properties": {"revenue": 20.0 + (i % 5) as f64 * 10.0 + (t / DAY % 3) as f64}}));
            t += gap * DAY;
        }
    }
    // Pro: 10, 9, 9, 7, 2 ; basic: 10, 8, 6, 5, 0 → 4 promoters, 4 detractors of 10 → 0.
    for (i, score) in [10, 10, 9, 8, 9, 6, 7, 5, 2, 0].into_iter().enumerate() {
        messages.push(
            json!({"type": "track", "userId": format!("u{i}"), "event": "Survey Answered",
                             "timestamp": at(now - 5 * DAY),
                             "properties": {"survey": "nps", "score": score, "comment": "ok"}}),
        );
    }
    messages
}
