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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::acks::{Acks, Epochs, Position};
use super::config::{Config, Guarantee, SnapshotStoreKind};
use super::kafka::{self, app_positions, cached_high_watermarks, FetchQueue, Fetched};
use super::metrics::{Lag, Telemetry};
use super::task::{Copier, PartitionTask, Processed, Record};
use crate::engine::Engine;
use crate::output::Output;
use crate::score::Scorecard;
use crate::snapshot::{self, Pending, RestoreContext, SnapshotStore, Snapshotter};

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
    /// When each partition was last snapshotted, and at which offsets.
    snapshotted: HashMap<i32, (Instant, [Option<i64>; 3])>,
}

/// The producer's context: counts failed deliveries and reports each output's delivery
/// against the commit epoch it was produced in (its opaque; see [`Acks`]).
pub struct DeliveryCounter {
    stats: Arc<Stats>,
    acks: Arc<Acks>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        // Failures first: a tick that sees the epoch settled must also see its failures.
        if let Err((e, _)) = result {
            self.stats.delivery_failures.fetch_add(1, Relaxed);
            warn!(error = %e, "output delivery failed");
        }
        self.acks.reported(epoch);
    }
}

/// The consumer's context: rebalances go through [`Shared`].
pub struct Ctx(pub Arc<Shared>);

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let shared = &self.0;
        shared.generation.fetch_add(1, Relaxed);
        shared.stats.rebalances.fetch_add(1, Relaxed);
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let mut state = shared.lock();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let prepared = state.assign(shared, consumer, tpl);
                // Before librdkafka starts fetching them, so none of their messages goes to the
                // consumer queue first (where it would be read after later ones).
                if let Some(fetch) = shared.fetch.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    fetch.forward(tpl);
                }
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                prepared.and(assigned.map_err(|e| anyhow!("assign failed: {e}")))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let released = state.revoke(shared, consumer, tpl);
                let unassigned = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                released.and(unassigned.map_err(|e| anyhow!("unassign failed: {e}")))
            }
            other => Err(anyhow!("rebalance error: {}", RDKafkaErrorCode::from(other))),
        };
        if let Err(e) = result {
            error!(error = %e, "rebalance");
            state.fatal.get_or_insert(e);
        }
        shared.update_readiness(&state);
    }
}

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

const TIMEOUT: Duration = Duration::from_secs(30);

/// How often a partition whose merge waits for records the broker holds but has not delivered
/// says so (a warning and `healthscore_merge_stalls_total`).
const STALL_WARNING_EVERY: Duration = Duration::from_secs(30);

impl State {
    /// Prepares new partitions: each starts empty, reads its topics from the beginning and
    /// restores up to the committed offsets (fetched here; with exactly-once this waits for a
    /// previous owner's open transaction to end, so no committed output is re-emitted).
    fn assign(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<Ctx>,
        tpl: &mut TopicPartitionList,
    ) -> anyhow::Result<()> {
        self.mark_reset(shared, tpl);
        let committed =
            consumer.committed_offsets(tpl.clone(), TIMEOUT).context("cannot read the group's committed offsets")?;
        // Partitions arriving whole (all three topics) and new here start from a snapshot.
        let mut whole: BTreeMap<i32, [Option<Option<i64>>; 3]> = BTreeMap::new();
        for e in committed.elements() {
            if let Some(source) = shared.source_of(e.topic()) {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                whole.entry(e.partition()).or_default()[source] = Some(offset);
            }
        }
        let mut prepared = HashSet::new();
        for (p, committed) in whole {
            let (Some(c0), Some(c1), Some(c2)) = (committed[0], committed[1], committed[2]) else { continue };
            if self.tasks.contains_key(&p) {
                continue;
            }
            let committed = [c0, c1, c2];
            let task = self.prepare_task(shared, p, committed);
            for (s, input) in task.inputs.iter().enumerate() {
                let start = input.position.map_or(Offset::Beginning, Offset::Offset);
                tpl.set_partition_offset(shared.config.kafka.topics.inputs()[s], p, start)?;
                info!(partition = p, topic = shared.config.kafka.topics.inputs()[s], committed = ?input.committed, from = ?start, "assigned");
            }
            self.last_input.insert(p, Instant::now());
            self.tasks.insert(p, task);
            prepared.insert(p);
        }
        let mut resets = Vec::new();
        for e in committed.elements() {
            let Some(source) = shared.source_of(e.topic()) else { continue };
            let p = e.partition();
            if prepared.contains(&p) {
                continue;
            }
            if self.tasks.get(&p).is_some_and(|t| t.inputs[source].position.is_some()) {
                warn!(partition = p, topic = e.topic(), "partition assigned in pieces; rebuilding its state");
                resets.push(p);
            }
            let task = self.tasks.entry(p).or_insert_with(|| PartitionTask::new(p, shared.new_engine(&self.scorecard)));
            let input = &mut task.inputs[source];
            input.restore_until = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            input.committed = input.restore_until;
            self.last_input.insert(p, Instant::now());
            tpl.set_partition_offset(e.topic(), p, Offset::Beginning)?;
            info!(partition = p, topic = e.topic(), committed = ?input.restore_until, "assigned");
        }
        for p in resets {
            self.reset_task(shared, p, false);
        }
        Ok(())
    }

