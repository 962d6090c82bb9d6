//! The injector's answer for one pod: the planned mutation, checked against the API
//! server's own Pod validation before anyone applies it. A pod that the API server would
//! refuse is never created, and a ReplicaSet retries it forever with the refusal only in
//! its Events; so an injection that would make a valid pod invalid is not offered, and
//! the pod goes on without the sidecar.

use std::collections::HashSet;
use std::sync::Arc;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Pod, Service};

use super::config::InjectConfig;
use super::outcome::{InvalidMutation, Outcome};
use super::pod::plan;
use super::stop_token::StopToken;
use crate::apiserver::{ErrorType, FieldError, validate_pod};

/// Decides what to do with `pod`, created in `namespace`; `ca_pem` is the controller's CA
/// bundle handed to the sidecar; `services` are Services known in `namespace` (others are
/// ignored), whose ports may say the app's protocol (`&[]` when none are known);
/// `stop_token` is the pod's own secret for its preStop call to the sidecar, drawn by the
/// caller ([`StopToken::generate`]) so that this stays pure.
pub fn mutate(
    pod: &Pod,
    namespace: &str,
    config: &InjectConfig,
    ca_pem: &str,
    services: &[Arc<Service>],
    stop_token: &StopToken,
) -> Outcome {
    let injection = match plan(pod, namespace, config, ca_pem, services, stop_token) {
        Ok(injection) => injection,
        Err(skip) => return Outcome::Skipped(skip),
    };
    let errors = introduced_errors(pod, &injection.patch);
    if errors.is_empty() {
        Outcome::Injected(injection)
    } else {
        Outcome::Invalid(InvalidMutation { summary: injection.summary, errors })
    }
}

/// What the API server would refuse in `pod` patched by `patch` and not in `pod` itself.
/// A pod that came invalid is its owner's to fix, and the API server tells them so.
pub fn introduced_errors(pod: &Pod, patch: &Patch) -> Vec<FieldError> {
    let patched = match apply(pod, patch) {
        Ok(patched) => patched,
        Err(detail) => {
            let error = FieldError {
                type_: ErrorType::Internal,
                field: String::new(),
                bad_value: None,
                detail,
            };
            return vec![error];
        }
    };
    let before: HashSet<(String, &str)> =
        validate_pod(pod).iter().map(|e| (e.field.clone(), e.reason())).collect();
    validate_pod(&patched)
        .into_iter()
        .filter(|e| !before.contains(&(e.field.clone(), e.reason())))
        .collect()
}

fn apply(pod: &Pod, patch: &Patch) -> Result<Pod, String> {
    let mut value = serde_json::to_value(pod).map_err(|e| format!("cannot encode the pod: {e}"))?;
    json_patch::patch(&mut value, patch).map_err(|e| format!("cannot apply the patch: {e}"))?;
    serde_json::from_value(value).map_err(|e| format!("the patched pod is no Pod: {e}"))
}

/// What the API server would say of `pod` with `patch` applied, in its words: the tests
/// demand nothing at all of every pod the injector makes, not only nothing new.
#[cfg(test)]
pub(crate) fn refusals_after(pod: &Pod, patch: &Patch) -> Vec<String> {
    let patched = apply(pod, patch).expect("the patch applies to its pod");
    validate_pod(&patched).iter().map(ToString::to_string).collect()
}
