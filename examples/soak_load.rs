//! The soak's app, its stand-in that never accepts, and its traffic (`make soak`, see
//! bench/soak.sh). One binary, three roles:
//!
//! - `soak_load app ADDR`: an HTTP/1.1 app on raw sockets, with keep-alive, that misbehaves
//!   on request. Paths (a query string is ignored, but `/sleep?ms=N`'s):
//!   - `/ok` (and below it) 200; `/echo` 200 with the request's body; `/close` 200 and
//!     `Connection: close`; `/sleep?ms=N` 200 after N ms (150 by default); `/slow-body` 200
//!     with a body in five chunks 50 ms apart; `/app-503` the app's own 503 with
//!     Retry-After; `/ws` with `Upgrade` 101, then echoes bytes until the client closes.
//!   - `/garbage` a garbage status line; `/reset` a TCP reset without an answer; `/hangup`
//!     a plain close without an answer; `/report` text/html (the soak's route wants
//!     text/csv); `/bighead` an 80 KB header.
//!   - `/stall` and `/deadline` never answer (until the sidecar gives up and closes);
//!     `/deadline/body` sends its headers, then a chunk every 100 ms for a second;
//!     `/stall-body` sends its headers and one chunk, then falls silent.
//! - `soak_load blackhole ADDR`: a listener whose accept queue is full, so that a connect to
//!   it hangs (the sidecar's connect timeout). Runs until killed.
//! - `soak_load load ADDR RATE STATS_FILE`: mixed traffic to the sidecar at ADDR, about RATE
//!   scenarios a second (some send several requests) until killed: HTTP/1.1 on keep-alive
//!   and on fresh connections, HTTP/2 with prior knowledge on a long-lived and on
//!   short-lived connections, Upgrades, every path above, requests the sidecar must refuse,
//!   clients that give up half-way, and every 2 s a burst of 20 slow requests at once (for
//!   the overload limit, when the config has one). Every second it replaces STATS_FILE with
//!   one line of counts so far: `total=N 1xx=N 2xx=N 3xx=N 4xx=N 502=N 503=N 504=N 5xx=N
//!   err=N cut=N aborted=N hung=N skipped=N`: `total` is every request answered or failed;
//!   `err` failed before a status, `cut` broke off in the body after one, `aborted` was
//!   given up on purpose by the client, `hung` is a scenario that took over 15 s, `skipped`
//!   a tick with 2,000 scenarios already running.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Mutex, Semaphore};