    /// Lets partitions go: commits what was processed first (the transaction, with
    /// exactly-once), unless the assignment was lost, in which case it is aborted.
    fn revoke(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<Ctx>,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<()> {
        self.mark_reset(shared, tpl);
        if consumer.assignment_lost() {
            warn!("assignment lost; aborting in-flight work");
            self.abort(shared)?;
        } else {
            self.commit(shared, consumer, Wait::Sync)?;
            let revoked: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            for p in revoked {
                self.snapshot(shared, p, true);
            }
            // The next owner restores from the snapshot store: let it find these.
            if let Some(snapshotter) = self.snapshotter.as_mut() {
                tally_snapshots(shared, snapshotter.wait_idle());
            }
        }
        for e in tpl.elements() {
            let p = e.partition();
            if self.tasks.remove(&p).is_some() {
                info!(partition = p, "revoked");
            }
            for s in 0..3 {
                self.paused.remove(&(s, p));
            }
            self.pending_seeks.retain(|(_, q), _| *q != p);
            self.snapshotted.remove(&p);
            self.waiting_since.remove(&p);
            self.stall_warned.remove(&p);
            self.last_input.remove(&p);
            self.idle_advanced.remove(&p);
        }
        Ok(())
    }

    /// Commits processed offsets: in the open transaction (then starts the next one) with
    /// exactly-once; with at-least-once, only offsets whose outputs are all acknowledged: those
    /// acknowledged by now ([`Wait::No`], see [`Epochs`]), or every one after waiting for them.
    fn commit(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>, wait: Wait) -> anyhow::Result<()> {
        let topics = shared.config.kafka.topics.inputs();
        let mut positions: Vec<Position> = Vec::new();
        for (p, task) in &self.tasks {
            for (s, input) in task.inputs.iter().enumerate() {
                if let Some(pos) = input.position.filter(|pos| Some(*pos) != input.committed) {
                    positions.push((s, *p, pos));
                }
            }
        }
        let guarantee = shared.config.kafka.processing_guarantee;
        let deferred = guarantee == Guarantee::AtLeastOnce && wait == Wait::No;
        if positions.is_empty() && !self.dirty && !deferred {
            return Ok(());
        }
        let producer = &shared.producer;
        let started = Instant::now();
        let _timer = scopeguard(|| {
            shared.stats.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        });
        if deferred {
            return self.commit_acknowledged(shared, consumer, positions);
        }
        let tpl = offsets_list(topics, &positions)?;
        match guarantee {
            Guarantee::ExactlyOnce => {
                let mut backoff = Duration::from_millis(50);
                loop {
                    let attempt = (|| -> KafkaResult<()> {
                        wait_delivered(producer, TIMEOUT)?;
                        if tpl.count() > 0 {
                            let group = consumer.group_metadata().ok_or(KafkaError::NoMessageReceived)?;
                            producer.send_offsets_to_transaction(&tpl, &group, TIMEOUT)?;
                        }
                        producer.commit_transaction(TIMEOUT)
                    })();
                    match attempt {
                        Ok(()) => break,
                        Err(e) => match txn_error(&e) {
                            TxnError::Retry if backoff < Duration::from_secs(10) => {
                                warn!(error = %e, "commit failed; retrying");
                                std::thread::sleep(backoff);
                                backoff *= 2;
                            }
                            TxnError::Fatal => return Err(anyhow!("fatal transaction error: {e}")),
                            _ => {
                                warn!(error = %e, "commit failed; aborting and rewinding to the last commit");
                                return self.abort(shared);
                            }
                        },
                    }
                }
                producer.begin_transaction().map_err(|e| anyhow!("cannot begin a transaction: {e}"))?;
            }
            Guarantee::AtLeastOnce => {
                let flushed = wait_delivered(producer, TIMEOUT);
                if flushed.is_err() || self.delivery_failed(shared) {
                    self.rewind_undelivered(shared);
                    return Ok(());
                }
                // These positions cover what any waiting epoch would commit.
                self.epochs.forget();
                if tpl.count() > 0 {
                    let mode = if wait == Wait::Sync { CommitMode::Sync } else { CommitMode::Async };
                    if let Err(e) = consumer.commit(&tpl, mode) {
                        // Not fatal: the offsets are committed again next time, and anything
                        // re-read after a crash is re-emitted with the same event_ids.
                        warn!(error = %e, "offset commit failed; will retry");
                        return Ok(());
                    }
                }
            }
        }
        for task in self.tasks.values_mut() {
            for input in &mut task.inputs {
                if input.position.is_some() {
                    input.committed = input.position;
                }
            }
        }
        self.dirty = false;
        shared.stats.commits.fetch_add(1, Relaxed);
        Ok(())
    }

    /// At-least-once between flushes: commits the offsets whose outputs are all acknowledged
    /// by now, if any, and lets `positions` wait for theirs (see [`Epochs::tick`]).
    fn commit_acknowledged(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<Ctx>,
        positions: Vec<Position>,
    ) -> anyhow::Result<()> {
        let Some(ready) = self.epochs.tick(&shared.acks, positions) else { return Ok(()) };
        if self.delivery_failed(shared) {
            // An output before these offsets may be lost: never commit past it.
            self.rewind_undelivered(shared);
            return Ok(());
        }
        if ready.is_empty() {
            return Ok(()); // outputs without new input (idle time moving on): nothing to commit
        }
        let tpl = offsets_list(shared.config.kafka.topics.inputs(), &ready)?;
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            warn!(error = %e, "offset commit failed; will retry");
            return Ok(());
        }
        for (s, p, offset) in ready {
            if let Some(task) = self.tasks.get_mut(&p) {
                task.inputs[s].committed = Some(offset);
            }
        }
        shared.stats.commits.fetch_add(1, Relaxed);
        Ok(())
    }

    /// At-least-once, when outputs may not all have been delivered: nothing processed since
    /// the last commit counts, and every partition re-reads from there.
    fn rewind_undelivered(&mut self, shared: &Shared) {
        warn!("outputs not all delivered; rewinding to the last commit");
        self.rewind(shared);
    }

    /// Whether an output delivery failed since the last call.
    fn delivery_failed(&mut self, shared: &Shared) -> bool {
        let failures = shared.stats.delivery_failures.load(Relaxed);
        std::mem::replace(&mut self.failures_seen, failures) != failures
    }

    /// Aborts the open transaction and rewinds every partition to its last commit.
    fn abort(&mut self, shared: &Shared) -> anyhow::Result<()> {
        if shared.config.kafka.processing_guarantee == Guarantee::ExactlyOnce {
            shared.stats.aborts.fetch_add(1, Relaxed);
            shared.producer.abort_transaction(TIMEOUT).map_err(|e| anyhow!("cannot abort the transaction: {e}"))?;
            shared.producer.begin_transaction().map_err(|e| anyhow!("cannot begin a transaction: {e}"))?;
        }
        self.rewind(shared);
        Ok(())
    }

