//! `replay`: run the engine over NDJSON history. How users try a scorecard on history and how
//! the tests drive the engine end to end.
//!
//! The history is read by [`crate::input`]: its sources may mix the three event sources and
//! need not be sorted, and its lines come in event-time order (ties keep source order, then line
//! order), as if they had arrived in order, a batch at a time: nothing holds the whole history.
//! At the end stream time is advanced to the last event time the engines accepted (not a leap
//! no other event confirmed, nor a rejected line's), so the allowed lateness does not hold back
//! the last timers.

use std::collections::VecDeque;
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

/// Bytes of serialised outputs gathered before they are written.
const WRITE_CHUNK: usize = 1 << 16;

/// Outputs as JSON lines to a writer, a chunk at a time; the first write error is kept.
struct OutputWriter<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> OutputWriter<'_, W> {
    fn write(&mut self, o: &Output) {
        o.write_json(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_CHUNK {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error.get_or_insert(e);
            }
            self.buf.clear();
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

/// Reads `history` once, routes each line to its customer's partition a batch at a time, runs
/// the partitions' engines (on the calling thread with one thread, else on worker threads while
/// another reads) and writes their outputs and rejections in the merged order [`replay`]
/// describes. Returns how many lines there were and what the engines did.
fn run_partitions<W: Write>(
    engines: &mut [Engine],
    history: &History,
    w: &mut OutputWriter<'_, W>,
    report: &mut impl FnMut(&Reject),
) -> io::Result<(u64, Counts)> {
    let n = engines.len();
    let mut merger = Merger::new(n);
    let threads = history.threads();
    if threads <= 1 {
        let mut router = Router::new(n, Vec::new());
        let mut scratch = Scratch::default();
        let mut lines = history.lines()?;
        let mut send = |p: usize, batch: Batch| {
            merger.accept(apply(&mut engines[p], p, &batch, &mut scratch));
            merger.release(w, report);
        };
        while let Some(l) = lines.next()? {
            router.route(&l, &mut send);
        }
        router.finish(&mut send);
        merger.release_all(w, report);
        return Ok((router.seq, merger.counts));
    }
    // Partition p runs on worker p % workers.
    let workers = n.min(threads);
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::sync_channel::<Applied>(64);
        let mut inputs = Vec::with_capacity(workers);
        let mut mine: Vec<Vec<(usize, &mut Engine)>> = (0..workers).map(|_| Vec::new()).collect();
        for (p, engine) in engines.iter_mut().enumerate() {
            mine[p % workers].push((p, engine));
        }
        for mut engines in mine {
            let (tx, rx) = mpsc::sync_channel::<(usize, Batch)>(16);
            inputs.push(tx);
            let done = done_tx.clone();
            scope.spawn(move || {
                let mut scratch = Scratch::default();
                for (p, batch) in rx {
                    let engine = &mut *engines.iter_mut().find(|(q, _)| *q == p).expect("routed here").1;
                    // A closed channel is the writer gone with an error: stop quietly.
                    if done.send(apply(engine, p, &batch, &mut scratch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let reader = scope.spawn(move || -> io::Result<u64> {
            let mut router = Router::new(n, Vec::new());
            // A closed channel is a worker that panicked: its join says so.
            let mut send = |p: usize, batch: Batch| {
                let _ = inputs[p % workers].send((p, batch));
            };
            let mut lines = history.lines()?;
            while let Some(l) = lines.next()? {
                router.route(&l, &mut send);
            }
            router.finish(&mut send);
            Ok(router.seq)
        });
        for applied in done_rx {
            merger.accept(applied);
            merger.release(w, report);
        }
        merger.release_all(w, report);
        let lines = reader.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        Ok((lines, std::mem::take(&mut merger.counts)))
    })
}

/// Lines of input after which every partition's pending lines are sent on, however few (none
/// included, so that each partition's progress is known): how far one partition's outputs can
/// wait for another's.
pub const FLUSH_EVERY: u64 = 4096;

/// Cuts the ordered input into each partition's batches. The cuts depend only on the input and
/// the partition count, never on timing, so the merged order does not either.
struct Router {
    finder: memmem::Finder<'static>,
    pending: Vec<Batch>,
    /// Lines routed so far.
    seq: u64,
    /// Event times a batch must not cross (one partition only), ascending, and the next.
    ticks: Vec<Millis>,
    next_tick: usize,
}

impl Router {
    fn new(partitions: usize, ticks: Vec<Millis>) -> Router {
        Router {
            finder: memmem::Finder::new(b"\"customer_id\"").into_owned(),
            pending: (0..partitions).map(|_| Batch::new()).collect(),
            seq: 0,
            ticks,
            next_tick: 0,
        }
    }

    fn route(&mut self, l: &Line<'_>, send: &mut impl FnMut(usize, Batch)) {
        let n = self.pending.len();
        let p = if n == 1 { 0 } else { partition_of(&self.finder, l.bytes, n as u32) as usize };
        while self.ticks.get(self.next_tick).is_some_and(|t| l.time > *t) {
            self.next_tick += 1;
            if !self.pending[0].lines.is_empty() {
                self.send(0, send);
            }
        }
        self.pending[p].push(self.seq, l);
        self.seq += 1;
        if self.pending[p].lines.len() == BATCH {
            self.send(p, send);
        }
        if n > 1 && self.seq % FLUSH_EVERY == 0 {
            (0..n).for_each(|p| self.send(p, send));
        }
    }

    /// Sends what is left.
    fn finish(&mut self, send: &mut impl FnMut(usize, Batch)) {
        for p in 0..self.pending.len() {
            if !self.pending[p].lines.is_empty() || self.pending.len() > 1 {
                self.send(p, send);
            }
        }
    }

    fn send(&mut self, p: usize, send: &mut impl FnMut(usize, Batch)) {
        let mut batch = std::mem::replace(&mut self.pending[p], Batch::new());
        batch.key = self.seq;
        send(p, batch);
    }
}

/// What one batch did on its partition's engine.
struct Applied {
    partition: usize,
    /// The batch's [`Batch::key`].
    key: u64,
    outputs: Vec<Output>,
    rejects: Vec<Reject>,
    counts: Counts,
}

/// Buffers reused from batch to batch.
#[derive(Default)]
struct Scratch {
    results: Vec<Result<Outcome, Rejection>>,
}

fn apply(engine: &mut Engine, partition: usize, batch: &Batch, scratch: &mut Scratch) -> Applied {
    let mut applied =
        Applied { partition, key: batch.key, outputs: Vec::new(), rejects: Vec::new(), counts: Counts::default() };
    let inputs: Vec<(&[u8], Option<crate::event::Source>, Option<KnownTime>)> =
        (0..batch.lines.len()).map(|i| (batch.bytes(i), None, batch.lines[i].known)).collect();
    engine.apply_batch(&inputs, &mut scratch.results, &mut applied.outputs);
    for (i, result) in scratch.results.drain(..).enumerate() {
        match result {
            Ok(Outcome::Applied) => applied.counts.applied += 1,
            Ok(Outcome::Duplicate) => applied.counts.duplicates += 1,
            Err(rejection) => {
                applied.counts.rejected += 1;
                let l = &batch.lines[i];
                let bytes = batch.bytes(i).to_vec();
                applied.rejects.push(Reject { seq: l.seq, file: l.file, line: l.line, bytes, rejection });
            }
        }
    }
    applied.counts.outputs = applied.outputs.len() as u64;
    applied
}

/// Puts the partitions' outputs and rejections in the merged order as their batches come: an
/// output leaves once every partition has applied a batch with a key at least its own (no
/// partition can produce an earlier one then), a rejection once every partition is past its line.
struct Merger {
    /// The key of each partition's latest applied batch.
    progress: Vec<u64>,
    outputs: Vec<VecDeque<(u64, Output)>>,
    rejects: Vec<VecDeque<Reject>>,
    counts: Counts,
}

impl Merger {
    fn new(partitions: usize) -> Merger {
        Merger {
            progress: vec![0; partitions],
            outputs: (0..partitions).map(|_| VecDeque::new()).collect(),
            rejects: (0..partitions).map(|_| VecDeque::new()).collect(),
            counts: Counts::default(),
        }
    }

    fn accept(&mut self, a: Applied) {
        let p = a.partition;
        self.progress[p] = a.key;
        self.outputs[p].extend(a.outputs.into_iter().map(|o| (a.key, o)));
        self.rejects[p].extend(a.rejects);
        self.counts.add(&a.counts);
    }

    fn release<W: Write>(&mut self, w: &mut OutputWriter<'_, W>, report: &mut impl FnMut(&Reject)) {
        let until = self.progress.iter().copied().min().unwrap_or(u64::MAX);
        self.release_until(until, w, report);
    }

    fn release_all<W: Write>(&mut self, w: &mut OutputWriter<'_, W>, report: &mut impl FnMut(&Reject)) {
        self.release_until(u64::MAX, w, report);
    }

    /// Outputs with keys up to `until`, rejections of lines before it.
    fn release_until<W: Write>(&mut self, until: u64, w: &mut OutputWriter<'_, W>, report: &mut impl FnMut(&Reject)) {
        loop {
            let next = (0..self.outputs.len())
                .filter_map(|p| self.outputs[p].front().map(|(k, _)| (*k, p)))
                .filter(|(k, _)| *k <= until)
                .min();
            let Some((_, p)) = next else { break };
            let (_, o) = self.outputs[p].pop_front().expect("a front");
            w.write(&o);
        }
        loop {
            let next = (0..self.rejects.len())
                .filter_map(|p| self.rejects[p].front().map(|r| (r.seq, p)))
                .filter(|(s, _)| *s < until)
                .min();
            let Some((_, p)) = next else { break };
            report(&self.rejects[p].pop_front().expect("a front"));
        }
    }
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

/// A line a partition rejected, kept to be reported in input order with the others'.
struct Reject {
    seq: u64,
    file: usize,
    line: usize,
    bytes: Vec<u8>,
    rejection: Rejection,
}

impl Counts {
    fn add(&mut self, c: &Counts) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.outputs += c.outputs;
    }
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
    /// How many lines of the whole input had been routed when it was sent: its place in the
    /// merged order of several partitions' outputs.
    key: u64,
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
    fn new() -> Batch {
        Batch { bytes: Vec::with_capacity(BATCH * 256), lines: Vec::with_capacity(BATCH), key: 0 }
    }

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

/// Batches a reading thread sent, cut at the ticks already (so `until` is never crossed).
struct Received {
    rx: mpsc::Receiver<Batch>,
    next: Option<Batch>,
}

impl Feed for Received {
    fn peek_time(&mut self) -> io::Result<Option<Millis>> {
        while self.next.as_ref().is_none_or(|b| b.lines.is_empty()) {
            match self.rx.recv() {
                Ok(batch) => self.next = Some(batch),
                Err(_) => return Ok(None),
            }
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
