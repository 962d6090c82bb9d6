use serde_json::json;

use super::*;

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::inject::app_protocol::{AppProtocol, ProtocolSource};
use crate::inject::expected;
use crate::inject::mutate::refusals_after;
use crate::inject::pre_stop::PreStop;
use crate::inject::stop_delay::{DelaySource, StopDelay};
use crate::inject::{Outcome, mutate};

use expected::{
    CA, STOP_TOKEN, VERSION, annotation, annotation_with_protocol, pre_stop_op, sidecar,
    sidecar_with_protocol, token_volume,
};

/// The stop token every pod of these tests gets.
fn token() -> StopToken {
    STOP_TOKEN.parse().unwrap()
}

/// The injected sidecar, wherever its operation is in the patch.
fn sidecar_of(injection: &Injection) -> Value {
    let ops = serde_json::to_value(&injection.patch).unwrap();
    let op =
        ops.as_array().unwrap().iter().find(|op| {
            op["path"] == "/spec/initContainers" || op["path"] == "/spec/initContainers/-"
        });
    let value = &op.expect("the sidecar's operation")["value"];
    if value.is_array() { value[0].clone() } else { value.clone() }
}

fn plain_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
            }]
        }
    })
}

fn outcome_with(pod: &Value, config: &InjectConfig) -> Outcome {
    outcome_among(pod, config, &[])
}

/// The outcome for `pod` in `shop`, with these Services known.
fn outcome_among(pod: &Value, config: &InjectConfig, services: &[Arc<Service>]) -> Outcome {
    mutate(&serde_json::from_value(pod.clone()).unwrap(), "shop", config, CA, services, &token())
}

fn injected(pod: &Value) -> Injection {
    injected_with(pod, &InjectConfig::default())
}

/// The injection, once its pod has passed the API server's validation.
fn injected_with(pod: &Value, config: &InjectConfig) -> Injection {
    match outcome_with(pod, config) {
        Outcome::Injected(injection) => {
            let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
            let errors = refusals_after(&pod, &injection.patch);
            assert_eq!(errors, Vec::<String>::new(), "the API server would refuse the pod");
            injection
        }
        other => panic!("not injected: {other:?}"),
    }
}

fn skipped(pod: &Value) -> Skip {
    match outcome_with(pod, &InjectConfig::default()) {
        Outcome::Skipped(skip) => skip,
        other => panic!("not skipped: {other:?}"),
    }
}

fn apply(pod: &Value, patch: &Patch) -> Value {
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, patch).unwrap();
    doc
}

#[test]
fn plain_pod_gets_these_exact_operations() {
    let injection = injected(&plain_pod());
    assert_eq!(
        serde_json::to_value(&injection.patch).unwrap(),
        json!([
            {"op": "add", "path": "/metadata/annotations",
             "value": {"portcullis.dev/injected": annotation("http", 8080, "app-http")}},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            {"op": "add", "path": "/spec/containers/0/lifecycle",
             "value": {"preStop": {"httpGet": {"path": "/prestop", "port": 9901,
                "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": STOP_TOKEN}]}}}},
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "1")]},
            {"op": "add", "path": "/spec/volumes", "value": [token_volume()]}
        ])
    );
    assert_eq!(
        injection.summary,
        Summary {
            container: "web".into(),
            app_port: 8080,
            port: Some("http".into()),
            proxy_port: 4180,
            app_protocol: AppProtocol::Http1,
            protocol_source: ProtocolSource::Default,
            renamed_to: Some("app-http".into()),
            image: format!("ghcr.io/portcullis-dev/portcullis:{VERSION}"),
            workers: Some(1),
            rewritten: vec![],
            stop_delay: StopDelay {
                delay: crate::api::Duration::from_secs(5),
                source: DelaySource::Config
            },
            pre_stop: PreStop::Added,
        }
    );
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http1 \
         (default), app port renamed app-http, preStop added (5s)"
    );
}

#[test]
fn plain_pod_patched_is_exactly_this_pod() {
    let pod = plain_pod();
    let patched = apply(&pod, &injected(&pod).patch);
    assert_eq!(
        patched,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "shop", "labels": {"app": "web"},
                "annotations": {"portcullis.dev/injected": annotation("http", 8080, "app-http")}
            },
            "spec": {
                "containers": [{
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"name": "app-http", "containerPort": 8080, "protocol": "TCP"}],
                    "lifecycle": {"preStop": {"httpGet": {"path": "/prestop", "port": 9901,
                        "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": STOP_TOKEN}]}}}
                }],
                "initContainers": [sidecar(8080, json!("http"), "1")],
                "volumes": [token_volume()]
            }
        })
    );
    // The patched pod reads back as a Pod.
    let _: Pod = serde_json::from_value(patched).unwrap();
}