    /// Throws away every partition's state and re-reads it up to the last commit.
    fn rewind(&mut self, shared: &Shared) {
        shared.stats.rewinds.fetch_add(1, Relaxed);
        self.epochs.forget();
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            self.reset_task(shared, p, true);
        }
        self.dirty = false;
    }

    /// Rebuilds partition `p`: from its newest usable snapshot, else from the beginning of its
    /// topics, re-reading up to its last commit (`to_last_commit`) or up to the offsets
    /// committed when it was assigned.
    fn reset_task(&mut self, shared: &Shared, p: i32, to_last_commit: bool) {
        let topics = shared.config.kafka.topics.inputs();
        let old = self.tasks.remove(&p).expect("resetting a known task");
        let committed = [0, 1, 2].map(|s| {
            let input = &old.inputs[s];
            if to_last_commit {
                input.committed
            } else {
                input.restore_until
            }
        });
        let task = self.prepare_task(shared, p, committed);
        for (s, (new, old)) in task.inputs.iter().zip(&old.inputs).enumerate() {
            if new.position.is_some() || old.position.is_some() || old.restore_until.is_some() || !old.is_empty() {
                let to = new.position.map_or(Offset::Beginning, Offset::Offset);
                self.pending_seeks.insert((topics[s].to_string(), p), to);
            }
        }
        self.tasks.insert(p, task);
        shared.seeks_requested.store(true, Relaxed);
    }

    /// A task for partition `p`, whose group has committed `committed`: from the newest usable
    /// snapshot when there is one (its inputs continue from the snapshot's offsets), else empty
    /// (from the beginning). Either way it re-reads up to the committed offsets with outputs
    /// suppressed, then runs normally.
    fn prepare_task(&mut self, shared: &Shared, p: i32, committed: [Option<i64>; 3]) -> PartitionTask {
        let mut task = match self.load_snapshot(shared, p, committed) {
            Some(r) => PartitionTask::resume(p, r.engine, r.header.offsets, r.header.last_times),
            None => PartitionTask::new(p, shared.new_engine(&self.scorecard)),
        };
        for (input, c) in task.inputs.iter_mut().zip(committed) {
            input.committed = c;
            input.restore_until = c;
        }
        let offsets = [0, 1, 2].map(|s| task.inputs[s].position);
        self.snapshotted.insert(p, (Instant::now(), offsets));
        task
    }

    fn load_snapshot(&mut self, shared: &Shared, p: i32, committed: [Option<i64>; 3]) -> Option<snapshot::Restored> {
        let store = shared.snapshots.as_ref()?;
        let cx = RestoreContext {
            partition: p,
            topics: shared.config.kafka.topics.inputs(),
            committed,
            scorecard: &self.scorecard,
            engine: &shared.config.engine,
        };
        match snapshot::restore(store.as_ref(), &cx) {
            Ok(Some(r)) => {
                shared.stats.telemetry.snapshot_restores.inc();
                info!(
                    partition = p,
                    snapshot = %r.name,
                    customers = r.header.customers,
                    offsets = ?r.header.offsets,
                    committed = ?committed,
                    bytes = r.bytes,
                    ms = r.took.as_millis() as u64,
                    "restored from snapshot"
                );
                Some(r)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(partition = p, error = %format!("{e:#}"), "cannot list snapshots; rebuilding from the beginning");
                None
            }
        }
    }

    /// Snapshots partition `p` if its state reflects exactly its committed input and it has
    /// moved on since its last snapshot. `wait`: queue it even when the writer is busy (on
    /// revoke and shutdown); otherwise skip it then (it is due again next time).
    fn snapshot(&mut self, shared: &Shared, p: i32, wait: bool) {
        let (Some(snapshotter), Some(task)) = (self.snapshotter.as_mut(), self.tasks.get(&p)) else { return };
        if !task.settled() {
            return;
        }
        let offsets = [0, 1, 2].map(|s| task.inputs[s].position);
        if offsets.iter().all(Option::is_none) || self.snapshotted.get(&p).is_some_and(|(_, o)| *o == offsets) {
            self.snapshotted.insert(p, (Instant::now(), offsets));
            return;
        }
        if !wait && snapshotter.busy() {
            return;
        }
        let started = Instant::now();
        let topics = shared.config.kafka.topics.inputs();
        let pending = Pending::take(&task.engine, p, topics, offsets, task.last_times());
        shared.stats.telemetry.snapshot_pause_seconds.observe(started.elapsed().as_secs_f64());
        if wait {
            snapshotter.submit(pending);
        } else if !snapshotter.offer(pending) {
            return;
        }
        self.snapshotted.insert(p, (Instant::now(), offsets));
    }

    /// The partition whose snapshot is oldest, if it is due and the writer is free (one per
    /// commit, so the pauses of several partitions spread out).
    fn due_snapshot(&self, shared: &Shared, now: Instant) -> Option<i32> {
        if self.snapshotter.as_ref().is_none_or(Snapshotter::busy) {
            return None;
        }
        let every = Duration::from_secs(shared.config.snapshot.interval_secs);
        self.tasks
            .keys()
            .map(|p| (self.snapshotted.get(p).map_or(now, |(t, _)| *t), *p))
            .filter(|(t, _)| now.duration_since(*t) >= every)
            .min()
            .map(|(_, p)| p)
    }

    fn count_snapshots(&mut self, shared: &Shared) {
        if let Some(snapshotter) = self.snapshotter.as_mut() {
            tally_snapshots(shared, snapshotter.finished());
        }
    }

    /// Snapshots every partition and waits for the writes (graceful shutdown).
    fn snapshot_all(&mut self, shared: &Shared) {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            self.snapshot(shared, p, true);
        }
        if let Some(mut snapshotter) = self.snapshotter.take() {
            tally_snapshots(shared, snapshotter.close());
        }
    }

    /// Notes that the inputs in `tpl` were just assigned or revoked (the generation was bumped
    /// on entering the callback): their messages polled before are stale.
    fn mark_reset(&mut self, shared: &Shared, tpl: &TopicPartitionList) {
        let generation = shared.generation.load(Relaxed);
        for e in tpl.elements() {
            if let Some(source) = shared.source_of(e.topic()) {
                self.reset_at.insert((source, e.partition()), generation);
            }
        }
    }

    /// Seeks rewound inputs back to where their rebuilt task continues. Runs on the polling
    /// thread only, between polls, so every message polled afterwards is from after the seek and
    /// every one polled before carries an older generation. A seek can fail while the group is
    /// changing (the partition is not fetching yet); until it succeeds the input's messages
    /// are dropped, so nothing from past the rewind point slips in, and it is tried again on
    /// every loop. A revoke clears it (the next owner starts from the committed offsets).
    fn retry_seeks(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>) {
        if self.pending_seeks.is_empty() {
            shared.seeks_requested.store(false, Relaxed);
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), to) in &self.pending_seeks {
            let _ = tpl.add_partition_offset(topic, *p, *to);
        }
        match consumer.seek_partitions(tpl, Duration::from_secs(5)) {
            Ok(result) => {
                for e in result.elements() {
                    match e.error() {
                        Ok(()) => {
                            self.pending_seeks.remove(&(e.topic().to_string(), e.partition()));
                            if let Some(source) = shared.source_of(e.topic()) {
                                let generation = shared.generation.fetch_add(1, Relaxed) + 1;
                                self.reset_at.insert((source, e.partition()), generation);
                            }
                        }
                        Err(err) => {
                            warn!(topic = e.topic(), partition = e.partition(), error = %err, "seek failed; will retry")
                        }
                    }
                }
            }
            Err(err) => warn!(error = %err, "seek failed; will retry"),
        }
        shared.seeks_requested.store(!self.pending_seeks.is_empty(), Relaxed);
    }
}

