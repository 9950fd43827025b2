//! What `replay`, `backtest` and `calibrate` read: the input flags and how they open a
//! [`History`].

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::input::{History, ReadOptions, Source};

/// What `replay`, `backtest` and `calibrate` read, and how.
#[derive(Args)]
pub struct ReadArgs {
    /// Input files: NDJSON, any mix of the three sources, in any order; gzip or zstd
    /// compressed (told by content); `-` for standard input.
    #[arg(long, short, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Memory for sorting an input that is not in event-time order (K, M, G suffixes); past it,
    /// sorted runs are spilled to --tmp-dir.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub memory: usize,
    /// Where sorted runs and standard input are kept while reading (default: the system's
    /// temporary directory); removed at the end.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Threads for reading and scoring (default: the machine's cores); 1 for one. The output is
    /// the same whatever the count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

impl ReadArgs {
    /// Opens the inputs (see `healthscore::input`); an input with no events at all is an error.
    pub fn open(&self) -> Result<History> {
        let threads =
            self.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
        let options = ReadOptions { memory: self.memory, tmp_dir: self.tmp_dir.clone(), threads };
        let history = History::open(self.input.iter().map(|p| Source::from_arg(p)).collect(), &options)?;
        if history.line_count() == 0 {
            bail!("no events in {}", history.names().join(", "));
        }
        Ok(history)
    }
}

/// A size in bytes: a number with an optional K, M or G suffix (powers of 1024; `B`, `iB` allowed).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    match digits.trim().parse::<usize>() {
        Ok(n) if n > 0 => n.checked_shl(shift).filter(|v| v >> shift == n).ok_or(format!("{text} is too large")),
        _ => Err(format!("{text:?} is not a size (e.g. 256M, 1G, 65536)")),
    }
}
