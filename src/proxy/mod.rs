//! The sidecar's data plane: it listens on the pod's serving port and forwards to the app
//! on localhost, answering for itself only when the app cannot (see `error` for the table).
//!
//! Read it bottom to top: each file knows only the files below it.
//!
//! - What every layer shares: `headers` (header rules, the proxy's name), `error` (the
//!   failure kinds, which the layers above produce from their own failures), `body` (body
//!   plumbing: stream errors, the idle and deadline watchdog, the request body), `duplex`
//!   (what a request's and its response's bodies tell each other), `deadline`, `latch`
//!   (a word given once: shut down, the pod is stopping), `tap`, `spare` (header maps
//!   and a room for small pieces, kept on each thread for the next request).
//! - `lifecycle`: whether the pod is stopping (its `preStop` hook called) or the sidecar
//!   draining (SIGTERM).
//! - The app side: `app_h1` (the HTTP/1.1 client, on the request's own task) and `pool`
//!   (connections to the app, hyper's client for the rest).
//! - The client side: `activity` (whether a connection is idle), `framing` (what a
//!   connection's reader, timer and request handler share), `scanner` (the first reader of
//!   a client's bytes), `client_io` (the reader that holds back what the scanner has not
//!   passed), `client_timer` (header and idle timeouts).
//! - Above the app side: `response_body` (the app's body on its way back, and what is done
//!   when it ends), `respond` (the sidecar's own responses), `upgrade` (tunnels).
//! - `forward`: one request, from the checks before it to the response's end.
//! - `h1_server`: the sidecar's own HTTP/1.1 server, for requests without a body; hyper's
//!   serves the rest.
//! - `parking`: idle keep-alive connections, held without a task each until their client
//!   sends; `open`: the count of open connections that the limit and the drain read.
//! - `client_conn`: one client connection, served by hyper in bursts, parked while it waits
//!   for its next request.
//! - `server`: connections, from accept to drain.

mod activity;
mod app_h1;
mod body;
mod client_conn;
mod client_io;
mod client_timer;
mod deadline;
mod duplex;
mod error;
mod forward;
mod framing;
mod h1_server;
mod headers;
mod latch;
mod lifecycle;
mod open;
mod parking;
mod pool;
mod respond;
mod response_body;
mod scanner;
mod server;
mod spare;
mod tap;
mod upgrade;

pub use client_timer::ClientTimeouts;
pub use error::ProxyError;
pub use forward::{Client, Observed, Proxy};
pub use framing::DEFAULT_MAX_HEAD_BYTES;
pub use lifecycle::Lifecycle;
pub use pool::{AppProtocol, Pool};
pub use response_body::ProxyBody;
pub use server::{ClientLimits, default_max_connections, raise_open_file_limit, serve};
pub use upgrade::AllowedUpgrades;
