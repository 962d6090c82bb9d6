//! The controller: watches UpstreamPolicies, MaintenanceWindows, Pods and Secrets, and turns
//! them into each pod's sidecar config.
//!
//! Built so far: the pure [`index`] (resources in, per-pod config out, statuses). Still to
//! come (issue 4): the kube-rs watchers feeding it, the config stream to sidecars with
//! TokenReview auth, status writes by the leader, and CEL validation rules.

pub mod index;
pub mod wire;
