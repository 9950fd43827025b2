//! State size and timer cost at 1,000,000 customers (a custom harness: these are one-shot
//! measurements of memory and of one large operation, not micro-benchmarks).
//!
//! Builds 1,000,000 customers, each with history spread over the whole 90-day window (8 users,
//! 6 features, sessions, tickets, CSAT, NPS, a subscription with seats and a renewal date, a
//! failed payment), then reports:
//! - bytes per customer: the engine's own accounting and the process's resident-memory growth;
//! - the time to advance stream time by one day (every customer's daily timer fires once);
//! - a reference measured in the same run (serde_json parsing of 1,000,000 small events), so the
//!   figures can be read as ratios on a noisy, shared machine.
//!
//! `HEALTHSCORE_BENCH_CUSTOMERS` overrides the customer count (for a quick look).

#[global_allocator]
static ALLOC: healthscore::memory::Allocator = healthscore::memory::Allocator;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

mod reference;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::event::{Event, EventKind, Invoice, Millis, Priority, DAY_MS};
use healthscore::score::Scorecard;

const T0: Millis = 1_767_571_200_000; // 2026-01-05T00:00:00Z

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness=false benches to list themselves
    }
    healthscore::memory::allow_huge_pages();
    let n: usize = std::env::var("HEALTHSCORE_BENCH_CUSTOMERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let ids: Vec<String> = (0..n).map(|i| format!("cus_{i:07}")).collect();
    let users: Vec<String> = (0..8).map(|u| format!("user_{u}")).collect();
    let features = ["dashboards", "reports", "integrations", "alerts", "export", "api"];

    // Reference: serde_json into a typed borrowing struct, 1,000,000 events.
    let sample = br#"{"event_id":"evt_5f1c2a9b3d7e4f60","customer_id":"cus_0012345","timestamp":"2026-03-02T10:15:00Z","type":"feature_used","feature":"reports","user_id":"user_3"}"#;
    let t = Instant::now();
    let mut ok = 0;
    for _ in 0..1_000_000 {
        ok += reference::parses(std::hint::black_box(sample)) as usize;
    }
    let ref_secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, 1_000_000);
    println!("reference: serde_json typed parse of 1,000,000 events: {ref_secs:.3} s ({:.2} M/s)", 1.0 / ref_secs);

    let rss_before = rss_bytes();
    let mut engine = Engine::new(Arc::new(Scorecard::default_scorecard()), EngineConfig::default());
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut apply = |engine: &mut Engine, c: usize, t: Millis, kind: EventKind<'_>| {
        seq += 1;
        let id = seq.to_string();
        let e = Event { event_id: Cow::Borrowed(&id), customer_id: Cow::Borrowed(&ids[c]), timestamp: t, kind };
        let _ = engine.apply_event(&e, &mut out);
        out.clear();
    };
    let build = Instant::now();
    // Recent days first (stream time moves 10 days), then older days arriving late but inside
    // the window: the windows span 90 days without 90 days of timers to wait through.
    for day in 80..90i64 {
        for c in 0..n {
            let t = T0 + day * DAY_MS + (c as i64 % 36_000) * 1000;
            let u = (c + day as usize) % 8;
            if day == 80 {
                let renewal = Some(T0 + 200 * DAY_MS);
                apply(
                    &mut engine,
                    c,
                    t,
                    EventKind::SubscriptionStarted {
                        plan: "pro".into(),
                        mrr: 900.0,
                        seats: Some(10),
                        renewal_date: renewal,
                    },
                );
            }
            apply(
                &mut engine,
                c,
                t + 1,
                EventKind::FeatureUsed {
                    feature: features[(c + day as usize) % 6].into(),
                    user_id: Some(users[u].as_str().into()),
                    quantity: 1.0,
                },
            );
            apply(
                &mut engine,
                c,
                t + 2,
                EventKind::Session { user_id: Some(users[(u + 3) % 8].as_str().into()), duration_seconds: 1500.0 },
            );
            if day == 85 {
                apply(
                    &mut engine,
                    c,
                    t + 3,
                    EventKind::TicketOpened { ticket_id: "t1".into(), priority: Priority::High },
                );
                apply(&mut engine, c, t + 4, EventKind::NpsResponse { score: 8 });
            }
            if day == 87 {
                apply(&mut engine, c, t + 3, EventKind::TicketResolved { ticket_id: "t1".into() });
                apply(&mut engine, c, t + 4, EventKind::CsatResponse { rating: 4, ticket_id: None });
                apply(
                    &mut engine,
                    c,
                    t + 5,
                    EventKind::PaymentFailed(Invoice { invoice_id: "i1".into(), amount: 900.0, days_overdue: None }),
                );
            }
        }
    }
    for day in [5i64, 20, 35, 50, 65] {
        for c in 0..n {
            let t = T0 + day * DAY_MS + 3_600_000;
            apply(
                &mut engine,
                c,
                t,
                EventKind::FeatureUsed {
                    feature: features[(c + 2) % 6].into(),
                    user_id: Some(users[c % 8].as_str().into()),
                    quantity: 1.0,
                },
            );
            if day == 20 {
                apply(
                    &mut engine,
                    c,
                    t + 1,
                    EventKind::TicketOpened { ticket_id: "t0".into(), priority: Priority::Normal },
                );
            }
        }
    }
    let build_secs = build.elapsed().as_secs_f64();
    let stats = engine.stats().clone();
    let rss_after = rss_bytes();
    let accounted = engine.memory_bytes();
    println!(
        "built {} customers from {} events in {build_secs:.1} s ({:.2} M events/s incl. {} timer evaluations)",
        engine.customer_count(),
        stats.applied,
        stats.applied as f64 / build_secs / 1e6,
        stats.evaluations - stats.applied
    );
    println!(
        "state per customer: {:.0} B accounted by the engine, {:.0} B resident-memory growth (target ≤ 2048 B: {:.2}× of target)",
        accounted as f64 / n as f64,
        (rss_after - rss_before) as f64 / n as f64,
        (rss_after - rss_before) as f64 / n as f64 / 2048.0
    );

    let mut outputs = Vec::new();
    let from = engine.stream_time().unwrap();
    for i in 1..=3 {
        let before = engine.stats().evaluations;
        let t = Instant::now();
        engine.advance_to(from + i * DAY_MS, &mut outputs);
        let secs = t.elapsed().as_secs_f64();
        let evals = engine.stats().evaluations - before;
        println!(
            "advance stream time by one day #{i}: {secs:.3} s, {evals} customers re-scored ({:.0} ns each), {} outputs; {:.2}× the reference parse of as many events",
            secs * 1e9 / evals.max(1) as f64,
            outputs.len(),
            secs / (ref_secs * evals as f64 / 1e6)
        );
        outputs.clear();
    }

    snapshot_and_restore(&engine, ref_secs);
}

