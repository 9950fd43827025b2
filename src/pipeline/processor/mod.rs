//! The Kafka shell around the engine: consume the three input topics in one group, feed each
//! partition's [`PartitionTask`], produce outputs and dead letters, and commit — inside a
//! transaction with exactly-once.
//!
//! Two threads (see [`Processor::run`]). The polling thread owns the consumer: rebalance
//! callbacks run inside its polls and finish their commit before returning (KAFKA-NOTES
//! pitfalls 1–3); fetched messages are read in batches from a queue of their own
//! ([`FetchQueue`]). The processing thread runs the tasks. The tasks live behind a mutex that
//! neither thread holds while polling, so a callback can always take it; the query API (and the
//! demo's summary) read them through the same mutex.
//!
//! Recovery is a snapshot plus re-reading. A partition that arrives (at start, after a
//! rebalance, after an aborted transaction) starts from its newest usable snapshot (or empty,
//! from the beginning of its topics), is read from there with outputs suppressed up to the
//! group's committed offsets, then runs normally. Because the task's merge order depends only
//! on the data, the rebuilt state and every decision after it are the ones an uninterrupted run
//! makes; nothing committed is emitted twice and nothing uncommitted is lost. Snapshots are
//! taken right after commits, so their offsets are always committed ones (see `snapshot`).
//!
//! This file holds what the threads share ([`Shared`], [`State`]) and starts them; each role has
//! a file of its own:
//! - `poll`: the polling thread (the consumer, the fetch queue, seeks, handovers);
//! - `process`: the processing thread (buffering, running the tasks, producing, pausing, its
//!   schedule of commits and snapshots);
//! - `commit`: the commit protocol (exactly-once transactions, at-least-once commits that wait
//!   for acknowledgments) and producing;
//! - `rebalance`: the consumer's assign and revoke callbacks, and the generations that tell
//!   stale messages apart;
//! - `recovery`: rebuilding a partition from a snapshot and re-reading, rewinds' seeks, and
//!   taking snapshots.

mod commit;
mod poll;
mod process;
mod rebalance;
mod recovery;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::Offset;
use tracing::info;

use self::commit::{wait_delivered, DeliveryCounter};
use self::poll::{poll_loop, Handover, STAGED_BATCHES};
use self::process::process_loop;
use self::rebalance::Ctx;
use self::recovery::snapshot_store;
use super::acks::{Acks, Epochs};
use super::candidates::CandidateWriter;
use super::config::{Config, Guarantee};
use super::kafka::{self, FetchQueue};
pub use super::metrics::Stats;
use super::metrics::{EngineTotals, LearnView, ModelView, Scraped};
use super::task::PartitionTask;
use crate::engine::Engine;
use crate::event::Millis;
use crate::score::Scorecard;
use crate::snapshot::{SnapshotStore, Snapshotter};

/// The processor's state shared with the consumer's callbacks and with readers.
pub struct Shared {
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
    pub state: Mutex<State>,
    producer: ThreadedProducer<DeliveryCounter>,
    /// Outputs in flight per commit epoch, counted by the producer's delivery callback.
    acks: Arc<Acks>,
    /// Where partition snapshots are kept (`None`: no snapshots; partitions rebuild by re-reading).
    snapshots: Option<Arc<dyn SnapshotStore>>,
    /// Bumped by every rebalance and every seek back, so messages polled before one are not
    /// mistaken for after (see [`Staged`]).
    generation: AtomicU64,
    /// Set when a rewound input waits for the polling thread to seek it back.
    seeks_requested: AtomicBool,
    /// The last few alerts as one-line summaries (for the demo's terminal).
    recent_alerts: Mutex<VecDeque<String>>,
    /// Where the assigned partitions' messages are fetched to (see [`FetchQueue`]): set once the
    /// consumer exists, taken before it is dropped. The polling thread reads it; the assign
    /// callback (on the same thread, never while it is read) forwards new partitions to it.
    fetch: Mutex<Option<FetchQueue>>,
}

