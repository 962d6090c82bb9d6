//! Durations, cron schedules and time zone names, then the schedules evaluated at arbitrary
//! instants.
//!
//! Input, one item a line:
//! - `cron|duration|zone` (zone optional): a recurring window;
//! - `=start|end` (RFC 3339, either may be empty): a one-off or open-ended window;
//! - `@instant` (RFC 3339, or seconds since the Unix epoch): an instant to evaluate at;
//! - `~duration`: a duration alone.
//!
//! Asserted: never a panic; every duration string is accepted exactly when it matches the
//! schema pattern that the API server enforces, and writes back as a string that reads as
//! the same duration (the controller sends durations to sidecars that way); and at every
//! instant the evaluation is consistent: the windows called active are on at that instant,
//! the merged span's end and the recheck time lie after it, and the Retry-After of a
//! closed request counts exactly to the merged end.
#![no_main]

use std::sync::OnceLock;

use http::HeaderMap;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use libfuzzer_sys::fuzz_target;
use portcullis::api::{Duration, MaintenanceWindowSpec};
use portcullis::config::compile_window;
use portcullis::maintenance::{Gate, whole_seconds_until};
use portcullis::schedule::{Schedule, evaluate};
use regex::Regex;

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(portcullis::api::DURATION_PATTERN).unwrap())
}

fn duration(text: &str) -> Option<Duration> {
    let parsed = text.parse::<Duration>();
    assert_eq!(parsed.is_ok(), pattern().is_match(text), "{text:?}: parse and pattern disagree");
    let d = parsed.ok()?;
    let written = d.to_string();
    assert_eq!(written.parse::<Duration>().ok(), Some(d), "{text:?} writes back as {written:?}");
    Some(d)
}

fn instant(text: &str) -> Option<Timestamp> {
    text.parse().ok().or_else(|| Timestamp::from_second(text.trim().parse().ok()?).ok())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut specs = Vec::new();
    let mut instants = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('@') {
            instants.extend(instant(rest));
        } else if let Some(rest) = line.strip_prefix('~') {
            duration(rest);
        } else if let Some(rest) = line.strip_prefix('=') {
            let (start, end) = rest.split_once('|').unwrap_or((rest, ""));
            let time = |s: &str| s.parse().ok().map(k8s_time);
            specs.push(MaintenanceWindowSpec { start: time(start), end: time(end), ..spec() });
        } else {
            let mut parts = line.splitn(3, '|');
            let schedule = parts.next().map(str::to_owned);
            let duration = parts.next().and_then(duration);
            let time_zone = parts.next().map(str::to_owned);
            specs.push(MaintenanceWindowSpec { schedule, duration, time_zone, ..spec() });
        }
    }
    if specs.len() > 4 || instants.len() > 8 {
        return; // keeps each run short; more of them say nothing new
    }
    let windows: Vec<_> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let schedule = Schedule::from_spec(spec, created);
            let window = compile_window(format!("w{i}"), spec, created, None);
            assert_eq!(schedule.is_ok(), window.is_ok());
            window.ok()
        })
        .collect();
    let schedules: Vec<Schedule> = windows.iter().map(|w| w.schedule.clone()).collect();
    for now in instants {
        let e = evaluate(&schedules, now);
        assert_eq!(e.on, !e.active.is_empty());
        for &i in &e.active {
            let span = schedules[i].active_at(now).expect("an active window is on");
            assert!(span.start <= now && span.end.is_none_or(|end| now < end), "{span:?}");
        }
        for (i, s) in schedules.iter().enumerate() {
            assert_eq!(s.active_at(now).is_some(), e.active.contains(&i));
        }
        if let Some(until) = e.until {
            assert!(e.on && until > now, "until {until} at {now}");
            assert!(schedules.iter().all(|s| s.active_at(until).is_none()), "ends at {until}");
        }
        if let Some(at) = e.recheck_at {
            assert!(at > now, "recheck at {at}, now {now}");
        }
        if let Some(next) = e.next {
            assert!(next.start > e.until.unwrap_or(now), "{next:?}");
        }
        let closed = Gate::default().check(1, &windows, "/", &HeaderMap::new(), now);
        assert_eq!(closed.is_some(), e.on);
        if let (Some(closed), Some(until)) = (closed, e.until) {
            assert_eq!(closed.retry_after, whole_seconds_until(now, until));
        }
    }
});

fn spec() -> MaintenanceWindowSpec {
    MaintenanceWindowSpec::default()
}

fn k8s_time(t: Timestamp) -> Time {
    Time(t)
}
