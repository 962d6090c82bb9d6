//! Probes and lifecycle hooks (`validateProbe`, `validateLivenessProbe`, ...,
//! `validateHandler`, `validateLifecycle`, `validateSleepAction` in
//! `pkg/apis/core/validation/validation.go`), on the probe as `SetDefaults_Probe` and
//! `SetDefaults_HTTPGetAction` leave it: a zero timeout, period or threshold has become
//! its default, so only negative numbers are refused.

use k8s_openapi::api::core::v1::{
    ExecAction, GRPCAction, HTTPGetAction, Lifecycle, LifecycleHandler, Probe, SleepAction,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{BadValue, FieldError, child, forbidden, invalid, not_supported, required, s};
use super::names::is_http_header_name;
use super::ports::validate_port_num_or_name;

const NEGATIVE: &str = "must be greater than or equal to 0";

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Liveness,
    Readiness,
    Startup,
}

/// A number field after defaulting: zero (or unset) becomes `default`.
fn defaulted(value: Option<i32>, default: i32) -> i32 {
    match value.unwrap_or(0) {
        0 => default,
        v => v,
    }
}

pub(crate) fn validate_probe(
    probe: Option<&Probe>,
    kind: Kind,
    grace: Option<i64>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(probe) = probe else { return };
    let handler = Handler {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref(),
        grpc: probe.grpc.as_ref(),
        sleep: None,
    };
    validate_handler(&handler, grace, path, out);
    let success = defaulted(probe.success_threshold, 1);
    let numbers = [
        ("initialDelaySeconds", probe.initial_delay_seconds.unwrap_or(0)),
        ("timeoutSeconds", defaulted(probe.timeout_seconds, 1)),
        ("periodSeconds", defaulted(probe.period_seconds, 10)),
        ("successThreshold", success),
        ("failureThreshold", defaulted(probe.failure_threshold, 3)),
    ];
    for (name, value) in numbers {
        if value < 0 {
            out.push(invalid(&child(path, name), BadValue::Int(i64::from(value)), NEGATIVE));
        }
    }
    let tgps_path = child(path, "terminationGracePeriodSeconds");
    if let Some(tgps) = probe.termination_grace_period_seconds.filter(|t| *t <= 0) {
        out.push(invalid(&tgps_path, BadValue::Int(tgps), "must be greater than 0"));
    }
    match kind {
        Kind::Liveness | Kind::Startup if success != 1 => {
            let value = BadValue::Int(i64::from(success));
            out.push(invalid(&child(path, "successThreshold"), value, "must be 1"));
        }
        Kind::Readiness => {
            if let Some(tgps) = probe.termination_grace_period_seconds {
                let detail = "must not be set for readinessProbes";
                out.push(invalid(&tgps_path, BadValue::Int(tgps), detail));
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_lifecycle(
    lifecycle: &Lifecycle,
    grace: Option<i64>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let hooks = [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)];
    for (name, hook) in hooks {
        if let Some(hook) = hook {
            validate_handler(&from_lifecycle(hook), grace, &child(path, name), out);
        }
    }
}

/// Go's `commonHandler`: a probe has no sleep, a hook no gRPC.
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    sleep: Option<&'a SleepAction>,
}

fn from_lifecycle(hook: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: hook.exec.as_ref(),
        http_get: hook.http_get.as_ref(),
        tcp_socket: hook.tcp_socket.as_ref(),
        grpc: None,
        sleep: hook.sleep.as_ref(),
    }
}

fn validate_handler(
    handler: &Handler<'_>,
    grace: Option<i64>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let mut count = 0;
    let mut one = |name: &str, present: bool, out: &mut Vec<FieldError>| -> bool {
        if !present {
            return false;
        }
        if count > 0 {
            out.push(forbidden(&child(path, name), "may not specify more than 1 handler type"));
            return false;
        }
        count += 1;
        true
    };
    if one("exec", handler.exec.is_some(), out) {
        let exec = handler.exec.expect("checked");
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            out.push(required(&child(&child(path, "exec"), "command"), ""));
        }
    }
    if one("httpGet", handler.http_get.is_some(), out) {
        validate_http_get(handler.http_get.expect("checked"), &child(path, "httpGet"), out);
    }
    if one("tcpSocket", handler.tcp_socket.is_some(), out) {
        let port_path = child(&child(path, "tcpSocket"), "port");
        validate_port_num_or_name(&handler.tcp_socket.expect("checked").port, &port_path, out);
    }
    if one("grpc", handler.grpc.is_some(), out) {
        let port = IntOrString::Int(handler.grpc.expect("checked").port);
        validate_port_num_or_name(&port, &child(&child(path, "grpc"), "port"), out);
    }
    if one("sleep", handler.sleep.is_some(), out) {
        // PodLifecycleSleepActionAllowZero: beta and on by default in 1.33, GA from 1.34.
        let seconds = handler.sleep.expect("checked").seconds;
        if let Some(grace) = grace.filter(|g| seconds < 0 || seconds > *g) {
            let detail = format!(
                "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
            );
            out.push(invalid(&child(path, "sleep"), BadValue::Int(seconds), detail));
        }
    }
    if count == 0 {
        out.push(required(path, "must specify a handler type"));
    }
}

