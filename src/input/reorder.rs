//! A source that is nearly in event-time order (a few lines up to [`WINDOW`] late: re-sent
//! duplicates, interleaved producers), read in order through a small reorder buffer instead of
//! being sorted on disk.
//!
//! The first scan of the source ([`super::History::open`]) learns `window`, the most any line
//! is later than the latest time before it, leaving out the lines later than [`WINDOW`]
//! (*outliers*, e.g. one event dated 1970 in the middle of 2026), which it keeps aside as one
//! sorted run. On every pass the other lines go through a min-heap by (time, line) and one
//! leaves it once the latest time read is `window` past it: no later line can come before it
//! then, so the order is exactly a stable sort's. The buffer holds at most the lines of one
//! `window` of event time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;

use super::read::{Head, Place, TextLines};
use crate::event::Millis;

/// Lines later than this behind the latest time before them are outliers (kept aside, sorted):
/// one hour of event time.
pub(crate) const WINDOW: Millis = 3_600_000;

/// A nearly ordered source's lines in order, its outliers left out.
pub(crate) struct Reordered {
    text: TextLines,
    /// Line numbers of the outliers, ascending.
    skip: Arc<[u64]>,
    next_skip: usize,
    window: Millis,
    heap: BinaryHeap<Reverse<(Millis, u64, usize)>>,
    /// Buffered lines; `free` lists the slots to reuse, so steady state allocates nothing.
    slots: Vec<(Head, Vec<u8>)>,
    free: Vec<usize>,
    max_seen: Millis,
    cur: Option<usize>,
    eof: bool,
}

impl Reordered {
    pub(crate) fn open(place: &Place, window: Millis, skip: Arc<[u64]>) -> io::Result<Self> {
        Ok(Reordered {
            text: TextLines::open(place)?,
            skip,
            next_skip: 0,
            window,
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            max_seen: Millis::MIN,
            cur: None,
            eof: false,
        })
    }

    pub(crate) fn head(&self) -> Head {
        self.slots[self.cur.expect("advanced")].0
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.slots[self.cur.expect("advanced")].1
    }

    /// Moves to the next line in order; `false` at the end.
    pub(crate) fn advance(&mut self) -> io::Result<bool> {
        if let Some(slot) = self.cur.take() {
            self.free.push(slot);
        }
        loop {
            match self.heap.peek() {
                Some(&Reverse((t, _, slot))) if self.eof || t <= self.max_seen.saturating_sub(self.window) => {
                    self.heap.pop();
                    self.cur = Some(slot);
                    return Ok(true);
                }
                None if self.eof => return Ok(false),
                _ => {}
            }
            if !self.text.advance()? {
                self.eof = true;
                continue;
            }
            let head = self.text.head();
            while self.skip.get(self.next_skip).is_some_and(|l| *l < head.line) {
                self.next_skip += 1;
            }
            if self.skip.get(self.next_skip) == Some(&head.line) {
                continue;
            }
            self.max_seen = self.max_seen.max(head.time);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push((head, Vec::new()));
                self.slots.len() - 1
            });
            let (h, bytes) = &mut self.slots[slot];
            *h = head;
            bytes.clear();
            bytes.extend_from_slice(self.text.bytes());
            self.heap.push(Reverse((head.time, head.line, slot)));
        }
    }
}
