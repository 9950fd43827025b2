//! `make bench-kafka`: healthscore against a real broker, compared in the same run with a
//! consumer that only counts (the ceiling any processor can reach here).
//!
//! 1. Loads a fixed synthetic population (2,000 customers x 90 days, ~6 M events, by default)
//!    into the three input topics.
//! 2. Ceiling: an rdkafka consumer reads all of it and only counts, once calling `poll` per
//!    message and once reading in batches.
//! 3. `healthscore run` drains it from the beginning, at-least-once and exactly-once (fresh
//!    groups), timed from process start until the group has committed the end of every input;
//!    CPU from /proc (the service's, its two threads' from its log, and a local broker's for
//!    every drain, readers' too). Steps 2 and 3 are repeated `BENCH_ROUNDS` times (default 5), and the
//!    summary gives the median of each figure and of each round's ratios.
//! 4. Live maximum: with the service running exactly-once, 3 M events are offered at half the
//!    at-least-once drain rate, and the rate the load generator actually sends them at beside the
//!    broker and the service is the most live traffic this machine carries. A drain has the two
//!    cores to itself; live traffic shares them with its own producer.
//! 5. Latency: load at half the at-least-once drain rate, or at half the live maximum when the
//!    machine did not carry that, plus a probe every 10 ms: the first event of a new customer,
//!    which always yields a `score_changed`. Produce-to-visible = from sending the probe until a
//!    read_committed consumer sees its output.
//!
//! Before the rounds, `BENCH_WARMUP_ROUNDS` (default 1) drains of each mode are run and not
//! counted, so the broker's JIT has compiled what serving the service takes.
//!
//! Needs `KAFKA_BROKERS`; `BENCH_CUSTOMERS` / `BENCH_DAYS` change the population,
//! `BENCH_LATENCY_RATE` fixes the load offered in steps 4 and 5, and `BENCH_LOAD_COMPRESSION`
//! the live load's codec (lz4, as `healthscore generate` sends).

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use healthscore::event::{format_rfc3339, parse_date_or_datetime};
use healthscore::generate::{GenConfig, GeneratedEvent, Generator};
use healthscore::pipeline::config::Topics;
use healthscore::pipeline::kafka::{FetchQueue, Fetched, FETCH_SETTINGS};
use healthscore::pipeline::send::{input_producer, input_producer_config, send_events};
use kafka_support::*;

const PARTITIONS: i32 = 6;

/// The service as shipped: the test helper makes the merge wait for reproducibility and
/// snapshots every second; undo both. Logs at info, so each run's log (under the target's tmp
/// directory) ends with where the processing thread's time went.
const DEFAULTS: &[(&str, &str)] = &[
    ("RUST_LOG", "info,rdkafka=warn"),
    ("HEALTHSCORE__PIPELINE__MAX_TASK_IDLE_MS", "0"),
    ("HEALTHSCORE__SNAPSHOT__INTERVAL_SECS", "60"),
];

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds a process has used so far (user + system), from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// The machine's CPU time so far, in seconds over all cores: (busy, idle, stolen by the
/// hypervisor), from /proc/stat. A drain's share of these tells a round slowed by someone else's
/// load (steal, or no idle time left) from one slowed by its own work.
fn machine_secs() -> [f64; 3] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .map(|l| l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / 100.0;
    // user nice system idle iowait irq softirq steal
    [at(0) + at(1) + at(2) + at(5) + at(6), at(3) + at(4), at(7)]
}

