//! `portcullis inject`, the built binary, on manifests of every kind that carries a pod:
//! the sidecar lands in each pod template, everything else comes out as it went in, the
//! output validates against the Kubernetes API, and injecting it again changes nothing.

#[path = "fixtures/inject/kubernetes_validate.rs"]
mod kubernetes_validate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject").join(name)
}

/// A self-signed CA certificate, as the controller's Secret holds one.
fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["portcullis-ca".to_owned()]).unwrap().cert.pem()
}

/// Runs `portcullis inject ARGS` with `stdin` on its standard input.
fn inject(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .arg("inject")
        .args(args)
        .env_remove("PORTCULLIS_CONTROLLER_CA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The documents of a YAML stream, empty ones left out.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

struct Run {
    input: Vec<Value>,
    output: Vec<Value>,
    stdout: String,
    stderr: String,
    ca: String,
}

/// Injects the multi-document fixture with a CA file.
fn run_fixture() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_pem();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let manifests = fixture("workloads.yaml");
    let out = inject(
        &["-f", manifests.to_str().unwrap(), "--ca-file", ca_file.to_str().unwrap()],
        "",
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let input = documents(&std::fs::read_to_string(manifests).unwrap());
    Run { input, output: documents(&stdout), stdout, stderr, ca }
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The pod template of a workload document.
fn pod_of(doc: &Value) -> &Value {
    match doc["kind"].as_str().unwrap() {
        "Pod" => doc,
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
        _ => &doc["spec"]["template"],
    }
}

/// The injected sidecar of a pod: the last init container.
fn sidecar_of(pod: &Value) -> &Value {
    let init = pod["spec"]["initContainers"].as_array().expect("init containers");
    let sidecar = init.last().unwrap();
    assert_eq!(sidecar["name"], "portcullis-proxy");
    sidecar
}

fn args_of(sidecar: &Value) -> Vec<&str> {
    sidecar["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect()
}

#[test]
fn injects_every_workload_kind_and_passes_the_rest_through() {
    let run = run_fixture();
    assert_eq!(run.output.len(), run.input.len());
    let kinds: Vec<&str> = run.output.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Service",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Pod",
            "ConfigMap",
            "Deployment"
        ]
    );
    // Documents that carry no pod come out as they went in.
    for (kind, name) in [("Service", "web"), ("ConfigMap", "web-config")] {
        assert_eq!(named(&run.output, kind, name), named(&run.input, kind, name));
    }

    // Each workload: the sidecar last among the init containers, its port named as the
    // app's was, the app's port renamed, and the CA handed over.
    let cases = [
        ("Deployment", "web", 8080, "http", Some("app-http")),
        ("StatefulSet", "db-proxy", 5432, "portcullis", None),
        ("DaemonSet", "node-api", 9100, "node-exporter", Some("app-node-export")),
        ("Job", "report", 8000, "http", Some("app-http")),
        ("CronJob", "nightly", 7000, "api", Some("app-api")),
        ("Pod", "debug", 8080, "http", Some("app-http")),
    ];
    for (kind, name, app_port, port_name, renamed) in cases {
        let pod = pod_of(named(&run.output, kind, name));
        let sidecar = sidecar_of(pod);
        assert_eq!(
            sidecar["ports"],
            json!([{"name": port_name, "containerPort": 4180, "protocol": "TCP"},
                   {"name": "portcullis-adm", "containerPort": 9901}]),
            "{kind}"
        );
        let upstream = format!("127.0.0.1:{app_port}");
        assert_eq!(args_of(sidecar)[4], upstream, "{kind}");
        // No pod of the fixture names its port for HTTP/2 or sets the annotation.
        assert_eq!(args_of(sidecar)[5..7], ["--app-protocol", "http1"], "{kind}");
        assert_eq!(sidecar["env"][2], json!({"name": "PORTCULLIS_CONTROLLER_CA", "value": run.ca}));
        let app_port_json = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["ports"].as_array().unwrap())
            .find(|p| p["containerPort"] == app_port)
            .unwrap();
        assert_eq!(app_port_json.get("name").and_then(Value::as_str), renamed, "{kind}");
        let annotation: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["portcullis.dev/injected"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(annotation["appPort"], app_port, "{kind}");
        assert_eq!(annotation["appProtocol"], "http1", "{kind}");
        assert_eq!(annotation["version"], VERSION);
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.last().unwrap()["name"], "portcullis-token", "{kind}");
        assert!(
            run.stderr.lines().any(|line| line.starts_with(&format!("{kind} "))
                && line.contains(&format!("/{name}: injected: "))),
            "{kind} {name}: {}",
            run.stderr
        );
    }

    // Probes by name went to the number; the app's own quantities kept their form.
    let web = &pod_of(named(&run.output, "Deployment", "web"))["spec"]["containers"][0];
    assert_eq!(web["readinessProbe"], json!({"httpGet": {"path": "/healthz", "port": 8080}}));
    assert_eq!(web["livenessProbe"], json!({"tcpSocket": {"port": 8080}}));
    assert_eq!(web["resources"]["requests"]["cpu"], 1);
    // Per-pod overrides: the CPU limit sets the workers.
    let db = sidecar_of(pod_of(named(&run.output, "StatefulSet", "db-proxy")));
    assert_eq!(args_of(db)[args_of(db).len() - 2..], ["--workers", "2"]);
    assert_eq!(db["resources"]["limits"], json!({"cpu": "2", "memory": "128Mi"}));
    // The CronJob's own init container still runs first.
    let nightly = pod_of(named(&run.output, "CronJob", "nightly"));
    assert_eq!(nightly["spec"]["initContainers"][0]["name"], "fetch");
    // A template without metadata got some, for the annotation.
    let report = pod_of(named(&run.output, "Job", "report"));
    assert!(report["metadata"]["annotations"]["portcullis.dev/injected"].is_string());

    // The workload that cannot be injected is left as it was, and the user is told why.
    assert_eq!(
        named(&run.output, "Deployment", "host-agent"),
        named(&run.input, "Deployment", "host-agent")
    );
    assert!(
        run.stderr.contains(
            "Deployment infra/host-agent: left unchanged (host_network): the pod uses the \
             node's network, where the sidecar cannot take over a port"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 7, "{}", run.stderr);

    kubernetes_validate::validate(&run.stdout, run.output.len());
}

#[test]
fn injecting_its_own_output_changes_nothing() {
    let run = run_fixture();
    let again = inject(&["-f", "-", "--ca-pem", &run.ca], &run.stdout, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), run.stdout);
    let stderr = text(&again.stderr);
    assert_eq!(stderr.matches("left unchanged (already_injected)").count(), 6, "{stderr}");
    assert_eq!(stderr.matches("left unchanged (host_network)").count(), 1, "{stderr}");
}

#[test]
fn reads_a_pod_from_stdin_with_the_ca_from_the_environment() {
    let ca = ca_pem();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  \
               - name: web\n    image: web:1\n    ports:\n    - name: http\n      \
               containerPort: 8080\n";
    let out = inject(&["-f", "-"], pod, &[("PORTCULLIS_CONTROLLER_CA", &ca)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Pod default/web: injected: sidecar port http (4180) in front of container web port \
         8080, app protocol http1 (default), app port renamed app-http\n"
    );
    let docs = documents(&text(&out.stdout));
    assert_eq!(
        docs,
        [json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "annotations": {"portcullis.dev/injected": format!(
                    r#"{{"version":"{VERSION}","port":"http","appPort":8080,"appProtocol":"http1","proxyPort":4180,"renamedTo":"app-http"}}"#
                )}
            },
            "spec": {
                "containers": [{"name": "web", "image": "web:1",
                    "ports": [{"name": "app-http", "containerPort": 8080}]}],
                "initContainers": [{
                    "name": "portcullis-proxy",
                    "image": format!("ghcr.io/portcullis-dev/portcullis:{VERSION}"),
                    "imagePullPolicy": "IfNotPresent",
                    "restartPolicy": "Always",
                    "args": ["proxy", "--listen", "0.0.0.0:4180", "--upstream", "127.0.0.1:8080",
                        "--app-protocol", "http1", "--admin", "0.0.0.0:9901",
                        "--controller", "https://portcullis.portcullis-system.svc:8090",
                        "--log-format", "json", "--workers", "1"],
                    "env": [
                        {"name": "POD_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "PORTCULLIS_CONTROLLER_CA", "value": ca}
                    ],
                    "ports": [
                        {"name": "http", "containerPort": 4180, "protocol": "TCP"},
                        {"name": "portcullis-adm", "containerPort": 9901}
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                        "limits": {"memory": "128Mi"}},
                    "startupProbe": {"httpGet": {"path": "/readyz", "port": 9901},
                        "periodSeconds": 1, "failureThreshold": 120},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9901},
                        "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/livez", "port": 9901}},
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "volumeMounts": [{"name": "portcullis-token",
                        "mountPath": "/var/run/secrets/portcullis", "readOnly": true}]
                }],
                "volumes": [{"name": "portcullis-token", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "portcullis",
                        "expirationSeconds": 3600, "path": "token"}}
                ]}}]
            }
        })]
    );
    kubernetes_validate::validate(&text(&out.stdout), 1);
}

