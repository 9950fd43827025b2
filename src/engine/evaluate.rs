//! Re-scoring one customer: [`Engine::evaluate`] scores it as of an instant, runs the rules and
//! appends the `score_changed` and alert outputs, keeping the census in step; with the helpers
//! that shape a score for output (components, peers notes, top drivers). It may not move stream
//! time, schedule timers or evict: that is the core loop's (`engine/mod.rs`).

use std::sync::Arc;

use super::Engine;
use crate::event::{Millis, DAY_MS};
use crate::hash::event_id;
use crate::output::{round_to, Alert, ComponentOut, EmitReason, Output, ScoreChanged};
use crate::rules::{RuleInput, Trigger};
use crate::score::{ComponentScore, Scorecard, Stage};
use crate::state::SignalParams;
use crate::window::{day_of, window_start};

impl Engine {
    /// Scores one customer as of `now` and appends what that changes: a `score_changed` when
    /// the band changed or the score moved enough, and any alerts.
    pub(super) fn evaluate(&mut self, slot: u32, now: Millis, trigger: Trigger, out: &mut Vec<Output>) {
        let Engine { scorecard, store, parts, caps, firings, stats, population, sources, .. } = self;
        let sc: &Scorecard = scorecard;
        let c = store.get_mut(slot).expect("evaluated customers exist");
        stats.evaluations += 1;

        let params = SignalParams {
            core_feature_keys: &sc.core_feature_keys,
            falling_usage_pct: sc.falling_usage_pct,
            sources: *sources,
        };
        let signals = c.signals(now, &params);
        let (stage, raw) = sc.evaluate(&signals, c.segment, population.references(), parts, caps);
        // Each customer joins the filling reference once per UTC day: its first evaluation.
        if population.is_active() && (c.score.last_eval == Millis::MIN || day_of(c.score.last_eval) != day_of(now)) {
            population.add(&signals, stage, c.segment);
        }
        let tenths = (raw * 10.0).round() as u16;
        let score = tenths as f64 / 10.0;
        let previous_band = c.score.band;
        let band = sc.bands.classify(score, previous_band);
        let today = day_of(now);

        let history = &c.score.history;
        let max_within = |days: u32| {
            history
                .fold(window_start(today, days + 1), today, None, |m: Option<u16>, v| {
                    if *v == 0 {
                        m
                    } else {
                        Some(m.map_or(*v - 1, |m| m.max(*v - 1)))
                    }
                })
                .map(|t| t as f64 / 10.0)
        };
        let week_ago = c.score.score_on(today.saturating_sub(7));
        firings.clear();
        let input = RuleInput {
            signals: &signals,
            score,
            band,
            previous_band,
            max_score_within: &max_within,
            ever_active: c.last_usage.is_some(),
            observed_days: ((now - c.first_seen) / DAY_MS) as u32,
            trigger,
            today,
            cancelled: c.cancel_at.is_some(),
        };
        sc.rules.evaluate(&input, &mut c.score.last_fired, firings);

        let reason = match c.score.last_emitted_tenths {
            _ if trigger == Trigger::Final => Some(EmitReason::Final),
            None => Some(EmitReason::FirstScore),
            Some(_) if previous_band != Some(band) => Some(EmitReason::BandChanged),
            Some(last) if (tenths as f64 - last as f64).abs() >= sc.min_score_delta * 10.0 => {
                Some(EmitReason::ScoreMoved)
            }
            Some(_) => None,
        };

        if let Some(reason) = reason {
            let components = component_outs(sc, stage, c.segment, parts);
            let ts = now.to_string();
            out.push(Output::ScoreChanged(ScoreChanged {
                kind: (),
                event_id: event_id(&[c.id.as_bytes(), b"score_changed", ts.as_bytes(), &tenths.to_le_bytes()]),
                customer_id: c.id.to_string(),
                timestamp: now,
                score,
                previous_score: c.score.last_emitted_tenths.map(|t| t as f64 / 10.0),
                band,
                previous_band,
                trend_7d: week_ago.map(|w| round_to(score - w, 1)),
                stage: stage.as_str(),
                segment: sc.segments[c.segment as usize].name.clone(),
                components,
                top_drivers: top_drivers(sc, stage, c.segment, parts),
                caps: caps.iter().map(|&i| sc.caps[i].name.clone()).collect(),
                model_version: sc.version.clone(),
                churn_probability: sc.probability.map(|p| p.of(score)),
                churn_horizon_days: sc.probability.map(|p| p.horizon_days),
                reason,
            }));
            c.score.last_emitted_tenths = Some(tenths);
            stats.score_changes += 1;
        }

        for f in firings.drain(..) {
            let rule = &sc.rules.rules[f.rule as usize];
            let ts = now.to_string();
            let mut dedupe_key = format!("{}/{}", c.id, f.rule.as_str());
            if f.rule == crate::rules::RuleId::BandDowngrade {
                dedupe_key.push('/');
                dedupe_key.push_str(band.as_str());
            }
            out.push(Output::Alert(Alert {
                kind_tag: (),
                event_id: event_id(&[c.id.as_bytes(), b"alert", f.rule.as_str().as_bytes(), ts.as_bytes()]),
                customer_id: c.id.to_string(),
                timestamp: now,
                rule: f.rule,
                kind: f.rule.kind(),
                severity: f.severity,
                message: f.message,
                score,
                band,
                evidence: f.evidence,
                playbook: rule.playbook.clone(),
                dedupe_key,
                model_version: sc.version.clone(),
            }));
            stats.alerts += 1;
        }

        if let (Some(was), Some(stage)) = (c.score.band, c.score.stage) {
            stats.census.remove(was, stage, c.score.segment);
        }
        stats.census.add(band, stage, c.segment);
        c.score.stage = Some(stage);
        c.score.segment = c.segment;
        c.score.band = Some(band);
        c.score.bands.set(today, band);
        if let Some(b) = c.score.history.at_mut(today) {
            *b = tenths + 1;
        }
        c.score.last_eval = now;
    }
}

