//! Where each sidecar that follows this replica stands: connected since when, which
//! snapshots were sent, which one it applied, what it refused and why, and its version.
//!
//! Pure and synchronous, like the index: the stream server reports what happens on each
//! stream, and [`Sidecars::report`] says it for `/v1/sidecars` and the statuses. Nothing
//! counts as applied unless the sidecar said so for a snapshot this replica sent it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;

use super::index::{ObjectKey, Published};
use super::report::{Refusal, SidecarReport, SidecarState};
use crate::config::wire::AckMessage;
use crate::schedule::Schedule;

/// Snapshots kept per sidecar while their acknowledgement is awaited; older ones can only
/// be acknowledged by a sidecar that is that far behind, which then counts as pending.
const AWAITED: usize = 8;

/// Which stream of a pod an event is about: a pod that reconnects has a new one, and the
/// old one's last words no longer count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamId(u64);

/// How a sidecar opened its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The version it announced, if any.
    pub version: Option<String>,
    /// Whether it acknowledges snapshots: sidecars from before acknowledgements open the
    /// stream with a GET and say nothing back.
    pub acknowledges: bool,
}

struct Tracked {
    stream: StreamId,
    open: bool,
    hello: Hello,
    connected_since: Timestamp,
    disconnected_at: Option<Timestamp>,
    /// Sent and not yet acknowledged, oldest first.
    awaited: VecDeque<Arc<Published>>,
    /// The newest snapshot sent.
    latest: Option<Arc<Published>>,
    applied: Option<Arc<Published>>,
    refusal: Option<(Refusal, bool)>,
}

#[derive(Default)]
pub struct Sidecars {
    replica: String,
    pods: HashMap<ObjectKey, Tracked>,
    streams: u64,
}

