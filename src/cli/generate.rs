//! `generate`: a synthetic population's history (see [`crate::generate`]) as NDJSON, or sent
//! to Kafka's input topics.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};

use anyhow::{Context, Result};
use clap::Args;

use super::load_service_config;
use crate::generate::{write_labels_csv, write_ndjson, GenConfig, Generator};
use crate::pipeline::Config;

/// `generate`'s flags.
#[derive(Args)]
pub struct GenerateArgs {
    /// Customers in the population.
    #[arg(long, default_value_t = GenConfig::default().customers)]
    pub customers: u32,
    /// Days of history, ending at --end.
    #[arg(long, default_value_t = GenConfig::default().days)]
    pub days: u32,
    /// The seed: the same flags, the same bytes, on every machine.
    #[arg(long, default_value_t = GenConfig::default().seed)]
    pub seed: u64,
    /// The history ends here (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2026-11-01")]
    pub end: String,
    /// Share of extra bad lines.
    #[arg(long, default_value_t = GenConfig::default().bad_input_rate)]
    pub bad_input_rate: f64,
    /// Share of re-sent duplicate lines.
    #[arg(long, default_value_t = GenConfig::default().duplicate_rate)]
    pub duplicate_rate: f64,
    /// Where to write the events (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Where to write the churn labels (CSV: customer_id,churn_date).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Send the events to these Kafka brokers (the three default input topics) instead of
    /// writing NDJSON.
    #[arg(long, conflicts_with = "output")]
    pub brokers: Option<String>,
    /// With --brokers: events per second (default: as fast as the brokers take them).
    #[arg(long, requires = "brokers")]
    pub rate: Option<f64>,
    /// With --brokers: the service configuration whose connection settings
    /// (`[kafka.client]`: TLS, SASL) and input topic names to use; --brokers overrides its
    /// `kafka.brokers`.
    #[arg(long, requires = "brokers", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `generate`: writes the labels if asked, then the events to a file, standard output or Kafka.
pub fn run(args: GenerateArgs) -> Result<()> {
    let GenerateArgs {
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
    } = args;
    let end = crate::event::parse_date_or_datetime(&end)
        .with_context(|| format!("--end {end:?} is not a date (YYYY-MM-DD) or RFC 3339 date-time"))?;
    let cfg = GenConfig { customers, days, seed, end, bad_input_rate, duplicate_rate };
    if let Some(path) = labels {
        let generator = Generator::new(cfg);
        let mut w = BufWriter::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
        write_labels_csv(generator.profiles(), &mut w)?;
        w.flush()?;
    }
    if let Some(brokers) = brokers {
        let mut service = match &config {
            Some(path) => load_service_config(Some(path))?,
            None => Config::default(),
        };
        service.kafka.brokers = brokers.clone();
        let producer = crate::pipeline::send::input_producer_for(&service)?;
        let topics = service.kafka.topics.clone();
        let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
        let started = std::time::Instant::now();
        let n = crate::pipeline::send::send_events(&producer, &topics, Generator::new(cfg), rate, &stop, &sent)?;
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
