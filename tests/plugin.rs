//! `kubectl portcullis` against a fake API server on a real socket: controller replicas and
//! sidecars are small HTTP servers on 127.0.0.1 serving the real report types, reached
//! through the fake API's pod proxy as the plugin reaches them in a cluster.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use portcullis::admin::state::{Recent5xx, RequestNow, STATE_PATH, SidecarStatus, WindowNow};
use portcullis::controller::report::{
    Refusal, ReplicaReport, SIDECARS_PATH, SidecarReport, SidecarState,
};
use portcullis::plugin::{Output, PluginCli};
use serde_json::{Value, json};
use support::fake_api::FakeApi;
use tokio::net::TcpListener;

const SYSTEM: &str = "portcullis-system";
const SELECTOR: &str = "app.kubernetes.io/name=portcullis,app.kubernetes.io/component=controller";

/// An admin server answering each of `routes` (path, status, body); 404 elsewhere.
async fn serve(routes: Vec<(&'static str, u16, String)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let found = routes.iter().find(|(path, _, _)| *path == req.uri().path());
                    let (status, body) = match found {
                        Some((_, status, body)) => (*status, body.clone()),
                        None => (404, "not found\n".to_owned()),
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

async fn replica_server(report: &ReplicaReport) -> u16 {
    serve(vec![(SIDECARS_PATH, 200, serde_json::to_string(report).unwrap())]).await
}

async fn sidecar_server(status: &SidecarStatus) -> u16 {
    serve(vec![(STATE_PATH, 200, serde_json::to_string(status).unwrap())]).await
}

/// Stored where the pod proxy finds pods (`/api/v1/pods`) and where a namespace's list
/// finds them (the fake API lists each path's own collection).
fn store(api: &FakeApi, pod: Value) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_owned();
    api.apply("/api/v1/pods", pod.clone());
    api.apply(&format!("/api/v1/namespaces/{namespace}/pods"), pod);
}

fn controller_pod(name: &str, port: u16, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": SYSTEM, "labels": {
            "app.kubernetes.io/name": "portcullis", "app.kubernetes.io/component": "controller"}},
        "spec": {"containers": [{"name": "controller", "image": "portcullis",
            "ports": [{"name": "streams", "containerPort": 8090},
                      {"name": "admin", "containerPort": port}]}]},
        "status": {"phase": phase, "podIP": if phase == "Running" { "127.0.0.1" } else { "" }},
    })
}

/// An app pod, injected (a native sidecar with its admin port) when `admin` is given.
fn app_pod(namespace: &str, name: &str, admin: Option<u16>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": "app",
            "ports": [{"name": "http", "containerPort": 8081}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    });
    if let Some(port) = admin {
        pod["metadata"]["annotations"] = json!({"portcullis.dev/injected": "{}"});
        pod["spec"]["initContainers"] = json!([{"name": "portcullis-proxy", "image": "portcullis",
            "restartPolicy": "Always",
            "ports": [{"name": "http", "containerPort": 8080},
                      {"name": "portcullis-adm", "containerPort": port}]}]);
    }
    pod
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn report(pod: &str, replica: &str, state: SidecarState) -> SidecarReport {
    let connected = state != SidecarState::Disconnected;
    SidecarReport {
        namespace: "shop".to_owned(),
        pod: pod.to_owned(),
        replica: replica.to_owned(),
        sidecar_version: Some("0.1.0".to_owned()),
        state,
        connected_since: connected.then(|| at("2026-12-06T10:00:00Z")),
        disconnected_at: (!connected).then(|| at("2026-12-06T09:00:00Z")),
        latest_version: 7,
        acked_version: Some(7),
        refusal: None,
        policy: Some("shop/strict".to_owned()),
        windows: vec!["shop/db".to_owned()],
        active_windows: Vec::new(),
        holds: Vec::new(),
    }
}

/// Runs the plugin's command line against the fake API.
async fn plugin(api: &FakeApi, args: &[&str]) -> Result<Output, String> {
    let argv = std::iter::once("kubectl-portcullis").chain(args.iter().copied());
    let cli = PluginCli::try_parse_from(argv).unwrap();
    // As FakeApi::client(), with the plugin's own settings.
    let config = kube::Config::new(format!("http://{}", api.addr).parse().unwrap());
    let client = portcullis::plugin::fetch::client(config).unwrap();
    portcullis::plugin::run(&client, &cli.args).await.map_err(|e| e.to_string())
}

