//! Watching a history unfold: replay it through the engine, stop at regular observation dates,
//! and write down every live customer's score and signals there, with what happened next.
//!
//! The engine runs exactly as `replay` runs it ([`replay_observed`]); an observation only reads
//! a customer's state and scores it as of the observation instant with the same scoring function
//! the engine uses. Keeping the signals (not just the score) lets `calibrate` re-score the same
//! observations with other weights without replaying anything.

use std::collections::HashMap;
use std::sync::Arc;

use memchr::memmem;

use crate::engine::{Engine, EngineConfig};
use crate::event::{parse, parse_date_or_datetime, EventKind, Millis, DAY_MS};
use crate::input::History;
use crate::output::Output;
use crate::replay::{replay_observed, ReplaySummary};
use crate::score::{Band, References, Scorecard, Stage};
use crate::signal::Signals;
use crate::state::{ChurnStats, SignalParams};
use crate::window::day_of;

/// How observations are taken and labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserveConfig {
    /// Days between observation dates.
    pub every_days: u32,
    /// An observation is a churner's when the customer churns within this many days after it.
    pub horizon_days: u32,
    /// A customer is not observed during its first days in the stream: its windows are still
    /// filling and its score says more about missing history than about health.
    pub warmup_days: u32,
    /// How far churn outcomes are known.
    pub outcomes: Outcomes,
}

/// How far churn outcomes are known. An observation whose horizon reaches past that, and that
/// has no churn before it, is left out: nobody can tell yet whether it stayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcomes {
    /// Every churn is known, whenever it happens (a simulation's ground truth).
    Complete,
    /// Known up to this instant (when the labels were exported).
    Until(Millis),
    /// Known up to the last event of the history (cancellations are the only source).
    HistoryEnd,
}

/// What one observation date saw of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Index into [`Observed::customers`].
    pub customer: u32,
    pub at: Millis,
    pub segment: u8,
    pub signals: Signals,
    /// The reference population relative curves ranked the customer in at that date.
    pub refs: Arc<References>,
    /// The stage, score (one decimal, as outputs carry it) and band of the replayed scorecard;
    /// the band is the live one, with hysteresis.
    pub stage: Stage,
    pub score: f64,
    pub band: Band,
    /// Whether the customer churned within the horizon, and if so how many days later.
    pub churned: bool,
    pub days_to_churn: Option<f64>,
}

/// A customer that churned inside the history, and how early the score warned.
#[derive(Debug, Clone, PartialEq)]
pub struct Churner {
    pub customer: u32,
    pub churn_at: Millis,
    /// Scored for at least the warm-up before churning, so its warnings can be judged.
    pub judged: bool,
    /// Days from the first red (or first red-or-yellow) within the horizon before the churn to
    /// the churn; `None` when the band never got there.
    pub red_lead_days: Option<f64>,
    pub flagged_lead_days: Option<f64>,
}

/// Observations the rules left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exclusions {
    /// The customer was younger than the warm-up.
    pub warmup: u64,
    /// The customer had already churned.
    pub after_churn: u64,
    /// The horizon reached past the known outcomes and the customer had not churned by then.
    pub censored: u64,
}

/// Everything a backtest saw.
#[derive(Debug, Clone)]
pub struct Observed {
    pub customers: Vec<String>,
    pub observations: Vec<Observation>,
    pub churners: Vec<Churner>,
    pub excluded: Exclusions,
    pub dates: Vec<Millis>,
    pub first_event: Option<Millis>,
    pub last_event: Option<Millis>,
    pub known_until: Option<Millis>,
    /// Churns taken from `subscription_cancelled` events, and from the labels file only.
    pub churns_from_history: usize,
    pub churns_from_labels_only: usize,
    /// What the engine's live churn lookback counted over the same replay.
    pub live: ChurnStats,
    pub replay: ReplaySummary,
}

/// The label of an observation at `at`, for a customer whose first churn is `first_churn`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    Churns {
        days: f64,
    },
    Stays,
    /// The customer had churned already: not a customer to score any more.
    AfterChurn,
    /// Not known: the horizon reaches past the outcomes we have and it had not churned by then.
    Censored,
}