/// Whether what was polled of input (`source`, `p`) in `generation` is from before the input was
/// last assigned, revoked or seeked back (at the generation `reset_at` holds for it), and so
/// belongs to a task that no longer exists.
fn stale(reset_at: &HashMap<(usize, i32), u64>, source: usize, p: i32, generation: u64) -> bool {
    reset_at.get(&(source, p)).is_some_and(|reset| generation < *reset)
}

/// Whether input `topic` of partition `p` was rewound and its seek back has not succeeded yet
/// (its consumer position and any message of it polled meanwhile are from before the rewind).
fn seek_pending(pending_seeks: &HashMap<(String, i32), Offset>, topic: &str, p: i32) -> bool {
    !pending_seeks.is_empty() && pending_seeks.contains_key(&(topic.to_string(), p))
}

enum TxnError {
    Retry,
    Abort,
    Fatal,
}

fn txn_error(e: &KafkaError) -> TxnError {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => TxnError::Fatal,
        KafkaError::Transaction(t) if t.txn_requires_abort() => TxnError::Abort,
        KafkaError::Transaction(t) if t.is_retriable() => TxnError::Retry,
        _ => TxnError::Abort,
    }
}

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

/// A polled message copied out of the consumer, with where it came from and the generation
/// (see [`Shared::generation`]) read just before the poll that returned it.
struct Staged {
    source: usize,
    partition: i32,
    generation: u64,
    record: Record,
}

/// What the polling thread hands over: messages polled since the last handover, and the
/// consumer's positions read after the last of them (so every message below a position is in
/// this handover or an earlier one), with the generation then.
struct Handover {
    messages: Vec<Staged>,
    positions: Vec<(usize, i32, i64)>,
    generation: u64,
}

/// Handovers in flight between the two threads, at most (each up to `POLL_BATCH` messages).
const STAGED_BATCHES: usize = 8;
/// Messages read from the fetch queue per call, at most.
const POLL_BATCH: usize = 4096;
/// How long the polling thread blocks on an empty fetch queue: also how late, at worst, it
/// notices a rebalance, a requested seek or a stop while idle.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How long the processing thread waits for input before it counts as a lull (see
/// `process_loop`).
const LULL: Duration = Duration::from_millis(20);
/// How often the assigned partitions are forwarded to the fetch queue again (see there).
const REFORWARD_EVERY: Duration = Duration::from_millis(100);

