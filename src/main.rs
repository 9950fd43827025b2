//! The `healthscore` command line: parse arguments, pick a command, map errors to exit codes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use healthscore::engine::{Engine, EngineConfig};
use healthscore::pipeline::demo::{run_demo, DemoOptions};
use healthscore::pipeline::{Config, Processor, Stats};
use healthscore::generate::{write_labels_csv, write_ndjson, GenConfig, Generator};
use healthscore::replay::{dead_letter_json, rejected_by_reason, replay, Input};
use healthscore::score::{Band, Scorecard};
use healthscore::signal::Signal;

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
        /// Input files (NDJSON, any mix of the three sources, in any order).
        #[arg(long, short, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Where to write output events (default: standard output).
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
        #[arg(long, default_value_t = 50_000.0)]
        rate: f64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Scorecard TOML (default: the built-in scorecard).
        #[arg(long)]
        scorecard: Option<PathBuf>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let processor = tokio::task::spawn_blocking({
            let (config, scorecard, stats) = (config.clone(), scorecard.clone(), stats.clone());
            move || Processor::new(config, scorecard, stats)
        })
        .await
        .context("processor start panicked")??;
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
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = &mut done_rx => {}
        }
        stop.store(true, Ordering::Relaxed);
        let result = watcher.join().map_err(|_| anyhow::anyhow!("processor thread panicked"))?;
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if matches!(cli.command, Command::Run { .. } | Command::Demo { .. }) {
        init_logs(cli.log_format);
    }
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            let scorecard = Arc::new(load_scorecard(config.scorecard.as_ref())?);
            serve(Arc::new(config), scorecard)
        }
        Command::CheckConfig { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            load_scorecard(config.scorecard.as_ref())?;
            print_out(&format!("# configuration is valid; effective settings:\n{}", config.to_toml()))
        }
        Command::Demo { customers, days, seed, partitions, rate, duration, scorecard } => {
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
            input,
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
            let config = EngineConfig { allowed_lateness_secs: lateness_secs, retention_days, usage_rescore_secs };
            let issues = config.validate();
            if !issues.is_empty() {
                let lines: Vec<String> = issues.iter().map(|(k, r)| format!("  {k}: {r}")).collect();
                bail!("invalid engine settings:\n{}", lines.join("\n"));
            }
            let inputs = input
                .iter()
                .map(|p| {
                    let bytes = std::fs::read(p).with_context(|| format!("cannot read input {}", p.display()))?;
                    Ok(Input { name: p.display().to_string(), bytes })
                })
                .collect::<Result<Vec<_>>>()?;
            let scorecard = Arc::new(scorecard);
            let mut engines: Vec<Engine> =
                (0..partitions).map(|_| Engine::new(scorecard.clone(), config.clone())).collect();
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(BufWriter::new(
                    File::create(p).with_context(|| format!("cannot create output {}", p.display()))?,
                )),
                None => Box::new(BufWriter::new(io::stdout().lock())),
            };
            let mut dlq: Option<BufWriter<File>> = match &dead_letters {
                Some(p) => Some(BufWriter::new(
                    File::create(p).with_context(|| format!("cannot create dead-letter file {}", p.display()))?,
                )),
                None => None,
            };
            let mut dlq_error = None;
            let summary = replay(&mut engines, &inputs, &mut out, |d| {
                if let Some(w) = dlq.as_mut() {
                    if let Err(e) = writeln!(w, "{}", dead_letter_json(&inputs, &d)) {
                        dlq_error.get_or_insert(e);
                    }
                }
            })
            .context("cannot write output")?;
            if let Some(e) = dlq_error {
                return Err(e).context("cannot write dead letters");
            }
            if let Some(mut w) = dlq {
                w.flush().context("cannot write dead letters")?;
            }
            if !quiet {
                let secs = summary.elapsed.as_secs_f64();
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
                let producer = healthscore::pipeline::send::input_producer(&brokers)?;
                let topics = healthscore::pipeline::config::Topics::default();
                let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
                let started = std::time::Instant::now();
                let n = healthscore::pipeline::send::send_events(&producer, &topics, Generator::new(cfg), rate, &stop, &sent)?;
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
