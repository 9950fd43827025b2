//! The Kafka service around the engine (`healthscore run` and `healthscore demo`).
//!
//! - [`config`]: the service configuration, loaded and checked in full at start-up.
//! - [`task`]: one partition's input buffers, merged in event-time order, and its engine (no Kafka).
//! - [`kafka`]: client properties and start-up topic checks.
//! - [`secrets`]: secrets from the environment or files, and never printed.
//! - [`processor`]: the consume → process → produce → commit loop, rebalances and recovery (a
//!   file per role: polling thread, processing thread, commits, rebalances, recovery).
//! - [`candidates`]: each partition's latest learned candidate, written as a scorecard file and logged.
//! - [`acks`]: at-least-once commits that wait for their outputs' acknowledgments without blocking.
//! - [`send`]: producing event histories to the input topics (`generate --brokers`, the demo).
//! - [`demo`]: the whole pipeline on librdkafka's in-process mock cluster.
//! - [`metrics`]: the Prometheus metrics, and the counters ([`Stats`]) the processor keeps for
//!   them, read at scrape time.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the query API, on axum.

pub mod acks;
pub mod candidates;
pub mod config;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod processor;
pub mod secrets;
pub mod send;
pub mod task;
pub mod tls;

pub use self::config::Config;
pub use self::metrics::Stats;
pub use self::processor::Processor;
