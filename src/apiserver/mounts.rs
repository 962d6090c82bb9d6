//! Volume mounts (`ValidateVolumeMounts`, `validateMountPropagation`,
//! `validateMountRecursiveReadOnly` in `pkg/apis/core/validation/validation.go`).
//!
//! A mount must name a volume that validated cleanly (Go's `vols` map); mount paths are
//! unique per container only. Go reports the subPath checks on `volumeMounts.subPath`,
//! without the mount's index, and so does this.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Volume};

use super::field::{
    FieldError, child, forbidden, index, invalid, not_found, not_supported, required, s,
};
use super::paths::validate_local_descending_path;

pub(crate) fn validate_volume_mounts(
    ctr: &Container,
    volumes: &BTreeMap<&str, &Volume>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let devices: Vec<(&str, &str)> = ctr
        .volume_devices
        .iter()
        .flatten()
        .map(|d| (d.name.as_str(), d.device_path.as_str()))
        .collect();
    let mut mount_paths: HashSet<&str> = HashSet::new();
    for (i, mount) in ctr.volume_mounts.iter().flatten().enumerate() {
        let at = index(path, i);
        let name_path = child(&at, "name");
        let mount_path = child(&at, "mountPath");
        if mount.name.is_empty() {
            out.push(required(&name_path, ""));
        }
        if !volumes.contains_key(mount.name.as_str()) {
            out.push(not_found(&name_path, s(&mount.name)));
        }
        if mount.mount_path.is_empty() {
            out.push(required(&mount_path, ""));
        }
        if !mount_paths.insert(&mount.mount_path) {
            out.push(invalid(&mount_path, s(&mount.mount_path), "must be unique"));
        }
        if devices.iter().any(|(name, _)| *name == mount.name) {
            out.push(invalid(
                &name_path,
                s(&mount.name),
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|(_, device)| *device == mount.mount_path) {
            let detail = "must not already exist as a path in volumeDevices";
            out.push(invalid(&mount_path, s(&mount.mount_path), detail));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or("");
        let sub_path_expr = mount.sub_path_expr.as_deref().unwrap_or("");
        if volumes.get(mount.name.as_str()).is_some_and(|v| v.image.is_some()) {
            for (field, value) in [("subPath", sub_path), ("subPathExpr", sub_path_expr)] {
                if !value.is_empty() {
                    out.push(invalid(
                        &child(&at, field),
                        s(value),
                        "not allowed in image volume sources",
                    ));
                }
            }
        }
        if !sub_path.is_empty() {
            validate_local_descending_path(sub_path, &child(path, "subPath"), out);
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                let detail = "subPathExpr and subPath are mutually exclusive";
                out.push(invalid(&child(&at, "subPathExpr"), s(sub_path_expr), detail));
            }
            validate_local_descending_path(sub_path_expr, &child(path, "subPathExpr"), out);
        }
        let propagation = mount.mount_propagation.as_deref();
        if let Some(mode) = propagation {
            let at = child(path, "mountPropagation");
            if !matches!(mode, "Bidirectional" | "HostToContainer" | "None") {
                let supported = ["Bidirectional", "HostToContainer", "None"];
                out.push(not_supported(&at, s(mode), &supported));
            }
            let privileged =
                ctr.security_context.as_ref().and_then(|sc| sc.privileged).unwrap_or(false);
            if mode == "Bidirectional" && !privileged {
                let detail =
                    "Bidirectional mount propagation is available only to privileged containers";
                out.push(forbidden(&at, detail));
            }
        }
        if let Some(rro) = mount.recursive_read_only.as_deref() {
            let at = child(path, "recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !mount.read_only.unwrap_or(false) {
                        out.push(forbidden(&at, "may only be specified when readOnly is true"));
                    }
                    if propagation.is_some_and(|p| p != "None") {
                        let detail =
                            "may only be specified when mountPropagation is None or not specified";
                        out.push(forbidden(&at, detail));
                    }
                }
                other => {
                    out.push(not_supported(&at, s(other), &["Disabled", "Enabled", "IfPossible"]))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, VolumeMount};

    use super::*;

    fn mount(name: &str, at: &str) -> VolumeMount {
        VolumeMount { name: name.into(), mount_path: at.into(), ..Default::default() }
    }

    #[test]
    fn mounts_refer_to_volumes_and_paths_are_unique() {
        let data = Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
        let volumes = BTreeMap::from([("data", &data)]);
        let mut sub = mount("data", "/c");
        sub.sub_path = Some("../up".into());
        let ctr = Container {
            name: "app".into(),
            volume_mounts: Some(vec![
                mount("data", "/a"),
                mount("tokn", "/a"),
                mount("data", ""),
                sub,
            ]),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_volume_mounts(&ctr, &volumes, "spec.containers[0].volumeMounts", &mut out);
        let shown: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"spec.containers[0].volumeMounts[1].name: Not found: "tokn""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique"#,
                "spec.containers[0].volumeMounts[2].mountPath: Required value",
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "../up": must not contain '..'"#,
            ]
        );
    }
}
