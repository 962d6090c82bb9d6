use super::*;
use crate::controller::report::{Held, Refusal};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn report(pod: &str, replica: &str, state: SidecarState, digest: &str) -> SidecarReport {
    SidecarReport {
        namespace: "shop".into(),
        pod: pod.into(),
        replica: replica.into(),
        sidecar_version: Some("0.9.0".into()),
        state,
        connected_since: (state != SidecarState::Disconnected).then(|| ts("2026-12-06T10:00:00Z")),
        disconnected_at: (state == SidecarState::Disconnected).then(|| ts("2026-12-06T11:00:00Z")),
        latest_version: 7,
        acked_version: Some(7),
        refusal: None,
        policy: None,
        windows: vec!["shop/db".into()],
        active_windows: vec![],
        holds: vec![Held { name: "shop/db".into(), digest: digest.into() }],
    }
}

fn target(pods: &[&str]) -> Target {
    Target {
        generation: Some(2),
        digest: Some("new".into()),
        pods: pods
            .iter()
            .map(|p| TargetPod {
                key: ObjectKey::new("shop", *p),
                injected: true,
                overridden: false,
            })
            .collect(),
    }
}

#[test]
fn a_pod_is_programmed_when_its_sidecar_holds_the_current_digest_even_disconnected() {
    let fleet = Fleet::merge([
        report("a", "r1", SidecarState::Synced, "new"),
        report("b", "r2", SidecarState::Disconnected, "new"),
    ]);
    let v = verdict("shop/db", &target(&["a", "b"]), &fleet);
    assert!(v.is_programmed());
    assert_eq!((v.matched, v.programmed), (2, 2));
    assert_eq!(v.reason(), "Programmed");
    assert_eq!(v.message(Some(2)), "2 of 2 selected pods enforce generation 2");
}

#[test]
fn each_pod_says_why_not_and_the_worst_reason_leads() {
    let mut refused = report("c", "r1", SidecarState::Refused, "old");
    refused.refusal = Some(Refusal {
        version: Some(8),
        reason: "shop/db: spec.timeZone: unknown zone Mars/Olympus".into(),
        at: ts("2026-12-06T11:00:00Z"),
    });
    let fleet = Fleet::merge([
        report("a", "r1", SidecarState::Pending, "old"),
        report("b", "r2", SidecarState::Disconnected, "old"),
        refused,
        report("d", "r2", SidecarState::Synced, "old"),
    ]);
    let mut t = target(&["a", "b", "c", "d", "e", "f"]);
    t.pods[5].injected = false;
    let v = verdict("shop/db", &t, &fleet);
    assert_eq!((v.matched, v.programmed), (6, 0));
    assert_eq!(v.reason(), "Refused");
    assert_eq!(
        v.message(Some(2)),
        "0 of 6 selected pods enforce generation 2; not: shop/c (refused: shop/db: spec.timeZone: \
         unknown zone Mars/Olympus), shop/f (no sidecar injected), shop/e (no sidecar stream), \
         shop/b (sidecar disconnected since 2026-12-06T11:00:00Z), shop/d (holds an older \
         generation), and 1 more"
    );
    let without_refusal = Verdict {
        missing: v.missing.iter().filter(|(p, _)| p.name != "c").cloned().collect(),
        ..v.clone()
    };
    assert_eq!(without_refusal.reason(), "NotInjected");
}

#[test]
fn an_open_stream_wins_over_closed_ones_whichever_replica_reports_it() {
    let mut old = report("a", "r1", SidecarState::Disconnected, "old");
    old.disconnected_at = Some(ts("2026-12-06T12:00:00Z"));
    let mut live = report("a", "r2", SidecarState::Synced, "new");
    live.connected_since = Some(ts("2026-12-06T11:59:00Z"));
    for order in [vec![old.clone(), live.clone()], vec![live.clone(), old.clone()]] {
        let fleet = Fleet::merge(order);
        assert_eq!(fleet.get(&ObjectKey::new("shop", "a")).unwrap().replica, "r2");
    }
    let mut older = old.clone();
    older.disconnected_at = Some(ts("2026-12-06T09:00:00Z"));
    older.replica = "r3".into();
    let fleet = Fleet::merge([older, old]);
    assert_eq!(fleet.get(&ObjectKey::new("shop", "a")).unwrap().replica, "r1");
}

#[test]
fn outdated_and_overridden_pods_are_named() {
    let mut outdated = report("a", "r1", SidecarState::Outdated, "old");
    outdated.holds.clear();
    let fleet = Fleet::merge([outdated, report("b", "r1", SidecarState::Synced, "new")]);
    let mut t = target(&["a", "b"]);
    t.pods[1].overridden = true;
    let v = verdict("shop/db", &t, &fleet);
    assert_eq!(v.reason(), "OutdatedSidecar");
    assert_eq!(
        v.named(),
        "shop/a (outdated sidecar: it does not acknowledge), shop/b (an older UpstreamPolicy is \
         in force there)"
    );
}
