//! The index: every watched resource in, each pod's sidecar config out.
//!
//! Pure and synchronous: the watchers feed it events, and it keeps one
//! `tokio::sync::watch` per pod whose value changes only when that pod's computed config
//! really changes, so each config stream sends a snapshot exactly when there is news. It
//! also answers what each resource's status should say.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use kube::core::{Selector, SelectorExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::report::Held;
use crate::api::{MaintenanceWindowSpec, UpstreamPolicySpec};
use crate::config::wire::{BypassDigest, NamedPolicy, NamedWindow, PodConfig, PodSnapshot};

use crate::policy::Policy;
use crate::schedule::{Schedule, Span};

/// A namespaced object's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

pub type Labels = BTreeMap<String, String>;

/// What the index keeps of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub labels: Labels,
    /// Whether it carries a sidecar (the injector's annotation): only a sidecar can
    /// enforce anything.
    pub injected: bool,
}

/// A pod known by its labels alone is taken to be injected.
impl From<Labels> for PodFacts {
    fn from(labels: Labels) -> Self {
        PodFacts { labels, injected: true }
    }
}

/// The `Accepted` condition of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    /// The resource cannot be enforced; the message names the field.
    Invalid(String),
    /// Another UpstreamPolicy selects some of the same pods and is older; the message
    /// names it.
    Conflicted(String),
}

