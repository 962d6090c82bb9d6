//! Connections to the app.
//!
//! HTTP/1.1: a pool of idle `app_h1` connections, each closed before the app would close it
//! (`timeouts.upstreamIdle`), so that the keep-alive race is rare; hyper's HTTP/1.1
//! connections carry only protocol switches, and are never pooled. HTTP/2: one shared,
//! multiplexed connection, replaced when it closes; it carries every request to an HTTP/2
//! app, and gRPC requests to any app (gRPC exists only over HTTP/2). Each of hyper's connections counts the
//! bytes it has read, so that a failed request can tell whether the app answered anything
//! at all (only then is a retry unsafe).

mod idle;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use self::idle::IdleSet;
use super::app_h1::H1Conn;
use super::body::RequestBody;
use super::deadline::with_deadline;
use super::error::ProxyError;
use super::tap::{ReadTap, Tap};

/// How often idle connections are looked over and the stale ones closed.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// New connections to the app that may be opening at once. A burst of clients would
/// otherwise open one each at the same instant, past the app's accept backlog (511 for
/// nginx and Node.js, 50 for Java's default): the kernel drops the SYNs past it, and their
/// retry comes a second later, when the connect timeout ends. A request past this many
/// waits in line for a slot, and takes any connection put back meanwhile (`IdleSet`).
const MAX_CONNECTING: usize = 32;

/// The protocol spoken to the app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AppProtocol {
    /// HTTP/1.1 with a pool of keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), for apps that speak it. gRPC requests go over
    /// HTTP/2 whatever the app's protocol.
    Http2,
}

/// What a new connection needs from the policy in force.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    pub connect_timeout: Option<Duration>,
    pub max_header_bytes: u32,
    pub max_idle: Option<Duration>,
}

enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// A connection ready to carry one request.
pub struct Conn {
    tx: Sender,
    read: Arc<AtomicU64>,
    pub reused: bool,
}

impl Conn {
    /// Bytes read from the app on this connection so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub fn is_http2(&self) -> bool {
        matches!(self.tx, Sender::H2(_))
    }

    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.tx {
            Sender::H1(tx) => tx.send_request(req).await,
            Sender::H2(tx) => tx.send_request(req).await,
        }
    }
}

/// Maps an error from sending a request to the app over one of hyper's connections and
/// awaiting its response headers. `limit` is the route's header section limit: hyper
/// bounds the head by the connection's `max_header_size`, which is the largest limit of
/// any route.
pub fn exchange_error(err: &hyper::Error, limit: u32) -> ProxyError {
    if err.is_parse_too_large() {
        ProxyError::ResponseHeadersTooLarge { limit }
    } else if err.is_parse() || err.is_parse_status() {
        ProxyError::MalformedResponse
    } else {
        ProxyError::ConnectionTerminated
    }
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: String,
    /// Whether the app has ever sent a response head since the sidecar started.
    answered: std::sync::atomic::AtomicBool,
    protocol: AppProtocol,
    idle_h1: Mutex<IdleSet>,
    /// Slots for HTTP/1.1 connections being opened (`MAX_CONNECTING`).
    connecting: Arc<Semaphore>,
    shared_h2: Mutex<Option<(http2::SendRequest<RequestBody>, Arc<AtomicU64>)>>,
}

impl Pool {
    /// A pool for `upstream` (HOST:PORT). Must be called within a tokio runtime.
    pub fn new(upstream: String, protocol: AppProtocol) -> Self {
        let inner = Arc::new(Inner {
            upstream,
            answered: Default::default(),
            protocol,
            idle_h1: Mutex::new(IdleSet::default()),
            connecting: Arc::new(Semaphore::new(MAX_CONNECTING)),
            shared_h2: Mutex::new(None),
        });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Pool { inner }
    }

    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// Whether requests other than protocol switches go over [`H1Conn`]s: HTTP/1.1 to the app.
    pub fn speaks_h1(&self) -> bool {
        self.inner.protocol == AppProtocol::Http1
    }

    pub fn has_answered(&self) -> bool {
        self.inner.answered.load(Ordering::Relaxed)
    }

