//! The protocol the sidecar speaks to the app (`--app-protocol`), from what is already
//! said about the port it takes over, in order:
//!
//! 1. the pod's `portcullis.dev/app-protocol` annotation (when set, nothing else counts,
//!    which makes it the way out of the two skips below);
//! 2. the `appProtocol` of the Service ports that send traffic to the port
//!    ([`super::service_ports`]);
//! 3. the port's original name;
//! 4. else HTTP/1.1.
//!
//! A container port has no `appProtocol` of its own (the API server drops it from a pod
//! before any webhook sees it): only Service and EndpointSlice ports carry one. So the
//! injector reads the Services of the pod's namespace: the webhook from the controller's
//! cache, `portcullis inject` from the Service documents of its input. A Service created
//! after its pods, or not yet in the cache (the controller just started), is not seen by
//! them; the annotation is the sure way.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::names::APP_PROTOCOL_ANNOTATION;
use super::service_ports::{Reaching, Target, reaching};

/// What the sidecar speaks to the app. Its own type, not the proxy's: the injector does
/// not depend on the data plane; tests/inject.rs checks that both take the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): gRPC apps, and others that serve HTTP/2 in clear.
    Http2,
}

impl AppProtocol {
    /// Every value, for the tests that check the sidecar accepts each.
    pub const ALL: [AppProtocol; 2] = [AppProtocol::Http1, AppProtocol::Http2];

    /// The value of the sidecar's `--app-protocol`, and of the annotation.
    pub fn as_flag(self) -> &'static str {
        match self {
            AppProtocol::Http1 => "http1",
            AppProtocol::Http2 => "http2",
        }
    }
}

impl fmt::Display for AppProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_flag())
    }
}

/// Why the sidecar speaks that protocol to the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolSource {
    /// The pod's `portcullis.dev/app-protocol` annotation.
    Annotation,
    /// The `appProtocol` of a Service port that sends traffic to the taken-over port (the
    /// first by Service name, when several agree).
    Service {
        service: String,
        /// The Service port's name, or its number when it has none.
        port: String,
        app_protocol: String,
    },
    /// The taken-over port's original name, e.g. `grpc`.
    PortName(String),
    /// Nothing said otherwise.
    Default,
}

impl fmt::Display for ProtocolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolSource::Annotation => f.write_str("annotation"),
            ProtocolSource::Service { service, port, app_protocol } => {
                write!(f, "Service {service} port {port} appProtocol {app_protocol}")
            }
            ProtocolSource::PortName(name) => write!(f, "port name {name}"),
            ProtocolSource::Default => f.write_str("default"),
        }
    }
}

/// A Service port's word on the protocol: `Service web port grpc has appProtocol "h2c"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    /// `Service web port grpc`.
    pub port: String,
    pub value: String,
}

impl fmt::Display for Said {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has appProtocol {:?}", self.port, self.value)
    }
}

/// Why the app's protocol cannot be told: the pod is skipped rather than given a sidecar
/// that cannot speak to its app.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `portcullis.dev/app-protocol` is neither `http1` nor `http2` (trimmed).
    #[error("{APP_PROTOCOL_ANNOTATION}: {0:?} is neither http1 nor http2")]
    InvalidAnnotation(String),
    /// A Service port says a protocol that is neither HTTP/1.1 nor cleartext HTTP/2.
    #[error(
        "{0}, which is neither HTTP/1.1 nor cleartext HTTP/2, the protocols the sidecar \
         speaks to the app; set the annotation {APP_PROTOCOL_ANNOTATION} to http1 or http2 \
         to inject the pod anyway"
    )]
    Unsupported(Said),
    /// Two Service ports say different protocols.
    #[error(
        "{first} ({first_protocol}) but {second} ({second_protocol}); set the annotation \
         {APP_PROTOCOL_ANNOTATION} to http1 or http2 to inject the pod anyway"
    )]
    Conflicting {
        first: Said,
        first_protocol: AppProtocol,
        second: Said,
        second_protocol: AppProtocol,
    },
}