/// A score's components as output events and the API show them (rounded, so bytes are stable).
pub(super) fn component_outs(sc: &Scorecard, stage: Stage, segment: u8, parts: &[ComponentScore]) -> Vec<ComponentOut> {
    sc.components(stage, segment)
        .iter()
        .zip(parts.iter())
        .map(|(comp, part)| ComponentOut {
            name: comp.name.clone(),
            signal: comp.signal.name(),
            value: part.value.map(|v| round_to(v, 2)),
            points: part.points.map(|p| round_to(p, 1)),
            weight: round_to(part.weight, 4),
            contribution: round_to(part.contribution, 2),
            peers: part.rank.zip(part.value).map(|(r, v)| peers_note(comp.signal.name(), v, &r, sc, stage, segment)),
        })
        .collect()
}

/// A relative component's standing in words a CS person reads: "events_30d 14: 80 % of
/// onboarding customers in segment default have more, 12 % less".
fn peers_note(
    signal: &str,
    value: f64,
    rank: &crate::score::Rank,
    sc: &Scorecard,
    stage: Stage,
    segment: u8,
) -> String {
    use crate::score::Scope;
    let seg = &sc.segments[segment as usize].name;
    let who = match rank.scope {
        Scope::StageAndSegment => format!("{} customers in segment {seg}", stage.as_str()),
        Scope::Segment => format!("customers in segment {seg}"),
        Scope::All => "all customers".to_string(),
    };
    let pct = |x: f64| (x * 100.0).round() as u32;
    format!("{signal} {}: {} % of {who} have more, {} % less", round_to(value, 2), pct(rank.above), pct(rank.below))
}

/// Up to three components that cost the most points (weight × points lost), worst first.
pub(super) fn top_drivers(
    sc: &Scorecard,
    stage: crate::score::Stage,
    segment: u8,
    parts: &[ComponentScore],
) -> Vec<Arc<str>> {
    let mut lost: Vec<(f64, usize)> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.points.map(|pts| ((100.0 - pts) * p.weight, i)))
        .filter(|(l, _)| *l >= 0.5)
        .collect();
    lost.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let comps = sc.components(stage, segment);
    lost.iter().take(3).map(|(_, i)| comps[*i].name.clone()).collect()
}
