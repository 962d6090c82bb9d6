//! When maintenance is on: the three forms of MaintenanceWindow, evaluated for an instant.
//!
//! Pure: every function takes the instant to judge, so schedules are tested without a
//! clock. Cron expressions are parsed and walked by `croner`; time zones come from the IANA
//! database bundled into the binary by `jiff`, so a container without /usr/share/zoneinfo
//! still knows them.
//!
//! Daylight saving time, for recurring windows: the cron expression is read in wall-clock
//! time of `timeZone`, and `duration` is elapsed time.
//! - A start in the spring-forward gap (02:30 on a day that jumps from 02:00 to 03:00)
//!   happens at the first instant after the gap, 03:00 new time, and lasts `duration`.
//! - A start in the fall-back overlap (01:30 on a day that repeats 01:00-02:00) happens once,
//!   at the first 01:30 (the earlier offset), and lasts `duration`.
//!
//! These rules hold for every expression, `*/5 * * * *` as much as `30 2 * * *`, so croner
//! only matches wall-clock times (it is asked about civil times, which have no gaps or
//! overlaps), and this module places them on the time line. croner's own zone handling would
//! run an interval or wildcard expression at both instants of a repeated wall-clock time and
//! drop its times in a gap.

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use crate::api::MaintenanceWindowSpec;
use crate::policy::InvalidField;

/// A span of maintenance; `end` is `None` while its end is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

impl Span {
    fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && self.end.is_none_or(|end| t < end)
    }
}

#[derive(Clone, Debug)]
enum Form {
    /// One-off, or open-ended: from `start` (or always) until `end` (or deleted).
    Fixed(Span),
    Recurring {
        cron: Box<Cron>,
        duration: SignedDuration,
        zone: TimeZone,
    },
    Suspended,
}

/// One window's schedule, checked and ready to evaluate.
#[derive(Clone, Debug)]
pub struct Schedule {
    form: Form,
}

/// Instants before this are never asked about; stands in for "since creation".
const EPOCH: Timestamp = Timestamp::UNIX_EPOCH;

impl Schedule {
    /// Checks a window's timing fields. `created` stands in for a missing `start` when the
    /// window has no `end` either ("active from creation").
    pub fn from_spec(
        spec: &MaintenanceWindowSpec,
        created: Timestamp,
    ) -> Result<Self, InvalidField> {
        if spec.suspend {
            return Ok(Schedule { form: Form::Suspended });
        }
        let start = spec.start.as_ref().map(|t| t.0);
        let end = spec.end.as_ref().map(|t| t.0);
        let Some(expr) = &spec.schedule else {
            if spec.duration.is_some() || spec.time_zone.is_some() {
                let field = if spec.duration.is_some() { "spec.duration" } else { "spec.timeZone" };
                return Err(InvalidField::new(field, "only meaningful with spec.schedule"));
            }
            if let (Some(start), Some(end)) = (start, end)
                && end <= start
            {
                return Err(InvalidField::new("spec.end", "must be after spec.start"));
            }
            let start = start.unwrap_or(if end.is_some() { EPOCH } else { created });
            return Ok(Schedule { form: Form::Fixed(Span { start, end }) });
        };
        if start.is_some() || end.is_some() {
            let field = if start.is_some() { "spec.start" } else { "spec.end" };
            return Err(InvalidField::new(field, "cannot be combined with spec.schedule"));
        }
        let cron = CronParser::builder().seconds(Seconds::Disallowed).build().parse(expr).map_err(
            |e| {
                InvalidField::new("spec.schedule", format!("invalid cron expression {expr:?}: {e}"))
            },
        )?;
        let duration = match spec.duration {
            Some(d) if !d.is_zero() => SignedDuration::try_from(d.as_std())
                .map_err(|_| InvalidField::new("spec.duration", "too long"))?,
            _ => {
                return Err(InvalidField::new(
                    "spec.duration",
                    "a schedule needs a positive duration",
                ));
            }
        };
        let zone_name = spec.time_zone.as_deref().unwrap_or("UTC");
        let zone = TimeZone::get(zone_name).map_err(|_| {
            InvalidField::new("spec.timeZone", format!("{zone_name:?} is not an IANA time zone"))
        })?;
        Ok(Schedule { form: Form::Recurring { cron: Box::new(cron), duration, zone } })
    }

    /// The span that contains `t`, if the window is on at `t`.
    pub fn active_at(&self, t: Timestamp) -> Option<Span> {
        match &self.form {
            Form::Suspended => None,
            Form::Fixed(span) => span.contains(t).then_some(*span),
            Form::Recurring { cron, duration, zone } => {
                // The latest start at or before `t` ends last among those before it.
                let wall = cron.find_previous_occurrence(&reached(zone, t), true).ok()?;
                let span = recurring_span(start_of(zone, wall)?, *duration)?;
                span.contains(t).then_some(span)
            }
        }
    }

