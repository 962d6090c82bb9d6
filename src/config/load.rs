//! Parsing a file of YAML documents into a [`Config`].

use serde::Deserialize;

use super::{Config, NamedWindow};
use crate::api::{MaintenanceWindow, UpstreamPolicy};
use crate::policy::Policy;

const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// Why a config file was refused. Every variant names the document (1-based) and, where
/// there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("document {doc}: not valid YAML: {source}")]
    Yaml { doc: usize, source: serde_yaml::Error },

    #[error("document {doc}: apiVersion must be {API_VERSION}, found {found:?}")]
    ApiVersion { doc: usize, found: String },

    #[error("document {doc}: kind must be UpstreamPolicy or MaintenanceWindow, found {found:?}")]
    Kind { doc: usize, found: String },

    #[error("document {doc} ({kind} {name}): {field}: {message}")]
    Field { doc: usize, kind: &'static str, name: String, field: String, message: String },

    #[error(
        "document {doc} ({name}): only one UpstreamPolicy may apply to a sidecar, and {first} came first"
    )]
    SecondPolicy { doc: usize, name: String, first: String },
}

/// Parses YAML documents into a config. Empty documents are skipped; an empty file gives
/// the defaults.
pub fn parse(text: &str) -> Result<Config, LoadError> {
    let mut config = Config::default();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|source| LoadError::Yaml { doc, source })?;
        if value.is_null() {
            continue;
        }
        let text_of =
            |key: &str| value.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let api_version = text_of("apiVersion");
        if api_version != API_VERSION {
            return Err(LoadError::ApiVersion { doc, found: api_version });
        }
        match text_of("kind").as_str() {
            "UpstreamPolicy" => {
                let policy: UpstreamPolicy = typed(doc, "UpstreamPolicy", value)?;
                let name = object_name(&policy.metadata);
                if let Some(first) = config.policy_name {
                    return Err(LoadError::SecondPolicy { doc, name, first });
                }
                config.policy = Policy::from_spec(&policy.spec).map_err(|e| LoadError::Field {
                    doc,
                    kind: "UpstreamPolicy",
                    name: name.clone(),
                    field: e.field,
                    message: e.message,
                })?;
                config.policy_name = Some(name);
            }
            "MaintenanceWindow" => {
                let window: MaintenanceWindow = typed(doc, "MaintenanceWindow", value)?;
                config
                    .windows
                    .push(NamedWindow { name: object_name(&window.metadata), spec: window.spec });
            }
            other => return Err(LoadError::Kind { doc, found: other.to_owned() }),
        }
    }
    Ok(config)
}

/// Deserializes one document, keeping the path of the field that failed.
fn typed<T: serde::de::DeserializeOwned>(
    doc: usize,
    kind: &'static str,
    value: serde_yaml::Value,
) -> Result<T, LoadError> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("(unnamed)")
        .to_owned();
    serde_path_to_error::deserialize(value).map_err(|e| LoadError::Field {
        doc,
        kind,
        name,
        field: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("(unnamed)");
    match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const GOOD: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: UpstreamPolicy
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  timeouts: {connect: 1s, responseHeaders: 15s, request: 60s, idle: 5m, upstreamIdle: 4s}
  validation: {maxResponseHeaderBytes: 65536, contentTypes: []}
  routes:
  - match: {pathPrefix: /reports, methods: [GET]}
    timeouts: {responseHeaders: 2m}
    validation: {contentTypes: [text/csv]}
  errors: {format: auto}
---
apiVersion: portcullis.dev/v1alpha1
kind: MaintenanceWindow
metadata: {name: db-migration, namespace: shop}
spec:
  start: "2026-12-01T02:00:00Z"
  end: "2026-12-01T03:00:00Z"
  exemptPaths: [/healthz]
"#;

    #[test]
    fn reads_both_kinds() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.policy_name.as_deref(), Some("shop/checkout"));
        assert_eq!(config.policy.default_route.timeouts.request, Some(Duration::from_secs(60)));
        assert_eq!(config.policy.routes.len(), 1);
        assert_eq!(config.windows.len(), 1);
        assert_eq!(config.windows[0].name, "shop/db-migration");
        assert_eq!(config.windows[0].spec.exempt_paths, vec!["/healthz"]);
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("---\n---\n").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_document_and_field() {
        let bad = GOOD.replace("connect: 1s", "connect: soon");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("document 1 (UpstreamPolicy checkout): spec.timeouts.connect: "),
            "{err}"
        );
        assert!(err.contains("invalid duration \"soon\""), "{err}");

        let bad = GOOD.replace("text/csv", "csv");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("document 1 (UpstreamPolicy shop/checkout): spec.routes[0].validation.contentTypes[0]: "),
            "{err}"
        );

        let bad = GOOD.replace("exemptPaths: [/healthz]", "exemptPaths: /healthz");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2 (MaintenanceWindow db-migration): spec.exemptPaths: "),
            "{err}"
        );

        let err = parse("apiVersion: v1\nkind: ConfigMap\n").unwrap_err().to_string();
        assert_eq!(err, "document 1: apiVersion must be portcullis.dev/v1alpha1, found \"v1\"");

        let err =
            parse("apiVersion: portcullis.dev/v1alpha1\nkind: Gateway\n").unwrap_err().to_string();
        assert!(err.contains("kind must be UpstreamPolicy or MaintenanceWindow"), "{err}");

        let two = format!(
            "{GOOD}\n---\n{}",
            GOOD.split("---").next().unwrap().replace("checkout,", "other,")
        );
        let err = parse(&two).unwrap_err().to_string();
        assert!(
            err.contains("only one UpstreamPolicy") && err.contains("shop/checkout came first"),
            "{err}"
        );

        let err = parse("a: [").unwrap_err().to_string();
        assert!(err.starts_with("document 1: not valid YAML"), "{err}");
    }
}
