//! Hostile and broken input (issue 24): no single message may stop the engine or wipe a
//! partition's state. Each test is named after the case it guards, and each failed (or aborted
//! the test binary) on the code before the fix.

mod common;

use std::sync::Arc;

use serde_json::json;

use common::{at, event, Harness, HOUR};
use healthscore::engine::{Engine, EngineConfig, Outcome};
use healthscore::event::{
    format_rfc3339, parse, parse_rfc3339, quick_time, timestamp_finder, RejectReason, DAY_MS, MAX_DEPTH,
    TOO_LARGE_PREFIX,
};
use healthscore::input::{History, Input};
use healthscore::replay::{dead_letter_json, replay, DeadLetter};
use healthscore::score::Scorecard;

const USAGE: &str = r#""event_id":"e1","customer_id":"c1","timestamp":"2026-01-05T10:00:00Z","type":"feature_used","feature":"reports""#;

fn nested(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn nested_json_of_30000_levels_is_too_deep_not_a_stack_overflow() {
    // In an ignored field (the skip of unknown values recursed), as a known field's value, and
    // as the whole document: before the fix each aborted the process.
    for doc in [
        format!("{{{USAGE},\"x\":{}}}", nested(30_000)),
        format!("{{{USAGE},\"user_id\":{}}}", nested(30_000)),
        nested(30_000),
        format!("{{\"a\":{}}}", "{\"a\":".repeat(30_000) + "1" + &"}".repeat(30_000)),
    ] {
        let err = parse(doc.as_bytes(), None).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooDeep, "{}", err.message);
    }
    // Nesting a producer might really add, in a field the engine ignores, is still read.
    let ok = format!("{{{USAGE},\"context\":{{\"a\":[{{\"b\":[1,2,{{\"c\":\"]]]\"}}]}}]}}}}");
    assert!(parse(ok.as_bytes(), None).is_ok());
    let deepest_allowed = format!("{{{USAGE},\"x\":{}}}", nested(MAX_DEPTH - 1));
    assert!(parse(deepest_allowed.as_bytes(), None).is_ok());
    let one_more = format!("{{{USAGE},\"x\":{}}}", nested(MAX_DEPTH));
    assert_eq!(parse(one_more.as_bytes(), None).unwrap_err().reason, RejectReason::TooDeep);
}

#[test]
fn a_deeply_nested_message_is_dead_lettered_and_the_engine_goes_on() {
    let mut h = Harness::new();
    h.send("c1", at(0.0), "feature_used", json!({"feature": "reports"})).unwrap();
    let bomb = format!("{{{USAGE},\"x\":{}}}", nested(60_000));
    assert_eq!(h.send_bytes(bomb.as_bytes()).unwrap_err().reason, RejectReason::TooDeep);
    assert_eq!(h.send("c1", at(1.0), "feature_used", json!({"feature": "reports"})), Ok(Outcome::Applied));
    assert_eq!(h.engine.stats().rejected[RejectReason::TooDeep as usize], 1);
}

/// 30 customers using the product daily for `days`, through one engine.
fn population(h: &mut Harness, days: u32) {
    for d in 0..days {
        for c in 0..30 {
            h.send(&format!("c{c}"), at(d as f64) + 10 * HOUR, "feature_used", json!({"feature": "reports"})).unwrap();
        }
    }
}

#[test]
fn one_event_dated_2099_does_not_wipe_the_partition() {
    let mut h = Harness::new();
    population(&mut h, 20);
    let before = (h.outputs.len(), h.engine.customer_count(), h.engine.stream_time());
    let future = parse_rfc3339("2099-01-01T00:00:00Z").unwrap();
    // Accepted for its own customer (it may be real), but it moves no clock.
    h.send("c0", future, "feature_used", json!({"feature": "reports"})).unwrap();
    assert_eq!(h.engine.customer_count(), before.1, "no customer was evicted");
    assert_eq!(h.engine.stream_time(), before.2, "stream time did not follow one event to 2099");
    // Its own customer's evaluation (a score, perhaps an alert), not one per customer.
    assert!(h.outputs.len() <= before.0 + 2, "{} outputs from one event", h.outputs.len() - before.0);
    assert_eq!(h.engine.stats().held_leaps, 1);
    // Every other customer's next real event still counts.
    for c in 1..30 {
        let r = h.send(&format!("c{c}"), at(20.0) + 10 * HOUR, "feature_used", json!({"feature": "reports"}));
        assert_eq!(r, Ok(Outcome::Applied), "c{c}");
    }
    assert!(h.engine.stream_time().unwrap() < at(21.0));
}

