//! `backtest` and `calibrate`: replay history, observe every customer at regular dates
//! ([`crate::backtest`]), then report how well the score predicted churn, or learn a new
//! scorecard from it ([`crate::calibrate`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::read::ReadArgs;
use super::{load_scorecard, print_out, write_in};
use crate::backtest::{self, ObserveConfig, Observed, Outcomes, Split};
use crate::engine::EngineConfig;
use crate::score::Scorecard;

/// What `calibrate` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Learn {
    Curves,
    Weights,
}

/// `backtest`'s flags.
#[derive(Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Where to write the full report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// A directory for the charts (calibration.svg, roc.svg); created if missing.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// `calibrate`'s flags.
#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub history: HistoryArgs,
    /// What to learn: `curves` (each signal's curve, the components, weights and bands) or
    /// `weights` (the active scorecard's component weights only).
    #[arg(long, value_enum, default_value_t = Learn::Curves)]
    pub learn: Learn,
    /// Where to write the calibrated scorecard.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Overwrite --output if it exists, even when it is the --scorecard being calibrated.
    #[arg(long)]
    pub force: bool,
    /// L2 penalty of the regression (on the summed log-loss): larger keeps weights closer
    /// to even.
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// The new scorecard's version (default: the old one plus "-calibrated").
    #[arg(long = "new-version")]
    pub new_version: Option<String>,
    /// A directory for a chart of both ROC curves on the report period (roc-calibrated.svg).
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// `backtest`: prints the report, writes it as JSON and the charts if asked.
pub fn backtest(args: BacktestArgs) -> Result<()> {
    let BacktestArgs { history, report, plots } = args;
    let (scorecard, observed, cfg, split) = history.observe()?;
    let r = backtest::build(&scorecard, &observed, (cfg.every_days, cfg.horizon_days, cfg.warmup_days), split);
    print_out(&backtest::render(&r))?;
    if let Some(path) = report {
        let json = serde_json::to_string_pretty(&r)?;
        std::fs::write(&path, json + "\n").with_context(|| format!("cannot write report {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    if let Some(dir) = plots {
        let p = &r.periods.report;
        let title = format!("{}: churn within {} days by score decile", r.scorecard, cfg.horizon_days);
        let svg = backtest::plot::calibration_svg(&title, &r.deciles, p.churn_rate.unwrap_or(0.0))?;
        let a = write_in(&dir, "calibration.svg", &svg)?;
        let label = format!("{} (AUC {})", r.scorecard, p.auc.map_or("-".into(), |a| format!("{a:.3}")));
        let svg = backtest::plot::roc_svg("ROC, report period", &[(label, &r.roc)])?;
        let b = write_in(&dir, "roc.svg", &svg)?;
        eprintln!("plots: {} {}", a.display(), b.display());
    }
    Ok(())
}

/// `calibrate`: learns a scorecard, writes it to a new file and prints old against new.
pub fn calibrate(args: CalibrateArgs) -> Result<()> {
    let CalibrateArgs { history, learn, output, force, l2, new_version, plots } = args;
    if !(l2.is_finite() && l2 >= 0.0) {
        bail!("--l2 must be a number >= 0, got {l2}");
    }
    let same_as_active = history.scorecard.as_ref().is_some_and(|s| {
        s == &output
            || std::fs::canonicalize(s).ok().zip(std::fs::canonicalize(&output).ok()).is_some_and(|(a, b)| a == b)
    });
    if !force && (same_as_active || output.exists()) {
        bail!(
            "{} {}; a calibrated scorecard is written to a new file (pass --force to overwrite it)",
            output.display(),
            if same_as_active { "is the scorecard being calibrated" } else { "exists" }
        );
    }
    let (scorecard, observed, cfg, split) = history.observe()?;
    let split_at = split.date(&observed.dates);
    let suffix = match learn {
        Learn::Curves => "learned",
        Learn::Weights => "calibrated",
    };
    let version = new_version.unwrap_or_else(|| format!("{}-{suffix}", scorecard.version));
    let data = format!(
        "{} observations of {} customers, every {} days from {} to {}, churn within {} days",
        observed.observations.len(),
        observed.customers.len(),
        cfg.every_days,
        observed.first_event.map_or("-".into(), |t| crate::event::format_rfc3339(t)[..10].to_string()),
        observed.last_event.map_or("-".into(), |t| crate::event::format_rfc3339(t)[..10].to_string()),
        cfg.horizon_days
    );
    let run = match learn {
        Learn::Curves => crate::calibrate::learn,
        Learn::Weights => crate::calibrate::calibrate,
    };
    let cal = run(&scorecard, &observed.observations, split_at, l2, &version, &data, cfg.horizon_days)?;
    std::fs::write(&output, &cal.toml).with_context(|| format!("cannot write {}", output.display()))?;
    print_out(&render_calibration(&scorecard.version, &version, &cal))?;
    // Only this command reads the warning, so it is worked out here, not in every calibration
    // (the online learner's refits run the same fit in the service).
    let new = Scorecard::from_toml(&cal.toml, "(calibrated)")?;
    let later: Vec<_> = observed.observations.iter().filter(|o| o.at >= split_at).cloned().collect();
    for d in crate::calibrate::dropped_informative(&scorecard, &new, &later) {
        eprintln!(
            "warning: {} no longer reads component {}, whose points alone ranked the REPORT period's churn at AUC {:.3} (the fit period gave it no weight); compare both scorecards with `backtest` before deploying",
            version, d.name, d.report_auc
        );
    }
    eprintln!(
        "calibrated scorecard: {} (check it with `healthscore check-scorecard {}`)",
        output.display(),
        output.display()
    );
    if let Some(dir) = plots {
        let churned: Vec<bool> = later.iter().map(|o| o.churned).collect();
        let curve = |sc: &Scorecard| {
            let scores = backtest::rescore(sc, &later);
            backtest::metrics::thin(&backtest::metrics::roc(&scores, &churned), 101)
        };
        let (a, b) = (curve(&scorecard), curve(&new));
        let label = |v: &str, j: &crate::calibrate::Judgement| {
            format!("{v} (AUC {})", j.auc.map_or("-".into(), |a| format!("{a:.3}")))
        };
        let svg = backtest::plot::roc_svg(
            "ROC on the report period, before and after calibration",
            &[(label(&scorecard.version, &cal.report_before), &a), (label(&version, &cal.report_after), &b)],
        )?;
        let path = write_in(&dir, "roc-calibrated.svg", &svg)?;
        eprintln!("plot: {}", path.display());
    }
    Ok(())
}

/// What `backtest` and `calibrate` read, and how they observe it.
#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Scorecard TOML (default: the built-in scorecard).
    #[arg(long)]
    pub scorecard: Option<PathBuf>,
    /// Churn labels (CSV `customer_id,churn_date`), added to the history's cancellations. A
    /// labels file is taken as complete (a customer not listed does not churn) unless
    /// --outcomes-until says when it was exported.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Days between observation dates.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub every_days: u32,
    /// An observation counts as a churner's when the customer churns within this many days.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=730))]
    pub horizon_days: u32,
    /// Do not observe a customer in its first days in the stream (default: the scorecard's
    /// rules.warmup_days).
    #[arg(long)]
    pub warmup_days: Option<u32>,
    /// Churn is known up to this date (YYYY-MM-DD or RFC 3339); observations whose horizon
    /// reaches past it without a churn are left out. Default: complete with --labels, else the
    /// last event of the history.
    #[arg(long)]
    pub outcomes_until: Option<String>,
    /// The first observation date of the report period (YYYY-MM-DD or RFC 3339); earlier dates
    /// are the fit period.
    #[arg(long, conflicts_with = "split_fraction")]
    pub split_date: Option<String>,
    /// The share of observation dates in the fit period, when --split-date is not given.
    #[arg(long, default_value_t = 0.5)]
    pub split_fraction: f64,
}

impl HistoryArgs {
    /// Reads the inputs and labels and replays them, observing as asked.
    pub fn observe(&self) -> Result<(Arc<Scorecard>, Observed, ObserveConfig, Split)> {
        let scorecard = Arc::new(load_scorecard(self.scorecard.as_ref())?);
        let date = |flag: &str, v: &str| {
            crate::event::parse_date_or_datetime(v)
                .with_context(|| format!("{flag} {v:?} is not a date (YYYY-MM-DD) or RFC 3339 date-time"))
        };
        let split = match &self.split_date {
            Some(d) => Split::Date(date("--split-date", d)?),
            None if (0.0..=1.0).contains(&self.split_fraction) => Split::Fraction(self.split_fraction),
            None => bail!("--split-fraction must be from 0 to 1, got {}", self.split_fraction),
        };
        let labels = match &self.labels {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read labels {}", p.display()))?;
                backtest::parse_labels(&text).map_err(|e| anyhow::anyhow!("invalid labels {}:\n{e}", p.display()))?
            }
            None => Vec::new(),
        };
        let outcomes = match (&self.outcomes_until, &self.labels) {
            (Some(d), _) => Outcomes::Until(date("--outcomes-until", d)?),
            (None, Some(_)) => Outcomes::Complete,
            (None, None) => Outcomes::HistoryEnd,
        };
        let cfg = ObserveConfig {
            every_days: self.every_days,
            horizon_days: self.horizon_days,
            warmup_days: self.warmup_days.unwrap_or(scorecard.rules.warmup_days),
            outcomes,
        };
        let history = self.read.open()?;
        let observed = backtest::observe(scorecard.clone(), EngineConfig::default(), &history, &labels, &cfg)
            .context("cannot read the history")?;
        if observed.observations.is_empty() {
            bail!(
                "no observations: the history is shorter than --every-days ({}) plus the warm-up ({} days), or every outcome is unknown",
                cfg.every_days,
                cfg.warmup_days
            );
        }
        Ok((scorecard, observed, cfg, split))
    }
}

