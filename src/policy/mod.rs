//! The effective policy that the sidecar enforces: an `UpstreamPolicy` with defaults filled
//! in, checked once, and ready for the per-request route lookup.

mod content_type;
mod invalid;
pub mod route;

use std::time::Duration;

use serde::Serialize;

use crate::api::{self, ErrorFormat, UpstreamPolicySpec};

pub use content_type::MediaRange;
pub use invalid::InvalidField;
pub use route::RouteMatcher;

/// Built-in defaults, documented in `docs/reference.md`.
pub mod defaults {
    use std::time::Duration;
    pub const CONNECT: Duration = Duration::from_secs(1);
    pub const RESPONSE_HEADERS: Duration = Duration::from_secs(15);
    pub const IDLE: Duration = Duration::from_secs(300);
    pub const UPSTREAM_IDLE: Duration = Duration::from_secs(4);
    pub const MAX_RESPONSE_HEADER_BYTES: u32 = 65_536;
    pub const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(5);
    pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);
}

/// Timeouts with defaults applied; `None` means off.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(with = "opt_duration")]
    pub connect: Option<Duration>,
    #[serde(with = "opt_duration")]
    pub response_headers: Option<Duration>,
    #[serde(with = "opt_duration")]
    pub request: Option<Duration>,
    #[serde(with = "opt_duration")]
    pub idle: Option<Duration>,
}

/// Response checks with defaults applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub max_response_header_bytes: u32,
    /// Empty allows any type.
    pub content_types: Vec<MediaRange>,
}

/// Everything one request needs to know from the policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSettings {
    pub timeouts: Timeouts,
    pub validation: Validation,
}

/// Overload protection settings with defaults applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overload {
    pub max_in_flight: u32,
    pub queue_size: u32,
    #[serde(with = "opt_duration")]
    pub queue_timeout: Option<Duration>,
    pub adaptive: bool,
    pub min_limit: u32,
    pub max_limit: u32,
    #[serde(with = "opt_duration")]
    pub retry_after: Option<Duration>,
}

/// The effective policy of one sidecar.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The settings of requests that no route matches.
    pub default_route: RouteSettings,
    pub routes: Vec<(RouteMatcher, RouteSettings)>,
    #[serde(with = "opt_duration")]
    pub upstream_idle: Option<Duration>,
    pub overload: Overload,
    pub error_format: ErrorFormat,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_spec(&UpstreamPolicySpec::default()).expect("the defaults are valid")
    }
}

impl Policy {
    /// Checks a spec and fills in defaults. Errors name the offending field by its path.
    pub fn from_spec(spec: &UpstreamPolicySpec) -> Result<Self, InvalidField> {
        let base = api::Timeouts::default();
        let default_route = RouteSettings {
            timeouts: resolve_timeouts(&base, &spec.timeouts),
            validation: resolve_validation(
                &Validation {
                    max_response_header_bytes: defaults::MAX_RESPONSE_HEADER_BYTES,
                    content_types: Vec::new(),
                },
                &spec.validation,
                "spec.validation",
            )?,
        };
        let routes = spec
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let field = format!("spec.routes[{i}]");
                let matcher = RouteMatcher::from_spec(&route.matches, &format!("{field}.match"))?;
                let timeouts = route.timeouts.as_ref().map_or_else(
                    || default_route.timeouts.clone(),
                    |t| resolve_timeouts(&spec.timeouts, t),
                );
                let validation = match &route.validation {
                    Some(v) => resolve_validation(
                        &default_route.validation,
                        v,
                        &format!("{field}.validation"),
                    )?,
                    None => default_route.validation.clone(),
                };
                Ok((matcher, RouteSettings { timeouts, validation }))
            })
            .collect::<Result<Vec<_>, InvalidField>>()?;
        let overload = &spec.overload;
        let min_limit = overload.adaptive.min_limit.unwrap_or(1);
        let max_limit = overload.adaptive.max_limit.unwrap_or(1000);
        if overload.adaptive.enabled && (min_limit == 0 || min_limit > max_limit) {
            return Err(InvalidField::new(
                "spec.overload.adaptive.minLimit",
                "must be at least 1 and at most maxLimit",
            ));
        }
        if overload.queue.size > 0 && overload.max_in_flight == 0 && !overload.adaptive.enabled {
            return Err(InvalidField::new(
                "spec.overload.queue.size",
                "a queue needs maxInFlight or the adaptive limit",
            ));
        }
        Ok(Policy {
            default_route,
            routes,
            upstream_idle: off_if_zero(
                spec.timeouts.upstream_idle.map_or(defaults::UPSTREAM_IDLE, Into::into),
            ),
            overload: Overload {
                max_in_flight: overload.max_in_flight,
                queue_size: overload.queue.size,
                queue_timeout: off_if_zero(
                    overload.queue.timeout.map_or(defaults::QUEUE_TIMEOUT, Into::into),
                ),
                adaptive: overload.adaptive.enabled,
                min_limit,
                max_limit,
                retry_after: off_if_zero(
                    overload.retry_after.map_or(defaults::OVERLOAD_RETRY_AFTER, Into::into),
                ),
            },
            error_format: spec.errors.format,
        })
    }

    /// The settings for a request: the first route that matches, else the defaults.
    pub fn route(&self, method: &http::Method, path: &str) -> &RouteSettings {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(method, path))
            .map_or(&self.default_route, |(_, settings)| settings)
    }

    /// The largest response header section any route accepts: the connection-level limit.
    pub fn max_response_header_bytes(&self) -> u32 {
        self.routes
            .iter()
            .map(|(_, s)| s.validation.max_response_header_bytes)
            .chain([self.default_route.validation.max_response_header_bytes])
            .max()
            .unwrap_or(defaults::MAX_RESPONSE_HEADER_BYTES)
    }
}