/// The polling thread: polls until `stop` is set or the processing thread has finished, handing
/// batches to it. Seeks requested by the processing thread happen here, between polls. Returns
/// the time spent blocked because the processing thread was behind.
fn poll_loop(
    shared: &Shared,
    consumer: &BaseConsumer<Ctx>,
    tx: mpsc::SyncSender<Handover>,
    partitions: i32,
    stop: &AtomicBool,
    finished: &AtomicBool,
) -> Duration {
    let copier = Copier::default();
    let topics = shared.config.kafka.topics.inputs();
    let mut inputs = TopicPartitionList::new();
    for topic in topics {
        for p in 0..partitions {
            inputs.add_partition(topic, p);
        }
    }
    let source_of = |topic: &str| shared.source_of(topic);
    let mut last_positions = Vec::new();
    // Time blocked handing over to a busy processing thread (the rest is polling and copying;
    // timed per handover, not per message: a clock read per message cost a tenth of this thread).
    let mut blocked = Duration::ZERO;
    let mut batch = Vec::with_capacity(POLL_BATCH);
    let mut idle = true;
    let mut forwarded: Option<(u64, Instant)> = None;
    while !stop.load(Relaxed) && !finished.load(Relaxed) {
        if shared.seeks_requested.load(Relaxed) {
            shared.lock().retry_seeks(shared, consumer);
        }
        // The consumer queue: rebalance callbacks, commit results, errors. A message comes this
        // way only if librdkafka fetched its partition before it was forwarded; it is older than
        // any of its partition's in the fetch queue, so it is taken first.
        loop {
            let generation = shared.generation.load(Relaxed);
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    if let Some(source) = shared.source_of(m.topic()) {
                        let record = copier.copy(m.offset(), m.key(), m.payload().unwrap_or_default());
                        batch.push(Staged { source, partition: m.partition(), generation, record });
                    }
                }
                Some(Err(e)) => warn!(error = %e, "consumer error"),
                None => break, // empty, or a callback ran: the fetch queue's turn
            }
        }
        let generation = shared.generation.load(Relaxed);
        // The lock is held only while reading (the assign callback, which also takes it, runs
        // inside `poll` above, on this thread).
        let served = {
            let mut fetch = shared.fetch.lock().unwrap_or_else(|p| p.into_inner());
            let Some(fetch) = fetch.as_mut() else { break };
            // librdkafka drops a partition's forwarding when it stops fetching it; a partition
            // reassigned before that stop completed waits, in order, until forwarded again.
            if forwarded.is_none_or(|(g, at)| g != generation || at.elapsed() >= REFORWARD_EVERY) {
                if let Ok(assignment) = consumer.assignment() {
                    fetch.forward(&assignment);
                }
                forwarded = Some((generation, Instant::now()));
            }
            let mut stage = |f: Fetched<'_>| match f {
                Fetched::Message { source, partition, offset, key, payload } => {
                    batch.push(Staged { source, partition, generation, record: copier.copy(offset, key, payload) });
                }
                Fetched::Error(e) => warn!(error = %e, "consumer error"),
            };
            // Idle: block for one message (a batch read would wait the whole timeout to fill up),
            // then take whatever else is there.
            let mut served = 0;
            if idle {
                served = fetch.consume(IDLE_WAIT, 1, source_of, &mut stage);
            }
            if served > 0 || !idle {
                served += fetch.consume(Duration::ZERO, POLL_BATCH, source_of, &mut stage);
            }
            served
        };
        idle = served == 0;
        // Hand over what was polled, with the positions now: nothing polled is held back here,
        // so the processing thread may judge an input at its end by them (`hold_at_end`).
        let mut positions = Vec::with_capacity(last_positions.len());
        app_positions(consumer, &mut inputs, |topic, p, offset| {
            if let Some(source) = shared.source_of(topic) {
                positions.push((source, p, offset));
            }
        });
        if batch.is_empty() && positions == last_positions {
            continue;
        }
        last_positions.clone_from(&positions);
        let messages = std::mem::replace(&mut batch, Vec::with_capacity(POLL_BATCH));
        let generation = shared.generation.load(Relaxed);
        let handing = Instant::now();
        let sent = tx.send(Handover { messages, positions, generation });
        blocked += handing.elapsed();
        if sent.is_err() {
            break; // the processing thread has stopped
        }
    }
    blocked
}

/// The processing thread: buffers what the polling thread hands over, runs the tasks, produces,
/// commits every `commit_interval_ms` and snapshots; on `stop` (or when the polling thread is
/// gone) commits what was processed and snapshots every partition.
fn process_loop(
    shared: &Shared,
    consumer: &BaseConsumer<Ctx>,
    rx: mpsc::Receiver<Handover>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let config = shared.config.clone();
    let commit_every = Duration::from_millis(config.kafka.commit_interval_ms);
    let mut last_commit = Instant::now();
    let mut busy = false;
    let mut last_report = Instant::now();
    // Lag is refreshed every second, and every 100 ms while it misses an owned partition
    // (just assigned, or its watermarks not fetched yet), so the gauge is not a second stale
    // after a rebalance.
    let mut last_lag = Instant::now();
    let (mut lag_complete, mut lag_generation) = (false, u64::MAX);
    // Where the processing thread's time goes (logged on leaving): waiting for messages,
    // buffering and processing, committing (with the snapshots taken after a commit).
    let (mut wait_time, mut process_time, mut commit_time) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut staged: Vec<Handover> = Vec::new();
    let result = loop {
        let waited = Instant::now();
        let mut gone = false;
        let wait = if busy { Duration::ZERO } else { LULL };
        match rx.recv_timeout(wait) {
            Ok(batch) => staged.push(batch),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => gone = true,
        }
        while staged.len() < STAGED_BATCHES {
            match rx.try_recv() {
                Ok(batch) => staged.push(batch),
                Err(_) => break,
            }
        }
        if stop.load(Relaxed) || gone {
            let mut state = shared.lock();
            let committed = state.commit(shared, consumer, Wait::Sync);
            if committed.is_ok() {
                state.snapshot_all(shared);
            }
            break committed;
        }
        let mut state = shared.lock();
        if let Some(e) = state.fatal.take() {
            break Err(e);
        }
        let now = Instant::now();
        wait_time += now - waited;
        let received = !staged.is_empty();
        for batch in staged.drain(..) {
            state.enqueue(shared, consumer, batch, now);
        }
        let step = state.process(shared, consumer, now);
        // This pass waited up to LULL for input (the last one found nothing to do).
        let waited_for_input = !busy;
        busy = step.as_ref().is_ok_and(|worked| *worked) || received;
        if let Err(e) = step {
            break Err(e);
        }
        // It waited, nothing came and nothing was left to do: the input has run dry for now.
        let lull = config.kafka.commit_when_idle && waited_for_input && !busy;
        if busy {
            shared.stats.telemetry.batch_seconds.observe(now.elapsed().as_secs_f64());
        }
        let since_lag = now.duration_since(last_lag);
        let generation = shared.generation.load(Relaxed);
        lag_complete &= generation == lag_generation;
        if since_lag >= Duration::from_secs(1) || (!lag_complete && since_lag >= Duration::from_millis(100)) {
            last_lag = now;
            lag_generation = generation;
            let lags = state.lags(shared, consumer);
            lag_complete = lags.len() == state.tasks.len() * 3;
            *shared.stats.telemetry.lag.lock().unwrap_or_else(|p| p.into_inner()) = lags;
        }
        let processed = Instant::now();
        process_time += processed - now;
        // In a lull (`commit_when_idle`), what was processed is committed at once rather than
        // at the next tick: a burst's outputs become visible (exactly-once) and its offsets safe
        // (at-least-once) a lull after its last record. Under steady load there is no lull, and
        // the interval alone sets the pace of commits.
        if now.duration_since(last_commit) >= commit_every || lull {
            // A snapshot needs its state to reflect exactly the committed input: that commit
            // waits for the outputs (one partition's snapshot per `interval_secs` / partitions).
            // So does a commit in a lull, which has nothing else to do (at-least-once would
            // otherwise commit its latest offsets only a tick later; see `Epochs`).
            state.count_snapshots(shared);
            let snapshot = state.due_snapshot(shared, now);
            let wait = if snapshot.is_some() || lull { Wait::Flush } else { Wait::No };
            if let Err(e) = state.commit(shared, consumer, wait) {
                break Err(e);
            }
            last_commit = now;
            if let Some(p) = snapshot {
                state.snapshot(shared, p, false);
            }
            commit_time += processed.elapsed();
        }
        shared.update_readiness(&state);
        if now.duration_since(last_report) >= Duration::from_secs(10) {
            last_report = now;
            let stats = &shared.stats;
            info!(
                consumed = stats.consumed.iter().map(|c| c.load(Relaxed)).sum::<u64>(),
                applied = stats.applied.load(Relaxed),
                restored = stats.restored.load(Relaxed),
                buffered = state.tasks.values().map(PartitionTask::buffered).sum::<usize>(),
                paused = state.paused.len(),
                waiting = state.tasks.values().filter(|t| t.waiting()).count(),
                stalls = stats.merge_stalls.load(Relaxed),
                commits = stats.commits.load(Relaxed),
                commit_ms = stats.commit_micros.load(Relaxed) / 1000,
                "progress"
            );
        }
    };
    info!(
        wait_secs = wait_time.as_secs_f64(),
        process_secs = process_time.as_secs_f64(),
        commit_secs = commit_time.as_secs_f64(),
        cpu_secs = thread_cpu().as_secs_f64(),
        "processing stopped"
    );
    result
}

