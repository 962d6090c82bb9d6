//! Environment variables (`ValidateEnv`, `validateEnvVarValueFrom`,
//! `validateObjectFieldSelector`, `validateContainerResourceFieldSelector`,
//! `validateConfigMapKeySelector`, `ValidateEnvFrom` in
//! `pkg/apis/core/validation/validation.go`; `ConvertDownwardAPIFieldLabel` in
//! `pkg/apis/core/pods/helpers.go`; `SplitMaybeSubscriptedPath` in `pkg/fieldpath`).

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, ObjectFieldSelector, ResourceFieldSelector,
};

use super::field::{FieldError, child, index, invalid, not_supported, required, s};
use super::names::{
    is_config_map_key, is_dns1123_subdomain, is_qualified_name, is_relaxed_env_var_name,
};

/// The fields an env var may take from the pod, sorted as Go's `sets.List` prints them.
pub(crate) const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

pub(crate) fn validate_env(vars: &[EnvVar], path: &str, out: &mut Vec<FieldError>) {
    for (i, var) in vars.iter().enumerate() {
        let at = index(path, i);
        if var.name.is_empty() {
            out.push(required(&child(&at, "name"), ""));
        } else {
            for msg in is_relaxed_env_var_name(&var.name) {
                out.push(invalid(&child(&at, "name"), s(&var.name), msg));
            }
        }
        validate_value_from(var, &child(&at, "valueFrom"), out);
    }
}

fn validate_value_from(var: &EnvVar, path: &str, out: &mut Vec<FieldError>) {
    let Some(from) = &var.value_from else { return };
    let mut sources = 0;
    if let Some(field_ref) = &from.field_ref {
        sources += 1;
        validate_field_selector(field_ref, ENV_FIELD_PATHS, &child(path, "fieldRef"), out);
    }
    if let Some(resource_ref) = &from.resource_field_ref {
        sources += 1;
        validate_resource_selector(resource_ref, false, &child(path, "resourceFieldRef"), out);
    }
    for (name, selector) in [
        ("configMapKeyRef", from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key))),
        ("secretKeyRef", from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key))),
    ] {
        if let Some((ref_name, key)) = selector {
            sources += 1;
            validate_key_selector(ref_name, key, &child(path, name), out);
        }
    }
    let detail = if sources == 0 {
        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
    } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
        "may not be specified when `value` is not empty"
    } else if sources > 1 {
        "may not have more than one field specified at a time"
    } else {
        return;
    };
    out.push(invalid(path, s(""), detail));
}

/// `validateObjectFieldSelector`, for env vars and for downward API volume files.
pub(crate) fn validate_field_selector(
    selector: &ObjectFieldSelector,
    allowed: &[&str],
    path: &str,
    out: &mut Vec<FieldError>,
) {
    // SetDefaults_ObjectFieldSelector has set an empty apiVersion to "v1".
    let version = selector.api_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("v1");
    let field_path = selector.field_path.as_str();
    let fp_path = child(path, "fieldPath");
    if field_path.is_empty() {
        out.push(required(&fp_path, ""));
        return;
    }
    let conversion = if version != "v1" {
        Err(format!("unsupported pod version: {version}"))
    } else {
        convert_field_label(field_path)
    };
    let internal = match conversion {
        Ok(internal) => internal,
        Err(err) => {
            out.push(invalid(
                &fp_path,
                s(field_path),
                format!("error converting fieldPath: {err}"),
            ));
            return;
        }
    };
    if let Some((base, subscript)) = split_subscripted(internal) {
        let key = match base {
            "metadata.annotations" => subscript.to_lowercase(),
            "metadata.labels" => subscript.to_owned(),
            _ => {
                out.push(invalid(path, s(base), "does not support subscript"));
                return;
            }
        };
        for msg in is_qualified_name(&key) {
            out.push(invalid(path, s(&key), msg));
        }
    } else if !allowed.contains(&internal) {
        out.push(not_supported(&fp_path, s(internal), allowed));
    }
}

/// `SplitMaybeSubscriptedPath`: `metadata.labels['key']` into its path and key.
fn split_subscripted(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (base, subscript) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, subscript))
}

/// `ConvertDownwardAPIFieldLabel` for v1.
fn convert_field_label(label: &str) -> Result<&str, String> {
    if let Some((base, _)) = split_subscripted(label) {
        return match base {
            "metadata.annotations" | "metadata.labels" => Ok(label),
            _ => Err(format!("field label does not support subscript: {label}")),
        };
    }
    match label {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(label),
        "spec.host" => Ok("spec.nodeName"),
        _ => Err(format!("field label not supported: {label}")),
    }
}

