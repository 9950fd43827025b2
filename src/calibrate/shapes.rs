//! Learning each signal's curve from churn history: which values of which signals went with
//! churn in the fit period, as a monotone step curve a CS person can read.
//!
//! For every signal the engine computes (usage, support, billing, renewal timing, tenure), the
//! fit period's observations that have a value are cut into about ten bins of equal count at
//! distinct values. Each bin's churn rate (within the horizon) is shrunk towards the signal's
//! overall rate (a prior of `PRIOR` = 20 observations), then made monotone in the direction the
//! signal ranks churn (pool-adjacent-violators, weighted by count): a curve may say "the more
//! the better" or "the less the better", never "22 is good but 23 is bad", which would be noise
//! fitted. The safest bin gets 100 points, the riskiest 0, the rest in proportion to their churn
//! rates. Observations without a value (no NPS answer yet) get the points their own churn rate
//! earns, as a `missing` score. A signal is kept when its learned points alone rank the fit
//! period's churn with an AUC at least [`MIN_GINI`] / 2 away from a coin toss; the strongest
//! [`MAX_COMPONENTS`] are kept, and the weights are then fitted together (see
//! [`super::fit_weights`]).

use crate::backtest::metrics::auc;
use crate::backtest::Observation;
use crate::signal::Signal;

/// Bins a signal's values are cut into (fewer where values repeat).
const BINS: usize = 10;
/// Observations of prior, at the signal's overall churn rate, added to each bin's rate: a bin of
/// a few observations says little.
const PRIOR: f64 = 20.0;
/// A signal present in fewer of the fit period's observations than this share is not learned.
const MIN_COVERAGE: f64 = 0.1;
/// Fewer observations with a value than this, and a signal is not learned.
const MIN_PRESENT: usize = 200;
/// 2 × |AUC − 0.5| of a learned curve alone below this, and the signal is left out.
pub const MIN_GINI: f64 = 0.04;
/// 2 × |AUC − 0.5| of a signal's values telling the fit period's earlier half from its later
/// half at or above this, and the signal is left out as drifting with the calendar.
pub const MAX_DRIFT: f64 = 0.5;
/// At most this many learned components: a scorecard a person can read.
pub const MAX_COMPONENTS: usize = 12;

/// One signal's learned curve.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedCurve {
    pub signal: Signal,
    /// (at, points), `at` strictly ascending: the points of the last step whose `at` ≤ value.
    pub steps: Vec<(f64, f64)>,
    /// Points for an observation without a value, when enough had none to say.
    pub missing_points: Option<f64>,
    /// Whether higher values went with less churn.
    pub higher_is_better: bool,
    /// 2 × |AUC − 0.5| of the curve's points alone on the fit period.
    pub gini: f64,
    /// Share of the fit period's observations with a value.
    pub coverage: f64,
    /// Churn rates (within the horizon) of the safest and the riskiest step.
    pub best_rate: f64,
    pub worst_rate: f64,
}

impl LearnedCurve {
    /// The curve's points for a value (or for none).
    pub fn points(&self, value: Option<f64>) -> Option<f64> {
        match value {
            None => self.missing_points,
            Some(v) => {
                let i = self.steps.partition_point(|s| s.0 <= v);
                Some(self.steps[i.saturating_sub(1)].1)
            }
        }
    }
}

/// Learns a curve for every signal that carries information in `obs`, strongest first.
///
/// A signal must also hold up in time: its curve learned on the earlier half of `obs` (by
/// date) must still rank churn on the later half (2 × |AUC − 0.5| ≥ [`MIN_GINI`], the same way
/// round). That keeps out what only looks informative in one stretch of a history, e.g. tenure
/// in a history that starts with a cohort of new customers; the kept curves are then learned on
/// all of `obs`.
pub fn learn_curves(obs: &[&Observation]) -> Vec<LearnedCurve> {
    let mut dates: Vec<_> = obs.iter().map(|o| o.at).collect();
    dates.sort_unstable();
    let middle = dates.get(dates.len() / 2).copied().unwrap_or_default();
    let (early, late): (Vec<&Observation>, Vec<&Observation>) = obs.iter().copied().partition(|o| o.at < middle);
    let late_churned: Vec<bool> = late.iter().map(|o| o.churned).collect();
    let holds = |c: &LearnedCurve| {
        let points: Vec<f64> = late.iter().map(|o| c.points(o.signals.get(c.signal)).unwrap_or(50.0)).collect();
        auc(&points, &late_churned).is_some_and(|a| 2.0 * (a - 0.5) >= MIN_GINI)
    };
    let early_churned: Vec<bool> = early.iter().map(|o| o.churned).collect();
    let churned: Vec<bool> = obs.iter().map(|o| o.churned).collect();
    let mut learned: Vec<LearnedCurve> = Signal::ALL
        .iter()
        .filter(|&&s| !drifts(s, &early, &late))
        .filter(|&&s| learn_one(s, &early, &early_churned).is_some_and(|c| holds(&c)))
        .filter_map(|&s| learn_one(s, obs, &churned))
        .collect();
    learned.sort_by(|a, b| b.gini.total_cmp(&a.gini).then(a.signal.cmp(&b.signal)));
    learned.truncate(MAX_COMPONENTS);
    learned
}

/// Whether `signal`'s values moved with the calendar between the two halves: its values tell the
/// halves apart (2 × |AUC − 0.5| ≥ [`MAX_DRIFT`]). Such a signal (tenure in a history that starts
/// with everyone new) would be scored later on values the fit period never had.
fn drifts(signal: Signal, early: &[&Observation], late: &[&Observation]) -> bool {
    let (mut values, mut is_late) = (Vec::new(), Vec::new());
    for (half, obs) in [(false, early), (true, late)] {
        for v in obs.iter().filter_map(|o| o.signals.get(signal)).filter(|v| v.is_finite()) {
            values.push(v);
            is_late.push(half);
        }
    }
    auc(&values, &is_late).is_some_and(|a| 2.0 * (a - 0.5).abs() >= MAX_DRIFT)
}

