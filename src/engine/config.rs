//! [`EngineConfig`]: the engine's settings that are not part of the scorecard, their defaults
//! and their validation. Plain data: it may not reach into the engine's state or read the
//! environment (the loader in `pipeline::config` fills it and reports unknown keys).

use crate::learn::LearnConfig;
use crate::state::HISTORY_DAYS;

/// Engine settings that are not part of the scorecard.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
/// Unknown keys are reported by the loader (`pipeline::config`), which lists them all.
#[serde(default)]
pub struct EngineConfig {
    /// How far behind the largest event time stream time runs, in seconds. Timers fire only once
    /// stream time passes them, so an event this late still lands before its customer is judged.
    pub allowed_lateness_secs: u32,
    /// A customer with no event for this many days is scored a last time and evicted. Must
    /// exceed the longest window (90 days) so silence is scored before it is forgotten.
    pub retention_days: u32,
    /// A usage event that changes nothing the score reads in steps (a new active day, user or
    /// feature) re-scores its customer only if the last score is at least this many seconds of
    /// event time old. Usage arrives in bursts of dozens of events per customer, each moving the
    /// score by a hair; this keeps the work per event small without delaying any step change.
    /// 0 re-scores on every event.
    pub usage_rescore_secs: u32,
    /// Longest input accepted, in bytes; longer ones are rejected as `too_large` before they are
    /// parsed. Events are ~200 bytes; the default (1 MiB) leaves room for producers' metadata.
    pub max_event_bytes: u32,
    /// How far ahead of the wall clock an event may be dated, in seconds; later ones are
    /// rejected as `in_future`. The shell gives the engine the wall clock
    /// ([`Engine::set_wall_clock`](super::Engine::set_wall_clock)); with none given there is no
    /// such bound. 0 turns it off.
    pub max_future_secs: u32,
    /// How far one event may move stream time ahead of the partition's latest event at once, in
    /// seconds. An event further ahead is applied to its customer, but stream time only follows
    /// once another event (another customer, or another time) within this distance of it
    /// confirms the leap: so no single message (a clock typo, a hostile `2099`) can fire every
    /// timer of the partition, evict every customer and make every later event `too_late`. A
    /// real gap (an outage) costs the first event after it one event's delay. 0 turns it off.
    pub max_lead_secs: u32,
    /// Most customers one engine (one input partition) holds; an event of a new customer beyond
    /// it is rejected as `capacity` (existing customers are still served, and a slot frees when a
    /// customer is evicted). Refusing, rather than evicting the least recently seen, keeps the
    /// state of real customers whole when a producer floods random ids. 0 means no bound.
    pub max_customers: u32,
    /// Online learning (`[engine.learn]`, see [`crate::learn`]); off by default.
    pub learn: LearnConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness_secs: 3600,
            retention_days: 120,
            usage_rescore_secs: 3600,
            max_event_bytes: 1 << 20,
            max_future_secs: 86_400,
            max_lead_secs: 2 * 86_400,
            max_customers: 1_000_000,
            learn: LearnConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Checks the settings; each problem as (key, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.retention_days <= HISTORY_DAYS as u32 {
            issues.push((
                "retention_days".into(),
                format!("must exceed the longest window ({HISTORY_DAYS} days), got {}", self.retention_days),
            ));
        }
        if self.allowed_lateness_secs > 7 * 86_400 {
            issues.push(("allowed_lateness_secs".into(), "must be at most 7 days (604800)".into()));
        }
        if self.max_event_bytes < 256 {
            issues.push((
                "max_event_bytes".into(),
                format!("must be at least 256 (an event is ~200 bytes), got {}", self.max_event_bytes),
            ));
        }
        issues.extend(self.learn.validate().into_iter().map(|(k, r)| (format!("learn.{k}"), r)));
        issues
    }
}
