//! `GET /v1/state` on the sidecar's admin port: what this sidecar enforces now, judged on
//! its own clock, and its recent 5xx by reason. Unlike `/config` it holds no bypass digest
//! and no policy detail, so it is answered to anyone who reaches the admin port:
//! `kubectl portcullis why` reads it through the API server's pod proxy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::Snapshot;
use crate::maintenance::Gate;

/// The admin path of the state.
pub const STATE_PATH: &str = "/v1/state";
/// How far back "recent" reaches.
pub const RECENT: Duration = Duration::from_secs(300);
/// How often the 5xx totals are sampled for "recent".
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// The sidecar's own version.
    pub version: String,
    /// The generation of the config in force (0: the defaults, nothing applied yet).
    pub generation: u64,
    /// Whether the config stream from the controller is open (controller mode).
    pub controller_connected: bool,
    /// The UpstreamPolicy in force (`namespace/name`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub windows: Vec<WindowNow>,
    /// What a request that no exemption or bypass lets through gets now.
    pub request: RequestNow,
    pub recent_5xx: Recent5xx,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowNow {
    pub name: String,
    pub active: bool,
    /// While active: when this window's span ends (`None`: open-ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// While inactive: when it next starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_paths: Vec<String>,
    /// Whether a bypass header is configured (never the token).
    pub bypass: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestNow {
    /// 503 under maintenance; `None` when requests go to the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The window that answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Until when this holds: the end of maintenance while on (`None`: unknown), the next
    /// window's start while off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// The Retry-After a turned-away request gets, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// 5xx responses over the last `seconds`, by `reason` label (`none`: the app's own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recent5xx {
    pub seconds: u64,
    pub by_reason: BTreeMap<String, u64>,
}

/// What `/v1/state` shows of a snapshot at `now`.
pub fn status_of(
    snapshot: &Snapshot,
    now: Timestamp,
    controller_connected: bool,
    recent_5xx: Recent5xx,
) -> SidecarStatus {
    let config = &snapshot.config;
    let gate = Gate::default();
    let windows = config
        .windows
        .iter()
        .map(|w| {
            let current = w.schedule.active_at(now);
            WindowNow {
                name: w.name.clone(),
                active: current.is_some(),
                until: current.and_then(|s| s.end),
                next: match current {
                    Some(_) => None,
                    None => w.schedule.next_after(now).map(|s| s.start),
                },
                exempt_paths: w.exempt_paths.clone(),
                bypass: w.bypass.is_some(),
            }
        })
        .collect();
    let closed = gate.check(snapshot.generation, &config.windows, "", &http::HeaderMap::new(), now);
    let evaluation = gate.evaluation(snapshot.generation, &config.windows, now);
    let request = match closed {
        Some(closed) => RequestNow {
            status: Some(503),
            window: Some(closed.window),
            until: evaluation.until,
            retry_after: Some(closed.retry_after),
        },
        None => RequestNow {
            status: None,
            window: None,
            until: evaluation.next.map(|s| s.start),
            retry_after: None,
        },
    };
    SidecarStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        generation: snapshot.generation,
        controller_connected,
        policy: config.policy_name.clone(),
        windows,
        request,
        recent_5xx,
    }
}

/// Samples of the 5xx totals, so that "recent" needs no work on the request path.
#[derive(Debug, Default)]
pub struct Recent {
    samples: Mutex<VecDeque<(std::time::Instant, BTreeMap<String, u64>)>>,
}

impl Recent {
    /// Keeps `totals` as the sample of `at`, dropping those older than [`RECENT`].
    pub fn sample(&self, at: std::time::Instant, totals: BTreeMap<String, u64>) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((at, totals));
        while samples.len() > 1 && samples.front().is_some_and(|(t, _)| at - *t > RECENT) {
            samples.pop_front();
        }
    }

    /// The 5xx since the oldest sample kept, given the totals now.
    pub fn since_oldest(
        &self,
        now: std::time::Instant,
        totals: &BTreeMap<String, u64>,
    ) -> Recent5xx {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some((at, oldest)) = samples.front() else {
            return Recent5xx { seconds: 0, by_reason: totals.clone() };
        };
        let by_reason = totals
            .iter()
            .map(|(reason, n)| {
                (reason.clone(), n - oldest.get(reason).copied().unwrap_or(0).min(*n))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Recent5xx { seconds: (now - *at).as_secs(), by_reason }
    }
}

/// The 5xx totals by reason, read from the metrics' own text: the one place that counts.
pub fn totals_5xx(metrics_text: &str) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for line in metrics_text.lines() {
        let Some(rest) = line.strip_prefix("portcullis_responses_total{") else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
        };
        let five_hundred = label("status").is_some_and(|s| s.starts_with('5') && s.len() == 3);
        let (Some(reason), Ok(n)) = (label("reason"), value.trim().parse::<f64>()) else {
            continue;
        };
        if five_hundred {
            *totals.entry(reason.to_owned()).or_default() += n as u64;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_from_the_responses_counter() {
        let text = "# TYPE portcullis_responses counter\n\
            portcullis_responses_total{status=\"503\",reason=\"maintenance\",source=\"proxy\"} 4\n\
            portcullis_responses_total{status=\"504\",reason=\"response_headers_timeout\",source=\"proxy\"} 1\n\
            portcullis_responses_total{status=\"500\",reason=\"none\",source=\"app\"} 2\n\
            portcullis_responses_total{status=\"200\",reason=\"none\",source=\"app\"} 90\n";
        let totals = totals_5xx(text);
        assert_eq!(
            totals,
            BTreeMap::from([
                ("maintenance".to_owned(), 4),
                ("none".to_owned(), 2),
                ("response_headers_timeout".to_owned(), 1)
            ])
        );
    }

    #[test]
    fn recent_counts_since_the_oldest_sample_kept() {
        let recent = Recent::default();
        let start = std::time::Instant::now();
        recent.sample(start, BTreeMap::from([("maintenance".to_owned(), 10)]));
        recent.sample(start + RECENT / 2, BTreeMap::from([("maintenance".to_owned(), 15)]));
        let now = BTreeMap::from([("maintenance".to_owned(), 18), ("none".to_owned(), 1)]);
        let seen = recent.since_oldest(start + RECENT / 2, &now);
        assert_eq!(seen.seconds, RECENT.as_secs() / 2);
        assert_eq!(
            seen.by_reason,
            BTreeMap::from([("maintenance".to_owned(), 8), ("none".to_owned(), 1)])
        );
        // Past RECENT, the first sample goes.
        recent.sample(
            start + RECENT + SAMPLE_EVERY,
            BTreeMap::from([("maintenance".to_owned(), 18)]),
        );
        let later = recent.since_oldest(start + RECENT + SAMPLE_EVERY, &now);
        assert_eq!(
            later.by_reason,
            BTreeMap::from([("maintenance".to_owned(), 3), ("none".to_owned(), 1)])
        );
    }
}
