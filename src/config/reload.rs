//! Keeping the config current with its file.
//!
//! The file is polled rather than watched with inotify: a ConfigMap volume swaps a symlink
//! when it changes, which inotify on the file itself never sees, and a read every half
//! second costs nothing next to the traffic a sidecar carries.

use std::path::PathBuf;
use std::time::Duration;

use super::load::{LoadContext, LoadError, parse};
use super::snapshot::{ConfigTx, publish};

/// What one look at the file found.
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied { generation: u64 },
    Refused(ReloadError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Invalid { path: String, source: LoadError },
}

/// Reads a config file and publishes each valid change; an invalid one leaves the last good
/// config in force.
pub struct Reloader {
    path: PathBuf,
    secrets_dir: Option<PathBuf>,
    last: Option<Vec<u8>>,
    /// The last read error, so that a file that stays missing is reported once.
    last_error: Option<String>,
    tx: ConfigTx,
}

impl Reloader {
    pub fn new(path: PathBuf, secrets_dir: Option<PathBuf>, tx: ConfigTx) -> Self {
        Reloader { path, secrets_dir, last: None, last_error: None, tx }
    }

    /// Reads the file once; publishes it if it changed and is valid.
    pub async fn check(&mut self) -> ReloadOutcome {
        let path = self.path.display().to_string();
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(source) => {
                let error = ReloadError::Read { path, source };
                let message = error.to_string();
                if self.last_error.as_ref() == Some(&message) {
                    return ReloadOutcome::Unchanged;
                }
                self.last_error = Some(message);
                return ReloadOutcome::Refused(error);
            }
        };
        self.last_error = None;
        if self.last.as_deref() == Some(&bytes[..]) {
            return ReloadOutcome::Unchanged;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| LoadError::Yaml { doc: 1, source: serde::de::Error::custom(e) })
            .and_then(|text| {
                let ctx = LoadContext {
                    secrets_dir: self.secrets_dir.clone(),
                    now: jiff::Timestamp::now(),
                };
                parse(text, &ctx)
            });
        self.last = Some(bytes);
        match parsed {
            Ok(config) => ReloadOutcome::Applied { generation: publish(&self.tx, config) },
            Err(source) => ReloadOutcome::Refused(ReloadError::Invalid { path, source }),
        }
    }

    /// Checks the file every `interval` for as long as the process runs.
    pub async fn run(mut self, interval: Duration, mut on_outcome: impl FnMut(&ReloadOutcome)) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = self.check().await;
            on_outcome(&outcome);
        }
    }
}
