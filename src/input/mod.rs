//! Reading history for `replay`, `backtest` and `calibrate`: any number of NDJSON sources
//! (files, gzip or zstd by their first bytes, standard input, or bytes in memory), handed out
//! line by line in event-time order without ever holding the history.
//!
//! [`History::open`] looks at every source once (a cheap scan: line breaks and the quick-read
//! timestamp) to count its lines and learn how far it is from event-time order. A source in
//! order is read straight from disk at every pass; one nearly in order (lines at most an hour
//! late but for a few outliers) through a small reorder buffer (`reorder.rs`), its outliers from
//! a sorted run; any other is sorted externally once, into runs in a temporary directory
//! (`spill.rs`). All of them are merged k-way (`merge.rs`). Standard input is copied to that
//! directory, so it can be read more than once too. [`History::lines`] starts a new pass each
//! time it is called; the directory goes when the [`History`] is dropped. Memory: a read buffer
//! per source or run, the reorder buffers, and at most [`ReadOptions::memory`] bytes of lines
//! while sorting. docs/replay-and-backtest.md says why and when.

mod merge;
mod read;
mod reorder;
mod spill;

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::Millis;
pub use merge::{Line, Lines};
use read::{Place, TextLines};

/// An input's bytes in memory, with a name for messages (what tests and library callers that
/// already hold the history pass).
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Where one input comes from.
pub enum Source {
    /// A file: plain NDJSON, or gzip or zstd (told by its first bytes, whatever its name).
    Path(PathBuf),
    /// Standard input, read once and kept in the temporary directory.
    Stdin,
    /// Bytes already in memory.
    Memory(Input),
}

impl Source {
    /// The source a command-line argument names: `-` is standard input.
    pub fn from_arg(arg: &std::path::Path) -> Source {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::Path(arg.to_path_buf())
        }
    }
}

/// How sources are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// The most bytes of lines held at once while sorting a source that is not in order.
    pub memory: usize,
    /// Where sorted runs and standard input are kept (default: the system's temporary directory).
    pub tmp_dir: Option<PathBuf>,
    /// Threads for reading and scoring the history: 1 does everything on the calling thread;
    /// more read and order it on a thread of their own while the engines run on others (see
    /// [`crate::replay::replay`]). The output does not depend on it.
    pub threads: usize,
}

/// [`ReadOptions::memory`] unless told otherwise: 256 MiB.
pub const DEFAULT_MEMORY: usize = 256 << 20;

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { memory: DEFAULT_MEMORY, tmp_dir: None, threads: 1 }
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read input {name}: {source}")]
    Read { name: String, source: io::Error },
    #[error(
        "cannot write to the temporary directory {dir}: {source} (sorting an unordered input or keeping standard input needs about as much free space as that input; --tmp-dir picks another directory)"
    )]
    Spill { dir: String, source: io::Error },
}

/// How one source is read at every pass.
enum Plan {
    /// In order: read as it is.
    InOrder(Place),
    /// Nearly in order: read through a reorder buffer of `window`, its outliers (line numbers
    /// in `skip`) from their sorted run.
    Reordered { place: Place, window: Millis, skip: Arc<[u64]>, outliers: Option<PathBuf> },
    /// Not in order: its sorted runs.
    Sorted(Vec<PathBuf>),
}

/// A history that can be read in event-time order as many times as needed.
pub struct History {
    names: Vec<String>,
    plans: Vec<Plan>,
    lines: Vec<u64>,
    spill: Option<tempfile::TempDir>,
    threads: usize,
}

impl History {
    /// Looks at every source (see the module doc): copies standard input aside, counts lines
    /// and sorts the sources that are not in event-time order.
    pub fn open(sources: Vec<Source>, options: &ReadOptions) -> Result<History, InputError> {
        let mut history = History {
            names: Vec::new(),
            plans: Vec::new(),
            lines: Vec::new(),
            spill: None,
            threads: options.threads.max(1),
        };
        for (i, source) in sources.into_iter().enumerate() {
            let (name, place) = match source {
                Source::Path(p) => (p.display().to_string(), Place::File(p)),
                Source::Memory(input) => (input.name, Place::Memory(input.bytes.into())),
                Source::Stdin => {
                    let path = history.spill_dir(options)?.join(format!("input{i}-stdin"));
                    let spill_error = |source| InputError::Spill { dir: path.display().to_string(), source };
                    let mut file = File::create(&path).map_err(spill_error)?;
                    io::copy(&mut io::stdin().lock(), &mut file)
                        .map_err(|source| InputError::Read { name: "standard input".into(), source })?;
                    ("-".to_string(), Place::File(path))
                }
            };
            let read_error = |source| InputError::Read { name: name.clone(), source };
            let memory = options.memory.max(1);
            let mut scanned = scan(&place, memory / 2).map_err(read_error)?;
            let plan = if scanned.in_order {
                Plan::InOrder(place)
            } else if let Some(skip) = scanned.skip {
                let outliers = if scanned.outliers.is_empty() {
                    None
                } else {
                    let path = history.spill_dir(options)?.join(format!("input{i}-outliers"));
                    scanned
                        .outliers
                        .write_run(&path)
                        .map_err(|source| InputError::Spill { dir: path.display().to_string(), source })?;
                    Some(path)
                };
                Plan::Reordered { place, window: scanned.window, skip: skip.into(), outliers }
            } else {
                let dir = history.spill_dir(options)?;
                let runs = spill::sort(&place, memory, &dir, i)
                    .map_err(|source| InputError::Spill { dir: dir.display().to_string(), source })?;
                Plan::Sorted(runs)
            };
            history.names.push(name);
            history.plans.push(plan);
            history.lines.push(scanned.lines);
        }
        Ok(history)
    }

