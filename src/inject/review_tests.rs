use serde_json::json;

use super::*;
use crate::inject::outcome::Injection;

/// No Services known.
fn none(_: &str) -> Vec<Arc<Service>> {
    Vec::new()
}

use crate::inject::expected;
use crate::inject::pre_stop::PreStop;
use crate::inject::stop_token::{RandomError, StopToken};

use expected::{CA, STOP_TOKEN};

/// The test's stop token, for every pod.
fn fixed() -> Result<StopToken, RandomError> {
    Ok(STOP_TOKEN.parse().unwrap())
}

/// A pod as a ReplicaSet creates it, as the API server hands it to mutating webhooks: no
/// name yet, defaults applied, the ServiceAccount admission plugin's volume added.
fn replicaset_pod() -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d9c5b8f4-",
            "namespace": "shop",
            "creationTimestamp": null,
            "labels": {"app": "web", "pod-template-hash": "7d9c5b8f4"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c5b8f4",
                "uid": "4f3b2a10-9c1d-4e6f-8a7b-2c3d4e5f6a7b",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
            ], "defaultMode": 420}}],
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

fn request(operation: &str, object: Value) -> Value {
    expected::admission_review("b7c1e0f2-5a3d-4c8e-9f10-2a3b4c5d6e7f", operation, object)
}

fn answer(body: &Value) -> (Value, Decision) {
    let reviewed =
        review(&serde_json::to_vec(body).unwrap(), &InjectConfig::default(), CA, &none, &fixed)
            .unwrap();
    (serde_json::from_slice(&reviewed.body).unwrap(), reviewed.decision)
}

fn expected_injection(pod: &Value) -> Injection {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    match mutate(&pod, "shop", &InjectConfig::default(), CA, &[], &fixed().unwrap()) {
        Outcome::Injected(injection) => {
            let errors = crate::inject::mutate::refusals_after(&pod, &injection.patch);
            assert_eq!(errors, Vec::<String>::new(), "the API server would refuse the pod");
            injection
        }
        other => panic!("{other:?}"),
    }
}

fn allowed_unchanged() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "b7c1e0f2-5a3d-4c8e-9f10-2a3b4c5d6e7f", "allowed": true, "status": {}}
    })
}

#[test]
fn a_created_pod_gets_the_patch_as_base64() {
    let pod = replicaset_pod();
    let (response, decision) = answer(&request("CREATE", pod.clone()));
    let injection = expected_injection(&pod);
    let patch_bytes = serde_json::to_vec(&injection.patch).unwrap();
    assert_eq!(
        response,
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "b7c1e0f2-5a3d-4c8e-9f10-2a3b4c5d6e7f",
                "allowed": true,
                "status": {},
                "patch": serde_json::to_value(ByteString(patch_bytes)).unwrap(),
                "patchType": "JSONPatch"
            }
        })
    );
    // Existing volumes: the token volume is appended, not a new array.
    let ops = serde_json::to_value(&injection.patch).unwrap();
    assert_eq!(ops.as_array().unwrap().last().unwrap()["path"], "/spec/volumes/-");
    assert_eq!(
        decision,
        Decision {
            verdict: Verdict::Injected,
            reason: "injected",
            message: injection.summary.to_string(),
            namespace: "shop".into(),
            pod: "web-7d9c5b8f4-".into(),
            owner: Some(ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("ReplicaSet".into()),
                name: Some("web-7d9c5b8f4".into()),
                uid: Some("4f3b2a10-9c1d-4e6f-8a7b-2c3d4e5f6a7b".into()),
                namespace: Some("shop".into()),
                ..ObjectReference::default()
            }),
            dry_run: false,
            injected: Some(injection.summary.clone()),
        }
    );
}

#[test]
fn a_skipped_pod_is_allowed_without_a_patch() {
    let mut pod = replicaset_pod();
    pod["spec"]["hostNetwork"] = json!(true);
    let (response, decision) = answer(&request("CREATE", pod));
    assert_eq!(response, allowed_unchanged());
    assert_eq!(decision.verdict, Verdict::Skipped);
    assert_eq!(decision.reason, "host_network");
    assert_eq!(decision.owner.unwrap().kind.as_deref(), Some("ReplicaSet"));
}

