//! The service's Kafka clients over TLS with SASL/SCRAM-SHA-512, on a real broker: the
//! consumer, the transactional producer, the `kafka` snapshot store and `generate --brokers`
//! all take their connection settings from `[kafka.client]`, the password from a file through
//! `${file:...}`; wrong credentials and an untrusted certificate stop the service at start
//! with a message that says which.
//!
//! The broker is the one `scripts/kafka.sh` starts (`make test-kafka`): besides its PLAINTEXT
//! listener it has a SASL_SSL one with a throw-away CA, and `scripts/kafka.sh secure` names a
//! client properties file for it. Against another cluster, set `KAFKA_SECURE_CLIENT` to such
//! a file (librdkafka names: `bootstrap.servers`, `security.protocol`, `sasl.*`, `ssl.*`).
//! Topics are created and read back over the PLAINTEXT listener (`KAFKA_BROKERS`): what is
//! under test is healthscore's clients.

mod kafka_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use healthscore::pipeline::config::{Config, Topics};
use healthscore::pipeline::send::{input_producer_for, send_events};
use kafka_support::*;

/// The SASL_SSL listener's client properties (see the module doc).
fn secure_client() -> BTreeMap<String, String> {
    let path = match std::env::var_os("KAFKA_SECURE_CLIENT") {
        Some(p) => PathBuf::from(p),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
            let out = Command::new(script).arg("secure").output().expect("run scripts/kafka.sh secure");
            assert!(
                out.status.success(),
                "no SASL_SSL listener: set KAFKA_SECURE_CLIENT to a client properties file, or run the broker \
                 of scripts/kafka.sh (make test-kafka): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not key=value: {l}", path.display()));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// A scratch directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("security-{name}-{}", nanos()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A service configuration for the secure listener: brokers and `[kafka.client]` from
/// `client`, the password written to its own file and read through `${file:...}`, so it is in
/// no configuration file; `password` replaces the right one when set.
fn secure_config(dir: &Path, client: &BTreeMap<String, String>, password: Option<&str>) -> PathBuf {
    let password_file = dir.join("sasl-password");
    std::fs::write(&password_file, password.unwrap_or(&client["sasl.password"])).unwrap();
    let mut toml = format!("[kafka]\nbrokers = {:?}\n\n[kafka.client]\n", client["bootstrap.servers"]);
    for (k, v) in client {
        match k.as_str() {
            "bootstrap.servers" => {}
            "sasl.password" => {
                toml.push_str(&format!("{k:?} = {:?}\n", format!("${{file:{}}}", password_file.display())))
            }
            _ => toml.push_str(&format!("{k:?} = {v:?}\n")),
        }
    }
    let file = dir.join("service.toml");
    std::fs::write(&file, toml).unwrap();
    file
}

/// `run --config FILE` against the secure listener (the environment `Service::start` sets
/// names the plaintext one: overridden here).
fn start_secure(t: &Topics, group: &str, txn: &str, config: &Path, client: &BTreeMap<String, String>) -> Service {
    Service::start(
        t,
        group,
        "exactly_once",
        txn,
        &[
            ("--config", config.to_str().unwrap()),
            ("HEALTHSCORE__KAFKA__BROKERS", &client["bootstrap.servers"]),
            ("HEALTHSCORE__SNAPSHOT__STORE", "kafka"),
        ],
    )
}

#[test]
#[ignore = "needs a Kafka broker with a SASL_SSL listener: make test-kafka"]
fn over_tls_with_scram_every_client_works_and_outputs_equal_replay() {
    let client = secure_client();
    let dir = scratch("e2e");
    let config_file = secure_config(&dir, &client, None);
    let t = topics("sasl");
    create_all(&t, 2);
    create_topics(&[(&format!("{}-state", t.usage), 2)]);
    let events = population(60, 40, 11);
    let half = events.partition_point(|e| e.timestamp < events[events.len() / 2].timestamp);

    // The input producer with the service's connection settings (what generate --config uses).
    let mut config = Config::load(Some(&config_file), std::iter::empty()).unwrap();
    config.kafka.topics = t.clone();
    let producer = input_producer_for(&config).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = std::sync::atomic::AtomicU64::new(0);
    send_events(&producer, &t, events[..half].iter().cloned(), None, &stop, &sent).unwrap();

    // First half; a graceful stop snapshots to the state topic over SASL_SSL ...
    let group = "sasl-group";
    let mut first = start_secure(&t, group, "sasl-1", &config_file, &client);
    wait_caught_up(&t, group, &mut [&mut first]);
    let log = first.logs();
    assert!(first.stop().success(), "graceful stop exits 0; log:\n{log}");
    assert!(!log.contains(&client["sasl.password"]), "the password is never logged");
    assert!(!read_all(&format!("{}-state", t.usage), "read_committed").is_empty(), "snapshots reached the state topic");

    // ... and the next instance restores from it, over SASL_SSL too, with no local copy.
    send_events(&producer, &t, events[half..].iter().cloned(), None, &stop, &sent).unwrap();
    let mut second = start_secure(&t, group, "sasl-2", &config_file, &client);
    wait_caught_up(&t, group, &mut [&mut second]);
    let log = second.logs();
    assert!(second.stop().success());
    assert!(log.contains("restored from snapshot") && log.contains("-state["), "restored from the state topic:\n{log}");
    assert_same(&outputs(&t.output, "read_committed"), &replayed(&events, 2));
}

#[test]
#[ignore = "needs a Kafka broker with a SASL_SSL listener: make test-kafka"]
fn generate_sends_over_tls_with_scram_from_its_config() {
    let client = secure_client();
    let dir = scratch("generate");
    let config_file = secure_config(&dir, &client, None);
    let t = topics("sasl-gen");
    create_all(&t, 2);
    let mut toml = std::fs::read_to_string(&config_file).unwrap();
    toml.push_str(&format!(
        "\n[kafka.topics]\nusage = {:?}\nsupport = {:?}\nbilling = {:?}\n",
        t.usage, t.support, t.billing
    ));
    std::fs::write(&config_file, toml).unwrap();
    let bin = env!("CARGO_BIN_EXE_healthscore");
    let args = ["generate", "--customers", "20", "--days", "20", "--seed", "3"];
    let file = dir.join("events.ndjson");
    let written = Command::new(bin).args(args).arg("--output").arg(&file).status().unwrap();
    assert!(written.success());
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    let out = Command::new(bin)
        .args(args)
        .args(["--brokers", &client["bootstrap.servers"], "--config"])
        .arg(&config_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "generate --brokers --config: {}", String::from_utf8_lossy(&out.stderr));
    let received: usize =
        [&t.usage, &t.support, &t.billing].iter().map(|topic| read_all(topic, "read_committed").len()).sum();
    assert_eq!(received, lines, "every generated line reached the input topics over SASL_SSL");
}

/// `run` with `config`, which must stop at start within `limit` with a non-zero exit; returns
/// its log.
fn refused_at_start(t: &Topics, config: &Path, client: &BTreeMap<String, String>, limit: Duration) -> String {
    let bin = env!("CARGO_BIN_EXE_healthscore");
    let log = config.with_extension("log");
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("HEALTHSCORE__KAFKA__TOPICS__USAGE", &t.usage)
        .env("HEALTHSCORE__KAFKA__TOPICS__SUPPORT", &t.support)
        .env("HEALTHSCORE__KAFKA__TOPICS__BILLING", &t.billing)
        .env("HEALTHSCORE__KAFKA__TOPICS__OUTPUT", &t.output)
        .env("HEALTHSCORE__KAFKA__TOPICS__DEAD_LETTER", &t.dead_letter)
        .env("HEALTHSCORE__HTTP__LISTEN", "127.0.0.1:0")
        .env("HEALTHSCORE__KAFKA__BROKERS", &client["bootstrap.servers"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}; log:\n{}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "exits non-zero; log:\n{text}");
    assert!(!text.contains(&client["sasl.password"]), "the password is never logged:\n{text}");
    text
}

#[test]
#[ignore = "needs a Kafka broker with a SASL_SSL listener: make test-kafka"]
fn wrong_credentials_or_an_untrusted_certificate_stop_the_service_at_start_saying_which() {
    let client = secure_client();
    let t = topics("sasl-refused");
    create_all(&t, 1);

    let dir = scratch("wrong-password");
    let config = secure_config(&dir, &client, Some("not-the-password"));
    let log = refused_at_start(&t, &config, &client, Duration::from_secs(15));
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("refused the login") && last.contains("invalid credentials") && last.contains("sasl.password"),
        "the error names the refused login and the settings to check:\n{log}"
    );
    assert!(!log.contains("not-the-password"), "not even the wrong password is logged:\n{log}");

    // The system's trust store does not know the test CA.
    let dir = scratch("untrusted");
    let mut untrusted = client.clone();
    untrusted.remove("ssl.ca.location");
    let config = secure_config(&dir, &untrusted, None);
    let log = refused_at_start(&t, &config, &client, Duration::from_secs(15));
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("TLS with Kafka")
            && last.contains("certificate verify failed")
            && last.contains("ssl.ca.location"),
        "the error names the certificate failure and the setting to check:\n{log}"
    );
}
