//! Containers (`validateContainerCommon`, `validateContainers`, `validateInitContainers`,
//! `validateInitContainerRestartPolicy`, `validatePullPolicy`,
//! `validateContainerOnlyForPod` in `pkg/apis/core/validation/validation.go`), on
//! containers as `SetDefaults_Container` leaves them: an empty `imagePullPolicy` or
//! `terminationMessagePolicy` has been filled in, so only unknown values are refused.
//!
//! Sidecar containers (init containers with `restartPolicy: Always`) are GA from 1.33, so
//! every supported API server accepts them, with probes and lifecycle hooks.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Volume};

use super::env::{validate_env, validate_env_from};
use super::field::{
    FieldError, child, duplicate, forbidden, index, invalid, not_supported, required, s,
};
use super::mounts::validate_volume_mounts;
use super::names::is_dns1123_label;
use super::ports::{check_host_port_conflicts, validate_container_ports};
use super::probes::{Kind, validate_lifecycle, validate_probe};
use super::resources::validate_resources;
use super::security::validate_container_security;

/// What every container's validation needs from the pod.
pub(crate) struct PodContext<'a> {
    pub(crate) volumes: BTreeMap<&'a str, &'a Volume>,
    /// terminationGracePeriodSeconds after defaulting (30).
    pub(crate) grace: Option<i64>,
    pub(crate) host_network: bool,
    pub(crate) host_users: bool,
}

fn validate_common(ctr: &Container, pod: &PodContext<'_>, path: &str, out: &mut Vec<FieldError>) {
    let name_path = child(path, "name");
    if ctr.name.is_empty() {
        out.push(required(&name_path, ""));
    } else {
        for msg in is_dns1123_label(&ctr.name) {
            out.push(invalid(&name_path, s(&ctr.name), msg));
        }
    }
    if ctr.image.as_deref().unwrap_or("").is_empty() {
        out.push(required(&child(path, "image"), ""));
    }
    let policy = ctr.termination_message_policy.as_deref().unwrap_or("");
    if !matches!(policy, "" | "File" | "FallbackToLogsOnError") {
        let at = child(path, "terminationMessagePolicy");
        out.push(not_supported(&at, s(policy), &["File", "FallbackToLogsOnError"]));
    }
    let ports = ctr.ports.as_deref().unwrap_or_default();
    validate_container_ports(ports, &child(path, "ports"), pod.host_network, out);
    validate_env(ctr.env.as_deref().unwrap_or_default(), &child(path, "env"), out);
    validate_env_from(ctr.env_from.as_deref().unwrap_or_default(), &child(path, "envFrom"), out);
    validate_volume_mounts(ctr, &pod.volumes, &child(path, "volumeMounts"), out);
    let pull = ctr.image_pull_policy.as_deref().unwrap_or("");
    if !matches!(pull, "" | "Always" | "IfNotPresent" | "Never") {
        let at = child(path, "imagePullPolicy");
        out.push(not_supported(&at, s(pull), &["Always", "IfNotPresent", "Never"]));
    }
    validate_resources(ctr.resources.as_ref(), &child(path, "resources"), out);
    let sc = ctr.security_context.as_ref();
    validate_container_security(sc, pod.host_users, &child(path, "securityContext"), out);
}

fn validate_probes(ctr: &Container, grace: Option<i64>, path: &str, out: &mut Vec<FieldError>) {
    if let Some(lifecycle) = &ctr.lifecycle {
        validate_lifecycle(lifecycle, grace, &child(path, "lifecycle"), out);
    }
    let probes = [
        (&ctr.liveness_probe, Kind::Liveness, "livenessProbe"),
        (&ctr.readiness_probe, Kind::Readiness, "readinessProbe"),
        (&ctr.startup_probe, Kind::Startup, "startupProbe"),
    ];
    for (probe, kind, name) in probes {
        validate_probe(probe.as_ref(), kind, grace, &child(path, name), out);
    }
}

/// `validateContainers`: names are unique among the regular containers here; clashes
/// with init containers are reported on the init container.
pub(crate) fn validate_containers(
    containers: &[Container],
    pod: &PodContext<'_>,
    out: &mut Vec<FieldError>,
) {
    let path = "spec.containers";
    if containers.is_empty() {
        out.push(required(path, ""));
        return;
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, ctr) in containers.iter().enumerate() {
        let at = index(path, i);
        validate_common(ctr, pod, &at, out);
        if !names.insert(&ctr.name) {
            out.push(duplicate(&child(&at, "name"), s(&ctr.name)));
        }
        validate_probes(ctr, pod.grace, &at, out);
        if ctr.restart_policy.is_some() {
            out.push(forbidden(
                &child(&at, "restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    let all: Vec<&Container> = containers.iter().collect();
    check_host_port_conflicts(&all, path, pod.host_network, out);
}

/// `validateInitContainers`.
pub(crate) fn validate_init_containers(
    init: &[Container],
    regular: &[Container],
    pod: &PodContext<'_>,
    out: &mut Vec<FieldError>,
) {
    let path = "spec.initContainers";
    let mut names: HashSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, ctr) in init.iter().enumerate() {
        let at = index(path, i);
        validate_common(ctr, pod, &at, out);
        let restart_always = match ctr.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                out.push(not_supported(&child(&at, "restartPolicy"), s(other), &["Always"]));
                false
            }
        };
        if names.contains(ctr.name.as_str()) {
            out.push(duplicate(&child(&at, "name"), s(&ctr.name)));
        } else if !ctr.name.is_empty() {
            names.insert(&ctr.name);
        }
        // Go checks each init container alone (they run one by one), as the only element
        // of a list: the path always says index 0.
        check_host_port_conflicts(&[ctr], path, pod.host_network, out);
        if restart_always {
            validate_probes(ctr, pod.grace, &at, out);
        } else {
            let detail = "may not be set for init containers without restartPolicy=Always";
            let set = [
                (ctr.lifecycle.is_some(), "lifecycle"),
                (ctr.liveness_probe.is_some(), "livenessProbe"),
                (ctr.readiness_probe.is_some(), "readinessProbe"),
                (ctr.startup_probe.is_some(), "startupProbe"),
            ];
            for (_, name) in set.into_iter().filter(|(present, _)| *present) {
                out.push(forbidden(&child(&at, name), detail));
            }
        }
    }
}

/// `validateContainerOnlyForPod`.
pub(crate) fn validate_image_whitespace(
    containers: &[Container],
    path: &str,
    out: &mut Vec<FieldError>,
) {
    for (i, ctr) in containers.iter().enumerate() {
        let image = ctr.image.as_deref().unwrap_or("");
        if image.trim() != image {
            let detail = "must not have leading or trailing whitespace";
            out.push(invalid(&child(&index(path, i), "image"), s(image), detail));
        }
    }
}