#[test]
fn injecting_twice_adds_nothing() {
    let pod = plain_pod();
    let patched = apply(&pod, &injected(&pod).patch);
    assert_eq!(
        skipped(&patched),
        Skip {
            reason: SkipReason::AlreadyInjected,
            message: "the pod carries the portcullis.dev/injected annotation".into()
        }
    );
    // Even with our annotation gone (another webhook dropped annotations), the container
    // and volume are recognised.
    let mut stripped = patched.clone();
    stripped["metadata"]["annotations"] = json!({});
    assert_eq!(skipped(&stripped).reason, SkipReason::AlreadyInjected);
    assert!(skipped(&stripped).message.contains("container named portcullis-proxy"));
    let mut volume_only = plain_pod();
    volume_only["spec"]["volumes"] = json!([token_volume()]);
    assert!(skipped(&volume_only).message.contains("volume named portcullis-token"));
}

#[test]
fn appends_to_what_the_pod_already_has() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"team": "shop", "a/b": "c"});
    pod["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "migrate:1", "command": ["migrate"]}]);
    pod["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops[0]["path"], "/metadata/annotations/portcullis.dev~1injected");
    assert_eq!(ops[0]["value"], annotation("http", 8080, "app-http"));
    assert_eq!(ops[2], pre_stop_op(0, STOP_TOKEN));
    assert_eq!(ops[3]["path"], "/spec/initContainers/-");
    assert_eq!(ops[4]["path"], "/spec/volumes/-");
    let patched = apply(&pod, &injection.patch);
    assert_eq!(patched["metadata"]["annotations"]["team"], "shop");
    assert_eq!(patched["spec"]["initContainers"][0]["name"], "migrate");
    // The sidecar goes last, so that other init containers finish before it starts.
    assert_eq!(patched["spec"]["initContainers"][1], sidecar(8080, json!("http"), "1"));
    assert_eq!(patched["spec"]["volumes"][0]["name"], "data");
    assert_eq!(patched["spec"]["volumes"][1], token_volume());
}

#[test]
fn probes_and_hooks_on_the_named_port_move_to_its_number() {
    let mut pod = plain_pod();
    let app = &mut pod["spec"]["containers"][0];
    app["ports"] = json!([
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    ]);
    app["livenessProbe"] = json!({"httpGet": {"path": "/livez", "port": "http"}});
    app["readinessProbe"] = json!({"tcpSocket": {"port": "http"}, "periodSeconds": 3});
    app["startupProbe"] = json!({"httpGet": {"path": "/started", "port": 8080}});
    app["lifecycle"] = json!({
        "preStop": {"httpGet": {"path": "/drain", "port": "http"}},
        "postStart": {"httpGet": {"path": "/warm", "port": "metrics"}}
    });
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "http"});
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(
        ops.as_array().unwrap()[1..5],
        [
            json!({"op": "replace", "path": "/spec/containers/0/ports/1/name", "value": "app-http"}),
            json!({"op": "replace", "path": "/spec/containers/0/livenessProbe/httpGet/port",
                   "value": 8080}),
            json!({"op": "replace", "path": "/spec/containers/0/readinessProbe/tcpSocket/port",
                   "value": 8080}),
            json!({"op": "replace", "path": "/spec/containers/0/lifecycle/preStop/httpGet/port",
                   "value": 8080}),
        ]
    );
    assert_eq!(ops.as_array().unwrap().len(), 7);
    assert_eq!(
        injection.summary.rewritten,
        ["livenessProbe", "readinessProbe", "lifecycle.preStop"]
    );
    // The app's own preStop: kept (its port moved to the number), nothing added.
    assert_eq!(injection.summary.pre_stop, PreStop::Kept);
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http1 \
         (default), app port renamed app-http, livenessProbe, readinessProbe, lifecycle.preStop now reach the app port by \
         number, the app's own preStop kept: the sidecar learns the pod is stopping only at \
         its own SIGTERM"
    );
    let patched = apply(&pod, &injection.patch);
    let app = &patched["spec"]["containers"][0];
    assert_eq!(app["livenessProbe"], json!({"httpGet": {"path": "/livez", "port": 8080}}));
    assert_eq!(app["readinessProbe"], json!({"tcpSocket": {"port": 8080}, "periodSeconds": 3}));
    // By number, or by another name: untouched.
    assert_eq!(app["startupProbe"], json!({"httpGet": {"path": "/started", "port": 8080}}));
    assert_eq!(app["lifecycle"]["postStart"]["httpGet"]["port"], "metrics");
    assert_eq!(app["ports"][0]["name"], "metrics");
    assert_eq!(app["ports"][1]["name"], "app-http");
}

#[test]
fn the_first_named_port_of_the_first_container_that_has_one_is_taken() {
    let pod = json!({
        "metadata": {"name": "multi"},
        "spec": {"containers": [
            {"name": "log-shipper", "image": "fluent", "ports": [{"containerPort": 24224}]},
            {"name": "api", "image": "api", "ports": [
                {"containerPort": 7000},
                {"name": "grpc", "containerPort": 9000},
                {"name": "http", "containerPort": 8000}
            ]}
        ]}
    });
    let injection = injected(&pod);
    assert_eq!(injection.summary.container, "api");
    assert_eq!(injection.summary.app_port, 9000);
    assert_eq!(injection.summary.port.as_deref(), Some("grpc"));
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops[1]["path"], "/spec/containers/1/ports/1/name");
    assert_eq!(ops[1]["value"], "app-grpc");
    // The hook goes to the container whose port was taken, the second one.
    assert_eq!(ops[2], pre_stop_op(1, STOP_TOKEN));
    // Named grpc: the sidecar speaks HTTP/2 to it.
    assert_eq!(ops[3]["value"][0], sidecar_with_protocol(9000, json!("grpc"), "1", "http2"));
}

