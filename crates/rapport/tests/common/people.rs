//! People for probabilistic matching: a small town's worth of distinct people, and a few
//! planted pairs that are one person known twice (`ann`, `bo`, `cy`, `dot`), some certain,
//! some for review.

use serde_json::{Value, json};

/// 300 people known by user id, names and addresses drawn from lists about as varied as a
/// small town's.
pub fn population() -> Vec<Value> {
    const GIVEN: [&str; 32] = [
        "oliver", "amelia", "harry", "isla", "jack", "ava", "george", "mia", "noah", "ivy", "leo",
        "lily", "oscar", "freya", "arthur", "grace", "theo", "rosie", "alfie", "poppy", "henry",
        "ella", "edward", "daisy", "samuel", "alice", "joseph", "evie", "thomas", "sophie",
        "william", "matilda",
    ];
    const SURNAMES: [&str; 32] = [
        "smith", "jones", "taylor", "brown", "patel", "wright", "evans", "walker", "white",
        "green", "hall", "wood", "harris", "lewis", "martin", "jackson", "clarke", "turner",
        "hill", "scott", "cooper", "ward", "morris", "king", "baker", "harrison", "morgan",
        "allen", "james", "phillips", "watson", "davies",
    ];
    const CITIES: [&str; 6] = ["leeds", "york", "bath", "derby", "hull", "ely"];
    (0..300u64)
        .map(|i| {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
            let pick = |shift: u32, n: usize| ((h >> shift) as usize) % n;
            json!({
                "type": "identify",
                "userId": format!("bg-{i}"),
                "traits": {
                    "firstName": GIVEN[pick(0, 32)],
                    "lastName": SURNAMES[pick(5, 32)],
                    "address": {
                        "street": format!("{} {} road", 1 + pick(10, 150), SURNAMES[pick(18, 32)]),
                        "city": CITIES[pick(23, 6)],
                        "postalCode": format!("{}{}", CITIES[pick(23, 6)], pick(27, 40)),
                    },
                    "birthday": format!("19{:02}-{:02}-{:02}", 40 + pick(31, 60), 1 + pick(37, 12), 1 + pick(41, 28)),
                },
                "timestamp": "2024-05-01T10:00:00Z",
            })
        })
        .collect()
}

pub fn person(id: (&str, &str), traits: Value) -> Value {
    json!({"type": "identify", id.0: id.1, "traits": traits, "timestamp": "2024-05-02T10:00:00Z"})
}

pub fn planted() -> Vec<Value> {
    vec![
        person(
            ("userId", "ann-1"),
            json!({"firstName": "Annabel", "lastName": "Fairweather", "address": {"street": "12 Quayside Lane", "city": "Whitby", "postalCode": "YO21 3PJ"}, "birthday": "1984-03-17"}),
        ),
        person(
            ("anonymousId", "cookie-ann"),
            json!({"email": "annabel.f@example.org", "firstName": "Anabel", "lastName": "Fairweather", "address": {"street": "12 Quayside Ln", "city": "Whitby", "postalCode": "YO21 3PJ"}, "birthday": "1984-03-17"}),
        ),
        person(
            ("userId", "bo-1"),
            json!({"firstName": "Bartholomew", "lastName": "Quigley", "address": {"city": "Penzance", "street": "3 Chapel Street"}}),
        ),
        person(
            ("anonymousId", "cookie-bo"),
            json!({"firstName": "Bartholomew", "lastName": "Quigley", "address": {"city": "Penzance"}}),
        ),
        person(
            ("userId", "cy-1"),
            json!({"firstName": "Cressida", "lastName": "Montgomery", "address": {"street": "7 Harbour Row", "city": "Oban", "postalCode": "PA34 4LW"}, "birthday": "1991-11-02"}),
        ),
        person(
            ("userId", "cy-2"),
            json!({"firstName": "Cressida", "lastName": "Montgomery", "address": {"street": "7 Harbour Row", "city": "Oban", "postalCode": "PA34 4LW"}, "birthday": "1991-11-02"}),
        ),
        person(
            ("userId", "dot-1"),
            json!({"firstName": "Dorothea", "lastName": "Pennyworth", "address": {"city": "Kendal", "street": "9 Fell Road"}}),
        ),
        person(
            ("anonymousId", "cookie-dot"),
            json!({"firstName": "Dorothea", "lastName": "Pennyworth", "address": {"city": "Kendal"}}),
        ),
    ]
}
