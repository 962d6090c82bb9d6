//! `portcullis proxy`: wires the config, the data plane and the admin server together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::shared;
use crate::api::Duration;
use crate::config::follow::ControllerSource;
use crate::proxy::{AllowedUpgrades, AppProtocol, ClientLimits, ClientTimeouts};
use crate::sidecar::{Sidecar, StopSettings};
use crate::telemetry::{LogFormat, init_logs};

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address that clients connect to (the pod's serving port).
    #[arg(long)]
    listen: SocketAddr,

    /// The app, as HOST:PORT (usually 127.0.0.1 and the container's port).
    #[arg(long)]
    upstream: String,

    /// Protocol spoken to the app: http1, or http2 (prior knowledge; for gRPC apps).
    #[arg(long, value_enum, default_value_t = AppProtocol::Http1)]
    app_protocol: AppProtocol,

    /// Address of the admin server (/livez, /readyz, /metrics, /config).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,

    /// File of UpstreamPolicy and MaintenanceWindow YAML documents; watched for changes.
    #[arg(long)]
    config: Option<PathBuf>,

    /// Follow the controller's config stream (https://host:port; http:// only to a
    /// loopback address); the pod is named by POD_NAMESPACE and POD_NAME, and
    /// authenticated by --token-file.
    #[arg(long, conflicts_with = "config")]
    controller: Option<String>,

    /// The CA bundle (PEM text) that the controller's certificate must chain to; the
    /// injector sets it. Nothing else is trusted.
    #[arg(long, env = crate::inject::CA_ENV, hide_env_values = true, requires = "controller")]
    controller_ca_pem: Option<String>,

    /// The same, from a file.
    #[arg(long, conflicts_with = "controller_ca_pem", requires = "controller")]
    controller_ca: Option<PathBuf>,

    #[arg(long, env = "POD_NAMESPACE", requires = "controller")]
    pod_namespace: Option<String>,

    #[arg(long, env = "POD_NAME", requires = "controller")]
    pod_name: Option<String>,

    /// The pod's projected ServiceAccount token with audience `portcullis`.
    #[arg(long, default_value = "/var/run/secrets/portcullis/token")]
    token_file: PathBuf,

    /// Folder of mounted Secrets (`<dir>/<secret name>/<key>`), for bypass tokens.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,

    /// How often the config file is read for changes.
    #[arg(long, default_value = "500ms")]
    reload_interval: Duration,

    /// Longest a client may take over a request head, from its first byte (and the first
    /// request, from the connection's start); past it the connection is closed (slowloris).
    #[arg(long, default_value = "30s")]
    client_header_timeout: Duration,

    /// Longest a keep-alive client connection may stay idle between requests. Longer than
    /// the idle timeouts of load balancers in front, so that they close first.
    #[arg(long, default_value = "1h")]
    client_idle_timeout: Duration,

    /// Largest request head (request line and header fields) a client may send, in bytes;
    /// a larger one is answered 431 and never reaches the app. As Envoy's default: 60 KiB.
    #[arg(long, default_value_t = crate::proxy::DEFAULT_MAX_HEAD_BYTES)]
    max_request_head_bytes: usize,

    /// Client connections open at once; a connection past it is answered 503 with
    /// Retry-After and closed. Default: half the open-file limit (raised to its hard limit
    /// at start) less 128, as HAProxy's maxconn: each client connection may need one to
    /// the app too.
    #[arg(long)]
    max_client_connections: Option<usize>,

    /// Protocols a client may switch to with Upgrade, comma-separated ('' for none). After
    /// the app's 101 the sidecar only copies bytes, so no rule of its own applies to them.
    /// `h2c` is never switched to: the request goes on without its Upgrade. A request
    /// offering any other protocol not listed is answered 403.
    #[arg(long, default_value = "websocket")]
    allowed_upgrades: AllowedUpgrades,

    /// Longest wait for in-flight requests on SIGTERM or SIGINT.
    #[arg(long, default_value = "30s")]
    drain_timeout: Duration,

    /// How long `GET /prestop` on the admin port (the app container's preStop hook, which
    /// the injector adds) holds the app's stop, counted from its first call: long enough
    /// for the pod's endpoint to be withdrawn everywhere. The call also tells the sidecar
    /// that the pod is stopping.
    #[arg(long, default_value = "0s")]
    stop_delay: Duration,

    /// The pod's token that `/prestop` calls must carry in `Portcullis-Stop-Token`; the
    /// injector sets the variable. Without it, only loopback clients may call `/prestop`.
    #[arg(long, env = "PORTCULLIS_STOP_TOKEN", hide_env_values = true)]
    stop_token: Option<String>,

    /// Worker threads; 1 runs everything on one thread. Default: the CPUs this process
    /// may use (its affinity, capped by its cgroup's CPU quota, rounded down, at least 1).
    #[arg(long)]
    workers: Option<usize>,

    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

pub fn run(args: ProxyArgs) -> ExitCode {
    init_logs(args.log_format);
    if let Some((from, to)) = crate::proxy::raise_open_file_limit() {
        tracing::info!(from, to, "open-file limit raised to the hard limit");
    }
    let workers = args.workers.unwrap_or_else(crate::cpus::available).max(1);
    tracing::info!(workers, "worker threads");
    shared::block_on(Some(workers), sidecar(args))
}

async fn sidecar(args: ProxyArgs) -> Result<(), String> {
    let listener = shared::bind(args.listen, "clients").await?;
    let admin = shared::bind(args.admin, "admin").await?;
    let controller = match args.controller {
        None => None,
        Some(url) => {
            let (Some(namespace), Some(pod)) = (args.pod_namespace, args.pod_name) else {
                return Err("--controller needs POD_NAMESPACE and POD_NAME (or --pod-namespace, --pod-name)".into());
            };
            let ca_pem = shared::ca_pem(args.controller_ca.as_deref(), args.controller_ca_pem)?;
            let tls = ca_pem
                .map(|pem| crate::tls::client_config(&pem))
                .transpose()
                .map_err(|e| format!("--controller-ca: {e}"))?;
            if tls.is_none() && url.starts_with("https://") {
                return Err(format!(
                    "--controller {url} needs the CA its certificate chains to: \
                     --controller-ca FILE or PORTCULLIS_CONTROLLER_CA"
                ));
            }
            Some(ControllerSource {
                url,
                tls,
                namespace,
                pod,
                token_file: args.token_file,
                idle_timeout: std::time::Duration::from_secs(45),
            })
        }
    };
    let sidecar = Sidecar {
        controller,
        listener,
        admin,
        upstream: args.upstream,
        app_protocol: args.app_protocol,
        config_file: args.config,
        secrets_dir: args.secrets_dir,
        reload_interval: args.reload_interval.as_std(),
        drain_timeout: args.drain_timeout.as_std(),
        client_timeouts: ClientTimeouts {
            header: args.client_header_timeout.as_std(),
            idle: args.client_idle_timeout.as_std(),
        },
        client_limits: ClientLimits {
            max_head_bytes: args.max_request_head_bytes,
            max_connections: args
                .max_client_connections
                .unwrap_or_else(crate::proxy::default_max_connections)
                .max(1),
            allowed_upgrades: args.allowed_upgrades,
        },
        stop: StopSettings { delay: args.stop_delay.as_std(), token: args.stop_token },
    };
    tokio::spawn(crate::memory::give_back_freed_memory());
    sidecar.run(shared::shutdown_signal()).await.map_err(|e| e.to_string())
}
