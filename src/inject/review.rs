//! One admission, pure: the body of an `admission.k8s.io/v1` AdmissionReview in, the
//! AdmissionReview that answers it out, with the decision for metrics, logs and Events.
//!
//! A pod is never denied: whatever goes wrong, the answer allows it unchanged (a pod
//! without a sidecar is better than no pod), and the decision says why. Only a body that
//! is no AdmissionReview at all is refused, for the HTTP layer to answer 400.

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::Value;

use super::config::InjectConfig;
use super::mutate::mutate;
use super::outcome::{InvalidMutation, Outcome, Summary};
use super::stop_token::StopTokens;
use crate::telemetry::controller_metrics::injection_failure;

/// The `result` label of `portcullis_injections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Injected,
    Skipped,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Injected => "injected",
            Verdict::Skipped => "skipped",
            Verdict::Failed => "failed",
        }
    }
}

/// What was decided for one pod, and about whom.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// `injected`, a skip reason (`opted_out`...) or a failure reason (`ca_unavailable`...).
    pub reason: &'static str,
    pub message: String,
    pub namespace: String,
    /// The pod's name, or its generateName while the API server has yet to pick one.
    pub pod: String,
    /// The pod's controller (else first owner), whose Events tell users about skips.
    pub owner: Option<ObjectReference>,
    pub dry_run: bool,
    /// What was injected, when it was: the Events say what users should know of it.
    pub injected: Option<Summary>,
}

pub struct Reviewed {
    /// The AdmissionReview to answer with, as JSON.
    pub body: Vec<u8>,
    pub decision: Decision,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    NotAReview(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// The Services of a namespace, as far as they are known now (none, when unknown).
pub type ServicesOf<'a> = &'a dyn Fn(&str) -> Vec<Arc<Service>>;

/// Answers one AdmissionReview; `ca_pem` is the controller's CA bundle for the sidecar;
/// `services` gives the Services of the pod's namespace, and `stop_tokens` the pod's stop
/// token, both asked only for a pod to decide on.
pub fn review(
    body: &[u8],
    config: &InjectConfig,
    ca_pem: &str,
    services: ServicesOf<'_>,
    stop_tokens: StopTokens<'_>,
) -> Result<Reviewed, ReviewError> {
    let mut envelope: Value = serde_json::from_slice(body).map_err(ReviewError::NotAReview)?;
    // The pod is read on its own, so that a pod this version cannot read is allowed
    // unchanged rather than failing the whole review (and, with failurePolicy Fail, the pod).
    let object = envelope.pointer_mut("/request/object").map(Value::take);
    let review: AdmissionReview<Pod> =
        serde_json::from_value(envelope).map_err(ReviewError::NotAReview)?;
    let request: AdmissionRequest<Pod> = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let mut decision = Decision {
        verdict: Verdict::Skipped,
        reason: "",
        message: String::new(),
        namespace: request.namespace.clone().unwrap_or_default(),
        pod: request.name.clone(),
        owner: None,
        dry_run: request.dry_run,
        injected: None,
    };
    let (verdict, reason, message, patch) =
        decide(&request, object, config, ca_pem, services, stop_tokens, &mut decision);
    decision.verdict = verdict;
    decision.reason = reason;
    decision.message = message;
    Ok(Reviewed { body: encode(AdmissionResponse::from(&request), patch), decision })
}

type Answer = (Verdict, &'static str, String, Option<json_patch::Patch>);

/// The answer for the pod in `object`; fills in who the pod and its owner are.
fn decide(
    request: &AdmissionRequest<Pod>,
    object: Option<Value>,
    config: &InjectConfig,
    ca_pem: &str,
    services: ServicesOf<'_>,
    stop_tokens: StopTokens<'_>,
    decision: &mut Decision,
) -> Answer {
    if request.operation != Operation::Create {
        let message =
            format!("{:?} is not a creation; only new pods get a sidecar", request.operation);
        return (Verdict::Skipped, "not_create", message, None);
    }
    let kind = &request.kind;
    if (kind.group.as_str(), kind.kind.as_str()) != ("", "Pod") || request.sub_resource.is_some() {
        let message = format!("{}/{} is not a pod", kind.group, kind.kind);
        return (Verdict::Skipped, "not_a_pod", message, None);
    }
    let Some(object) = object.filter(|o| !o.is_null()) else {
        return (
            Verdict::Failed,
            injection_failure::NO_OBJECT,
            "the request carries no pod".into(),
            None,
        );
    };
    let pod: Pod = match serde_json::from_value(object) {
        Ok(pod) => pod,
        Err(error) => {
            let message = format!("cannot read the pod: {error}");
            return (Verdict::Failed, injection_failure::UNDECODABLE_POD, message, None);
        }
    };
    if decision.namespace.is_empty() {
        decision.namespace = pod.metadata.namespace.clone().unwrap_or_default();
    }
    if decision.pod.is_empty() {
        let name = pod.metadata.name.clone().filter(|n| !n.is_empty());
        decision.pod = name.or_else(|| pod.metadata.generate_name.clone()).unwrap_or_default();
    }
    decision.owner = owner(&pod, &decision.namespace);
    let services = services(&decision.namespace);
    let stop_token = match stop_tokens() {
        Ok(token) => token,
        Err(error) => {
            let reason = injection_failure::STOP_TOKEN_UNAVAILABLE;
            return (Verdict::Failed, reason, error.to_string(), None);
        }
    };
    match mutate(&pod, &decision.namespace, config, ca_pem, &services, &stop_token) {
        // Only a pod that would get a sidecar needs the CA; the others are skipped as ever.
        Outcome::Injected(_) if ca_pem.trim().is_empty() => {
            let message = "the controller has no CA bundle yet for the sidecar to trust".into();
            (Verdict::Failed, injection_failure::CA_UNAVAILABLE, message, None)
        }
        Outcome::Injected(injection) => {
            let message = injection.summary.to_string();
            decision.injected = Some(injection.summary);
            (Verdict::Injected, "injected", message, Some(injection.patch))
        }
        Outcome::Skipped(skip) => (Verdict::Skipped, skip.reason.as_str(), skip.message, None),
        Outcome::Invalid(invalid) => {
            (Verdict::Failed, InvalidMutation::REASON, invalid.message(), None)
        }
    }
}

/// The AdmissionReview answering `response`, with `patch` as a JSON Patch.
fn encode(response: AdmissionResponse, patch: Option<json_patch::Patch>) -> Vec<u8> {
    let response = match patch {
        // The patch is a vector of operations of strings and JSON values: it serializes.
        Some(patch) => response.with_patch(patch).expect("a JSON patch serializes"),
        None => response,
    };
    let mut review = serde_json::to_value(response.into_review()).expect("a review serializes");
    // kube-core writes the patch (Go's []byte) as an array of numbers, which the API server
    // refuses: its JSON form is a base64 string (kube-rs/kube#1781).
    if let Some(patch) = review.pointer_mut("/response/patch") {
        let bytes: Vec<u8> = serde_json::from_value(patch.take()).unwrap_or_default();
        *patch = serde_json::to_value(ByteString(bytes)).expect("base64 serializes");
    }
    serde_json::to_vec(&review).expect("a review serializes")
}

/// The pod's controller (`controller: true`), else its first owner, in `namespace`.
fn owner(pod: &Pod, namespace: &str) -> Option<ObjectReference> {
    let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let owner = owners.iter().find(|o| o.controller == Some(true)).or(owners.first())?;
    Some(ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        uid: Some(owner.uid.clone()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    })
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
