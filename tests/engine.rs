//! Behaviour of the engine through its public API: scores, time, de-duplication, lateness,
//! eviction and determinism.

mod common;

use common::*;
use healthscore::engine::{EngineConfig, Outcome};
use healthscore::event::{RejectReason, DAY_MS};
use healthscore::score::Scorecard;
use serde_json::json;

#[test]
fn a_customer_using_the_product_well_is_green_and_the_score_is_explained() {
    let mut h = Harness::new();
    h.subscribe("acme", at(0.0), "pro", 10);
    h.use_product("acme", 0, 120, 9, &CORE);
    let s = h.last_score("acme");
    assert_eq!(s["band"], "green", "{s:#}");
    let components = s["components"].as_array().unwrap();
    let sum: f64 = components.iter().map(|c| c["contribution"].as_f64().unwrap()).sum();
    assert!((sum - s["score"].as_f64().unwrap()).abs() < 0.2, "contributions {sum} vs score {}", s["score"]);
    assert_eq!(s["model_version"], "default-2026.12");
    let first = &h.scores("acme")[0];
    assert_eq!(first["reason"], "first_score");
    assert_eq!(first["stage"], "onboarding", "tenure under 90 days");
    assert!(first["previous_score"].is_null());
}

#[test]
fn a_silent_customer_decays_to_red_and_goes_quiet_without_any_new_event() {
    let mut h = Harness::new();
    h.subscribe("quiet", at(0.0), "pro", 10);
    h.use_product("quiet", 0, 100, 8, &CORE);
    assert_eq!(h.last_score("quiet")["band"], "green");
    let before = h.outputs.len();
    h.advance(at(140.0));
    let after = &h.json()[before..];
    // The score's fall raises the first risk alert; gone_quiet, due after 14 quiet days, waits
    // for the alert budget (one risk alert in any 30 days) and then fires, the customer still
    // silent: from timers alone.
    let risk: Vec<&serde_json::Value> = after.iter().filter(|o| o["kind"] == "risk").collect();
    let first = risk.first().expect("a risk alert fired from timers alone");
    let gone = after.iter().find(|o| o["rule"] == "gone_quiet").unwrap_or_else(|| {
        panic!(
            "gone_quiet fired from timers alone: {:?}",
            risk.iter().map(|o| (&o["rule"], &o["timestamp"])).collect::<Vec<_>>()
        )
    });
    let quiet_days = gone["evidence"]["days_since_last_activity"].as_f64().unwrap();
    assert!(quiet_days >= 14.0, "fired after {quiet_days} quiet days");
    if first["rule"] != "gone_quiet" {
        let day = |o: &serde_json::Value| {
            healthscore::event::parse_date_or_datetime(&o["timestamp"].as_str().unwrap()[..10]).unwrap() / DAY_MS
        };
        assert!(day(gone) - day(first) >= 30, "gone_quiet waited for the budget: {first} then {gone}");
    }
    assert_eq!(h.last_score("quiet")["band"], "red");
    // Scores come out in time order, at the moments stream time reached them.
    let times: Vec<String> = after.iter().map(|o| o["timestamp"].as_str().unwrap().to_string()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn timers_evaluate_each_customer_once_a_day_not_every_customer_every_tick() {
    let mut h = Harness::new();
    for i in 0..50 {
        h.send(&format!("c{i}"), at(0.0) + i as i64 * 1000, "session", json!({"duration_seconds": 60})).unwrap();
    }
    let base = h.engine.stats().evaluations;
    h.advance(at(0.5));
    h.advance(at(0.5) + 1); // a tick that reaches no timer costs nothing
    let half = h.engine.stats().evaluations - base;
    h.advance(at(1.0) + 60_000);
    let day = h.engine.stats().evaluations - base;
    assert_eq!(day, 50, "one day of stream time evaluates each customer exactly once");
    assert!(half < 50, "timers are spread over the day, {half} of 50 ran in the first half");
    h.advance(at(3.0) + 60_000);
    assert_eq!(h.engine.stats().evaluations - base, 150);
}

#[test]
fn redelivered_events_are_counted_once() {
    let mut h = Harness::new();
    let e = event("c", "same-id", at(1.0), "feature_used", json!({"feature": "reports"}));
    assert_eq!(h.send_bytes(&e), Ok(Outcome::Applied));
    assert_eq!(h.send_bytes(&e), Ok(Outcome::Duplicate));
    h.send("c", at(1.1), "feature_used", json!({"feature": "reports"})).unwrap();
    assert_eq!(h.send_bytes(&e), Ok(Outcome::Duplicate), "still remembered after other events");
    let c = h.engine.customer("c").unwrap();
    assert_eq!(c.usage.iter().map(|(_, b)| b.events).sum::<u32>(), 2);
    assert_eq!(h.engine.stats().duplicates, 2);
}

#[test]
fn events_older_than_the_longest_window_are_too_late() {
    let mut h = Harness::new();
    h.send("c", at(100.0), "session", json!({"duration_seconds": 60})).unwrap();
    let late = h.send("c", at(5.0), "session", json!({"duration_seconds": 60})).unwrap_err();
    assert_eq!(late.reason, RejectReason::TooLate);
    // Late but inside the window: applied.
    assert_eq!(h.send("c", at(20.0), "session", json!({"duration_seconds": 60})), Ok(Outcome::Applied));
    // Too late for a new customer too: windows are relative to stream time.
    assert_eq!(
        h.send("new", at(1.0), "session", json!({"duration_seconds": 1})).unwrap_err().reason,
        RejectReason::TooLate
    );
    assert_eq!(h.engine.stats().rejected[RejectReason::TooLate as usize], 2);
}

#[test]
fn bad_input_is_rejected_with_a_reason_and_the_engine_keeps_going() {
    let mut h = Harness::new();
    assert_eq!(h.send_bytes(b"{oops").unwrap_err().reason, RejectReason::NotJson);
    assert_eq!(h.send("c", at(1.0), "teleport", json!({})).unwrap_err().reason, RejectReason::UnknownType);
    let r = h.send("c", at(1.0), "ticket_opened", json!({"ticket_id": "t", "priority": "asap"})).unwrap_err();
    assert_eq!((r.reason, r.field), (RejectReason::InvalidField, Some("priority")));
    assert!(r.message.contains("asap"), "{}", r.message);
    assert_eq!(h.send("c", at(1.0), "session", json!({"duration_seconds": 5})), Ok(Outcome::Applied));
}

#[test]
fn lateness_holds_timers_until_stream_time_passes_them() {
    let mut h = Harness::with(
        Scorecard::default_scorecard(),
        EngineConfig { allowed_lateness_secs: 6 * 3600, ..Default::default() },
    );
    h.send("a", at(0.0), "session", json!({"duration_seconds": 60})).unwrap();
    let base = h.engine.stats().evaluations;
    h.send("b", at(1.1), "session", json!({"duration_seconds": 60})).unwrap();
    // Stream time is at(1.1) - 6h, before the end of day 1 for most timer offsets: check that
    // stream time really lags and that a's timer fired only if due before it.
    assert_eq!(h.engine.stream_time(), Some(at(1.1) - 6 * HOUR));
    let a_due = h.engine.customer("a").unwrap().next_due;
    assert!(a_due > at(1.1) - 6 * HOUR, "a's pending timer lies after stream time");
    assert!(h.engine.stats().evaluations - base <= 2);
}

#[test]
fn cancelled_customers_are_scored_a_last_time_and_evicted() {
    let mut h = Harness::new();
    h.subscribe("gone", at(0.0), "pro", 5);
    h.use_product("gone", 0, 30, 3, &CORE);
    h.send("gone", at(30.0), "subscription_cancelled", json!({"reason": "budget", "effective_date": "2026-02-20"}))
        .unwrap();
    h.advance(at(40.0));
    assert!(h.engine.customer("gone").is_some(), "kept until the cancellation takes effect");
    h.advance(at(48.0));
    assert!(h.engine.customer("gone").is_none(), "evicted after the effective date");
    assert_eq!(h.last_score("gone")["reason"], "final");
    assert_eq!(h.engine.stats().evicted, 1);
}

#[test]
fn silent_customers_are_evicted_after_retention() {
    let mut h = Harness::new();
    h.send("c", at(0.0), "session", json!({"duration_seconds": 60})).unwrap();
    h.advance(at(119.0));
    assert!(h.engine.customer("c").is_some());
    h.advance(at(122.0));
    assert!(h.engine.customer("c").is_none());
    assert_eq!(h.engine.customer_count(), 0);
}

#[test]
fn same_input_gives_byte_identical_output() {
    let run = || {
        let mut h = Harness::new();
        h.subscribe("a", at(0.0), "enterprise", 50);
        h.subscribe("b", at(0.0), "starter", 3);
        h.use_product("a", 0, 40, 20, &CORE);
        h.use_product("b", 0, 20, 2, &["reports"]);
        h.send("b", at(21.0), "payment_failed", json!({"invoice_id": "i1", "amount": 99})).unwrap();
        h.advance(at(80.0));
        h.outputs.iter().flat_map(|o| o.to_json()).collect::<Vec<u8>>()
    };
    let (x, y) = (run(), run());
    assert!(!x.is_empty());
    assert_eq!(x, y);
}

#[test]
fn small_score_moves_are_not_emitted_but_band_changes_are() {
    let mut h = Harness::new();
    h.subscribe("c", at(0.0), "pro", 10);
    h.use_product("c", 0, 100, 8, &CORE);
    let scores = h.scores("c");
    for pair in scores.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let moved = (a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs();
        assert!(moved >= 5.0 || a["band"] != b["band"], "emitted a move of {moved}: {} -> {}", a["score"], b["score"]);
        assert_eq!(b["previous_score"], a["score"]);
        assert_eq!(b["previous_band"], a["band"]);
    }
    assert!(h.engine.stats().evaluations as usize > 10 * scores.len(), "most evaluations emit nothing");
}

#[test]
fn the_seven_day_trend_compares_with_the_score_a_week_ago() {
    let mut h = Harness::new();
    h.subscribe("c", at(0.0), "pro", 10);
    h.use_product("c", 0, 100, 8, &CORE);
    h.advance(at(125.0));
    let drops: Vec<_> =
        h.scores("c").into_iter().filter(|s| s["trend_7d"].as_f64().is_some_and(|t| t < -5.0)).collect();
    assert!(!drops.is_empty(), "a silent week shows as a negative 7-day trend");
}

#[test]
fn retention_must_exceed_the_longest_window() {
    let issues = EngineConfig { retention_days: 30, ..Default::default() }.validate();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].0, "retention_days");
}

