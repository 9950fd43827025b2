//! Kafka clients as healthscore configures them, and the start-up checks of the topics.

use std::ffi::CString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::config::{Config, GroupProtocol, Guarantee};
use super::secrets;
use crate::score::ConfigIssue;

/// Schema version of the output events, sent as the `schema_version` header.
pub const OUTPUT_SCHEMA_VERSION: &str = "1";

/// The fetch settings of [`consumer_config`] (why: see there), also given to the benchmark's
/// counting consumers so that its ceiling does not go without them.
pub const FETCH_SETTINGS: [(&str, &str); 2] = [("fetch.queue.backoff.ms", "10"), ("fetch.wait.max.ms", "50")];

/// What every client healthscore makes starts from: `bootstrap.servers` and `kafka.client`
/// (the connection and security settings: `security.protocol`, `sasl.*`, `ssl.*`). The
/// pipeline's consumer and producer, the `kafka` snapshot store's clients and `generate
/// --brokers` all build on it, so a setting made once reaches every connection.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers);
    for (key, value) in &config.kafka.client {
        c.set(key, value);
    }
    c
}

/// Builds every client configuration healthscore would make from `config` without
/// connecting, so that librdkafka itself judges each pass-through property (its name and its
/// value) before anything starts: `check-config` and `run` report an unknown or malformed
/// one with its key path, as they do for healthscore's own keys.
pub fn check_client_properties(config: &Config) -> Vec<ConfigIssue> {
    let k = &config.kafka;
    let refused = |key: &str, e: KafkaError| {
        let reason = match e {
            // librdkafka quotes the value it refuses; a secret's stays out of the message.
            KafkaError::ClientConfig(_, description, _, value) => secrets::redact_value(&description, key, &value),
            other => other.to_string(),
        };
        format!("librdkafka refuses it: {reason}")
    };
    // Each pass-through property alone first, so that every bad one is named at once.
    let mut issues = Vec::new();
    for (map, props) in k.maps() {
        for (key, value) in props {
            if let Err(e) = ClientConfig::new().set(key, value).create_native_config() {
                issues.push(ConfigIssue::new(format!("kafka.{map}.\"{key}\""), refused(key, e)));
            }
        }
    }
    if issues.is_empty() {
        for (client, built) in [("consumer", consumer_config(config)), ("producer", producer_config(config))] {
            if let Err(e) = built.create_native_config() {
                let key = match &e {
                    KafkaError::ClientConfig(_, _, key, _) => key.clone(),
                    _ => String::new(),
                };
                issues.push(ConfigIssue::new(format!("kafka.{client}"), refused(&key, e)));
            }
        }
    }
    issues
}

/// The consumer's properties: healthscore's defaults, then the user's pass-through ones.
///
/// - `enable.auto.commit=false`: offsets are committed only after the outputs they caused are
///   safe (inside the transaction with exactly-once).
/// - `isolation.level=read_committed`: never score input from an aborted transaction.
/// - `auto.offset.reset=earliest`: a new group scores the history it finds.
/// - `fetch.queue.backoff.ms=10`: librdkafka ≥ 2.2 otherwise stops fetching a partition for a
///   whole second once its local queue is "full enough", and a fast processor idles most of the
///   time (measured: 0.3–0.6 M msg/s with the default, ~1.7 M with 10 ms).
/// - `fetch.wait.max.ms=50`: how long the broker holds a fetch that finds no new data (default
///   500). librdkafka keeps one fetch in flight per broker, and a partition resumed after a
///   pause joins only the next one; with every other partition idle, it waited for the held
///   fetch to time out. healthscore pauses partitions whose buffer is full (backpressure), so
///   this bounds each resume's wait: 0.4–0.5 s stalls were measured near the end of every
///   drain with the default, none with 50 ms (drains 10–25 % faster). An idle consumer then
///   sends ~20 empty fetches a second per broker, which costs the broker next to nothing.
/// - `queued.max.messages.kbytes=16384`: librdkafka's prefetch per partition; healthscore keeps
///   its own bounded buffer per partition and pauses beyond it.
/// - range assignment (`group.remote.assignor` for KIP-848, `partition.assignment.strategy` for
///   classic): partition *n* of every input topic lands on the same instance.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut c = client_config(config);
    c.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("queued.max.messages.kbytes", "16384")
        .set("enable.partition.eof", "false");
    for (key, value) in FETCH_SETTINGS {
        c.set(key, value);
    }
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
    let mut c = client_config(config);
    c.set("enable.idempotence", "true")
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

/// What a connection probe heard from librdkafka: the first refusal that retrying cannot
/// mend (a login refused, a TLS handshake failed), with its reason text.
#[derive(Default)]
struct Probe(Mutex<Option<(RDKafkaErrorCode, String)>>);

