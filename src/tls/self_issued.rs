//! The controller's own CA and serving certificate, kept in a Secret of its namespace so
//! that every replica serves the same ones. Each replica checks the Secret on a timer:
//! it issues what is missing or due (two thirds into the serving certificate's life, or
//! when the wanted names change), writes it back with the Secret's resourceVersion so that
//! two replicas racing agree on one winner, installs what the Secret holds, and keeps the
//! webhook configuration's `caBundle` equal to the CA.
//!
//! The Secret and the webhook configuration belong to the chart: the controller only reads
//! and updates them, never creates them, so that `helm uninstall` leaves nothing behind
//! and RBAC can name both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::issue::{CA_VALIDITY, IssueError, Pair, facts, new_ca, serving, signed_by};
use super::store::CertStore;
use crate::telemetry::controller_metrics::ControllerMetrics;
use crate::telemetry::metrics::ResultLabels;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

pub struct SelfIssued {
    /// Secrets of the controller's namespace.
    pub secrets: Api<Secret>,
    pub secret_name: String,
    /// DNS names and IP addresses the serving certificate must carry.
    pub sans: Vec<String>,
    /// The webhook configuration whose `caBundle` follows the CA, if any.
    pub webhook_config: Option<(Api<MutatingWebhookConfiguration>, String)>,
    /// Life of a serving certificate.
    pub validity: Duration,
    /// How often the Secret is checked.
    pub every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error(
        "the Secret {0} does not exist in the controller's namespace (the chart creates it \
         empty; create it with `kubectl create secret generic {0}`)"
    )]
    NoSecret(String),
    #[error("another replica updated the Secret first; taking its certificate")]
    Conflict,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Tls(#[from] super::error::TlsError),
}

/// What one check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Nothing changed.
    Unchanged,
    /// This replica issued a certificate and wrote it to the Secret.
    Issued,
    /// The Secret held a certificate this replica was not serving yet.
    Loaded,
}

impl SelfIssued {
    /// Keeps the certificate current for as long as the process runs.
    pub async fn run(self, store: Arc<CertStore>, metrics: Arc<ControllerMetrics>) {
        loop {
            let pause = match self.check(&store, SystemTime::now(), &metrics).await {
                Ok(Kept::Unchanged) => self.every,
                Ok(kept) => {
                    let result = if kept == Kept::Issued { "issued" } else { "loaded" };
                    tracing::info!(secret = %self.secret_name, "serving certificate {result}");
                    metrics.certificate_rotations.get_or_create(&ResultLabels { result }).inc();
                    self.every
                }
                Err(KeepError::Conflict) => Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(secret = %self.secret_name, "certificate upkeep failed: {e}");
                    metrics
                        .certificate_rotations
                        .get_or_create(&ResultLabels { result: "error" })
                        .inc();
                    self.every.min(Duration::from_secs(10))
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One check of the Secret and the webhook configuration.
    pub async fn check(
        &self,
        store: &CertStore,
        now: SystemTime,
        metrics: &ControllerMetrics,
    ) -> Result<Kept, KeepError> {
        let secret = self
            .secrets
            .get_opt(&self.secret_name)
            .await?
            .ok_or_else(|| KeepError::NoSecret(self.secret_name.clone()))?;
        let held = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        let mut issued = false;
        let ca = match (held(CA_CERT), held(CA_KEY)) {
            (Some(cert_pem), Some(key_pem)) if facts(&cert_pem).is_ok() => {
                Pair { cert_pem, key_pem }
            }
            _ => {
                issued = true;
                new_ca(now, CA_VALIDITY)?
            }
        };
        let leaf = match (held(TLS_CERT), held(TLS_KEY)) {
            (Some(cert_pem), Some(key_pem)) if !issued && self.still_good(&cert_pem, &ca, now) => {
                Pair { cert_pem, key_pem }
            }
            _ => {
                issued = true;
                serving(&ca, &self.sans, now, self.validity)?
            }
        };
        if issued {
            self.write(secret, &ca, &leaf).await?;
        }
        let kept = if store.cert_pem().as_deref() == Some(leaf.cert_pem.as_str()) {
            Kept::Unchanged
        } else {
            let expiry = store.install(&leaf.cert_pem, &leaf.key_pem, &ca.cert_pem)?;
            metrics.certificate_expiry.set(expiry);
            if issued { Kept::Issued } else { Kept::Loaded }
        };
        self.publish_ca(&ca.cert_pem).await?;
        Ok(kept)
    }

    fn still_good(&self, cert_pem: &str, ca: &Pair, now: SystemTime) -> bool {
        let Ok(facts) = facts(cert_pem) else { return false };
        let wanted: std::collections::BTreeSet<String> = self.sans.iter().cloned().collect();
        !facts.due_for_rotation(now) && facts.sans == wanted && signed_by(cert_pem, &ca.cert_pem)
    }

    /// Replaces the Secret's data, on the condition that nobody changed it since it was
    /// read (its resourceVersion travels with the update).
    async fn write(&self, mut secret: Secret, ca: &Pair, leaf: &Pair) -> Result<(), KeepError> {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        secret.data = Some(BTreeMap::from([
            (CA_CERT.to_owned(), bytes(&ca.cert_pem)),
            (CA_KEY.to_owned(), bytes(&ca.key_pem)),
            (TLS_CERT.to_owned(), bytes(&leaf.cert_pem)),
            (TLS_KEY.to_owned(), bytes(&leaf.key_pem)),
        ]));
        secret.string_data = None;
        match self.secrets.replace(&self.secret_name, &PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(KeepError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets `caBundle` on every webhook of the configuration that lacks this CA. A JSON
    /// patch with a `test` of each webhook's name, so that a configuration reordered in
    /// between is refused rather than patched in the wrong place; it never creates the
    /// configuration, so an uninstalled chart stays uninstalled.
    async fn publish_ca(&self, ca_pem: &str) -> Result<(), KeepError> {
        let Some((api, name)) = &self.webhook_config else { return Ok(()) };
        let Some(config) = api.get_opt(name).await? else {
            tracing::warn!(webhook_config = %name, "the webhook configuration does not exist");
            return Ok(());
        };
        let wanted = ByteString(ca_pem.as_bytes().to_vec());
        let mut ops = Vec::new();
        for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}));
                ops.push(json!({
                    "op": "add",
                    "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                    "value": serde_json::to_value(&wanted).expect("bytes serialize"),
                }));
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let patch: json_patch::Patch =
            serde_json::from_value(json!(ops)).expect("well-formed JSON patch operations");
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
        tracing::info!(webhook_config = %name, "caBundle updated");
        Ok(())
    }
}
