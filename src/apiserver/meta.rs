//! Object metadata (`ValidateObjectMetaAccessor` and `ValidateAnnotations` in
//! `apimachinery/pkg/api/validation/objectmeta.go`; `ValidateLabels` in
//! `apimachinery/pkg/apis/meta/v1/validation/validation.go`), for a Pod.
//!
//! Maps are walked in key order (Go's order is random). The namespace is only checked
//! when set: on a create the API server fills it from the request path first.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::field::{BadValue, FieldError, child, invalid, required, s, too_long};
use super::names::{is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name};

/// `TotalAnnotationSizeLimitB`.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

pub(crate) fn validate_object_meta(meta: &ObjectMeta, out: &mut Vec<FieldError>) {
    let path = "metadata";
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    let name = meta.name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        // NameIsDNSSubdomain(prefix=true) masks a trailing dash, two bytes at a time.
        let masked = match generate_name.strip_suffix('-') {
            Some(_) if generate_name.len() >= 2 => {
                format!("{}a", &generate_name[..generate_name.len() - 2])
            }
            Some(_) => "a".to_owned(),
            None => generate_name.to_owned(),
        };
        for msg in is_dns1123_subdomain(&masked) {
            out.push(invalid(&child(path, "generateName"), s(generate_name), msg));
        }
    }
    if name.is_empty() {
        // The webhook sees a pod before the name is generated from generateName.
        if generate_name.is_empty() {
            out.push(required(&child(path, "name"), "name or generateName is required"));
        }
    } else {
        for msg in is_dns1123_subdomain(name) {
            out.push(invalid(&child(path, "name"), s(name), msg));
        }
    }
    if let Some(namespace) = meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        for msg in is_dns1123_label(namespace) {
            out.push(invalid(&child(path, "namespace"), s(namespace), msg));
        }
    }
    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        let at = child(path, "generation");
        out.push(invalid(&at, BadValue::Int(generation), "must be greater than or equal to 0"));
    }
    validate_labels(meta.labels.as_ref(), &child(path, "labels"), out);
    validate_annotations(meta.annotations.as_ref(), &child(path, "annotations"), out);
}

/// `ValidateLabels`: errors on the map itself, keys and values as the value.
pub(crate) fn validate_labels(
    labels: Option<&BTreeMap<String, String>>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    for (key, value) in labels.into_iter().flatten() {
        for msg in is_qualified_name(key) {
            out.push(invalid(path, s(key), msg));
        }
        for msg in is_label_value(value) {
            out.push(invalid(path, s(value), msg));
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names whatever their case; keys and values
/// together at most 256 KiB.
pub(crate) fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(annotations) = annotations else { return };
    for key in annotations.keys() {
        for msg in is_qualified_name(&key.to_lowercase()) {
            out.push(invalid(path, s(key), msg));
        }
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        out.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(meta: &ObjectMeta) -> Vec<String> {
        let mut out = Vec::new();
        validate_object_meta(meta, &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_meta_passes() {
        let meta = ObjectMeta {
            generate_name: Some("web-".into()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/name".into(), "web".into())])),
            annotations: Some(BTreeMap::from([("Portcullis.dev/Port".into(), "any value".into())])),
            ..Default::default()
        };
        assert!(shown(&meta).is_empty());
    }

    #[test]
    fn names_labels_and_annotations() {
        let meta = ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "a b".into())])),
            annotations: Some(BTreeMap::from([
                ("a/b/c".into(), String::new()),
                ("big".into(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)),
            ])),
            ..Default::default()
        };
        assert_eq!(
            shown(&meta),
            [
                "metadata.name: Required value: name or generateName is required",
                r#"metadata.labels: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
                r#"metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#,
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ]
        );
    }
}