#[test]
fn the_owner_is_the_controller_else_the_first() {
    let mut pod = replicaset_pod();
    pod["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u1"},
        {"apiVersion": "batch/v1", "kind": "Job", "name": "job", "uid": "u2", "controller": true}
    ]);
    let (_, decision) = answer(&request("CREATE", pod.clone()));
    assert_eq!(decision.owner.unwrap().name.as_deref(), Some("job"));
    pod["metadata"]["ownerReferences"][1]["controller"] = json!(false);
    let (_, decision) = answer(&request("CREATE", pod.clone()));
    assert_eq!(decision.owner.unwrap().name.as_deref(), Some("cm"));
    pod["metadata"].as_object_mut().unwrap().remove("ownerReferences");
    pod["metadata"]["name"] = json!("solo");
    let (_, decision) = answer(&request("CREATE", pod));
    assert_eq!(decision.owner, None);
    assert_eq!(decision.pod, "solo");
}

#[test]
fn other_operations_and_kinds_are_allowed_untouched() {
    let (response, decision) = answer(&request("UPDATE", replicaset_pod()));
    assert_eq!(response, allowed_unchanged());
    assert_eq!((decision.verdict, decision.reason), (Verdict::Skipped, "not_create"));

    let mut body = request("CREATE", replicaset_pod());
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let (response, decision) = answer(&body);
    assert_eq!(response, allowed_unchanged());
    assert_eq!(decision.reason, "not_a_pod");
}

#[test]
fn failures_allow_the_pod_unchanged() {
    let (response, decision) = answer(&request("CREATE", Value::Null));
    assert_eq!(response, allowed_unchanged());
    assert_eq!((decision.verdict, decision.reason), (Verdict::Failed, "no_object"));

    let mut pod = replicaset_pod();
    pod["spec"]["containers"] = json!("not a list");
    let (response, decision) = answer(&request("CREATE", pod));
    assert_eq!(response, allowed_unchanged());
    assert_eq!((decision.verdict, decision.reason), (Verdict::Failed, "undecodable_pod"));

    let body = serde_json::to_vec(&request("CREATE", replicaset_pod())).unwrap();
    let reviewed = review(&body, &InjectConfig::default(), "", &none, &fixed).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&reviewed.body).unwrap(), allowed_unchanged());
    assert_eq!(reviewed.decision.reason, "ca_unavailable");
    assert_eq!(reviewed.decision.verdict, Verdict::Failed);

    // A pod that is skipped anyway is skipped, CA or not.
    let mut opted_out = replicaset_pod();
    opted_out["metadata"]["labels"]["portcullis.dev/inject"] = json!("disabled");
    let body = serde_json::to_vec(&request("CREATE", opted_out)).unwrap();
    let reviewed = review(&body, &InjectConfig::default(), "", &none, &fixed).unwrap();
    assert_eq!(reviewed.decision.verdict, Verdict::Skipped);
    assert_eq!(reviewed.decision.reason, "opted_out");
}

#[test]
fn dry_runs_are_marked() {
    let mut body = request("CREATE", replicaset_pod());
    body["request"]["dryRun"] = json!(true);
    let (response, decision) = answer(&body);
    assert!(response["response"]["patch"].is_string());
    assert!(decision.dry_run);
}

