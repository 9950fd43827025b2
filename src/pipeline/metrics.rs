//! Prometheus metrics: declared here, in one place, and served by [`super::http`] at `/metrics`.
//!
//! The hot path never calls Prometheus per event. The processor keeps plain atomics
//! ([`Stats`], with the [`Telemetry`] counters below) that it bumps once per batch, and
//! histograms fed through thread-local buffers flushed once per batch. A custom
//! [`Collector`] turns those atomics, and the engines' censuses (read under the state mutex, a
//! few hundred integer additions), into metric families when Prometheus scrapes. Labels are
//! small closed sets (topic, partition, reason, rule, band, stage, segment): never a customer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::config::Config;
use super::task::Processed;
use crate::engine::Census;
use crate::event::{Millis, RejectReason};
use crate::output::Output;
use crate::rules::{RuleId, Severity, RULE_COUNT};
use crate::score::{Band, Scorecard, Stage};

const REASONS: usize = RejectReason::ALL.len();
const SEVERITIES: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// Counters the shell keeps; read by the demo's summary and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub consumed: [AtomicU64; 3],
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_letters: AtomicU64,
    pub restored: AtomicU64,
    pub score_changes: AtomicU64,
    pub alerts: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub rewinds: AtomicU64,
    pub rebalances: AtomicU64,
    pub delivery_failures: AtomicU64,
    /// Time spent committing (flush + offsets, or the transaction), in microseconds.
    pub commit_micros: AtomicU64,
    /// Times a partition's merge had waited long for records the broker holds (warned each time).
    pub merge_stalls: AtomicU64,
    pub assigned_partitions: AtomicI64,
    /// Every assigned partition restored and consuming.
    pub ready: AtomicBool,
    /// Counts by label, histograms and snapshot handles, for `/metrics` (see `metrics`).
    pub telemetry: Telemetry,
}

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
}

/// How far an input partition is behind its high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// 0 usage, 1 support, 2 billing.
    pub source: usize,
    pub partition: i32,
    /// Records not processed yet, including those a restore still has to re-read.
    pub records: i64,
}

/// Counters and histograms beyond [`Stats`]' totals, by the labels operators filter on.
/// Everything is a handle or an atomic: cheap to bump from the processing thread, read at scrape.
pub struct Telemetry {
    /// Fresh records applied (`ok`) and `duplicate`, by input source.
    pub applied: [AtomicU64; 3],
    pub duplicates: [AtomicU64; 3],
    /// Dead letters by input source and reason (`too_late` among them).
    pub dead_letters: [[AtomicU64; REASONS]; 3],
    /// Alerts by rule and severity (the kind follows from the rule).
    pub alerts: [[AtomicU64; 4]; RULE_COUNT],
    /// Band changes by (from, to); from index 3 is a customer's first score.
    pub transitions: [[AtomicU64; 3]; 4],
    /// Wall time of one loop step that did work: enqueue, merge, score, produce.
    pub batch_seconds: Histogram,
    /// Wall clock at production minus the output's event time, per output. Timer-driven outputs
    /// (a silent customer decaying) carry at least the allowed lateness, by design.
    pub output_latency_seconds: Histogram,
    /// The score of every `score_changed` emitted.
    pub output_score: Histogram,
    /// Filled by the snapshot writer: how long a snapshot took, its size, and failures.
    pub snapshot_duration_seconds: Histogram,
    pub snapshot_bytes: IntGauge,
    pub snapshot_failures: IntCounter,
    pub snapshots: IntCounter,
    /// Time processing paused to encode a snapshot (the rest is written in the background).
    pub snapshot_pause_seconds: Histogram,
    /// Partitions restored from a snapshot (the rest start empty and re-read their topics).
    pub snapshot_restores: IntCounter,
    /// Filled by recovery: from a partition's assignment until it is restored and consuming.
    pub restore_duration_seconds: Histogram,
    /// Per input partition, refreshed by the processing loop about once a second.
    pub lag: Mutex<Vec<Lag>>,
    /// Per owned partition: restoring since (`Some`), or restored (`None`).
    restores: Mutex<HashMap<i32, Option<Instant>>>,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid histogram")
}

