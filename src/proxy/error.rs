//! Every failure the sidecar answers for itself, and the one table that maps each to a
//! status code and an RFC 9209 Proxy-Status error type.
//!
//! The kinds are at the bottom of the proxy: the layers above produce them from their own
//! failures (`app_h1` and `pool` from the app's, `framing` from the client's), so this
//! table names none of them.

use std::time::Duration;

use http::StatusCode;

use crate::maintenance::Closed;

/// A failure that the sidecar turns into a response of its own.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the app did not accept a connection within {}", fmt_duration(*.0))]
    ConnectTimeout(Duration),

    #[error("the app refused the connection")]
    ConnectRefused,

    #[error("the app could not be reached: {0}")]
    ConnectFailed(std::io::Error),

    #[error("the app sent no response headers within {}", fmt_duration(*.0))]
    ResponseHeadersTimeout(Duration),

    #[error("the request did not complete within {}", fmt_duration(*.0))]
    RequestTimeout(Duration),

    #[error("the app closed the connection before completing its response headers")]
    ConnectionTerminated,

    #[error("the app sent a malformed response")]
    MalformedResponse,

    #[error("the app's response header section exceeded {limit} bytes")]
    ResponseHeadersTooLarge { limit: u32 },

    #[error("the app answered with content type {found:?}, which this route does not allow")]
    ContentTypeMismatch { found: String },

    #[error("the request body stalled for {}", fmt_duration(*.0))]
    RequestBodyIdle(Duration),

    #[error("the request body could not be read from the client")]
    RequestBodyFailed,

    #[error("the request carries both Transfer-Encoding and Content-Length")]
    AmbiguousFraming,

    #[error("{}", .0.message.as_deref().unwrap_or("the app is down for maintenance"))]
    Maintenance(Closed),

    #[error("the app is at its limit of requests in flight and its queue is full")]
    Overloaded { retry_after: u64 },

    #[error("the app is at its limit of requests in flight and no turn came within {}", fmt_duration(*.waited))]
    QueueTimeout { retry_after: u64, waited: Duration },

    #[error("the app is starting and does not accept connections yet")]
    AppStarting,

    #[error("the pod is stopping and its app no longer answers")]
    AppStopping,

    #[error("the request head exceeded {limit} bytes")]
    RequestHeadTooLarge { limit: usize },

    #[error("the request head has more than {limit} header fields")]
    TooManyRequestHeaders { limit: usize },

    #[error("the request head is malformed: {0}")]
    MalformedRequest(&'static str),

    #[error("the request's Transfer-Encoding has a coding other than chunked")]
    UnsupportedTransferCoding,

    #[error("the request's Host is not usable: {0}")]
    InvalidHost(&'static str),

    #[error("the request head did not arrive whole within {}", fmt_duration(*.0))]
    ClientHeaderTimeout(Duration),

    #[error("the sidecar is at its limit of {limit} client connections")]
    ClientConnectionLimit { limit: usize, retry_after: u64 },

    #[error("the request asks to switch to {protocol:?}, a protocol the sidecar does not tunnel")]
    UpgradeNotAllowed { protocol: String },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            ConnectTimeout(_) | ResponseHeadersTimeout(_) | RequestTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ConnectRefused
            | ConnectFailed(_)
            | ConnectionTerminated
            | MalformedResponse
            | ResponseHeadersTooLarge { .. }
            | ContentTypeMismatch { .. } => StatusCode::BAD_GATEWAY,
            RequestBodyIdle(_) => StatusCode::REQUEST_TIMEOUT,
            Maintenance(_)
            | Overloaded { .. }
            | QueueTimeout { .. }
            | AppStarting
            | AppStopping => StatusCode::SERVICE_UNAVAILABLE,
            RequestBodyFailed | AmbiguousFraming | MalformedRequest(_) | InvalidHost(_) => {
                StatusCode::BAD_REQUEST
            }
            RequestHeadTooLarge { .. } | TooManyRequestHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ClientHeaderTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ClientConnectionLimit { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpgradeNotAllowed { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The RFC 9209 error type for the Proxy-Status header.
    pub fn proxy_status_error(&self) -> &'static str {
        use ProxyError::*;
        match self {
            ConnectTimeout(_) => "connection_timeout",
            ConnectRefused => "connection_refused",
            ConnectFailed(e) if e.kind() == std::io::ErrorKind::HostUnreachable => {
                "destination_ip_unroutable"
            }
            ConnectFailed(_) => "destination_unavailable",
            ResponseHeadersTimeout(_) | RequestTimeout(_) => "http_response_timeout",
            ConnectionTerminated => "connection_terminated",
            MalformedResponse | ContentTypeMismatch { .. } => "http_protocol_error",
            ResponseHeadersTooLarge { .. } => "http_response_header_section_size",
            RequestBodyIdle(_)
            | RequestBodyFailed
            | AmbiguousFraming
            | RequestHeadTooLarge { .. }
            | TooManyRequestHeaders { .. }
            | MalformedRequest(_)
            | InvalidHost(_)
            | UnsupportedTransferCoding
            | ClientHeaderTimeout(_) => "http_request_error",
            Maintenance(_) | AppStarting | AppStopping => "destination_unavailable",
            Overloaded { .. } | QueueTimeout { .. } | ClientConnectionLimit { .. } => {
                "connection_limit_reached"
            }
            // RFC 9209 §2.3.4: refused by the proxy's configuration, never forwarded.
            UpgradeNotAllowed { .. } => "http_request_denied",
        }
    }

    /// A short machine-readable reason, for Proxy-Status `details`, logs and metrics.
    pub fn reason(&self) -> &'static str {
        use ProxyError::*;
        match self {
            ConnectTimeout(_) => "connect_timeout",
            ConnectRefused => "connection_refused",
            ConnectFailed(_) => "connect_failed",
            ResponseHeadersTimeout(_) => "response_headers_timeout",
            RequestTimeout(_) => "request_timeout",
            ConnectionTerminated => "connection_terminated",
            MalformedResponse => "malformed_response",
            ResponseHeadersTooLarge { .. } => "response_headers_too_large",
            ContentTypeMismatch { .. } => "content_type_mismatch",
            RequestBodyIdle(_) => "request_body_idle",
            RequestBodyFailed => "request_body_failed",
            AmbiguousFraming => "ambiguous_framing",
            Maintenance(_) => "maintenance",
            Overloaded { .. } => "overloaded",
            QueueTimeout { .. } => "queue_timeout",
            AppStarting => "app_starting",
            AppStopping => "app_stopping",
            RequestHeadTooLarge { .. } => "request_head_too_large",
            TooManyRequestHeaders { .. } => "too_many_request_headers",
            MalformedRequest(_) => "malformed_request",
            InvalidHost(_) => "invalid_host",
            ClientHeaderTimeout(_) => "client_header_timeout",
            UnsupportedTransferCoding => "unsupported_transfer_coding",
            ClientConnectionLimit { .. } => "client_connection_limit",
            UpgradeNotAllowed { .. } => "upgrade_not_allowed",
        }
    }

    /// The gRPC status a gRPC client is answered with (in a trailers-only response), as
    /// gRPC's own HTTP-to-gRPC mapping has it, except that the timeouts say
    /// DEADLINE_EXCEEDED: the call took too long, the app is not broken.
    pub fn grpc_status(&self) -> GrpcStatus {
        use ProxyError::*;
        match self {
            ConnectTimeout(_) | ResponseHeadersTimeout(_) | RequestTimeout(_) => {
                GrpcStatus::DeadlineExceeded
            }
            RequestBodyIdle(_) | ClientHeaderTimeout(_) => GrpcStatus::DeadlineExceeded,
            RequestHeadTooLarge { .. } | TooManyRequestHeaders { .. } => {
                GrpcStatus::ResourceExhausted
            }
            UpgradeNotAllowed { .. } => GrpcStatus::PermissionDenied,
            UnsupportedTransferCoding => GrpcStatus::Unimplemented,
            RequestBodyFailed | AmbiguousFraming | MalformedRequest(_) | InvalidHost(_) => {
                GrpcStatus::Internal
            }
            ConnectRefused
            | ConnectFailed(_)
            | ConnectionTerminated
            | MalformedResponse
            | ResponseHeadersTooLarge { .. }
            | ContentTypeMismatch { .. }
            | Maintenance(_)
            | Overloaded { .. }
            | QueueTimeout { .. }
            | AppStarting
            | AppStopping
            | ClientConnectionLimit { .. } => GrpcStatus::Unavailable,
        }
    }

    /// Whole seconds after which a retry may succeed, for the 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::Maintenance(closed) => Some(closed.retry_after),
            ProxyError::Overloaded { retry_after }
            | ProxyError::QueueTimeout { retry_after, .. }
            | ProxyError::ClientConnectionLimit { retry_after, .. } => Some(*retry_after),
            // Another pod answers at once: the client need only come back through the Service.
            ProxyError::AppStarting | ProxyError::AppStopping => Some(1),
            _ => None,
        }
    }

    /// Whether retrying at once is known to be futile: meshes and clients are told so.
    pub fn retry_now_futile(&self) -> bool {
        matches!(
            self,
            ProxyError::Maintenance(_)
                | ProxyError::Overloaded { .. }
                | ProxyError::QueueTimeout { .. }
                | ProxyError::ClientConnectionLimit { .. }
        )
    }

    /// Whether the connection to the client must close after this response.
    pub fn closes_client_connection(&self) -> bool {
        use ProxyError::*;
        matches!(
            self,
            AmbiguousFraming
                | RequestBodyFailed
                | RequestHeadTooLarge { .. }
                | TooManyRequestHeaders { .. }
                | MalformedRequest(_)
                | UnsupportedTransferCoding
                | ClientHeaderTimeout(_)
                | ClientConnectionLimit { .. }
                // The pod is going: the client's next request belongs on another one.
                | AppStopping
                // What the client sent after the head may already be the refused protocol
                // (Envoy closes too, against smuggling in upgrade payloads).
                | UpgradeNotAllowed { .. }
        )
    }
}

