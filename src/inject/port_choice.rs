//! Which app port the sidecar takes over, and whether its own two ports are free.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

use super::config::InjectConfig;
use super::names::PORT_ANNOTATION;
use super::outcome::{Skip, SkipReason, skip};

/// The app port to take over, as (container index, port index).
pub(super) fn choose_port(
    spec: &PodSpec,
    annotations: &BTreeMap<String, String>,
) -> Result<(usize, usize), Skip> {
    let ports = || {
        spec.containers.iter().enumerate().flat_map(|(ci, c)| {
            c.ports.iter().flatten().enumerate().map(move |(pi, p)| (ci, pi, p))
        })
    };
    let found = |(ci, pi, _): (usize, usize, &ContainerPort)| (ci, pi);
    let named = |p: &ContainerPort| p.name.as_deref().is_some_and(|n| !n.is_empty());
    let tcp = |p: &ContainerPort| p.protocol.as_deref().unwrap_or("TCP") == "TCP";
    let Some(wanted) = annotations.get(PORT_ANNOTATION).map(|v| v.trim()) else {
        return ports()
            .find(|(_, _, p)| named(p) && tcp(p))
            // Only UDP names: taken, to be refused as not TCP with the port named.
            .or_else(|| ports().find(|(_, _, p)| named(p)))
            .map(found)
            .map_or_else(
                || {
                    skip(
                        SkipReason::NoNamedPort,
                        format!(
                            "no container port has a name; name the app's serving port or \
                             set the {PORT_ANNOTATION} annotation"
                        ),
                    )
                },
                Ok,
            );
    };
    if !wanted.is_empty() && wanted.bytes().all(|b| b.is_ascii_digit()) {
        let Some(number) = wanted.parse::<i32>().ok().filter(|n| (1..=65535).contains(n)) else {
            return skip(
                SkipReason::InvalidAnnotation,
                format!("{PORT_ANNOTATION}: {wanted:?} is not a port number (1-65535)"),
            );
        };
        // A number may be declared twice, for TCP and UDP (DNS): take the TCP one.
        return ports()
            .find(|(_, _, p)| p.container_port == number && tcp(p))
            .or_else(|| ports().find(|(_, _, p)| p.container_port == number))
            .map(found)
            .map_or_else(
                || {
                    skip(
                        SkipReason::PortNotFound,
                        format!(
                            "no container declares port {number} ({PORT_ANNOTATION}); the \
                             sidecar takes over a declared containerPort only"
                        ),
                    )
                },
                Ok,
            );
    }
    if wanted.is_empty() {
        return skip(
            SkipReason::InvalidAnnotation,
            format!("{PORT_ANNOTATION} is empty; set a port name or number"),
        );
    }
    ports().find(|(_, _, p)| p.name.as_deref() == Some(wanted)).map(found).map_or_else(
        || {
            skip(
                SkipReason::PortNotFound,
                format!("no container has a port named {wanted} ({PORT_ANNOTATION})"),
            )
        },
        Ok,
    )
}

/// The sidecar's two ports must be free in the pod's network namespace.
pub(super) fn ports_free(spec: &PodSpec, config: &InjectConfig) -> Result<(), Skip> {
    for container in all_containers(spec) {
        for port in container.ports.iter().flatten() {
            let role = if port.container_port == i32::from(config.proxy_port) {
                "proxyPort"
            } else if port.container_port == i32::from(config.admin_port) {
                "adminPort"
            } else {
                continue;
            };
            return skip(
                SkipReason::PortInUse,
                format!(
                    "container {} already uses port {}, the sidecar's {role}",
                    container.name, port.container_port
                ),
            );
        }
    }
    Ok(())
}

/// Init containers first, as the kubelet starts them.
pub(super) fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers.iter().flatten().chain(&spec.containers)
}
