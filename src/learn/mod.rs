//! Learning online: the engine's own record of how its live customers looked and whether they
//! churned, and the refits that turn it into a candidate scorecard.
//!
//! The learner owns four things, all part of the engine's state (snapshotted, deterministic):
//! - **Observations.** Every `every_days` of stream time (at the last millisecond of a UTC day)
//!   the engine hands it each live customer past its warm-up and not cancelled: its signals,
//!   segment, stage and live score ([`Sighting`], 120 bytes each). A partition with more than
//!   `max_per_date` such customers is sampled by a hash of the customer id, the same customers
//!   every date.
//! - **Labels.** Once stream time is a whole `horizon_days` past an observation date, each of its
//!   observations is labelled: churned when the engine has seen the customer's
//!   `subscription_cancelled` within the horizon after the date, stayed otherwise (the same rule
//!   as `backtest`, [`crate::backtest::observe::label`]). Nothing is labelled before its horizon has
//!   passed, so no fit reads the future.
//! - **Refits.** Every `refit_every_days`, once the labelled fit period holds at least
//!   `min_churns` churns, [`crate::calibrate::learn`] (the very fit `calibrate --learn curves`
//!   runs: curves, weights, bands) learns a candidate from the labelled observations before the
//!   most recent `eval_days`, and judges it against the active scorecard on those (AUC).
//! - **Promotion.** `manual` keeps the candidate for an operator and changes nothing; `auto`
//!   promotes it when it beats the active scorecard by `min_auc_gain` on at least
//!   `min_eval_churns` churns, and no promotion happened within `cooldown_days`.
//!
//! It reads no clock and does no I/O: the engine calls [`Learner::observe`],
//! [`Learner::cancelled`] and [`Learner::refit`] as stream time passes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backtest::observe::label;
use crate::backtest::{Label, Observation};
use crate::event::{format_rfc3339, Millis, DAY_MS};
use crate::score::{References, Scorecard, Stage};
use crate::signal::{Signals, SIGNAL_COUNT};

#[cfg(test)]
mod tests;

/// What the learner does with a candidate that is better than the active scorecard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// Keep the candidate (for the operator to read and deploy); change nothing.
    #[default]
    Manual,
    /// Score with the candidate from the next evaluation of each customer, within the guardrails.
    Auto,
}

impl Promotion {
    pub fn as_str(self) -> &'static str {
        match self {
            Promotion::Manual => "manual",
            Promotion::Auto => "auto",
        }
    }
}

/// The learner's settings (`[engine.learn]`). The defaults are customer-success practice, not
/// fitted to any history: see docs/learning.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearnConfig {
    /// Learn at all. Off, the engine keeps no observations and costs nothing extra.
    pub enabled: bool,
    /// Days of stream time between observation dates (weekly: a CS team's review rhythm).
    pub every_days: u32,
    /// An observation is a churner's when the customer cancels within this many days (one
    /// monthly cycle: the shortest horizon a CS team can still act within, and the one whose
    /// labels come soonest).
    pub horizon_days: u32,
    /// A customer is not observed in its first days in the stream (its windows are filling).
    pub warmup_days: u32,
    /// Days of stream time between refits.
    pub refit_every_days: u32,
    /// Labelled churns the fit period needs before a refit is tried (about ten churns per
    /// learned component, the usual rule of thumb for a logistic regression).
    pub min_churns: u32,
    /// The most recent days of labelled observations that judge a candidate (never fitted on).
    pub eval_days: u32,
    /// Labelled days a fit looks back over (older observations are dropped).
    pub window_days: u32,
    /// Most customers observed per date; beyond, a hash sample of this many.
    pub max_per_date: u32,
    pub promotion: Promotion,
    /// `auto`: the candidate's AUC must beat the active scorecard's by this much.
    pub min_auc_gain: f64,
    /// `auto`: churns the evaluation period needs for its AUCs to count.
    pub min_eval_churns: u32,
    /// `auto`: days of stream time after a promotion before the next.
    pub cooldown_days: u32,
    /// L2 penalty of the weights' logistic regression (as `calibrate --l2`).
    pub l2: f64,
    /// Where `run` writes each partition's latest candidate (`partition-N.toml`, see
    /// `pipeline::candidates`); empty: not written (the log line remains). Not read by the
    /// engine, and not used by `replay --learn`, which prints its learners' summaries.
    pub candidate_dir: std::path::PathBuf,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            enabled: false,
            every_days: 7,
            horizon_days: 30,
            warmup_days: 14,
            refit_every_days: 7,
            min_churns: 100,
            eval_days: 28,
            window_days: 182,
            max_per_date: 10_000,
            promotion: Promotion::Manual,
            min_auc_gain: 0.01,
            min_eval_churns: 25,
            cooldown_days: 28,
            l2: 1.0,
            candidate_dir: std::path::PathBuf::from("candidates"),
        }
    }
}

