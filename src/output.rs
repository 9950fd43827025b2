//! Output events (`score_changed`, `alert`) and their JSON form, described by `schemas/output/`.
//!
//! Field order is fixed by the structs and numbers are rounded to fixed precision, so the same
//! input gives byte-identical output.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::event::{format_rfc3339, Millis};
pub use crate::round::round_to;
use crate::rules::{AlertKind, Evidence, RuleId, Severity};
use crate::score::Band;

/// Version of the output schemas, sent as a Kafka header with every output.
pub const OUTPUT_SCHEMA_VERSION: &str = "1";

/// One output event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    ScoreChanged(ScoreChanged),
    Alert(Alert),
}

impl Output {
    pub fn customer_id(&self) -> &str {
        match self {
            Output::ScoreChanged(s) => &s.customer_id,
            Output::Alert(a) => &a.customer_id,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Output::ScoreChanged(_) => "score_changed",
            Output::Alert(_) => "alert",
        }
    }

    pub fn timestamp(&self) -> Millis {
        match self {
            Output::ScoreChanged(s) => s.timestamp,
            Output::Alert(a) => a.timestamp,
        }
    }

    /// The JSON form, one line, no newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(512);
        self.write_json(&mut buf);
        buf
    }

    /// Appends the JSON form to `buf`.
    pub fn write_json(&self, buf: &mut Vec<u8>) {
        serde_json::to_writer(buf, self).expect("outputs always serialise");
    }
}

/// Why a `score_changed` was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitReason {
    /// The customer's first score.
    FirstScore,
    /// The band changed.
    BandChanged,
    /// The score moved at least the scorecard's `min_score_delta` since the last one emitted.
    ScoreMoved,
    /// The last score before the customer is evicted (cancelled, or silent past retention).
    Final,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreChanged {
    #[serde(rename = "type", serialize_with = "type_score_changed")]
    pub kind: (),
    pub event_id: String,
    pub customer_id: String,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Millis,
    pub score: f64,
    pub previous_score: Option<f64>,
    pub band: Band,
    pub previous_band: Option<Band>,
    pub trend_7d: Option<f64>,
    pub stage: &'static str,
    pub segment: Arc<str>,
    pub components: Vec<ComponentOut>,
    pub top_drivers: Vec<Arc<str>>,
    /// The caps (red flags) that held the score down.
    pub caps: Vec<Arc<str>>,
    pub model_version: Arc<str>,
    /// The probability of churning within `churn_horizon_days`, from the scorecard's
    /// `[probability]` table (fitted by `calibrate` on observed churn); null for a scorecard
    /// that has none, rather than a number nobody fitted.
    pub churn_probability: Option<f64>,
    pub churn_horizon_days: Option<u32>,
    pub reason: EmitReason,
}

/// One component's part in a score, as explained to people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentOut {
    pub name: Arc<str>,
    pub signal: &'static str,
    pub value: Option<f64>,
    pub points: Option<f64>,
    pub weight: f64,
    pub contribution: f64,
    /// For a relative curve: where the value stands among the customer's peers, in words (null
    /// otherwise: every output field is always present, so consumers see one shape).
    pub peers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    #[serde(rename = "type", serialize_with = "type_alert")]
    pub kind_tag: (),
    pub event_id: String,
    pub customer_id: String,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Millis,
    #[serde(serialize_with = "rule_name")]
    pub rule: RuleId,
    pub kind: AlertKind,
    pub severity: Severity,
    pub message: String,
    pub score: f64,
    pub band: Band,
    #[serde(serialize_with = "evidence_map")]
    pub evidence: Vec<(&'static str, Evidence)>,
    pub playbook: Arc<str>,
    pub dedupe_key: String,
    pub model_version: Arc<str>,
}

fn type_score_changed<S: Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("score_changed")
}

fn type_alert<S: Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("alert")
}

pub(crate) fn rfc3339<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

fn rule_name<S: Serializer>(rule: &RuleId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(rule.as_str())
}

fn evidence_map<S: Serializer>(evidence: &[(&'static str, Evidence)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(evidence.iter().map(|(k, v)| (*k, v)))
}