impl ClientContext for Probe {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) = error.rdkafka_error_code() {
            self.0.lock().unwrap().get_or_insert((code, reason.to_string()));
        }
    }

    /// Quiet: what matters comes back as the start-up error.
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}
}

impl ConsumerContext for Probe {}

/// Connects once with the service's connection settings (`kafka.brokers`, `[kafka.client]`)
/// and stops the start as soon as the brokers refuse the login or the TLS handshake fails,
/// with librdkafka's reason and the settings to look at. Without it, the consumer retries
/// such a refusal every few milliseconds and the start ends after 10 s with "broker transport
/// failure", the reason only in the log. Other trouble (brokers not up yet) is left to the
/// metadata request of [`check_topics`].
pub fn check_connection(config: &Config) -> anyhow::Result<()> {
    let probe: BaseConsumer<Probe> =
        client_config(config).create_with_context(Probe::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let brokers = &config.kafka.brokers;
    while Instant::now() < deadline {
        if probe.fetch_metadata(Some(&config.kafka.topics.usage), Duration::from_millis(250)).is_ok() {
            return Ok(());
        }
        // Errors reach the context only when the client's queue is served.
        let _ = probe.poll(Duration::ZERO);
        if let Some((code, reason)) = probe.context().0.lock().unwrap().take() {
            let reason = without_secrets(reason, config);
            match code {
                RDKafkaErrorCode::Authentication => anyhow::bail!(
                    "Kafka at {brokers} refused the login: {reason}. Check [kafka.client]'s sasl.mechanism, \
                     sasl.username and sasl.password"
                ),
                _ => anyhow::bail!(
                    "TLS with Kafka at {brokers} failed: {reason}. Check [kafka.client]'s security.protocol and \
                     ssl.ca.location (the CA that signed the brokers' certificates)"
                ),
            }
        }
    }
    Ok(())
}

/// `text` with the value of every secret-looking librdkafka property cut out (librdkafka's
/// messages are not meant to quote them, but an error message must never be where one leaks).
fn without_secrets(mut text: String, config: &Config) -> String {
    for (_, props) in config.kafka.maps() {
        for (key, value) in props {
            text = secrets::redact_value(&text, key, value);
        }
    }
    text
}

/// Checks that the input topics exist and are co-partitioned and that the output topics exist;
/// returns the input partition count. The engine keeps one state per partition number, which
/// is only right if a customer's events land on the same partition number in all three topics.
/// First [`check_connection`], so a refused login or certificate is named at once.
pub fn check_topics<C: ConsumerContext>(consumer: &BaseConsumer<C>, config: &Config) -> anyhow::Result<i32> {
    check_connection(config)?;
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
pub fn dead_letter_headers(
    reason: &str,
    message: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    original_length: usize,
) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(7)
        .insert(Header { key: "reason", value: Some(reason) })
        .insert(Header { key: "message", value: Some(message) })
        .insert(Header { key: "source_topic", value: Some(topic) })
        .insert(Header { key: "source_partition", value: Some(&partition.to_string()) })
        .insert(Header { key: "source_offset", value: Some(&offset.to_string()) })
        .insert(Header { key: "original_length", value: Some(&original_length.to_string()) })
}

/// What [`FetchQueue::consume`] hands out: a message of one of the input topics (borrowed
/// until the callback returns), or a consumer error reported for a partition.
pub enum Fetched<'m> {
    Message { source: usize, partition: i32, offset: i64, key: Option<&'m [u8]>, payload: &'m [u8] },
    Error(KafkaError),
}

/// The fetched messages of the assigned partitions, forwarded out of the consumer queue into a
/// queue of their own and read in batches.
///
/// Why: rust-rdkafka's `poll` returns one message per call, and each call costs librdkafka a
/// queue lock, two clock reads and an event; at a million messages a second that was a third of
/// the polling thread. `rd_kafka_consume_batch_queue` serves thousands per call, but on the
/// consumer queue it would also serve the rebalance events, which rust-rdkafka handles only
/// through `poll`. So each partition's fetch queue is forwarded here (before it is assigned, so
/// no message of it reaches the consumer queue first), while rebalances, commits and errors stay
/// on the consumer queue, which `poll` keeps serving.
///
/// librdkafka clears a partition's forwarding when it stops fetching it (unassign, revoke), and,
/// because the application set it, does not restore it when fetching starts again: messages then
/// wait in the partition's own queue, in order, until [`forward`](Self::forward) is called again,
/// which moves them here. The polling thread therefore forwards on every assignment and
/// periodically.
pub struct FetchQueue {
    queue: *mut rdkafka::bindings::rd_kafka_queue_t,
    client: *mut rdkafka::bindings::rd_kafka_t,
    batch: Vec<*mut rdkafka::bindings::rd_kafka_message_t>,
    /// Input topics by librdkafka's topic handle (stable while the client lives), so a message's
    /// topic is told by a pointer, not by reading its name.
    topics: Vec<(*mut rdkafka::bindings::rd_kafka_topic_t, Option<usize>)>,
}

