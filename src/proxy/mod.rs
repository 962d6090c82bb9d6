//! The sidecar's data plane: it listens on the pod's serving port and forwards to the app
//! on localhost, answering for itself only when the app cannot (see `error` for the table).

mod app_h1;
mod body;
mod client_io;
mod client_timer;
mod deadline;
mod error;
mod forward;
mod framing;
mod headers;
mod pool;
mod respond;
mod response_body;
mod scanner;
mod server;
mod tap;
mod upgrade;

pub use client_timer::ClientTimeouts;
pub use error::ProxyError;
pub use forward::{Client, Observed, Proxy};
pub use framing::DEFAULT_MAX_HEAD_BYTES;
pub use pool::{AppProtocol, Pool};
pub use response_body::ProxyBody;
pub use server::{ClientLimits, default_max_connections, raise_open_file_limit, serve};
pub use upgrade::AllowedUpgrades;
