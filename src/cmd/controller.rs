//! `portcullis controller`: the index, the config streams, and (soon) the statuses.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use crate::api::Duration;
use crate::controller::run::{Controller, Leadership};
use crate::telemetry::{LogFormat, init_logs};

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Address of the config stream endpoint that sidecars follow.
    #[arg(long, default_value = "0.0.0.0:8090")]
    listen: SocketAddr,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:9902")]
    admin: SocketAddr,

    /// Namespace of the leader-election Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis-system")]
    lease_namespace: String,

    /// This replica's name in the leader election (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// How long a stream may stay silent before a keepalive line is sent.
    #[arg(long, default_value = "15s")]
    keepalive: Duration,

    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
}

pub fn run(args: ControllerArgs) -> ExitCode {
    init_logs(args.log_format);
    super::block_on(None, controller(args))
}

async fn controller(args: ControllerArgs) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let streams = super::bind(args.listen, "config streams").await?;
    let admin = super::bind(args.admin, "admin").await?;
    let identity = args.identity.unwrap_or_else(|| format!("portcullis-{:08x}", fastrand::u32(..)));
    let leadership = Leadership::Lease { namespace: args.lease_namespace, identity };
    let controller =
        Controller { client, streams, admin, keepalive: args.keepalive.as_std(), leadership };
    controller.run(super::shutdown_signal()).await;
    Ok(())
}
