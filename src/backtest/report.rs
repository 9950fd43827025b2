//! The backtest report: figures from the observations (via [`super::metrics`]), as a value that
//! serialises to the JSON report and renders as the terminal table.

use std::fmt::Write as _;

use serde::Serialize;

use super::metrics::{
    auc, flag_quality, quantile, risk_bins, roc, thin, worst_decile, Bin, FlagQuality, Lift, RocPoint,
};
use super::observe::{Exclusions, Observation, Observed};
use crate::event::{format_rfc3339, Millis};
use crate::score::{Band, Scorecard, Stage};
use crate::state::{ChurnStats, LEAD_DAYS_BUCKETS};

/// Where the observation dates are split: earlier dates are the fit period, the rest the report
/// period. Figures quoted for a scorecard come from the report period, so a scorecard fitted on
/// the fit period is never judged on the observations it was fitted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// The first observation date of the report period.
    Date(Millis),
    /// The share of observation dates in the fit period.
    Fraction(f64),
}

impl Split {
    /// The first instant of the report period, given the observation dates (ascending).
    pub fn date(self, dates: &[Millis]) -> Millis {
        match self {
            Split::Date(d) => d,
            Split::Fraction(_) if dates.is_empty() => Millis::MAX,
            Split::Fraction(f) => {
                let k = ((f.clamp(0.0, 1.0) * dates.len() as f64).round() as usize).min(dates.len() - 1);
                dates[k]
            }
        }
    }
}

/// The headline figures of one set of observations.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub observations: usize,
    pub customers: usize,
    /// Observations followed by a churn within the horizon.
    pub churning: usize,
    pub churn_rate: Option<f64>,
    /// ROC AUC, low score = high risk.
    pub auc: Option<f64>,
    pub worst_decile: Option<Lift>,
    pub bands: Vec<BandRow>,
    pub red: FlagQuality,
    pub red_or_yellow: FlagQuality,
}

#[derive(Debug, Clone, Serialize)]
pub struct BandRow {
    pub band: Band,
    pub observations: usize,
    pub churning: usize,
    pub churn_rate: Option<f64>,
}

/// Figures from the scores and bands of `obs`.
pub fn summarise<'a>(obs: impl IntoIterator<Item = &'a Observation>) -> Summary {
    let obs: Vec<&Observation> = obs.into_iter().collect();
    let scores: Vec<f64> = obs.iter().map(|o| o.score).collect();
    let churned: Vec<bool> = obs.iter().map(|o| o.churned).collect();
    let churning = churned.iter().filter(|c| **c).count();
    let mut customers: Vec<u32> = obs.iter().map(|o| o.customer).collect();
    customers.sort_unstable();
    customers.dedup();
    let rate = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
    let bands = Band::ALL
        .iter()
        .map(|&band| {
            let n = obs.iter().filter(|o| o.band == band).count();
            let c = obs.iter().filter(|o| o.band == band && o.churned).count();
            BandRow { band, observations: n, churning: c, churn_rate: rate(c, n) }
        })
        .collect();
    let flags = |f: fn(Band) -> bool| obs.iter().map(|o| f(o.band)).collect::<Vec<bool>>();
    Summary {
        observations: obs.len(),
        customers: customers.len(),
        churning,
        churn_rate: rate(churning, obs.len()),
        auc: auc(&scores, &churned),
        worst_decile: worst_decile(&scores, &churned),
        bands,
        red: flag_quality(&flags(|b| b == Band::Red), &churned),
        red_or_yellow: flag_quality(&flags(|b| b != Band::Green), &churned),
    }
}

/// How much one component's points alone say about churn.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentRow {
    pub name: String,
    pub signal: &'static str,
    /// The base weight in the scorecard.
    pub weight: f64,
    /// Share of observations in which the component had data (was not skipped).
    pub coverage: f64,
    /// AUC of the component's points alone, over the observations where it had data.
    pub auc: Option<f64>,
    /// `informative` (AUC ≥ 0.6), `weak` (≥ 0.55), `noise` (0.45–0.55), `inverted` (< 0.45:
    /// more points go with more churn), or `no data`.
    pub verdict: &'static str,
}

