//! Container ports (`validateContainerPorts`, `AccumulateUniqueHostPorts`,
//! `validatePodHostNetworkDeps`) and the port of a probe or hook (`ValidatePortNumOrName`),
//! all in `pkg/apis/core/validation/validation.go`.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, ContainerPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{BadValue, FieldError, child, duplicate, index, invalid, not_supported, s};
use super::names::{is_valid_port_name, is_valid_port_num};

/// Protocol after defaulting: the v1 type defaults an empty one to TCP.
fn protocol(port: &ContainerPort) -> &str {
    port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// hostPort after `SetDefaults_Pod`: with host networking an unset one becomes the
/// container port.
pub(crate) fn host_port(port: &ContainerPort, host_network: bool) -> i32 {
    match port.host_port.unwrap_or(0) {
        0 if host_network => port.container_port,
        hp => hp,
    }
}

/// Port names are unique within one container only: Go keeps no set across containers.
pub(crate) fn validate_container_ports(
    ports: &[ContainerPort],
    path: &str,
    host_network: bool,
    out: &mut Vec<FieldError>,
) {
    let mut names: HashSet<&str> = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = index(path, i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    out.push(invalid(&child(&at, "name"), s(name), msg));
                }
            } else if !names.insert(name) {
                out.push(duplicate(&child(&at, "name"), s(name)));
            }
        }
        if port.container_port == 0 {
            out.push(super::field::required(&child(&at, "containerPort"), ""));
        } else {
            for msg in is_valid_port_num(i64::from(port.container_port)) {
                let value = BadValue::Int(i64::from(port.container_port));
                out.push(invalid(&child(&at, "containerPort"), value, msg));
            }
        }
        let hp = host_port(port, host_network);
        if hp != 0 {
            for msg in is_valid_port_num(i64::from(hp)) {
                out.push(invalid(&child(&at, "hostPort"), BadValue::Int(i64::from(hp)), msg));
            }
        }
        let proto = protocol(port);
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            out.push(not_supported(&child(&at, "protocol"), s(proto), &["SCTP", "TCP", "UDP"]));
        }
    }
}

/// `checkHostPortConflicts`: `<protocol>/<hostIP>/<hostPort>` must be unique over the list.
pub(crate) fn check_host_port_conflicts(
    containers: &[&Container],
    path: &str,
    host_network: bool,
    out: &mut Vec<FieldError>,
) {
    let mut seen: HashSet<String> = HashSet::new();
    for (ci, ctr) in containers.iter().enumerate() {
        let ports_path = child(&index(path, ci), "ports");
        for (pi, port) in ctr.ports.iter().flatten().enumerate() {
            let hp = host_port(port, host_network);
            if hp == 0 {
                continue;
            }
            let host_ip = port.host_ip.as_deref().unwrap_or("");
            let key = format!("{}/{host_ip}/{hp}", protocol(port));
            if !seen.insert(key.clone()) {
                out.push(duplicate(
                    &child(&index(&ports_path, pi), "hostPort"),
                    BadValue::Str(key),
                ));
            }
        }
    }
}

/// `validatePodHostNetworkDeps` for a Pod: regular containers only.
pub(crate) fn validate_host_network_ports(containers: &[Container], out: &mut Vec<FieldError>) {
    for (i, ctr) in containers.iter().enumerate() {
        let ports_path = child(&index("spec.containers", i), "ports");
        for (j, port) in ctr.ports.iter().flatten().enumerate() {
            let hp = host_port(port, true);
            if hp != port.container_port {
                out.push(invalid(
                    &child(&index(&ports_path, j), "hostPort"),
                    BadValue::Int(i64::from(hp)),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// `ValidatePortNumOrName`: only the form is checked; Go never looks a name up among the
/// container's ports.
pub(crate) fn validate_port_num_or_name(port: &IntOrString, path: &str, out: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) => {
            for msg in is_valid_port_num(i64::from(*n)) {
                out.push(invalid(path, BadValue::Int(i64::from(*n)), msg));
            }
        }
        IntOrString::String(name) => {
            for msg in is_valid_port_name(name) {
                out.push(invalid(path, s(name), msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, number: i32) -> ContainerPort {
        ContainerPort { name: Some(name.into()), container_port: number, ..Default::default() }
    }

    fn shown(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn names_numbers_and_protocols() {
        let mut bad = port("http", 8080);
        bad.protocol = Some("tcp".into());
        let ports = [port("HTTP", 0), port("http", 70000), port("http", 80), bad];
        let mut out = Vec::new();
        validate_container_ports(&ports, "spec.containers[0].ports", false, &mut out);
        assert_eq!(
            shown(out),
            [
                r#"spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
                r#"spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain at least one letter (a-z)"#,
                "spec.containers[0].ports[0].containerPort: Required value",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[2].name: Duplicate value: "http""#,
                r#"spec.containers[0].ports[3].name: Duplicate value: "http""#,
                r#"spec.containers[0].ports[3].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP""#,
            ]
        );
    }

    #[test]
    fn valid_ports_pass() {
        let mut out = Vec::new();
        validate_container_ports(
            &[port("http", 8080), port("metrics", 9090)],
            "p",
            false,
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn host_ports_conflict_and_must_match_with_host_network() {
        let mut a = port("a", 80);
        a.host_port = Some(8080);
        let b = Container { name: "b".into(), ports: Some(vec![a.clone()]), ..Default::default() };
        let c = Container { name: "c".into(), ports: Some(vec![a]), ..Default::default() };
        let mut out = Vec::new();
        check_host_port_conflicts(&[&b, &c], "spec.containers", false, &mut out);
        validate_host_network_ports(&[b], &mut out);
        assert_eq!(
            shown(out),
            [
                r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#,
                "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true",
            ]
        );
    }

    #[test]
    fn probe_ports_by_number_or_name() {
        let mut out = Vec::new();
        validate_port_num_or_name(&IntOrString::Int(0), "x.port", &mut out);
        validate_port_num_or_name(&IntOrString::String("8080".into()), "y.port", &mut out);
        validate_port_num_or_name(&IntOrString::String("not-declared".into()), "z.port", &mut out);
        assert_eq!(
            shown(out),
            [
                "x.port: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"y.port: Invalid value: "8080": must contain at least one letter (a-z)"#,
            ]
        );
    }
}