impl Sidecars {
    pub fn new(replica: impl Into<String>) -> Self {
        Sidecars { replica: replica.into(), ..Sidecars::default() }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A stream opened for `pod`; an older one of the same pod no longer counts.
    pub fn connected(&mut self, pod: &ObjectKey, hello: Hello, now: Timestamp) -> StreamId {
        self.streams += 1;
        let stream = StreamId(self.streams);
        let applied = self.pods.remove(pod).and_then(|t| t.applied);
        self.pods.insert(
            pod.clone(),
            Tracked {
                stream,
                open: true,
                hello,
                connected_since: now,
                disconnected_at: None,
                awaited: VecDeque::new(),
                latest: None,
                // What it applied before stays in force on the sidecar until it applies
                // something else.
                applied,
                refusal: None,
            },
        );
        stream
    }

    /// A snapshot left for the sidecar.
    pub fn sent(&mut self, pod: &ObjectKey, stream: StreamId, published: Arc<Published>) {
        let Some(t) = self.current(pod, stream) else { return };
        if t.hello.acknowledges {
            if t.awaited.len() == AWAITED {
                t.awaited.pop_front();
            }
            t.awaited.push_back(published.clone());
        }
        t.latest = Some(published);
    }

    /// What the sidecar said about a snapshot. An acknowledgement of a version this
    /// stream did not send is ignored.
    pub fn acknowledged(
        &mut self,
        pod: &ObjectKey,
        stream: StreamId,
        ack: AckMessage,
        now: Timestamp,
    ) {
        let Some(t) = self.current(pod, stream) else { return };
        match ack {
            AckMessage::Applied { version } => {
                let Some(i) = t.awaited.iter().position(|p| p.snapshot.version == version) else {
                    return;
                };
                t.applied = t.awaited.get(i).cloned();
                t.awaited.drain(..=i);
                if t.refusal.as_ref().is_some_and(|(r, _)| r.version <= Some(version)) {
                    t.refusal = None;
                }
            }
            AckMessage::Refused { version, reason, unknown_fields } => {
                if let Some(v) = version {
                    t.awaited.retain(|p| p.snapshot.version != v);
                }
                let refusal = Refusal { version, reason, at: now };
                t.refusal = Some((refusal, !unknown_fields.is_empty()));
            }
        }
    }

    /// The stream ended; the sidecar keeps what it applied.
    pub fn disconnected(&mut self, pod: &ObjectKey, stream: StreamId, now: Timestamp) {
        if let Some(t) = self.current(pod, stream) {
            t.open = false;
            t.disconnected_at = Some(now);
            t.awaited.clear();
        }
    }

    /// Forgets disconnected sidecars of pods that `exists` no longer knows.
    pub fn retain(&mut self, exists: impl Fn(&ObjectKey) -> bool) {
        self.pods.retain(|pod, t| t.open || exists(pod));
    }

    fn current(&mut self, pod: &ObjectKey, stream: StreamId) -> Option<&mut Tracked> {
        self.pods.get_mut(pod).filter(|t| t.stream == stream)
    }

    /// Every sidecar this replica knows, by pod.
    pub fn report(&self, now: Timestamp) -> Vec<SidecarReport> {
        let mut reports: Vec<SidecarReport> =
            self.pods.iter().map(|(pod, t)| self.report_one(pod, t, now)).collect();
        reports.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        reports
    }

    /// Each sidecar's state and announced version, for metrics: cheaper than a report.
    pub fn census(&self) -> Vec<(SidecarState, Option<&str>)> {
        self.pods.values().map(|t| (state_of(t), t.hello.version.as_deref())).collect()
    }

    fn report_one(&self, pod: &ObjectKey, t: &Tracked, now: Timestamp) -> SidecarReport {
        let latest_version = t.latest.as_ref().map_or(0, |p| p.snapshot.version);
        let refusal = standing_refusal(t);
        let applied = t.applied.as_ref();
        let state = state_of(t);
        let config = applied.map(|a| &a.snapshot.config);
        let windows = config.map(|c| c.windows.as_slice()).unwrap_or_default();
        let active_windows = windows
            .iter()
            .filter(|w| {
                Schedule::from_spec(&w.spec, w.created).is_ok_and(|s| s.active_at(now).is_some())
            })
            .map(|w| w.name.clone())
            .collect();
        SidecarReport {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            replica: self.replica.clone(),
            sidecar_version: t.hello.version.clone(),
            state,
            connected_since: t.open.then_some(t.connected_since),
            disconnected_at: if t.open { None } else { t.disconnected_at },
            latest_version,
            acked_version: applied.map(|a| a.snapshot.version),
            refusal: refusal.map(|(r, _)| r.clone()),
            policy: config.and_then(|c| c.policy.as_ref()).map(|p| p.name.clone()),
            windows: windows.iter().map(|w| w.name.clone()).collect(),
            active_windows,
            holds: applied.map(|a| a.held.clone()).unwrap_or_default(),
        }
    }
}

/// The last refusal, while nothing newer has been applied since.
fn standing_refusal(t: &Tracked) -> Option<&(Refusal, bool)> {
    t.refusal.as_ref().filter(|(r, _)| {
        r.version.is_none_or(|v| t.applied.as_ref().is_none_or(|a| a.snapshot.version < v))
    })
}

fn state_of(t: &Tracked) -> SidecarState {
    let latest_version = t.latest.as_ref().map_or(0, |p| p.snapshot.version);
    let refusal = standing_refusal(t);
    if !t.open {
        SidecarState::Disconnected
    } else if !t.hello.acknowledges || refusal.is_some_and(|(_, unknown)| *unknown) {
        SidecarState::Outdated
    } else if refusal.is_some_and(|(r, _)| r.version.is_none_or(|v| v == latest_version)) {
        SidecarState::Refused
    } else if t.applied.as_ref().is_some_and(|a| a.snapshot.version == latest_version) {
        SidecarState::Synced
    } else {
        SidecarState::Pending
    }
}

#[cfg(test)]
mod tests;