impl LearnConfig {
    /// Checks the settings; each problem as (key, reason), keys relative to `learn`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut at_least = |key: &str, v: u32, min: u32| {
            if v < min {
                issues.push((key.to_string(), format!("must be at least {min}, got {v}")));
            }
        };
        at_least("every_days", self.every_days, 1);
        at_least("horizon_days", self.horizon_days, 1);
        at_least("refit_every_days", self.refit_every_days, 1);
        at_least("min_churns", self.min_churns, 10);
        at_least("max_per_date", self.max_per_date, 100);
        at_least("eval_days", self.eval_days, self.every_days);
        at_least("window_days", self.window_days, self.every_days.saturating_mul(2));
        if !(self.min_auc_gain.is_finite() && (0.0..=0.5).contains(&self.min_auc_gain)) {
            issues.push(("min_auc_gain".into(), format!("must be between 0 and 0.5, got {}", self.min_auc_gain)));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            issues.push(("l2".into(), format!("must be a number >= 0, got {}", self.l2)));
        }
        issues
    }
}

/// One customer at one observation date: 120 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub hash: u64,
    /// The signals as `f32`, NaN for none: a quarter of `Signals`' size, and precise enough
    /// for curves cut into ten bins.
    pub signals: [f32; SIGNAL_COUNT],
    /// The live score in tenths.
    pub tenths: u16,
    pub segment: u8,
    pub stage: u8,
    /// `None` until the horizon has passed.
    pub churned: Option<bool>,
}

impl Sighting {
    pub fn new(hash: u64, signals: &Signals, score: f64, segment: u8, stage: Stage) -> Sighting {
        let mut s = [f32::NAN; SIGNAL_COUNT];
        for (out, v) in s.iter_mut().zip(signals.0.iter()) {
            if let Some(v) = v {
                *out = *v as f32;
            }
        }
        Sighting { hash, signals: s, tenths: (score * 10.0).round() as u16, segment, stage: stage as u8, churned: None }
    }

    fn signals(&self) -> Signals {
        let mut s = Signals::default();
        for (out, v) in s.0.iter_mut().zip(self.signals.iter()) {
            *out = (!v.is_nan()).then_some(f64::from(*v));
        }
        s
    }
}

/// One observation date's customers, in hash order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Date {
    pub at: Millis,
    /// The reference population relative curves ranked customers in at that date.
    pub refs: Arc<References>,
    pub sightings: Vec<Sighting>,
    pub labelled: bool,
}

/// A learned scorecard and how it was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `learned-YYYY-MM-DD`, the stream day of the refit.
    pub version: String,
    pub toml: String,
    /// Stream time of the refit.
    pub at: Millis,
    /// The version of the scorecard it was judged against, and both AUCs on the evaluation period.
    pub against: String,
    pub active_auc: Option<f64>,
    pub auc: Option<f64>,
    pub fit_observations: usize,
    pub fit_churns: usize,
    pub eval_observations: usize,
    pub eval_churns: usize,
    /// Why `auto` did not promote it (`None`: promoted, or `manual`).
    pub held_back: Option<String>,
}

/// Counters for metrics and summaries (process counters: not in the snapshot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnStats {
    pub observations: u64,
    pub labelled: u64,
    pub labelled_churns: u64,
    pub refits: u64,
    pub refit_failures: u64,
    pub promotions: u64,
}

