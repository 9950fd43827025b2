use super::*;
use crate::hash::hash64;
use crate::signal::Signal;

const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00Z
const D: Millis = DAY_MS;

fn config(promotion: Promotion) -> LearnConfig {
    LearnConfig { enabled: true, promotion, min_churns: 50, min_eval_churns: 10, ..LearnConfig::default() }
}

/// A uniform draw in [0, 1) from a key.
fn draw(key: &str) -> f64 {
    (hash64(key) >> 11) as f64 / (1u64 << 53) as f64
}

fn sighting(hash: u64, days_to_renewal: f64, active_days: f64) -> Sighting {
    let mut s = Signals::default();
    s.set(Signal::DaysToRenewal, Some(days_to_renewal));
    s.set(Signal::ActiveDays30d, Some(active_days));
    Sighting::new(hash, &s, 50.0, 0, Stage::Mature)
}

/// A B2B history where churn happens only at renewals: 3,000 customers on annual terms spread
/// over the year, a third of them cancelling at their first renewal, and activity that says
/// nothing. Runs the learner through 40 weekly dates as the engine would; returns it.
fn renewals_only(promotion: Promotion) -> Learner {
    let sc = Scorecard::default_scorecard();
    let mut learner = Learner::new(config(promotion));
    let customers: Vec<(u64, Millis, bool)> = (0..3000)
        .map(|i| {
            let id = format!("cus_{i}");
            let renewal = T0 + (draw(&format!("{id}/renewal")) * 365.0 * D as f64) as Millis;
            (hash64(&id), renewal, draw(&format!("{id}/churns")) < 0.33)
        })
        .collect();
    let mut t = T0;
    let mut cancelled = std::collections::HashSet::new();
    for _ in 0..(40 * 7) {
        t += D;
        while let Some(at) = learner.due(t) {
            for (hash, renewal, churns) in &customers {
                if *churns && *renewal <= at && cancelled.insert(*hash) {
                    learner.cancelled(*hash, *renewal);
                }
            }
            if learner.observes_at(at) {
                let live = customers.iter().filter(|c| !cancelled.contains(&c.0));
                let sightings = live
                    .map(|(hash, renewal, _)| {
                        let dtr = ((*renewal - at).rem_euclid(365 * D)) as f64 / D as f64;
                        sighting(*hash, dtr, (draw(&format!("{hash}/{at}")) * 30.0).floor())
                    })
                    .collect();
                learner.observe(at, Arc::new(References::default()), sightings);
            }
            learner.label(at);
            let _ = learner.refit(at, &sc);
        }
    }
    learner
}

#[test]
fn a_learner_on_a_history_where_churn_happens_only_at_renewals_finds_renewal_timing() {
    let learner = renewals_only(Promotion::Manual);
    let c = learner.candidate().expect("a candidate once enough churn is labelled");
    let learned = Scorecard::from_toml(&c.toml, "learned").expect("the candidate checks");
    let components = learned.components(Stage::Mature, 0);
    let top = components.iter().max_by(|a, b| a.weight.total_cmp(&b.weight)).unwrap();
    assert_eq!(&*top.name, "days_to_renewal", "{}", c.toml);
    assert!(c.auc.unwrap() > 0.75, "candidate AUC {:?} (active {:?})", c.auc, c.active_auc);
    assert!(c.auc.unwrap() > c.active_auc.unwrap_or(0.5) + 0.1);
    assert!(c.version.starts_with("learned-2026-"), "{}", c.version);
    assert_eq!(learner.stats().promotions, 0, "manual promotes nothing");
    assert!(learner.state().promoted.is_none());
}

#[test]
fn auto_promotes_a_better_candidate_once_and_then_waits_for_the_cooldown() {
    let learner = renewals_only(Promotion::Auto);
    assert!(learner.stats().promotions >= 1);
    assert!(learner.state().promoted.as_ref().is_some_and(|(_, base)| base == "default-2026.12"));
    let last = learner.state().last_promotion.unwrap();
    let c = learner.candidate().unwrap();
    if c.at - last < 28 * D {
        assert!(c.held_back.as_deref().unwrap_or("").contains("cooldown"), "{:?}", c.held_back);
    }
}