/// The partitions this instance owns.
pub struct State {
    pub tasks: BTreeMap<i32, PartitionTask>,
    scorecard: Arc<Scorecard>,
    /// Outputs produced since the last commit (at-least-once: since the last flush).
    dirty: bool,
    /// At-least-once: the epochs outputs are produced in, and the offsets waiting for theirs.
    epochs: Epochs,
    /// Delivery failures already acted on (by a rewind): any beyond stops offsets from being
    /// committed and rewinds to the last commit.
    failures_seen: u64,
    /// Input partitions paused because their buffer is full: (source, partition).
    paused: HashSet<(usize, i32)>,
    waiting_since: HashMap<i32, Instant>,
    /// The generation at which each partition was last assigned, revoked or seeked back:
    /// messages of its polled before then belong to a task that no longer exists.
    reset_at: HashMap<(usize, i32), u64>,
    /// When each partition last warned that its merge waits for records not delivered yet.
    stall_warned: HashMap<i32, Instant>,
    last_input: HashMap<i32, Instant>,
    idle_advanced: HashMap<i32, Instant>,
    /// Set by a callback that hit an error it cannot handle; the loop stops with it.
    fatal: Option<anyhow::Error>,
    /// Inputs rewound but not yet seeked back, with where to: their messages are dropped.
    pending_seeks: HashMap<(String, i32), Offset>,
    /// Writes snapshots in the background.
    snapshotter: Option<Snapshotter>,
    /// When each partition was last snapshotted, at which offsets and stream time (an idle
    /// advance moves the latter alone).
    snapshotted: HashMap<i32, Snapshotted>,
    /// The stream time each partition's idle advance took it to (the latest), and the same as
    /// of the last commit: recorded in the committed offsets' metadata (see `commit`), so a
    /// rebuilt task re-advances to it instead of firing those timers, whose outputs are
    /// committed, again.
    idle_floor: HashMap<i32, Millis>,
    committed_floor: HashMap<i32, Millis>,
    /// Writes and logs each partition's new learned candidates.
    candidates: CandidateWriter,
    /// Rebuilt tasks that re-advance to their committed idle stream time (outputs suppressed)
    /// once their re-read is done.
    reapply_floor: HashMap<i32, Millis>,
    /// At-least-once: partitions whose idle stream time was in a commit the broker refused
    /// (committed again with the next commit that waits for its outputs).
    floor_unconfirmed: HashSet<i32>,
    /// At-least-once, after the broker refused a commit: when the next may be tried, and the
    /// backoff that led there (see `commit_result`).
    commit_retry: Option<(Instant, Duration)>,
}

