//! `replay`: run the engine over NDJSON history files. How users try a scorecard on history and
//! how the tests drive the engine end to end.
//!
//! Inputs may mix the three sources and need not be sorted: lines are ordered by event time
//! (stable, so ties keep file order) before they are applied, as if they had arrived in order.
//! At the end stream time is advanced to the last event time the engines accepted (not a leap
//! no other event confirmed, nor a rejected line's), so the allowed lateness does not hold back
//! the last timers.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use memchr::memmem;

use crate::engine::{Engine, Outcome};
use crate::event::{dead_letter_bytes, quick_string_field, quick_time, KnownTime, Millis, RejectReason, Rejection};
use crate::output::Output;
use crate::partition::kafka_partition;

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

/// An input file's bytes with a name for messages.
pub struct Input {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Replays `inputs` through `engines`, one engine per partition, writing each output as a JSON
/// line to `out` and handing each rejected line to `dead_letter` (in input order).
///
/// With one engine, lines stream through it and outputs are written as they come. With several,
/// customers are split over them by Kafka's default partitioner on `customer_id` (as producers
/// keyed by customer split them over that many partitions), each partition runs on its own
/// thread with its own stream time, exactly as the Kafka shell runs one engine per partition,
/// and the outputs are merged by (timestamp, partition, order within the partition): the same
/// input and partition count always give the same bytes. A partition's stream time only moves
/// with its own events, so timers can fire at other points of the input than with a single
/// engine: compare outputs between runs with the same partition count.
pub fn replay(
    engines: &mut [Engine],
    inputs: &[Input],
    out: &mut impl Write,
    dead_letter: impl FnMut(DeadLetter<'_>),
) -> io::Result<ReplaySummary> {
    replay_with(engines, inputs, out, dead_letter, true)
}

/// [`replay`], choosing whether stream time is advanced to the last event time at the end.
/// Without it, the result is what the Kafka service has emitted once it has consumed the same
/// input and is waiting for more (its stream time stays the allowed lateness behind).
pub fn replay_with(
    engines: &mut [Engine],
    inputs: &[Input],
    out: &mut impl Write,
    mut dead_letter: impl FnMut(DeadLetter<'_>),
    advance_to_end: bool,
) -> io::Result<ReplaySummary> {
    assert!(!engines.is_empty(), "replay needs at least one engine");
    let started = Instant::now();
    let lines = ordered_lines(inputs);
    let mut summary = ReplaySummary { lines: lines.len() as u64, ..Default::default() };

    if let [engine] = engines {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut write_error = None;
        let counts = run_partition(
            engine,
            lines.iter().enumerate(),
            advance_to_end.then_some(Millis::MAX),
            &[],
            |_, _| {},
            |o| {
                o.write_json(&mut buf);
                buf.push(b'\n');
                if buf.len() >= 1 << 16 {
                    if let Err(e) = out.write_all(&buf) {
                        write_error.get_or_insert(e);
                    }
                    buf.clear();
                }
            },
            |i, rejection| {
                let l = &lines[i];
                dead_letter(DeadLetter { file: l.file, line: l.line, bytes: l.bytes, rejection })
            },
        );
        if let Some(e) = write_error {
            return Err(e);
        }
        out.write_all(&buf)?;
        summary.add(&counts);
    } else {
        let n = engines.len() as u32;
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); n as usize];
        let finder = memmem::Finder::new(b"\"customer_id\"");
        for (i, l) in lines.iter().enumerate() {
            parts[partition_of(&finder, l.bytes, n) as usize].push(i);
        }
        let lines = &lines;
        let mut results: Vec<PartitionRun> = std::thread::scope(|scope| {
            let handles: Vec<_> = engines
                .iter_mut()
                .zip(&parts)
                .map(|(engine, part)| {
                    scope.spawn(move || {
                        let mut run = PartitionRun::default();
                        run.counts = run_partition(
                            engine,
                            part.iter().map(|&i| (i, &lines[i])),
                            None,
                            &[],
                            |_, _| {},
                            |o| run.outputs.push((o.timestamp(), o.to_json())),
                            |i, r| run.rejects.push((i, r)),
                        );
                        run
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a replay partition panicked")).collect()
        });
        // Every partition ends at the latest time any of them accepted, as one history.
        let end = engines.iter().filter_map(Engine::latest_event_time).max().filter(|_| advance_to_end);
        if let Some(end) = end {
            std::thread::scope(|scope| {
                for (engine, run) in engines.iter_mut().zip(results.iter_mut()) {
                    scope.spawn(move || {
                        let mut outputs = Vec::new();
                        engine.advance_to(end, &mut outputs);
                        run.counts.outputs += outputs.len() as u64;
                        run.outputs.extend(outputs.iter().map(|o| (o.timestamp(), o.to_json())));
                    });
                }
            });
        }
        let mut outputs: Vec<(Millis, usize, usize, &[u8])> = Vec::new();
        let mut rejects = Vec::new();
        for (p, run) in results.iter().enumerate() {
            summary.add(&run.counts);
            outputs.extend(run.outputs.iter().enumerate().map(|(k, (t, json))| (*t, p, k, json.as_slice())));
            rejects.extend(run.rejects.iter().cloned());
        }
        outputs.sort_unstable_by_key(|&(t, p, k, _)| (t, p, k));
        let mut w = io::BufWriter::with_capacity(1 << 16, &mut *out);
        for (_, _, _, json) in outputs {
            w.write_all(json)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        rejects.sort_unstable_by_key(|(i, _)| *i);
        for (i, rejection) in rejects {
            let l = &lines[i];
            dead_letter(DeadLetter { file: l.file, line: l.line, bytes: l.bytes, rejection });
        }
    }
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Lines per [`Engine::apply_batch`] call: enough for the prefetches of a batch to overlap,
/// few enough that its customers stay in cache until they are applied.
const BATCH: usize = 64;

#[derive(Default)]
struct Counts {
    applied: u64,
    duplicates: u64,
    rejected: u64,
    outputs: u64,
}

#[derive(Default)]
struct PartitionRun {
    counts: Counts,
    outputs: Vec<(Millis, Vec<u8>)>,
    rejects: Vec<(usize, Rejection)>,
}

impl ReplaySummary {
    fn add(&mut self, c: &Counts) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.outputs += c.outputs;
    }
}

/// Replays `inputs` through one engine like [`replay`], and also lets `observe` look at the
/// engine at each instant `ticks` returns (ascending; it is given the first and last event time
/// of the history): once every line up to that instant has been applied and before any later
/// one is. Outputs go to `on_output` instead of a writer.
///
/// This is how `backtest` watches a history unfold: it reads every customer's state as of each
/// observation date. Observing only reads, so the engine's outputs are exactly those of
/// [`replay`]. Ticks after the last event time are not observed (nothing is known there).
pub fn replay_observed(
    engine: &mut Engine,
    inputs: &[Input],
    ticks: impl FnOnce(Millis, Millis) -> Vec<Millis>,
    observe: impl FnMut(&Engine, Millis),
    mut on_output: impl FnMut(&Output),
    mut dead_letter: impl FnMut(DeadLetter<'_>),
) -> ReplaySummary {
    let started = Instant::now();
    let lines = ordered_lines(inputs);
    let last = supported_end(&lines, engine.config().max_lead_secs);
    let first = lines.iter().map(|l| l.time).find(|t| *t != Millis::MIN);
    let ticks = match (first, last) {
        (Some(first), Some(last)) => ticks(first, last),
        _ => Vec::new(),
    };
    let mut summary = ReplaySummary { lines: lines.len() as u64, ..Default::default() };
    let counts =
        run_partition(engine, lines.iter().enumerate(), last, &ticks, observe, &mut on_output, |i, rejection| {
            let l = &lines[i];
            dead_letter(DeadLetter { file: l.file, line: l.line, bytes: l.bytes, rejection })
        });
    summary.add(&counts);
    summary.elapsed = started.elapsed();
    summary
}

/// Runs one engine over its lines (index, line), then advances it to the latest event time it
/// accepted, if no later than `last` (`None`: no advance). `observe` sees the engine at each of
/// `ticks` up to `last`, after the lines up to it and before the lines after.
fn run_partition<'a>(
    engine: &mut Engine,
    lines: impl Iterator<Item = (usize, &'a Line<'a>)>,
    last: Option<Millis>,
    ticks: &[Millis],
    mut observe: impl FnMut(&Engine, Millis),
    mut emit: impl FnMut(&Output),
    mut reject: impl FnMut(usize, Rejection),
) -> Counts {
    let mut counts = Counts::default();
    let mut outputs: Vec<Output> = Vec::new();
    let mut drain = |outputs: &mut Vec<Output>, counts: &mut Counts| {
        for o in outputs.drain(..) {
            emit(&o);
            counts.outputs += 1;
        }
    };
    let mut lines = lines.peekable();
    let mut ticks = ticks.iter().copied().filter(|t| last.is_some_and(|last| *t <= last)).peekable();
    let mut chunk: Vec<(usize, &[u8], Option<KnownTime>)> = Vec::with_capacity(BATCH);
    let mut batch: Vec<(&[u8], Option<crate::event::Source>, Option<KnownTime>)> = Vec::with_capacity(BATCH);
    let mut results = Vec::with_capacity(BATCH);
    while let Some((_, next)) = lines.peek() {
        while let Some(t) = ticks.next_if(|t| next.time > *t) {
            observe(engine, t);
        }
        // A batch never crosses the next tick, so the engine can be observed between lines.
        let until = ticks.peek().copied().unwrap_or(Millis::MAX);
        chunk.clear();
        while chunk.len() < BATCH {
            match lines.next_if(|(_, l)| l.time <= until) {
                Some((i, l)) => chunk.push((i, l.bytes, l.known)),
                None => break,
            }
        }
        batch.clear();
        batch.extend(chunk.iter().map(|(_, bytes, known)| (*bytes, None, *known)));
        engine.apply_batch(&batch, &mut results, &mut outputs);
        for ((i, _, _), result) in chunk.iter().zip(results.drain(..)) {
            match result {
                Ok(Outcome::Applied) => counts.applied += 1,
                Ok(Outcome::Duplicate) => counts.duplicates += 1,
                Err(rejection) => {
                    counts.rejected += 1;
                    reject(*i, rejection);
                }
            }
        }
        drain(&mut outputs, &mut counts);
    }
    for t in ticks {
        observe(engine, t);
    }
    if let Some(end) = last.and(engine.latest_event_time()) {
        engine.advance_to(end.min(last.unwrap_or(Millis::MAX)), &mut outputs);
    }
    drain(&mut outputs, &mut counts);
    counts
}

/// The latest time of the ordered `lines` that another line supports: one within `lead_secs`
/// before it, as the engine needs a second event to confirm a leap. What a backtest observes up
/// to, so one line dated 2099 does not stretch its observation dates over 75 years.
fn supported_end(lines: &[Line<'_>], lead_secs: u32) -> Option<Millis> {
    let times: Vec<Millis> = lines.iter().map(|l| l.time).filter(|t| *t != Millis::MIN).collect();
    if lead_secs == 0 || times.len() < 2 {
        return times.last().copied();
    }
    let lead = lead_secs as Millis * 1000;
    times.windows(2).rev().find(|w| w[1] - w[0] <= lead).map(|w| w[1]).or(times.first().copied())
}

/// The partition of a line's customer. The id is found by substring search, as the timestamp is;
/// an id with escapes takes a full parse, and a line with no readable id (bad input, rejected
/// later) goes to partition 0.
fn partition_of(finder: &memmem::Finder<'_>, line: &[u8], partitions: u32) -> u32 {
    match quick_string_field(finder, line) {
        Some(id) if !id.contains(&b'\\') => kafka_partition(id, partitions),
        _ => match crate::event::parse(line, None) {
            Ok(event) => kafka_partition(event.customer_id.as_bytes(), partitions),
            Err(_) => 0,
        },
    }
}

struct Line<'a> {
    time: Millis,
    /// The time as read, for the engine's parse (see [`KnownTime`]).
    known: Option<KnownTime>,
    file: usize,
    line: usize,
    bytes: &'a [u8],
}

/// Every non-blank line of every input, in event-time order. The time is read with a substring
/// search rather than a full parse (the full parse happens once, in the engine); a line whose
/// time cannot be read keeps its place relative to its neighbours and is rejected later.
fn ordered_lines(inputs: &[Input]) -> Vec<Line<'_>> {
    let finder = memmem::Finder::new(b"\"timestamp\"");
    let mut lines = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        let mut last_time = Millis::MIN;
        for (i, raw) in input.bytes.split(|b| *b == b'\n').enumerate() {
            let bytes = raw.strip_suffix(b"\r").unwrap_or(raw);
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let known = quick_time(&finder, bytes);
            let time = known.map_or(last_time, |k| k.millis);
            last_time = time;
            lines.push(Line { time, known, file, line: i + 1, bytes });
        }
    }
    if !lines.windows(2).all(|w| w[0].time <= w[1].time) {
        lines.sort_by_key(|l| l.time); // stable: ties keep input order
    }
    lines
}

/// A dead letter as a JSON line: where it came from, why, and the original line untouched
/// (as a string when it is UTF-8, else base16).
///
/// A `too_large` line keeps only its first [`crate::event::TOO_LARGE_PREFIX`] bytes (`original_bytes` says
/// how long it was), so one huge line cannot make the dead-letter file huge too.
pub fn dead_letter_json(inputs: &[Input], d: &DeadLetter<'_>) -> String {
    let kept = dead_letter_bytes(d.bytes, d.rejection.reason);
    let original = match std::str::from_utf8(kept).or_else(|e| std::str::from_utf8(&kept[..e.valid_up_to()])) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::String(kept.iter().map(|b| format!("{b:02x}")).collect()),
    };
    serde_json::json!({
        "reason": d.rejection.reason.as_str(),
        "field": d.rejection.field,
        "message": d.rejection.message,
        "file": inputs[d.file].name,
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
