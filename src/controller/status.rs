//! Every resource says what the controller did with it: `status` written with server-side
//! apply by the leader only, an Event when a resource's Accepted state changes, and window
//! statuses kept current at window boundaries. `Programmed` says whether every selected
//! pod's sidecar enforces the resource as it is now, from the sidecars' acknowledgements
//! on every replica ([`programmed`](super::programmed)); a window that has been open a
//! while where some of its pods do not hold it gets a Warning Event `NotProgrammed`.
//!
//! No write per acknowledgement: statuses are compared once a second, and a resource's
//! status is written at most once in [`MIN_WRITE_INTERVAL`].

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
use super::peers::Peers;
use super::programmed::{Fleet, Verdict, verdict};
use super::sidecars::Sidecars;
use crate::api::{MaintenanceWindow, UpstreamPolicy};
use crate::schedule::Span;
use crate::telemetry::controller_metrics::{ControllerMetrics, status_write};
use crate::telemetry::metrics::ResultLabels;

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "portcullis-controller";
/// Statuses are compared at least this often, besides at window boundaries.
const RESYNC: Duration = Duration::from_secs(1);
/// A resource's status is not written again sooner than this.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(900);
/// How long a window may be open with pods that do not hold it before `NotProgrammed`:
/// long enough for sidecars to acknowledge a window created already open.
pub const NOT_PROGRAMMED_GRACE: Duration = Duration::from_secs(5);

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
    programmed: (bool, Timestamp),
    /// When it was written, by the clock statuses are judged on.
    at: Timestamp,
    /// The opening of the window for which `NotProgrammed` was announced.
    warned: Option<Timestamp>,
}

pub struct StatusWriter {
    client: kube::Client,
    index: Arc<Mutex<Index>>,
    metrics: Arc<ControllerMetrics>,
    recorder: Recorder,
    written: HashMap<(Kind, ObjectKey), Written>,
    /// The sidecars that follow this replica.
    sidecars: Option<Arc<Mutex<Sidecars>>>,
    /// The other replicas, whose sidecars count too.
    peers: Option<Peers>,
}

/// One resource's desired status, computed under the index lock.
struct Desired {
    kind: Kind,
    key: ObjectKey,
    generation: Option<i64>,
    matched_pods: usize,
    accepted: Acceptance,
    window: Option<(bool, Option<Span>, Option<Span>)>,
    programmed: Verdict,
}

impl StatusWriter {
    pub fn new(
        client: kube::Client,
        index: Arc<Mutex<Index>>,
        metrics: Arc<ControllerMetrics>,
        recorder: Recorder,
    ) -> Self {
        StatusWriter {
            client,
            index,
            metrics,
            recorder,
            written: HashMap::new(),
            sidecars: None,
            peers: None,
        }
    }

    /// Counts the sidecars of `sidecars` (this replica's) and of every peer replica.
    pub fn with_sidecars(mut self, sidecars: Arc<Mutex<Sidecars>>, peers: Option<Peers>) -> Self {
        self.sidecars = Some(sidecars);
        self.peers = peers;
        self
    }

