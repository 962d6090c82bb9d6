//! Maintenance windows as the sidecar enforces them: which requests a window turns away,
//! and with what Retry-After.
//!
//! The sidecar judges windows on its own clock: the [`Gate`] caches the evaluation of the
//! schedules and judges again at the next boundary, so enforcement starts and stops on
//! time whether or not a controller is reachable.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::policy::route::path_has_prefix;
use crate::schedule::{Evaluation, Schedule, evaluate};

/// Retry-After while a window's end is unknown, unless the window says otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A window ready to enforce.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub name: String,
    #[serde(skip)]
    pub schedule: Schedule,
    #[serde(skip)]
    pub retry_after: Duration,
    pub exempt_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass: Option<Bypass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A bypass token, held only as its SHA-256 digest so that the secret itself is never kept,
/// shown in `/config`, or logged.
#[derive(Clone, Debug, Serialize)]
pub struct Bypass {
    #[serde(serialize_with = "header_name_str")]
    pub header: HeaderName,
    #[serde(skip)]
    pub digest: [u8; 32],
}

impl Bypass {
    pub fn new(header: HeaderName, secret: &[u8]) -> Self {
        Bypass::from_digest(header, Sha256::digest(secret).into())
    }

    /// From the digest alone, as the controller sends it.
    pub fn from_digest(header: HeaderName, digest: [u8; 32]) -> Self {
        Bypass { header, digest }
    }

    /// Constant-time comparison, so that timing tells nothing about the token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.header).iter().any(|value| {
            let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
            bool::from(digest.ct_eq(&self.digest))
        })
    }
}

fn header_name_str<S: serde::Serializer>(name: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

impl Window {
    fn lets_through(&self, path: &str, headers: &HeaderMap) -> bool {
        self.exempt_paths.iter().any(|p| path_has_prefix(path, p))
            || self.bypass.as_ref().is_some_and(|b| b.admits(headers))
    }
}

/// Why a request is turned away, and when to come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub window: String,
    pub message: Option<String>,
    /// Whole seconds, at least 1.
    pub retry_after: u64,
}

/// The maintenance state of one sidecar: the windows of the config in force, and the last
/// evaluation of their schedules.
#[derive(Debug, Default)]
pub struct Gate {
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    generation: u64,
    evaluation: Evaluation,
    /// When the evaluation was made; a clock that jumps back invalidates it.
    at: Timestamp,
}

impl Gate {
    /// The evaluation in force at `now` for this config generation, judged again when a
    /// boundary has passed.
    pub fn evaluation(&self, generation: u64, windows: &[Window], now: Timestamp) -> Evaluation {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.as_ref().is_some_and(|c| {
            c.generation == generation
                && c.at <= now
                && c.evaluation.recheck_at.is_none_or(|at| now < at)
        });
        if !fresh {
            let schedules: Vec<Schedule> = windows.iter().map(|w| w.schedule.clone()).collect();
            *cached = Some(Cached { generation, evaluation: evaluate(&schedules, now), at: now });
        }
        cached.as_ref().map(|c| c.evaluation.clone()).unwrap_or_default()
    }

