//! `healthscore run` configuration: a TOML file plus `HEALTHSCORE__SECTION__KEY` environment
//! overrides, read with the `config` crate, checked in full before anything connects.
//!
//! Every problem is reported at once with its key (unknown keys included), so a deployment is
//! fixed in one round instead of one crash loop per typo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::score::ConfigIssue;

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
    pub fn tokens(&self) -> Result<Vec<String>, String> {
        let mut tokens: Vec<String> = self.token.iter().cloned().collect();
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let before = tokens.len();
            tokens.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string),
            );
            if tokens.len() == before {
                return Err(format!("{} holds no token", path.display()));
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

/// A configuration that could not be loaded: every problem with its key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::score::write_issues(f, "configuration", &self.source_name, &self.issues)
    }
}

/// The environment prefix: `HEALTHSCORE__KAFKA__BROKERS=host:9092` sets `kafka.brokers`.
pub const ENV_PREFIX: &str = "HEALTHSCORE";

impl Config {
    /// Loads `file` (if given) with environment overrides from `env` (name, value) pairs, and
    /// checks it. Pass `std::env::vars()` in the binary; tests pass their own.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let source_name = Config::source_name(file);
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                source_name: source_name.clone(),
                issues: vec![ConfigIssue::new("(file)", format!("cannot read: {e}"))],
            })?),
            None => None,
        };
        Config::load_str(text.as_deref(), &source_name, env)
    }

    /// What errors call the configuration loaded from `file`.
    pub fn source_name(file: Option<&Path>) -> String {
        file.map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string())
    }

    /// [`Config::load`] of a file's text (`None`: defaults only), named `source_name` in errors.
    pub fn load_str(
        text: Option<&str>,
        source_name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let source_name = source_name.to_string();
        let fail = |key: &str, reason: String| ConfigError {
            source_name: source_name.clone(),
            issues: vec![ConfigIssue::new(key, reason)],
        };
        let mut builder = config::Config::builder();
        if let Some(text) = text {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        let all_env: BTreeMap<String, String> = env.into_iter().collect();
        let prefix = format!("{ENV_PREFIX}__");
        let mut env: BTreeMap<String, String> =
            all_env.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let librdkafka_overrides = secrets::take_librdkafka_overrides(ENV_PREFIX, &mut env);
        // Which variable set each key, to name it in that key's problems.
        let from_env: BTreeMap<String, String> =
            env.keys().map(|var| (var[prefix.len()..].to_lowercase().replace("__", "."), var.clone())).collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.into_iter().collect())),
        );
        let (parsed, mut issues) = parse_reporting_all(builder).map_err(|e| fail("(file)", e.to_string()))?;
        let config = parsed.map(|mut config| {
            for (map, key, value) in librdkafka_overrides {
                config.kafka.map_mut(map).insert(key, value);
            }
            issues.extend(config.resolve_references(&|name| all_env.get(name).cloned()));
            issues.extend(config.validate());
            config
        });
        match config {
            Some(config) if issues.is_empty() => Ok(config),
            _ => {
                for issue in &mut issues {
                    if let Some(var) = from_env.get(&issue.key) {
                        issue.key = format!("{} (environment variable {var})", issue.key);
                    }
                }
                Err(ConfigError { source_name, issues })
            }
        }
    }

    /// Replaces `${env:NAME}` and `${file:PATH}` in the librdkafka maps and `http.token`.
    fn resolve_references(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for map in secrets::LIBRDKAFKA_MAPS {
            for (key, value) in self.kafka.map_mut(map).iter_mut() {
                match secrets::resolve(value, env) {
                    Ok(resolved) => *value = resolved,
                    Err(e) => issues.push(ConfigIssue::new(format!("kafka.{map}.\"{key}\""), e)),
                }
            }
        }
        if let Some(token) = self.http.token.as_mut() {
            match secrets::resolve(token, env) {
                Ok(resolved) => *token = resolved,
                Err(e) => issues.push(ConfigIssue::new("http.token", e)),
            }
        }
        issues
    }

    /// Checks values that parse but make no sense; each problem with its key.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            issues.push(ConfigIssue::new("kafka.brokers", "must name at least one broker (host:port)"));
        }
        if k.group_id.trim().is_empty() {
            issues.push(ConfigIssue::new("kafka.group_id", "must not be empty"));
        }
        if !(1..=60_000).contains(&k.commit_interval_ms) {
            issues.push(ConfigIssue::new("kafka.commit_interval_ms", "must be between 1 and 60000"));
        }
        if k.transactional_id.as_deref().is_some_and(|t| t.trim().is_empty()) {
            issues.push(ConfigIssue::new("kafka.transactional_id", "must not be empty when set"));
        }
        let t = &k.topics;
        let named = [
            ("kafka.topics.usage", &t.usage),
            ("kafka.topics.support", &t.support),
            ("kafka.topics.billing", &t.billing),
            ("kafka.topics.output", &t.output),
            ("kafka.topics.dead_letter", &t.dead_letter),
        ];
        for (i, (key, name)) in named.iter().enumerate() {
            if !valid_topic_name(name) {
                issues.push(ConfigIssue::new(
                    *key,
                    format!("`{name}` is not a valid topic name (1-249 of [a-zA-Z0-9._-])"),
                ));
            } else if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
                issues.push(ConfigIssue::new(*key, format!("`{name}` is also {other}; every topic must differ")));
            }
        }
        let both: Vec<&str> = CONSUMER_OWNED.iter().chain(PRODUCER_OWNED).copied().collect();
        for (section, props, owned) in [
            ("kafka.client", &k.client, &both[..]),
            ("kafka.consumer", &k.consumer, CONSUMER_OWNED),
            ("kafka.producer", &k.producer, PRODUCER_OWNED),
        ] {
            for key in props.keys() {
                if owned.contains(&key.as_str()) {
                    issues.push(ConfigIssue::new(
                        format!("{section}.\"{key}\""),
                        "is set by healthscore itself (see the README); use the dedicated setting",
                    ));
                } else if section != "kafka.client"
                    && ["security.", "sasl.", "ssl."].iter().any(|p| key.starts_with(p))
                    && !k.client.contains_key(key)
                {
                    // Set for one client only, the others (the snapshot store, the producer or
                    // the consumer, generate) would connect without it and fail later.
                    issues.push(ConfigIssue::new(
                        format!("{section}.\"{key}\""),
                        "is a connection setting: put it in [kafka.client], which every client uses",
                    ));
                }
            }
        }
        match self.http.listen.parse::<std::net::SocketAddr>() {
            Err(_) => issues.push(ConfigIssue::new(
                "http.listen",
                format!("`{}` is not an IP:port address (e.g. 0.0.0.0:9898 or 127.0.0.1:9898)", self.http.listen),
            )),
            Ok(addr) => {
                if self.http.token.as_ref().is_some_and(|t| t.trim().len() < MIN_TOKEN_LEN) {
                    issues.push(ConfigIssue::new(
                        "http.token",
                        format!("must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"),
                    ));
                }
                match (&self.http.tls_cert, &self.http.tls_key) {
                    (Some(_), None) => {
                        issues.push(ConfigIssue::new("http.tls_key", "missing: http.tls_cert needs its key"))
                    }
                    (None, Some(_)) => {
                        issues.push(ConfigIssue::new("http.tls_cert", "missing: http.tls_key needs its certificate"))
                    }
                    _ => {}
                }
                for (key, path) in [("http.tls_cert", &self.http.tls_cert), ("http.tls_key", &self.http.tls_key)] {
                    if let Some(Err(e)) = path.as_ref().map(std::fs::File::open) {
                        issues.push(ConfigIssue::new(
                            key,
                            format!("cannot read {}: {e}", path.as_ref().unwrap().display()),
                        ));
                    }
                }
                match self.http.tokens() {
                    Err(e) => issues.push(ConfigIssue::new("http.token_file", e)),
                    Ok(tokens) if serves_data_to_anyone(addr, &tokens) && !self.http.allow_unauthenticated => issues
                        .push(ConfigIssue::new(
                            "http.token",
                            format!(
                                "the query API would serve customer data on {addr} to anyone: set http.token or \
                                 http.token_file (HEALTHSCORE__HTTP__TOKEN), listen on 127.0.0.1, or set \
                                 http.allow_unauthenticated = true"
                            ),
                        )),
                    Ok(_) => {}
                }
            }
        }
        for (key, reason) in self.engine.validate() {
            issues.push(ConfigIssue::new(format!("engine.{key}"), reason));
        }
        let p = &self.pipeline;
        if p.max_buffered_per_partition < 100 {
            issues.push(ConfigIssue::new("pipeline.max_buffered_per_partition", "must be at least 100"));
        }
        if p.shutdown_timeout_secs == 0 {
            issues.push(ConfigIssue::new("pipeline.shutdown_timeout_secs", "must be at least 1"));
        }
        let snap = &self.snapshot;
        if snap.interval_secs == 0 {
            issues.push(ConfigIssue::new("snapshot.interval_secs", "must be at least 1"));
        }
        if snap.keep == 0 {
            issues.push(ConfigIssue::new("snapshot.keep", "must be at least 1"));
        }
        if snap.store == SnapshotStoreKind::Dir && snap.dir.as_os_str().is_empty() {
            issues.push(ConfigIssue::new("snapshot.dir", "must name a directory"));
        }
        if snap.store == SnapshotStoreKind::Kafka {
            if !valid_topic_name(&snap.topic) {
                issues.push(ConfigIssue::new("snapshot.topic", format!("`{}` is not a valid topic name", snap.topic)));
            } else if let Some((other, _)) = named.iter().find(|(_, n)| **n == snap.topic) {
                issues.push(ConfigIssue::new("snapshot.topic", format!("`{}` is also {other}", snap.topic)));
            }
        }
        issues
    }

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

