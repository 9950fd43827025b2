//! The input side of a replay: the history's lines, already in event-time order, copied into
//! [`Batch`]es, routed to their customer's partition ([`Router`]) and handed to an engine's run
//! through a [`Feed`]. It may not apply lines or write outputs (that is `run`); where it cuts
//! depends only on the input and the partition count, so the merged output order does too.

use std::io;
use std::sync::mpsc;

use memchr::memmem;

use crate::event::{quick_string_field, KnownTime, Millis};
use crate::input::{History, Line, Lines};
use crate::partition::kafka_partition;

/// Lines per [`Engine::apply_batch`](crate::engine::Engine::apply_batch) call: enough for the prefetches of a batch to overlap,
/// few enough that its customers stay in cache until they are applied.
pub(super) const BATCH: usize = 64;

/// Up to [`BATCH`] lines copied out of the reader, in order, with where each came from.
#[derive(Default)]
pub(super) struct Batch {
    bytes: Vec<u8>,
    pub(super) lines: Vec<BatchLine>,
    /// How many lines of the whole input had been routed when it was sent: its place in the
    /// merged order of several partitions' outputs.
    pub(super) key: u64,
}

pub(super) struct BatchLine {
    /// Position in the whole history's order.
    pub(super) seq: u64,
    pub(super) time: Millis,
    pub(super) known: Option<KnownTime>,
    pub(super) file: usize,
    pub(super) line: usize,
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

    pub(super) fn bytes(&self, i: usize) -> &[u8] {
        let l = &self.lines[i];
        &self.bytes[l.start..l.start + l.len]
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

/// Where a partition's lines come from, in order.
pub(super) trait Feed {
    /// The time of the next line; `None` at the end.
    fn peek_time(&mut self) -> io::Result<Option<Millis>>;
    /// Puts the next lines into the (empty) `batch`: at most [`BATCH`], none later than `until`.
    fn fill(&mut self, batch: &mut Batch, until: Millis) -> io::Result<()>;
}

/// Straight from the reader, numbering the lines.
pub(super) struct Merged {
    pub(super) lines: Lines,
    pub(super) seq: u64,
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
pub(super) struct Received {
    pub(super) rx: mpsc::Receiver<Batch>,
    pub(super) next: Option<Batch>,
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

/// Lines of input after which every partition's pending lines are sent on, however few (none
/// included, so that each partition's progress is known): how far one partition's outputs can
/// wait for another's.
pub const FLUSH_EVERY: u64 = 4096;

/// Cuts the ordered input into each partition's batches. The cuts depend only on the input and
/// the partition count, never on timing, so the merged order does not either.
pub(super) struct Router {
    finder: memmem::Finder<'static>,
    pending: Vec<Batch>,
    /// Lines routed so far.
    pub(super) seq: u64,
    /// Event times a batch must not cross (one partition only), ascending, and the next.
    ticks: Vec<Millis>,
    next_tick: usize,
}

impl Router {
    pub(super) fn new(partitions: usize, ticks: Vec<Millis>) -> Router {
        Router {
            finder: memmem::Finder::new(b"\"customer_id\"").into_owned(),
            pending: (0..partitions).map(|_| Batch::new()).collect(),
            seq: 0,
            ticks,
            next_tick: 0,
        }
    }

    pub(super) fn route(&mut self, l: &Line<'_>, send: &mut impl FnMut(usize, Batch)) {
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
    pub(super) fn finish(&mut self, send: &mut impl FnMut(usize, Batch)) {
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

/// The first event time of `history`, and the latest that another line supports: one within
/// `lead_secs` before it in time order, as the engine needs a second event to confirm a leap.
/// What a backtest observes up to, so one line dated 2099 does not stretch its observation
/// dates over 75 years.
pub(super) fn first_and_supported_end(
    history: &History,
    lead_secs: u32,
) -> io::Result<(Option<Millis>, Option<Millis>)> {
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
