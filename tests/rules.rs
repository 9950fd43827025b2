//! Every built-in alert rule fires on the condition it names, carries its evidence and
//! playbook, and respects its cooldown in event time (seen alone, without the alert budget);
//! then the limits on volume: the budget, one renewal warning per cycle, nothing after a
//! cancellation.

mod common;

use common::*;
use healthscore::engine::EngineConfig;
use healthscore::event::{format_rfc3339, DAY_MS};
use healthscore::score::Scorecard;
use serde_json::json;

/// A mature, healthy customer: subscribed 100 days before day 0, used well from day 0 to 100,
/// renewal far away.
fn healthy(h: &mut Harness, id: &str, users: u32, seats: u32) {
    let start = at(-100.0);
    let renewal = format_rfc3339(at(400.0));
    h.send(
        id,
        start,
        "subscription_started",
        json!({"plan": "pro", "mrr": 1000, "seats": seats, "renewal_date": renewal}),
    )
    .unwrap();
    h.use_product(id, 0, 100, users, &CORE);
}

/// A customer subscribed 100 days before day 0 with 20 seats and a renewal on `renewal`, using
/// the product weakly (2 users, one feature) from day 0 to `until`.
fn weak_before_renewal(h: &mut Harness, renewal: &str, until: u32) {
    h.send(
        "c",
        at(-100.0),
        "subscription_started",
        json!({"plan": "pro", "mrr": 500, "seats": 20, "renewal_date": renewal}),
    )
    .unwrap();
    h.use_product("c", 0, until, 2, &["reports"]);
}

#[test]
fn payment_failed_fires_on_the_event_and_respects_its_cooldown() {
    let mut h = Harness::without_alert_budget();
    healthy(&mut h, "c", 8, 10);
    h.send("c", at(100.0), "payment_failed", json!({"invoice_id": "i1", "amount": 250})).unwrap();
    h.send("c", at(101.0), "payment_failed", json!({"invoice_id": "i1", "amount": 250})).unwrap();
    let alerts = h.alerts("payment_failed");
    assert_eq!(alerts.len(), 1, "second failure inside the 3-day cooldown is not re-alerted");
    let a = &alerts[0];
    assert_eq!(a["kind"], "risk");
    assert_eq!(a["evidence"]["amount"], 250.0);
    assert!(a["playbook"].as_str().unwrap().contains("payment method"));
    assert_eq!(a["dedupe_key"], "c/payment_failed");
    h.send("c", at(104.0), "payment_failed", json!({"invoice_id": "i2", "amount": 250})).unwrap();
    let alerts = h.alerts("payment_failed");
    assert_eq!(alerts.len(), 2, "after the cooldown it fires again");
    assert_eq!(alerts[1]["severity"], "high", "repeated failures raise the severity");
}

#[test]
fn gone_quiet_fires_once_per_cooldown() {
    let mut h = Harness::without_alert_budget();
    healthy(&mut h, "c", 8, 10);
    h.advance(at(150.0));
    let alerts = h.alerts("gone_quiet");
    assert_eq!(alerts.len(), 2, "day ~14 of silence, then again 30 days later: {alerts:#?}");
}

