//! Evaluation metrics for a binary churn classifier: ROC AUC and log-loss.

use super::ChurnError;

fn check_inputs(values: &[f64], labels: &[bool], what: &str) -> Result<(usize, usize), ChurnError> {
    if values.len() != labels.len() {
        return Err(ChurnError::LengthMismatch {
            expected: labels.len(),
            found: values.len(),
        });
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ChurnError::NonFinite(format!("{what}[{i}]")));
    }
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Err(ChurnError::SingleClass);
    }
    Ok((pos, neg))
}

/// Area under the ROC curve, computed from ranks (the Mann–Whitney U statistic).
///
/// `AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋)`, where `R₊` is the sum of the ranks of the positives
/// among all scores (ascending, ranks from 1). Tied scores share their average rank, so a tie
/// between a positive and a negative counts one half — the same value as the trapezoidal area
/// under the ROC curve. Only the order of the scores matters.
///
/// Errors: different lengths, a non-finite score, or labels of a single class.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, ChurnError> {
    let (pos, neg) = check_inputs(scores, labels, "score")?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += avg_rank * pos_in_tie as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean binary cross-entropy `−mean(y ln p + (1−y) ln(1−p))`, probabilities clipped to
/// `[1e-15, 1 − 1e-15]` so that a confident mistake costs a large but finite amount.
///
/// Errors: different lengths, an empty input, or a probability outside `[0, 1]` / not finite.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> Result<f64, ChurnError> {
    if probabilities.len() != labels.len() {
        return Err(ChurnError::LengthMismatch {
            expected: labels.len(),
            found: probabilities.len(),
        });
    }
    if labels.is_empty() {
        return Err(ChurnError::EmptyData);
    }
    const EPS: f64 = 1e-15;
    let mut total = 0.0;
    for (i, (&p, &y)) in probabilities.iter().zip(labels).enumerate() {
        if !(0.0..=1.0).contains(&p) {
            return Err(ChurnError::NonFinite(format!("probability[{i}] = {p}")));
        }
        let p = p.clamp(EPS, 1.0 - EPS);
        total -= if y { p.ln() } else { (1.0 - p).ln() };
    }
    Ok(total / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_known_answers() {
        // Perfect, reversed and uninformative rankings.
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap(),
            1.0
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]).unwrap(),
            0.0
        );
        assert_eq!(
            roc_auc(&[0.5; 4], &[false, true, false, true]).unwrap(),
            0.5
        );
        // Hand-computed: pairs (pos, neg): (0.35 vs 0.1 ✓, vs 0.4 ✗), (0.8 vs both ✓) → 3/4.
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
            0.75
        );
        // A tie between a positive and a negative counts ½: pairs (0.5,0.5)=½, (0.5,0.1)=1,
        // (0.9,0.5)=1, (0.9,0.1)=1 → 3.5/4.
        assert_eq!(
            roc_auc(&[0.1, 0.5, 0.5, 0.9], &[false, false, true, true]).unwrap(),
            0.875
        );
    }

    #[test]
    fn auc_matches_pairwise_count() {
        let scores = [0.3, 0.3, 0.1, 0.7, 0.7, 0.7, 0.2, 0.9, 0.3];
        let labels = [true, false, false, true, false, true, true, false, false];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..scores.len() {
            for j in 0..scores.len() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!((auc - wins / pairs).abs() < 1e-12);
    }

    #[test]
    fn auc_errors() {
        assert_eq!(
            roc_auc(&[0.1, 0.2], &[true, true]),
            Err(ChurnError::SingleClass)
        );
        assert!(matches!(
            roc_auc(&[0.1], &[true, false]),
            Err(ChurnError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_auc(&[f64::NAN, 0.1], &[true, false]),
            Err(ChurnError::NonFinite(_))
        ));
    }

    #[test]
    fn log_loss_known_answers() {
        let ll = log_loss(&[0.5, 0.5], &[true, false]).unwrap();
        assert!((ll - std::f64::consts::LN_2).abs() < 1e-12);
        let ll = log_loss(&[0.9, 0.2], &[true, false]).unwrap();
        assert!((ll - (-(0.9f64.ln() + 0.8f64.ln()) / 2.0)).abs() < 1e-12);
        assert!(log_loss(&[0.0], &[true]).unwrap().is_finite());
        assert!(log_loss(&[1.5], &[true]).is_err());
        assert_eq!(log_loss(&[], &[]), Err(ChurnError::EmptyData));
    }
}
