//! The config stream over real HTTP on 127.0.0.1: TokenReview against a test double of the
//! Kubernetes API that speaks the real TokenReview JSON; snapshots on change and only on
//! change; and a sidecar that keeps enforcing, windows included, while the controller is
//! away, then reconnects.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use portcullis::config::wire::StreamMessage;
use portcullis::controller::auth::Authenticator;
use portcullis::controller::index::{Index, Labels, ObjectKey};
use portcullis::controller::stream::StreamServer;
use support::fake_api::FakeApi;
use support::{apps, client};
use tokio::net::TcpListener;

struct Controller {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    async fn start(
        api: SocketAddr,
        index: Arc<Mutex<Index>>,
        addr: Option<SocketAddr>,
    ) -> Controller {
        let config = kube::Config::new(format!("http://{api}").parse().unwrap());
        let auth = Authenticator::new(kube::Client::try_from(config).unwrap());
        let listener =
            TcpListener::bind(addr.unwrap_or("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = StreamServer {
            index,
            auth,
            keepalive: Duration::from_millis(200),
            metrics: Default::default(),
            tls: None,
            sidecars: Default::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_until(listener, async move {
            let _ = stopped.await;
        }));
        Controller { addr, stop: Some(stop), task }
    }

    async fn kill(mut self) -> SocketAddr {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        self.addr
    }
}

fn policy(yaml: &str) -> portcullis::api::UpstreamPolicySpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn shop(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn index_with_pods() -> Arc<Mutex<Index>> {
    let mut index = Index::default();
    index.assume_listed();
    index.apply_pod(shop("a"), Labels::from([("app".to_string(), "checkout".to_string())]));
    index.apply_pod(shop("b"), Labels::from([("app".to_string(), "cart".to_string())]));
    index.apply_policy(
        shop("checkout"),
        "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        policy("selector: {matchLabels: {app: checkout}}\ntimeouts: {responseHeaders: 300ms}"),
    );
    Arc::new(Mutex::new(index))
}

/// Reads stream lines as they come.
struct Lines {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Lines {
    async fn next(&mut self, within: Duration) -> Option<StreamMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line[..end]).unwrap());
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next snapshot, skipping keepalives, if one comes within `within`.
    async fn snapshot(
        &mut self,
        within: Duration,
    ) -> Option<portcullis::config::wire::PodSnapshot> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.next(deadline - Instant::now()).await? {
                StreamMessage::Snapshot(s) => return Some(*s),
                StreamMessage::Keepalive => {}
            }
        }
        None
    }
}

