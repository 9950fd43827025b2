//! Rebalances: the consumer's callbacks, which run inside the polling thread's polls. An assign
//! prepares the arriving partitions (from a snapshot, re-reading up to the group's committed
//! offsets, see `recovery`); a revoke commits what was processed (the transaction, with
//! exactly-once), snapshots the leaving partitions and drops them, or aborts if the assignment
//! was lost. Both finish before returning, so the next owner starts where this one stopped
//! (KAFKA-NOTES pitfalls 1–3).
//!
//! Also the generations: every rebalance and every seek back bumps [`Shared::generation`], and
//! [`stale`] tells a message polled before its input's reset from one polled after.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::commit::{floor_of, Wait};
use super::recovery::tally_snapshots;
use super::{Shared, State, TIMEOUT};
use crate::pipeline::task::PartitionTask;

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

    /// The answer to an asynchronous offset commit (see `commit_async`), served by the polling
    /// thread's poll of the consumer queue, which holds no lock then.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let shared = &self.0;
        shared.lock().commit_result(shared, &result, offsets);
    }
}

impl State {
    /// Prepares new partitions: each starts empty, reads its topics from the beginning and
    /// restores up to the committed offsets (fetched here; with exactly-once this waits for a
    /// previous owner's open transaction to end, so no committed output is re-emitted).
    pub(super) fn assign(
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
            // The stream time committed idle advances took the partition to (the latest of its
            // three topics'): the rebuilt task goes there once it has re-read its input.
            if let Some(floor) = floor_of(e.metadata()) {
                let p = e.partition();
                if self.committed_floor.get(&p).is_none_or(|f| *f < floor) {
                    self.committed_floor.insert(p, floor);
                    self.idle_floor.insert(p, floor);
                    self.reapply_floor.insert(p, floor);
                }
            }
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
            input.confirmed = input.restore_until;
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
    pub(super) fn revoke(
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
            self.idle_floor.remove(&p);
            self.committed_floor.remove(&p);
            self.reapply_floor.remove(&p);
        }
        Ok(())
    }

    /// Notes that the inputs in `tpl` were just assigned or revoked (the generation was bumped
    /// on entering the callback): their messages polled before are stale.
    pub(super) fn mark_reset(&mut self, shared: &Shared, tpl: &TopicPartitionList) {
        let generation = shared.generation.load(Relaxed);
        for e in tpl.elements() {
            if let Some(source) = shared.source_of(e.topic()) {
                self.reset_at.insert((source, e.partition()), generation);
            }
        }
    }
}

/// Whether what was polled of input (`source`, `p`) in `generation` is from before the input was
/// last assigned, revoked or seeked back (at the generation `reset_at` holds for it), and so
/// belongs to a task that no longer exists.
pub(super) fn stale(reset_at: &HashMap<(usize, i32), u64>, source: usize, p: i32, generation: u64) -> bool {
    reset_at.get(&(source, p)).is_some_and(|reset| generation < *reset)
}

#[cfg(test)]
mod tests {
    use super::*;

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
