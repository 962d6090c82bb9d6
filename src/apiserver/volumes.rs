//! Pod volumes (`ValidateVolumes`, `validateVolumeSource` and the sources the injector
//! meets: emptyDir, hostPath, secret, configMap, downwardAPI, persistentVolumeClaim, csi;
//! projected ones in [`super::projected`]), from `pkg/apis/core/validation/validation.go`.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{KeyToPath, Volume};

use super::field::{
    FieldError, child, duplicate, forbidden, index, invalid, not_supported, required, s, too_long,
};
use super::go_quantity::GoQuantity;
use super::names::{is_dns1123_label, is_dns1123_subdomain};
use super::paths::validate_no_backsteps;
use super::projected::validate_projected;
use super::volume_files::{validate_downward_file, validate_key_to_path, validate_mode};

/// Validates the volumes; returns those without errors, by name, which are the volumes
/// mounts may refer to (as Go's `vols` map).
pub(crate) fn validate_volumes<'a>(
    volumes: &'a [Volume],
    pod_name: &str,
    path: &str,
    out: &mut Vec<FieldError>,
) -> BTreeMap<&'a str, &'a Volume> {
    let created_claims: HashSet<String> = if pod_name.is_empty() {
        HashSet::new()
    } else {
        volumes
            .iter()
            .filter(|v| v.ephemeral.is_some())
            .map(|v| format!("{pod_name}-{}", v.name))
            .collect()
    };
    let mut valid = BTreeMap::new();
    let mut names: HashSet<&str> = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = index(path, i);
        let mut errs = Vec::new();
        validate_source(volume, &at, &mut errs);
        let name_path = child(&at, "name");
        if volume.name.is_empty() {
            errs.push(required(&name_path, ""));
        } else {
            for msg in is_dns1123_label(&volume.name) {
                errs.push(invalid(&name_path, s(&volume.name), msg));
            }
        }
        if names.contains(volume.name.as_str()) {
            errs.push(duplicate(&name_path, s(&volume.name)));
        }
        if errs.is_empty() {
            names.insert(&volume.name);
            valid.insert(volume.name.as_str(), volume);
        } else {
            out.append(&mut errs);
        }
        if let Some(claim) = &volume.persistent_volume_claim
            && created_claims.contains(&claim.claim_name)
        {
            out.push(invalid(
                &child(&child(&at, "persistentVolumeClaim"), "claimName"),
                s(&claim.claim_name),
                "must not reference a PVC that gets created for an ephemeral volume",
            ));
        }
    }
    valid
}

/// Which sources are set, in the order Go tests them, with the name its "more than 1"
/// error uses (Go misspells one of them).
fn sources(v: &Volume) -> Vec<&'static str> {
    let present = [
        (v.empty_dir.is_some(), "emptyDir"),
        (v.host_path.is_some(), "hostPath"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.secret.is_some(), "secret"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.flocker.is_some(), "flocker"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.rbd.is_some(), "rbd"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephFS"),
        (v.quobyte.is_some(), "quobyte"),
        (v.downward_api.is_some(), "downwarAPI"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.config_map.is_some(), "configMap"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.storageos.is_some(), "storageos"),
        (v.projected.is_some(), "projected"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.csi.is_some(), "csi"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.image.is_some(), "image"),
    ];
    present.into_iter().filter(|(set, _)| *set).map(|(_, name)| name).collect()
}

