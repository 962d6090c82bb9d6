//! Every CEL rule on the CRDs, run locally with kube's CEL evaluator: the API server runs
//! the same rules and refuses the object with the same message.

use kube::core::cel::ValidationErrors;

use super::{MaintenanceWindow, UpstreamPolicy};

fn window(spec: &str) -> Result<(), ValidationErrors> {
    let doc = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\nmetadata: {{name: w}}\nspec: {spec}\n"
    );
    serde_yaml::from_str::<MaintenanceWindow>(&doc).unwrap().validate_cel()
}

fn policy(spec: &str) -> Result<(), ValidationErrors> {
    let doc = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\nmetadata: {{name: p}}\nspec: {spec}\n"
    );
    serde_yaml::from_str::<UpstreamPolicy>(&doc).unwrap().validate_cel()
}

/// Asserts a refusal whose message is exactly `message`.
fn refused(result: Result<(), ValidationErrors>, message: &str) {
    let errors = result.expect_err(message).to_string();
    assert!(errors.contains(message), "expected {message:?} in {errors}");
}

#[test]
fn valid_windows_pass() {
    for spec in [
        "{}",
        r#"{start: "2026-12-01T02:00:00Z", end: "2026-12-01T03:00:00Z"}"#,
        r#"{start: "2026-12-01T02:00:00Z"}"#,
        r#"{schedule: "0 2 * * SUN", duration: 1h, timeZone: Europe/Berlin, retryAfter: 5m}"#,
        r#"{schedule: "0 2 * * *", duration: 30m, timeZone: UTC}"#,
        r#"{schedule: "0 2 * * *", duration: 30m, timeZone: America/Argentina/Buenos_Aires}"#,
    ] {
        assert!(window(spec).is_ok(), "{spec}: {:?}", window(spec));
    }
}

#[test]
fn end_after_start() {
    refused(
        window(r#"{start: "2026-12-01T03:00:00Z", end: "2026-12-01T02:00:00Z"}"#),
        "spec.end must be after spec.start",
    );
    refused(
        window(r#"{start: "2026-12-01T03:00:00Z", end: "2026-12-01T03:00:00Z"}"#),
        "spec.end must be after spec.start",
    );
}

#[test]
fn schedule_needs_duration_and_excludes_start_and_end() {
    refused(window(r#"{schedule: "0 2 * * *"}"#), "spec.schedule needs spec.duration");
    refused(
        window(r#"{schedule: "0 2 * * *", duration: 1h, start: "2026-12-01T03:00:00Z"}"#),
        "spec.schedule cannot be combined with spec.start or spec.end",
    );
    refused(
        window(r#"{schedule: "0 2 * * *", duration: 1h, end: "2026-12-01T03:00:00Z"}"#),
        "spec.schedule cannot be combined with spec.start or spec.end",
    );
    refused(window("{duration: 1h}"), "spec.duration and spec.timeZone need spec.schedule");
    refused(
        window("{timeZone: Europe/Berlin}"),
        "spec.duration and spec.timeZone need spec.schedule",
    );
}

#[test]
fn durations_are_positive() {
    refused(window(r#"{schedule: "0 2 * * *", duration: 0s}"#), "spec.duration must be positive");
    refused(window("{retryAfter: 0m}"), "spec.retryAfter must be positive");
    refused(policy("{overload: {retryAfter: 0s}}"), "spec.overload.retryAfter must be positive");
}

#[test]
fn time_zone_names_look_like_iana_names() {
    for bad in ["Berlin", "Europe/", "+01:00", "CET-1", "europe berlin"] {
        refused(
            window(&format!(r#"{{schedule: "0 2 * * *", duration: 1h, timeZone: "{bad}"}}"#)),
            "spec.timeZone must be an IANA time zone name such as Europe/Berlin",
        );
    }
}

#[test]
fn policy_rules() {
    assert!(policy("{}").is_ok());
    assert!(policy("{overload: {maxInFlight: 4, queue: {size: 8, timeout: 1s}}}").is_ok());
    assert!(
        policy(
            "{overload: {adaptive: {enabled: true, minLimit: 2, maxLimit: 20}, queue: {size: 8}}}"
        )
        .is_ok()
    );
    refused(
        policy("{overload: {queue: {size: 8}}}"),
        "spec.overload.queue needs spec.overload.maxInFlight or the adaptive limit",
    );
    refused(
        policy("{overload: {adaptive: {enabled: true, minLimit: 30, maxLimit: 20}}}"),
        "spec.overload.adaptive.minLimit must not exceed maxLimit",
    );
    refused(
        policy("{overload: {adaptive: {enabled: true, minLimit: 0}}}"),
        "spec.overload.adaptive.minLimit must be at least 1",
    );
    refused(
        policy("{routes: [{match: {pathPrefix: reports}}]}"),
        "spec.routes[].match.pathPrefix must start with /",
    );
    assert!(policy("{routes: [{match: {pathPrefix: /reports}}]}").is_ok());
}