async fn open(controller: SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, Lines) {
    let stream = tokio::net::TcpStream::connect(controller).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "controller");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let response = tx.send_request(req.body(Full::<Bytes>::default()).unwrap()).await.unwrap();
    (response.status(), Lines { body: response.into_body(), buffer: Vec::new() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_pods_own_token_opens_its_stream() {
    let controller = Controller::start(FakeApi::start().await.addr, index_with_pods(), None).await;
    let a = "/v1/config/shop/a";
    assert_eq!(open(controller.addr, a, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(open(controller.addr, a, Some("forged")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(open(controller.addr, a, Some("token-shop-b")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        open(controller.addr, a, Some("token-other-a")).await.0,
        StatusCode::FORBIDDEN,
        "same name, other namespace"
    );
    assert_eq!(open(controller.addr, a, Some("token-unbound")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        open(controller.addr, "/v1/nope", Some("token-shop-a")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, mut lines) = open(controller.addr, a, Some("token-shop-a")).await;
    assert_eq!(status, StatusCode::OK);
    let snapshot = lines.snapshot(Duration::from_secs(5)).await.unwrap();
    assert_eq!(snapshot.config.policy.unwrap().name, "shop/checkout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_come_on_change_and_only_on_change() {
    let index = index_with_pods();
    let controller = Controller::start(FakeApi::start().await.addr, index.clone(), None).await;
    let (_, mut lines) = open(controller.addr, "/v1/config/shop/a", Some("token-shop-a")).await;
    let first = lines.snapshot(Duration::from_secs(5)).await.unwrap();

    // Only pod b is affected: pod a hears keepalives and nothing else.
    index.lock().unwrap().apply_policy(
        shop("cart"),
        "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        policy("selector: {matchLabels: {app: cart}}"),
    );
    assert_eq!(lines.next(Duration::from_secs(2)).await, Some(StreamMessage::Keepalive));
    assert_eq!(lines.snapshot(Duration::from_millis(700)).await, None);

    // Pod a's policy changes: one new snapshot, with a later version.
    index.lock().unwrap().apply_policy(
        shop("checkout"),
        "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        policy("selector: {matchLabels: {app: checkout}}\ntimeouts: {responseHeaders: 2s}"),
    );
    let second = lines.snapshot(Duration::from_secs(2)).await.unwrap();
    assert!(second.version > first.version);
    assert_eq!(
        second.config.policy.unwrap().spec.timeouts.response_headers.unwrap().to_string(),
        "2s"
    );
    assert_eq!(lines.snapshot(Duration::from_millis(700)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_keeps_enforcing_while_the_controller_is_away() {
    let api = FakeApi::start().await.addr;
    let index = index_with_pods();
    // A window that starts while the controller will be down.
    let start = Timestamp::now() + jiff::SignedDuration::from_millis(3000);
    let end = start + jiff::SignedDuration::from_secs(60);
    let window: portcullis::api::MaintenanceWindowSpec =
        serde_yaml::from_str(&format!("start: \"{start}\"\nend: \"{end}\"")).unwrap();
    index.lock().unwrap().apply_window(shop("later"), Timestamp::now(), window);
    let controller = Controller::start(api, index.clone(), None).await;

    let app = apps::app(|req| async move {
        if req.uri().path() == "/stall" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Response::new(Full::new(Bytes::from_static(b"ok")))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-shop-a\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let sidecar = portcullis::sidecar::Sidecar {
        listener,
        admin,
        upstream: app.to_string(),
        app_protocol: Default::default(),
        config_file: None,
        secrets_dir: None,
        controller: Some(portcullis::config::follow::ControllerSource {
            tls: None,
            url: format!("http://{}", controller.addr),
            namespace: "shop".into(),
            pod: "a".into(),
            token_file,
            idle_timeout: Duration::from_secs(1),
        }),
        reload_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(1),
        client_timeouts: Default::default(),
        client_limits: Default::default(),
        stop: Default::default(),
    };
    tokio::spawn(sidecar.run(std::future::pending()));

    let deadline = Instant::now() + Duration::from_secs(10);
    while client::get(admin_addr, "/readyz", &[]).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stalled = Instant::now();
    assert_eq!(client::get(proxy, "/stall", &[]).await.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        stalled.elapsed() < Duration::from_secs(2),
        "the controller's 300ms policy is in force"
    );

    let connected = |text: &str| support::metric(text, "portcullis_controller_connected");
    let metrics = client::get(admin_addr, "/metrics", &[]).await.body;
    assert_eq!(connected(&metrics), Some(1.0), "{metrics}");

    // The controller goes away; the last good config stays, window schedule included.
    let controller_addr = controller.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client::get(admin_addr, "/readyz", &[]).await.status, StatusCode::OK);
    let metrics = client::get(admin_addr, "/metrics", &[]).await.body;
    assert_eq!(connected(&metrics), Some(0.0), "the stream's loss is visible: {metrics}");
    let stalled = Instant::now();
    assert_eq!(client::get(proxy, "/stall", &[]).await.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(stalled.elapsed() < Duration::from_secs(2));
    assert_eq!(client::get(proxy, "/", &[]).await.status, StatusCode::OK);
    let mut first_503 = None;
    while Timestamp::now() < start + jiff::SignedDuration::from_secs(2) {
        let sent = Timestamp::now();
        if client::get(proxy, "/", &[]).await.status == StatusCode::SERVICE_UNAVAILABLE {
            first_503 = Some(sent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_503 = first_503.expect("the window started without the controller");
    assert!(
        first_503.duration_since(start).as_millis() <= 100,
        "window started {} ms late",
        first_503.duration_since(start).as_millis()
    );

    // The controller comes back with a changed window; the sidecar reconnects and applies it.
    index.lock().unwrap().delete_window(&shop("later"));
    let _controller = Controller::start(api, index, Some(controller_addr)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if client::get(proxy, "/", &[]).await.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the sidecar did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_also_runs_over_http2() {
    let controller = Controller::start(FakeApi::start().await.addr, index_with_pods(), None).await;
    let stream = tokio::net::TcpStream::connect(controller.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://controller/v1/config/shop/a")
        .header("authorization", "Bearer token-shop-a")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = tx.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let mut lines = Lines { body: response.into_body(), buffer: Vec::new() };
    let snapshot = lines.snapshot(Duration::from_secs(5)).await.unwrap();
    assert_eq!(snapshot.config.policy.unwrap().name, "shop/checkout");
    assert_eq!(lines.next(Duration::from_secs(2)).await, Some(StreamMessage::Keepalive));
}
