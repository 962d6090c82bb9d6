//! One controller replica, wired together: watchers feed the index, the stream server
//! answers sidecars, the admin server reports, and the status writer runs while this
//! replica holds the Lease. Every replica serves streams; only status writes need a leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::Api;
use tokio::net::TcpListener;

use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use super::auth::Authenticator;
use super::index::Index;
use super::peers::Peers;
use super::report::{ReplicaReport, SIDECARS_PATH, SidecarState};
use super::sidecars::Sidecars;
use super::status::StatusWriter;
use super::stream::StreamServer;
use super::watch::{feed, services};
use crate::admin::{self, Endpoints};
use crate::api::{MaintenanceWindow, UpstreamPolicy};
use crate::inject::InjectConfig;
use crate::inject::webhook::Webhook;
use crate::telemetry::controller_metrics::ControllerMetrics;
use crate::tls::CertStore;
use crate::tls::from_dir::FromDir;
use crate::tls::self_issued::SelfIssued;
use crate::tls::serve::serve;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use std::convert::Infallible;
use tokio_rustls::TlsAcceptor;

pub struct Controller {
    pub client: kube::Client,
    pub streams: TcpListener,
    pub admin: TcpListener,
    pub keepalive: Duration,
    pub leadership: Leadership,
    /// Where the serving certificate comes from. `None` serves the streams in clear, which
    /// only tests on one machine do.
    pub certs: Option<CertSource>,
    /// The injection webhook, served over the same TLS as the streams (needs `certs`).
    pub webhook: Option<WebhookListener>,
    /// How to find this controller's other replicas: the leader counts the sidecars that
    /// follow them too. `None`: this replica alone.
    pub peers: Option<PeerSelector>,
}

/// The replicas' Pods: their namespace and label selector.
#[derive(Clone, Debug)]
pub struct PeerSelector {
    pub namespace: String,
    pub selector: String,
}

pub struct WebhookListener {
    pub listener: TcpListener,
    pub config: Arc<InjectConfig>,
}

/// Where the controller's serving certificate comes from.
pub enum CertSource {
    /// Its own CA, kept in a Secret (the default).
    SelfIssued(Box<SelfIssued>),
    /// A mounted Secret that someone else keeps (cert-manager).
    Dir(FromDir),
}

impl CertSource {
    /// Keeps `store` serving a current certificate for as long as the process runs.
    async fn keep(self, store: Arc<CertStore>, metrics: Arc<ControllerMetrics>) {
        match self {
            CertSource::SelfIssued(keeper) => keeper.run(store, metrics).await,
            CertSource::Dir(dir) => dir.run(store, metrics).await,
        }
    }
}

/// Who writes statuses.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// The holder of a Lease, so that one replica writes and the others stand by.
    Lease { namespace: String, identity: String },
    /// This replica alone (one replica, or tests).
    Always,
    /// Never: a replica that only serves streams beside a leader (tests).
    Never { identity: String },
}

/// The Lease the replicas compete for.
pub const LEASE_NAME: &str = "portcullis-controller";

#[derive(Clone)]
struct ControllerAdmin {
    metrics: Arc<ControllerMetrics>,
    /// Not ready until there is a certificate to serve, when TLS is on.
    certs: Option<Arc<CertStore>>,
    /// Not ready until every watched kind's first list is in the index.
    complete: watch::Receiver<bool>,
    sidecars: Arc<Mutex<Sidecars>>,
    leading: Arc<AtomicBool>,
}

