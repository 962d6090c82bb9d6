//! The injector's config: what every injected sidecar gets unless a pod's annotations say
//! otherwise. Rendered by the chart into a ConfigMap (key `inject.yaml`), read by
//! `portcullis controller --inject-config` and `portcullis inject --config`.
//!
//! Every field has a default, so an empty file is a valid config.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use super::quantity::{Amount, QuantityError};
use crate::api::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectConfig {
    /// The sidecar's image.
    pub image: String,
    pub image_pull_policy: PullPolicy,
    /// The port the sidecar serves the app's traffic on, in the pod.
    pub proxy_port: u16,
    /// The sidecar's admin port (/livez, /readyz, /metrics), bound on 0.0.0.0 in pods so
    /// that the kubelet can probe it.
    pub admin_port: u16,
    /// The controller's config stream, as sidecars reach it.
    pub controller_url: String,
    pub log_format: ProxyLogFormat,
    /// The sidecar's resources (core/v1 ResourceRequirements).
    pub resources: ResourceRequirements,
    pub startup_probe: StartupProbe,
    /// How long the sidecar holds the app's stop, its preStop hook waiting, for traffic
    /// to move away from the pod (a Gateway API duration); lowered for a pod whose grace
    /// period it does not fit (see `stop_delay`).
    pub stop_delay: Duration,
    /// Namespaces never injected, whatever their labels say.
    pub excluded_namespaces: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// `--log-format` of the injected sidecars.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyLogFormat {
    Plain,
    Json,
}

impl ProxyLogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyLogFormat::Plain => "plain",
            ProxyLogFormat::Json => "json",
        }
    }
}

/// How long the kubelet waits for the sidecar's first config before it gives up on it:
/// `periodSeconds` x `failureThreshold`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StartupProbe {
    pub period_seconds: i32,
    pub failure_threshold: i32,
}

impl Default for StartupProbe {
    fn default() -> Self {
        StartupProbe { period_seconds: 1, failure_threshold: 120 }
    }
}

impl Default for InjectConfig {
    fn default() -> Self {
        let quantity = |q: &str| Quantity(q.to_owned());
        InjectConfig {
            image: concat!("ghcr.io/portcullis-dev/portcullis:", env!("CARGO_PKG_VERSION"))
                .to_owned(),
            image_pull_policy: PullPolicy::IfNotPresent,
            proxy_port: 4180,
            admin_port: 9901,
            controller_url: "https://portcullis.portcullis-system.svc:8090".to_owned(),
            log_format: ProxyLogFormat::Json,
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), quantity("100m")),
                    ("memory".to_owned(), quantity("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_owned(), quantity("128Mi"))])),
                ..ResourceRequirements::default()
            },
            startup_probe: StartupProbe::default(),
            stop_delay: Duration::from_secs(5),
            excluded_namespaces: vec!["kube-system".to_owned(), "portcullis-system".to_owned()],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the inject config: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("inject config: {0}")]
    Invalid(String),
    #[error("inject config: resources.{field}: {source}")]
    Quantity { field: String, source: QuantityError },
}

