//! The linkage pipeline: blocking → comparison vectors → EM → scores → decisions.
//!
//! Exists as the one entry point the import and identity layers call. A [`LinkageSpec`]
//! says which fields to compare and how, which blocking passes to run, how to estimate
//! and where to cut; [`Linker::dedupe`] (one data set) and [`Linker::link`] (two data
//! sets) run it. Each candidate pair's comparison vector is computed once, in parallel
//! over the pairs, and stored flat; EM runs over the distinct vectors; the result keeps
//! everything needed to explain each decision.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::blocking::{self, BlockingOptions, BlockingRule, BlockingStats};
use crate::cluster;
use crate::compare::{FieldComparison, Level, MISSING_LEVEL};
use crate::dataset::{Dataset, Schema};
use crate::em::{self, EmOptions, PatternTable};
use crate::error::{LinkageError, Result};
use crate::model::{Decision, FieldEvidence, Model, PairExplanation, ThresholdPolicy, Thresholds};

/// Everything that configures a linkage run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkageSpec {
    /// Field comparisons, in comparison-vector order.
    pub comparisons: Vec<FieldComparison>,
    /// Blocking passes, unioned.
    pub blocking: Vec<BlockingRule>,
    /// Blocking limits.
    #[serde(default)]
    pub blocking_options: BlockingOptions,
    /// EM options.
    #[serde(default)]
    pub em: EmOptions,
    /// Where to cut between match, review and non-match.
    #[serde(default)]
    pub thresholds: ThresholdPolicy,
}

impl LinkageSpec {
    /// Checks the spec on its own (field names are checked against a schema at run time).
    pub fn validate(&self) -> Result<()> {
        if self.comparisons.is_empty() {
            return Err(LinkageError::NoComparisons);
        }
        if self.blocking.is_empty() {
            return Err(LinkageError::NoBlockingRules);
        }
        for c in &self.comparisons {
            c.validate()?;
        }
        self.em.validate()
    }
}

/// Whether a run deduplicated one data set or linked two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Pairs within one data set, `left < right`.
    Dedupe,
    /// Pairs `(left record, right record)` across two data sets.
    Link,
}

/// One scored candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredPair {
    /// Index of the left record (in the only data set when deduplicating).
    pub left: u32,
    /// Index of the right record.
    pub right: u32,
    /// Total match weight.
    pub weight: f64,
    /// Posterior match probability.
    pub probability: f64,
    /// Decision.
    pub decision: Decision,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct LinkageResult {
    mode: Mode,
    model: Model,
    thresholds: Thresholds,
    blocking: BlockingStats,
    pairs: Vec<ScoredPair>,
    /// Flat comparison vectors, one row of `model.comparisons().len()` codes per pair.
    vectors: Vec<u8>,
    distinct_vectors: usize,
    left_len: usize,
}

impl LinkageResult {
    /// Dedupe or link.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fitted model (reusable to score new pairs without re-estimating).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The weight thresholds applied.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Blocking statistics.
    pub fn blocking(&self) -> &BlockingStats {
        &self.blocking
    }

    /// Number of distinct comparison vectors EM ran on.
    pub fn distinct_vectors(&self) -> usize {
        self.distinct_vectors
    }

    /// All candidate pairs, sorted by `(left, right)`.
    pub fn pairs(&self) -> &[ScoredPair] {
        &self.pairs
    }

    /// Pairs decided as matches.
    pub fn matches(&self) -> impl Iterator<Item = &ScoredPair> {
        self.with_decision(Decision::Match)
    }

    /// Pairs in the review band.
    pub fn review(&self) -> impl Iterator<Item = &ScoredPair> {
        self.with_decision(Decision::Review)
    }

    fn with_decision(&self, d: Decision) -> impl Iterator<Item = &ScoredPair> {
        self.pairs.iter().filter(move |p| p.decision == d)
    }

    /// Comparison vector of pair `index` (an index into [`LinkageResult::pairs`]).
    pub fn comparison_vector(&self, index: usize) -> Vec<Level> {
        self.codes(index)
            .iter()
            .map(|&c| Level::from_code(c))
            .collect()
    }

    fn codes(&self, index: usize) -> &[u8] {
        let n = self.model.comparisons().len();
        &self.vectors[index * n..(index + 1) * n]
    }

    /// For deduplication: clusters (two or more records) formed transitively by matched
    /// pairs. For linkage: clusters over left indices `0..L` and right indices offset by
    /// `L` (the number of left records).
    pub fn clusters(&self) -> Vec<Vec<u32>> {
        let offset = match self.mode {
            Mode::Dedupe => 0,
            Mode::Link => self.left_len as u32,
        };
        let n = match self.mode {
            Mode::Dedupe => self.left_len,
            Mode::Link => {
                self.left_len
                    + self
                        .pairs
                        .iter()
                        .map(|p| p.right as usize + 1)
                        .max()
                        .unwrap_or(0)
            }
        };
        cluster::clusters(n, self.matches().map(|p| (p.left, p.right + offset)))
    }

