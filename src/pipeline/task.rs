//! One partition's work, free of Kafka: the buffered input of the three co-partitioned topics,
//! merged into event-time order, and the engine that holds that partition's customers.
//!
//! Kafka Streams calls this a task. The merge always takes the buffered record with the
//! smallest event time (ties: usage, support, billing), and waits while a topic has nothing
//! buffered unless that topic is at its end: read up to the broker's high watermark (see
//! [`TopicInput::caught_up`]). It never gives up on a topic the broker holds unread records
//! of, however long they take to arrive. So the order in which records reach the engine
//! depends on the data, not on how fetches happened to interleave, and re-reading the same
//! offsets after a crash rebuilds the same state and the same decisions. That is what makes
//! recovery by re-reading exact.

use std::collections::VecDeque;

use memchr::memmem;

use crate::engine::{Engine, Outcome};
use crate::event::{quick_time, timestamp_finder, KnownTime, Millis, Rejection, Source};
use crate::output::Output;

/// One input message, copied out of the consumer's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub offset: i64,
    /// Event time read from the payload; a record whose time cannot be read takes its
    /// predecessor's, keeping its place (the engine rejects it with the reason).
    pub time: Millis,
    /// The key's bytes then the payload's, in one allocation (two per message cost more than
    /// the copy itself); `key_len` is `None` for a message without a key.
    bytes: Box<[u8]>,
    key_len: Option<u32>,
    /// Where in the payload `time` was read from (start, length; length 0 if it was not), so
    /// the engine need not parse it again (see [`KnownTime`]).
    time_span: (u32, u32),
}

impl Record {
    pub fn new(offset: i64, time: Millis, key: Option<&[u8]>, payload: &[u8]) -> Record {
        let k = key.unwrap_or_default();
        let mut bytes = Vec::with_capacity(k.len() + payload.len());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(payload);
        Record {
            offset,
            time,
            bytes: bytes.into_boxed_slice(),
            key_len: key.map(|k| k.len() as u32),
            time_span: (0, 0),
        }
    }

    /// A record whose time was read by [`quick_time`] from `payload` (`None`: it could not be).
    pub fn with_known_time(offset: i64, known: Option<KnownTime>, key: Option<&[u8]>, payload: &[u8]) -> Record {
        let mut record = Record::new(offset, known.map_or(Millis::MIN, |k| k.millis), key, payload);
        record.time_span = known.map_or((0, 0), |k| (k.start, k.len));
        record
    }

    /// The event time read from the payload, with where, for [`crate::event::parse_known`].
    pub fn known_time(&self) -> Option<KnownTime> {
        let (start, len) = self.time_span;
        (len > 0).then_some(KnownTime { start, len, millis: self.time })
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.bytes[..n as usize])
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.key_len.unwrap_or(0) as usize..]
    }
}

/// Builds [`Record`]s from polled messages, off the processing thread.
pub struct Copier {
    finder: memmem::Finder<'static>,
}

impl Default for Copier {
    fn default() -> Self {
        Copier { finder: timestamp_finder() }
    }
}

impl Copier {
    /// A record of a message: its bytes copied and its event time read (`Millis::MIN` if it cannot be).
    pub fn copy(&self, offset: i64, key: Option<&[u8]>, payload: &[u8]) -> Record {
        Record::with_known_time(offset, quick_time(&self.finder, payload), key, payload)
    }
}

/// A topic partition's buffered records and what is known of its position.
#[derive(Debug, Default)]
pub struct TopicInput {
    queue: VecDeque<Record>,
    /// Event time of the latest record buffered.
    last_time: Millis,
    /// Event time of the record before `position` (the latest processed).
    position_time: Millis,
    /// Nothing more to read now (librdkafka's partition EOF, cleared by the next message).
    pub at_end: bool,
    /// The next offset to process: what a commit stores.
    pub position: Option<i64>,
    /// Offsets below this were processed (and their outputs committed) before this task was
    /// built: they are re-read to rebuild state, with outputs suppressed.
    pub restore_until: Option<i64>,
    /// The offset the group last committed for this input (by this or a previous owner), or,
    /// at-least-once, the offset of the latest commit requested, until the broker answers.
    pub committed: Option<i64>,
    /// The latest offset the broker confirmed as committed (at-least-once commits are
    /// asynchronous: a refused one sets `committed` back to this, so it is committed again).
    pub confirmed: Option<i64>,
    /// The offset after the last message buffered: where fetching continues.
    pub fetched: Option<i64>,
    /// The consumer's position as the polling thread last read it when every message it had
    /// polled of this input was on its way here (see [`TopicInput::caught_up`]).
    pub consumer_position: Option<i64>,
}

