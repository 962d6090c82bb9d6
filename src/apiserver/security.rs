//! Security contexts (`ValidateSecurityContext`, `validatePodSpecSecurityContext`,
//! `validateSeccompProfileField`, `ValidateAppArmorProfileField`, `ValidateProcMountType`,
//! `validateHostUsers` in `pkg/apis/core/validation/validation.go`; the ID ranges of
//! `IsValidUserID`/`IsValidGroupID` in `util/validation`).
//!
//! Three of Go's messages carry the whole internal struct as the value, printed with
//! `%#v`, pointers as heap addresses: no other program can print those bytes. Their
//! field, reason and detail match; the value reads `core.SecurityContext{…}` or
//! `core.SeccompProfile{…}`.

use k8s_openapi::api::core::v1::{AppArmorProfile, PodSpec, SeccompProfile, SecurityContext};

use super::field::{
    BadValue, FieldError, child, forbidden, index, invalid, not_supported, required, s, too_long,
};
use super::names::inclusive_range_error;
use super::paths::validate_local_descending_path;

const MAX_ID: i64 = 0xffff_ffff;

fn validate_id(value: Option<i64>, path: &str, out: &mut Vec<FieldError>) {
    if let Some(id) = value.filter(|id| !(0..=MAX_ID).contains(id)) {
        out.push(invalid(path, BadValue::Int(id), inclusive_range_error(0, MAX_ID)));
    }
}

/// `ValidateSecurityContext`. `privileged: true` is refused only where the API server
/// runs with `--allow-privileged=false`, which this cannot know; it is not checked.
pub(crate) fn validate_container_security(
    sc: Option<&SecurityContext>,
    host_users: bool,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(sc) = sc else { return };
    validate_id(sc.run_as_user, &child(path, "runAsUser"), out);
    validate_id(sc.run_as_group, &child(path, "runAsGroup"), out);
    if let Some(proc_mount) = sc.proc_mount.as_deref() {
        let at = child(path, "procMount");
        if !matches!(proc_mount, "Default" | "Unmasked") {
            out.push(not_supported(&at, s(proc_mount), &["Default", "Unmasked"]));
        }
        if host_users && proc_mount == "Unmasked" {
            out.push(invalid(&at, s(proc_mount), "`hostUsers` must be false to use `Unmasked`"));
        }
    }
    validate_seccomp(sc.seccomp_profile.as_ref(), &child(path, "seccompProfile"), out);
    if sc.allow_privilege_escalation == Some(false) {
        let whole = || BadValue::Stringer("core.SecurityContext{…}".to_owned());
        if sc.privileged == Some(true) {
            let detail = "cannot set `allowPrivilegeEscalation` to false and `privileged` to true";
            out.push(invalid(path, whole(), detail));
        }
        let adds = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        for _ in adds.into_iter().flatten().filter(|c| *c == "CAP_SYS_ADMIN") {
            let detail = "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN";
            out.push(invalid(path, whole(), detail));
        }
    }
    validate_app_armor(sc.app_armor_profile.as_ref(), &child(path, "appArmorProfile"), out);
}

/// `validatePodSpecSecurityContext` and `validateHostUsers` (the v1 host namespace
/// fields live in the internal pod security context).
pub(crate) fn validate_pod_security(spec: &PodSpec, out: &mut Vec<FieldError>) {
    let path = "spec.securityContext";
    if let Some(sc) = &spec.security_context {
        validate_id(sc.fs_group, &child(path, "fsGroup"), out);
        validate_id(sc.run_as_user, &child(path, "runAsUser"), out);
        validate_id(sc.run_as_group, &child(path, "runAsGroup"), out);
        let groups_path = child(path, "supplementalGroups");
        for (i, gid) in sc.supplemental_groups.iter().flatten().enumerate() {
            validate_id(Some(*gid), &index(&groups_path, i), out);
        }
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        let detail = "ShareProcessNamespace and HostPID cannot both be enabled";
        out.push(invalid(&child(path, "shareProcessNamespace"), BadValue::Bool(true), detail));
    }
    if let Some(sc) = &spec.security_context {
        if let Some(policy) = sc.fs_group_change_policy.as_deref()
            && !matches!(policy, "OnRootMismatch" | "Always")
        {
            let at = child(path, "fsGroupChangePolicy");
            out.push(not_supported(&at, s(policy), &["Always", "OnRootMismatch"]));
        }
        validate_seccomp(sc.seccomp_profile.as_ref(), &child(path, "seccompProfile"), out);
        validate_app_armor(sc.app_armor_profile.as_ref(), &child(path, "appArmorProfile"), out);
        if let Some(policy) = sc.supplemental_groups_policy.as_deref()
            && !matches!(policy, "Merge" | "Strict")
        {
            let at = child(path, "supplementalGroupsPolicy");
            out.push(not_supported(&at, s(policy), &["Merge", "Strict"]));
        }
    }
}