#[test]
fn the_app_protocol_follows_the_port_name_and_the_annotation() {
    let ca = ca_pem();
    let manifests = "\
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop}
spec:
  containers:
  - name: api
    image: api:1
    ports: [{name: grpc-web, containerPort: 9000}]
---
apiVersion: v1
kind: Pod
metadata:
  name: legacy
  namespace: shop
  annotations: {portcullis.dev/app-protocol: http1}
spec:
  containers:
  - name: legacy
    image: legacy:1
    ports: [{name: grpc, containerPort: 9000}]
---
apiVersion: v1
kind: Pod
metadata:
  name: typo
  namespace: shop
  annotations: {portcullis.dev/app-protocol: grpc}
spec:
  containers:
  - name: typo
    image: typo:1
    ports: [{name: grpc, containerPort: 9000}]
";
    let out = inject(&["-f", "-", "--ca-pem", &ca], manifests, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Pod shop/api: injected: sidecar port grpc-web (4180) in front of container api port \
         9000, app protocol http2 (port name grpc-web), app port renamed app-grpc-web\n\
         Pod shop/legacy: injected: sidecar port grpc (4180) in front of container legacy port \
         9000, app protocol http1 (annotation), app port renamed app-grpc\n\
         Pod shop/typo: left unchanged (invalid_annotation): portcullis.dev/app-protocol: \
         \"grpc\" is neither http1 nor http2\n"
    );
    let input = documents(manifests);
    let output = documents(&text(&out.stdout));
    for (name, flag) in [("api", "http2"), ("legacy", "http1")] {
        let pod = named(&output, "Pod", name);
        assert_eq!(
            args_of(sidecar_of(pod))[3..7],
            ["--upstream", "127.0.0.1:9000", "--app-protocol", flag]
        );
        let annotation: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["portcullis.dev/injected"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(annotation["appProtocol"], flag, "{name}");
    }
    assert_eq!(named(&output, "Pod", "typo"), named(&input, "Pod", "typo"));
    kubernetes_validate::validate(&text(&out.stdout), 3);
}

/// A Deployment and its Service in one file: the Service's port reaching the container
/// port `api` by name says `kubernetes.io/h2c`, so the sidecar speaks HTTP/2 to the app,
/// as the webhook would decide with that Service in the cluster. The Service comes first
/// in the output as it went in; so does one in another namespace, which counts for nothing.
#[test]
fn a_service_in_the_file_says_the_apps_protocol() {
    let ca = ca_pem();
    let manifests = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api, tier: backend}}
    spec:
      containers:
      - name: api
        image: api:1
        ports: [{name: api, containerPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports:
  - {name: grpc, port: 80, targetPort: api, appProtocol: kubernetes.io/h2c}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: cart}
spec:
  selector: {app: api}
  ports:
  - {name: tls, port: 443, targetPort: api, appProtocol: https}
";
    let out = inject(&["-f", "-", "--ca-pem", &ca], manifests, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Deployment shop/api: injected: sidecar port api (4180) in front of container api \
         port 9000, app protocol http2 (Service api port grpc appProtocol kubernetes.io/h2c), \
         app port renamed app-api\n"
    );
    let input = documents(manifests);
    let output = documents(&text(&out.stdout));
    assert_eq!(output.len(), 3);
    let pod = pod_of(named(&output, "Deployment", "api"));
    assert_eq!(
        args_of(sidecar_of(pod))[3..7],
        ["--upstream", "127.0.0.1:9000", "--app-protocol", "http2"]
    );
    let annotation: Value = serde_json::from_str(
        pod["metadata"]["annotations"]["portcullis.dev/injected"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(annotation["appProtocol"], "http2");
    assert_eq!(output[1], input[1]);
    assert_eq!(output[2], input[2]);
    kubernetes_validate::validate(&text(&out.stdout), 3);

    // Without the Service, the port's name decides: HTTP/1.1.
    let alone = manifests.split("---\n").next().unwrap();
    let out = inject(&["-f", "-", "--ca-pem", &ca], alone, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("app protocol http1 (default)"), "{}", text(&out.stderr));
    let output = documents(&text(&out.stdout));
    assert_eq!(args_of(sidecar_of(pod_of(&output[0])))[5..7], ["--app-protocol", "http1"]);
}

/// Services that leave the protocol unknown leave the workload unchanged, and say how to
/// inject it anyway; a Service listed after its Deployment counts all the same.
#[test]
fn services_that_leave_the_protocol_unknown_leave_the_workload_alone() {
    let ca = ca_pem();
    let manifests = "\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        containers:
        - {name: web, image: web:1, ports: [{name: http, containerPort: 8080}]}
- apiVersion: v1
  kind: Service
  metadata: {name: web-tls}
  spec:
    selector: {app: web}
    ports: [{port: 443, targetPort: 8080, appProtocol: https}]
";
    let out = inject(&["-f", "-", "--ca-pem", &ca], manifests, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Deployment default/web: left unchanged (unsupported_app_protocol): Service web-tls \
         port 443 has appProtocol \"https\", which is neither HTTP/1.1 nor cleartext HTTP/2, \
         the protocols the sidecar speaks to the app; set the annotation \
         portcullis.dev/app-protocol to http1 or http2 to inject the pod anyway\n"
    );
    assert_eq!(documents(&text(&out.stdout)), documents(manifests));
}

/// The injector keeps its own protocol type, so as not to depend on the data plane: every
/// value it writes must be one the sidecar's `--app-protocol` takes, and the other way
/// round, or injected sidecars would not start (or could not be told a protocol).
#[test]
fn every_app_protocol_the_injector_writes_is_one_the_sidecar_takes() {
    use clap::ValueEnum;
    use portcullis::inject::AppProtocol;
    use portcullis::proxy::AppProtocol as SidecarProtocol;

    let written: Vec<&str> = AppProtocol::ALL.iter().map(|p| p.as_flag()).collect();
    assert_eq!(written, ["http1", "http2"]);
    for flag in &written {
        assert!(
            <SidecarProtocol as ValueEnum>::from_str(flag, false).is_ok(),
            "--app-protocol {flag}"
        );
    }
    let taken: Vec<String> = SidecarProtocol::value_variants()
        .iter()
        .map(|v| v.to_possible_value().unwrap().get_name().to_owned())
        .collect();
    assert_eq!(taken, written);
}

#[test]
fn the_config_file_shapes_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inject.yaml");
    std::fs::write(
        &config,
        "image: registry.local/portcullis:dev\nproxyPort: 15001\nadminPort: 15000\n\
         controllerUrl: https://pc.ops.svc:8090\nlogFormat: plain\n\
         resources: {requests: {cpu: 500m}, limits: {cpu: 3}}\n\
         excludedNamespaces: [infra]\n",
    )
    .unwrap();
    let manifests = fixture("workloads.yaml");
    let ca = ca_pem();
    let out = inject(
        &["-f", manifests.to_str().unwrap(), "--config", config.to_str().unwrap()],
        "",
        &[("PORTCULLIS_CONTROLLER_CA", &ca)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let output = documents(&text(&out.stdout));
    let web = sidecar_of(pod_of(named(&output, "Deployment", "web")));
    assert_eq!(web["image"], "registry.local/portcullis:dev");
    assert_eq!(
        args_of(web),
        [
            "proxy",
            "--listen",
            "0.0.0.0:15001",
            "--upstream",
            "127.0.0.1:8080",
            "--app-protocol",
            "http1",
            "--admin",
            "0.0.0.0:15000",
            "--controller",
            "https://pc.ops.svc:8090",
            "--log-format",
            "plain",
            "--workers",
            "3"
        ]
    );
    assert_eq!(web["resources"], json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "3"}}));
    // The DaemonSet's namespace is excluded by this config.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "DaemonSet infra/node-api: left unchanged (excluded_namespace): namespace infra \
             is excluded from injection"
        ),
        "{stderr}"
    );
    kubernetes_validate::validate(&text(&out.stdout), output.len());
}

#[test]
fn refuses_without_a_ca() {
    let out = inject(&["-f", "-"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--ca-file <FILE>"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = inject(&["-f", "-", "--ca-pem", "not a certificate"], "", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "portcullis inject: the CA holds no PEM certificate\n");
}

#[test]
fn a_broken_manifest_prints_nothing() {
    let ca = ca_pem();
    let broken = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\nkind: [unclosed\n";
    let out = inject(&["-f", "-", "--ca-pem", &ca], broken, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).starts_with("portcullis inject: -: document 2: "), "{:?}", out);

    let no_template = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n";
    let out = inject(&["-f", "-", "--ca-pem", &ca], no_template, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "portcullis inject: -: document 1: Deployment default/web: no pod template at \
         spec.template\n"
    );

    let out = inject(&["-f", "/nonexistent/manifests.yaml", "--ca-pem", &ca], "", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("portcullis inject: cannot read /nonexistent/manifests.yaml"),
        "{}",
        text(&out.stderr)
    );
}
