//! The scorecard and the pure scoring function: signals in, a 0–100 score and its explanation out.
//!
//! A [`Scorecard`] is compiled once from TOML (`config`) into one component table per
//! (lifecycle stage, segment), so scoring a customer is a walk over a small slice with no lookups
//! by name. The score is the weighted mean of the components' points; components with missing
//! data are either skipped (and the rest renormalised) or given neutral points.

mod config;
mod curve;
pub mod population;
mod probability;

use std::sync::Arc;

pub use self::config::{ScorecardError, DEFAULT_SCORECARD, SCORE_HISTORY_DAYS};
pub use self::curve::{Curve, Step};
pub use self::population::{Population, Rank, References, Scope};
pub use self::probability::Probability;
pub use crate::band::{Band, Bands};
pub use crate::config_issue::{write_issues, ConfigIssue};
pub use crate::round::round_to;

use crate::rules::RuleSet;
use crate::signal::{Signal, Signals};

/// Where a customer is in its lifecycle; stages may override weights and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    /// Tenure below `stages.onboarding_days`: judged on adoption, not on habits it has not formed.
    Onboarding,
    /// Renewal within `stages.renewal_days`: the bar is higher and weakness is urgent.
    Renewal,
    Mature,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Onboarding, Stage::Renewal, Stage::Mature];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Onboarding => "onboarding",
            Stage::Renewal => "renewal",
            Stage::Mature => "mature",
        }
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A group of plans scored with their own overrides. Segment 0 is `default`: every unlisted plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: Arc<str>,
    /// Lower-cased plan names.
    pub plans: Vec<String>,
}

/// What a component does when its signal has no value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missing {
    /// Leave the component out and renormalise the others' weights.
    Skip,
    /// Score it at these points.
    Neutral(f64),
}

/// One weighted, curved signal of a scorecard.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: Arc<str>,
    pub signal: Signal,
    pub weight: f64,
    pub curve: Curve,
    pub missing: Missing,
}

/// A red flag: while its condition holds, the score can be at most `max_score`, however good
/// the rest looks. A weighted mean dilutes one acute problem (usage halved, payments failing)
/// among a dozen healthy components; a cap keeps such a customer out of green.
#[derive(Debug, Clone, PartialEq)]
pub struct Cap {
    pub name: Arc<str>,
    pub signal: Signal,
    /// The condition: value ≤ `at_most`, or value ≥ `at_least` (exactly one is set).
    pub at_most: Option<f64>,
    pub at_least: Option<f64>,
    pub max_score: f64,
}

impl Cap {
    pub fn holds(&self, signals: &Signals) -> bool {
        let Some(v) = signals.get(self.signal) else { return false };
        self.at_most.is_some_and(|m| v <= m) || self.at_least.is_some_and(|m| v >= m)
    }
}

/// A component's part in one score. `weight` is normalised over the components that counted,
/// so the contributions add up to the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComponentScore {
    pub value: Option<f64>,
    /// `None` when the component was skipped for missing data.
    pub points: Option<f64>,
    pub weight: f64,
    pub contribution: f64,
    /// For a relative curve, where the value stood in its reference population.
    pub rank: Option<Rank>,
}

/// A compiled, checked scorecard: components per (stage, segment), bands, stages and rules.
#[derive(Debug, Clone)]
pub struct Scorecard {
    pub version: Arc<str>,
    pub description: String,
    pub bands: Bands,
    /// Emit `score_changed` when the score moves at least this far from the last one emitted.
    pub min_score_delta: f64,
    pub onboarding_days: u32,
    pub renewal_days: u32,
    pub core_features: Vec<String>,
    pub core_feature_keys: Vec<u32>,
    /// Usage trend (%) at or below which usage counts as falling.
    pub falling_usage_pct: f64,
    pub segments: Vec<Segment>,
    /// The signals some component scores with a relative curve, each once: what the engine's
    /// [`Population`] keeps references for.
    pub relative_signals: Vec<Signal>,
    tables: Vec<Vec<Component>>,
    pub caps: Vec<Cap>,
    pub rules: RuleSet,
    /// What churn probability a score stands for, when `calibrate` fitted one (`[probability]`).
    pub probability: Option<Probability>,
    /// The TOML it was compiled from, so the running model can be shown as it was written.
    pub source_text: String,
}

