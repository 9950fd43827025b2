//! `check-scorecard`, `default-scorecard` and `signals`: what a scorecard compiles to, the
//! built-in one, and the signals its components can use.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{load_scorecard, print_out};
use crate::signal::Signal;

/// `check-scorecard`'s arguments.
#[derive(Args)]
pub struct CheckScorecardArgs {
    /// Scorecard TOML (default: the built-in scorecard).
    pub file: Option<PathBuf>,
}

/// `check-scorecard`: the bands, segments and each stage's component weights.
pub fn check(args: CheckScorecardArgs) -> Result<()> {
    let CheckScorecardArgs { file } = args;
    use std::fmt::Write as _;
    let sc = load_scorecard(file.as_ref())?;
    let mut text = String::new();
    writeln!(text, "scorecard {} is valid", sc.version)?;
    writeln!(
        text,
        "bands: red < {}, green >= {}, hysteresis {}; emit on band change or a move of >= {}",
        sc.bands.red_below, sc.bands.green_from, sc.bands.hysteresis, sc.min_score_delta
    )?;
    writeln!(text, "segments: {}", sc.segments.iter().map(|s| &*s.name).collect::<Vec<_>>().join(", "))?;
    for stage in crate::score::Stage::ALL {
        for (i, seg) in sc.segments.iter().enumerate() {
            let comps = sc.components(stage, i as u8);
            let total: f64 = comps.iter().map(|c| c.weight).sum();
            let list: Vec<String> = comps
                .iter()
                .filter(|c| c.weight > 0.0)
                .map(|c| format!("{} {:.0}%", c.name, 100.0 * c.weight / total))
                .collect();
            writeln!(text, "{} / {}: {}", stage.as_str(), seg.name, list.join(", "))?;
        }
    }
    print_out(&text)
}

/// `default-scorecard`: the built-in scorecard's TOML.
pub fn print_default() -> Result<()> {
    print_out(crate::score::DEFAULT_SCORECARD)
}

/// `signals`: every signal with its description.
pub fn signals() -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for s in Signal::ALL {
        writeln!(text, "{:34} {}", s.name(), s.description())?;
    }
    print_out(&text)
}