#[test]
fn timers_are_on_a_daily_grid() {
    let mut h = Harness::new();
    h.send("c", at(0.0), "session", json!({"duration_seconds": 60})).unwrap();
    let due = h.engine.customer("c").unwrap().next_due;
    assert!(due > at(0.0) && due <= at(1.0));
    h.advance(due);
    assert_eq!(h.engine.customer("c").unwrap().next_due, due + DAY_MS);
}

#[test]
fn the_last_score_before_eviction_always_says_final() {
    let mut h = Harness::new();
    h.send("c", at(0.0), "session", json!({"duration_seconds": 60})).unwrap();
    // Cancelled with no evaluation in between: the final score is also a band change, but
    // downstream needs to know it is the last.
    h.send("c", at(0.5), "subscription_cancelled", json!({})).unwrap();
    h.advance(at(2.0));
    assert!(h.engine.customer("c").is_none());
    assert_eq!(h.last_score("c")["reason"], "final");
}

#[test]
fn a_feature_used_counts_its_quantity() {
    let mut h = Harness::new();
    h.send("c", at(0.0), "feature_used", json!({"feature": "api", "quantity": 250})).unwrap();
    h.send("c", at(0.1), "feature_used", json!({"feature": "api", "quantity": 0})).unwrap();
    h.send("c", at(0.2), "session", json!({"duration_seconds": 60})).unwrap();
    let c = h.engine.customer("c").unwrap();
    assert_eq!(c.usage.iter().map(|(_, b)| b.events).sum::<u32>(), 252, "250 + at least 1 + 1");
}

