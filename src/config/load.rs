//! Parsing a file of YAML documents into a [`Config`].

use std::path::PathBuf;

use jiff::Timestamp;
use serde::Deserialize;

use super::snapshot::Config;
use crate::api::{MaintenanceWindow, MaintenanceWindowSpec, UpstreamPolicy};
use crate::maintenance::{self, Bypass, Window};
use crate::policy::{InvalidField, Policy};
use crate::schedule::Schedule;

/// What parsing needs beyond the text.
#[derive(Clone, Debug)]
pub struct LoadContext {
    /// Where Secrets are mounted, one folder per Secret and one file per key, as a Secret
    /// volume lays them out: `<dir>/<secret name>/<key>`.
    pub secrets_dir: Option<PathBuf>,
    /// Stands in for the creation time of a window that has none.
    pub now: Timestamp,
}

impl Default for LoadContext {
    fn default() -> Self {
        LoadContext { secrets_dir: None, now: Timestamp::now() }
    }
}

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
pub fn parse(text: &str, ctx: &LoadContext) -> Result<Config, LoadError> {
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
                let name = object_name(&window.metadata);
                let created = window.metadata.creation_timestamp.as_ref().map_or(ctx.now, |t| t.0);
                let compiled = bypass_from_secret(&window.spec, ctx)
                    .and_then(|bypass| compile_window(name.clone(), &window.spec, created, bypass))
                    .map_err(|e| LoadError::Field {
                        doc,
                        kind: "MaintenanceWindow",
                        name,
                        field: e.field,
                        message: e.message,
                    })?;
                config.windows.push(compiled);
            }
            other => return Err(LoadError::Kind { doc, found: other.to_owned() }),
        }
    }
    Ok(config)
}

/// A window's bypass, its token read from the mounted Secret (standalone mode).
fn bypass_from_secret(
    spec: &MaintenanceWindowSpec,
    ctx: &LoadContext,
) -> Result<Option<Bypass>, InvalidField> {
    let Some(b) = &spec.bypass else { return Ok(None) };
    let header = b.header.parse().map_err(|_| {
        InvalidField::new("spec.bypass.header", format!("{:?} is not a header name", b.header))
    })?;
    Ok(Some(Bypass::new(header, &read_secret(ctx, &b.secret_ref.name, &b.secret_ref.key)?)))
}

/// Checks a window and makes it ready to enforce. `bypass` comes from a mounted Secret
/// (standalone) or from the controller's digest.
pub fn compile_window(
    name: String,
    spec: &MaintenanceWindowSpec,
    created: Timestamp,
    bypass: Option<Bypass>,
) -> Result<Window, InvalidField> {
    let schedule = Schedule::from_spec(spec, created)?;
    for (i, path) in spec.exempt_paths.iter().enumerate() {
        if !path.starts_with('/') {
            return Err(InvalidField::new(format!("spec.exemptPaths[{i}]"), "must start with /"));
        }
    }
    Ok(Window {
        name,
        schedule,
        retry_after: spec.retry_after.map_or(maintenance::DEFAULT_RETRY_AFTER, |d| d.as_std()),
        exempt_paths: spec.exempt_paths.clone(),
        bypass,
        message: spec.message.clone(),
    })
}