#[test]
fn annotation_by_number_takes_an_unnamed_port() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "8080"});
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(
        ops[0],
        json!({"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
               "value": format!(r#"{{"version":"{VERSION}","port":"portcullis","appPort":8080,"appProtocol":"http1","proxyPort":4180,"stopDelay":"5s","preStop":"added"}}"#)})
    );
    // No rename: the next operations are the hook and the sidecar, whose port is named
    // `portcullis`.
    assert_eq!(ops[1], pre_stop_op(0, STOP_TOKEN));
    assert_eq!(ops[2]["path"], "/spec/initContainers");
    assert_eq!(ops[2]["value"][0], sidecar(8080, json!("portcullis"), "1"));
    assert_eq!(injection.summary.renamed_to, None);
    // No name to go by: HTTP/1.1.
    assert_eq!(
        (injection.summary.app_protocol, injection.summary.protocol_source),
        (AppProtocol::Http1, ProtocolSource::Default)
    );
}

#[test]
fn annotation_by_number_on_a_named_port_renames_it() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": " 8080 "});
    let injection = injected(&pod);
    assert_eq!(injection.summary.port.as_deref(), Some("http"));
    assert_eq!(injection.summary.renamed_to.as_deref(), Some("app-http"));
}

#[test]
fn annotation_by_number_prefers_the_tcp_port() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([
        {"name": "dns-udp", "containerPort": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": 5353, "protocol": "TCP"}
    ]);
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "5353"});
    assert_eq!(injected(&pod).summary.port.as_deref(), Some("dns-tcp"));
}

#[test]
fn a_long_port_name_is_shortened_to_a_valid_unique_one() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([
        {"name": "public-https", "containerPort": 8443},
        {"name": "app-public-http", "containerPort": 8444}
    ]);
    let injection = injected(&pod);
    assert_eq!(injection.summary.renamed_to.as_deref(), Some("app1-public-htt"));
    assert_eq!(sidecar_of(&injection)["ports"][0]["name"], "public-https");
}

#[test]
fn workers_follow_the_cpu_limit_then_the_request() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/proxy-cpu-limit": "2500m"});
    let injection = injected(&pod);
    assert_eq!(injection.summary.workers, Some(2));
    let sidecar = &sidecar_of(&injection);
    let args = sidecar["args"].as_array().unwrap();
    assert_eq!(args[args.len() - 2..], [json!("--workers"), json!("2")]);
    assert_eq!(
        sidecar["resources"],
        json!({"requests": {"cpu": "100m", "memory": "32Mi"},
               "limits": {"cpu": "2500m", "memory": "128Mi"}})
    );

    pod["metadata"]["annotations"] = json!({"portcullis.dev/proxy-cpu-request": "3"});
    let mut config = InjectConfig::default();
    config.resources.limits = None;
    let injection = injected_with(&pod, &config);
    assert_eq!(injection.summary.workers, Some(3));

    // No CPU at all: no --workers, the sidecar's own default applies.
    config.resources = ResourceRequirements::default();
    let injection = injected_with(&plain_pod(), &config);
    assert_eq!(injection.summary.workers, None);
    let sidecar = &sidecar_of(&injection);
    assert!(!sidecar["args"].as_array().unwrap().contains(&json!("--workers")));
    assert_eq!(sidecar["resources"], json!({}));
}

#[test]
fn annotations_override_image_and_resources() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({
        "portcullis.dev/proxy-image": "registry.local/portcullis:dev",
        "portcullis.dev/proxy-cpu-request": "250m",
        "portcullis.dev/proxy-memory-request": "64Mi",
        "portcullis.dev/proxy-memory-limit": "1Gi"
    });
    let injection = injected(&pod);
    let sidecar = &sidecar_of(&injection);
    assert_eq!(sidecar["image"], "registry.local/portcullis:dev");
    assert_eq!(
        sidecar["resources"],
        json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}})
    );
    assert_eq!(injection.summary.workers, Some(1));
}

