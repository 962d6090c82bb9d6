//! Idle keep-alive clients for `make bench`: opens N connections to ADDR, sends one small
//! GET on each and reads the whole response, holds every connection open and silent for
//! SECONDS, then sends one more GET on each. A connection the server closed while idle, or
//! any failed exchange, counts as an error.
//! Usage: `bench_idle ADDR N SECONDS [h2]`.
//! With `h2`, each connection speaks HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1:
//! the client preface and its SETTINGS, one GET (a HEADERS frame ending the stream) whose
//! whole response is read, the server's SETTINGS acknowledged and any PING answered while
//! idle (hyper's HTTP/2 client does both, on the connection's own task), and one more GET at
//! the end, on the same connection.
//! Prints `holding N` once all are open (the bench measures the server's memory then), and
//! at the end `opened N ok N errors N`; a breakdown of the errors goes to stderr.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Connections opened (or re-used) at the same time: enough to be quick, few enough that
/// the server's accept backlog and its pool of app connections stay small.
const AT_ONCE: usize = 200;
/// Longest a single exchange may take before it counts as an error.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One open connection, either protocol.
enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("ADDR");
    let n: usize = args.next().and_then(|s| s.parse().ok()).expect("N");
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).expect("SECONDS");
    let h2 = match args.next().as_deref() {
        None | Some("h1") => false,
        Some("h2") => true,
        Some(other) => panic!("unknown mode {other:?}: h1 or h2"),
    };

    let opened: Vec<Result<Sender, String>> = futures::stream::iter(0..n)
        .map(|_| open(&addr, h2))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut held = Vec::with_capacity(n);
    for result in opened {
        match result {
            Ok(sender) => held.push(sender),
            Err(e) => *errors.entry(format!("first request: {e}")).or_default() += 1,
        }
    }
    let opened = held.len();
    let mut stdout = tokio::io::stdout();
    let _ = stdout.write_all(format!("holding {opened}\n").as_bytes()).await;
    let _ = stdout.flush().await;

    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;

    let again: Vec<Result<(), String>> = futures::stream::iter(held)
        .map(|mut sender| {
            let addr = addr.clone();
            async move { exchange(&mut sender, &addr).await }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut ok = 0;
    for result in again {
        match result {
            Ok(()) => ok += 1,
            Err(e) => *errors.entry(format!("after {seconds}s idle: {e}")).or_default() += 1,
        }
    }
    for (error, count) in &errors {
        eprintln!("bench_idle {addr}: {count} x {error}");
    }
    let _ =
        stdout.write_all(format!("opened {opened} ok {ok} errors {}\n", n - ok).as_bytes()).await;
    let _ = stdout.flush().await;
}

/// A new connection that has answered one request.
async fn open(addr: &str, h2: bool) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let mut sender = if h2 {
        // The preface and SETTINGS go out here; the connection's task reads the server's
        // SETTINGS (and acknowledges them) and answers PINGs for as long as it is open.
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    exchange(&mut sender, addr).await?;
    Ok(sender)
}

/// One GET on the connection, its whole response read; anything but a 200 is an error.
async fn exchange(sender: &mut Sender, addr: &str) -> Result<(), String> {
    let work = async {
        let response = match sender {
            Sender::H1(sender) => {
                sender.ready().await.map_err(|e| format!("connection: {e}"))?;
                let request = Request::get("/")
                    .header(header::HOST, addr)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
            Sender::H2(sender) => {
                sender.ready().await.map_err(|e| format!("connection: {e}"))?;
                // HTTP/2 takes :scheme and :authority from the URI, so it is absolute here.
                let request = Request::get(format!("http://{addr}/"))
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                sender.send_request(request).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        response.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
        if status == StatusCode::OK { Ok(()) } else { Err(format!("status {status}")) }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {EXCHANGE_TIMEOUT:?}")))
}
