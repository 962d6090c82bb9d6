//! The status PATCHes the controller makes, as a poller of the fake API sees them arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::POLL;
use super::fake_api::FakeApi;

/// One status PATCH, as the poller saw it arrive.
pub(crate) struct Write {
    pub(crate) at: Instant,
    pub(crate) path: String,
    pub(crate) programmed: Option<String>,
}

/// Every status PATCH the fake API server received, timed by a poller.
#[derive(Clone, Default)]
pub(crate) struct Writes(Arc<Mutex<Vec<Write>>>);

impl Writes {
    pub(crate) fn follow(api: FakeApi) -> Writes {
        let writes = Writes::default();
        let shared = writes.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let patches = api.patches();
                let at = Instant::now();
                let fresh: Vec<Write> = patches[seen..]
                    .iter()
                    .filter(|(path, _)| path.ends_with("/status"))
                    .map(|(path, body)| Write {
                        at,
                        path: path.clone(),
                        programmed: body["status"]["conditions"]
                            .as_array()
                            .and_then(|c| c.iter().find(|c| c["type"] == "Programmed"))
                            .and_then(|c| c["status"].as_str())
                            .map(str::to_owned),
                    })
                    .collect();
                seen = patches.len();
                shared.0.lock().unwrap().extend(fresh);
                tokio::time::sleep(POLL).await;
            }
        });
        writes
    }

    /// When the first write of `path` since `since` with `Programmed=True` was seen, and how
    /// many writes of it (True or not) were seen since.
    pub(crate) fn programmed(&self, path: &str, since: Instant) -> Option<(Instant, usize)> {
        let writes = self.0.lock().unwrap();
        let mine = writes.iter().filter(|w| w.path == path && w.at >= since);
        let mut count = 0;
        for w in mine {
            count += 1;
            if w.programmed.as_deref() == Some("True") {
                return Some((w.at, count));
            }
        }
        None
    }

    /// Status writes seen in `[from, to]`: their number, the most in any one second, the most
    /// of one resource in any one second, and the shortest gap between two writes of one
    /// resource.
    pub(crate) fn rates(&self, from: Instant, to: Instant) -> Rates {
        let writes = self.0.lock().unwrap();
        let within: Vec<&Write> = writes.iter().filter(|w| w.at >= from && w.at <= to).collect();
        let mut by_path: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
        for w in &within {
            by_path.entry(&w.path).or_default().push(w.at);
        }
        let all: Vec<Instant> = within.iter().map(|w| w.at).collect();
        let mut per_resource = 0;
        let mut shortest: Option<Duration> = None;
        for times in by_path.values() {
            per_resource = per_resource.max(most_in_a_second(times));
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            }
        }
        Rates {
            writes: within.len(),
            resources: by_path.len(),
            peak: most_in_a_second(&all),
            per_resource,
            shortest,
        }
    }
}

pub(crate) struct Rates {
    pub(crate) writes: usize,
    pub(crate) resources: usize,
    pub(crate) peak: usize,
    pub(crate) per_resource: usize,
    pub(crate) shortest: Option<Duration>,
}

/// The most of `times` (sorted) within any 1 s.
pub(crate) fn most_in_a_second(times: &[Instant]) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= Duration::from_secs(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