struct Drain {
    events: u64,
    secs: f64,
    cpu: f64,
    /// The machine's CPU seconds over the drain: busy, idle, stolen.
    machine: [f64; 3],
    /// The service's processing and polling threads' own CPU seconds, from its log (not for
    /// the readers): what each costs, apart from the time it waited for a core.
    threads: Option<[f64; 2]>,
    /// The local broker's CPU seconds over the drain (when it runs on this machine): serving
    /// fetches costs it differently per client, and it shares the cores with the drain.
    broker: Option<f64>,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.events as f64 / 1e6)
    }
    /// CPU seconds per million events of this drain, as a table cell ("—" when not known).
    fn per_million_cell(&self, secs: Option<f64>) -> String {
        secs.map_or("—".into(), |secs| format!("{:.2}", secs / (self.events as f64 / 1e6)))
    }
    /// The processing and polling threads' CPU seconds per million events, as table cells.
    fn threads_per_million(&self) -> [String; 2] {
        [self.per_million_cell(self.threads.map(|t| t[0])), self.per_million_cell(self.threads.map(|t| t[1]))]
    }
    /// The local broker's CPU seconds per million events, as a table cell.
    fn broker_per_million(&self) -> String {
        self.per_million_cell(self.broker)
    }
    /// Share of the machine's CPU time that was idle, and that the hypervisor took.
    fn idle_and_steal(&self) -> (f64, f64) {
        let total: f64 = self.machine.iter().sum();
        (self.machine[1] / total, self.machine[2] / total)
    }
}

/// The pid of a broker started by `scripts/kafka.sh` on this machine (its command line names
/// the script's state directory), if one runs.
fn local_broker() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("healthscore-kafka") && cmdline.contains("server.properties")).then_some(pid)
    })
}

/// CPU seconds the local broker has used so far, if there is one.
fn broker_cpu() -> Option<f64> {
    local_broker().map(cpu_secs)
}

/// The local broker's CPU seconds since `before` (a [`broker_cpu`] reading), if there is one.
fn broker_since(before: Option<f64>) -> Option<f64> {
    before.zip(broker_cpu()).map(|(before, after)| after - before)
}

fn machine_since(before: [f64; 3]) -> [f64; 3] {
    let now = machine_secs();
    [now[0] - before[0], now[1] - before[1], now[2] - before[2]]
}

/// A consumer that only reads and counts, assigned every input partition from the beginning:
/// `poll` one message at a time (what most rdkafka applications do), or in batches through the
/// same fetch queue healthscore reads (see `FetchQueue`). The ceiling is the faster of the two.
fn ceiling(t: &Topics, total: u64, batched: bool) -> Drain {
    // Timed from before the client exists, as the service is from before its process does.
    let cpu0 = cpu_secs(std::process::id());
    let broker0 = broker_cpu();
    let machine = machine_secs();
    let started = Instant::now();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("ceiling-{}", std::process::id()))
        .set("enable.auto.commit", "false");
    // The service's own fetch settings, so the ceiling is not held back by defaults the
    // service does without.
    for (key, value) in FETCH_SETTINGS {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for topic in t.inputs() {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    // Leaders known before the assignment: assigned partitions of topics it has no metadata
    // for, librdkafka started fetching ~0.45 s later (28,000 events took 0.52 s to read, 0.074 s
    // with this), a start-up cost the service, whose group join brings the metadata, does not pay.
    for topic in t.inputs() {
        consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    }
    let mut fetch = batched.then(|| FetchQueue::new(&consumer));
    if let Some(fetch) = &fetch {
        fetch.forward(&tpl);
    }
    consumer.assign(&tpl).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut idle = true;
    while n < total {
        match fetch.as_mut() {
            Some(fetch) => {
                // Blocks for one message when the last call found none (a batch read would wait
                // its whole timeout to fill up).
                let (wait, max) = if idle { (Duration::from_millis(100), 1) } else { (Duration::ZERO, 4096) };
                idle = fetch.consume(
                    wait,
                    max,
                    |_| Some(0),
                    |f| {
                        if let Fetched::Message { payload, .. } = f {
                            n += 1;
                            bytes += payload.len();
                        }
                    },
                ) == 0;
                let _ = consumer.poll(Duration::ZERO);
            }
            None => {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    n += 1;
                    bytes += m.payload().map_or(0, <[u8]>::len);
                }
            }
        }
    }
    std::hint::black_box(bytes);
    let drain = Drain {
        events: n,
        secs: started.elapsed().as_secs_f64(),
        cpu: cpu_secs(std::process::id()) - cpu0,
        machine: machine_since(machine),
        threads: None,
        broker: broker_since(broker0),
    };
    drop(fetch);
    drain
}