/// When a partition was last snapshotted, at which input offsets (usage, support, billing) and
/// at which stream time.
type Snapshotted = (Instant, [Option<i64>; 3], Option<Millis>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the last few alerts as one-line summaries.
    fn remember_alert(&self, line: String) {
        let mut recent = self.recent_alerts.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= 3 {
            recent.pop_front();
        }
        recent.push_back(line);
    }

    /// The alerts remembered since the last call.
    pub fn take_recent_alerts(&self) -> VecDeque<String> {
        std::mem::take(&mut *self.recent_alerts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn source_of(&self, topic: &str) -> Option<usize> {
        self.config.kafka.topics.inputs().iter().position(|t| *t == topic)
    }

    fn update_readiness(&self, state: &State) {
        let n = state.tasks.len() as i64;
        self.stats.assigned_partitions.store(n, Relaxed);
        self.stats.ready.store(n > 0 && state.tasks.values().all(|t| !t.restoring()), Relaxed);
        self.stats.telemetry.track_restores(state.tasks.iter().map(|(p, t)| (*p, t.restoring())), Instant::now());
    }

    fn new_engine(&self, scorecard: &Arc<Scorecard>) -> Engine {
        Engine::new(scorecard.clone(), self.config.engine.clone())
    }
}

/// What `/metrics` reads at scrape time: the counters, the settings, and the engines under the
/// state lock (a few integer reads per partition).
impl Scraped for Shared {
    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn engines(&self) -> EngineTotals {
        let mut totals = EngineTotals::default();
        let state = self.lock();
        for (p, task) in state.tasks.iter() {
            totals.census.merge(&task.engine.stats().census);
            let n = task.engine.customer_count();
            totals.customers += n;
            totals.fullest = totals.fullest.max(n);
            totals.buffered += task.buffered();
            totals.models.push(ModelView {
                partition: *p,
                active: task.engine.scorecard().version.to_string(),
                learn: task.engine.learner().map(|l| LearnView {
                    stats: l.stats().clone(),
                    candidate: l.candidate().map(|c| (c.version.clone(), c.against.clone(), c.auc, c.active_auc)),
                }),
            });
        }
        totals
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The running processor: build with [`Processor::new`], drive with [`Processor::run`].
pub struct Processor {
    pub shared: Arc<Shared>,
    consumer: BaseConsumer<Ctx>,
    partitions: i32,
}

impl Processor {
    /// Connects, checks the topics and (with exactly-once) fences older instances of this
    /// transactional id. Fails fast with the reason.
    pub fn new(config: Arc<Config>, scorecard: Arc<Scorecard>, stats: Arc<Stats>) -> anyhow::Result<Processor> {
        let acks = Arc::new(Acks::default());
        let producer: ThreadedProducer<DeliveryCounter> = kafka::producer_config(&config)
            .create_with_context(DeliveryCounter { stats: stats.clone(), acks: acks.clone() })
            .context("cannot create the producer")?;
        let snapshots = snapshot_store(&config)?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            stats,
            state: Mutex::new(State {
                tasks: BTreeMap::new(),
                scorecard,
                dirty: false,
                epochs: Epochs::default(),
                failures_seen: 0,
                paused: HashSet::new(),
                waiting_since: HashMap::new(),
                stall_warned: HashMap::new(),
                reset_at: HashMap::new(),
                last_input: HashMap::new(),
                idle_advanced: HashMap::new(),
                fatal: None,
                pending_seeks: HashMap::new(),
                snapshotter: snapshots.clone().map(Snapshotter::new),
                snapshotted: HashMap::new(),
                idle_floor: HashMap::new(),
                committed_floor: HashMap::new(),
                candidates: CandidateWriter::new(&config.engine.learn.candidate_dir),
                reapply_floor: HashMap::new(),
                floor_unconfirmed: HashSet::new(),
                commit_retry: None,
            }),
            producer,
            acks,
            snapshots,
            generation: AtomicU64::new(0),
            seeks_requested: AtomicBool::new(false),
            recent_alerts: Mutex::new(VecDeque::new()),
            fetch: Mutex::new(None),
        });
        let consumer: BaseConsumer<Ctx> = kafka::consumer_config(&config)
            .create_with_context(Ctx(shared.clone()))
            .context("cannot create the consumer")?;
        let partitions = kafka::check_topics(&consumer, &config)?;
        *shared.fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(FetchQueue::new(&consumer));
        if config.kafka.processing_guarantee == Guarantee::ExactlyOnce {
            shared.producer.init_transactions(TIMEOUT).context("cannot initialise transactions")?;
            shared.producer.begin_transaction().context("cannot begin a transaction")?;
        }
        consumer.subscribe(&config.kafka.topics.inputs()).context("cannot subscribe")?;
        info!(
            partitions,
            guarantee = ?config.kafka.processing_guarantee,
            group = %config.kafka.group_id,
            "processor started"
        );
        Ok(Processor { shared, consumer, partitions })
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Runs until `stop` is set, then commits what was processed and leaves the group.
    ///
    /// Two threads: this one polls the consumer (and so runs the rebalance callbacks and the
    /// seeks), copies each message out and hands batches over a bounded channel to a processing
    /// thread, which buffers them in their tasks, runs the engines, produces and commits. Polling
    /// and copying (a third of the work per event) thus overlap with the engines. The channel's
    /// bound and the per-partition pause keep memory bounded; the polling thread waits on the
    /// processing one only when that channel is full, and for the state lock, which a callback
    /// needs anyway.
    pub fn run(self, stop: &AtomicBool) -> anyhow::Result<()> {
        let Processor { shared, consumer, partitions } = self;
        let finished = AtomicBool::new(false);
        let (tx, rx) = mpsc::sync_channel::<Handover>(STAGED_BATCHES);
        let result = std::thread::scope(|scope| {
            let processing = std::thread::Builder::new()
                .name("processing".into())
                .spawn_scoped(scope, || {
                    let result = process_loop(&shared, &consumer, rx, stop);
                    finished.store(true, Relaxed);
                    result
                })
                .expect("cannot start the processing thread");
            let started = Instant::now();
            let blocked = poll_loop(&shared, &consumer, tx, partitions, stop, &finished);
            let cpu = thread_cpu();
            let result = processing.join().unwrap_or_else(|_| Err(anyhow!("the processing thread panicked")));
            info!(
                polling_secs = (started.elapsed() - blocked).as_secs_f64(),
                blocked_secs = blocked.as_secs_f64(),
                cpu_secs = cpu.as_secs_f64(),
                "leaving the group"
            );
            result
        });
        // librdkafka frees what is left in the fetch queue when it is destroyed: before the client.
        drop(shared.fetch.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(consumer); // closes: the revoke callback commits nothing more and releases partitions
        let _ = wait_delivered(&shared.producer, Duration::from_secs(shared.config.pipeline.shutdown_timeout_secs));
        result
    }
}

/// The CPU time the calling thread has used (wall-clock figures of a thread include the time
/// it waited for a core on a busy machine; this tells the thread's own cost). Public for the
/// drain benchmark, which measures the processing thread's work the same way.
pub fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec to write; the clock id is a constant the kernel knows.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if ok {
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    } else {
        Duration::ZERO
    }
}

/// Runs `f` when dropped: times a function with several exits.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
