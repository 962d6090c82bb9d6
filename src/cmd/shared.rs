//! What every subcommand shares: its runtime, its listeners, the files it reads and the
//! signal that ends it.

use std::process::ExitCode;

/// Runs a role to its end on a runtime of `workers` threads (one: a single-threaded runtime;
/// none: one per core), and turns its error into a message and exit status 1.
pub(super) fn block_on(
    workers: Option<usize>,
    role: impl Future<Output = Result<(), String>>,
) -> ExitCode {
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
pub(super) fn ca_pem(
    file: Option<&std::path::Path>,
    text: Option<String>,
) -> Result<Option<String>, String> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display())),
        None => Ok(text),
    }
}

/// A file's text, or standard input's for `-`.
pub(super) fn read(path: &std::path::Path) -> Result<String, String> {
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
pub(super) async fn bind(
    addr: std::net::SocketAddr,
    purpose: &str,
) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for {purpose}: {e}"))
}

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
