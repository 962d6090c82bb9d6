//! Every resource says what the controller did with it: `status` written with server-side
//! apply by the leader only, an Event when a resource's Accepted state changes, and window
//! statuses kept current at window boundaries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::index::{Acceptance, Index, ObjectKey};
use crate::api::{MaintenanceWindow, UpstreamPolicy};
use crate::schedule::Span;
use crate::telemetry::controller_metrics::ControllerMetrics;
use crate::telemetry::metrics::ResultLabels;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "portcullis-controller";
/// Statuses are compared at least this often, besides at window boundaries.
const RESYNC: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Policy,
    Window,
}

/// What was last written for one resource, and since when its conditions hold.
struct Written {
    status: Value,
    accepted: Acceptance,
    accepted_since: Timestamp,
    active: Option<(bool, Timestamp)>,
}

pub struct StatusWriter {
    client: kube::Client,
    index: Arc<Mutex<Index>>,
    metrics: Arc<ControllerMetrics>,
    recorder: Recorder,
    written: HashMap<(Kind, ObjectKey), Written>,
}

/// One resource's desired status, computed under the index lock.
struct Desired {
    kind: Kind,
    key: ObjectKey,
    generation: Option<i64>,
    matched_pods: usize,
    accepted: Acceptance,
    window: Option<(bool, Option<Span>, Option<Span>)>,
}

impl StatusWriter {
    pub fn new(
        client: kube::Client,
        index: Arc<Mutex<Index>>,
        metrics: Arc<ControllerMetrics>,
        recorder: Recorder,
    ) -> Self {
        StatusWriter { client, index, metrics, recorder, written: HashMap::new() }
    }

    /// Writes statuses while `leader` says this replica leads.
    pub async fn run(mut self, mut leader: watch::Receiver<bool>) {
        loop {
            let mut wait = RESYNC;
            if *leader.borrow_and_update() {
                if let Some(boundary) = self.sync(Timestamp::now()).await {
                    let until = boundary.duration_since(Timestamp::now());
                    wait = wait.min(Duration::try_from(until).unwrap_or_default());
                }
            } else {
                // A new leader starts from what is in the cluster, not from our memory.
                self.written.clear();
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = leader.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Writes every status that changed; returns the next window boundary, when statuses
    /// change by themselves.
    pub async fn sync(&mut self, now: Timestamp) -> Option<Timestamp> {
        let desired = self.desired(now);
        let mut boundary: Option<Timestamp> = None;
        let mut live = std::collections::HashSet::new();
        for d in desired {
            live.insert((d.kind, d.key.clone()));
            if let Some((_, current, next)) = &d.window {
                let at = current.and_then(|c| c.end).or(next.map(|n| n.start));
                boundary = match (boundary, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            self.write(d, now).await;
        }
        self.written.retain(|k, _| live.contains(k));
        boundary
    }

    fn desired(&self, now: Timestamp) -> Vec<Desired> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let policies = index.policies().into_iter().filter_map(|(key, generation)| {
            let s = index.policy_status(&key)?;
            Some(Desired {
                kind: Kind::Policy,
                key,
                generation,
                matched_pods: s.matched_pods,
                accepted: s.accepted,
                window: None,
            })
        });
        let windows = index.windows().into_iter().filter_map(|(key, generation)| {
            let s = index.window_status(&key, now)?;
            Some(Desired {
                kind: Kind::Window,
                key,
                generation,
                matched_pods: s.matched_pods,
                accepted: s.accepted,
                window: Some((s.active, s.current, s.next)),
            })
        });
        policies.chain(windows).collect()
    }

    async fn write(&mut self, d: Desired, now: Timestamp) {
        let slot = (d.kind, d.key.clone());
        let previous = self.written.get(&slot);
        let accepted_since = match previous {
            Some(p) if p.accepted == d.accepted => p.accepted_since,
            _ => now,
        };
        let active =
            d.window.as_ref().map(|(active, _, _)| match previous.and_then(|p| p.active) {
                Some((was, since)) if was == *active => (*active, since),
                _ => (*active, now),
            });
        let status = status_json(&d, accepted_since, active);
        if previous.is_some_and(|p| p.status == status) {
            return;
        }
        let accepted_changed = previous.is_none_or(|p| p.accepted != d.accepted);
        let result = self.patch(&d, &status).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.status_writes.get_or_create(&ResultLabels { result: label }).inc();
        match result {
            Ok(()) => {
                if accepted_changed {
                    self.announce(&d).await;
                }
                self.written
                    .insert(slot, Written { status, accepted: d.accepted, accepted_since, active });
            }
            Err(e) => tracing::warn!(resource = %d.key, "status write failed, will retry: {e}"),
        }
    }

    async fn patch(&self, d: &Desired, status: &Value) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let (api_version, kind) = kind_names(d.kind);
        let body = json!({ "apiVersion": api_version, "kind": kind, "status": status });
        let ns = &d.key.namespace;
        match d.kind {
            Kind::Policy => {
                let api: Api<UpstreamPolicy> = Api::namespaced(self.client.clone(), ns);
                api.patch_status(&d.key.name, &params, &Patch::Apply(&body)).await.map(drop)
            }
            Kind::Window => {
                let api: Api<MaintenanceWindow> = Api::namespaced(self.client.clone(), ns);
                api.patch_status(&d.key.name, &params, &Patch::Apply(&body)).await.map(drop)
            }
        }
    }

    /// An Event when a resource's Accepted state changes, for `kubectl describe`.
    async fn announce(&self, d: &Desired) {
        let (api_version, kind) = kind_names(d.kind);
        let reference = ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            namespace: Some(d.key.namespace.clone()),
            name: Some(d.key.name.clone()),
            ..ObjectReference::default()
        };
        let (type_, note) = match &d.accepted {
            Acceptance::Accepted => {
                (EventType::Normal, format!("in force for {} pods", d.matched_pods))
            }
            Acceptance::Invalid(why) | Acceptance::Conflicted(why) => {
                (EventType::Warning, why.clone())
            }
        };
        let event = Event {
            type_,
            reason: d.accepted.reason().into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(resource = %d.key, "event not recorded: {e}");
        }
    }
}

fn kind_names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Policy => ("portcullis.dev/v1alpha1", "UpstreamPolicy"),
        Kind::Window => ("portcullis.dev/v1alpha1", "MaintenanceWindow"),
    }
}

