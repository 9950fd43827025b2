//! What a scrape reads ([`Scraped`]: the [`Stats`], the settings, the engines' totals) and the
//! collector that turns it into metric families at each scrape, with the process's resident
//! memory and its cgroup's limit. It reads the processor only through [`Scraped`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::Stats;
use crate::engine::Census;
use crate::event::RejectReason;
use crate::learn::LearnStats;
use crate::pipeline::config::Config;
use crate::rules::{RuleId, Severity};
use crate::score::{Band, Scorecard, Stage};

const SEVERITIES: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// What a scrape reads beyond [`Stats`]: the settings it labels by and the engines of the
/// partitions this instance owns. The processor's shared state provides it, so this module does
/// not know the processor: the loop depends on its metrics, not the other way round.
pub trait Scraped: Send + Sync + 'static {
    fn stats(&self) -> &Stats;
    fn config(&self) -> &Config;
    /// The owned partitions' engines, added up.
    fn engines(&self) -> EngineTotals;
}

/// The owned partitions' engines, added up at scrape time.
#[derive(Default)]
pub struct EngineTotals {
    pub census: Census,
    /// Customers in state.
    pub customers: usize,
    /// Customers of the fullest partition.
    pub fullest: usize,
    /// Input records fetched and waiting in partition buffers.
    pub buffered: usize,
    /// Each owned partition's scorecard and learner, by partition.
    pub models: Vec<ModelView>,
}

/// One partition's model at scrape time: the scorecard version that scores it and, with
/// learning on, the learner's counters and its latest judgement.
pub struct ModelView {
    pub partition: i32,
    /// The version of the scorecard scoring this partition (a promoted candidate's once promoted).
    pub active: String,
    pub learn: Option<LearnView>,
}

/// What a scrape reads of one learner.
pub struct LearnView {
    pub stats: LearnStats,
    /// The latest candidate: its version, the version it was judged against, and both AUCs on
    /// the evaluation period.
    pub candidate: Option<(String, String, Option<f64>, Option<f64>)>,
}

/// Reads [`Stats`], [`Telemetry`](super::Telemetry) and the engines at scrape time. The metric
/// objects are kept only to describe and format the values: each scrape resets and refills them
/// under `lock`, so concurrent scrapes cannot double-count.
pub(super) struct ServiceCollector {
    shared: Arc<dyn Scraped>,
    /// Names the census' segments.
    scorecard: Arc<Scorecard>,
    lock: Mutex<()>,
    descs: Vec<Desc>,
    consumed: IntCounterVec,
    events: IntCounterVec,
    restored: IntCounter,
    dead_letters: IntCounterVec,
    score_changes: IntCounter,
    transitions: IntCounterVec,
    alerts: IntCounterVec,
    commits: IntCounter,
    aborts: IntCounter,
    rewinds: IntCounter,
    rebalances: IntCounter,
    delivery_failures: IntCounter,
    commit_failures: IntCounter,
    merge_stalls: IntCounter,
    commit_seconds: Counter,
    assigned: IntGauge,
    ready: IntGauge,
    lag: IntGaugeVec,
    buffered: IntGauge,
    customers: IntGauge,
    capacity_used: Gauge,
    resident: IntGauge,
    memory_limit: IntGauge,
    census: IntGaugeVec,
    scorecard_active: IntGaugeVec,
    model_auc: GaugeVec,
    learn_observations: IntCounterVec,
    learn_labelled: IntCounterVec,
    learn_refits: IntCounterVec,
    learn_promotions: IntCounterVec,
}

