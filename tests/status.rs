//! Status writes: what `kubectl get upol,mw` and `kubectl describe` will show, checked as
//! the server-side-apply PATCHes and Events that reach a Kubernetes API over HTTP.

mod support;

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::runtime::events::{Recorder, Reporter};
use portcullis::controller::index::{Index, Labels, Meta, ObjectKey};
use portcullis::controller::status::StatusWriter;
use serde_json::Value;
use support::fake_api::FakeApi;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn shop(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn patch_for<'a>(patches: &'a [(String, Value)], path: &str) -> Vec<&'a Value> {
    patches.iter().filter(|(p, _)| p == path).map(|(_, body)| body).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_events_follow_the_index() {
    let api = FakeApi::start().await;
    let mut index = Index::default();
    index.assume_listed();
    index
        .apply_pod(shop("checkout-1"), Labels::from([("app".to_string(), "checkout".to_string())]));
    index
        .apply_pod(shop("checkout-2"), Labels::from([("app".to_string(), "checkout".to_string())]));
    fn spec<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).unwrap()
    }
    index.apply_policy(
        shop("older"),
        Meta { created: ts("2026-01-01T00:00:00Z"), generation: Some(3) },
        spec("selector: {matchLabels: {app: checkout}}"),
    );
    index.apply_policy(
        shop("newer"),
        Meta { created: ts("2026-02-01T00:00:00Z"), generation: Some(1) },
        spec("selector: {matchLabels: {app: checkout}}"),
    );
    index.apply_window(
        shop("weekly"),
        Meta { created: ts("2026-01-01T00:00:00Z"), generation: Some(2) },
        spec("schedule: \"0 2 * * SUN\"\nduration: 1h"),
    );
    let index = Arc::new(Mutex::new(index));
    let client = api.client();
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "portcullis".into(), instance: None });
    let mut writer = StatusWriter::new(client, index.clone(), Default::default(), recorder);

    // Sunday 2026-11-29, 02:30 UTC: the weekly window is on until 03:00.
    let boundary = writer.sync(ts("2026-11-29T02:30:00Z")).await;
    assert_eq!(
        boundary,
        Some(ts("2026-11-29T03:00:00Z")),
        "the next status change comes by itself at the window's end"
    );
    let patches = api.patches();

    let older = patch_for(
        &patches,
        "/apis/portcullis.dev/v1alpha1/namespaces/shop/upstreampolicies/older/status",
    );
    assert_eq!(older.len(), 1);
    let status = &older[0]["status"];
    assert_eq!(older[0]["kind"], "UpstreamPolicy");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["matchedPods"], 2);
    assert_eq!(status["conditions"][0]["type"], "Accepted");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "Accepted");
    assert_eq!(status["conditions"][0]["lastTransitionTime"], "2026-11-29T02:30:00Z");

    let newer = patch_for(
        &patches,
        "/apis/portcullis.dev/v1alpha1/namespaces/shop/upstreampolicies/newer/status",
    );
    let condition = &newer[0]["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Conflicted");
    assert_eq!(
        condition["message"],
        "older UpstreamPolicy older selects some of the same pods and wins there"
    );

    let weekly = patch_for(
        &patches,
        "/apis/portcullis.dev/v1alpha1/namespaces/shop/maintenancewindows/weekly/status",
    );
    let status = &weekly[0]["status"];
    assert_eq!(status["active"], true);
    assert_eq!(
        status["currentWindow"],
        serde_json::json!({"start": "2026-11-29T02:00:00Z", "end": "2026-11-29T03:00:00Z"})
    );
    assert_eq!(status["nextWindow"]["start"], "2026-12-06T02:00:00Z");
    assert_eq!(status["conditions"][1]["type"], "Active");
    assert_eq!(status["conditions"][1]["status"], "True");

    // An Event per Accepted state: Normal for the accepted ones, Warning for the loser.
    let events = api.posts();
    let reasons: Vec<(String, String, String)> = events
        .iter()
        .map(|(_, e)| {
            (
                e["regarding"]["name"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(reasons.contains(&("older".into(), "Normal".into(), "Accepted".into())), "{reasons:?}");
    assert!(
        reasons.contains(&("newer".into(), "Warning".into(), "Conflicted".into())),
        "{reasons:?}"
    );

    // Nothing changed: nothing is written.
    writer.sync(ts("2026-11-29T02:30:01Z")).await;
    assert_eq!(api.patches().len(), patches.len());
    assert_eq!(api.posts().len(), events.len());

    // The window ends: its status changes by itself; the older policy is deleted, the
    // newer one is accepted and says so with an Event.
    index.lock().unwrap().delete_policy(&shop("older"));
    writer.sync(ts("2026-11-29T03:00:00Z")).await;
    let patches = api.patches();
    let weekly = patch_for(
        &patches,
        "/apis/portcullis.dev/v1alpha1/namespaces/shop/maintenancewindows/weekly/status",
    );
    let last = weekly.last().unwrap();
    assert_eq!(last["status"]["active"], false);
    assert_eq!(last["status"]["conditions"][1]["lastTransitionTime"], "2026-11-29T03:00:00Z");
    assert_eq!(
        last["status"]["conditions"][0]["lastTransitionTime"], "2026-11-29T02:30:00Z",
        "Accepted did not change"
    );
    let newer = patch_for(
        &patches,
        "/apis/portcullis.dev/v1alpha1/namespaces/shop/upstreampolicies/newer/status",
    );
    assert_eq!(newer.last().unwrap()["status"]["conditions"][0]["reason"], "Accepted");
    assert!(
        api.posts()
            .iter()
            .any(|(_, e)| e["regarding"]["name"] == "newer" && e["reason"] == "Accepted")
    );
}
