//! Accepting client connections (HTTP/1.1, and HTTP/2 with prior knowledge, told apart by
//! the connection preface) and draining them on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::client_timer::{ClientTimeouts, HeadTimer};
use super::forward::{Client, Proxy};
use super::framing::{Framing, FramingScanner};
use super::tap::ReadTap;

/// Serves clients until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for up to `drain`: HTTP/1.1 responses go out with `Connection: close`,
/// HTTP/2 connections get GOAWAY.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    timeouts: ClientTimeouts,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(timeouts.header);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
        let framing = Arc::new(Framing::default());
        // Each connection's timer reads that connection's bytes (see client_timer).
        let mut builder = builder.clone();
        builder.http1().timer(HeadTimer::new(timeouts, framing.clone()));
        let stream = ReadTap::new(stream, FramingScanner::new(framing.clone()));
        let client = Client::new(addr, framing.clone());
        let proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            let client = client.clone();
            // Boxed: the request future is large, and hyper moves it into place.
            Box::pin(async move { Ok::<_, Infallible>(proxy.handle(&client, req).await) })
        });
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        // Telling HTTP/1.1 from HTTP/2 waits for the first bytes with no timer of hyper's
        // running: a client that sends nothing gets the header timeout here.
        let silent = async move {
            tokio::time::sleep(timeouts.header).await;
            if framing.bytes_read() > 0 {
                std::future::pending::<()>().await;
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                },
                () = silent => tracing::debug!("client sent nothing within the header timeout"),
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests for up to {drain:?}");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain deadline passed; closing the rest"),
    }
}
