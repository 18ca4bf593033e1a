//! Seeded, deterministic randomness and stratified train/test splits.
//!
//! The generator is SplitMix64: tiny, fast and fully specified, so a seed gives the same split
//! on every platform and every release of Rapport (no dependency whose stream may change).

use super::ChurnError;

/// A small deterministic pseudo-random generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, bound)`; `bound == 0` gives 0. Unbiased (rejection sampling).
    pub fn next_below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }

    /// A standard normal draw (Box–Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.next_below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Row indices of a train/test split, each list in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits rows into train and test sets, keeping the share of positives the same in both.
///
/// Each class is shuffled with the seeded generator and `round(n_class × test_fraction)` of its
/// rows go to the test set; a class with at least two rows always keeps at least one row on
/// each side. Same labels + same seed ⇒ same split.
pub fn stratified_split(
    labels: &[bool],
    test_fraction: f64,
    seed: u64,
) -> Result<Split, ChurnError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(ChurnError::InvalidConfig(format!(
            "test_fraction must be in (0, 1), got {test_fraction}"
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let mut train = Vec::with_capacity(labels.len());
    let mut test = Vec::new();
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut idx);
        let n = idx.len();
        let mut n_test = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            n_test = n_test.clamp(1, n - 1);
        } else {
            n_test = 0;
        }
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_stratified_and_a_partition() {
        let labels: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let a = stratified_split(&labels, 0.2, 7).unwrap();
        let b = stratified_split(&labels, 0.2, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.train.len() + a.test.len(), 1000);
        assert_eq!(a.test.len(), 200);
        let pos_test = a.test.iter().filter(|&&i| labels[i]).count();
        assert_eq!(pos_test, 50);
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let c = stratified_split(&labels, 0.2, 8).unwrap();
        assert_ne!(a.test, c.test);
    }

    #[test]
    fn split_rejects_bad_fraction() {
        assert!(stratified_split(&[true, false], 0.0, 1).is_err());
        assert!(stratified_split(&[true, false], 1.0, 1).is_err());
        assert!(stratified_split(&[true, false], f64::NAN, 1).is_err());
    }

    #[test]
    fn splitmix_known_first_value() {
        // Reference value of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