impl InjectConfig {
    /// Reads the YAML file's text; an empty file gives the defaults.
    pub fn from_yaml(text: &str) -> Result<InjectConfig, ConfigError> {
        // An empty document is YAML null, which serde would refuse as a struct.
        let config = serde_yaml::from_str::<Option<InjectConfig>>(text)?.unwrap_or_default();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return invalid("image must be an image reference");
        }
        if self.proxy_port == 0 || self.admin_port == 0 {
            return invalid("proxyPort and adminPort must be between 1 and 65535");
        }
        if self.proxy_port == self.admin_port {
            return invalid("proxyPort and adminPort must differ");
        }
        if self.controller_url.trim().is_empty() {
            return invalid("controllerUrl must be set");
        }
        if self.startup_probe.period_seconds < 1 || self.startup_probe.failure_threshold < 1 {
            return invalid("startupProbe.periodSeconds and failureThreshold must be at least 1");
        }
        for (kind, map) in
            [("requests", &self.resources.requests), ("limits", &self.resources.limits)]
        {
            for (name, quantity) in map.iter().flatten() {
                Amount::parse(&quantity.0).map_err(|source| ConfigError::Quantity {
                    field: format!("{kind}.{name}"),
                    source,
                })?;
            }
        }
        // Checked here too, so that the config's own figures never make every pod look as
        // if its annotations were wrong.
        for resource in ["cpu", "memory"] {
            let amount = |map: &Option<BTreeMap<String, Quantity>>| {
                map.as_ref()?.get(resource).and_then(|q| Amount::parse(&q.0).ok())
            };
            if let (Some(request), Some(limit)) =
                (amount(&self.resources.requests), amount(&self.resources.limits))
                && request > limit
            {
                return Err(ConfigError::Invalid(format!(
                    "resources.requests.{resource} exceeds resources.limits.{resource}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_above_its_limit_is_refused() {
        let text = "resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}";
        assert_eq!(
            InjectConfig::from_yaml(text).unwrap_err().to_string(),
            "inject config: resources.requests.cpu exceeds resources.limits.cpu"
        );
        assert!(
            InjectConfig::from_yaml("resources: {requests: {cpu: '1'}, limits: {cpu: '1'}}")
                .is_ok()
        );
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let defaults = InjectConfig::default();
        assert_eq!(InjectConfig::from_yaml("").unwrap(), defaults);
        assert_eq!(InjectConfig::from_yaml("{}").unwrap(), defaults);
        assert_eq!(defaults.proxy_port, 4180);
        assert_eq!(defaults.admin_port, 9901);
        assert_eq!(defaults.controller_url, "https://portcullis.portcullis-system.svc:8090");
        assert_eq!(defaults.image, "ghcr.io/portcullis-dev/portcullis:0.1.0");
        assert_eq!(defaults.stop_delay, Duration::from_secs(5));
        assert_eq!(
            serde_json::to_value(&defaults.resources).unwrap(),
            serde_json::json!({"limits": {"memory": "128Mi"},
                "requests": {"cpu": "100m", "memory": "32Mi"}})
        );
    }

    #[test]
    fn reads_the_documented_file() {
        let config = InjectConfig::from_yaml(
            "image: registry.example/portcullis:1.2.3\n\
             imagePullPolicy: Always\n\
             proxyPort: 8443\n\
             adminPort: 9000\n\
             controllerUrl: https://pc.ops.svc:8090\n\
             logFormat: plain\n\
             resources:\n  requests: {cpu: 250m, memory: 64Mi}\n  limits: {cpu: 2, memory: 256Mi}\n\
             startupProbe: {periodSeconds: 2, failureThreshold: 30}\n\
             stopDelay: 1m30s\n\
             excludedNamespaces: [kube-system, ops]\n",
        )
        .unwrap();
        assert_eq!(config.image, "registry.example/portcullis:1.2.3");
        assert_eq!(config.image_pull_policy, PullPolicy::Always);
        assert_eq!((config.proxy_port, config.admin_port), (8443, 9000));
        assert_eq!(config.controller_url, "https://pc.ops.svc:8090");
        assert_eq!(config.log_format, ProxyLogFormat::Plain);
        // A bare YAML number is a valid Quantity, as the API server reads it.
        assert_eq!(config.resources.limits.as_ref().unwrap()["cpu"], Quantity("2".into()));
        assert_eq!(config.startup_probe, StartupProbe { period_seconds: 2, failure_threshold: 30 });
        assert_eq!(config.stop_delay, Duration::from_secs(90));
        assert_eq!(config.excluded_namespaces, ["kube-system", "ops"]);
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = InjectConfig::from_yaml("proxyPort: 15001\n").unwrap();
        assert_eq!(config.proxy_port, 15001);
        assert_eq!(config.admin_port, 9901);
        assert_eq!(config.startup_probe, StartupProbe::default());
    }

    #[test]
    fn refuses_what_would_make_broken_pods() {
        let error = |text: &str| InjectConfig::from_yaml(text).unwrap_err().to_string();
        assert!(error("proxyPort: 9901\n").contains("must differ"));
        assert!(error("adminPort: 0\n").contains("between 1 and 65535"));
        assert!(error("proxyPort: 70000\n").contains("cannot read"));
        assert!(error("proxyport: 1\n").contains("unknown field `proxyport`"));
        assert!(error("logFormat: xml\n").contains("unknown variant `xml`"));
        assert!(error("imagePullPolicy: Sometimes\n").contains("unknown variant"));
        assert_eq!(
            error("resources: {limits: {cpu: lots}}\n"),
            "inject config: resources.limits.cpu: \"lots\" is not a quantity \
             (e.g. 500m, 1, 1.5, 128Mi)"
        );
        assert!(error("startupProbe: {periodSeconds: 0}\n").contains("at least 1"));
        assert!(error("image: ''\n").contains("image reference"));
        assert_eq!(
            error("stopDelay: soon\n"),
            "cannot read the inject config: invalid duration \"soon\": expected one to four \
             parts such as 250ms, 5s, 2m or 1h"
        );
        // A bare number is no duration: which unit would it be?
        assert!(error("stopDelay: 5\n").contains("invalid duration \"5\""));
        assert_eq!(InjectConfig::from_yaml("stopDelay: 0s\n").unwrap().stop_delay, Duration::ZERO);
    }
}