#[test]
fn band_downgrade_and_sharp_drop_fire_when_health_falls() {
    let mut h = Harness::without_alert_budget();
    healthy(&mut h, "c", 8, 10);
    // Everything goes wrong at once.
    for i in 0..3 {
        h.send("c", at(100.0), "ticket_opened", json!({"ticket_id": format!("t{i}"), "priority": "urgent"})).unwrap();
        h.send("c", at(100.1), "payment_failed", json!({"invoice_id": format!("i{i}"), "amount": 10})).unwrap();
        h.send("c", at(100.1), "invoice_overdue", json!({"invoice_id": format!("i{i}"), "amount": 10})).unwrap();
    }
    h.send("c", at(100.2), "nps_response", json!({"score": 0})).unwrap();
    let drops: Vec<_> =
        h.alerts("sharp_drop").into_iter().filter(|a| a["timestamp"].as_str().unwrap() >= "2026-04-15").collect();
    assert_eq!(drops.len(), 1, "support and billing trouble alone drop the score sharply");
    assert!(drops[0]["evidence"]["drop"].as_f64().unwrap() >= 15.0);
    h.advance(at(115.0)); // and the customer stops using the product
    let downgrades: Vec<_> =
        h.alerts("band_downgrade").into_iter().filter(|a| a["timestamp"].as_str().unwrap() >= "2026-04-15").collect();
    assert!(!downgrades.is_empty(), "green → worse raises band_downgrade");
    assert_eq!(downgrades[0]["evidence"]["previous_band"], "green");
    assert_ne!(h.last_score("c")["band"], "green");
    h.advance(at(130.0));
    assert_eq!(h.last_score("c")["band"], "red");
}

#[test]
fn urgent_ticket_while_usage_collapses() {
    let mut h = Harness::without_alert_budget();
    healthy(&mut h, "c", 8, 10);
    h.use_product("c", 100, 110, 1, &["reports"]); // usage collapses to one user, one feature
    h.send("c", at(110.5), "ticket_opened", json!({"ticket_id": "t1", "priority": "urgent"})).unwrap();
    let a = h.alerts("urgent_ticket_usage_collapse");
    assert_eq!(a.len(), 1, "{:#?}", h.json().iter().filter(|o| o["type"] == "alert").collect::<Vec<_>>());
    assert_eq!(a[0]["severity"], "critical");
    assert!(a[0]["evidence"]["usage_trend_7d_pct"].as_f64().unwrap() <= -50.0);
    // A normal-priority ticket alone does not fire it.
    let mut calm = Harness::without_alert_budget();
    healthy(&mut calm, "c", 8, 10);
    calm.use_product("c", 100, 110, 1, &["reports"]);
    calm.send("c", at(110.5), "ticket_opened", json!({"ticket_id": "t1", "priority": "normal"})).unwrap();
    assert!(calm.alerts("urgent_ticket_usage_collapse").is_empty());
}

#[test]
fn renewal_at_risk_when_renewal_is_near_and_health_is_not_green() {
    let mut h = Harness::without_alert_budget();
    let renewal = format_rfc3339(at(60.0));
    weak_before_renewal(&mut h, &renewal, 40);
    let a = h.alerts("renewal_at_risk");
    assert!(!a.is_empty());
    assert!(a[0]["evidence"]["days_to_renewal"].as_f64().unwrap() <= 90.0);
    assert_ne!(a[0]["band"], "green");
    assert_eq!(h.scores("c").last().unwrap()["stage"], "renewal");
    // A healthy customer near renewal gets no such alert.
    let mut ok = Harness::without_alert_budget();
    ok.send(
        "c",
        at(-100.0),
        "subscription_started",
        json!({"plan": "pro", "mrr": 500, "seats": 10, "renewal_date": renewal}),
    )
    .unwrap();
    ok.use_product("c", 0, 40, 9, &CORE);
    let late: Vec<_> =
        ok.alerts("renewal_at_risk").into_iter().filter(|a| a["timestamp"].as_str().unwrap() > "2026-01-20").collect();
    assert!(late.is_empty(), "{late:#?}");
}

#[test]
fn renewal_at_risk_is_not_raised_for_a_monthly_plan_that_is_always_near_a_renewal() {
    // The same weak customer as above, on a monthly plan: every renewal is 30 days after the
    // last, so it is always within the rule's 90 days, and a warning would come every month.
    let mut h = Harness::without_alert_budget();
    let date = |d: f64| format_rfc3339(at(d));
    h.send(
        "c",
        at(-100.0),
        "subscription_started",
        json!({"plan": "pro", "mrr": 500, "seats": 20, "renewal_date": date(-70.0)}),
    )
    .unwrap();
    for d in [-70.0, -40.0, -10.0, 20.0] {
        h.send("c", at(d), "subscription_renewed", json!({"renewal_date": date(d + 30.0)})).unwrap();
    }
    h.use_product("c", 0, 40, 2, &["reports"]);
    assert!(h.alerts("renewal_at_risk").is_empty(), "{:#?}", h.alerts("renewal_at_risk"));
    let bands: Vec<_> = h.scores("c").iter().map(|s| (s["timestamp"].clone(), s["band"].clone())).collect();
    assert!(
        bands.iter().any(|(_, b)| b != "green"),
        "the customer is weak: only the term keeps the rule quiet: {bands:?}"
    );
}

