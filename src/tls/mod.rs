//! TLS for the controller's listeners (config streams and the injection webhook) and for
//! the sidecar's side of the stream.
//!
//! - [`issue`]: pure: a CA and serving certificates (rcgen), and what a certificate says.
//! - [`store`]: the certificate served now; handshakes ask it, so rotation needs no restart.
//! - [`self_issued`]: the default: the controller's own CA and serving certificate, kept in
//!   a Secret so that replicas agree, rotated well before expiry, and the webhook
//!   configuration's `caBundle` kept current.
//! - [`from_dir`]: certificates from a mounted Secret (cert-manager), re-read on change.
//! - [`client`]: the sidecar trusts exactly the CA it was injected with.
//! - [`serve`]: one accept loop, TLS or not, for the controller's HTTP listeners.

pub mod client;
mod error;
pub mod from_dir;
pub mod issue;
pub mod self_issued;
pub mod serve;
pub mod store;

pub use client::client_config;
pub use error::TlsError;
pub use store::CertStore;
