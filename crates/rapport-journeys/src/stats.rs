//! Where customers flow and where they stall: the [`Decision`]s of a journey version folded
//! into counts per node, and the holdout's lift.
//!
//! The fold is incremental and order-free within what it counts (sums and histograms), so
//! the engine adds each batch's decisions to stored counts and a preview folds a whole
//! simulated run; both give the same numbers for the same decisions.

use crate::machine::Decision;
use rapport_core::histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Time on a node is kept in milliseconds in a log-scale histogram of this many buckets
/// (1.1^400 ms is far beyond any wait).
const TIME_BUCKETS: u16 = 400;

/// One node's flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Customers who reached the node.
    pub entered: u64,
    /// Customers who left it for another node.
    pub passed: u64,
    /// Customers who ended on it, by reason (`completed`, `rule:unsubscribed`, …).
    pub exited: BTreeMap<String, u64>,
    /// Messages and other actions taken on it.
    pub actions: u64,
    /// Messages not sent, by reason (`consent`, `capped`, `quiet_hours`).
    pub skipped: BTreeMap<String, u64>,
    /// Conversions of customers standing on it.
    pub conversions: u64,
    /// Milliseconds spent on it by those who left it (log-scale buckets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub time: BTreeMap<u16, u64>,
    /// Customers who left it by each way out (`to` node or branch explanation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u64>,
}

impl NodeStats {
    /// Customers on the node now.
    pub fn waiting(&self) -> u64 {
        let exited: u64 = self.exited.values().sum();
        self.entered.saturating_sub(self.passed + exited)
    }

    /// Median and 90th percentile of the time on the node, seconds (within 10 %, or
    /// 1.1 ms for steps passed at once).
    pub fn time_quantiles(&self) -> (Option<f64>, Option<f64>) {
        let seconds = |q| histogram::quantile(&self.time, q).map(|ms| ms / 1000.0);
        (seconds(0.5), seconds(0.9))
    }
}

/// A journey version's flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Entries outside the holdout.
    pub entered: u64,
    pub holdout_entered: u64,
    pub converted: u64,
    pub holdout_converted: u64,
    /// Ended instances, by reason.
    pub exited: BTreeMap<String, u64>,
    pub nodes: BTreeMap<String, NodeStats>,
    /// At each choice node (split, branch, event wait), by the way taken: customers who
    /// took it and those of them who converted — conversions by branch and by arm.
    pub ways: BTreeMap<String, BTreeMap<String, WayStats>>,
    /// Instances moved into this version from another by a migration (they count on
    /// their new node, not in `entered`); those moved out count in `exited` as `migrated`.
    #[serde(default)]
    pub migrated_in: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WayStats {
    pub entered: u64,
    pub converted: u64,
}

/// The holdout's effect on the conversion rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    pub treated_rate: f64,
    pub holdout_rate: f64,
    /// `treated_rate − holdout_rate`, in fractions.
    pub difference: f64,
    /// 95 % Newcombe (hybrid score) interval of the difference.
    pub low: f64,
    pub high: f64,
}