impl TopicInput {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn restoring(&self, offset: i64) -> bool {
        self.restore_until.is_some_and(|until| offset < until)
    }

    /// Whether this input has read everything the broker holds: its position (the furthest of
    /// the next offset to process, the offset after the last message buffered, and
    /// `consumer_position`, the consumer's, which also steps over transaction markers) has
    /// reached the high watermark from `watermarks` (low, high), and any offset known to be
    /// committed. `None` while the end is not known (no watermark fetched yet).
    ///
    /// A cached watermark can be stale low (records produced since the last fetch response):
    /// such records then count as arriving later, which is the latency-first choice Kafka
    /// Streams makes too; `max_task_idle_ms` gives them time. It is never stale high, so an
    /// input that is not caught up certainly has records on their way.
    pub fn caught_up(&self, consumer_position: Option<i64>, watermarks: Option<(i64, i64)>) -> Option<bool> {
        let (low, high) = watermarks?;
        let end = high.max(self.restore_until.unwrap_or(0)).max(self.committed.unwrap_or(0));
        let position = [self.fetched, self.position, consumer_position].into_iter().flatten().max().unwrap_or(low);
        Some(position >= end)
    }
}

/// What one [`PartitionTask::process`] call produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records taken from the buffers (applied, duplicate, rejected or restored).
    pub records: usize,
    /// Of those, records re-read to restore state, whose outputs were suppressed.
    pub restored: usize,
    pub outputs: Vec<Output>,
    /// Rejected fresh records.
    pub dead_letters: Vec<DeadLetter>,
    /// Fresh records by outcome (applied, duplicate) and input source (usage, support, billing).
    pub applied_by_source: [u64; 3],
    pub duplicates_by_source: [u64; 3],
}

impl Processed {
    /// Fresh records applied, over the three sources.
    pub fn applied(&self) -> u64 {
        self.applied_by_source.iter().sum()
    }

    /// Fresh records that were duplicates, over the three sources.
    pub fn duplicates(&self) -> u64 {
        self.duplicates_by_source.iter().sum()
    }
}

/// A fresh record the engine rejected, with where it came from.
#[derive(Debug)]
pub struct DeadLetter {
    pub source: usize,
    pub partition: i32,
    pub record: Record,
    pub rejection: Rejection,
}

/// A partition: three topic inputs and the engine of its customers.
pub struct PartitionTask {
    pub partition: i32,
    pub engine: Engine,
    pub inputs: [TopicInput; 3],
    /// Records dated after this will be rejected as `in_future` (see [`PartitionTask::set_wall_clock`]).
    accept_until: Millis,
}

impl PartitionTask {
    pub fn new(partition: i32, engine: Engine) -> Self {
        let input = || TopicInput { last_time: Millis::MIN, position_time: Millis::MIN, ..Default::default() };
        PartitionTask { partition, engine, inputs: [input(), input(), input()], accept_until: Millis::MAX }
    }

    /// A task continuing from a snapshot: `engine` reflects each input up to `offsets` (the
    /// next offset to process), and `last_times` are the inputs' latest event times then.
    pub fn resume(partition: i32, engine: Engine, offsets: [Option<i64>; 3], last_times: [Millis; 3]) -> Self {
        let mut task = PartitionTask::new(partition, engine);
        for ((input, offset), time) in task.inputs.iter_mut().zip(offsets).zip(last_times) {
            // `fetched` stays unknown until a message arrives: the consumer's cached high
            // watermark may still be from before a broker restart, and an input that looked
            // "at its end" by it would let the merge run ahead of records on their way.
            input.position = offset;
            input.last_time = time;
            input.position_time = time;
        }
        task
    }

    /// Each input's event time of the latest record processed (what [`PartitionTask::resume`]
    /// takes back).
    pub fn last_times(&self) -> [Millis; 3] {
        [0, 1, 2].map(|s| self.inputs[s].position_time)
    }

    /// Whether every input's processed position is committed: the engine's state then reflects
    /// exactly the committed input, which is when a snapshot may be taken.
    pub fn settled(&self) -> bool {
        !self.restoring() && self.inputs.iter().all(|i| i.position.is_none() || i.position == i.committed)
    }

