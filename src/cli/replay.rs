//! `replay`: scores NDJSON history through the engine (one per partition, as the service
//! spreads customers) and writes the output events, the dead letters and a summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::load_scorecard;
use super::read::ReadArgs;
use crate::engine::{Engine, EngineConfig};
use crate::replay::{dead_letter_json, rejected_by_reason, replay};
use crate::score::Band;

/// `replay`'s flags.
#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Where to write output events (default, or `-`: standard output); gzip-compressed when
    /// the name ends in `.gz`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Where to write rejected lines with their reasons (default: counted only).
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Scorecard TOML (default: the built-in scorecard).
    #[arg(long)]
    pub scorecard: Option<PathBuf>,
    /// Allowed lateness in seconds (stream time = largest event time - lateness).
    #[arg(long, default_value_t = EngineConfig::default().allowed_lateness_secs)]
    pub lateness_secs: u32,
    /// Evict customers silent for this many days.
    #[arg(long, default_value_t = EngineConfig::default().retention_days)]
    pub retention_days: u32,
    /// Re-score a customer on plain usage at most once per this many seconds of event time
    /// (0: on every event).
    #[arg(long, default_value_t = EngineConfig::default().usage_rescore_secs)]
    pub usage_rescore_secs: u32,
    /// Split customers over this many partitions (Kafka's default partitioner on
    /// customer_id) and score each on its own thread, as the Kafka service does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Print no summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `replay`: scores the history, writes outputs and dead letters, prints a summary unless `--quiet`.
pub fn run(args: ReplayArgs) -> Result<()> {
    let ReplayArgs {
        read,
        output,
        dead_letters,
        scorecard,
        lateness_secs,
        retention_days,
        usage_rescore_secs,
        partitions,
        quiet,
    } = args;
    let scorecard = load_scorecard(scorecard.as_ref())?;
    // No customer bound in replay: one engine may hold what the service spreads over many
    // partitions, and a replay has no other tenant to protect.
    let config = EngineConfig {
        allowed_lateness_secs: lateness_secs,
        retention_days,
        usage_rescore_secs,
        max_customers: 0,
        ..Default::default()
    };
    let issues = config.validate();
    if !issues.is_empty() {
        let lines: Vec<String> = issues.iter().map(|(k, r)| format!("  {k}: {r}")).collect();
        bail!("invalid engine settings:\n{}", lines.join("\n"));
    }
    let started = std::time::Instant::now();
    let history = read.open()?;
    let scorecard = Arc::new(scorecard);
    let now = crate::pipeline::metrics::wall_clock_millis();
    let mut engines: Vec<Engine> = (0..partitions)
        .map(|_| {
            let mut engine = Engine::new(scorecard.clone(), config.clone());
            engine.set_wall_clock(now);
            engine
        })
        .collect();
    let mut out = Sink::create(output.as_deref())?;
    let mut dlq: Option<BufWriter<File>> = match &dead_letters {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create dead-letter file {}", p.display()))?,
        )),
        None => None,
    };
    let mut dlq_error = None;
    let summary = replay(&mut engines, &history, &mut out, |d| {
        if let Some(w) = dlq.as_mut() {
            if let Err(e) = writeln!(w, "{}", dead_letter_json(history.name(d.file), &d)) {
                dlq_error.get_or_insert(e);
            }
        }
    })
    .context("cannot write output")?;
    out.finish().context("cannot write output")?;
    if let Some(e) = dlq_error {
        return Err(e).context("cannot write dead letters");
    }
    if let Some(mut w) = dlq {
        w.flush().context("cannot write dead letters")?;
    }
    if !quiet {
        // Reading included: the scan and any sort of unordered inputs.
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "replayed {} lines in {:.2}s ({:.0} lines/s): {} applied, {} duplicates, {} rejected{}",
            summary.lines,
            secs,
            summary.lines as f64 / secs.max(1e-9),
            summary.applied,
            summary.duplicates,
            summary.rejected,
            rejected_by_reason(&engines).iter().map(|(r, n)| format!(" {r}={n}")).collect::<Vec<_>>().join(",")
        );
        let mut bands = [0usize; 3];
        for c in engines.iter().flat_map(|e| e.customers()) {
            if let Some(b) = c.score.band {
                bands[b as usize] += 1;
            }
        }
        let stats = engines.iter().fold(crate::engine::EngineStats::default(), |mut a, e| {
            let s = e.stats();
            a.score_changes += s.score_changes;
            a.alerts += s.alerts;
            a.evaluations += s.evaluations;
            a.evicted += s.evicted;
            a
        });
        eprintln!(
            "{} outputs ({} score changes, {} alerts) from {} evaluations; {} customers tracked (green {}, yellow {}, red {}), {} evicted",
            summary.outputs,
            stats.score_changes,
            stats.alerts,
            stats.evaluations,
            engines.iter().map(Engine::customer_count).sum::<usize>(),
            bands[Band::Green as usize],
            bands[Band::Yellow as usize],
            bands[Band::Red as usize],
            stats.evicted,
        );
    }
    Ok(())
}

/// Where `replay` writes its outputs: one buffered writer, to a file (gzip when it is named
/// `*.gz`) or standard output.
enum Sink {
    Plain(BufWriter<Box<dyn Write>>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
}

impl Sink {
    fn create(path: Option<&std::path::Path>) -> Result<Sink> {
        let Some(p) = path.filter(|p| p.as_os_str() != "-") else {
            return Ok(Sink::Plain(BufWriter::with_capacity(1 << 16, Box::new(io::stdout().lock()))));
        };
        let file = File::create(p).with_context(|| format!("cannot create output {}", p.display()))?;
        let file = BufWriter::with_capacity(1 << 16, file);
        Ok(if p.extension().is_some_and(|e| e == "gz") {
            Sink::Gzip(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
        } else {
            Sink::Plain(BufWriter::with_capacity(1 << 16, Box::new(file)))
        })
    }

    /// Flushes everything (and ends the gzip stream).
    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(e) => e.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Gzip(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}
