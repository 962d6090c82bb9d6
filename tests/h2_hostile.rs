//! Hostile HTTP/2 clients against `portcullis proxy` as a process, with default flags:
//! rapid reset, CONTINUATION flood, SETTINGS and PING floods, more streams than allowed,
//! and attempts to switch protocols (extended CONNECT, Upgrade fields, CONNECT).
//! Frames are built by hand on raw sockets; each test asserts what comes back, what reached
//! the app, the sidecar's memory, and that a well-behaved client is still served.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use support::{apps, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

// ===== The sidecar and its app =====

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// `portcullis proxy` with default flags in front of `upstream`.
    async fn start(upstream: SocketAddr) -> Proc {
        let (addr, admin) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["proxy", "--listen", &addr.to_string(), "--upstream", &upstream.to_string()])
            .args(["--admin", &admin.to_string()])
            .stderr(if std::env::var_os("H2_HOSTILE_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let proc = Proc { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while client_get_status(admin, "/readyz").await != Some(200) {
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proc
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

async fn client_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    TcpStream::connect(addr).await.ok()?;
    Some(client::get(addr, path, &[]).await.status.as_u16())
}

/// An app that counts requests; `/slow` answers after `SLOW`.
async fn counting_app() -> (SocketAddr, apps::Counter) {
    let counter = apps::Counter::default();
    let c = counter.clone();
    let addr = apps::app(move |req| {
        c.hit();
        async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(SLOW).await;
            }
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    (addr, counter)
}

const SLOW: Duration = Duration::from_secs(3);

/// A well-behaved client, over HTTP/1.1 and over HTTP/2, is answered 200 within 10 s.
async fn assert_served(addr: SocketAddr) {
    let started = Instant::now();
    let h1 = tokio::time::timeout(Duration::from_secs(10), client::get(addr, "/", &[]))
        .await
        .expect("an HTTP/1.1 client waited over 10 s");
    assert_eq!((h1.status.as_u16(), h1.body.as_str()), (200, "ok"));
    let h2 = tokio::time::timeout(Duration::from_secs(10), async {
        let mut conn = client::Http2::connect(addr).await;
        conn.send(Request::get(format!("http://{addr}/")).body(Full::default()).unwrap()).await
    })
    .await
    .expect("an HTTP/2 client waited over 10 s");
    assert_eq!((h2.status.as_u16(), h2.body.as_str()), (200, "ok"));
    eprintln!("served in {:?}", started.elapsed());
}

// ===== HTTP/2 frames by hand =====

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix after `first`'s high bits (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

fn get_block(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in
        [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)]
    {
        hpack_literal(&mut block, name, value.as_bytes());
    }
    block
}

/// HEADERS with END_HEADERS and END_STREAM: a complete GET.
fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block(path))
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    fn goaway_last_stream(&self) -> u32 {
        u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff
    }

    fn goaway_debug(&self) -> String {
        String::from_utf8_lossy(&self.payload[8..]).into_owned()
    }

    fn settings(&self) -> HashMap<u16, u32> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes(c[2..].try_into().unwrap()))
            })
            .collect()
    }
}

/// The one GOAWAY among `frames`.
fn goaway(frames: &[Frame]) -> &Frame {
    let all: Vec<_> = frames.iter().filter(|f| f.kind == GOAWAY).collect();
    assert_eq!(all.len(), 1, "one GOAWAY: {}", summary(frames));
    all[0]
}

/// Memory a flood may add to the sidecar, at most.
const RSS_GROWTH_KIB: u64 = 16 * 1024;

#[derive(Debug, PartialEq)]
enum End {
    Closed,
    Quiet,
}

/// Reads one frame, or how the reading ended: closed (EOF or reset) or nothing for `wait`.
async fn read_frame(rd: &mut OwnedReadHalf, wait: Duration) -> Result<Frame, End> {
    let mut head = [0u8; 9];
    match tokio::time::timeout(wait, rd.read_exact(&mut head)).await {
        Err(_) => return Err(End::Quiet),
        Ok(Err(_)) => return Err(End::Closed),
        Ok(Ok(_)) => {}
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    match tokio::time::timeout(wait, rd.read_exact(&mut payload)).await {
        Err(_) => return Err(End::Quiet),
        Ok(Err(_)) => return Err(End::Closed),
        Ok(Ok(_)) => {}
    }
    Ok(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
        payload,
    })
}

