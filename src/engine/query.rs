//! The engine's read-only queries for the HTTP API: a customer's [`Explanation`] and the
//! [`Standing`] of the worst customers. They may not move time or change any state (the clock
//! is the shell's); explaining recomputes a score from state with the same pure function.

use std::sync::Arc;

use serde::Serialize;

use super::evaluate::{component_outs, top_drivers};
use super::Engine;
use crate::event::{Millis, DAY_MS};
use crate::output::{round_to, ComponentOut};
use crate::rules::RuleId;
use crate::score::{Band, Scorecard};
use crate::state::SignalParams;
use crate::window::day_of;

/// One customer's standing as of its last evaluation: what `/customers?band=` lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub customer_id: String,
    pub score: f64,
    pub band: Band,
    pub stage: &'static str,
    pub segment: Arc<str>,
    #[serde(serialize_with = "crate::output::rfc3339")]
    pub scored_at: Millis,
}

/// A customer's score explained as of its last evaluation: what `/customers/{id}` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub standing: Standing,
    #[serde(serialize_with = "crate::output::rfc3339")]
    pub last_event: Millis,
    /// Score change over 7 days, when the customer was scored a week before.
    pub trend_7d: Option<f64>,
    pub components: Vec<ComponentOut>,
    pub top_drivers: Vec<Arc<str>>,
    pub caps: Vec<Arc<str>>,
    /// Rules that fired for this customer within their memory (the cooldown), latest first.
    pub recent_alerts: Vec<RecentAlert>,
    pub model_version: Arc<str>,
}

/// A rule that fired for a customer, and the day it last did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentAlert {
    pub rule: &'static str,
    pub kind: &'static str,
    /// `YYYY-MM-DD`.
    pub last_fired: String,
}

/// Queries for the HTTP API: read-only, and they never move time (the clock is the shell's).
impl Engine {
    /// `id`'s score explained as of its last evaluation, recomputed from its state (scoring is
    /// a pure function of state and time, so this equals what that evaluation computed).
    /// `None` when the customer is unknown here or not scored yet.
    pub fn explain(&self, id: &str) -> Option<Explanation> {
        let sc: &Scorecard = &self.scorecard;
        let c = self.customer(id)?;
        let (band, score) = (c.score.band?, c.score.current()?);
        let now = c.score.last_eval;
        let params = SignalParams {
            core_feature_keys: &sc.core_feature_keys,
            falling_usage_pct: sc.falling_usage_pct,
            sources: self.sources,
        };
        let signals = c.signals(now, &params);
        let (mut parts, mut caps) = (Vec::new(), Vec::new());
        let segment = c.score.segment;
        let (stage, _) = sc.evaluate(&signals, segment, self.population.references(), &mut parts, &mut caps);
        let mut recent_alerts: Vec<(u32, RecentAlert)> = RuleId::ALL
            .iter()
            .zip(c.score.last_fired)
            .filter(|(_, day)| *day > 0)
            .map(|(rule, day)| {
                let date = crate::event::format_rfc3339(day as Millis * DAY_MS)[..10].to_string();
                (day, RecentAlert { rule: rule.as_str(), kind: rule.kind().as_str(), last_fired: date })
            })
            .collect();
        recent_alerts.sort_by_key(|(day, _)| std::cmp::Reverse(*day));
        Some(Explanation {
            standing: Standing {
                customer_id: c.id.to_string(),
                score,
                band,
                stage: stage.as_str(),
                segment: sc.segments[segment as usize].name.clone(),
                scored_at: now,
            },
            last_event: c.last_event,
            trend_7d: c.score.score_on(day_of(now).saturating_sub(7)).map(|w| round_to(score - w, 1)),
            components: component_outs(sc, stage, segment, &parts),
            top_drivers: top_drivers(sc, stage, segment, &parts),
            caps: caps.iter().map(|&i| sc.caps[i].name.clone()).collect(),
            recent_alerts: recent_alerts.into_iter().map(|(_, a)| a).collect(),
            model_version: sc.version.clone(),
        })
    }

    /// Up to `limit` scored customers (of `band`, or any), worst score first (ties by id).
    /// One pass with a bounded heap: O(customers × log limit), no copy of the population.
    pub fn worst(&self, band: Option<Band>, limit: usize) -> Vec<Standing> {
        use std::collections::BinaryHeap;
        if limit == 0 {
            return Vec::new();
        }
        // Max-heap on (score tenths, id): the root is the best of the worst so far.
        let mut heap: BinaryHeap<(u16, &str)> = BinaryHeap::with_capacity(limit + 1);
        for c in self.store.iter() {
            let (Some(b), Some(score)) = (c.score.band, c.score.current()) else { continue };
            if band.is_some_and(|want| want != b) {
                continue;
            }
            let key = ((score * 10.0).round() as u16, c.id.as_str());
            if heap.len() < limit {
                heap.push(key);
            } else if heap.peek().is_some_and(|top| key < *top) {
                heap.pop();
                heap.push(key);
            }
        }
        let sc: &Scorecard = &self.scorecard;
        heap.into_sorted_vec()
            .into_iter()
            .filter_map(|(_, id)| {
                let c = self.customer(id)?;
                Some(Standing {
                    customer_id: c.id.to_string(),
                    score: c.score.current()?,
                    band: c.score.band?,
                    stage: c.score.stage?.as_str(),
                    segment: sc.segments[c.score.segment as usize].name.clone(),
                    scored_at: c.score.last_eval,
                })
            })
            .collect()
    }
}