// SAFETY: librdkafka's queue and client handles are thread-safe; the batch buffer only holds
// pointers between a consume call and the destruction of the messages within that same call.
unsafe impl Send for FetchQueue {}

impl FetchQueue {
    /// A new, empty queue of `consumer`'s client. Must be dropped before the consumer is (see
    /// `Processor::run`): librdkafka frees what is left in it then.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> FetchQueue {
        let client = consumer.client().native_ptr();
        // SAFETY: the client pointer is valid for the consumer's lifetime; the queue is
        // destroyed in Drop, before the consumer (see above).
        let queue = unsafe { rdkafka::bindings::rd_kafka_queue_new(client) };
        FetchQueue { queue, client, batch: Vec::new(), topics: Vec::new() }
    }

    /// Forwards the fetch queues of the partitions in `partitions` here. Idempotent; moves any
    /// message waiting in a partition's own queue here, after those already here.
    pub fn forward(&self, partitions: &TopicPartitionList) {
        for e in partitions.elements() {
            let Ok(topic) = CString::new(e.topic()) else { continue };
            // SAFETY: valid client; the partition queue handle is released right after use (the
            // forwarding keeps its own reference to our queue).
            unsafe {
                let partition =
                    rdkafka::bindings::rd_kafka_queue_get_partition(self.client, topic.as_ptr(), e.partition());
                if !partition.is_null() {
                    rdkafka::bindings::rd_kafka_queue_forward(partition, self.queue);
                    rdkafka::bindings::rd_kafka_queue_destroy(partition);
                }
            }
        }
    }

    /// Serves up to `max` messages: waits up to `timeout` for the first one (librdkafka waits
    /// the whole timeout for a batch to fill, so callers wanting "whatever is there" pass zero,
    /// and block with `max` = 1). Calls `each` per message in queue order (each partition's in
    /// offset order) with the input index `source_of` gives its topic; messages of other topics
    /// are skipped. Returns the number of messages served, errors included.
    pub fn consume(
        &mut self,
        timeout: Duration,
        max: usize,
        source_of: impl Fn(&str) -> Option<usize>,
        mut each: impl FnMut(Fetched<'_>),
    ) -> usize {
        self.batch.clear();
        self.batch.reserve(max);
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the buffer has room for `max` pointers; librdkafka writes `n` of them, each a
        // message we own until rd_kafka_message_destroy below.
        let n = unsafe {
            let n =
                rdkafka::bindings::rd_kafka_consume_batch_queue(self.queue, timeout_ms, self.batch.as_mut_ptr(), max);
            let n = n.max(0) as usize;
            self.batch.set_len(n);
            n
        };
        for i in 0..n {
            let m = self.batch[i];
            // SAFETY: `m` is a valid message until destroyed at the end of this iteration; the
            // slices borrow its buffers only for the callback.
            unsafe {
                let msg = &*m;
                if msg.err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    each(Fetched::Error(KafkaError::MessageConsumption(msg.err.into())));
                } else if let Some(source) = self.source(msg.rkt, &source_of) {
                    let bytes = |p: *mut std::ffi::c_void, len: usize| {
                        if p.is_null() {
                            None
                        } else {
                            Some(std::slice::from_raw_parts(p as *const u8, len))
                        }
                    };
                    each(Fetched::Message {
                        source,
                        partition: msg.partition,
                        offset: msg.offset,
                        key: bytes(msg.key, msg.key_len),
                        payload: bytes(msg.payload, msg.len).unwrap_or_default(),
                    });
                }
                rdkafka::bindings::rd_kafka_message_destroy(m);
            }
        }
        self.batch.clear();
        n
    }

    fn source(
        &mut self,
        rkt: *mut rdkafka::bindings::rd_kafka_topic_t,
        source_of: &impl Fn(&str) -> Option<usize>,
    ) -> Option<usize> {
        if let Some((_, source)) = self.topics.iter().find(|(t, _)| *t == rkt) {
            return *source;
        }
        // SAFETY: a message's topic handle is valid while the message is; the name is copied.
        let name = unsafe { std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_topic_name(rkt)) };
        let source = name.to_str().ok().and_then(source_of);
        self.topics.push((rkt, source));
        source
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the queue was created in `new` and is destroyed once; partitions still
        // forwarding here keep it alive (and drop what reaches it) until librdkafka unassigns them.
        unsafe { rdkafka::bindings::rd_kafka_queue_destroy(self.queue) };
    }
}