#[test]
fn config_shapes_the_sidecar() {
    let config = InjectConfig::from_yaml(
        "image: img:1\nimagePullPolicy: Always\nproxyPort: 15001\nadminPort: 15000\n\
         controllerUrl: https://c.ops.svc:8090\nlogFormat: plain\n\
         startupProbe: {periodSeconds: 2, failureThreshold: 30}\nstopDelay: 1m30s\n",
    )
    .unwrap();
    let mut pod = plain_pod();
    pod["spec"]["terminationGracePeriodSeconds"] = json!(120);
    let injection = injected_with(&pod, &config);
    let sidecar = &sidecar_of(&injection);
    assert_eq!(sidecar["image"], "img:1");
    assert_eq!(sidecar["imagePullPolicy"], "Always");
    assert_eq!(
        sidecar["args"],
        json!([
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
            "https://c.ops.svc:8090",
            "--log-format",
            "plain",
            "--stop-delay",
            "1m30s",
            "--workers",
            "1"
        ])
    );
    assert_eq!(
        sidecar["ports"],
        json!([{"name": "http", "containerPort": 15001, "protocol": "TCP"},
               {"name": "portcullis-adm", "containerPort": 15000}])
    );
    assert_eq!(
        sidecar["startupProbe"],
        json!({"httpGet": {"path": "/readyz", "port": 15000}, "periodSeconds": 2,
               "failureThreshold": 30})
    );
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["port"], 15000);
    // The app's preStop calls the admin port the config says.
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops[2]["value"]["preStop"]["httpGet"]["port"], 15000);
}

#[test]
fn opted_out_pods_are_left_alone() {
    let mut pod = plain_pod();
    pod["metadata"]["labels"]["portcullis.dev/inject"] = json!("disabled");
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::OptedOut,
            message: "the pod is labelled portcullis.dev/inject=disabled".into()
        }
    );
    pod["metadata"]["labels"]["portcullis.dev/inject"] = json!("enabled");
    injected(&pod);
}

#[test]
fn excluded_namespaces_are_left_alone() {
    let pod: Pod = serde_json::from_value(plain_pod()).unwrap();
    let Outcome::Skipped(skip) =
        mutate(&pod, "kube-system", &InjectConfig::default(), CA, &[], &token())
    else {
        panic!()
    };
    assert_eq!(skip.reason, SkipReason::ExcludedNamespace);
    assert_eq!(skip.message, "namespace kube-system is excluded from injection");
}

#[test]
fn host_network_pods_are_left_alone() {
    let mut pod = plain_pod();
    pod["spec"]["hostNetwork"] = json!(true);
    assert_eq!(skipped(&pod).reason, SkipReason::HostNetwork);
    pod["spec"]["hostNetwork"] = json!(false);
    injected(&pod);
}

#[test]
fn pods_without_a_named_port_are_left_alone() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080, "name": ""}]);
    let skip = skipped(&pod);
    assert_eq!(skip.reason, SkipReason::NoNamedPort);
    assert_eq!(
        skip.message,
        "no container port has a name; name the app's serving port or set the \
         portcullis.dev/port annotation"
    );
    pod["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
    assert_eq!(skipped(&pod).reason, SkipReason::NoNamedPort);
}

#[test]
fn an_annotation_naming_no_port_is_reported() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "https"});
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::PortNotFound,
            message: "no container has a port named https (portcullis.dev/port)".into()
        }
    );
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "9999"});
    assert_eq!(skipped(&pod).reason, SkipReason::PortNotFound);
    for bad in ["0", "65536", "99999999999", ""] {
        pod["metadata"]["annotations"] = json!({"portcullis.dev/port": bad});
        let skip = skipped(&pod);
        assert_eq!(skip.reason, SkipReason::InvalidAnnotation, "{bad}");
        assert!(skip.message.starts_with("portcullis.dev/port"), "{}", skip.message);
    }
}

#[test]
fn ports_the_sidecar_needs_must_be_free() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "alt", "containerPort": 4180}));
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::PortInUse,
            message: "container web already uses port 4180, the sidecar's proxyPort".into()
        }
    );
    let mut pod = plain_pod();
    pod["spec"]["initContainers"] = json!([{"name": "agent", "image": "agent",
        "restartPolicy": "Always", "ports": [{"containerPort": 9901}]}]);
    assert_eq!(
        skipped(&pod).message,
        "container agent already uses port 9901, the sidecar's adminPort"
    );
}

#[test]
fn udp_ports_are_not_taken_over() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] =
        json!([{"name": "dns", "containerPort": 53, "protocol": "UDP"}]);
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::NotTcp,
            message: "port dns of container web is UDP; the sidecar proxies TCP only".into()
        }
    );
}

#[test]
fn the_first_named_tcp_port_is_taken_over_a_udp_one() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    ]);
    let summary = injected(&pod).summary;
    assert_eq!((summary.port.as_deref(), summary.app_port), (Some("http"), 8080));
}

#[test]
fn an_app_port_named_like_the_sidecars_admin_port_is_left_alone() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] =
        json!([{"name": "portcullis-adm", "containerPort": 8080}]);
    let skip = skipped(&pod);
    assert_eq!(skip.reason, SkipReason::PortInUse);
    assert_eq!(
        skip.message,
        "the app's port is named portcullis-adm, the name of the sidecar's admin port"
    );
}

#[test]
fn a_native_sidecar_with_the_same_port_name_makes_it_ambiguous() {
    let mut pod = plain_pod();
    pod["spec"]["initContainers"] = json!([{
        "name": "mesh", "image": "mesh", "restartPolicy": "Always",
        "ports": [{"name": "http", "containerPort": 15001}]
    }]);
    let skip = skipped(&pod);
    assert_eq!(skip.reason, SkipReason::AmbiguousPort);
    assert!(skip.message.starts_with("containers web and mesh both declare a port named http"));
}

