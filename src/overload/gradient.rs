//! The adaptive in-flight limit: a gradient controller in the manner of Netflix's
//! concurrency-limits Gradient and Envoy's adaptive concurrency filter.
//!
//! Why a gradient rather than AIMD: AIMD only learns that latency crossed a threshold and
//! moves by fixed steps, so it oscillates around the knee; the gradient compares the latency
//! of recent requests with the best latency the app has shown, and moves the limit in
//! proportion, so it falls fast when the app slows down and climbs back as it recovers.
//!
//! Every interval (100 ms, with at least a few samples): `gradient = clamp(1.1 × minRtt /
//! sampleRtt, 0.5, 1.5)`, `limit = clamp(limit × gradient + √limit, minLimit, maxLimit)`. The
//! sample is the median latency of the interval; `minRtt` is the least sample of the last
//! 30 s, so that it follows an app whose best latency has changed for good.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(100);
const MIN_SAMPLES: usize = 5;
const MIN_RTT_WINDOW: usize = 300; // intervals: 30 s
const TOLERANCE: f64 = 1.1;

#[derive(Clone, Debug)]
pub struct Gradient {
    limit: f64,
    min_limit: f64,
    max_limit: f64,
    samples: Vec<Duration>,
    interval_started: Option<Instant>,
    recent_medians: VecDeque<Duration>,
}

impl Gradient {
    /// Starts in the middle of the road: the geometric mean of the bounds.
    pub fn new(min_limit: u32, max_limit: u32) -> Self {
        let start = (f64::from(min_limit) * f64::from(max_limit)).sqrt();
        Gradient {
            limit: start.clamp(f64::from(min_limit), f64::from(max_limit)),
            min_limit: f64::from(min_limit),
            max_limit: f64::from(max_limit),
            samples: Vec::new(),
            interval_started: None,
            recent_medians: VecDeque::new(),
        }
    }

    pub fn with_bounds(mut self, min_limit: u32, max_limit: u32) -> Self {
        self.min_limit = f64::from(min_limit);
        self.max_limit = f64::from(max_limit);
        self.limit = self.limit.clamp(self.min_limit, self.max_limit);
        self
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Records one request's latency; returns the new limit when an interval closes.
    pub fn sample(&mut self, latency: Duration, now: Instant) -> Option<usize> {
        self.samples.push(latency);
        let started = *self.interval_started.get_or_insert(now);
        if now.duration_since(started) < INTERVAL || self.samples.len() < MIN_SAMPLES {
            return None;
        }
        self.samples.sort_unstable();
        let median = self.samples[self.samples.len() / 2];
        self.samples.clear();
        self.interval_started = Some(now);
        if self.recent_medians.len() == MIN_RTT_WINDOW {
            self.recent_medians.pop_front();
        }
        self.recent_medians.push_back(median);
        let min_rtt = self.recent_medians.iter().min().copied().unwrap_or(median);
        let gradient =
            (TOLERANCE * min_rtt.as_secs_f64() / median.as_secs_f64().max(1e-6)).clamp(0.5, 1.5);
        self.limit =
            (self.limit * gradient + self.limit.sqrt()).clamp(self.min_limit, self.max_limit);
        Some(self.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `intervals` intervals of 10 samples at `latency` each.
    fn run(g: &mut Gradient, now: &mut Instant, latency: Duration, intervals: usize) -> usize {
        for _ in 0..intervals {
            for _ in 0..10 {
                g.sample(latency, *now);
                *now += Duration::from_millis(11);
            }
        }
        g.limit()
    }

    #[test]
    fn falls_when_the_app_slows_down_and_recovers_after() {
        let mut g = Gradient::new(1, 100);
        let mut now = Instant::now();
        let steady = run(&mut g, &mut now, Duration::from_millis(10), 50);
        assert_eq!(steady, 100, "a steady app earns the maximum");
        let slowed = run(&mut g, &mut now, Duration::from_millis(100), 20);
        assert!(slowed <= 5, "limit {slowed} did not fall");
        let recovered = run(&mut g, &mut now, Duration::from_millis(10), 50);
        assert_eq!(recovered, 100);
    }

    #[test]
    fn stays_within_bounds() {
        let mut g = Gradient::new(4, 20);
        let mut now = Instant::now();
        run(&mut g, &mut now, Duration::from_millis(5), 5);
        assert_eq!(run(&mut g, &mut now, Duration::from_secs(5), 50), 4);
        assert_eq!(run(&mut g, &mut now, Duration::from_millis(5), 50), 20);
    }
}