#[test]
fn a_leap_is_taken_once_a_second_event_confirms_it() {
    // A real gap (an input outage of ten days): the first event after it waits, the second moves
    // stream time, and the timers of the gap fire then.
    let mut h = Harness::new();
    population(&mut h, 10);
    h.send("c1", at(20.0), "feature_used", json!({"feature": "reports"})).unwrap();
    assert!(h.engine.stream_time().unwrap() < at(10.0));
    h.send("c2", at(20.0) + 60_000, "feature_used", json!({"feature": "reports"})).unwrap();
    assert_eq!(h.engine.stream_time(), Some(at(20.0) + 60_000));
    // A redelivered copy of the leap (same customer, same time) confirms nothing.
    let mut h = Harness::new();
    population(&mut h, 10);
    let leap = event("c1", "leap", at(20.0), "feature_used", json!({"feature": "reports"}));
    h.send_bytes(&leap).unwrap();
    assert_eq!(h.send_bytes(&leap), Ok(Outcome::Duplicate));
    assert!(h.engine.stream_time().unwrap() < at(10.0));
}

#[test]
fn one_event_dated_2099_in_a_replayed_history_does_not_end_it_in_2099() {
    let mut lines = Vec::new();
    for d in 0..30 {
        for c in 0..20 {
            lines.extend(event(
                &format!("c{c}"),
                &format!("e{d}-{c}"),
                at(d as f64),
                "session",
                json!({"duration_seconds": 60}),
            ));
            lines.push(b'\n');
        }
    }
    let run = |bytes: Vec<u8>, partitions: usize| {
        let sc = Arc::new(Scorecard::default_scorecard());
        let mut engines: Vec<Engine> =
            (0..partitions).map(|_| Engine::new(sc.clone(), EngineConfig::default())).collect();
        let mut out = Vec::new();
        let history = History::from_inputs([Input { name: "h".into(), bytes }]).unwrap();
        replay(&mut engines, &history, &mut out, |_| {}).unwrap();
        let last = engines.iter().filter_map(Engine::stream_time).max();
        (out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), last)
    };
    let mut hostile = lines.clone();
    hostile.extend(event(
        "c3",
        "bad",
        parse_rfc3339("2099-06-01T00:00:00Z").unwrap(),
        "session",
        json!({"duration_seconds": 1}),
    ));
    for partitions in [1, 3] {
        let (clean, clean_end) = run(lines.clone(), partitions);
        let (bad, bad_end) = run(hostile.clone(), partitions);
        assert_eq!(bad_end, clean_end, "{partitions} partitions");
        // The 2099 customer's own evaluation, not a final score for every customer.
        assert!(bad <= clean + 2 * partitions, "{bad} outputs against {clean} without the 2099 line");
    }
}

#[test]
fn an_event_dated_past_the_wall_clock_bound_is_in_future() {
    let mut h = Harness::new();
    let now = at(10.0);
    h.engine.set_wall_clock(now);
    assert_eq!(h.send("c1", now + DAY_MS - 1000, "session", json!({"duration_seconds": 60})), Ok(Outcome::Applied));
    let err = h.send("c1", now + DAY_MS + 1000, "session", json!({"duration_seconds": 60})).unwrap_err();
    assert_eq!((err.reason, err.field), (RejectReason::InFuture, Some("timestamp")));
    // Off: no bound.
    let mut h =
        Harness::with(Scorecard::default_scorecard(), EngineConfig { max_future_secs: 0, ..Default::default() });
    h.engine.set_wall_clock(now);
    assert!(h.send("c1", now + 30 * DAY_MS, "session", json!({"duration_seconds": 60})).is_ok());
}

