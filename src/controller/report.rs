//! What a controller replica says about the sidecars that follow it: `GET /v1/sidecars` on
//! its admin port. The leader merges every replica's report into the resources' statuses,
//! and `kubectl portcullis` reads the same reports through the API server's pod proxy.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The admin path of a replica's report.
pub const SIDECARS_PATH: &str = "/v1/sidecars";

/// One replica's view of the sidecars that follow it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaReport {
    /// The replica's name (its pod name, as in the leader election).
    pub replica: String,
    /// Whether this replica holds the Lease, and so writes statuses.
    pub leader: bool,
    /// Whether every watched kind's initial list is in its index. Until then it serves no
    /// config, and its report is empty.
    pub complete: bool,
    pub sidecars: Vec<SidecarReport>,
}

/// Where one sidecar stands with the replica it follows (or last followed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarReport {
    pub namespace: String,
    pub pod: String,
    /// The replica this report comes from.
    pub replica: String,
    /// The version the sidecar announced; `None` for a sidecar too old to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_version: Option<String>,
    pub state: SidecarState,
    /// When the stream now open began; `None` while disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<Timestamp>,
    /// When the last stream ended, while no other is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<Timestamp>,
    /// The version of the newest snapshot this replica holds for the pod.
    pub latest_version: u64,
    /// The version of the snapshot the sidecar last said it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_version: Option<u64>,
    /// The last snapshot the sidecar refused, if it refused the newest one it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// What the applied snapshot holds: the UpstreamPolicy (`namespace/name`)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// ... the MaintenanceWindows ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// ... of which these are open now, by the controller's clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_windows: Vec<String>,
    /// Each resource of the applied snapshot with the digest of what was sent for it: the
    /// leader compares these with what its own index would send now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Held>,
}

/// Where a sidecar stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SidecarState {
    /// Connected, and applied the newest snapshot sent.
    Synced,
    /// Connected; the newest snapshot is sent but not acknowledged yet.
    Pending,
    /// Connected, and refused the newest snapshot: it keeps its last good config.
    Refused,
    /// Connected, but too old to acknowledge, or refused a snapshot for fields it does not
    /// know: nothing it holds can be confirmed.
    Outdated,
    /// No stream open: it keeps its last config, and misses every change.
    Disconnected,
}

impl SidecarState {
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarState::Synced => "synced",
            SidecarState::Pending => "pending",
            SidecarState::Refused => "refused",
            SidecarState::Outdated => "outdated",
            SidecarState::Disconnected => "disconnected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// The refused snapshot's version; `None` when the line could not be read at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub reason: String,
    pub at: Timestamp,
}

/// One resource a sidecar holds, and the digest of the form it holds it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// `namespace/name`.
    pub name: String,
    pub digest: String,
}