/// Whether a query API on `addr` with these tokens answers anyone who reaches it: no token,
/// beyond loopback. `run` refuses it unless `http.allow_unauthenticated`; the demo refuses it.
pub fn serves_data_to_anyone(addr: std::net::SocketAddr, tokens: &[String]) -> bool {
    tokens.is_empty() && !addr.ip().is_loopback()
}

/// The shortest bearer token accepted: a short one can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// librdkafka properties healthscore sets from its own settings; overriding them through the
/// pass-through maps would break a guarantee, so they are refused.
const CONSUMER_OWNED: &[&str] =
    &["bootstrap.servers", "group.id", "enable.auto.commit", "enable.partition.eof", "isolation.level"];
const PRODUCER_OWNED: &[&str] = &["bootstrap.servers", "transactional.id", "enable.idempotence"];

fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Deserializes the configuration `builder` builds, with every unknown key and every value of the
/// wrong type as an issue. serde stops at the first wrong value: it is reported, the default
/// takes its place and the parse runs again, so one run lists every wrong value of a file.
fn parse_reporting_all(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
) -> Result<(Option<Config>, Vec<ConfigIssue>), config::ConfigError> {
    let defaults = config::Config::try_from(&Config::default()).ok();
    let mut issues: Vec<ConfigIssue> = Vec::new();
    let mut replaced: Vec<String> = Vec::new();
    loop {
        let mut attempt = builder.clone();
        for key in &replaced {
            let default = defaults.as_ref().and_then(|d| d.get::<config::Value>(key).ok());
            let default = default.unwrap_or_else(|| config::ValueKind::Nil.into());
            attempt = attempt.set_override(key, default)?;
        }
        let raw = attempt.build()?;
        let mut unknown = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(raw, &mut track);
        let parsed: Result<Config, _> = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
        for key in unknown {
            if !issues.iter().any(|i| i.key == key) {
                issues.push(ConfigIssue::new(key, "unknown key"));
            }
        }
        let e = match parsed {
            Ok(config) => return Ok((Some(config), issues)),
            Err(e) => e,
        };
        let key = track.path().to_string();
        let message = e.to_string().replace(&format!(" for key `{key}`"), "");
        // The config crate's own words for a value that is no choice name only the Rust type.
        let reason = match message.split_once("does not have variant constructor ") {
            Some((head, value)) => {
                let name = head.trim_start_matches("enum ").trim();
                match CHOICES.iter().find(|(n, _)| *n == name) {
                    Some((_, choices)) => format!("`{value}` is not one of: {}", choices.join(", ")),
                    None => format!("`{value}` is not a valid choice"),
                }
            }
            None => message,
        };
        let stuck = key == "." || key.is_empty() || replaced.contains(&key) || replaced.len() >= 64;
        issues.push(ConfigIssue::new(
            if key == "." || key.is_empty() { "(file)".to_string() } else { key.clone() },
            reason,
        ));
        if stuck {
            return Ok((None, issues));
        }
        replaced.push(key);
    }
}

