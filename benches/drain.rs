//! The Kafka drain's critical path without Kafka: `make bench-kafka`'s population (2,000
//! customers x 90 days, ~6 M events) split over six partitions by Kafka's partitioner, and fed
//! to one `PartitionTask` per partition as the processing thread does (hand-overs of 4,096
//! records, tasks stepped 16,384 records at a time, outputs serialized). What the polling
//! thread does (copying messages out, reading their event time) happens before the clock starts.
//!
//! The processing thread limits the service's drain, and on a shared two-core machine a broker
//! drain's rate moves by a third from run to run; this thread's own CPU time per million events,
//! measured alone, moves by up to a tenth between rounds here. Reported: every round and the
//! best and median of `DRAIN_ROUNDS` rounds (default 5), in CPU-s per M events.
//! `DRAIN_CUSTOMERS` / `DRAIN_DAYS` change the population.
//!
//! Each round is followed by a reference round: the same days on a tenth of the customers, so
//! their state stays in cache. The ratio of the two, measured back to back, says how much of
//! the thread's work is waiting for memory rather than computing, and moves far less with the
//! machine's load than either figure alone.

#[global_allocator]
static ALLOC: healthscore::memory::Allocator = healthscore::memory::Allocator;

use std::sync::Arc;
use std::time::Duration;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::event::parse_date_or_datetime;
use healthscore::generate::{GenConfig, Generator};
use healthscore::partition::kafka_partition;
use healthscore::pipeline::processor::thread_cpu;
use healthscore::pipeline::task::{Copier, PartitionTask, Processed, Record};
use healthscore::score::Scorecard;

const PARTITIONS: u32 = 6;
/// Records per hand-over from the polling thread, at most (its `POLL_BATCH`).
const HANDOVER: usize = 4096;
/// Records a task takes per step (as the processing thread does).
const STEP: usize = 16_384;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One round: fresh engines, every event copied into a record (as the polling thread does,
/// just before its hand-over, so it is in cache as a hand-over's records are) and processed.
/// Returns the CPU seconds spent processing (not copying), records processed and outputs.
/// Not inlined, so a profile tells the round from the population's generation.
#[inline(never)]
fn round(scorecard: &Arc<Scorecard>, events: &[(usize, usize, Vec<u8>)]) -> (f64, usize, usize) {
    let mut tasks: Vec<PartitionTask> = (0..PARTITIONS as i32)
        .map(|p| PartitionTask::new(p, Engine::new(scorecard.clone(), EngineConfig::default())))
        .collect();
    let copier = Copier::default();
    let mut offsets = [[0i64; 3]; PARTITIONS as usize];
    let mut json = Vec::with_capacity(4096);
    let (mut records, mut outputs, mut bytes) = (0, 0, 0);
    let mut cpu = Duration::ZERO;
    for chunk in events.chunks(HANDOVER) {
        let handover: Vec<(usize, usize, Record)> = chunk
            .iter()
            .map(|(p, s, payload)| {
                let offset = &mut offsets[*p][*s];
                *offset += 1;
                (*p, *s, copier.copy(*offset - 1, None, payload))
            })
            .collect();
        let started = thread_cpu();
        for (partition, source, record) in handover {
            tasks[partition].push_record(source, record);
        }
        for task in &mut tasks {
            let mut done = Processed::default();
            task.process(STEP, &mut done);
            for o in &done.outputs {
                json.clear();
                o.write_json(&mut json);
                bytes += json.len();
            }
            records += done.records;
            outputs += done.outputs.len();
        }
        cpu += thread_cpu() - started;
    }
    std::hint::black_box(bytes);
    (cpu.as_secs_f64(), records, outputs)
}

/// A population's events as (partition, source, payload), in the generator's order.
fn population(customers: u32, days: u32) -> Vec<(usize, usize, Vec<u8>)> {
    let end = parse_date_or_datetime("2026-10-01").expect("a date");
    let cfg = GenConfig { customers, days, end, ..GenConfig::default() };
    Generator::new(cfg)
        .map(|e| {
            let p = kafka_partition(e.customer_id.as_bytes(), PARTITIONS) as usize;
            (p, e.source as usize, e.json.into_bytes())
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let customers = env_u32("DRAIN_CUSTOMERS", 2_000);
    let days = env_u32("DRAIN_DAYS", 90);
    let rounds = env_u32("DRAIN_ROUNDS", 5).max(1);
    // Kept as (partition, source, payload); records are copied out of it afresh each round.
    let events = population(customers, days);
    // The reference: the same code and days on a tenth of the customers, whose state stays in
    // cache; run right after each round, so the ratio tells what the state's size costs.
    let small = (customers / 10).max(1);
    let reference = population(small, days);
    let scorecard = Arc::new(Scorecard::default_scorecard());
    println!("{} events, {customers} customers x {days} days, {PARTITIONS} partitions", events.len());
    println!("reference: {} events, {small} customers x {days} days (state in cache)", reference.len());
    let (mut per_million, mut ratios) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (cpu, records, outputs) = round(&scorecard, &events);
        let m = cpu / records as f64 * 1e6;
        let (ref_cpu, ref_records, _) = round(&scorecard, &reference);
        let ref_m = ref_cpu / ref_records as f64 * 1e6;
        println!(
            "round {}: {records} records, {outputs} outputs, {cpu:.3} CPU-s, {m:.4} CPU-s per M ({:.2} M/s of CPU); \
             reference {ref_m:.4} CPU-s per M, ratio {:.2}",
            r + 1,
            1.0 / m,
            m / ref_m
        );
        per_million.push(m);
        ratios.push(m / ref_m);
    }
    per_million.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    let (best, median) = (per_million[0], per_million[per_million.len() / 2]);
    println!(
        "processing CPU-s per M events: best {best:.4}, median {median:.4} ({:.2} M/s of CPU at the median); \
         median ratio to the reference {:.2}",
        1.0 / median,
        ratios[ratios.len() / 2]
    );
}
