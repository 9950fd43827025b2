//! `run` and `check-config`: the Kafka service on a tokio runtime, and the check of its
//! configuration that refuses what `run` would.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{load_scorecard, load_service_config, print_out};
use crate::pipeline::http::{self, Api};
use crate::pipeline::{Config, Processor, Stats};
use crate::score::Scorecard;

/// `run`'s flags.
#[derive(Args)]
pub struct RunArgs {
    /// Configuration TOML (environment overrides: HEALTHSCORE__SECTION__KEY=value).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub log: super::LogArgs,
}

/// `check-config`'s flags.
#[derive(Args)]
pub struct CheckConfigArgs {
    /// Configuration TOML.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// `run`: loads and checks the configuration and scorecard, then serves until a signal.
pub fn run(args: RunArgs) -> Result<()> {
    let config = load_service_config(args.config.as_deref())?;
    let scorecard = Arc::new(load_scorecard(config.scorecard.as_ref())?);
    serve(Arc::new(config), scorecard)
}

/// `check-config`: prints the effective settings when the configuration and its scorecard are valid.
pub fn check_config(args: CheckConfigArgs) -> Result<()> {
    let config = load_service_config(args.config.as_deref())?;
    load_scorecard(config.scorecard.as_ref())?;
    print_out(&format!("# configuration is valid; effective settings:\n{}", config.to_toml()))
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
            (Some(cert), Some(key)) => Some(crate::pipeline::tls::Tls::load(cert, key).await?),
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
        let tokens = config.http.tokens().map_err(anyhow::Error::msg)?;
        if crate::pipeline::config::serves_data_to_anyone(addr, &tokens) {
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
