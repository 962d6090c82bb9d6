use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn window(yaml: &str) -> Schedule {
    let spec: MaintenanceWindowSpec = serde_yaml::from_str(yaml).unwrap();
    Schedule::from_spec(&spec, ts("2026-01-01T00:00:00Z")).unwrap()
}

fn error(yaml: &str) -> InvalidField {
    let spec: MaintenanceWindowSpec = serde_yaml::from_str(yaml).unwrap();
    Schedule::from_spec(&spec, ts("2026-01-01T00:00:00Z")).unwrap_err()
}

#[test]
fn one_off_window() {
    let w = [window(r#"{start: "2026-12-01T02:00:00Z", end: "2026-12-01T03:00:00Z"}"#)];
    let before = evaluate(&w, ts("2026-12-01T01:59:59Z"));
    assert!(!before.on);
    assert_eq!(
        before.next,
        Some(Span { start: ts("2026-12-01T02:00:00Z"), end: Some(ts("2026-12-01T03:00:00Z")) })
    );
    assert_eq!(before.recheck_at, Some(ts("2026-12-01T02:00:00Z")));
    let during = evaluate(&w, ts("2026-12-01T02:00:00Z"));
    assert!(during.on);
    assert_eq!(during.active, [0]);
    assert_eq!(during.until, Some(ts("2026-12-01T03:00:00Z")));
    assert_eq!(during.recheck_at, Some(ts("2026-12-01T03:00:00Z")));
    assert!(!evaluate(&w, ts("2026-12-01T03:00:00Z")).on, "the end is exclusive");
}

#[test]
fn start_alone_end_alone_and_open_ended() {
    let start_only = [window(r#"{start: "2026-12-01T02:00:00Z"}"#)];
    assert!(!evaluate(&start_only, ts("2026-12-01T01:00:00Z")).on);
    let e = evaluate(&start_only, ts("2027-06-01T00:00:00Z"));
    assert!(e.on && e.until.is_none() && e.recheck_at.is_none());

    let end_only = [window(r#"{end: "2026-12-01T03:00:00Z"}"#)];
    let e = evaluate(&end_only, ts("2026-11-30T00:00:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-12-01T03:00:00Z")));
    assert!(!evaluate(&end_only, ts("2026-12-01T03:00:01Z")).on);

    let open = [window("{}")];
    let e = evaluate(&open, ts("2026-06-01T00:00:00Z"));
    assert!(e.on && e.until.is_none());
    assert!(!evaluate(&open, ts("2025-12-31T23:59:59Z")).on, "not before creation");
}

#[test]
fn suspend_turns_any_form_off() {
    for yaml in [
        "{suspend: true}",
        r#"{suspend: true, start: "2026-01-01T00:00:00Z"}"#,
        r#"{suspend: true, schedule: "* * * * *", duration: 1h}"#,
    ] {
        let e = evaluate(&[window(yaml)], ts("2026-06-01T00:00:00Z"));
        assert!(!e.on && e.next.is_none(), "{yaml}");
    }
}

#[test]
fn recurring_window_in_utc() {
    // Sundays at 02:00 for an hour; 2026-11-29 is a Sunday.
    let w = [window(r#"{schedule: "0 2 * * SUN", duration: 1h}"#)];
    let e = evaluate(&w, ts("2026-11-29T02:30:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-11-29T03:00:00Z")));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-12-06T02:00:00Z")));
    let e = evaluate(&w, ts("2026-11-29T03:00:00Z"));
    assert!(!e.on);
    assert_eq!(
        e.next,
        Some(Span { start: ts("2026-12-06T02:00:00Z"), end: Some(ts("2026-12-06T03:00:00Z")) })
    );
}

#[test]
fn recurring_window_in_a_time_zone() {
    // 02:00 in Berlin is 01:00Z in winter (CET, +01:00).
    let w = [window(r#"{schedule: "0 2 * * *", duration: 30m, timeZone: Europe/Berlin}"#)];
    let e = evaluate(&w, ts("2026-12-02T01:10:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-12-02T01:30:00Z")));
    // In summer (CEST, +02:00) the same wall-clock time is 00:00Z.
    assert!(evaluate(&w, ts("2026-07-02T00:10:00Z")).on);
}

#[test]
fn spring_forward_gap_starts_at_the_first_instant_after_it() {
    // 2026-03-29, Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z); 02:30 never happens.
    let w = [window(r#"{schedule: "30 2 * * *", duration: 1h, timeZone: Europe/Berlin}"#)];
    let e = evaluate(&w, ts("2026-03-29T00:30:00Z"));
    assert!(!e.on);
    assert_eq!(
        e.next,
        Some(Span { start: ts("2026-03-29T01:00:00Z"), end: Some(ts("2026-03-29T02:00:00Z")) })
    );
    let e = evaluate(&w, ts("2026-03-29T01:30:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-03-29T02:00:00Z")), "duration is elapsed time");
    // The day after, 02:30 CEST is 00:30Z again.
    assert!(evaluate(&w, ts("2026-03-30T00:45:00Z")).on);
}

#[test]
fn fall_back_overlap_starts_once_at_the_first_occurrence() {
    // 2026-11-01, New York: 02:00 EDT falls back to 01:00 EST; 01:30 happens at 05:30Z
    // (EDT) and again at 06:30Z (EST).
    let w = [window(r#"{schedule: "30 1 * * *", duration: 20m, timeZone: America/New_York}"#)];
    let e = evaluate(&w, ts("2026-11-01T05:35:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-11-01T05:50:00Z")));
    assert!(
        !evaluate(&w, ts("2026-11-01T06:35:00Z")).on,
        "the repeated 01:30 does not start it again"
    );
    let e = evaluate(&w, ts("2026-11-01T06:00:00Z"));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-11-02T06:30:00Z")));
}

#[test]
fn overlapping_and_abutting_windows_merge() {
    let w = [
        window(r#"{start: "2026-12-01T01:00:00Z", end: "2026-12-01T02:00:00Z"}"#),
        window(r#"{start: "2026-12-01T01:30:00Z", end: "2026-12-01T03:00:00Z"}"#),
        window(r#"{start: "2026-12-01T03:00:00Z", end: "2026-12-01T04:00:00Z"}"#),
        window(r#"{start: "2026-12-01T05:00:00Z", end: "2026-12-01T06:00:00Z"}"#),
    ];
    let e = evaluate(&w, ts("2026-12-01T01:15:00Z"));
    assert_eq!(e.active, [0]);
    assert_eq!(
        e.until,
        Some(ts("2026-12-01T04:00:00Z")),
        "a client told to return must find the pod serving"
    );
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-12-01T05:00:00Z")));
    assert_eq!(e.recheck_at, Some(ts("2026-12-01T01:30:00Z")), "window 1 starts then");
    let e = evaluate(&w, ts("2026-12-01T01:45:00Z"));
    assert_eq!(e.active, [0, 1]);
    assert_eq!(e.until, Some(ts("2026-12-01T04:00:00Z")));
}

#[test]
fn an_open_ended_window_makes_the_merged_end_unknown() {
    let w = [
        window(r#"{start: "2026-12-01T01:00:00Z", end: "2026-12-01T02:00:00Z"}"#),
        window(r#"{start: "2026-12-01T02:00:00Z"}"#),
    ];
    let e = evaluate(&w, ts("2026-12-01T01:15:00Z"));
    assert!(e.on && e.until.is_none());
}

#[test]
fn a_window_that_recurs_faster_than_it_ends_never_ends() {
    let w = [window(r#"{schedule: "*/10 * * * *", duration: 10m}"#)];
    let e = evaluate(&w, ts("2026-12-01T01:15:00Z"));
    assert!(e.on);
    assert_eq!(e.until, None);
}

#[test]
fn invalid_windows_name_the_field() {
    assert_eq!(
        error(r#"{start: "2026-12-01T03:00:00Z", end: "2026-12-01T02:00:00Z"}"#).field,
        "spec.end"
    );
    assert_eq!(
        error(r#"{schedule: "0 2 * * *", duration: 1h, start: "2026-12-01T03:00:00Z"}"#).field,
        "spec.start"
    );
    assert_eq!(error(r#"{schedule: "0 2 * * *"}"#).field, "spec.duration");
    assert_eq!(error(r#"{schedule: "0 2 * * *", duration: 0s}"#).field, "spec.duration");
    assert_eq!(error(r#"{schedule: "0 25 * * *", duration: 1h}"#).field, "spec.schedule");
    assert_eq!(
        error(r#"{schedule: "0 0 2 * * *", duration: 1h}"#).field,
        "spec.schedule",
        "seconds are not cron"
    );
    let tz = error(r#"{schedule: "0 2 * * *", duration: 1h, timeZone: Mars/Olympus}"#);
    assert_eq!(tz.field, "spec.timeZone");
    assert_eq!(tz.message, "\"Mars/Olympus\" is not an IANA time zone");
    assert_eq!(error("{duration: 1h}").field, "spec.duration");
}

#[test]
fn a_repeated_hour_starts_once_for_a_wildcard_cron_too() {
    // 2024-11-03, New York: 02:00 EDT falls back to 01:00 EST (06:00Z). Every minute of
    // 00:00-01:59 starts a one-minute window; the repeated 01:xx start only at EDT, at
    // 05:00Z-05:59Z, whatever croner does for expressions that are not a fixed time.
    let w = [window(r#"{schedule: "* 0,1 * 1-11 *", duration: 1m, timeZone: America/New_York}"#)];
    let e = evaluate(&w, ts("2024-11-03T05:59:30Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2024-11-03T06:00:00Z")));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2024-11-04T05:00:00Z")), "00:00 EST");
    let e = evaluate(&w, ts("2024-11-03T06:00:00Z"));
    assert!(!e.on, "01:00 EST is the second 01:00: no start");
    assert_eq!(e.next.map(|s| s.start), Some(ts("2024-11-04T05:00:00Z")));
    assert_eq!(e.recheck_at, Some(ts("2024-11-04T05:00:00Z")));
    assert!(!evaluate(&w, ts("2024-11-03T06:59:59Z")).on);
}

#[test]
fn a_repeated_hour_leaves_a_gap_between_hourly_windows() {
    // 2024-10-27, London: 02:00 BST falls back to 01:00 GMT (01:00Z). Hourly 90-minute
    // windows (every day of October: day-of-month and day-of-week are both restricted, so
    // either may match) start at 01:00 BST (00:00Z) and 02:00 GMT (02:00Z), not at the
    // repeated 01:00 (01:00Z): the merged span ends at 01:30Z, not weeks later.
    let w = [window(
        r#"{schedule: "0 * 3-24 3-7/4,6-11 2-6,1,0", duration: 90m, timeZone: Europe/London}"#,
    )];
    let e = evaluate(&w, ts("2024-10-27T01:00:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2024-10-27T01:30:00Z")));
    assert_eq!(
        e.next,
        Some(Span { start: ts("2024-10-27T02:00:00Z"), end: Some(ts("2024-10-27T03:30:00Z")) })
    );
    assert_eq!(e.recheck_at, Some(ts("2024-10-27T01:30:00Z")));
    assert!(!evaluate(&w, ts("2024-10-27T01:45:00Z")).on);
}

#[test]
fn a_gap_moves_a_wildcard_cron_start_to_its_end() {
    // 2026-03-29, Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z). 02:30 happens at 03:00
    // CEST for "30 * * * *" as for "30 2 * * *"; 03:30 CEST (01:30Z) follows.
    let w = [window(r#"{schedule: "30 * * * *", duration: 15m, timeZone: Europe/Berlin}"#)];
    let e = evaluate(&w, ts("2026-03-29T00:50:00Z"));
    assert!(!e.on);
    assert_eq!(
        e.next,
        Some(Span { start: ts("2026-03-29T01:00:00Z"), end: Some(ts("2026-03-29T01:15:00Z")) })
    );
    let e = evaluate(&w, ts("2026-03-29T01:05:00Z"));
    assert!(e.on);
    assert_eq!(e.until, Some(ts("2026-03-29T01:15:00Z")));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-03-29T01:30:00Z")));
    // Every time in the gap, and 03:00 itself, start one window at the transition.
    let w = [window(r#"{schedule: "*/20 * * * *", duration: 10m, timeZone: Europe/Berlin}"#)];
    let e = evaluate(&w, ts("2026-03-29T00:45:00Z"));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-03-29T01:00:00Z")));
    let e = evaluate(&w, ts("2026-03-29T01:05:00Z"));
    assert_eq!(e.until, Some(ts("2026-03-29T01:10:00Z")));
    assert_eq!(e.next.map(|s| s.start), Some(ts("2026-03-29T01:20:00Z")));
}
