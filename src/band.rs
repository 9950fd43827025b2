//! Bands (red, yellow, green) with hysteresis, so a score hovering at a cut-off does not flap.
//! Below both the scorecard (`score`, which assigns them) and the alert rules (`rules`, which
//! read them), so neither imports the other for it.

use serde::{Deserialize, Serialize};

/// A coarse health verdict. Ordered worst first, so `a < b` means `a` is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Red,
    Yellow,
    Green,
}

impl Band {
    pub const ALL: [Band; 3] = [Band::Red, Band::Yellow, Band::Green];

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Red => "red",
            Band::Yellow => "yellow",
            Band::Green => "green",
        }
    }
}

/// Band cut-offs: red below `red_below`, green at or above `green_from`, yellow between. A
/// customer only changes band once the score is `hysteresis` points past the cut-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    pub red_below: f64,
    pub green_from: f64,
    pub hysteresis: f64,
}

impl Bands {
    /// The band of `score` ignoring history.
    pub fn raw(&self, score: f64) -> Band {
        if score < self.red_below {
            Band::Red
        } else if score >= self.green_from {
            Band::Green
        } else {
            Band::Yellow
        }
    }

    /// The band of `score` for a customer now in `current`: it moves up only if the score would
    /// still earn the better band `hysteresis` points lower, and down only if it would still earn
    /// the worse band `hysteresis` points higher.
    pub fn classify(&self, score: f64, current: Option<Band>) -> Band {
        let Some(current) = current else { return self.raw(score) };
        let up = self.raw(score - self.hysteresis);
        let down = self.raw(score + self.hysteresis);
        if up > current {
            up
        } else if down < current {
            down
        } else {
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BANDS: Bands = Bands { red_below: 40.0, green_from: 70.0, hysteresis: 2.0 };

    #[test]
    fn hysteresis_holds_the_band_near_a_cut_off() {
        assert_eq!(BANDS.classify(71.0, Some(Band::Yellow)), Band::Yellow);
        assert_eq!(BANDS.classify(72.0, Some(Band::Yellow)), Band::Green);
        assert_eq!(BANDS.classify(69.0, Some(Band::Green)), Band::Green);
        assert_eq!(BANDS.classify(67.9, Some(Band::Green)), Band::Yellow);
        assert_eq!(BANDS.classify(39.0, Some(Band::Yellow)), Band::Yellow);
        assert_eq!(BANDS.classify(37.9, Some(Band::Yellow)), Band::Red);
        assert_eq!(BANDS.classify(20.0, Some(Band::Green)), Band::Red);
        assert_eq!(BANDS.classify(69.0, None), Band::Yellow);
    }

    proptest! {
        /// A score oscillating by less than the hysteresis margin never changes the band twice.
        #[test]
        fn small_oscillations_do_not_flap(base in 0f64..100.0, wiggle in 0f64..1.99, n in 2usize..20) {
            let mut band = BANDS.classify(base, None);
            let mut changes = 0;
            for i in 0..n {
                let s = if i % 2 == 0 { base + wiggle } else { base - wiggle };
                let next = BANDS.classify(s, Some(band));
                if next != band { changes += 1; band = next; }
            }
            prop_assert!(changes <= 1, "{changes} band changes");
        }

        #[test]
        fn far_from_cut_offs_band_is_raw(score in 0f64..100.0, cur in 0usize..3) {
            let b = BANDS.classify(score, Some(Band::ALL[cur]));
            if (score - 40.0).abs() > 2.0 && (score - 70.0).abs() > 2.0 {
                prop_assert_eq!(b, BANDS.raw(score));
            }
        }
    }
}
