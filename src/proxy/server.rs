//! Accepting client connections (HTTP/1.1, and HTTP/2 with prior knowledge, told apart by
//! the connection preface), turning away those over the connection limit, and draining
//! them on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::client_conn::{self, ConnSettings};
use super::client_io::ClientIo;
use super::client_timer::ClientTimeouts;
use super::error::ProxyError;
use super::forward::{Client, Proxy};
use super::framing::{DEFAULT_MAX_HEAD_BYTES, Framing};
use super::open::Counted;
use super::upgrade::AllowedUpgrades;

/// What one client may send and how many may connect at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// A request head larger than this is refused with 431.
    pub max_head_bytes: usize,
    /// Client connections open at once; past it, new ones are answered 503 and closed.
    pub max_connections: usize,
    /// The protocols a client may switch to (Upgrade); others are declined or refused.
    pub allowed_upgrades: AllowedUpgrades,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_connections: default_max_connections(),
            allowed_upgrades: AllowedUpgrades::default(),
        }
    }
}

/// The connection limit for this process's open-file limit (see `connections_for`).
pub fn default_max_connections() -> usize {
    connections_for(rustix::process::getrlimit(rustix::process::Resource::Nofile).current)
}

/// Descriptors kept for the listeners, the admin server, the config stream and logs.
const RESERVED_FDS: u64 = 128;
/// Connections over the limit answered at once; beyond that they are closed unanswered,
/// so that a flood cannot spend the descriptors the limit keeps.
const TURNED_AWAY_AT_ONCE: usize = 64;
/// How long a connection over the limit is given to send its request and read the answer.
const TURN_AWAY_TIME: Duration = Duration::from_secs(5);
/// How often the end of a drain looks for connections still open.
const DRAIN_CHECK: Duration = Duration::from_millis(10);
/// The Retry-After of that answer, in seconds.
const TURN_AWAY_RETRY_AFTER: u64 = 1;

/// Raises the soft limit on open files to the hard one, as HAProxy and Go programs do: the
/// soft limit (often 1024) is a guard for programs that use `select`, which this one does
/// not. Returns the limits before and after, when it changed.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else { return None };
    if hard.is_some_and(|hard| hard <= soft) {
        return None;
    }
    let raised = rustix::process::Rlimit { current: hard, maximum: hard };
    setrlimit(Resource::Nofile, raised).ok()?;
    Some((soft, hard.unwrap_or(u64::MAX)))
}

/// The default connection limit for a descriptor limit of `nofile` (`None`: unlimited):
/// each client connection may need a second descriptor to the app, and some are reserved.
pub fn connections_for(nofile: Option<u64>) -> usize {
    let usable = nofile.unwrap_or(u64::MAX).saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(usable).unwrap_or(usize::MAX).clamp(1, 1 << 20)
}

/// Serves clients until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for up to `drain`: HTTP/1.1 responses go out with `Connection: close`,
/// HTTP/2 connections get GOAWAY, and a keep-alive connection waiting for its next request
/// is given `DRAIN_GRACE` to send it (answered, with `Connection: close`) before it is
/// closed, so that a request already on its way is not met by a closed connection.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain_for: Duration,
    timeouts: ClientTimeouts,
    limits: ClientLimits,
) {
    let drain = proxy.lifecycle().draining().clone();
    let settings = Arc::new(ConnSettings::new(
        timeouts,
        limits.max_head_bytes,
        limits.allowed_upgrades.clone(),
        drain.clone(),
    ));
    let open = Arc::new(AtomicUsize::new(0));
    let turning_away = Arc::new(Semaphore::new(TURNED_AWAY_AT_ONCE));
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(counted) = Counted::enter(&open, limits.max_connections) else {
            if let Ok(permit) = turning_away.clone().try_acquire_owned() {
                let (proxy, limit) = (proxy.clone(), limits.max_connections);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(TURN_AWAY_TIME, turn_away(stream, &proxy, limit))
                        .await;
                    drop(permit);
                });
            }
            continue;
        };
        let framing = Arc::new(Framing::default());
        // Boxed: the connection's future passes it down by pointer, not by copy.
        let io = Box::new(ClientIo::new(
            stream,
            framing.clone(),
            limits.max_head_bytes,
            timeouts.header,
        ));
        let client = Arc::new(Client::new(addr, framing, settings.upgrades().clone()));
        let (proxy, settings) = (proxy.clone(), settings.clone());
        // Spawned as it is: wrapped in another future, it would be held twice, once as that
        // future's capture and once as what it awaits.
        tokio::spawn(client_conn::serve(io, proxy, client, settings, counted));
    }
    drop(listener);
    tracing::info!(
        idle = settings.parked(),
        "shutting down: draining in-flight requests for up to {drain_for:?}"
    );
    drain.start();
    let drained = async {
        while open.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(DRAIN_CHECK).await;
        }
    };
    tokio::select! {
        () = drained => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_for) => tracing::warn!("drain deadline passed; closing the rest"),
    }
}

/// Answers a connection over the limit with a labelled 503 (its request read first, so that
/// the answer is not lost to a reset) and closes it.
async fn turn_away(stream: TcpStream, proxy: &Proxy, limit: usize) {
    let err = ProxyError::ClientConnectionLimit { limit, retry_after: TURN_AWAY_RETRY_AFTER };
    let service = service_fn(|req| {
        let response = proxy.turn_away(&err, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false);
    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_leaves_a_descriptor_to_the_app_for_each() {
        assert_eq!(connections_for(Some(1024)), 448);
        assert_eq!(connections_for(Some(1_048_576)), 524_224);
        assert_eq!(connections_for(Some(100)), 1, "at least one");
        assert_eq!(connections_for(None), 1 << 20, "unlimited descriptors");
    }

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let before = getrlimit(Resource::Nofile);
        let changed = raise_open_file_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, after.maximum);
        assert_eq!(after.maximum, before.maximum, "the hard limit is left alone");
        assert_eq!(changed.is_some(), before.current != before.maximum);
        assert_eq!(raise_open_file_limit(), None, "nothing left to raise");
    }
}
