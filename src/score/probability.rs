//! The churn probability a score stands for: a scorecard's optional `[probability]` table.
//!
//! A score ranks customers; a CS lead planning a quarter also asks "how likely is this one to
//! leave?". `calibrate` answers it from the same fit period it learns the scorecard on: a
//! one-variable logistic regression of "churned within the horizon" on the new scorecard's score
//! (Platt scaling), written as `intercept` and `slope`. The engine then puts
//! `churn_probability = 1 / (1 + e^-(intercept + slope × score))` on every `score_changed`. A
//! hand-written scorecard has no table, and its outputs carry no probability: a number that was
//! never fitted to observed churn would be a guess dressed as a measurement.
//!
//! This module owns the table's meaning and checks; it reads no data (fitting lives in
//! `calibrate`).

use serde::{Deserialize, Serialize};

use crate::config_issue::ConfigIssue;

/// `[probability]`: P(churn within `horizon_days`) as a logistic function of the score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probability {
    /// The horizon the churn labels of the fit looked ahead, in days.
    pub horizon_days: u32,
    /// Log-odds of churning at score 0.
    pub intercept: f64,
    /// Change in log-odds per score point; ≤ 0, as a higher score must not mean more churn.
    pub slope: f64,
}

impl Probability {
    /// The probability of churning within the horizon at `score`, 0–1, rounded to 4 decimals
    /// (so outputs stay short and identical across platforms' last-bit float differences).
    pub fn of(&self, score: f64) -> f64 {
        let p = 1.0 / (1.0 + (-(self.intercept + self.slope * score)).exp());
        crate::round::round_to(p, 4)
    }

    /// The table's issues, keyed as the file names them.
    pub fn check(&self, issues: &mut Vec<ConfigIssue>) {
        if self.horizon_days == 0 || self.horizon_days > 730 {
            issues.push(ConfigIssue::new(
                "probability.horizon_days",
                format!("must be 1–730 days, got {}", self.horizon_days),
            ));
        }
        if !self.intercept.is_finite() || self.intercept.abs() > 50.0 {
            issues.push(ConfigIssue::new(
                "probability.intercept",
                format!("must be a finite log-odds within ±50, got {}", self.intercept),
            ));
        }
        if !(self.slope.is_finite() && (-5.0..=0.0).contains(&self.slope)) {
            issues.push(ConfigIssue::new(
                "probability.slope",
                format!(
                    "must be from -5 to 0 (log-odds per point; a higher score must not mean more churn), got {}",
                    self.slope
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_higher_score_never_reads_as_a_higher_churn_probability() {
        let p = Probability { horizon_days: 90, intercept: 1.0, slope: -0.06 };
        let probs: Vec<f64> = (0..=100).map(|s| p.of(s as f64)).collect();
        assert!(probs.windows(2).all(|w| w[1] <= w[0]), "{probs:?}");
        assert!((p.of(0.0) - 0.7311).abs() < 1e-4);
        assert!(p.of(100.0) < 0.01);
    }

    #[test]
    fn a_table_that_would_rank_backwards_is_refused_with_its_key() {
        let mut issues = Vec::new();
        Probability { horizon_days: 0, intercept: f64::NAN, slope: 0.2 }.check(&mut issues);
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["probability.horizon_days", "probability.intercept", "probability.slope"]);
    }
}