fn off_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// A route's timeouts fall back field by field to the policy's, then to the defaults.
fn resolve_timeouts(policy: &api::Timeouts, own: &api::Timeouts) -> Timeouts {
    let pick =
        |own: Option<api::Duration>, policy: Option<api::Duration>, default: Option<Duration>| {
            match own.or(policy) {
                Some(d) => off_if_zero(d.into()),
                None => default,
            }
        };
    Timeouts {
        connect: pick(own.connect, policy.connect, Some(defaults::CONNECT)),
        response_headers: pick(
            own.response_headers,
            policy.response_headers,
            Some(defaults::RESPONSE_HEADERS),
        ),
        request: pick(own.request, policy.request, None),
        idle: pick(own.idle, policy.idle, Some(defaults::IDLE)),
    }
}

fn resolve_validation(
    base: &Validation,
    own: &api::Validation,
    field: &str,
) -> Result<Validation, InvalidField> {
    let max = own.max_response_header_bytes.unwrap_or(base.max_response_header_bytes);
    if !(1024..=1_048_576).contains(&max) {
        return Err(InvalidField::new(
            format!("{field}.maxResponseHeaderBytes"),
            "must be between 1024 and 1048576",
        ));
    }
    let content_types = match &own.content_types {
        None => base.content_types.clone(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<MediaRange>().map_err(|e| {
                    InvalidField::new(format!("{field}.contentTypes[{i}]"), e.to_string())
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Validation { max_response_header_bytes: max, content_types })
}

/// Durations in `/config` are written in the same form users write them.
mod opt_duration {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&crate::api::Duration::from_millis(d.as_millis() as u64)),
            None => s.serialize_str("off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> UpstreamPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let p = Policy::default();
        let r = &p.default_route;
        assert_eq!(r.timeouts.connect, Some(Duration::from_secs(1)));
        assert_eq!(r.timeouts.response_headers, Some(Duration::from_secs(15)));
        assert_eq!(r.timeouts.request, None);
        assert_eq!(r.timeouts.idle, Some(Duration::from_secs(300)));
        assert_eq!(p.upstream_idle, Some(Duration::from_secs(4)));
        assert_eq!(r.validation.max_response_header_bytes, 65_536);
        assert!(r.validation.content_types.is_empty());
    }

    #[test]
    fn route_overrides_fall_back_field_by_field() {
        let p = Policy::from_spec(&spec(
            r#"
timeouts: {connect: 2s, responseHeaders: 3s, request: 0s}
routes:
- match: {pathPrefix: /reports, methods: [GET]}
  timeouts: {responseHeaders: 2m}
  validation: {contentTypes: [text/csv]}
"#,
        ))
        .unwrap();
        let get = http::Method::GET;
        let reports = p.route(&get, "/reports/1");
        assert_eq!(reports.timeouts.response_headers, Some(Duration::from_secs(120)));
        assert_eq!(reports.timeouts.connect, Some(Duration::from_secs(2)));
        assert_eq!(reports.timeouts.request, None, "0s turns the timeout off");
        assert_eq!(reports.validation.content_types, vec!["text/csv".parse().unwrap()]);
        let other = p.route(&http::Method::POST, "/reports/1");
        assert_eq!(other.timeouts.response_headers, Some(Duration::from_secs(3)));
        assert!(other.validation.content_types.is_empty());
    }

    #[test]
    fn invalid_fields_are_named() {
        let err =
            Policy::from_spec(&spec("routes: [{validation: {contentTypes: [json]}}]")).unwrap_err();
        assert_eq!(err.field, "spec.routes[0].validation.contentTypes[0]");
        let err = Policy::from_spec(&spec("validation: {maxResponseHeaderBytes: 10}")).unwrap_err();
        assert_eq!(err.field, "spec.validation.maxResponseHeaderBytes");
        let err = Policy::from_spec(&spec("routes: [{match: {pathPrefix: reports}}]")).unwrap_err();
        assert_eq!(err.field, "spec.routes[0].match.pathPrefix");
        let err = Policy::from_spec(&spec("overload: {queue: {size: 3}}")).unwrap_err();
        assert_eq!(err.field, "spec.overload.queue.size");
    }
}
