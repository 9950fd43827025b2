//! The commit protocol. Exactly-once: offsets go into the open transaction, which commits
//! (retried, aborted or fatal, by the error's kind) and the next one begins; an abort rewinds
//! every partition to its last commit. At-least-once: offsets are committed only once every
//! output produced before them is acknowledged, without waiting between flushes (see
//! [`Epochs`](crate::pipeline::acks::Epochs)); a failed delivery rewinds to the last commit instead of committing past it.
//! Also producing, with backpressure, and waiting for deliveries.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use super::rebalance::Ctx;
use super::{scopeguard, Shared, State, Stats, TIMEOUT};
use crate::event::Millis;
use crate::pipeline::acks::{Acks, Position};
use crate::pipeline::config::Guarantee;
use crate::pipeline::task::TopicInput;

/// The producer's context: counts failed deliveries and reports each output's delivery
/// against the commit epoch it was produced in (its opaque; see [`Acks`]).
pub struct DeliveryCounter {
    pub(super) stats: Arc<Stats>,
    pub(super) acks: Arc<Acks>,
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

/// How a commit waits for the outputs produced before the offsets it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Not at all with at-least-once: commits what is acknowledged by now (see [`Epochs`](crate::pipeline::acks::Epochs)).
    /// Exactly-once commits its transaction, which waits for them anyway.
    No,
    /// Until every output is acknowledged; offsets are then committed asynchronously.
    Flush,
    /// The same, and the offsets' commit is synchronous too (revoke, shutdown).
    Sync,
}