fn drain(t: &Topics, ends: &TopicPartitionList, total: u64, guarantee: &str, round: u32) -> Drain {
    let group = format!("bench-{guarantee}-{}-{round}", std::process::id());
    let mut out = t.clone();
    out.output = format!("{}-{guarantee}-{round}", t.output);
    create_topics(&[(&out.output, PARTITIONS)]);
    let watcher: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", &group).create().unwrap();
    let broker0 = broker_cpu();
    let machine = machine_secs();
    let started = Instant::now();
    let mut service = Service::start(&out, &group, guarantee, &group, DEFAULTS);
    let pid = service.child.id();
    // Done when the group has committed the end of every input. Checked every 20 ms (a check
    // is one request), so the figure is not rounded up to a slow poll's period.
    // A failed read is retried until the deadline below (see `committed_or_retry`).
    loop {
        let done = committed_or_retry(&watcher, ends.clone(), &group).is_some_and(|committed| {
            committed.elements().iter().zip(ends.elements()).all(|(c, end)| c.offset() == end.offset())
        });
        if done {
            break;
        }
        if let Some(status) = service.child.try_wait().unwrap() {
            panic!("service exited early ({status}); log:\n{}", service.logs());
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{group} did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu, machine) = (cpu_secs(pid), machine_since(machine));
    let broker = broker_since(broker0);
    let log = service.log.clone();
    assert!(service.stop().success());
    let log = std::fs::read_to_string(log).unwrap_or_default();
    Drain { events: total, secs, cpu, machine, threads: thread_cpu(&log), broker }
}

/// The processing and polling threads' CPU seconds, from the lines the service logs as it
/// stops ("processing stopped" and "leaving the group", each with `cpu_secs=`).
fn thread_cpu(log: &str) -> Option<[f64; 2]> {
    let cpu_of = |marker: &str| -> Option<f64> {
        let line = log.lines().find(|l| l.contains(marker))?;
        let (_, rest) = line.split_once("cpu_secs=")?;
        rest.split_whitespace().next()?.parse().ok()
    };
    Some([cpu_of("processing stopped")?, cpu_of("leaving the group")?])
}

/// Every input partition with its end offset (high watermark) now.
fn input_ends(t: &Topics) -> TopicPartitionList {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let mut ends = TopicPartitionList::new();
    for topic in t.inputs() {
        for p in 0..PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            ends.add_partition_offset(topic, p, Offset::Offset(high)).unwrap();
        }
    }
    ends
}

/// Produce-to-visible latency percentiles (ms) for one isolation level.
struct Visible {
    p50: f64,
    p99: f64,
    max: f64,
    probes: usize,
}

/// Watches `topic` for probe outputs with `isolation` until `stop`, noting when each is first seen.
fn watch(
    topic: String,
    isolation: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<HashMap<String, Instant>> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("watch-{isolation}-{}", std::process::id()))
            .set("isolation.level", isolation)
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.queue.backoff.ms", "1")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut seen = HashMap::new();
        while !stop.load(Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                if let Some(k) = m.key().filter(|k| k.starts_with(b"probe-")) {
                    seen.entry(String::from_utf8_lossy(k).into()).or_insert_with(Instant::now);
                }
            }
        }
        seen
    })
}