fn validate_source(v: &Volume, path: &str, out: &mut Vec<FieldError>) {
    // No source at all cannot reach validation: SetDefaults_Volume makes it an emptyDir.
    let present = sources(v);
    let Some(first) = present.first() else { return };
    for extra in &present[1..] {
        out.push(forbidden(&child(path, extra), "may not specify more than 1 volume type"));
    }
    match *first {
        "emptyDir" => {
            let limit = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref());
            if limit.and_then(|q| GoQuantity::decode(&q.0).ok()).is_some_and(|q| q.is_negative()) {
                let at = child(&child(path, "emptyDir"), "sizeLimit");
                out.push(forbidden(&at, "SizeLimit field must be a valid resource quantity"));
            }
        }
        "hostPath" => {
            let host = v.host_path.as_ref().expect("present");
            let at = child(path, "hostPath");
            if host.path.is_empty() {
                out.push(required(&child(&at, "path"), ""));
                return;
            }
            validate_no_backsteps(&host.path, &child(&at, "path"), out);
            let kind = host.type_.as_deref().unwrap_or("");
            let supported = [
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if !supported.contains(&kind) {
                out.push(not_supported(&child(&at, "type"), s(kind), &supported));
            }
        }
        "secret" => {
            let secret = v.secret.as_ref().expect("present");
            let at = child(path, "secret");
            if secret.secret_name.as_deref().unwrap_or("").is_empty() {
                out.push(required(&child(&at, "secretName"), ""));
            }
            validate_mode(secret.default_mode, &child(&at, "defaultMode"), out);
            validate_items(secret.items.as_deref().unwrap_or_default(), &at, out);
        }
        "configMap" => {
            let config_map = v.config_map.as_ref().expect("present");
            let at = child(path, "configMap");
            if config_map.name.is_empty() {
                out.push(required(&child(&at, "name"), ""));
            }
            validate_mode(config_map.default_mode, &child(&at, "defaultMode"), out);
            validate_items(config_map.items.as_deref().unwrap_or_default(), &at, out);
        }
        "downwarAPI" => {
            let downward = v.downward_api.as_ref().expect("present");
            let at = child(path, "downwardAPI");
            validate_mode(downward.default_mode, &child(&at, "defaultMode"), out);
            for file in downward.items.iter().flatten() {
                validate_downward_file(file, &at, out);
            }
        }
        "persistentVolumeClaim" => {
            let claim = v.persistent_volume_claim.as_ref().expect("present");
            if claim.claim_name.is_empty() {
                out.push(required(&child(&child(path, "persistentVolumeClaim"), "claimName"), ""));
            }
        }
        "projected" => validate_projected(
            v.projected.as_ref().expect("present"),
            &child(path, "projected"),
            out,
        ),
        "csi" => validate_csi(v, &child(path, "csi"), out),
        _ => {}
    }
}

fn validate_csi(v: &Volume, path: &str, out: &mut Vec<FieldError>) {
    let csi = v.csi.as_ref().expect("present");
    let driver_path = child(path, "driver");
    if csi.driver.is_empty() {
        out.push(required(&driver_path, ""));
    }
    if csi.driver.len() > 63 {
        out.push(too_long(&driver_path, 63));
    }
    for msg in is_dns1123_subdomain(&csi.driver.to_lowercase()) {
        out.push(invalid(&driver_path, s(&csi.driver), msg));
    }
    if let Some(secret) = &csi.node_publish_secret_ref {
        if secret.name.is_empty() {
            out.push(required(&child(&child(path, "nodePublishSecretRef"), "name"), ""));
        } else {
            // Go reports these on `csi.name`, not under nodePublishSecretRef.
            for msg in is_dns1123_subdomain(&secret.name) {
                out.push(invalid(&child(path, "name"), s(&secret.name), msg));
            }
        }
    }
}

fn validate_items(items: &[KeyToPath], path: &str, out: &mut Vec<FieldError>) {
    let items_path = child(path, "items");
    for (i, item) in items.iter().enumerate() {
        validate_key_to_path(item, &index(&items_path, i), out);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, SecretVolumeSource,
    };

    use super::*;

    fn shown(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn empty_dir(name: &str) -> Volume {
        Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }
    }

    #[test]
    fn names_sources_and_duplicates() {
        let mut two = empty_dir("two");
        two.config_map = Some(ConfigMapVolumeSource::default());
        let secret = SecretVolumeSource { default_mode: Some(0o1000), ..Default::default() };
        let odd = Volume { name: "odd".into(), secret: Some(secret), ..Default::default() };
        let volumes = [empty_dir("data"), empty_dir("data"), empty_dir("Data"), two, odd];
        let mut out = Vec::new();
        let valid = validate_volumes(&volumes, "web", "spec.volumes", &mut out);
        assert_eq!(valid.keys().copied().collect::<Vec<_>>(), ["data"]);
        assert_eq!(
            shown(out),
            [
                r#"spec.volumes[1].name: Duplicate value: "data""#,
                r#"spec.volumes[2].name: Invalid value: "Data": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
                "spec.volumes[3].configMap: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[4].secret.secretName: Required value",
                "spec.volumes[4].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
            ]
        );
    }

    #[test]
    fn a_volume_without_source_is_an_empty_dir() {
        let mut out = Vec::new();
        validate_volumes(&[Volume { name: "x".into(), ..Default::default() }], "", "v", &mut out);
        assert!(out.is_empty());
    }
}
