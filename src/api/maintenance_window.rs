//! `MaintenanceWindow`: when the selected pods answer 503 with Retry-After.

// kube's printcolumn attributes repeat keys such as `type_` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// A period during which the selected pods answer 503 with a Retry-After that tells clients
/// when the window ends. One-off (`start`/`end`), recurring (`schedule` + `duration` +
/// `timeZone`), or open-ended (none of them: active from creation until deleted).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "MaintenanceWindow",
    cel,
    namespaced,
    status = "MaintenanceWindowStatus",
    shortname = "mw",
    category = "portcullis",
    derive = "PartialEq",
    doc = "A maintenance window: the selected pods answer 503 with a correct Retry-After while it is active.",
    printcolumn(
        name = "Active",
        type_ = "boolean",
        json_path = ".status.active",
        description = "Whether the window is active now"
    ),
    printcolumn(
        name = "Next",
        // A string, not a date: kubectl prints dates as ages, and a start in the future as
        // `<invalid>`.
        type_ = "string",
        json_path = ".status.nextWindow.start",
        description = "When the next window starts"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        description = "Whether the window is in force"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.matchedPods",
        description = "Pods the window selects"
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
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("spec.end must be after spec.start").field_path(".end"))]
#[x_kube(validation = Rule::new("!has(self.schedule) || has(self.duration)").message("spec.schedule needs spec.duration").field_path(".duration"))]
#[x_kube(validation = Rule::new("!has(self.schedule) || (!has(self.start) && !has(self.end))").message("spec.schedule cannot be combined with spec.start or spec.end").field_path(".schedule"))]
#[x_kube(validation = Rule::new("has(self.schedule) || (!has(self.duration) && !has(self.timeZone))").message("spec.duration and spec.timeZone need spec.schedule").field_path(".schedule"))]
#[x_kube(validation = Rule::new("!has(self.duration) || self.duration.matches('[1-9]')").message("spec.duration must be positive").field_path(".duration"))]
#[x_kube(validation = Rule::new("!has(self.retryAfter) || self.retryAfter.matches('[1-9]')").message("spec.retryAfter must be positive").field_path(".retryAfter"))]
#[x_kube(validation = Rule::new("!has(self.timeZone) || self.timeZone.matches('^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+)$')").message("spec.timeZone must be an IANA time zone name such as Europe/Berlin").field_path(".timeZone"))]
#[schemars(transform = crate::api::schema::for_kubernetes)]
pub struct MaintenanceWindowSpec {
    /// Label selector over pods in this namespace. An empty selector selects every pod.
    #[serde(default)]
    pub selector: LabelSelector,

    /// One-off window start (RFC 3339). With no `end`, the window lasts until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,

    /// One-off window end (RFC 3339). With no `start`, the window is active from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,

    /// Recurring window: a cron expression (minute hour day-of-month month day-of-week),
    /// evaluated in `timeZone`. Needs `duration`; excludes `start` and `end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,

    /// How long each recurring window lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,

    /// IANA time zone in which `schedule` is read, such as Europe/Berlin. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,

    /// True turns the window off without deleting it.
    #[serde(default)]
    pub suspend: bool,

    /// Retry-After sent while the window's end is unknown (open-ended windows). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,

    /// Path prefixes served normally during the window, such as /healthz.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_paths: Vec<String>,

    /// Lets requests that carry a secret token through during the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<Bypass>,

    /// Text shown to clients in the 503's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An authenticated way through a maintenance window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bypass {
    /// Request header that carries the token. It is removed before the request is forwarded.
    pub header: String,

    /// The Secret, in this namespace, whose key holds the token.
    pub secret_ref: SecretKeyRef,
}

/// A key in a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// What the controller last saw of this window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::api::schema::for_kubernetes)]
pub struct MaintenanceWindowStatus {
    /// The generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// How many pods the window selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_pods: Option<i32>,

    /// How many of them have a sidecar that acknowledged the window's current generation
    /// (whichever controller replica it follows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_pods: Option<i32>,

    /// Whether the window is active now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,

    /// The window in force now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_window: Option<WindowSpan>,

    /// The next window to start, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<WindowSpan>,

    /// `Accepted` (reasons Accepted, Invalid), `Active` (WindowOpen, WindowClosed) and
    /// `Programmed` (True: Programmed; False: Invalid, Pending, Behind,
    /// SidecarsDisconnected, NotInjected, OutdatedSidecar, Refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A span of time; `end` is absent when it is not known.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowSpan {
    /// When the span starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// When the span ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
}
