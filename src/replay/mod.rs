//! `replay`: run the engine over NDJSON history. How users try a scorecard on history and how
//! the tests drive the engine end to end.
//!
//! The history is read by [`crate::input`]: its sources may mix the three event sources and
//! need not be sorted, and its lines come in event-time order (ties keep source order, then line
//! order), as if they had arrived in order, a batch at a time: nothing holds the whole history.
//! At the end stream time is advanced to the last event time the engines accepted (not a leap
//! no other event confirmed, nor a rejected line's), so the allowed lateness does not hold back
//! the last timers.
//!
//! This file holds the public entry points ([`replay`], [`replay_with`], [`replay_observed`]),
//! what they report ([`ReplaySummary`], [`DeadLetter`]) and the dead-letter line format. The
//! input side (ordered lines cut into batches and routed to partitions) is `feed`; running the
//! engines over the batches and merging their outputs is `run`. Neither may change what the
//! engines compute: they only decide which engine sees which line, and in what order.

mod feed;
mod run;

use std::io::{self, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::event::{dead_letter_bytes, Millis, RejectReason, Rejection};
use crate::input::History;
pub use crate::input::Input;
use crate::output::Output;

pub use feed::FLUSH_EVERY;
use feed::{first_and_supported_end, Batch, Merged, Received, Router};
use run::{run_partition, run_partitions, Counts, OutputWriter, Reject, WRITE_CHUNK};

/// One input line that was not applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<'a> {
    pub file: usize,
    pub line: usize,
    pub bytes: &'a [u8],
    pub rejection: Rejection,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub outputs: u64,
    pub elapsed: Duration,
}

impl ReplaySummary {
    fn add(&mut self, c: &Counts) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.outputs += c.outputs;
    }
}