#[test]
fn an_observation_is_labelled_only_once_its_horizon_has_passed_and_never_after() {
    let mut l = Learner::new(config(Promotion::Manual));
    let at = T0 + D - 1;
    let refs = Arc::new(References::default());
    l.observe(at, refs, vec![sighting(1, 10.0, 5.0), sighting(2, 10.0, 5.0), sighting(3, 10.0, 5.0)]);
    // Customer 1 cancels 10 days later; it is known, but the horizon (30 days) has not passed.
    l.cancelled(1, at + 10 * D);
    l.label(at + 29 * D);
    assert!(l.state().dates[0].sightings.iter().all(|s| s.churned.is_none()), "nothing labelled early");
    assert!(l.refit(at + 29 * D, &Scorecard::default_scorecard()).is_none());
    l.label(at + 30 * D);
    let labels: Vec<Option<bool>> = l.state().dates[0].sightings.iter().map(|s| s.churned).collect();
    assert_eq!(labels, [Some(true), Some(false), Some(false)]);
    // A cancellation after the horizon neither labels customer 2 a churner nor relabels anyone.
    l.cancelled(2, at + 31 * D);
    l.label(at + 40 * D);
    let labels: Vec<Option<bool>> = l.state().dates[0].sightings.iter().map(|s| s.churned).collect();
    assert_eq!(labels, [Some(true), Some(false), Some(false)]);
    assert_eq!(l.stats().labelled_churns, 1);
}

#[test]
fn a_cancellation_dated_before_the_observation_takes_the_observation_out() {
    let mut l = Learner::new(config(Promotion::Manual));
    let at = T0 + D - 1;
    l.observe(at, Arc::new(References::default()), vec![sighting(7, 1.0, 1.0), sighting(8, 1.0, 1.0)]);
    l.cancelled(7, at - D); // arrived late: it had already churned
    l.label(at + 30 * D);
    assert_eq!(l.state().dates[0].sightings.len(), 1);
    assert_eq!(l.state().dates[0].sightings[0].hash, 8);
}

fn candidate(auc: f64, active: f64, fit_churns: usize, eval_churns: usize) -> Candidate {
    Candidate {
        version: "learned-x".into(),
        toml: String::new(),
        at: T0,
        against: "v".into(),
        active_auc: Some(active),
        auc: Some(auc),
        fit_observations: 1000,
        fit_churns,
        eval_observations: 500,
        eval_churns,
        held_back: None,
    }
}

#[test]
fn promotion_guardrails_gain_churns_and_cooldown() {
    let mut l = Learner::new(config(Promotion::Auto));
    assert_eq!(l.guardrail(&candidate(0.75, 0.70, 60, 20), T0), None);
    let why = l.guardrail(&candidate(0.705, 0.70, 60, 20), T0).unwrap();
    assert!(why.contains("min_auc_gain"), "{why}");
    assert!(l.guardrail(&candidate(0.69, 0.70, 60, 20), T0).unwrap().contains("min_auc_gain"));
    assert!(l.guardrail(&candidate(0.9, 0.70, 49, 20), T0).unwrap().contains("min_churns"));
    assert!(l.guardrail(&candidate(0.9, 0.70, 60, 9), T0).unwrap().contains("min_eval_churns"));
    l.state.last_promotion = Some(T0);
    assert!(l.guardrail(&candidate(0.9, 0.70, 60, 20), T0 + 27 * D).unwrap().contains("cooldown"));
    assert_eq!(l.guardrail(&candidate(0.9, 0.70, 60, 20), T0 + 28 * D), None);
}

#[test]
fn the_state_round_trips_and_a_large_partition_is_sampled_by_hash() {
    let cfg = LearnConfig { max_per_date: 100, ..config(Promotion::Manual) };
    let mut l = Learner::new(cfg.clone());
    let all: Vec<Sighting> = (0..1000u64).map(|i| sighting(hash64(&i.to_string()), 3.0, 4.0)).collect();
    let mut reversed = all.clone();
    reversed.reverse();
    l.observe(T0, Arc::new(References::default()), all);
    let mut m = Learner::new(cfg.clone());
    m.observe(T0, Arc::new(References::default()), reversed);
    assert_eq!(l.encode(), m.encode(), "the sample does not depend on the order customers come in");
    let kept = &l.state().dates[0].sightings;
    assert!(kept.len() <= 100 && kept.len() > 60, "{}", kept.len());
    assert!(kept.windows(2).all(|w| w[0].hash < w[1].hash));
    l.cancelled(5, T0 + D);
    let back = Learner::decode(cfg, &l.encode()).unwrap();
    assert_eq!(back.encode(), l.encode(), "NaN signals: compare the bytes");
}