#[test]
fn opportunities_expansion_ready_and_advocate_candidate() {
    let mut h = Harness::without_alert_budget();
    healthy(&mut h, "c", 10, 10); // every seat in use
    let exp = h.alerts("expansion_ready");
    assert!(!exp.is_empty());
    assert_eq!(exp[0]["kind"], "opportunity");
    assert!(exp[0]["evidence"]["seat_utilisation_pct"].as_f64().unwrap() >= 90.0);
    let n = exp.len();
    assert!(n <= 4, "30-day cooldown over 100 days: {n}");
    h.send("c", at(100.0), "nps_response", json!({"score": 10})).unwrap();
    let adv = h.alerts("advocate_candidate");
    assert_eq!(adv.len(), 1);
    assert_eq!(adv[0]["evidence"]["last_nps"], 10.0);
}

#[test]
fn rules_can_be_switched_off_and_retuned_in_the_scorecard() {
    let text = healthscore::score::DEFAULT_SCORECARD.to_string()
        + "\n[rules]\nrisk_alerts_per_30d = 0\n[rules.payment_failed]\nenabled = false\n[rules.gone_quiet]\ndays = 30\nplaybook = \"Call them.\"\n";
    let sc = Scorecard::from_toml(&text, "test").unwrap();
    let mut h = Harness::with(sc, EngineConfig { allowed_lateness_secs: 0, ..Default::default() });
    healthy(&mut h, "c", 8, 10);
    h.send("c", at(100.0), "payment_failed", json!({"invoice_id": "i1", "amount": 250})).unwrap();
    assert!(h.alerts("payment_failed").is_empty());
    h.advance(at(100.0) + 40 * DAY_MS);
    let q = h.alerts("gone_quiet");
    assert_eq!(q.len(), 1);
    assert!(q[0]["evidence"]["days_since_last_activity"].as_f64().unwrap() >= 30.0);
    assert_eq!(q[0]["playbook"], "Call them.");
}

#[test]
fn state_rules_wait_for_a_warm_up_but_payment_failures_do_not() {
    let mut h = Harness::without_alert_budget();
    let renewal = format_rfc3339(at(30.0));
    // First seen through billing only: no usage history yet, a weak score, renewal near. (Another
    // customer's use connects the usage source: without it, usage would count as not connected.)
    h.send("other", at(0.0), "feature_used", json!({"feature": "reports", "user_id": "u"})).unwrap();
    h.send("new", at(0.0), "subscription_changed", json!({"plan": "pro", "mrr": 500, "seats": 10})).unwrap();
    h.send("new", at(0.0), "subscription_renewed", json!({"renewal_date": renewal})).unwrap();
    h.send("new", at(1.0), "payment_failed", json!({"invoice_id": "i1", "amount": 500})).unwrap();
    h.advance(at(10.0));
    assert!(h.alerts("renewal_at_risk").is_empty(), "no state alert in the first 14 days");
    assert_eq!(h.alerts("payment_failed").len(), 1, "an event-driven alert is never held back");
    h.advance(at(16.0));
    assert_eq!(h.alerts("renewal_at_risk").len(), 1, "after the warm-up the weak renewal is flagged");
}