/// The query API's view (issue 5): a customer explained as of its last evaluation says what
/// that evaluation emitted, and the census counts each scored customer once, where it stands.
#[test]
fn a_customer_explained_matches_its_last_score_and_the_census_follows_bands() {
    use healthscore::score::{Band, Stage};
    let mut h = Harness::new();
    h.subscribe("acme", at(0.0), "pro", 10);
    h.subscribe("quiet", at(0.0), "pro", 10);
    h.use_product("quiet", 0, 30, 8, &CORE);
    h.use_product("acme", 0, 100, 8, &CORE);
    h.advance(at(100.5));
    // Re-score acme at the same instant as its last output, so the two can be compared.
    let last = h.last_score("acme");
    let e = h.engine.explain("acme").expect("scored");
    let shown = serde_json::to_value(&e).unwrap();
    let last_time = last["timestamp"].as_str().unwrap();
    if shown["scored_at"] == last_time {
        assert_eq!(shown["score"], last["score"], "{shown:#}\n{last:#}");
        assert_eq!(shown["components"], last["components"]);
        assert_eq!(shown["stage"], last["stage"]);
    }
    assert_eq!(shown["band"], "green", "{shown:#}");
    let sum: f64 = e.components.iter().map(|c| c.contribution).sum();
    assert!((sum - e.standing.score).abs() < 0.2, "contributions add up to the score: {sum} vs {}", e.standing.score);
    assert!(h.engine.explain("nobody").is_none());

    let quiet = h.engine.explain("quiet").expect("scored");
    assert_eq!(quiet.standing.band, Band::Red, "{quiet:?}");
    assert!(quiet.recent_alerts.iter().any(|a| a.rule == "gone_quiet"), "{:?}", quiet.recent_alerts);

    let census = &h.engine.stats().census;
    assert_eq!(census.band_total(Band::Green), 1);
    assert_eq!(census.band_total(Band::Red), 1);
    assert_eq!(census.band_total(Band::Yellow), 0);
    let pro = h.engine.scorecard().segment_of(Some("pro"));
    let total: u64 = Band::ALL.iter().flat_map(|b| Stage::ALL.map(|s| census.count(*b, s, pro))).sum();
    assert_eq!(total, 2, "each scored customer counted exactly once");

    let kept = census.clone();
    h.engine.recount_census();
    for band in Band::ALL {
        for stage in Stage::ALL {
            assert_eq!(
                kept.count(band, stage, pro),
                h.engine.stats().census.count(band, stage, pro),
                "{band:?} {stage:?}"
            );
        }
    }

    // Silent past retention (120 days): scored a last time and evicted, and the census lets
    // it go; acme (silent since day 100) is still counted, in whatever band it has sunk to.
    h.advance(at(200.0));
    assert!(h.engine.explain("quiet").is_none());
    assert_eq!(Band::ALL.iter().map(|b| h.engine.stats().census.band_total(*b)).sum::<u64>(), 1);
}

#[test]
fn the_worst_customers_come_first_and_filter_by_band() {
    use healthscore::score::Band;
    let mut h = Harness::new();
    let days = [10u32, 20, 60, 100];
    for i in 0..days.len() {
        h.subscribe(&format!("c{i}"), at(0.0), "pro", 10);
    }
    // Shortest history first: each customer's events stay within 90 days of stream time.
    for (i, d) in days.iter().enumerate() {
        h.use_product(&format!("c{i}"), 0, *d, 8, &CORE);
    }
    h.advance(at(101.0));
    let all = h.engine.worst(None, 10);
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].score <= w[1].score), "{all:?}");
    let two = h.engine.worst(None, 2);
    assert_eq!(two, all[..2].to_vec(), "a limit keeps the worst");
    let red = h.engine.worst(Some(Band::Red), 10);
    assert!(!red.is_empty() && red.iter().all(|s| s.band == Band::Red), "{red:?}");
    assert!(h.engine.worst(None, 0).is_empty());
}
