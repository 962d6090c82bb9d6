//! What each resource asks of the sidecars: the pods it selects, and the digest of what
//! each of them must hold for the resource to be in force there. The status writer
//! compares these with what the sidecars acknowledged.

use super::{Index, ObjectKey, PodFacts};
use crate::config::wire::NamedPolicy;

/// One resource's demand on the sidecars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `metadata.generation` the digest was made from.
    pub generation: Option<i64>,
    /// What a pod must hold; `None` for a resource that cannot be enforced.
    pub digest: Option<String>,
    /// Every pod it selects.
    pub pods: Vec<TargetPod>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPod {
    pub key: ObjectKey,
    /// Whether the pod has a sidecar at all.
    pub injected: bool,
    /// Another (older) UpstreamPolicy is in force there instead.
    pub overridden: bool,
}

impl Index {
    pub fn policy_target(&self, key: &ObjectKey) -> Option<Target> {
        let entry = self.policies.get(key)?;
        let digest = entry
            .selector
            .is_ok()
            .then(|| NamedPolicy { name: key.to_string(), spec: entry.spec.clone() }.digest());
        let pods = self
            .pods_selected(&key.namespace, |facts| entry.selects(&facts.labels))
            .map(|(pod, facts)| TargetPod {
                key: pod.clone(),
                injected: facts.injected,
                overridden: self
                    .winning_policy(&key.namespace, &facts.labels)
                    .is_some_and(|(winner, _)| winner != key),
            })
            .collect();
        Some(Target { generation: entry.generation, digest, pods })
    }

    pub fn window_target(&self, key: &ObjectKey) -> Option<Target> {
        let (entry, schedule) = self.windows.get(key)?;
        let valid = entry.selector.is_ok() && schedule.is_some();
        let digest = valid.then(|| self.named_window(key, entry).digest());
        let pods = self
            .pods_selected(&key.namespace, |facts| entry.selects(&facts.labels))
            .map(|(pod, facts)| TargetPod {
                key: pod.clone(),
                injected: facts.injected,
                overridden: false,
            })
            .collect();
        Some(Target { generation: entry.generation, digest, pods })
    }

    /// Every pod that the index knows, whether it exists now.
    pub fn has_pod(&self, pod: &ObjectKey) -> bool {
        self.pods.contains_key(pod)
    }

    fn pods_selected<'a>(
        &'a self,
        namespace: &'a str,
        selects: impl Fn(&PodFacts) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a PodFacts)> + 'a {
        self.pods_of(namespace).filter(move |(_, facts)| selects(facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::index::Labels;

    fn labels(app: &str) -> Labels {
        [("app".to_string(), app.to_string())].into()
    }

    #[test]
    fn a_target_names_its_pods_and_the_digest_they_must_hold() {
        let mut index = Index::default();
        let shop = |name: &str| ObjectKey::new("shop", name);
        index.apply_pod(shop("web-1"), labels("web"));
        index.apply_pod(shop("web-2"), PodFacts { labels: labels("web"), injected: false });
        index.apply_pod(shop("db-1"), labels("db"));
        fn spec<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
            serde_yaml::from_str(yaml).unwrap()
        }
        let created = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        index.apply_policy(
            shop("older"),
            created("2026-01-01T00:00:00Z"),
            spec("selector: {matchLabels: {app: web}}"),
        );
        index.apply_policy(shop("all"), created("2026-02-01T00:00:00Z"), spec("{}"));
        let target = index.policy_target(&shop("all")).unwrap();
        let pods: Vec<(&str, bool, bool)> =
            target.pods.iter().map(|p| (p.key.name.as_str(), p.injected, p.overridden)).collect();
        assert_eq!(pods, [("db-1", true, false), ("web-1", true, true), ("web-2", false, true)]);
        // The digest is that of what a selected pod's config carries for it.
        let held = index.config_of(&shop("db-1")).held();
        assert_eq!(held, [("shop/all".to_string(), target.digest.clone().unwrap())]);

        index.apply_window(
            shop("mw"),
            created("2026-01-01T00:00:00Z"),
            spec("selector: {matchLabels: {app: db}}"),
        );
        let window = index.window_target(&shop("mw")).unwrap();
        assert_eq!(window.pods.len(), 1);
        assert_eq!(index.config_of(&shop("db-1")).held()[1].1, window.digest.unwrap());

        index.apply_window(
            shop("bad"),
            created("2026-01-01T00:00:00Z"),
            spec("schedule: \"0 2 * * *\""),
        );
        assert_eq!(
            index.window_target(&shop("bad")).unwrap().digest,
            None,
            "invalid: nothing to hold"
        );
    }
}
