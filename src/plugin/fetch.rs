//! The plugin's reads, all through the API server with the user's own credentials: pods,
//! and the admin endpoints of controller replicas and sidecars through the pod proxy
//! (`/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}`), so that no port of the
//! cluster needs to be exposed to the user.

use std::time::Duration;

use futures::future::join_all;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, Config};
use serde::de::DeserializeOwned;

use super::pods;
use crate::controller::report::{ReplicaReport, SIDECARS_PATH};

/// How long one admin endpoint may take to answer through the pod proxy.
const PROXY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("the kubeconfig is unusable: {0}")]
    Kubeconfig(String),
    #[error("unauthorized: the API server refused the kubeconfig's credentials: {0}")]
    Unauthorized(String),
    #[error("forbidden: you need {need}: {message}")]
    Forbidden { need: String, message: String },
    #[error("cannot reach the API server: {0}")]
    ApiServer(String),
    #[error("the API server refused to {doing}: {message}")]
    Refused { doing: String, message: String },
    #[error("pod {namespace}/{pod} not found")]
    PodNotFound { namespace: String, pod: String },
    #[error(
        "pod {namespace}/{pod} has no {} container: it is not injected",
        crate::inject::SIDECAR_NAME
    )]
    NotInjected { namespace: String, pod: String },
    #[error(
        "pod {namespace}/{pod}: its {} container has no port named {}",
        crate::inject::SIDECAR_NAME,
        crate::inject::ADMIN_PORT_NAME
    )]
    NoAdminPort { namespace: String, pod: String },
    #[error("pod {namespace}/{pod} is {state}: its sidecar cannot be asked")]
    NotReachable { namespace: String, pod: String, state: String },
    #[error(
        "cannot read {path} from {what} {namespace}/{pod} (port {port}) through the pod proxy: {reason}"
    )]
    Unreachable {
        what: &'static str,
        namespace: String,
        pod: String,
        port: i32,
        path: String,
        reason: String,
    },
    #[error(
        "no Portcullis controller in namespace {namespace} (selector {selector}): is the chart \
         installed? see --controller-namespace"
    )]
    NoController { namespace: String, selector: String },
    #[error("no Portcullis controller replica in namespace {namespace} answered: {}", reasons.join("; "))]
    NoReplicaAnswered { namespace: String, reasons: Vec<String> },
    #[error("cannot write the output: {0}")]
    Output(String),
}

/// A client from the kubeconfig (`KUBECONFIG`, `~/.kube/config`, or in a pod its service
/// account), with `--kubeconfig` and `--context` as kubectl takes them.
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<Client, PluginError> {
    use std::error::Error as _;
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        // Config::infer's own message leads with the in-cluster attempt, which is not what
        // a user at a terminal needs to read.
        (None, None) => Config::infer().await.map_err(|e| match e.source() {
            Some(kubeconfig) => kubeconfig.to_string(),
            None => e.to_string(),
        }),
        (None, Some(_)) => Config::from_kubeconfig(&options).await.map_err(|e| e.to_string()),
        (Some(path), _) => match kube::config::Kubeconfig::read_from(path) {
            Ok(file) => {
                Config::from_custom_kubeconfig(file, &options).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    client(config.map_err(PluginError::Kubeconfig)?)
}

/// The plugin's client for `config`. Without kube's default retries: through the pod proxy
/// a replica or sidecar that cannot be reached is a 503, which they would retry 15 times
/// with a backoff that grows to minutes; a command line says so now instead.
pub fn client(mut config: Config) -> Result<Client, PluginError> {
    config.default_retry = false;
    Client::try_from(config).map_err(|e| PluginError::Kubeconfig(chain(&e)))
}

/// The pods of a namespace (every namespace for `None`).
pub async fn list_pods(
    client: &Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<Pod>, PluginError> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let params = match selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let scope = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in all namespaces".to_owned(),
    };
    match api.list(&params).await {
        Ok(list) => Ok(list.items),
        Err(e) => Err(api_error(e, &format!("\"list\" on \"pods\" {scope}"), "list pods")),
    }
}

pub async fn get_pod(client: &Client, namespace: &str, name: &str) -> Result<Pod, PluginError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.get(name).await {
        Ok(pod) => Ok(pod),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(PluginError::PodNotFound { namespace: namespace.to_owned(), pod: name.to_owned() })
        }
        Err(e) => Err(api_error(
            e,
            &format!("\"get\" on \"pods\" in namespace {namespace}"),
            &format!("get pod {namespace}/{name}"),
        )),
    }
}

/// An admin endpoint of a pod, through the pod proxy.
pub struct Target<'a> {
    /// What the pod is, for messages: `controller replica`, `the sidecar of pod`.
    pub what: &'static str,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub port: i32,
}

