//! The files a volume writes into a container (`KeyToPath` items, downward API files) and
//! their modes: what secret, configMap, downwardAPI and projected volumes share, from
//! `pkg/apis/core/validation/validation.go`.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath};

use super::env::{validate_field_selector, validate_resource_selector};
use super::field::{BadValue, FieldError, child, invalid, required, s};
use super::paths::validate_local_non_reserved_path;

pub(crate) const FILE_MODE_ERROR: &str =
    "must be a number between 0 and 0777 (octal), both inclusive";

/// The fields a downward API volume file may take, sorted as `sets.List` prints them.
pub(crate) const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// A file mode: `defaultMode` after defaulting (0644), or an item's `mode`.
pub(crate) fn validate_mode(mode: Option<i32>, path: &str, out: &mut Vec<FieldError>) {
    if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
        out.push(invalid(path, BadValue::Int(i64::from(mode)), FILE_MODE_ERROR));
    }
}

/// `validateKeyToPath`.
pub(crate) fn validate_key_to_path(item: &KeyToPath, path: &str, out: &mut Vec<FieldError>) {
    if item.key.is_empty() {
        out.push(required(&child(path, "key"), ""));
    }
    if item.path.is_empty() {
        out.push(required(&child(path, "path"), ""));
    }
    validate_local_non_reserved_path(&item.path, &child(path, "path"), out);
    validate_mode(item.mode, &child(path, "mode"), out);
}

/// `validateDownwardAPIVolumeFile`: Go reports on the volume (or source) path, not on
/// the item's index.
pub(crate) fn validate_downward_file(
    file: &DownwardAPIVolumeFile,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    if file.path.is_empty() {
        out.push(required(&child(path, "path"), ""));
    }
    validate_local_non_reserved_path(&file.path, &child(path, "path"), out);
    if let Some(field_ref) = &file.field_ref {
        validate_field_selector(field_ref, VOLUME_FIELD_PATHS, &child(path, "fieldRef"), out);
        if file.resource_field_ref.is_some() {
            let detail = "fieldRef and resourceFieldRef can not be specified simultaneously";
            out.push(invalid(path, s("resource"), detail));
        }
    } else if let Some(resource_ref) = &file.resource_field_ref {
        let at = child(path, "resourceFieldRef");
        validate_resource_selector(resource_ref, true, &at, out);
    } else {
        out.push(required(path, "one of fieldRef and resourceFieldRef is required"));
    }
    validate_mode(file.mode, &child(path, "mode"), out);
}