/// The learner's state (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    /// Oldest first.
    pub dates: VecDeque<Date>,
    /// First `subscription_cancelled` time per customer hash, since the oldest date kept.
    pub cancels: BTreeMap<u64, Millis>,
    /// The next observation instant and refit (`Millis::MIN`: from the first stream time).
    pub next_observe: Millis,
    pub next_refit: Millis,
    pub last_promotion: Option<Millis>,
    /// The latest candidate.
    pub candidate: Option<Candidate>,
    /// The promoted scorecard's text, and the version of the configured one it replaced: a
    /// restore under another configured scorecard does not bring it back.
    pub promoted: Option<(String, String)>,
}

/// The learner: settings, state and counters.
#[derive(Debug, Clone)]
pub struct Learner {
    cfg: LearnConfig,
    state: LearnerState,
    stats: LearnStats,
}

impl Learner {
    pub fn new(cfg: LearnConfig) -> Learner {
        let state = LearnerState {
            dates: VecDeque::new(),
            cancels: BTreeMap::new(),
            next_observe: Millis::MIN,
            next_refit: Millis::MIN,
            last_promotion: None,
            candidate: None,
            promoted: None,
        };
        Learner { cfg, state, stats: LearnStats::default() }
    }

    /// A learner with the state [`Learner::encode`] wrote, under (possibly new) settings.
    pub fn decode(cfg: LearnConfig, bytes: &[u8]) -> Result<Learner, String> {
        let state: LearnerState = postcard::from_bytes(bytes).map_err(|e| format!("learner: {e}"))?;
        if state.dates.iter().any(|d| d.sightings.windows(2).any(|w| w[0].hash > w[1].hash)) {
            return Err("learner: an observation date is not in hash order".into());
        }
        Ok(Learner { cfg, state, stats: LearnStats::default() })
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.state).expect("a learner encodes")
    }

    pub fn config(&self) -> &LearnConfig {
        &self.cfg
    }

    pub fn state(&self) -> &LearnerState {
        &self.state
    }

    pub fn stats(&self) -> &LearnStats {
        &self.stats
    }

    /// Observations held now.
    pub fn observations(&self) -> usize {
        self.state.dates.iter().map(|d| d.sightings.len()).sum()
    }

    /// Labelled churns held now.
    pub fn labelled_churns(&self) -> usize {
        self.state.dates.iter().flat_map(|d| &d.sightings).filter(|s| s.churned == Some(true)).count()
    }

    /// One line for a summary: what was observed, labelled, fitted and promoted.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let auc = |a: Option<f64>| a.map_or("-".into(), |v| format!("{v:.3}"));
        let latest = match &self.state.candidate {
            Some(c) => format!(
                "; latest candidate {} AUC {} against {} {} on {} observations ({} churns){}",
                c.version,
                auc(c.auc),
                c.against,
                auc(c.active_auc),
                c.eval_observations,
                c.eval_churns,
                c.held_back.as_ref().map_or(String::new(), |w| format!(", held back: {w}"))
            ),
            None => String::new(),
        };
        format!(
            "{} observations, {} labelled ({} churns), {} refits ({} failed), {} promotions{latest}",
            s.observations, s.labelled, s.labelled_churns, s.refits, s.refit_failures, s.promotions
        )
    }

    pub fn candidate(&self) -> Option<&Candidate> {
        self.state.candidate.as_ref()
    }

    /// The promoted scorecard's text, if one replaced the configured scorecard `base`.
    pub fn promoted_for(&self, base: &str) -> Option<&str> {
        self.state.promoted.as_ref().filter(|(_, b)| b == base).map(|(t, _)| t.as_str())
    }

    /// The next instant at or before `t` at which the learner has work (an observation or a
    /// refit), if any. The first call fixes the grid: the first observation is the end of the
    /// `every_days`-th UTC day after `t`'s.
    pub fn due(&mut self, t: Millis) -> Option<Millis> {
        if self.state.next_observe == Millis::MIN {
            let every = self.cfg.every_days.max(1) as Millis;
            self.state.next_observe = (t.div_euclid(DAY_MS) + every + 1) * DAY_MS - 1;
            self.state.next_refit = self.state.next_observe;
        }
        let next = self.state.next_observe.min(self.state.next_refit);
        (next <= t).then_some(next)
    }

    /// Moves the schedule past `t` on its grid, doing nothing at the instants skipped (the
    /// engine holds no customer).
    pub fn skip_to(&mut self, t: Millis) {
        let skip = |next: &mut Millis, days: u32| {
            let every = days.max(1) as Millis * DAY_MS;
            if *next <= t {
                *next += ((t - *next) / every + 1) * every;
            }
        };
        skip(&mut self.state.next_observe, self.cfg.every_days);
        skip(&mut self.state.next_refit, self.cfg.refit_every_days);
    }

    /// Whether `at` is an observation instant (and not only a refit).
    pub fn observes_at(&self, at: Millis) -> bool {
        at == self.state.next_observe
    }

    /// Whether a customer first seen at `first_seen` and cancelled or not is observed at `at`.
    pub fn wants(&self, at: Millis, first_seen: Millis, cancelled: bool) -> bool {
        !cancelled && at - first_seen >= self.cfg.warmup_days as Millis * DAY_MS
    }

    /// Records an observation date: `sightings` of every wanted customer (any order). Samples
    /// down to `max_per_date` by hash and keeps hash order.
    pub fn observe(&mut self, at: Millis, refs: Arc<References>, mut sightings: Vec<Sighting>) {
        let max = self.cfg.max_per_date as usize;
        if sightings.len() > max {
            // The same customers every date: those whose hash falls below a share of the range.
            let cut = ((u64::MAX as f64) * (max as f64 / sightings.len() as f64)) as u64;
            sightings.retain(|s| s.hash <= cut);
            sightings.sort_unstable_by_key(|s| s.hash);
            sightings.truncate(max);
        } else {
            sightings.sort_unstable_by_key(|s| s.hash);
        }
        self.stats.observations += sightings.len() as u64;
        self.state.dates.push_back(Date { at, refs, sightings, labelled: false });
        self.state.next_observe = at + self.cfg.every_days.max(1) as Millis * DAY_MS;
    }

    /// The engine applied a customer's first `subscription_cancelled`, dated `ts`.
    pub fn cancelled(&mut self, hash: u64, ts: Millis) {
        let e = self.state.cancels.entry(hash).or_insert(ts);
        *e = (*e).min(ts);
    }

    /// Labels every date whose horizon has passed by `now`, and drops what no fit will read.
    pub fn label(&mut self, now: Millis) {
        let horizon = self.cfg.horizon_days as Millis * DAY_MS;
        let LearnerState { dates, cancels, .. } = &mut self.state;
        for d in dates.iter_mut().filter(|d| !d.labelled && d.at + horizon <= now) {
            d.sightings.retain_mut(|s| {
                s.churned = match label(d.at, cancels.get(&s.hash).copied(), horizon, Some(now)) {
                    Label::Churns { .. } => Some(true),
                    Label::Stays => Some(false),
                    // Cancelled before the date (the news came late), or not known: not a sample.
                    Label::AfterChurn | Label::Censored => None,
                };
                s.churned.is_some()
            });
            d.labelled = true;
            self.stats.labelled += d.sightings.len() as u64;
            self.stats.labelled_churns += d.sightings.iter().filter(|s| s.churned == Some(true)).count() as u64;
        }
        let keep_from = now - horizon - self.cfg.window_days as Millis * DAY_MS;
        while dates.front().is_some_and(|d| d.at < keep_from) {
            dates.pop_front();
        }
        let oldest = dates.front().map_or(now, |d| d.at);
        cancels.retain(|_, t| *t > oldest);
    }

    /// Refits if one is due at `now`: learns a candidate from the labelled observations,
    /// judges it against `active`, and returns the scorecard to promote, if any. A refit that
    /// cannot learn (too few churns, nothing informative) keeps everything as it was.
    pub fn refit(&mut self, now: Millis, active: &Scorecard) -> Option<Scorecard> {
        if now < self.state.next_refit {
            return None;
        }
        self.state.next_refit = now + self.cfg.refit_every_days.max(1) as Millis * DAY_MS;
        let labelled: Vec<&Date> = self.state.dates.iter().filter(|d| d.labelled).collect();
        let last = labelled.last()?.at;
        let split_at = last - self.cfg.eval_days as Millis * DAY_MS + 1;
        let churns = |fit: bool| {
            labelled
                .iter()
                .filter(|d| (d.at < split_at) == fit)
                .flat_map(|d| &d.sightings)
                .filter(|s| s.churned == Some(true))
                .count()
        };
        let (fit_churns, eval_churns) = (churns(true), churns(false));
        if fit_churns < self.cfg.min_churns as usize || eval_churns == 0 {
            return None;
        }
        let obs: Vec<Observation> = labelled
            .iter()
            .flat_map(|d| {
                d.sightings.iter().map(|s| Observation {
                    customer: 0,
                    at: d.at,
                    segment: s.segment,
                    signals: s.signals(),
                    refs: d.refs.clone(),
                    stage: Stage::ALL[s.stage as usize],
                    score: s.tenths as f64 / 10.0,
                    band: crate::score::Band::Green,
                    churned: s.churned == Some(true),
                    days_to_churn: None,
                })
            })
            .collect();
        let day = &format_rfc3339(now)[..10];
        let version = format!("learned-{day}");
        let data = format!(
            "the engine's own observations every {} days, churn within {} days, learned online on {day}",
            self.cfg.every_days, self.cfg.horizon_days
        );
        self.stats.refits += 1;
        let cal = match crate::calibrate::learn(
            active,
            &obs,
            split_at,
            self.cfg.l2,
            &version,
            &data,
            self.cfg.horizon_days,
        ) {
            Ok(cal) => cal,
            Err(_) => {
                self.stats.refit_failures += 1;
                return None;
            }
        };
        let eval_observations = obs.iter().filter(|o| o.at >= split_at).count();
        let mut candidate = Candidate {
            version,
            toml: cal.toml,
            at: now,
            against: active.version.to_string(),
            active_auc: cal.report_before.auc,
            auc: cal.report_after.auc,
            fit_observations: obs.len() - eval_observations,
            fit_churns,
            eval_observations,
            eval_churns,
            held_back: None,
        };
        let promote = match self.cfg.promotion {
            Promotion::Manual => false,
            Promotion::Auto => match self.guardrail(&candidate, now) {
                Some(why) => {
                    candidate.held_back = Some(why);
                    false
                }
                None => true,
            },
        };
        let promoted = promote.then(|| Scorecard::from_toml(&candidate.toml, &candidate.version)).and_then(Result::ok);
        if promoted.is_some() {
            self.state.last_promotion = Some(now);
            let base = self.state.promoted.take().map_or_else(|| active.version.to_string(), |(_, b)| b);
            self.state.promoted = Some((candidate.toml.clone(), base));
            self.stats.promotions += 1;
        }
        self.state.candidate = Some(candidate);
        promoted
    }

    /// Why `auto` must not promote `c` at `now`, if it must not.
    pub fn guardrail(&self, c: &Candidate, now: Millis) -> Option<String> {
        let cfg = &self.cfg;
        if let Some(last) = self.state.last_promotion {
            if now - last < cfg.cooldown_days as Millis * DAY_MS {
                return Some(format!("within cooldown_days ({}) of the last promotion", cfg.cooldown_days));
            }
        }
        if c.fit_churns < cfg.min_churns as usize {
            return Some(format!("{} churns in the fit period, min_churns is {}", c.fit_churns, cfg.min_churns));
        }
        if c.eval_churns < cfg.min_eval_churns as usize {
            return Some(format!(
                "{} churns in the evaluation period, min_eval_churns is {}",
                c.eval_churns, cfg.min_eval_churns
            ));
        }
        match (c.auc, c.active_auc) {
            (Some(new), Some(old)) if new >= old + cfg.min_auc_gain => None,
            (Some(new), None) if new >= 0.5 + cfg.min_auc_gain => None,
            (new, old) => Some(format!(
                "AUC {} against the active {}: less than min_auc_gain ({}) better",
                new.map_or("-".into(), |v| format!("{v:.3}")),
                old.map_or("-".into(), |v| format!("{v:.3}")),
                cfg.min_auc_gain
            )),
        }
    }
}
