//! Whole pods through [`super::validate_pod`], as the API server would answer them.

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{invalid_status, validate_pod};

fn container(name: &str) -> Container {
    Container { name: name.into(), image: Some("nginx:1.27".into()), ..Default::default() }
}

fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
        spec: Some(PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn shown(pod: &Pod) -> Vec<String> {
    validate_pod(pod).iter().map(ToString::to_string).collect()
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port: number, ..Default::default() }
}

#[test]
fn an_injected_pod_passes() {
    let mut app = container("app");
    app.ports = Some(vec![port("app-http", 8080)]);
    let mut sidecar = container("portcullis");
    sidecar.restart_policy = Some("Always".into());
    sidecar.ports = Some(vec![port("http", 15001)]);
    let tcp = TCPSocketAction { port: IntOrString::String("http".into()), ..Default::default() };
    sidecar.readiness_probe = Some(Probe { tcp_socket: Some(tcp), ..Default::default() });
    assert!(shown(&pod(vec![app], vec![sidecar])).is_empty());
}

#[test]
fn names_are_unique_across_containers_but_port_names_are_not() {
    let mut app = container("app");
    app.ports = Some(vec![port("http", 8080)]);
    let mut init = container("app");
    init.ports = Some(vec![port("http", 8081)]);
    assert_eq!(
        shown(&pod(vec![app], vec![init])),
        [r#"spec.initContainers[0].name: Duplicate value: "app""#]
    );
}

#[test]
fn restart_policy_and_probes_on_init_and_regular_containers() {
    let mut regular = container("app");
    regular.restart_policy = Some("Always".into());
    let mut init = container("setup");
    init.restart_policy = Some("OnFailure".into());
    init.liveness_probe = Some(Probe::default());
    assert_eq!(
        shown(&pod(vec![regular], vec![init])),
        [
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
            r#"spec.initContainers[0].restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#,
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        ]
    );
}

#[test]
fn images_and_policies() {
    let mut a = container("a");
    a.image = None;
    a.image_pull_policy = Some("Sometimes".into());
    a.termination_message_policy = Some("Log".into());
    let mut b = container("b");
    b.image = Some(" nginx".into());
    assert_eq!(
        shown(&pod(vec![a, b], vec![])),
        [
            "spec.containers[0].image: Required value",
            r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Log": supported values: "File", "FallbackToLogsOnError""#,
            r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            r#"spec.containers[1].image: Invalid value: " nginx": must not have leading or trailing whitespace"#,
        ]
    );
}

#[test]
fn pod_level_policies() {
    let mut p = pod(vec![container("app")], vec![]);
    let spec = p.spec.as_mut().unwrap();
    spec.restart_policy = Some("Sometimes".into());
    spec.dns_policy = Some("Cluster".into());
    spec.host_network = Some(true);
    spec.containers[0].ports =
        Some(vec![ContainerPort { host_port: Some(80), ..port("http", 8080) }]);
    assert_eq!(
        shown(&p),
        [
            "spec.containers[0].ports[0].hostPort: Invalid value: 80: must match `containerPort` when `hostNetwork` is true",
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            r#"spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#,
        ]
    );
}

#[test]
fn the_status_body_of_a_rejected_pod() {
    let mut app = container("app");
    app.ports = Some(vec![port("portcullis-admin", 9901)]);
    let p = pod(vec![app], vec![]);
    let status = invalid_status("", "Pod", "web", &validate_pod(&p));
    assert_eq!(status["code"], 422);
    assert_eq!(
        status["message"],
        r#"Pod "web" is invalid: spec.containers[0].ports[0].name: Invalid value: "portcullis-admin": must be no more than 15 characters"#
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.containers[0].ports[0].name");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueInvalid");
}