    /// The first span that starts strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Span> {
        match &self.form {
            Form::Suspended => None,
            Form::Fixed(span) => (span.start > t).then_some(*span),
            Form::Recurring { cron, duration, zone } => {
                let wall = cron.find_next_occurrence(&reached(zone, t), false).ok()?;
                recurring_span(start_of(zone, wall)?, *duration)
            }
        }
    }

    /// The next instant after `t` at which this window turns on or off.
    fn next_boundary(&self, t: Timestamp) -> Option<Timestamp> {
        match self.active_at(t) {
            Some(span) => span.end,
            None => self.next_after(t).map(|s| s.start),
        }
    }
}

/// Where a start written for the wall-clock time `wall` happens: once, at the first instant
/// at which the clock of `zone` reads `wall` or later. That is the earlier offset in a
/// fall-back overlap, and the end of the gap (the transition) in a spring-forward gap.
///
/// It never decreases as `wall` grows, so the starts at or before an instant are those
/// written for the wall-clock times up to [`reached`] by then.
fn start_of(zone: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    match zone.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(wall).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(wall).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `wall` lies before the transition that skips it.
            let early = after.to_timestamp(wall).ok()?;
            zone.following(early).next().map(|transition| transition.timestamp())
        }
    }
}

/// The latest wall-clock time that the clock of `zone` has shown by `t`, to the second
/// (cron has no finer unit): the time at `t`, except after the clocks go back, while they
/// repeat times already shown, when it is the last time shown before they went back.
fn reached(zone: &TimeZone, t: Timestamp) -> DateTime {
    let mut latest = zone.to_datetime(t);
    // Offsets lie within 26 hours of UTC, so no transition sets the clock back by more than
    // 52 hours, and one longer ago cannot have left the clock ahead of where it is now. The
    // iterator yields transitions up to `t` itself (and one a nanosecond later, harmlessly:
    // the clock just before it reads the time at `t`).
    let horizon = t.checked_sub(SignedDuration::from_hours(52)).unwrap_or(Timestamp::MIN);
    let after_t = t.checked_add(SignedDuration::from_nanos(1)).unwrap_or(t);
    for transition in zone.preceding(after_t) {
        let at = transition.timestamp();
        if at < horizon {
            break;
        }
        if let Ok(just_before) = at.checked_sub(SignedDuration::from_nanos(1)) {
            latest = latest.max(zone.to_datetime(just_before));
        }
    }
    // Whole seconds: a cron time at or before 01:59:59.5 is one at or before 01:59:59, and
    // one after it is one after 01:59:59.
    latest.with().subsec_nanosecond(0).build().unwrap_or(latest)
}

fn recurring_span(start: Timestamp, duration: SignedDuration) -> Option<Span> {
    Some(Span { start, end: Some(start.checked_add(duration).ok()?) })
}

/// Maintenance for one pod at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Indices of the windows that are on now.
    pub active: Vec<usize>,
    /// Whether any window is on.
    pub on: bool,
    /// When the merged span of every overlapping or abutting window ends (`None`: unknown).
    pub until: Option<Timestamp>,
    /// The first window that starts after the merged span (or after now, when off).
    pub next: Option<Span>,
    /// The earliest instant at which any window turns on or off: judge again then.
    pub recheck_at: Option<Timestamp>,
}

/// Most merges followed before an end is called unknown (a window that recurs more often
/// than it lasts would otherwise never end).
const MAX_MERGES: usize = 1000;

/// Is maintenance on at `now`, until when, and when is the next one?
pub fn evaluate(schedules: &[Schedule], now: Timestamp) -> Evaluation {
    let spans: Vec<(usize, Span)> = schedules
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.active_at(now).map(|sp| (i, sp)))
        .collect();
    let recheck_at = schedules.iter().filter_map(|s| s.next_boundary(now)).min();
    if spans.is_empty() {
        let next = schedules.iter().filter_map(|s| s.next_after(now)).min_by_key(|s| s.start);
        return Evaluation { next, recheck_at, ..Evaluation::default() };
    }
    let mut until =
        spans.iter().map(|(_, s)| s.end).try_fold(now, |acc, end| end.map(|e| acc.max(e)));
    for _ in 0..MAX_MERGES {
        let Some(end) = until else { break };
        // A span that contains `end` starts at or before it: it overlaps or abuts.
        let mut later = schedules.iter().filter_map(|s| s.active_at(end)).map(|s| s.end);
        let extended = later.try_fold(end, |acc, e| e.map(|b| acc.max(b)));
        if extended == until {
            break;
        }
        until = extended;
    }
    if until.is_some_and(|end| schedules.iter().any(|s| s.active_at(end).is_some())) {
        until = None; // still merging after MAX_MERGES: no end in sight
    }
    let next = until
        .and_then(|end| schedules.iter().filter_map(|s| s.next_after(end)).min_by_key(|s| s.start));
    Evaluation {
        active: spans.iter().map(|(i, _)| *i).collect(),
        on: true,
        until,
        next,
        recheck_at,
    }
}

#[cfg(test)]
mod tests;
