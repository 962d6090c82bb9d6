//! Forwarding one request to the app and its response back, enforcing the route's
//! timeouts and validation on the way. Failures become [`ProxyError`]s, which `Proxy::local`
//! turns into the sidecar's own responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use jiff::Timestamp;
use tokio::time::Instant;

use super::app_h1::H1Body;
use super::body::{ClientBody, RequestBody, stream_error_in};
use super::deadline::with_deadline;
use super::duplex::Duplex;
use super::error::ProxyError;
use super::framing::{Framing, Verdict};
use super::headers::{self, HeadFacts};
use super::lifecycle::Lifecycle;
use super::pool::{Conn, ConnectOptions, Pool, exchange_error};
use super::respond::{self, Asked, Audience, Local};
use super::response_body::{AppBody, Finish, Held, ProxyBody, UpstreamBody};
use super::spare;
use super::upgrade::{self, AllowedUpgrades};
use crate::config::{Config, ConfigRx, Snapshot};
use crate::maintenance::{self, Gate};
use crate::overload::{Limiter, Permit, Shed, jittered_retry_after};
use crate::policy::RouteSettings;
use crate::telemetry::metrics::{InFlight, Metrics, ReasonLabels};

/// What the proxy knows about the client connection a request arrived on.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    /// The client's address as a header value, made once per connection.
    pub forwarded_for: HeaderValue,
    pub framing: Arc<Framing>,
    /// The protocols this client may switch to.
    pub upgrades: AllowedUpgrades,
}

impl Client {
    pub fn new(addr: SocketAddr, framing: Arc<Framing>, upgrades: AllowedUpgrades) -> Self {
        let forwarded_for =
            HeaderValue::from_str(&addr.ip().to_string()).expect("an IP address is a valid value");
        Client { addr, forwarded_for, framing, upgrades }
    }
}

/// What the proxy can tell about its state, for metrics.
#[derive(Debug, Default)]
pub struct Observed {
    pub generation: u64,
    /// Each window of the config in force, and whether it is on.
    pub windows: Vec<(String, bool)>,
    /// While maintenance is on: when its merged span is planned to end (`None`: open-ended).
    pub maintenance_until: Option<Timestamp>,
    pub queue_depth: usize,
    pub limit: usize,
}

/// The proxy: shared by every connection and request.
pub struct Proxy {
    pool: Pool,
    config: ConfigRx,
    metrics: Arc<Metrics>,
    gate: Gate,
    limiter: Arc<Limiter>,
    lifecycle: Arc<Lifecycle>,
}

impl Proxy {
    pub fn new(pool: Pool, config: ConfigRx, metrics: Arc<Metrics>) -> Self {
        Proxy {
            pool,
            config,
            metrics,
            gate: Gate::default(),
            limiter: Arc::default(),
            lifecycle: Arc::default(),
        }
    }