    pub fn mark_answered(&self) {
        if !self.has_answered() {
            self.inner.answered.store(true, Ordering::Relaxed);
        }
    }

    /// The shared HTTP/2 connection for one request, made when there is none.
    pub async fn checkout_h2(&self, opts: &ConnectOptions) -> Result<Conn, ProxyError> {
        if let Some(conn) = self.take_idle() {
            return Ok(conn);
        }
        // Boxed: connecting is the uncommon path, and its future is large; inline, it
        // would be moved around with every request.
        Box::pin(self.connect(opts, false)).await
    }

    /// A connection for one request, and whether it is a reused one.
    pub async fn checkout_h1(
        &self,
        opts: &ConnectOptions,
    ) -> Result<(Box<H1Conn>, bool), ProxyError> {
        if let Some(conn) = self.take_idle_h1() {
            return Ok((conn, true));
        }
        // Boxed, as connecting is: a rare path with a large future.
        Box::pin(self.wait_or_connect(opts)).await
    }

    /// A connection put back by another request, or a new one, whichever comes first: a
    /// request waits in line for a slot to open one, and takes a connection put back meanwhile,
    /// while it waits for the slot or the app's handshake alike (a SYN the app's full backlog
    /// dropped is tried again only a second later). All within the connect timeout.
    async fn wait_or_connect(
        &self,
        opts: &ConnectOptions,
    ) -> Result<(Box<H1Conn>, bool), ProxyError> {
        // The wait for a slot and the connect share one connect timeout.
        let by = opts.connect_timeout.map(|limit| (Instant::now() + limit, limit));
        let mut handed = {
            let mut idle = self.idle_h1();
            if let Some(conn) = idle.take(Instant::now()) {
                return Ok((conn, true));
            }
            idle.wait()
        };
        let first = async {
            let slot = tokio::select! {
                Ok(conn) = &mut handed => return Ok((conn, true)),
                // The semaphore is never closed.
                Ok(slot) = self.inner.connecting.clone().acquire_owned() => slot,
                else => return Err(ProxyError::ConnectionTerminated),
            };
            let mut fresh = self.connect_in_background(*opts, by, slot);
            tokio::select! {
                Ok(conn) = &mut handed => Ok((conn, true)),
                fresh = &mut fresh => match fresh {
                    Ok(opened) => Ok((opened?, false)),
                    Err(_) => Err(ProxyError::ConnectionTerminated),
                },
            }
        };
        let first = within_connect_timeout(by, first).await;
        // A connection handed over as the wait ended is not lost with it.
        handed.close();
        let Ok(conn) = handed.try_recv() else { return first };
        if let Ok((opened, false)) = first {
            self.put_h1(opened, opts.max_idle);
        }
        Ok((conn, true))
    }

