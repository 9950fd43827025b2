//! `healthscore demo`: the whole pipeline on a fresh machine with no Kafka installed.
//!
//! librdkafka's in-process mock cluster stands in for the brokers; the built-in generator
//! sends a synthetic population (healthy, declining, silently churning, expanding, onboarding
//! and payment-trouble customers, with bursts, duplicates and a little bad input) to the three
//! topics, and the real processor scores it, at-least-once (the mock has no transactions),
//! printing a summary every second.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::config::{Config, GroupProtocol, Guarantee, SnapshotStoreKind};
use super::http::{Api, BackgroundServer};
use super::processor::{Processor, Shared, Stats};
use super::send::{input_producer, send_events};
use crate::generate::{GenConfig, Generator};
use crate::score::{Band, Scorecard};

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub customers: u32,
    pub days: u32,
    pub seed: u64,
    pub partitions: i32,
    /// Input events per second the generator sends.
    pub rate: f64,
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Print the summary every this often.
    pub every: Duration,
    /// Serve the HTTP endpoints (metrics, health, query API) here; port 0 picks a free one.
    pub http: Option<SocketAddr>,
    /// Bearer tokens for the query API (the service's `[http]` rule: needed beyond loopback).
    pub http_tokens: Vec<String>,
}

/// Counts the demo's summary shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DemoSummary {
    pub sent: u64,
    pub consumed: u64,
    pub customers: usize,
    pub bands: [usize; 3],
    pub score_changes: u64,
    pub alerts: u64,
    pub dead_letters: u64,
}

