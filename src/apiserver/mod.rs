//! The Kubernetes API server's own validation of a Pod, for the fields the sidecar
//! injector writes or rewrites, and the 422 `Status` it answers with: so that a patch
//! the API server would refuse is caught (and explained in the API server's own words)
//! before the pod is admitted. OpenAPI schemas do not carry these rules; they are Go
//! code, read from `kubernetes/kubernetes` (the 1.33 line of
//! `pkg/apis/core/validation/validation.go` and `k8s.io/apimachinery`), never guessed.
//!
//! [`validate_pod`] validates as for a CREATE, on the pod as the API server sees it after
//! v1 defaulting (`pkg/apis/core/v1/defaults.go`): a field the defaults fill in cannot be
//! "Required" there, so it is not here either. Where a rule depends on a feature gate,
//! its default in 1.33-1.36 is taken and the code says which.
//!
//! - [`field`]: `field.Error`: types, value rendering, `Error()` and `ErrorBody()`.
//! - [`status`]: `apierrors.NewInvalid` as JSON.
//! - [`names`]: the string formats (DNS labels, qualified names, port names, ...).
//! - [`meta`]: name, labels, annotations.
//! - [`pod`], [`containers`], [`ports`], [`probes`], [`env`], [`volumes`], [`projected`],
//!   [`mounts`], [`paths`], [`resources`], [`security`]: the spec, part by part.
//! - [`go_quantity`]: quantities as Go reads and prints them.
//!
//! # Where Go is followed to the letter, oddities included
//!
//! - Port names are unique per container, not per pod; a probe's or hook's port given by
//!   name is checked for its form only, never looked up among the container's ports.
//! - A service account token's `path` errors are reported on `...projected.path`; its
//!   `audience` is not validated.
//! - An init container's host port clash always names `initContainers[0]`; a volume
//!   mount's subPath error names `volumeMounts.subPath` without an index.
//! - Error order is Go's, except inside maps (resources, labels, annotations), which Go
//!   walks in random order and this walks sorted by key.
//!
//! # Not covered
//!
//! Checked by Go for a pod, but not here:
//! - metadata: `ownerReferences`, `finalizers`, `managedFields`; the pod-specific
//!   annotations (mirror pod, tolerations, deletion cost, seccomp and AppArmor annotations
//!   and their agreement with the fields).
//! - spec: `resourceClaims` and container `resources.claims`; pod-level `resources`
//!   (PodLevelResources); `resizePolicy`; `volumeDevices` (beyond their overlap with
//!   mounts); `affinity`, `tolerations`, `topologySpreadConstraints`, `dnsConfig`,
//!   `hostAliases`, `readinessGates`, `schedulingGates` contents, `preemptionPolicy`,
//!   `overhead`, `os` and the Windows rules (`windowsOptions`, host process pods);
//!   `sysctls`; `seLinuxChangePolicy`; `stopSignal`; ephemeral containers beyond
//!   "cannot be set on create".
//! - `privileged: true` under `--allow-privileged=false` (a cluster flag).
//! - volume sources other than emptyDir, hostPath, secret, configMap, downwardAPI,
//!   projected, persistentVolumeClaim and csi: only their count is checked; clusterTrustBundle
//!   projections are counted but not validated; `resourceFieldRef.divisor`; hugepage
//!   values that are not a multiple of the page size.
//! - quantities too large for 128-bit nano-units (Go keeps them as big decimals): skipped.
//! - the value in three messages that print an internal struct with `%#v` (see
//!   [`security`]): Go prints heap addresses there.
//! - 1.36 may word qualified-name (label key) errors differently (see [`names`]).

pub mod containers;
pub mod env;
pub mod field;
pub mod go_quantity;
pub mod meta;
pub mod mounts;
pub mod names;
pub mod paths;
pub mod pod;
#[cfg(test)]
mod pod_tests;
pub mod ports;
pub mod probes;
pub mod projected;
pub mod resources;
pub mod security;
pub mod status;
pub mod volume_files;
pub mod volumes;

pub use field::{BadValue, ErrorType, FieldError};
pub use pod::validate_pod;
pub use status::invalid_status;
