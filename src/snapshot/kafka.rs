//! Snapshots in a compacted Kafka topic, so a partition can move to an instance on another
//! machine (or a pod can be rescheduled without its volume) and still restore from a snapshot.
//!
//! A snapshot is split into chunks of [`CHUNK_BYTES`], so Kafka's message size limit does not
//! bound the state size. Each partition has two slots, `a` and `b`; chunk `i` of a slot is the
//! record keyed `<partition>/<slot>/<i>`, and its value starts with the snapshot id, `i` and the
//! chunk count. A new snapshot is written into the slot that does not hold the newest complete
//! one, so a crash halfway through a write leaves the other slot whole; compaction then keeps
//! only the latest chunk per key, i.e. at most two snapshots per partition. A reader takes the
//! newest slot whose chunks all carry the same id, and falls back to the other.
//!
//! The state topic is created when missing (compacted, with the input topics' partition count;
//! partition `p`'s chunks go to state partition `p mod n`). The producer is idempotent and
//! waits for all replicas; it is not the processor's transactional producer, as a snapshot is
//! only ever used up to offsets that were already committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{SnapshotStore, Stored};
use crate::pipeline::Config;

/// Bytes of snapshot per record: well under the broker's default 1 MB message limit.
pub const CHUNK_BYTES: usize = 512 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);
const SLOTS: [char; 2] = ['a', 'b'];

/// What each slot of a partition holds: (snapshot id, chunk count).
type Held = [Option<(u64, u32)>; 2];

pub struct KafkaStore {
    topic: String,
    partitions: i32,
    client: ClientConfig,
    producer: ThreadedProducer<Deliveries>,
    /// Per partition and slot: the id and chunk count of what the slot holds, as last written
    /// or read (`None`: unknown; the partition is scanned before its first write).
    slots: Mutex<HashMap<i32, Held>>,
    /// Snapshots assembled by the last `list`, taken by `read`.
    assembled: Mutex<HashMap<(i32, u64), Vec<u8>>>,
}

pub struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

impl KafkaStore {
    /// Connects and makes sure the state topic exists.
    pub fn new(config: &Config) -> anyhow::Result<KafkaStore> {
        let topic = config.snapshot.topic.clone();
        // The connection and security settings every client of the pipeline uses.
        let client = crate::pipeline::kafka::client_config(config);
        let producer: ThreadedProducer<Deliveries> = client
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Deliveries { failed: AtomicU64::new(0) })
            .context("cannot create the snapshot producer")?;
        let metadata = producer
            .client()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| anyhow!("cannot read topic metadata for the snapshot store: {e}"))?;
        let count = |name: &str| {
            metadata.topics().iter().find(|t| t.name() == name).map(|t| t.partitions().len() as i32).filter(|n| *n > 0)
        };
        let partitions = match count(&topic) {
            Some(n) => n,
            None => {
                let n = count(&config.kafka.topics.usage)
                    .ok_or_else(|| anyhow!("input topic `{}` does not exist", config.kafka.topics.usage))?;
                create_topic(&client, &topic, n)?;
                n
            }
        };
        Ok(KafkaStore {
            topic,
            partitions,
            client,
            producer,
            slots: Mutex::new(HashMap::new()),
            assembled: Mutex::new(HashMap::new()),
        })
    }

    fn state_partition(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.partitions)
    }

    fn send(&self, key: &str, value: Option<&[u8]>, partition: i32) -> anyhow::Result<()> {
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic).key(key).partition(partition);
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("cannot produce to {}: {e}", self.topic),
            }
        }
    }

    /// Reads the partition's records from the state topic: the latest value per chunk key.
    fn scan(&self, partition: i32) -> anyhow::Result<HashMap<(usize, u32), Vec<u8>>> {
        let sp = self.state_partition(partition);
        let consumer: BaseConsumer = self
            .client
            .clone()
            .set("group.id", "healthscore-state-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .context("cannot create the snapshot reader")?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, sp, TIMEOUT)
            .map_err(|e| anyhow!("cannot read the offsets of {}[{sp}]: {e}", self.topic))?;
        let mut chunks = HashMap::new();
        if high <= low {
            return Ok(chunks);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, sp, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let prefix = format!("{partition}/");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        if let Some((slot, chunk)) = key.strip_prefix(&prefix).and_then(parse_key) {
                            match m.payload() {
                                Some(v) => chunks.insert((slot, chunk), v.to_vec()),
                                None => chunks.remove(&(slot, chunk)),
                            };
                        }
                    }
                    if offset + 1 >= high {
                        break;
                    }
                }
                Some(Err(e)) => bail!("cannot read {}[{sp}]: {e}", self.topic),
                None => {
                    let at = consumer.position().ok().and_then(|p| {
                        p.find_partition(&self.topic, sp).and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                    });
                    if at.is_some_and(|o| o >= high) {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("timed out reading {}[{sp}] up to offset {high}", self.topic);
                    }
                }
            }
        }
        Ok(chunks)
    }
}

