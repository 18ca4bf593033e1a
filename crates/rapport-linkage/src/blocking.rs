//! Blocking: which pairs of records are compared at all.
//!
//! Exists because comparing every pair is quadratic (25 million pairs for two sets of
//! 5,000). A blocking rule builds a key per record from one or more fields (e.g. postcode,
//! or surname Soundex + birth year); only records sharing a key are paired. Several rules
//! are run as independent passes and their pairs unioned and deduplicated, so a true match
//! missed by one rule (a typo in the postcode) is caught by another.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Schema};
use crate::error::{LinkageError, Result};
use crate::phonetic::soundex;

/// How a field value is turned into part of a blocking key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "arg", rename_all = "snake_case")]
pub enum KeyTransform {
    /// The whole normalised value.
    Value,
    /// The first `n` characters.
    Prefix(usize),
    /// The last `n` characters.
    Suffix(usize),
    /// American Soundex code.
    Soundex,
    /// The first four characters when they are digits (the year of `YYYYMMDD`).
    Year,
    /// The value with its characters sorted: equal for anagrams and transpositions.
    SortedChars,
}

impl KeyTransform {
    fn apply(&self, value: &str, out: &mut String) -> bool {
        match *self {
            KeyTransform::Value => out.push_str(value),
            KeyTransform::Prefix(n) => out.extend(value.chars().take(n)),
            KeyTransform::Suffix(n) => {
                let count = value.chars().count();
                out.extend(value.chars().skip(count.saturating_sub(n)));
            }
            KeyTransform::Soundex => match soundex(value) {
                Some(code) => out.extend(code.iter().map(|&b| char::from(b))),
                None => return false,
            },
            KeyTransform::Year => {
                let year: String = value.chars().take(4).collect();
                if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                out.push_str(&year);
            }
            KeyTransform::SortedChars => {
                let mut chars: Vec<char> = value.chars().filter(|c| !c.is_whitespace()).collect();
                chars.sort_unstable();
                out.extend(chars);
            }
        }
        true
    }
}

/// One part of a blocking key: a field and a transform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPart {
    /// Field name.
    pub field: String,
    /// Transform of the field's value.
    pub transform: KeyTransform,
}

/// A blocking pass: records whose key parts all agree are candidate pairs. A record with a
/// missing value (or an empty transform) in any part takes no part in the pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingRule {
    /// Name used in statistics.
    pub name: String,
    /// Key parts; all must agree.
    pub parts: Vec<KeyPart>,
}

impl BlockingRule {
    /// A rule with no part yet; add parts with [`BlockingRule::on`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            parts: Vec::new(),
        }
    }

    /// Adds a key part.
    pub fn on(mut self, field: impl Into<String>, transform: KeyTransform) -> Self {
        self.parts.push(KeyPart {
            field: field.into(),
            transform,
        });
        self
    }

    fn compile(&self, schema: &Schema) -> Result<Vec<(usize, KeyTransform)>> {
        if self.parts.is_empty() {
            return Err(LinkageError::EmptyBlockingRule {
                rule: self.name.clone(),
            });
        }
        self.parts
            .iter()
            .map(|p| Ok((schema.index_of(&p.field)?, p.transform)))
            .collect()
    }

    fn keys(&self, data: &Dataset) -> Result<Vec<Option<String>>> {
        let parts = self.compile(data.schema())?;
        Ok((0..data.len() as u32)
            .map(|row| {
                let mut key = String::new();
                for (i, &(field, transform)) in parts.iter().enumerate() {
                    if i > 0 {
                        key.push('\u{1f}');
                    }
                    let value = data.value(row, field)?;
                    if !transform.apply(value, &mut key) {
                        return None;
                    }
                }
                Some(key)
            })
            .collect())
    }
}

/// Limits of blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingOptions {
    /// A block that would yield more pairs than this is skipped (and counted in
    /// [`BlockingStats::skipped_blocks`]): it means the key is too coarse, such as a
    /// common surname, and would swamp the run.
    pub max_block_pairs: usize,
}

impl Default for BlockingOptions {
    fn default() -> Self {
        Self {
            max_block_pairs: 200_000,
        }
    }
}

/// What a blocking pass produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    /// Rule name.
    pub rule: String,
    /// Pairs this rule proposed (before the union with other rules).
    pub pairs: usize,
    /// Blocks skipped for exceeding [`BlockingOptions::max_block_pairs`].
    pub skipped_blocks: usize,
}

/// Statistics of all passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingStats {
    /// One entry per rule, in order.
    pub rules: Vec<RuleStats>,
    /// Distinct candidate pairs after the union.
    pub candidate_pairs: usize,
    /// Total blocks skipped.
    pub skipped_blocks: usize,
}

#[inline]
fn pack(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Candidate pairs `(i, j)` with `i < j` within one data set (deduplication), sorted and
/// without repeats.
pub fn dedupe_pairs(
    data: &Dataset,
    rules: &[BlockingRule],
    options: &BlockingOptions,
) -> Result<(Vec<(u32, u32)>, BlockingStats)> {
    run(rules, |rule, packed, stats| {
        let keys = rule.keys(data)?;
        let mut blocks: HashMap<&str, Vec<u32>> = HashMap::new();
        for (row, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                blocks.entry(key.as_str()).or_default().push(row as u32);
            }
        }
        for rows in blocks.values() {
            let n = rows.len();
            if n * (n - 1) / 2 > options.max_block_pairs {
                stats.skipped_blocks += 1;
                continue;
            }
            for (k, &a) in rows.iter().enumerate() {
                for &b in &rows[k + 1..] {
                    packed.push(pack(a, b));
                    stats.pairs += 1;
                }
            }
        }
        Ok(())
    })
}