impl FlowStats {
    /// Adds one decision.
    pub fn add(&mut self, d: &Decision) {
        match d {
            Decision::Entered { holdout: true, .. } => self.holdout_entered += 1,
            Decision::Entered { .. } => self.entered += 1,
            Decision::Moved {
                from,
                to,
                after_ms,
                way,
                ..
            } => {
                if let Some(from) = from {
                    let n = self.nodes.entry(from.clone()).or_default();
                    n.passed += 1;
                    *n.to.entry(to.clone()).or_default() += 1;
                    let ms = *after_ms as f64;
                    *n.time
                        .entry(histogram::bucket_of(ms, TIME_BUCKETS))
                        .or_default() += 1;
                    if let Some(way) = way {
                        let w = self
                            .ways
                            .entry(from.clone())
                            .or_default()
                            .entry(way.clone())
                            .or_default();
                        w.entered += 1;
                    }
                }
                self.nodes.entry(to.clone()).or_default().entered += 1;
            }
            Decision::Act(a) => self.nodes.entry(a.node.clone()).or_default().actions += 1,
            Decision::Skipped { node, why } => {
                let reason = match why {
                    crate::machine::SkipReason::Consent { .. } => "consent",
                    crate::machine::SkipReason::Capped { .. } => "capped",
                    crate::machine::SkipReason::QuietHours => "quiet_hours",
                };
                *self
                    .nodes
                    .entry(node.clone())
                    .or_default()
                    .skipped
                    .entry(reason.to_owned())
                    .or_default() += 1;
            }
            Decision::Converted {
                node,
                path,
                holdout,
            } => {
                if *holdout {
                    self.holdout_converted += 1;
                    return;
                }
                self.converted += 1;
                self.nodes.entry(node.clone()).or_default().conversions += 1;
                for (choice, way) in path {
                    self.ways
                        .entry(choice.clone())
                        .or_default()
                        .entry(way.clone())
                        .or_default()
                        .converted += 1;
                }
            }
            Decision::Exited {
                node,
                reason,
                after_ms,
                holdout,
                way,
                ..
            } => {
                let reason = reason.to_string();
                *self.exited.entry(reason.clone()).or_default() += 1;
                // A holdout instance stands on no node.
                if *holdout {
                    return;
                }
                if let Some(way) = way {
                    let w = self.ways.entry(node.clone()).or_default();
                    w.entry(way.clone()).or_default().entered += 1;
                }
                let n = self.nodes.entry(node.clone()).or_default();
                *n.exited.entry(reason).or_default() += 1;
                let ms = *after_ms as f64;
                *n.time
                    .entry(histogram::bucket_of(ms, TIME_BUCKETS))
                    .or_default() += 1;
            }
            // The version moved out of: the instance leaves its node as `migrated`.
            Decision::Migrated {
                from_node, holdout, ..
            } => {
                *self.exited.entry("migrated".to_owned()).or_default() += 1;
                if !*holdout {
                    let n = self.nodes.entry(from_node.clone()).or_default();
                    *n.exited.entry("migrated".to_owned()).or_default() += 1;
                }
            }
            Decision::Waiting { .. } | Decision::Delayed { .. } => {}
        }
    }

    /// Adds a migration to the version moved into: the instance stands on its new node.
    pub fn add_migrated_in(&mut self, d: &Decision) {
        if let Decision::Migrated {
            to_node, holdout, ..
        } = d
        {
            self.migrated_in += 1;
            if !*holdout {
                self.nodes.entry(to_node.clone()).or_default().entered += 1;
            }
        }
    }

    /// Customers inside now, outside the holdout.
    pub fn active(&self) -> u64 {
        self.nodes.values().map(NodeStats::waiting).sum()
    }

    /// The treated customers' conversion rate against the holdout's, when both groups have
    /// entries.
    pub fn lift(&self) -> Option<Lift> {
        let (s1, n1) = (self.converted as usize, self.entered as usize);
        let (s2, n2) = (
            self.holdout_converted as usize,
            self.holdout_entered as usize,
        );
        let i = rapport_value::survey::difference_interval(s1, n1, s2, n2, 1.959_964)?;
        let (p1, p2) = (s1 as f64 / n1 as f64, s2 as f64 / n2 as f64);
        Some(Lift {
            treated_rate: p1,
            holdout_rate: p2,
            difference: p1 - p2,
            low: i.low,
            high: i.high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lift_compares_the_treated_with_the_holdout() {
        let stats = FlowStats {
            entered: 70,
            converted: 56,
            holdout_entered: 80,
            holdout_converted: 48,
            ..FlowStats::default()
        };
        let lift = stats.lift().unwrap();
        assert!((lift.difference - 0.2).abs() < 1e-12);
        // Newcombe's own example: 56/70 − 48/80, 95 % interval (0.0524, 0.3339).
        assert!((lift.low - 0.0524).abs() < 5e-4 && (lift.high - 0.3339).abs() < 5e-4);
        assert!(FlowStats::default().lift().is_none(), "no holdout, no lift");
    }
}
