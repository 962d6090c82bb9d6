//! One client connection, from its first byte to its close.
//!
//! HTTP/2, told by its connection preface, is served by hyper's HTTP/2 connection.
//! HTTP/1.1 is served by the sidecar's own server (`h1_server`) while its requests have no
//! body, and in bursts by hyper's connection for the rest: hyper's connection, with its
//! read and write buffers, lives while such requests are under way. Once it waits for the
//! next request with nothing in flight and nothing left to write (`activity`), it is asked
//! to close, the close leaves the socket open (`client_io`), and the own server reads on.
//! A connection idle on either is parked (`parking`): its task ends, and the lot holds its
//! socket and counts until the client sends again, as nginx frees its buffers on an idle
//! keep-alive connection. The next bytes start a new task on the same socket, reading on
//! where the last one stopped.
//!
//! A client whose next request came within `PUT_AWAY_AFTER` of the connection being put
//! away is busy: parking it and starting a task for each of its requests would cost more
//! than the requests. Its connection is put away only after that long without a request.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::ReadBuf;
use tokio::time::Instant;

use super::body::BoxError;
use super::client_io::{ClientIo, ParkedIo, Parking};
use super::client_timer::{ClientTimeouts, HeadTimer, PUT_AWAY_AFTER};
use super::forward::{Client, Proxy};
use super::h1_server::{self, Ended, Patience};
use super::latch::Latch;
use super::open::Counted;
use super::parking::{ParkingLot, Resume};
use super::response_body::ProxyBody;
use super::scanner::H2_PREFACE;
use super::upgrade::AllowedUpgrades;

/// How often a connection whose first bytes are part of the preface looks for the rest.
const PREFACE_POLL: Duration = Duration::from_millis(5);
/// Once the sidecar drains, how long a connection waiting for a request is still given to
/// send it. HTTP/1.1 has no way to tell an idle client that its connection is closing: a
/// request already on its way would be met by the close. A request that comes within it is
/// answered, with `Connection: close`.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What every client connection is served with.
pub struct ConnSettings {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    timeouts: ClientTimeouts,
    max_head: usize,
    upgrades: AllowedUpgrades,
    /// Where idle HTTP/1.1 connections wait; without it (no epoll set could be made), each
    /// waits in its own task.
    lot: Option<ParkingLot<ParkedConn>>,
}

impl ConnSettings {
    /// Settings for connections that read heads of up to `max_head` bytes and may switch to
    /// `upgrades`, and whose waits are cut short once `draining` starts. Needs a runtime:
    /// it starts the parking lot's task.
    pub fn new(
        timeouts: ClientTimeouts,
        max_head: usize,
        upgrades: AllowedUpgrades,
        draining: Arc<Latch>,
    ) -> Self {
        let mut h1 = http1::Builder::new();
        h1.header_read_timeout(timeouts.header);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        let lot = ParkingLot::start(draining, DRAIN_GRACE)
            .inspect_err(|e| tracing::warn!(error = %e, "idle connections wait in a task each"))
            .ok();
        ConnSettings { h1, h2, timeouts, max_head, upgrades, lot }
    }

    pub fn upgrades(&self) -> &AllowedUpgrades {
        &self.upgrades
    }

    /// How many idle connections are parked.
    pub fn parked(&self) -> usize {
        self.lot.as_ref().map_or(0, ParkingLot::held)
    }

    /// How many times an idle connection has been parked.
    #[cfg(test)]
    fn parkings(&self) -> usize {
        self.lot.as_ref().map_or(0, ParkingLot::parkings)
    }
}

