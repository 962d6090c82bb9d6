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

/// The sidecar's stop token: its last env var, 32 lowercase hex characters.
fn token_of(sidecar: &Value) -> String {
    let env = sidecar["env"].as_array().unwrap();
    let last = env.last().unwrap();
    assert_eq!(last["name"], "PORTCULLIS_STOP_TOKEN");
    let token = last["value"].as_str().unwrap().to_owned();
    assert!(
        token.len() == 32 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{token:?}"
    );
    token
}

/// The preStop hook `portcullis inject` gives the app container, with `token`.
fn pre_stop(token: &str) -> Value {
    json!({"httpGet": {"path": "/prestop", "port": 9901,
        "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": token}]}})
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
    // The app's own preStop (the CronJob's) is kept; the StatefulSet's 4s grace period
    // lowers the stop delay to 2s.
    let cases = [
        ("Deployment", "web", 8080, "http", Some("app-http"), "5s", "added"),
        ("StatefulSet", "db-proxy", 5432, "portcullis", None, "2s", "added"),
        ("DaemonSet", "node-api", 9100, "node-exporter", Some("app-node-export"), "5s", "added"),
        ("Job", "report", 8000, "http", Some("app-http"), "5s", "added"),
        ("CronJob", "nightly", 7000, "api", Some("app-api"), "5s", "kept"),
        ("Pod", "debug", 8080, "http", Some("app-http"), "5s", "added"),
    ];
    let mut tokens = std::collections::BTreeSet::new();
    for (kind, name, app_port, port_name, renamed, stop_delay, pre_stop_done) in cases {
        let pod = pod_of(named(&run.output, kind, name));
        let sidecar = sidecar_of(pod);
        let args = args_of(sidecar);
        let at = args.iter().position(|a| *a == "--stop-delay").unwrap();
        assert_eq!(args[at - 2..at + 2], ["--log-format", "json", "--stop-delay", stop_delay]);
        let token = token_of(sidecar);
        let app = &pod["spec"]["containers"][0];
        if pre_stop_done == "added" {
            assert_eq!(app["lifecycle"], json!({"preStop": pre_stop(&token)}), "{kind}");
        } else {
            let own = &pod_of(named(&run.input, kind, name))["spec"]["containers"][0]["lifecycle"];
            assert_eq!(&app["lifecycle"], own, "{kind}");
        }
        tokens.insert(token);
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
        assert_eq!(annotation["stopDelay"], stop_delay, "{kind}");
        assert_eq!(annotation["preStop"], pre_stop_done, "{kind}");
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
    // A token of its own for each workload.
    assert_eq!(tokens.len(), 6);
    for line in [
        "StatefulSet shop/db-proxy: injected: sidecar port portcullis (4180) in front of \
         container pgbouncer port 5432, app protocol http1 (default), preStop added (2s), stop \
         delay 2s: the configured 5s lowered to half of terminationGracePeriodSeconds (4)",
        "CronJob default/nightly: injected: sidecar port api (4180) in front of container batch \
         port 7000, app protocol http1 (default), app port renamed app-api, the app's own \
         preStop kept: the sidecar learns the pod is stopping only at its own SIGTERM",
    ] {
        assert!(run.stderr.lines().any(|l| l == line), "{line}\nnot in\n{}", run.stderr);
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
         8080, app protocol http1 (default), app port renamed app-http, preStop added (5s)\n"
    );
    let docs = documents(&text(&out.stdout));
    let token = token_of(sidecar_of(&docs[0]));
    assert_eq!(
        docs,
        [json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "annotations": {"portcullis.dev/injected": format!(
                    r#"{{"version":"{VERSION}","port":"http","appPort":8080,"appProtocol":"http1","proxyPort":4180,"renamedTo":"app-http","stopDelay":"5s","preStop":"added"}}"#
                )}
            },
            "spec": {
                "containers": [{"name": "web", "image": "web:1",
                    "ports": [{"name": "app-http", "containerPort": 8080}],
                    "lifecycle": {"preStop": {"httpGet": {"path": "/prestop", "port": 9901,
                        "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": token}]}}}}],
                "initContainers": [{
                    "name": "portcullis-proxy",
                    "image": format!("ghcr.io/portcullis-dev/portcullis:{VERSION}"),
                    "imagePullPolicy": "IfNotPresent",
                    "restartPolicy": "Always",
                    "args": ["proxy", "--listen", "0.0.0.0:4180", "--upstream", "127.0.0.1:8080",
                        "--app-protocol", "http1", "--admin", "0.0.0.0:9901",
                        "--controller", "https://portcullis.portcullis-system.svc:8090",
                        "--log-format", "json", "--stop-delay", "5s", "--workers", "1"],
                    "env": [
                        {"name": "POD_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "PORTCULLIS_CONTROLLER_CA", "value": ca},
                        {"name": "PORTCULLIS_STOP_TOKEN", "value": token}
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
         9000, app protocol http2 (port name grpc-web), app port renamed app-grpc-web, preStop \
         added (5s)\n\
         Pod shop/legacy: injected: sidecar port grpc (4180) in front of container legacy port \
         9000, app protocol http1 (annotation), app port renamed app-grpc, preStop added (5s)\n\
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
         app port renamed app-api, preStop added (5s)\n"
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
            "--stop-delay",
            "5s",
            "--workers",
            "3"
        ]
    );
    // The hook calls the admin port of this config.
    let app = &pod_of(named(&output, "Deployment", "web"))["spec"]["containers"][0];
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"]["port"], 15000);
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

/// The app's preStop hook as `portcullis inject` writes it: the annotation's delay
/// honoured, one that is no duration or that leaves no time to stop refused, a pod with no
/// grace period left without a hook; each pod its own token, shown by its hook.
#[test]
fn the_stop_delay_follows_the_annotation_and_the_grace_period() {
    let ca = ca_pem();
    let pod = |name: &str, annotation: Option<&str>, grace: Option<i64>| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"containers": [{"name": "web", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}],
                "lifecycle": {"postStart": {"exec": {"command": ["warm"]}}}}]}});
        if let Some(value) = annotation {
            pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": value});
        }
        if let Some(grace) = grace {
            pod["spec"]["terminationGracePeriodSeconds"] = json!(grace);
        }
        pod
    };
    let input = [
        pod("slow", Some("12s"), None),
        pod("typo", Some("12"), None),
        pod("greedy", Some("1m"), Some(60)),
        pod("abrupt", None, Some(0)),
    ];
    let manifests: Vec<String> = input.iter().map(|p| serde_yaml::to_string(p).unwrap()).collect();
    let out = inject(&["-f", "-", "--ca-pem", &ca], &manifests.join("---\n"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "Pod shop/slow: injected: sidecar port http (4180) in front of container web port 8080, \
         app protocol http1 (default), app port renamed app-http, preStop added (12s, \
         portcullis.dev/stop-delay)\n\
         Pod shop/typo: left unchanged (invalid_annotation): portcullis.dev/stop-delay: \"12\" \
         is not a duration (e.g. 5s, 1m30s, 0s)\n\
         Pod shop/greedy: left unchanged (invalid_annotation): portcullis.dev/stop-delay: 1m is \
         not less than the pod's terminationGracePeriodSeconds (60), which would leave the app \
         no time to stop\n\
         Pod shop/abrupt: injected: sidecar port http (4180) in front of container web port \
         8080, app protocol http1 (default), app port renamed app-http, no preStop: \
         terminationGracePeriodSeconds is not above 0, and the kubelet runs no preStop hook \
         without a grace period, stop delay 0s: the configured 5s lowered to half of \
         terminationGracePeriodSeconds (0)\n"
    );
    let output = documents(&text(&out.stdout));
    let slow = named(&output, "Pod", "slow");
    let args = args_of(sidecar_of(slow));
    assert_eq!(args[11..17], ["--log-format", "json", "--stop-delay", "12s", "--workers", "1"]);
    let token = token_of(sidecar_of(slow));
    // The postStart stays; the hook goes beside it.
    assert_eq!(
        slow["spec"]["containers"][0]["lifecycle"],
        json!({"postStart": {"exec": {"command": ["warm"]}}, "preStop": pre_stop(&token)})
    );
    let annotation: Value = serde_json::from_str(
        slow["metadata"]["annotations"]["portcullis.dev/injected"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&annotation["stopDelay"], &annotation["preStop"]),
        (&json!("12s"), &json!("added"))
    );
    for name in ["typo", "greedy"] {
        assert_eq!(named(&output, "Pod", name), named(&input, "Pod", name));
    }
    let abrupt = named(&output, "Pod", "abrupt");
    assert_eq!(
        abrupt["spec"]["containers"][0]["lifecycle"],
        json!({"postStart": {"exec": {"command": ["warm"]}}})
    );
    assert_eq!(args_of(sidecar_of(abrupt))[14], "0s");
    assert_ne!(token_of(sidecar_of(abrupt)), token);
    kubernetes_validate::validate(&text(&out.stdout), 4);
}