impl State {
    /// How far each owned input partition is behind its high watermark, from librdkafka's
    /// cached watermarks (no request) and the next offset to process. A partition restoring
    /// from the beginning counts what it still has to re-read.
    fn lags(&self, shared: &Shared, consumer: &BaseConsumer<Ctx>) -> Vec<Lag> {
        let topics = shared.config.kafka.topics.inputs();
        let mut lags = Vec::with_capacity(self.tasks.len() * 3);
        for (&partition, task) in &self.tasks {
            for (source, input) in task.inputs.iter().enumerate() {
                if let Some((low, high)) = cached_high_watermarks(consumer, topics[source], partition) {
                    let next = input.position.unwrap_or(low).max(low);
                    lags.push(Lag { source, partition, records: (high - next).max(0) });
                }
            }
        }
        lags
    }

    /// Decides, for partition `p`'s waiting merge, which of its empty inputs are at their end.
    /// An input whose consumer position (as last handed over by the polling thread, see
    /// [`Handover`]) has reached the broker's high watermark (and any offset known to be
    /// committed) is at its end: quiet, it no longer holds the merge up. An input with unread
    /// records on the broker, or whose end is not known yet, holds it up for as long as that
    /// lasts: those records may be older than the other inputs' heads, and going on without
    /// them would make the order (and so state and outputs) depend on fetch timing instead of
    /// the data (Kafka Streams' rule since KIP-695). Returns the topics that still hold the
    /// merge up. Inputs with a rewind seek pending are not judged (the consumer's position
    /// there is from before the rewind).
    fn hold_at_end<'t>(
        pending_seeks: &HashMap<(String, i32), Offset>,
        consumer: &BaseConsumer<Ctx>,
        topics: [&'t str; 3],
        p: i32,
        task: &mut PartitionTask,
    ) -> Vec<&'t str> {
        let mut held = Vec::new();
        for (s, input) in task.inputs.iter_mut().enumerate() {
            if !input.is_empty() || input.at_end {
                continue;
            }
            let caught_up = if seek_pending(pending_seeks, topics[s], p) {
                None
            } else {
                input.caught_up(input.consumer_position, cached_high_watermarks(consumer, topics[s], p))
            };
            if caught_up == Some(true) {
                input.at_end = true;
            } else {
                held.push(topics[s]);
            }
        }
        held
    }

    /// Buffers polled messages in the partitions' tasks. Messages of an input assigned, revoked
    /// or seeked back since they were polled are dropped: they belong to a task that no longer
    /// exists, and the input fetches again from where the new task starts. Others are kept
    /// (a cooperative rebalance leaves the inputs it does not move fetching where they were).
    fn enqueue(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>, handover: Handover, now: Instant) {
        let max = shared.config.pipeline.max_buffered_per_partition;
        let hold_ends = shared.config.pipeline.max_task_idle_ms > 0;
        let topics = shared.config.kafka.topics.inputs();
        let mut pause = TopicPartitionList::new();
        // Messages come in runs of one input (a fetch response is per partition): the checks
        // and bookkeeping are done once per run, not per message.
        let mut consumed = [0u64; 3];
        let mut messages = handover.messages.into_iter().peekable();
        while let Some(first) = messages.next() {
            let (source, p, generation) = (first.source, first.partition, first.generation);
            let run = std::iter::once(first).chain(std::iter::from_fn(|| {
                messages.next_if(|m| m.source == source && m.partition == p && m.generation == generation)
            }));
            // Stale: from before the input's reset. Seek pending: from before a rewind whose
            // seek has not happened yet.
            let task = if stale(&self.reset_at, source, p, generation)
                || seek_pending(&self.pending_seeks, topics[source], p)
            {
                None
            } else {
                self.tasks.get_mut(&p)
            };
            let Some(task) = task else {
                run.for_each(drop);
                continue;
            };
            for m in run {
                task.push_record(source, m.record);
                consumed[source] += 1;
            }
            if hold_ends {
                // New data: give the other inputs `max_task_idle_ms` again to deliver theirs.
                task.inputs.iter_mut().for_each(|i| i.at_end = false);
            }
            self.last_input.insert(p, now);
            if task.inputs[source].len() >= max && self.paused.insert((source, p)) {
                let _ = pause.add_partition(topics[source], p);
            }
        }
        for (counter, n) in shared.stats.consumed.iter().zip(consumed) {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        for (source, p, position) in handover.positions {
            if stale(&self.reset_at, source, p, handover.generation)
                || seek_pending(&self.pending_seeks, topics[source], p)
            {
                continue;
            }
            if let Some(task) = self.tasks.get_mut(&p) {
                task.inputs[source].consumer_position = Some(position);
            }
        }
        if pause.count() > 0 {
            if let Err(e) = consumer.pause(&pause) {
                warn!(error = %e, "cannot pause");
            }
        }
    }

    /// Runs every task as far as its merge allows, sends what it produced, resumes drained
    /// partitions and moves idle partitions' stream time on. Returns whether anything was done.
    fn process(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>, now: Instant) -> anyhow::Result<bool> {
        let config = &shared.config;
        let topics = config.kafka.topics.inputs();
        let max_idle = Duration::from_millis(config.pipeline.max_task_idle_ms);
        let mut worked = false;
        let mut done = Processed::default();
        let wall_clock = super::metrics::wall_clock_millis();
        for (p, task) in self.tasks.iter_mut() {
            if task.waiting() {
                let since = *self.waiting_since.entry(*p).or_insert(now);
                let waited = now.duration_since(since);
                let held = if waited >= max_idle {
                    State::hold_at_end(&self.pending_seeks, consumer, topics, *p, task)
                } else {
                    Vec::new()
                };
                if !held.is_empty() {
                    let warned = self.stall_warned.entry(*p).or_insert(since);
                    if now.duration_since(*warned) >= STALL_WARNING_EVERY {
                        *warned = now;
                        shared.stats.merge_stalls.fetch_add(1, Relaxed);
                        warn!(
                            partition = p,
                            waiting_secs = waited.as_secs(),
                            topics = ?held,
                            "the merge waits for records the broker has but has not delivered (partition leader down?)"
                        );
                    }
                }
            } else {
                self.waiting_since.remove(p);
                self.stall_warned.remove(p);
            }
            // Bounded, so the lock is released regularly (readers such as the demo summary wait on it).
            task.engine.set_wall_clock(wall_clock);
            task.process(16_384, &mut done);
            if config.pipeline.idle_advance_secs > 0 && task.buffered() == 0 {
                let idle_for = now.duration_since(*self.last_input.get(p).unwrap_or(&now));
                if idle_for >= Duration::from_secs(config.pipeline.idle_advance_secs) {
                    let since = *self.idle_advanced.get(p).unwrap_or(&(now - idle_for));
                    let step = now.duration_since(since).as_millis() as i64;
                    if step >= 1000 {
                        if let Some(t) = task.engine.stream_time() {
                            task.engine.advance_to(t + step, &mut done.outputs);
                        }
                        self.idle_advanced.insert(*p, now);
                    }
                }
            } else {
                self.idle_advanced.remove(p);
            }
        }
        if done.records > 0 || !done.outputs.is_empty() {
            worked = true;
            self.send(shared, &done)?;
        }
        // Resume partitions that have drained to half their buffer.
        let mut resume = TopicPartitionList::new();
        let max = config.pipeline.max_buffered_per_partition;
        let tasks = &self.tasks;
        self.paused.retain(|&(s, p)| {
            let drained = tasks.get(&p).is_none_or(|t| t.inputs[s].len() <= max / 2);
            if drained {
                let _ = resume.add_partition(topics[s], p);
            }
            !drained
        });
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                warn!(error = %e, "cannot resume");
            }
        }
        Ok(worked)
    }

    /// Produces a step's outputs and dead letters and counts them.
    fn send(&mut self, shared: &Shared, done: &Processed) -> anyhow::Result<()> {
        let config = &shared.config;
        let stats = &shared.stats;
        let topics = config.kafka.topics.inputs();
        let mut json = Vec::with_capacity(4096);
        for o in &done.outputs {
            json.clear();
            o.write_json(&mut json);
            let record = BaseRecord::with_opaque_to(&config.kafka.topics.output, self.epochs.produce())
                .key(o.customer_id())
                .payload(&json[..])
                // Kafka timestamp: now (the default), not the event time in the payload, so a
                // backfill of old history is not deleted by time-based retention on arrival.
                .headers(kafka::output_headers(o.type_name()));
            produce(&shared.producer, record)?;
            match o {
                Output::ScoreChanged(_) => stats.score_changes.fetch_add(1, Relaxed),
                Output::Alert(a) => {
                    shared.remember_alert(format!(
                        "{} {} {} (score {:.0}): {}",
                        a.customer_id,
                        a.rule.as_str(),
                        a.band.as_str(),
                        a.score,
                        a.message
                    ));
                    stats.alerts.fetch_add(1, Relaxed)
                }
            };
        }
        for d in &done.dead_letters {
            let (record, rejection) = (&d.record, &d.rejection);
            let headers = kafka::dead_letter_headers(
                rejection.reason.as_str(),
                &rejection.message,
                topics[d.source],
                d.partition,
                record.offset,
                record.payload().len(),
            );
            let mut r = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &config.kafka.topics.dead_letter,
                self.epochs.produce(),
            )
            .payload(crate::event::dead_letter_bytes(record.payload(), rejection.reason))
            .headers(headers);
            if let Some(k) = record.key() {
                r = r.key(k);
            }
            produce(&shared.producer, r)?;
        }
        stats.applied.fetch_add(done.applied(), Relaxed);
        stats.duplicates.fetch_add(done.duplicates(), Relaxed);
        stats.dead_letters.fetch_add(done.dead_letters.len() as u64, Relaxed);
        stats.restored.fetch_add(done.restored as u64, Relaxed);
        stats.telemetry.record(done, super::metrics::wall_clock_millis());
        if !done.outputs.is_empty() || !done.dead_letters.is_empty() {
            self.dirty = true;
        }
        Ok(())
    }
}