impl Endpoints for ControllerAdmin {
    fn ready(&self) -> bool {
        *self.complete.borrow() && self.certs.as_ref().is_none_or(|store| store.ready())
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    /// `/v1/sidecars`: pod names, versions and states, no config detail (see
    /// docs/controller.md), read by the leader and by `kubectl portcullis`.
    fn other(&self, path: &str, _local: bool) -> Option<hyper::Response<Full<Bytes>>> {
        (path == SIDECARS_PATH).then(|| {
            let sidecars = self.sidecars.lock().unwrap_or_else(|e| e.into_inner());
            let report = ReplicaReport {
                replica: sidecars.replica().to_owned(),
                leader: self.leading.load(Ordering::Acquire),
                complete: *self.complete.borrow(),
                sidecars: sidecars.report(jiff::Timestamp::now()),
            };
            drop(sidecars);
            let body = serde_json::to_string(&report).expect("a report serializes");
            admin::reply(http::StatusCode::OK, "application/json", body)
        })
    }
}

impl Controller {
    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let index = Arc::new(Mutex::new(Index::default()));
        let complete = index.lock().unwrap_or_else(|e| e.into_inner()).completion();
        let metrics = Arc::new(ControllerMetrics::default());
        let identity = leader_identity(&self.leadership);
        let replica = identity.clone().unwrap_or_else(|| "controller".to_owned());
        let sidecars = Arc::new(Mutex::new(Sidecars::new(replica.clone())));
        let leading = Arc::new(AtomicBool::new(false));
        let client = self.client;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(feed(Api::<UpstreamPolicy>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<MaintenanceWindow>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<Pod>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<Secret>::all(client.clone()), index.clone()));
        let store = self.certs.map(|source| {
            let store = Arc::new(CertStore::default());
            tasks.spawn(source.keep(store.clone(), metrics.clone()));
            store
        });
        let tls = store.as_ref().map(|store| TlsAcceptor::from(store.server_config()));
        let endpoints = ControllerAdmin {
            metrics: metrics.clone(),
            certs: store.clone(),
            complete,
            sidecars: sidecars.clone(),
            leading: leading.clone(),
        };
        tasks.spawn(admin::serve(self.admin, endpoints));
        tasks.spawn(keep_gauges(index.clone(), sidecars.clone(), metrics.clone()));
        let recorder = Recorder::new(
            client.clone(),
            Reporter { controller: "portcullis".into(), instance: identity.clone() },
        );
        if let (Some(setup), Some(tls), Some(store)) = (self.webhook, &tls, &store) {
            let store = store.clone();
            // Only the webhook reads Services: their ports' appProtocol.
            let (known, follow) = services(Api::<Service>::all(client.clone()));
            tasks.spawn(follow);
            let webhook = Arc::new(Webhook {
                config: setup.config,
                ca_pem: Arc::new(move || store.ca_pem().unwrap_or_default()),
                services: Arc::new(move |namespace| {
                    known.state_filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
                }),
                metrics: metrics.clone(),
                recorder: Some(recorder.clone()),
            });
            let service = service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(webhook.handle(req).await) }
            });
            tasks.spawn(serve(setup.listener, Some(tls.clone()), service, std::future::pending()));
        }
        let peers = self.peers.map(|PeerSelector { namespace, selector }| Peers {
            pods: Api::namespaced(client.clone(), &namespace),
            selector,
            own: replica.clone(),
        });
        let writer = StatusWriter::new(client.clone(), index.clone(), metrics.clone(), recorder)
            .with_sidecars(sidecars.clone(), peers);
        tasks.spawn(write_statuses(client.clone(), self.leadership, writer, leading));
        let server = StreamServer {
            index,
            auth: Authenticator::new(client),
            keepalive: self.keepalive,
            metrics,
            tls,
            sidecars,
        };
        tracing::info!("controller started");
        server.serve_until(self.streams, shutdown).await;
        tasks.abort_all();
    }
}

fn leader_identity(leadership: &Leadership) -> Option<String> {
    match leadership {
        Leadership::Lease { identity, .. } | Leadership::Never { identity } => {
            Some(identity.clone())
        }
        Leadership::Always => None,
    }
}

/// Runs the status writer while this replica holds the Lease (or always, or never).
async fn write_statuses(
    client: kube::Client,
    leadership: Leadership,
    writer: StatusWriter,
    leading: Arc<AtomicBool>,
) {
    let (namespace, identity) = match leadership {
        Leadership::Lease { namespace, identity } => (namespace, identity),
        Leadership::Always => {
            leading.store(true, Ordering::Release);
            let (_keep, leader) = watch::channel(true);
            return writer.run(leader).await;
        }
        Leadership::Never { .. } => return,
    };
    let mut delay = Duration::from_secs(1);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(e) => {
                tracing::warn!("cannot take part in leader election yet, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let (leader, _lease_task) = manager.watch().await;
    let mut mirror = leader.clone();
    tokio::spawn(async move {
        loop {
            leading.store(*mirror.borrow_and_update(), Ordering::Release);
            if mirror.changed().await.is_err() {
                return;
            }
        }
    });
    writer.run(leader).await;
}

async fn keep_gauges(
    index: Arc<Mutex<Index>>,
    sidecars: Arc<Mutex<Sidecars>>,
    metrics: Arc<ControllerMetrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
        index.prune();
        metrics.index_pods.set(index.pod_count() as i64);
        metrics.index_resources.set(index.resource_count() as i64);
        let mut sidecars = sidecars.lock().unwrap_or_else(|e| e.into_inner());
        sidecars.retain(|pod| index.has_pod(pod));
        drop(index);
        count_sidecars(&metrics, &sidecars.census());
    }
}

fn count_sidecars(metrics: &ControllerMetrics, census: &[(SidecarState, Option<&str>)]) {
    use crate::telemetry::controller_metrics::{SidecarStateLabels, SidecarVersionLabels};
    metrics.sidecars.clear();
    metrics.sidecar_versions.clear();
    for state in [
        SidecarState::Synced,
        SidecarState::Pending,
        SidecarState::Refused,
        SidecarState::Outdated,
        SidecarState::Disconnected,
    ] {
        let n = census.iter().filter(|(s, _)| *s == state).count();
        metrics.sidecars.get_or_create(&SidecarStateLabels { state: state.as_str() }).set(n as i64);
    }
    for (_, version) in census {
        let version = version.unwrap_or("unknown").to_owned();
        metrics.sidecar_versions.get_or_create(&SidecarVersionLabels { version }).inc();
    }
}