    /// Whether maintenance turns this request away at `now`.
    pub fn check(
        &self,
        generation: u64,
        windows: &[Window],
        path: &str,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Option<Closed> {
        if windows.is_empty() {
            return None;
        }
        let evaluation = self.evaluation(generation, windows, now);
        let blocking = evaluation
            .active
            .iter()
            .map(|&i| &windows[i])
            .find(|w| !w.lets_through(path, headers))?;
        let retry_after = match evaluation.until {
            Some(end) => whole_seconds_until(now, end),
            None => blocking.retry_after.as_secs().max(1),
        };
        Some(Closed {
            window: blocking.name.clone(),
            message: blocking.message.clone(),
            retry_after,
        })
    }
}

/// Seconds from `now` to `end`, rounded up, at least 1: a client that waits this long
/// finds the window over.
pub fn whole_seconds_until(now: Timestamp, end: Timestamp) -> u64 {
    let nanos = end.as_nanosecond().saturating_sub(now.as_nanosecond()).max(0) as u128;
    (nanos.div_ceil(1_000_000_000) as u64).max(1)
}

/// Removes every bypass header before a request goes to the app: the token is for the
/// sidecar only.
pub fn strip_bypass_headers(windows: &[Window], headers: &mut HeaderMap) {
    for bypass in windows.iter().filter_map(|w| w.bypass.as_ref()) {
        headers.remove(&bypass.header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MaintenanceWindowSpec;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(name: &str, yaml: &str) -> Window {
        let spec: MaintenanceWindowSpec = serde_yaml::from_str(yaml).unwrap();
        Window {
            name: name.into(),
            schedule: Schedule::from_spec(&spec, ts("2026-01-01T00:00:00Z")).unwrap(),
            retry_after: DEFAULT_RETRY_AFTER,
            exempt_paths: spec.exempt_paths,
            bypass: spec.bypass.map(|b| Bypass::new(b.header.parse().unwrap(), b"s3cret")),
            message: spec.message,
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let now = ts("2026-12-01T02:00:00Z");
        assert_eq!(whole_seconds_until(now, ts("2026-12-01T02:00:00.001Z")), 1);
        assert_eq!(whole_seconds_until(now, ts("2026-12-01T02:00:01Z")), 1);
        assert_eq!(whole_seconds_until(now, ts("2026-12-01T02:00:01.2Z")), 2);
        assert_eq!(whole_seconds_until(now, ts("2026-12-01T03:00:00Z")), 3600);
        assert_eq!(whole_seconds_until(now, now), 1, "never 0");
    }

    #[test]
    fn exempt_paths_and_bypass_let_requests_through() {
        let windows = [window(
            "shop/db",
            r#"{start: "2026-12-01T02:00:00Z", end: "2026-12-01T03:00:00Z", exemptPaths: [/healthz],
                bypass: {header: X-Portcullis-Bypass, secretRef: {name: ops, key: token}}, message: back soon}"#,
        )];
        let gate = Gate::default();
        let now = ts("2026-12-01T02:59:58.5Z");
        let none = HeaderMap::new();
        let closed = gate.check(1, &windows, "/checkout", &none, now).unwrap();
        assert_eq!(
            closed,
            Closed { window: "shop/db".into(), message: Some("back soon".into()), retry_after: 2 }
        );
        assert_eq!(gate.check(1, &windows, "/healthz", &none, now), None);
        assert_eq!(gate.check(1, &windows, "/healthz/deep", &none, now), None);
        let mut good = HeaderMap::new();
        good.insert("x-portcullis-bypass", "s3cret".parse().unwrap());
        assert_eq!(gate.check(1, &windows, "/checkout", &good, now), None);
        let mut bad = HeaderMap::new();
        bad.insert("x-portcullis-bypass", "s3cre".parse().unwrap());
        assert!(gate.check(1, &windows, "/checkout", &bad, now).is_some());
        assert_eq!(gate.check(1, &windows, "/checkout", &none, ts("2026-12-01T03:00:00Z")), None);
    }

    #[test]
    fn every_active_window_must_let_a_request_through() {
        let windows = [
            window(
                "a",
                r#"{start: "2026-12-01T02:00:00Z", end: "2026-12-01T03:00:00Z", exemptPaths: [/healthz]}"#,
            ),
            window("b", r#"{start: "2026-12-01T02:30:00Z", end: "2026-12-01T04:00:00Z"}"#),
        ];
        let gate = Gate::default();
        let none = HeaderMap::new();
        assert_eq!(gate.check(1, &windows, "/healthz", &none, ts("2026-12-01T02:10:00Z")), None);
        let closed =
            gate.check(1, &windows, "/healthz", &none, ts("2026-12-01T02:40:00Z")).unwrap();
        assert_eq!(closed.window, "b");
        assert_eq!(closed.retry_after, 80 * 60, "until the merged span ends at 04:00");
    }

    #[test]
    fn unknown_end_uses_the_windows_retry_after() {
        let mut open = window("open", "{}");
        open.retry_after = Duration::from_secs(90);
        let closed =
            Gate::default().check(1, &[open], "/", &HeaderMap::new(), ts("2026-06-01T00:00:00Z"));
        assert_eq!(closed.unwrap().retry_after, 90);
    }

    #[test]
    fn bypass_headers_never_reach_the_app() {
        let windows = [window("w", r#"{bypass: {header: X-Ops, secretRef: {name: a, key: b}}}"#)];
        let mut headers = HeaderMap::new();
        headers.insert("x-ops", "s3cret".parse().unwrap());
        headers.insert("x-keep", "1".parse().unwrap());
        strip_bypass_headers(&windows, &mut headers);
        assert!(headers.get("x-ops").is_none());
        assert!(headers.get("x-keep").is_some());
    }
}