/// A Secret's key as a mounted Secret volume holds it; a trailing newline, which
/// `echo` adds and users rarely mean, is not part of the token.
fn read_secret(ctx: &LoadContext, name: &str, key: &str) -> Result<Vec<u8>, InvalidField> {
    let field = "spec.bypass.secretRef";
    let Some(dir) = &ctx.secrets_dir else {
        return Err(InvalidField::new(field, "reading a bypass Secret needs --secrets-dir"));
    };
    if [name, key].iter().any(|part| part.is_empty() || part.contains('/') || *part == "..") {
        return Err(InvalidField::new(field, "name and key must be plain names"));
    }
    let path = dir.join(name).join(key);
    let mut token = std::fs::read(&path)
        .map_err(|e| InvalidField::new(field, format!("cannot read {}: {e}", path.display())))?;
    while token.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        token.pop();
    }
    if token.is_empty() {
        return Err(InvalidField::new(field, format!("{} is empty", path.display())));
    }
    Ok(token)
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
        let config = parse(GOOD, &LoadContext::default()).unwrap();
        assert_eq!(config.policy_name.as_deref(), Some("shop/checkout"));
        assert_eq!(config.policy.default_route.timeouts.request, Some(Duration::from_secs(60)));
        assert_eq!(config.policy.routes.len(), 1);
        assert_eq!(config.windows.len(), 1);
        assert_eq!(config.windows[0].name, "shop/db-migration");
        assert_eq!(config.windows[0].exempt_paths, vec!["/healthz"]);
    }

    #[test]
    fn empty_file_gives_defaults() {
        for empty in ["", "---\n---\n"] {
            let config = parse(empty, &LoadContext::default()).unwrap();
            assert_eq!(config.policy, Policy::default());
            assert!(config.policy_name.is_none() && config.windows.is_empty());
        }
    }

    #[test]
    fn errors_name_document_and_field() {
        let bad = GOOD.replace("connect: 1s", "connect: soon");
        let err = parse(&bad, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("document 1 (UpstreamPolicy checkout): spec.timeouts.connect: "),
            "{err}"
        );
        assert!(err.contains("invalid duration \"soon\""), "{err}");

        let bad = GOOD.replace("text/csv", "csv");
        let err = parse(&bad, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("document 1 (UpstreamPolicy shop/checkout): spec.routes[0].validation.contentTypes[0]: "),
            "{err}"
        );

        let bad = GOOD.replace("exemptPaths: [/healthz]", "exemptPaths: /healthz");
        let err = parse(&bad, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2 (MaintenanceWindow db-migration): spec.exemptPaths: "),
            "{err}"
        );

        let err = parse("apiVersion: v1\nkind: ConfigMap\n", &LoadContext::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "document 1: apiVersion must be portcullis.dev/v1alpha1, found \"v1\"");

        let err =
            parse("apiVersion: portcullis.dev/v1alpha1\nkind: Gateway\n", &LoadContext::default())
                .unwrap_err()
                .to_string();
        assert!(err.contains("kind must be UpstreamPolicy or MaintenanceWindow"), "{err}");

        let two = format!(
            "{GOOD}\n---\n{}",
            GOOD.split("---").next().unwrap().replace("checkout,", "other,")
        );
        let err = parse(&two, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.contains("only one UpstreamPolicy") && err.contains("shop/checkout came first"),
            "{err}"
        );

        let err = parse("a: [", &LoadContext::default()).unwrap_err().to_string();
        assert!(err.starts_with("document 1: not valid YAML"), "{err}");

        let bad = GOOD.replace("exemptPaths: [/healthz]", "schedule: \"61 * * * *\"");
        let err = parse(&bad, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2 (MaintenanceWindow shop/db-migration): spec.start: "),
            "{err}"
        );
    }

    #[test]
    fn bypass_tokens_come_from_the_secrets_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ops-bypass")).unwrap();
        std::fs::write(dir.path().join("ops-bypass/token"), "open sesame\n").unwrap();
        let doc = GOOD.replace(
            "exemptPaths: [/healthz]",
            "bypass: {header: X-Portcullis-Bypass, secretRef: {name: ops-bypass, key: token}}",
        );
        let ctx = LoadContext { secrets_dir: Some(dir.path().into()), ..LoadContext::default() };
        let config = parse(&doc, &ctx).unwrap();
        let bypass = config.windows[0].bypass.as_ref().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-portcullis-bypass", "open sesame".parse().unwrap());
        assert!(bypass.admits(&headers));
        let shown = serde_json::to_string(&config).unwrap();
        assert!(!shown.contains("sesame"), "{shown}");

        let err = parse(&doc, &LoadContext::default()).unwrap_err().to_string();
        assert!(
            err.contains("spec.bypass.secretRef: reading a bypass Secret needs --secrets-dir"),
            "{err}"
        );
        let missing = doc.replace("key: token", "key: nope");
        let err = parse(&missing, &ctx).unwrap_err().to_string();
        assert!(err.contains("spec.bypass.secretRef: cannot read"), "{err}");
    }
}
