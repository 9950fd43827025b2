//! Secrets in the service configuration: where they may come from, and that they are never
//! printed.
//!
//! - **From the environment or a file.** A librdkafka pass-through value (`kafka.client`,
//!   `kafka.consumer`, `kafka.producer`) or `http.token` may be, or contain, `${env:NAME}` (the
//!   variable's value) or `${file:PATH}` (the file's content, without its trailing newline),
//!   so a password sits in a mounted Secret or the pod's environment rather than in a
//!   ConfigMap. An unset variable or an unreadable file is a configuration error naming the key.
//! - **Dotted librdkafka keys from the environment.** `HEALTHSCORE__KAFKA__CLIENT__SASL_PASSWORD`
//!   sets `kafka.client."sasl.password"`: in those three maps an environment variable's key is
//!   lower-cased and its `_` become `.` (librdkafka's settable properties have no `_`). The
//!   `config` crate cannot do this itself: a `.` in a key is its path separator.
//! - **Redaction.** Keys that look secret ([`is_secret_key`]) print as [`REDACTED`] in
//!   `check-config`, in `Debug` and so in every log line.

use std::collections::BTreeMap;

/// What a secret prints as.
pub const REDACTED: &str = "(redacted)";

/// The librdkafka pass-through maps of `[kafka]`, in the order they are applied.
pub const LIBRDKAFKA_MAPS: [&str; 3] = ["client", "consumer", "producer"];

/// Whether a configuration key names a secret: `*password*`, `*secret*`, `*token*`,
/// `sasl.oauthbearer.*`, `ssl.key.*` (the private key and its password), `sasl.jaas.config`.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token"].iter().any(|w| k.contains(w))
        || k.starts_with("sasl.oauthbearer.")
        || k.starts_with("ssl.key.")
        || k == "ssl_key"
        || k == "sasl.jaas.config"
}

/// `text` with `value` cut out where `key` names a secret: librdkafka quotes the values it
/// refuses or fails on, and a secret's must not reach a log line or an error message.
pub fn redact_value(text: &str, key: &str, value: &str) -> String {
    if is_secret_key(key) && !value.is_empty() {
        text.replace(value, REDACTED)
    } else {
        text.to_string()
    }
}

/// A `BTreeMap` that prints its secret-looking values as [`REDACTED`] in `Debug`.
pub struct RedactedMap<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, if is_secret_key(k) { REDACTED } else { v.as_str() })))
            .finish()
    }
}

/// Replaces every `${env:NAME}` and `${file:PATH}` in `value`; `$${` is a literal `${`. Other
/// text, including a `${` of another form, is kept as written.
pub fn resolve(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let reference = &after[..end];
        if let Some(name) = reference.strip_prefix("env:") {
            out.push_str(&env(name).ok_or_else(|| format!("refers to ${{env:{name}}}, which is not set"))?);
        } else if let Some(path) = reference.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("refers to ${{file:{path}}}, which cannot be read: {e}"))?;
            out.push_str(text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t)));
        } else {
            out.push_str(&rest[at..at + 2 + end + 1]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `HEALTHSCORE__KAFKA__{CLIENT,CONSUMER,PRODUCER}__<KEY>` variables out of `env`:
/// returns them as (map, librdkafka key, value), the key lower-cased with `_` as `.`.
pub fn take_librdkafka_overrides(
    prefix: &str,
    env: &mut BTreeMap<String, String>,
) -> Vec<(&'static str, String, String)> {
    let mut taken = Vec::new();
    env.retain(|name, value| {
        for map in LIBRDKAFKA_MAPS {
            let head = format!("{prefix}__KAFKA__{}__", map.to_ascii_uppercase());
            if let Some(key) = name.strip_prefix(&head) {
                taken.push((map, key.to_ascii_lowercase().replace('_', "."), value.clone()));
                return false;
            }
        }
        true
    });
    taken
}

/// Redacts the secret-looking keys of `[kafka]`'s librdkafka maps in a printed configuration.
pub fn redact_toml(config: &mut toml::Value) {
    let Some(kafka) = config.get_mut("kafka").and_then(toml::Value::as_table_mut) else { return };
    for map in LIBRDKAFKA_MAPS {
        if let Some(table) = kafka.get_mut(map).and_then(toml::Value::as_table_mut) {
            for (key, value) in table.iter_mut() {
                if is_secret_key(key) {
                    *value = toml::Value::String(REDACTED.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cret".to_string())
    }

    #[test]
    fn references_are_replaced_and_everything_else_is_kept() {
        assert_eq!(resolve("${env:PW}", &env).unwrap(), "s3cret");
        assert_eq!(resolve("user:${env:PW}@x", &env).unwrap(), "user:s3cret@x");
        assert_eq!(resolve("plain", &env).unwrap(), "plain");
        assert_eq!(resolve("$${env:PW}", &env).unwrap(), "${env:PW}");
        assert_eq!(resolve("${other} and ${", &env).unwrap(), "${other} and ${");
        let e = resolve("${env:NOPE}", &env).unwrap_err();
        assert!(e.contains("NOPE") && e.contains("not set"), "{e}");
        let dir = std::env::temp_dir().join(format!("healthscore-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-a-file\n").unwrap();
        assert_eq!(resolve(&format!("${{file:{}}}", file.display()), &env).unwrap(), "from-a-file");
        assert!(resolve("${file:/no/such/file}", &env).unwrap_err().contains("cannot be read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_looking_keys_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.jaas.config",
            "some_token",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["sasl.username", "sasl.mechanism", "security.protocol", "ssl.ca.location", "linger.ms"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn debug_output_hides_secret_values_and_shows_the_rest() {
        let map: BTreeMap<String, String> =
            [("sasl.password", "hunter2-hunter2"), ("sasl.username", "svc")].map(|(k, v)| (k.into(), v.into())).into();
        let printed = format!("{:?}", RedactedMap(&map));
        assert!(!printed.contains("hunter2") && printed.contains(REDACTED) && printed.contains("svc"), "{printed}");
    }

    #[test]
    fn dotted_librdkafka_keys_come_from_the_environment() {
        let mut vars: BTreeMap<String, String> = [
            ("HEALTHSCORE__KAFKA__CLIENT__SASL_PASSWORD", "pw"),
            ("HEALTHSCORE__KAFKA__PRODUCER__LINGER_MS", "20"),
            ("HEALTHSCORE__KAFKA__BROKERS", "b:9092"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let taken = take_librdkafka_overrides("HEALTHSCORE", &mut vars);
        assert_eq!(
            taken,
            vec![
                ("client", "sasl.password".to_string(), "pw".to_string()),
                ("producer", "linger.ms".into(), "20".into())
            ]
        );
        assert_eq!(vars.keys().collect::<Vec<_>>(), vec!["HEALTHSCORE__KAFKA__BROKERS"]);
    }
}
