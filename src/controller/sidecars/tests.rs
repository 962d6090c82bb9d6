use super::*;
use crate::config::wire::{NamedPolicy, PodConfig};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn pod() -> ObjectKey {
    ObjectKey::new("shop", "web-1")
}

fn snapshot(version: u64, timeout: &str) -> Arc<Published> {
    let spec = serde_yaml::from_str(&format!("timeouts: {{request: {timeout}}}")).unwrap();
    let policy = NamedPolicy { name: "shop/checkout".into(), spec };
    Published::new(version, PodConfig { policy: Some(policy), windows: vec![] })
}

fn hello() -> Hello {
    Hello { version: Some("0.9.0".into()), acknowledges: true }
}

fn only(sidecars: &Sidecars) -> SidecarReport {
    let mut reports = sidecars.report(ts("2026-12-06T12:00:00Z"));
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

#[test]
fn applied_only_once_acknowledged_for_a_snapshot_that_was_sent() {
    let mut sidecars = Sidecars::new("controller-a");
    let stream = sidecars.connected(&pod(), hello(), ts("2026-12-06T11:00:00Z"));
    sidecars.sent(&pod(), stream, snapshot(5, "3s"));
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Pending);
    assert_eq!((report.latest_version, report.acked_version), (5, None));
    assert!(report.holds.is_empty(), "nothing is held before it is acknowledged");

    let now = ts("2026-12-06T11:00:01Z");
    sidecars.acknowledged(&pod(), stream, AckMessage::Applied { version: 9 }, now);
    assert_eq!(only(&sidecars).state, SidecarState::Pending, "9 was never sent");

    sidecars.acknowledged(&pod(), stream, AckMessage::Applied { version: 5 }, now);
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Synced);
    assert_eq!(report.acked_version, Some(5));
    assert_eq!(report.replica, "controller-a");
    assert_eq!(report.sidecar_version.as_deref(), Some("0.9.0"));
    assert_eq!(report.connected_since, Some(ts("2026-12-06T11:00:00Z")));
    assert_eq!(report.policy.as_deref(), Some("shop/checkout"));
    assert_eq!(report.holds, snapshot(5, "3s").held);
    assert_eq!(report.holds[0].name, "shop/checkout");

    // A newer snapshot: pending again, while the sidecar still holds the older one.
    sidecars.sent(&pod(), stream, snapshot(6, "4s"));
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Pending);
    assert_eq!((report.latest_version, report.acked_version), (6, Some(5)));
    assert_ne!(report.holds, snapshot(6, "4s").held, "a different spec, a different digest");
}

#[test]
fn a_refusal_stands_until_something_newer_is_applied() {
    let mut sidecars = Sidecars::new("controller-a");
    let stream = sidecars.connected(&pod(), hello(), ts("2026-12-06T11:00:00Z"));
    sidecars.sent(&pod(), stream, snapshot(5, "3s"));
    sidecars.acknowledged(
        &pod(),
        stream,
        AckMessage::Applied { version: 5 },
        ts("2026-12-06T11:00:00Z"),
    );
    sidecars.sent(&pod(), stream, snapshot(6, "4s"));
    let refused = AckMessage::Refused {
        version: Some(6),
        reason: "shop/checkout: spec.timeouts.request: too long".into(),
        unknown_fields: vec![],
    };
    sidecars.acknowledged(&pod(), stream, refused, ts("2026-12-06T11:00:02Z"));
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Refused);
    let refusal = report.refusal.unwrap();
    assert_eq!(refusal.version, Some(6));
    assert_eq!(refusal.reason, "shop/checkout: spec.timeouts.request: too long");
    assert_eq!(report.acked_version, Some(5), "the last good config stays in force");

    sidecars.sent(&pod(), stream, snapshot(7, "5s"));
    assert_eq!(only(&sidecars).state, SidecarState::Pending);
    sidecars.acknowledged(
        &pod(),
        stream,
        AckMessage::Applied { version: 7 },
        ts("2026-12-06T11:00:03Z"),
    );
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Synced);
    assert_eq!(report.refusal, None);
}

#[test]
fn unknown_fields_and_silent_sidecars_are_outdated() {
    let mut sidecars = Sidecars::new("controller-a");
    let stream = sidecars.connected(&pod(), hello(), ts("2026-12-06T11:00:00Z"));
    sidecars.sent(&pod(), stream, snapshot(5, "3s"));
    let refused = AckMessage::Refused {
        version: Some(5),
        reason: "this sidecar (0.9.0) does not know config.policy.spec.retries".into(),
        unknown_fields: vec!["config.policy.spec.retries".into()],
    };
    sidecars.acknowledged(&pod(), stream, refused, ts("2026-12-06T11:00:01Z"));
    assert_eq!(only(&sidecars).state, SidecarState::Outdated);

    let old = Hello { version: None, acknowledges: false };
    let stream = sidecars.connected(&pod(), old, ts("2026-12-06T11:00:05Z"));
    sidecars.sent(&pod(), stream, snapshot(8, "3s"));
    sidecars.acknowledged(
        &pod(),
        stream,
        AckMessage::Applied { version: 8 },
        ts("2026-12-06T11:00:06Z"),
    );
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Outdated);
    assert_eq!(report.acked_version, None, "nothing it did not acknowledge counts");
}

#[test]
fn a_disconnected_sidecar_keeps_what_it_applied_and_old_streams_are_ignored() {
    let mut sidecars = Sidecars::new("controller-a");
    let first = sidecars.connected(&pod(), hello(), ts("2026-12-06T11:00:00Z"));
    sidecars.sent(&pod(), first, snapshot(5, "3s"));
    sidecars.acknowledged(
        &pod(),
        first,
        AckMessage::Applied { version: 5 },
        ts("2026-12-06T11:00:00Z"),
    );
    sidecars.disconnected(&pod(), first, ts("2026-12-06T11:30:00Z"));
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Disconnected);
    assert_eq!(report.disconnected_at, Some(ts("2026-12-06T11:30:00Z")));
    assert_eq!(report.connected_since, None);
    assert_eq!(report.holds, snapshot(5, "3s").held, "it still enforces what it applied");

    let second = sidecars.connected(&pod(), hello(), ts("2026-12-06T11:31:00Z"));
    sidecars.disconnected(&pod(), first, ts("2026-12-06T11:32:00Z"));
    sidecars.sent(&pod(), first, snapshot(9, "9s"));
    let report = only(&sidecars);
    assert_eq!(report.state, SidecarState::Pending, "the first stream's end is old news");
    assert_eq!(report.acked_version, Some(5));
    assert_eq!(report.latest_version, 0);

    sidecars.disconnected(&pod(), second, ts("2026-12-06T11:33:00Z"));
    sidecars.retain(|_| true);
    assert_eq!(sidecars.report(ts("2026-12-06T12:00:00Z")).len(), 1);
    sidecars.retain(|_| false);
    assert!(sidecars.report(ts("2026-12-06T12:00:00Z")).is_empty(), "a deleted pod is forgotten");
}
