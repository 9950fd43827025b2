//! Snapshots in a compacted Kafka topic (filled in below).
