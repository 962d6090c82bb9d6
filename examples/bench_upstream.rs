//! The benchmark's upstream: answers every request with a short 200, on one thread, after
//! reading and discarding its body (of any size, frame by frame, nothing held), so that a
//! POST leaves the keep-alive connection ready for the next request.
//! Usage: `bench_upstream ADDR [SERVICE_MS [CONCURRENCY]]`. With SERVICE_MS, each request
//! takes that long; with CONCURRENCY, at most that many are served at once and the rest
//! wait their turn, which gives the app a fixed capacity of CONCURRENCY / SERVICE_MS.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let service_ms: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let concurrency: usize =
        args.next().and_then(|s| s.parse().ok()).unwrap_or(Semaphore::MAX_PERMITS);
    let workers = Arc::new(Semaphore::new(concurrency));
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let workers = workers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let workers = workers.clone();
                async move {
                    // Answering before the whole body is read would make hyper close the
                    // connection rather than drain a large body.
                    let mut body = req.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                    if service_ms > 0 {
                        let _turn = workers.acquire().await;
                        tokio::time::sleep(Duration::from_millis(service_ms)).await;
                    }
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from_static(b"hello, bench\n")))
                            .expect("valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