    /// Whether the pod is stopping; the admin server's `/prestop` says so.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// Answers one request: the app's response, or the sidecar's own.
    pub async fn handle<B: ClientBody>(
        &self,
        client: &Client,
        req: Request<B>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // The snapshot taken here governs the whole request, whatever reloads happen meanwhile.
        let snapshot = self.config.borrow().clone();
        let policy = &snapshot.config.policy;
        let asked = Asked::of(req.method(), req.headers());
        let (method, uri, version) = (req.method().clone(), req.uri().clone(), req.version());
        let verdict = client.framing.next_request();
        let in_flight = InFlight::start(&self.metrics);
        // The checks, the queue and the exchange are awaited here, not in a future of their
        // own: each level of futures is moved into its parent once per request.
        let outcome = match self.admit(client, verdict, &req, &snapshot) {
            Err(err) => Err(err),
            Ok(offer) => match self.queue(&snapshot).await {
                Err(err) => Err(err),
                Ok(permit) => {
                    let held = Held::new(in_flight, permit);
                    let config = &snapshot.config;
                    self.forward(client, req, offer, config, started, held).await
                }
            },
        };
        let mut response = outcome.unwrap_or_else(|err| {
            let audience = asked.audience(policy.error_format);
            self.local(&err, audience, version, &method, uri.path())
        });
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if verdict == (Verdict::Serve { answer_switch: true }) {
            // CONNECT never switches: `upgrade::offer` refuses it.
            client.framing.answered_upgrade(switched);
        }
        if version < Version::HTTP_2 && !switched && self.lifecycle.is_stopping() {
            // The pod is going: this client's next request belongs on another pod. (HTTP/2
            // clients are told by GOAWAY, on their connection.)
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// The checks before a request may go to the app: framing, Host, protocol switch,
    /// maintenance. Returns the Upgrade value to forward, if the request switches.
    fn admit<B>(
        &self,
        client: &Client,
        verdict: Verdict,
        req: &Request<B>,
        snapshot: &Snapshot,
    ) -> Result<Option<HeaderValue>, ProxyError> {
        match verdict {
            Verdict::Serve { .. } => {}
            Verdict::Ambiguous => return Err(ProxyError::AmbiguousFraming),
            Verdict::Refused(why) => return Err(why.into()),
        }
        check_host(req)?;
        let offer = upgrade::offer(req, &client.upgrades)?;
        let config = &snapshot.config;
        if !config.windows.is_empty()
            && let Some(closed) = self.gate.check(
                snapshot.generation,
                &config.windows,
                req.uri().path(),
                req.headers(),
                Timestamp::now(),
            )
        {
            return Err(ProxyError::Maintenance(closed));
        }
        Ok(offer)
    }

    /// Overload protection: a place among the requests in flight, or the 503 that sheds it.
    async fn queue(&self, snapshot: &Snapshot) -> Result<Option<Permit>, ProxyError> {
        let overload = &snapshot.config.policy.overload;
        self.limiter.admit(snapshot.generation, overload).await.map_err(|shed| {
            let retry_after = jittered_retry_after(overload.retry_after);
            let err = match shed {
                Shed::Overloaded => ProxyError::Overloaded { retry_after },
                Shed::QueueTimeout => ProxyError::QueueTimeout {
                    retry_after,
                    waited: overload.queue_timeout.unwrap_or_default(),
                },
            };
            self.metrics.shed.get_or_create(&ReasonLabels { reason: err.reason() }).inc();
            err
        })
    }

    /// State for the admin server and metrics.
    pub fn observe(&self) -> Observed {
        let snapshot = self.config.borrow().clone();
        let windows = &snapshot.config.windows;
        let evaluation = if windows.is_empty() {
            Default::default()
        } else {
            self.gate.evaluation(snapshot.generation, windows, Timestamp::now())
        };
        let active = windows
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.clone(), evaluation.active.contains(&i)))
            .collect();
        Observed {
            generation: snapshot.generation,
            windows: active,
            maintenance_until: evaluation.until.filter(|_| evaluation.on),
            queue_depth: self.limiter.queue_depth(),
            limit: self.limiter.limit(),
        }
    }

    /// `offer`: the Upgrade value to forward, when the request switches protocols.
    async fn forward<B: ClientBody>(
        &self,
        client: &Client,
        mut req: Request<B>,
        offer: Option<HeaderValue>,
        config: &Config,
        started: Instant,
        held: Held,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let policy = &config.policy;
        let route = policy.route(req.method(), req.uri().path());
        let timeouts = &route.timeouts;
        let deadline = timeouts.request.map(|d| started + d);
        let opts = ConnectOptions {
            connect_timeout: timeouts.connect,
            max_header_bytes: policy.max_response_header_bytes(),
            max_idle: policy.upstream_idle,
        };
        let wants_upgrade = offer.is_some();
        let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        prepare_request(&mut parts, client, offer.as_ref());
        maintenance::strip_bypass_headers(&config.windows, &mut parts.headers);
        let (body, duplex) = body.into_request_body(timeouts.idle, deadline);
        // A request to an HTTP/1.1 app, with or without a body, is sent and answered on
        // this task; hyper's client keeps upgrades, HTTP/2 apps, and gRPC, which exists
        // only over HTTP/2.
        let plain = !wants_upgrade && self.pool.speaks_h1() && !headers::is_grpc(&parts.headers);
        // Each path is awaited in place: an async block around both would be one more level
        // of futures, moved once per request.
        let outcome = if plain {
            let exchange = self.exchange_h1(&parts, body, duplex.as_deref(), route, &opts);
            let outcome = with_deadline(exchange, deadline).await.map(|done| {
                done.map(|(response, sent_at)| (response.map(AppBody::H1), None, sent_at))
            });
            // Sent (or given up): its fields are not read again.
            spare::keep(std::mem::take(&mut parts.headers));
            outcome
        } else {
            // Only a request with nothing to resend, and safe to repeat, may be retried.
            let replay = (!wants_upgrade && body.is_empty() && method.is_idempotent())
                .then(|| parts.clone());
            let req = Request::from_parts(parts, body);
            // Boxed: the common request future stays the size of the plain path's.
            let exchange = Box::pin(self.exchange(
                req,
                replay,
                duplex.as_deref(),
                route,
                &opts,
                wants_upgrade,
            ));
            with_deadline(exchange, deadline).await.map(|done| {
                done.map(|(response, conn, sent_at)| {
                    (response.map(AppBody::Hyper), Some(conn), sent_at)
                })
            })
        };
        let outcome = outcome.unwrap_or_else(|_| {
            Err(ProxyError::RequestTimeout(timeouts.request.unwrap_or_default()))
        });
        let (mut response, conn, sent_at) = match outcome {
            // An app gone while its pod stops is being replaced, not broken; however the
            // connect fails (refused, or out of ephemeral ports under a burst of retries).
            Err(
                ProxyError::ConnectRefused
                | ProxyError::ConnectFailed(_)
                | ProxyError::ConnectionTerminated,
            ) if self.lifecycle.is_stopping() => {
                return Err(ProxyError::AppStopping);
            }
            // An app that has never answered and refuses connections is still starting:
            // a rolling restart is not a broken app.
            Err(ProxyError::ConnectRefused) if !self.pool.has_answered() => {
                return Err(ProxyError::AppStarting);
            }
            other => other?,
        };
        self.pool.mark_answered();
        self.metrics.app_latency.observe(sent_at.elapsed().as_secs_f64());
        validate(&response, &method, offer.as_ref(), route)?;

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let app_upgrade = switching.then(|| hyper::upgrade::on(&mut response));
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, switching);
        headers::append_via(&mut parts.headers, parts.version);
        self.metrics.app_response(parts.status.as_u16());

