//! What the controller sends to one pod's sidecar: the policy and windows that select it,
//! with schedules rather than on/off flags (so windows start on time while the controller
//! is away) and bypass tokens as digests (so secrets never travel in clear).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::{MaintenanceWindowSpec, UpstreamPolicySpec};

/// One pod's effective config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodConfig {
    /// The UpstreamPolicy in force (the oldest of those that select the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<NamedPolicy>,
    /// Every valid MaintenanceWindow that selects the pod, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<NamedWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPolicy {
    /// `namespace/name`.
    pub name: String,
    pub spec: UpstreamPolicySpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedWindow {
    /// `namespace/name`.
    pub name: String,
    /// When the window was created: "active from creation" counts from here.
    pub created: Timestamp,
    /// The spec, with `bypass.secretRef` left out: see `bypass`.
    pub spec: MaintenanceWindowSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<BypassDigest>,
}

/// A bypass as the sidecar needs it: the header, and the SHA-256 of the token, hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BypassDigest {
    pub header: String,
    pub sha256: String,
}