impl ServiceCollector {
    pub(super) fn new(shared: Arc<dyn Scraped>, scorecard: Arc<Scorecard>) -> ServiceCollector {
        let cv = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
        };
        let c = |name: &str, help: &str| IntCounter::new(name, help).expect("valid counter");
        let g = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        let mut me = ServiceCollector {
            shared,
            scorecard,
            lock: Mutex::new(()),
            descs: Vec::new(),
            consumed: cv("healthscore_records_consumed_total", "Input records consumed, by topic.", &["topic"]),
            events: cv(
                "healthscore_events_total",
                "Fresh input records by topic and outcome: ok, duplicate, invalid, too_late (restore re-reads excluded).",
                &["topic", "outcome"],
            ),
            restored: c("healthscore_records_restored_total", "Input records re-read to rebuild partition state."),
            dead_letters: cv(
                "healthscore_dead_letters_total",
                "Records sent to the dead-letter topic, by input topic and reason.",
                &["topic", "reason"],
            ),
            score_changes: c("healthscore_score_changes_total", "score_changed events emitted."),
            transitions: cv(
                "healthscore_band_transitions_total",
                "Band changes emitted, from band (none: first score) to band.",
                &["from", "to"],
            ),
            alerts: cv("healthscore_alerts_total", "Alerts emitted, by rule, kind and severity.", &[
                "rule", "kind", "severity",
            ]),
            commits: c("healthscore_commits_total", "Commits of offsets (transactions, with exactly-once)."),
            aborts: c("healthscore_transaction_aborts_total", "Transactions aborted (the partitions are rewound)."),
            rewinds: c("healthscore_rewinds_total", "Rewinds of every partition to its last commit."),
            rebalances: c("healthscore_rebalances_total", "Rebalance callbacks (assign or revoke)."),
            delivery_failures: c("healthscore_delivery_failures_total", "Produced records the brokers refused."),
            commit_failures: c(
                "healthscore_commit_failures_total",
                "At-least-once offset commits the broker refused (each is retried).",
            ),
            merge_stalls: c(
                "healthscore_merge_stalls_total",
                "Times a partition's merge had waited 30 s more for records its broker holds but has not delivered.",
            ),
            commit_seconds: Counter::new("healthscore_commit_seconds_total", "Time spent committing.")
                .expect("valid counter"),
            assigned: g("healthscore_assigned_partitions", "Input partitions this instance owns."),
            ready: g("healthscore_ready", "1 when every assigned partition is restored and consuming."),
            lag: IntGaugeVec::new(
                Opts::new(
                    "healthscore_consumer_lag_records",
                    "Records behind the high watermark, by input topic and partition (restore re-reads included).",
                ),
                &["topic", "partition"],
            )
            .expect("valid gauge"),
            buffered: g("healthscore_buffered_records", "Input records fetched and waiting in partition buffers."),
            customers: g("healthscore_customers_tracked", "Customers held in state by this instance."),
            capacity_used: Gauge::new(
                "healthscore_partition_capacity_used_ratio",
                "Customers of the fullest assigned partition over engine.max_customers (0 without a bound); at 1 new customers are dead-lettered as capacity.",
            )
            .expect("valid gauge"),
            resident: g("healthscore_resident_memory_bytes", "Resident memory of this process (/proc/self/statm)."),
            memory_limit: g(
                "healthscore_memory_limit_bytes",
                "The memory limit of this process's cgroup (memory.max), 0 when unlimited or unknown.",
            ),
            census: IntGaugeVec::new(
                Opts::new("healthscore_customers", "Scored customers by band, lifecycle stage and segment."),
                &["band", "stage", "segment"],
            )
            .expect("valid gauge"),
            scorecard_active: IntGaugeVec::new(
                Opts::new(
                    "healthscore_scorecard_active",
                    "1 for the scorecard version scoring each owned partition (learned-YYYY-MM-DD once a candidate is promoted).",
                ),
                &["partition", "scorecard"],
            )
            .expect("valid gauge"),
            model_auc: GaugeVec::new(
                Opts::new(
                    "healthscore_model_auc",
                    "AUC of the latest refit's judgement on its evaluation period: role active (the scorecard it was judged against) or candidate (the learned one).",
                ),
                &["partition", "scorecard", "role"],
            )
            .expect("valid gauge"),
            learn_observations: cv(
                "healthscore_learn_observations_total",
                "Customer observations the learner kept (restore re-reads included).",
                &["partition"],
            ),
            learn_labelled: cv(
                "healthscore_learn_labelled_total",
                "Observations labelled once their horizon passed, by label (churned or stayed).",
                &["partition", "label"],
            ),
            learn_refits: cv(
                "healthscore_learn_refits_total",
                "Refits tried, by outcome: candidate (one was learned and judged) or failed (nothing informative to learn).",
                &["partition", "outcome"],
            ),
            learn_promotions: cv(
                "healthscore_learn_promotions_total",
                "Candidates promoted to score the partition (promotion = auto).",
                &["partition"],
            ),
        };
        // The limit does not change while the process runs: read once, not at every scrape.
        me.memory_limit.set(cgroup_memory_limit().unwrap_or(0) as i64);
        let mut descs = Vec::new();
        for c in me.parts() {
            descs.extend(c.desc().into_iter().cloned());
        }
        me.descs = descs;
        me
    }

    fn parts(&self) -> [&dyn Collector; 30] {
        [
            &self.consumed,
            &self.events,
            &self.restored,
            &self.dead_letters,
            &self.score_changes,
            &self.transitions,
            &self.alerts,
            &self.commits,
            &self.aborts,
            &self.rewinds,
            &self.rebalances,
            &self.delivery_failures,
            &self.commit_failures,
            &self.merge_stalls,
            &self.commit_seconds,
            &self.assigned,
            &self.ready,
            &self.lag,
            &self.buffered,
            &self.customers,
            &self.capacity_used,
            &self.resident,
            &self.memory_limit,
            &self.census,
            &self.scorecard_active,
            &self.model_auc,
            &self.learn_observations,
            &self.learn_labelled,
            &self.learn_refits,
            &self.learn_promotions,
        ]
    }

    fn fill(&self) {
        let shared = &self.shared;
        let stats = shared.stats();
        let t = &stats.telemetry;
        let topics = shared.config().kafka.topics.inputs();
        let load = |a: &AtomicU64| a.load(Relaxed);
        let set = |c: &IntCounter, v: u64| {
            c.reset();
            c.inc_by(v);
        };
        for v in [&self.consumed, &self.events, &self.dead_letters, &self.transitions, &self.alerts] {
            v.reset();
        }
        for (s, topic) in topics.iter().enumerate() {
            self.consumed.with_label_values(&[topic]).inc_by(load(&stats.consumed[s]));
            self.events.with_label_values(&[topic, "ok"]).inc_by(load(&t.applied[s]));
            self.events.with_label_values(&[topic, "duplicate"]).inc_by(load(&t.duplicates[s]));
            let (mut invalid, mut late) = (0, 0);
            for reason in RejectReason::ALL {
                let n = load(&t.dead_letters[s][reason as usize]);
                if reason == RejectReason::TooLate {
                    late += n;
                } else {
                    invalid += n;
                }
                self.dead_letters.with_label_values(&[topic, reason.as_str()]).inc_by(n);
            }
            self.events.with_label_values(&[topic, "invalid"]).inc_by(invalid);
            self.events.with_label_values(&[topic, "too_late"]).inc_by(late);
        }
        set(&self.restored, load(&stats.restored));
        set(&self.score_changes, load(&stats.score_changes));
        let from_names = ["red", "yellow", "green", "none"];
        for (from, row) in t.transitions.iter().enumerate() {
            for to in Band::ALL {
                if from != to as usize {
                    self.transitions
                        .with_label_values(&[from_names[from], to.as_str()])
                        .inc_by(load(&row[to as usize]));
                }
            }
        }
        for rule in RuleId::ALL {
            for sev in SEVERITIES {
                self.alerts
                    .with_label_values(&[rule.as_str(), rule.kind().as_str(), sev.as_str()])
                    .inc_by(load(&t.alerts[rule as usize][sev as usize]));
            }
        }
        set(&self.commits, load(&stats.commits));
        set(&self.aborts, load(&stats.aborts));
        set(&self.rewinds, load(&stats.rewinds));
        set(&self.rebalances, load(&stats.rebalances));
        set(&self.delivery_failures, load(&stats.delivery_failures));
        set(&self.commit_failures, load(&stats.commit_failures));
        set(&self.merge_stalls, load(&stats.merge_stalls));
        self.commit_seconds.reset();
        self.commit_seconds.inc_by(load(&stats.commit_micros) as f64 / 1e6);
        self.assigned.set(stats.assigned_partitions.load(Relaxed));
        self.ready.set(stats.ready.load(Relaxed) as i64);
        self.lag.reset();
        for l in t.lag.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.lag.with_label_values(&[topics[l.source], &l.partition.to_string()]).set(l.records);
        }

        let EngineTotals { census, customers, fullest, buffered, models } = shared.engines();
        self.fill_models(&models);
        self.customers.set(customers as i64);
        let max = shared.config().engine.max_customers;
        self.capacity_used.set(if max > 0 { fullest as f64 / max as f64 } else { 0.0 });
        self.resident.set(resident_bytes().unwrap_or(0) as i64);
        self.buffered.set(buffered as i64);
        for (i, segment) in self.scorecard.segments.iter().enumerate() {
            for stage in Stage::ALL {
                for band in Band::ALL {
                    let n = census.count(band, stage, i as u8);
                    self.census.with_label_values(&[band.as_str(), stage.as_str(), &segment.name]).set(n as i64);
                }
            }
        }
    }
}

