//! Back-testing and calibration end to end, on small histories whose churners are known:
//! stayers use the product every day; churners go silent 35 days before they cancel. With a
//! 30-day horizon every churning observation is of a silent customer, so a score that reads
//! usage separates them perfectly, and one that reads a survey answer drawn at random cannot.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use serde_json::json;

use common::{at, event, Harness, T0};
use healthscore::backtest::{self, ObserveConfig, Observed, Outcomes, Split};
use healthscore::calibrate::calibrate;
use healthscore::engine::EngineConfig;
use healthscore::event::{Millis, DAY_MS};
use healthscore::input::{History, Input};
use healthscore::score::{Band, Scorecard};

const DAYS: u32 = 150;
const SILENT_DAYS: u32 = 35;
const FEATURES: [&str; 4] = ["dashboards", "reports", "integrations", "alerts"];

/// A history of `stayers` + `churners` customers, each (with `nps`) with one random NPS answer
/// on day 1, and its churn labels (customer, cancellation time).
fn population(stayers: u32, churners: u32, seed: u64, nps: bool) -> (Vec<Input>, Vec<(String, Millis)>) {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut lines: Vec<(Millis, Vec<u8>)> = Vec::new();
    let mut labels = Vec::new();
    for i in 0..stayers + churners {
        let id = format!("cus_{i:03}");
        let cancel_day = (i >= stayers).then(|| 60 + (i * 13) % 80);
        let last_active = cancel_day.map_or(DAYS, |c| c - SILENT_DAYS);
        let hour = (i % 8) as f64 / 24.0;
        if nps {
            let answer = json!({"score": r.gen_range(0..=10)});
            lines.push((at(1.0 + hour), event(&id, &format!("{id}-nps"), at(1.0 + hour), "nps_response", answer)));
        }
        for d in 0..last_active {
            let t = at(d as f64 + 0.4 + hour);
            let fields = json!({"feature": FEATURES[(d % 4) as usize], "user_id": format!("u{}", d % 3)});
            lines.push((t, event(&id, &format!("{id}-{d}"), t, "feature_used", fields)));
        }
        if let Some(c) = cancel_day {
            let t = at(c as f64 + 0.5);
            lines.push((t, event(&id, &format!("{id}-cancel"), t, "subscription_cancelled", json!({}))));
            labels.push((id, t));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    let bytes = lines.into_iter().flat_map(|(_, l)| l.into_iter().chain([b'\n'])).collect();
    (vec![Input { name: "history".into(), bytes }], labels)
}

fn config(horizon_days: u32, outcomes: Outcomes) -> ObserveConfig {
    ObserveConfig { every_days: 7, horizon_days, warmup_days: 14, outcomes }
}

fn observe(sc: Scorecard, inputs: &[Input], labels: &[(String, Millis)], cfg: &ObserveConfig) -> Observed {
    let history = History::from_inputs(inputs.iter().cloned()).unwrap();
    backtest::observe(Arc::new(sc), EngineConfig::default(), &history, labels, cfg).unwrap()
}

/// Usage only: how recently and how often the customer used the product.
const USAGE_ONLY: &str = r#"
version = "usage-only"
[[component]]
name = "recency"
signal = "days_since_last_activity"
weight = 1
good = 3
bad = 21
[[component]]
name = "usage_frequency"
signal = "active_days_30d"
weight = 1
bad = 2
good = 16
"#;

/// Only the NPS answer, which is random: no information about churn.
const NPS_ONLY: &str = r#"
version = "nps-only"
[[component]]
name = "nps"
signal = "last_nps"
weight = 1
bad = 0
good = 10
"#;

/// Mostly the random NPS answer, with a little usage: a badly weighted scorecard.
const BADLY_WEIGHTED: &str = r#"
version = "bad-weights"
[[component]]
name = "nps"
signal = "last_nps"
weight = 20
bad = 0
good = 10
[[component]]
name = "recency"
signal = "days_since_last_activity"
weight = 1
good = 3
bad = 21
[[component]]
name = "usage_frequency"
signal = "active_days_30d"
weight = 1
bad = 2
good = 16
"#;

#[test]
fn a_score_that_reads_usage_separates_silent_churners_and_a_random_one_does_not() {
    let (inputs, labels) = population(100, 100, 1, true);
    let cfg = config(30, Outcomes::Complete);
    let usage = Scorecard::from_toml(USAGE_ONLY, "usage").unwrap();
    let separable = observe(usage.clone(), &inputs, &labels, &cfg);
    let r = backtest::build(&usage, &separable, (7, 30, 14), Split::Fraction(0.5));
    let a = r.periods.all.auc.unwrap();
    assert!(a > 0.99, "usage-only AUC {a}");
    assert!(r.periods.all.churning > 50 && r.periods.all.observations > 1000, "{:?}", r.data);
    let lift = r.periods.all.worst_decile.unwrap().lift;
    assert!(lift > 3.0, "worst-decile lift {lift}");
    assert!(serde_json::to_string(&r).unwrap().contains("\"auc\""));
    assert!(backtest::render(&r).contains("report (>= "));

    let nps = Scorecard::from_toml(NPS_ONLY, "nps").unwrap();
    let random = observe(nps.clone(), &inputs, &labels, &cfg);
    let r = backtest::build(&nps, &random, (7, 30, 14), Split::Fraction(0.5));
    let a = r.periods.all.auc.unwrap();
    assert!((a - 0.5).abs() < 0.1, "random score AUC {a}");

    // The default scorecard reads both; its component table says which one carries information.
    let default = observe(Scorecard::default_scorecard(), &inputs, &labels, &cfg);
    let r = backtest::build(&Scorecard::default_scorecard(), &default, (7, 30, 14), Split::Fraction(0.5));
    let row = |name: &str| r.components.iter().find(|c| c.name == name).unwrap().clone();
    assert_eq!(row("recency").verdict, "informative", "{:?}", row("recency"));
    let nps_auc = row("nps").auc.unwrap();
    assert!((nps_auc - 0.5).abs() < 0.1 && row("recency").auc.unwrap() > nps_auc + 0.3, "{:?}", row("nps"));
    let a = r.periods.all.auc.unwrap();
    // Its usage components rank the silent churners last among their peers, so the random answer
    // (through the strong_detractor cap) blurs the ranking only a little.
    assert!(a > 0.9, "the default score reads usage: AUC {a}");
}

#[test]
fn calibrate_warns_when_the_new_scorecard_stops_reading_a_component_informative_on_the_report_period() {
    let (inputs, labels) = population(60, 60, 2, true);
    let old = Scorecard::from_toml(BADLY_WEIGHTED, "bad").unwrap();
    let observed = observe(old.clone(), &inputs, &labels, &config(30, Outcomes::Complete));
    // A "new" scorecard that kept only the random answer: the usage components it dropped rank
    // these silent churners, and the warning names both; the one it kept is not named.
    let nps_only = Scorecard::from_toml(
        "version = \"nps-only\"\n[[component]]\nname = \"nps\"\nsignal = \"last_nps\"\nweight = 1\nbad = 0\ngood = 10\n",
        "nps-only",
    )
    .unwrap();
    let warned = healthscore::calibrate::dropped_informative(&old, &nps_only, &observed.observations);
    let names: Vec<&str> = warned.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["recency", "usage_frequency"], "{warned:?}");
    assert!(warned.iter().all(|d| d.report_auc >= healthscore::calibrate::INFORMATIVE_AUC));
    // Nothing to warn of when nothing informative was dropped.
    assert!(healthscore::calibrate::dropped_informative(&old, &old, &observed.observations).is_empty());
}

#[test]
fn calibrating_bad_weights_improves_the_held_out_auc() {
    let (inputs, labels) = population(60, 60, 2, true);
    let bad = Scorecard::from_toml(BADLY_WEIGHTED, "bad").unwrap();
    let observed = observe(bad.clone(), &inputs, &labels, &config(30, Outcomes::Complete));
    let split_at = Split::Fraction(0.5).date(&observed.dates);
    let cal = calibrate(&bad, &observed.observations, split_at, 1.0, "fitted", "test history", 30).unwrap();
    let (before, after) = (cal.report_before.auc.unwrap(), cal.report_after.auc.unwrap());
    assert!(after > before + 0.1 && after > 0.9, "held-out AUC {before} -> {after}");
    let weight = |name: &str| cal.fit.components.iter().find(|c| c.name == name).unwrap().new_weight;
    assert!(weight("nps") < 20.0 * 0.25, "the random answer loses most of its weight: {}", weight("nps"));
    assert!(weight("recency") > 1.0);
    // The new file is a valid scorecard with the new weights and says what changed.
    let new = Scorecard::from_toml(&cal.toml, "new").unwrap();
    assert_eq!(&*new.version, "fitted");
    assert!(cal.toml.contains("# was 20"), "{}", cal.toml);
    // And it scores the report period as calibrate said it would.
    let later: Vec<_> = observed.observations.iter().filter(|o| o.at >= split_at).cloned().collect();
    let scores = backtest::rescore(&new, &later);
    let churned: Vec<bool> = later.iter().map(|o| o.churned).collect();
    assert_eq!(backtest::metrics::auc(&scores, &churned), Some(after));
}

#[test]
fn observations_stop_at_churn_and_unknown_outcomes_are_left_out() {
    let (inputs, labels) = population(3, 3, 3, false);
    let cfg = config(30, Outcomes::HistoryEnd);
    let o = observe(Scorecard::default_scorecard(), &inputs, &[], &cfg);
    let ids = |i: u32| o.customers[i as usize].as_str();
    let churn_of = |id: &str| labels.iter().find(|(c, _)| c == id).map(|l| l.1);
    let last_event = o.last_event.unwrap();
    for ob in &o.observations {
        let churn = churn_of(ids(ob.customer));
        assert!(churn.is_none_or(|c| ob.at < c), "observed {} after its churn", ids(ob.customer));
        assert_eq!(ob.churned, churn.is_some_and(|c| c <= ob.at + 30 * DAY_MS));
        assert!(ob.churned || ob.at + 30 * DAY_MS <= last_event, "a stayer whose horizon passes the history's end");
        assert!(ob.at - T0 >= 14 * DAY_MS, "observed during the warm-up");
    }
    assert!(o.excluded.censored > 0 && o.excluded.warmup > 0);
    assert_eq!(o.churns_from_history, 3);

    // A churn known only from the labels: observations stop there too, and lead up to it.
    let (inputs, _) = population(2, 0, 3, false);
    let label = vec![("cus_000".to_string(), at(100.0))];
    let o = observe(Scorecard::default_scorecard(), &inputs, &label, &config(30, Outcomes::Complete));
    assert_eq!(o.churns_from_labels_only, 1);
    let first = o.customers.iter().position(|c| c == "cus_000").unwrap() as u32;
    let mine: Vec<_> = o.observations.iter().filter(|ob| ob.customer == first).collect();
    assert!(mine.iter().all(|ob| ob.at < at(100.0)));
    assert!(mine.iter().filter(|ob| ob.churned).all(|ob| ob.days_to_churn.unwrap() <= 30.0));
    // Dates end days 7, 14, ... (the instants 8, 15, ... days after T0, less 1 ms): 71, 78, 85,
    // 92 and 99 lie within the 30 days before day 100.
    assert_eq!(mine.iter().filter(|ob| ob.churned).count(), 5);
    assert_eq!(o.excluded.censored, 0, "complete labels: nothing is unknown");
}

#[test]
fn lead_time_counts_from_the_first_warning_and_agrees_with_the_live_lookback() {
    let (inputs, labels) = population(10, 10, 4, false);
    let o = observe(Scorecard::default_scorecard(), &inputs, &labels, &config(90, Outcomes::Complete));
    let r = backtest::build(&Scorecard::default_scorecard(), &o, (7, 90, 14), Split::Fraction(0.5));
    assert_eq!(r.lead_time.churners, 10);
    assert_eq!(r.lead_time.judged, 10);
    assert_eq!(r.lead_time.red_or_yellow_before, 10, "every silent churner was flagged");
    for c in &o.churners {
        // Silent for 35 days; the gone_silent cap (14 days) alone makes it yellow 21 days before
        // (less the hours between its last use and its cancellation).
        let flagged = c.flagged_lead_days.unwrap();
        assert!((20.0..=SILENT_DAYS as f64).contains(&flagged), "flagged {flagged} days before");
        if let Some(red) = c.red_lead_days {
            assert!(red <= flagged);
        }
    }
    // The engine's own lookback (on each cancellation, from its 96 days of bands) sees the same.
    assert_eq!(o.live.cancellations, 10);
    assert_eq!(o.live.red_before as usize, r.lead_time.red_before);
    let red: Vec<f64> = o.churners.iter().filter_map(|c| c.red_lead_days).collect();
    if !red.is_empty() {
        let mean = red.iter().sum::<f64>() / red.len() as f64;
        let live = o.live.lead_days_sum as f64 / o.live.red_before as f64;
        assert!((mean - live).abs() <= 1.0, "backtest {mean} vs live {live}");
    }
}

#[test]
fn a_cancellation_records_how_the_customer_stood_30_and_90_days_before() {
    let mut h = Harness::new();
    // Daily use for 100 days, then silence for 40 days, then a cancellation.
    for d in 0..100 {
        h.send("c", at(d as f64 + 0.5), "feature_used", json!({"feature": FEATURES[d % 4], "user_id": "u"})).unwrap();
    }
    h.engine.advance_to(at(140.0), &mut h.outputs);
    assert_eq!(h.engine.customer("c").unwrap().score.band, Some(Band::Red));
    h.send("c", at(140.2), "subscription_cancelled", json!({})).unwrap();
    let s = &h.engine.stats().churn;
    assert_eq!(s.cancellations, 1);
    assert_eq!(s.band_now, [1, 0, 0, 0], "red at cancellation");
    assert_eq!(s.band_90d, [0, 0, 1, 0], "green 90 days before");
    assert_eq!(s.band_30d, [0, 0, 1, 0], "still green 10 days into the silence (gone_silent waits for 14)");
    assert_eq!((s.red_before, s.risk_alerted), (1, 1));
    // A second cancellation of the same customer before it leaves is not a second churn.
    h.send("c", at(140.3), "subscription_cancelled", json!({})).unwrap();
    assert_eq!(h.engine.stats().churn.cancellations, 1);
}

/// Churn only at renewals: every customer uses the product alike, every day; half of them cancel
/// on their renewal date, the others renew for a year.
fn renewal_driven(customers: u32) -> (Vec<Input>, Vec<(String, Millis)>) {
    let mut lines: Vec<(Millis, Vec<u8>)> = Vec::new();
    let mut labels = Vec::new();
    for i in 0..customers {
        let id = format!("cus_{i:03}");
        let renewal_day = 20 + (i * 37) % 125;
        let churns = i % 2 == 1;
        let hour = (i % 8) as f64 / 24.0;
        let renewal = healthscore::event::format_rfc3339(at(renewal_day as f64));
        lines.push((
            at(hour),
            event(&id, &format!("{id}-r0"), at(hour), "subscription_renewed", json!({"renewal_date": renewal})),
        ));
        let last = if churns { renewal_day } else { DAYS };
        for d in 0..last {
            let t = at(d as f64 + 0.4 + hour);
            let fields = json!({"feature": FEATURES[(d % 4) as usize], "user_id": format!("u{}", d % 3)});
            lines.push((t, event(&id, &format!("{id}-{d}"), t, "feature_used", fields)));
        }
        let t = at(renewal_day as f64 - 0.2);
        if churns {
            lines.push((t, event(&id, &format!("{id}-cancel"), t, "subscription_cancelled", json!({}))));
            labels.push((id, t));
        } else {
            let next = healthscore::event::format_rfc3339(at(renewal_day as f64 + 365.0));
            lines.push((t, event(&id, &format!("{id}-r1"), t, "subscription_renewed", json!({"renewal_date": next}))));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    let bytes = lines.into_iter().flat_map(|(_, l)| l.into_iter().chain([b'\n'])).collect();
    (vec![Input { name: "history".into(), bytes }], labels)
}

#[test]
fn learning_curves_finds_renewal_timing_when_churn_happens_only_at_renewals() {
    let (inputs, labels) = renewal_driven(240);
    let cfg = ObserveConfig { every_days: 3, ..config(30, Outcomes::Complete) };
    let sc = Scorecard::default_scorecard();
    let observed = observe(sc.clone(), &inputs, &labels, &cfg);
    let split_at = Split::Fraction(0.5).date(&observed.dates);
    let cal = healthscore::calibrate::learn(&sc, &observed.observations, split_at, 1.0, "learned", "test", 30).unwrap();
    let top = cal.fit.components.iter().max_by(|a, b| a.new_weight.total_cmp(&b.new_weight)).unwrap();
    assert_eq!(top.name, "days_to_renewal", "{:?}", cal.fit.components);
    let (before, after) = (cal.report_before.auc.unwrap(), cal.report_after.auc.unwrap());
    assert!(after > 0.75 && after > before + 0.15, "held-out AUC {before} -> {after}");
    // The file is a scorecard that scores the report period as calibrate said, with bands set
    // from the fit period.
    let new = Scorecard::from_toml(&cal.toml, "new").unwrap();
    assert!(new.bands.red_below < new.bands.green_from && new.bands.green_from != sc.bands.green_from);
    let later: Vec<_> = observed.observations.iter().filter(|o| o.at >= split_at).cloned().collect();
    let churned: Vec<bool> = later.iter().map(|o| o.churned).collect();
    assert_eq!(backtest::metrics::auc(&backtest::rescore(&new, &later), &churned), Some(after));
    assert!(cal.toml.contains("signal = \"days_to_renewal\"") && cal.toml.contains("# Learned by"), "{}", cal.toml);
}

#[test]
fn a_learned_scorecard_reads_its_score_as_a_churn_probability_calibrated_on_observed_churn() {
    let (inputs, labels) = renewal_driven(240);
    let cfg = ObserveConfig { every_days: 3, ..config(30, Outcomes::Complete) };
    let sc = Scorecard::default_scorecard();
    assert_eq!(sc.probability, None, "a hand-set scorecard claims no probability");
    let observed = observe(sc.clone(), &inputs, &labels, &cfg);
    let split_at = Split::Fraction(0.5).date(&observed.dates);
    let cal = healthscore::calibrate::learn(&sc, &observed.observations, split_at, 1.0, "learned", "test", 30).unwrap();
    let p = cal.probability.expect("a scorecard that ranks churn gets a probability");
    assert_eq!(p.horizon_days, 30);
    assert!(p.slope < 0.0, "{p:?}");
    // The file carries it, and the scorecard read back from the file has the same table.
    let new = Scorecard::from_toml(&cal.toml, "new").unwrap();
    assert_eq!(new.probability, Some(p), "{}", cal.toml);
    // On the report period, which the fit never saw: churners get higher probabilities than
    // stayers, and the mean probability is near the observed churn rate.
    let later: Vec<_> = observed.observations.iter().filter(|o| o.at >= split_at).cloned().collect();
    let probs: Vec<f64> = backtest::rescore(&new, &later).iter().map(|s| p.of(*s)).collect();
    let mean = |churned: bool| {
        let v: Vec<f64> = probs.iter().zip(&later).filter(|(_, o)| o.churned == churned).map(|(p, _)| *p).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(true) > 2.0 * mean(false), "churners {} vs stayers {}", mean(true), mean(false));
    let (predicted, observed_rate) = cal.report_probability.unwrap();
    assert!(predicted > 0.5 * observed_rate && predicted < 2.0 * observed_rate, "{predicted} vs {observed_rate}");
}

#[test]
fn learning_curves_only_reads_the_fit_period() {
    // Outcomes in the report period flipped: the learned scorecard must not change.
    let (inputs, labels) = renewal_driven(120);
    let cfg = ObserveConfig { every_days: 3, ..config(30, Outcomes::Complete) };
    let sc = Scorecard::default_scorecard();
    let observed = observe(sc.clone(), &inputs, &labels, &cfg);
    let split_at = Split::Fraction(0.5).date(&observed.dates);
    let mut flipped = observed.observations.clone();
    for o in flipped.iter_mut().filter(|o| o.at >= split_at) {
        o.churned = !o.churned;
    }
    let learn = |obs: &[healthscore::backtest::Observation]| {
        healthscore::calibrate::learn(&sc, obs, split_at, 1.0, "learned", "test", 30).unwrap().fit.components
    };
    let (a, b) = (learn(&observed.observations), learn(&flipped));
    let weights = |c: &[healthscore::calibrate::FittedComponent]| -> Vec<(String, f64)> {
        c.iter().map(|c| (c.name.clone(), c.new_weight)).collect()
    };
    assert_eq!(weights(&a), weights(&b));
}