/// Longest a scenario may take before it counts as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(15);
/// Most scenarios running at once; a tick beyond it is skipped.
const MOST_RUNNING: usize = 2000;
/// Paths that make the sidecar answer 502 or 504 itself (or cut a stream short), and the
/// app's own 503.
const FAULTS: &[&str] = &[
    "/garbage",
    "/reset",
    "/hangup",
    "/report",
    "/bighead",
    "/stall",
    "/deadline",
    "/deadline/body",
    "/stall-body",
    "/app-503",
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, what: &str| args.get(i).cloned().unwrap_or_else(|| panic!("{what}"));
    let result = match arg(0, "ROLE: app, blackhole or load").as_str() {
        "app" => app(&arg(1, "ADDR")).await,
        "blackhole" => blackhole(&arg(1, "ADDR")).await,
        "load" => {
            let rate: f64 = arg(2, "RATE").parse().expect("RATE: a number");
            load(arg(1, "ADDR"), rate, arg(3, "STATS_FILE")).await;
            Ok(())
        }
        other => panic!("unknown role {other}: app, blackhole or load"),
    };
    if let Err(e) = result {
        eprintln!("soak_load: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// The app.

async fn app(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let _ = serve(stream).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

struct Head {
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

type Conn = BufReader<TcpStream>;

fn eof() -> io::Error {
    io::Error::from(io::ErrorKind::UnexpectedEof)
}

async fn line(conn: &mut Conn, buf: &mut String) -> io::Result<usize> {
    buf.clear();
    conn.read_line(buf).await
}

/// The next request's head, or None when the client closed between requests.
async fn read_head(conn: &mut Conn) -> io::Result<Option<Head>> {
    let mut buf = String::new();
    if line(conn, &mut buf).await? == 0 {
        return Ok(None);
    }
    let target = buf.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut headers = Vec::new();
    loop {
        if line(conn, &mut buf).await? == 0 {
            return Err(eof());
        }
        let field = buf.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok(Some(Head { path, query, headers }))
}

async fn read_body(conn: &mut Conn, head: &Head) -> io::Result<Vec<u8>> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        let mut buf = String::new();
        loop {
            if line(conn, &mut buf).await? == 0 {
                return Err(eof());
            }
            let size = buf.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while line(conn, &mut buf).await? > 0 && !buf.trim_end().is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf).await?;
        }
    }
    if let Some(length) = head.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        body.resize(length, 0);
        conn.read_exact(&mut body).await?;
    }
    Ok(body)
}

fn response(status: &str, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Waits until the peer closes (or sends garbage we ignore), at most `most`.
async fn until_closed(conn: &mut Conn, most: Duration) {
    let _ = tokio::time::timeout(most, async {
        let mut buf = [0u8; 512];
        while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn serve(stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    while let Some(head) = read_head(&mut conn).await? {
        let body = read_body(&mut conn, &head).await?;
        let out = conn.get_mut();
        match head.path.as_str() {
            "/echo" => out.write_all(&response("200 OK", "text/plain", &body, false)).await?,
            "/close" => {
                out.write_all(&response("200 OK", "text/plain", b"bye\n", true)).await?;
                return Ok(());
            }
            "/sleep" => {
                let ms = head
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(150);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                out.write_all(&response("200 OK", "text/plain", b"slept\n", false)).await?;
            }
            "/slow-body" => {
                out.write_all(CHUNKED_HEAD).await?;
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    out.write_all(&chunk(format!("part {i}\n").as_bytes())).await?;
                }
                out.write_all(b"0\r\n\r\n").await?;
            }
            "/app-503" => {
                let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                            Retry-After: 30\r\nContent-Length: 15\r\n\r\nthe app is out\n";
                out.write_all(head.as_bytes()).await?;
            }
            "/ws" if head.header("upgrade").is_some() => {
                let pending = conn.buffer().to_vec();
                let mut stream = conn.into_inner();
                stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                          Upgrade: websocket\r\n\r\n",
                    )
                    .await?;
                stream.write_all(&pending).await?;
                let (mut from, mut to) = stream.split();
                tokio::io::copy(&mut from, &mut to).await?;
                return Ok(());
            }
            "/garbage" => {
                out.write_all(b"HTTP/1.1 2OO SORT OF OK\r\n\r\n").await?;
                return Ok(());
            }
            "/reset" => {
                out.set_zero_linger()?;
                return Ok(());
            }
            "/hangup" => return Ok(()),
            "/report" => {
                let page = b"<h1>Login page</h1>\n";
                out.write_all(&response("200 OK", "text/html", page, false)).await?;
            }
            "/bighead" => {
                let big = "a".repeat(80_000);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 3\r\n\
                     Connection: close\r\n\r\nok\n"
                );
                out.write_all(head.as_bytes()).await?;
                return Ok(());
            }
            "/stall" | "/deadline" => {
                until_closed(&mut conn, Duration::from_secs(5)).await;
                return Ok(());
            }
            "/deadline/body" => {
                out.write_all(CHUNKED_HEAD).await?;
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    out.write_all(&chunk(b"tick\n")).await?;
                }
                out.write_all(b"0\r\n\r\n").await?;
            }
            "/stall-body" => {
                out.write_all(CHUNKED_HEAD).await?;
                out.write_all(&chunk(b"the first and last chunk\n")).await?;
                until_closed(&mut conn, Duration::from_secs(5)).await;
                return Ok(());
            }
            path if path == "/ok" || path.starts_with("/ok/") => {
                out.write_all(&response("200 OK", "text/plain", b"ok\n", false)).await?;
            }
            _ => {
                out.write_all(&response("404 Not Found", "text/plain", b"no such path\n", false))
                    .await?
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The app's stand-in that never accepts.

async fn blackhole(addr: &str) -> io::Result<()> {
    let at = addr.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ADDR"))?;
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    let listener = socket.listen(0)?;
    // Fill the accept queue until a connect no longer completes: from then on the kernel
    // drops every SYN, and connecting hangs.
    let mut held = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(at)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    let _kept = (listener, held);
    std::future::pending::<()>().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The traffic.

#[derive(Default)]
struct Stats {
    s1xx: AtomicU64,
    s2xx: AtomicU64,
    s3xx: AtomicU64,
    s4xx: AtomicU64,
    s502: AtomicU64,
    s503: AtomicU64,
    s504: AtomicU64,
    s5xx: AtomicU64,
    err: AtomicU64,
    cut: AtomicU64,
    aborted: AtomicU64,
    hung: AtomicU64,
    skipped: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    fn status(&self, status: u16) {
        bump(match status {
            100..=199 => &self.s1xx,
            200..=299 => &self.s2xx,
            300..=399 => &self.s3xx,
            400..=499 => &self.s4xx,
            502 => &self.s502,
            503 => &self.s503,
            504 => &self.s504,
            _ => &self.s5xx,
        });
    }

    fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let answered = [
            &self.s1xx, &self.s2xx, &self.s3xx, &self.s4xx, &self.s502, &self.s503, &self.s504,
            &self.s5xx,
        ]
        .iter()
        .map(|c| get(c))
        .sum::<u64>();
        format!(
            "total={} 1xx={} 2xx={} 3xx={} 4xx={} 502={} 503={} 504={} 5xx={} err={} cut={} \
             aborted={} hung={} skipped={}",
            answered + get(&self.err),
            get(&self.s1xx),
            get(&self.s2xx),
            get(&self.s3xx),
            get(&self.s4xx),
            get(&self.s502),
            get(&self.s503),
            get(&self.s504),
            get(&self.s5xx),
            get(&self.err),
            get(&self.cut),
            get(&self.aborted),
            get(&self.hung),
            get(&self.skipped),
        )
    }
}

type H2 = http2::SendRequest<Full<Bytes>>;

struct Load {
    addr: String,
    /// HTTP/1.1 with keep-alive: a pool of connections, reused.
    client: Client<HttpConnector, Full<Bytes>>,
    /// One long-lived HTTP/2 connection, reopened when it closes.
    h2: Mutex<Option<H2>>,
    stats: Stats,
}

async fn load(addr: String, rate: f64, stats_file: String) {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(8)
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http::<Full<Bytes>>();
    let load = Arc::new(Load { addr, client, h2: Mutex::new(None), stats: Stats::default() });

    let writer = load.clone();
    tokio::spawn(async move {
        let tmp = format!("{stats_file}.tmp");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if std::fs::write(&tmp, writer.stats.line() + "\n").is_ok() {
                let _ = std::fs::rename(&tmp, &stats_file);
            }
        }
    });

    let running = Arc::new(Semaphore::new(MOST_RUNNING));
    let bursts = load.clone();
    let burst_running = running.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        for n in 0u64.. {
            tick.tick().await;
            for _ in 0..20 {
                let Ok(permit) = burst_running.clone().try_acquire_owned() else {
                    bump(&bursts.stats.skipped);
                    continue;
                };
                let load = bursts.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let run = async {
                        if n % 2 == 0 {
                            load.h1(Method::GET, "/sleep?ms=150", Bytes::new()).await;
                        } else {
                            load.h2_shared("/sleep?ms=150").await;
                        }
                    };
                    if tokio::time::timeout(SCENARIO_TIMEOUT, run).await.is_err() {
                        bump(&load.stats.hung);
                    }
                });
            }
        }
    });

    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Ok(permit) = running.clone().try_acquire_owned() else {
            bump(&load.stats.skipped);
            continue;
        };
        let load = load.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if tokio::time::timeout(SCENARIO_TIMEOUT, load.scenario(fastrand::u32(0..1000)))
                .await
                .is_err()
            {
                bump(&load.stats.hung);
            }
        });
    }
}