/// Replays `history` through `engines`, one engine per partition, writing each output as a JSON
/// line to `out` and handing each rejected line to `dead_letter` (in input order).
///
/// Customers are split over the engines by Kafka's default partitioner on `customer_id` (as
/// producers keyed by customer split them over that many partitions), and each partition has
/// its own stream time, exactly as the Kafka shell runs one engine per partition. With one
/// engine the outputs are written in the order the engine emits them. With several, a
/// partition's outputs keep their order and the partitions' are interleaved by the point of the
/// input that produced them: the input is cut into pieces (a partition's next 64 lines,
/// and every [`FLUSH_EVERY`] lines of input whatever a partition holds), each piece's outputs
/// come after those of every piece that ended earlier in the input, ties in partition order;
/// the outputs of the last advance come last, in partition order. So the same input and
/// partition count always give the same bytes, whatever the history's thread count
/// ([`crate::input::ReadOptions::threads`]). A partition's stream time only moves with its own
/// events, so timers can fire at other points of the input than with a single engine: compare
/// outputs between runs with the same partition count.
///
/// Threads: with one, everything runs on the calling thread. With more, the input is read,
/// ordered and routed on one thread, the engines run on up to that many others (a partition
/// stays on one), and the outputs are merged and written on the calling thread. Memory does not
/// grow with the history: a partition's outputs wait only until every partition has passed the
/// same point of the input.
pub fn replay(
    engines: &mut [Engine],
    history: &History,
    out: &mut impl Write,
    dead_letter: impl FnMut(DeadLetter<'_>),
) -> io::Result<ReplaySummary> {
    replay_with(engines, history, out, dead_letter, true)
}

/// [`replay`], choosing whether stream time is advanced to the last event time at the end.
/// Without it, the result is what the Kafka service has emitted once it has consumed the same
/// input and is waiting for more (its stream time stays the allowed lateness behind).
pub fn replay_with(
    engines: &mut [Engine],
    history: &History,
    out: &mut impl Write,
    mut dead_letter: impl FnMut(DeadLetter<'_>),
    advance_to_end: bool,
) -> io::Result<ReplaySummary> {
    assert!(!engines.is_empty(), "replay needs at least one engine");
    let started = Instant::now();
    let mut summary = ReplaySummary::default();
    let mut w = OutputWriter { out, buf: Vec::with_capacity(2 * WRITE_CHUNK), error: None };

    if let ([engine], 1) = (&mut *engines, history.threads()) {
        let mut feed = Merged { lines: history.lines()?, seq: 0 };
        let counts = run_partition(
            engine,
            &mut feed,
            advance_to_end.then_some(Millis::MAX),
            &[],
            |_, _| {},
            |o| w.write(o),
            |batch, i, rejection| {
                let l = &batch.lines[i];
                dead_letter(DeadLetter { file: l.file, line: l.line, bytes: batch.bytes(i), rejection })
            },
        )?;
        summary.lines = feed.seq;
        summary.add(&counts);
    } else {
        let mut report = |r: &Reject| {
            dead_letter(DeadLetter { file: r.file, line: r.line, bytes: &r.bytes, rejection: r.rejection.clone() })
        };
        let (lines, counts) = run_partitions(engines, history, &mut w, &mut report)?;
        summary.lines = lines;
        summary.add(&counts);
        // Every partition ends at the latest time any of them accepted, as one history.
        let end = engines.iter().filter_map(Engine::latest_event_time).max().filter(|_| advance_to_end);
        if let Some(end) = end {
            let mut outputs = Vec::new();
            for engine in engines.iter_mut() {
                engine.advance_to(end, &mut outputs);
                summary.outputs += outputs.len() as u64;
                outputs.drain(..).for_each(|o| w.write(&o));
            }
        }
    }
    w.finish()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Replays `history` through one engine like [`replay`], and also lets `observe` look at the
/// engine at each instant `ticks` returns (ascending; it is given the first and last event time
/// of the history): once every line up to that instant has been applied and before any later
/// one is. Outputs go to `on_output` instead of a writer.
///
/// This is how `backtest` watches a history unfold: it reads every customer's state as of each
/// observation date. Observing only reads, so the engine's outputs are exactly those of
/// [`replay`]. Ticks after the last event time are not observed (nothing is known there). The
/// history is read twice: once for its first and last times, once to replay it.
pub fn replay_observed(
    engine: &mut Engine,
    history: &History,
    ticks: impl FnOnce(Millis, Millis) -> Vec<Millis>,
    observe: impl FnMut(&Engine, Millis),
    mut on_output: impl FnMut(&Output),
    mut dead_letter: impl FnMut(DeadLetter<'_>),
) -> io::Result<ReplaySummary> {
    let started = Instant::now();
    let (first, last) = first_and_supported_end(history, engine.config().max_lead_secs)?;
    let ticks = match (first, last) {
        (Some(first), Some(last)) => ticks(first, last),
        _ => Vec::new(),
    };
    let reject = |batch: &Batch, i: usize, rejection| {
        let l = &batch.lines[i];
        dead_letter(DeadLetter { file: l.file, line: l.line, bytes: batch.bytes(i), rejection })
    };
    let (lines, counts) = if history.threads() <= 1 {
        let mut feed = Merged { lines: history.lines()?, seq: 0 };
        let counts = run_partition(engine, &mut feed, last, &ticks, observe, &mut on_output, reject)?;
        (feed.seq, counts)
    } else {
        // Reading and ordering on a thread of their own, the engine (which `observe` reads) here.
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<Batch>(16);
            let cuts = ticks.clone();
            let reader = scope.spawn(move || -> io::Result<u64> {
                let mut router = Router::new(1, cuts);
                let mut send = |_, batch| {
                    let _ = tx.send(batch);
                };
                let mut lines = history.lines()?;
                while let Some(l) = lines.next()? {
                    router.route(&l, &mut send);
                }
                router.finish(&mut send);
                Ok(router.seq)
            });
            let mut feed = Received { rx, next: None };
            let counts = run_partition(engine, &mut feed, last, &ticks, observe, &mut on_output, reject);
            drop(feed);
            let lines = reader.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            Ok::<_, io::Error>((lines, counts?))
        })?
    };
    let mut summary = ReplaySummary { lines, ..Default::default() };
    summary.add(&counts);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A dead letter as a JSON line: where it came from (`file`: its source's name), why, and the original line untouched
/// (as a string when it is UTF-8, else base16).
///
/// A `too_large` line keeps only its first [`crate::event::TOO_LARGE_PREFIX`] bytes (`original_bytes` says
/// how long it was), so one huge line cannot make the dead-letter file huge too.
pub fn dead_letter_json(file: &str, d: &DeadLetter<'_>) -> String {
    let kept = dead_letter_bytes(d.bytes, d.rejection.reason);
    let original = match std::str::from_utf8(kept).or_else(|e| std::str::from_utf8(&kept[..e.valid_up_to()])) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::String(kept.iter().map(|b| format!("{b:02x}")).collect()),
    };
    serde_json::json!({
        "reason": d.rejection.reason.as_str(),
        "field": d.rejection.field,
        "message": d.rejection.message,
        "file": file,
        "line": d.line,
        "original": original,
        "original_bytes": d.bytes.len(),
    })
    .to_string()
}

/// Counts of rejections by reason over all `engines`, for summaries.
pub fn rejected_by_reason(engines: &[Engine]) -> Vec<(RejectReason, u64)> {
    RejectReason::ALL
        .into_iter()
        .map(|r| (r, engines.iter().map(|e| e.stats().rejected[r as usize]).sum()))
        .filter(|(_, n)| *n > 0)
        .collect()
}
