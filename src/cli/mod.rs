//! The `healthscore` command line as a library: the flags ([`Cli`]) and one module a command (or
//! a family of commands) holding its arguments and its body. `main.rs` parses, dispatches and
//! picks the exit code; everything a command does lives here, on top of the core and the shell.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::pipeline::Config;
use crate::score::Scorecard;

pub mod backtest;
pub mod demo;
pub mod generate;
pub mod read;
pub mod replay;
pub mod scorecard;
pub mod service;
pub mod snapshot;

/// The command line: `healthscore <command> [flags]`.
#[derive(Parser)]
#[command(name = "healthscore", version, about = "Customer events in, customer health scores and churn alerts out")]
pub struct Cli {
    /// `--log-format` given before the command, as the container image's entrypoint
    /// (`healthscore --log-format json`) and older command lines do. Hidden: only `run` and `demo`
    /// log, and they show the flag themselves (see [`LogArgs`]).
    #[arg(long, value_enum, hide = true)]
    pub log_format: Option<LogFormat>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How `run` and `demo` write their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    // Plain comments, not doc comments: clap would list them under each value in `--help`.
    Human,
    Json,
}

/// The log flag of the commands that log (`run`, `demo`).
#[derive(Args)]
pub struct LogArgs {
    /// Log format (default: human); the level comes from RUST_LOG.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl LogArgs {
    /// This command's `--log-format`, else the one given before the command, else human.
    pub fn or(&self, before_command: Option<LogFormat>) -> LogFormat {
        self.log_format.or(before_command).unwrap_or(LogFormat::Human)
    }
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Score NDJSON event history and write the output events as NDJSON.
    Replay(replay::ReplayArgs),
    /// Run the service: consume the three input topics, emit scores and alerts (see README).
    Run(service::RunArgs),
    /// Check a service configuration and print the effective settings (file + environment).
    CheckConfig(service::CheckConfigArgs),
    /// The whole pipeline on an in-process mock Kafka cluster with a synthetic population:
    /// no Kafka needed.
    Demo(demo::DemoArgs),
    /// Write a synthetic population's event history as NDJSON (healthy, declining, silently
    /// churning, expanding, onboarding and payment-trouble customers, with a little bad input).
    Generate(generate::GenerateArgs),
    /// Replay history, observe every customer at regular dates and report how well the score
    /// predicted who churned: AUC, lift, churn rate per band, precision and recall, lead time,
    /// per component and per lifecycle stage, on a later period than any fit.
    Backtest(backtest::BacktestArgs),
    /// Learn a scorecard from churn history (every signal's curve, the weights and the band
    /// cut-offs, from the fit period), write it as a new scorecard TOML, and compare old and new
    /// on the report period. `--learn weights` fits only the active scorecard's weights.
    Calibrate(backtest::CalibrateArgs),
    /// Check a scorecard file and print what it compiles to.
    CheckScorecard(scorecard::CheckScorecardArgs),
    /// Print the built-in default scorecard (a starting point to edit).
    DefaultScorecard,
    /// List the signals a scorecard component can use.
    Signals,
    /// Read snapshot files (the `dir` store's `.snap` files).
    Snapshot {
        /// What to do with the snapshots.
        #[command(subcommand)]
        action: snapshot::SnapshotAction,
    },
}

/// Sets up `tracing` on standard error; the level comes from RUST_LOG.
pub fn init_logs(format: LogFormat) {
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

/// The scorecard at `path`, or the built-in one.
pub fn load_scorecard(path: Option<&PathBuf>) -> Result<Scorecard> {
    Ok(match path {
        Some(p) => Scorecard::load(p)?,
        None => Scorecard::default_scorecard(),
    })
}

/// The service configuration checked in full: healthscore's own keys, then librdkafka's
/// verdict on every pass-through property (built without connecting), so `check-config`
/// refuses what `run` would.
pub fn load_service_config(path: Option<&Path>) -> Result<Config> {
    let config = Config::load(path, std::env::vars())?;
    let issues = crate::pipeline::kafka::check_client_properties(&config);
    if !issues.is_empty() {
        return Err(crate::pipeline::config::ConfigError { source_name: Config::source_name(path), issues }.into());
    }
    Ok(config)
}

/// Writes a command's output; a closed pipe (`| head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes `text` to `dir/name`, creating `dir`.
fn write_in(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
