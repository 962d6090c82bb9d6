//! The other replicas of the controller. Sidecars are spread over every replica, but only
//! the leader writes statuses: it reads each other replica's `/v1/sidecars` report on its
//! admin port, found from the replicas' Pods (their IP, and the container port named
//! `admin`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::net::TcpStream;

use super::report::{ReplicaReport, SIDECARS_PATH};

/// The name of the admin port on a replica's container.
pub const ADMIN_PORT_NAME: &str = "admin";
/// How long one replica may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest report read (about 500 bytes a sidecar).
const MAX_REPORT: usize = 64 << 20;

/// How to find the other replicas.
#[derive(Clone)]
pub struct Peers {
    pub pods: Api<Pod>,
    /// The replicas' label selector, e.g. `app.kubernetes.io/component=controller`.
    pub selector: String,
    /// This replica's own pod name, left out.
    pub own: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot list the controller's replicas: {0}")]
    List(#[from] kube::Error),
    #[error("replica {peer} ({addr}) did not answer {SIDECARS_PATH}: {why}")]
    Unreachable { peer: String, addr: SocketAddr, why: String },
}

impl Peers {
    /// Every other replica's report; the replicas that could not be read, and why.
    pub async fn reports(&self) -> (Vec<ReplicaReport>, Vec<PeerError>) {
        let params = ListParams::default().labels(&self.selector);
        let pods = match self.pods.list(&params).await {
            Ok(list) => list.items,
            Err(e) => return (Vec::new(), vec![e.into()]),
        };
        let peers: Vec<(String, SocketAddr)> = pods
            .iter()
            .filter(|pod| pod.metadata.name.as_deref() != Some(self.own.as_str()))
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| Some((pod.metadata.name.clone()?, admin_address(pod)?)))
            .collect();
        let fetches = peers.into_iter().map(|(peer, addr)| async move {
            match tokio::time::timeout(PEER_TIMEOUT, fetch(addr)).await {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(why)) => Err(PeerError::Unreachable { peer, addr, why }),
                Err(_) => Err(PeerError::Unreachable {
                    peer,
                    addr,
                    why: format!("no answer within {PEER_TIMEOUT:?}"),
                }),
            }
        });
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for result in futures::future::join_all(fetches).await {
            match result {
                Ok(report) => reports.push(report),
                Err(e) => errors.push(e),
            }
        }
        (reports, errors)
    }
}

/// A running replica's IP and its container port named `admin`.
fn admin_address(pod: &Pod) -> Option<SocketAddr> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))?
        .container_port;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

async fn fetch(addr: SocketAddr) -> Result<ReplicaReport, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(SIDECARS_PATH)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_REPORT)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("unreadable report: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_reached_on_its_pod_ip_and_admin_port() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "portcullis-b"},
            "spec": {"containers": [{"name": "controller", "ports": [
                {"name": "stream", "containerPort": 8090},
                {"name": "admin", "containerPort": 9902}
            ]}]},
            "status": {"phase": "Running", "podIP": "10.1.2.3"}
        }))
        .unwrap();
        assert_eq!(admin_address(&pod), Some("10.1.2.3:9902".parse().unwrap()));
        let mut pending = pod.clone();
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert_eq!(admin_address(&pending), None);
    }
}
