//! The mutation itself, pure: a Pod in, explicit RFC 6902 operations out (or the reason to
//! leave the pod alone). Explicit operations, never a diff of whole arrays, so that what
//! other admission plugins did to the pod before or after us is never overwritten.
//!
//! Checks, in order (the first that applies is the reason given):
//! `opted_out` (pod label `portcullis.dev/inject=disabled`), `excluded_namespace`,
//! `host_network`, `already_injected` (our annotation, container or volume is there, so
//! re-admission and reinvocation add nothing), then the port: `invalid_annotation`
//! (`portcullis.dev/port` neither a name nor a port number), `port_not_found`,
//! `no_named_port`, `not_tcp`, `ambiguous_port` (another app container declares a port of
//! the same name, which Services would still reach around the sidecar), `port_in_use`
//! (a container of the pod declares `proxyPort` or `adminPort`), then the app's protocol:
//! `invalid_annotation` (`portcullis.dev/app-protocol` neither `http1` nor `http2`), and,
//! without that annotation, the Service ports that reach the port:
//! `unsupported_app_protocol` (an `appProtocol` that is neither HTTP/1.1 nor cleartext
//! HTTP/2) and `conflicting_app_protocol` (one says HTTP/1.1, another HTTP/2); and last
//! the sidecar's own overrides: `invalid_annotation` (image or resource quantity; the
//! message names the annotation), and the stop delay: `invalid_annotation`
//! (`portcullis.dev/stop-delay` not a duration, or not under the pod's grace period).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodSpec, Probe, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use super::app_protocol::{ProtocolError, app_protocol};
use super::config::InjectConfig;
use super::names::{
    ADMIN_PORT_NAME, INJECT_LABEL, INJECTED_ANNOTATION, SIDECAR_NAME, TOKEN_VOLUME,
    UNNAMED_PORT_NAME,
};
use super::outcome::{Injection, Skip, SkipReason, Summary, skip};
use super::overrides::settings;
use super::port_choice::{all_containers, choose_port, ports_free};
use super::port_name::app_port_name;
use super::pre_stop::pre_stop;
use super::service_ports::Target;
use super::sidecar::{Sidecar, token_volume};
use super::stop_delay::{DEFAULT_GRACE_SECONDS, stop_delay};
use super::stop_token::StopToken;
use crate::api::Duration;

/// The `portcullis.dev/injected` annotation's JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InjectedAnnotation<'a> {
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<&'a str>,
    app_port: i32,
    app_protocol: &'a str,
    proxy_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    renamed_to: Option<&'a str>,
    stop_delay: Duration,
    /// `added`, `kept` (the app's own) or `none` (no grace period).
    pre_stop: &'a str,
}