/// Waits until every produced message is acknowledged (or failed), by librdkafka's own flush
/// for the whole timeout. While it runs, the producer sends at once what waits for `linger.ms`;
/// with delivery reports as events (rust-rdkafka's choice) it waits, on a condition variable,
/// until the producer's own thread has served them all. rust-rdkafka's `flush` instead calls it
/// with no timeout and polls in 100 ms steps: with the threaded producer's thread taking the
/// reports, it usually slept a full step (75–100 ms per commit, measured). A sleep loop on the
/// queue length, used before, still sat out the linger before each commit: a twentieth of the
/// processing thread at the default 100 ms commit interval.
fn wait_delivered(producer: &ThreadedProducer<DeliveryCounter>, timeout: Duration) -> KafkaResult<()> {
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the producer's client pointer is valid while the producer is borrowed.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    match err {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(KafkaError::Flush(e.into())),
    }
}

/// Sends one record, waiting while librdkafka's queue is full (backpressure, not loss).
fn produce<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<DeliveryCounter>,
    mut record: BaseRecord<'_, K, P, usize>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, r)) => return Err(anyhow!("cannot produce to {}: {e}", r.topic)),
        }
    }
}

/// How a commit waits for the outputs produced before the offsets it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not at all with at-least-once: commits what is acknowledged by now (see [`Epochs`]).
    /// Exactly-once commits its transaction, which waits for them anyway.
    No,
    /// Until every output is acknowledged; offsets are then committed asynchronously.
    Flush,
    /// The same, and the offsets' commit is synchronous too (revoke, shutdown).
    Sync,
}

