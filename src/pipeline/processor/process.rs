//! The processing thread: buffers what the polling thread hands over in the partitions' tasks
//! (dropping what is stale), runs the tasks as far as their merges allow, produces outputs and
//! dead letters, pauses and resumes inputs to bound the buffers, moves idle partitions' stream
//! time on, and commits (see `commit`) and snapshots (see `recovery`) on its schedule. It holds
//! the state lock for one step at a time; readers (the query API, the demo) take it between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::commit::{produce, Wait};
use super::poll::{Handover, STAGED_BATCHES};
use super::rebalance::{stale, Ctx};
use super::recovery::seek_pending;
use super::{thread_cpu, Shared, State};
use crate::output::Output;
use crate::pipeline::kafka::{self, cached_high_watermarks};
use crate::pipeline::metrics::Lag;
use crate::pipeline::task::{PartitionTask, Processed};

/// How long the processing thread waits for input before it counts as a lull (see
/// `process_loop`).
const LULL: Duration = Duration::from_millis(20);

/// How often a partition whose merge waits for records the broker holds but has not delivered
/// says so (a warning and `healthscore_merge_stalls_total`).
const STALL_WARNING_EVERY: Duration = Duration::from_secs(30);

/// The processing thread: buffers what the polling thread hands over, runs the tasks, produces,
/// commits every `commit_interval_ms` and snapshots; on `stop` (or when the polling thread is
/// gone) commits what was processed and snapshots every partition.
pub(super) fn process_loop(
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
    pub(super) fn lags(&self, shared: &Shared, consumer: &BaseConsumer<Ctx>) -> Vec<Lag> {
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
    pub(super) fn hold_at_end<'t>(
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
    pub(super) fn enqueue(&mut self, shared: &Shared, consumer: &BaseConsumer<Ctx>, handover: Handover, now: Instant) {
        let max = shared.config.pipeline.max_buffered_per_partition;
        let hold_ends = shared.config.pipeline.max_task_idle_ms > 0;
        let topics = shared.config.kafka.topics.inputs();
        let mut pause = TopicPartitionList::new();
        // Messages come in runs of one input (a fetch response is per partition): the checks
        // and bookkeeping are done once per run, not per message.
        let mut consumed = [0u64; 3];
        // Records the engine will reject as `in_future` keep their place in the merge.
        let wall_clock = crate::pipeline::metrics::wall_clock_millis();
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
            task.set_wall_clock(wall_clock);
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
    pub(super) fn process(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<Ctx>,
        now: Instant,
    ) -> anyhow::Result<bool> {
        let config = &shared.config;
        let topics = config.kafka.topics.inputs();
        let max_idle = Duration::from_millis(config.pipeline.max_task_idle_ms);
        let mut worked = false;
        let mut done = Processed::default();
        let wall_clock = crate::pipeline::metrics::wall_clock_millis();
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
            task.set_wall_clock(wall_clock);
            task.process(16_384, &mut done);
            if !task.restoring() {
                if let Some(floor) = self.reapply_floor.remove(p) {
                    // Where committed idle advances took this partition before it was rebuilt:
                    // the timers on the way fired then, and their outputs are committed.
                    let mut suppressed = Vec::new();
                    task.engine.advance_to(floor, &mut suppressed);
                    info!(
                        partition = p,
                        stream_time = floor,
                        outputs_suppressed = suppressed.len(),
                        "re-advanced to the committed idle stream time"
                    );
                }
            }
            if !task.restoring() {
                self.candidates.check(*p, &task.engine);
            }
            if config.pipeline.idle_advance_secs > 0 && task.buffered() == 0 && !task.restoring() {
                let idle_for = now.duration_since(*self.last_input.get(p).unwrap_or(&now));
                if idle_for >= Duration::from_secs(config.pipeline.idle_advance_secs) {
                    let since = *self.idle_advanced.get(p).unwrap_or(&(now - idle_for));
                    let step = now.duration_since(since).as_millis() as i64;
                    if step >= 1000 {
                        if let Some(t) = task.engine.stream_time() {
                            task.engine.advance_to(t + step, &mut done.outputs);
                            self.idle_floor.insert(*p, t + step);
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
    pub(super) fn send(&mut self, shared: &Shared, done: &Processed) -> anyhow::Result<()> {
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
        stats.telemetry.record(done, crate::pipeline::metrics::wall_clock_millis());
        if !done.outputs.is_empty() || !done.dead_letters.is_empty() {
            self.dirty = true;
        }
        Ok(())
    }
}
