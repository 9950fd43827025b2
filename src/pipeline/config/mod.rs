//! `healthscore run` configuration: a TOML file plus `HEALTHSCORE__SECTION__KEY` environment
//! overrides, read with the `config` crate, checked in full before anything connects.
//!
//! Every problem is reported at once with its key (unknown keys included), so a deployment is
//! fixed in one round instead of one crash loop per typo.
//!
//! This file holds the settings themselves: the [`Config`] tree, one struct per section, with
//! their defaults, `Debug` that hides secrets, and the values derived from them. Reading a
//! file and the environment, and listing what could not be read, is `load`; checking values
//! that parse but make no sense is `validate`. Nothing here reads a file or the environment
//! except [`Config::transactional_id`]'s hostname fallback.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;

pub use load::{ConfigError, ENV_PREFIX};
pub use validate::{serves_data_to_anyone, MIN_TOKEN_LEN};

/// The whole service configuration. Field docs are the reference; README's Configuration
/// section shows the same with examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Scorecard TOML; empty: the built-in default scorecard.
    pub scorecard: Option<PathBuf>,
    pub kafka: KafkaConfig,
    pub engine: EngineConfig,
    pub pipeline: PipelineConfig,
    pub snapshot: SnapshotConfig,
    pub http: HttpConfig,
}

/// The HTTP endpoints: metrics, health, readiness and the query API.
///
/// The query API serves customer data (MRR, NPS, tickets, scores), so it needs a bearer token
/// unless it listens on loopback only. `/metrics`, `/healthz` and `/readyz` stay open.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address and port to listen on (`IP:port`). Loopback by default; in a pod set
    /// `0.0.0.0:9898` so Prometheus and the probes reach it, with a token.
    pub listen: String,
    /// A bearer token the data endpoints accept (`HEALTHSCORE__HTTP__TOKEN` in the
    /// environment). Never printed.
    #[serde(serialize_with = "redacted")]
    pub token: Option<String>,
    /// A file of bearer tokens, one per line (several while rotating; `#` lines and blank lines
    /// are skipped), e.g. a mounted Kubernetes Secret. Read at start.
    pub token_file: Option<PathBuf>,
    /// Serve the data endpoints beyond loopback without a token (logged as a warning at every
    /// start). Off by default: the service refuses to start that way.
    pub allow_unauthenticated: bool,
    /// Serve HTTPS (rustls) with this PEM certificate chain, e.g. a cert-manager Secret; set
    /// together with `tls_key`. Re-read when the file changes, so a renewed certificate is
    /// served without a restart.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9898".into(),
            token: None,
            token_file: None,
            allow_unauthenticated: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("token_file", &self.token_file)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

use super::secrets;
pub use super::secrets::REDACTED;

fn redacted<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

impl HttpConfig {
    /// The checked listen address (validation guarantees it parses).
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        self.listen.parse().expect("http.listen is validated at load")
    }

    /// The bearer tokens: `token` and the lines of `token_file`. Empty: the data endpoints are
    /// open (validation allows that only on loopback or with `allow_unauthenticated`).
    /// An error names the key (`http.token_file: ...`), so every caller reports it as it is.
    pub fn tokens(&self) -> Result<Vec<String>, String> {
        let mut tokens: Vec<String> = self.token.iter().cloned().collect();
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("http.token_file: cannot read {}: {e}", path.display()))?;
            let before = tokens.len();
            tokens.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string),
            );
            if tokens.len() == before {
                return Err(format!("http.token_file: {} holds no token", path.display()));
            }
        }
        Ok(tokens)
    }
}