/// Two replicas splitting the sidecars of `shop` (web-2 moved from the first to the
/// second, and refused its newest config there), a third replica still Pending, and a
/// pod that only the first still remembers.
async fn cluster() -> FakeApi {
    let api = FakeApi::start().await;
    let mut web_1 = report("web-1", "portcullis-controller-0", SidecarState::Synced);
    web_1.active_windows = vec!["shop/db".to_owned()];
    let r0 = ReplicaReport {
        replica: "portcullis-controller-0".to_owned(),
        leader: true,
        complete: true,
        sidecars: vec![
            web_1,
            report("web-2", "portcullis-controller-0", SidecarState::Disconnected),
            report("gone", "portcullis-controller-0", SidecarState::Synced),
        ],
    };
    let mut web_2 = report("web-2", "portcullis-controller-1", SidecarState::Refused);
    web_2.acked_version = Some(6);
    web_2.refusal = Some(Refusal {
        version: Some(7),
        reason: "routes[0].timeouts.request: must be at most 1h".to_owned(),
        at: at("2026-12-06T10:01:00Z"),
    });
    let mut web_4 = report("web-4", "portcullis-controller-1", SidecarState::Outdated);
    web_4.sidecar_version = None;
    web_4.acked_version = None;
    let r1 = ReplicaReport {
        replica: "portcullis-controller-1".to_owned(),
        leader: false,
        complete: true,
        sidecars: vec![web_2, web_4],
    };
    store(&api, controller_pod("portcullis-controller-0", replica_server(&r0).await, "Running"));
    store(&api, controller_pod("portcullis-controller-1", replica_server(&r1).await, "Running"));
    store(&api, controller_pod("portcullis-controller-2", 9902, "Pending"));
    for name in ["web-1", "web-2", "web-3", "web-4"] {
        store(&api, app_pod("shop", name, Some(9901)));
    }
    store(&api, app_pod("shop", "plain", None));
    store(&api, app_pod("other", "api-1", Some(9901)));
    api
}

const SHOP_TABLE: &str = "\
NAMESPACE   POD     VERSION   REPLICA                   GENERATION   STATE      WINDOWS
shop        web-1   0.1.0     portcullis-controller-0   7/7          synced     shop/db
shop        web-2   0.1.0     portcullis-controller-1   6/7          refused    -
shop        web-3   -         -                         -            unknown    -
shop        web-4   -         portcullis-controller-1   -/7          outdated   -

shop/web-2: refused version 7: routes[0].timeouts.request: must be at most 1h
";

const PENDING_WARNING: &str = "warning: controller pod portcullis-system/portcullis-controller-2 \
                               is Pending; going on with the other replicas\n";

#[tokio::test]
async fn status_merges_the_replicas_reports_per_injected_pod() {
    let api = cluster().await;
    let out = plugin(&api, &["status", "-n", "shop"]).await.unwrap();
    assert_eq!(out.stdout, SHOP_TABLE);
    assert_eq!(out.stderr, PENDING_WARNING);
    let listed = api
        .requests()
        .into_iter()
        .find(|(_, path, _)| path == &format!("/api/v1/namespaces/{SYSTEM}/pods"));
    let (_, _, query) = listed.expect("the controller's pods are listed");
    assert!(query.contains("labelSelector=app.kubernetes.io%2Fname%3Dportcullis"), "{query}");

    let out = plugin(&api, &["status", "-A"]).await.unwrap();
    assert!(out.stdout.starts_with(
        "NAMESPACE   POD     VERSION   REPLICA                   GENERATION   STATE      WINDOWS\n\
         other       api-1   -         -                         -            unknown    -\n\
         shop        web-1   "
    ), "{}", out.stdout);
}

