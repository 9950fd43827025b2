//! HTTPS for the endpoints (`http.tls_cert`, `http.tls_key`): the certificate and key loaded
//! with rustls (through axum-server; no OpenSSL on this side), and re-read when either file
//! changes, so a certificate renewed by cert-manager or an operator is served without a
//! restart. Bearer tokens still decide who may read data: TLS only keeps them and the answers
//! from being read on the way.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;

/// How often the files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(30);

/// A loaded certificate and key, and where they came from.
#[derive(Clone)]
pub struct Tls {
    pub config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    check_every: Duration,
}

impl Tls {
    /// Loads the PEM certificate chain and key; an error names both files and what is wrong
    /// (unreadable, not PEM, a key that does not match).
    pub async fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let config = RustlsConfig::from_pem_file(cert, key).await.with_context(|| {
            format!("cannot use http.tls_cert {} with http.tls_key {}", cert.display(), key.display())
        })?;
        Ok(Tls { config, cert: cert.to_path_buf(), key: key.to_path_buf(), check_every: RELOAD_CHECK })
    }

    /// Checks the files for a change this often instead of every 30 s (tests).
    pub fn checked_every(mut self, period: Duration) -> Tls {
        self.check_every = period;
        self
    }

    /// Re-reads the files whenever their modification times change, until the runtime stops.
    /// A bad new pair is logged and the previous certificate kept.
    pub async fn reload_on_change(self) {
        let mut seen = self.stamps();
        loop {
            tokio::time::sleep(self.check_every).await;
            let now = self.stamps();
            if now == seen {
                continue;
            }
            seen = now;
            match self.config.reload_from_pem_file(&self.cert, &self.key).await {
                Ok(()) => tracing::info!(cert = %self.cert.display(), "HTTPS certificate reloaded"),
                Err(e) => tracing::warn!(
                    cert = %self.cert.display(),
                    error = %e,
                    "cannot reload the HTTPS certificate; still serving the previous one"
                ),
            }
        }
    }

    fn stamps(&self) -> [Option<SystemTime>; 2] {
        [&self.cert, &self.key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }
}
