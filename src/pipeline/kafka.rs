//! Kafka clients as healthscore configures them, and the start-up checks of the topics.

use std::ffi::CString;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::config::{Config, GroupProtocol, Guarantee};

/// Schema version of the output events, sent as the `schema_version` header.
pub const OUTPUT_SCHEMA_VERSION: &str = "1";

/// The consumer's properties: healthscore's defaults, then the user's pass-through ones.
///
/// - `enable.auto.commit=false`: offsets are committed only after the outputs they caused are
///   safe (inside the transaction with exactly-once).
/// - `isolation.level=read_committed`: never score input from an aborted transaction.
/// - `auto.offset.reset=earliest`: a new group scores the history it finds.
/// - `fetch.queue.backoff.ms=10`: librdkafka ≥ 2.2 otherwise stops fetching a partition for a
///   whole second once its local queue is "full enough", and a fast processor idles most of the
///   time (measured: 0.3–0.6 M msg/s with the default, ~1.7 M with 10 ms).
/// - `queued.max.messages.kbytes=16384`: librdkafka's prefetch per partition; healthscore keeps
///   its own bounded buffer per partition and pauses beyond it.
/// - range assignment (`group.remote.assignor` for KIP-848, `partition.assignment.strategy` for
///   classic): partition *n* of every input topic lands on the same instance.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384")
        .set("enable.partition.eof", "false");
    match k.group_protocol {
        GroupProtocol::Consumer => {
            c.set("group.protocol", "consumer").set("group.remote.assignor", "range");
        }
        GroupProtocol::Classic => {
            c.set("group.protocol", "classic")
                .set("partition.assignment.strategy", "range")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000");
        }
    }
    for (key, value) in &k.consumer {
        c.set(key, value);
    }
    c
}

/// The producer's properties. Keys are partitioned with murmur2 like Java clients (librdkafka's
/// own default hashes differently), so outputs land on the partition number of their input.
/// Idempotence is always on; exactly-once adds the transactional id and a 10 s transaction
/// timeout (Kafka Streams' default), which bounds how long a crashed instance's open
/// transaction can hold back read_committed consumers and the next owner's restore.
pub fn producer_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    if k.processing_guarantee == Guarantee::ExactlyOnce {
        c.set("transactional.id", config.transactional_id()).set("transaction.timeout.ms", "10000");
    }
    for (key, value) in &k.producer {
        c.set(key, value);
    }
    c
}

/// Checks that the input topics exist and are co-partitioned and that the output topics exist;
/// returns the input partition count. The engine keeps one state per partition number, which
/// is only right if a customer's events land on the same partition number in all three topics.
pub fn check_topics<C: ConsumerContext>(consumer: &BaseConsumer<C>, config: &Config) -> anyhow::Result<i32> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot read topic metadata from {}: {e}", config.kafka.brokers))?;
    let count = |name: &str| metadata.topics().iter().find(|t| t.name() == name).map(|t| t.partitions().len() as i32);
    let topics = &config.kafka.topics;
    let mut problems = Vec::new();
    let inputs: Vec<(&str, Option<i32>)> = topics.inputs().into_iter().map(|t| (t, count(t))).collect();
    for (name, n) in &inputs {
        if n.is_none_or(|n| n == 0) {
            problems.push(format!(
                "input topic `{name}` does not exist; create it with as many partitions as the other inputs"
            ));
        }
    }
    let counts: Vec<i32> = inputs.iter().filter_map(|(_, n)| *n).filter(|n| *n > 0).collect();
    if problems.is_empty() && counts.iter().any(|n| *n != counts[0]) {
        let listed: Vec<String> = inputs.iter().map(|(t, n)| format!("`{t}` has {}", n.unwrap_or(0))).collect();
        let most = counts.iter().max().copied().unwrap_or(0);
        problems.push(format!(
            "input topics are not co-partitioned: {}. healthscore keeps each customer's state with partition \
             number n of all three topics, so they need the same partition count: increase the others to {most} \
             (kafka-topics.sh --alter --topic T --partitions {most}) and make producers key by customer_id \
             with the default partitioner",
            listed.join(", ")
        ));
    }
    for name in [&topics.output, &topics.dead_letter] {
        if count(name).is_none() {
            problems
                .push(format!("output topic `{name}` does not exist; create it (healthscore does not create topics)"));
        }
    }
    if problems.is_empty() {
        Ok(counts[0])
    } else {
        anyhow::bail!("topic check failed:\n  {}", problems.join("\n  "))
    }
}

/// The low and high watermarks librdkafka last saw for a partition, from its cache (no request).
pub fn cached_high_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime, the topic string outlives
    // the call, and librdkafka only writes the two offsets.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low.max(0), high))
}

/// The consumer's positions in the partitions of `tpl`, read in one call into the list's
/// offsets: for each, the offset after the last message or control record (a transaction
/// marker) handed to the application, so it reaches the high watermark at the end of a
/// transactionally written topic, where the offset after the last *message* stays one short.
/// Calls `found(topic, partition, position)` for each partition that has one (assigned, and
/// something consumed since it was assigned or sought).
pub fn app_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &mut TopicPartitionList,
    mut found: impl FnMut(&str, i32, i64),
) {
    // SAFETY: the client pointer is valid for the consumer's lifetime; librdkafka only writes
    // the offsets (and errors) of the list we own, which outlives the call.
    let err = unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), tpl.ptr()) };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return;
    }
    for e in tpl.elements() {
        if let (Offset::Offset(o), Ok(())) = (e.offset(), e.error()) {
            found(e.topic(), e.partition(), o);
        }
    }
}

/// Headers of an output event.
pub fn output_headers(type_name: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header { key: "type", value: Some(type_name) })
        .insert(Header { key: "schema_version", value: Some(OUTPUT_SCHEMA_VERSION) })
}

/// Headers of a dead letter: why, and where the original came from.
pub fn dead_letter_headers(reason: &str, message: &str, topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(6)
        .insert(Header { key: "reason", value: Some(reason) })
        .insert(Header { key: "message", value: Some(message) })
        .insert(Header { key: "source_topic", value: Some(topic) })
        .insert(Header { key: "source_partition", value: Some(&partition.to_string()) })
        .insert(Header { key: "source_offset", value: Some(&offset.to_string()) })
}
