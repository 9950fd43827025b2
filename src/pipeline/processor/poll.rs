//! The polling thread: it owns the consumer. It polls the consumer queue (rebalance callbacks,
//! commit results, errors) and reads fetched messages in batches from their own queue
//! ([`FetchQueue`](crate::pipeline::kafka::FetchQueue)), copies each message out and hands them to the processing thread with the
//! consumer's positions, over a bounded channel. Seeks the processing thread asks for happen
//! here, between polls. It never holds the state lock while polling, so a callback can take it.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use tracing::warn;

use super::rebalance::Ctx;
use super::Shared;
use crate::pipeline::kafka::{app_positions, Fetched};
use crate::pipeline::task::{Copier, Record};

/// A polled message copied out of the consumer, with where it came from and the generation
/// (see [`Shared::generation`]) read just before the poll that returned it.
pub(super) struct Staged {
    pub(super) source: usize,
    pub(super) partition: i32,
    pub(super) generation: u64,
    pub(super) record: Record,
}

/// What the polling thread hands over: messages polled since the last handover, and the
/// consumer's positions read after the last of them (so every message below a position is in
/// this handover or an earlier one), with the generation then.
pub(super) struct Handover {
    pub(super) messages: Vec<Staged>,
    pub(super) positions: Vec<(usize, i32, i64)>,
    pub(super) generation: u64,
}

/// Handovers in flight between the two threads, at most (each up to `POLL_BATCH` messages).
pub(super) const STAGED_BATCHES: usize = 8;
/// Messages read from the fetch queue per call, at most.
const POLL_BATCH: usize = 4096;
/// How long the polling thread blocks on an empty fetch queue: also how late, at worst, it
/// notices a rebalance, a requested seek or a stop while idle.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// How often the assigned partitions are forwarded to the fetch queue again (see there).
const REFORWARD_EVERY: Duration = Duration::from_millis(100);

/// The polling thread: polls until `stop` is set or the processing thread has finished, handing
/// batches to it. Seeks requested by the processing thread happen here, between polls. Returns
/// the time spent blocked because the processing thread was behind.
pub(super) fn poll_loop(
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