/// The weights before and after, and both scorecards judged on both periods.
fn render_calibration(old: &str, new: &str, cal: &crate::calibrate::Calibration) -> String {
    use crate::backtest::report::{num, pct};
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "fitted on {} observations ({} churning), L2 {}\n\ncomponent                      weight before  after   coefficient",
        cal.fit.observations, cal.fit.churning, cal.fit.l2
    );
    for c in &cal.fit.components {
        let _ = writeln!(
            t,
            "  {:<28} {:>12} {:>6} {:>13}{}",
            c.name,
            c.old_weight,
            c.new_weight,
            num(c.coefficient, 3),
            c.dropped.map_or(String::new(), |d| format!("   off: {d}"))
        );
    }
    let _ = writeln!(t, "\n{:<44} AUC  lift@10%  capture@10%  red share  red recall  red precision", "");
    for (name, j) in [
        (format!("fit period, {old}"), &cal.fit_before),
        (format!("fit period, {new}"), &cal.fit_after),
        (format!("REPORT period, {old}"), &cal.report_before),
        (format!("REPORT period, {new}"), &cal.report_after),
    ] {
        let _ = writeln!(
            t,
            "{name:<42} {:>5} {:>9} {:>12} {:>10} {:>11} {:>14}",
            num(j.auc, 3),
            num(j.lift, 2),
            pct(j.capture),
            pct(Some(j.share_red)),
            pct(j.red_recall),
            pct(j.red_precision)
        );
    }
    let _ = writeln!(t, "(bands here are raw, without hysteresis: a re-scored observation has no band history)");
    match (&cal.probability, cal.report_probability) {
        (Some(p), report) => {
            let _ = writeln!(
                t,
                "\nchurn probability within {} days (written as [probability]): score 20 -> {}, 50 -> {}, 80 -> {}",
                p.horizon_days,
                pct(Some(p.of(20.0))),
                pct(Some(p.of(50.0))),
                pct(Some(p.of(80.0)))
            );
            if let Some((predicted, observed)) = report {
                let _ = writeln!(
                    t,
                    "REPORT period: mean probability {}, share that churned {}",
                    pct(Some(predicted)),
                    pct(Some(observed))
                );
            }
        }
        (None, _) => {
            let _ = writeln!(t, "\nno churn probability: the new scores did not rank the fit period's churn");
        }
    }
    t
}
