//! Pure: the controller replicas' reports merged into one view per pod, and the rows of
//! `kubectl portcullis status`.
//!
//! A sidecar follows one replica at a time, but every replica it ever followed may still
//! remember it (as disconnected), so the same pod can appear in several reports.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::controller::programmed::Fleet;
use crate::controller::report::{Refusal, ReplicaReport, SidecarReport};

/// `(namespace, pod)`.
pub type PodKey = (String, String);

/// The state of a pod that no replica reports: it never connected to any.
pub const UNKNOWN: &str = "unknown";

/// One report per pod, merged as the leader merges them for statuses
/// ([`Fleet::merge`]).
pub fn merge(reports: &[ReplicaReport]) -> BTreeMap<PodKey, SidecarReport> {
    let fleet = Fleet::merge(reports.iter().flat_map(|r| r.sidecars.iter().cloned()));
    fleet.into_reports().into_iter().map(|(k, report)| ((k.namespace, k.name), report)).collect()
}

/// One line of `status`; also its JSON and YAML form, whose keys are always present.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub namespace: String,
    pub pod: String,
    /// The sidecar's version as it announced it to the controller.
    pub version: Option<String>,
    /// The replica it follows (or last followed).
    pub replica: Option<String>,
    pub acked_version: Option<u64>,
    pub latest_version: Option<u64>,
    /// A [`SidecarState`], or [`UNKNOWN`].
    pub state: String,
    /// Open now, by the controller's clock.
    pub active_windows: Vec<String>,
    pub refusal: Option<Refusal>,
}

/// A row for each injected pod, sorted by namespace and name. Pods that replicas still
/// remember but that are gone are left out: the list is of pods that exist.
pub fn rows(injected: &[PodKey], merged: &BTreeMap<PodKey, SidecarReport>) -> Vec<StatusRow> {
    let pods: BTreeSet<&PodKey> = injected.iter().collect();
    pods.into_iter()
        .map(|key| {
            let (namespace, pod) = key.clone();
            match merged.get(key) {
                Some(report) => StatusRow {
                    namespace,
                    pod,
                    version: report.sidecar_version.clone(),
                    replica: Some(report.replica.clone()),
                    acked_version: report.acked_version,
                    latest_version: Some(report.latest_version),
                    state: report.state.as_str().to_owned(),
                    active_windows: report.active_windows.clone(),
                    refusal: report.refusal.clone(),
                },
                None => StatusRow {
                    namespace,
                    pod,
                    version: None,
                    replica: None,
                    acked_version: None,
                    latest_version: None,
                    state: UNKNOWN.to_owned(),
                    active_windows: Vec::new(),
                    refusal: None,
                },
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::controller::report::SidecarState;
    use jiff::Timestamp;

    pub(crate) fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    pub(crate) fn report(pod: &str, replica: &str, state: SidecarState) -> SidecarReport {
        let connected = state != SidecarState::Disconnected;
        SidecarReport {
            namespace: "shop".to_owned(),
            pod: pod.to_owned(),
            replica: replica.to_owned(),
            sidecar_version: Some("0.1.0".to_owned()),
            state,
            connected_since: connected.then(|| at("2026-12-06T10:00:00Z")),
            disconnected_at: (!connected).then(|| at("2026-12-06T11:00:00Z")),
            latest_version: 7,
            acked_version: Some(7),
            refusal: None,
            policy: Some("shop/strict".to_owned()),
            windows: vec!["shop/db".to_owned()],
            active_windows: Vec::new(),
            holds: Vec::new(),
        }
    }

    fn replica(name: &str, sidecars: Vec<SidecarReport>) -> ReplicaReport {
        ReplicaReport { replica: name.to_owned(), leader: false, complete: true, sidecars }
    }

    fn key(pod: &str) -> PodKey {
        ("shop".to_owned(), pod.to_owned())
    }

    #[test]
    fn a_connected_report_wins_over_a_disconnected_one() {
        let mut gone = report("web-1", "r0", SidecarState::Disconnected);
        gone.disconnected_at = Some(at("2026-12-06T12:00:00Z"));
        let merged = merge(&[
            replica("r0", vec![gone]),
            replica("r1", vec![report("web-1", "r1", SidecarState::Pending)]),
        ]);
        assert_eq!(merged[&key("web-1")].replica, "r1");
        assert_eq!(merged[&key("web-1")].state, SidecarState::Pending);
    }

    #[test]
    fn the_newest_stream_wins_then_the_last_to_end() {
        let mut newer = report("web-1", "r0", SidecarState::Synced);
        newer.connected_since = Some(at("2026-12-06T10:30:00Z"));
        let older = report("web-1", "r1", SidecarState::Synced);
        let merged = merge(&[replica("r1", vec![older]), replica("r0", vec![newer])]);
        assert_eq!(merged[&key("web-1")].replica, "r0");

        let mut later = report("web-2", "r1", SidecarState::Disconnected);
        later.disconnected_at = Some(at("2026-12-06T11:30:00Z"));
        let earlier = report("web-2", "r0", SidecarState::Disconnected);
        let merged = merge(&[replica("r0", vec![earlier]), replica("r1", vec![later])]);
        assert_eq!(merged[&key("web-2")].replica, "r1");
    }

    #[test]
    fn rows_are_the_injected_pods_in_order_unknown_when_unreported() {
        let merged = merge(&[replica(
            "r0",
            vec![
                report("web-2", "r0", SidecarState::Synced),
                report("gone", "r0", SidecarState::Synced),
            ],
        )]);
        let injected = vec![key("web-2"), key("web-1"), key("web-2")];
        let rows = rows(&injected, &merged);
        let names: Vec<(&str, &str)> =
            rows.iter().map(|r| (r.pod.as_str(), r.state.as_str())).collect();
        assert_eq!(names, [("web-1", UNKNOWN), ("web-2", "synced")]);
        assert_eq!(rows[0].replica, None);
        assert_eq!(rows[1].replica.as_deref(), Some("r0"));
        assert_eq!((rows[1].acked_version, rows[1].latest_version), (Some(7), Some(7)));
    }
}
