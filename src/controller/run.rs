//! One controller replica, wired together: watchers feed the index, the stream server
//! answers sidecars, the admin server reports. Every replica serves streams; only status
//! writes will need a leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use tokio::net::TcpListener;

use super::auth::Authenticator;
use super::index::Index;
use super::metrics::ControllerMetrics;
use super::stream::StreamServer;
use super::watch::feed;
use crate::admin::{self, Endpoints};
use crate::api::{MaintenanceWindow, UpstreamPolicy};

pub struct Controller {
    pub client: kube::Client,
    pub streams: TcpListener,
    pub admin: TcpListener,
    pub keepalive: Duration,
}

#[derive(Clone)]
struct ControllerAdmin {
    metrics: Arc<ControllerMetrics>,
}

impl Endpoints for ControllerAdmin {
    fn ready(&self) -> bool {
        true
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn other(&self, _path: &str) -> Option<Response<Full<Bytes>>> {
        None
    }
}

impl Controller {
    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let index = Arc::new(Mutex::new(Index::default()));
        let metrics = Arc::new(ControllerMetrics::default());
        let client = self.client;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(feed(Api::<UpstreamPolicy>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<MaintenanceWindow>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<Pod>::all(client.clone()), index.clone()));
        tasks.spawn(feed(Api::<Secret>::all(client.clone()), index.clone()));
        tasks.spawn(admin::serve(self.admin, ControllerAdmin { metrics: metrics.clone() }));
        tasks.spawn(keep_gauges(index.clone(), metrics.clone()));
        let server = StreamServer {
            index,
            auth: Authenticator::new(client),
            keepalive: self.keepalive,
            metrics,
        };
        tracing::info!("controller started");
        server.serve_until(self.streams, shutdown).await;
        tasks.abort_all();
    }
}

async fn keep_gauges(index: Arc<Mutex<Index>>, metrics: Arc<ControllerMetrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        metrics.index_pods.set(index.pod_count() as i64);
        metrics.index_resources.set(index.resource_count() as i64);
    }
}