impl Default for Telemetry {
    fn default() -> Self {
        let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        // From "as it happens" to "a day behind" (a backfill, or a consumer that fell behind).
        let latency = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 86400.0];
        let scores: Vec<f64> = (1..=10).map(|i| i as f64 * 10.0).collect();
        let long = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
        Telemetry {
            applied: Default::default(),
            duplicates: Default::default(),
            dead_letters: Default::default(),
            alerts: Default::default(),
            transitions: Default::default(),
            batch_seconds: histogram(
                "healthscore_batch_duration_seconds",
                "Wall time of one processing step (a polled batch: merge, score, produce).",
                &seconds,
            ),
            output_latency_seconds: histogram(
                "healthscore_output_latency_seconds",
                "Wall clock when an output is produced minus its event time.",
                &latency,
            ),
            output_score: histogram("healthscore_output_score", "Scores of the score_changed events emitted.", &scores),
            snapshot_duration_seconds: histogram(
                "healthscore_snapshot_duration_seconds",
                "Time to write one snapshot of partition state.",
                &long,
            ),
            snapshot_bytes: IntGauge::new("healthscore_snapshot_bytes", "Size of the last snapshot written.")
                .expect("valid gauge"),
            snapshot_failures: IntCounter::new("healthscore_snapshot_failures_total", "Snapshots that failed.")
                .expect("valid counter"),
            snapshots: IntCounter::new("healthscore_snapshots_total", "Snapshots of partition state written.")
                .expect("valid counter"),
            snapshot_pause_seconds: histogram(
                "healthscore_snapshot_pause_seconds",
                "Time processing paused to encode a snapshot (compression and the write happen in the background).",
                &seconds,
            ),
            snapshot_restores: IntCounter::new(
                "healthscore_snapshot_restores_total",
                "Partitions restored from a snapshot (the others started empty and re-read their topics).",
            )
            .expect("valid counter"),
            restore_duration_seconds: histogram(
                "healthscore_restore_duration_seconds",
                "Time from a partition's assignment until it is restored and consuming.",
                &long,
            ),
            lag: Mutex::new(Vec::new()),
            restores: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Counts one processing step's fresh results; `now` is the wall clock (Unix ms). Called
    /// once per step: a few atomic adds, plus a pass over the outputs (far fewer than events).
    pub fn record(&self, done: &Processed, now: Millis) {
        for s in 0..3 {
            if done.applied_by_source[s] > 0 {
                self.applied[s].fetch_add(done.applied_by_source[s], Relaxed);
            }
            if done.duplicates_by_source[s] > 0 {
                self.duplicates[s].fetch_add(done.duplicates_by_source[s], Relaxed);
            }
        }
        for d in &done.dead_letters {
            self.dead_letters[d.source][d.rejection.reason as usize].fetch_add(1, Relaxed);
        }
        if done.outputs.is_empty() {
            return;
        }
        let latency = self.output_latency_seconds.local();
        let score = self.output_score.local();
        for o in &done.outputs {
            latency.observe((now - o.timestamp()).max(0) as f64 / 1000.0);
            match o {
                Output::ScoreChanged(s) => {
                    score.observe(s.score);
                    if s.previous_band != Some(s.band) {
                        let from = s.previous_band.map_or(3, |b| b as usize);
                        self.transitions[from][s.band as usize].fetch_add(1, Relaxed);
                    }
                }
                Output::Alert(a) => {
                    self.alerts[a.rule as usize][a.severity as usize].fetch_add(1, Relaxed);
                }
            }
        }
        latency.flush();
        score.flush();
    }
}

impl Telemetry {
    /// Times restores: given every owned partition and whether it is restoring now, observes
    /// `restore_duration_seconds` for each that has just finished. Called with the readiness
    /// update (after every rebalance callback and loop step), so a restore is timed from the
    /// assignment (or rewind) that started it to its first step with nothing left to re-read.
    /// A partition with nothing to re-read is not a restore and is not observed.
    pub fn track_restores(&self, partitions: impl Iterator<Item = (i32, bool)>, now: Instant) {
        let mut restores = self.restores.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        for (p, restoring) in partitions {
            seen.push(p);
            let entry = restores.entry(p).or_insert(None);
            match (*entry, restoring) {
                (None, true) => *entry = Some(now),
                (Some(since), false) => {
                    self.restore_duration_seconds.observe(now.duration_since(since).as_secs_f64());
                    *entry = None;
                }
                _ => {}
            }
        }
        restores.retain(|p, _| seen.contains(p)); // revoked: the next owner times its own
    }
}

/// Builds the registry `/metrics` serves: the collector over what `shared` exposes (the
/// processor's state), the histograms and snapshot handles of its [`Telemetry`], and the build
/// info.
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

/// Reads [`Stats`], [`Telemetry`] and the engines at scrape time. The metric objects are
/// kept only to describe and format the values: each scrape resets and refills them under
/// `lock`, so concurrent scrapes cannot double-count.
struct ServiceCollector {
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
}

impl ServiceCollector {
    fn new(shared: Arc<dyn Scraped>, scorecard: Arc<Scorecard>) -> ServiceCollector {
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

    fn parts(&self) -> [&dyn Collector; 23] {
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
        set(&self.merge_stalls, load(&stats.merge_stalls));
        self.commit_seconds.reset();
        self.commit_seconds.inc_by(load(&stats.commit_micros) as f64 / 1e6);
        self.assigned.set(stats.assigned_partitions.load(Relaxed));
        self.ready.set(stats.ready.load(Relaxed) as i64);
        self.lag.reset();
        for l in t.lag.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            self.lag.with_label_values(&[topics[l.source], &l.partition.to_string()]).set(l.records);
        }

        let EngineTotals { census, customers, fullest, buffered } = shared.engines();
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

/// The wall clock as Unix milliseconds: the shell's, for latency; the engine never reads it.
pub fn wall_clock_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    #[test]
    fn a_restore_is_timed_from_its_start_to_its_end_once() {
        let t = Telemetry::default();
        let t0 = Instant::now();
        t.track_restores([(0, true), (1, false)].into_iter(), t0);
        t.track_restores([(0, true), (1, false)].into_iter(), t0 + Duration::from_secs(1));
        t.track_restores([(0, false), (1, false)].into_iter(), t0 + Duration::from_secs(3));
        t.track_restores([(0, false)].into_iter(), t0 + Duration::from_secs(4));
        assert_eq!(t.restore_duration_seconds.get_sample_count(), 1, "partition 1 had nothing to re-read");
        assert_eq!(t.restore_duration_seconds.get_sample_sum(), 3.0);
        // A rewind starts a new restore of the same partition.
        t.track_restores([(0, true)].into_iter(), t0 + Duration::from_secs(5));
        t.track_restores([(0, false)].into_iter(), t0 + Duration::from_secs(7));
        assert_eq!(t.restore_duration_seconds.get_sample_count(), 2);
    }
}
