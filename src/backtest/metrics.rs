//! How well a score ranks churners: plain functions of (score, churned) pairs, with no notion
//! of customers, dates or scorecards, so each can be checked on numbers worked out by hand.
//!
//! Throughout, a *low* score means *high* risk: the score is a health score, and a churner
//! should score below a customer who stays.

use serde::Serialize;

/// ROC AUC of `scores` as a churn predictor: the chance that a random churner scores below a
/// random customer who stays, ties counting half (the Mann–Whitney U statistic). 1 is a perfect
/// ranking, 0.5 a coin toss, below 0.5 worse than one. `None` without both classes.
pub fn auc(scores: &[f64], churned: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), churned.len());
    let positives = churned.iter().filter(|c| **c).count() as f64;
    let negatives = churned.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Walk the scores from high to low; every churner scoring below a stayer wins a pair.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut stayers_above, mut wins) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if churned[order[j]] {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            j += 1;
        }
        wins += pos * (stayers_above + neg / 2.0);
        stayers_above += neg;
        i = j;
    }
    Some(wins / (positives * negatives))
}

/// One point of a ROC curve: flagging every score at or below `threshold` catches `tpr` of the
/// churners and wrongly flags `fpr` of those who stay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// The ROC curve, from flagging nobody (0, 0) to flagging everyone (1, 1), one point per distinct
/// score (worst first). Empty without both classes.
pub fn roc(scores: &[f64], churned: &[bool]) -> Vec<RocPoint> {
    let positives = churned.iter().filter(|c| **c).count() as f64;
    let negatives = churned.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut points = vec![RocPoint { threshold: f64::NEG_INFINITY, fpr: 0.0, tpr: 0.0 }];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if churned[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if order.get(k + 1).is_none_or(|&n| scores[n] != scores[i]) {
            points.push(RocPoint { threshold: scores[i], fpr: fp / negatives, tpr: tp / positives });
        }
    }
    points
}

/// Keeps at most `max` points of a curve, evenly spread, always keeping both ends: enough to
/// draw it, small enough for a report.
pub fn thin<T: Copy>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max).map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)]).collect()
}

/// One bin of observations ranked by score, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Observations in the bin; fractional when a group of tied scores straddles two bins.
    pub count: f64,
    pub churned: f64,
    pub churn_rate: f64,
    pub min_score: f64,
    pub max_score: f64,
}

/// Splits the observations into `bins` equal-sized groups by score, lowest (riskiest) first.
/// Scores tied across a bin edge are shared between the two bins in proportion, at the group's
/// churn rate, so the figures do not depend on how ties happen to be ordered (caps make many
/// scores exactly equal).
pub fn risk_bins(scores: &[f64], churned: &[bool], bins: usize) -> Vec<Bin> {
    assert_eq!(scores.len(), churned.len());
    let n = scores.len() as f64;
    let mut out =
        vec![Bin { count: 0.0, churned: 0.0, churn_rate: 0.0, min_score: f64::NAN, max_score: f64::NAN }; bins];
    if scores.is_empty() || bins == 0 {
        return out;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let edge = |b: usize| n * b as f64 / bins as f64;
    let (mut start, mut i) = (0.0, 0);
    while i < order.len() {
        let score = scores[order[i]];
        let mut j = i;
        let mut pos = 0.0;
        while j < order.len() && scores[order[j]] == score {
            pos += churned[order[j]] as u8 as f64;
            j += 1;
        }
        let size = (j - i) as f64;
        let end = start + size;
        for (b, bin) in out.iter_mut().enumerate() {
            let overlap = end.min(edge(b + 1)) - start.max(edge(b));
            if overlap > 1e-12 {
                bin.count += overlap;
                bin.churned += pos * overlap / size;
                bin.min_score = if bin.min_score.is_nan() { score } else { bin.min_score.min(score) };
                bin.max_score = if bin.max_score.is_nan() { score } else { bin.max_score.max(score) };
            }
        }
        start = end;
        i = j;
    }
    for bin in &mut out {
        bin.churn_rate = if bin.count > 0.0 { bin.churned / bin.count } else { 0.0 };
    }
    out
}

/// How the worst-scored tenth of the observations compares with all of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lift {
    /// Churn rate in the worst decile over the overall churn rate (1: no better than chance).
    pub lift: f64,
    /// Share of all churning observations that fall in the worst decile.
    pub capture: f64,
}

/// Lift and capture of the worst decile. `None` when nobody churned.
pub fn worst_decile(scores: &[f64], churned: &[bool]) -> Option<Lift> {
    let total: f64 = churned.iter().filter(|c| **c).count() as f64;
    if total == 0.0 {
        return None;
    }
    let base = total / scores.len() as f64;
    let worst = risk_bins(scores, churned, 10)[0];
    Some(Lift { lift: worst.churn_rate / base, capture: worst.churned / total })
}

/// Precision and recall of a yes/no flag ("red", "red or yellow") as a churn alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlagQuality {
    pub flagged: u64,
    pub true_positives: u64,
    /// Of the flagged observations, the share that churned; `None` when none was flagged.
    pub precision: Option<f64>,
    /// Of the churning observations, the share that was flagged; `None` when none churned.
    pub recall: Option<f64>,
}