/// Candidate pairs `(left, right)` between two data sets (linkage), sorted and without
/// repeats.
pub fn link_pairs(
    left: &Dataset,
    right: &Dataset,
    rules: &[BlockingRule],
    options: &BlockingOptions,
) -> Result<(Vec<(u32, u32)>, BlockingStats)> {
    if left.schema() != right.schema() {
        return Err(LinkageError::SchemaMismatch);
    }
    run(rules, |rule, packed, stats| {
        let left_keys = rule.keys(left)?;
        let right_keys = rule.keys(right)?;
        let mut blocks: HashMap<&str, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for (row, key) in left_keys.iter().enumerate() {
            if let Some(key) = key {
                blocks.entry(key.as_str()).or_default().0.push(row as u32);
            }
        }
        for (row, key) in right_keys.iter().enumerate() {
            if let Some(key) = key
                && let Some(block) = blocks.get_mut(key.as_str())
            {
                block.1.push(row as u32);
            }
        }
        for (ls, rs) in blocks.values() {
            if ls.len() * rs.len() > options.max_block_pairs {
                stats.skipped_blocks += 1;
                continue;
            }
            for &a in ls {
                for &b in rs {
                    packed.push(pack(a, b));
                    stats.pairs += 1;
                }
            }
        }
        Ok(())
    })
}

fn run(
    rules: &[BlockingRule],
    mut pass: impl FnMut(&BlockingRule, &mut Vec<u64>, &mut RuleStats) -> Result<()>,
) -> Result<(Vec<(u32, u32)>, BlockingStats)> {
    if rules.is_empty() {
        return Err(LinkageError::NoBlockingRules);
    }
    let mut packed = Vec::new();
    let mut stats = BlockingStats {
        rules: Vec::with_capacity(rules.len()),
        candidate_pairs: 0,
        skipped_blocks: 0,
    };
    for rule in rules {
        let mut rule_stats = RuleStats {
            rule: rule.name.clone(),
            pairs: 0,
            skipped_blocks: 0,
        };
        pass(rule, &mut packed, &mut rule_stats)?;
        stats.skipped_blocks += rule_stats.skipped_blocks;
        stats.rules.push(rule_stats);
    }
    packed.sort_unstable();
    packed.dedup();
    stats.candidate_pairs = packed.len();
    let pairs = packed
        .into_iter()
        .map(|p| ((p >> 32) as u32, p as u32))
        .collect();
    Ok((pairs, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: &[[&str; 2]]) -> Dataset {
        let mut d = Dataset::new(Schema::new(["surname", "postcode"]));
        for (i, r) in rows.iter().enumerate() {
            d.push(i.to_string(), &[Some(r[0]), Some(r[1])]).unwrap();
        }
        d
    }

    #[test]
    fn union_of_passes_is_deduplicated() {
        let d = data(&[
            ["smith", "2000"],
            ["smyth", "2000"],
            ["smith", "3000"],
            ["jones", "4000"],
        ]);
        let rules = [
            BlockingRule::new("postcode").on("postcode", KeyTransform::Value),
            BlockingRule::new("surname").on("surname", KeyTransform::Soundex),
        ];
        let (pairs, stats) = dedupe_pairs(&d, &rules, &BlockingOptions::default()).unwrap();
        assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(stats.rules[0].pairs, 1);
        assert_eq!(stats.rules[1].pairs, 3);
        assert_eq!(stats.candidate_pairs, 3);
    }

    #[test]
    fn linkage_pairs_cross_sets_only() {
        let l = data(&[["smith", "2000"], ["jones", "2000"]]);
        let r = data(&[["smith", "2001"], ["brown", "2000"]]);
        let rules = [
            BlockingRule::new("postcode").on("postcode", KeyTransform::Value),
            BlockingRule::new("surname").on("surname", KeyTransform::Value),
        ];
        let (pairs, _) = link_pairs(&l, &r, &rules, &BlockingOptions::default()).unwrap();
        assert_eq!(pairs, vec![(0, 0), (0, 1), (1, 1)]);
    }

    #[test]
    fn oversized_blocks_are_skipped() {
        let d = data(&[["a", "1"], ["b", "1"], ["c", "1"]]);
        let rules = [BlockingRule::new("pc").on("postcode", KeyTransform::Value)];
        let opts = BlockingOptions { max_block_pairs: 2 };
        let (pairs, stats) = dedupe_pairs(&d, &rules, &opts).unwrap();
        assert!(pairs.is_empty());
        assert_eq!(stats.skipped_blocks, 1);
    }

    #[test]
    fn transforms() {
        let mut s = String::new();
        assert!(KeyTransform::Year.apply("19560409", &mut s));
        assert_eq!(s, "1956");
        s.clear();
        assert!(!KeyTransform::Year.apply("56", &mut s));
        s.clear();
        KeyTransform::Suffix(2).apply("abcd", &mut s);
        assert_eq!(s, "cd");
        s.clear();
        KeyTransform::SortedChars.apply("cab", &mut s);
        assert_eq!(s, "abc");
    }

    #[test]
    fn missing_values_do_not_block() {
        let mut d = Dataset::new(Schema::new(["surname", "postcode"]));
        d.push("a", &[Some("x"), None::<&str>]).unwrap();
        d.push("b", &[Some("y"), None]).unwrap();
        let rules = [BlockingRule::new("pc").on("postcode", KeyTransform::Value)];
        let (pairs, _) = dedupe_pairs(&d, &rules, &BlockingOptions::default()).unwrap();
        assert!(pairs.is_empty());
    }
}