    /// Opens a connection on a task of its own, which holds `slot` until it is done, and
    /// sends it back; one whose request has taken another meanwhile goes to the pool, so that
    /// the pool grows to what the load needs rather than opening and dropping connections.
    /// The connect ends when its request's connect timeout does (`by`, and that timeout),
    /// whether or not the request still waits for it.
    fn connect_in_background(
        &self,
        opts: ConnectOptions,
        by: Option<(Instant, Duration)>,
        slot: OwnedSemaphorePermit,
    ) -> oneshot::Receiver<Result<Box<H1Conn>, ProxyError>> {
        let (tx, rx) = oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let untimed = ConnectOptions { connect_timeout: None, ..opts };
            let opened = within_connect_timeout(by, pool.connect_h1(&untimed)).await;
            drop(slot);
            if let Err(Ok(conn)) = tx.send(opened) {
                pool.put_h1(conn, opts.max_idle);
            }
        });
        rx
    }

    /// A new `app_h1` connection, never one from the pool.
    pub async fn connect_h1(&self, opts: &ConnectOptions) -> Result<Box<H1Conn>, ProxyError> {
        Ok(H1Conn::new(self.connect_tcp(opts).await?))
    }

    fn idle_h1(&self) -> std::sync::MutexGuard<'_, IdleSet> {
        self.inner.idle_h1.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_idle_h1(&self) -> Option<Box<H1Conn>> {
        self.idle_h1().take(Instant::now())
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put_h1(&self, conn: Box<H1Conn>, max_idle: Option<Duration>) {
        self.idle_h1().put(conn, max_idle);
    }

    fn take_idle(&self) -> Option<Conn> {
        let shared = self.inner.shared_h2.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, read) = shared.as_ref().filter(|(tx, _)| tx.is_ready())?;
        Some(Conn { tx: Sender::H2(tx.clone()), read: read.clone(), reused: true })
    }

    /// A new connection, never one from the pool: HTTP/2, which becomes the shared one, or
    /// with `upgrade` an HTTP/1.1 connection that a 101 response hands over to the protocol
    /// it switches to.
    pub async fn connect(&self, opts: &ConnectOptions, upgrade: bool) -> Result<Conn, ProxyError> {
        let stream = self.connect_tcp(opts).await?;
        let read = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(ReadTap::new(stream, ByteCount(read.clone())));
        let log =
            |e: hyper::Error| tracing::debug!(error = %e, "app connection ended with an error");
        if !upgrade {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(opts.max_header_bytes)
                .handshake(io)
                .await
                .map_err(|_| ProxyError::ConnectionTerminated)?;
            tokio::spawn(async move { conn.await.map_err(log) });
            *self.inner.shared_h2.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((tx.clone(), read.clone()));
            return Ok(Conn { tx: Sender::H2(tx), read, reused: false });
        }
        let (tx, conn) = http1::Builder::new()
            .max_header_size(opts.max_header_bytes as usize)
            .handshake(io)
            .await
            .map_err(|_| ProxyError::ConnectionTerminated)?;
        if upgrade {
            tokio::spawn(async move { conn.with_upgrades().await.map_err(log) });
        } else {
            tokio::spawn(async move { conn.await.map_err(log) });
        }
        Ok(Conn { tx: Sender::H1(tx), read, reused: false })
    }

    /// A new TCP connection to the app, with the connect timeout applied.
    pub async fn connect_tcp(&self, opts: &ConnectOptions) -> Result<TcpStream, ProxyError> {
        let connect = TcpStream::connect(self.inner.upstream.as_str());
        let stream = match opts.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connect)
                .await
                .map_err(|_| ProxyError::ConnectTimeout(limit))?,
            None => connect.await,
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ProxyError::ConnectRefused,
            _ => ProxyError::ConnectFailed(e),
        })?;
        // Small writes (headers, chunks) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// `fut`, ended at `by` (a deadline and the connect timeout it came from) with that
/// timeout's error.
async fn within_connect_timeout<T>(
    by: Option<(Instant, Duration)>,
    fut: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    let limit = by.map_or(Duration::ZERO, |(_, limit)| limit);
    with_deadline(fut, by.map(|(at, _)| at)).await.unwrap_or(Err(ProxyError::ConnectTimeout(limit)))
}

/// Closes idle connections as they go stale, so that the app never sees one of ours
/// linger past `upstreamIdle`, and cold ones past the warmest few (`IdleSet::reap`).
async fn reap(pool: Weak<Inner>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let now = Instant::now();
        inner.idle_h1.lock().unwrap_or_else(|e| e.into_inner()).reap(now);
        let mut shared = inner.shared_h2.lock().unwrap_or_else(|e| e.into_inner());
        if shared.as_ref().is_some_and(|(tx, _)| tx.is_closed()) {
            *shared = None;
        }
    }
}

/// Counts the bytes read from the app on one connection.
struct ByteCount(Arc<AtomicU64>);