#[test]
fn a_port_name_declared_by_two_containers_is_ambiguous() {
    let mut pod = plain_pod();
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
        "name": "admin", "image": "admin", "ports": [{"name": "http", "containerPort": 8081}]
    }));
    let skip = skipped(&pod);
    assert_eq!(skip.reason, SkipReason::AmbiguousPort);
    assert!(skip.message.starts_with("containers web and admin both declare a port named http"));
}

#[test]
fn bad_overrides_are_reported_by_annotation() {
    let cases = [
        (
            "portcullis.dev/proxy-cpu-limit",
            "two",
            "portcullis.dev/proxy-cpu-limit: \"two\" is not a quantity (e.g. 500m, 1, 1.5, 128Mi)",
        ),
        (
            "portcullis.dev/proxy-memory-request",
            "-1Mi",
            "portcullis.dev/proxy-memory-request: \"-1Mi\" is negative",
        ),
        (
            "portcullis.dev/proxy-memory-limit",
            "16Mi",
            "the sidecar's memory request 32Mi exceeds its limit 16Mi (portcullis.dev/proxy-memory-request, portcullis.dev/proxy-memory-limit)",
        ),
        (
            "portcullis.dev/proxy-image",
            " ",
            "portcullis.dev/proxy-image: \"\" is not an image reference",
        ),
    ];
    for (annotation, value, message) in cases {
        let mut pod = plain_pod();
        pod["metadata"]["annotations"] = json!({annotation: value});
        assert_eq!(
            skipped(&pod),
            Skip { reason: SkipReason::InvalidAnnotation, message: message.into() },
            "{annotation}"
        );
    }
}

/// `plain_pod` with its one port named `name`, and `annotations` on it.
fn pod_with_port(name: &str, annotations: Value) -> Value {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"][0]["name"] = json!(name);
    pod["metadata"]["annotations"] = annotations;
    pod
}

/// The sidecar's `--app-protocol`, right after `--upstream`, and the annotation's.
fn protocol_written(injection: &Injection) -> (Value, Value) {
    let ops = serde_json::to_value(&injection.patch).unwrap();
    let ops = ops.as_array().unwrap();
    let sidecar = ops.iter().find(|op| op["path"] == "/spec/initContainers").unwrap();
    let args = &sidecar["value"][0]["args"];
    assert_eq!((&args[3], &args[5]), (&json!("--upstream"), &json!("--app-protocol")));
    let annotation: Value = serde_json::from_str(ops[0]["value"].as_str().unwrap()).unwrap();
    (args[6].clone(), annotation["appProtocol"].clone())
}

#[test]
fn a_port_named_grpc_gets_a_sidecar_speaking_http2() {
    let pod = pod_with_port("grpc", json!({"team": "shop"}));
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
             "value": annotation_with_protocol("grpc", 8080, "http2", "app-grpc")},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-grpc"},
            pre_stop_op(0, STOP_TOKEN),
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar_with_protocol(8080, json!("grpc"), "1", "http2")]},
            {"op": "add", "path": "/spec/volumes", "value": [token_volume()]}
        ])
    );
    assert_eq!(
        ops[0]["value"],
        format!(
            r#"{{"version":"{VERSION}","port":"grpc","appPort":8080,"appProtocol":"http2","proxyPort":4180,"renamedTo":"app-grpc","stopDelay":"5s","preStop":"added"}}"#
        )
    );
    assert_eq!(injection.summary.app_protocol, AppProtocol::Http2);
    assert_eq!(injection.summary.protocol_source, ProtocolSource::PortName("grpc".into()));
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port grpc (4180) in front of container web port 8080, app protocol http2 \
         (port name grpc), app port renamed app-grpc, preStop added (5s)"
    );
}

#[test]
fn the_port_name_says_which_protocol() {
    let cases = [
        ("grpc-web", "http2", ProtocolSource::PortName("grpc-web".into())),
        ("h2c", "http2", ProtocolSource::PortName("h2c".into())),
        ("http2-api", "http2", ProtocolSource::PortName("http2-api".into())),
        ("http", "http1", ProtocolSource::Default),
        ("grpcweb", "http1", ProtocolSource::Default),
        ("web-grpc", "http1", ProtocolSource::Default),
    ];
    for (name, flag, source) in cases {
        let injection = injected(&pod_with_port(name, json!({})));
        assert_eq!(protocol_written(&injection), (json!(flag), json!(flag)), "{name}");
        assert_eq!(injection.summary.app_protocol.as_flag(), flag, "{name}");
        assert_eq!(injection.summary.protocol_source, source, "{name}");
    }
}

#[test]
fn an_unnamed_port_chosen_by_number_is_http1() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    pod["metadata"]["annotations"] = json!({"portcullis.dev/port": "8080"});
    let injection = injected(&pod);
    assert_eq!(protocol_written(&injection), (json!("http1"), json!("http1")));
    assert_eq!(injection.summary.protocol_source, ProtocolSource::Default);
}

