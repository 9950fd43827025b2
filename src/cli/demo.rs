//! `demo`: the whole pipeline on librdkafka's in-process mock cluster (see
//! [`crate::pipeline::demo`]), stopped by `--duration` or Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::load_scorecard;
use crate::generate::GenConfig;
use crate::pipeline::demo::{run_demo, DemoOptions};
use crate::score::Band;

/// `demo`'s flags.
#[derive(Args)]
pub struct DemoArgs {
    /// Customers in the synthetic population. Red needs event time: declining customers decay
    /// to red some six weeks into the history, and the fewer customers, the sooner the stream
    /// gets there. At the default rate 1,000 customers show red from about 12 s, with the
    /// history still running past 20 s (2,000 showed 0 to 6 red until about 20 s).
    #[arg(long, default_value_t = 1000)]
    pub customers: u32,
    /// Days of history the generator simulates (sent at --rate, oldest first).
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// The generator's seed: the same seed, the same population.
    #[arg(long, default_value_t = GenConfig::default().seed)]
    pub seed: u64,
    /// Partitions of each mock topic (and so of the processor's state).
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Input events per second the generator sends.
    #[arg(long, default_value_t = 150_000.0)]
    pub rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Scorecard TOML (default: the built-in scorecard).
    #[arg(long)]
    pub scorecard: Option<PathBuf>,
    /// Serve the HTTP endpoints (/metrics, /healthz, /readyz, /customers, /scorecard) here,
    /// e.g. 127.0.0.1:9898.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub log: super::LogArgs,
}

/// `demo`: runs until `--duration` or a signal, printing a summary every second and the final counts.
pub fn run(args: DemoArgs) -> Result<()> {
    let DemoArgs { customers, days, seed, partitions, rate, duration, scorecard, http, log: _ } = args;
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
        http_tokens: crate::pipeline::config::Config::load(None, std::env::vars())?
            .http
            .tokens()
            .map_err(anyhow::Error::msg)?,
    };
    let s = run_demo(&options, scorecard, stop, |line| println!("{line}"))?;
    println!(
        "demo done: {} events sent, {} consumed, {} customers (green {}, yellow {}, red {}), {} score changes, {} alerts, {} dead letters",
        s.sent, s.consumed, s.customers, s.bands[Band::Green as usize], s.bands[Band::Yellow as usize],
        s.bands[Band::Red as usize], s.score_changes, s.alerts, s.dead_letters
    );
    Ok(())
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
