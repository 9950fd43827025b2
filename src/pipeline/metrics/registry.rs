//! The registry `/metrics` serves (the collector, [`Telemetry`](super::Telemetry)'s histograms
//! and snapshot handles, the build info, the `process_*` metrics) and its rendering in
//! Prometheus' text format.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{IntGaugeVec, Opts, Registry};

use super::collector::ServiceCollector;
use super::Scraped;
use crate::score::Scorecard;

/// Builds the registry `/metrics` serves: the collector over what `shared` exposes (the
/// processor's state), the histograms and snapshot handles of its [`Telemetry`](super::Telemetry),
/// and the build info.
pub fn registry(shared: Arc<impl Scraped>, scorecard: Arc<Scorecard>) -> Registry {
    let registry = Registry::new();
    let t = &shared.stats().telemetry;
    let handles: Vec<Box<dyn Collector>> = vec![
        Box::new(t.batch_seconds.clone()),
        Box::new(t.output_latency_seconds.clone()),
        Box::new(t.output_score.clone()),
        Box::new(t.snapshot_duration_seconds.clone()),
        Box::new(t.snapshot_bytes.clone()),
        Box::new(t.snapshot_failures.clone()),
        Box::new(t.snapshots.clone()),
        Box::new(t.snapshot_pause_seconds.clone()),
        Box::new(t.snapshot_restores.clone()),
        Box::new(t.restore_duration_seconds.clone()),
    ];
    for h in handles {
        registry.register(h).expect("metric names are unique");
    }
    let info = IntGaugeVec::new(
        Opts::new("healthscore_build_info", "Always 1: the running version and scorecard (model) version."),
        &["version", "model_version"],
    )
    .expect("valid gauge");
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), &scorecard.version]).set(1);
    registry.register(Box::new(info)).expect("metric names are unique");
    registry.register(Box::new(ServiceCollector::new(shared, scorecard))).expect("metric names are unique");
    // CPU seconds, resident and virtual memory, open and maximum file descriptors, threads, start
    // time: the `process_*` metrics every Prometheus user expects (read from /proc at scrape).
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        .expect("metric names are unique");
    registry
}

/// Renders the registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    prometheus::TextEncoder::new().encode_to_string(&registry.gather()).expect("text encoding cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::config::Config;
    use crate::pipeline::metrics::{EngineTotals, Stats};

    /// What a scrape reads from a processor that owns no partition.
    struct Idle {
        stats: Stats,
        config: Config,
    }

    impl Scraped for Idle {
        fn stats(&self) -> &Stats {
            &self.stats
        }
        fn config(&self) -> &Config {
            &self.config
        }
        fn engines(&self) -> EngineTotals {
            EngineTotals::default()
        }
    }

    #[test]
    fn metrics_include_the_process_cpu_memory_files_and_start_time() {
        let idle = Arc::new(Idle { stats: Stats::default(), config: Config::default() });
        let text = render(&registry(idle, Arc::new(Scorecard::default_scorecard())));
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "no {name} in /metrics:\n{text}");
        }
        assert!(text.contains("\nhealthscore_commits_total 0"), "{text}");
    }
}
