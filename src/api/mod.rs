//! The custom resources, `portcullis.dev/v1alpha1`: the contract with users.

mod duration;
mod maintenance_window;
pub mod schema;
mod upstream_policy;

pub use duration::{Duration, PATTERN as DURATION_PATTERN, ParseDurationError};
pub use maintenance_window::*;
pub use upstream_policy::*;

use kube::CustomResourceExt;

#[cfg(test)]
mod cel_tests;

/// Both CustomResourceDefinitions as one YAML stream, as `portcullis crds` prints them and
/// as `crds/` holds them.
pub fn crds_yaml() -> String {
    let docs = [UpstreamPolicy::crd(), MaintenanceWindow::crd()];
    docs.iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}