/// Labels one observation. A churn exactly at the horizon's end counts; a churn at the
/// observation instant is already past.
pub fn label(at: Millis, first_churn: Option<Millis>, horizon: Millis, known_until: Option<Millis>) -> Label {
    match first_churn.filter(|c| known_until.is_none_or(|k| *c <= k)) {
        Some(c) if c <= at => Label::AfterChurn,
        Some(c) if c <= at + horizon => Label::Churns { days: (c - at) as f64 / DAY_MS as f64 },
        _ if known_until.is_some_and(|k| at + horizon > k) => Label::Censored,
        _ => Label::Stays,
    }
}

/// Observation instants: the last millisecond of every `every_days`-th UTC day after the first
/// event's day, up to the last event. The end of a day, so "today" in every window is a whole day.
pub fn observation_dates(first: Millis, last: Millis, every_days: u32) -> Vec<Millis> {
    let every = every_days.max(1) as i64;
    let mut dates = Vec::new();
    let mut day = day_of(first) as i64 + every;
    while (day + 1) * DAY_MS - 1 <= last {
        dates.push((day + 1) * DAY_MS - 1);
        day += every;
    }
    dates
}

/// Days from the first instant in `[from, until)` at which the band satisfies `flagged` to
/// `until`. `changes` are (time, band) in time order, each the band from that time on.
pub fn lead_days(
    changes: &[(Millis, Band)],
    from: Millis,
    until: Millis,
    flagged: impl Fn(Band) -> bool,
) -> Option<f64> {
    if from >= until {
        return None;
    }
    let before = changes.iter().take_while(|(t, _)| *t <= from).last();
    let first = match before {
        Some((_, b)) if flagged(*b) => Some(from),
        _ => changes.iter().find(|(t, b)| *t > from && *t < until && flagged(*b)).map(|(t, _)| *t),
    };
    first.map(|t| (until - t) as f64 / DAY_MS as f64)
}

/// Every `subscription_cancelled` in the history, as (customer, event time). Only lines that
/// mention the type are parsed, so this costs a substring search over the history.
pub fn cancellations(history: &History) -> std::io::Result<Vec<(String, Millis)>> {
    let finder = memmem::Finder::new(b"subscription_cancelled");
    let mut out = Vec::new();
    let mut lines = history.lines()?;
    while let Some(line) = lines.next()? {
        if finder.find(line.bytes).is_none() {
            continue;
        }
        if let Ok(e) = parse(line.bytes, None) {
            if matches!(e.kind, EventKind::SubscriptionCancelled { .. }) {
                out.push((e.customer_id.to_string(), e.timestamp));
            }
        }
    }
    Ok(out)
}

/// Reads a labels file: a `customer_id,churn_date` header, then one row per churn, the date as
/// `YYYY-MM-DD` (midnight UTC) or RFC 3339. Every bad row is reported, with its line number.
pub fn parse_labels(text: &str) -> Result<Vec<(String, Millis)>, String> {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim().replace(' ', "") == "customer_id,churn_date" => {}
        other => {
            return Err(format!(
                "line 1: expected the header `customer_id,churn_date`, got {:?}",
                other.map_or("", |(_, l)| l)
            ))
        }
    }
    for (i, line) in lines {
        let mut cells = line.split(',').map(str::trim);
        match (cells.next(), cells.next(), cells.next()) {
            (Some(id), Some(date), None) if !id.is_empty() => match parse_date_or_datetime(date) {
                Some(t) => rows.push((id.to_string(), t)),
                None => problems.push(format!("line {}: churn_date {date:?} is not YYYY-MM-DD or RFC 3339", i + 1)),
            },
            _ => problems.push(format!("line {}: expected `customer_id,churn_date`, got {line:?}", i + 1)),
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems.join("\n"))
    }
}

