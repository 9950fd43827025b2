//! Properties of the engine over arbitrary input: it never panics, every rejection has a reason,
//! scores stay in range and explained, and a customer's outputs never go back in time.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};

use healthscore::engine::Engine;
use healthscore::snapshot::format::{pack_frame, unpack_frame};

const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
const PLANS: [&str; 3] = ["starter", "pro", "enterprise"];

/// A random but well-formed event of any type for one of a few customers.
fn any_event() -> impl Strategy<Value = (String, f64, &'static str, Value)> {
    let kinds = prop_oneof![
        (0u32..6, 0u32..12).prop_map(|(f, u)| (
            "feature_used",
            json!({"feature": format!("f{f}"), "user_id": format!("u{u}"), "quantity": f})
        )),
        (0u32..7200).prop_map(|d| ("session", json!({"duration_seconds": d}))),
        (0u32..5, 0usize..4)
            .prop_map(|(t, p)| ("ticket_opened", json!({"ticket_id": format!("t{t}"), "priority": PRIORITIES[p]}))),
        (0u32..5).prop_map(|t| ("ticket_resolved", json!({"ticket_id": format!("t{t}")}))),
        (0u32..5).prop_map(|t| ("ticket_reopened", json!({"ticket_id": format!("t{t}")}))),
        (1u32..=5).prop_map(|r| ("csat_response", json!({"rating": r}))),
        (0u32..=10).prop_map(|s| ("nps_response", json!({"score": s}))),
        (0u32..3, 0u32..50).prop_map(|(p, s)| (
            "subscription_changed",
            json!({"plan": PLANS[p as usize], "mrr": s * 100, "seats": s})
        )),
        (0u32..400).prop_map(|d| (
            "subscription_renewed",
            json!({"renewal_date": healthscore::event::format_rfc3339(at(d as f64))})
        )),
        Just(("subscription_cancelled", json!({}))),
        (0u32..4).prop_map(|i| ("payment_failed", json!({"invoice_id": format!("i{i}"), "amount": 10}))),
        (0u32..4).prop_map(|i| ("invoice_overdue", json!({"invoice_id": format!("i{i}"), "amount": 10}))),
        (0u32..4).prop_map(|i| ("invoice_paid", json!({"invoice_id": format!("i{i}"), "amount": 10}))),
    ];
    (0u32..4, 0f64..200.0, kinds).prop_map(|(c, day, (kind, fields))| (format!("c{c}"), day, kind, fields))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the events and their order, scores are 0–100, contributions add up to the score,
    /// and each customer's outputs are in time order (from its first event to its eviction).
    #[test]
    fn outputs_are_sane_for_any_event_sequence(events in prop::collection::vec(any_event(), 1..300), advance in 0f64..300.0) {
        let mut h = Harness::new();
        for (customer, day, kind, fields) in events {
            let _ = h.send(&customer, at(day), kind, fields);
        }
        h.advance(at(advance));
        let mut last_time = std::collections::BTreeMap::new();
        for o in h.json() {
            let score = o["score"].as_f64().unwrap();
            prop_assert!((0.0..=100.0).contains(&score));
            if o["type"] == "score_changed" {
                let sum: f64 = o["components"].as_array().unwrap().iter().map(|c| c["contribution"].as_f64().unwrap()).sum();
                prop_assert!((sum - score).abs() < 0.25, "contributions {} vs score {}", sum, score);
            }
            let t = o["timestamp"].as_str().unwrap().to_string();
            let c = o["customer_id"].as_str().unwrap().to_string();
            if o["reason"] == "first_score" {
                // A new customer, or one evicted earlier and started again by a later (possibly
                // late) event: a new lifetime with a clock of its own.
                last_time.remove(&c);
            }
            if let Some(prev) = last_time.insert(c, t.clone()) {
                prop_assert!(prev <= t, "a customer's outputs went back in time: {} then {}", prev, t);
            }
        }
    }

    /// A snapshot taken anywhere in a history restores to an engine that continues exactly as
    /// the original: the same customers, and the same outputs for the rest of the history
    /// (including the timers that fire as time passes).
    #[test]
    fn snapshot_restore_continues_exactly(events in prop::collection::vec(any_event(), 1..300), cut in any::<prop::sample::Index>(), advance in 0f64..300.0) {
        let mut events: Vec<_> = events;
        events.sort_by(|a, b| a.1.total_cmp(&b.1)); // mostly in time order, as a partition delivers
        let cut = cut.index(events.len() + 1);
        let mut whole = Harness::new();
        let mut first = Harness::new();
        for (i, (customer, day, kind, fields)) in events.iter().enumerate() {
            let _ = whole.send(customer, at(*day), kind, fields.clone());
            if i < cut {
                let _ = first.send(customer, at(*day), kind, fields.clone());
            }
        }
        // As a snapshot keeps it: compressed in frames, here small ones so customers span many.
        let (state, _) = first.engine.encode_state_packed(&pack_frame, 300);
        let sections: Vec<&[u8]> = state.iter().map(Vec::as_slice).collect();
        let restored =
            Engine::from_state_packed(first.engine.scorecard().clone(), first.engine.config().clone(), &sections, &unpack_frame)
                .unwrap();
        let mut a: Vec<_> = first.engine.customers().collect();
        let mut b: Vec<_> = restored.customers().collect();
        a.sort_by(|x, y| x.id.cmp(&y.id));
        b.sort_by(|x, y| x.id.cmp(&y.id));
        prop_assert_eq!(a, b);
        let before = first.outputs.len();
        let mut second = Harness::new();
        second.engine = restored;
        second.outputs = first.outputs.clone();
        // The same event ids as `whole` used (the harness numbers them in order).
        second.skip_ids(cut as u64);
        for (customer, day, kind, fields) in &events[cut..] {
            let _ = second.send(customer, at(*day), kind, fields.clone());
        }
        whole.advance(at(advance));
        second.advance(at(advance));
        prop_assert!(second.outputs.len() >= before);
        prop_assert_eq!(whole.json(), second.json());
    }

    /// A damaged state (any byte changed, or cut short) never panics a restore: it is refused
    /// with a reason, or (a change that still decodes) gives some engine. The checksum of the
    /// snapshot file refuses such damage before this; this is the second line.
    #[test]
    fn damaged_state_never_panics_a_restore(events in prop::collection::vec(any_event(), 1..60), at_byte in any::<prop::sample::Index>(), to in any::<u8>(), cut in any::<bool>()) {
        let mut h = Harness::new();
        for (customer, day, kind, fields) in events {
            let _ = h.send(&customer, at(day), kind, fields);
        }
        let (plain, packed) = (h.engine.encode_state(), h.engine.encode_state_packed(&pack_frame, 300).0);
        for mut state in [plain, packed] {
            let section = state.iter().position(|s| !s.is_empty()).unwrap();
            let i = at_byte.index(state[section].len());
            if cut {
                state[section].truncate(i);
            } else {
                state[section][i] = to;
            }
            let sections: Vec<&[u8]> = state.iter().map(Vec::as_slice).collect();
            let _ = Engine::from_state(h.engine.scorecard().clone(), h.engine.config().clone(), &state);
            let _ = Engine::from_state_packed(h.engine.scorecard().clone(), h.engine.config().clone(), &sections, &unpack_frame);
        }
    }

    /// Arbitrary bytes never panic the engine; anything not applied is rejected with a reason
    /// and a message.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut h = Harness::new();
        if let Err(r) = h.send_bytes(&bytes) {
            prop_assert!(!r.message.is_empty());
        }
    }

    /// Valid events with one byte changed never panic either (the nastier fuzz: almost JSON).
    #[test]
    fn mutated_events_never_panic(e in any_event(), at_byte in any::<prop::sample::Index>(), to in any::<u8>()) {
        let (customer, day, kind, fields) = e;
        let mut bytes = event(&customer, "e1", at(day), kind, fields);
        let i = at_byte.index(bytes.len());
        bytes[i] = to;
        let mut h = Harness::new();
        if let Err(r) = h.send_bytes(&bytes) {
            prop_assert!(!r.message.is_empty());
        }
    }
}

