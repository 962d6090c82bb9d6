//! Projected volumes (`validateProjectedVolumeSource`, `validateProjectionSources` in
//! `pkg/apis/core/validation/validation.go`), service account tokens included.
//!
//! Go's quirks are kept: a token's `path` errors are reported on `projected.path`, not on
//! the source; duplicate paths on `projected` with the secret's or config map's *name* as
//! the value; token paths take no part in the duplicate check; and `audience` is not
//! validated at all.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::ProjectedVolumeSource;

use super::field::{BadValue, FieldError, child, forbidden, index, invalid, required, s};
use super::paths::validate_local_non_reserved_path;
use super::volume_files::{validate_downward_file, validate_key_to_path, validate_mode};

const DUPLICATE_PATHS: &str = "conflicting duplicate paths";

pub(crate) fn validate_projected(
    projected: &ProjectedVolumeSource,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    validate_mode(projected.default_mode, &child(path, "defaultMode"), out);
    let mut paths: HashSet<&str> = HashSet::new();
    let sources_path = child(path, "sources");
    for (i, source) in projected.sources.iter().flatten().enumerate() {
        let src_path = index(&sources_path, i);
        let mut count = 0;
        let key_sets = [
            ("secret", source.secret.as_ref().map(|p| (&p.name, &p.items))),
            ("configMap", source.config_map.as_ref().map(|p| (&p.name, &p.items))),
        ];
        for (kind, set) in key_sets {
            let Some((name, items)) = set else { continue };
            count += 1;
            let at = child(&src_path, kind);
            if name.is_empty() {
                out.push(required(&child(&at, "name"), ""));
            }
            let items_path = child(&at, "items");
            for (j, item) in items.iter().flatten().enumerate() {
                validate_key_to_path(item, &index(&items_path, j), out);
                if !item.path.is_empty() && !paths.insert(&item.path) {
                    out.push(invalid(path, s(name), DUPLICATE_PATHS));
                }
            }
        }
        if let Some(downward) = &source.downward_api {
            count += 1;
            let at = child(&src_path, "downwardAPI");
            for file in downward.items.iter().flatten() {
                validate_downward_file(file, &at, out);
                if !file.path.is_empty() && !paths.insert(&file.path) {
                    out.push(invalid(path, s(&file.path), DUPLICATE_PATHS));
                }
            }
        }
        if let Some(token) = &source.service_account_token {
            count += 1;
            let at = child(&child(&src_path, "serviceAccountToken"), "expirationSeconds");
            // SetDefaults_ServiceAccountTokenProjection: an hour when unset.
            let expiration = token.expiration_seconds.unwrap_or(3600);
            if expiration < 600 {
                let detail = "may not specify a duration less than 10 minutes";
                out.push(invalid(&at, BadValue::Int(expiration), detail));
            }
            if expiration > 1 << 32 {
                let detail = "may not specify a duration larger than 2^32 seconds";
                out.push(invalid(&at, BadValue::Int(expiration), detail));
            }
            // AllowNonLocalProjectedTokenPath is only granted to pods that already had one.
            if token.path.is_empty() {
                out.push(required(&child(path, "path"), ""));
            } else {
                validate_local_non_reserved_path(&token.path, &child(path, "path"), out);
            }
        }
        if source.cluster_trust_bundle.is_some() {
            count += 1;
        }
        if count > 1 {
            out.push(forbidden(&src_path, "may not specify more than 1 volume type per source"));
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, KeyToPath, SecretProjection, ServiceAccountTokenProjection,
        VolumeProjection,
    };

    use super::*;

    fn token(path: &str, expiration: Option<i64>) -> VolumeProjection {
        let token = ServiceAccountTokenProjection {
            path: path.into(),
            expiration_seconds: expiration,
            audience: Some("anything goes".into()),
        };
        VolumeProjection { service_account_token: Some(token), ..Default::default() }
    }

    fn shown(projected: &ProjectedVolumeSource) -> Vec<String> {
        let mut out = Vec::new();
        validate_projected(projected, "spec.volumes[0].projected", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_token_with_defaults_passes() {
        let projected = ProjectedVolumeSource {
            sources: Some(vec![token("token", None)]),
            ..Default::default()
        };
        assert!(shown(&projected).is_empty());
    }

    #[test]
    fn token_rules() {
        let sources = vec![token("", Some(599)), token("/abs", Some((1 << 32) + 1))];
        let projected = ProjectedVolumeSource { sources: Some(sources), ..Default::default() };
        assert_eq!(
            shown(&projected),
            [
                "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes",
                "spec.volumes[0].projected.path: Required value",
                "spec.volumes[0].projected.sources[1].serviceAccountToken.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds",
                r#"spec.volumes[0].projected.path: Invalid value: "/abs": must be a relative path"#,
            ]
        );
    }

    #[test]
    fn duplicate_paths_and_two_kinds_in_one_source() {
        let item = |p: &str| KeyToPath { key: "k".into(), path: p.into(), mode: None };
        let secret = SecretProjection {
            name: "s".into(),
            items: Some(vec![item("ca.crt")]),
            ..Default::default()
        };
        let config_map = ConfigMapProjection {
            name: "c".into(),
            items: Some(vec![item("ca.crt")]),
            ..Default::default()
        };
        let mut both = token("token", None);
        both.secret = Some(SecretProjection { name: "t".into(), ..Default::default() });
        let sources = vec![
            VolumeProjection { secret: Some(secret), ..Default::default() },
            VolumeProjection { config_map: Some(config_map), ..Default::default() },
            both,
        ];
        let projected = ProjectedVolumeSource { sources: Some(sources), ..Default::default() };
        assert_eq!(
            shown(&projected),
            [
                r#"spec.volumes[0].projected: Invalid value: "c": conflicting duplicate paths"#,
                "spec.volumes[0].projected.sources[2]: Forbidden: may not specify more than 1 volume type per source",
            ]
        );
    }
}