    /// Keeps, for linkage where each record has at most one counterpart, only the
    /// matches that are the best for both of their records (ties keep the first);
    /// the other matches become review items. Does nothing for deduplication.
    pub fn enforce_one_to_one(&mut self) {
        if self.mode != Mode::Link {
            return;
        }
        let mut best_left: HashMap<u32, f64> = HashMap::new();
        let mut best_right: HashMap<u32, f64> = HashMap::new();
        for p in self.pairs.iter().filter(|p| p.decision == Decision::Match) {
            let l = best_left.entry(p.left).or_insert(f64::NEG_INFINITY);
            *l = l.max(p.weight);
            let r = best_right.entry(p.right).or_insert(f64::NEG_INFINITY);
            *r = r.max(p.weight);
        }
        let mut taken_left = std::collections::HashSet::new();
        let mut taken_right = std::collections::HashSet::new();
        for p in self
            .pairs
            .iter_mut()
            .filter(|p| p.decision == Decision::Match)
        {
            let best = p.weight >= best_left[&p.left] && p.weight >= best_right[&p.right];
            if best && taken_left.insert(p.left) && taken_right.insert(p.right) {
                continue;
            }
            p.decision = Decision::Review;
        }
    }

    /// Full explanation of pair `index`. Pass the data set(s) the run was made on
    /// (`right` is ignored for deduplication).
    pub fn explain(&self, index: usize, left: &Dataset, right: &Dataset) -> PairExplanation {
        let right = match self.mode {
            Mode::Dedupe => left,
            Mode::Link => right,
        };
        let pair = self.pairs[index];
        let params = self.model.parameters();
        let fields = self
            .model
            .comparisons()
            .iter()
            .zip(self.codes(index))
            .enumerate()
            .map(|(f, (c, &code))| {
                let field = left.schema().index_of(&c.field).ok();
                let level = Level::from_code(code);
                let (m, u) = match level {
                    Level::Missing => (None, None),
                    Level::Agreement(l) => (
                        Some(params.m[f][usize::from(l)]),
                        Some(params.u[f][usize::from(l)]),
                    ),
                };
                FieldEvidence {
                    field: c.field.clone(),
                    left_value: field
                        .and_then(|i| left.value(pair.left, i))
                        .map(str::to_owned),
                    right_value: field
                        .and_then(|i| right.value(pair.right, i))
                        .map(str::to_owned),
                    level,
                    level_label: c.level_label(level),
                    m,
                    u,
                    weight: self.model.weight(f, level),
                }
            })
            .collect();
        PairExplanation {
            left_id: left.external_id(pair.left).to_owned(),
            right_id: right.external_id(pair.right).to_owned(),
            fields,
            prior_weight: self.model.prior_weight(),
            total_weight: pair.weight,
            match_probability: pair.probability,
            thresholds: self.thresholds,
            decision: pair.decision,
        }
    }
}

/// Schema positions of a comparison's field and of its swap partner.
#[derive(Debug, Clone, Copy)]
struct FieldIndex {
    field: usize,
    swap: Option<usize>,
}

/// Runs a [`LinkageSpec`].
#[derive(Debug, Clone)]
pub struct Linker {
    spec: LinkageSpec,
}

impl Linker {
    /// A linker for a validated spec.
    pub fn new(spec: LinkageSpec) -> Result<Self> {
        spec.validate()?;
        Ok(Self { spec })
    }

    /// The spec.
    pub fn spec(&self) -> &LinkageSpec {
        &self.spec
    }

    /// Finds duplicates within one data set, estimating the model by EM.
    pub fn dedupe(&self, data: &Dataset) -> Result<LinkageResult> {
        let fields = self.field_indices(data.schema())?;
        let (pairs, stats) =
            blocking::dedupe_pairs(data, &self.spec.blocking, &self.spec.blocking_options)?;
        self.run(Mode::Dedupe, data, data, &fields, pairs, stats, None)
    }

    /// Finds records of `left` and `right` that are the same entity, estimating the
    /// model by EM.
    pub fn link(&self, left: &Dataset, right: &Dataset) -> Result<LinkageResult> {
        if left.schema() != right.schema() {
            return Err(LinkageError::SchemaMismatch);
        }
        let fields = self.field_indices(left.schema())?;
        let (pairs, stats) = blocking::link_pairs(
            left,
            right,
            &self.spec.blocking,
            &self.spec.blocking_options,
        )?;
        self.run(Mode::Link, left, right, &fields, pairs, stats, None)
    }

    /// Like [`Linker::dedupe`] but scores with an already fitted model (no EM), e.g. the
    /// model of a previous import. The model's comparisons must be the spec's.
    pub fn dedupe_with_model(&self, data: &Dataset, model: &Model) -> Result<LinkageResult> {
        self.check_model(model)?;
        let fields = self.field_indices(data.schema())?;
        let (pairs, stats) =
            blocking::dedupe_pairs(data, &self.spec.blocking, &self.spec.blocking_options)?;
        self.run(Mode::Dedupe, data, data, &fields, pairs, stats, Some(model))
    }