#[test]
fn a_message_over_max_event_bytes_is_too_large_and_its_dead_letter_is_cut() {
    let mut h = Harness::new();
    let huge = format!("{{{USAGE},\"padding\":\"{}\"}}", "x".repeat(2 << 20));
    let err = h.send_bytes(huge.as_bytes()).unwrap_err();
    assert_eq!(err.reason, RejectReason::TooLarge);
    let dl = dead_letter_json("h", &DeadLetter { file: 0, line: 1, bytes: huge.as_bytes(), rejection: err });
    let v: serde_json::Value = serde_json::from_str(&dl).unwrap();
    assert_eq!(v["reason"], "too_large");
    assert_eq!(v["original_bytes"], huge.len());
    assert_eq!(v["original"].as_str().unwrap().len(), TOO_LARGE_PREFIX);
    assert!(dl.len() < 2 * TOO_LARGE_PREFIX);
    // Any other dead letter keeps the whole original, to be redriven.
    let err = h.send_bytes(b"{\"event_id\":\"x\"}").unwrap_err();
    let dl = dead_letter_json("h", &DeadLetter { file: 0, line: 2, bytes: b"{\"event_id\":\"x\"}", rejection: err });
    assert!(dl.contains(r#""original":"{\"event_id\":\"x\"}""#), "{dl}");
}

#[test]
fn new_customers_past_max_customers_are_refused_as_capacity() {
    let config = EngineConfig { allowed_lateness_secs: 0, max_customers: 3, ..Default::default() };
    let mut h = Harness::with(Scorecard::default_scorecard(), config);
    for c in 0..3 {
        h.send(&format!("c{c}"), at(0.0), "session", json!({"duration_seconds": 60})).unwrap();
    }
    let err = h.send("random-id-1", at(0.1), "session", json!({"duration_seconds": 60})).unwrap_err();
    assert_eq!((err.reason, err.field), (RejectReason::Capacity, Some("customer_id")));
    assert_eq!(h.engine.customer_count(), 3);
    // Known customers are still served.
    assert_eq!(h.send("c1", at(0.2), "session", json!({"duration_seconds": 60})), Ok(Outcome::Applied));
}

#[test]
fn an_escaped_timestamp_is_ordered_by_its_own_time() {
    let escaped = br#"{"event_id":"e2","customer_id":"c1","timestamp":"2026-01-05T09:00:00\u005A","type":"session","duration_seconds":5}"#;
    let known = quick_time(&timestamp_finder(), escaped).expect("read despite the escape");
    assert_eq!(Some(known.millis), parse_rfc3339("2026-01-05T09:00:00Z"));
    assert_eq!(parse(escaped, None).unwrap().timestamp, known.millis);
    // In replay, a later line first in the file, then the escaped earlier one: the escaped line
    // is applied first (its session is the customer's first), not at its neighbour's time.
    let later = event("c1", "e1", at(0.0) + 12 * HOUR, "session", json!({"duration_seconds": 5}));
    let mut bytes = later.clone();
    bytes.push(b'\n');
    bytes.extend_from_slice(escaped);
    let sc = Arc::new(Scorecard::default_scorecard());
    let mut engines = vec![Engine::new(sc, EngineConfig::default())];
    let mut out = Vec::new();
    let history = History::from_inputs([Input { name: "h".into(), bytes }]).unwrap();
    replay(&mut engines, &history, &mut out, |_| {}).unwrap();
    let first: serde_json::Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["timestamp"], format_rfc3339(at(0.0) + 9 * HOUR));
}

#[test]
fn the_new_limits_are_checked_at_start_up() {
    let issues = EngineConfig { max_event_bytes: 10, ..Default::default() }.validate();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].0, "max_event_bytes");
    assert!(issues[0].1.contains("10"), "{}", issues[0].1);
}