impl ServiceCollector {
    /// The scorecard and learner families: one series per owned partition, so a partition that
    /// moves to another instance leaves with its series.
    fn fill_models(&self, models: &[ModelView]) {
        self.scorecard_active.reset();
        self.model_auc.reset();
        for v in [&self.learn_observations, &self.learn_labelled, &self.learn_refits, &self.learn_promotions] {
            v.reset();
        }
        for m in models {
            let p = m.partition.to_string();
            self.scorecard_active.with_label_values(&[&p, &m.active]).set(1);
            let Some(learn) = &m.learn else { continue };
            let s = &learn.stats;
            self.learn_observations.with_label_values(&[&p]).inc_by(s.observations);
            self.learn_labelled.with_label_values(&[&p, "churned"]).inc_by(s.labelled_churns);
            self.learn_labelled.with_label_values(&[&p, "stayed"]).inc_by(s.labelled - s.labelled_churns);
            self.learn_refits.with_label_values(&[&p, "candidate"]).inc_by(s.refits - s.refit_failures);
            self.learn_refits.with_label_values(&[&p, "failed"]).inc_by(s.refit_failures);
            self.learn_promotions.with_label_values(&[&p]).inc_by(s.promotions);
            if let Some((version, against, auc, active_auc)) = &learn.candidate {
                if let Some(a) = active_auc {
                    self.model_auc.with_label_values(&[&p, against, "active"]).set(*a);
                }
                if let Some(a) = auc {
                    self.model_auc.with_label_values(&[&p, version, "candidate"]).set(*a);
                }
            }
        }
    }
}

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.fill();
        let mut families: Vec<MetricFamily> = Vec::new();
        for c in self.parts() {
            families.extend(c.collect());
        }
        families
    }
}

/// This process's resident memory, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

/// The cgroup v2 memory limit this process runs under (a container's `resources.limits.memory`),
/// or `None` when unlimited (`max`) or not readable: the alert rule compares resident memory
/// with it, so the pod is warned about before it is killed.
fn cgroup_memory_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?.trim().parse().ok()
}
