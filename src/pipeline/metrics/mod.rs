//! Prometheus metrics: declared here, in one place, and served by [`super::http`] at `/metrics`.
//!
//! The hot path never calls Prometheus per event. The processor keeps plain atomics
//! ([`Stats`], with the [`Telemetry`] counters) that it bumps once per batch, and
//! histograms fed through thread-local buffers flushed once per batch. A custom
//! [`Collector`](prometheus::core::Collector) turns those atomics, and the engines' censuses
//! (read under the state mutex, a few hundred integer additions), into metric families when
//! Prometheus scrapes. Labels are small closed sets (topic, partition, reason, rule, band, stage,
//! segment, partition, scorecard version): never a customer.
//!
//! Files: `counters.rs` holds what the processor bumps ([`Stats`], [`Telemetry`], [`Lag`]);
//! `collector.rs` what a scrape reads ([`Scraped`], [`EngineTotals`]) and the collector that
//! turns it into metric families; `registry.rs` the registry `/metrics` serves and its text
//! rendering.

mod collector;
mod counters;
mod registry;

pub use self::collector::{EngineTotals, LearnView, ModelView, Scraped};
pub use self::counters::{Lag, Stats, Telemetry};
pub use self::registry::{registry, render};

use crate::event::Millis;

/// The wall clock as Unix milliseconds: the shell's, for latency; the engine never reads it.
pub fn wall_clock_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}
