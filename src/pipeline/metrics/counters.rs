//! The counters the processor bumps: [`Stats`]' totals and [`Telemetry`]'s counts by label,
//! histograms and snapshot handles, all atomics or handles, cheap to bump once per batch from
//! the processing thread. Reading them into metric families is the collector's job, not theirs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};

use crate::event::{Millis, RejectReason};
use crate::output::Output;
use crate::pipeline::task::Processed;
use crate::rules::RULE_COUNT;

const REASONS: usize = RejectReason::ALL.len();

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
    /// At-least-once offset commits the broker refused (reported by the commit callback); each
    /// is retried.
    pub commit_failures: AtomicU64,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
