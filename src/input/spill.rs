//! External sort of one source that is not in event-time order: its lines are gathered into
//! runs of at most the memory limit, each run is sorted by (event time, line number) and written
//! to the spill directory, and runs are merged down until at most [`FAN_IN`] are left. The merge
//! ([`super::merge`]) then reads the runs as it reads a source that was in order.
//!
//! A run file holds records: time, line number, the quick-read time's span (if any), the
//! line's length and bytes, little-endian. They are only read back by this process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::read::{Head, Place, TextLines};
use crate::event::{KnownTime, Millis};

/// The most runs merged at once (and so the most open for one source): each costs a read buffer.
pub(crate) const FAN_IN: usize = 64;

/// Buffer of each run being read or written.
const RUN_BUFFER: usize = 1 << 16;

/// Size of a record's fixed part: time, line, known flag, start, len, millis, byte count.
const HEADER: usize = 8 + 8 + 1 + 4 + 4 + 8 + 4;

/// Lines held in memory for a run: their bytes in one arena, sorted by (time, line) when written.
#[derive(Default)]
pub(crate) struct Held {
    arena: Vec<u8>,
    lines: Vec<(Head, usize, usize)>,
}

impl Held {
    /// Adds a line if it fits in `memory` bytes of capacity (growing the buffers exactly, never
    /// doubling past the limit); `false` if it does not (always `true` into empty buffers).
    pub(crate) fn push(&mut self, head: Head, bytes: &[u8], memory: usize) -> bool {
        const PER_LINE: usize = std::mem::size_of::<(Head, usize, usize)>();
        let (need_bytes, need_lines) = (self.arena.len() + bytes.len(), self.lines.len() + 1);
        if need_bytes > self.arena.capacity() || need_lines > self.lines.capacity() {
            let bytes_cap = (self.arena.capacity() * 2).max(need_bytes).max(4096);
            let lines_cap = (self.lines.capacity() * 2).max(need_lines).max(64);
            let (bytes_cap, lines_cap) = if bytes_cap + lines_cap * PER_LINE <= memory {
                (bytes_cap, lines_cap)
            } else if need_bytes + need_lines * PER_LINE <= memory || self.lines.is_empty() {
                // The last step to the limit: split what is left in proportion.
                let spare = memory.saturating_sub(need_bytes + need_lines * PER_LINE);
                (need_bytes + spare * 4 / 5, need_lines + spare / 5 / PER_LINE)
            } else {
                return false;
            };
            self.arena.reserve_exact(bytes_cap.max(need_bytes) - self.arena.len());
            self.lines.reserve_exact(lines_cap.max(need_lines) - self.lines.len());
        }
        self.lines.push((head, self.arena.len(), bytes.len()));
        self.arena.extend_from_slice(bytes);
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Writes the held lines to `path` in (time, line) order and empties the buffers.
    pub(crate) fn write_run(&mut self, path: &Path) -> io::Result<()> {
        self.lines.sort_unstable_by_key(|(h, _, _)| (h.time, h.line));
        let mut w = BufWriter::with_capacity(RUN_BUFFER, File::create(path)?);
        for (head, start, len) in &self.lines {
            write_record(&mut w, head, &self.arena[*start..*start + *len])?;
        }
        self.lines.clear();
        self.arena.clear();
        w.flush()
    }
}

/// Sorts the source at `place` into at most [`FAN_IN`] sorted run files in `dir`, named after
/// `tag`, using at most about `memory` bytes for the lines held at once.
pub(crate) fn sort(place: &Place, memory: usize, dir: &Path, tag: usize) -> io::Result<Vec<PathBuf>> {
    let mut lines = TextLines::open(place)?;
    let mut runs = Vec::new();
    let mut held = Held::default();
    let name = |runs: &Vec<PathBuf>| dir.join(format!("input{tag}-run{}", runs.len()));
    while lines.advance()? {
        if !held.push(lines.head(), lines.bytes(), memory) {
            let path = name(&runs);
            held.write_run(&path)?;
            runs.push(path);
            assert!(held.push(lines.head(), lines.bytes(), memory), "empty buffers take any line");
        }
    }
    if !held.is_empty() {
        let path = name(&runs);
        held.write_run(&path)?;
        runs.push(path);
    }
    // Merge down, FAN_IN runs into one, until few enough are left to merge with the rest.
    let mut level = 0;
    while runs.len() > FAN_IN {
        level += 1;
        let mut merged = Vec::new();
        for (i, group) in runs.chunks(FAN_IN).enumerate() {
            let path = dir.join(format!("input{tag}-level{level}-run{i}"));
            merge_runs(group, &path)?;
            for old in group {
                std::fs::remove_file(old)?;
            }
            merged.push(path);
        }
        runs = merged;
    }
    Ok(runs)
}

fn write_record(w: &mut impl Write, head: &Head, bytes: &[u8]) -> io::Result<()> {
    let mut fixed = [0u8; HEADER];
    fixed[0..8].copy_from_slice(&head.time.to_le_bytes());
    fixed[8..16].copy_from_slice(&head.line.to_le_bytes());
    if let Some(k) = head.known {
        fixed[16] = 1;
        fixed[17..21].copy_from_slice(&k.start.to_le_bytes());
        fixed[21..25].copy_from_slice(&k.len.to_le_bytes());
        fixed[25..33].copy_from_slice(&k.millis.to_le_bytes());
    }
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("a line of 4 GiB or more"))?;
    fixed[33..37].copy_from_slice(&len.to_le_bytes());
    w.write_all(&fixed)?;
    w.write_all(bytes)
}

/// Merges sorted runs into one at `out`.
fn merge_runs(runs: &[PathBuf], out: &Path) -> io::Result<()> {
    let mut readers = runs.iter().map(|p| RunLines::open(p)).collect::<io::Result<Vec<_>>>()?;
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if r.advance()? {
            heap.push(Reverse((r.head().time, r.head().line, i)));
        }
    }
    let mut w = BufWriter::with_capacity(RUN_BUFFER, File::create(out)?);
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let r = &mut readers[i];
        write_record(&mut w, &r.head(), r.bytes())?;
        if r.advance()? {
            heap.push(Reverse((r.head().time, r.head().line, i)));
        }
    }
    w.flush()
}

/// A run's records, in order.
pub(crate) struct RunLines {
    r: BufReader<File>,
    head: Head,
    bytes: Vec<u8>,
}

impl RunLines {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(RunLines {
            r: BufReader::with_capacity(RUN_BUFFER, File::open(path)?),
            head: Head { time: Millis::MIN, known: None, line: 0 },
            bytes: Vec::new(),
        })
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Moves to the next record; `false` at the end of the run.
    pub(crate) fn advance(&mut self) -> io::Result<bool> {
        if self.r.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let mut fixed = [0u8; HEADER];
        self.r.read_exact(&mut fixed)?;
        let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
        let i64_at = |i: usize| i64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
        self.head = Head {
            time: i64_at(0),
            line: i64_at(8) as u64,
            known: (fixed[16] == 1).then(|| KnownTime { start: u32_at(17), len: u32_at(21), millis: i64_at(25) }),
        };
        self.bytes.resize(u32_at(33) as usize, 0);
        self.r.read_exact(&mut self.bytes)?;
        Ok(true)
    }
}