/// Serves one client connection until it closes, or until the proxy drains and its
/// requests in flight are answered; `held` is dropped then.
pub async fn serve(
    io: Box<ClientIo>,
    proxy: Arc<Proxy>,
    client: Arc<Client>,
    settings: Arc<ConnSettings>,
    held: Counted,
) {
    let shutdown = proxy.lifecycle().draining().clone();
    let service = ClientService { proxy, client };
    let http2 = {
        let by = Instant::now() + settings.timeouts.header;
        let mut first = [0; H2_PREFACE.len()];
        // A client that sends nothing gets the header timeout, with no hyper connection yet.
        let peeked = until(&io, &shutdown, by, |io, cx| peek(io, cx, &mut first)).await;
        let Some(peeked) = peeked else {
            tracing::debug!("client sent nothing within the header timeout");
            return;
        };
        speaks_http2(&io, peeked, &mut first, by).await
    };
    match http2 {
        // Boxed: watching for the pod's stop makes it larger than HTTP/1.1's idle state,
        // which is what the task is sized by.
        Ok(true) => Box::pin(serve_h2(io, service, &settings)).await,
        Ok(false) => serve_h1(io, service, settings, held, false, false).await,
        Err(e) => tracing::debug!(error = %e, "client connection failed before its first request"),
    }
}

fn peek(io: &ClientIo, cx: &mut Context<'_>, first: &mut [u8]) -> Poll<std::io::Result<usize>> {
    io.poll_peek(cx, &mut ReadBuf::new(first))
}

