//! Recovery: rebuilding a partition and the snapshots that make it quick. A partition that
//! arrives, or is rewound, gets a new task from its newest usable snapshot (or empty), seeks its
//! inputs back to where that task continues (on the polling thread, retried until it succeeds)
//! and re-reads up to the committed offsets with outputs suppressed. Snapshots are taken only of
//! a state that reflects exactly its committed input: after a commit that waited for its
//! outputs (partitions take turns), on revoke and at shutdown; they are encoded here and
//! written in the background (see `snapshot`).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::rebalance::Ctx;
use super::{Shared, State};
use crate::pipeline::config::{Config, SnapshotStoreKind};
use crate::pipeline::task::PartitionTask;
use crate::snapshot::{self, Pending, RestoreContext, SnapshotStore, Snapshotter};

impl State {
    /// Rebuilds partition `p`: from its newest usable snapshot, else from the beginning of its
    /// topics, re-reading up to its last commit (`to_last_commit`) or up to the offsets
    /// committed when it was assigned.
    pub(super) fn reset_task(&mut self, shared: &Shared, p: i32, to_last_commit: bool) {
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
        // Back to the idle stream time of the last commit (what its outputs were committed at).
        match self.committed_floor.get(&p).copied() {
            Some(floor) => {
                self.idle_floor.insert(p, floor);
                self.reapply_floor.insert(p, floor);
            }
            None => {
                self.idle_floor.remove(&p);
                self.reapply_floor.remove(&p);
            }
        }
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
    pub(super) fn prepare_task(&mut self, shared: &Shared, p: i32, committed: [Option<i64>; 3]) -> PartitionTask {
        let mut task = match self.load_snapshot(shared, p, committed) {
            Some(r) => PartitionTask::resume(p, r.engine, r.header.offsets, r.header.last_times),
            None => PartitionTask::new(p, shared.new_engine(&self.scorecard)),
        };
        for (input, c) in task.inputs.iter_mut().zip(committed) {
            input.committed = c;
            input.confirmed = c;
            input.restore_until = c;
        }
        let offsets = [0, 1, 2].map(|s| task.inputs[s].position);
        self.snapshotted.insert(p, (Instant::now(), offsets, task.engine.stream_time()));
        task
    }

    pub(super) fn load_snapshot(
        &mut self,
        shared: &Shared,
        p: i32,
        committed: [Option<i64>; 3],
    ) -> Option<snapshot::Restored> {
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

    /// Seeks rewound inputs back to where their rebuilt task continues. Runs on the polling
    /// thread only, between polls, so every message polled afterwards is from after the seek and
    /// every one polled before carries an older generation. A seek can fail while the group is
    /// changing (the partition is not fetching yet); until it succeeds the input's messages
    /// are dropped, so nothing from past the rewind point slips in, and it is tried again on
    /// every loop. A revoke clears it (the next owner starts from the committed offsets).
    pub(super) fn retry_seeks(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>) {
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

    /// Snapshots partition `p` if its state reflects exactly its committed input and it has
    /// moved on since its last snapshot. `wait`: queue it even when the writer is busy (on
    /// revoke and shutdown); otherwise skip it then (it is due again next time).
    pub(super) fn snapshot(&mut self, shared: &Shared, p: i32, wait: bool) {
        let (Some(snapshotter), Some(task)) = (self.snapshotter.as_mut(), self.tasks.get(&p)) else { return };
        // An idle advance not committed yet, or one a rebuilt task has still to re-apply: the
        // state is not that of the committed input and stream time.
        if !task.settled()
            || self.idle_floor.get(&p) != self.committed_floor.get(&p)
            || self.reapply_floor.contains_key(&p)
        {
            return;
        }
        let offsets = [0, 1, 2].map(|s| task.inputs[s].position);
        let time = task.engine.stream_time();
        // Unchanged since the last snapshot: neither input nor an idle advance moved it.
        if offsets.iter().all(Option::is_none)
            || self.snapshotted.get(&p).is_some_and(|(_, o, t)| *o == offsets && *t == time)
        {
            self.snapshotted.insert(p, (Instant::now(), offsets, time));
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
        self.snapshotted.insert(p, (Instant::now(), offsets, time));
    }

    /// The partition whose snapshot is oldest, if it is due and the writer is free (one per
    /// commit, so the pauses of several partitions spread out).
    pub(super) fn due_snapshot(&self, shared: &Shared, now: Instant) -> Option<i32> {
        if self.snapshotter.as_ref().is_none_or(Snapshotter::busy) {
            return None;
        }
        let every = Duration::from_secs(shared.config.snapshot.interval_secs);
        self.tasks
            .keys()
            .map(|p| (self.snapshotted.get(p).map_or(now, |(t, _, _)| *t), *p))
            .filter(|(t, _)| now.duration_since(*t) >= every)
            .min()
            .map(|(_, p)| p)
    }

    pub(super) fn count_snapshots(&mut self, shared: &Shared) {
        if let Some(snapshotter) = self.snapshotter.as_mut() {
            tally_snapshots(shared, snapshotter.finished());
        }
    }

    /// Snapshots every partition and waits for the writes (graceful shutdown).
    pub(super) fn snapshot_all(&mut self, shared: &Shared) {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            self.snapshot(shared, p, true);
        }
        if let Some(mut snapshotter) = self.snapshotter.take() {
            tally_snapshots(shared, snapshotter.close());
        }
    }
}

/// Whether input `topic` of partition `p` was rewound and its seek back has not succeeded yet
/// (its consumer position and any message of it polled meanwhile are from before the rewind).
pub(super) fn seek_pending(pending_seeks: &HashMap<(String, i32), Offset>, topic: &str, p: i32) -> bool {
    !pending_seeks.is_empty() && pending_seeks.contains_key(&(topic.to_string(), p))
}

pub(super) fn tally_snapshots(shared: &Shared, written: Vec<snapshot::Written>) {
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
pub(super) fn snapshot_store(config: &Config) -> anyhow::Result<Option<Arc<dyn SnapshotStore>>> {
    let c = &config.snapshot;
    Ok(match c.store {
        SnapshotStoreKind::None => None,
        SnapshotStoreKind::Dir => Some(Arc::new(snapshot::dir::DirStore::new(&c.dir, c.keep)?)),
        SnapshotStoreKind::Kafka => Some(Arc::new(snapshot::kafka::KafkaStore::new(config)?)),
    })
}
