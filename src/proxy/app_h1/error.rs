//! How an exchange with the app fails.

use std::io;

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
    /// The failure kind the client is answered with: the same three outcomes as
    /// `pool::exchange_error` gives hyper's errors. `limit` is the route's header section
    /// limit.
    pub fn to_proxy_error(&self, limit: u32) -> ProxyError {
        match self {
            H1Error::HeadTooLarge => ProxyError::ResponseHeadersTooLarge { limit },
            H1Error::Malformed(_) => ProxyError::MalformedResponse,
            H1Error::Closed | H1Error::Io(_) => ProxyError::ConnectionTerminated,
        }
    }
}