impl Acceptance {
    pub fn reason(&self) -> &'static str {
        match self {
            Acceptance::Accepted => "Accepted",
            Acceptance::Invalid(_) => "Invalid",
            Acceptance::Conflicted(_) => "Conflicted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    pub matched_pods: usize,
    pub accepted: Acceptance,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowStatus {
    pub matched_pods: usize,
    pub accepted: Acceptance,
    pub active: bool,
    pub current: Option<Span>,
    pub next: Option<Span>,
}

/// What the index keeps of a resource's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub created: Timestamp,
    /// `metadata.generation`, for `status.observedGeneration`.
    pub generation: Option<i64>,
}

impl From<Timestamp> for Meta {
    fn from(created: Timestamp) -> Self {
        Meta { created, generation: None }
    }
}

/// A resource as the index holds it: checked once, on arrival.
struct Entry<S> {
    created: Timestamp,
    generation: Option<i64>,
    spec: S,
    /// `Err` holds why the resource cannot be enforced.
    selector: Result<Selector, String>,
}

impl<S> Entry<S> {
    fn selects(&self, labels: &Labels) -> bool {
        self.selector.as_ref().is_ok_and(|s| s.matches(labels))
    }
}

/// A snapshot as the index publishes it: with the moment it was made, so that the stream
/// can tell how long a change took to leave for the pod.
#[derive(Debug)]
pub struct Published {
    pub snapshot: PodSnapshot,
    pub at: std::time::Instant,
    /// Each resource of the snapshot with its digest, for acknowledgements.
    pub held: Vec<Held>,
}

impl Published {
    pub fn new(version: u64, config: PodConfig) -> Arc<Self> {
        let held = config.held().into_iter().map(|(name, digest)| Held { name, digest }).collect();
        Arc::new(Published {
            snapshot: PodSnapshot { version, config },
            at: std::time::Instant::now(),
            held,
        })
    }
}

#[derive(Default)]
pub struct Index {
    policies: BTreeMap<ObjectKey, Entry<UpstreamPolicySpec>>,
    windows: BTreeMap<ObjectKey, (Entry<MaintenanceWindowSpec>, Option<Schedule>)>,
    pods: BTreeMap<ObjectKey, PodFacts>,
    /// Secret keys by Secret, as hex SHA-256 digests: the index never holds a token.
    secrets: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    configs: HashMap<ObjectKey, watch::Sender<Arc<Published>>>,
    /// Counts changes to the index; a snapshot carries the count at which it changed.
    version: u64,
    /// The kinds whose first list is in. Until every kind of [`Index::KINDS`] is, the
    /// index is incomplete: an empty index reads as "nothing applies to this pod", so
    /// nothing may be published from it.
    listed: BTreeSet<String>,
    complete: watch::Sender<bool>,
}

fn checked_selector(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Selector, String> {
    Selector::try_from(selector.clone()).map_err(|e| format!("spec.selector: {e}"))
}

impl Index {
    /// The kinds the index is built from, by `kind`.
    pub const KINDS: [&'static str; 4] = ["UpstreamPolicy", "MaintenanceWindow", "Pod", "Secret"];

    /// Notes that the first list of `kind` is in.
    pub fn listed(&mut self, kind: &str) {
        if self.listed.insert(kind.to_owned())
            && Self::KINDS.iter().all(|k| self.listed.contains(*k))
        {
            self.complete.send_replace(true);
        }
    }

    /// For an index fed by hand rather than by watchers: every kind counts as listed.
    pub fn assume_listed(&mut self) {
        for kind in Self::KINDS {
            self.listed(kind);
        }
    }

    /// Whether every kind's first list is in.
    pub fn is_complete(&self) -> bool {
        *self.complete.borrow()
    }

    /// Turns true once every kind's first list is in, and stays so.
    pub fn completion(&self) -> watch::Receiver<bool> {
        self.complete.subscribe()
    }

    pub fn apply_policy(
        &mut self,
        key: ObjectKey,
        meta: impl Into<Meta>,
        spec: UpstreamPolicySpec,
    ) {
        let Meta { created, generation } = meta.into();
        let selector = checked_selector(&spec.selector)
            .and_then(|s| Policy::from_spec(&spec).map(|_| s).map_err(|e| e.to_string()));
        let namespace = key.namespace.clone();
        self.policies.insert(key, Entry { created, generation, spec, selector });
        self.refresh(&namespace);
    }

    pub fn delete_policy(&mut self, key: &ObjectKey) {
        if self.policies.remove(key).is_some() {
            self.refresh(&key.namespace);
        }
    }

    pub fn apply_window(
        &mut self,
        key: ObjectKey,
        meta: impl Into<Meta>,
        spec: MaintenanceWindowSpec,
    ) {
        let Meta { created, generation } = meta.into();
        let schedule = Schedule::from_spec(&spec, created);
        let selector = checked_selector(&spec.selector)
            .and_then(|s| schedule.as_ref().map(|_| s).map_err(|e| e.to_string()));
        let namespace = key.namespace.clone();
        self.windows.insert(key, (Entry { created, generation, spec, selector }, schedule.ok()));
        self.refresh(&namespace);
    }

    pub fn delete_window(&mut self, key: &ObjectKey) {
        if self.windows.remove(key).is_some() {
            self.refresh(&key.namespace);
        }
    }

    pub fn apply_pod(&mut self, key: ObjectKey, facts: impl Into<PodFacts>) {
        let facts = facts.into();
        if self.pods.get(&key) != Some(&facts) {
            self.pods.insert(key.clone(), facts);
            self.refresh_pod(&key);
        }
    }

    pub fn delete_pod(&mut self, key: &ObjectKey) {
        self.pods.remove(key);
        // A stream still open for it keeps its last config until it closes; `prune` then
        // drops it.
        self.prune();
    }

    /// Drops the channels of pods that are gone and that no stream follows any more.
    pub fn prune(&mut self) {
        let pods = &self.pods;
        self.configs.retain(|k, tx| pods.contains_key(k) || tx.receiver_count() > 0);
    }

    /// Pods with a config channel, streamed or not.
    pub fn channel_count(&self) -> usize {
        self.configs.len()
    }

    /// Keeps only digests of a Secret's values; only Secrets that a bypass names matter.
    pub fn apply_secret(&mut self, key: ObjectKey, data: &BTreeMap<String, Vec<u8>>) {
        let digests = data.iter().map(|(k, v)| (k.clone(), hex_sha256(v))).collect();
        self.secrets.insert(key.clone(), digests);
        if self.is_referenced(&key) {
            self.refresh(&key.namespace);
        }
    }

    pub fn delete_secret(&mut self, key: &ObjectKey) {
        if self.secrets.remove(key).is_some() && self.is_referenced(key) {
            self.refresh(&key.namespace);
        }
    }

    fn is_referenced(&self, secret: &ObjectKey) -> bool {
        self.windows.iter().any(|(k, (e, _))| {
            k.namespace == secret.namespace
                && e.spec.bypass.as_ref().is_some_and(|b| b.secret_ref.name == secret.name)
        })
    }

    /// The config stream of one pod: its current config now, and every real change after.
    pub fn subscribe(&mut self, pod: &ObjectKey) -> watch::Receiver<Arc<Published>> {
        if let Some(tx) = self.configs.get(pod) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Published::new(self.version, self.config_of(pod)));
        self.configs.insert(pod.clone(), tx);
        rx
    }

    /// Pods known now.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Resources (policies, windows, Secrets) known now.
    pub fn resource_count(&self) -> usize {
        self.policies.len() + self.windows.len() + self.secrets.len()
    }

    /// Streams held open now.
    pub fn stream_count(&self) -> usize {
        self.configs.values().map(|tx| tx.receiver_count()).sum()
    }

    /// What one pod's sidecar must enforce.
    pub fn config_of(&self, pod: &ObjectKey) -> PodConfig {
        let Some(PodFacts { labels, .. }) = self.pods.get(pod) else {
            return PodConfig::default();
        };
        let policy = self
            .winning_policy(&pod.namespace, labels)
            .map(|(key, entry)| NamedPolicy { name: key.to_string(), spec: entry.spec.clone() });
        let windows = self
            .windows
            .iter()
            .filter(|(key, (entry, _))| key.namespace == pod.namespace && entry.selects(labels))
            .map(|(key, (entry, _))| self.named_window(key, entry))
            .collect();
        PodConfig { policy, windows }
    }

    /// A window as a pod's config carries it: its bypass Secret as a digest.
    fn named_window(&self, key: &ObjectKey, entry: &Entry<MaintenanceWindowSpec>) -> NamedWindow {
        let mut spec = entry.spec.clone();
        let bypass = spec.bypass.take().and_then(|b| {
            let secret = self.secrets.get(&ObjectKey::new(&key.namespace, &b.secret_ref.name))?;
            let sha256 = secret.get(&b.secret_ref.key)?.clone();
            Some(BypassDigest { header: b.header, sha256 })
        });
        NamedWindow { name: key.to_string(), created: entry.created, spec, bypass }
    }

    /// The oldest valid policy that selects these labels (creation time, then name).
    fn winning_policy(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Option<(&ObjectKey, &Entry<UpstreamPolicySpec>)> {
        self.policies
            .iter()
            .filter(|(key, entry)| key.namespace == namespace && entry.selects(labels))
            .min_by(|(ka, a), (kb, b)| (a.created, &ka.name).cmp(&(b.created, &kb.name)))
    }

    /// The pods of one namespace: keys sort by namespace first, so a range, not a scan.
    fn pods_of<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a PodFacts)> {
        self.pods
            .range(ObjectKey::new(namespace, "")..)
            .take_while(move |(key, _)| key.namespace == namespace)
    }

    fn pods_in<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Labels)> {
        self.pods_of(namespace).map(|(key, facts)| (key, &facts.labels))
    }

    /// Every policy, with its generation.
    pub fn policies(&self) -> Vec<(ObjectKey, Option<i64>)> {
        self.policies.iter().map(|(k, e)| (k.clone(), e.generation)).collect()
    }

    /// Every window, with its generation.
    pub fn windows(&self) -> Vec<(ObjectKey, Option<i64>)> {
        self.windows.iter().map(|(k, (e, _))| (k.clone(), e.generation)).collect()
    }

    pub fn policy_status(&self, key: &ObjectKey) -> Option<PolicyStatus> {
        let entry = self.policies.get(key)?;
        if let Err(why) = &entry.selector {
            return Some(PolicyStatus {
                matched_pods: 0,
                accepted: Acceptance::Invalid(why.clone()),
            });
        }
        let matched: Vec<&Labels> = self
            .pods_in(&key.namespace)
            .filter(|(_, l)| entry.selects(l))
            .map(|(_, l)| l)
            .collect();
        let mut winners: Vec<String> = matched
            .iter()
            .filter_map(|labels| self.winning_policy(&key.namespace, labels))
            .filter(|(winner, _)| *winner != key)
            .map(|(winner, _)| winner.name.clone())
            .collect();
        winners.sort();
        winners.dedup();
        let accepted = if winners.is_empty() {
            Acceptance::Accepted
        } else {
            Acceptance::Conflicted(format!(
                "older UpstreamPolicy {} selects some of the same pods and wins there",
                winners.join(", ")
            ))
        };
        Some(PolicyStatus { matched_pods: matched.len(), accepted })
    }

    pub fn window_status(&self, key: &ObjectKey, now: Timestamp) -> Option<WindowStatus> {
        let (entry, schedule) = self.windows.get(key)?;
        let matched_pods = self.pods_in(&key.namespace).filter(|(_, l)| entry.selects(l)).count();
        let (Ok(_), Some(schedule)) = (&entry.selector, schedule) else {
            let why = entry.selector.as_ref().err().cloned().unwrap_or_default();
            return Some(WindowStatus {
                matched_pods,
                accepted: Acceptance::Invalid(why),
                active: false,
                current: None,
                next: None,
            });
        };
        let current = schedule.active_at(now);
        let next = match current {
            Some(Span { end: None, .. }) => None, // on until deleted: nothing comes next
            Some(Span { end: Some(end), .. }) => schedule.next_after(end),
            None => schedule.next_after(now),
        };
        Some(WindowStatus {
            matched_pods,
            accepted: Acceptance::Accepted,
            active: current.is_some(),
            current,
            next,
        })
    }

    /// Recomputes every pod of a namespace; only real changes reach the streams.
    fn refresh(&mut self, namespace: &str) {
        let pods: Vec<ObjectKey> = self.pods_in(namespace).map(|(k, _)| k.clone()).collect();
        for pod in pods {
            self.refresh_pod(&pod);
        }
    }

    fn refresh_pod(&mut self, pod: &ObjectKey) {
        self.version += 1;
        let Some(tx) = self.configs.get(pod) else { return };
        let config = self.config_of(pod);
        let version = self.version;
        tx.send_if_modified(|current| {
            if current.snapshot.config == config {
                false
            } else {
                *current = Published::new(version, config);
                true
            }
        });
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub mod targets;
#[cfg(test)]
mod tests;