        if let (Some(client_upgrade), Some(app_upgrade)) = (client_upgrade, app_upgrade) {
            upgrade::tunnel(client_upgrade, app_upgrade, conn);
            return Ok(Response::from_parts(parts, ProxyBody::empty()));
        }
        let finish = Finish {
            // A connection opened for an upgrade that did not happen is not reused.
            pool: (!wants_upgrade).then(|| self.pool.clone()),
            conn,
            max_idle: opts.max_idle,
            metrics: self.metrics.clone(),
            _held: held,
        };
        let body = UpstreamBody::new(body, timeouts.idle, deadline, finish, duplex);
        Ok(Response::from_parts(parts, ProxyBody::Upstream(body)))
    }

    /// Sends a request over an `app_h1` connection and reads the response head, retrying
    /// once on a fresh connection when a reused one failed before the app sent a single
    /// byte, the method is safe to repeat and there is no body to resend.
    async fn exchange_h1(
        &self,
        parts: &Parts,
        body: RequestBody,
        duplex: Option<&Duplex>,
        route: &RouteSettings,
        opts: &ConnectOptions,
    ) -> Result<(Response<H1Body>, Instant), ProxyError> {
        let limit = route.validation.max_response_header_bytes;
        let request_timeout = route.timeouts.request;
        let max_head = opts.max_header_bytes as usize;
        let bodied = !body.is_empty();
        let replayable = !bodied && parts.method.is_idempotent();
        let (conn, reused) = self.pool.checkout_h1(opts).await?;
        let sent_at = Instant::now();
        let wait = route.timeouts.response_headers;
        let headers_by = wait.map(|w| sent_at + w);
        let send = conn.send(parts, body, max_head);
        let failed = match head_within(wait, sent_at, duplex, send).await? {
            Ok(response) => return Ok((response, sent_at)),
            Err(failed) => failed,
        };
        if !reused || failed.answered || !replayable {
            if bodied {
                // The request body, if unfinished, was dropped on this task, just now. hyper's
                // client drops it on its connection task, so the client's connection sees it
                // gone before the answer is written, and closes rather than keep a
                // connection whose body was left unread. One yield keeps that order.
                tokio::task::yield_now().await;
            }
            return Err(failed.error.to_proxy_error(limit, request_timeout));
        }
        tracing::debug!(error = %failed.error, "reused connection failed before any response byte; retrying");
        self.metrics.retries.inc();
        // Boxed: a rare path, kept out of the common request future's size.
        let retry = Box::pin(async {
            let fresh = self.pool.connect_h1(opts).await?;
            let send = fresh.send(parts, RequestBody::empty(), max_head);
            match within(headers_by, wait, send).await? {
                Ok(response) => Ok(response),
                Err(failed) => Err(failed.error.to_proxy_error(limit, request_timeout)),
            }
        });
        Ok((retry.await?, sent_at))
    }

    /// Sends the request and waits for the response head, retrying once on a fresh
    /// connection when a reused one failed before the app sent a single byte.
    async fn exchange(
        &self,
        req: Request<RequestBody>,
        replay: Option<Parts>,
        duplex: Option<&Duplex>,
        route: &RouteSettings,
        opts: &ConnectOptions,
        wants_upgrade: bool,
    ) -> Result<(Response<Incoming>, Conn, Instant), ProxyError> {
        let limit = route.validation.max_response_header_bytes;
        let mut conn = if wants_upgrade {
            Box::pin(self.pool.connect(opts, true)).await?
        } else {
            self.pool.checkout_h2(opts).await?
        };
        let sent_at = Instant::now();
        let wait = route.timeouts.response_headers;
        let headers_by = wait.map(|w| sent_at + w);
        let before = conn.bytes_read();
        let req = self.for_connection(req, &conn);
        let err = match head_within(wait, sent_at, duplex, conn.send(req)).await? {
            Ok(response) => return Ok((response, conn, sent_at)),
            Err(err) => err,
        };
        if let Some(cause) = stream_error_in(&err) {
            return Err(cause.to_proxy_error(route.timeouts.request));
        }
        let untouched = conn.reused && conn.bytes_read() == before;
        let Some(parts) = replay.filter(|_| untouched) else {
            return Err(exchange_error(&err, limit));
        };
        tracing::debug!(error = %err, "reused connection failed before any response byte; retrying");
        self.metrics.retries.inc();
        // Boxed: a rare path, kept out of the common request future's size.
        let (response, fresh) = Box::pin(self.retry(parts, opts, headers_by, wait, limit)).await?;
        Ok((response, fresh, sent_at))
    }

    async fn retry(
        &self,
        parts: Parts,
        opts: &ConnectOptions,
        headers_by: Option<Instant>,
        wait: Option<Duration>,
        limit: u32,
    ) -> Result<(Response<Incoming>, Conn), ProxyError> {
        let mut fresh = self.pool.connect(opts, false).await?;
        let retry = self.for_connection(Request::from_parts(parts, RequestBody::empty()), &fresh);
        match within(headers_by, wait, fresh.send(retry)).await? {
            Ok(response) => Ok((response, fresh)),
            Err(err) => Err(exchange_error(&err, limit)),
        }
    }

    /// HTTP/2 carries the authority in the URI, not in Host (RFC 9113 §8.3.1).
    fn for_connection(&self, mut req: Request<RequestBody>, conn: &Conn) -> Request<RequestBody> {
        if !conn.is_http2() {
            return req;
        }
        let authority = req
            .headers_mut()
            .remove(header::HOST)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| self.pool.upstream().to_owned());
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("http://{authority}{path}").parse() {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = Version::HTTP_2;
        req
    }

    /// The sidecar's answer to a request it turns away without looking further.
    pub fn turn_away(&self, err: &ProxyError, req: &Request<Incoming>) -> Response<ProxyBody> {
        let asked = Asked::of(req.method(), req.headers());
        let audience = asked.audience(self.config.borrow().config.policy.error_format);
        self.local(err, audience, req.version(), req.method(), req.uri().path())
    }

    /// The sidecar's own response for a failure, logged and counted.
    fn local(
        &self,
        err: &ProxyError,
        audience: Audience,
        version: Version,
        method: &Method,
        path: &str,
    ) -> Response<ProxyBody> {
        let detail = err.to_string();
        let status = err.status();
        let local = Local {
            status,
            error: err.proxy_status_error(),
            details: err.reason(),
            detail: &detail,
            retry_after: err.retry_after(),
            retry_now_futile: err.retry_now_futile(),
            grpc_status: err.grpc_status(),
        };
        let mut response = respond::render(&local, audience);
        if err.closes_client_connection() && version < Version::HTTP_2 {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.metrics.proxy_response(status.as_u16(), err.reason(), local.retry_after);
        tracing::warn!(
            status = status.as_u16(),
            reason = err.reason(),
            error = err.proxy_status_error(),
            %method,
            path,
            "{detail}"
        );
        response
    }
}