/// Replays `history` with `scorecard` and observes every live customer every
/// `cfg.every_days`. Churn is the earliest of a customer's `subscription_cancelled` events and
/// its row in `labels`; a customer is not observed again once it has churned (a customer that
/// comes back is rare, and would blur what "before churning" means).
pub fn observe(
    scorecard: Arc<Scorecard>,
    engine_config: EngineConfig,
    history: &History,
    labels: &[(String, Millis)],
    cfg: &ObserveConfig,
) -> std::io::Result<Observed> {
    let from_history = cancellations(history)?;
    let mut first_churn: HashMap<&str, Millis> = HashMap::new();
    for (id, t) in from_history.iter().chain(labels) {
        let e = first_churn.entry(id.as_str()).or_insert(*t);
        *e = (*e).min(*t);
    }
    let history_ids: std::collections::HashSet<&str> = from_history.iter().map(|(id, _)| id.as_str()).collect();
    let churns_from_labels_only = labels.iter().filter(|(id, _)| !history_ids.contains(id.as_str())).count();

    let horizon = cfg.horizon_days as Millis * DAY_MS;
    let warmup = cfg.warmup_days as Millis * DAY_MS;
    let sc = scorecard.clone();
    let mut engine = Engine::new(scorecard, engine_config);
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut customers: Vec<String> = Vec::new();
    let mut intern = |id: &str| -> u32 {
        if let Some(&i) = ids.get(id) {
            return i;
        }
        customers.push(id.to_string());
        ids.insert(id.to_string(), customers.len() as u32 - 1);
        customers.len() as u32 - 1
    };
    let mut observations = Vec::new();
    let mut excluded = Exclusions::default();
    let mut dates = Vec::new();
    let mut bands: HashMap<String, Vec<(Millis, Band)>> = HashMap::new();
    let (mut parts, mut caps) = (Vec::new(), Vec::new());
    let first_last = std::cell::Cell::new(None);
    let known_until = std::cell::Cell::new(None);

    let replay = replay_observed(
        &mut engine,
        history,
        |first, last| {
            first_last.set(Some((first, last)));
            known_until.set(match cfg.outcomes {
                Outcomes::Complete => None,
                Outcomes::Until(t) => Some(t),
                Outcomes::HistoryEnd => Some(last),
            });
            observation_dates(first, last, cfg.every_days)
        },
        |engine, at| {
            dates.push(at);
            let refs = engine.population().references().clone();
            let params = SignalParams {
                core_feature_keys: &sc.core_feature_keys,
                falling_usage_pct: sc.falling_usage_pct,
                sources: engine.sources(),
            };
            for c in engine.customers() {
                if at - c.first_seen < warmup {
                    excluded.warmup += 1;
                    continue;
                }
                let (churned, days_to_churn) =
                    match label(at, first_churn.get(c.id.as_str()).copied(), horizon, known_until.get()) {
                        Label::AfterChurn => {
                            excluded.after_churn += 1;
                            continue;
                        }
                        Label::Censored => {
                            excluded.censored += 1;
                            continue;
                        }
                        Label::Churns { days } => (true, Some(days)),
                        Label::Stays => (false, None),
                    };
                let signals = c.signals(at, &params);
                let (stage, raw) = sc.evaluate(&signals, c.segment, &refs, &mut parts, &mut caps);
                let score = (raw * 10.0).round() / 10.0;
                observations.push(Observation {
                    customer: intern(&c.id),
                    at,
                    segment: c.segment,
                    signals,
                    refs: refs.clone(),
                    stage,
                    score,
                    band: sc.bands.classify(score, c.score.band),
                    churned,
                    days_to_churn,
                });
            }
        },
        |o| {
            if let Output::ScoreChanged(s) = o {
                let changes = bands.entry(s.customer_id.clone()).or_default();
                if changes.last().is_none_or(|(_, b)| *b != s.band) {
                    changes.push((s.timestamp, s.band));
                }
            }
        },
        |_| {},
    )?;

    // How early each churner inside the history was warned.
    let (first_event, last_event) = first_last.get().unzip();
    let mut churners = Vec::new();
    let mut churned: Vec<(&str, Millis)> = first_churn.iter().map(|(id, t)| (*id, *t)).collect();
    churned.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    for (id, at) in churned {
        let (Some(first), Some(last)) = (first_event, last_event) else { break };
        let Some(changes) = bands.get(id) else { continue };
        if at < first || at > last {
            continue;
        }
        let first_seen = changes[0].0;
        let from = (at - horizon).max(first_seen + warmup);
        churners.push(Churner {
            customer: intern(id),
            churn_at: at,
            judged: first_seen + warmup <= at,
            red_lead_days: lead_days(changes, from, at, |b| b == Band::Red),
            flagged_lead_days: lead_days(changes, from, at, |b| b != Band::Green),
        });
    }

    Ok(Observed {
        customers,
        observations,
        churners,
        excluded,
        dates,
        first_event,
        last_event,
        known_until: known_until.get(),
        churns_from_history: history_ids.len(),
        churns_from_labels_only,
        live: engine.stats().churn.clone(),
        replay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_767_571_200_000; // 2026-01-05T00:00Z
    const D: Millis = DAY_MS;

    #[test]
    fn labels_look_ahead_one_horizon_and_leave_out_what_cannot_be_known() {
        let h = 30 * D;
        assert_eq!(label(T, Some(T + 10 * D), h, None), Label::Churns { days: 10.0 });
        assert_eq!(
            label(T, Some(T + 30 * D), h, None),
            Label::Churns { days: 30.0 },
            "the horizon's last instant counts"
        );
        assert_eq!(label(T, Some(T + 30 * D + 1), h, None), Label::Stays);
        assert_eq!(label(T, Some(T), h, None), Label::AfterChurn);
        assert_eq!(label(T, Some(T - D), h, None), Label::AfterChurn);
        assert_eq!(label(T, None, h, None), Label::Stays, "complete outcomes: never censored");
        // Outcomes known for 20 more days only.
        let k = Some(T + 20 * D);
        assert_eq!(label(T, None, h, k), Label::Censored);
        assert_eq!(label(T, Some(T + 5 * D), h, k), Label::Churns { days: 5.0 });
        assert_eq!(label(T, Some(T + 25 * D), h, k), Label::Censored, "a churn past what is known is not known");
        assert_eq!(label(T - 10 * D, None, h, k), Label::Stays, "the whole horizon is known");
    }

    #[test]
    fn observation_dates_end_whole_days_every_n_days_within_the_history() {
        let dates = observation_dates(T + 5 * 3_600_000, T + 21 * D + 1, 7);
        assert_eq!(dates, vec![T + 8 * D - 1, T + 15 * D - 1]);
        assert!(observation_dates(T, T + 6 * D, 7).is_empty());
        assert_eq!(observation_dates(T, T + 8 * D - 1, 7), vec![T + 8 * D - 1]);
    }

    #[test]
    fn lead_time_is_from_the_first_flag_inside_the_window() {
        let changes =
            [(T, Band::Green), (T + 10 * D, Band::Yellow), (T + 20 * D, Band::Red), (T + 25 * D, Band::Yellow)];
        let churn = T + 40 * D;
        let red = |b: Band| b == Band::Red;
        assert_eq!(lead_days(&changes, T, churn, red), Some(20.0));
        assert_eq!(lead_days(&changes, T, churn, |b| b != Band::Green), Some(30.0));
        // Already red when the window opens: the warning counts from the window's start.
        assert_eq!(lead_days(&changes, T + 22 * D, churn, red), Some(18.0));
        // Red only before the window (a long-past episode) does not count.
        assert_eq!(lead_days(&changes, T + 26 * D, churn, red), None);
        assert_eq!(lead_days(&[(T, Band::Green)], T, churn, red), None);
        assert_eq!(lead_days(&changes, churn, churn, red), None);
    }

    #[test]
    fn labels_files_are_checked_row_by_row() {
        let rows = parse_labels("customer_id,churn_date\ncus_1,2026-03-01\n\ncus_2, 2026-03-02T10:00:00Z\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], ("cus_1".to_string(), parse_date_or_datetime("2026-03-01").unwrap()));
        let err = parse_labels("customer_id,churn_date\ncus_1,March\ncus_2\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("line 3"), "{err}");
        assert!(parse_labels("id,date\n").unwrap_err().contains("header"));
    }

    #[test]
    fn cancellations_are_found_in_any_input_without_parsing_the_rest() {
        let text = concat!(
            r#"{"event_id":"a","customer_id":"c1","timestamp":"2026-01-05T10:00:00Z","type":"session","duration_seconds":5}"#,
            "\n",
            r#"{"event_id":"b","customer_id":"c2","timestamp":"2026-01-06T10:00:00Z","type":"subscription_cancelled"}"#,
            "\r\n",
            r#"{"event_id":"c","customer_id":"c3","timestamp":"2026-01-07T10:00:00Z","type":"subscription_cancelled","reason":"subscription_cancelled"}"#,
        );
        let history = History::from_inputs([crate::input::Input { name: "x".into(), bytes: text.into() }]).unwrap();
        let found = cancellations(&history).unwrap();
        let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c2", "c3"], "one per line, even when the word appears twice");
    }
}
