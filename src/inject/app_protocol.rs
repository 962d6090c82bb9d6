//! The protocol the sidecar speaks to the app (`--app-protocol`), from what the pod already
//! says: the `portcullis.dev/app-protocol` annotation, else the taken-over port's original
//! name, else HTTP/1.1.
//!
//! A container port has no `appProtocol` (only Service and EndpointSlice ports do, and the
//! injector sees no Service): the API server drops or refuses the field on a pod before
//! any webhook sees it, so the port's name is the only hint a pod carries.

use std::collections::BTreeMap;
use std::fmt;

use super::names::APP_PROTOCOL_ANNOTATION;

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
    /// The taken-over port's original name, e.g. `grpc`.
    PortName(String),
    /// Nothing said otherwise.
    Default,
}

impl fmt::Display for ProtocolSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolSource::Annotation => f.write_str("annotation"),
            ProtocolSource::PortName(name) => write!(f, "port name {name}"),
            ProtocolSource::Default => f.write_str("default"),
        }
    }
}

/// A `portcullis.dev/app-protocol` value that is neither `http1` nor `http2` (trimmed):
/// the pod is skipped rather than given a sidecar that cannot speak to its app.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{APP_PROTOCOL_ANNOTATION}: {0:?} is neither http1 nor http2")]
pub struct InvalidAppProtocol(pub String);

/// Port names that say HTTP/2 by themselves, alone or before a `-suffix` (`grpc-web`).
const HTTP2_NAMES: [&str; 3] = ["grpc", "h2c", "http2"];

/// The app's protocol for the port originally named `port_name` (None when unnamed).
pub(super) fn app_protocol(
    annotations: &BTreeMap<String, String>,
    port_name: Option<&str>,
) -> Result<(AppProtocol, ProtocolSource), InvalidAppProtocol> {
    if let Some(value) = annotations.get(APP_PROTOCOL_ANNOTATION).map(|v| v.trim()) {
        let Some(protocol) = AppProtocol::ALL.into_iter().find(|p| p.as_flag() == value) else {
            return Err(InvalidAppProtocol(value.to_owned()));
        };
        return Ok((protocol, ProtocolSource::Annotation));
    }
    match port_name {
        Some(name) if says_http2(name) => {
            Ok((AppProtocol::Http2, ProtocolSource::PortName(name.to_owned())))
        }
        _ => Ok((AppProtocol::Http1, ProtocolSource::Default)),
    }
}

fn says_http2(name: &str) -> bool {
    HTTP2_NAMES.iter().any(|prefix| match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.strip_prefix('-').is_some_and(|s| !s.is_empty()),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        [(APP_PROTOCOL_ANNOTATION.to_owned(), value.to_owned())].into()
    }

    #[test]
    fn port_names_that_say_http2() {
        for name in ["grpc", "h2c", "http2", "grpc-web", "grpc-api", "h2c-internal", "http2-x"] {
            assert_eq!(
                app_protocol(&BTreeMap::new(), Some(name)),
                Ok((AppProtocol::Http2, ProtocolSource::PortName(name.to_owned()))),
                "{name}"
            );
        }
    }

    #[test]
    fn other_port_names_and_none_are_http1() {
        // Near misses: a prefix without its dash, a dash with nothing after, or the word
        // elsewhere in the name.
        for name in ["http", "web", "grpcweb", "grpc-", "http2x", "h2", "my-grpc", "https", "GRPC"]
        {
            assert_eq!(
                app_protocol(&BTreeMap::new(), Some(name)),
                Ok((AppProtocol::Http1, ProtocolSource::Default)),
                "{name}"
            );
        }
        assert_eq!(
            app_protocol(&BTreeMap::new(), None),
            Ok((AppProtocol::Http1, ProtocolSource::Default))
        );
    }

    #[test]
    fn the_annotation_wins_over_the_name() {
        assert_eq!(
            app_protocol(&annotated(" http1\n"), Some("grpc")),
            Ok((AppProtocol::Http1, ProtocolSource::Annotation))
        );
        assert_eq!(
            app_protocol(&annotated("http2"), None),
            Ok((AppProtocol::Http2, ProtocolSource::Annotation))
        );
    }

    #[test]
    fn any_other_annotation_value_is_refused() {
        for (value, shown) in [
            ("grpc", "\"grpc\""),
            ("HTTP2", "\"HTTP2\""),
            ("h2c", "\"h2c\""),
            ("http/1.1", "\"http/1.1\""),
            ("", "\"\""),
            ("  ", "\"\""),
        ] {
            let error = app_protocol(&annotated(value), Some("grpc")).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("portcullis.dev/app-protocol: {shown} is neither http1 nor http2"),
                "{value:?}"
            );
        }
    }

    /// The API server keeps no `appProtocol` on a container port, and neither does
    /// k8s-openapi. Should a Kubernetes release add one, this fails: the port's own word
    /// should then come before its name.
    #[test]
    fn a_container_port_has_no_app_protocol() {
        use k8s_openapi::api::core::v1::ContainerPort;
        use serde_json::json;

        let declared =
            json!({"name": "http", "containerPort": 8080, "appProtocol": "kubernetes.io/h2c"});
        let port: ContainerPort = serde_json::from_value(declared).unwrap();
        assert_eq!(
            serde_json::to_value(port).unwrap(),
            json!({"name": "http", "containerPort": 8080})
        );
    }

    #[test]
    fn flags_and_sources_read_as_the_sidecar_and_the_summary_show_them() {
        assert_eq!(AppProtocol::ALL.map(AppProtocol::as_flag), ["http1", "http2"]);
        assert_eq!(AppProtocol::Http2.to_string(), "http2");
        assert_eq!(ProtocolSource::Annotation.to_string(), "annotation");
        assert_eq!(ProtocolSource::PortName("grpc-web".into()).to_string(), "port name grpc-web");
        assert_eq!(ProtocolSource::Default.to_string(), "default");
    }
}
