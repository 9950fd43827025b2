//! Producing event histories to the three input topics: `healthscore generate --brokers` and
//! the demo's load. Each event goes to its source's topic, keyed by `customer_id`, with the
//! event time as the Kafka timestamp, partitioned like a Java producer (murmur2).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::config::{Config, Topics};
use crate::generate::GeneratedEvent;

/// A producer for input events to `brokers`, with no other connection settings.
pub fn input_producer(brokers: &str) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    input_producer_config(brokers).create().context("cannot create the input producer")
}

/// The input producer's settings, for callers that change one (`bench-kafka`'s live load).
pub fn input_producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    with_input_settings(c)
}

/// A producer for input events with the service's connection settings (`kafka.brokers`,
/// `kafka.client`: TLS, SASL), as `generate --brokers --config` uses it.
pub fn input_producer_for(config: &Config) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    with_input_settings(super::kafka::client_config(config)).create().context("cannot create the input producer")
}

fn with_input_settings(mut c: ClientConfig) -> ClientConfig {
    c.set("partitioner", "murmur2_random")
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        // Retries (a broker restarting, a leader moving) must neither reorder a partition's
        // events nor write them twice: the event-time merge follows each partition's order.
        .set("enable.idempotence", "true");
    c
}

/// Sends `events` at up to `rate` events/s (unlimited if `None`) until they run out or `stop`
/// is set; counts them in `sent`, then waits for every one to be acknowledged.
pub fn send_events(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topics: &Topics,
    events: impl Iterator<Item = GeneratedEvent>,
    rate: Option<f64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let inputs = topics.inputs();
    let mut n = 0u64;
    for ev in events {
        if stop.load(Relaxed) {
            break;
        }
        let topic = inputs[ev.source as usize];
        let mut record =
            BaseRecord::to(topic).key(ev.customer_id.as_str()).payload(ev.json.as_str()).timestamp(ev.timestamp);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(anyhow!("cannot send to {topic}: {e}")),
            }
        }
        n += 1;
        sent.fetch_add(1, Relaxed);
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            if n % 256 == 0 {
                let due = Duration::from_secs_f64(n as f64 / rate);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).context("input events not all acknowledged")?;
    Ok(n)
}
