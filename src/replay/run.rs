//! Running the engines of a replay over the batches the feed cuts: one engine on the calling
//! thread ([`run_partition`]) or several partitions on worker threads ([`run_partitions`]),
//! with the [`Merger`] that puts their outputs and rejections back in input order and the
//! writer of output lines. It may not read or reorder the input (that is `feed`), and what it
//! hands an engine is exactly the routed lines, so threads never change the outputs' bytes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

use super::feed::{Batch, Feed, Router, BATCH};
use crate::engine::{Engine, Outcome};
use crate::event::{KnownTime, Millis, Rejection};
use crate::input::History;
use crate::output::Output;

/// Bytes of serialised outputs gathered before they are written.
pub(super) const WRITE_CHUNK: usize = 1 << 16;

/// Outputs as JSON lines to a writer, a chunk at a time; the first write error is kept.
pub(super) struct OutputWriter<'a, W: Write> {
    pub(super) out: &'a mut W,
    pub(super) buf: Vec<u8>,
    pub(super) error: Option<io::Error>,
}

impl<W: Write> OutputWriter<'_, W> {
    pub(super) fn write(&mut self, o: &Output) {
        o.write_json(&mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() >= WRITE_CHUNK {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error.get_or_insert(e);
            }
            self.buf.clear();
        }
    }

    pub(super) fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

/// Reads `history` once, routes each line to its customer's partition a batch at a time, runs
/// the partitions' engines (on the calling thread with one thread, else on worker threads while
/// another reads) and writes their outputs and rejections in the merged order [`replay`](super::replay)
/// describes. Returns how many lines there were and what the engines did.
pub(super) fn run_partitions<W: Write>(
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

#[derive(Default)]
pub(super) struct Counts {
    pub(super) applied: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
    pub(super) outputs: u64,
}

/// A line a partition rejected, kept to be reported in input order with the others'.
pub(super) struct Reject {
    seq: u64,
    pub(super) file: usize,
    pub(super) line: usize,
    pub(super) bytes: Vec<u8>,
    pub(super) rejection: Rejection,
}

impl Counts {
    fn add(&mut self, c: &Counts) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.rejected += c.rejected;
        self.outputs += c.outputs;
    }
}

/// Runs one engine over the lines of `feed`, then advances it to the latest event time it
/// accepted, if no later than `last` (`None`: no advance). `observe` sees the engine at each of
/// `ticks` up to `last`, after the lines up to it and before the lines after.
pub(super) fn run_partition(
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
