//! The sidecar's per-pod overrides (image, CPU and memory) from the pod's annotations,
//! checked here so that a value the API server would refuse leaves the pod unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::config::InjectConfig;
use super::names::{
    CPU_LIMIT_ANNOTATION, CPU_REQUEST_ANNOTATION, IMAGE_ANNOTATION, MEMORY_LIMIT_ANNOTATION,
    MEMORY_REQUEST_ANNOTATION,
};
use super::outcome::{Skip, SkipReason, skip};
use super::quantity::{Amount, workers_for_cpu};

/// The sidecar's image, resources and workers, after the pod's annotations.
pub(super) struct Settings {
    pub image: String,
    pub resources: ResourceRequirements,
    pub workers: Option<u32>,
}

pub(super) fn settings(
    annotations: &BTreeMap<String, String>,
    config: &InjectConfig,
) -> Result<Settings, Skip> {
    let image = match annotations.get(IMAGE_ANNOTATION).map(|v| v.trim()) {
        None => config.image.clone(),
        Some(image) if !image.is_empty() && !image.contains(char::is_whitespace) => {
            image.to_owned()
        }
        Some(image) => {
            return skip(
                SkipReason::InvalidAnnotation,
                format!("{IMAGE_ANNOTATION}: {image:?} is not an image reference"),
            );
        }
    };
    let mut resources = config.resources.clone();
    let overrides = [
        (CPU_REQUEST_ANNOTATION, false, "cpu"),
        (CPU_LIMIT_ANNOTATION, true, "cpu"),
        (MEMORY_REQUEST_ANNOTATION, false, "memory"),
        (MEMORY_LIMIT_ANNOTATION, true, "memory"),
    ];
    for (annotation, limit, resource) in overrides {
        let Some(value) = annotations.get(annotation).map(|v| v.trim()) else { continue };
        if let Err(error) = Amount::parse(value) {
            return skip(SkipReason::InvalidAnnotation, format!("{annotation}: {error}"));
        }
        let map = if limit { &mut resources.limits } else { &mut resources.requests };
        map.get_or_insert_default().insert(resource.to_owned(), Quantity(value.to_owned()));
    }
    let amount = |map: &Option<BTreeMap<String, Quantity>>, resource: &str| {
        map.as_ref()?.get(resource).and_then(|q| Amount::parse(&q.0).ok())
    };
    for (resource, request_annotation, limit_annotation) in [
        ("cpu", CPU_REQUEST_ANNOTATION, CPU_LIMIT_ANNOTATION),
        ("memory", MEMORY_REQUEST_ANNOTATION, MEMORY_LIMIT_ANNOTATION),
    ] {
        let request = amount(&resources.requests, resource);
        let limit = amount(&resources.limits, resource);
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            let shown = |map: &Option<BTreeMap<String, Quantity>>| {
                map.as_ref().map_or(String::new(), |m| m[resource].0.clone())
            };
            return skip(
                SkipReason::InvalidAnnotation,
                format!(
                    "the sidecar's {resource} request {} exceeds its limit {} ({request_annotation}, \
                     {limit_annotation})",
                    shown(&resources.requests),
                    shown(&resources.limits)
                ),
            );
        }
    }
    let cpu = amount(&resources.limits, "cpu").or_else(|| amount(&resources.requests, "cpu"));
    Ok(Settings { image, resources, workers: cpu.map(workers_for_cpu) })
}