/// The names each enum setting accepts, for the message when a value is none of them.
const CHOICES: [(&str, &[&str]); 4] = [
    ("Promotion", &["manual", "auto"]),
    ("GroupProtocol", &["consumer", "classic"]),
    ("Guarantee", &["exactly_once", "at_least_once"]),
    ("SnapshotStoreKind", &["dir", "kafka", "none"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("healthscore-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", crate::hash::key32(toml)));
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kafka.processing_guarantee, Guarantee::ExactlyOnce);
        assert_eq!(c.kafka.commit_interval_ms, 100);
        assert!(c.kafka.commit_when_idle);
        assert_eq!(c.kafka.topics.inputs(), ["product-usage", "support", "billing"]);
    }

    #[test]
    fn file_values_and_environment_overrides() {
        let c = load(
            "[kafka]\nbrokers = \"a:1\"\nprocessing_guarantee = \"at_least_once\"\n[kafka.consumer]\n\"fetch.min.bytes\" = \"1\"\n",
            &[
                ("HEALTHSCORE__KAFKA__BROKERS", "b:2"),
                ("HEALTHSCORE__KAFKA__COMMIT_INTERVAL_MS", "250"),
                ("HEALTHSCORE__KAFKA__COMMIT_WHEN_IDLE", "false"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert!(!c.kafka.commit_when_idle);
        assert_eq!(c.kafka.commit_interval_ms, 250);
        assert_eq!(c.kafka.processing_guarantee, Guarantee::AtLeastOnce);
        assert_eq!(c.kafka.consumer.get("fetch.min.bytes").map(String::as_str), Some("1"));
    }

    #[test]
    fn a_value_that_is_no_choice_names_the_key_the_value_and_the_choices() {
        let e = load("[kafka]\nprocessing_guarantee = \"maybe_once\"\n", &[]).unwrap_err();
        let issue = &e.issues[0];
        assert_eq!(issue.key, "kafka.processing_guarantee", "{e}");
        assert_eq!(issue.reason, "`maybe_once` is not one of: exactly_once, at_least_once", "{e}");
    }

    #[test]
    fn every_choice_listed_is_accepted() {
        for (name, choices) in CHOICES {
            for choice in choices {
                let value = toml::Value::String(choice.to_string());
                let ok = match name {
                    "GroupProtocol" => value.try_into::<GroupProtocol>().is_ok(),
                    "Guarantee" => value.try_into::<Guarantee>().is_ok(),
                    "SnapshotStoreKind" => value.try_into::<SnapshotStoreKind>().is_ok(),
                    "Promotion" => value.try_into::<crate::learn::Promotion>().is_ok(),
                    other => panic!("no test for {other}"),
                };
                assert!(ok, "{name} does not accept {choice}");
            }
        }
    }

    #[test]
    fn an_environment_variable_typo_names_the_variable() {
        let e =
            load("", &[("HEALTHSCORE__KAFKA__BROKRES", "a:1"), ("HEALTHSCORE__KAFKA__COMMIT_INTERVAL_MS", "often")])
                .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("kafka.brokres (environment variable HEALTHSCORE__KAFKA__BROKRES): unknown key"),
            "{text}"
        );
        assert!(text.contains("environment variable HEALTHSCORE__KAFKA__COMMIT_INTERVAL_MS"), "{text}");
    }

    #[test]
    fn several_wrong_types_in_one_file_are_reported_in_one_run() {
        let e = load(
            "[kafka]\ncommit_interval_ms = \"soon\"\nprocessing_guarantee = \"maybe_once\"\n[snapshot]\nkeep = \"many\"\n[engine]\ncolour = 1\n",
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = e.issues.iter().map(|i| i.key.as_str()).collect();
        for want in ["kafka.commit_interval_ms", "kafka.processing_guarantee", "snapshot.keep", "engine.colour"] {
            assert!(keys.contains(&want), "missing {want} in {keys:?}\n{e}");
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let e = load(
            "colour = 1\n[kafka]\nbrokerz = \"x\"\ncommit_interval_ms = 0\n[kafka.topics]\noutput = \"billing\"\ndead_letter = \"bad topic\"\n[kafka.producer]\n\"transactional.id\" = \"x\"\n[engine]\nretention_days = 10\n[http]\nlisten = \"localhost\"\n",
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = e.issues.iter().map(|i| i.key.as_str()).collect();
        for want in [
            "colour",
            "kafka.brokerz",
            "kafka.commit_interval_ms",
            "kafka.topics.output",
            "kafka.topics.dead_letter",
            "kafka.producer.\"transactional.id\"",
            "engine.retention_days",
            "http.listen",
        ] {
            assert!(keys.contains(&want), "missing {want} in {keys:?}\n{e}");
        }
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid_and_shows_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let c = Config::load(Some(&path), std::iter::empty()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let e = load("[kafka]\nprocessing_guarantee = \"twice\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_str(Some(toml), "test.toml", env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_both_must_be_readable() {
        let e = load("[http]\ntls_cert = \"/etc/hostname\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("http.tls_key: missing"), "{e}");
        let e = load("[http]\ntls_key = \"/etc/hostname\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("http.tls_cert: missing"), "{e}");
        let e =
            load("[http]\ntls_cert = \"/no/such.crt\"\ntls_key = \"/etc/hostname\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("http.tls_cert: cannot read /no/such.crt"), "{e}");
    }

    #[test]
    fn the_query_api_beyond_loopback_needs_a_token_or_an_explicit_choice() {
        let err = load("[http]\nlisten = \"0.0.0.0:9898\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("http.token") && err.contains("0.0.0.0:9898 to anyone"), "{err}");
        assert!(load("", &[]).is_ok(), "the default listens on loopback");
        assert!(load("[http]\nlisten = \"0.0.0.0:9898\"\nallow_unauthenticated = true\n", &[]).is_ok());
        let token = "0123456789abcdef0123";
        let c = load("[http]\nlisten = \"0.0.0.0:9898\"\n", &[("HEALTHSCORE__HTTP__TOKEN", token)]).unwrap();
        assert_eq!(c.http.tokens().unwrap(), vec![token.to_string()]);
        let short = load("[http]\ntoken = \"abc\"\n", &[]).unwrap_err().to_string();
        assert!(short.contains("http.token") && short.contains("at least 16"), "{short}");
    }

    #[test]
    fn a_token_file_holds_one_token_per_line_and_an_unreadable_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("hs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "# rotating\nnew-token-0123456789\n\nold-token-0123456789\n").unwrap();
        let toml = format!("[http]\nlisten = \"0.0.0.0:1\"\ntoken_file = {:?}\n", file.display().to_string());
        let c = load(&toml, &[]).unwrap();
        assert_eq!(c.http.tokens().unwrap(), vec!["new-token-0123456789", "old-token-0123456789"]);
        let missing = load(&toml.replace("token\"", "nothing\""), &[]).unwrap_err().to_string();
        assert!(missing.contains("http.token_file") && missing.contains("cannot read"), "{missing}");
        std::fs::write(&file, "# empty\n").unwrap();
        let empty = load(&toml, &[]).unwrap_err().to_string();
        assert!(empty.contains("holds no token"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_config_and_debug_output_never_show_the_token() {
        let secret = "s3cret-token-0123456789";
        let c = load("[http]\nlisten = \"0.0.0.0:9898\"\n", &[("HEALTHSCORE__HTTP__TOKEN", secret)]).unwrap();
        let printed = c.to_toml();
        assert!(!printed.contains(secret) && printed.contains(REDACTED), "{printed}");
        assert!(!format!("{c:?}").contains(secret));
    }
}