impl State {
    /// Commits processed offsets: in the open transaction (then starts the next one) with
    /// exactly-once; with at-least-once, only offsets whose outputs are all acknowledged: those
    /// acknowledged by now ([`Wait::No`], see [`Epochs`](crate::pipeline::acks::Epochs)), or every one after waiting for them.
    pub(super) fn commit(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>, wait: Wait) -> anyhow::Result<()> {
        let topics = shared.config.kafka.topics.inputs();
        let guarantee = shared.config.kafka.processing_guarantee;
        let deferred = guarantee == Guarantee::AtLeastOnce && wait == Wait::No;
        // The broker refused an at-least-once commit (see `commit_result`): the next attempt
        // waits for its backoff, rather than coming every 20 ms in a lull.
        if guarantee == Guarantee::AtLeastOnce
            && wait != Wait::Sync
            && self.commit_retry.is_some_and(|(at, _)| Instant::now() < at)
        {
            return Ok(());
        }
        let mut positions: Vec<Position> = Vec::new();
        for (p, task) in &self.tasks {
            // An idle advance since the last commit: its stream time is committed with the
            // partition's offsets, moved or not (a deferred commit waits for the next flush).
            // So is one whose commit the broker refused.
            let floor_moved = !deferred
                && (self.idle_floor.get(p) != self.committed_floor.get(p) || self.floor_unconfirmed.contains(p));
            for (s, input) in task.inputs.iter().enumerate() {
                if let Some(pos) = input.position.filter(|pos| moves_forward(*pos, input, floor_moved)) {
                    positions.push((s, *p, pos));
                }
            }
        }
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
        let tpl = offsets_list(topics, &positions, &self.idle_floor)?;
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
                    let committed = if wait == Wait::Sync {
                        consumer.commit(&tpl, CommitMode::Sync)
                    } else {
                        commit_async(consumer, &tpl)
                    };
                    if let Err(e) = committed {
                        // Not fatal: the offsets are committed again next time, and anything
                        // re-read after a crash is re-emitted with the same event_ids.
                        warn!(error = %e, "offset commit failed; will retry");
                        return Ok(());
                    }
                }
            }
        }
        // Confirmed now, except an asynchronous commit's: its answer comes to `commit_result`.
        let confirmed = guarantee == Guarantee::ExactlyOnce || wait == Wait::Sync;
        for task in self.tasks.values_mut() {
            for input in &mut task.inputs {
                if input.position.is_some() {
                    input.committed = input.position;
                    if confirmed {
                        input.confirmed = input.position;
                    }
                }
            }
        }
        self.committed_floor.clone_from(&self.idle_floor);
        self.floor_unconfirmed.clear();
        self.dirty = false;
        shared.stats.commits.fetch_add(1, Relaxed);
        Ok(())
    }

    /// At-least-once between flushes: commits the offsets whose outputs are all acknowledged
    /// by now, if any, and lets `positions` wait for theirs (see [`Epochs::tick`](crate::pipeline::acks::Epochs::tick)).
    pub(super) fn commit_acknowledged(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<Ctx>,
        positions: Vec<Position>,
    ) -> anyhow::Result<()> {
        let Some(mut ready) = self.epochs.tick(&shared.acks, positions) else { return Ok(()) };
        // Offsets that waited for their outputs: not past a commit made since, nor for a
        // partition no longer owned (its new owner commits it).
        ready.retain(|&(s, p, offset)| self.tasks.get(&p).is_some_and(|t| moves_forward(offset, &t.inputs[s], false)));
        if self.delivery_failed(shared) {
            // An output before these offsets may be lost: never commit past it.
            self.rewind_undelivered(shared);
            return Ok(());
        }
        if ready.is_empty() {
            return Ok(()); // outputs without new input (idle time moving on): nothing to commit
        }
        // The idle stream times as of the last flush, whose outputs are all acknowledged (a
        // commit without them would erase the ones committed).
        let tpl = offsets_list(shared.config.kafka.topics.inputs(), &ready, &self.committed_floor)?;
        if let Err(e) = commit_async(consumer, &tpl) {
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

    /// The broker's answer to an asynchronous at-least-once commit (the consumer's commit
    /// callback, on the polling thread). A commit is counted as done when it is requested, so
    /// that the next tick commits only what moved since; a refused one sets each of its
    /// inputs back to the offset last confirmed, unless a later commit was requested since (it
    /// covers this one), so the next commit tick commits it again, with a backoff, even while
    /// no input arrives. Before, a refusal was only logged by librdkafka (rust-rdkafka's
    /// asynchronous commit gave it no callback; see `commit_async`) and those offsets stayed
    /// uncommitted until new input moved them.
    pub(super) fn commit_result(&mut self, shared: &Shared, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        if matches!(result, Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) {
            return; // nothing was left to commit
        }
        let mut refused = result.is_err();
        let mut pending = Vec::new();
        for e in offsets.elements() {
            let (Some(s), Offset::Offset(offset)) = (shared.source_of(e.topic()), e.offset()) else { continue };
            let p = e.partition();
            let ok = result.is_ok() && e.error().is_ok();
            refused |= !ok;
            let Some(input) = self.tasks.get_mut(&p).map(|t| &mut t.inputs[s]) else { continue };
            if ok {
                if input.confirmed.is_none_or(|c| c < offset) {
                    input.confirmed = Some(offset);
                }
            } else if input.committed == Some(offset) {
                pending.push((s, p));
            }
        }
        if offsets.count() == 0 && refused {
            // Refused as a whole, without its offsets: retry every commit not yet confirmed.
            for (p, task) in &self.tasks {
                for (s, input) in task.inputs.iter().enumerate() {
                    if input.committed != input.confirmed {
                        pending.push((s, *p));
                    }
                }
            }
        }
        if !refused {
            self.commit_retry = None;
            return;
        }
        for (s, p) in pending {
            if let Some(task) = self.tasks.get_mut(&p) {
                let input = &mut task.inputs[s];
                input.committed = input.confirmed;
            }
            if self.idle_floor.contains_key(&p) {
                self.floor_unconfirmed.insert(p);
            }
        }
        shared.stats.commit_failures.fetch_add(1, Relaxed);
        let backoff = self.commit_retry.map_or(COMMIT_RETRY_FIRST, |(_, b)| (b * 2).min(COMMIT_RETRY_MAX));
        self.commit_retry = Some((Instant::now() + backoff, backoff));
        let error = match result {
            Err(e) => e.to_string(),
            Ok(()) => {
                offsets.elements().iter().find_map(|e| e.error().err()).map(|e| e.to_string()).unwrap_or_default()
            }
        };
        warn!(error = %error, retry_ms = backoff.as_millis() as u64, "the broker refused an offset commit; will retry");
    }

    /// At-least-once, when outputs may not all have been delivered: nothing processed since
    /// the last commit counts, and every partition re-reads from there.
    pub(super) fn rewind_undelivered(&mut self, shared: &Shared) {
        warn!("outputs not all delivered; rewinding to the last commit");
        self.rewind(shared);
    }

    /// Whether an output delivery failed since the last call.
    pub(super) fn delivery_failed(&mut self, shared: &Shared) -> bool {
        let failures = shared.stats.delivery_failures.load(Relaxed);
        std::mem::replace(&mut self.failures_seen, failures) != failures
    }

    /// Aborts the open transaction and rewinds every partition to its last commit.
    pub(super) fn abort(&mut self, shared: &Shared) -> anyhow::Result<()> {
        if shared.config.kafka.processing_guarantee == Guarantee::ExactlyOnce {
            shared.stats.aborts.fetch_add(1, Relaxed);
            shared.producer.abort_transaction(TIMEOUT).map_err(|e| anyhow!("cannot abort the transaction: {e}"))?;
            shared.producer.begin_transaction().map_err(|e| anyhow!("cannot begin a transaction: {e}"))?;
        }
        self.rewind(shared);
        Ok(())
    }

    /// Throws away every partition's state and re-reads it up to the last commit.
    pub(super) fn rewind(&mut self, shared: &Shared) {
        shared.stats.rewinds.fetch_add(1, Relaxed);
        self.epochs.forget();
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            self.reset_task(shared, p, true);
        }
        self.dirty = false;
    }
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

/// Waits until every produced message is acknowledged (or failed), by librdkafka's own flush
/// for the whole timeout. While it runs, the producer sends at once what waits for `linger.ms`;
/// with delivery reports as events (rust-rdkafka's choice) it waits, on a condition variable,
/// until the producer's own thread has served them all. rust-rdkafka's `flush` instead calls it
/// with no timeout and polls in 100 ms steps: with the threaded producer's thread taking the
/// reports, it usually slept a full step (75–100 ms per commit, measured). A sleep loop on the
/// queue length, used before, still sat out the linger before each commit: a twentieth of the
/// processing thread at the default 100 ms commit interval.
pub(super) fn wait_delivered(producer: &ThreadedProducer<DeliveryCounter>, timeout: Duration) -> KafkaResult<()> {
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the producer's client pointer is valid while the producer is borrowed.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    match err {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(KafkaError::Flush(e.into())),
    }
}