#[test]
fn the_annotation_wins_over_the_port_name() {
    let http1 = pod_with_port("grpc", json!({"portcullis.dev/app-protocol": "http1"}));
    let injection = injected(&http1);
    assert_eq!(protocol_written(&injection), (json!("http1"), json!("http1")));
    assert_eq!(injection.summary.protocol_source, ProtocolSource::Annotation);
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port grpc (4180) in front of container web port 8080, app protocol http1 \
         (annotation), app port renamed app-grpc, preStop added (5s)"
    );

    let http2 = pod_with_port("http", json!({"portcullis.dev/app-protocol": " http2 "}));
    let injection = injected(&http2);
    assert_eq!(protocol_written(&injection), (json!("http2"), json!("http2")));
    assert_eq!(
        (injection.summary.app_protocol, injection.summary.protocol_source),
        (AppProtocol::Http2, ProtocolSource::Annotation)
    );
}

#[test]
fn an_app_protocol_annotation_other_than_http1_or_http2_is_reported() {
    for (value, message) in [
        ("grpc", r#"portcullis.dev/app-protocol: "grpc" is neither http1 nor http2"#),
        ("HTTP2", r#"portcullis.dev/app-protocol: "HTTP2" is neither http1 nor http2"#),
        ("", r#"portcullis.dev/app-protocol: "" is neither http1 nor http2"#),
    ] {
        let pod = pod_with_port("grpc", json!({"portcullis.dev/app-protocol": value}));
        assert_eq!(
            skipped(&pod),
            Skip { reason: SkipReason::InvalidAnnotation, message: message.into() },
            "{value:?}"
        );
    }
    // The port is checked first: an annotation on a pod skipped for its port is not news.
    let mut udp = pod_with_port("dns", json!({"portcullis.dev/app-protocol": "grpc"}));
    udp["spec"]["containers"][0]["ports"][0]["protocol"] = json!("UDP");
    assert_eq!(skipped(&udp).reason, SkipReason::NotTcp);
}

/// A Service in `shop` selecting `app: web`, whose port `name` targets `target` with
/// `app_protocol`.
fn service_saying(name: &str, target: Value, app_protocol: &str) -> Arc<Service> {
    let value = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "main", "port": 80,
            "targetPort": target, "protocol": "TCP", "appProtocol": app_protocol}]}});
    Arc::new(serde_json::from_value(value).unwrap())
}

#[test]
fn a_services_app_protocol_reaches_the_sidecar_the_annotation_and_the_summary() {
    let pod = pod_with_port("http", json!({}));
    let services = [service_saying("web", json!("http"), "kubernetes.io/h2c")];
    let Outcome::Injected(injection) = outcome_among(&pod, &InjectConfig::default(), &services)
    else {
        panic!("not injected")
    };
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    assert_eq!(refusals_after(&typed, &injection.patch), Vec::<String>::new());
    assert_eq!(
        serde_json::to_value(&injection.patch).unwrap(),
        json!([
            {"op": "add", "path": "/metadata/annotations/portcullis.dev~1injected",
             "value": annotation_with_protocol("http", 8080, "http2", "app-http")},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            pre_stop_op(0, STOP_TOKEN),
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar_with_protocol(8080, json!("http"), "1", "http2")]},
            {"op": "add", "path": "/spec/volumes", "value": [token_volume()]}
        ])
    );
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http2 \
         (Service web port main appProtocol kubernetes.io/h2c), app port renamed app-http, \
         preStop added (5s)"
    );
    // The same pod, no Service known: by its port's name.
    assert_eq!(protocol_written(&injected(&pod)), (json!("http1"), json!("http1")));
}

#[test]
fn services_that_leave_the_protocol_unknown_skip_the_pod() {
    let pod = plain_pod();
    let skipped_among =
        |services: &[Arc<Service>]| match outcome_among(&pod, &InjectConfig::default(), services) {
            Outcome::Skipped(skip) => skip,
            other => panic!("not skipped: {other:?}"),
        };
    assert_eq!(
        skipped_among(&[service_saying("web", json!(8080), "https")]),
        Skip {
            reason: SkipReason::UnsupportedAppProtocol,
            message: "Service web port main has appProtocol \"https\", which is neither \
                      HTTP/1.1 nor cleartext HTTP/2, the protocols the sidecar speaks to the \
                      app; set the annotation portcullis.dev/app-protocol to http1 or http2 to \
                      inject the pod anyway"
                .into()
        }
    );
    assert_eq!(
        skipped_among(&[
            service_saying("web", json!("http"), "http"),
            service_saying("web-grpc", json!("http"), "grpc")
        ]),
        Skip {
            reason: SkipReason::ConflictingAppProtocol,
            message: "Service web port main has appProtocol \"http\" (http1) but Service \
                      web-grpc port main has appProtocol \"grpc\" (http2); set the annotation \
                      portcullis.dev/app-protocol to http1 or http2 to inject the pod anyway"
                .into()
        }
    );
    // The annotation is the way out of both.
    let annotated = pod_with_port("http", json!({"portcullis.dev/app-protocol": "http2"}));
    let services = [service_saying("web", json!("http"), "https")];
    let Outcome::Injected(injection) =
        outcome_among(&annotated, &InjectConfig::default(), &services)
    else {
        panic!("not injected")
    };
    assert_eq!(protocol_written(&injection), (json!("http2"), json!("http2")));
    assert_eq!(injection.summary.protocol_source, ProtocolSource::Annotation);
}