#[test]
fn an_empty_playbook_is_rejected() {
    let text = healthscore::score::DEFAULT_SCORECARD.to_string() + "\n[rules.gone_quiet]\nplaybook = \" \"\n";
    let err = Scorecard::from_toml(&text, "test").unwrap_err();
    assert_eq!(err.issues[0].key, "rules.gone_quiet.playbook");
}

/// Risk alerts (rule, day, critical?) in time order.
fn risk_alerts(h: &Harness) -> Vec<(String, i64, bool)> {
    h.json()
        .iter()
        .filter(|o| o["type"] == "alert" && o["kind"] == "risk")
        .map(|o| {
            let t = healthscore::event::parse_date_or_datetime(o["timestamp"].as_str().unwrap()).unwrap();
            (o["rule"].as_str().unwrap().to_string(), t.div_euclid(DAY_MS), o["severity"] == "critical")
        })
        .collect()
}

#[test]
fn the_alert_budget_holds_a_customer_to_one_risk_alert_in_30_days_and_lets_critical_ones_through() {
    let everything_goes_wrong = |h: &mut Harness| {
        healthy(h, "c", 8, 10);
        for i in 0..3 {
            h.send("c", at(100.0), "ticket_opened", json!({"ticket_id": format!("t{i}"), "priority": "urgent"}))
                .unwrap();
            h.send("c", at(100.1), "payment_failed", json!({"invoice_id": format!("i{i}"), "amount": 10})).unwrap();
        }
        h.advance(at(160.0)); // and the customer stops using the product
    };
    let mut unbudgeted = Harness::without_alert_budget();
    everything_goes_wrong(&mut unbudgeted);
    let mut h = Harness::new();
    everything_goes_wrong(&mut h);
    let (all, kept) = (risk_alerts(&unbudgeted), risk_alerts(&h));
    assert!(all.len() >= kept.len() + 2, "the budget holds some back: {all:?} vs {kept:?}");
    // The budget is judged on severity, not on rule names: critical alerts bypass it.
    let not_critical: Vec<_> = kept.iter().filter(|(_, _, critical)| !critical).collect();
    for w in not_critical.windows(2) {
        assert!(w[1].1 - w[0].1 >= 30, "at most one non-critical risk alert in any 30 days: {kept:?}");
    }
    assert!(!not_critical.is_empty(), "the most severe one still goes out");
    // What was held back while its condition lasted fires once the budget allows.
    assert!(kept.iter().any(|(r, _, _)| r == "gone_quiet"), "{kept:?}");
}

#[test]
fn renewal_at_risk_fires_once_per_renewal_cycle_unless_the_band_worsens() {
    let mut h = Harness::without_alert_budget();
    // Weak usage the whole 90 days before the renewal.
    weak_before_renewal(&mut h, &format_rfc3339(at(80.0)), 75);
    let a = h.alerts("renewal_at_risk");
    let bands: Vec<&str> = a.iter().map(|x| x["band"].as_str().unwrap()).collect();
    // The 30-day cooldown alone would warn two or three times before the same renewal; now
    // once, and again only when the band got worse (yellow to red) on the way.
    assert!(!a.is_empty());
    for w in bands.windows(2) {
        assert!(w[1] == "red" && w[0] != "red", "a repeat only when the band worsened: {bands:?}");
    }
    assert!(a.len() <= 2, "{bands:?}");
}

#[test]
fn a_customer_who_cancelled_gets_no_more_alerts() {
    let mut h = Harness::new();
    healthy(&mut h, "c", 8, 10);
    let effective = format_rfc3339(at(130.0));
    h.send("c", at(100.0), "subscription_cancelled", json!({"reason": "budget", "effective_date": effective})).unwrap();
    h.advance(at(140.0)); // silent after the notice, until the cancellation takes effect
    let after: Vec<_> = risk_alerts(&h).into_iter().filter(|(_, d, _)| *d > at(100.0) / DAY_MS).collect();
    assert!(after.is_empty(), "no alerts after the cancellation: {after:?}");
    assert!(h.scores("c").iter().any(|s| s["reason"] == "final"), "its final score still goes out");
}