    /// In-memory inputs with the default options.
    pub fn from_inputs(inputs: impl IntoIterator<Item = Input>) -> Result<History, InputError> {
        History::open(inputs.into_iter().map(Source::Memory).collect(), &ReadOptions::default())
    }

    fn spill_dir(&mut self, options: &ReadOptions) -> Result<PathBuf, InputError> {
        if self.spill.is_none() {
            let base = options.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
            let dir = tempfile::Builder::new()
                .prefix("healthscore-")
                .tempdir_in(&base)
                .map_err(|source| InputError::Spill { dir: base.display().to_string(), source })?;
            self.spill = Some(dir);
        }
        Ok(self.spill.as_ref().expect("just made").path().to_path_buf())
    }

    /// A new pass over every line, in event-time order.
    pub fn lines(&self) -> io::Result<Lines> {
        let mut streams = Vec::new();
        for (file, plan) in self.plans.iter().enumerate() {
            let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot read input {}: {e}", self.names[file]));
            match plan {
                Plan::InOrder(place) => {
                    streams.push((file, merge::Stream::Text(Box::new(TextLines::open(place).map_err(named)?))))
                }
                Plan::Reordered { place, window, skip, outliers } => {
                    let r = reorder::Reordered::open(place, *window, skip.clone()).map_err(named)?;
                    streams.push((file, merge::Stream::Reordered(Box::new(r))));
                    if let Some(run) = outliers {
                        streams.push((file, merge::Stream::Run(spill::RunLines::open(run).map_err(named)?)));
                    }
                }
                Plan::Sorted(runs) => {
                    for run in runs {
                        streams.push((file, merge::Stream::Run(spill::RunLines::open(run).map_err(named)?)));
                    }
                }
            }
        }
        Lines::new(streams, self.names.clone())
    }

    /// The name of source `file` (its path, `-` for standard input), for messages.
    pub fn name(&self, file: usize) -> &str {
        &self.names[file]
    }

    /// Threads to read and score it with ([`ReadOptions::threads`]).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The same history, read and scored with `threads` threads.
    pub fn with_threads(mut self, threads: usize) -> History {
        self.threads = threads.max(1);
        self
    }

    /// Every source's name, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Non-blank lines over all sources.
    pub fn line_count(&self) -> u64 {
        self.lines.iter().sum()
    }

    /// How many sources were not in event-time order and had to be sorted (not counting those
    /// a reorder buffer puts in order).
    pub fn sorted_sources(&self) -> usize {
        self.plans.iter().filter(|p| matches!(p, Plan::Sorted(_))).count()
    }
}

/// What the first look at a source learned.
struct Scanned {
    /// Non-blank lines.
    lines: u64,
    in_order: bool,
    /// The most a line not in `outliers` is later than the latest time before it.
    window: Millis,
    /// The lines later than [`reorder::WINDOW`], while they fit the memory given to the scan;
    /// `skip` their line numbers, `None` once they do not fit (the source is then sorted).
    outliers: spill::Held,
    skip: Option<Vec<u64>>,
}

fn scan(place: &Place, memory: usize) -> io::Result<Scanned> {
    let mut lines = TextLines::open(place)?;
    let mut s = Scanned { lines: 0, in_order: true, window: 0, outliers: Default::default(), skip: Some(Vec::new()) };
    let mut max_seen = Millis::MIN;
    while lines.advance()? {
        s.lines += 1;
        let head = lines.head();
        if head.time >= max_seen {
            max_seen = head.time;
            continue;
        }
        s.in_order = false;
        let late = max_seen.saturating_sub(head.time);
        if late <= reorder::WINDOW {
            s.window = s.window.max(late);
        } else if let Some(skip) = s.skip.as_mut() {
            if s.outliers.push(head, lines.bytes(), memory) {
                skip.push(head.line);
            } else {
                (s.skip, s.outliers) = (None, Default::default());
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str, id: &str) -> String {
        format!(r#"{{"event_id":"{id}","customer_id":"c","timestamp":"2026-01-05T{t}Z","type":"session"}}"#)
    }

    fn order(history: &History) -> Vec<(usize, u64)> {
        let mut lines = history.lines().unwrap();
        let mut got = Vec::new();
        while let Some(l) = lines.next().unwrap() {
            got.push((l.file, l.line));
        }
        got
    }

    #[test]
    fn ties_keep_source_order_then_line_order_whether_a_source_is_reordered_or_sorted() {
        let a = [
            line("10:00:00", "a1"),
            line("09:30:00", "a2"),
            line("10:00:00", "a3"),
            line("07:00:00", "a4"),
            line("06:00:00", "a5"),
        ];
        let b = [line("09:30:00", "b1"), line("10:00:00", "b2"), line("08:00:00", "b3")];
        let inputs =
            [("a", a.join("\n")), ("b", b.join("\r\n"))].map(|(n, t)| Input { name: n.into(), bytes: t.into_bytes() });
        let expected = vec![(0, 5), (0, 4), (1, 3), (0, 2), (1, 1), (0, 1), (0, 3), (1, 2)];
        // Half a megabyte: late lines are outliers and the rest goes through the reorder buffer.
        // One byte: a's two outliers do not fit, and it is sorted on disk (b's one does).
        for (memory, sorted) in [(1 << 20, 0), (1, 1)] {
            let options = ReadOptions { memory, ..ReadOptions::default() };
            let history = History::open(inputs.iter().cloned().map(Source::Memory).collect(), &options).unwrap();
            assert_eq!(history.sorted_sources(), sorted);
            assert_eq!(history.line_count(), 8);
            assert_eq!(order(&history), expected, "memory {memory}");
            assert_eq!(order(&history), expected, "a second pass reads the same");
        }
    }
}