/// Snapshot and restore of the whole engine (one partition holding every customer): the pause
/// (encoding and compressing on the processing thread), the background part (framing,
/// checksum, a durable write to a directory store), and a restore (read, check, decode, rebuild index and timers).
/// The pause is compared with cloning the engine, the obvious way to get a consistent copy.
fn snapshot_and_restore(engine: &Engine, ref_secs: f64) {
    use healthscore::snapshot::{dir::DirStore, encode, Pending, SnapshotStore};
    let n = engine.customer_count();
    let t = Instant::now();
    let copy = engine.clone();
    let clone_secs = t.elapsed().as_secs_f64();
    drop(copy);

    let t = Instant::now();
    let pending = Pending::take(engine, 0, ["usage", "support", "billing"], [Some(1), Some(2), Some(3)], [0; 3]);
    let pause_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let bytes = encode(&pending.header, &pending.state);
    let encode_secs = t.elapsed().as_secs_f64();
    let dir = std::env::temp_dir().join(format!("healthscore-bench-snapshots-{}", std::process::id()));
    let store = DirStore::new(&dir, 1).unwrap();
    let t = Instant::now();
    store.save(0, 1, &bytes).unwrap();
    let write_secs = t.elapsed().as_secs_f64();
    drop(pending);
    println!(
        "snapshot of {n} customers: pause {pause_secs:.3} s (encode + compress on the processing thread; cloning the engine instead: {clone_secs:.3} s, {:.2}× the pause), then {encode_secs:.3} s framing + checksum and {write_secs:.3} s durable write in the background; total {:.3} s (target < 2 s: {:.2}× of target)",
        clone_secs / pause_secs,
        pause_secs + encode_secs + write_secs,
        (pause_secs + encode_secs + write_secs) / 2.0
    );
    println!(
        "snapshot size: {} bytes, {:.0} B per customer on disk ({:.0} B before compression)",
        bytes.len(),
        bytes.len() as f64 / n as f64,
        engine_state_bytes(&bytes) as f64 / n as f64
    );
    drop(bytes);

    let t = Instant::now();
    let listed = store.list(0).unwrap();
    let read = store.read(0, &listed[0]).unwrap();
    let (header, state) = healthscore::snapshot::decode(&read).unwrap();
    let read_secs = t.elapsed().as_secs_f64();
    let restored = healthscore::snapshot::engine_of(&header, &state, engine.scorecard(), engine.config())
        .expect("the snapshot restores");
    let restore_secs = t.elapsed().as_secs_f64();
    assert_eq!(restored.customer_count() as u64, header.customers);
    assert_eq!(restored.customer_count(), n);
    println!(
        "restore of {n} customers: {restore_secs:.3} s ({read_secs:.3} s read + checksum, {:.3} s decompress + decode + rebuild; target < 2 s: {:.2}× of target; {:.2}× the reference parse of as many events)",
        restore_secs - read_secs,
        restore_secs / 2.0,
        restore_secs / (ref_secs * n as f64 / 1e6)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn engine_state_bytes(snapshot: &[u8]) -> u64 {
    healthscore::snapshot::open(snapshot).map(|(h, _)| h.state_bytes).unwrap_or(0)
}