/// Positions as a list to commit.
fn offsets_list(topics: [&str; 3], positions: &[Position]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(s, p, offset) in positions {
        tpl.add_partition_offset(topics[s], p, Offset::Offset(offset))?;
    }
    Ok(tpl)
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

fn tally_snapshots(shared: &Shared, written: Vec<snapshot::Written>) {
    let t = &shared.stats.telemetry;
    for w in written {
        match w.result {
            Ok(bytes) => {
                t.snapshots.inc();
                t.snapshot_bytes.set(bytes as i64);
                t.snapshot_duration_seconds.observe(w.took.as_secs_f64());
            }
            Err(_) => t.snapshot_failures.inc(),
        }
    }
}

/// The snapshot store the configuration names, if any.
fn snapshot_store(config: &Config) -> anyhow::Result<Option<Arc<dyn SnapshotStore>>> {
    let c = &config.snapshot;
    Ok(match c.store {
        SnapshotStoreKind::None => None,
        SnapshotStoreKind::Dir => Some(Arc::new(snapshot::dir::DirStore::new(&c.dir, c.keep)?)),
        SnapshotStoreKind::Kafka => Some(Arc::new(snapshot::kafka::KafkaStore::new(config)?)),
    })
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::pipeline::demo::on_mock_cluster;

    /// A processor on librdkafka's mock cluster, not running: a test plays both its threads.
    fn processor(mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> Processor {
        let config = on_mock_cluster(mock, 2).unwrap();
        Processor::new(Arc::new(config), Arc::new(Scorecard::default_scorecard()), Arc::new(Stats::default())).unwrap()
    }

    fn staged(source: usize, partition: i32, generation: u64, offset: i64) -> Staged {
        let payload = format!(
            r#"{{"event_id":"e{source}-{offset}","customer_id":"c1","timestamp":"2026-03-02T0{source}:00:00Z","type":"session","duration_seconds":60}}"#
        );
        Staged {
            source,
            partition,
            generation,
            record: Copier::default().copy(offset, Some(b"c1"), payload.as_bytes()),
        }
    }

    /// The case the generations exist for, played deterministically: the polling thread polls
    /// messages, a rebalance (or a rewind) resets one input before the processing thread takes
    /// them, and they arrive after it. What that input polled before its reset belongs to a
    /// task that no longer exists and is dropped, with the position read then; the other inputs'
    /// messages, polled in the same generation, are kept; what is polled after is kept.
    #[test]
    fn messages_in_flight_across_a_reset_of_their_input_are_dropped_and_only_theirs() {
        let mock = MockCluster::new(1).unwrap();
        let processor = processor(&mock);
        let (shared, consumer) = (&processor.shared, &processor.consumer);
        let mut state = shared.lock();
        let task = PartitionTask::new(0, shared.new_engine(&state.scorecard));
        state.tasks.insert(0, task);
        let before = shared.generation.load(Relaxed);
        let in_flight = Handover {
            messages: vec![staged(0, 0, before, 5), staged(1, 0, before, 3), staged(0, 1, before, 7)],
            positions: vec![(0, 0, 6), (1, 0, 4)],
            generation: before,
        };
        // The rebalance callback, on the polling thread: a new generation, then usage partition
        // 0 is assigned again (its task's input starts over).
        shared.generation.fetch_add(1, Relaxed);
        let mut usage_0 = TopicPartitionList::new();
        usage_0.add_partition(&shared.config.kafka.topics.usage, 0);
        state.mark_reset(shared, &usage_0);

        state.enqueue(shared, consumer, in_flight, Instant::now());
        let inputs = &state.tasks[&0].inputs;
        assert_eq!(inputs[0].len(), 0, "usage 0 was polled before its reset: dropped");
        assert_eq!(inputs[0].consumer_position, None, "and so is the position read with it");
        assert_eq!(inputs[1].len(), 1, "support 0 was not reset: kept");
        assert_eq!(inputs[1].consumer_position, Some(4));
        assert_eq!(shared.stats.consumed[0].load(Relaxed), 0, "nothing counted for what was dropped");
        assert_eq!(shared.stats.consumed[1].load(Relaxed), 1);

        let after = shared.generation.load(Relaxed);
        let polled_after =
            Handover { messages: vec![staged(0, 0, after, 0)], positions: vec![(0, 0, 1)], generation: after };
        state.enqueue(shared, consumer, polled_after, Instant::now());
        let inputs = &state.tasks[&0].inputs;
        assert_eq!(inputs[0].len(), 1, "polled after the reset: kept");
        assert_eq!(inputs[0].consumer_position, Some(1));
    }

    #[test]
    fn only_what_an_input_polled_before_its_reset_is_stale() {
        let mut reset_at = HashMap::new();
        assert!(!stale(&reset_at, 0, 1, 0), "an input never reset keeps everything");
        reset_at.insert((0, 1), 5);
        assert!(stale(&reset_at, 0, 1, 4), "polled before the reset");
        assert!(!stale(&reset_at, 0, 1, 5), "polled after it");
        assert!(!stale(&reset_at, 1, 1, 4), "another topic of the same partition was not reset");
        assert!(!stale(&reset_at, 0, 2, 4), "nor the same topic's other partition");
    }
}