fn fault() -> &'static str {
    FAULTS[fastrand::usize(0..FAULTS.len())]
}

impl Load {
    /// One scenario, picked by `pick` in 0..1000 (the weights, in thousandths).
    async fn scenario(&self, pick: u32) {
        match pick {
            0..310 => self.h1(Method::GET, "/ok", Bytes::new()).await,
            310..370 => {
                let body = Bytes::from(vec![b'x'; fastrand::usize(1..4096)]);
                self.h1(Method::POST, "/echo", body).await
            }
            370..400 => self.h1(Method::GET, "/slow-body", Bytes::new()).await,
            400..430 => self.h1(Method::GET, "/close", Bytes::new()).await,
            430..530 => self.h1_fresh("/ok").await,
            530..650 => self.h2_shared("/ok").await,
            650..690 => self.h2_shared(fault()).await,
            690..700 => self.h2_fresh().await,
            700..730 => self.upgrade().await,
            730..940 => self.h1(Method::GET, fault(), Bytes::new()).await,
            940..950 => self.h1_fresh(fault()).await,
            950..970 => self.give_up().await,
            970..980 => {
                // Both Content-Length and Transfer-Encoding: a 400, and the connection closed.
                self.raw(
                    b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\n\
                      Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                )
                .await
            }
            980..990 => self.raw(b"NOT HTTP AT ALL\r\n\r\n").await,
            _ => {
                // A head that never ends: the client goes away half-way.
                if let Ok(mut stream) = TcpStream::connect(&self.addr).await {
                    let _ = stream.write_all(b"GET /ok HTTP/1.1\r\nHost: soak\r\n").await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                bump(&self.stats.aborted);
            }
        }
    }

    /// The status counted, and the body read to its end.
    async fn finish(&self, response: Result<Response<Incoming>, impl Sized>) {
        match response {
            Ok(response) => {
                self.stats.status(response.status().as_u16());
                if response.into_body().collect().await.is_err() {
                    bump(&self.stats.cut);
                }
            }
            Err(_) => bump(&self.stats.err),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// HTTP/1.1 on a keep-alive connection from the pool.
    async fn h1(&self, method: Method, path: &str, body: Bytes) {
        let request =
            Request::builder().method(method).uri(self.url(path)).body(Full::new(body)).unwrap();
        self.finish(self.client.request(request).await).await;
    }

    /// HTTP/1.1 on a connection of its own, closed after the one request.
    async fn h1_fresh(&self, path: &str) {
        let Ok(stream) = TcpStream::connect(&self.addr).await else {
            return bump(&self.stats.err);
        };
        let Ok((mut send, conn)) = http1::handshake(TokioIo::new(stream)).await else {
            return bump(&self.stats.err);
        };
        tokio::spawn(conn);
        let request = Request::get(path)
            .header(header::HOST, &self.addr)
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.finish(send.send_request(request).await).await;
    }

    async fn h2_open(&self) -> Option<H2> {
        let stream = TcpStream::connect(&self.addr).await.ok()?;
        let (send, conn) =
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        Some(send)
    }

    async fn h2_request(&self, send: &mut H2, path: &str) {
        if send.ready().await.is_err() {
            return bump(&self.stats.err);
        }
        let request = Request::get(self.url(path)).body(Full::new(Bytes::new())).unwrap();
        self.finish(send.send_request(request).await).await;
    }

    /// HTTP/2 on the long-lived connection.
    async fn h2_shared(&self, path: &str) {
        let sender = {
            let mut shared = self.h2.lock().await;
            match shared.as_ref().filter(|s| !s.is_closed()) {
                Some(sender) => Some(sender.clone()),
                None => {
                    *shared = self.h2_open().await;
                    shared.clone()
                }
            }
        };
        match sender {
            Some(mut sender) => self.h2_request(&mut sender, path).await,
            None => bump(&self.stats.err),
        }
    }

    /// A fresh HTTP/2 connection with eight streams at once, two of them faults, then
    /// closed.
    async fn h2_fresh(&self) {
        let Some(sender) = self.h2_open().await else {
            return bump(&self.stats.err);
        };
        let paths = ["/ok", "/ok", "/slow-body", "/ok/h2", "/echo", "/app-503", fault(), fault()];
        futures::future::join_all(paths.iter().map(|path| {
            let mut sender = sender.clone();
            async move { self.h2_request(&mut sender, path).await }
        }))
        .await;
    }

    /// An Upgrade: on 101, three messages echoed through the tunnel, which the client then
    /// closes, politely or not.
    async fn upgrade(&self) {
        let Ok(mut stream) = TcpStream::connect(&self.addr).await else {
            return bump(&self.stats.err);
        };
        let request = b"GET /ws HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\n\
                        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        if stream.write_all(request).await.is_err() {
            return bump(&self.stats.err);
        }
        let Some(status) = read_status(&mut stream).await else {
            return bump(&self.stats.err);
        };
        self.stats.status(status);
        if status != 101 {
            return;
        }
        for i in 0..3 {
            let message = format!("ping {i}\n");
            let mut echo = vec![0u8; message.len()];
            let ok = stream.write_all(message.as_bytes()).await.is_ok()
                && stream.read_exact(&mut echo).await.is_ok()
                && echo == message.as_bytes();
            if !ok {
                return bump(&self.stats.cut);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if fastrand::bool() {
            let _ = stream.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut [0u8; 64])).await;
        }
    }

    /// Clients that give up: before the answer (HTTP/1.1 and HTTP/2), and half-way through
    /// a body.
    async fn give_up(&self) {
        let early = Duration::from_millis(100);
        match fastrand::u8(0..3) {
            0 => {
                let request = Request::get(self.url("/stall")).body(Full::default()).unwrap();
                let _ = tokio::time::timeout(early, self.client.request(request)).await;
            }
            1 => {
                let _ = tokio::time::timeout(early, self.h2_shared("/stall")).await;
            }
            _ => {
                let request = Request::get(self.url("/slow-body")).body(Full::default()).unwrap();
                if let Ok(response) = self.client.request(request).await {
                    let mut body = response.into_body();
                    let _ = body.frame().await;
                }
            }
        }
        bump(&self.stats.aborted);
    }

    /// Raw bytes on a fresh connection; the status of whatever comes back.
    async fn raw(&self, bytes: &[u8]) {
        let Ok(mut stream) = TcpStream::connect(&self.addr).await else {
            return bump(&self.stats.err);
        };
        if stream.write_all(bytes).await.is_err() {
            return bump(&self.stats.err);
        }
        match read_status(&mut stream).await {
            Some(status) => self.stats.status(status),
            None => bump(&self.stats.err),
        }
    }
}

/// Reads a response head and returns its status code.
async fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the head is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    std::str::from_utf8(&head).ok()?.split_whitespace().nth(1)?.parse().ok()
}