/// The port is checked before the Services: a UDP port is `not_tcp`, whatever they say.
#[test]
fn the_port_is_checked_before_the_services() {
    let mut udp = plain_pod();
    udp["spec"]["containers"][0]["ports"][0]["protocol"] = json!("UDP");
    let services = [service_saying("web", json!("http"), "https")];
    let Outcome::Skipped(skip) = outcome_among(&udp, &InjectConfig::default(), &services) else {
        panic!("not skipped")
    };
    assert_eq!(skip.reason, SkipReason::NotTcp);
}

#[test]
fn reasons_are_stable_metric_labels() {
    let all = [
        (SkipReason::OptedOut, "opted_out"),
        (SkipReason::ExcludedNamespace, "excluded_namespace"),
        (SkipReason::HostNetwork, "host_network"),
        (SkipReason::AlreadyInjected, "already_injected"),
        (SkipReason::NoNamedPort, "no_named_port"),
        (SkipReason::PortNotFound, "port_not_found"),
        (SkipReason::AmbiguousPort, "ambiguous_port"),
        (SkipReason::PortInUse, "port_in_use"),
        (SkipReason::InvalidAnnotation, "invalid_annotation"),
        (SkipReason::NotTcp, "not_tcp"),
        (SkipReason::UnsupportedAppProtocol, "unsupported_app_protocol"),
        (SkipReason::ConflictingAppProtocol, "conflicting_app_protocol"),
    ];
    for (reason, label) in all {
        assert_eq!(reason.as_str(), label);
    }
}

/// The app container's preStop hook as added, calling admin port 9901 with the test token.
fn hook() -> Value {
    json!({"httpGet": {"path": "/prestop", "port": 9901,
        "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": STOP_TOKEN}]}})
}

/// The injected annotation, read back.
fn annotation_of(injection: &Injection) -> Value {
    let ops = serde_json::to_value(&injection.patch).unwrap();
    let text = &ops[0]["value"];
    let text = text.as_str().or_else(|| text["portcullis.dev/injected"].as_str()).unwrap();
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_lifecycle_with_only_post_start_gets_the_pre_stop_beside_it() {
    let mut pod = plain_pod();
    pod["spec"]["containers"][0]["lifecycle"] =
        json!({"postStart": {"exec": {"command": ["warm-up"]}}});
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(
        ops.as_array().unwrap()[1..3],
        [
            json!({"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"}),
            json!({"op": "add", "path": "/spec/containers/0/lifecycle/preStop", "value": hook()}),
        ]
    );
    assert_eq!(ops.as_array().unwrap().len(), 5);
    let patched = apply(&pod, &injection.patch);
    assert_eq!(
        patched["spec"]["containers"][0]["lifecycle"],
        json!({"postStart": {"exec": {"command": ["warm-up"]}}, "preStop": hook()})
    );
    assert_eq!(injection.summary.pre_stop, PreStop::Added);
}

#[test]
fn an_apps_own_pre_stop_is_kept_and_said_so() {
    let mut pod = plain_pod();
    let own = json!({"preStop": {"exec": {"command": ["sh", "-c", "sleep 10"]}}});
    pod["spec"]["containers"][0]["lifecycle"] = own.clone();
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"portcullis.dev/injected":
                format!(r#"{{"version":"{VERSION}","port":"http","appPort":8080,"appProtocol":"http1","proxyPort":4180,"renamedTo":"app-http","stopDelay":"5s","preStop":"kept"}}"#)}},
            {"op": "replace", "path": "/spec/containers/0/ports/0/name", "value": "app-http"},
            {"op": "add", "path": "/spec/initContainers",
             "value": [sidecar(8080, json!("http"), "1")]},
            {"op": "add", "path": "/spec/volumes", "value": [token_volume()]}
        ])
    );
    assert_eq!(injection.summary.pre_stop, PreStop::Kept);
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http1 \
         (default), app port renamed app-http, the app's own preStop kept: the sidecar learns \
         the pod is stopping only at its own SIGTERM"
    );
    assert_eq!(apply(&pod, &injection.patch)["spec"]["containers"][0]["lifecycle"], own);
}

#[test]
fn other_app_containers_get_no_hook() {
    let mut pod = plain_pod();
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "worker", "image": "worker:1"}));
    let injection = injected(&pod);
    let patched = apply(&pod, &injection.patch);
    assert_eq!(patched["spec"]["containers"][0]["lifecycle"], json!({"preStop": hook()}));
    assert_eq!(patched["spec"]["containers"][1], json!({"name": "worker", "image": "worker:1"}));
}

