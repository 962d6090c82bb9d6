//! The Service ports that send traffic to a container port, resolved as Kubernetes resolves
//! them into EndpointSlices: a Service of the pod's namespace that selects the pod, and a
//! port of it whose `targetPort` is that container port.
//!
//! The rules follow the EndpointSlice controller and `podutil.FindPort`:
//!
//! - `type: ExternalName` Services, and Services without a selector, get no endpoints. An
//!   empty selector (`{}`) is none: the API server stores it as nil.
//! - Every `key: value` of the selector must be among the pod's labels.
//! - A `targetPort` that is a name reaches the container port of that name and the Service
//!   port's protocol (default TCP); a number reaches that number. Without one, the API
//!   server makes it the Service port's `port`; a manifest on disk may still lack it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The container port the sidecar takes over, and where it is.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub namespace: &'a str,
    /// The pod's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The port's name as the pod came, before the injector renames it.
    pub name: Option<&'a str>,
    pub number: i32,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'a str,
}

/// One Service port that reaches the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reaching<'a> {
    /// The Service's name.
    pub service: &'a str,
    pub port: &'a ServicePort,
}

impl Reaching<'_> {
    /// The Service port's name, or its number when it has none (a Service's only port may).
    pub fn port_label(&self) -> String {
        match self.port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => name.to_owned(),
            None => self.port.port.to_string(),
        }
    }
}

impl fmt::Display for Reaching<'_> {
    /// `Service web port grpc`, or `Service web port 80` for an unnamed port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service {} port {}", self.service, self.port_label())
    }
}

/// The Service ports of `services` that reach `target`, by Service name then in the order
/// each Service lists them, so that messages name the same one whatever order the
/// Services came in.
pub fn reaching<'a>(target: &Target<'_>, services: &'a [Arc<Service>]) -> Vec<Reaching<'a>> {
    let mut found: Vec<Reaching<'a>> = services
        .iter()
        .filter(|service| selects(service, target))
        .flat_map(|service| {
            let name = service.metadata.name.as_deref().unwrap_or_default();
            let ports = service.spec.iter().flat_map(|spec| spec.ports.iter().flatten());
            ports
                .filter(|port| reaches(port, target))
                .map(move |port| Reaching { service: name, port })
        })
        .collect();
    // Stable: a Service's own ports keep their order.
    found.sort_by_key(|r| r.service);
    found
}

fn selects(service: &Service, target: &Target<'_>) -> bool {
    if service.metadata.namespace.as_deref() != Some(target.namespace) {
        return false;
    }
    let Some(spec) = &service.spec else { return false };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    match &spec.selector {
        Some(selector) if !selector.is_empty() => {
            selector.iter().all(|(key, value)| target.labels.get(key) == Some(value))
        }
        _ => false,
    }
}

fn reaches(port: &ServicePort, target: &Target<'_>) -> bool {
    if port.protocol.as_deref().unwrap_or("TCP") != target.protocol {
        return false;
    }
    match &port.target_port {
        Some(IntOrString::String(name)) => target.name == Some(name.as_str()),
        Some(IntOrString::Int(number)) => *number == target.number,
        None => port.port == target.number,
    }
}

