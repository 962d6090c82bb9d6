//! `UpstreamPolicy`: what the sidecar enforces in front of the app.

// kube's printcolumn attributes repeat keys such as `type_` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// Timeouts, validation and overload protection that the Portcullis sidecar enforces
/// in front of the selected pods' app container.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "UpstreamPolicy",
    cel,
    namespaced,
    status = "UpstreamPolicyStatus",
    shortname = "upol",
    category = "portcullis",
    derive = "PartialEq",
    doc = "Timeouts (504), upstream validation (502) and overload protection (503) that the Portcullis sidecar enforces in front of the selected pods.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        description = "Whether the policy is in force"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].reason",
        description = "Why it is or is not in force"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.matchedPods",
        description = "Pods the policy selects"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status",
        description = "Whether every selected pod's sidecar enforces the current generation"
    ),
    printcolumn(
        name = "Enforcing",
        type_ = "integer",
        json_path = ".status.programmedPods",
        description = "Selected pods whose sidecar enforces the current generation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::for_kubernetes)]
pub struct UpstreamPolicySpec {
    /// Label selector over pods in this namespace. An empty selector selects every pod.
    #[serde(default)]
    pub selector: LabelSelector,

    /// Timeouts for the exchange with the app; each one that passes is answered as 504.
    #[serde(default)]
    pub timeouts: Timeouts,

    /// Checks on the app's responses; a response that fails one is answered as 502.
    #[serde(default)]
    pub validation: Validation,

    /// Overload protection: requests over the limit are answered as 503 with Retry-After.
    #[serde(default)]
    pub overload: Overload,

    /// Per-route overrides of timeouts and validation. The first route whose match fits the
    /// request wins; a request that no route matches uses the policy's own settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,

    /// How the bodies of the responses that the sidecar makes itself are written.
    #[serde(default)]
    pub errors: Errors,
}

/// Timeouts for one exchange with the app. A field left out takes the policy's value, or the
/// built-in default (connect 1s, responseHeaders 15s, request off, idle 5m, upstreamIdle 4s).
/// `0s` turns a timeout off.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Longest wait for the app to accept a TCP connection; past it the client gets 504
    /// with Proxy-Status error `connection_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,

    /// Longest wait, after the request was sent, for the app's response headers; past it the
    /// client gets 504 with Proxy-Status error `http_response_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<Duration>,

    /// Longest whole exchange, from the request's arrival to the response's last byte. Before
    /// the response headers it is answered as 504; after them the stream is ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,

    /// Longest silence on a streaming request or response body; a response body that stays
    /// silent this long is ended, a request body that does is answered as 408.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,

    /// Idle pooled connections to the app are closed after this long, before the app would
    /// close them itself (keep it below the app's own keep-alive timeout, 5s in Node.js).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_idle: Option<Duration>,
}

/// Checks on the app's responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Largest response header section accepted from the app, in bytes (status line and
    /// headers). A larger one is answered as 502 with Proxy-Status error
    /// `http_response_header_section_size`. Default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 1048576))]
    pub max_response_header_bytes: Option<u32>,

    /// Media types that the app may answer a successful (2xx) response with, such as
    /// `application/json` or `text/*`. Parameters are ignored. A 2xx response with a body of
    /// another type is answered as 502. Empty allows any type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_types: Option<Vec<String>>,
}

/// Overload protection. Enforced by the sidecar's overload layer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.queue) || !has(self.queue.size) || self.queue.size == 0 || (has(self.maxInFlight) && self.maxInFlight > 0) || (has(self.adaptive) && has(self.adaptive.enabled) && self.adaptive.enabled)").message("spec.overload.queue needs spec.overload.maxInFlight or the adaptive limit").field_path(".queue.size"))]
#[x_kube(validation = Rule::new("!has(self.retryAfter) || self.retryAfter.matches('[1-9]')").message("spec.overload.retryAfter must be positive").field_path(".retryAfter"))]
pub struct Overload {
    /// Most requests at the app at once; 0 means no limit.
    #[serde(default)]
    pub max_in_flight: u32,

    /// Requests over `maxInFlight` wait here, first in first out.
    #[serde(default)]
    pub queue: Queue,

    /// Let the in-flight limit follow the app's measured latency.
    #[serde(default)]
    pub adaptive: Adaptive,

    /// Retry-After sent with an overload 503 (jittered). Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
}

/// The bounded wait queue in front of the in-flight limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// Most requests waiting at once; 0 means none wait (excess is shed at once).
    #[serde(default)]
    pub size: u32,

    /// Longest wait in the queue before the request is shed. Default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// An in-flight limit that adapts to the app's latency.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minLimit) || self.minLimit >= 1").message("spec.overload.adaptive.minLimit must be at least 1").field_path(".minLimit"))]
#[x_kube(validation = Rule::new("!has(self.minLimit) || !has(self.maxLimit) || self.minLimit <= self.maxLimit").message("spec.overload.adaptive.minLimit must not exceed maxLimit").field_path(".minLimit"))]
pub struct Adaptive {
    /// Turn the adaptive limit on.
    #[serde(default)]
    pub enabled: bool,

    /// The limit never goes below this. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_limit: Option<u32>,

    /// The limit never goes above this. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_limit: Option<u32>,
}

/// A route: requests that it matches get its overrides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Which requests this route applies to.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,

    /// Timeouts for this route; fields left out take the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    /// Validation for this route; fields left out take the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

/// What a route matches. Every given condition must hold; an empty match matches all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.pathPrefix) || self.pathPrefix.startsWith('/')").message("spec.routes[].match.pathPrefix must start with /").field_path(".pathPrefix"))]
pub struct RouteMatch {
    /// Matches paths that equal this prefix or continue it after a `/` (so `/reports`
    /// matches `/reports` and `/reports/1`, not `/reportsx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,

    /// HTTP methods matched, such as GET; empty matches every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// How the sidecar writes the bodies of its own responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    /// `auto` picks by the request's Accept header (problem+json, HTML or plain text);
    /// `json`, `html` and `text` always use that format.
    #[serde(default)]
    pub format: ErrorFormat,
}

/// The body format of the sidecar's own responses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    #[default]
    Auto,
    Json,
    Html,
    Text,
}

/// What the controller last did with this policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::for_kubernetes)]
pub struct UpstreamPolicyStatus {
    /// The generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// How many pods the policy selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_pods: Option<i32>,

    /// How many of them have a sidecar that acknowledged the policy's current generation
    /// (whichever controller replica it follows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_pods: Option<i32>,

    /// `Accepted` tells whether the policy is in force (reasons Accepted, Invalid,
    /// Conflicted); `Programmed` whether every selected pod's sidecar enforces it (True:
    /// Programmed; False: Invalid, Pending, Behind, Overridden, SidecarsDisconnected,
    /// NotInjected, OutdatedSidecar, Refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
