//! The config in force, numbered by generation, and the channel that hands it to readers.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::maintenance::Window;
use crate::policy::Policy;

/// Everything a sidecar enforces, as one immutable value swapped whole on reload.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// `namespace/name` of the UpstreamPolicy in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    pub policy: Policy,
    pub windows: Vec<Window>,
}

/// A config with the generation that numbers it; each accepted change gets the next number.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
}

/// Readers take a cheap clone of the current snapshot at the start of each request, so a
/// reload never changes the rules under a request already in flight.
pub type ConfigRx = watch::Receiver<Snapshot>;
pub type ConfigTx = watch::Sender<Snapshot>;

/// A channel holding generation 0: the defaults, before any config has been applied.
pub fn channel() -> (ConfigTx, ConfigRx) {
    watch::channel(Snapshot::default())
}

/// Publishes `config` as the next generation and returns its number.
pub fn publish(tx: &ConfigTx, config: Config) -> u64 {
    let mut generation = 0;
    tx.send_modify(|snap| {
        generation = snap.generation + 1;
        *snap = Snapshot { generation, config: Arc::new(config) };
    });
    generation
}
