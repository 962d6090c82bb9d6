//! The sidecar container and its token volume, as injected into pods.
//!
//! A native sidecar (an init container with `restartPolicy: Always`, Kubernetes 1.29+): it
//! starts before the app containers and, thanks to its startup probe on `/readyz`, the app
//! starts only once the sidecar has its first config; it stops after them, and it does not
//! keep a Job from completing.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::app_protocol::AppProtocol;
use super::config::InjectConfig;
use super::names::{
    ADMIN_PORT_NAME, CA_ENV, SIDECAR_NAME, STOP_TOKEN_ENV, TOKEN_AUDIENCE, TOKEN_MOUNT_PATH,
    TOKEN_VOLUME,
};
use super::stop_token::StopToken;
use crate::api::Duration;

/// The non-root user and group of the image.
const RUN_AS: i64 = 65532;
/// Lifetime of the projected token; the kubelet renews it well before it runs out.
const TOKEN_SECONDS: i64 = 3600;

/// What varies from pod to pod.
pub struct Sidecar<'a> {
    pub config: &'a InjectConfig,
    pub image: &'a str,
    pub resources: ResourceRequirements,
    /// `--workers`, when the sidecar's CPU is known.
    pub workers: Option<u32>,
    /// The name of the sidecar's serving port: the app port's original name.
    pub port_name: Option<String>,
    /// The app's port, that the sidecar forwards to on 127.0.0.1.
    pub app_port: i32,
    /// What the sidecar speaks to the app.
    pub app_protocol: AppProtocol,
    /// The controller's CA bundle (PEM), the only roots the sidecar trusts.
    pub ca_pem: &'a str,
    /// How long the sidecar holds the app's stop once the pod is stopping.
    pub stop_delay: Duration,
    /// The secret the app's preStop call must show (see `stop_token`).
    pub stop_token: &'a StopToken,
}

impl Sidecar<'_> {
    pub fn container(&self) -> Container {
        let config = self.config;
        let admin_get = |path: &str| HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(config.admin_port.into()),
            ..HTTPGetAction::default()
        };
        let mut args: Vec<String> = [
            "proxy",
            "--listen",
            &format!("0.0.0.0:{}", config.proxy_port),
            "--upstream",
            &format!("127.0.0.1:{}", self.app_port),
            // Always written, the default too: the pod then says what its sidecar speaks,
            // whatever a later release's default.
            "--app-protocol",
            self.app_protocol.as_flag(),
            "--admin",
            &format!("0.0.0.0:{}", config.admin_port),
            "--controller",
            &config.controller_url,
            "--log-format",
            config.log_format.as_str(),
            "--stop-delay",
            &self.stop_delay.to_string(),
        ]
        .map(str::to_owned)
        .into();
        if let Some(workers) = self.workers {
            args.extend(["--workers".to_owned(), workers.to_string()]);
        }
        Container {
            name: SIDECAR_NAME.to_owned(),
            image: Some(self.image.to_owned()),
            image_pull_policy: Some(config.image_pull_policy.as_str().to_owned()),
            restart_policy: Some("Always".to_owned()),
            args: Some(args),
            env: Some(vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
                EnvVar {
                    name: CA_ENV.to_owned(),
                    value: Some(self.ca_pem.to_owned()),
                    ..EnvVar::default()
                },
                // A plain value: a Secret per pod would be created during admission, before
                // the pod has a uid to own it and take it away with it. Whoever may read
                // the pod may read the token.
                EnvVar {
                    name: STOP_TOKEN_ENV.to_owned(),
                    value: Some(self.stop_token.as_str().to_owned()),
                    ..EnvVar::default()
                },
            ]),
            ports: Some(vec![
                ContainerPort {
                    name: self.port_name.clone(),
                    container_port: config.proxy_port.into(),
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some(ADMIN_PORT_NAME.to_owned()),
                    container_port: config.admin_port.into(),
                    ..ContainerPort::default()
                },
            ]),
            resources: Some(self.resources.clone()),
            startup_probe: Some(Probe {
                http_get: Some(admin_get("/readyz")),
                period_seconds: Some(config.startup_probe.period_seconds),
                failure_threshold: Some(config.startup_probe.failure_threshold),
                ..Probe::default()
            }),
            readiness_probe: Some(Probe {
                http_get: Some(admin_get("/readyz")),
                period_seconds: Some(5),
                ..Probe::default()
            }),
            liveness_probe: Some(Probe { http_get: Some(admin_get("/livez")), ..Probe::default() }),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    ..Capabilities::default()
                }),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: TOKEN_VOLUME.to_owned(),
                mount_path: TOKEN_MOUNT_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }
    }
}

/// The projected ServiceAccount token the sidecar shows the controller: audience
/// `portcullis`, so that it is worth nothing to the API server or anyone else.
pub fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(TOKEN_AUDIENCE.to_owned()),
                    expiration_seconds: Some(TOKEN_SECONDS),
                    path: "token".to_owned(),
                }),
                ..VolumeProjection::default()
            }]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