#[tokio::test]
async fn status_as_json_has_every_key_on_every_pod() {
    let api = cluster().await;
    let out = plugin(&api, &["status", "-n", "shop", "-o", "json"]).await.unwrap();
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert_eq!(
        rows[1],
        json!({
            "namespace": "shop", "pod": "web-2", "version": "0.1.0",
            "replica": "portcullis-controller-1", "ackedVersion": 6, "latestVersion": 7,
            "state": "refused", "activeWindows": [],
            "refusal": {"version": 7, "reason": "routes[0].timeouts.request: must be at most 1h",
                        "at": "2026-12-06T10:01:00Z"},
        })
    );
    assert_eq!(
        out.stdout.split("\n  },\n").nth(2).map(|third| format!("{third}\n  }},\n")),
        Some(
            r#"  {
    "namespace": "shop",
    "pod": "web-3",
    "version": null,
    "replica": null,
    "ackedVersion": null,
    "latestVersion": null,
    "state": "unknown",
    "activeWindows": [],
    "refusal": null
  },
"#
            .to_owned()
        )
    );
    let out = plugin(&api, &["status", "-n", "shop", "-o", "yaml"]).await.unwrap();
    assert!(
        out.stdout.starts_with("- namespace: shop\n  pod: web-1\n  version: 0.1.0\n"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn status_goes_on_without_a_replica_it_cannot_read_and_fails_without_any() {
    let api = FakeApi::start().await;
    let r0 = ReplicaReport {
        replica: "portcullis-controller-0".to_owned(),
        leader: true,
        complete: true,
        sidecars: vec![report("web-1", "portcullis-controller-0", SidecarState::Synced)],
    };
    let closed = support::closed_port().await.port();
    let garbage = serve(vec![(SIDECARS_PATH, 200, "<html>hello</html>".to_owned())]).await;
    store(&api, controller_pod("portcullis-controller-0", replica_server(&r0).await, "Running"));
    store(&api, controller_pod("portcullis-controller-1", closed, "Running"));
    store(&api, controller_pod("portcullis-controller-2", garbage, "Running"));
    store(&api, app_pod("shop", "web-1", Some(9901)));
    let out = plugin(&api, &["status", "-n", "shop"]).await.unwrap();
    assert_eq!(
        out.stdout,
        "\
NAMESPACE   POD     VERSION   REPLICA                   GENERATION   STATE    WINDOWS
shop        web-1   0.1.0     portcullis-controller-0   7/7          synced   -
"
    );
    assert_eq!(
        out.stderr,
        format!(
            "warning: cannot read /v1/sidecars from controller replica \
             portcullis-system/portcullis-controller-1 (port {closed}) through the pod proxy: \
             HTTP 503: error trying to reach service: dial tcp 127.0.0.1:{closed}: connect: \
             connection refused; going on with the other replicas\n\
             warning: cannot read /v1/sidecars from controller replica \
             portcullis-system/portcullis-controller-2 (port {garbage}) through the pod proxy: \
             the answer is not the expected JSON: expected value at line 1 column 1; going on \
             with the other replicas\n"
        )
    );

    api.delete("/api/v1/namespaces/portcullis-system/pods", SYSTEM, "portcullis-controller-0");
    let error = plugin(&api, &["status", "-n", "shop"]).await.unwrap_err();
    assert_eq!(
        error,
        format!(
            "no Portcullis controller replica in namespace portcullis-system answered: cannot \
             read /v1/sidecars from controller replica portcullis-system/portcullis-controller-1 \
             (port {closed}) through the pod proxy: HTTP 503: error trying to reach service: dial \
             tcp 127.0.0.1:{closed}: connect: connection refused; cannot read /v1/sidecars from \
             controller replica portcullis-system/portcullis-controller-2 (port {garbage}) \
             through the pod proxy: the answer is not the expected JSON: expected value at line \
             1 column 1"
        )
    );
}

#[tokio::test]
async fn no_controller_says_where_it_looked() {
    let api = FakeApi::start().await;
    store(&api, app_pod("shop", "web-1", Some(9901)));
    let error = plugin(&api, &["status", "-n", "shop"]).await.unwrap_err();
    assert_eq!(
        error,
        format!(
            "no Portcullis controller in namespace portcullis-system (selector {SELECTOR}): is \
             the chart installed? see --controller-namespace"
        )
    );
    let args = [
        "status",
        "-n",
        "shop",
        "--controller-namespace",
        "ops",
        "--controller-selector",
        "app=pc",
    ];
    let error = plugin(&api, &args).await.unwrap_err();
    assert_eq!(
        error,
        "no Portcullis controller in namespace ops (selector app=pc): is the chart installed? \
         see --controller-namespace"
    );
    // Nothing injected: nothing to ask the controller about.
    let out = plugin(&api, &["status", "-n", "empty"]).await.unwrap();
    assert_eq!(
        out,
        Output {
            stdout: String::new(),
            stderr: "No injected pods found in namespace empty.\n".to_owned()
        }
    );
    let out = plugin(&api, &["status", "-n", "empty", "-o", "json"]).await.unwrap();
    assert_eq!(out.stdout, "[]\n");
}

#[tokio::test]
async fn forbidden_names_the_rights_needed() {
    let api = cluster().await;
    api.forbid(&format!("/api/v1/namespaces/{SYSTEM}/pods/"));
    let error = plugin(&api, &["status", "-n", "shop"]).await.unwrap_err();
    let port = api.object("/api/v1/pods", SYSTEM, "portcullis-controller-0").unwrap()["spec"]
        ["containers"][0]["ports"][1]["containerPort"]
        .clone();
    assert_eq!(
        error,
        format!(
            "forbidden: you need \"get\" on \"pods/proxy\" in namespace portcullis-system (and \
             \"list\" on \"pods\"): pods \"portcullis-controller-0:{port}\" is forbidden: User \
             \"u\" cannot get resource \"pods/proxy\" in API group \"\" in the namespace \
             \"portcullis-system\""
        )
    );

    api.forbid("/api/v1/namespaces/shop/pods");
    let error = plugin(&api, &["status", "-n", "shop"]).await.unwrap_err();
    assert_eq!(
        error,
        "forbidden: you need \"list\" on \"pods\" in namespace shop: pods is forbidden: User \
         \"u\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\""
    );
    let error = plugin(&api, &["why", "web-1", "-n", "shop"]).await.unwrap_err();
    assert_eq!(
        error,
        "forbidden: you need \"get\" on \"pods\" in namespace shop: pods \"web-1\" is forbidden: \
         User \"u\" cannot get resource \"pods\" in API group \"\" in the namespace \"shop\""
    );
}

fn sidecar_state(
    windows: Vec<WindowNow>,
    request: RequestNow,
    recent: &[(&str, u64)],
) -> SidecarStatus {
    SidecarStatus {
        version: "0.1.0".to_owned(),
        generation: 7,
        controller_connected: true,
        policy: Some("shop/strict".to_owned()),
        windows,
        request,
        recent_5xx: Recent5xx {
            seconds: 300,
            by_reason: recent.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
        },
    }
}

fn under_maintenance() -> SidecarStatus {
    let windows = vec![WindowNow {
        name: "shop/db".to_owned(),
        active: true,
        until: Some(at("2026-12-06T18:00:00Z")),
        next: None,
        exempt_paths: vec!["/healthz".to_owned()],
        bypass: true,
    }];
    let request = RequestNow {
        status: Some(503),
        window: Some("shop/db".to_owned()),
        until: Some(at("2026-12-06T18:00:00Z")),
        retry_after: Some(840),
    };
    sidecar_state(windows, request, &[("maintenance", 12), ("none", 1)])
}

#[tokio::test]
async fn why_says_what_the_sidecar_enforces_and_what_the_controller_sees() {
    let api = cluster().await;
    let state = under_maintenance();
    store(&api, app_pod("shop", "web-1", Some(sidecar_server(&state).await)));
    let out = plugin(&api, &["why", "web-1", "-n", "shop"]).await.unwrap();
    assert_eq!(
        out.stdout,
        "\
Pod:          shop/web-1
Sidecar:      version 0.1.0, config generation 7, controller stream connected
Policy:       shop/strict
Windows:      shop/db: active until 2026-12-06T18:00:00Z; exempt paths /healthz; bypass configured
Requests:     a request gets 503 from window shop/db (Retry-After: 840s) until 2026-12-06T18:00:00Z
Recent 5xx:   over the last 300s: maintenance 12, none 1
Controller:   synced with replica portcullis-controller-0, acked/latest 7/7
"
    );
    assert_eq!(out.stderr, PENDING_WARNING);

    let out = plugin(&api, &["why", "web-1", "-n", "shop", "-o", "json"]).await.unwrap();
    let mut seen = report("web-1", "portcullis-controller-0", SidecarState::Synced);
    seen.active_windows = vec!["shop/db".to_owned()];
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!({"namespace": "shop", "pod": "web-1", "sidecar": state, "controller": seen})
    );

    // No window, and no replica knows it.
    let quiet = RequestNow { status: None, window: None, until: None, retry_after: None };
    let state = sidecar_state(Vec::new(), quiet, &[]);
    store(&api, app_pod("shop", "web-3", Some(sidecar_server(&state).await)));
    let out = plugin(&api, &["why", "web-3", "-n", "shop"]).await.unwrap();
    assert_eq!(
        out.stdout,
        "\
Pod:          shop/web-3
Sidecar:      version 0.1.0, config generation 7, controller stream connected
Policy:       shop/strict
Windows:      none
Requests:     requests go to the app; no window is scheduled
Recent 5xx:   no 5xx over the last 300s
Controller:   unknown: no replica reports this pod (its sidecar never connected)
"
    );
    let out = plugin(&api, &["why", "web-3", "-n", "shop", "-o", "yaml"]).await.unwrap();
    assert!(out.stdout.ends_with("\ncontroller: null\n"), "{}", out.stdout);
}

#[tokio::test]
async fn why_fails_clearly_on_pods_it_cannot_explain() {
    let api = cluster().await;
    let error = plugin(&api, &["why", "plain", "-n", "shop"]).await.unwrap_err();
    assert_eq!(error, "pod shop/plain has no portcullis-proxy container: it is not injected");
    let error = plugin(&api, &["why", "x", "-n", "shop"]).await.unwrap_err();
    assert_eq!(error, "pod shop/x not found");
    // web-2's admin port 9901 has nothing listening on 127.0.0.1 (or something that is not
    // a sidecar): either way it is named, with the path.
    let closed = support::closed_port().await.port();
    store(&api, app_pod("shop", "web-2", Some(closed)));
    let error = plugin(&api, &["why", "web-2", "-n", "shop"]).await.unwrap_err();
    assert_eq!(
        error,
        format!(
            "cannot read /v1/state from the sidecar of pod shop/web-2 (port {closed}) through the \
             pod proxy: HTTP 503: error trying to reach service: dial tcp 127.0.0.1:{closed}: \
             connect: connection refused"
        )
    );
}

#[tokio::test]
async fn why_without_a_controller_still_answers_for_the_sidecar() {
    let api = FakeApi::start().await;
    store(&api, app_pod("shop", "web-1", Some(sidecar_server(&under_maintenance()).await)));
    let out = plugin(&api, &["why", "web-1", "-n", "shop"]).await.unwrap();
    assert!(
        out.stdout.ends_with("Controller:   unknown: the replicas' reports could not be read\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr,
        format!(
            "warning: the controller's view is missing: no Portcullis controller in namespace \
             portcullis-system (selector {SELECTOR}): is the chart installed? see \
             --controller-namespace\n"
        )
    );
}

/// The binary itself: as `kubectl-portcullis` (a symlink, as on a PATH) and as
/// `portcullis kubectl`, with a kubeconfig whose context names the namespace.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_is_the_plugin_when_called_kubectl_portcullis() {
    let api = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-portcullis");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_portcullis"), &link).unwrap();
    let kubeconfig = dir.path().join("config");
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: u, namespace: shop}}}}]\n\
         users: [{{name: u, user: {{}}}}]\n",
        api.addr
    );
    std::fs::write(&kubeconfig, config).unwrap();
    let run = |program: std::path::PathBuf, args: &[&str], kubeconfig: std::path::PathBuf| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let home = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(program)
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("HOME", home)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .env_remove("PORTCULLIS_NAMESPACE")
                .output()
                .unwrap()
        })
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let out = run(link.clone(), &["status"], kubeconfig.clone()).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), SHOP_TABLE);
    assert_eq!(text(&out.stderr), PENDING_WARNING);

    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let out = run(binary, &["kubectl", "status"], kubeconfig.clone()).await.unwrap();
    assert_eq!(text(&out.stdout), SHOP_TABLE);

    let out = run(link.clone(), &["why", "web-9"], kubeconfig.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "portcullis: pod shop/web-9 not found\n");

    let out = run(link.clone(), &["status"], dir.path().join("missing")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("portcullis: the kubeconfig is unusable: "), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains(" { "), "{stderr}");

    let out = run(link, &["--help"], kubeconfig).await.unwrap();
    assert!(
        text(&out.stdout).contains("Usage: kubectl portcullis [OPTIONS] <COMMAND>"),
        "{}",
        text(&out.stdout)
    );
}
