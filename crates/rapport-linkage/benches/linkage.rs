//! Benchmarks of the hot paths: comparators, and a full deduplication run (blocking,
//! comparison vectors, EM, scoring) on a generated data set.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rapport_linkage::*;

fn comparators(c: &mut Criterion) {
    let pairs = [
        ("martha", "marhta"),
        ("stanley street", "stanlye street"),
        ("19560409", "19564009"),
        ("michaela", "michael"),
    ];
    for (name, comparator) in [
        ("jaro_winkler", Comparator::JaroWinkler),
        ("damerau_levenshtein", Comparator::DamerauLevenshtein),
        ("soundex", Comparator::Soundex),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                for (x, y) in pairs {
                    black_box(comparator.similarity(black_box(x), black_box(y)));
                }
            })
        });
    }
}

fn dedupe(c: &mut Criterion) {
    const GIVEN: [&str; 8] = ["ann", "bob", "carl", "dora", "emma", "fred", "gina", "hugo"];
    const SURNAME: [&str; 8] = [
        "lee", "smith", "brown", "jones", "clark", "young", "king", "moore",
    ];
    let mut data = Dataset::new(Schema::new(["given", "surname", "postcode", "dob"]));
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as usize
    };
    for i in 0..5_000 {
        let (g, s) = (GIVEN[next() % 8], SURNAME[next() % 8]);
        let postcode = format!("{}", 2000 + next() % 300);
        let dob = format!(
            "19{:02}{:02}{:02}",
            next() % 100,
            1 + next() % 12,
            1 + next() % 28
        );
        let given = if i % 3 == 0 {
            format!("{g}x")
        } else {
            g.to_owned()
        };
        data.push(
            i.to_string(),
            &[Some(given.as_str()), Some(s), Some(&postcode), Some(&dob)],
        )
        .unwrap();
    }
    let spec = LinkageSpec {
        comparisons: vec![
            FieldComparison::jaro_winkler("given", &[1.0, 0.9]),
            FieldComparison::jaro_winkler("surname", &[1.0, 0.9]),
            FieldComparison::new("dob", Comparator::DamerauLevenshtein, &[1.0, 0.875]),
        ],
        blocking: vec![BlockingRule::new("postcode").on("postcode", KeyTransform::Value)],
        blocking_options: BlockingOptions::default(),
        em: EmOptions::default(),
        thresholds: ThresholdPolicy::default(),
    };
    let linker = Linker::new(spec).unwrap();
    c.bench_function("dedupe_5000", |b| {
        b.iter(|| black_box(linker.dedupe(&data).unwrap()))
    });
}

criterion_group!(benches, comparators, dedupe);
criterion_main!(benches);