/// Precision and recall of `flagged` against `churned`.
pub fn flag_quality(flagged: &[bool], churned: &[bool]) -> FlagQuality {
    assert_eq!(flagged.len(), churned.len());
    let f = flagged.iter().filter(|x| **x).count() as u64;
    let tp = flagged.iter().zip(churned).filter(|(f, c)| **f && **c).count() as u64;
    let positives = churned.iter().filter(|x| **x).count() as u64;
    FlagQuality {
        flagged: f,
        true_positives: tp,
        precision: (f > 0).then(|| tp as f64 / f as f64),
        recall: (positives > 0).then(|| tp as f64 / positives as f64),
    }
}

/// The `q`-quantile (0..=1) of `values`, interpolating between neighbours; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn auc_of_a_perfect_a_reversed_and_a_tied_ranking() {
        let churned = [true, true, false, false, false];
        assert_eq!(auc(&[10.0, 20.0, 30.0, 40.0, 50.0], &churned), Some(1.0));
        assert_eq!(auc(&[50.0, 40.0, 30.0, 20.0, 10.0], &churned), Some(0.0));
        assert_eq!(auc(&[30.0; 5], &churned), Some(0.5));
        // One churner below all three stayers; the other ties one, is below one, above one:
        // (3 + 0.5 + 1) / 6.
        assert_eq!(auc(&[10.0, 40.0, 40.0, 50.0, 20.0], &[true, true, false, false, false]), Some(0.75));
        assert_eq!(auc(&[1.0, 2.0], &[false, false]), None);
    }

    #[test]
    fn auc_equals_the_share_of_correctly_ordered_pairs() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let scores: Vec<f64> = (0..300).map(|_| (r.gen_range(0..40) as f64) * 2.5).collect();
        let churned: Vec<bool> = (0..300).map(|_| r.gen_bool(0.2)).collect();
        let (mut wins, mut pairs) = (0.0, 0.0);
        for i in 0..300 {
            for j in 0..300 {
                if churned[i] && !churned[j] {
                    pairs += 1.0;
                    wins += if scores[i] < scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((auc(&scores, &churned).unwrap() - wins / pairs).abs() < 1e-12);
    }

    #[test]
    fn a_score_unrelated_to_churn_has_auc_near_one_half() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let scores: Vec<f64> = (0..20_000).map(|_| r.gen_range(0.0..100.0)).collect();
        let churned: Vec<bool> = (0..20_000).map(|_| r.gen_bool(0.1)).collect();
        let a = auc(&scores, &churned).unwrap();
        assert!((a - 0.5).abs() < 0.02, "auc {a}");
        let lift = worst_decile(&scores, &churned).unwrap().lift;
        assert!((lift - 1.0).abs() < 0.15, "lift {lift}");
    }

    #[test]
    fn roc_runs_from_nobody_flagged_to_everybody_and_its_area_is_the_auc() {
        let scores = [10.0, 40.0, 40.0, 50.0, 20.0, 70.0];
        let churned = [true, true, false, false, false, true];
        let curve = roc(&scores, &churned);
        assert_eq!((curve[0].fpr, curve[0].tpr), (0.0, 0.0));
        let last = curve.last().unwrap();
        assert_eq!((last.fpr, last.tpr), (1.0, 1.0));
        let area: f64 = curve.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum();
        assert!((area - auc(&scores, &churned).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn bins_rank_worst_first_and_share_tied_scores() {
        // 10 observations, 5 bins of 2. The three 30s straddle bins 1 and 2.
        let scores = [10.0, 20.0, 30.0, 30.0, 30.0, 60.0, 70.0, 80.0, 90.0, 95.0];
        let churned = [true, true, true, false, false, false, false, false, false, true];
        let bins = risk_bins(&scores, &churned, 5);
        assert_eq!(bins[0].count, 2.0);
        assert_eq!(bins[0].churned, 2.0);
        assert_eq!((bins[1].min_score, bins[1].max_score), (30.0, 30.0));
        assert!((bins[1].churned - 2.0 / 3.0).abs() < 1e-12, "two of the three tied, at their 1-in-3 rate");
        assert!((bins[2].churned - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(bins[4].churned, 1.0);
        let total: f64 = bins.iter().map(|b| b.count).sum();
        assert!((total - 10.0).abs() < 1e-9);
        // Worst decile: one observation (score 10, churned); 4 churners in 10.
        let l = worst_decile(&scores, &churned).unwrap();
        assert!((l.lift - 1.0 / 0.4).abs() < 1e-12);
        assert!((l.capture - 0.25).abs() < 1e-12);
    }

    #[test]
    fn precision_recall_and_quantiles() {
        let q = flag_quality(&[true, true, false, false], &[true, false, true, false]);
        assert_eq!((q.flagged, q.true_positives, q.precision, q.recall), (2, 1, Some(0.5), Some(0.5)));
        assert_eq!(flag_quality(&[false], &[false]).precision, None);
        assert_eq!(quantile(&[5.0, 1.0, 3.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(thin(&[1, 2, 3, 4, 5], 3), vec![1, 3, 5]);
    }
}
