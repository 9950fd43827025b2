//! `replay`: run the engine over NDJSON history. How users try a scorecard on history and how
//! the tests drive the engine end to end.
//!
//! The history is read by [`crate::input`]: its sources may mix the three event sources and
//! need not be sorted, and its lines come in event-time order (ties keep source order, then line
//! order), as if they had arrived in order, a batch at a time: nothing holds the whole history.
//! At the end stream time is advanced to the last event time the engines accepted (not a leap
//! no other event confirmed, nor a rejected line's), so the allowed lateness does not hold back
//! the last timers.

use std::io::{self, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memchr::memmem;

use crate::engine::{Engine, Outcome};
use crate::event::{dead_letter_bytes, quick_string_field, KnownTime, Millis, RejectReason, Rejection};
pub use crate::input::Input;
use crate::input::{History, Line, Lines};
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

/// Replays `history` through `engines`, one engine per partition, writing each output as a JSON
/// line to `out` and handing each rejected line to `dead_letter` (in input order).
///
/// With one engine, lines stream through it and outputs are written as they come. With several,
/// customers are split over them by Kafka's default partitioner on `customer_id` (as producers
/// keyed by customer split them over that many partitions), each partition runs on its own
/// thread with its own stream time, exactly as the Kafka shell runs one engine per partition,
/// and the outputs are merged by (timestamp, partition, order within the partition): the same
/// input and partition count always give the same bytes. A partition's stream time only moves
/// with its own events, so timers can fire at other points of the input than with a single
/// engine: compare outputs between runs with the same partition count. (The partitions' outputs
/// and dead letters are held until the end to be merged; the input is not.)
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

    if let [engine] = engines {
        let mut buf = Vec::with_capacity(1 << 16);
        let mut write_error = None;
        let mut feed = Merged { lines: history.lines()?, seq: 0 };
        let counts = run_partition(
            engine,
            &mut feed,
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
            |batch, i, rejection| {
                let l = &batch.lines[i];
                dead_letter(DeadLetter { file: l.file, line: l.line, bytes: batch.bytes(i), rejection })
            },
        )?;
        if let Some(e) = write_error {
            return Err(e);
        }
        out.write_all(&buf)?;
        summary.lines = feed.seq;
        summary.add(&counts);
    } else {
        let (mut results, lines) = run_partitions(engines, history)?;
        summary.lines = lines;
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
            rejects.extend(run.rejects.iter());
        }
        outputs.sort_unstable_by_key(|&(t, p, k, _)| (t, p, k));
        let mut w = io::BufWriter::with_capacity(1 << 16, &mut *out);
        for (_, _, _, json) in outputs {
            w.write_all(json)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        rejects.sort_unstable_by_key(|r| r.seq);
        for r in rejects {
            dead_letter(DeadLetter { file: r.file, line: r.line, bytes: &r.bytes, rejection: r.rejection.clone() });
        }
    }
    out.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Reads `history` once, sending each line to its customer's partition, a batch at a time, and
/// runs each partition's engine on its own thread. Returns what each partition did and how many
/// lines there were.
fn run_partitions(engines: &mut [Engine], history: &History) -> io::Result<(Vec<PartitionRun>, u64)> {
    let n = engines.len();
    let finder = memmem::Finder::new(b"\"customer_id\"");
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for engine in engines.iter_mut() {
            let (tx, rx) = mpsc::sync_channel::<Batch>(16);
            senders.push(tx);
            handles.push(scope.spawn(move || {
                let mut run = PartitionRun::default();
                let mut feed = Received { rx, next: None };
                let counts = run_partition(
                    engine,
                    &mut feed,
                    None,
                    &[],
                    |_, _| {},
                    |o| run.outputs.push((o.timestamp(), o.to_json())),
                    |batch, i, rejection| {
                        let l = &batch.lines[i];
                        let bytes = batch.bytes(i).to_vec();
                        run.rejects.push(Reject { seq: l.seq, file: l.file, line: l.line, bytes, rejection });
                    },
                );
                run.counts = counts.expect("a partition's feed cannot fail");
                run
            }));
        }
        let mut seq = 0;
        let mut route = || -> io::Result<()> {
            let mut pending: Vec<Batch> = (0..n).map(|_| Batch::default()).collect();
            let mut lines = history.lines()?;
            while let Some(l) = lines.next()? {
                let p = partition_of(&finder, l.bytes, n as u32) as usize;
                pending[p].push(seq, &l);
                seq += 1;
                if pending[p].lines.len() == BATCH {
                    // A closed channel is a partition that panicked: its join says so.
                    let _ = senders[p].send(std::mem::take(&mut pending[p]));
                }
            }
            for (p, batch) in pending.into_iter().enumerate() {
                if !batch.lines.is_empty() {
                    let _ = senders[p].send(batch);
                }
            }
            Ok(())
        };
        let routed = route();
        drop(senders);
        let runs = handles.into_iter().map(|h| h.join().expect("a replay partition panicked")).collect();
        routed.map(|()| (runs, seq))
    })
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
    rejects: Vec<Reject>,
}

/// A line a partition rejected, kept to be reported in input order with the others'.
struct Reject {
    seq: u64,
    file: usize,
    line: usize,
    bytes: Vec<u8>,
    rejection: Rejection,
}

impl ReplaySummary {
    fn add(&mut self, c: &Counts) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.outputs += c.outputs;
    }
}

/// Up to [`BATCH`] lines copied out of the reader, in order, with where each came from.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: Vec<BatchLine>,
}

struct BatchLine {
    /// Position in the whole history's order.
    seq: u64,
    time: Millis,
    known: Option<KnownTime>,
    file: usize,
    line: usize,
    start: usize,
    len: usize,
}

