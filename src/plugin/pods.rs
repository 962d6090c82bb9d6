//! What the plugin reads off Pod objects: which pods are injected, and where the pod proxy
//! finds a controller replica's or a sidecar's admin port.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::inject::{ADMIN_PORT_NAME, INJECTED_ANNOTATION, SIDECAR_NAME};

/// The name of a controller replica's admin port in the chart.
pub const CONTROLLER_ADMIN_PORT_NAME: &str = "admin";

/// `(namespace, name)`.
pub fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The injector's own mark, rather than the sidecar container: it stays on pods whose
/// sidecar was later edited away, which are the ones worth showing.
pub fn is_injected(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(INJECTED_ANNOTATION))
}

/// `Ok` while the pod proxy can reach the pod: it runs and has an IP. Otherwise what the
/// pod is instead, to say why it was left out.
pub fn reachable(pod: &Pod) -> Result<(), String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let has_ip = status.and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty());
    match (phase, has_ip) {
        ("Running", true) => Ok(()),
        ("Running", false) => Err("Running but has no pod IP".to_owned()),
        (phase, _) => Err(phase.to_owned()),
    }
}

/// The controller replica's admin port: whichever of its containers declares it.
pub fn controller_admin_port(pod: &Pod) -> Option<i32> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().find_map(|c| named_port(c, CONTROLLER_ADMIN_PORT_NAME))
}

/// The sidecar container: an init container with `restartPolicy: Always` (native sidecar)
/// on current clusters, a plain container where the injector fell back to that.
pub fn sidecar(pod: &Pod) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    let init = spec.init_containers.iter().flatten();
    init.chain(&spec.containers).find(|c| c.name == SIDECAR_NAME)
}

pub fn sidecar_admin_port(sidecar: &Container) -> Option<i32> {
    named_port(sidecar, ADMIN_PORT_NAME)
}

fn named_port(container: &Container, name: &str) -> Option<i32> {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_sidecar_is_found_among_init_containers_or_containers() {
        let native = pod(json!({"metadata": {"name": "a"}, "spec": {
            "initContainers": [{"name": "portcullis-proxy",
                "ports": [{"name": "portcullis-adm", "containerPort": 9901}]}],
            "containers": [{"name": "app"}]}}));
        assert_eq!(sidecar(&native).and_then(sidecar_admin_port), Some(9901));
        let plain = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "app", "ports": [{"name": "portcullis-adm", "containerPort": 1}]},
            {"name": "portcullis-proxy",
                "ports": [{"name": "portcullis-adm", "containerPort": 9911}]}]}}));
        assert_eq!(sidecar(&plain).and_then(sidecar_admin_port), Some(9911));
        let none =
            pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "app"}]}}));
        assert!(sidecar(&none).is_none());
    }

    #[test]
    fn only_running_pods_with_an_ip_are_reachable() {
        let running = json!({"phase": "Running", "podIP": "10.0.0.1"});
        assert_eq!(reachable(&pod(json!({"metadata": {}, "status": running}))), Ok(()));
        let pending = json!({"phase": "Pending"});
        assert_eq!(
            reachable(&pod(json!({"metadata": {}, "status": pending}))),
            Err("Pending".to_owned())
        );
        let no_ip = json!({"phase": "Running"});
        assert_eq!(
            reachable(&pod(json!({"metadata": {}, "status": no_ip}))),
            Err("Running but has no pod IP".to_owned())
        );
    }
}