/// The patch that adds the sidecar to `pod`, created in `namespace`, or why it is left
/// alone; `services` may say the app's protocol; `stop_token` is the pod's own (see
/// `stop_token`). Not yet checked against the API server's rules: [`super::mutate`] does
/// that.
pub(super) fn plan(
    pod: &Pod,
    namespace: &str,
    config: &InjectConfig,
    ca_pem: &str,
    services: &[Arc<Service>],
    stop_token: &StopToken,
) -> Result<Injection, Skip> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    if labels.get(INJECT_LABEL).is_some_and(|v| v == "disabled") {
        return skip(SkipReason::OptedOut, format!("the pod is labelled {INJECT_LABEL}=disabled"));
    }
    if config.excluded_namespaces.iter().any(|n| n == namespace) {
        return skip(
            SkipReason::ExcludedNamespace,
            format!("namespace {namespace} is excluded from injection"),
        );
    }
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    if spec.host_network == Some(true) {
        return skip(
            SkipReason::HostNetwork,
            "the pod uses the node's network, where the sidecar cannot take over a port",
        );
    }
    already_injected(spec, annotations)?;

    let (ci, pi) = choose_port(spec, annotations)?;
    let app = &spec.containers[ci];
    let port = &app.ports.as_deref().unwrap_or_default()[pi];
    let original = port.name.as_deref().filter(|n| !n.is_empty());
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    if protocol != "TCP" {
        return skip(
            SkipReason::NotTcp,
            format!(
                "port {} of container {} is {protocol}; the sidecar proxies TCP only",
                original.map_or_else(|| port.container_port.to_string(), str::to_owned),
                app.name
            ),
        );
    }
    if original == Some(ADMIN_PORT_NAME) {
        return skip(
            SkipReason::PortInUse,
            format!(
                "the app's port is named {ADMIN_PORT_NAME}, the name of the sidecar's admin port"
            ),
        );
    }
    if let Some(name) = original {
        // Native sidecars count too: Services resolve a port name in them after the app's.
        // (Container names are unique in a pod.)
        let twin = all_containers(spec).find(|c| {
            c.name != app.name && c.ports.iter().flatten().any(|p| p.name.as_deref() == Some(name))
        });
        if let Some(other) = twin {
            return skip(
                SkipReason::AmbiguousPort,
                format!(
                    "containers {} and {} both declare a port named {name}; Services would \
                     still reach one of them around the sidecar",
                    app.name, other.name
                ),
            );
        }
    }
    ports_free(spec, config)?;
    let target =
        Target { namespace, labels, name: original, number: port.container_port, protocol };
    let (protocol, protocol_source) =
        app_protocol(annotations, &target, services).or_else(|error| {
            let reason = match error {
                ProtocolError::InvalidAnnotation(_) => SkipReason::InvalidAnnotation,
                ProtocolError::Unsupported(_) => SkipReason::UnsupportedAppProtocol,
                ProtocolError::Conflicting { .. } => SkipReason::ConflictingAppProtocol,
            };
            skip(reason, error.to_string())
        })?;
    let settings = settings(annotations, config)?;
    let grace_seconds = spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    let stop_delay = stop_delay(annotations, config.stop_delay, grace_seconds)
        .or_else(|error| skip(SkipReason::InvalidAnnotation, error.to_string()))?;
    let (pre_stop, hook) = pre_stop(app, grace_seconds, config.admin_port, stop_token);

    // Every name in the pod, so that neither new name collides with one.
    let mut taken: HashSet<String> = all_containers(spec)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.name.clone())
        .collect();
    taken.insert(ADMIN_PORT_NAME.to_owned());
    let renamed_to = original.map(|name| app_port_name(name, port.container_port, &taken));
    let sidecar_port = match original {
        Some(name) => Some(name.to_owned()),
        None => Some(UNNAMED_PORT_NAME.to_owned()).filter(|n| !taken.contains(n)),
    };

    let mut ops = Vec::new();
    let annotation = serde_json::to_string(&InjectedAnnotation {
        version: env!("CARGO_PKG_VERSION"),
        port: sidecar_port.as_deref(),
        app_port: port.container_port,
        app_protocol: protocol.as_flag(),
        proxy_port: config.proxy_port,
        renamed_to: renamed_to.as_deref(),
        stop_delay: stop_delay.delay,
        pre_stop: pre_stop.as_str(),
    })
    .expect("a struct of strings and numbers serializes");
    ops.push(match &pod.metadata.annotations {
        Some(_) => add(&["metadata", "annotations", INJECTED_ANNOTATION], annotation.into()),
        None => add(
            &["metadata", "annotations"],
            Value::Object(
                [(INJECTED_ANNOTATION.to_owned(), annotation.into())].into_iter().collect(),
            ),
        ),
    });
    let container_path = ["spec".to_owned(), "containers".to_owned(), ci.to_string()];
    if let Some(new_name) = &renamed_to {
        let path = [&container_path[..], &["ports".into(), pi.to_string(), "name".into()]].concat();
        ops.push(replace(&path, new_name.clone().into()));
    }
    let mut rewritten = Vec::new();
    if let Some(name) = original {
        for (field, handler_path) in named_port_uses(app, name) {
            let path = [&container_path[..], &handler_path[..]].concat();
            ops.push(replace(&path, port.container_port.into()));
            rewritten.push(field);
        }
    }
    if let Some((within, value)) = hook {
        let path: Vec<String> =
            container_path.iter().cloned().chain(within.iter().map(|t| t.to_string())).collect();
        ops.push(PatchOperation::Add(AddOperation { path: pointer(&path), value }));
    }
    let sidecar = Sidecar {
        config,
        image: &settings.image,
        resources: settings.resources,
        workers: settings.workers,
        port_name: sidecar_port.clone(),
        app_port: port.container_port,
        app_protocol: protocol,
        ca_pem,
        stop_delay: stop_delay.delay,
        stop_token,
    };
    let container = to_json(&sidecar.container());
    ops.push(append(&["spec", "initContainers"], spec.init_containers.is_some(), container));
    ops.push(append(&["spec", "volumes"], spec.volumes.is_some(), to_json(&token_volume())));

    Ok(Injection {
        patch: Patch(ops),
        summary: Summary {
            container: app.name.clone(),
            app_port: port.container_port,
            port: sidecar_port,
            proxy_port: config.proxy_port,
            app_protocol: protocol,
            protocol_source,
            renamed_to,
            image: settings.image,
            workers: settings.workers,
            rewritten,
            stop_delay,
            pre_stop,
        },
    })
}