/// A sidecar process, killed when the test is done with it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 as of now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:`port` with `headers`: the status, once answered.
fn get(port: u16, path: &str, headers: &[(String, String)]) -> std::io::Result<u16> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok());
    status.ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {answer:?}")))
}

/// The contract with the sidecar, end to end: `portcullis proxy` run with exactly the args
/// and env that `portcullis inject` writes (but for the controller, a config file here)
/// takes them, and answers the app's preStop hook, made as the kubelet makes it from the
/// injected pod, once the stop delay has passed; without the token, at once and never OK.
#[test]
fn the_sidecar_takes_what_the_injector_writes_and_answers_its_hook() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy_port, admin_port) = (free_port(), free_port());
    let config = dir.path().join("inject.yaml");
    std::fs::write(&config, format!("proxyPort: {proxy_port}\nadminPort: {admin_port}\n")).unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    \
               portcullis.dev/stop-delay: 300ms\nspec:\n  containers:\n  - name: web\n    \
               image: web:1\n    ports:\n    - name: http\n      containerPort: 8080\n";
    let out =
        inject(&["-f", "-", "--config", config.to_str().unwrap(), "--ca-pem", &ca_pem()], pod, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let injected = documents(&text(&out.stdout)).remove(0);
    let sidecar = sidecar_of(&injected);
    let mut args: Vec<String> = args_of(sidecar).iter().map(|a| a.to_string()).collect();
    assert_eq!(args[13..15], ["--stop-delay", "300ms"]);
    let at = args.iter().position(|a| a == "--controller").unwrap();
    let sidecar_config = dir.path().join("portcullis.yaml");
    std::fs::write(&sidecar_config, "").unwrap();
    args.splice(at..at + 2, ["--config".to_owned(), sidecar_config.display().to_string()]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(&args).env_clear().stdout(Stdio::null()).stderr(Stdio::null());
    // The sidecar's env as injected, but the fields the kubelet fills in and the CA, which
    // goes with --controller only.
    for var in sidecar["env"].as_array().unwrap() {
        if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str())
            && name != "PORTCULLIS_CONTROLLER_CA"
        {
            command.env(name, value);
        }
    }
    let _running = Running(command.spawn().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(admin_port, "/livez", &[]).ok() != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the sidecar never came up: {args:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The hook, read from the app container as the kubelet reads it.
    let hook = &injected["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"];
    assert_eq!(hook["port"], admin_port);
    let path = hook["path"].as_str().unwrap();
    let headers: Vec<(String, String)> = hook["httpHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_owned(), h["value"].as_str().unwrap().to_owned()))
        .collect();
    let wrong = [(headers[0].0.clone(), "0".repeat(32))];
    assert_eq!(get(admin_port, path, &wrong).unwrap(), 403);
    let started = std::time::Instant::now();
    assert_eq!(get(admin_port, path, &headers).unwrap(), 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
}
