//! The k-way merge: every source (or, for a source that was not in order, its sorted runs) is
//! one stream in event-time order, and a heap hands out their lines by (event time, source
//! index, line number). That is exactly the order a stable sort of all lines by event time
//! gives, since ties keep source order and then line order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

use super::read::{Head, TextLines};
use super::reorder::Reordered;
use super::spill::RunLines;
use crate::event::{KnownTime, Millis};

/// One line of the history, borrowed from the reader until the next is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The event time it is ordered by: its own, or its predecessor's in its source when it has
    /// none that can be read without a full parse.
    pub time: Millis,
    /// The time as read, for the engine's parse (see [`KnownTime`]).
    pub known: Option<KnownTime>,
    /// Index of its source, in the order the sources were given.
    pub file: usize,
    /// Its line number in the source, from 1, counting blank lines.
    pub line: u64,
    pub bytes: &'a [u8],
}

pub(crate) enum Stream {
    Text(Box<TextLines>),
    Reordered(Box<Reordered>),
    Run(RunLines),
}

impl Stream {
    fn advance(&mut self) -> io::Result<bool> {
        match self {
            Stream::Text(s) => s.advance(),
            Stream::Reordered(s) => s.advance(),
            Stream::Run(s) => s.advance(),
        }
    }

    fn head(&self) -> Head {
        match self {
            Stream::Text(s) => s.head(),
            Stream::Reordered(s) => s.head(),
            Stream::Run(s) => s.head(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Stream::Text(s) => s.bytes(),
            Stream::Reordered(s) => s.bytes(),
            Stream::Run(s) => s.bytes(),
        }
    }
}

/// The lines of a [`super::History`] in event-time order, read as they are asked for.
pub struct Lines {
    /// Each stream with the index of the source it belongs to (and that source's name, for
    /// messages).
    streams: Vec<(usize, Stream)>,
    names: Vec<String>,
    heap: BinaryHeap<Reverse<(Millis, usize, u64, usize)>>,
    /// The stream whose line was handed out last: advanced before the next one is chosen.
    taken: Option<usize>,
}

impl Lines {
    pub(crate) fn new(streams: Vec<(usize, Stream)>, names: Vec<String>) -> io::Result<Self> {
        let mut lines = Lines { streams, names, heap: BinaryHeap::new(), taken: None };
        for i in 0..lines.streams.len() {
            lines.push_next(i)?;
        }
        Ok(lines)
    }

    fn push_next(&mut self, i: usize) -> io::Result<()> {
        let (file, stream) = &mut self.streams[i];
        let more = stream
            .advance()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read input {}: {e}", self.names[*file])))?;
        if more {
            let h = stream.head();
            self.heap.push(Reverse((h.time, *file, h.line, i)));
        }
        Ok(())
    }

    fn settle(&mut self) -> io::Result<()> {
        if let Some(i) = self.taken.take() {
            self.push_next(i)?;
        }
        Ok(())
    }

    /// The event time of the next line; `None` at the end.
    pub fn peek_time(&mut self) -> io::Result<Option<Millis>> {
        self.settle()?;
        Ok(self.heap.peek().map(|Reverse((t, ..))| *t))
    }

    /// The next line in order; `None` at the end.
    #[allow(clippy::should_implement_trait)] // lends its line, so it cannot be an Iterator
    pub fn next(&mut self) -> io::Result<Option<Line<'_>>> {
        self.settle()?;
        let Some(Reverse((time, file, line, i))) = self.heap.pop() else { return Ok(None) };
        self.taken = Some(i);
        let stream = &self.streams[i].1;
        Ok(Some(Line { time, known: stream.head().known, file, line, bytes: stream.bytes() }))
    }
}