#[test]
fn the_stop_delay_annotation_is_honoured() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "12s"});
    let injection = injected(&pod);
    let sidecar = sidecar_of(&injection);
    let args = sidecar["args"].as_array().unwrap();
    assert_eq!(args[13..17], [json!("--stop-delay"), json!("12s"), json!("--workers"), json!("1")]);
    assert_eq!(annotation_of(&injection)["stopDelay"], "12s");
    assert_eq!(annotation_of(&injection)["preStop"], "added");
    assert_eq!(
        injection.summary.stop_delay,
        StopDelay { delay: crate::api::Duration::from_secs(12), source: DelaySource::Annotation }
    );
    assert!(
        injection.summary.to_string().ends_with(", preStop added (12s, portcullis.dev/stop-delay)"),
        "{}",
        injection.summary
    );
    // Written in its shortest form.
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "90s"});
    pod["spec"]["terminationGracePeriodSeconds"] = json!(120);
    assert_eq!(annotation_of(&injected(&pod))["stopDelay"], "1m30s");
}

#[test]
fn a_stop_delay_annotation_that_cannot_be_is_reported() {
    let mut pod = plain_pod();
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "ten seconds"});
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::InvalidAnnotation,
            message: "portcullis.dev/stop-delay: \"ten seconds\" is not a duration (e.g. 5s, \
                      1m30s, 0s)"
                .into()
        }
    );
    // The grace period left unset is 30 seconds.
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "30s"});
    assert_eq!(
        skipped(&pod),
        Skip {
            reason: SkipReason::InvalidAnnotation,
            message: "portcullis.dev/stop-delay: 30s is not less than the pod's \
                      terminationGracePeriodSeconds (30), which would leave the app no time to \
                      stop"
                .into()
        }
    );
    pod["metadata"]["annotations"] = json!({"portcullis.dev/stop-delay": "1m"});
    pod["spec"]["terminationGracePeriodSeconds"] = json!(45);
    assert_eq!(
        skipped(&pod).message,
        "portcullis.dev/stop-delay: 1m is not less than the pod's terminationGracePeriodSeconds \
         (45), which would leave the app no time to stop"
    );
    pod["spec"]["terminationGracePeriodSeconds"] = json!(61);
    assert_eq!(annotation_of(&injected(&pod))["stopDelay"], "1m");
}

#[test]
fn the_configs_stop_delay_is_lowered_for_a_short_grace_period() {
    let mut pod = plain_pod();
    pod["spec"]["terminationGracePeriodSeconds"] = json!(5);
    let injection = injected(&pod);
    let sidecar = sidecar_of(&injection);
    let args = sidecar["args"].as_array().unwrap();
    assert_eq!(args[13..15], [json!("--stop-delay"), json!("2s")]);
    assert_eq!(annotation_of(&injection)["stopDelay"], "2s");
    assert_eq!(
        injection.summary.stop_delay,
        StopDelay {
            delay: crate::api::Duration::from_secs(2),
            source: DelaySource::Lowered {
                configured: crate::api::Duration::from_secs(5),
                grace_seconds: 5
            }
        }
    );
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http1 \
         (default), app port renamed app-http, preStop added (2s), stop delay 2s: the \
         configured 5s lowered to half of terminationGracePeriodSeconds (5)"
    );
    // Above the default, or at 6s, the config's 5s fits.
    pod["spec"]["terminationGracePeriodSeconds"] = json!(6);
    assert_eq!(injected(&pod).summary.stop_delay.source, DelaySource::Config);
}

#[test]
fn a_zero_stop_delay_still_adds_the_hook() {
    let config = InjectConfig::from_yaml("stopDelay: 0s\n").unwrap();
    let injection = injected_with(&plain_pod(), &config);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops[2], pre_stop_op(0, STOP_TOKEN));
    assert_eq!(sidecar_of(&injection)["args"][14], "0s");
    assert!(injection.summary.to_string().ends_with(", preStop added (0s)"));
}

#[test]
fn a_pod_without_a_grace_period_gets_no_hook() {
    let mut pod = plain_pod();
    pod["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let injection = injected(&pod);
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 4);
    assert_eq!(ops[2]["path"], "/spec/initContainers");
    assert_eq!(
        annotation_of(&injection),
        json!({"version": VERSION, "port": "http", "appPort": 8080, "appProtocol": "http1",
               "proxyPort": 4180, "renamedTo": "app-http", "stopDelay": "0s", "preStop": "none"})
    );
    assert_eq!(sidecar_of(&injection)["args"][14], "0s");
    assert_eq!(
        injection.summary.to_string(),
        "sidecar port http (4180) in front of container web port 8080, app protocol http1 \
         (default), app port renamed app-http, no preStop: terminationGracePeriodSeconds is not \
         above 0, and the kubelet runs no preStop hook without a grace period, stop delay 0s: \
         the configured 5s lowered to half of terminationGracePeriodSeconds (0)"
    );
}