/// Waits for `ready` on the connection until `by` (`None` past it); once the drain has
/// started, for `DRAIN_GRACE` more at most. Written by hand, with no future per wait, as it
/// is what an idle connection holds.
async fn until<T>(
    io: &ClientIo,
    shutdown: &Latch,
    by: Instant,
    mut ready: impl FnMut(&ClientIo, &mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let mut stop = pin!(shutdown.started());
    let mut sleep = pin!(tokio::time::sleep_until(by));
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && stop.as_mut().poll(cx).is_ready() {
            draining = true;
            let grace_ends = Instant::now() + DRAIN_GRACE;
            if grace_ends < sleep.deadline() {
                sleep.as_mut().reset(grace_ends);
            }
        }
        if let Poll::Ready(value) = ready(io, cx) {
            return Poll::Ready(Some(value));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Whether the client's first bytes (`peeked` of them in `first`) are the HTTP/2 preface.
/// They are looked at, not read: hyper's connection reads them.
async fn speaks_http2(
    io: &ClientIo,
    mut peeked: std::io::Result<usize>,
    first: &mut [u8; H2_PREFACE.len()],
    by: Instant,
) -> std::io::Result<bool> {
    loop {
        let n = peeked?;
        if n == 0 || first[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Only part of the preface so far (it is sent in one piece, so this is rare). Past
        // the header timeout, HTTP/1.1's reader refuses it as the head it begins.
        if Instant::now() >= by {
            return Ok(false);
        }
        tokio::time::sleep(PREFACE_POLL).await;
        peeked = poll_fn(|cx| peek(io, cx, first)).await;
    }
}

async fn serve_h2(io: Box<ClientIo>, service: ClientService, settings: &ConnSettings) {
    let lifecycle = service.proxy.lifecycle().clone();
    // Boxed, as HTTP/1.1's: the connection's task stays the size of its idle state.
    let conn = Box::pin(settings.h2.serve_connection(TokioIo::new(io), service.hyper()));
    // GOAWAY once the pod stops (the drain included): streams under way are answered, and
    // the client opens its next ones on another pod.
    let stopping = lifecycle.stopping();
    if let Err(e) = until_shutdown(conn, stopping, |conn| conn.graceful_shutdown()).await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Polls `conn` to its end; once `stop` resolves, calls `graceful` on it once.
async fn until_shutdown<C: Future>(
    mut conn: Pin<Box<C>>,
    stop: impl Future<Output = ()>,
    graceful: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    let mut graceful = Some(graceful);
    let mut stop = pin!(stop);
    poll_fn(|cx| {
        if graceful.is_some() && stop.as_mut().poll(cx).is_ready() {
            (graceful.take().expect("checked"))(conn.as_mut());
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// Serves HTTP/1.1 requests until the connection closes or is parked: the sidecar's own
/// server while they have no body, hyper's for the rest. `busy`: whether this client's
/// requests follow each other closely; its connection is then put away only after
/// `PUT_AWAY_AFTER` of silence, not as soon as it is idle. `woken`: whether it was served
/// again because its client sent.
async fn serve_h1(
    mut io: Box<ClientIo>,
    service: ClientService,
    settings: Arc<ConnSettings>,
    held: Counted,
    mut busy: bool,
    mut woken: bool,
) {
    let shutdown = service.proxy.lifecycle().draining().clone();
    loop {
        let patience = Patience {
            // A socket registered anew may not have been reported readable yet.
            first: if woken { PUT_AWAY_AFTER } else { Duration::ZERO },
            between: if busy { PUT_AWAY_AFTER } else { Duration::ZERO },
        };
        // Boxed, as hyper's connection is: a request's future is large, and the task of a
        // connection waiting for its first request must stay small.
        let own = own_server(io, &service, patience);
        io = match own.await {
            Ended::Closed => return,
            Ended::Idle(io) => io,
            Ended::ForHyper(io) => match burst(io, &service, &settings, busy).await {
                Some(io) => io,
                None => return,
            },
        };
        // Put away between requests: only the socket and where its reader stood are held.
        let parked_at = Instant::now();
        let by = parked_at + settings.timeouts.wait_for(service.client.framing.served());
        if let Some(lot) = &settings.lot {
            io = match io.park() {
                Parking::Parked(io) => {
                    let ClientService { proxy, client } = service;
                    let peer = client.addr;
                    let settings = settings.clone();
                    let conn = ParkedConn { io, peer, proxy, settings, held, parked_at };
                    // A lot that has ended (the server is gone) drops, and so closes, it.
                    let _ = lot.park(conn, by);
                    return;
                }
                Parking::Closed(e) => {
                    tracing::debug!(error = %e, "an idle connection could not be parked");
                    return;
                }
                Parking::Busy(io) => io,
            };
        }
        // Something is held (a head begun): it waits here, with its reader.
        let readable = until(&io, &shutdown, by, |io, cx| io.poll_readable(cx)).await;
        if readable.is_none_or(|readable| readable.is_err()) {
            return;
        }
        busy = parked_at.elapsed() < PUT_AWAY_AFTER;
        woken = true;
    }
}

/// The own server's run, boxed. Built in its box: `Box::pin(future)` would build it on the
/// stack and copy all of its size into the box (4 KB, most of it not yet in use), once per
/// run of a connection. A function of its own, so that the connection's task holds only
/// the box.
fn own_server<'a>(
    io: Box<ClientIo>,
    service: &'a ClientService,
    patience: Patience,
) -> Pin<Box<impl Future<Output = Ended> + 'a>> {
    let ClientService { proxy, client } = service;
    Box::into_pin(Box::write(Box::new_uninit(), h1_server::serve(io, proxy, client, patience)))
}

/// Serves requests on one hyper connection until it closes, or until it waits for the next
/// request with nothing under way: then the socket comes back, to wait without hyper's
/// buffers. A drain changes nothing here: its responses say `Connection: close` (`forward`),
/// and a connection put away is given `DRAIN_GRACE` before it is closed.
async fn burst(
    io: Box<ClientIo>,
    service: &ClientService,
    settings: &ConnSettings,
    busy: bool,
) -> Option<Box<ClientIo>> {
    let framing = &service.client.framing;
    // Boxed: its size is not carried by the connection's task while it is put away.
    let mut conn = {
        let mut h1 = settings.h1.clone();
        h1.timer(HeadTimer::new(settings.timeouts, framing.clone()));
        Box::new(h1.serve_connection(TokioIo::new(io), service.hyper()).with_upgrades())
    };
    let mut parking = false;
    let ended = poll_fn(|cx| {
        loop {
            if let Poll::Ready(ended) = Pin::new(&mut *conn).poll(cx) {
                return Poll::Ready(ended);
            }
            let due =
                if busy { framing.activity.should_put_away() } else { framing.activity.is_idle() };
            if parking || !due {
                return Poll::Pending;
            }
            // hyper waits for a head with nothing under way: a graceful shutdown closes it
            // at once, with no byte written.
            parking = true;
            framing.activity.begin_parking();
            Pin::new(&mut *conn).graceful_shutdown();
        }
    })
    .await;
    // Quiet only if nothing was written after it was asked for: otherwise hyper was still
    // answering, and closed the connection as that answer said.
    let parked = framing.activity.end_parking();
    if let Err(e) = ended {
        tracing::debug!(error = %e, "client connection ended with an error");
        return None;
    }
    if !parked {
        return None;
    }
    // `None`: the connection switched protocols, and its socket went with the upgrade.
    let parts = conn.into_parts()?;
    let mut io = parts.io.into_inner();
    io.unread(parts.read_buf);
    Some(io)
}

/// An HTTP/1.1 connection parked between requests (`parking`): what serves it again.
struct ParkedConn {
    io: ParkedIo,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    settings: Arc<ConnSettings>,
    held: Counted,
    parked_at: Instant,
}

impl AsFd for ParkedConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl Resume for ParkedConn {
    fn resume(self) {
        tokio::spawn(self.serve_again());
    }
}

impl ParkedConn {
    async fn serve_again(self) {
        let ParkedConn { io, peer, proxy, settings, held, parked_at } = self;
        let (io, framing) = match io.resume(settings.max_head, settings.timeouts.header) {
            Ok(resumed) => resumed,
            Err(e) => {
                tracing::debug!(error = %e, "a parked connection could not be served again");
                return;
            }
        };
        let client = Arc::new(Client::new(peer, framing, settings.upgrades.clone()));
        let busy = parked_at.elapsed() < PUT_AWAY_AFTER;
        serve_h1(io, ClientService { proxy, client }, settings, held, busy, true).await;
    }
}

/// What every request of a connection is handed to.
#[derive(Clone)]
struct ClientService {
    proxy: Arc<Proxy>,
    client: Arc<Client>,
}

impl ClientService {
    /// hyper's service for this connection's requests. Their future (about 5 KB) is not
    /// boxed: hyper keeps one slot for it per connection and writes each request's into it,
    /// where a box would cost an allocation per request on glibc's slow path for large
    /// blocks.
    fn hyper(
        &self,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<Answer>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        let (proxy, client) = (self.proxy.clone(), self.client.clone());
        service_fn(move |req| {
            // The request's own reference to its client doubles as its place in the count.
            let in_flight = InFlight::enter(client.clone());
            let proxy = proxy.clone();
            async move {
                let response = proxy.handle(&in_flight.0, req).await;
                Ok(response.map(|body| Answer { body, _in_flight: in_flight }))
            }
        })
    }
}

/// A request counted as in flight on its connection (`Activity`), from the service's call
/// until its response body is dropped or the call is given up.
struct InFlight(Arc<Client>);

impl InFlight {
    fn enter(client: Arc<Client>) -> Self {
        client.framing.activity.enter();
        InFlight(client)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.framing.activity.leave();
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
pub struct Answer {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::proxy::framing::Framing;
    use crate::proxy::pool::{AppProtocol, Pool};
    use crate::telemetry::metrics::Metrics;

    /// A client connection to a sidecar whose app is away, served by `serve`.
    struct Conn {
        client: TcpStream,
        settings: Arc<ConnSettings>,
        /// The word the server gives on shutdown, which the connection hears.
        stop: Arc<Latch>,
        /// Connections open, the one under test counted.
        open: Arc<AtomicUsize>,
    }

    async fn connection() -> Conn {
        connection_with(true).await
    }

    /// `lot`: false for a server that could make no epoll set of its own.
    async fn connection_with(lot: bool) -> Conn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_addr = app.local_addr().unwrap();
        drop(app);
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let framing = Arc::new(Framing::default());
        let io = Box::new(ClientIo::new(stream, framing.clone(), 1024, Duration::from_secs(5)));
        let about = Arc::new(Client::new(peer, framing, AllowedUpgrades::default()));
        let pool = Pool::new(app_addr.to_string(), AppProtocol::Http1);
        let (_config, rx) = crate::config::channel();
        let proxy = Arc::new(Proxy::new(pool, rx, Arc::new(Metrics::default())));
        let stop = proxy.lifecycle().draining().clone();
        let mut settings = ConnSettings::new(
            ClientTimeouts::default(),
            1024,
            AllowedUpgrades::default(),
            stop.clone(),
        );
        if !lot {
            settings.lot = None;
        }
        let settings = Arc::new(settings);
        let open = Arc::new(AtomicUsize::new(0));
        let held = Counted::enter(&open, 1).unwrap();
        tokio::spawn(serve(io, proxy, about, settings.clone(), held));
        Conn { client, settings, stop, open }
    }

    /// Waits until the connection is parked (`true`) or served again (`false`).
    async fn parked(conn: &Conn, want: bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while (conn.settings.parked() == 1) != want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("parked, or served again, within 10 s");
    }

    /// A connection that has been answered one request and is parked.
    async fn parked_after_a_request() -> Conn {
        let mut conn = connection().await;
        conn.client.write_all(GET).await.unwrap();
        response(&mut conn.client).await;
        parked(&conn, true).await;
        conn
    }

    /// Waits until the connection is no longer counted open.
    async fn closed(open: &AtomicUsize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while open.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("closed within 10 s");
    }

    /// Starts the drain, and waits for the connection to be closed without a byte, no
    /// sooner than `DRAIN_GRACE`.
    async fn closed_after_the_drain_grace(mut conn: Conn) {
        let started = Instant::now();
        conn.stop.start();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), conn.client.read_to_end(&mut rest));
        read.await.expect("closed").unwrap();
        assert!(started.elapsed() >= DRAIN_GRACE, "closed before the grace was up");
        assert!(rest.is_empty(), "closed without a byte: {rest:?}");
        closed(&conn.open).await;
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Reads one response with a Content-Length body, and returns it.
    async fn response(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse::<usize>().unwrap());
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {text:?}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_parked_and_served_again() {
        let mut conn = connection().await;
        assert_eq!(conn.settings.parked(), 0, "no request yet");
        for round in 0..3 {
            conn.client.write_all(GET).await.unwrap();
            let answer = response(&mut conn.client).await;
            assert!(
                answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{round}: {answer}"
            );
            assert!(!answer.contains("connection: close"), "{round}: kept alive: {answer}");
            parked(&conn, true).await;
        }
        // Two requests at once, after the connection was parked: both answered, in order.
        conn.client.write_all(&[GET, GET].concat()).await.unwrap();
        for _ in 0..2 {
            assert!(response(&mut conn.client).await.starts_with("HTTP/1.1 503"));
        }
        parked(&conn, true).await;
        assert_eq!(conn.open.load(Ordering::Acquire), 1, "still counted while parked");
    }

    /// Without a lot, an idle connection waits in its own task, as it did before there was
    /// one: served again, and closed after the drain grace like a parked one.
    #[tokio::test]
    async fn without_a_lot_an_idle_connection_waits_in_its_task() {
        let mut conn = connection_with(false).await;
        for round in 0..3 {
            conn.client.write_all(GET).await.unwrap();
            let answer = response(&mut conn.client).await;
            assert!(answer.starts_with("HTTP/1.1 503 Service "), "{round}: {answer}");
            assert!(!answer.contains("connection: close"), "{round}: kept alive: {answer}");
            // Past the wait after which a connection would be put away.
            tokio::time::sleep(PUT_AWAY_AFTER * 2).await;
            assert_eq!(conn.open.load(Ordering::Acquire), 1, "{round}: still open");
        }
        closed_after_the_drain_grace(conn).await;
    }

    /// The lot serves a connection again when its client sends: the request is read, not
    /// taken for silence and the connection parked again before the socket's readiness is
    /// known (each parking costs a connection made anew, and tokio's registration).
    #[tokio::test]
    async fn a_parked_connection_that_is_sent_a_request_is_parked_once_per_request() {
        let mut conn = parked_after_a_request().await;
        let before = conn.settings.parkings();
        for round in 0..5 {
            // Parked long enough for its client not to count as busy: served again, it is
            // put away as soon as it is idle.
            tokio::time::sleep(PUT_AWAY_AFTER * 2).await;
            conn.client.write_all(GET).await.unwrap();
            let answer = response(&mut conn.client).await;
            assert!(answer.starts_with("HTTP/1.1 503"), "{round}: {answer}");
            parked(&conn, true).await;
        }
        // Each request parked its connection twice before the fix (10). One parking more is
        // allowed: a task held off for PUT_AWAY_AFTER on a loaded machine puts a connection
        // away before its read, as it should when nothing comes.
        let parkings = conn.settings.parkings() - before;
        assert!((5..=6).contains(&parkings), "one parking per request: {parkings}");
    }

    #[tokio::test]
    async fn a_head_split_across_the_wait_is_read_whole() {
        let mut conn = parked_after_a_request().await;
        conn.client.write_all(b"GET / HT").await.unwrap();
        parked(&conn, false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(conn.settings.parked(), 0, "a head begun is not parked");
        conn.client.write_all(b"TP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(response(&mut conn.client).await.starts_with("HTTP/1.1 503"));
    }

    #[tokio::test]
    async fn a_parked_connection_is_closed_after_the_drain_grace() {
        let conn = parked_after_a_request().await;
        closed_after_the_drain_grace(conn).await;
    }

    /// HTTP/1.1 cannot tell an idle client that its connection is closing: a request on its
    /// way as the drain begins is answered, with `Connection: close`, not met by the close.
    #[tokio::test]
    async fn a_request_sent_as_the_drain_begins_is_answered_then_the_connection_closed() {
        let mut conn = parked_after_a_request().await;
        conn.stop.start();
        tokio::time::sleep(DRAIN_GRACE / 4).await;
        conn.client.write_all(GET).await.unwrap();
        let answer = response(&mut conn.client).await;
        // The app is away and the sidecar draining: the pod is being stopped.
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
        assert!(answer.contains("details=\"app_stopping\""), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), conn.client.read_to_end(&mut rest));
        read.await.expect("closed").unwrap();
        assert!(rest.is_empty(), "closed after the answer: {rest:?}");
        closed(&conn.open).await;
    }

    #[tokio::test]
    async fn a_client_that_leaves_a_parked_connection_ends_it() {
        let conn = parked_after_a_request().await;
        let Conn { client, settings, open, .. } = conn;
        drop(client);
        closed(&open).await;
        assert_eq!(settings.parked(), 0);
    }

    /// A parked connection is one row of the lot's table: what is needed to go on.
    #[test]
    fn a_parked_connection_is_small() {
        let size = std::mem::size_of::<ParkedConn>();
        assert!(size <= 96, "{size} bytes");
    }

    /// A connection's task costs its socket's registration and its reader: it must not
    /// carry hyper's connection inline.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _peer = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let framing = Arc::new(Framing::default());
        let io = Box::new(ClientIo::new(stream, framing.clone(), 1024, Duration::from_secs(1)));
        let client = Arc::new(Client::new(peer, framing, AllowedUpgrades::default()));
        let pool = Pool::new(addr.to_string(), AppProtocol::Http1);
        let (_config, rx) = crate::config::channel();
        let proxy = Arc::new(Proxy::new(pool, rx, Arc::new(Metrics::default())));
        let drain = proxy.lifecycle().draining().clone();
        let settings = Arc::new(ConnSettings::new(
            ClientTimeouts::default(),
            1024,
            AllowedUpgrades::default(),
            drain,
        ));
        let held = Counted::enter(&Arc::new(AtomicUsize::new(0)), 1).unwrap();
        let task = serve(io, proxy, client, settings, held);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 600, "{size} bytes");
    }
}
