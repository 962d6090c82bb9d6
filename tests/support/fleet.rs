//! A controller fleet on 127.0.0.1: controller replicas run in-process against the fake
//! API, real sidecars that follow them (some through a relay that can be cut, as a
//! NetworkPolicy would cut them), and the statuses the leader writes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use portcullis::controller::report::ReplicaReport;
use portcullis::controller::run::{Controller, Leadership, PeerSelector};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::client;
use super::fake_api::FakeApi;

pub const PODS: &str = "/api/v1/pods";
pub const POLICIES: &str = "/apis/portcullis.dev/v1alpha1/upstreampolicies";
pub const WINDOWS: &str = "/apis/portcullis.dev/v1alpha1/maintenancewindows";

/// An injected, running pod.
pub fn pod(namespace: &str, name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "labels": {"app": app},
            "annotations": {"portcullis.dev/injected": "{}"},
        },
        "status": {"phase": "Running"},
    })
}

pub fn window(name: &str, generation: i64, spec: Value) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "MaintenanceWindow",
        "metadata": {
            "name": name, "namespace": "shop", "generation": generation,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
    })
}

/// Stores a pod where the controller's watch sees it (`/api/v1/pods`) and where a
/// namespaced list finds it: the fake API lists each path's own collection.
pub fn apply_pod(api: &FakeApi, pod: Value) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_owned();
    api.apply(PODS, pod.clone());
    api.apply(&format!("/api/v1/namespaces/{namespace}/pods"), pod);
}

/// What `kubectl portcullis` prints for `args`, run against the fake API with the real
/// replicas behind its pod proxy.
pub async fn plugin(api: &FakeApi, args: &[&str]) -> String {
    use clap::Parser;
    let config = kube::Config::new(format!("http://{}", api.addr).parse().unwrap());
    let client = portcullis::plugin::fetch::client(config).unwrap();
    let cli = portcullis::plugin::PluginCli::parse_from(
        std::iter::once("kubectl-portcullis").chain(args.iter().copied()),
    );
    let output = portcullis::plugin::run(&client, &cli.args).await.unwrap();
    assert_eq!(output.stderr, "", "no warnings");
    output.stdout
}

/// One controller replica.
pub struct Replica {
    pub streams: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    pub async fn start(
        api: &FakeApi,
        leadership: Leadership,
        peers: Option<PeerSelector>,
        streams: Option<SocketAddr>,
    ) -> Replica {
        let listener =
            TcpListener::bind(streams.unwrap_or("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (streams, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let controller = Controller {
            client: api.client(),
            streams: listener,
            admin,
            keepalive: Duration::from_millis(500),
            leadership,
            certs: None,
            webhook: None,
            peers,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async move {
            let _ = stopped.await;
        }));
        Replica { streams, admin: admin_addr, stop: Some(stop), task }
    }

    /// Stops it; every stream it served ends.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }

    pub async fn report(&self) -> ReplicaReport {
        let reply = client::get(self.admin, "/v1/sidecars", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// Waits until the report of `pod` satisfies `accept`.
    pub async fn wait_for(&self, pod: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let report = serde_json::to_value(self.report().await).unwrap();
            let found = report["sidecars"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["pod"] == pod)
                .cloned()
                .unwrap_or(Value::Null);
            if accept(&found) {
                return found;
            }
            assert!(Instant::now() < deadline, "{pod} never got there: {report}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The replica's own Pod as the leader finds it: its IP and its `admin` port.
pub fn replica_pod(name: &str, admin: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "portcullis-system",
            "labels": {
                "app.kubernetes.io/name": "portcullis",
                "app.kubernetes.io/component": "controller",
            },
        },
        "spec": {"containers": [{"name": "controller", "image": "portcullis", "ports": [
            {"name": "admin", "containerPort": admin.port()},
        ]}]},
        "status": {"phase": "Running", "podIP": admin.ip().to_string()},
    })
}

/// A TCP relay in front of a controller that can be cut: while cut, every connection
/// through it is dropped and new ones are closed at once.
pub struct Relay {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watching = watching.clone();
                if *watching.borrow_and_update() {
                    continue; // dropped: closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { addr, cut }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// A real sidecar for `namespace/pod`, following the controller at `controller`, in front
/// of an app that answers 200 `ok`.
pub struct Sidecar {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    pub async fn start(namespace: &str, pod: &str, controller: SocketAddr) -> Sidecar {
        static APP: tokio::sync::OnceCell<SocketAddr> = tokio::sync::OnceCell::const_new();
        let app = *APP
            .get_or_init(|| async {
                super::apps::app(|_| async {
                    http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
                })
                .await
            })
            .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("token-{namespace}-{pod}\n")).unwrap();
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
                url: format!("http://{controller}"),
                namespace: namespace.into(),
                pod: pod.into(),
                token_file,
                idle_timeout: Duration::from_secs(2),
            }),
            reload_interval: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(1),
            client_timeouts: Default::default(),
            client_limits: Default::default(),
            stop: Default::default(),
        };
        tokio::spawn(sidecar.run(std::future::pending()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while client::get(admin_addr, "/readyz", &[]).await.status != StatusCode::OK {
            assert!(Instant::now() < deadline, "{namespace}/{pod} never ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sidecar { proxy, admin: admin_addr, _dir: dir }
    }

    /// The status a client gets now.
    pub async fn answer(&self) -> StatusCode {
        client::get(self.proxy, "/", &[]).await.status
    }
}

/// The last status the leader wrote for `name` of `plural` in `shop`.
pub fn last_status(api: &FakeApi, plural: &str, name: &str) -> Option<Value> {
    let path = format!("/apis/portcullis.dev/v1alpha1/namespaces/shop/{plural}/{name}/status");
    api.patches()
        .into_iter()
        .rev()
        .find(|(p, _)| *p == path)
        .map(|(_, body)| body["status"].clone())
}

/// The `Programmed` condition of a status.
pub fn programmed(status: &Value) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Programmed"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until the leader writes a status for `plural/name` that `accept` likes.
pub async fn wait_status(
    api: &FakeApi,
    plural: &str,
    name: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = last_status(api, plural, name)
            && accept(&status)
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no such status for {plural}/{name}; last: {:?}",
            last_status(api, plural, name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
