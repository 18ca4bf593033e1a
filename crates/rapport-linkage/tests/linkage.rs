//! Integration tests of rapport-linkage: comparator and EM properties, and end-to-end
//! deduplication and linkage on a seeded synthetic data set with injected typos.

use std::collections::HashMap;

use proptest::prelude::*;
use rapport_linkage::*;

// ---------------------------------------------------------------------------------------
// Comparator properties.

fn comparators() -> impl Strategy<Value = Comparator> {
    prop_oneof![
        Just(Comparator::Exact),
        Just(Comparator::JaroWinkler),
        Just(Comparator::Levenshtein),
        Just(Comparator::DamerauLevenshtein),
        Just(Comparator::Soundex),
        Just(Comparator::StreetAddress),
        (0.5f64..100.0).prop_map(|scale| Comparator::Numeric { scale }),
        (1.0f64..1000.0).prop_map(|scale_days| Comparator::Date { scale_days }),
    ]
}

/// Values that look like names, numbers and dates, plus arbitrary Unicode.
fn values() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        "[0-9]{1,8}",
        "(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9])",
        "\\PC{0,10}",
    ]
}

proptest! {
    #[test]
    fn similarity_is_symmetric_and_in_unit_range(c in comparators(), a in values(), b in values()) {
        let ab = c.similarity(&a, &b);
        let ba = c.similarity(&b, &a);
        prop_assert!((0.0..=1.0).contains(&ab), "{c:?} {a:?} {b:?} -> {ab}");
        prop_assert!((ab - ba).abs() < 1e-12, "{c:?} {a:?} {b:?}: {ab} vs {ba}");
    }

    #[test]
    fn identical_values_have_similarity_one(c in comparators(), a in values()) {
        prop_assert_eq!(c.similarity(&a, &a), 1.0);
    }

    #[test]
    fn normalisation_is_idempotent(a in "\\PC{0,20}") {
        if let Some(n) = normalize(&a) {
            prop_assert_eq!(normalize(&n), Some(n.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// EM invariants.

fn pattern_tables() -> impl Strategy<Value = PatternTable> {
    prop::collection::vec(2usize..5, 1..5).prop_flat_map(|levels| {
        let row = levels
            .iter()
            .map(|&n| prop::option::weighted(0.9, 0u8..n as u8))
            .collect::<Vec<_>>();
        prop::collection::vec((row, 1u32..1000), 1..40).prop_map(move |rows| {
            let mut t = PatternTable::new(levels.clone());
            for (pattern, count) in rows {
                t.push(&pattern, f64::from(count));
            }
            t
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn em_keeps_probabilities_inside_the_open_unit_interval(table in pattern_tables()) {
        let options = EmOptions { max_iterations: 100, ..EmOptions::default() };
        let p = estimate(&table, &options).unwrap();
        prop_assert!(p.match_prior > 0.0 && p.match_prior < 1.0);
        prop_assert!(p.iterations >= 1 && p.iterations <= 100);
        prop_assert!(p.log_likelihood.is_finite());
        for dist in p.m.iter().chain(&p.u) {
            let sum: f64 = dist.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "{dist:?}");
            for &x in dist {
                prop_assert!(x > 0.0 && x < 1.0, "{dist:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A seeded synthetic population with typos.

/// SplitMix64: a tiny deterministic generator so the test data never changes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const GIVEN: &[&str] = &[
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "olivia",
    "liam",
    "emma",
    "noah",
    "ava",
    "lucas",
    "mia",
    "ethan",
];
const SURNAMES: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
];
const STREETS: &[&str] = &[
    "high street",
    "station road",
    "church lane",
    "park avenue",
    "victoria road",
    "green lane",
    "manor road",
    "kings road",
    "queen street",
    "mill lane",
    "new road",
    "school lane",
    "the crescent",
    "grange road",
    "albert street",
    "london road",
];
const CITIES: &[&str] = &[
    "ashford",
    "bolton",
    "carlisle",
    "derby",
    "exeter",
    "fareham",
    "gloucester",
    "hereford",
];

const FIELDS: [&str; 6] = ["given_name", "surname", "street", "city", "postcode", "dob"];

fn person(rng: &mut Rng) -> [String; 6] {
    let city = rng.below(CITIES.len());
    [
        rng.pick(GIVEN).to_owned(),
        rng.pick(SURNAMES).to_owned(),
        format!("{} {}", 1 + rng.below(200), rng.pick(STREETS)),
        CITIES[city].to_owned(),
        format!("{}{:03}", city + 1, rng.below(40)),
        format!(
            "{}{:02}{:02}",
            1940 + rng.below(65),
            1 + rng.below(12),
            1 + rng.below(28)
        ),
    ]
}

fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 2 {
        return s.to_owned();
    }
    let i = rng.below(c.len() - 1);
    match rng.below(4) {
        0 => c[i] = (b'a' + rng.below(26) as u8) as char,
        1 => {
            c.remove(i);
        }
        2 => c.swap(i, i + 1),
        _ => c.insert(i, (b'a' + rng.below(26) as u8) as char),
    }
    c.into_iter().collect()
}

/// A corrupted copy: each field has a typo with probability 0.15 and is missing with
/// probability 0.05, except that at most two fields are touched.
fn corrupt(rng: &mut Rng, p: &[String; 6]) -> Vec<Option<String>> {
    let mut touched = 0;
    p.iter()
        .map(|v| {
            if touched < 2 && rng.chance(0.05) {
                touched += 1;
                None
            } else if touched < 2 && rng.chance(0.15) {
                touched += 1;
                Some(typo(rng, v))
            } else {
                Some(v.clone())
            }
        })
        .collect()
}

fn spec() -> LinkageSpec {
    LinkageSpec {
        comparisons: vec![
            FieldComparison::jaro_winkler("given_name", &[1.0, 0.92, 0.85]),
            FieldComparison::jaro_winkler("surname", &[1.0, 0.92, 0.85]),
            FieldComparison::jaro_winkler("street", &[1.0, 0.92, 0.85]),
            FieldComparison::exact("city"),
            FieldComparison::new("postcode", Comparator::DamerauLevenshtein, &[1.0, 0.75]),
            FieldComparison::new("dob", Comparator::DamerauLevenshtein, &[1.0, 0.85]),
        ],
        blocking: vec![
            BlockingRule::new("postcode").on("postcode", KeyTransform::Value),
            BlockingRule::new("surname sound + year")
                .on("surname", KeyTransform::Soundex)
                .on("dob", KeyTransform::Year),
            BlockingRule::new("given initial + street prefix")
                .on("given_name", KeyTransform::Prefix(1))
                .on("street", KeyTransform::Prefix(4)),
        ],
        blocking_options: BlockingOptions::default(),
        em: EmOptions::default(),
        thresholds: ThresholdPolicy::Posterior {
            match_probability: 0.5,
            review_probability: 0.05,
        },
    }
}

fn to_refs(v: &[Option<String>]) -> Vec<Option<&str>> {
    v.iter().map(|x| x.as_deref()).collect()
}

fn precision_recall(
    found: &[(u32, u32)],
    truth: impl Fn(u32, u32) -> bool,
    total: usize,
) -> (f64, f64) {
    let correct = found.iter().filter(|&&(a, b)| truth(a, b)).count();
    (
        correct as f64 / found.len().max(1) as f64,
        correct as f64 / total as f64,
    )
}

#[test]
fn deduplicates_a_synthetic_population() {
    let mut rng = Rng(0x5EED_2024);
    let mut data = Dataset::new(Schema::new(FIELDS));
    let mut entity = Vec::new();
    for e in 0..600u32 {
        let p = person(&mut rng);
        data.push(format!("p{e}-orig"), &to_refs(&p.clone().map(Some)))
            .unwrap();
        entity.push(e);
        for k in 0..rng.below(3) {
            data.push(format!("p{e}-dup{k}"), &to_refs(&corrupt(&mut rng, &p)))
                .unwrap();
            entity.push(e);
        }
    }
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for &e in &entity {
        *sizes.entry(e).or_default() += 1;
    }
    let true_pairs: usize = sizes.values().map(|n| n * (n - 1) / 2).sum();
    assert!(true_pairs > 300, "{true_pairs}");

    let result = Linker::new(spec()).unwrap().dedupe(&data).unwrap();
    assert!(result.model().parameters().converged);
    let found: Vec<(u32, u32)> = result.matches().map(|p| (p.left, p.right)).collect();
    let (precision, recall) = precision_recall(
        &found,
        |a, b| entity[a as usize] == entity[b as usize],
        true_pairs,
    );
    eprintln!("synthetic dedupe: precision {precision:.4}, recall {recall:.4}");
    assert!(precision >= 0.97, "precision {precision}");
    assert!(recall >= 0.95, "recall {recall}");

    // Clusters are transitive closures of matches and never mix too many entities.
    let clusters = result.clusters();
    let pure = clusters
        .iter()
        .filter(|c| {
            c.iter()
                .all(|&r| entity[r as usize] == entity[c[0] as usize])
        })
        .count();
    assert!(
        pure as f64 >= 0.97 * clusters.len() as f64,
        "{pure}/{}",
        clusters.len()
    );

    // Every explanation adds up.
    for i in (0..result.pairs().len()).step_by(97) {
        let e = result.explain(i, &data, &data);
        let sum: f64 = e.fields.iter().map(|f| f.weight).sum();
        assert!((sum - e.total_weight).abs() < 1e-9);
        assert!((result.model().probability(e.total_weight) - e.match_probability).abs() < 1e-12);
        assert_eq!(e.decision, result.thresholds().decide(e.total_weight));
        for f in &e.fields {
            assert_eq!(f.level == Level::Missing, f.m.is_none());
        }
    }
}

#[test]
fn links_two_synthetic_sets_and_reuses_the_model() {
    let mut rng = Rng(42);
    let (mut left, mut right) = (
        Dataset::new(Schema::new(FIELDS)),
        Dataset::new(Schema::new(FIELDS)),
    );
    let mut right_entity = Vec::new();
    for e in 0..500u32 {
        let p = person(&mut rng);
        left.push(format!("l{e}"), &to_refs(&p.clone().map(Some)))
            .unwrap();
        if e % 5 != 0 {
            right
                .push(format!("r{e}"), &to_refs(&corrupt(&mut rng, &p)))
                .unwrap();
            right_entity.push(e);
        }
    }
    for e in 0..100u32 {
        // Right-only people.
        let p = person(&mut rng);
        right.push(format!("x{e}"), &to_refs(&p.map(Some))).unwrap();
        right_entity.push(u32::MAX);
    }
    let linker = Linker::new(spec()).unwrap();
    let mut result = linker.link(&left, &right).unwrap();
    result.enforce_one_to_one();
    assert_eq!(result.mode(), Mode::Link);
    let found: Vec<(u32, u32)> = result.matches().map(|p| (p.left, p.right)).collect();
    let (precision, recall) = precision_recall(&found, |l, r| right_entity[r as usize] == l, 400);
    eprintln!("synthetic link: precision {precision:.4}, recall {recall:.4}");
    assert!(precision >= 0.97, "precision {precision}");
    assert!(recall >= 0.95, "recall {recall}");

    // Scoring with the fitted model (no EM) reproduces the same weights.
    let again = linker
        .link_with_model(&left, &right, result.model())
        .unwrap();
    assert_eq!(again.pairs().len(), result.pairs().len());
    for (a, b) in again.pairs().iter().zip(result.pairs()) {
        assert_eq!((a.left, a.right, a.weight), (b.left, b.right, b.weight));
    }
}

#[test]
fn explanation_serialises_for_the_identity_layer() {
    fn assert_serialize<T: serde::Serialize>() {}
    assert_serialize::<PairExplanation>();
    assert_serialize::<LinkageSpec>();
    assert_serialize::<Model>();
}

#[test]
fn configuration_errors() {
    let mut s = spec();
    s.comparisons.push(FieldComparison::exact("no_such_field"));
    let data = {
        let mut d = Dataset::new(Schema::new(FIELDS));
        d.push("a", &[Some("x"); 6]).unwrap();
        d.push("b", &[Some("x"); 6]).unwrap();
        d
    };
    assert_eq!(
        Linker::new(s).unwrap().dedupe(&data).unwrap_err(),
        LinkageError::UnknownField {
            field: "no_such_field".into()
        }
    );
    let mut s = spec();
    s.blocking.clear();
    assert_eq!(Linker::new(s).unwrap_err(), LinkageError::NoBlockingRules);
    let mut s = spec();
    s.comparisons.clear();
    assert_eq!(Linker::new(s).unwrap_err(), LinkageError::NoComparisons);
    let other = Dataset::new(Schema::new(["a"]));
    assert_eq!(
        Linker::new(spec())
            .unwrap()
            .link(&data, &other)
            .unwrap_err(),
        LinkageError::SchemaMismatch
    );
}
