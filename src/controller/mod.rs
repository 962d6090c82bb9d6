//! The controller: watches UpstreamPolicies, MaintenanceWindows, Pods and Secrets, and turns
//! them into each pod's sidecar config; and Services, for the injection webhook to read
//! their ports' `appProtocol`.
//!
//! - [`index`]: pure; resources in, per-pod config out (a `watch` per pod), statuses.
//! - [`auth`]: TokenReview: a sidecar's token is good for its own pod only.
//! - [`stream`]: the config stream each sidecar follows.
//!
//! Still to come (issue 4): the watchers feeding the index, status writes by the leader,
//! and CEL validation rules.

pub mod auth;
pub mod index;
pub mod peers;
pub mod programmed;
pub mod report;
pub mod run;
pub mod sidecars;
pub mod status;
pub mod stream;
pub mod watch;