    /// Like [`Linker::link`] but scores with an already fitted model (no EM).
    pub fn link_with_model(
        &self,
        left: &Dataset,
        right: &Dataset,
        model: &Model,
    ) -> Result<LinkageResult> {
        self.check_model(model)?;
        if left.schema() != right.schema() {
            return Err(LinkageError::SchemaMismatch);
        }
        let fields = self.field_indices(left.schema())?;
        let (pairs, stats) = blocking::link_pairs(
            left,
            right,
            &self.spec.blocking,
            &self.spec.blocking_options,
        )?;
        self.run(Mode::Link, left, right, &fields, pairs, stats, Some(model))
    }

    fn check_model(&self, model: &Model) -> Result<()> {
        if model.comparisons() != self.spec.comparisons.as_slice() {
            return Err(LinkageError::InvalidOption {
                option: "model",
                reason: "the model was fitted with different comparisons".into(),
            });
        }
        Ok(())
    }

    fn field_indices(&self, schema: &Schema) -> Result<Vec<FieldIndex>> {
        self.spec
            .comparisons
            .iter()
            .map(|c| {
                Ok(FieldIndex {
                    field: schema.index_of(&c.field)?,
                    swap: c
                        .swap_with
                        .as_deref()
                        .map(|s| schema.index_of(s))
                        .transpose()?,
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        mode: Mode,
        left: &Dataset,
        right: &Dataset,
        fields: &[FieldIndex],
        pairs: Vec<(u32, u32)>,
        blocking: BlockingStats,
        fitted: Option<&Model>,
    ) -> Result<LinkageResult> {
        if pairs.is_empty() {
            return Err(LinkageError::NoCandidatePairs);
        }
        let comparisons = &self.spec.comparisons;
        let n = comparisons.len();
        let vectors = comparison_vectors(left, right, fields, comparisons, &pairs);

        // Aggregate identical vectors.
        let mut index: HashMap<&[u8], u32> = HashMap::new();
        let mut pattern_of = Vec::with_capacity(pairs.len());
        let mut counts: Vec<f64> = Vec::new();
        let mut table = PatternTable::new(comparisons.iter().map(|c| c.levels()).collect());
        for row in vectors.chunks_exact(n) {
            let next = index.len() as u32;
            let id = *index.entry(row).or_insert(next);
            if id == next {
                counts.push(0.0);
            }
            counts[id as usize] += 1.0;
            pattern_of.push(id);
        }
        let mut distinct: Vec<(&[u8], u32)> = index.into_iter().collect();
        distinct.sort_unstable_by_key(|&(_, id)| id);
        for &(row, id) in &distinct {
            table.push_codes(row, counts[id as usize]);
        }

        let model = match fitted {
            Some(model) => model.clone(),
            None => Model::new(comparisons.clone(), em::estimate(&table, &self.spec.em)?)?,
        };
        let thresholds = model.thresholds(&self.spec.thresholds)?;
        let pattern_scores: Vec<(f64, f64, Decision)> = distinct
            .iter()
            .map(|&(row, _)| {
                let w = model.total_weight_codes(row);
                (w, model.probability(w), thresholds.decide(w))
            })
            .collect();
        let scored = pairs
            .iter()
            .zip(&pattern_of)
            .map(|(&(l, r), &p)| {
                let (weight, probability, decision) = pattern_scores[p as usize];
                ScoredPair {
                    left: l,
                    right: r,
                    weight,
                    probability,
                    decision,
                }
            })
            .collect();
        Ok(LinkageResult {
            mode,
            model,
            thresholds,
            blocking,
            pairs: scored,
            distinct_vectors: distinct.len(),
            vectors,
            left_len: left.len(),
        })
    }
}

/// Computes every pair's comparison vector, in parallel over chunks of pairs.
fn comparison_vectors(
    left: &Dataset,
    right: &Dataset,
    fields: &[FieldIndex],
    comparisons: &[FieldComparison],
    pairs: &[(u32, u32)],
) -> Vec<u8> {
    let n = comparisons.len();
    let mut out = vec![MISSING_LEVEL; pairs.len() * n];
    const CHUNK: usize = 1024;
    out.par_chunks_mut(CHUNK * n)
        .zip(pairs.par_chunks(CHUNK))
        .for_each(|(out, pairs)| {
            for (row, &(l, r)) in out.chunks_exact_mut(n).zip(pairs) {
                let (l, r) = (l as usize, r as usize);
                for ((slot, c), f) in row.iter_mut().zip(comparisons).zip(fields) {
                    let (a, b) = (left.columns[f.field].get(l), right.columns[f.field].get(r));
                    *slot = match f.swap {
                        None => c.compare(a, b),
                        Some(g) => {
                            let (ao, bo) = (left.columns[g].get(l), right.columns[g].get(r));
                            c.compare_swapped(a, b, ao, bo)
                        }
                    };
                }
            }
        });
    out
}