impl Scorecard {
    /// The segment index of a plan (0, `default`, for unlisted plans or none).
    pub fn segment_of(&self, plan: Option<&str>) -> u8 {
        let Some(plan) = plan else { return 0 };
        self.segments.iter().position(|s| s.plans.iter().any(|p| p.eq_ignore_ascii_case(plan))).unwrap_or(0) as u8
    }

    /// The lifecycle stage the signals put a customer in. Onboarding comes first: a new customer
    /// on a monthly plan is always near a renewal date, but is still onboarding.
    pub fn stage_of(&self, signals: &Signals) -> Stage {
        if signals.get(Signal::TenureDays).is_some_and(|t| t < self.onboarding_days as f64) {
            Stage::Onboarding
        } else if signals.get(Signal::DaysToRenewal).is_some_and(|d| (0.0..=self.renewal_days as f64).contains(&d)) {
            Stage::Renewal
        } else {
            Stage::Mature
        }
    }

    /// The components that apply to a (stage, segment).
    pub fn components(&self, stage: Stage, segment: u8) -> &[Component] {
        &self.tables[stage as usize * self.segments.len() + segment as usize]
    }

    /// Scores `signals`, writing each component's part into `parts` (cleared first, in the order
    /// of [`Scorecard::components`]). Relative curves rank the value in `refs`; without a
    /// reference for it their fallback curve scores it, or, with none, it counts as missing. Returns the score, 0–100. With no component
    /// counting at all (every signal missing and skipped) the score is a neutral 50.
    pub fn score(
        &self,
        signals: &Signals,
        stage: Stage,
        segment: u8,
        refs: &References,
        parts: &mut Vec<ComponentScore>,
    ) -> f64 {
        parts.clear();
        let mut total_weight = 0.0;
        for c in self.components(stage, segment) {
            let value = signals.get(c.signal);
            let mut rank = None;
            let scored = match (value, &c.curve) {
                (Some(v), Curve::Relative { higher_is_better, fallback }) => {
                    rank = refs.get(c.signal, stage, segment).map(|r| r.rank(v));
                    match rank {
                        Some(r) => Some(r.points(*higher_is_better)),
                        None => fallback.as_ref().map(|f| f.points(v)),
                    }
                }
                (Some(v), curve) => Some(curve.points(v)),
                (None, _) => None,
            };
            let points = match (scored, c.missing) {
                (Some(p), _) => Some(p),
                (None, Missing::Neutral(p)) => Some(p),
                (None, Missing::Skip) => None,
            };
            if points.is_some() {
                total_weight += c.weight;
            }
            parts.push(ComponentScore { value, points, weight: c.weight, contribution: 0.0, rank });
        }
        if total_weight <= 0.0 {
            for p in parts.iter_mut() {
                p.weight = 0.0;
            }
            return 50.0;
        }
        let mut score = 0.0;
        for p in parts.iter_mut() {
            p.weight = if p.points.is_some() { p.weight / total_weight } else { 0.0 };
            p.contribution = p.points.unwrap_or(0.0) * p.weight;
            score += p.contribution;
        }
        score.clamp(0.0, 100.0)
    }

    /// The whole scoring function for one customer: its stage, the weighted score of that
    /// stage's and `segment`'s components (parts in `parts`), then the caps (their indexes in
    /// `caps`). Returns the stage and the capped score, not yet rounded.
    pub fn evaluate(
        &self,
        signals: &Signals,
        segment: u8,
        refs: &References,
        parts: &mut Vec<ComponentScore>,
        caps: &mut Vec<usize>,
    ) -> (Stage, f64) {
        let stage = self.stage_of(signals);
        let weighted = self.score(signals, stage, segment, refs, parts);
        (stage, self.cap(signals, weighted, parts, caps))
    }

    /// Applies the caps whose condition holds to `score`; returns the capped score and marks in
    /// `applied` (cleared first) the index of every cap that lowered it. When the score is
    /// lowered, the parts' contributions are scaled so they still add up to the score.
    pub fn cap(&self, signals: &Signals, score: f64, parts: &mut [ComponentScore], applied: &mut Vec<usize>) -> f64 {
        applied.clear();
        let mut capped = score;
        for (i, cap) in self.caps.iter().enumerate() {
            if cap.max_score < score && cap.holds(signals) {
                applied.push(i);
                capped = capped.min(cap.max_score);
            }
        }
        if capped < score && score > 0.0 {
            let f = capped / score;
            for p in parts.iter_mut() {
                p.contribution *= f;
            }
        }
        capped
    }
}

#[cfg(test)]
mod tests;