impl Batch {
    fn push(&mut self, seq: u64, l: &Line<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(l.bytes);
        let (time, known, file, line, len) = (l.time, l.known, l.file, l.line as usize, l.bytes.len());
        self.lines.push(BatchLine { seq, time, known, file, line, start, len });
    }

    fn bytes(&self, i: usize) -> &[u8] {
        let l = &self.lines[i];
        &self.bytes[l.start..l.start + l.len]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

/// Where a partition's lines come from, in order.
trait Feed {
    /// The time of the next line; `None` at the end.
    fn peek_time(&mut self) -> io::Result<Option<Millis>>;
    /// Puts the next lines into the (empty) `batch`: at most [`BATCH`], none later than `until`.
    fn fill(&mut self, batch: &mut Batch, until: Millis) -> io::Result<()>;
}

/// Straight from the reader, numbering the lines.
struct Merged {
    lines: Lines,
    seq: u64,
}

impl Feed for Merged {
    fn peek_time(&mut self) -> io::Result<Option<Millis>> {
        self.lines.peek_time()
    }

    fn fill(&mut self, batch: &mut Batch, until: Millis) -> io::Result<()> {
        while batch.lines.len() < BATCH && self.lines.peek_time()?.is_some_and(|t| t <= until) {
            let line = self.lines.next()?.expect("peeked");
            batch.push(self.seq, &line);
            self.seq += 1;
        }
        Ok(())
    }
}

/// Batches the router sent to this partition (no ticks: `until` is never reached).
struct Received {
    rx: mpsc::Receiver<Batch>,
    next: Option<Batch>,
}

impl Feed for Received {
    fn peek_time(&mut self) -> io::Result<Option<Millis>> {
        if self.next.is_none() {
            self.next = self.rx.recv().ok();
        }
        Ok(self.next.as_ref().and_then(|b| b.lines.first()).map(|l| l.time))
    }

    fn fill(&mut self, batch: &mut Batch, _until: Millis) -> io::Result<()> {
        if let Some(next) = self.next.take() {
            *batch = next;
        }
        Ok(())
    }
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
    let mut feed = Merged { lines: history.lines()?, seq: 0 };
    let counts = run_partition(engine, &mut feed, last, &ticks, observe, &mut on_output, |batch, i, rejection| {
        let l = &batch.lines[i];
        dead_letter(DeadLetter { file: l.file, line: l.line, bytes: batch.bytes(i), rejection })
    })?;
    let mut summary = ReplaySummary { lines: feed.seq, ..Default::default() };
    summary.add(&counts);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Runs one engine over the lines of `feed`, then advances it to the latest event time it
/// accepted, if no later than `last` (`None`: no advance). `observe` sees the engine at each of
/// `ticks` up to `last`, after the lines up to it and before the lines after.
fn run_partition(
    engine: &mut Engine,
    feed: &mut impl Feed,
    last: Option<Millis>,
    ticks: &[Millis],
    mut observe: impl FnMut(&Engine, Millis),
    mut emit: impl FnMut(&Output),
    mut reject: impl FnMut(&Batch, usize, Rejection),
) -> io::Result<Counts> {
    let mut counts = Counts::default();
    let mut outputs: Vec<Output> = Vec::new();
    let mut drain = |outputs: &mut Vec<Output>, counts: &mut Counts| {
        for o in outputs.drain(..) {
            emit(&o);
            counts.outputs += 1;
        }
    };
    let mut ticks = ticks.iter().copied().filter(|t| last.is_some_and(|last| *t <= last)).peekable();
    let mut batch = Batch::default();
    let mut results = Vec::with_capacity(BATCH);
    while let Some(next) = feed.peek_time()? {
        while let Some(t) = ticks.next_if(|t| next > *t) {
            observe(engine, t);
        }
        // A batch never crosses the next tick, so the engine can be observed between lines.
        let until = ticks.peek().copied().unwrap_or(Millis::MAX);
        batch.clear();
        feed.fill(&mut batch, until)?;
        let inputs: Vec<(&[u8], Option<crate::event::Source>, Option<KnownTime>)> =
            (0..batch.lines.len()).map(|i| (batch.bytes(i), None, batch.lines[i].known)).collect();
        engine.apply_batch(&inputs, &mut results, &mut outputs);
        for (i, result) in results.drain(..).enumerate() {
            match result {
                Ok(Outcome::Applied) => counts.applied += 1,
                Ok(Outcome::Duplicate) => counts.duplicates += 1,
                Err(rejection) => {
                    counts.rejected += 1;
                    reject(&batch, i, rejection);
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
    Ok(counts)
}

/// The first event time of `history`, and the latest that another line supports: one within
/// `lead_secs` before it in time order, as the engine needs a second event to confirm a leap.
/// What a backtest observes up to, so one line dated 2099 does not stretch its observation
/// dates over 75 years.
fn first_and_supported_end(history: &History, lead_secs: u32) -> io::Result<(Option<Millis>, Option<Millis>)> {
    let lead = lead_secs as Millis * 1000;
    let (mut first, mut prev, mut supported, mut n) = (None, None, None, 0u64);
    let mut lines = history.lines()?;
    while let Some(l) = lines.next()? {
        if l.time == Millis::MIN {
            continue;
        }
        n += 1;
        first = first.or(Some(l.time));
        if prev.is_some_and(|p| l.time - p <= lead) {
            supported = Some(l.time);
        }
        prev = Some(l.time);
    }
    if lead_secs == 0 || n < 2 {
        return Ok((first, prev));
    }
    Ok((first, supported.or(first)))
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
