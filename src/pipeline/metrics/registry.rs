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
    use crate::learn::LearnStats;
    use crate::pipeline::config::Config;
    use crate::pipeline::metrics::{EngineTotals, LearnView, ModelView, Stats};

    /// What a scrape reads from a processor that owns no partition.
    struct Idle {
        stats: Stats,
        config: Config,
    }

    /// A processor owning partition 0 (learning, with a judged candidate) and 1 (no learning).
    struct Learning(Idle);

    impl Scraped for Learning {
        fn stats(&self) -> &Stats {
            &self.0.stats
        }
        fn config(&self) -> &Config {
            &self.0.config
        }
        fn engines(&self) -> EngineTotals {
            let stats = LearnStats {
                observations: 900,
                labelled: 600,
                labelled_churns: 40,
                refits: 3,
                refit_failures: 1,
                promotions: 1,
            };
            let candidate = Some(("learned-2026-03-01".into(), "default-2026.12".into(), Some(0.75), Some(0.625)));
            EngineTotals {
                models: vec![
                    ModelView {
                        partition: 0,
                        active: "learned-2026-02-01".into(),
                        learn: Some(LearnView { stats, candidate }),
                    },
                    ModelView { partition: 1, active: "default-2026.12".into(), learn: None },
                ],
                ..EngineTotals::default()
            }
        }
    }

    #[test]
    fn metrics_name_each_partitions_scorecard_and_its_learners_judgement() {
        let shared = Arc::new(Learning(Idle { stats: Stats::default(), config: Config::default() }));
        let text = render(&registry(shared, Arc::new(Scorecard::default_scorecard())));
        for line in [
            r#"healthscore_scorecard_active{partition="0",scorecard="learned-2026-02-01"} 1"#,
            r#"healthscore_scorecard_active{partition="1",scorecard="default-2026.12"} 1"#,
            r#"healthscore_model_auc{partition="0",role="candidate",scorecard="learned-2026-03-01"} 0.75"#,
            r#"healthscore_model_auc{partition="0",role="active",scorecard="default-2026.12"} 0.625"#,
            r#"healthscore_learn_observations_total{partition="0"} 900"#,
            r#"healthscore_learn_labelled_total{label="churned",partition="0"} 40"#,
            r#"healthscore_learn_labelled_total{label="stayed",partition="0"} 560"#,
            r#"healthscore_learn_refits_total{outcome="candidate",partition="0"} 2"#,
            r#"healthscore_learn_refits_total{outcome="failed",partition="0"} 1"#,
            r#"healthscore_learn_promotions_total{partition="0"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in /metrics:\n{text}");
        }
        assert!(!text.contains(r#"healthscore_learn_observations_total{partition="1"}"#), "{text}");
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