/// Where to read and write, and how.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group; also the prefix of the default transactional id.
    pub group_id: String,
    /// `consumer` (KIP-848, Kafka ≥ 4.0: incremental rebalances decided by the broker) or
    /// `classic` (JoinGroup/SyncGroup). Both use a range assignment, which keeps partition *n*
    /// of the three input topics on one instance; the engine needs them together.
    pub group_protocol: GroupProtocol,
    /// `exactly_once` or `at_least_once`.
    pub processing_guarantee: Guarantee,
    /// How often processed offsets are committed (inside the transaction with exactly-once).
    /// Shorter: outputs become visible sooner (read_committed sees them only at commit); longer:
    /// fewer transaction markers. 100 ms is Kafka Streams' exactly-once default.
    pub commit_interval_ms: u64,
    /// Whether a lull (no input for 20 ms) commits what was processed at once rather than at
    /// the next interval: the end of a burst is then visible (exactly-once) and its offsets safe
    /// (at-least-once) a lull after its last record, at the cost of one more commit per burst.
    /// `false` commits on the interval only, as Kafka Streams does.
    pub commit_when_idle: bool,
    /// The producer's `transactional.id` for exactly-once. Must be stable across restarts of
    /// one instance (so a restarted instance fences its zombie) and unique among instances.
    /// Default: `<group_id>-<hostname>` (a StatefulSet pod name is both).
    pub transactional_id: Option<String>,
    pub topics: Topics,
    /// librdkafka properties for every client healthscore makes (the pipeline's consumer and
    /// producer, the `kafka` snapshot store, `generate --brokers`): the connection and its
    /// security (`security.protocol`, `sasl.*`, `ssl.*`). Values may be `${env:NAME}` or
    /// `${file:PATH}`; secret-looking keys are never printed (see [`secrets`]).
    pub client: BTreeMap<String, String>,
    /// Extra librdkafka properties for the consumer (strings, passed through untouched; they
    /// override healthscore's defaults).
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka properties for the producer.
    pub producer: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// The librdkafka pass-through maps with their names, in [`secrets::LIBRDKAFKA_MAPS`]'s
    /// order (the order they are applied in).
    pub fn maps(&self) -> [(&'static str, &BTreeMap<String, String>); 3] {
        let [client, consumer, producer] = secrets::LIBRDKAFKA_MAPS;
        [(client, &self.client), (consumer, &self.consumer), (producer, &self.producer)]
    }

    /// One of the librdkafka maps by its name in [`secrets::LIBRDKAFKA_MAPS`].
    fn map_mut(&mut self, name: &str) -> &mut BTreeMap<String, String> {
        match name {
            "client" => &mut self.client,
            "consumer" => &mut self.consumer,
            _ => &mut self.producer,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "healthscore".into(),
            group_protocol: GroupProtocol::Consumer,
            processing_guarantee: Guarantee::ExactlyOnce,
            commit_interval_ms: 100,
            commit_when_idle: true,
            transactional_id: None,
            topics: Topics::default(),
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("group_protocol", &self.group_protocol)
            .field("processing_guarantee", &self.processing_guarantee)
            .field("commit_interval_ms", &self.commit_interval_ms)
            .field("commit_when_idle", &self.commit_when_idle)
            .field("transactional_id", &self.transactional_id)
            .field("topics", &self.topics)
            .field("client", &secrets::RedactedMap(&self.client))
            .field("consumer", &secrets::RedactedMap(&self.consumer))
            .field("producer", &secrets::RedactedMap(&self.producer))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    Consumer,
    Classic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Topics {
    pub usage: String,
    pub support: String,
    pub billing: String,
    pub output: String,
    pub dead_letter: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            usage: "product-usage".into(),
            support: "support".into(),
            billing: "billing".into(),
            output: "customer-health".into(),
            dead_letter: "customer-health-dlq".into(),
        }
    }
}

impl Topics {
    /// The three input topics in source order (usage, support, billing).
    pub fn inputs(&self) -> [&str; 3] {
        [&self.usage, &self.support, &self.billing]
    }
}

/// How the processor orders, buffers and paces input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Messages buffered per input partition before it is paused (resumed at half). Bounds
    /// memory when one topic runs ahead of the others or processing falls behind.
    pub max_buffered_per_partition: usize,
    /// How long a partition's merge waits for a topic with nothing buffered before going on
    /// without it (Kafka Streams' `max.task.idle.ms`). 0 (the default, as in Kafka Streams):
    /// wait only while the broker holds unread data for that topic (up to 5 s), never for a
    /// topic that is at its end. N > 0: also wait up to N ms for a topic at its end whenever the
    /// others deliver something, so that records producers are still sending (out of step
    /// across topics) are merged in event-time order: processing becomes exactly reproducible
    /// at the cost of up to N ms of latency when one topic is quiet.
    pub max_task_idle_ms: u64,
    /// When a partition has had no input for this long (wall clock), stream time moves on by
    /// the wall-clock time that passed, so silent customers still age. 0 turns it off.
    pub idle_advance_secs: u64,
    /// Give up a graceful shutdown after this long.
    pub shutdown_timeout_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_buffered_per_partition: 50_000,
            max_task_idle_ms: 0,
            idle_advance_secs: 60,
            shutdown_timeout_secs: 30,
        }
    }
}

/// Where and how often partition state is snapshotted (see `snapshot` and "State and recovery"
/// in docs/operations.md). Without snapshots a partition is rebuilt by re-reading its topics
/// from the beginning, which is exact but takes as long as the history is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotConfig {
    /// `dir` (a local directory, e.g. a Kubernetes volume), `kafka` (a compacted topic, so a
    /// partition restores on any machine) or `none`.
    pub store: SnapshotStoreKind,
    /// The directory of the `dir` store.
    pub dir: PathBuf,
    /// The compacted topic of the `kafka` store (created if missing, with the input's
    /// partition count).
    pub topic: String,
    /// How often each partition is snapshotted (after a commit; partitions take turns so
    /// the pauses spread out). Shorter: less to re-read after a crash; longer: less I/O.
    pub interval_secs: u64,
    /// Snapshots kept per partition in the `dir` store (the `kafka` store keeps two).
    pub keep: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStoreKind {
    Dir,
    Kafka,
    None,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            store: SnapshotStoreKind::Dir,
            dir: PathBuf::from("snapshots"),
            topic: "healthscore-state".into(),
            interval_secs: 60,
            keep: 3,
        }
    }
}

impl Config {
    /// The transactional id this instance uses.
    pub fn transactional_id(&self) -> String {
        self.kafka.transactional_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
                .unwrap_or_else(|| "local".into());
            format!("{}-{host}", self.kafka.group_id)
        })
    }

    /// The effective configuration as TOML, for `check-config`.
    /// Secret-looking librdkafka properties and `http.token` print as [`REDACTED`].
    pub fn to_toml(&self) -> String {
        let printed = toml::Value::try_from(self).and_then(|mut value| {
            secrets::redact_toml(&mut value);
            toml::to_string_pretty(&value)
        });
        printed.unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}