fn parse_key(rest: &str) -> Option<(usize, u32)> {
    let (slot, chunk) = rest.split_once('/')?;
    let slot = SLOTS.iter().position(|s| slot.len() == 1 && slot.starts_with(*s))?;
    Some((slot, chunk.parse().ok()?))
}

fn chunk_key(partition: i32, slot: usize, chunk: u32) -> String {
    format!("{partition}/{}/{chunk:08}", SLOTS[slot])
}

fn chunk_header(value: &[u8]) -> Option<(u64, u32, u32, &[u8])> {
    if value.len() < 16 {
        return None;
    }
    let id = u64::from_le_bytes(value[..8].try_into().ok()?);
    let index = u32::from_le_bytes(value[8..12].try_into().ok()?);
    let count = u32::from_le_bytes(value[12..16].try_into().ok()?);
    Some((id, index, count, &value[16..]))
}

fn create_topic(client: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<_> = client.create().context("cannot create an admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact")
        .set("min.cleanable.dirty.ratio", "0.1")
        .set("segment.ms", "3600000");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results =
        runtime.block_on(admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(TIMEOUT))))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("cannot create the snapshot topic {t}: {e}"),
        }
    }
    tracing::info!(topic, partitions, "created the snapshot topic (compacted)");
    Ok(())
}

impl SnapshotStore for KafkaStore {
    fn save(&self, partition: i32, id: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let known = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&partition).copied();
        let held = match known {
            Some(h) => h,
            None => {
                self.list(partition)?;
                self.assembled.lock().unwrap_or_else(|p| p.into_inner()).retain(|(p, _), _| *p != partition);
                self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&partition).copied().unwrap_or_default()
            }
        };
        // Overwrite the slot holding the older (or no) snapshot.
        let slot = match held {
            [Some((a, _)), Some((b, _))] => usize::from(a > b),
            [None, _] => 0,
            [_, None] => 1,
        };
        let sp = self.state_partition(partition);
        let failed_before = self.producer.context().failed.load(Relaxed);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let count = chunks.len() as u32;
        let mut value = Vec::with_capacity(CHUNK_BYTES + 16);
        for (i, chunk) in chunks.iter().enumerate() {
            value.clear();
            value.extend_from_slice(&id.to_le_bytes());
            value.extend_from_slice(&(i as u32).to_le_bytes());
            value.extend_from_slice(&count.to_le_bytes());
            value.extend_from_slice(chunk);
            self.send(&chunk_key(partition, slot, i as u32), Some(&value), sp)?;
        }
        // Chunks of an older, longer snapshot in this slot: delete them (tombstones).
        let old_count = held[slot].map_or(0, |(_, c)| c);
        for i in count..old_count {
            self.send(&chunk_key(partition, slot, i), None, sp)?;
        }
        self.producer.flush(TIMEOUT).map_err(|e| anyhow!("snapshot not acknowledged by the brokers: {e}"))?;
        if self.producer.context().failed.load(Relaxed) != failed_before {
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
            bail!("some snapshot chunks were not delivered to {}", self.topic);
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let entry = slots.entry(partition).or_insert(held);
        entry[slot] = Some((id, count));
        Ok(())
    }

    fn list(&self, partition: i32) -> anyhow::Result<Vec<Stored>> {
        let chunks = self.scan(partition)?;
        let mut held: Held = [None, None];
        let mut found = Vec::new();
        for slot in 0..SLOTS.len() {
            let in_slot: Vec<(u32, &Vec<u8>)> =
                chunks.iter().filter(|((s, _), _)| *s == slot).map(|((_, i), v)| (*i, v)).collect();
            let highest = in_slot.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
            let Some(first) = chunks.get(&(slot, 0)).and_then(|v| chunk_header(v)) else {
                if highest > 0 {
                    held[slot] = Some((0, highest));
                }
                continue;
            };
            let (id, _, count, _) = first;
            held[slot] = Some((id, highest.max(count)));
            let mut bytes = Vec::new();
            let complete = (0..count).all(|i| match chunks.get(&(slot, i)).and_then(|v| chunk_header(v)) {
                Some((cid, ci, cc, data)) if cid == id && ci == i && cc == count => {
                    bytes.extend_from_slice(data);
                    true
                }
                _ => false,
            });
            if complete {
                found.push((id, slot, bytes));
            } else {
                tracing::warn!(partition, slot = %SLOTS[slot], id, "incomplete snapshot in the state topic (a write was cut short); ignoring it");
            }
        }
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).insert(partition, held);
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut assembled = self.assembled.lock().unwrap_or_else(|p| p.into_inner());
        assembled.retain(|(p, _), _| *p != partition);
        let sp = self.state_partition(partition);
        Ok(found
            .into_iter()
            .map(|(id, slot, bytes)| {
                assembled.insert((partition, id), bytes);
                Stored { name: format!("{}[{sp}] slot {} (id {id})", self.topic, SLOTS[slot]), id }
            })
            .collect())
    }

    fn read(&self, partition: i32, stored: &Stored) -> anyhow::Result<Vec<u8>> {
        self.assembled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(partition, stored.id))
            .ok_or_else(|| anyhow!("snapshot {} is no longer listed", stored.name))
    }
}