    /// Tells the task (and its engine) the wall clock (Unix ms): records dated more than the
    /// engine's `max_future_secs` after it will be rejected as `in_future`, so the merge orders
    /// them by their predecessor's time instead (see [`PartitionTask::push_record`]).
    pub fn set_wall_clock(&mut self, now: Millis) {
        self.engine.set_wall_clock(now);
        let ahead = self.engine.config().max_future_secs;
        self.accept_until = if ahead > 0 { now.saturating_add(ahead as Millis * 1000) } else { Millis::MAX };
    }

    /// Buffers a record of source `source` (0 usage, 1 support, 2 billing), copied out of the
    /// consumer by [`Copier::copy`] (on the polling thread, which also read its event time:
    /// `Millis::MIN` if it could not be read).
    ///
    /// A record whose time cannot be read, or whose time the engine will reject as `in_future`,
    /// keeps its place: the merge orders it by its predecessor's time. A topic's records are
    /// merged in their offset order, so a head record dated 2099 used to hold every record
    /// behind it in its topic until the other two topics had nothing left at all; the merge
    /// then went on with their later records first, and order, state and outputs depended on
    /// one rejected message. The engine still sees (and rejects) the real time: its parse reads
    /// the timestamp again.
    pub fn push_record(&mut self, source: usize, mut record: Record) {
        let input = &mut self.inputs[source];
        if record.time == Millis::MIN || record.time > self.accept_until {
            record.time = input.last_time;
            record.time_span = (0, 0);
        }
        input.last_time = record.time;
        input.at_end = false;
        input.fetched = Some(record.offset + 1);
        input.queue.push_back(record);
    }

    /// Messages buffered over the three topics.
    pub fn buffered(&self) -> usize {
        self.inputs.iter().map(TopicInput::len).sum()
    }

    /// Whether some input is still being re-read to restore state.
    pub fn restoring(&self) -> bool {
        self.inputs.iter().any(|i| match (i.restore_until, i.position) {
            (Some(until), Some(pos)) => pos < until,
            (Some(_), None) => true,
            _ => false,
        })
    }

