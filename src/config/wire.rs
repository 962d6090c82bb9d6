//! What the controller sends to one pod's sidecar: the policy and windows that select it,
//! with schedules rather than on/off flags (so windows start on time while the controller
//! is away) and bypass tokens as digests (so secrets never travel in clear).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::load::compile_window;
use super::snapshot::Config;
use crate::api::{MaintenanceWindowSpec, UpstreamPolicySpec};
use crate::maintenance::Bypass;
use crate::policy::{InvalidField, Policy};

/// A pod's config as one message of the config stream: the index version at which it
/// last changed, and the config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSnapshot {
    pub version: u64,
    pub config: PodConfig,
}

/// One line of the config stream (newline-delimited JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamMessage {
    Snapshot(Box<PodSnapshot>),
    /// Sent while nothing changes, so that a dead connection is noticed.
    Keepalive,
}

/// The header in which a sidecar names its version when it opens its stream.
pub const SIDECAR_VERSION_HEADER: &str = "portcullis-sidecar-version";

/// One line a sidecar sends back on its stream's request body (newline-delimited JSON):
/// what it did with each snapshot. Only a snapshot that is in force is `applied`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AckMessage {
    /// The snapshot of this version is in force.
    Applied { version: u64 },
    /// The snapshot was refused; the last good config stays in force.
    #[serde(rename_all = "camelCase")]
    Refused {
        /// `None` when the line could not be read far enough to know.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        reason: String,
        /// Fields this sidecar does not know: it is older than the controller.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unknown_fields: Vec<String>,
    },
}

/// One pod's effective config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodConfig {
    /// The UpstreamPolicy in force (the oldest of those that select the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<NamedPolicy>,
    /// Every valid MaintenanceWindow that selects the pod, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<NamedWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPolicy {
    /// `namespace/name`.
    pub name: String,
    pub spec: UpstreamPolicySpec,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedWindow {
    /// `namespace/name`.
    pub name: String,
    /// When the window was created: "active from creation" counts from here.
    pub created: Timestamp,
    /// The spec, with `bypass.secretRef` left out: see `bypass`.
    pub spec: MaintenanceWindowSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<BypassDigest>,
}

/// A bypass as the sidecar needs it: the header, and the SHA-256 of the token, hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BypassDigest {
    pub header: String,
    pub sha256: String,
}

/// Why a snapshot from the controller was refused (the last good config stays).
#[derive(Debug, thiserror::Error)]
#[error("{resource}: {field}: {message}")]
pub struct WireError {
    pub resource: String,
    pub field: String,
    pub message: String,
}

impl WireError {
    fn new(resource: &str, e: InvalidField) -> Self {
        WireError { resource: resource.to_owned(), field: e.field, message: e.message }
    }
}

/// A short digest of what is sent for one resource: equal digests, equal enforcement.
fn digest_of(value: &impl Serialize) -> String {
    let json = serde_json::to_vec(value).expect("a config serializes");
    Sha256::digest(&json)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl NamedPolicy {
    pub fn digest(&self) -> String {
        digest_of(self)
    }
}

impl NamedWindow {
    pub fn digest(&self) -> String {
        digest_of(self)
    }
}

impl PodConfig {
    /// Each resource of the config (`namespace/name`) with its digest.
    pub fn held(&self) -> Vec<(String, String)> {
        let policy = self.policy.iter().map(|p| (p.name.clone(), p.digest()));
        policy.chain(self.windows.iter().map(|w| (w.name.clone(), w.digest()))).collect()
    }

    /// The config the sidecar enforces, checked as a config file would be.
    pub fn to_config(&self) -> Result<Config, WireError> {
        let mut config = Config::default();
        if let Some(policy) = &self.policy {
            config.policy =
                Policy::from_spec(&policy.spec).map_err(|e| WireError::new(&policy.name, e))?;
            config.policy_name = Some(policy.name.clone());
        }
        for window in &self.windows {
            let bypass = window.bypass.as_ref().map(BypassDigest::to_bypass).transpose();
            let compiled = bypass.and_then(|bypass| {
                compile_window(window.name.clone(), &window.spec, window.created, bypass)
            });
            config.windows.push(compiled.map_err(|e| WireError::new(&window.name, e))?);
        }
        Ok(config)
    }
}

impl BypassDigest {
    pub fn to_bypass(&self) -> Result<Bypass, InvalidField> {
        let header = self.header.parse().map_err(|_| {
            InvalidField::new(
                "spec.bypass.header",
                format!("{:?} is not a header name", self.header),
            )
        })?;
        let mut digest = [0u8; 32];
        let hex = self.sha256.as_bytes();
        if hex.len() != 64 {
            return Err(InvalidField::new("bypass.sha256", "not a SHA-256 digest"));
        }
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).unwrap_or("");
            digest[i] = u8::from_str_radix(text, 16)
                .map_err(|_| InvalidField::new("bypass.sha256", "not a SHA-256 digest"))?;
        }
        Ok(Bypass::from_digest(header, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sidecar refuses fields it does not know, so a field left unset must be left out of
    /// the stream: a new optional field then costs older sidecars nothing until it is used.
    #[test]
    fn unset_fields_are_left_out_of_the_stream() {
        let policy: UpstreamPolicySpec = serde_yaml::from_str(
            "routes: [{match: {pathPrefix: /a}}]\nvalidation: {}\ntimeouts: {}\noverload: {queue: {}, adaptive: {}}\nerrors: {}",
        )
        .unwrap();
        let window: MaintenanceWindowSpec = serde_yaml::from_str("{}").unwrap();
        let config = PodConfig {
            policy: Some(NamedPolicy { name: "shop/p".into(), spec: policy }),
            windows: vec![NamedWindow {
                name: "shop/w".into(),
                created: Timestamp::UNIX_EPOCH,
                spec: window,
                bypass: None,
            }],
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("null"), "{json}");
    }
}