/// Depth of a JSON value: scalars 0, each array or object one more than its deepest member.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A JSON value nested `levels` deep, alternating arrays and objects, with strings holding
/// brackets, quotes and escapes (which the depth check must skip) and some width.
fn nested_value() -> impl Strategy<Value = Value> {
    (0usize..130, 0usize..4, "[\\[\\]{}\"\\\\a-z]{0,12}").prop_map(|(levels, width, text)| {
        let mut v = Value::String(text);
        for i in 0..levels {
            let siblings = (0..width).map(|k| json!(format!("s{k}]}}"))).collect::<Vec<_>>();
            v = if i % 2 == 0 {
                let mut a = siblings;
                a.push(v);
                Value::Array(a)
            } else {
                let mut o = serde_json::Map::new();
                for (k, s) in siblings.into_iter().enumerate() {
                    o.insert(format!("k{k}"), s);
                }
                o.insert("deeper".into(), v);
                Value::Object(o)
            };
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Events of realistic size with nested extra fields of any depth, up to twice the limit,
    /// padded to several KB: the parse never panics or overflows, and it refuses exactly the
    /// documents nested deeper than `MAX_DEPTH` (the event itself is one level).
    #[test]
    fn nested_extra_fields_are_read_or_too_deep_by_their_depth(extra in nested_value(), pad in 0usize..6000) {
        let mut v = json!({
            "event_id": "e1", "customer_id": "c1", "timestamp": "2026-01-05T10:00:00Z",
            "type": "feature_used", "feature": "reports", "padding": "p".repeat(pad),
        });
        v["context"] = extra.clone();
        let bytes = serde_json::to_vec(&v).unwrap();
        let result = healthscore::event::parse(&bytes, None);
        if 1 + depth(&extra) > healthscore::event::MAX_DEPTH {
            prop_assert_eq!(result.unwrap_err().reason, healthscore::event::RejectReason::TooDeep);
        } else {
            prop_assert!(result.is_ok(), "{:?}", result.err());
        }
    }
}