#[test]
fn the_answer_speaks_the_version_it_was_asked_in() {
    let mut body = request("CREATE", replicaset_pod());
    body["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (response, _) = answer(&body);
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1beta1");
}

#[test]
fn what_is_no_review_is_an_error() {
    let config = InjectConfig::default();
    assert!(matches!(
        review(b"not json", &config, CA, &none, &fixed),
        Err(ReviewError::NotAReview(_))
    ));
    assert!(matches!(
        review(b"{\"kind\": 3}", &config, CA, &none, &fixed),
        Err(ReviewError::NotAReview(_))
    ));
    let no_request = br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#;
    assert!(matches!(review(no_request, &config, CA, &none, &fixed), Err(ReviewError::NoRequest)));
}

/// The Services of the pod's namespace are asked for once, and only for a pod to decide
/// on; their ports' appProtocol reaches the sidecar and the decision's message.
#[test]
fn the_services_of_the_pods_namespace_say_its_protocol() {
    let asked = std::cell::RefCell::new(Vec::new());
    let h2c: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "h2", "port": 80,
            "targetPort": "http", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}
    }))
    .unwrap();
    let h2c = Arc::new(h2c);
    let services = |namespace: &str| {
        asked.borrow_mut().push(namespace.to_owned());
        vec![h2c.clone()]
    };
    let body = serde_json::to_vec(&request("CREATE", replicaset_pod())).unwrap();
    let reviewed = review(&body, &InjectConfig::default(), CA, &services, &fixed).unwrap();
    assert_eq!(*asked.borrow(), ["shop"]);
    assert_eq!(reviewed.decision.verdict, Verdict::Injected);
    assert_eq!(
        reviewed.decision.message,
        "sidecar port http (4180) in front of container web port 8080, app protocol http2 \
         (Service web port h2 appProtocol kubernetes.io/h2c), app port renamed app-http, \
         preStop added (5s)"
    );
    let response: Value = serde_json::from_slice(&reviewed.body).unwrap();
    let k8s_openapi::ByteString(patch) =
        serde_json::from_value(response["response"]["patch"].clone()).unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(patch[2], expected::pre_stop_op(0, STOP_TOKEN));
    let args = &patch[3]["value"][0]["args"];
    assert_eq!((&args[5], &args[6]), (&json!("--app-protocol"), &json!("http2")));

    // Not a creation: nothing to decide, nothing asked.
    asked.borrow_mut().clear();
    let body = serde_json::to_vec(&request("UPDATE", replicaset_pod())).unwrap();
    let reviewed = review(&body, &InjectConfig::default(), CA, &services, &fixed).unwrap();
    assert_eq!(reviewed.decision.reason, "not_create");
    assert_eq!(*asked.borrow(), Vec::<String>::new());
}

/// A pod that keeps its own preStop: injected, and the decision carries what was done, for
/// the webhook to tell the pod's owner.
#[test]
fn a_kept_pre_stop_is_in_the_decision() {
    let mut pod = replicaset_pod();
    pod["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"exec": {"command": ["drain"]}}});
    let (_, decision) = answer(&request("CREATE", pod));
    assert_eq!((decision.verdict, decision.reason), (Verdict::Injected, "injected"));
    assert_eq!(decision.injected.map(|s| s.pre_stop), Some(PreStop::Kept));
    let (_, decision) = answer(&request("CREATE", replicaset_pod()));
    assert_eq!(decision.injected.map(|s| s.pre_stop), Some(PreStop::Added));
    let mut skipped = replicaset_pod();
    skipped["spec"]["hostNetwork"] = json!(true);
    assert_eq!(answer(&request("CREATE", skipped)).1.injected, None);
}

/// No token, no sidecar: the pod is allowed unchanged and the failure said; a token is
/// drawn only for a pod to decide on.
#[test]
fn no_random_source_fails_open() {
    let drawn = std::cell::Cell::new(0);
    let none = || {
        drawn.set(drawn.get() + 1);
        Err(RandomError::from(getrandom::Error::UNSUPPORTED))
    };
    let body = serde_json::to_vec(&request("CREATE", replicaset_pod())).unwrap();
    let reviewed = review(&body, &InjectConfig::default(), CA, &self::none, &none).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&reviewed.body).unwrap(), allowed_unchanged());
    assert_eq!(
        (reviewed.decision.verdict, reviewed.decision.reason),
        (Verdict::Failed, "stop_token_unavailable")
    );
    assert_eq!(
        reviewed.decision.message,
        "cannot draw a stop token from the system's random source: getrandom: this target is \
         not supported"
    );
    assert_eq!(drawn.get(), 1);
    let body = serde_json::to_vec(&request("UPDATE", replicaset_pod())).unwrap();
    review(&body, &InjectConfig::default(), CA, &self::none, &none).unwrap();
    assert_eq!(drawn.get(), 1);
}
