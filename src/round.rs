//! Rounding for what healthscore writes (scores, explanations, alert evidence, calibrated
//! scorecards): fixed decimals, so output bytes do not carry float noise. Below every module that
//! writes numbers.

/// Rounds to `decimals` places, so output bytes do not carry float noise.
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (x * f).round() / f;
    if r == 0.0 {
        0.0 // no "-0.0"
    } else {
        r
    }
}
