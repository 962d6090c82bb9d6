//! Portcullis: a Kubernetes operator and per-pod sidecar proxy that gives workloads
//! correct, honest 5xx behaviour.
//!
//! - [`api`]: the custom resources, the contract with users.
//! - [`policy`]: a resource turned into what the sidecar enforces.
//! - [`config`]: the sidecar's config, from a file (and later from the controller).
//! - [`proxy`]: the data plane.
//! - [`sidecar`]: the data plane, config and admin server wired together.
//! - [`memory`]: memory a burst freed, given back to the system once demand falls.
//! - [`cpus`]: how many CPUs the process may use (affinity, cgroup quota).
//! - [`admin`]: health, readiness, metrics and config on the admin port.
//! - [`telemetry`]: logs and metrics.
//! - [`inject`]: the sidecar injected into pods (webhook and `portcullis inject`).
//! - [`tls`]: the controller's CA and serving certificate, and TLS for its listeners.
//! - [`plugin`]: `kubectl portcullis`: each sidecar as it and the controller see it.
//! - [`apiserver`]: the API server's own Pod validation and its 422 answer, for patches.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod apiserver;
pub mod cmd;
pub mod config;
pub mod controller;
pub mod cpus;
pub mod inject;
pub mod maintenance;
pub mod memory;
pub mod overload;
pub mod plugin;
pub mod policy;
pub mod proxy;
pub mod schedule;
pub mod sidecar;
pub mod telemetry;
pub mod tls;