/// `validateHTTPGetAction`: the same for probes and hooks. Header names only, as Go
/// checks no header value.
fn validate_http_get(http: &HTTPGetAction, path: &str, out: &mut Vec<FieldError>) {
    // An empty path has become "/" and an empty scheme HTTP by defaulting
    // (`SetDefaults_HTTPGetAction`), so Go's "Required" on the path never fires.
    validate_port_num_or_name(&http.port, &child(path, "port"), out);
    let scheme = http.scheme.as_deref().filter(|s| !s.is_empty()).unwrap_or("HTTP");
    if !matches!(scheme, "HTTP" | "HTTPS") {
        out.push(not_supported(&child(path, "scheme"), s(scheme), &["HTTP", "HTTPS"]));
    }
    for header in http.http_headers.iter().flatten() {
        for msg in is_http_header_name(&header.name) {
            out.push(invalid(&child(path, "httpHeaders"), s(&header.name), msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::HTTPHeader;

    use super::*;

    fn shown(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn tcp(port: IntOrString) -> Option<TCPSocketAction> {
        Some(TCPSocketAction { port, ..Default::default() })
    }

    #[test]
    fn a_valid_probe_passes_with_defaults_filled_in() {
        let probe =
            Probe { tcp_socket: tcp(IntOrString::String("http".into())), ..Default::default() };
        let mut out = Vec::new();
        validate_probe(Some(&probe), Kind::Liveness, Some(30), "p", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn handlers_none_or_several() {
        let none = Probe::default();
        let two = Probe {
            exec: Some(ExecAction { command: Some(vec!["true".into()]) }),
            tcp_socket: tcp(IntOrString::Int(8080)),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_probe(Some(&none), Kind::Readiness, Some(30), "a", &mut out);
        validate_probe(Some(&two), Kind::Readiness, Some(30), "b", &mut out);
        assert_eq!(
            shown(out),
            [
                "a: Required value: must specify a handler type",
                "b.tcpSocket: Forbidden: may not specify more than 1 handler type",
            ]
        );
    }

    #[test]
    fn numbers_and_thresholds() {
        let probe = Probe {
            tcp_socket: tcp(IntOrString::Int(8080)),
            period_seconds: Some(-1),
            success_threshold: Some(2),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_probe(Some(&probe), Kind::Startup, Some(30), "s", &mut out);
        validate_probe(Some(&probe), Kind::Readiness, Some(30), "r", &mut out);
        assert_eq!(
            shown(out),
            [
                "s.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "s.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
                "s.successThreshold: Invalid value: 2: must be 1",
                "r.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "r.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
                "r.terminationGracePeriodSeconds: Invalid value: 0: must not be set for readinessProbes",
            ]
        );
    }

    #[test]
    fn http_get_and_sleep_hooks() {
        let hook = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(70000),
                scheme: Some("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sleep =
            LifecycleHandler { sleep: Some(SleepAction { seconds: 40 }), ..Default::default() };
        let lifecycle =
            Lifecycle { post_start: Some(hook), pre_stop: Some(sleep), ..Default::default() };
        let mut out = Vec::new();
        validate_lifecycle(&lifecycle, Some(30), "l", &mut out);
        assert_eq!(
            shown(out),
            [
                "l.postStart.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"l.postStart.httpGet.scheme: Unsupported value: "http": supported values: "HTTP", "HTTPS""#,
                "l.preStop.sleep: Invalid value: 40: must be non-negative and less than terminationGracePeriodSeconds (30)",
            ]
        );
    }

    /// `IsHTTPHeaderName`: letters, digits and '-', one error per bad name, on the list.
    #[test]
    fn http_header_names_of_a_hook() {
        let header = |name: &str| HTTPHeader { name: name.into(), value: "any value: ok".into() };
        let hook = |names: &[&str]| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/prestop".into()),
                port: IntOrString::Int(9901),
                http_headers: Some(names.iter().map(|n| header(n)).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let lifecycle =
            |names: &[&str]| Lifecycle { pre_stop: Some(hook(names)), ..Default::default() };
        let mut out = Vec::new();
        validate_lifecycle(&lifecycle(&["Portcullis-Stop-Token", "x-1"]), Some(30), "l", &mut out);
        assert_eq!(shown(out), Vec::<String>::new());
        let mut out = Vec::new();
        validate_lifecycle(&lifecycle(&["Stop Token", "", "X_Token"]), Some(30), "l", &mut out);
        let message = "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. \
                       'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')";
        assert_eq!(
            shown(out),
            [
                format!(r#"l.preStop.httpGet.httpHeaders: Invalid value: "Stop Token": {message}"#),
                format!(r#"l.preStop.httpGet.httpHeaders: Invalid value: "": {message}"#),
                format!(r#"l.preStop.httpGet.httpHeaders: Invalid value: "X_Token": {message}"#),
            ]
        );
    }
}
