//! Certificates issued by someone else (cert-manager), from a mounted Secret: `tls.crt`,
//! `tls.key` and `ca.crt`. The kubelet swaps the files when the Secret changes; they are
//! re-read on a timer and installed when the certificate differs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::store::CertStore;
use crate::telemetry::controller_metrics::ControllerMetrics;
use crate::telemetry::metrics::ResultLabels;

pub struct FromDir {
    pub dir: PathBuf,
    pub every: Duration,
}

impl FromDir {
    pub async fn run(self, store: Arc<CertStore>, metrics: Arc<ControllerMetrics>) {
        loop {
            match self.load(&store) {
                Ok(Some(expiry)) => {
                    tracing::info!(dir = %self.dir.display(), "serving certificate loaded");
                    metrics.certificate_expiry.set(expiry);
                    metrics
                        .certificate_rotations
                        .get_or_create(&ResultLabels { result: "loaded" })
                        .inc();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), "cannot load the serving certificate: {e}");
                    metrics
                        .certificate_rotations
                        .get_or_create(&ResultLabels { result: "error" })
                        .inc();
                }
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// Installs the files' certificate when it differs from the one served.
    fn load(&self, store: &CertStore) -> Result<Option<i64>, String> {
        let read = |name: &str| {
            let path = self.dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let cert = read("tls.crt")?;
        if store.cert_pem().as_deref() == Some(cert.as_str()) {
            return Ok(None);
        }
        let (key, ca) = (read("tls.key")?, read("ca.crt")?);
        store.install(&cert, &key, &ca).map(Some).map_err(|e| e.to_string())
    }
}
