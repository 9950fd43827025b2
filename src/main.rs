//! The `healthscore` command line: parse arguments, pick a command, map errors to exit codes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use healthscore::backtest::{self, ObserveConfig, Observed, Outcomes, Split};
use healthscore::engine::{Engine, EngineConfig};
use healthscore::generate::{write_labels_csv, write_ndjson, GenConfig, Generator};
use healthscore::input::{History, ReadOptions, Source};
use healthscore::pipeline::demo::{run_demo, DemoOptions};
use healthscore::pipeline::http::{self, Api};
use healthscore::pipeline::{Config, Processor, Stats};
use healthscore::replay::{dead_letter_json, rejected_by_reason, replay};
use healthscore::score::{Band, Scorecard};
use healthscore::signal::Signal;

/// What `calibrate` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Learn {
    Curves,
    Weights,
}

#[derive(Parser)]
#[command(name = "healthscore", version, about = "Customer events in, customer health scores and churn alerts out")]
struct Cli {
    /// Log format for the service commands (`run`, `demo`); the level comes from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Score NDJSON event history and write the output events as NDJSON.
    Replay {
        #[command(flatten)]
        read: ReadArgs,
        /// Where to write output events (default, or `-`: standard output); gzip-compressed when
        /// the name ends in `.gz`.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Where to write rejected lines with their reasons (default: counted only).
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Scorecard TOML (default: the built-in scorecard).
        #[arg(long)]
        scorecard: Option<PathBuf>,
        /// Allowed lateness in seconds (stream time = largest event time - lateness).
        #[arg(long, default_value_t = EngineConfig::default().allowed_lateness_secs)]
        lateness_secs: u32,
        /// Evict customers silent for this many days.
        #[arg(long, default_value_t = EngineConfig::default().retention_days)]
        retention_days: u32,
        /// Re-score a customer on plain usage at most once per this many seconds of event time
        /// (0: on every event).
        #[arg(long, default_value_t = EngineConfig::default().usage_rescore_secs)]
        usage_rescore_secs: u32,
        /// Split customers over this many partitions (Kafka's default partitioner on
        /// customer_id) and score each on its own thread, as the Kafka service does.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        partitions: u32,
        /// Print no summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run the service: consume the three input topics, emit scores and alerts (see README).
    Run {
        /// Configuration TOML (environment overrides: HEALTHSCORE__SECTION__KEY=value).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a service configuration and print the effective settings (file + environment).
    CheckConfig {
        /// Configuration TOML.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The whole pipeline on an in-process mock Kafka cluster with a synthetic population:
    /// no Kafka needed.
    Demo {
        #[arg(long, default_value_t = 2000)]
        customers: u32,
        #[arg(long, default_value_t = 120)]
        days: u32,
        #[arg(long, default_value_t = GenConfig::default().seed)]
        seed: u64,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Input events per second the generator sends.
        #[arg(long, default_value_t = 150_000.0)]
        rate: f64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Scorecard TOML (default: the built-in scorecard).
        #[arg(long)]
        scorecard: Option<PathBuf>,
        /// Serve the HTTP endpoints (/metrics, /healthz, /readyz, /customers, /scorecard) here,
        /// e.g. 127.0.0.1:9898.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// Write a synthetic population's event history as NDJSON (healthy, declining, silently
    /// churning, expanding, onboarding and payment-trouble customers, with a little bad input).
    Generate {
        #[arg(long, default_value_t = GenConfig::default().customers)]
        customers: u32,
        #[arg(long, default_value_t = GenConfig::default().days)]
        days: u32,
        #[arg(long, default_value_t = GenConfig::default().seed)]
        seed: u64,
        /// The history ends here (YYYY-MM-DD or RFC 3339).
        #[arg(long, default_value = "2026-11-01")]
        end: String,
        /// Share of extra bad lines.
        #[arg(long, default_value_t = GenConfig::default().bad_input_rate)]
        bad_input_rate: f64,
        /// Share of re-sent duplicate lines.
        #[arg(long, default_value_t = GenConfig::default().duplicate_rate)]
        duplicate_rate: f64,
        /// Where to write the events (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Where to write the churn labels (CSV: customer_id,churn_date).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Send the events to these Kafka brokers (the three default input topics) instead of
        /// writing NDJSON.
        #[arg(long, conflicts_with = "output")]
        brokers: Option<String>,
        /// With --brokers: events per second (default: as fast as the brokers take them).
        #[arg(long, requires = "brokers")]
        rate: Option<f64>,
        /// With --brokers: the service configuration whose connection settings
        /// (`[kafka.client]`: TLS, SASL) and input topic names to use; --brokers overrides its
        /// `kafka.brokers`.
        #[arg(long, requires = "brokers", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Replay history, observe every customer at regular dates and report how well the score
    /// predicted who churned: AUC, lift, churn rate per band, precision and recall, lead time,
    /// per component and per lifecycle stage, on a later period than any fit.
    Backtest {
        #[command(flatten)]
        history: HistoryArgs,
        /// Where to write the full report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
        /// A directory for the charts (calibration.svg, roc.svg); created if missing.
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// Learn a scorecard from churn history (every signal's curve, the weights and the band
    /// cut-offs, from the fit period), write it as a new scorecard TOML, and compare old and new
    /// on the report period. `--learn weights` fits only the active scorecard's weights.
    Calibrate {
        #[command(flatten)]
        history: HistoryArgs,
        /// What to learn: `curves` (each signal's curve, the components, weights and bands) or
        /// `weights` (the active scorecard's component weights only).
        #[arg(long, value_enum, default_value_t = Learn::Curves)]
        learn: Learn,
        /// Where to write the calibrated scorecard.
        #[arg(long, short)]
        output: PathBuf,
        /// Overwrite --output if it exists, even when it is the --scorecard being calibrated.
        #[arg(long)]
        force: bool,
        /// L2 penalty of the regression (on the summed log-loss): larger keeps weights closer
        /// to even.
        #[arg(long, default_value_t = 1.0)]
        l2: f64,
        /// The new scorecard's version (default: the old one plus "-calibrated").
        #[arg(long = "new-version")]
        new_version: Option<String>,
        /// A directory for a chart of both ROC curves on the report period (roc-calibrated.svg).
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// Check a scorecard file and print what it compiles to.
    CheckScorecard {
        /// Scorecard TOML (default: the built-in scorecard).
        file: Option<PathBuf>,
    },
    /// Print the built-in default scorecard (a starting point to edit).
    DefaultScorecard,
    /// List the signals a scorecard component can use.
    Signals,
    /// Read snapshot files (the `dir` store's `.snap` files).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// Print a snapshot's partition, offsets, stream time, customer count and size (checks
    /// its checksum). A directory: every snapshot under it.
    Inspect { path: PathBuf },
    /// Check that a snapshot restores: checksum, header and every customer's state. Exits
    /// non-zero with the reason when it would not. A directory: every snapshot under it.
    Verify { path: PathBuf },
}

/// Runs the service on a tokio runtime: the processor on its own thread (its Kafka calls block),
/// signals on the runtime. SIGINT/SIGTERM stop it gracefully: the in-flight batch is committed
/// and the process exits 0; a fatal error exits non-zero with the reason logged.
fn serve(config: Arc<Config>, scorecard: Arc<Scorecard>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: a SIGTERM while the processor is still connecting (which can take
        // seconds) then stops it gracefully instead of killing it.
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        // Bound first, so a taken port stops the start before the group is joined.
        let addr = config.http.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on http.listen {addr}"))?;
        let tls = match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(cert), Some(key)) => Some(healthscore::pipeline::tls::Tls::load(cert, key).await?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let processor = tokio::task::spawn_blocking({
            let (config, scorecard, stats) = (config.clone(), scorecard.clone(), stats.clone());
            move || Processor::new(config, scorecard, stats)
        })
        .await
        .context("processor start panicked")??;
        // The HTTP endpoints share this runtime; they stop with the service.
        tracing::info!(%addr, scheme, "HTTP endpoints: /metrics /healthz /readyz /customers /scorecard");
        let tokens = config.http.tokens().map_err(|e| anyhow::anyhow!("http.token_file: {e}"))?;
        if healthscore::pipeline::config::serves_data_to_anyone(addr, &tokens) {
            tracing::warn!(%addr, "http.allow_unauthenticated: the query API serves customer data without a token");
        }
        let api =
            Arc::new(Api::new(processor.shared.clone(), scorecard.clone(), processor.partitions()).with_tokens(tokens));
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(http::serve(listener, http::router(api), tls, async {
            let _ = http_stopped.await;
        }));
        let worker = std::thread::Builder::new().name("processor".into()).spawn({
            let stop = stop.clone();
            move || processor.run(&stop)
        })?;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = std::thread::spawn(move || {
            let r = worker.join();
            let _ = done_tx.send(());
            r
        });
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = &mut done_rx => {}
        }
        stop.store(true, Ordering::Relaxed);
        let result = watcher.join().map_err(|_| anyhow::anyhow!("processor thread panicked"))?;
        let _ = http_stop.send(());
        match http.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        match result {
            Ok(Ok(())) => {
                tracing::info!("stopped");
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "fatal error; stopping");
                Err(e)
            }
            Err(_) => bail!("processor thread panicked"),
        }
    })
}

/// Sets `flag` on Ctrl-C (SIGINT) or SIGTERM, from a small runtime of its own.
fn ctrlc_flag(flag: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    })?;
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    // Colours only on a terminal: logs redirected to a file or a collector stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// What `replay`, `backtest` and `calibrate` read, and how.
#[derive(Args)]
struct ReadArgs {
    /// Input files: NDJSON, any mix of the three sources, in any order; gzip or zstd
    /// compressed (told by content); `-` for standard input.
    #[arg(long, short, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Memory for sorting an input that is not in event-time order (K, M, G suffixes); past it,
    /// sorted runs are spilled to --tmp-dir.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    memory: usize,
    /// Where sorted runs and standard input are kept while reading (default: the system's
    /// temporary directory); removed at the end.
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Threads for reading and scoring (default: the machine's cores); 1 for one. The output is
    /// the same whatever the count.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
}

impl ReadArgs {
    /// Opens the inputs (see `healthscore::input`); an input with no events at all is an error.
    fn open(&self) -> Result<History> {
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

/// What `backtest` and `calibrate` read, and how they observe it.
#[derive(Args)]
struct HistoryArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Scorecard TOML (default: the built-in scorecard).
    #[arg(long)]
    scorecard: Option<PathBuf>,
    /// Churn labels (CSV `customer_id,churn_date`), added to the history's cancellations. A
    /// labels file is taken as complete (a customer not listed does not churn) unless
    /// --outcomes-until says when it was exported.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Days between observation dates.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
    every_days: u32,
    /// An observation counts as a churner's when the customer churns within this many days.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=730))]
    horizon_days: u32,
    /// Do not observe a customer in its first days in the stream (default: the scorecard's
    /// rules.warmup_days).
    #[arg(long)]
    warmup_days: Option<u32>,
    /// Churn is known up to this date (YYYY-MM-DD or RFC 3339); observations whose horizon
    /// reaches past it without a churn are left out. Default: complete with --labels, else the
    /// last event of the history.
    #[arg(long)]
    outcomes_until: Option<String>,
    /// The first observation date of the report period (YYYY-MM-DD or RFC 3339); earlier dates
    /// are the fit period.
    #[arg(long, conflicts_with = "split_fraction")]
    split_date: Option<String>,
    /// The share of observation dates in the fit period, when --split-date is not given.
    #[arg(long, default_value_t = 0.5)]
    split_fraction: f64,
}

impl HistoryArgs {
    /// Reads the inputs and labels and replays them, observing as asked.
    fn observe(&self) -> Result<(Arc<Scorecard>, Observed, ObserveConfig, Split)> {
        let scorecard = Arc::new(load_scorecard(self.scorecard.as_ref())?);
        let date = |flag: &str, v: &str| {
            healthscore::event::parse_date_or_datetime(v)
                .with_context(|| format!("{flag} {v:?} is not a date (YYYY-MM-DD) or RFC 3339 date-time"))
        };
        let split = match &self.split_date {
            Some(d) => Split::Date(date("--split-date", d)?),
            None if (0.0..=1.0).contains(&self.split_fraction) => Split::Fraction(self.split_fraction),
            None => bail!("--split-fraction must be from 0 to 1, got {}", self.split_fraction),
        };
        let labels = match &self.labels {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read labels {}", p.display()))?;
                backtest::parse_labels(&text).map_err(|e| anyhow::anyhow!("invalid labels {}:\n{e}", p.display()))?
            }
            None => Vec::new(),
        };
        let outcomes = match (&self.outcomes_until, &self.labels) {
            (Some(d), _) => Outcomes::Until(date("--outcomes-until", d)?),
            (None, Some(_)) => Outcomes::Complete,
            (None, None) => Outcomes::HistoryEnd,
        };
        let cfg = ObserveConfig {
            every_days: self.every_days,
            horizon_days: self.horizon_days,
            warmup_days: self.warmup_days.unwrap_or(scorecard.rules.warmup_days),
            outcomes,
        };
        let history = self.read.open()?;
        let observed = backtest::observe(scorecard.clone(), EngineConfig::default(), &history, &labels, &cfg)
            .context("cannot read the history")?;
        if observed.observations.is_empty() {
            bail!(
                "no observations: the history is shorter than --every-days ({}) plus the warm-up ({} days), or every outcome is unknown",
                cfg.every_days,
                cfg.warmup_days
            );
        }
        Ok((scorecard, observed, cfg, split))
    }
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

/// Writes `text` to `dir/name`, creating `dir`.
fn write_in(dir: &std::path::Path, name: &str, text: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[global_allocator]
static ALLOC: healthscore::memory::Allocator = healthscore::memory::Allocator;

fn main() -> ExitCode {
    healthscore::memory::allow_huge_pages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The service configuration checked in full: healthscore's own keys, then librdkafka's
/// verdict on every pass-through property (built without connecting), so `check-config`
/// refuses what `run` would.
fn load_service_config(path: Option<&std::path::Path>) -> Result<Config> {
    let config = Config::load(path, std::env::vars())?;
    let issues = healthscore::pipeline::kafka::check_client_properties(&config);
    if !issues.is_empty() {
        return Err(
            healthscore::pipeline::config::ConfigError { source_name: Config::source_name(path), issues }.into()
        );
    }
    Ok(config)
}

fn run(cli: Cli) -> Result<()> {
    if matches!(cli.command, Command::Run { .. } | Command::Demo { .. }) {
        init_logs(cli.log_format);
    }
    match cli.command {
        Command::Run { config } => {
            let config = load_service_config(config.as_deref())?;
            let scorecard = Arc::new(load_scorecard(config.scorecard.as_ref())?);
            serve(Arc::new(config), scorecard)
        }
        Command::CheckConfig { config } => {
            let config = load_service_config(config.as_deref())?;
            load_scorecard(config.scorecard.as_ref())?;
            print_out(&format!("# configuration is valid; effective settings:\n{}", config.to_toml()))
        }
        Command::Demo { customers, days, seed, partitions, rate, duration, scorecard, http } => {
            let scorecard = Arc::new(load_scorecard(scorecard.as_ref())?);
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc_flag(flag)?;
            let options = DemoOptions {
                customers,
                days,
                seed,
                partitions,
                rate,
                duration: duration.map(Duration::from_secs),
                every: Duration::from_secs(1),
                http,
                // The service's [http] token settings, from the environment (HEALTHSCORE__HTTP__TOKEN).
                http_tokens: healthscore::pipeline::config::Config::load(None, std::env::vars())?
                    .http
                    .tokens()
                    .map_err(|e| anyhow::anyhow!("http.token_file: {e}"))?,
            };
            let s = run_demo(&options, scorecard, stop, |line| println!("{line}"))?;
            println!(
                "demo done: {} events sent, {} consumed, {} customers (green {}, yellow {}, red {}), {} score changes, {} alerts, {} dead letters",
                s.sent, s.consumed, s.customers, s.bands[Band::Green as usize], s.bands[Band::Yellow as usize],
                s.bands[Band::Red as usize], s.score_changes, s.alerts, s.dead_letters
            );
            Ok(())
        }
        Command::Replay {
            read,
            output,
            dead_letters,
            scorecard,
            lateness_secs,
            retention_days,
            usage_rescore_secs,
            partitions,
            quiet,
        } => {
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
            let now = healthscore::pipeline::metrics::wall_clock_millis();
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
                let stats = engines.iter().fold(healthscore::engine::EngineStats::default(), |mut a, e| {
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
        Command::Generate {
            customers,
            days,
            seed,
            end,
            bad_input_rate,
            duplicate_rate,
            output,
            labels,
            brokers,
            rate,
            config,
        } => {
            let end = healthscore::event::parse_date_or_datetime(&end)
                .with_context(|| format!("--end {end:?} is not a date (YYYY-MM-DD) or RFC 3339 date-time"))?;
            let cfg = GenConfig { customers, days, seed, end, bad_input_rate, duplicate_rate };
            if let Some(path) = labels {
                let generator = Generator::new(cfg);
                let mut w =
                    BufWriter::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
                write_labels_csv(generator.profiles(), &mut w)?;
                w.flush()?;
            }
            if let Some(brokers) = brokers {
                let mut service = match &config {
                    Some(path) => load_service_config(Some(path))?,
                    None => Config::default(),
                };
                service.kafka.brokers = brokers.clone();
                let producer = healthscore::pipeline::send::input_producer_for(&service)?;
                let topics = service.kafka.topics.clone();
                let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
                let started = std::time::Instant::now();
                let n = healthscore::pipeline::send::send_events(
                    &producer,
                    &topics,
                    Generator::new(cfg),
                    rate,
                    &stop,
                    &sent,
                )?;
                eprintln!("sent {n} events to {brokers} in {:.1}s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            let n = match output {
                Some(path) => {
                    let mut w = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    write_ndjson(cfg, &mut w)?
                }
                None => write_ndjson(cfg, &mut io::stdout().lock())?,
            };
            eprintln!("generated {n} events");
            Ok(())
        }
        Command::Backtest { history, report, plots } => {
            let (scorecard, observed, cfg, split) = history.observe()?;
            let r = backtest::build(&scorecard, &observed, (cfg.every_days, cfg.horizon_days, cfg.warmup_days), split);
            print_out(&backtest::render(&r))?;
            if let Some(path) = report {
                let json = serde_json::to_string_pretty(&r)?;
                std::fs::write(&path, json + "\n")
                    .with_context(|| format!("cannot write report {}", path.display()))?;
                eprintln!("report: {}", path.display());
            }
            if let Some(dir) = plots {
                let p = &r.periods.report;
                let title = format!("{}: churn within {} days by score decile", r.scorecard, cfg.horizon_days);
                let svg = backtest::plot::calibration_svg(&title, &r.deciles, p.churn_rate.unwrap_or(0.0))?;
                let a = write_in(&dir, "calibration.svg", &svg)?;
                let label = format!("{} (AUC {})", r.scorecard, p.auc.map_or("-".into(), |a| format!("{a:.3}")));
                let svg = backtest::plot::roc_svg("ROC, report period", &[(label, &r.roc)])?;
                let b = write_in(&dir, "roc.svg", &svg)?;
                eprintln!("plots: {} {}", a.display(), b.display());
            }
            Ok(())
        }
        Command::Calibrate { history, learn, output, force, l2, new_version, plots } => {
            if !(l2.is_finite() && l2 >= 0.0) {
                bail!("--l2 must be a number >= 0, got {l2}");
            }
            let same_as_active = history.scorecard.as_ref().is_some_and(|s| {
                s == &output
                    || std::fs::canonicalize(s)
                        .ok()
                        .zip(std::fs::canonicalize(&output).ok())
                        .is_some_and(|(a, b)| a == b)
            });
            if !force && (same_as_active || output.exists()) {
                bail!(
                    "{} {}; a calibrated scorecard is written to a new file (pass --force to overwrite it)",
                    output.display(),
                    if same_as_active { "is the scorecard being calibrated" } else { "exists" }
                );
            }
            let (scorecard, observed, cfg, split) = history.observe()?;
            let split_at = split.date(&observed.dates);
            let suffix = match learn {
                Learn::Curves => "learned",
                Learn::Weights => "calibrated",
            };
            let version = new_version.unwrap_or_else(|| format!("{}-{suffix}", scorecard.version));
            let data = format!(
                "{} observations of {} customers, every {} days from {} to {}, churn within {} days",
                observed.observations.len(),
                observed.customers.len(),
                cfg.every_days,
                observed.first_event.map_or("-".into(), |t| healthscore::event::format_rfc3339(t)[..10].to_string()),
                observed.last_event.map_or("-".into(), |t| healthscore::event::format_rfc3339(t)[..10].to_string()),
                cfg.horizon_days
            );
            let run = match learn {
                Learn::Curves => healthscore::calibrate::learn,
                Learn::Weights => healthscore::calibrate::calibrate,
            };
            let cal = run(&scorecard, &observed.observations, split_at, l2, &version, &data)?;
            std::fs::write(&output, &cal.toml).with_context(|| format!("cannot write {}", output.display()))?;
            print_out(&render_calibration(&scorecard.version, &version, &cal))?;
            eprintln!(
                "calibrated scorecard: {} (check it with `healthscore check-scorecard {}`)",
                output.display(),
                output.display()
            );
            if let Some(dir) = plots {
                let new = Scorecard::from_toml(&cal.toml, "(calibrated)")?;
                let later: Vec<_> = observed.observations.iter().filter(|o| o.at >= split_at).cloned().collect();
                let churned: Vec<bool> = later.iter().map(|o| o.churned).collect();
                let curve = |sc: &Scorecard| {
                    let scores = backtest::rescore(sc, &later);
                    backtest::metrics::thin(&backtest::metrics::roc(&scores, &churned), 101)
                };
                let (a, b) = (curve(&scorecard), curve(&new));
                let label = |v: &str, j: &healthscore::calibrate::Judgement| {
                    format!("{v} (AUC {})", j.auc.map_or("-".into(), |a| format!("{a:.3}")))
                };
                let svg = backtest::plot::roc_svg(
                    "ROC on the report period, before and after calibration",
                    &[(label(&scorecard.version, &cal.report_before), &a), (label(&version, &cal.report_after), &b)],
                )?;
                let path = write_in(&dir, "roc-calibrated.svg", &svg)?;
                eprintln!("plot: {}", path.display());
            }
            Ok(())
        }
        Command::CheckScorecard { file } => {
            use std::fmt::Write as _;
            let sc = load_scorecard(file.as_ref())?;
            let mut text = String::new();
            writeln!(text, "scorecard {} is valid", sc.version)?;
            writeln!(
                text,
                "bands: red < {}, green >= {}, hysteresis {}; emit on band change or a move of >= {}",
                sc.bands.red_below, sc.bands.green_from, sc.bands.hysteresis, sc.min_score_delta
            )?;
            writeln!(text, "segments: {}", sc.segments.iter().map(|s| &*s.name).collect::<Vec<_>>().join(", "))?;
            for stage in healthscore::score::Stage::ALL {
                for (i, seg) in sc.segments.iter().enumerate() {
                    let comps = sc.components(stage, i as u8);
                    let total: f64 = comps.iter().map(|c| c.weight).sum();
                    let list: Vec<String> = comps
                        .iter()
                        .filter(|c| c.weight > 0.0)
                        .map(|c| format!("{} {:.0}%", c.name, 100.0 * c.weight / total))
                        .collect();
                    writeln!(text, "{} / {}: {}", stage.as_str(), seg.name, list.join(", "))?;
                }
            }
            print_out(&text)
        }
        Command::DefaultScorecard => print_out(healthscore::score::DEFAULT_SCORECARD),
        Command::Snapshot { action } => {
            let (path, verify) = match &action {
                SnapshotAction::Inspect { path } => (path, false),
                SnapshotAction::Verify { path } => (path, true),
            };
            let files = snapshot_files(path)?;
            if files.is_empty() {
                bail!("no snapshot files (*.snap) under {}", path.display());
            }
            let mut bad = 0;
            for file in &files {
                let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
                match healthscore::snapshot::describe(&bytes, verify) {
                    Ok(text) => print_out(&format!("{}\n{text}\n", file.display()))?,
                    Err(e) => {
                        bad += 1;
                        eprintln!("{}: NOT USABLE: {e:#}\n", file.display());
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of {} snapshots are not usable", files.len());
            }
            Ok(())
        }
        Command::Signals => {
            use std::fmt::Write as _;
            let mut text = String::new();
            for s in Signal::ALL {
                writeln!(text, "{:34} {}", s.name(), s.description())?;
            }
            print_out(&text)
        }
    }
}

/// The weights before and after, and both scorecards judged on both periods.
fn render_calibration(old: &str, new: &str, cal: &healthscore::calibrate::Calibration) -> String {
    use healthscore::backtest::report::{num, pct};
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "fitted on {} observations ({} churning), L2 {}\n\ncomponent                      weight before  after   coefficient",
        cal.fit.observations, cal.fit.churning, cal.fit.l2
    );
    for c in &cal.fit.components {
        let _ = writeln!(
            t,
            "  {:<28} {:>12} {:>6} {:>13}{}",
            c.name,
            c.old_weight,
            c.new_weight,
            num(c.coefficient, 3),
            c.dropped.map_or(String::new(), |d| format!("   off: {d}"))
        );
    }
    let _ = writeln!(t, "\n{:<44} AUC  lift@10%  capture@10%  red share  red recall  red precision", "");
    for (name, j) in [
        (format!("fit period, {old}"), &cal.fit_before),
        (format!("fit period, {new}"), &cal.fit_after),
        (format!("REPORT period, {old}"), &cal.report_before),
        (format!("REPORT period, {new}"), &cal.report_after),
    ] {
        let _ = writeln!(
            t,
            "{name:<42} {:>5} {:>9} {:>12} {:>10} {:>11} {:>14}",
            num(j.auc, 3),
            num(j.lift, 2),
            pct(j.capture),
            pct(Some(j.share_red)),
            pct(j.red_recall),
            pct(j.red_precision)
        );
    }
    let _ = writeln!(t, "(bands here are raw, without hysteresis: a re-scored observation has no band history)");
    t
}

/// `path` itself, or the `.snap` files under it (sorted).
fn snapshot_files(path: &std::path::Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "snap") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn load_scorecard(path: Option<&PathBuf>) -> Result<Scorecard> {
    Ok(match path {
        Some(p) => Scorecard::load(p)?,
        None => Scorecard::default_scorecard(),
    })
}

/// Writes a command's output; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> Result<()> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
