//! The sidecar's effective configuration, and where it comes from.
//!
//! In standalone mode it is read from a file of YAML documents, the same `UpstreamPolicy`
//! and `MaintenanceWindow` objects that users `kubectl apply`; `load` turns such a file
//! into a [`Config`], and `reload` keeps it current; `snapshot` is the value itself and the
//! channel that hands it to readers.

pub mod follow;
mod load;
mod reload;
mod snapshot;
pub mod wire;

pub use load::{LoadContext, LoadError, compile_window, parse};
pub use reload::{ReloadError, ReloadOutcome, Reloader};
pub use snapshot::{Config, ConfigRx, ConfigTx, Snapshot, channel, publish};
