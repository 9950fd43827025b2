//! `FetchQueue` on librdkafka's mock cluster: the behaviour of partition-queue forwarding that
//! the polling thread is built around (see `pipeline::kafka::FetchQueue`).

use std::time::{Duration, Instant};

use healthscore::pipeline::kafka::{FetchQueue, Fetched};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "fetched";

fn send(producer: &BaseProducer, range: std::ops::Range<u32>) {
    for i in range {
        let payload = i.to_string();
        producer.send(BaseRecord::to(TOPIC).partition(0).key("k").payload(&payload)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Reads the fetch queue for `period`, polling the consumer queue too (as the service does);
/// returns the payloads read from each.
fn read(consumer: &BaseConsumer, fetch: &mut FetchQueue, period: Duration) -> (Vec<String>, Vec<String>) {
    let (mut fetched, mut polled) = (Vec::new(), Vec::new());
    let until = Instant::now() + period;
    while Instant::now() < until {
        fetch.consume(
            Duration::from_millis(10),
            100,
            |t| (t == TOPIC).then_some(0),
            |f| {
                if let Fetched::Message { payload, source: 0, .. } = f {
                    fetched.push(String::from_utf8_lossy(payload).into_owned());
                }
            },
        );
        if let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
            polled.push(String::from_utf8_lossy(rdkafka::Message::payload(&m).unwrap_or_default()).into_owned());
        }
    }
    (fetched, polled)
}

fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn forwarded_partitions_arrive_in_order_and_a_reassigned_one_waits_until_forwarded_again() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 1, 1).unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "fetch-queue-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut fetch = FetchQueue::new(&consumer);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();

    // Forwarded before it is assigned: every message comes through the fetch queue, in order.
    send(&producer, 0..100);
    fetch.forward(&tpl);
    consumer.assign(&tpl).unwrap();
    let (fetched, polled) = read(&consumer, &mut fetch, Duration::from_secs(3));
    assert_eq!(fetched, numbers(0..100));
    assert!(polled.is_empty(), "nothing reaches the consumer queue: {polled:?}");

    // Stopping the partition drops the forwarding, and starting it again does not restore it
    // (the application had set it): its new messages go nowhere the application reads...
    consumer.unassign().unwrap();
    let _ = read(&consumer, &mut fetch, Duration::from_millis(500));
    send(&producer, 100..150);
    let mut from = TopicPartitionList::new();
    from.add_partition_offset(TOPIC, 0, Offset::Offset(100)).unwrap();
    consumer.assign(&from).unwrap();
    let (fetched, polled) = read(&consumer, &mut fetch, Duration::from_secs(2));
    assert!(fetched.is_empty() && polled.is_empty(), "without forwarding: {fetched:?} {polled:?}");

    // ...until it is forwarded again (what the polling thread does every 100 ms): then they
    // come, in order, none lost.
    fetch.forward(&from);
    let (fetched, polled) = read(&consumer, &mut fetch, Duration::from_secs(2));
    assert_eq!(fetched, numbers(100..150));
    assert!(polled.is_empty(), "{polled:?}");
    drop(fetch);
}