/// `validateHostUsers`: Go spells two of these paths with capitals.
pub(crate) fn validate_host_users(spec: &PodSpec, out: &mut Vec<FieldError>) {
    if spec.host_users != Some(false) {
        return;
    }
    let detail = "when `pod.Spec.HostUsers` is false";
    for (set, at) in [
        (spec.host_network, "spec.hostNetwork"),
        (spec.host_pid, "spec.HostPID"),
        (spec.host_ipc, "spec.HostIPC"),
    ] {
        if set == Some(true) {
            out.push(forbidden(at, detail));
        }
    }
}

fn validate_seccomp(profile: Option<&SeccompProfile>, path: &str, out: &mut Vec<FieldError>) {
    let Some(profile) = profile else { return };
    let type_path = child(path, "type");
    match profile.type_.as_str() {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => out.push(required(&type_path, "type is required when seccompProfile is set")),
        other => {
            let supported = ["Localhost", "RuntimeDefault", "Unconfined"];
            out.push(not_supported(&type_path, s(other), &supported));
        }
    }
    let local_path = child(path, "localhostProfile");
    match (profile.type_.as_str(), profile.localhost_profile.as_deref()) {
        ("Localhost", None) => {
            out.push(required(&local_path, "must be set when seccomp type is Localhost"));
        }
        ("Localhost", Some(local)) => validate_local_descending_path(local, &local_path, out),
        (_, Some(_)) => {
            let whole = BadValue::Stringer("core.SeccompProfile{…}".to_owned());
            out.push(invalid(&local_path, whole, "can only be set when seccomp type is Localhost"));
        }
        (_, None) => {}
    }
}

fn validate_app_armor(profile: Option<&AppArmorProfile>, path: &str, out: &mut Vec<FieldError>) {
    let Some(profile) = profile else { return };
    let local_path = child(path, "localhostProfile");
    match profile.type_.as_str() {
        "Localhost" => match profile.localhost_profile.as_deref() {
            None => out.push(required(&local_path, "must be set when AppArmor type is Localhost")),
            Some(local) => {
                if local.trim() != local {
                    out.push(invalid(&local_path, s(local), "must not be padded with whitespace"));
                } else if local.is_empty() {
                    out.push(required(&local_path, "must be set when AppArmor type is Localhost"));
                }
                if local.len() > 4095 {
                    out.push(too_long(&local_path, 4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(local) = profile.localhost_profile.as_deref() {
                let detail = "can only be set when AppArmor type is Localhost";
                out.push(invalid(&local_path, s(local), detail));
            }
        }
        "" => {
            out.push(required(&child(path, "type"), "type is required when appArmorProfile is set"))
        }
        other => {
            let supported = ["Localhost", "RuntimeDefault", "Unconfined"];
            out.push(not_supported(&child(path, "type"), s(other), &supported));
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Capabilities;

    use super::*;

    fn shown(out: Vec<FieldError>) -> Vec<String> {
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_restricted_context_passes() {
        let sc = SecurityContext {
            run_as_user: Some(65532),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_container_security(Some(&sc), true, "c.securityContext", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn ids_proc_mount_seccomp_and_escalation() {
        let sc = SecurityContext {
            run_as_user: Some(-1),
            run_as_group: Some(1 << 32),
            proc_mount: Some("Unmasked".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "localhost".into(),
                localhost_profile: None,
            }),
            allow_privilege_escalation: Some(false),
            privileged: Some(true),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_container_security(Some(&sc), true, "c.securityContext", &mut out);
        assert_eq!(
            shown(out),
            [
                "c.securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive",
                "c.securityContext.runAsGroup: Invalid value: 4294967296: must be between 0 and 4294967295, inclusive",
                r#"c.securityContext.procMount: Invalid value: "Unmasked": `hostUsers` must be false to use `Unmasked`"#,
                r#"c.securityContext.seccompProfile.type: Unsupported value: "localhost": supported values: "Localhost", "RuntimeDefault", "Unconfined""#,
                "c.securityContext: Invalid value: core.SecurityContext{…}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ]
        );
    }

    #[test]
    fn localhost_seccomp_needs_a_relative_profile() {
        let sc = SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        validate_container_security(Some(&sc), true, "c", &mut out);
        assert_eq!(
            shown(out),
            [
                "c.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost"
            ]
        );
    }

    #[test]
    fn host_users_false_forbids_host_namespaces() {
        let spec = PodSpec { host_users: Some(false), host_pid: Some(true), ..Default::default() };
        let mut out = Vec::new();
        validate_host_users(&spec, &mut out);
        assert_eq!(shown(out), ["spec.HostPID: Forbidden: when `pod.Spec.HostUsers` is false"]);
    }
}
