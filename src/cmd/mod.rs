//! The `portcullis` command line: one subcommand per role.

mod controller;
mod inject;
mod proxy;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Honest 5xx for Kubernetes workloads")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar proxy in front of an app.
    Proxy(Box<proxy::ProxyArgs>),
    /// Run the controller: watch resources and pods, stream each sidecar its config.
    Controller(Box<controller::ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Add the sidecar to the pods of workload manifests (Pods, Deployments, StatefulSets,
    /// DaemonSets, Jobs, CronJobs), as the webhook would.
    Inject(Box<inject::InjectArgs>),
    /// Check the pods of workload manifests against the API server's Pod validation rules
    /// that Portcullis knows (those of every field it writes), as `kubectl apply` would
    /// find out too late.
    Validate(validate::ValidateArgs),
}

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Proxy(args) => proxy::run(*args),
        Command::Controller(args) => controller::run(*args),
        Command::Crds => {
            print!("{}", crate::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Inject(args) => inject::run(*args),
        Command::Validate(args) => validate::run(args),
    }
}

/// Runs a role to its end on a runtime of `workers` threads (one: a single-threaded runtime;
/// none: one per core), and turns its error into a message and exit status 1.
fn block_on(workers: Option<usize>, role: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match workers {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()
        }
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(role),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("portcullis: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The controller's CA bundle, from a file (which wins) or as PEM text.
fn ca_pem(file: Option<&std::path::Path>, text: Option<String>) -> Result<Option<String>, String> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display())),
        None => Ok(text),
    }
}

/// A file's text, or standard input's for `-`.
fn read(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let result = if path == std::path::Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)).map(drop)
    };
    result.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text)
}

/// Binds a listener, with an error that says what it was for.
async fn bind(
    addr: std::net::SocketAddr,
    purpose: &str,
) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for {purpose}: {e}"))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