/// Kubernetes times have whole seconds.
fn time(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn span(s: &Span) -> Value {
    match s.end {
        Some(end) => json!({"start": time(s.start), "end": time(end)}),
        None => json!({"start": time(s.start)}),
    }
}

fn status_json(d: &Desired, accepted_since: Timestamp, active: Option<(bool, Timestamp)>) -> Value {
    let message = match &d.accepted {
        Acceptance::Accepted => format!("in force for {} pods", d.matched_pods),
        Acceptance::Invalid(why) | Acceptance::Conflicted(why) => why.clone(),
    };
    let mut conditions = vec![json!({
        "type": "Accepted",
        "status": if d.accepted == Acceptance::Accepted { "True" } else { "False" },
        "reason": d.accepted.reason(),
        "message": message,
        "lastTransitionTime": time(accepted_since),
        "observedGeneration": d.generation,
    })];
    let mut status = json!({
        "observedGeneration": d.generation,
        "matchedPods": d.matched_pods,
    });
    if let (Some((on, current, next)), Some((_, since))) = (&d.window, active) {
        conditions.push(json!({
            "type": "Active",
            "status": if *on { "True" } else { "False" },
            "reason": if *on { "WindowOpen" } else { "WindowClosed" },
            "message": if *on { "maintenance is on: selected pods answer 503" } else { "no maintenance now" },
            "lastTransitionTime": time(since),
            "observedGeneration": d.generation,
        }));
        status["active"] = json!(on);
        status["currentWindow"] = current.as_ref().map_or(Value::Null, span);
        status["nextWindow"] = next.as_ref().map_or(Value::Null, span);
    }
    status["conditions"] = Value::Array(conditions);
    status
}
