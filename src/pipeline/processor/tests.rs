//! The processor's threads played by hand, on librdkafka's mock cluster.

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::commit::Wait;
use super::poll::Staged;
use super::*;
use crate::pipeline::demo::on_mock_cluster;
use crate::pipeline::task::Copier;

/// A processor on librdkafka's mock cluster, not running: a test plays both its threads.
fn processor(mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> Processor {
    let config = on_mock_cluster(mock, 2).unwrap();
    Processor::new(Arc::new(config), Arc::new(Scorecard::default_scorecard()), Arc::new(Stats::default())).unwrap()
}

fn staged(source: usize, partition: i32, generation: u64, offset: i64) -> Staged {
    let payload = format!(
        r#"{{"event_id":"e{source}-{offset}","customer_id":"c1","timestamp":"2026-03-02T0{source}:00:00Z","type":"session","duration_seconds":60}}"#
    );
    Staged { source, partition, generation, record: Copier::default().copy(offset, Some(b"c1"), payload.as_bytes()) }
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

/// Plays the polling thread until the group has assigned every partition (the assign callback
/// prepared their tasks: nothing committed, nothing to re-read on the empty topics).
fn joined(processor: &Processor, partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processor.shared.lock().tasks.len() < partitions {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = processor.consumer.poll(Duration::from_millis(50));
    }
}

/// Drops a processor that joined the group, as `Processor::run` does at its end: the fetch
/// queue (which holds a reference into the consumer, and is held by the consumer's context)
/// first, or destroying the consumer waits for ever.
fn close(processor: Processor) {
    drop(processor.shared.fetch.lock().unwrap().take());
    drop(processor);
}

/// The offset the group has committed for usage partition 0.
fn committed_usage_0(processor: &Processor) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&processor.shared.config.kafka.topics.usage, 0);
    processor.consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap().elements()[0].offset()
}

/// Issue 24: "an at-least-once commit that fails asynchronously is never retried while the
/// input stays idle". The broker refuses the first offset commit (as it does during a
/// rebalance); nothing more arrives. The processing thread's lull keeps asking to commit and the
/// polling thread keeps polling, as they do when idle: the offset must get committed. It used to
/// stay uncommitted for as long as no new input came: the refusal reached nobody (rust-rdkafka's
/// asynchronous commit has no callback) and the offsets counted as committed.
#[test]
fn an_at_least_once_commit_refused_asynchronously_is_retried_while_the_input_stays_idle() {
    let mock = MockCluster::new(1).unwrap();
    let processor = processor(&mock);
    joined(&processor, 2);
    let shared = &processor.shared;
    assert_eq!(shared.config.kafka.processing_guarantee, Guarantee::AtLeastOnce);
    // Five records of usage partition 0 processed, no output in flight.
    shared.lock().tasks.get_mut(&0).unwrap().inputs[0].position = Some(5);
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The processing thread in a lull, then the polling thread (which serves the callbacks).
        shared.lock().commit(shared, &processor.consumer, Wait::Flush).unwrap();
        let _ = processor.consumer.poll(Duration::from_millis(20));
        if committed_usage_0(&processor) == Offset::Offset(5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offset 5 was never committed; refusals seen: {}",
            shared.stats.commit_failures.load(Relaxed)
        );
    }
    assert_eq!(shared.stats.commit_failures.load(Relaxed), 1, "the refusal reached the commit callback");
    let committed = {
        let state = shared.lock();
        let input = &state.tasks[&0].inputs[0];
        (input.committed, input.confirmed)
    };
    assert_eq!(committed, (Some(5), Some(5)));
    close(processor);
}

/// A partition rebuilt from an older snapshot (after a crash, a handover or a rewind) re-reads
/// from the snapshot's offsets up to the committed ones. The commits made meanwhile (every
/// commit interval, in a lull, on revoke) used to commit its re-read positions: the group's
/// offset moved back, and a crash then had the next owner emit committed outputs again.
#[test]
fn commits_while_a_partition_is_rebuilt_never_move_its_committed_offset_back() {
    let mock = MockCluster::new(1).unwrap();
    let processor = processor(&mock);
    joined(&processor, 2);
    let (shared, consumer) = (&processor.shared, &processor.consumer);
    shared.lock().tasks.get_mut(&0).unwrap().inputs[0].position = Some(10);
    shared.lock().commit(shared, consumer, Wait::Sync).unwrap();
    assert_eq!(committed_usage_0(&processor), Offset::Offset(10));
    {
        // Rebuilt from a snapshot taken at offset 3, re-reading up to the commit at 10.
        let mut state = shared.lock();
        let engine = shared.new_engine(&state.scorecard);
        let mut task = PartitionTask::resume(0, engine, [Some(3), None, None], [crate::event::Millis::MIN; 3]);
        let input = &mut task.inputs[0];
        (input.committed, input.confirmed, input.restore_until) = (Some(10), Some(10), Some(10));
        state.tasks.insert(0, task);
        assert!(state.tasks[&0].restoring());
    }
    for wait in [Wait::No, Wait::Flush, Wait::Sync] {
        shared.lock().commit(shared, consumer, wait).unwrap();
        let _ = consumer.poll(Duration::from_millis(50));
        assert_eq!(committed_usage_0(&processor), Offset::Offset(10), "{wait:?}");
    }
    // A refused commit of an older offset, answered late, does not move it back either.
    let mut older = TopicPartitionList::new();
    older.add_partition_offset(&shared.config.kafka.topics.usage, 0, Offset::Offset(3)).unwrap();
    let refused =
        Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::RebalanceInProgress));
    shared.lock().commit_result(shared, &refused, &older);
    assert_eq!(shared.lock().tasks[&0].inputs[0].committed, Some(10));
    close(processor);
}