/// The first wait before a refused at-least-once commit is retried, and the longest (doubling).
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Commits `tpl` without waiting, with the broker's answer delivered to the consumer's commit
/// callback ([`Ctx`]'s, which hands it to [`State::commit_result`]) by the next poll of the
/// consumer queue. rust-rdkafka's `commit(.., CommitMode::Async)` calls `rd_kafka_commit`
/// without a reply queue, and with rust-rdkafka's event-based consumer librdkafka then tells
/// nobody the result: a refused commit was lost silently (fede1024/rust-rdkafka#856). The
/// reply goes to the consumer queue instead, as the fix proposed there (#857) does.
pub(super) fn commit_async(consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) -> KafkaResult<()> {
    use rdkafka::bindings as rdsys;
    let rk = consumer.client().native_ptr();
    // SAFETY: the client pointer is valid while the consumer is borrowed; `queue` is a new
    // reference to the consumer queue, released after the call (librdkafka keeps its own for the
    // reply); librdkafka copies the list before returning.
    let err = unsafe {
        let queue = rdsys::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup));
        }
        let err = rdsys::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        err
    };
    match err {
        rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(KafkaError::ConsumerCommit(e.into())),
    }
}

/// Sends one record, waiting while librdkafka's queue is full (backpressure, not loss).
pub(super) fn produce<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
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

/// Whether committing `position` for `input` moves its committed offset forward: past the offset
/// last committed (or requested) and past the one its task re-reads up to; the same offset
/// only to commit a moved idle stream time with it (`floor_moved`).
///
/// A rebuilt task (after a crash, a handover or a rewind) re-reads from its snapshot's offsets,
/// or from the beginning, up to the committed ones, so its positions start below them. The
/// commit ticks during that re-read used to commit those positions: the group's offsets moved
/// back (by the whole re-read, in the worst case to the first records), and a crash then made
/// the next owner emit again outputs that were committed, read_committed readers seeing them
/// twice.
pub(super) fn moves_forward(position: i64, input: &TopicInput, floor_moved: bool) -> bool {
    match input.committed.max(input.restore_until) {
        None => true,
        Some(c) => position > c || (floor_moved && position == c),
    }
}

/// Positions as a list to commit, each with its partition's idle stream time from `floors`, if
/// any, as its metadata.
fn offsets_list(
    topics: [&str; 3],
    positions: &[Position],
    floors: &HashMap<i32, Millis>,
) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for &(s, p, offset) in positions {
        let mut e = tpl.add_partition(topics[s], p);
        e.set_offset(Offset::Offset(offset))?;
        if let Some(&t) = floors.get(&p) {
            e.set_metadata(floor_metadata(t));
        }
    }
    Ok(tpl)
}

/// How an idle stream time is written in a committed offset's metadata (Kafka Streams keeps a
/// partition's stream time there too).
const FLOOR_METADATA: &str = "healthscore:idle_stream_time=";

pub(super) fn floor_metadata(t: Millis) -> String {
    format!("{FLOOR_METADATA}{t}")
}

/// The idle stream time a committed offset's metadata records, if it records one.
pub(super) fn floor_of(metadata: &str) -> Option<Millis> {
    metadata.strip_prefix(FLOOR_METADATA)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_never_moves_an_offset_back() {
        let input = |committed: Option<i64>, restore_until: Option<i64>| {
            let mut input = TopicInput::default();
            (input.committed, input.restore_until) = (committed, restore_until);
            input
        };
        assert!(moves_forward(0, &input(None, None), false), "nothing committed yet");
        assert!(moves_forward(11, &input(Some(10), Some(10)), false));
        assert!(!moves_forward(10, &input(Some(10), Some(10)), false), "already committed");
        assert!(moves_forward(10, &input(Some(10), Some(10)), true), "the same offset, with a new idle stream time");
        assert!(!moves_forward(3, &input(Some(10), Some(10)), false), "re-reading from an older snapshot");
        assert!(!moves_forward(3, &input(Some(10), Some(10)), true));
        assert!(!moves_forward(7, &input(Some(5), Some(9)), false), "below what the task re-reads up to");
    }

    #[test]
    fn an_idle_stream_time_reads_back_from_its_metadata_and_nothing_else_does() {
        assert_eq!(floor_of(&floor_metadata(1_790_000_000_123)), Some(1_790_000_000_123));
        assert_eq!(floor_of(""), None, "a commit without an idle advance");
        assert_eq!(floor_of("some other tool's metadata"), None);
        assert_eq!(floor_of("healthscore:idle_stream_time=soon"), None);
    }
}
