//! Curves turn a signal's value into points from 0 to 100.

/// How a component maps its signal's value to points.
#[derive(Debug, Clone, PartialEq)]
pub enum Curve {
    /// 100 points at `good`, 0 at `bad`, linear between and clamped outside. `good` may lie below
    /// `bad` (fewer failed payments is better), which flips the direction.
    Linear { bad: f64, good: f64 },
    /// Thresholds in ascending `at` order: the points of the last step whose `at` ≤ value; below
    /// the first step, the first step's points.
    Steps(Vec<Step>),
    /// The customer's mid-rank percentile among the partition's customers of its segment and
    /// stage (see [`super::population`]): 100 points for the best, 0 for the worst. Scored by
    /// [`super::Scorecard::score`] with the population's references. Until the population has a
    /// reference (the first day of a stream, a partition of fewer than 30 customers) the
    /// `fallback` curve scores the value, or, without one, the value counts as missing.
    Relative { higher_is_better: bool, fallback: Option<Box<Curve>> },
}

/// One threshold of a [`Curve::Steps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub at: f64,
    pub points: f64,
}

impl Curve {
    pub fn points(&self, value: f64) -> f64 {
        match self {
            Curve::Linear { bad, good } => (100.0 * (value - bad) / (good - bad)).clamp(0.0, 100.0),
            Curve::Steps(steps) => {
                let i = steps.partition_point(|s| s.at <= value);
                steps[i.saturating_sub(1)].points
            }
            // Without a reference: the fallback; without one the scorecard treats the value as
            // missing and never asks.
            Curve::Relative { fallback, .. } => fallback.as_ref().map_or(50.0, |f| f.points(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn linear_either_direction() {
        let up = Curve::Linear { bad: 2.0, good: 12.0 };
        assert_eq!(up.points(2.0), 0.0);
        assert_eq!(up.points(7.0), 50.0);
        assert_eq!(up.points(20.0), 100.0);
        let down = Curve::Linear { bad: 3.0, good: 0.0 };
        assert_eq!(down.points(0.0), 100.0);
        assert_eq!(down.points(1.5), 50.0);
        assert_eq!(down.points(9.0), 0.0);
    }

    #[test]
    fn steps_pick_the_last_threshold_reached() {
        let c = Curve::Steps(vec![
            Step { at: 0.0, points: 100.0 },
            Step { at: 1.0, points: 40.0 },
            Step { at: 2.0, points: 0.0 },
        ]);
        assert_eq!(c.points(-1.0), 100.0);
        assert_eq!(c.points(0.0), 100.0);
        assert_eq!(c.points(1.0), 40.0);
        assert_eq!(c.points(1.9), 40.0);
        assert_eq!(c.points(7.0), 0.0);
    }

    proptest! {
        #[test]
        fn points_stay_in_range_and_linear_is_monotone(bad in -1e6f64..1e6, span in 1e-3f64..1e6, up: bool, a in -1e7f64..1e7, b in -1e7f64..1e7) {
            let (bad, good) = if up { (bad, bad + span) } else { (bad + span, bad) };
            let c = Curve::Linear { bad, good };
            let (pa, pb) = (c.points(a), c.points(b));
            prop_assert!((0.0..=100.0).contains(&pa));
            if (a <= b) == up { prop_assert!(pa <= pb + 1e-9); } else { prop_assert!(pa + 1e-9 >= pb); }
        }
    }
}
