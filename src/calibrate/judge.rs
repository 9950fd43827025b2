//! How a scorecard ranks a set of observations, and what a calibration warns of: the figures
//! `calibrate` prints for the old and the new scorecard on both periods. Reads observations and
//! scorecards only; fits nothing.

use serde::Serialize;

use crate::backtest::metrics::{auc, flag_quality, worst_decile};
use crate::backtest::{rescore, Observation};
use crate::score::{Band, Scorecard, Stage};

use super::features;

/// How a scorecard ranks a set of observations (bands without hysteresis: a re-scored
/// observation has no history of its own).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Judgement {
    pub auc: Option<f64>,
    pub lift: Option<f64>,
    pub capture: Option<f64>,
    pub share_red: f64,
    pub share_red_or_yellow: f64,
    pub red_precision: Option<f64>,
    pub red_recall: Option<f64>,
    pub red_or_yellow_precision: Option<f64>,
    pub red_or_yellow_recall: Option<f64>,
}

/// Judges `sc` on `obs`, re-scoring them from their signals.
pub fn judge(sc: &Scorecard, obs: &[Observation]) -> Judgement {
    let scores = rescore(sc, obs);
    let churned: Vec<bool> = obs.iter().map(|o| o.churned).collect();
    let bands: Vec<Band> = scores.iter().map(|s| sc.bands.raw(*s)).collect();
    let red: Vec<bool> = bands.iter().map(|b| *b == Band::Red).collect();
    let flagged: Vec<bool> = bands.iter().map(|b| *b != Band::Green).collect();
    let (r, f) = (flag_quality(&red, &churned), flag_quality(&flagged, &churned));
    let n = obs.len().max(1) as f64;
    let lift = worst_decile(&scores, &churned);
    Judgement {
        auc: auc(&scores, &churned),
        lift: lift.map(|l| l.lift),
        capture: lift.map(|l| l.capture),
        share_red: r.flagged as f64 / n,
        share_red_or_yellow: f.flagged as f64 / n,
        red_precision: r.precision,
        red_recall: r.recall,
        red_or_yellow_precision: f.precision,
        red_or_yellow_recall: f.recall,
    }
}

/// The AUC of a component's points alone from which `backtest` calls it informative.
pub const INFORMATIVE_AUC: f64 = 0.6;

/// A component [`dropped_informative`] warns of.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedComponent {
    pub name: String,
    /// Its points' AUC alone on the report period.
    pub report_auc: f64,
}

/// The components of `old` with weight whose signal no component of `new` with weight reads,
/// and whose points alone ranked the report period's churn (AUC ≥ [`INFORMATIVE_AUC`]). Only a
/// warning: nothing is fitted on the report period.
pub fn dropped_informative(old: &Scorecard, new: &Scorecard, report_obs: &[Observation]) -> Vec<DroppedComponent> {
    if report_obs.is_empty() {
        return Vec::new();
    }
    let kept: Vec<_> = new.components(Stage::Mature, 0).iter().filter(|c| c.weight > 0.0).map(|c| c.signal).collect();
    let refs: Vec<&Observation> = report_obs.iter().collect();
    let x = features(old, &refs);
    let churned: Vec<bool> = report_obs.iter().map(|o| o.churned).collect();
    old.components(Stage::Mature, 0)
        .iter()
        .enumerate()
        .filter(|(_, c)| c.weight > 0.0 && !kept.contains(&c.signal))
        .filter_map(|(j, c)| {
            let points = x.column(j).to_vec();
            let a = auc(&points, &churned)?;
            (a >= INFORMATIVE_AUC).then(|| DroppedComponent { name: c.name.to_string(), report_auc: a })
        })
        .collect()
}