fn learn_one(signal: Signal, obs: &[&Observation], churned: &[bool]) -> Option<LearnedCurve> {
    let mut present: Vec<(f64, bool)> =
        obs.iter().filter_map(|o| o.signals.get(signal).filter(|v| v.is_finite()).map(|v| (v, o.churned))).collect();
    let coverage = present.len() as f64 / obs.len().max(1) as f64;
    if present.len() < MIN_PRESENT || coverage < MIN_COVERAGE {
        return None;
    }
    present.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Direction: whether lower values went with churn (AUC of the raw value as a score).
    let values: Vec<f64> = present.iter().map(|p| p.0).collect();
    let labels: Vec<bool> = present.iter().map(|p| p.1).collect();
    let higher_is_better = auc(&values, &labels)? >= 0.5;
    let rate = labels.iter().filter(|c| **c).count() as f64 / labels.len() as f64;

    // Bins of about equal count, cut only between distinct values.
    let target = present.len().div_ceil(BINS);
    let mut bins: Vec<Bin> = Vec::new();
    let mut cur = Bin { at: present[0].0, n: 0.0, churned: 0.0 };
    for (i, (v, c)) in present.iter().enumerate() {
        if cur.n as usize >= target && *v > present[i - 1].0 {
            bins.push(cur);
            cur = Bin { at: *v, n: 0.0, churned: 0.0 };
        }
        cur.n += 1.0;
        cur.churned += f64::from(u8::from(*c));
    }
    if bins.last().is_some_and(|_| (cur.n as usize) < target / 2) {
        let last = bins.last_mut().expect("checked");
        last.n += cur.n;
        last.churned += cur.churned;
    } else {
        bins.push(cur);
    }
    if bins.len() < 2 {
        return None;
    }
    // Shrunk rates, then monotone: non-increasing along the direction of "better".
    let mut rates: Vec<(f64, f64)> = bins.iter().map(|b| ((b.churned + PRIOR * rate) / (b.n + PRIOR), b.n)).collect();
    if !higher_is_better {
        rates.reverse();
    }
    let mut rates = pool_adjacent_violators(&rates);
    if !higher_is_better {
        rates.reverse();
    }
    let worst = rates.iter().copied().fold(f64::MIN, f64::max);
    let best = rates.iter().copied().fold(f64::MAX, f64::min);
    if worst - best <= 1e-9 {
        return None;
    }
    let to_points = |r: f64| crate::score::round_to((100.0 * (worst - r) / (worst - best)).clamp(0.0, 100.0), 1);
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for (b, r) in bins.iter().zip(&rates) {
        let p = to_points(*r);
        if steps.last().is_none_or(|s| s.1 != p) {
            steps.push((b.at, p));
        }
    }
    let missing: Vec<bool> =
        obs.iter().filter(|o| o.signals.get(signal).is_none_or(|v| !v.is_finite())).map(|o| o.churned).collect();
    let missing_points = (missing.len() >= MIN_PRESENT / 4).then(|| {
        let m = missing.iter().filter(|c| **c).count() as f64;
        to_points((m + PRIOR * rate) / (missing.len() as f64 + PRIOR))
    });
    let mut curve = LearnedCurve {
        signal,
        steps,
        missing_points,
        higher_is_better,
        gini: 0.0,
        coverage,
        best_rate: best,
        worst_rate: worst,
    };
    // Strength: the curve's points alone as a score, observations it cannot score at the mean.
    let points: Vec<f64> = obs.iter().map(|o| curve.points(o.signals.get(signal)).unwrap_or(50.0)).collect();
    curve.gini = 2.0 * (auc(&points, churned)? - 0.5);
    (curve.gini >= MIN_GINI).then_some(curve)
}

#[derive(Debug, Clone, Copy)]
struct Bin {
    at: f64,
    n: f64,
    churned: f64,
}

/// Weighted isotonic regression to a non-increasing sequence: (value, weight) in, values out.
fn pool_adjacent_violators(xs: &[(f64, f64)]) -> Vec<f64> {
    // Blocks of (mean, weight, length); merge while a block is above... below its successor.
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for &(v, w) in xs {
        blocks.push((v, w, 1));
        while blocks.len() >= 2 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if a.0 >= b.0 {
                break;
            }
            let w = a.1 + b.1;
            blocks.pop();
            *blocks.last_mut().expect("two") = ((a.0 * a.1 + b.0 * b.1) / w, w, a.2 + b.2);
        }
    }
    blocks.iter().flat_map(|&(m, _, n)| std::iter::repeat_n(m, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_makes_a_sequence_non_increasing_and_keeps_its_weighted_mean() {
        let xs = [(0.5, 1.0), (0.3, 1.0), (0.4, 3.0), (0.1, 1.0), (0.2, 1.0)];
        let out = pool_adjacent_violators(&xs);
        assert!(out.windows(2).all(|w| w[0] >= w[1] - 1e-12), "{out:?}");
        assert!((out[1] - 0.375).abs() < 1e-12 && (out[2] - 0.375).abs() < 1e-12, "{out:?}");
        let mean = |v: &[f64]| v.iter().zip(&xs).map(|(a, x)| a * x.1).sum::<f64>();
        assert!((mean(&out) - mean(&xs.map(|x| x.0))).abs() < 1e-12);
        assert_eq!(pool_adjacent_violators(&[(0.2, 1.0), (0.2, 1.0)]), vec![0.2, 0.2]);
    }
}