/// Drops what [`reaching`] never reads (managed fields, annotations, status...), for a
/// cache that holds every Service of the cluster.
pub fn trim(service: &mut Service) {
    let metadata = &mut service.metadata;
    metadata.managed_fields = None;
    metadata.annotations = None;
    metadata.labels = None;
    metadata.owner_references = None;
    metadata.finalizers = None;
    service.status = None;
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn service(name: &str, selector: Value, ports: Value) -> Arc<Service> {
        let value = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": selector, "ports": ports}});
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn labels() -> BTreeMap<String, String> {
        [("app", "web"), ("tier", "front")].map(|(k, v)| (k.to_owned(), v.to_owned())).into()
    }

    /// `Service <name> port <port>` of each Service port that reaches the pod's port `api`
    /// (9000, TCP) in `shop`.
    fn found(services: &[Arc<Service>]) -> Vec<String> {
        let labels = labels();
        let target = Target {
            namespace: "shop",
            labels: &labels,
            name: Some("api"),
            number: 9000,
            protocol: "TCP",
        };
        reaching(&target, services).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_service_selecting_the_pod_reaches_the_port_by_name_or_number() {
        let by_name = service(
            "a",
            json!({"app": "web"}),
            json!([
                {"name": "grpc", "port": 80, "targetPort": "api"}
            ]),
        );
        let by_number = service(
            "b",
            json!({"app": "web", "tier": "front"}),
            json!([
                {"port": 81, "targetPort": 9000}
            ]),
        );
        assert_eq!(found(&[by_name, by_number]), ["Service a port grpc", "Service b port 81"]);
    }

    #[test]
    fn without_a_target_port_the_port_is_its_own_target() {
        let defaulted = service(
            "web",
            json!({"app": "web"}),
            json!([
                {"name": "same", "port": 9000}, {"name": "other", "port": 80}
            ]),
        );
        assert_eq!(found(&[defaulted]), ["Service web port same"]);
    }

    #[test]
    fn ports_that_target_another_container_port_are_ignored() {
        let web = service(
            "web",
            json!({"app": "web"}),
            json!([
                {"name": "metrics", "port": 9090, "targetPort": "metrics"},
                {"name": "admin", "port": 8081, "targetPort": 8081},
                {"name": "api", "port": 80, "targetPort": "api"}
            ]),
        );
        assert_eq!(found(&[web]), ["Service web port api"]);
    }

    #[test]
    fn a_port_of_another_protocol_is_ignored() {
        let udp = service(
            "dns",
            json!({"app": "web"}),
            json!([
                {"name": "udp", "port": 9000, "protocol": "UDP", "targetPort": "api"},
                {"name": "tcp", "port": 9000, "protocol": "TCP", "targetPort": "api"}
            ]),
        );
        assert_eq!(found(&[udp]), ["Service dns port tcp"]);
    }

    #[test]
    fn services_that_do_not_select_the_pod_are_ignored() {
        let ports = json!([{"port": 80, "targetPort": "api"}]);
        let other_app = service("other-app", json!({"app": "cart"}), ports.clone());
        let more_labels = service("more", json!({"app": "web", "track": "canary"}), ports.clone());
        let empty = service("empty", json!({}), ports.clone());
        let none = service("none", Value::Null, ports.clone());
        let mut elsewhere = (*service("elsewhere", json!({"app": "web"}), ports.clone())).clone();
        elsewhere.metadata.namespace = Some("cart".into());
        let mut external = (*service("external", json!({"app": "web"}), ports)).clone();
        external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        let all = [other_app, more_labels, empty, none, Arc::new(elsewhere), Arc::new(external)];
        assert_eq!(found(&all), Vec::<String>::new());
    }

    #[test]
    fn found_ports_are_in_service_name_order_whatever_the_input_order() {
        let z = service(
            "z",
            json!({"app": "web"}),
            json!([
                {"name": "b", "port": 1, "targetPort": "api"},
                {"name": "a", "port": 2, "targetPort": 9000}
            ]),
        );
        let a = service("a", json!({"app": "web"}), json!([{"port": 3, "targetPort": "api"}]));
        let expected = ["Service a port 3", "Service z port b", "Service z port a"];
        assert_eq!(found(&[z.clone(), a.clone()]), expected);
        assert_eq!(found(&[a, z]), expected);
    }

    #[test]
    fn an_unnamed_target_is_reached_by_number_only() {
        let labels = labels();
        let target = Target {
            namespace: "shop",
            labels: &labels,
            name: None,
            number: 9000,
            protocol: "TCP",
        };
        let web = service(
            "web",
            json!({"app": "web"}),
            json!([
                {"name": "a", "port": 80, "targetPort": "api"},
                {"name": "b", "port": 81, "targetPort": 9000}
            ]),
        );
        let services = [web];
        let names: Vec<String> =
            reaching(&target, &services).iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["Service web port b"]);
    }

    #[test]
    fn trimmed_services_keep_what_matching_reads() {
        let value = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "resourceVersion": "7"},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                "ports": [{"name": "grpc", "port": 80, "targetPort": "api",
                    "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]},
            "status": {"loadBalancer": {}}
        });
        let mut service: Service = serde_json::from_value(value).unwrap();
        trim(&mut service);
        assert_eq!(
            serde_json::to_value(&service).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
                "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                    "ports": [{"name": "grpc", "port": 80, "targetPort": "api",
                        "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}
            })
        );
    }
}
