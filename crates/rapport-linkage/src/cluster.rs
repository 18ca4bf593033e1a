//! Transitive clustering of matched pairs.
//!
//! Exists because deduplication decides on pairs but the identity layer merges groups: if
//! A matches B and B matches C, all three become one profile. A union–find (with path
//! halving and union by size) turns matched pairs into clusters in near-linear time.

/// Disjoint sets over `0..n`.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` singleton sets.
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    /// Representative of `x`'s set.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Joins the sets of `a` and `b`; returns whether they were apart.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return false;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
        true
    }
}

/// Clusters of two or more of the `n` records joined by `pairs`; each cluster sorted,
/// clusters ordered by their smallest member.
pub fn clusters(n: usize, pairs: impl IntoIterator<Item = (u32, u32)>) -> Vec<Vec<u32>> {
    let mut uf = UnionFind::new(n);
    for (a, b) in pairs {
        uf.union(a, b);
    }
    let mut by_root: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for x in 0..n as u32 {
        by_root.entry(uf.find(x)).or_default().push(x);
    }
    let mut out: Vec<Vec<u32>> = by_root.into_values().filter(|c| c.len() > 1).collect();
    out.sort_unstable_by_key(|c| c[0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitive() {
        let c = clusters(7, [(0, 1), (1, 2), (4, 5), (2, 0)]);
        assert_eq!(c, vec![vec![0, 1, 2], vec![4, 5]]);
    }

    #[test]
    fn no_pairs_no_clusters() {
        assert!(clusters(3, []).is_empty());
    }
}