    /// The source whose head record goes next, if the merge may go on: none while an input
    /// that is not at its end has nothing buffered.
    pub fn next_source(&self) -> Option<usize> {
        let mut best: Option<(Millis, usize)> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            match input.queue.front() {
                Some(r) => {
                    if best.is_none_or(|(t, _)| r.time < t) {
                        best = Some((r.time, i));
                    }
                }
                None if input.at_end => {}
                None => return None, // it may yet deliver something older
            }
        }
        best.map(|(_, i)| i)
    }

    /// Whether the merge is held up by an input that has nothing buffered but is not at its end.
    pub fn waiting(&self) -> bool {
        self.buffered() > 0 && self.next_source().is_none()
    }

    /// Applies up to `max` records in merge order. Records being restored and fresh records
    /// are never mixed in one engine batch, so each output is known to be one or the other.
    pub fn process(&mut self, max: usize, done: &mut Processed) {
        const BATCH: usize = 64;
        let mut batch: Vec<(usize, Record)> = Vec::with_capacity(BATCH);
        let mut results = Vec::with_capacity(BATCH);
        let mut outputs = Vec::new();
        let mut taken = 0;
        while taken < max {
            batch.clear();
            let mut restoring = None;
            while batch.len() < BATCH && taken < max {
                let Some(source) = self.next_source() else { break };
                let input = &mut self.inputs[source];
                let offset = input.queue.front().expect("next_source saw it").offset;
                let r = input.restoring(offset);
                if *restoring.get_or_insert(r) != r {
                    break;
                }
                let record = input.queue.pop_front().expect("non-empty");
                input.position = Some(record.offset + 1);
                input.position_time = record.time;
                batch.push((source, record));
                taken += 1;
            }
            if batch.is_empty() {
                break;
            }
            let restoring = restoring.unwrap_or(false);
            let inputs: Vec<(&[u8], Option<Source>, Option<KnownTime>)> =
                batch.iter().map(|(s, r)| (r.payload(), Some(Source::ALL[*s]), r.known_time())).collect();
            results.clear();
            outputs.clear();
            self.engine.apply_batch(&inputs, &mut results, &mut outputs);
            drop(inputs);
            done.records += batch.len();
            if restoring {
                done.restored += batch.len();
                continue;
            }
            done.outputs.append(&mut outputs);
            for ((source, record), result) in batch.drain(..).zip(results.drain(..)) {
                match result {
                    Ok(Outcome::Applied) => done.applied_by_source[source] += 1,
                    Ok(Outcome::Duplicate) => done.duplicates_by_source[source] += 1,
                    Err(rejection) => {
                        done.dead_letters.push(DeadLetter { source, partition: self.partition, record, rejection })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::EngineConfig;
    use crate::score::Scorecard;

    impl PartitionTask {
        fn push(&mut self, source: usize, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
            self.push_record(source, Copier::default().copy(offset, key, payload));
        }
    }

    fn task() -> PartitionTask {
        PartitionTask::new(0, Engine::new(Arc::new(Scorecard::default_scorecard()), EngineConfig::default()))
    }

    /// A task whose score moves with one customer's own usage: the default scorecard ranks usage against the
    /// partition's population, and a partition of one customer has none, so its score would not move.
    fn absolute_task() -> PartitionTask {
        let card = r#"
version = "absolute"
[[component]]
name = "use"
signal = "active_days_30d"
weight = 1
bad = 0
good = 20
"#;
        let card = Scorecard::from_toml(card, "test").expect("valid");
        PartitionTask::new(0, Engine::new(Arc::new(card), EngineConfig::default()))
    }

    fn event(id: &str, day: u32, hour: u32, kind: &str) -> Vec<u8> {
        let body = match kind {
            "usage" => r#""type":"feature_used","feature":"reports""#,
            "support" => r#""type":"ticket_opened","ticket_id":"t1","priority":"low""#,
            _ => r#""type":"invoice_paid","invoice_id":"i1","amount":10"#,
        };
        format!(r#"{{"event_id":"{id}","customer_id":"c1","timestamp":"2026-03-{day:02}T{hour:02}:00:00Z",{body}}}"#)
            .into_bytes()
    }

    fn order(t: &mut PartitionTask) -> Vec<(usize, i64)> {
        let mut seen = Vec::new();
        while let Some(s) = t.next_source() {
            let r = t.inputs[s].queue.pop_front().unwrap();
            seen.push((s, r.offset));
        }
        seen
    }

    #[test]
    fn merges_by_event_time_with_ties_in_source_order() {
        let mut t = task();
        t.push(0, 0, None, &event("a", 2, 1, "usage"));
        t.push(0, 1, None, &event("b", 2, 5, "usage"));
        t.push(1, 0, None, &event("c", 2, 3, "support"));
        t.push(2, 0, None, &event("d", 2, 5, "billing"));
        for i in &mut t.inputs {
            i.at_end = true;
        }
        assert_eq!(order(&mut t), vec![(0, 0), (1, 0), (0, 1), (2, 0)]);
    }

    #[test]
    fn waits_for_an_empty_input_unless_it_is_at_its_end() {
        let mut t = task();
        t.push(0, 0, None, &event("a", 2, 1, "usage"));
        t.inputs[1].at_end = true;
        assert_eq!(t.next_source(), None, "billing may still hold something older");
        assert!(t.waiting());
        t.inputs[2].at_end = true;
        assert_eq!(t.next_source(), Some(0));
        assert!(!t.waiting());
        t.push(2, 0, None, &event("b", 2, 2, "billing"));
        assert!(!t.inputs[2].at_end, "a message clears the end mark");
    }

    #[test]
    fn an_input_is_caught_up_only_at_the_high_watermark_and_past_what_is_committed() {
        let mut t = task();
        let input = &mut t.inputs[1];
        assert_eq!(input.caught_up(None, None), None, "no watermark yet: unknown");
        assert_eq!(input.caught_up(None, Some((0, 0))), Some(true), "an empty topic");
        assert_eq!(input.caught_up(None, Some((0, 5))), Some(false), "nothing read of five");
        assert_eq!(input.caught_up(None, Some((5, 5))), Some(true), "all deleted by retention");
        t.push(1, 3, None, &event("a", 2, 1, "support"));
        let input = &mut t.inputs[1];
        input.queue.clear();
        assert_eq!(input.caught_up(None, Some((0, 5))), Some(false), "fetched up to 4 of 5");
        assert_eq!(input.caught_up(None, Some((0, 4))), Some(true));
        // A transaction's commit marker at offset 4: only the consumer's position steps over it.
        assert_eq!(input.caught_up(Some(5), Some((0, 5))), Some(true));
        // Re-reading up to a commit at 9: records are there even if the watermark looks older.
        input.restore_until = Some(9);
        assert_eq!(input.caught_up(Some(5), Some((0, 5))), Some(false));
        input.position = Some(9);
        assert_eq!(input.caught_up(None, Some((0, 5))), Some(true));
    }

    #[test]
    fn an_event_dated_past_the_wall_clock_does_not_hold_its_topic_back_in_the_merge() {
        // usage: 2 March 01:00, then an event dated 2099 (rejected as in_future), then 3 March;
        // support: 2 March 05:00 and 4 March. The 2099 event used to be merged by its own
        // time: usage's 3 March record waited behind it until support had nothing left, and
        // support's 4 March record went first.
        let future = br#"{"event_id":"f","customer_id":"c1","timestamp":"2099-01-01T00:00:00Z","type":"feature_used","feature":"reports"}"#;
        let filled = || {
            let mut t = task();
            t.set_wall_clock(crate::event::parse_date_or_datetime("2026-12-07").unwrap());
            t.push(0, 0, None, &event("a", 2, 1, "usage"));
            t.push(0, 1, None, future);
            t.push(0, 2, None, &event("b", 3, 1, "usage"));
            t.push(1, 0, None, &event("c", 2, 5, "support"));
            t.push(1, 1, None, &event("d", 4, 1, "support"));
            t.inputs.iter_mut().for_each(|i| i.at_end = true);
            t
        };
        let mut t = filled();
        assert_eq!(t.inputs[0].queue[1].time, t.inputs[0].queue[0].time, "the 2099 event takes its predecessor's time");
        let mut done = Processed::default();
        t.process(usize::MAX, &mut done);
        assert_eq!(done.records, 5);
        assert_eq!(done.dead_letters.len(), 1, "the 2099 event is still rejected");
        assert_eq!(done.dead_letters[0].rejection.reason, crate::event::RejectReason::InFuture);
        assert_eq!(done.dead_letters[0].record.offset, 1);

        let mut t = filled();
        assert_eq!(order(&mut t), vec![(0, 0), (0, 1), (1, 0), (0, 2), (1, 1)], "the 2099 event keeps its place");
    }

    #[test]
    fn a_record_keeps_its_key_and_payload_apart() {
        let r = Record::new(7, 1, Some(b"c1"), b"{}");
        assert_eq!((r.key(), r.payload()), (Some(&b"c1"[..]), &b"{}"[..]));
        let r = Record::new(7, 1, None, b"{}");
        assert_eq!((r.key(), r.payload()), (None, &b"{}"[..]));
        let r = Record::new(7, 1, Some(b""), b"x");
        assert_eq!((r.key(), r.payload()), (Some(&b""[..]), &b"x"[..]));
    }

    #[test]
    fn unreadable_times_keep_their_place() {
        let mut t = task();
        t.push(0, 0, None, &event("a", 2, 4, "usage"));
        t.push(0, 1, None, b"not json");
        assert_eq!(t.inputs[0].queue[1].time, t.inputs[0].queue[0].time);
    }

    #[test]
    fn restored_records_rebuild_state_without_outputs_and_fresh_ones_emit() {
        let run = |restore: Option<i64>| {
            let mut t = absolute_task();
            for (i, day) in (1..=20).enumerate() {
                t.push(0, i as i64, None, &event(&format!("u{i}"), day, 9, "usage"));
            }
            t.push(0, 20, None, b"{bad");
            t.inputs[0].restore_until = restore;
            t.inputs.iter_mut().for_each(|i| i.at_end = true);
            let mut done = Processed::default();
            t.process(usize::MAX, &mut done);
            (done, t)
        };
        let (all, _) = run(None);
        let (split, task) = run(Some(3));
        assert_eq!(all.records, 21);
        assert_eq!(split.restored, 3);
        assert_eq!(task.inputs[0].position, Some(21));
        assert!(!task.restoring());
        // The fresh outputs are exactly the tail of the uninterrupted run's outputs.
        let fresh: Vec<Vec<u8>> = split.outputs.iter().map(Output::to_json).collect();
        let whole: Vec<Vec<u8>> = all.outputs.iter().map(Output::to_json).collect();
        assert!(!fresh.is_empty() && fresh.len() < whole.len(), "{} fresh of {}", fresh.len(), whole.len());
        assert_eq!(&whole[whole.len() - fresh.len()..], &fresh[..]);
        assert_eq!(split.dead_letters.len(), 1, "the bad record is fresh, so it is dead-lettered");
        assert_eq!(split.dead_letters[0].record.offset, 20);
    }
}