/// The gRPC status codes the sidecar answers gRPC clients with (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcStatus {
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

impl GrpcStatus {
    /// The `grpc-status` value.
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// Durations in messages read as a person would write them.
fn fmt_duration(d: Duration) -> String {
    crate::api::Duration::from_millis(d.as_millis() as u64).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_proxy_status_follow_the_contract() {
        let cases = [
            (ProxyError::ConnectTimeout(Duration::from_secs(1)), 504, "connection_timeout"),
            (
                ProxyError::ResponseHeadersTimeout(Duration::from_secs(1)),
                504,
                "http_response_timeout",
            ),
            (ProxyError::RequestTimeout(Duration::from_secs(1)), 504, "http_response_timeout"),
            (ProxyError::ConnectRefused, 502, "connection_refused"),
            (ProxyError::ConnectionTerminated, 502, "connection_terminated"),
            (ProxyError::MalformedResponse, 502, "http_protocol_error"),
            (
                ProxyError::ResponseHeadersTooLarge { limit: 1 },
                502,
                "http_response_header_section_size",
            ),
            (ProxyError::ContentTypeMismatch { found: "x/y".into() }, 502, "http_protocol_error"),
            (ProxyError::AmbiguousFraming, 400, "http_request_error"),
            (ProxyError::RequestHeadTooLarge { limit: 1 }, 431, "http_request_error"),
            (ProxyError::TooManyRequestHeaders { limit: 1 }, 431, "http_request_error"),
            (ProxyError::MalformedRequest("bare LF"), 400, "http_request_error"),
            (ProxyError::InvalidHost("missing"), 400, "http_request_error"),
            (ProxyError::UnsupportedTransferCoding, 501, "http_request_error"),
            (ProxyError::ClientHeaderTimeout(Duration::from_secs(1)), 408, "http_request_error"),
            (
                ProxyError::ClientConnectionLimit { limit: 1, retry_after: 1 },
                503,
                "connection_limit_reached",
            ),
            (ProxyError::UpgradeNotAllowed { protocol: "foo".into() }, 403, "http_request_denied"),
            (ProxyError::AppStopping, 503, "destination_unavailable"),
        ];
        for (err, status, ps) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.proxy_status_error(), ps, "{err:?}");
        }
    }

    #[test]
    fn grpc_clients_get_deadline_exceeded_for_504s_and_unavailable_for_502s_and_503s() {
        let secs = Duration::from_secs(1);
        let cases = [
            (ProxyError::ConnectTimeout(secs), 4),
            (ProxyError::ResponseHeadersTimeout(secs), 4),
            (ProxyError::RequestTimeout(secs), 4),
            (ProxyError::RequestBodyIdle(secs), 4),
            (ProxyError::ConnectRefused, 14),
            (ProxyError::ConnectionTerminated, 14),
            (ProxyError::MalformedResponse, 14),
            (ProxyError::ContentTypeMismatch { found: "x/y".into() }, 14),
            (ProxyError::Overloaded { retry_after: 1 }, 14),
            (ProxyError::AppStarting, 14),
            (ProxyError::AppStopping, 14),
            (ProxyError::RequestHeadTooLarge { limit: 1 }, 8),
            (ProxyError::UpgradeNotAllowed { protocol: "foo".into() }, 7),
            (ProxyError::InvalidHost("missing"), 13),
        ];
        for (err, code) in cases {
            assert_eq!(err.grpc_status().code(), code, "{err:?}");
        }
    }

    #[test]
    fn messages_use_gateway_api_durations() {
        let err = ProxyError::ResponseHeadersTimeout(Duration::from_millis(1500));
        assert_eq!(err.to_string(), "the app sent no response headers within 1s500ms");
    }
}
