//! Route matching: which of a policy's routes a request falls under.

use serde::Serialize;

use super::invalid::InvalidField;
use crate::api::RouteMatch;

/// A checked `RouteMatch`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatcher {
    #[serde(skip_serializing_if = "Option::is_none")]
    path_prefix: Option<String>,
    #[serde(serialize_with = "methods_as_strings")]
    methods: Vec<http::Method>,
}

impl RouteMatcher {
    pub fn from_spec(spec: &RouteMatch, field: &str) -> Result<Self, InvalidField> {
        if let Some(prefix) = &spec.path_prefix
            && !prefix.starts_with('/')
        {
            return Err(InvalidField::new(format!("{field}.pathPrefix"), "must start with /"));
        }
        let methods = spec
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    InvalidField::new(
                        format!("{field}.methods[{i}]"),
                        format!("{m:?} is not an HTTP method"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        // A trailing slash would make "/a/" fail to match "/a"; the prefix is compared by segment.
        let path_prefix = spec.path_prefix.as_ref().map(|p| {
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() }
        });
        Ok(RouteMatcher { path_prefix, methods })
    }

    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path_prefix.as_deref().is_none_or(|prefix| path_has_prefix(path, prefix))
    }
}

/// Segment-wise prefix: `/a` matches `/a`, `/a/` and `/a/b`, but not `/ab`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

fn methods_as_strings<S: serde::Serializer>(m: &[http::Method], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(http::Method::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn matcher(prefix: Option<&str>, methods: &[&str]) -> RouteMatcher {
        RouteMatcher::from_spec(
            &RouteMatch {
                path_prefix: prefix.map(str::to_owned),
                methods: methods.iter().map(|s| s.to_string()).collect(),
            },
            "m",
        )
        .unwrap()
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let m = matcher(Some("/reports/"), &[]);
        assert!(m.matches(&Method::GET, "/reports"));
        assert!(m.matches(&Method::GET, "/reports/2026"));
        assert!(!m.matches(&Method::GET, "/reportsx"));
        assert!(!m.matches(&Method::GET, "/"));
        assert!(matcher(Some("/"), &[]).matches(&Method::GET, "/anything"));
    }

    #[test]
    fn methods_restrict_and_empty_match_all() {
        let m = matcher(None, &["get", "HEAD"]);
        assert!(m.matches(&Method::GET, "/x"));
        assert!(m.matches(&Method::HEAD, "/x"));
        assert!(!m.matches(&Method::POST, "/x"));
        assert!(matcher(None, &[]).matches(&Method::DELETE, "/x"));
    }
}