fn already_injected(spec: &PodSpec, annotations: &BTreeMap<String, String>) -> Result<(), Skip> {
    if annotations.contains_key(INJECTED_ANNOTATION) {
        return skip(
            SkipReason::AlreadyInjected,
            format!("the pod carries the {INJECTED_ANNOTATION} annotation"),
        );
    }
    if all_containers(spec).any(|c| c.name == SIDECAR_NAME) {
        return skip(
            SkipReason::AlreadyInjected,
            format!("the pod already has a container named {SIDECAR_NAME}"),
        );
    }
    if spec.volumes.iter().flatten().any(|v| v.name == TOKEN_VOLUME) {
        return skip(
            SkipReason::AlreadyInjected,
            format!("the pod already has a volume named {TOKEN_VOLUME}"),
        );
    }
    Ok(())
}

/// Probes and lifecycle hooks of `container` that reach the port by `name`, as (what,
/// path of the `port` field within the container).
fn named_port_uses(container: &Container, name: &str) -> Vec<(String, Vec<String>)> {
    let named = |port: &IntOrString| matches!(port, IntOrString::String(n) if n == name);
    let mut uses = Vec::new();
    let mut visit =
        |what: &str, path: &[&str], get: Option<&IntOrString>, tcp: Option<&IntOrString>| {
            for (action, port) in [("httpGet", get), ("tcpSocket", tcp)] {
                if port.is_some_and(named) {
                    let full =
                        path.iter().chain(&[action, "port"]).map(|s| s.to_string()).collect();
                    uses.push((what.to_owned(), full));
                }
            }
        };
    let probes: [(&str, &Option<Probe>); 3] = [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ];
    for (field, probe) in probes {
        if let Some(probe) = probe {
            let get = probe.http_get.as_ref().map(|a| &a.port);
            let tcp = probe.tcp_socket.as_ref().map(|a| &a.port);
            visit(field, &[field], get, tcp);
        }
    }
    let lifecycle = container.lifecycle.as_ref();
    let hooks: [(&str, Option<&LifecycleHandler>); 2] = [
        ("postStart", lifecycle.and_then(|l| l.post_start.as_ref())),
        ("preStop", lifecycle.and_then(|l| l.pre_stop.as_ref())),
    ];
    for (hook, handler) in hooks {
        if let Some(handler) = handler {
            let get = handler.http_get.as_ref().map(|a| &a.port);
            let tcp = handler.tcp_socket.as_ref().map(|a| &a.port);
            visit(&format!("lifecycle.{hook}"), &["lifecycle", hook], get, tcp);
        }
    }
    uses
}

fn pointer<S: AsRef<str>>(tokens: &[S]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().map(|t| t.as_ref()))
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(tokens), value })
}

fn replace(tokens: &[String], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path: pointer(tokens), value })
}

/// Appends to the array at `tokens`, or creates it with the one item when it is absent.
fn append(tokens: &[&str], exists: bool, item: Value) -> PatchOperation {
    if exists {
        add(&[tokens, &["-"]].concat(), item)
    } else {
        add(tokens, Value::Array(vec![item]))
    }
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("k8s-openapi types serialize to JSON")
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
