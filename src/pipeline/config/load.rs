//! Loading the service configuration: the TOML file, `HEALTHSCORE__…` environment overrides
//! (dotted librdkafka keys included), `${env:…}`/`${file:…}` references, and every problem
//! reported at once with its key ([`ConfigError`]). It may not judge values (that is
//! `validate`, which it calls) nor hold settings of its own (they are the structs in `mod.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use super::Config;
use crate::pipeline::secrets;
use crate::score::ConfigIssue;

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
    use crate::pipeline::config::{GroupProtocol, Guarantee, SnapshotStoreKind};

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
