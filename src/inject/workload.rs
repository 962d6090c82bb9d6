//! Manifests that carry pods, for `portcullis inject` and `portcullis validate`: where
//! each kind keeps its pod, the webhook's mutation applied there, and what the API server
//! would refuse in it. Anything else passes through untouched.
//!
//! | kind | apiVersion | pod |
//! |---|---|---|
//! | Pod | v1 | the document |
//! | Deployment, StatefulSet, DaemonSet, ReplicaSet | apps/v1 | `spec.template` |
//! | Job | batch/v1 | `spec.template` |
//! | CronJob | batch/v1 | `spec.jobTemplate.spec.template` |
//! | List | v1 | each of `items`, as above |
//!
//! A pod template has no namespace of its own: the document's `metadata.namespace`, else
//! `default`, stands for the one its pods will be created in.
//!
//! Services (`v1` `Service` documents, and items of a List) are read by [`services_in`],
//! so that their ports' `appProtocol` says the app's protocol as it does to the webhook;
//! one without `metadata.namespace` is in `default` too, as a workload without one is.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Map, Value};

use super::config::InjectConfig;
use super::mutate::mutate;
use super::outcome::{InvalidMutation, Outcome, Summary};
use super::stop_token::{RandomError, StopTokens};
use crate::apiserver::validate_pod;

/// What happened to the pod of one workload.
#[derive(Debug)]
pub struct Report {
    /// `Deployment shop/web`.
    pub workload: String,
    pub outcome: Result<Summary, LeftAlone>,
}

/// Why a workload's pod came out unchanged: a skip, or a mutation held back.
#[derive(Debug, PartialEq, Eq)]
pub struct LeftAlone {
    /// `host_network`, `invalid_mutation`...: the webhook's `reason` label.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{workload}: no pod template at {path}")]
    NoTemplate { workload: String, path: String },
    #[error("{workload}: cannot read its pod: {source}")]
    NotAPod { workload: String, source: serde_json::Error },
    #[error("{workload}: cannot apply the patch: {source}")]
    Patch { workload: String, source: json_patch::PatchError },
    #[error("{service}: cannot read it: {source}")]
    NotAService { service: String, source: serde_json::Error },
    #[error("{workload}: {source}")]
    StopToken { workload: String, source: RandomError },
}

