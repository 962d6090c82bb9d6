//! Feeding the index from the API server: one kube-rs watcher per kind. A watcher that
//! restarts relists; objects that vanished meanwhile are deleted from the index when the
//! relist completes. Beside the index, a cache of every Service for the webhook.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::index::{Index, Meta, ObjectKey, PodFacts};
use crate::api::{MaintenanceWindow, UpstreamPolicy};
use crate::inject::{INJECTED_ANNOTATION, service_ports};

/// A kind of object the index follows.
pub trait Indexed:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    fn apply(self, index: &mut Index, key: ObjectKey);
    fn delete(index: &mut Index, key: &ObjectKey);
}

fn meta<K: Resource>(obj: &K) -> Meta {
    Meta {
        created: obj.meta().creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        generation: obj.meta().generation,
    }
}

impl Indexed for UpstreamPolicy {
    fn apply(self, index: &mut Index, key: ObjectKey) {
        let meta = meta(&self);
        index.apply_policy(key, meta, self.spec);
    }
    fn delete(index: &mut Index, key: &ObjectKey) {
        index.delete_policy(key);
    }
}

impl Indexed for MaintenanceWindow {
    fn apply(self, index: &mut Index, key: ObjectKey) {
        let meta = meta(&self);
        index.apply_window(key, meta, self.spec);
    }
    fn delete(index: &mut Index, key: &ObjectKey) {
        index.delete_window(key);
    }
}

impl Indexed for Pod {
    /// A pod that has finished (a Job's, say) serves nothing: it is dropped, so that it
    /// counts neither as selected nor as one that does not enforce.
    fn apply(self, index: &mut Index, key: ObjectKey) {
        let phase = self.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return index.delete_pod(&key);
        }
        let injected =
            self.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
        let labels = self.metadata.labels.unwrap_or_default();
        index.apply_pod(key, PodFacts { labels, injected });
    }
    fn delete(index: &mut Index, key: &ObjectKey) {
        index.delete_pod(key);
    }
}

impl Indexed for Secret {
    fn apply(self, index: &mut Index, key: ObjectKey) {
        let data: BTreeMap<String, Vec<u8>> =
            self.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        index.apply_secret(key, &data);
    }
    fn delete(index: &mut Index, key: &ObjectKey) {
        index.delete_secret(key);
    }
}

fn key_of<K: Resource>(obj: &K) -> ObjectKey {
    ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Follows one kind for as long as the process runs.
pub async fn feed<K: Indexed>(api: Api<K>, index: Arc<Mutex<Index>>) {
    let mut events = watcher(api).boxed();
    let mut known: HashSet<ObjectKey> = HashSet::new();
    let mut relisted: Option<HashSet<ObjectKey>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), "watch failed, retrying: {e}");
                continue;
            }
        };
        let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => relisted = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let key = key_of(&obj);
                if let Some(seen) = &mut relisted {
                    seen.insert(key.clone());
                }
                known.insert(key.clone());
                obj.apply(&mut index, key);
            }
            Event::Delete(obj) => {
                let key = key_of(&obj);
                known.remove(&key);
                K::delete(&mut index, &key);
            }
            Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                for gone in known.difference(&seen) {
                    K::delete(&mut index, gone);
                }
                known = seen;
                index.listed(&K::kind(&()));
            }
        }
    }
}

/// Every Service of the cluster, kept current by the returned task for as long as it runs:
/// the webhook reads a Service's `appProtocol` from here, never from the API server while
/// a pod waits. Empty until the first list completes. Only what the injector reads is
/// kept ([`service_ports::trim`]).
pub fn services(api: Api<Service>) -> (Store<Service>, impl Future<Output = ()> + Send) {
    let (store, writer) = reflector::store();
    let events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(service_ports::trim)
        .reflect(writer);
    let run = events.for_each(|event| {
        if let Err(e) = event {
            tracing::warn!(kind = "Service", "watch failed, retrying: {e}");
        }
        std::future::ready(())
    });
    (store, run)
}

fn watcher<K: Indexed>(
    api: Api<K>,
) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send {
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}
