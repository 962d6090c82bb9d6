//! The injection webhook's HTTP handler: `POST /inject` with an AdmissionReview, answered
//! with an AdmissionReview. The transport (TLS, the listener) is the controller's.
//!
//! Every decision is counted in `portcullis_injections_total{result,reason}` and logged;
//! skips and failures also become an Event on the pod's owner (a pod being created has no
//! uid yet to hang one on), published on a task of its own so that admission never waits
//! for it, and never for dry runs (the webhook declares `sideEffects: NoneOnDryRun`). So
//! does an injection that kept the app's own preStop hook (`PreStopKept`): the pod runs,
//! but its sidecar learns that it is stopping too late to hold the app's stop.
//!
//! Each pod gets a stop token of its own, drawn here from the system's CSPRNG.
//!
//! The Services whose `appProtocol` may say the app's protocol come from a cache the
//! controller keeps (`services`): nothing is asked of the API server while a pod waits.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use k8s_openapi::api::core::v1::Service;
use kube::runtime::events::{Event, EventType, Recorder};

use super::config::InjectConfig;
use super::outcome::SkipReason;
use super::pre_stop::PreStop;
use super::review::{Decision, Verdict, review};
use super::stop_token::StopToken;
use crate::telemetry::controller_metrics::{ControllerMetrics, InjectionLabels, injection_failure};

/// The path the webhook configuration names.
pub const PATH: &str = "/inject";
/// Pods are rarely over a few tens of KiB; the API server caps objects at about 3 MiB.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Events' notes must stay under 1 kB.
const MAX_NOTE: usize = 1000;

/// The Services of a namespace as of now, from a cache: admission never waits on the API
/// server. Empty until the cache has synced, when the port's name decides instead.
pub type ServiceLookup = Arc<dyn Fn(&str) -> Vec<Arc<Service>> + Send + Sync>;

/// No Services known: the port's name and the annotation decide the app's protocol.
pub fn no_services() -> ServiceLookup {
    Arc::new(|_| Vec::new())
}

pub struct Webhook {
    pub config: Arc<InjectConfig>,
    /// The controller's CA bundle (PEM) as of now, for the sidecar to trust.
    pub ca_pem: Arc<dyn Fn() -> String + Send + Sync>,
    /// The Services whose ports may say the app's protocol (`appProtocol`).
    pub services: ServiceLookup,
    pub metrics: Arc<ControllerMetrics>,
    pub recorder: Option<Recorder>,
}

impl Webhook {
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.uri().path() != PATH {
            return text(StatusCode::NOT_FOUND, "not found: the webhook answers POST /inject\n");
        }
        if req.method() != Method::POST {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if !is_json(req.headers()) {
            return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be application/json\n");
        }
        let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 4 MiB\n");
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        if declared.and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > MAX_BODY as u64) {
            return too_large();
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return too_large();
            }
            Err(error) => {
                return text(StatusCode::BAD_REQUEST, &format!("cannot read the body: {error}\n"));
            }
        };
        let ca_pem = (self.ca_pem)();
        match review(&body, &self.config, &ca_pem, &*self.services, &StopToken::generate) {
            Ok(reviewed) => {
                self.record(&reviewed.decision);
                let mut response = Response::new(Full::new(Bytes::from(reviewed.body)));
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
                response
            }
            Err(error) => {
                self.count(Verdict::Failed, injection_failure::INVALID_REVIEW);
                tracing::warn!("injection webhook: {error}");
                text(StatusCode::BAD_REQUEST, &format!("{error}\n"))
            }
        }
    }

    fn count(&self, verdict: Verdict, reason: &'static str) {
        let labels = InjectionLabels { result: verdict.as_str(), reason };
        self.metrics.injections.get_or_create(&labels).inc();
    }

    fn record(&self, decision: &Decision) {
        self.count(decision.verdict, decision.reason);
        let (namespace, pod, reason) = (&decision.namespace, &decision.pod, decision.reason);
        let result = decision.verdict.as_str();
        match decision.verdict {
            Verdict::Failed => {
                tracing::warn!(%namespace, %pod, result, reason, "{}", decision.message);
            }
            _ => tracing::info!(%namespace, %pod, result, reason, "{}", decision.message),
        }
        self.publish(decision);
    }

    /// An Event on the pod's owner for a skip, a failure or a kept preStop hook; pods
    /// without an owner are only logged.
    fn publish(&self, decision: &Decision) {
        let kept = |d: &Decision| d.injected.as_ref().is_some_and(|s| s.pre_stop == PreStop::Kept);
        let (type_, reason) = match decision.verdict {
            Verdict::Injected if kept(decision) => (EventType::Normal, "PreStopKept"),
            Verdict::Injected => return,
            Verdict::Skipped => (EventType::Normal, "InjectionSkipped"),
            Verdict::Failed => (EventType::Warning, "InjectionFailed"),
        };
        let (Some(recorder), Some(owner)) = (&self.recorder, &decision.owner) else { return };
        // A reinvocation (reinvocationPolicy IfNeeded) sees every injected pod again: that
        // it is already injected is no news, and would be an Event per pod.
        if decision.dry_run || decision.reason == SkipReason::AlreadyInjected.as_str() {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note(decision)),
            action: "Inject".to_owned(),
            secondary: None,
        };
        let (recorder, owner) = (recorder.clone(), owner.clone());
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &owner).await {
                tracing::warn!(
                    owner = owner.name.as_deref().unwrap_or_default(),
                    "cannot publish the injection Event: {error}"
                );
            }
        });
    }
}

const JSON: &str = "application/json";

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(';').next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case(JSON))
}

/// `pod web-7d9c5-: no container port has a name... (no_named_port)`, cut to fit an Event.
fn note(decision: &Decision) -> String {
    let mut note = format!("pod {}: {} ({})", decision.pod, decision.message, decision.reason);
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