/// Where a document of `apiVersion` and `kind` keeps its pod, as a JSON pointer ("" for a
/// Pod itself); None for kinds that carry none (a List is walked by its callers).
pub fn pod_pointer(api_version: &str, kind: &str) -> Option<&'static str> {
    match (api_version, kind) {
        ("v1", "Pod") => Some(""),
        ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch/v1", "Job") => Some("/spec/template"),
        ("batch/v1", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// `apiVersion` and `kind` of a document.
pub fn type_of(doc: &Value) -> (&str, &str) {
    let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default();
    (text("apiVersion"), text("kind"))
}

/// `Deployment shop/web`: how messages name a workload (namespace `default` when unset).
pub fn workload_name(doc: &Value) -> String {
    let metadata = doc.get("metadata");
    let field = |name: &str| metadata.and_then(|m| m.get(name)).and_then(Value::as_str);
    let namespace = field("namespace").unwrap_or("default");
    format!("{} {namespace}/{}", type_of(doc).1, field("name").unwrap_or_default())
}

/// The pod of a workload document, read: who it belongs to and where it sits.
struct PodAt {
    /// `Deployment shop/web`.
    workload: String,
    /// The namespace its pods are created in.
    namespace: String,
    /// Where in the document the pod is, as a JSON pointer ("" for a Pod).
    pointer: &'static str,
    pod: Pod,
}

/// The pod of `doc`; None for a kind that carries none (Lists are walked by the callers).
fn pod_at(doc: &Value) -> Result<Option<PodAt>, WorkloadError> {
    let (api_version, kind) = type_of(doc);
    let Some(pointer) = pod_pointer(api_version, kind) else { return Ok(None) };
    let namespace =
        doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
    let workload = workload_name(doc);
    let Some(value) = doc.pointer(pointer).filter(|t| t.is_object()) else {
        let path = pointer.trim_start_matches('/').replace('/', ".");
        return Err(WorkloadError::NoTemplate { workload, path });
    };
    match serde_json::from_value(value.clone()) {
        Ok(pod) => Ok(Some(PodAt { workload, namespace, pointer, pod })),
        Err(source) => Err(WorkloadError::NotAPod { workload, source }),
    }
}

/// The Services of `doc` (itself, or the items of a List), each in the namespace its
/// document names, else `default`.
pub fn services_in(doc: &Value) -> Result<Vec<Arc<Service>>, WorkloadError> {
    if type_of(doc) == ("v1", "List") {
        let mut all = Vec::new();
        for item in doc.get("items").and_then(Value::as_array).into_iter().flatten() {
            all.extend(services_in(item)?);
        }
        return Ok(all);
    }
    if type_of(doc) != ("v1", "Service") {
        return Ok(Vec::new());
    }
    let mut service: Service = serde_json::from_value(doc.clone())
        .map_err(|source| WorkloadError::NotAService { service: workload_name(doc), source })?;
    service.metadata.namespace.get_or_insert_with(|| "default".to_owned());
    Ok(vec![Arc::new(service)])
}

/// Injects the pod of `doc` in place, when it is a workload; returns what happened to each
/// pod (none for a document that carries no pod). `services` are those the manifests hold
/// (see [`services_in`]), of any namespace; `stop_tokens` gives each workload its own stop
/// token, which all of its pods share (they come from one template).
pub fn inject_document(
    doc: &mut Value,
    config: &InjectConfig,
    ca_pem: &str,
    services: &[Arc<Service>],
    stop_tokens: StopTokens<'_>,
) -> Result<Vec<Report>, WorkloadError> {
    if type_of(doc) == ("v1", "List") {
        let mut reports = Vec::new();
        for item in doc.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
            reports.extend(inject_document(item, config, ca_pem, services, stop_tokens)?);
        }
        return Ok(reports);
    }
    let Some(PodAt { workload, namespace, pointer, pod }) = pod_at(doc)? else {
        return Ok(Vec::new());
    };
    let stop_token = match stop_tokens() {
        Ok(token) => token,
        Err(source) => return Err(WorkloadError::StopToken { workload, source }),
    };
    let outcome = match mutate(&pod, &namespace, config, ca_pem, services, &stop_token) {
        Outcome::Injected(injection) => {
            let pod_value = doc.pointer_mut(pointer).expect("pod_at found an object there");
            // The patch adds annotations under metadata, which a template may lack.
            if let Some(object) = pod_value.as_object_mut() {
                let metadata = object.entry("metadata").or_insert_with(|| Map::new().into());
                if metadata.is_null() {
                    *metadata = Map::new().into();
                }
            }
            if let Err(source) = json_patch::patch(pod_value, &injection.patch) {
                return Err(WorkloadError::Patch { workload, source });
            }
            Ok(injection.summary)
        }
        Outcome::Skipped(skip) => {
            Err(LeftAlone { reason: skip.reason.as_str(), message: skip.message })
        }
        Outcome::Invalid(invalid) => {
            Err(LeftAlone { reason: InvalidMutation::REASON, message: invalid.message() })
        }
    };
    Ok(vec![Report { workload, outcome }])
}

/// Each pod of `doc` (a List's items too) with what the API server would say of it when
/// it is created, the fields named from the document's root.
pub fn refusals(doc: &Value) -> Result<Vec<(String, Vec<String>)>, WorkloadError> {
    if type_of(doc) == ("v1", "List") {
        let mut all = Vec::new();
        for item in doc.get("items").and_then(Value::as_array).into_iter().flatten() {
            all.extend(refusals(item)?);
        }
        return Ok(all);
    }
    let Some(PodAt { workload, pointer, mut pod, .. }) = pod_at(doc)? else {
        return Ok(Vec::new());
    };
    let prefix = pointer.trim_start_matches('/').replace('/', ".");
    // A template is checked as the pod its controller creates from it, which is where an
    // injected template fails: named after the workload, as the controllers name them.
    if !prefix.is_empty() && pod.metadata.name.is_none() && pod.metadata.generate_name.is_none() {
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("pod");
        pod.metadata.generate_name = Some(format!("{name}-"));
    }
    let errors = validate_pod(&pod)
        .into_iter()
        .map(|e| if prefix.is_empty() { e.to_string() } else { format!("{prefix}.{e}") })
        .collect();
    Ok(vec![(workload, errors)])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inject::stop_token::StopToken;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}]}]}
        })
    }

    /// Injects `doc`; every pod it holds then passes the API server's validation.
    fn run(doc: &mut Value) -> Vec<Report> {
        let services = services_in(doc).unwrap();
        let reports =
            inject_document(doc, &InjectConfig::default(), CA, &services, &StopToken::generate)
                .unwrap();
        for (workload, errors) in refusals(doc).unwrap() {
            assert_eq!(errors, Vec::<String>::new(), "the API server would refuse {workload}");
        }
        reports
    }

    #[test]
    fn finds_the_pod_of_each_kind() {
        let cases = [
            ("apps/v1", "Deployment", "/spec/template"),
            ("apps/v1", "StatefulSet", "/spec/template"),
            ("apps/v1", "DaemonSet", "/spec/template"),
            ("apps/v1", "ReplicaSet", "/spec/template"),
            ("batch/v1", "Job", "/spec/template"),
            ("batch/v1", "CronJob", "/spec/jobTemplate/spec/template"),
        ];
        for (api_version, kind, path) in cases {
            let mut doc = json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": "web", "namespace": "shop"}});
            let mut spec = template();
            for token in path.trim_start_matches('/').split('/').rev() {
                spec = json!({ token: spec });
            }
            doc["spec"] = spec["spec"].clone();
            let reports = run(&mut doc);
            assert_eq!(reports.len(), 1, "{kind}");
            assert_eq!(reports[0].workload, format!("{kind} shop/web"));
            assert!(reports[0].outcome.is_ok(), "{kind}");
            let pod = doc.pointer(path).unwrap();
            assert_eq!(pod["spec"]["initContainers"][0]["name"], "portcullis-proxy", "{kind}");
            assert_eq!(pod["spec"]["containers"][0]["ports"][0]["name"], "app-http", "{kind}");
        }
    }

    #[test]
    fn a_pod_is_its_own_template_and_the_namespace_defaults() {
        let mut doc = template();
        doc["apiVersion"] = json!("v1");
        doc["kind"] = json!("Pod");
        doc["metadata"]["name"] = json!("web");
        let reports = run(&mut doc);
        assert_eq!(reports[0].workload, "Pod default/web");
        assert!(doc["metadata"]["annotations"]["portcullis.dev/injected"].is_string());
    }

    #[test]
    fn a_template_without_metadata_gets_some() {
        let mut doc = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": template()["spec"].clone()}}});
        run(&mut doc);
        assert!(
            doc["spec"]["template"]["metadata"]["annotations"]["portcullis.dev/injected"]
                .is_string()
        );
    }

    #[test]
    fn other_documents_pass_through() {
        for doc in [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}),
            json!("text"),
            Value::Null,
        ] {
            let mut copy = doc.clone();
            assert!(run(&mut copy).is_empty());
            assert_eq!(copy, doc);
        }
    }

    #[test]
    fn lists_are_walked() {
        let mut pod = template();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["name"] = json!("a");
        let mut skipped = pod.clone();
        skipped["metadata"]["name"] = json!("b");
        skipped["spec"]["hostNetwork"] = json!(true);
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        let mut doc = json!({"apiVersion": "v1", "kind": "List",
            "items": [pod, skipped.clone(), service.clone()]});
        let reports = run(&mut doc);
        assert_eq!(reports.len(), 2);
        assert!(reports[0].outcome.is_ok());
        assert_eq!(reports[1].outcome.as_ref().unwrap_err().reason, "host_network");
        assert_eq!(doc["items"][1], skipped);
        assert_eq!(doc["items"][2], service);
    }

    /// The stop token of an injected pod, from its sidecar's env, which its app's preStop
    /// hook shows too.
    fn token_of(pod: &Value) -> String {
        let env = pod["spec"]["initContainers"][0]["env"].as_array().unwrap();
        let token = env.iter().find(|e| e["name"] == "PORTCULLIS_STOP_TOKEN").unwrap();
        let token = token["value"].as_str().unwrap().to_owned();
        let header =
            &pod["spec"]["containers"][0]["lifecycle"]["preStop"]["httpGet"]["httpHeaders"][0];
        assert_eq!(*header, json!({"name": "Portcullis-Stop-Token", "value": token}));
        token
    }

    #[test]
    fn each_workload_gets_a_stop_token_of_its_own() {
        let pod = |name: &str| {
            let mut pod = template();
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["name"] = json!(name);
            pod
        };
        let mut doc = json!({"apiVersion": "v1", "kind": "List", "items": [pod("a"), pod("b")]});
        run(&mut doc);
        let (a, b) = (token_of(&doc["items"][0]), token_of(&doc["items"][1]));
        assert_ne!(a, b);
        for token in [a, b] {
            assert!(token.parse::<StopToken>().is_ok(), "{token}");
        }
    }

    #[test]
    fn no_random_source_is_an_error() {
        let mut doc = template();
        doc["apiVersion"] = json!("v1");
        doc["kind"] = json!("Pod");
        doc["metadata"]["name"] = json!("web");
        let none = || Err(RandomError::from(getrandom::Error::UNSUPPORTED));
        let error = inject_document(&mut doc, &InjectConfig::default(), CA, &[], &none);
        assert_eq!(
            error.unwrap_err().to_string(),
            "Pod default/web: cannot draw a stop token from the system's random source: \
             getrandom: this target is not supported"
        );
        // A document without a pod needs none.
        let mut service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
        assert!(inject_document(&mut service, &InjectConfig::default(), CA, &[], &none).is_ok());
    }

    #[test]
    fn a_workload_without_a_pod_is_an_error() {
        let mut doc = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {}});
        let error =
            inject_document(&mut doc, &InjectConfig::default(), CA, &[], &StopToken::generate)
                .unwrap_err();
        assert_eq!(error.to_string(), "Deployment default/web: no pod template at spec.template");
        let mut doc = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": "none"}});
        let error =
            inject_document(&mut doc, &InjectConfig::default(), CA, &[], &StopToken::generate)
                .unwrap_err();
        assert!(error.to_string().starts_with("Pod default/p: cannot read its pod:"), "{error}");
    }

    fn service(namespace: Option<&str>, app_protocol: &str) -> Value {
        let mut service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "h2", "port": 80,
                "targetPort": "http", "appProtocol": app_protocol}]}});
        if let Some(namespace) = namespace {
            service["metadata"]["namespace"] = json!(namespace);
        }
        service
    }

    #[test]
    fn services_of_the_manifests_say_the_protocol_in_their_namespace() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"template": template()}});
        // Both without a namespace: both in `default`. The one in `cart` is not the pods'.
        let here = service(None, "kubernetes.io/h2c");
        let elsewhere = service(Some("cart"), "https");
        let mut doc = json!({"apiVersion": "v1", "kind": "List",
            "items": [deployment, here.clone(), elsewhere.clone()]});
        let services = services_in(&doc).unwrap();
        let namespaces: Vec<_> =
            services.iter().map(|s| s.metadata.namespace.as_deref().unwrap()).collect();
        assert_eq!(namespaces, ["default", "cart"]);
        let reports = run(&mut doc);
        let summary = reports[0].outcome.as_ref().unwrap();
        assert_eq!(summary.app_protocol.as_flag(), "http2");
        assert_eq!(
            summary.protocol_source.to_string(),
            "Service web port h2 appProtocol kubernetes.io/h2c"
        );
        let args = &doc["items"][0]["spec"]["template"]["spec"]["initContainers"][0]["args"];
        assert_eq!((&args[5], &args[6]), (&json!("--app-protocol"), &json!("http2")));
        // Services come out as they went in.
        assert_eq!((&doc["items"][1], &doc["items"][2]), (&here, &elsewhere));
    }

    #[test]
    fn a_service_that_is_no_service_is_an_error() {
        let broken = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"ports": "none"}});
        let error = services_in(&broken).unwrap_err();
        assert!(error.to_string().starts_with("Service shop/web: cannot read it: "), "{error}");
        assert!(services_in(&json!({"apiVersion": "v1", "kind": "ConfigMap"})).unwrap().is_empty());
    }

    #[test]
    fn names_the_field_from_the_documents_root() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "web", "image": "web:1",
                    "ports": [{"name": "portcullis-admin", "containerPort": 9901}]}]
            }}}
        });
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [deployment]});
        assert_eq!(
            refusals(&list).unwrap(),
            vec![(
                "Deployment shop/web".to_owned(),
                vec![
                    "spec.template.spec.containers[0].ports[0].name: Invalid value: \
                     \"portcullis-admin\": must be no more than 15 characters"
                        .to_owned()
                ]
            )]
        );
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        assert_eq!(refusals(&service).unwrap(), vec![]);
    }
}