fn verdict(auc: Option<f64>) -> &'static str {
    match auc {
        None => "no data",
        Some(a) if a >= 0.6 => "informative",
        Some(a) if a >= 0.55 => "weak",
        Some(a) if a >= 0.45 => "noise",
        Some(_) => "inverted",
    }
}

/// Each component's AUC and coverage over `obs`, scored with `sc`.
pub fn components<'a>(sc: &Scorecard, obs: impl IntoIterator<Item = &'a Observation>) -> Vec<ComponentRow> {
    let base = sc.components(Stage::Mature, 0);
    let mut points: Vec<Vec<(f64, bool)>> = vec![Vec::new(); base.len()];
    let mut parts = Vec::new();
    let mut n = 0usize;
    for o in obs {
        n += 1;
        sc.score(&o.signals, o.stage, o.segment, &o.refs, &mut parts);
        for (j, p) in parts.iter().enumerate() {
            if let Some(pts) = p.points {
                points[j].push((pts, o.churned));
            }
        }
    }
    base.iter()
        .zip(points)
        .map(|(c, pts)| {
            let (s, l): (Vec<f64>, Vec<bool>) = pts.iter().copied().unzip();
            let a = auc(&s, &l);
            ComponentRow {
                name: c.name.to_string(),
                signal: c.signal.name(),
                weight: c.weight,
                coverage: if n > 0 { s.len() as f64 / n as f64 } else { 0.0 },
                auc: a,
                verdict: verdict(a),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

/// How early the score warned the customers that churned inside the history.
#[derive(Debug, Clone, Serialize)]
pub struct LeadTime {
    /// Customers that churned inside the history and had been scored before.
    pub churners: usize,
    /// Of those, the ones scored for at least the warm-up before churning: the ones judged here.
    pub judged: usize,
    /// Judged churners that were red (red or yellow) at some point within the horizon before.
    pub red_before: usize,
    pub red_or_yellow_before: usize,
    /// Days from the first red within the horizon to the churn, over the churners that were red.
    pub median_days_red: Option<f64>,
    pub p25_days_red: Option<f64>,
    pub p75_days_red: Option<f64>,
    pub median_days_red_or_yellow: Option<f64>,
}

fn lead_time(observed: &Observed) -> LeadTime {
    let judged: Vec<_> = observed.churners.iter().filter(|c| c.judged).collect();
    let red: Vec<f64> = judged.iter().filter_map(|c| c.red_lead_days).collect();
    let flagged: Vec<f64> = judged.iter().filter_map(|c| c.flagged_lead_days).collect();
    LeadTime {
        churners: observed.churners.len(),
        judged: judged.len(),
        red_before: red.len(),
        red_or_yellow_before: flagged.len(),
        median_days_red: quantile(&red, 0.5),
        p25_days_red: quantile(&red, 0.25),
        p75_days_red: quantile(&red, 0.75),
        median_days_red_or_yellow: quantile(&flagged, 0.5),
    }
}

/// What the engine's live churn lookback counted during the replay: the same question as the
/// lead time above, asked the way the running service asks it (on each cancellation, from the
/// 96 days of bands each customer keeps).
#[derive(Debug, Clone, Serialize)]
pub struct LiveLookback {
    pub cancellations: u64,
    pub red_30d_before: u64,
    pub yellow_30d_before: u64,
    pub green_30d_before: u64,
    pub unscored_30d_before: u64,
    pub red_within_90d: u64,
    pub risk_alert_within_90d: u64,
    pub mean_lead_days_red: Option<f64>,
    /// Cumulative counts of red lead times: (at most this many days, how many).
    pub lead_days_le: Vec<(u32, u64)>,
}

impl From<&ChurnStats> for LiveLookback {
    fn from(s: &ChurnStats) -> Self {
        LiveLookback {
            cancellations: s.cancellations,
            red_30d_before: s.band_30d[Band::Red as usize],
            yellow_30d_before: s.band_30d[Band::Yellow as usize],
            green_30d_before: s.band_30d[Band::Green as usize],
            unscored_30d_before: s.band_30d[3],
            red_within_90d: s.red_before,
            risk_alert_within_90d: s.risk_alerted,
            mean_lead_days_red: (s.red_before > 0).then(|| s.lead_days_sum as f64 / s.red_before as f64),
            lead_days_le: LEAD_DAYS_BUCKETS.iter().copied().zip(s.lead_days_le.iter().copied()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub every_days: u32,
    pub horizon_days: u32,
    pub warmup_days: u32,
    /// `null`: the outcomes (labels) are taken as complete.
    pub outcomes_known_until: Option<String>,
    pub history_from: Option<String>,
    pub history_to: Option<String>,
    /// The first observation date of the report period.
    pub split_date: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Data {
    pub lines: u64,
    pub applied: u64,
    pub rejected: u64,
    pub observation_dates: usize,
    pub observations: usize,
    pub excluded: Exclusions,
    pub churns_from_history: usize,
    pub churns_from_labels_only: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Periods {
    pub all: Summary,
    /// Observation dates before the split.
    pub fit: Summary,
    /// Observation dates from the split on: the honest figures.
    pub report: Summary,
}

/// The whole backtest report. Detailed tables are for the report period.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scorecard: String,
    pub settings: Settings,
    pub data: Data,
    pub periods: Periods,
    /// Churn rate per score decile, worst (lowest scores) first: the calibration chart.
    pub deciles: Vec<Bin>,
    /// The ROC curve, thinned to at most 101 points.
    pub roc: Vec<RocPoint>,
    pub components: Vec<ComponentRow>,
    pub stages: Vec<StageRow>,
    pub lead_time: LeadTime,
    pub live_lookback: LiveLookback,
}

/// Builds the report of `observed`, which was replayed with `sc`.
pub fn build(sc: &Scorecard, observed: &Observed, settings_in: (u32, u32, u32), split: Split) -> Report {
    let (every_days, horizon_days, warmup_days) = settings_in;
    let split_at = split.date(&observed.dates);
    let obs = &observed.observations;
    let later: Vec<&Observation> = obs.iter().filter(|o| o.at >= split_at).collect();
    let scores: Vec<f64> = later.iter().map(|o| o.score).collect();
    let churned: Vec<bool> = later.iter().map(|o| o.churned).collect();
    let date = |t: Millis| format_rfc3339(t)[..10].to_string();
    Report {
        scorecard: sc.version.to_string(),
        settings: Settings {
            every_days,
            horizon_days,
            warmup_days,
            outcomes_known_until: observed.known_until.map(date),
            history_from: observed.first_event.map(date),
            history_to: observed.last_event.map(date),
            split_date: (split_at != Millis::MAX).then(|| date(split_at)),
        },
        data: Data {
            lines: observed.replay.lines,
            applied: observed.replay.applied,
            rejected: observed.replay.rejected,
            observation_dates: observed.dates.len(),
            observations: obs.len(),
            excluded: observed.excluded.clone(),
            churns_from_history: observed.churns_from_history,
            churns_from_labels_only: observed.churns_from_labels_only,
        },
        periods: Periods {
            all: summarise(obs),
            fit: summarise(obs.iter().filter(|o| o.at < split_at)),
            report: summarise(later.iter().copied()),
        },
        deciles: risk_bins(&scores, &churned, 10),
        roc: thin(&roc(&scores, &churned), 101),
        components: components(sc, later.iter().copied()),
        stages: Stage::ALL
            .iter()
            .map(|&s| StageRow {
                stage: s.as_str(),
                summary: summarise(later.iter().copied().filter(|o| o.stage == s)),
            })
            .collect(),
        lead_time: lead_time(observed),
        live_lookback: LiveLookback::from(&observed.live),
    }
}

/// A share as a percentage with one decimal (`12.3%`), or `-` where there is none: how every
/// table of the backtest and the calibration prints shares.
pub fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// A figure with `decimals` decimals, or `-` where there is none.
pub fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// The report as a table for people.
pub fn render(r: &Report) -> String {
    let mut t = String::new();
    let s = &r.settings;
    let _ = writeln!(
        t,
        "backtest of scorecard {}: history {} to {}, observed every {} days, churn within {} days, warm-up {} days",
        r.scorecard,
        s.history_from.as_deref().unwrap_or("-"),
        s.history_to.as_deref().unwrap_or("-"),
        s.every_days,
        s.horizon_days,
        s.warmup_days
    );
    let d = &r.data;
    let _ = writeln!(
        t,
        "{} observations on {} dates (left out: {} in warm-up, {} after churn, {} with unknown outcome); churns: {} from cancellations, {} from labels only; outcomes {}",
        d.observations,
        d.observation_dates,
        d.excluded.warmup,
        d.excluded.after_churn,
        d.excluded.censored,
        d.churns_from_history,
        d.churns_from_labels_only,
        s.outcomes_known_until.as_ref().map_or("taken as complete (labels)".to_string(), |k| format!("known until {k}")),
    );
    let _ = writeln!(t, "\nperiod                   obs  customers  churning    rate    AUC  lift@10%  capture@10%");
    let split = s.split_date.as_deref().unwrap_or("-");
    for (name, p) in [
        ("all".to_string(), &r.periods.all),
        (format!("fit (< {split})"), &r.periods.fit),
        (format!("report (>= {split})"), &r.periods.report),
    ] {
        let _ = writeln!(
            t,
            "{name:<22} {:>6} {:>10} {:>9} {:>7} {:>6} {:>9} {:>12}",
            p.observations,
            p.customers,
            p.churning,
            pct(p.churn_rate),
            num(p.auc, 3),
            num(p.worst_decile.map(|l| l.lift), 2),
            pct(p.worst_decile.map(|l| l.capture)),
        );
    }
    let p = &r.periods.report;
    let _ = writeln!(t, "\nreport period by band   obs  churning  churn rate");
    for b in &p.bands {
        let _ =
            writeln!(t, "  {:<18} {:>6} {:>9} {:>11}", b.band.as_str(), b.observations, b.churning, pct(b.churn_rate));
    }
    let _ = writeln!(
        t,
        "  red as a churn alarm:           precision {}, recall {}",
        pct(p.red.precision),
        pct(p.red.recall)
    );
    let _ = writeln!(
        t,
        "  red or yellow as a churn alarm: precision {}, recall {}",
        pct(p.red_or_yellow.precision),
        pct(p.red_or_yellow.recall)
    );
    let l = &r.lead_time;
    let _ = writeln!(
        t,
        "\nlead time: {} of {} churners judged were red within {} days before churning (median {} days before, quartiles {}-{}); {} were red or yellow (median {} days)",
        l.red_before,
        l.judged,
        s.horizon_days,
        num(l.median_days_red, 0),
        num(l.p25_days_red, 0),
        num(l.p75_days_red, 0),
        l.red_or_yellow_before,
        num(l.median_days_red_or_yellow, 0),
    );
    let _ = writeln!(t, "\ndeciles (report period, worst scores first)");
    for (i, b) in r.deciles.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {:>2}  scores {:>5}-{:<5}  churn rate {:>6}",
            i + 1,
            num(Some(b.min_score).filter(|v| v.is_finite()), 1),
            num(Some(b.max_score).filter(|v| v.is_finite()), 1),
            pct(Some(b.churn_rate))
        );
    }
    let _ = writeln!(t, "\ncomponents (report period)     weight  coverage   AUC   verdict");
    for c in &r.components {
        let _ = writeln!(
            t,
            "  {:<28} {:>6} {:>9} {:>6}   {}",
            c.name,
            num(Some(c.weight), 0),
            pct(Some(c.coverage)),
            num(c.auc, 3),
            c.verdict
        );
    }
    let _ = writeln!(t, "\nstages (report period)    obs  churning    AUC   red precision  red recall");
    for st in &r.stages {
        let p = &st.summary;
        let _ = writeln!(
            t,
            "  {:<20} {:>6} {:>9} {:>6} {:>14} {:>11}",
            st.stage,
            p.observations,
            p.churning,
            num(p.auc, 3),
            pct(p.red.precision),
            pct(p.red.recall)
        );
    }
    let v = &r.live_lookback;
    let _ = writeln!(
        t,
        "\nlive lookback (as the service counts it, on each cancellation): {} cancellations; 30 days before: red {}, yellow {}, green {}, unscored {}; red within 90 days: {} (mean lead {} days); a risk alert within 90 days: {}",
        v.cancellations,
        v.red_30d_before,
        v.yellow_30d_before,
        v.green_30d_before,
        v.unscored_30d_before,
        v.red_within_90d,
        num(v.mean_lead_days_red, 0),
        v.risk_alert_within_90d
    );
    t
}
