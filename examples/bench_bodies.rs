//! Large bodies for `make bench`, both directions streamed.
//! `bench_bodies serve ADDR`: an app that streams each request body back as its response
//! body, frame by frame, on one thread.
//! `bench_bodies load ADDR SECONDS CONNECTIONS [BYTES]`: CONNECTIONS keep-alive clients,
//! each POSTing BYTES (1 MiB by default) in 64 KiB frames and reading the whole echoed
//! response, again and again for SECONDS; a response of another status or length is an
//! error. Prints `exchanges N up_mib_s X down_mib_s Y errors N`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1 as client;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const FRAME: usize = 64 * 1024;
/// Longest a single exchange may take before it counts as an error.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

type Upload =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr = args.next().expect("ADDR");
    match mode.as_str() {
        "serve" => serve(&addr).await,
        "load" => {
            let seconds: f64 = args.next().and_then(|s| s.parse().ok()).expect("SECONDS");
            let connections: usize = args.next().and_then(|s| s.parse().ok()).expect("CONNECTIONS");
            let bytes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
            load(addr, Duration::from_secs_f64(seconds), connections, bytes).await;
            Ok(())
        }
        _ => panic!("usage: bench_bodies serve ADDR | load ADDR SECONDS CONNECTIONS [BYTES]"),
    }
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // The request body goes straight back out: nothing is held beyond a frame.
            let service = service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(Response::new(req.into_body()))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Default)]
struct Tally {
    exchanges: u64,
    up: u64,
    down: u64,
    errors: u64,
}

async fn load(addr: String, duration: Duration, connections: usize, bytes: usize) {
    let payload = Bytes::from(vec![b'x'; bytes]);
    let start = Instant::now();
    let stop = start + duration;
    let clients: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(client_loop(addr.clone(), payload.clone(), stop)))
        .collect();
    let mut total = Tally::default();
    for tally in futures::future::join_all(clients).await.into_iter().flatten() {
        total.exchanges += tally.exchanges;
        total.up += tally.up;
        total.down += tally.down;
        total.errors += tally.errors;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mib_s = |n: u64| n as f64 / f64::from(1 << 20) / seconds;
    println!(
        "exchanges {} up_mib_s {:.1} down_mib_s {:.1} errors {}",
        total.exchanges,
        mib_s(total.up),
        mib_s(total.down),
        total.errors
    );
}

/// One client: a keep-alive connection, re-opened after an error.
async fn client_loop(addr: String, payload: Bytes, stop: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut sender: Option<client::SendRequest<Upload>> = None;
    while Instant::now() < stop {
        let conn = match sender.take() {
            Some(s) => s,
            None => match connect(&addr).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("bench_bodies {addr}: {e}");
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut conn = conn;
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut conn, &addr, &payload)).await {
            Ok(Ok(down)) => {
                tally.exchanges += 1;
                tally.up += payload.len() as u64;
                tally.down += down;
                sender = Some(conn);
            }
            Ok(Err(e)) => {
                eprintln!("bench_bodies {addr}: {e}");
                tally.errors += 1;
            }
            Err(_) => {
                eprintln!("bench_bodies {addr}: no whole answer in {EXCHANGE_TIMEOUT:?}");
                tally.errors += 1;
            }
        }
    }
    tally
}

async fn connect(addr: &str) -> Result<client::SendRequest<Upload>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        client::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One POST of the payload in frames; returns how many bytes came back, counted as they
/// arrive rather than collected.
async fn exchange(
    sender: &mut client::SendRequest<Upload>,
    addr: &str,
    payload: &Bytes,
) -> Result<u64, String> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let frames: Vec<_> = (0..payload.len())
        .step_by(FRAME)
        .map(|at| Ok(Frame::data(payload.slice(at..(at + FRAME).min(payload.len())))))
        .collect();
    let request = Request::post("/")
        .header(header::HOST, addr)
        .header(header::CONTENT_LENGTH, payload.len())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut down = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            down += data.len() as u64;
        }
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if down != payload.len() as u64 {
        return Err(format!("{down} bytes back, {} sent", payload.len()));
    }
    Ok(down)
}