/// `GET {path}` on the target, as JSON of type `T`.
pub async fn proxy_get<T: DeserializeOwned>(
    client: &Client,
    target: &Target<'_>,
    path: &str,
) -> Result<T, PluginError> {
    let Target { what, namespace, pod, port } = *target;
    let unreachable = |reason: String| PluginError::Unreachable {
        what,
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        port,
        path: path.to_owned(),
        reason,
    };
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(uri)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let response = client.send(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?;
        Ok::<_, kube::Error>((status, body.to_bytes()))
    };
    let (status, body) = match tokio::time::timeout(PROXY_TIMEOUT, exchange).await {
        Err(_) => {
            return Err(unreachable(format!("no answer within {}s", PROXY_TIMEOUT.as_secs())));
        }
        Ok(Err(e)) => return Err(PluginError::ApiServer(chain(&e))),
        Ok(Ok(answer)) => answer,
    };
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| unreachable(format!("the answer is not the expected JSON: {e}")));
    }
    // The API server's own refusals are Status objects; anything else is the pod's answer,
    // passed through.
    let api_status = serde_json::from_slice::<kube::core::Status>(&body)
        .ok()
        .filter(|s| s.code == status.as_u16() && !s.message.is_empty());
    let pods_kind =
        api_status.as_ref().and_then(|s| s.details.as_ref()).is_some_and(|d| d.kind == "pods");
    match (status.as_u16(), api_status) {
        (403, Some(s)) => Err(PluginError::Forbidden {
            need: format!(
                "\"get\" on \"pods/proxy\" in namespace {namespace} (and \"list\" on \"pods\")"
            ),
            message: s.message,
        }),
        (401, Some(s)) => Err(PluginError::Unauthorized(s.message)),
        (404, Some(_)) if pods_kind => {
            Err(PluginError::PodNotFound { namespace: namespace.to_owned(), pod: pod.to_owned() })
        }
        (code, Some(s)) => Err(unreachable(format!("HTTP {code}: {}", s.message))),
        (code, None) => {
            let text = String::from_utf8_lossy(&body);
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let first: String = first.chars().take(200).collect();
            Err(unreachable(format!("HTTP {code}: {first}")))
        }
    }
}

/// Every controller replica's report. Replicas that are not running, or cannot be
/// reached, are left out with a warning, as long as one answers.
pub async fn replica_reports(
    client: &Client,
    namespace: &str,
    selector: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<ReplicaReport>, PluginError> {
    let replicas = list_pods(client, Some(namespace), Some(selector)).await?;
    if replicas.is_empty() {
        return Err(PluginError::NoController {
            namespace: namespace.to_owned(),
            selector: selector.to_owned(),
        });
    }
    let mut reasons = Vec::new();
    let mut targets = Vec::new();
    for replica in &replicas {
        let (_, name) = pods::key(replica);
        match (pods::reachable(replica), pods::controller_admin_port(replica)) {
            (Err(state), _) => {
                reasons.push(format!("controller pod {namespace}/{name} is {state}"))
            }
            (Ok(()), None) => reasons.push(format!(
                "controller pod {namespace}/{name} has no container port named {}",
                pods::CONTROLLER_ADMIN_PORT_NAME
            )),
            (Ok(()), Some(port)) => targets.push((name, port)),
        }
    }
    let asks = targets.iter().map(|(pod, port)| async move {
        let target = Target { what: "controller replica", namespace, pod, port: *port };
        proxy_get::<ReplicaReport>(client, &target, SIDECARS_PATH).await
    });
    let mut reports = Vec::new();
    for answer in join_all(asks).await {
        match answer {
            Ok(report) => reports.push(report),
            // The same rights cover every replica: no point going on.
            Err(e @ (PluginError::Forbidden { .. } | PluginError::Unauthorized(_))) => {
                return Err(e);
            }
            Err(e) => reasons.push(e.to_string()),
        }
    }
    if reports.is_empty() {
        return Err(PluginError::NoReplicaAnswered { namespace: namespace.to_owned(), reasons });
    }
    warnings.extend(reasons.into_iter().map(|r| format!("{r}; going on with the other replicas")));
    for report in reports.iter().filter(|r| !r.complete) {
        warnings.push(format!(
            "controller replica {} is still loading its index: it reports no sidecars yet",
            report.replica
        ));
    }
    Ok(reports)
}

/// A kube-rs error from the API server's answer, in the terms of what was being done.
fn api_error(error: kube::Error, need: &str, doing: &str) -> PluginError {
    match error {
        kube::Error::Api(s) if s.code == 403 => {
            PluginError::Forbidden { need: need.to_owned(), message: s.message }
        }
        kube::Error::Api(s) if s.code == 401 => PluginError::Unauthorized(s.message),
        kube::Error::Api(s) => PluginError::Refused { doing: doing.to_owned(), message: s.message },
        other => PluginError::ApiServer(chain(&other)),
    }
}

/// An error and its causes on one line, each said once: transport errors wrap the cause
/// that matters (connection refused, certificate unknown) several layers down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
