//! Checking a parsed configuration: values that parse but make no sense (empty names, topics
//! that clash, librdkafka keys healthscore owns, a query API open to anyone, unreadable TLS
//! files), each problem with its key. It may not read the environment or change a setting;
//! loading and reporting are `load`'s.

use super::{Config, SnapshotStoreKind};
use crate::score::ConfigIssue;

impl Config {
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

#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::pipeline::config::{ConfigError, REDACTED};

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
