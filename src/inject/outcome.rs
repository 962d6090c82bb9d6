//! What the injector decided for one pod: injected (with the patch), skipped (with the
//! reason), or refused because the injected pod would not pass the API server's validation.

use std::fmt;

use json_patch::Patch;

use super::app_protocol::{AppProtocol, ProtocolSource};
use super::names::STOP_DELAY_ANNOTATION;
use super::pre_stop::PreStop;
use super::stop_delay::{DelaySource, StopDelay};
use crate::apiserver::FieldError;
use crate::telemetry::controller_metrics::injection_failure;

/// Why a pod was left alone; `as_str` is the `reason` label of
/// `portcullis_injections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    OptedOut,
    ExcludedNamespace,
    HostNetwork,
    AlreadyInjected,
    NoNamedPort,
    PortNotFound,
    AmbiguousPort,
    PortInUse,
    InvalidAnnotation,
    NotTcp,
    /// A Service port reaching the app's port has an `appProtocol` the sidecar cannot
    /// speak to the app (`https`, `kubernetes.io/wss`, `tcp`...).
    UnsupportedAppProtocol,
    /// Service ports reaching the app's port say HTTP/1.1 and HTTP/2.
    ConflictingAppProtocol,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::OptedOut => "opted_out",
            SkipReason::ExcludedNamespace => "excluded_namespace",
            SkipReason::HostNetwork => "host_network",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::NoNamedPort => "no_named_port",
            SkipReason::PortNotFound => "port_not_found",
            SkipReason::AmbiguousPort => "ambiguous_port",
            SkipReason::PortInUse => "port_in_use",
            SkipReason::InvalidAnnotation => "invalid_annotation",
            SkipReason::NotTcp => "not_tcp",
            SkipReason::UnsupportedAppProtocol => "unsupported_app_protocol",
            SkipReason::ConflictingAppProtocol => "conflicting_app_protocol",
        }
    }
}

/// A pod left alone, and the sentence that tells its owner why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: SkipReason,
    pub message: String,
}

pub(super) fn skip<T>(reason: SkipReason, message: impl Into<String>) -> Result<T, Skip> {
    Err(Skip { reason, message: message.into() })
}

/// What was injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The app container whose port the sidecar took over.
    pub container: String,
    pub app_port: i32,
    /// The name of the sidecar's serving port (the app port's original name).
    pub port: Option<String>,
    pub proxy_port: u16,
    /// What the sidecar speaks to the app, and why.
    pub app_protocol: AppProtocol,
    pub protocol_source: ProtocolSource,
    /// The app port's new name; None when it had no name.
    pub renamed_to: Option<String>,
    pub image: String,
    pub workers: Option<u32>,
    /// Probes and hooks moved from the port's name to its number, e.g. `livenessProbe`.
    pub rewritten: Vec<String>,
    /// The sidecar's `--stop-delay`, and where it comes from.
    pub stop_delay: StopDelay,
    /// What became of the app container's preStop hook.
    pub pre_stop: PreStop,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.as_deref().unwrap_or("(unnamed)");
        write!(
            f,
            "sidecar port {port} ({}) in front of container {} port {}",
            self.proxy_port, self.container, self.app_port
        )?;
        write!(f, ", app protocol {} ({})", self.app_protocol, self.protocol_source)?;
        if let Some(renamed) = &self.renamed_to {
            write!(f, ", app port renamed {renamed}")?;
        }
        if !self.rewritten.is_empty() {
            let verb = if self.rewritten.len() == 1 { "reaches" } else { "reach" };
            write!(f, ", {} now {verb} the app port by number", self.rewritten.join(", "))?;
        }
        let delay = self.stop_delay.delay;
        match self.pre_stop {
            PreStop::Added if self.stop_delay.source == DelaySource::Annotation => {
                write!(f, ", preStop added ({delay}, {STOP_DELAY_ANNOTATION})")?;
            }
            PreStop::Added => write!(f, ", preStop added ({delay})")?,
            PreStop::Kept => write!(
                f,
                ", the app's own preStop kept: the sidecar learns the pod is stopping only at \
                 its own SIGTERM"
            )?,
            PreStop::NoGracePeriod => write!(
                f,
                ", no preStop: terminationGracePeriodSeconds is not above 0, and the kubelet \
                 runs no preStop hook without a grace period"
            )?,
        }
        if let DelaySource::Lowered { configured, grace_seconds } = self.stop_delay.source {
            write!(
                f,
                ", stop delay {delay}: the configured {configured} lowered to half of \
                 terminationGracePeriodSeconds ({grace_seconds})"
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub patch: Patch,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Injected(Injection),
    Skipped(Skip),
    Invalid(InvalidMutation),
}

/// A mutation the injector planned but did not apply: the API server would refuse the
/// pod it makes (a bug in the injector, or a pod it does not expect). The pod is admitted
/// unchanged rather than blocking the user's rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidMutation {
    pub summary: Summary,
    /// What the API server would say about the injected pod, that it does not say about
    /// the pod as it came.
    pub errors: Vec<FieldError>,
}

impl InvalidMutation {
    /// The `reason` label of `portcullis_injections_total{result="failed"}`.
    pub const REASON: &'static str = injection_failure::INVALID_MUTATION;

    /// The API server's own words, field first, so the Warning Event names the field.
    pub fn message(&self) -> String {
        let errors: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        format!(
            "the sidecar was not added: the API server would refuse the injected pod: {}",
            errors.join("; ")
        )
    }
}