/// `validateContainerResourceFieldSelector` without the divisor check.
pub(crate) fn validate_resource_selector(
    selector: &ResourceFieldSelector,
    volume: bool,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let resource = selector.resource.as_str();
    if volume && selector.container_name.as_deref().unwrap_or("").is_empty() {
        out.push(required(&child(path, "containerName"), ""));
    } else if resource.is_empty() {
        out.push(required(&child(path, "resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        out.push(not_supported(&child(path, "resource"), s(resource), RESOURCE_FIELD_PATHS));
    }
}

fn validate_key_selector(name: &str, key: &str, path: &str, out: &mut Vec<FieldError>) {
    // An empty name fails the subdomain rule: Go checks it unconditionally here.
    for msg in is_dns1123_subdomain(name) {
        out.push(invalid(&child(path, "name"), s(name), msg));
    }
    if key.is_empty() {
        out.push(required(&child(path, "key"), ""));
    } else {
        for msg in is_config_map_key(key) {
            out.push(invalid(&child(path, "key"), s(key), msg));
        }
    }
}

/// `maskTrailingDash`, bug for bug: Go drops two characters before appending `a`.
fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(_) if name.len() >= 2 => format!("{}a", &name[..name.len() - 2]),
        Some(_) => "a".to_owned(),
        None => name.to_owned(),
    }
}

pub(crate) fn validate_env_from(sources: &[EnvFromSource], path: &str, out: &mut Vec<FieldError>) {
    for (i, source) in sources.iter().enumerate() {
        let at = index(path, i);
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            for msg in is_relaxed_env_var_name(prefix) {
                out.push(invalid(&child(&at, "prefix"), s(prefix), msg));
            }
        }
        let refs = [
            ("configMapRef", source.config_map_ref.as_ref().map(|r| &r.name)),
            ("secretRef", source.secret_ref.as_ref().map(|r| &r.name)),
        ];
        let mut count = 0;
        for (field, name) in refs {
            let Some(name) = name else { continue };
            count += 1;
            let name_path = child(&child(&at, field), "name");
            if name.is_empty() {
                out.push(required(&name_path, ""));
            } else {
                for msg in is_dns1123_subdomain(&mask_trailing_dash(name)) {
                    out.push(invalid(&name_path, s(name), msg));
                }
            }
        }
        // Go reports these two on the list, not on the entry.
        match count {
            0 => {
                out.push(invalid(path, s(""), "must specify one of: `configMapRef` or `secretRef`"))
            }
            1 => {}
            _ => out.push(invalid(
                path,
                s(""),
                "may not have more than one field specified at a time",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};

    use super::*;

    fn shown(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn field_ref(version: Option<&str>, field_path: &str) -> EnvVar {
        let selector = ObjectFieldSelector {
            api_version: version.map(Into::into),
            field_path: field_path.into(),
        };
        let from = EnvVarSource { field_ref: Some(selector), ..Default::default() };
        EnvVar { name: "X".into(), value_from: Some(from), ..Default::default() }
    }

    #[test]
    fn valid_vars_pass() {
        let vars = [
            EnvVar {
                name: "9lives.and-dashes".into(),
                value: Some("v".into()),
                ..Default::default()
            },
            field_ref(None, "metadata.name"),
            field_ref(Some("v1"), "metadata.labels['app']"),
        ];
        let mut out = Vec::new();
        validate_env(&vars, "e", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn names_value_from_and_field_paths() {
        let mut both = field_ref(None, "status.podIP");
        both.value = Some("x".into());
        let secret = SecretKeySelector { name: "s".into(), key: "k".into(), ..Default::default() };
        both.value_from.as_mut().unwrap().secret_key_ref = Some(secret);
        let vars = [
            EnvVar { name: String::new(), ..Default::default() },
            EnvVar {
                name: "A=B".into(),
                value_from: Some(EnvVarSource::default()),
                ..Default::default()
            },
            field_ref(None, "spec.restartPolicy"),
            field_ref(Some("v2"), "metadata.name"),
            field_ref(None, "metadata.nmae"),
            both,
        ];
        let mut out = Vec::new();
        validate_env(&vars, "c.env", &mut out);
        assert_eq!(
            shown(out),
            [
                "c.env[0].name: Required value",
                r#"c.env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"c.env[1].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
                r#"c.env[2].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.restartPolicy": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#,
                r#"c.env[3].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.name": error converting fieldPath: unsupported pod version: v2"#,
                r#"c.env[4].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.nmae": error converting fieldPath: field label not supported: metadata.nmae"#,
                r#"c.env[5].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
            ]
        );
    }

    #[test]
    fn env_from_needs_exactly_one_source() {
        let mut out = Vec::new();
        validate_env_from(&[EnvFromSource::default()], "c.envFrom", &mut out);
        assert_eq!(
            shown(out),
            [r#"c.envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#]
        );
    }
}
