//! How an exchange with the app fails.

use std::io;
use std::time::Duration;

use crate::proxy::body::StreamError;
use crate::proxy::error::ProxyError;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("the response head is larger than allowed")]
    HeadTooLarge,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("the connection closed before the response was complete")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The client's request body failed before the app's response head.
    #[error("the request body failed: {0}")]
    RequestBody(StreamError),
}

/// A failed exchange.
#[derive(Debug)]
pub struct Failed {
    pub error: H1Error,
    /// Whether the app had sent any byte: if not, a request on a reused connection may be
    /// sent again on a fresh one.
    pub answered: bool,
}

impl H1Error {
    /// The failure kind the client is answered with: the same outcomes as
    /// `pool::exchange_error` and `StreamError::to_proxy_error` give hyper's errors. `limit`
    /// is the route's header section limit, `request_timeout` its whole-request timeout.
    pub fn to_proxy_error(&self, limit: u32, request_timeout: Option<Duration>) -> ProxyError {
        match self {
            H1Error::HeadTooLarge => ProxyError::ResponseHeadersTooLarge { limit },
            H1Error::Malformed(_) => ProxyError::MalformedResponse,
            H1Error::Closed | H1Error::Io(_) => ProxyError::ConnectionTerminated,
            H1Error::RequestBody(cause) => cause.to_proxy_error(request_timeout),
        }
    }
}
