//! Helpers for behaviour tests: build events in a line or two, run an engine, read its outputs.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{json, Value};

use healthscore::engine::{Engine, EngineConfig, Outcome};
use healthscore::event::{format_rfc3339, Millis, Rejection, DAY_MS};
use healthscore::output::Output;
use healthscore::score::Scorecard;

/// 2026-01-05T00:00:00Z, a Monday: day 0 of every test history.
pub const T0: Millis = 1_767_571_200_000;
pub const HOUR: Millis = 3_600_000;

/// The instant `day` days (fractions allowed) after [`T0`].
pub fn at(day: f64) -> Millis {
    T0 + (day * DAY_MS as f64) as Millis
}

/// An event as JSON: common fields plus `fields` of the type.
pub fn event(customer: &str, id: &str, time: Millis, kind: &str, fields: Value) -> Vec<u8> {
    let mut v = json!({
        "event_id": id,
        "customer_id": customer,
        "timestamp": format_rfc3339(time),
        "type": kind,
    });
    if let Value::Object(extra) = fields {
        v.as_object_mut().unwrap().extend(extra);
    }
    serde_json::to_vec(&v).unwrap()
}

/// A test harness around one engine: feeds events, collects outputs, numbers event ids.
pub struct Harness {
    pub engine: Engine,
    pub outputs: Vec<Output>,
    next_id: u64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Scorecard::default_scorecard(), EngineConfig { allowed_lateness_secs: 0, ..Default::default() })
    }

    /// The default scorecard without the alert budget (`rules.risk_alerts_per_30d = 0`): each
    /// rule's own condition and cooldown, seen alone.
    pub fn without_alert_budget() -> Harness {
        let text = healthscore::score::DEFAULT_SCORECARD.to_string() + "\n[rules]\nrisk_alerts_per_30d = 0\n";
        let scorecard = Scorecard::from_toml(&text, "unbudgeted").unwrap();
        Harness::with(scorecard, EngineConfig { allowed_lateness_secs: 0, ..Default::default() })
    }

    pub fn with(scorecard: Scorecard, config: EngineConfig) -> Harness {
        Harness { engine: Engine::new(Arc::new(scorecard), config), outputs: Vec::new(), next_id: 0 }
    }

    pub fn send(&mut self, customer: &str, time: Millis, kind: &str, fields: Value) -> Result<Outcome, Rejection> {
        self.next_id += 1;
        let bytes = event(customer, &format!("e{}", self.next_id), time, kind, fields);
        self.send_bytes(&bytes)
    }

    /// Numbers the next events as if `n` had been sent (a harness continuing another's history).
    pub fn skip_ids(&mut self, n: u64) {
        self.next_id += n;
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<Outcome, Rejection> {
        self.engine.apply_bytes(bytes, None, &mut self.outputs)
    }

    pub fn advance(&mut self, time: Millis) {
        self.engine.advance_to(time, &mut self.outputs);
    }

    /// A customer on `plan` with `seats`, started at `start`, renewing a year later.
    pub fn subscribe(&mut self, customer: &str, start: Millis, plan: &str, seats: u32) {
        let renewal = format_rfc3339(start + 365 * DAY_MS);
        self.send(
            customer,
            start,
            "subscription_started",
            json!({"plan": plan, "mrr": 1000, "seats": seats, "renewal_date": renewal}),
        )
        .unwrap();
    }

    /// Working-day usage from day `from` to `to` (exclusive): `users` users each using every
    /// feature in `features` once a day, at 10:00.
    pub fn use_product(&mut self, customer: &str, from: u32, to: u32, users: u32, features: &[&str]) {
        for d in from..to {
            if d % 7 >= 5 {
                continue; // weekend
            }
            for u in 0..users {
                for f in features {
                    let t = at(d as f64) + 10 * HOUR + u as Millis * 1000;
                    self.send(customer, t, "feature_used", json!({"feature": f, "user_id": format!("u{u}")})).unwrap();
                }
                let t = at(d as f64) + 11 * HOUR + u as Millis * 1000;
                self.send(customer, t, "session", json!({"user_id": format!("u{u}"), "duration_seconds": 1800}))
                    .unwrap();
            }
        }
    }

    /// The outputs so far as JSON values.
    pub fn json(&self) -> Vec<Value> {
        self.outputs.iter().map(|o| serde_json::from_slice(&o.to_json()).unwrap()).collect()
    }

    pub fn alerts(&self, rule: &str) -> Vec<Value> {
        self.json().into_iter().filter(|o| o["type"] == "alert" && o["rule"] == rule).collect()
    }

    pub fn scores(&self, customer: &str) -> Vec<Value> {
        self.json().into_iter().filter(|o| o["type"] == "score_changed" && o["customer_id"] == customer).collect()
    }

    pub fn last_score(&self, customer: &str) -> Value {
        self.scores(customer).pop().unwrap_or_else(|| panic!("no score for {customer}"))
    }
}

pub const CORE: [&str; 4] = ["dashboards", "reports", "integrations", "alerts"];