fn percentiles(sent: &HashMap<String, Instant>, seen: &HashMap<String, Instant>) -> Visible {
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|v| v.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let q = |f: f64| ms.get(((ms.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(f64::NAN);
    Visible { p50: q(0.5), p99: q(0.99), max: q(1.0), probes: ms.len() }
}

/// Probes sent, one every `PROBE_EVERY`, while the load runs, after `WARM_UP` of load alone.
const PROBES: usize = 1000;
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The first seconds of a load step are a transient (20,000 customers new to the service, fetch
/// sizes growing, fresh memory faulted in): ~1 s of latency at worst here, gone after ~2 s. The
/// figure asked for is the steady state, so probing starts after this; the worst latency of the
/// transient is reported on its own line.
const WARM_UP: Duration = Duration::from_secs(5);

/// Events offered at the asked rate, with the service running, to find the live maximum: the
/// most this machine carries while its own load generator shares the two cores with the broker
/// and the service (a drain has them to itself; live traffic here does not). Offered at a rate,
/// not unthrottled: a producer that only ever finds its queue full sent ~0.34 M/s where one
/// offered 0.88 M/s sent ~0.53 M/s.
const LIVE_BURST: usize = 3_000_000;

/// The live maximum, measured before the latency.
struct Live {
    offered: f64,
    /// Events sent per second, until the last was acknowledged.
    sent_rate: f64,
    /// From the first event sent until the service had committed the last.
    caught_up_rate: f64,
}

/// The live load: the same population again under new ids, from one generator, so the burst
/// and the latency load after it are one stream in event-time order.
fn live_population() -> impl Iterator<Item = GeneratedEvent> {
    let cfg = GenConfig { customers: 20_000, days: 60, seed: 99, ..GenConfig::default() };
    Generator::new(cfg).map(|mut e| {
        e.json = e.json.replace("\"cus_", "\"live_");
        e.customer_id = e.customer_id.replace("cus_", "live_");
        e
    })
}

/// The load generator's producer (`BENCH_LOAD_COMPRESSION` overrides its lz4).
fn load_producer() -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let mut config = input_producer_config(&brokers());
    if let Ok(codec) = std::env::var("BENCH_LOAD_COMPRESSION") {
        config.set("compression.type", codec);
    }
    config.create().unwrap()
}

/// Latency under live load: first the live maximum (`LIVE_BURST` events offered at `rate`), then
/// load offered at `rate`, or at half the live maximum if the machine did not carry `rate` and
/// `rate` was not asked for (`fixed`). Returns the live maximum, the rate offered, and the
/// latencies at read_committed and read_uncommitted. The load is generated before the clock
/// starts and only sent while measuring, so the generator's CPU does not compete with the
/// service on this small machine (the producer's does, as any load would).
fn latency(t: &Topics, rate: f64, fixed: bool) -> (Live, f64, Visible, Visible) {
    let group = format!("bench-latency-{}", std::process::id());
    let mut out = t.clone();
    out.output = format!("{}-latency", t.output);
    create_topics(&[(&out.output, PARTITIONS)]);
    let mut population = live_population();
    let burst: Vec<GeneratedEvent> = population.by_ref().take(LIVE_BURST).collect();

    let mut service = Service::start(&out, &group, "exactly_once", &group, DEFAULTS);
    // Let it drain the backlog first; latency is measured on live traffic.
    wait_caught_up(&out, &group, &mut [&mut service]);

    let sender = load_producer();
    let started = Instant::now();
    let n =
        send_events(&sender, &out, burst.into_iter(), Some(rate), &AtomicBool::new(false), &AtomicU64::new(0)).unwrap();
    let sent = started.elapsed();
    wait_caught_up(&out, &group, &mut [&mut service]);
    let live = Live {
        offered: rate,
        sent_rate: n as f64 / sent.as_secs_f64(),
        caught_up_rate: n as f64 / started.elapsed().as_secs_f64(),
    };
    // Carried within 5 %: the asked rate stands; otherwise half of what was carried.
    let rate = if fixed || live.sent_rate >= 0.95 * rate { rate } else { live.sent_rate / 2.0 };

    // Enough load for the probes and a margin.
    let needed = (rate * (PROBE_EVERY.as_secs_f64() * 1.3 * PROBES as f64 + WARM_UP.as_secs_f64() + 6.0)) as usize;
    let load: Vec<GeneratedEvent> = population.take(needed).collect();
    let load_len = load.len();

    let stop = Arc::new(AtomicBool::new(false));
    let committed = watch(out.output.clone(), "read_committed", stop.clone());
    let uncommitted = watch(out.output.clone(), "read_uncommitted", stop.clone());
    std::thread::sleep(Duration::from_secs(3)); // the watchers join their groups

    // Probes carry the event time of the latest load event sent: a probe stamped ahead of the
    // stream would wait in the event-time merge until the other topics caught up with it, and
    // measure that.
    let now = Arc::new(AtomicI64::new(0));
    let loader = {
        let (stop, topics, now) = (stop.clone(), out.clone(), now.clone());
        std::thread::spawn(move || {
            let producer = sender;
            let events = load.into_iter().inspect(move |e| {
                now.fetch_max(e.timestamp, Relaxed);
            });
            let started = Instant::now();
            let n = send_events(&producer, &topics, events, Some(rate), &stop, &AtomicU64::new(0)).unwrap();
            (n, started.elapsed())
        })
    };
    let producer = input_producer(&brokers()).unwrap();
    let probe = |id: &str| {
        let ts = format_rfc3339(now.load(Relaxed));
        let json = format!(
            r#"{{"event_id":"{id}","customer_id":"{id}","timestamp":"{ts}","type":"session","duration_seconds":60}}"#
        );
        let at = Instant::now();
        producer.send(BaseRecord::to(&out.usage).key(id).payload(&json)).unwrap();
        producer.flush(Duration::from_secs(5)).unwrap();
        std::thread::sleep(PROBE_EVERY);
        (id.to_string(), at)
    };
    while now.load(Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let load_started = Instant::now();
    let mut warm: HashMap<String, Instant> = HashMap::new();
    while load_started.elapsed() < WARM_UP {
        warm.extend([probe(&format!("probe-warm-{}", warm.len()))]);
    }
    let sent: HashMap<String, Instant> = (0..PROBES).map(|i| probe(&format!("probe-{i}"))).collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Relaxed);
    let (offered, took) = loader.join().unwrap();
    let (committed, uncommitted) = (committed.join().unwrap(), uncommitted.join().unwrap());
    assert!(service.stop().success());
    println!(
        "latency load: {offered} of {load_len} pre-generated events sent at {:.0}/s (offered {rate:.0}/s)",
        offered as f64 / took.as_secs_f64()
    );
    let transient = percentiles(&warm, &committed);
    println!(
        "first {:.0} s of the load (warm-up, not in the figures): read_committed worst {:.0} ms over {} probes",
        WARM_UP.as_secs_f64(),
        transient.max,
        transient.probes
    );
    if std::env::var("BENCH_LATENCY_SERIES").is_ok() {
        // The worst latency in each run of 50 probes, to tell a start-up transient from stalls.
        for first in (0..PROBES).step_by(50) {
            let worst = |seen: &HashMap<String, Instant>| {
                (first..(first + 50).min(PROBES))
                    .filter_map(|i| {
                        let id = format!("probe-{i}");
                        seen.get(&id).map(|v| v.saturating_duration_since(sent[&id]).as_millis())
                    })
                    .max()
                    .unwrap_or(0)
            };
            println!(
                "probes {first:4}..: worst committed {} ms, uncommitted {} ms",
                worst(&committed),
                worst(&uncommitted)
            );
        }
    }
    (live, rate, percentiles(&sent, &committed), percentiles(&sent, &uncommitted))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` enumerates benches; nothing to list
    }
    let customers = env_u32("BENCH_CUSTOMERS", 2_000);
    let days = env_u32("BENCH_DAYS", 90);
    let t = topics("bench");
    create_all(&t, PARTITIONS);
    let end = parse_date_or_datetime("2026-10-01").unwrap();
    let cfg = GenConfig { customers, days, end, ..GenConfig::default() };
    let started = Instant::now();
    let producer = input_producer(&brokers()).unwrap();
    let events = Generator::new(cfg);
    let total = send_events(&producer, &t, events, None, &AtomicBool::new(false), &AtomicU64::new(0)).unwrap();
    let load_secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {total} events ({customers} customers x {days} days) into 3 topics x {PARTITIONS} partitions in {load_secs:.1}s ({:.0}/s)",
        total as f64 / load_secs
    );

    // BENCH_PHASES=latency (with BENCH_LATENCY_RATE) measures only the latency, =drain only
    // the drains.
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "all".into());
    // Each round measures the four drains one after the other, so a ratio compares runs seconds
    // apart; the machine is shared, and a burst of someone else's load can slow one run of a
    // round by a third. The summary takes the median over the rounds.
    let rounds = env_u32("BENCH_ROUNDS", 5).max(1);
    let drains: Vec<[Drain; 4]> = if phases == "latency" {
        Vec::new()
    } else {
        // The inputs' ends, read once: every drain of every round ends there.
        let ends = input_ends(&t);
        // One round first, not counted: the broker's JIT compiles its fetch path while the
        // load runs, but its group, offset-commit and transaction paths only during the first
        // service drain, which cost the broker 0.4-0.6 CPU-s per M events against ~0.1 after.
        let warm_up = env_u32("BENCH_WARMUP_ROUNDS", 1);
        for r in 0..warm_up {
            for guarantee in ["at_least_once", "exactly_once"] {
                let d = drain(&t, &ends, total, guarantee, rounds + r);
                println!("warm-up {guarantee}: {:.0} events/s (not counted)", d.rate());
            }
        }
        (0..rounds)
            .map(|r| {
                [
                    ceiling(&t, total, false),
                    ceiling(&t, total, true),
                    drain(&t, &ends, total, "at_least_once", r),
                    drain(&t, &ends, total, "exactly_once", r),
                ]
            })
            .collect()
    };
    // BENCH_LATENCY_RATE overrides the offered load (e.g. to see latency at a rate this machine
    // sustains alongside its own load generator).
    let asked: Option<f64> = std::env::var("BENCH_LATENCY_RATE").ok().and_then(|r| r.parse().ok());
    let half = asked
        .or((!drains.is_empty()).then(|| median(drains.iter().map(|d| d[2].rate())) / 2.0))
        .expect("BENCH_PHASES=latency needs BENCH_LATENCY_RATE");
    report(&drains);
    if phases != "drain" {
        report_latency(&latency(&t, half, asked.is_some()), half);
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn report(drains: &[[Drain; 4]]) {
    const NAMES: [&str; 4] = [
        "raw consume, poll per message",
        "raw consume, batched",
        "healthscore at_least_once",
        "healthscore exactly_once",
    ];
    if !drains.is_empty() {
        println!("\n| round | run | events/s | CPU-s per M events | ratio to the per-message reader | ratio to the batched reader | machine idle | steal | processing / polling thread CPU-s per M | broker CPU-s per M |");
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (r, round) in drains.iter().enumerate() {
            for (name, d) in NAMES.iter().zip(round) {
                let (idle, steal) = d.idle_and_steal();
                let [processing, polling] = d.threads_per_million();
                println!(
                    "| {} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} % | {:.1} % | {processing} / {polling} | {} |",
                    r + 1,
                    d.rate(),
                    d.cpu_per_million(),
                    d.rate() / round[0].rate(),
                    d.rate() / round[1].rate(),
                    idle * 100.0,
                    steal * 100.0,
                    d.broker_per_million()
                );
            }
        }
        println!("\nmedian over {} rounds:", drains.len());
        println!(
            "| run | events/s | CPU-s per M events | ratio to the per-message reader | ratio to the batched reader |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (i, name) in NAMES.iter().enumerate() {
            let m = |f: &dyn Fn(&[Drain; 4]) -> f64| median(drains.iter().map(f));
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
                m(&|r| r[i].rate()),
                m(&|r| r[i].cpu_per_million()),
                m(&|r| r[i].rate() / r[0].rate()),
                m(&|r| r[i].rate() / r[1].rate())
            );
        }
        println!("(ratios are per round, then the median; times include client or process start, and the service's group join)");
    }
}

fn report_latency((live, rate, committed, uncommitted): &(Live, f64, Visible, Visible), half: f64) {
    println!(
        "\nlive maximum: {LIVE_BURST} events offered at {:.0}/s beside the service were sent at {:.0}/s, and the service had committed the last of them at {:.0}/s from the first sent",
        live.offered, live.sent_rate, live.caught_up_rate
    );
    println!(
        "produce-to-visible with load offered at {rate:.0} events/s (asked: {half:.0}; half the live maximum: {:.0}):",
        live.sent_rate / 2.0
    );
    for (name, v) in [("read_committed", committed), ("read_uncommitted (before the commit)", uncommitted)] {
        println!("  {name}: p50 {:.0} ms, p99 {:.0} ms over {} probes", v.p50, v.p99, v.probes);
    }
}