/// `fut` until `by`, if there is a limit; past it, the response headers are late. Not an
/// async fn, as `head_within` is not: a future of plain structs adds no level of futures to
/// move into its parent.
fn within<F: Future>(
    by: Option<Instant>,
    wait: Option<Duration>,
    fut: F,
) -> impl Future<Output = Result<F::Output, ProxyError>> {
    with_deadline(fut, by).map(move |out| {
        out.map_err(|_| ProxyError::ResponseHeadersTimeout(wait.unwrap_or_default()))
    })
}

/// Awaits the app's response head for `wait`, counted from when the request has been sent
/// whole: at once for a request without a body, else when its body ends ([`Duplex`]).
fn head_within<F: Future>(
    wait: Option<Duration>,
    sent_at: Instant,
    duplex: Option<&Duplex>,
    fut: F,
) -> impl Future<Output = Result<F::Output, ProxyError>> {
    let Some((duplex, wait)) = duplex.zip(wait) else {
        return Either::Left(within(wait.map(|w| sent_at + w), wait, fut));
    };
    Either::Right(async move {
        // Boxed: only requests with a body come here.
        let timer = Box::pin(async move {
            duplex.request_sent().await;
            tokio::time::sleep(wait).await;
        });
        match futures::future::select(std::pin::pin!(fut), timer).await {
            Either::Left((out, _)) => Ok(out),
            Either::Right(_) => Err(ProxyError::ResponseHeadersTimeout(wait)),
        }
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host, and no request more than
/// one or an invalid one; such a request is answered 400 and never reaches the app.
fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(ProxyError::InvalidHost("more than one Host field")),
        (None, _) if req.version() == Version::HTTP_11 => {
            Err(ProxyError::InvalidHost("no Host field"))
        }
        (Some(host), None) if !headers::valid_host(host) => {
            Err(ProxyError::InvalidHost("a Host that is not a host and port"))
        }
        _ => Ok(()),
    }
}

/// `offer`: the Upgrade value that goes on, the allowed protocols only; without it, a
/// request that asked to switch goes on as an ordinary request.
fn prepare_request(parts: &mut Parts, client: &Client, offer: Option<&HeaderValue>) {
    let received = parts.version;
    headers::strip_hop_by_hop(&mut parts.headers, offer.is_some());
    if let Some(offer) = offer {
        parts.headers.insert(header::UPGRADE, offer.clone());
    }
    headers::append_via(&mut parts.headers, received);
    headers::append_forwarded(&mut parts.headers, &client.forwarded_for);
    headers::to_origin_form(&mut parts.uri, &mut parts.headers);
    parts.version = Version::HTTP_11;
}

/// The checks on the app's response head that the route asks for.
fn validate(
    response: &Response<AppBody>,
    method: &Method,
    offer: Option<&HeaderValue>,
    route: &RouteSettings,
) -> Result<(), ProxyError> {
    upgrade::check_switch(response, offer)?;
    let reason_len = response.status().canonical_reason().map_or(0, str::len);
    let facts = HeadFacts::of(reason_len, response.headers());
    // hyper checks Content-Length only where it frames a body; a HEAD, 204 or 304 response
    // with conflicting lengths is just as malformed (RFC 9112 §6.3) and is not passed on.
    let Ok(length) = facts.content_length else {
        return Err(ProxyError::MalformedResponse);
    };
    // Framed both ways, a response may be read differently by the next hop (response
    // splitting, RFC 9112 §6.3): refused, as nginx does, rather than repaired.
    if facts.transfer_encoding && length.is_some() {
        return Err(ProxyError::MalformedResponse);
    }
    let limit = route.validation.max_response_header_bytes;
    if facts.size > limit as usize {
        return Err(ProxyError::ResponseHeadersTooLarge { limit });
    }
    let allowed = &route.validation.content_types;
    if allowed.is_empty() || !response.status().is_success() || !carries_body(response, method) {
        return Ok(());
    }
    let found =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if allowed.iter().any(|range| range.admits(found)) {
        Ok(())
    } else {
        Err(ProxyError::ContentTypeMismatch { found: found.to_owned() })
    }
}

/// Whether the response has (or, for HEAD, describes) a representation to check.
fn carries_body(response: &Response<AppBody>, method: &Method) -> bool {
    use http_body::Body;
    if response.status() == StatusCode::NO_CONTENT {
        return false;
    }
    if *method == Method::HEAD {
        // HEAD carries GET's header fields, so it is judged as GET would be.
        return response.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v != "0");
    }
    response.body().size_hint().exact() != Some(0)
}