/// Runs the demo until `stop` is set or the duration passes; returns the last summary.
pub fn run_demo(
    options: &DemoOptions,
    scorecard: Arc<Scorecard>,
    stop: Arc<AtomicBool>,
    mut print: impl FnMut(&str),
) -> anyhow::Result<DemoSummary> {
    let mock = MockCluster::new(1).map_err(|e| anyhow!("cannot start the mock cluster: {e}"))?;
    let mut config = on_mock_cluster(&mock, options.partitions)?;
    config.kafka.group_id = "healthscore-demo".into();
    let t = &config.kafka.topics;
    print(&format!(
        "mock Kafka cluster at {} (watch: kcat -b {} -C -t {})",
        config.kafka.brokers, config.kafka.brokers, t.output
    ));
    let config = Arc::new(config);

    let stats = Arc::new(Stats::default());
    let processor = Processor::new(config.clone(), scorecard.clone(), stats.clone())?;
    let shared = processor.shared.clone();
    // Dropped when the demo returns, which stops it.
    let _server = match options.http {
        Some(addr) => {
            if super::config::serves_data_to_anyone(addr, &options.http_tokens) {
                anyhow::bail!(
                    "--http {addr} would serve customer data to anyone: listen on 127.0.0.1, or set a token \
                     (HEALTHSCORE__HTTP__TOKEN, as for `run`)"
                );
            }
            let api = Arc::new(
                Api::new(shared.clone(), scorecard, options.partitions).with_tokens(options.http_tokens.clone()),
            );
            let server = BackgroundServer::start(addr, api)?;
            print(&format!(
                "HTTP on http://{} (/metrics /healthz /readyz /customers?band=red /customers/{{id}} /scorecard)",
                server.addr
            ));
            Some(server)
        }
        None => None,
    };
    let worker_stop = stop.clone();
    let worker = std::thread::Builder::new()
        .name("processor".into())
        .spawn(move || processor.run(&worker_stop))
        .context("cannot start the processor thread")?;

    let sent = Arc::new(AtomicU64::new(0));
    let gen =
        GenConfig { customers: options.customers, days: options.days, seed: options.seed, ..GenConfig::default() };
    let (send_stop, send_count, brokers, topics, rate) =
        (stop.clone(), sent.clone(), config.kafka.brokers.clone(), config.kafka.topics.clone(), options.rate);
    let sender = std::thread::Builder::new()
        .name("generator".into())
        .spawn(move || -> anyhow::Result<u64> {
            let producer = input_producer(&brokers)?;
            send_events(&producer, &topics, Generator::new(gen), Some(rate), &send_stop, &send_count)
        })
        .context("cannot start the generator thread")?;

    let started = Instant::now();
    let mut last = (started, 0u64);
    let mut latest = DemoSummary::default();
    while !stop.load(Relaxed) && !worker.is_finished() {
        std::thread::sleep(options.every.min(Duration::from_millis(200)));
        let now = Instant::now();
        if now.duration_since(last.0) < options.every {
            if options.duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            continue;
        }
        let summary = summarise(&shared, sent.load(Relaxed));
        // Stopped meanwhile (Ctrl-C, SIGTERM): the processor may have released its partitions
        // before this summary counted them. The last one taken before the stop has the last
        // known counts.
        if stop.load(Relaxed) || worker.is_finished() {
            break;
        }
        latest = summary.clone();
        let rate = (summary.consumed - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, summary.consumed);
        print(&format!(
            "{:>4}s  sent {:>9}  consumed {:>9} ({:>7.0}/s)  customers {:>6}: green {:>5} yellow {:>5} red {:>5}  score changes {:>7}  alerts {:>6}  dead letters {:>4}",
            started.elapsed().as_secs(),
            summary.sent,
            summary.consumed,
            rate,
            summary.customers,
            summary.bands[Band::Green as usize],
            summary.bands[Band::Yellow as usize],
            summary.bands[Band::Red as usize],
            summary.score_changes,
            summary.alerts,
            summary.dead_letters,
        ));
        for alert in shared.take_recent_alerts() {
            print(&format!("        alert  {}", terminal_safe(&alert)));
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    stop.store(true, Relaxed);
    sender.join().map_err(|_| anyhow!("generator thread panicked"))??;
    worker.join().map_err(|_| anyhow!("processor thread panicked"))??;
    // The customers as last seen (leaving the group released them); the counters as final.
    let last = summarise(&shared, sent.load(Relaxed));
    Ok(DemoSummary { customers: latest.customers, bands: latest.bands, ..last })
}

/// `text` with every control character (escape sequences, carriage returns, bells) written as
/// `\u{..}`: a customer id or a feature name comes from the input, and raw it could move the
/// cursor, recolour or clear the operator's terminal.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn summarise(shared: &Shared, sent: u64) -> DemoSummary {
    let stats = &shared.stats;
    let mut s = DemoSummary {
        sent,
        consumed: stats.consumed.iter().map(|c| c.load(Relaxed)).sum(),
        score_changes: stats.score_changes.load(Relaxed),
        alerts: stats.alerts.load(Relaxed),
        dead_letters: stats.dead_letters.load(Relaxed),
        ..Default::default()
    };
    let state = shared.lock();
    for task in state.tasks.values() {
        for c in task.engine.customers() {
            s.customers += 1;
            if let Some(band) = c.score.band {
                s.bands[band as usize] += 1;
            }
        }
    }
    s
}

/// The default configuration pointed at `mock`, with the input, output and dead-letter topics
/// created there with `partitions` partitions each: at-least-once (the mock has no
/// transactions), classic group protocol, and no snapshots (the mock cluster is new on every
/// run: a snapshot of an earlier run would not match it).
pub(crate) fn on_mock_cluster(
    mock: &MockCluster<'_, DefaultProducerContext>,
    partitions: i32,
) -> anyhow::Result<Config> {
    let mut config = Config::default();
    config.kafka.brokers = mock.bootstrap_servers();
    config.kafka.group_protocol = GroupProtocol::Classic;
    config.kafka.processing_guarantee = Guarantee::AtLeastOnce;
    config.snapshot.store = SnapshotStoreKind::None;
    let t = &config.kafka.topics;
    for topic in [&t.usage, &t.support, &t.billing, &t.output, &t.dead_letter] {
        mock.create_topic(topic, partitions, 1).map_err(|e| anyhow!("cannot create topic {topic}: {e}"))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_customer_id_with_terminal_escape_sequences_is_printed_escaped() {
        let shown = super::terminal_safe("alert cus_1\u{1b}[2J\u{1b}]0;owned\u{7}\r x ünï");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "alert cus_1\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{d} x ünï");
    }
}
