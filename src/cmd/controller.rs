//! `portcullis controller`: the index, the config streams, and (soon) the statuses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::shared;
use crate::api::Duration;
use crate::controller::run::{CertSource, Controller, Leadership, PeerSelector, WebhookListener};
use crate::inject::InjectConfig;
use crate::telemetry::{LogFormat, init_logs};
use crate::tls::from_dir::FromDir;
use crate::tls::self_issued::SelfIssued;

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Address of the config stream endpoint that sidecars follow.
    #[arg(long, default_value = "0.0.0.0:8090")]
    listen: SocketAddr,

    /// Address of the injection webhook (HTTPS, path /inject).
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,

    /// The sidecar the webhook injects (YAML; see docs/reference.md). Defaults apply
    /// when absent.
    #[arg(long)]
    inject_config: Option<PathBuf>,

    /// Secret (in the controller's namespace) that keeps the controller's own CA and
    /// serving certificate; it must exist, the controller fills it in.
    #[arg(long, default_value = "portcullis-tls", conflicts_with = "tls_dir")]
    tls_secret: String,

    /// Take the serving certificate from this folder instead (tls.crt, tls.key, ca.crt,
    /// e.g. a mounted cert-manager Secret), re-read when it changes.
    #[arg(long)]
    tls_dir: Option<PathBuf>,

    /// A DNS name or IP address the self-issued serving certificate carries (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,

    /// Life of a self-issued serving certificate; it is replaced at two thirds of it.
    #[arg(long, default_value = "2160h")]
    tls_validity: Duration,

    /// MutatingWebhookConfiguration whose caBundle is kept equal to the self-issued CA.
    #[arg(long)]
    webhook_config: Option<String>,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:9902")]
    admin: SocketAddr,

    /// Namespace of the leader-election Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis-system")]
    lease_namespace: String,

    /// This replica's name in the leader election (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Label selector of this controller's replicas (in --lease-namespace): the leader
    /// reads each one's /v1/sidecars on its container port named `admin`, so that statuses
    /// count every sidecar, whichever replica it follows.
    #[arg(long, default_value = "app.kubernetes.io/component=controller")]
    peer_selector: String,

    /// How long a stream may stay silent before a keepalive line is sent.
    #[arg(long, default_value = "15s")]
    keepalive: Duration,

    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

pub fn run(args: ControllerArgs) -> ExitCode {
    init_logs(args.log_format);
    shared::block_on(None, controller(args))
}

async fn controller(args: ControllerArgs) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let streams = shared::bind(args.listen, "config streams").await?;
    let admin = shared::bind(args.admin, "admin").await?;
    let certs = cert_source(&args, &client)?;
    let webhook = match args.webhook_listen {
        None => None,
        Some(addr) => Some(WebhookListener {
            listener: shared::bind(addr, "the injection webhook").await?,
            config: Arc::new(inject_config(args.inject_config.as_deref())?),
        }),
    };
    let identity = args.identity.unwrap_or_else(|| format!("portcullis-{:08x}", fastrand::u32(..)));
    let leadership = Leadership::Lease { namespace: args.lease_namespace.clone(), identity };
    let controller = Controller {
        client,
        streams,
        admin,
        keepalive: args.keepalive.as_std(),
        leadership,
        certs: Some(certs),
        webhook,
        peers: Some(PeerSelector {
            namespace: args.lease_namespace.clone(),
            selector: args.peer_selector,
        }),
    };
    tokio::spawn(crate::memory::give_back_freed_memory());
    controller.run(shared::shutdown_signal()).await;
    Ok(())
}

fn cert_source(args: &ControllerArgs, client: &kube::Client) -> Result<CertSource, String> {
    if let Some(dir) = &args.tls_dir {
        return Ok(CertSource::Dir(FromDir { dir: dir.clone(), every: CHECK_EVERY }));
    }
    if args.tls_sans.is_empty() {
        return Err("--tls-san is needed at least once: the names sidecars and the API server \
                    use to reach the controller (its Services' DNS names)"
            .into());
    }
    let namespace = &args.lease_namespace;
    Ok(CertSource::SelfIssued(Box::new(SelfIssued {
        secrets: kube::Api::namespaced(client.clone(), namespace),
        secret_name: args.tls_secret.clone(),
        sans: args.tls_sans.clone(),
        webhook_config: args
            .webhook_config
            .as_ref()
            .map(|name| (kube::Api::all(client.clone()), name.clone())),
        validity: args.tls_validity.as_std(),
        every: CHECK_EVERY,
    })))
}

/// How often the certificate source is checked: rotation happens weeks ahead, and a
/// replica takes a rotated certificate from the Secret within this time.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn inject_config(path: Option<&Path>) -> Result<InjectConfig, String> {
    let Some(path) = path else { return Ok(InjectConfig::default()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --inject-config {}: {e}", path.display()))?;
    InjectConfig::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
}
