use serde_json::{Value, json};

use super::*;

use crate::inject::expected;

use expected::CA;

fn webhook() -> Webhook {
    Webhook {
        config: Arc::new(InjectConfig::default()),
        ca_pem: Arc::new(|| CA.to_owned()),
        services: no_services(),
        metrics: Arc::new(ControllerMetrics::default()),
        recorder: None,
    }
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(PATH)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

fn review_of(pod: Value) -> Vec<u8> {
    let review = expected::admission_review("0df28fbd-5f5f-4a8f-8d3a-c2a3f9b8c7d6", "CREATE", pod);
    serde_json::to_vec(&review).unwrap()
}

fn pod(port_name: Option<&str>) -> Value {
    let mut port = json!({"containerPort": 8080, "protocol": "TCP"});
    if let Some(name) = port_name {
        port["name"] = json!(name);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [port]}]}})
}

async fn body_of(response: Response<Full<Bytes>>) -> String {
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn count(webhook: &Webhook, result: &'static str, reason: &'static str) -> u64 {
    webhook.metrics.injections.get_or_create(&InjectionLabels { result, reason }).get()
}

#[tokio::test]
async fn answers_a_review_with_json_and_counts_it() {
    let webhook = webhook();
    let response = webhook.handle(post(review_of(pod(Some("http"))))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let answer: Value = serde_json::from_str(&body_of(response).await).unwrap();
    assert_eq!(answer["response"]["uid"], "0df28fbd-5f5f-4a8f-8d3a-c2a3f9b8c7d6");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    assert_eq!(count(&webhook, "injected", "injected"), 1);
    // The pod it makes passes the API server's validation.
    let k8s_openapi::ByteString(patch) =
        serde_json::from_value(answer["response"]["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let original = serde_json::from_value(pod(Some("http"))).unwrap();
    let errors = crate::inject::mutate::refusals_after(&original, &patch);
    assert_eq!(errors, Vec::<String>::new());

    let response = webhook.handle(post(review_of(pod(None)))).await;
    let answer: Value = serde_json::from_str(&body_of(response).await).unwrap();
    assert_eq!(answer["response"].get("patch"), None);
    assert_eq!(count(&webhook, "skipped", "no_named_port"), 1);
    assert_eq!(count(&webhook, "injected", "injected"), 1);
    let metrics = webhook.metrics.encode();
    assert!(
        metrics
            .contains(r#"portcullis_injections_total{result="skipped",reason="no_named_port"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_missing_ca_fails_open() {
    let webhook = Webhook { ca_pem: Arc::new(String::new), ..webhook() };
    let response = webhook.handle(post(review_of(pod(Some("http"))))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_str(&body_of(response).await).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"].get("patch"), None);
    assert_eq!(count(&webhook, "failed", "ca_unavailable"), 1);
}

#[tokio::test]
async fn refuses_what_is_not_an_admission_review() {
    let webhook = webhook();
    let response = webhook.handle(post("{\"hello\": 1}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert!(body_of(response).await.starts_with("the body is not an AdmissionReview:"));
    assert_eq!(count(&webhook, "failed", "invalid_review"), 1);
}

#[tokio::test]
async fn only_post_to_inject() {
    let webhook = webhook();
    let request = Request::post("/mutate").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(webhook.handle(request).await.status(), StatusCode::NOT_FOUND);
    let request = Request::get(PATH).body(Full::new(Bytes::new())).unwrap();
    let response = webhook.handle(request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[ALLOW], "POST");
}

#[tokio::test]
async fn only_json() {
    let webhook = webhook();
    for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
        let mut request = Request::post(PATH);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(Bytes::from(review_of(pod(None))))).unwrap();
        assert_eq!(
            webhook.handle(request).await.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
    }
    let request = Request::post(PATH)
        .header(CONTENT_TYPE, "Application/JSON; charset=utf-8")
        .body(Full::new(Bytes::from(review_of(pod(None)))))
        .unwrap();
    assert_eq!(webhook.handle(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let webhook = webhook();
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(webhook.handle(post(big)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let request = Request::post(PATH)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, (MAX_BODY + 1).to_string())
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(webhook.handle(request).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn notes_fit_in_an_event() {
    let decision = Decision {
        verdict: Verdict::Skipped,
        reason: "invalid_annotation",
        message: "é".repeat(600),
        namespace: "shop".into(),
        pod: "web-".into(),
        owner: None,
        dry_run: false,
        injected: None,
    };
    let cut = note(&decision);
    assert!(cut.len() <= MAX_NOTE);
    assert!(cut.starts_with("pod web-: éé"));
    assert!(cut.ends_with("..."));
    let short = Decision { message: "the pod uses the node's network".into(), ..decision };
    assert_eq!(note(&short), "pod web-: the pod uses the node's network (invalid_annotation)");
}
