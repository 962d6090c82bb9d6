//! Pure: what `status` and `why` print, as a table, as text, or as JSON or YAML.

use std::fmt::Write as _;

use serde::Serialize;

use super::merge::StatusRow;
use crate::admin::state::{RequestNow, SidecarStatus, WindowNow};
use crate::controller::report::{Refusal, SidecarReport};

/// Columns are padded as kubectl pads them: three spaces apart, the last one not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `status` table, then a line for each pod whose sidecar refused its newest config.
pub fn status_table(rows: &[StatusRow]) -> String {
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".to_owned());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let generation = match (r.acked_version, r.latest_version) {
                (None, None) => "-".to_owned(),
                (acked, latest) => format!(
                    "{}/{}",
                    dash(acked.map(|v| v.to_string())),
                    dash(latest.map(|v| v.to_string()))
                ),
            };
            let windows = (!r.active_windows.is_empty()).then(|| r.active_windows.join(","));
            vec![
                r.namespace.clone(),
                r.pod.clone(),
                dash(r.version.clone()),
                dash(r.replica.clone()),
                generation,
                r.state.clone(),
                dash(windows),
            ]
        })
        .collect();
    let header = ["NAMESPACE", "POD", "VERSION", "REPLICA", "GENERATION", "STATE", "WINDOWS"];
    let mut out = table(&header, &cells);
    let refusals: Vec<&StatusRow> = rows.iter().filter(|r| r.refusal.is_some()).collect();
    if !refusals.is_empty() {
        out.push('\n');
    }
    for row in refusals {
        if let Some(refusal) = &row.refusal {
            let _ = writeln!(out, "{}/{}: {}", row.namespace, row.pod, refused(refusal));
        }
    }
    out
}

fn refused(refusal: &Refusal) -> String {
    match refusal.version {
        Some(version) => format!("refused version {version}: {}", refusal.reason),
        None => format!("refused a config it could not read: {}", refusal.reason),
    }
}

/// The controller's side of `why`.
#[derive(Clone, Copy, Debug)]
pub enum ControllerView<'a> {
    Reported(&'a SidecarReport),
    /// The replicas answered, and none knows the pod.
    NotReported,
    /// The replicas' reports could not be read (the reason went to stderr).
    Unavailable,
}

/// `why` as text: one labelled field a line, continuation lines indented under the value,
/// as `kubectl describe` lays it out.
pub fn why_text(
    namespace: &str,
    pod: &str,
    sidecar: &SidecarStatus,
    view: ControllerView,
) -> String {
    let mut fields: Vec<(&str, Vec<String>)> = Vec::new();
    fields.push(("Pod", vec![format!("{namespace}/{pod}")]));
    let stream = if sidecar.controller_connected { "connected" } else { "not connected" };
    fields.push((
        "Sidecar",
        vec![format!(
            "version {}, config generation {}, controller stream {stream}",
            sidecar.version, sidecar.generation
        )],
    ));
    let policy = sidecar.policy.clone().unwrap_or_else(|| "none (the defaults)".to_owned());
    fields.push(("Policy", vec![policy]));
    let windows: Vec<String> = sidecar.windows.iter().map(window).collect();
    fields.push(("Windows", if windows.is_empty() { vec!["none".to_owned()] } else { windows }));
    fields.push(("Requests", vec![request(&sidecar.request, &sidecar.windows)]));
    let recent = &sidecar.recent_5xx;
    let mut reasons: Vec<(&String, &u64)> =
        recent.by_reason.iter().filter(|(_, n)| **n > 0).collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let recent = if reasons.is_empty() {
        format!("no 5xx over the last {}s", recent.seconds)
    } else {
        let counts: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        format!("over the last {}s: {}", recent.seconds, counts.join(", "))
    };
    fields.push(("Recent 5xx", vec![recent]));
    fields.push(("Controller", controller(view)));

    // The colon, then three spaces as between table columns.
    let width = fields.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1 + 3;
    let mut out = String::new();
    for (label, lines) in fields {
        for (i, line) in lines.iter().enumerate() {
            let label = if i == 0 { format!("{label}:") } else { String::new() };
            let _ = writeln!(out, "{label:<width$}{line}");
        }
    }
    out
}

fn window(w: &WindowNow) -> String {
    let when = match (w.active, w.until, w.next) {
        (true, Some(until), _) => format!("active until {until}"),
        (true, None, _) => "active, no end set".to_owned(),
        (false, _, Some(next)) => format!("inactive, next at {next}"),
        (false, _, None) => "inactive, nothing scheduled".to_owned(),
    };
    let exempt = match w.exempt_paths.as_slice() {
        [] => "no exempt paths".to_owned(),
        paths => format!("exempt paths {}", paths.join(", ")),
    };
    let bypass = if w.bypass { "bypass configured" } else { "no bypass" };
    format!("{}: {when}; {exempt}; {bypass}", w.name)
}

/// What a request that no exemption or bypass lets through gets now.
fn request(now: &RequestNow, windows: &[WindowNow]) -> String {
    match (now.status, &now.window) {
        (Some(status), window) => {
            let mut line = format!("a request gets {status}");
            if let Some(window) = window {
                let _ = write!(line, " from window {window}");
            }
            if let Some(retry_after) = now.retry_after {
                let _ = write!(line, " (Retry-After: {retry_after}s)");
            }
            match now.until {
                Some(until) => format!("{line} until {until}"),
                None => format!("{line}; the window has no end set"),
            }
        }
        (None, _) => match now.until {
            Some(until) => {
                // The sidecar gives only when; the window is the one starting then.
                let next = windows.iter().find(|w| !w.active && w.next == Some(until));
                match next {
                    Some(w) => format!("requests go to the app; next window {} at {until}", w.name),
                    None => format!("requests go to the app; next window at {until}"),
                }
            }
            None => "requests go to the app; no window is scheduled".to_owned(),
        },
    }
}

fn controller(view: ControllerView) -> Vec<String> {
    match view {
        ControllerView::Reported(report) => {
            let acked = report.acked_version.map_or("-".to_owned(), |v| v.to_string());
            let mut lines = vec![format!(
                "{} with replica {}, acked/latest {acked}/{}",
                report.state.as_str(),
                report.replica,
                report.latest_version
            )];
            if let Some(refusal) = &report.refusal {
                lines.push(format!("{} (at {})", refused(refusal), refusal.at));
            }
            lines
        }
        ControllerView::NotReported => {
            vec!["unknown: no replica reports this pod (its sidecar never connected)".to_owned()]
        }
        ControllerView::Unavailable => {
            vec!["unknown: the replicas' reports could not be read".to_owned()]
        }
    }
}

/// `why` as JSON or YAML.
#[derive(Serialize)]
pub struct WhyReport<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub sidecar: &'a SidecarStatus,
    pub controller: Option<&'a SidecarReport>,
}

#[derive(Clone, Copy, Debug)]
pub enum Structured {
    Json,
    Yaml,
}

pub fn structured<T: Serialize>(value: &T, format: Structured) -> Result<String, String> {
    match format {
        Structured::Json => {
            serde_json::to_string_pretty(value).map(|text| text + "\n").map_err(|e| e.to_string())
        }
        Structured::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