/// Reads frames until the connection closes or is quiet for `wait`.
async fn read_all(rd: &mut OwnedReadHalf, wait: Duration) -> (Vec<Frame>, End) {
    let mut frames = Vec::new();
    loop {
        match read_frame(rd, wait).await {
            Ok(f) => frames.push(f),
            Err(end) => return (frames, end),
        }
    }
}

/// Connects, sends the preface and an empty SETTINGS, and reads the server's SETTINGS.
/// With `ack`, acknowledges them, as a compliant client does.
async fn handshake(addr: SocketAddr, ack: bool) -> (OwnedReadHalf, OwnedWriteHalf, Frame) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    wr.write_all(&hello).await.unwrap();
    let settings = read_frame(&mut rd, Duration::from_secs(10)).await.unwrap();
    assert_eq!((settings.kind, settings.flags), (SETTINGS, 0), "{settings:?}");
    if ack {
        wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    }
    (rd, wr, settings)
}

/// Writes `chunk` until `total` bytes are written, the peer closes, or a write stalls for
/// `stall`. Returns the bytes written.
async fn flood(wr: &mut OwnedWriteHalf, chunk: &[u8], total: usize, stall: Duration) -> usize {
    let mut written = 0;
    while written < total {
        match tokio::time::timeout(stall, wr.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    written
}

fn summary(frames: &[Frame]) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for f in frames {
        let key = match f.kind {
            GOAWAY => format!(
                "GOAWAY(last={}, code={:#x}, {:?})",
                f.goaway_last_stream(),
                f.code(),
                f.goaway_debug()
            ),
            RST_STREAM => format!("RST_STREAM({:#x})", f.code()),
            k => format!("type={k:#x} flags={:#x}", f.flags),
        };
        *counts.entry(key).or_default() += 1;
    }
    format!("{counts:?}")
}

// ===== The attacks =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset() {
    let (app, requests) = counting_app().await;
    let proxy = Proc::start(app).await;
    let rss_before = proxy.rss_kib();
    let (mut rd, mut wr, _) = handshake(proxy.addr, true).await;
    let reader = tokio::spawn(async move { read_all(&mut rd, Duration::from_secs(10)).await });
    let mut batch = Vec::new();
    let mut sent = 0;
    let started = Instant::now();
    for i in 0..10_000u32 {
        let id = 2 * i + 1;
        batch.extend(get(id, "/reset"));
        batch.extend(rst(id, CANCEL));
        if batch.len() > 16 * 1024 {
            if wr.write_all(&batch).await.is_err() {
                break;
            }
            sent = i + 1;
            batch.clear();
        }
    }
    let (frames, end) = reader.await.unwrap();
    eprintln!(
        "rapid reset: sent {sent} streams in {:?}; got {} ; end {end:?}; app saw {}; rss {} -> {}",
        started.elapsed(),
        summary(&frames),
        requests.get(),
        rss_before,
        proxy.rss_kib()
    );
    // hyper's h2 counts resets of streams not yet answered: past its budget, GOAWAY
    // ENHANCE_YOUR_CALM and close; only a few streams ever reach the app.
    let away = goaway(&frames);
    assert_eq!((away.code(), away.goaway_debug().as_str()), (ENHANCE_YOUR_CALM, "too_many_resets"));
    assert_eq!(end, End::Closed);
    assert!(away.goaway_last_stream() < 2 * sent, "{}", away.goaway_last_stream());
    assert!(requests.get() < 100, "{} requests reached the app", requests.get());
    assert!(proxy.rss_kib() < rss_before + RSS_GROWTH_KIB);
    assert_served(proxy.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood() {
    for ack in [true, false] {
        let (app, requests) = counting_app().await;
        let proxy = Proc::start(app).await;
        let rss_before = proxy.rss_kib();
        let (mut rd, mut wr, _) = handshake(proxy.addr, ack).await;
        let reader = tokio::spawn(async move { read_all(&mut rd, Duration::from_secs(10)).await });
        wr.write_all(&frame(HEADERS, END_STREAM, 1, &get_block("/flood"))).await.unwrap();
        // Each CONTINUATION carries complete header fields, 16 KiB in all.
        let mut block = Vec::new();
        let mut n = 0;
        while block.len() < 16 * 1024 - 64 {
            hpack_literal(&mut block, &format!("x-flood-{n}"), &[b'a'; 100]);
            n += 1;
        }
        let chunk = frame(CONTINUATION, 0, 1, &block);
        let written = flood(&mut wr, &chunk, 64 << 20, Duration::from_secs(3)).await;
        let rss_after = proxy.rss_kib();
        let (frames, end) = reader.await.unwrap();
        eprintln!(
            "continuation (ack {ack}): wrote {written} bytes; got {}; end {end:?}; app saw {}; rss {} -> {}",
            summary(&frames),
            requests.get(),
            rss_before,
            rss_after
        );
        // The header block is bounded: GOAWAY with an error, close, nothing forwarded, and
        // far less written than the 64 MiB offered.
        assert_ne!(goaway(&frames).code(), 0, "{}", summary(&frames));
        assert_eq!(end, End::Closed);
        assert_eq!(requests.get(), 0);
        assert!(written < 16 << 20, "{written} bytes taken");
        assert!(rss_after < rss_before + RSS_GROWTH_KIB);
        assert_served(proxy.addr).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods() {
    for kind in [SETTINGS, PING] {
        let (app, requests) = counting_app().await;
        let proxy = Proc::start(app).await;
        let rss_before = proxy.rss_kib();
        let (mut rd, mut wr, _) = handshake(proxy.addr, true).await;
        let one = if kind == SETTINGS {
            frame(SETTINGS, 0, 0, &[0, 0x3, 0, 0, 0, 100])
        } else {
            frame(PING, 0, 0, &[7; 8])
        };
        let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let started = Instant::now();
        let written = flood(&mut wr, &chunk, 64 << 20, Duration::from_secs(2)).await;
        let rss_after = proxy.rss_kib();
        eprintln!(
            "flood {kind}: wrote {written} bytes ({} frames) in {:?}; rss {} -> {}",
            written / one.len(),
            started.elapsed(),
            rss_before,
            rss_after
        );
        assert_served(proxy.addr).await;
        let (frames, end) = read_all(&mut rd, Duration::from_secs(3)).await;
        eprintln!(
            "flood {kind}: then read {} ; end {end:?}; app saw {}",
            summary(&frames),
            requests.get()
        );
        // Each frame is acknowledged once, in step with a client that reads, with memory
        // flat; the connection stays usable.
        let acks = frames.iter().filter(|f| f.kind == kind && f.flags & ACK != 0).count();
        assert!(acks >= written / one.len(), "{acks} acks for {} frames", written / one.len());
        // (A write cut short by the stall is not counted in `written`: up to one chunk more.)
        let most = written / one.len() + 1000 + 1;
        assert!(acks <= most, "{acks} acks for {} frames", written / one.len());
        assert!(rss_after < rss_before + RSS_GROWTH_KIB);
        assert_eq!(requests.get(), 2, "only assert_served's two requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_streams_than_allowed() {
    let (app, requests) = counting_app().await;
    let proxy = Proc::start(app).await;
    let (mut rd, mut wr, settings) = handshake(proxy.addr, true).await;
    let max = settings.settings()[&MAX_CONCURRENT_STREAMS];
    eprintln!("server settings {:?}", settings.settings());
    let n = max + 10;
    let mut all = Vec::new();
    for i in 0..n {
        all.extend(get(2 * i + 1, "/slow"));
    }
    let started = Instant::now();
    wr.write_all(&all).await.unwrap();
    let mut frames = Vec::new();
    let mut ended = std::collections::HashSet::new();
    while ended.len() < n as usize {
        let f = read_frame(&mut rd, Duration::from_secs(10)).await.unwrap();
        if f.stream != 0 && (f.kind == RST_STREAM || f.flags & END_STREAM != 0) {
            ended.insert(f.stream);
        }
        if f.kind == RST_STREAM {
            eprintln!("rst {} {:#x} at {:?}", f.stream, f.code(), started.elapsed());
        }
        frames.push(f);
    }
    eprintln!(
        "more streams: {}; app saw {}; took {:?}",
        summary(&frames),
        requests.get(),
        started.elapsed()
    );
    // The streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused, and never reach the
    // app; the others are answered.
    let refused: Vec<_> = frames.iter().filter(|f| f.kind == RST_STREAM).collect();
    assert_eq!(refused.len(), 10, "{}", summary(&frames));
    assert!(refused.iter().all(|f| f.code() == REFUSED_STREAM && f.stream > 2 * max));
    let answered = frames.iter().filter(|f| f.kind == DATA && f.flags & END_STREAM != 0).count();
    assert_eq!(answered as u32, max);
    assert!(requests.get() <= max as usize, "{} reached the app", requests.get());
    let _ = PROTOCOL_ERROR;
    assert_served(proxy.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_protocol_switch_over_http2() {
    let (app, requests) = counting_app().await;
    let proxy = Proc::start(app).await;
    let (mut rd, mut wr, settings) = handshake(proxy.addr, true).await;
    // Extended CONNECT (RFC 8441), a WebSocket over a stream, is not offered...
    assert_eq!(settings.settings().get(&ENABLE_CONNECT_PROTOCOL), None, "{settings:?}");
    let mut extended = Vec::new();
    for (name, value) in [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", "test"),
        (":path", "/chat"),
    ] {
        hpack_literal(&mut extended, name, value.as_bytes());
    }
    // ...so a stream that uses it is reset; left open, as a tunnel would be.
    let mut all = frame(HEADERS, END_HEADERS, 1, &extended);
    // Upgrade and Connection are connection-specific, malformed in HTTP/2 (RFC 9113 §8.2.2).
    let mut h2c = get_block("/h2c");
    hpack_literal(&mut h2c, "upgrade", b"h2c");
    hpack_literal(&mut h2c, "http2-settings", b"AAMAAABkAARAAAAAAAIAAAAA");
    all.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &h2c));
    let mut connection = get_block("/connection");
    hpack_literal(&mut connection, "connection", b"upgrade");
    all.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &connection));
    all.extend(get(7, "/"));
    wr.write_all(&all).await.unwrap();
    let mut frames = Vec::new();
    let mut ended = std::collections::HashSet::new();
    while ended.len() < 4 {
        let f = read_frame(&mut rd, Duration::from_secs(10)).await.unwrap();
        if f.stream != 0 && (f.kind == RST_STREAM || f.flags & END_STREAM != 0) {
            ended.insert(f.stream);
        }
        frames.push(f);
    }
    let resets: Vec<_> =
        frames.iter().filter(|f| f.kind == RST_STREAM).map(|f| (f.stream, f.code())).collect();
    let expected = [(1, PROTOCOL_ERROR), (3, PROTOCOL_ERROR), (5, PROTOCOL_ERROR)];
    assert_eq!(resets, expected, "{}", summary(&frames));
    let answered = frames.iter().filter(|f| f.kind == DATA && f.flags & END_STREAM != 0);
    assert_eq!(answered.map(|f| f.stream).collect::<Vec<_>>(), [7], "{}", summary(&frames));
    assert_eq!(requests.get(), 1, "only the plain GET reached the app");

    // A plain CONNECT is refused by the sidecar itself, and never reaches the app.
    let mut conn = client::Http2::connect(proxy.addr).await;
    let connect = Request::connect("test:80").body(Full::default()).unwrap();
    let reply = conn.send(connect).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("proxy-status"),
        "portcullis; error=http_request_denied; details=\"upgrade_not_allowed\""
    );
    assert_eq!(
        reply.body,
        "403 Forbidden: the request asks to switch to \"CONNECT\", a protocol the sidecar does not tunnel\n"
    );
    assert_eq!(requests.get(), 1);
    assert_served(proxy.addr).await;
}
