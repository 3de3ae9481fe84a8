//! TLS: the process's rustls provider and the serving certificate re-read when its
//! files change (polled by modification time, size and inode, so a Secret volume's
//! symlink swap is seen), with a failed reload logged, counted and the current pair kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

use crate::server::AppState;

/// Makes ring the process's rustls provider (TLS 1.2 and 1.3 only, the
/// rustls defaults). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What identifies a version of a file: modification time, size and inode.
type Stamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Polls the certificate and key; when either changed, reloads the pair. A
/// pair that does not load (missing, half-written, key not matching) is
/// logged and the current one kept; it is tried again when a file changes.
pub(crate) async fn watch_certificates(
    tls: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    state: AppState,
) {
    let mut seen = (stamp(&cert), stamp(&key));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match tls.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                state.metrics().record_reload(true);
                tracing::info!(cert = %cert.display(), "reloaded the serving certificate");
            }
            Err(e) => {
                state.metrics().record_reload(false);
                tracing::warn!(cert = %cert.display(), error = %e, "the new certificate or key does not load; keeping the current one");
            }
        }
    }
}
