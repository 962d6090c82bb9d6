//! Whether a resource is in force: for each pod it selects, does that pod's sidecar hold
//! what the index would send for the resource now? The answer behind the `Programmed`
//! condition, `status.programmedPods` and the `NotProgrammed` Event.
//!
//! Pure: the sidecars' reports (from every replica) and the index's targets in, a verdict
//! out.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use jiff::Timestamp;

use super::index::ObjectKey;
use super::index::targets::{Target, TargetPod};
use super::report::{SidecarReport, SidecarState};

/// Pods named at most in a condition's message or an Event.
pub const NAMED: usize = 5;

/// Every sidecar of the cluster as the replicas report them: one report per pod.
#[derive(Debug, Default)]
pub struct Fleet {
    pods: BTreeMap<ObjectKey, SidecarReport>,
}

impl Fleet {
    /// Merges reports from every replica: a pod's open stream wins over its closed ones
    /// (the latest opened first), and among closed ones the latest to close; a tie goes to
    /// the replica first by name, so that every reader merges alike.
    pub fn merge(reports: impl IntoIterator<Item = SidecarReport>) -> Fleet {
        let mut pods: BTreeMap<ObjectKey, SidecarReport> = BTreeMap::new();
        for report in reports {
            let key = ObjectKey::new(&report.namespace, &report.pod);
            match pods.get(&key) {
                Some(held) if rank(held) >= rank(&report) => {}
                _ => {
                    pods.insert(key, report);
                }
            }
        }
        Fleet { pods }
    }

    pub fn get(&self, pod: &ObjectKey) -> Option<&SidecarReport> {
        self.pods.get(pod)
    }

    /// Every pod's report, by pod.
    pub fn into_reports(self) -> BTreeMap<ObjectKey, SidecarReport> {
        self.pods
    }
}

fn rank(report: &SidecarReport) -> (bool, Option<Timestamp>, Reverse<&str>) {
    match report.state {
        SidecarState::Disconnected => (false, report.disconnected_at, Reverse(&report.replica)),
        _ => (true, report.connected_since, Reverse(&report.replica)),
    }
}

/// Why one selected pod does not enforce a resource, worst last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Missing {
    /// Sent to it, not acknowledged yet.
    Pending,
    /// It applied a config made from an older state of the resource.
    Behind,
    /// Another UpstreamPolicy is in force on it.
    Overridden,
    /// No stream open, and what it last applied is older.
    Disconnected(Option<Timestamp>),
    /// No sidecar has ever followed a replica for it.
    NotConnected,
    /// It carries no sidecar.
    NotInjected,
    /// Too old to acknowledge, or refused fields it does not know.
    Outdated(Option<String>),
    /// It refused the config, and keeps its last good one.
    Refused(String),
}

impl Missing {
    /// The condition reason when this is the worst case among the pods.
    pub fn reason(&self) -> &'static str {
        match self {
            Missing::Pending => "Pending",
            Missing::Behind => "Behind",
            Missing::Overridden => "Overridden",
            Missing::Disconnected(_) | Missing::NotConnected => "SidecarsDisconnected",
            Missing::NotInjected => "NotInjected",
            Missing::Outdated(_) => "OutdatedSidecar",
            Missing::Refused(_) => "Refused",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Missing::Pending => "sent, not acknowledged yet".into(),
            Missing::Behind => "holds an older generation".into(),
            Missing::Overridden => "an older UpstreamPolicy is in force there".into(),
            Missing::Disconnected(Some(at)) => format!("sidecar disconnected since {at}"),
            Missing::Disconnected(None) => "sidecar disconnected".into(),
            Missing::NotConnected => "no sidecar stream".into(),
            Missing::NotInjected => "no sidecar injected".into(),
            Missing::Outdated(Some(why)) => format!("outdated sidecar: {why}"),
            Missing::Outdated(None) => "outdated sidecar: it does not acknowledge".into(),
            Missing::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// One resource's verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub matched: usize,
    pub programmed: usize,
    /// Every pod that does not enforce it, by name.
    pub missing: Vec<(ObjectKey, Missing)>,
}

impl Verdict {
    pub fn is_programmed(&self) -> bool {
        self.missing.is_empty()
    }

    /// `Programmed` when every selected pod enforces it, else the worst case's reason.
    pub fn reason(&self) -> &'static str {
        self.missing.iter().map(|(_, m)| m).max().map_or("Programmed", Missing::reason)
    }

    /// Up to [`NAMED`] pods and why, the worst first.
    pub fn named(&self) -> String {
        let mut missing: Vec<&(ObjectKey, Missing)> = self.missing.iter().collect();
        missing.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut text: Vec<String> = missing
            .iter()
            .take(NAMED)
            .map(|(pod, why)| format!("{pod} ({})", why.describe()))
            .collect();
        if missing.len() > NAMED {
            text.push(format!("and {} more", missing.len() - NAMED));
        }
        text.join(", ")
    }

    pub fn message(&self, generation: Option<i64>) -> String {
        let generation = generation.map_or(String::new(), |g| format!(" generation {g}"));
        if self.is_programmed() {
            return format!(
                "{} of {} selected pods enforce{generation}",
                self.programmed, self.matched
            );
        }
        format!(
            "{} of {} selected pods enforce{generation}; not: {}",
            self.programmed,
            self.matched,
            self.named()
        )
    }
}

/// Which of a target's pods hold it.
pub fn verdict(name: &str, target: &Target, fleet: &Fleet) -> Verdict {
    let mut verdict = Verdict { matched: target.pods.len(), ..Verdict::default() };
    for pod in &target.pods {
        match missing(name, target.digest.as_deref(), pod, fleet.get(&pod.key)) {
            None => verdict.programmed += 1,
            Some(why) => verdict.missing.push((pod.key.clone(), why)),
        }
    }
    verdict
}

fn missing(
    name: &str,
    digest: Option<&str>,
    pod: &TargetPod,
    report: Option<&SidecarReport>,
) -> Option<Missing> {
    if !pod.injected {
        return Some(Missing::NotInjected);
    }
    if pod.overridden {
        return Some(Missing::Overridden);
    }
    let Some(report) = report else { return Some(Missing::NotConnected) };
    let holds = report.holds.iter().any(|h| h.name == name && Some(h.digest.as_str()) == digest);
    if holds && digest.is_some() {
        // Whatever its stream does now, it enforces this: it keeps what it applied.
        return None;
    }
    Some(match report.state {
        SidecarState::Disconnected => Missing::Disconnected(report.disconnected_at),
        SidecarState::Outdated => {
            Missing::Outdated(report.refusal.as_ref().map(|r| r.reason.clone()))
        }
        SidecarState::Refused => {
            Missing::Refused(report.refusal.as_ref().map_or_else(String::new, |r| r.reason.clone()))
        }
        SidecarState::Pending => Missing::Pending,
        // It applied the newest this replica sent, but the leader's index is ahead.
        SidecarState::Synced => Missing::Behind,
    })
}

#[cfg(test)]
mod tests;
