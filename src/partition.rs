//! Which input partition a customer's events land on: Kafka's default partitioner, so that
//! `replay --partitions N` splits customers exactly as producers keyed by `customer_id` split them
//! over N partitions, and one engine per partition sees the same customers in both.

/// The partition Kafka's default partitioner picks for `key` among `partitions`:
/// `toPositive(murmur2(key)) % partitions`, as in the Java client (and librdkafka's
/// `murmur2_random` partitioner, which Kafka-compatible producers use).
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "at least one partition");
    (murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by Kafka 4.4.0's own `Utils.murmur2` and `Utils.toPositive(..) % 6`.
    #[test]
    fn matches_the_java_client() {
        let cases: [(&str, i32, u32); 6] = [
            ("21", -973932308, 0),
            ("foobar", -790332482, 0),
            ("abc", 479470107, 3),
            ("cus_0001", 427497711, 3),
            ("a-little-bit-long-string", -985981536, 2),
            ("é-ünïcode", -1651534611, 5),
        ];
        for (key, java_hash, partition_of_6) in cases {
            assert_eq!(murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED) as i32, java_hash, "{key}");
            assert_eq!(kafka_partition(key.as_bytes(), 6), partition_of_6, "{key}");
        }
    }
}
