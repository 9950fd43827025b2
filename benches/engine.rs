//! Throughput of the engine's hot path, with a reference measured in the same run.
//!
//! - `reference/serde_json_typed`: plain serde_json into a small typed borrowing struct, the
//!   yardstick for JSON parsing on this machine.
//! - `parse`: our parse + validation into an `Event`.
//! - `parse_apply_score`: parse, window update, score, rules and outputs, over 100,000 customers
//!   (the target: 1,000,000 events/s on one core).
//!
//! Events are the built-in generator's realistic mix (mostly product usage, a few percent support
//! and billing, a little bad input). Run with `cargo bench --bench engine` (or `make bench`).

#[global_allocator]
static ALLOC: healthscore::memory::Allocator = healthscore::memory::Allocator;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod reference;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::event::parse;
use healthscore::generate::{GenConfig, Generator};
use healthscore::score::Scorecard;

/// Events measured per iteration of the engine benchmark.
const EVENTS: usize = 1_000_000;
/// Customers in the engine benchmark's population.
const BENCH_CUSTOMERS: u32 = 100_000;

fn events(customers: u32, days: u32) -> Vec<Vec<u8>> {
    let cfg = GenConfig { customers, days, ..GenConfig::default() };
    Generator::new(cfg).map(|e| e.json.into_bytes()).collect()
}

/// The lines of `buffer` (the concatenation of `lines`), as slices into it. Benchmarks read their
/// input from one contiguous buffer, as a Kafka fetch or a replay file delivers it: separately
/// allocated lines would add a cold cache miss per event that no real input has.
fn slices<'a>(buffer: &'a [u8], lines: &[Vec<u8>]) -> Vec<&'a [u8]> {
    let mut at = 0;
    lines
        .iter()
        .map(|l| {
            let line = &buffer[at..at + l.len()];
            at += l.len();
            line
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    healthscore::memory::allow_huge_pages();
    let lines = events(200, 60);
    let buffer: Vec<u8> = lines.concat();
    let sample = slices(&buffer, &lines);
    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("reference/serde_json_typed", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for e in &sample {
                ok += reference::parses(e) as usize;
            }
            ok
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for e in &sample {
                ok += parse(e, None).is_ok() as usize;
            }
            ok
        })
    });
    g.finish();

    // 100,000 customers: warm the engine with a week of their history (streamed, not held in
    // memory), then measure the next EVENTS events.
    let cfg = GenConfig { customers: BENCH_CUSTOMERS, days: 8, ..GenConfig::default() };
    let last_day_starts = cfg.end - healthscore::event::DAY_MS;
    let mut history = Generator::new(cfg);
    let mut base = Engine::new(Arc::new(Scorecard::default_scorecard()), EngineConfig::default());
    let mut out = Vec::new();
    let mut warm = 0usize;
    let mut measured: Vec<Vec<u8>> = Vec::with_capacity(EVENTS);
    for e in history.by_ref() {
        // Events come day by day: warm up until the last day, then keep EVENTS to measure.
        if e.timestamp >= last_day_starts {
            measured.push(e.json.into_bytes());
            break;
        }
        let _ = base.apply_bytes(e.json.as_bytes(), None, &mut out);
        out.clear();
        warm += 1;
    }
    measured.extend(history.take(EVENTS - 1).map(|e| e.json.into_bytes()));
    // One contiguous buffer, as a Kafka fetch or a replay file delivers messages (separately
    // allocated lines would add a cold cache miss per event that no real input has).
    let buffer: Vec<u8> = measured.concat();
    let measured = slices(&buffer, &measured);
    let measured = &measured;
    eprintln!("warm engine: {} customers, {warm} warm-up events, {} measured", base.customer_count(), measured.len());
    let mut g = c.benchmark_group("engine_100k_customers");
    g.throughput(Throughput::Elements(measured.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("parse_apply_score", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |engine| {
                let mut out = Vec::with_capacity(1024);
                for e in measured {
                    let _ = engine.apply_bytes(e, None, &mut out);
                    out.clear();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("parse_apply_score_batched", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |engine| {
                let mut out = Vec::with_capacity(1024);
                let mut results = Vec::with_capacity(BATCH);
                let mut batch: Vec<(&[u8], Option<healthscore::event::Source>, Option<healthscore::event::KnownTime>)> =
                    Vec::with_capacity(BATCH);
                for chunk in measured.chunks(BATCH) {
                    batch.clear();
                    batch.extend(chunk.iter().map(|e| (*e, None, None)));
                    engine.apply_batch(&batch, &mut results, &mut out);
                    results.clear();
                    out.clear();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Inputs per `apply_batch` call: small enough that what a batch prefetches stays in cache
/// until it is applied (64 measured best of 32, 64, 128, 512 here).
const BATCH: usize = 64;

criterion_group!(benches, bench);
criterion_main!(benches);