impl Tap for ByteCount {
    fn on_read(&mut self, bytes: &[u8]) {
        self.0.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::idle::{COLD_AFTER, KEEP_WARM};
    use super::*;

    /// One GET over `conn`, answered by `app` with a small 200; the connection comes back.
    async fn exchange(conn: Box<H1Conn>, app: &mut TcpStream) -> Box<H1Conn> {
        let (parts, ()) = Request::get("/").header("host", "x").body(()).unwrap().into_parts();
        let sent = tokio::spawn(async move { conn.send(&parts, RequestBody::empty(), 8192).await });
        let mut head = [0; 1024];
        let n = app.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        app.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        let mut body = sent.await.unwrap().unwrap().into_body();
        while let Some(frame) = body.frame().await {
            let _: Bytes = frame.unwrap().into_data().unwrap_or_default();
        }
        body.take_reusable().expect("reusable")
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_idle_past_a_burst_lets_go_of_its_buffers_and_still_serves() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(listener.local_addr().unwrap().to_string(), AppProtocol::Http1);
        let opts = ConnectOptions { connect_timeout: None, max_header_bytes: 8192, max_idle: None };
        let conn = pool.connect_h1(&opts).await.unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let conn = exchange(conn, &mut app).await;
        let held = conn.buffer_bytes();
        assert!(held >= 8 * 1024, "a read buffer at least: {held}");
        pool.put_h1(conn, None);

        // Taken again within the burst: its buffers are kept.
        tokio::time::sleep(COLD_AFTER / 2).await;
        let (conn, reused) = pool.checkout_h1(&opts).await.unwrap();
        assert!(reused);
        assert_eq!(conn.buffer_bytes(), held);
        pool.put_h1(conn, None);

        // Idle past it: let go by the next look over the pool, and still usable.
        tokio::time::sleep(COLD_AFTER + REAP_EVERY).await;
        let (conn, reused) = pool.checkout_h1(&opts).await.unwrap();
        assert!(reused, "kept in the pool");
        assert_eq!(conn.buffer_bytes(), 0);
        let conn = exchange(conn, &mut app).await;
        assert!(conn.buffer_bytes() >= 8 * 1024);
    }

    const ONE_SECOND: ConnectOptions = ConnectOptions {
        connect_timeout: Some(Duration::from_secs(1)),
        max_header_bytes: 8192,
        max_idle: None,
    };

    /// A pool whose every slot to open a connection is taken, as by connects under way.
    async fn pool_with_slots_taken(listener: &TcpListener) -> Pool {
        let pool = Pool::new(listener.local_addr().unwrap().to_string(), AppProtocol::Http1);
        pool.inner.connecting.acquire_many(MAX_CONNECTING as u32).await.unwrap().forget();
        pool
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_slot_taken_a_request_waits_for_a_connection_put_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = pool_with_slots_taken(&listener).await;
        let spare = pool.connect_h1(&ONE_SECOND).await.unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout_h1(&ONE_SECOND).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished());
        assert_eq!(pool.idle_h1().waiting(), 1);

        pool.put_h1(spare, None);
        // A request that comes now finds none: the connection is the waiting one's.
        assert!(pool.take_idle_h1().is_none());
        let (conn, reused) = waiting.await.unwrap().unwrap();
        assert!(reused);
        exchange(conn, &mut app).await;
        // Nothing else was opened.
        let more = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(more.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_slot_taken_a_request_ends_at_the_connect_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = pool_with_slots_taken(&listener).await;
        let started = Instant::now();
        let waited = pool.checkout_h1(&ONE_SECOND).await;
        assert!(
            matches!(waited, Err(ProxyError::ConnectTimeout(limit)) if limit == Duration::from_secs(1))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        // A connection put back after it is kept, not handed to the request that left.
        let spare = pool.connect_h1(&ONE_SECOND).await.unwrap();
        pool.put_h1(spare, None);
        let idle = pool.idle_h1();
        assert_eq!((idle.len(), idle.waiting()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_freed_lets_a_waiting_request_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = pool_with_slots_taken(&listener).await;
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout_h1(&ONE_SECOND).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished());

        pool.inner.connecting.add_permits(1);
        let (conn, reused) = waiting.await.unwrap().unwrap();
        assert!(!reused);
        let (mut app, _) = listener.accept().await.unwrap();
        exchange(conn, &mut app).await;
    }

    /// An app with a backlog of one, and `fill`: handshakes the app has not accepted, which
    /// fill that backlog, so that the kernel drops the next SYN and tries it again only a
    /// second later (in real time).
    fn app_with_a_backlog_of_one() -> TcpListener {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(1).unwrap()
    }

    fn fill(listener: &TcpListener) -> Vec<std::net::TcpStream> {
        // Long enough for a handshake on a loaded machine; the SYN's retry comes at 1 s.
        const REAL_WAIT: Duration = Duration::from_millis(200);
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        while let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, REAL_WAIT) {
            queued.push(stream);
            assert!(queued.len() < 16, "the backlog never filled");
        }
        queued
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_begun_late_ends_with_its_requests_connect_timeout() {
        let listener = app_with_a_backlog_of_one();
        let pool = pool_with_slots_taken(&listener).await;
        let _queued = fill(&listener);
        let started = Instant::now();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout_h1(&ONE_SECOND).await }
        });
        // A slot frees up late: the connect it begins hangs on the full backlog.
        tokio::time::sleep(Duration::from_millis(600)).await;
        pool.inner.connecting.add_permits(MAX_CONNECTING);
        let waited = waiting.await.unwrap();
        assert!(
            matches!(waited, Err(ProxyError::ConnectTimeout(limit)) if limit == Duration::from_secs(1))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        // Its connect ended with it, not a whole timeout after the slot was taken.
        assert_eq!(pool.inner.connecting.available_permits(), MAX_CONNECTING);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_connect_hangs_takes_a_connection_put_back() {
        let listener = app_with_a_backlog_of_one();
        let pool = Pool::new(listener.local_addr().unwrap().to_string(), AppProtocol::Http1);
        let spare = pool.connect_h1(&ONE_SECOND).await.unwrap();
        let (mut app, _) = listener.accept().await.unwrap();
        let queued = fill(&listener);
        // No connect timeout: the paused clock would end the connect at once.
        let untimed = ConnectOptions { connect_timeout: None, ..ONE_SECOND };
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.checkout_h1(&untimed).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "its connect is under way");

        pool.put_h1(spare, None);
        let (conn, reused) = waiting.await.unwrap().unwrap();
        assert!(reused);
        exchange(conn, &mut app).await;

        // The connect it began is not wasted: once the app has room, its SYN's retry goes
        // through (about a second later, in real time) and the connection joins the pool.
        for _ in 0..queued.len() {
            listener.accept().await.unwrap();
        }
        for _ in 0..200 {
            if pool.idle_h1().len() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle_h1().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn past_a_burst_only_the_most_recently_used_connections_stay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(listener.local_addr().unwrap().to_string(), AppProtocol::Http1);
        let opts = ConnectOptions { connect_timeout: None, max_header_bytes: 8192, max_idle: None };
        let burst = KEEP_WARM + 4;
        let mut apps = Vec::new();
        for _ in 0..burst {
            let conn = pool.connect_h1(&opts).await.unwrap();
            let (app, _) = listener.accept().await.unwrap();
            apps.push(app);
            pool.put_h1(conn, None);
        }

        // Within the burst every one is kept.
        tokio::time::sleep(COLD_AFTER / 2).await;
        assert_eq!(pool.idle_h1().len(), burst);

        tokio::time::sleep(COLD_AFTER + REAP_EVERY).await;
        assert_eq!(pool.idle_h1().len(), KEEP_WARM);
        // The app sees the four put back first closed, and the rest still open.
        for (i, app) in apps.iter_mut().enumerate() {
            let mut byte = [0; 1];
            let read = tokio::time::timeout(Duration::from_millis(10), app.read(&mut byte)).await;
            match read {
                Ok(n) => assert!(i < 4 && n.unwrap() == 0, "connection {i} closed"),
                Err(_) => assert!(i >= 4, "connection {i} still open"),
            }
        }
        // What is left is still taken newest first.
        let (conn, reused) = pool.checkout_h1(&opts).await.unwrap();
        assert!(reused);
        let newest = apps.last_mut().unwrap();
        let served = tokio::time::timeout(Duration::from_secs(5), exchange(conn, newest)).await;
        assert!(served.is_ok(), "the newest connection was taken");
    }
}
