//! Back-testing: does the score predict churn?
//!
//! A history is replayed through the engine ([`observe()`]); at regular observation dates every
//! live customer's score is written down with whether it churned within a horizon. The figures
//! ([`metrics`]: AUC, lift, churn rate per band, precision and recall, lead time) are computed
//! from those observations ([`report`]) and drawn ([`plot`]). Observation dates are split in
//! time: earlier dates can fit a scorecard (`calibrate`), later dates judge it.

pub mod metrics;
pub mod observe;
pub mod plot;
pub mod report;

pub use self::observe::{observe, parse_labels, Label, Observation, ObserveConfig, Observed, Outcomes};
pub use self::report::{build, render, Report, Split};

use crate::score::Scorecard;

/// The scores `sc` gives the observations (one decimal, as outputs carry them), from the
/// signals each observation kept: another scorecard judged on the same customers and dates,
/// without a replay. Core features and `falling_usage_pct` feed the signals themselves, so they
/// are those of the scorecard that was replayed.
pub fn rescore(sc: &Scorecard, obs: &[Observation]) -> Vec<f64> {
    let (mut parts, mut caps) = (Vec::new(), Vec::new());
    obs.iter()
        .map(|o| {
            let (_, raw) = sc.evaluate(&o.signals, o.segment, &o.refs, &mut parts, &mut caps);
            (raw * 10.0).round() / 10.0
        })
        .collect()
}
