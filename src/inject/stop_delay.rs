//! How long the sidecar holds the app's stop (`--stop-delay`): the time the endpoint
//! controllers and every node's proxy take to stop sending the pod traffic. The config's
//! `stopDelay`, or the pod's `portcullis.dev/stop-delay` annotation.
//!
//! The delay comes out of the pod's `terminationGracePeriodSeconds` (30 when unset): the
//! kubelet kills the app when the grace period ends, preStop hook or not. So an annotation
//! at or above the grace period is refused (its author asked for what cannot be), while
//! the config's default at or above it is lowered, for that pod, to half the grace period
//! in whole seconds (the config cannot know every pod, and the pod asked for nothing).

use std::collections::BTreeMap;

use crate::api::Duration;

use super::names::STOP_DELAY_ANNOTATION;

/// What the kubelet gives a pod whose spec does not say.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopDelay {
    pub delay: Duration,
    pub source: DelaySource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelaySource {
    /// The config's `stopDelay`.
    Config,
    /// The pod's `portcullis.dev/stop-delay`.
    Annotation,
    /// The config's, at or above the pod's grace period, lowered to half of it.
    Lowered { configured: Duration, grace_seconds: i64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StopDelayError {
    #[error("{STOP_DELAY_ANNOTATION}: {0:?} is not a duration (e.g. 5s, 1m30s, 0s)")]
    NotADuration(String),
    #[error(
        "{STOP_DELAY_ANNOTATION}: {delay} is not less than the pod's \
         terminationGracePeriodSeconds ({grace_seconds}), which would leave the app no time to \
         stop"
    )]
    NotUnderGrace { delay: Duration, grace_seconds: i64 },
}

/// The delay for a pod with `annotations` and a grace period of `grace_seconds`, the
/// config saying `configured`.
pub fn stop_delay(
    annotations: &BTreeMap<String, String>,
    configured: Duration,
    grace_seconds: i64,
) -> Result<StopDelay, StopDelayError> {
    let grace = Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0));
    if let Some(value) = annotations.get(STOP_DELAY_ANNOTATION).map(|v| v.trim()) {
        let delay: Duration =
            value.parse().map_err(|_| StopDelayError::NotADuration(value.to_owned()))?;
        if grace_seconds <= 0 || delay >= grace {
            return Err(StopDelayError::NotUnderGrace { delay, grace_seconds });
        }
        return Ok(StopDelay { delay, source: DelaySource::Annotation });
    }
    if !configured.is_zero() && configured >= grace {
        let half = u64::try_from(grace_seconds / 2).unwrap_or(0);
        let source = DelaySource::Lowered { configured, grace_seconds };
        return Ok(StopDelay { delay: Duration::from_secs(half), source });
    }
    Ok(StopDelay { delay: configured, source: DelaySource::Config })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(STOP_DELAY_ANNOTATION.to_owned(), value.to_owned())])
    }

    const FIVE: Duration = Duration::from_secs(5);

    #[test]
    fn the_config_says_unless_the_annotation_does() {
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, 30),
            Ok(StopDelay { delay: FIVE, source: DelaySource::Config })
        );
        assert_eq!(
            stop_delay(&annotated(" 1m30s "), FIVE, 120),
            Ok(StopDelay { delay: Duration::from_secs(90), source: DelaySource::Annotation })
        );
        assert_eq!(
            stop_delay(&annotated("0s"), FIVE, 30),
            Ok(StopDelay { delay: Duration::ZERO, source: DelaySource::Annotation })
        );
    }

    #[test]
    fn an_annotation_that_is_no_duration_is_refused() {
        for value in ["5", "soon", "-5s", ""] {
            let error = stop_delay(&annotated(value), FIVE, 30).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "portcullis.dev/stop-delay: {value:?} is not a duration (e.g. 5s, 1m30s, 0s)"
                )
            );
        }
    }

    #[test]
    fn an_annotation_must_leave_the_app_time_to_stop() {
        let error = stop_delay(&annotated("30s"), FIVE, 30).unwrap_err();
        assert_eq!(
            error.to_string(),
            "portcullis.dev/stop-delay: 30s is not less than the pod's \
             terminationGracePeriodSeconds (30), which would leave the app no time to stop"
        );
        assert_eq!(
            stop_delay(&annotated("29s999ms"), FIVE, 30).map(|d| d.delay),
            Ok(Duration::from_millis(29_999))
        );
        // No grace period at all: no delay fits, not even none.
        assert_eq!(
            stop_delay(&annotated("0s"), FIVE, 0),
            Err(StopDelayError::NotUnderGrace { delay: Duration::ZERO, grace_seconds: 0 })
        );
    }

    #[test]
    fn the_configs_default_is_lowered_to_half_a_short_grace_period() {
        let lowered = |grace_seconds| DelaySource::Lowered { configured: FIVE, grace_seconds };
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, 5),
            Ok(StopDelay { delay: Duration::from_secs(2), source: lowered(5) })
        );
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, 1),
            Ok(StopDelay { delay: Duration::ZERO, source: lowered(1) })
        );
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, 0),
            Ok(StopDelay { delay: Duration::ZERO, source: lowered(0) })
        );
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, -3),
            Ok(StopDelay { delay: Duration::ZERO, source: lowered(-3) })
        );
        assert_eq!(
            stop_delay(&BTreeMap::new(), FIVE, 6).map(|d| d.source),
            Ok(DelaySource::Config)
        );
        // None configured: nothing to lower.
        assert_eq!(
            stop_delay(&BTreeMap::new(), Duration::ZERO, 0),
            Ok(StopDelay { delay: Duration::ZERO, source: DelaySource::Config })
        );
    }
}