/// Port names that say HTTP/2 by themselves, alone or before a `-suffix` (`grpc-web`).
const HTTP2_NAMES: [&str; 3] = ["grpc", "h2c", "http2"];

/// Service `appProtocol` values, compared ASCII-case-insensitively: the Kubernetes ones
/// (`kubernetes.io/h2c`, `kubernetes.io/ws`) and the IANA-style names people use.
const HTTP2_VALUES: [&str; 5] = ["kubernetes.io/h2c", "h2c", "http2", "grpc", "grpc-web"];
const HTTP1_VALUES: [&str; 3] = ["http", "http1", "kubernetes.io/ws"];

/// The app's protocol for the port `target` describes, given the Services of its namespace.
pub(super) fn app_protocol(
    annotations: &BTreeMap<String, String>,
    target: &Target<'_>,
    services: &[Arc<Service>],
) -> Result<(AppProtocol, ProtocolSource), ProtocolError> {
    if let Some(value) = annotations.get(APP_PROTOCOL_ANNOTATION).map(|v| v.trim()) {
        let Some(protocol) = AppProtocol::ALL.into_iter().find(|p| p.as_flag() == value) else {
            return Err(ProtocolError::InvalidAnnotation(value.to_owned()));
        };
        return Ok((protocol, ProtocolSource::Annotation));
    }
    if let Some(said) = said_by_services(target, services)? {
        return Ok(said);
    }
    match target.name {
        Some(name) if says_http2(name) => {
            Ok((AppProtocol::Http2, ProtocolSource::PortName(name.to_owned())))
        }
        _ => Ok((AppProtocol::Http1, ProtocolSource::Default)),
    }
}

/// What the Service ports that reach the target say, when any has an `appProtocol`: one
/// protocol, else the first port (in [`reaching`]'s order) that says one the sidecar does
/// not speak, or the first two that disagree. Every port is read, so that a value the
/// sidecar cannot speak skips the pod even after ports that agree.
fn said_by_services(
    target: &Target<'_>,
    services: &[Arc<Service>],
) -> Result<Option<(AppProtocol, ProtocolSource)>, ProtocolError> {
    let mut agreed: Option<(AppProtocol, Reaching<'_>, &str)> = None;
    for found in reaching(target, services) {
        let Some(value) = found.port.app_protocol.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        let said = || Said { port: found.to_string(), value: value.to_owned() };
        let Some(protocol) = from_app_protocol(value) else {
            return Err(ProtocolError::Unsupported(said()));
        };
        match agreed {
            None => agreed = Some((protocol, found, value)),
            Some((first_protocol, first, first_value)) if first_protocol != protocol => {
                return Err(ProtocolError::Conflicting {
                    first: Said { port: first.to_string(), value: first_value.to_owned() },
                    first_protocol,
                    second: said(),
                    second_protocol: protocol,
                });
            }
            Some(_) => {}
        }
    }
    Ok(agreed.map(|(protocol, found, value)| {
        let source = ProtocolSource::Service {
            service: found.service.to_owned(),
            port: found.port_label(),
            app_protocol: value.to_owned(),
        };
        (protocol, source)
    }))
}

fn from_app_protocol(value: &str) -> Option<AppProtocol> {
    let any = |values: &[&str]| values.iter().any(|v| v.eq_ignore_ascii_case(value));
    if any(&HTTP2_VALUES) {
        Some(AppProtocol::Http2)
    } else if any(&HTTP1_VALUES) {
        Some(AppProtocol::Http1)
    } else {
        None
    }
}

fn says_http2(name: &str) -> bool {
    HTTP2_NAMES.iter().any(|prefix| match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.strip_prefix('-').is_some_and(|s| !s.is_empty()),
        None => false,
    })
}

#[cfg(test)]
#[path = "app_protocol_tests.rs"]
mod tests;
