use std::collections::BTreeMap;

use super::*;
use crate::admin::state::Recent5xx;
use crate::controller::report::{ReplicaReport, SidecarState};
use crate::plugin::merge::tests::{at, report};
use crate::plugin::merge::{PodKey, merge, rows};

fn replica(name: &str, sidecars: Vec<SidecarReport>) -> ReplicaReport {
    ReplicaReport {
        replica: name.to_owned(),
        leader: name.ends_with('0'),
        complete: true,
        sidecars,
    }
}

/// The table for the injected pods `shop/{pods}` given these replicas' reports.
fn status(pods: &[&str], replicas: &[ReplicaReport]) -> String {
    let injected: Vec<PodKey> = pods.iter().map(|p| ("shop".to_owned(), p.to_string())).collect();
    status_table(&rows(&injected, &merge(replicas)))
}

#[test]
fn all_synced() {
    let mut web_2 = report("web-2", "portcullis-0", SidecarState::Synced);
    web_2.active_windows = vec!["shop/db".to_owned(), "shop/nightly".to_owned()];
    let replicas = [replica(
        "portcullis-0",
        vec![report("web-1", "portcullis-0", SidecarState::Synced), web_2],
    )];
    assert_eq!(
        status(&["web-1", "web-2"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE    WINDOWS
shop        web-1   0.1.0     portcullis-0   7/7          synced   -
shop        web-2   0.1.0     portcullis-0   7/7          synced   shop/db,shop/nightly
"
    );
}

#[test]
fn a_disconnected_pod() {
    let mut gone = report("web-1", "portcullis-0", SidecarState::Disconnected);
    gone.acked_version = Some(6);
    let replicas = [replica("portcullis-0", vec![gone])];
    assert_eq!(
        status(&["web-1"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE          WINDOWS
shop        web-1   0.1.0     portcullis-0   6/7          disconnected   -
"
    );
}

#[test]
fn a_refused_pod_gets_a_footer_with_the_reason() {
    let mut refused = report("web-2", "portcullis-0", SidecarState::Refused);
    refused.acked_version = Some(6);
    refused.refusal = Some(Refusal {
        version: Some(7),
        reason: "routes[0]: unknown field `retries`".to_owned(),
        at: at("2026-12-06T10:05:00Z"),
    });
    let replicas = [replica(
        "portcullis-0",
        vec![report("web-1", "portcullis-0", SidecarState::Synced), refused],
    )];
    assert_eq!(
        status(&["web-1", "web-2"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE     WINDOWS
shop        web-1   0.1.0     portcullis-0   7/7          synced    -
shop        web-2   0.1.0     portcullis-0   6/7          refused   -

shop/web-2: refused version 7: routes[0]: unknown field `retries`
"
    );
}

#[test]
fn an_outdated_sidecar() {
    let mut old = report("web-1", "portcullis-0", SidecarState::Outdated);
    old.sidecar_version = None;
    old.acked_version = None;
    let replicas = [replica("portcullis-0", vec![old])];
    assert_eq!(
        status(&["web-1"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE      WINDOWS
shop        web-1   -         portcullis-0   -/7          outdated   -
"
    );
}

#[test]
fn sidecars_split_between_two_replicas() {
    // web-1 moved from portcullis-1 to portcullis-0: the connected report wins.
    let replicas = [
        replica(
            "portcullis-1",
            vec![
                report("web-1", "portcullis-1", SidecarState::Disconnected),
                report("web-2", "portcullis-1", SidecarState::Synced),
            ],
        ),
        replica(
            "portcullis-0",
            vec![
                report("web-1", "portcullis-0", SidecarState::Synced),
                report("web-3", "portcullis-0", SidecarState::Pending),
            ],
        ),
    ];
    assert_eq!(
        status(&["web-1", "web-2", "web-3"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE     WINDOWS
shop        web-1   0.1.0     portcullis-0   7/7          synced    -
shop        web-2   0.1.0     portcullis-1   7/7          synced    -
shop        web-3   0.1.0     portcullis-0   7/7          pending   -
"
    );
}

#[test]
fn an_injected_pod_no_replica_knows_is_unknown() {
    let replicas =
        [replica("portcullis-0", vec![report("web-1", "portcullis-0", SidecarState::Synced)])];
    assert_eq!(
        status(&["web-1", "web-9"], &replicas),
        "\
NAMESPACE   POD     VERSION   REPLICA        GENERATION   STATE     WINDOWS
shop        web-1   0.1.0     portcullis-0   7/7          synced    -
shop        web-9   -         -              -            unknown   -
"
    );
}

fn sidecar(
    windows: Vec<WindowNow>,
    request: RequestNow,
    by_reason: &[(&str, u64)],
) -> SidecarStatus {
    SidecarStatus {
        version: "0.1.0".to_owned(),
        generation: 7,
        controller_connected: true,
        policy: Some("shop/strict".to_owned()),
        windows,
        request,
        recent_5xx: Recent5xx {
            seconds: 300,
            by_reason: by_reason
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
        },
    }
}

#[test]
fn why_under_an_active_window() {
    let windows = vec![
        WindowNow {
            name: "shop/db".to_owned(),
            active: true,
            until: Some(at("2026-12-06T18:00:00Z")),
            next: None,
            exempt_paths: vec!["/healthz".to_owned(), "/status".to_owned()],
            bypass: true,
        },
        WindowNow {
            name: "shop/nightly".to_owned(),
            active: false,
            until: None,
            next: Some(at("2026-12-07T02:00:00Z")),
            exempt_paths: Vec::new(),
            bypass: false,
        },
    ];
    let request = RequestNow {
        status: Some(503),
        window: Some("shop/db".to_owned()),
        until: Some(at("2026-12-06T18:00:00Z")),
        retry_after: Some(840),
    };
    let status = sidecar(windows, request, &[("none", 1), ("maintenance", 12)]);
    let mut synced = report("web-1", "portcullis-0", SidecarState::Synced);
    synced.active_windows = vec!["shop/db".to_owned()];
    assert_eq!(
        why_text("shop", "web-1", &status, ControllerView::Reported(&synced)),
        "\
Pod:          shop/web-1
Sidecar:      version 0.1.0, config generation 7, controller stream connected
Policy:       shop/strict
Windows:      shop/db: active until 2026-12-06T18:00:00Z; exempt paths /healthz, /status; bypass configured
              shop/nightly: inactive, next at 2026-12-07T02:00:00Z; no exempt paths; no bypass
Requests:     a request gets 503 from window shop/db (Retry-After: 840s) until 2026-12-06T18:00:00Z
Recent 5xx:   over the last 300s: maintenance 12, none 1
Controller:   synced with replica portcullis-0, acked/latest 7/7
"
    );
}

#[test]
fn why_with_no_window() {
    let request = RequestNow { status: None, window: None, until: None, retry_after: None };
    let mut status = sidecar(Vec::new(), request, &[]);
    status.policy = None;
    status.controller_connected = false;
    assert_eq!(
        why_text("shop", "web-9", &status, ControllerView::NotReported),
        "\
Pod:          shop/web-9
Sidecar:      version 0.1.0, config generation 7, controller stream not connected
Policy:       none (the defaults)
Windows:      none
Requests:     requests go to the app; no window is scheduled
Recent 5xx:   no 5xx over the last 300s
Controller:   unknown: no replica reports this pod (its sidecar never connected)
"
    );
}

#[test]
fn why_before_a_window_and_after_a_refusal() {
    let windows = vec![WindowNow {
        name: "shop/db".to_owned(),
        active: false,
        until: None,
        next: Some(at("2026-12-06T18:00:00Z")),
        exempt_paths: Vec::new(),
        bypass: false,
    }];
    let request = RequestNow {
        status: None,
        window: None,
        until: Some(at("2026-12-06T18:00:00Z")),
        retry_after: None,
    };
    let status = sidecar(windows, request, &[("none", 2)]);
    let mut refused = report("web-2", "portcullis-1", SidecarState::Refused);
    refused.acked_version = Some(6);
    refused.refusal = Some(Refusal {
        version: Some(7),
        reason: "bad route".to_owned(),
        at: at("2026-12-06T10:05:00Z"),
    });
    let text = why_text("shop", "web-2", &status, ControllerView::Reported(&refused));
    assert!(
        text.contains(
            "Requests:     requests go to the app; next window shop/db at 2026-12-06T18:00:00Z\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "Controller:   refused with replica portcullis-1, acked/latest 6/7\n              \
             refused version 7: bad route (at 2026-12-06T10:05:00Z)\n"
        ),
        "{text}"
    );
}
