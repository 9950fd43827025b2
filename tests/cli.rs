//! The `healthscore` binary as an operator runs it: `check-config` on a service configuration
//! with secrets in it, and with librdkafka properties it would refuse at start.

use std::path::PathBuf;
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("healthscore-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `healthscore check-config --config <file>` with only `env` as the environment.
fn check_config(file: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthscore"));
    cmd.arg("check-config").arg("--config").arg(file).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `check-config` on `toml` (written to a scratch file), with no environment: it must refuse
/// it; returns what it printed on standard error.
fn refused(name: &str, toml: &str) -> String {
    let dir = scratch(name);
    let file = dir.join("service.toml");
    std::fs::write(&file, toml).unwrap();
    let out = check_config(&file, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn check_config_takes_secrets_from_the_environment_and_files_and_never_prints_them() {
    let dir = scratch("secrets");
    let key_password = dir.join("ssl-key-password");
    std::fs::write(&key_password, "file-secret-4e1b\n").unwrap();
    let file = dir.join("service.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka.client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "healthscore"
"sasl.password" = "${{env:KAFKA_PASSWORD}}"
"ssl.key.password" = "${{file:{}}}"
"#,
            key_password.display()
        ),
    )
    .unwrap();
    let out = check_config(
        &file,
        &[
            ("KAFKA_PASSWORD", "env-secret-9c2d"),
            // A dotted librdkafka key from the environment: `_` stands for `.`.
            ("HEALTHSCORE__KAFKA__PRODUCER__LINGER_MS", "20"),
            ("HEALTHSCORE__KAFKA__CLIENT__SSL_KEYSTORE_PASSWORD", "env-secret-77aa"),
            ("HEALTHSCORE__HTTP__TOKEN", "http-secret-0123456789"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for secret in ["env-secret-9c2d", "file-secret-4e1b", "env-secret-77aa", "http-secret-0123456789"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} printed:\n{stdout}{stderr}");
    }
    for shown in [
        r#""sasl.password" = "(redacted)""#,
        r#""ssl.key.password" = "(redacted)""#,
        r#""ssl.keystore.password" = "(redacted)""#,
        r#""sasl.username" = "healthscore""#,
        r#""linger.ms" = "20""#,
        r#"token = "(redacted)""#,
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing:\n{stdout}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_refuses_what_librdkafka_would_refuse_at_start_naming_every_key() {
    let stderr = refused(
        "unknown",
        r#"
[kafka.consumer]
"no.such.property" = "1"
compression_type = "lz4"

[kafka.producer]
"linger.ms" = "soon"
"#,
    );
    for key in [
        r#"kafka.consumer."no.such.property""#,
        r#"kafka.consumer."compression_type""#,
        r#"kafka.producer."linger.ms""#,
    ] {
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
}

#[test]
fn a_missing_secret_and_a_connection_setting_for_one_client_only_are_named() {
    let stderr = refused(
        "missing",
        r#"
[kafka.client]
"sasl.password" = "${env:NOT_SET_ANYWHERE}"

[kafka.consumer]
"security.protocol" = "SSL"
"#,
    );
    assert!(stderr.contains(r#"kafka.client."sasl.password""#) && stderr.contains("NOT_SET_ANYWHERE"), "{stderr}");
    assert!(stderr.contains(r#"kafka.consumer."security.protocol""#) && stderr.contains("[kafka.client]"), "{stderr}");
}
