//! Container resources (`validateResourceRequirements`, `validateContainerResourceName`,
//! `validateResourceName`, `ValidateResourceQuantityValue` in
//! `pkg/apis/core/validation/validation.go`; the name predicates of
//! `pkg/apis/core/helper/helpers.go`), on the requirements as Pod defaulting leaves them:
//! a limit without a request has become the request too (`SetDefaults_Pod`), and every
//! value is rounded up to milli-units (`SetDefaults_ResourceList`).
//!
//! Go walks these maps in random order; this walks them sorted by name.
//!
//! A quantity the API server cannot decode is refused before validation, with a 400
//! whose message carries the decoder's error. It is reported here as an Invalid field
//! error carrying that same decoder message, so that one list holds every problem.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::field::{BadValue, FieldError, child, forbidden, index, invalid, required, s};
use super::go_quantity::{DecodeError, GoQuantity};
use super::names::is_qualified_name;

const STANDARD: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];
const INTEGER: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

/// `validateContainerResourceName`; Go prints the name through its `String()` method.
fn validate_name(name: &str, path: &str, out: &mut Vec<FieldError>) {
    let value = || BadValue::Stringer(name.to_owned());
    let msgs = is_qualified_name(name);
    let single = !name.contains('/');
    if !msgs.is_empty() {
        out.extend(msgs.into_iter().map(|m| invalid(path, value(), m)));
    } else if single
        && !(STANDARD.contains(&name)
            || is_hugepages(name)
            || name.starts_with("requests.hugepages-"))
    {
        out.push(invalid(path, value(), "must be a standard resource type or fully qualified"));
    }
    if single {
        if !(matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepages(name)) {
            out.push(invalid(path, value(), "must be a standard resource for containers"));
        }
    } else if !is_native(name) && !is_extended(name) {
        out.push(invalid(path, value(), "doesn't follow extended resource name standard"));
    }
}

/// `ValidateResourceQuantityValue`.
fn validate_value(name: &str, q: &GoQuantity, path: &str, out: &mut Vec<FieldError>) {
    if q.is_negative() {
        out.push(invalid(path, s(&q.canonical()), "must be greater than or equal to 0"));
    }
    if (INTEGER.contains(&name) || is_extended(name)) && q.nanos % 1_000_000_000 != 0 {
        out.push(invalid(path, BadValue::Stringer(q.canonical()), "must be an integer"));
    }
}

fn decode(
    entries: Option<&BTreeMap<String, Quantity>>,
    path: &str,
    out: &mut Vec<FieldError>,
) -> BTreeMap<String, GoQuantity> {
    let mut decoded = BTreeMap::new();
    for (name, quantity) in entries.into_iter().flatten() {
        match GoQuantity::decode(&quantity.0) {
            Ok(q) => {
                decoded.insert(name.clone(), q);
            }
            // Beyond i128 nanos Go still decodes: stay silent rather than guess.
            Err(DecodeError::OutOfRange) => {}
            Err(err) => out.push(invalid(&index(path, name), s(&quantity.0), err.to_string())),
        }
    }
    decoded
}

pub(crate) fn validate_resources(
    resources: Option<&ResourceRequirements>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(resources) = resources else { return };
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let limits = decode(resources.limits.as_ref(), &lim_path, out);
    let mut requests = decode(resources.requests.as_ref(), &req_path, out);
    for (name, limit) in &limits {
        requests.entry(name.clone()).or_insert_with(|| limit.clone());
    }
    let compute = |name: &str| matches!(name, "cpu" | "memory");
    for (name, q) in &limits {
        let at = index(&lim_path, name);
        validate_name(name, &at, out);
        validate_value(name, q, &at, out);
    }
    for (name, q) in &requests {
        let at = index(&req_path, name);
        validate_name(name, &at, out);
        validate_value(name, q, &at, out);
        match limits.get(name) {
            Some(limit) if q.nanos != limit.nanos && !overcommit_allowed(name) => {
                let detail = format!("must be equal to {name} limit of {}", limit.canonical());
                out.push(invalid(&req_path, s(&q.canonical()), detail));
            }
            Some(limit) if q.nanos > limit.nanos => {
                let detail =
                    format!("must be less than or equal to {name} limit of {}", limit.canonical());
                out.push(invalid(&req_path, s(&q.canonical()), detail));
            }
            Some(_) => {}
            None if !overcommit_allowed(name) => {
                out.push(required(&lim_path, "Limit must be set for non overcommitable resources"));
            }
            None => {}
        }
    }
    let hugepages = limits.keys().chain(requests.keys()).any(|n| is_hugepages(n));
    let cpu_or_memory = limits.keys().chain(requests.keys()).any(|n| compute(n));
    if hugepages && !cpu_or_memory {
        out.push(forbidden(path, "HugePages require cpu or memory"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirements(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> ResourceRequirements {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
            })
        };
        ResourceRequirements { limits: map(limits), requests: map(requests), ..Default::default() }
    }

    fn shown(r: &ResourceRequirements) -> Vec<String> {
        let mut out = Vec::new();
        validate_resources(Some(r), "spec.containers[0].resources", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_requirements_pass() {
        let r = requirements(&[("cpu", "1"), ("memory", "128Mi")], &[("cpu", "500m")]);
        assert!(shown(&r).is_empty());
        let r = requirements(&[("example.com/gpu", "1")], &[]);
        assert!(shown(&r).is_empty());
    }

    #[test]
    fn request_above_limit() {
        let r = requirements(&[("cpu", "500m")], &[("cpu", "1.5")]);
        assert_eq!(
            shown(&r),
            [
                r#"spec.containers[0].resources.requests: Invalid value: "1500m": must be less than or equal to cpu limit of 500m"#
            ]
        );
    }

    #[test]
    fn names_signs_integers_and_decoding() {
        let r = requirements(
            &[("cpus", "1"), ("example.com/gpu", "500m")],
            &[("memory", "-1Mi"), ("example.com/fpga", "1"), ("cpu", "lots")],
        );
        assert_eq!(
            shown(&r),
            [
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
                "spec.containers[0].resources.limits[cpus]: Invalid value: cpus: must be a standard resource type or fully qualified",
                "spec.containers[0].resources.limits[cpus]: Invalid value: cpus: must be a standard resource for containers",
                "spec.containers[0].resources.limits[example.com/gpu]: Invalid value: 500m: must be an integer",
                "spec.containers[0].resources.requests[cpus]: Invalid value: cpus: must be a standard resource type or fully qualified",
                "spec.containers[0].resources.requests[cpus]: Invalid value: cpus: must be a standard resource for containers",
                "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
                "spec.containers[0].resources.requests[example.com/gpu]: Invalid value: 500m: must be an integer",
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "-1Mi": must be greater than or equal to 0"#,
            ]
        );
    }
}