    /// Every sidecar's report, from this replica and the others.
    async fn fleet(&self, now: Timestamp) -> Fleet {
        let mut reports = match &self.sidecars {
            Some(sidecars) => sidecars.lock().unwrap_or_else(|e| e.into_inner()).report(now),
            None => Vec::new(),
        };
        if let Some(peers) = &self.peers {
            let (replicas, errors) = peers.reports().await;
            for e in errors {
                tracing::warn!("sidecars of another replica are not counted: {e}");
            }
            reports.extend(replicas.into_iter().flat_map(|r| r.sidecars));
        }
        Fleet::merge(reports)
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
        let fleet = self.fleet(now).await;
        let desired = self.desired(now, &fleet);
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

    fn desired(&self, now: Timestamp, fleet: &Fleet) -> Vec<Desired> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let policies = index.policies().into_iter().filter_map(|(key, generation)| {
            let s = index.policy_status(&key)?;
            let programmed = verdict(&key.to_string(), &index.policy_target(&key)?, fleet);
            Some(Desired {
                kind: Kind::Policy,
                key,
                generation,
                matched_pods: s.matched_pods,
                accepted: s.accepted,
                window: None,
                programmed,
            })
        });
        let windows = index.windows().into_iter().filter_map(|(key, generation)| {
            let s = index.window_status(&key, now)?;
            let programmed = verdict(&key.to_string(), &index.window_target(&key)?, fleet);
            Some(Desired {
                kind: Kind::Window,
                key,
                generation,
                matched_pods: s.matched_pods,
                accepted: s.accepted,
                window: Some((s.active, s.current, s.next)),
                programmed,
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
        let is_programmed = programmed_condition(&d).0 == "True";
        let programmed = match previous.map(|p| p.programmed) {
            Some((was, since)) if was == is_programmed => (was, since),
            _ => (is_programmed, now),
        };
        let warned =
            self.warn_not_programmed(&d, active, previous.and_then(|p| p.warned), now).await;
        if let Some(p) = self.written.get_mut(&slot) {
            p.warned = warned;
        }
        let previous = self.written.get(&slot);
        let status = status_json(&d, accepted_since, active, programmed.1);
        if previous.is_some_and(|p| p.status == status) {
            return;
        }
        let min_interval = jiff::SignedDuration::try_from(MIN_WRITE_INTERVAL).unwrap_or_default();
        if previous.is_some_and(|p| p.at.checked_add(min_interval).is_ok_and(|t| now < t)) {
            return; // written again at the next comparison
        }
        let accepted_changed = previous.is_none_or(|p| p.accepted != d.accepted);
        let result = self.patch(&d, &status).await;
        let label = if result.is_ok() { status_write::OK } else { status_write::ERROR };
        self.metrics.status_writes.get_or_create(&ResultLabels { result: label }).inc();
        match result {
            Ok(()) => {
                if accepted_changed {
                    self.announce(&d).await;
                }
                let at = now;
                let written = Written {
                    status,
                    accepted: d.accepted,
                    accepted_since,
                    active,
                    programmed,
                    at,
                    warned,
                };
                self.written.insert(slot, written);
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

    /// A Warning Event `NotProgrammed`, once per opening, when a window has been open for
    /// [`NOT_PROGRAMMED_GRACE`] and some of its pods still do not hold it. Returns the
    /// opening announced.
    async fn warn_not_programmed(
        &self,
        d: &Desired,
        active: Option<(bool, Timestamp)>,
        warned: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let Some((true, opened)) = active else { return warned };
        let grace = jiff::SignedDuration::try_from(NOT_PROGRAMMED_GRACE).unwrap_or_default();
        let settled = opened.checked_add(grace).is_ok_and(|t| t <= now);
        if !settled || d.programmed.is_programmed() || warned == Some(opened) {
            return warned;
        }
        let v = &d.programmed;
        let note = format!(
            "the window is open but {} of {} selected pods do not enforce it: {}",
            v.missing.len(),
            v.matched,
            v.named()
        );
        let event = Event {
            type_: EventType::Warning,
            reason: "NotProgrammed".into(),
            note: Some(note),
            action: "Enforce".into(),
            secondary: None,
        };
        match self.recorder.publish(&event, &reference(d)).await {
            Ok(()) => Some(opened),
            Err(e) => {
                tracing::warn!(resource = %d.key, "event not recorded: {e}");
                warned
            }
        }
    }

    /// An Event when a resource's Accepted state changes, for `kubectl describe`.
    async fn announce(&self, d: &Desired) {
        let reference = reference(d);
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

fn reference(d: &Desired) -> ObjectReference {
    let (api_version, kind) = kind_names(d.kind);
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(d.key.namespace.clone()),
        name: Some(d.key.name.clone()),
        ..ObjectReference::default()
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

/// The `Programmed` condition's status, reason and message.
fn programmed_condition(d: &Desired) -> (&'static str, &'static str, String) {
    if let Acceptance::Invalid(why) = &d.accepted {
        return ("False", "Invalid", format!("not enforced anywhere: {why}"));
    }
    let v = &d.programmed;
    let status = if v.is_programmed() { "True" } else { "False" };
    (status, v.reason(), v.message(d.generation))
}

fn status_json(
    d: &Desired,
    accepted_since: Timestamp,
    active: Option<(bool, Timestamp)>,
    programmed_since: Timestamp,
) -> Value {
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
        "programmedPods": d.programmed.programmed,
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
    let (programmed, reason, message) = programmed_condition(d);
    conditions.push(json!({
        "type": "Programmed",
        "status": programmed,
        "reason": reason,
        "message": message,
        "lastTransitionTime": time(programmed_since),
        "observedGeneration": d.generation,
    }));
    status["conditions"] = Value::Array(conditions);
    status
}
