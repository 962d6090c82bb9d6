//! A Pod as a whole (`ValidatePodCreate`, `validatePodMetadataAndSpec`, `ValidatePodSpec`,
//! `validateRestartPolicy`, `validateDNSPolicy` in `pkg/apis/core/validation/validation.go`),
//! in Go's order.

use k8s_openapi::api::core::v1::Pod;

use super::containers::{
    PodContext, validate_containers, validate_image_whitespace, validate_init_containers,
};
use super::field::{BadValue, FieldError, forbidden, invalid, not_supported, s};
use super::meta::{validate_labels, validate_object_meta};
use super::names::{inclusive_range_error, is_dns1123_label, is_dns1123_subdomain};
use super::ports::validate_host_network_ports;
use super::security::{validate_host_users, validate_pod_security};
use super::volumes::validate_volumes;

/// The errors the API server finds when this pod is created, in the order it finds them.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut out = Vec::new();
    validate_object_meta(&pod.metadata, &mut out);
    let Some(spec) = &pod.spec else {
        out.push(super::field::required("spec.containers", ""));
        return out;
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let context = PodContext {
        volumes: validate_volumes(volumes, pod_name, "spec.volumes", &mut out),
        // SetDefaults_PodSpec: 30 seconds when unset.
        grace: Some(spec.termination_grace_period_seconds.unwrap_or(30)),
        host_network: spec.host_network.unwrap_or(false),
        host_users: spec.host_users.unwrap_or(true),
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    validate_containers(&spec.containers, &context, &mut out);
    validate_init_containers(init, &spec.containers, &context, &mut out);
    if context.host_network {
        validate_host_network_ports(&spec.containers, &mut out);
    }
    // Defaulting fills an empty restart or DNS policy (Always, ClusterFirst).
    let restart = spec.restart_policy.as_deref().unwrap_or("");
    if !matches!(restart, "" | "Always" | "OnFailure" | "Never") {
        let supported = ["Always", "OnFailure", "Never"];
        out.push(not_supported("spec.restartPolicy", s(restart), &supported));
    }
    let dns = spec.dns_policy.as_deref().unwrap_or("");
    if !matches!(dns, "" | "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None") {
        let supported = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        out.push(not_supported("spec.dnsPolicy", s(dns), &supported));
    }
    validate_labels(spec.node_selector.as_ref(), "spec.nodeSelector", &mut out);
    validate_pod_security(spec, &mut out);
    validate_host_users(spec, &mut out);
    // The v1 `serviceAccount` is copied into `serviceAccountName` when that is empty; when
    // both are, the ServiceAccount admission plugin (on in every standard API server, and
    // run before validation) names `default`. So the rule that forbids a projected token
    // without a service account (validatePodMetadataAndSpec) cannot fire on such a create,
    // and is not checked here.
    let service_account = spec
        .service_account_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(spec.service_account.as_deref())
        .unwrap_or("default");
    let subdomains = [
        ("spec.serviceAccountName", service_account),
        ("spec.nodeName", spec.node_name.as_deref().unwrap_or("")),
    ];
    for (at, value) in subdomains.into_iter().filter(|(_, v)| !v.is_empty()) {
        for msg in is_dns1123_subdomain(value) {
            out.push(invalid(at, s(value), msg));
        }
    }
    if let Some(deadline) =
        spec.active_deadline_seconds.filter(|d| !(1..=i64::from(i32::MAX)).contains(d))
    {
        let detail = inclusive_range_error(1, i64::from(i32::MAX));
        out.push(invalid("spec.activeDeadlineSeconds", BadValue::Int(deadline), detail));
    }
    for (at, value) in [("spec.hostname", &spec.hostname), ("spec.subdomain", &spec.subdomain)] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else { continue };
        for msg in is_dns1123_label(value) {
            out.push(invalid(at, s(value), msg));
        }
    }
    let classes = [
        ("spec.priorityClassName", spec.priority_class_name.as_deref()),
        ("spec.runtimeClassName", spec.runtime_class_name.as_deref()),
    ];
    for (at, value) in classes {
        // An empty priorityClassName is skipped; a set but empty runtimeClassName is not.
        let Some(value) = value.filter(|v| !v.is_empty() || at == "spec.runtimeClassName") else {
            continue;
        };
        for msg in is_dns1123_subdomain(value) {
            out.push(invalid(at, s(value), msg));
        }
    }
    validate_image_whitespace(&spec.containers, "spec.containers", &mut out);
    validate_image_whitespace(init, "spec.initContainers", &mut out);
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        out.push(forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    let gated = spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty());
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) && gated {
        let detail = "cannot be set until all schedulingGates have been cleared";
        out.push(forbidden("spec.nodeName", detail));
    }
    out
}
