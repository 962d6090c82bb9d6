//! Overload protection: at most `maxInFlight` requests at the app, a bounded FIFO queue in
//! front of them, and optionally a limit that follows the app's latency.

mod gradient;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use gradient::Gradient;

use crate::policy::Overload;

/// Why a request was shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// The limit was reached and the queue was full (or there is none).
    Overloaded,
    /// The request waited `queue.timeout` without getting a turn.
    QueueTimeout,
}

/// The in-flight limit, the queue before it, and the adaptive controller, kept across
/// config reloads so that requests in flight keep counting against the new limit.
pub struct Limiter {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    waiting: AtomicUsize,
}

struct State {
    generation: u64,
    settings: Option<Overload>,
    /// The limit as the semaphore knows it: permits handed out plus available plus owed.
    limit: usize,
    /// Permits to retire as requests finish, when the limit went down.
    owed: usize,
    gradient: Option<Gradient>,
}

/// A turn at the app; returning it frees the place for the next request.
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
    started: Instant,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            permits: Arc::new(Semaphore::new(0)),
            state: Mutex::new(State {
                generation: 0,
                settings: None,
                limit: 0,
                owed: 0,
                gradient: None,
            }),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Limiter {
    /// Takes a turn, waiting in the queue if the settings allow. `None` settings (no
    /// `maxInFlight`, no adaptive limit) admit everything at no cost.
    pub async fn admit(
        self: &Arc<Self>,
        generation: u64,
        settings: &Overload,
    ) -> Result<Option<Permit>, Shed> {
        if settings.max_in_flight == 0 && !settings.adaptive {
            return Ok(None);
        }
        self.configure(generation, settings);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _leave = Leave(&self.waiting);
                if queued >= settings.queue_size as usize {
                    return Err(Shed::Overloaded);
                }
                let acquire = self.permits.clone().acquire_owned();
                let acquired = match settings.queue_timeout {
                    Some(limit) => tokio::time::timeout(limit, acquire)
                        .await
                        .map_err(|_| Shed::QueueTimeout)?,
                    None => acquire.await,
                };
                acquired.map_err(|_| Shed::Overloaded)?
            }
        };
        Ok(Some(Permit { permit: Some(permit), limiter: self.clone(), started: Instant::now() }))
    }

    /// Requests waiting for a turn now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The in-flight limit in force now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows a new config: the limit moves, the adaptive controller starts or stops.
    fn configure(&self, generation: u64, settings: &Overload) {
        let mut state = self.lock();
        if state.generation == generation && state.settings.as_ref() == Some(settings) {
            return;
        }
        state.generation = generation;
        state.settings = Some(settings.clone());
        let target = if settings.adaptive {
            let gradient = state
                .gradient
                .take()
                .unwrap_or_else(|| Gradient::new(settings.min_limit, settings.max_limit))
                .with_bounds(settings.min_limit, settings.max_limit);
            let limit = gradient.limit();
            state.gradient = Some(gradient);
            limit
        } else {
            state.gradient = None;
            settings.max_in_flight as usize
        };
        self.resize(&mut state, target);
    }

    fn resize(&self, state: &mut State, target: usize) {
        if target > state.limit {
            let mut grow = target - state.limit;
            let repaid = grow.min(state.owed);
            state.owed -= repaid;
            grow -= repaid;
            self.permits.add_permits(grow);
        } else {
            let shrink = state.limit - target;
            let retired = self.permits.forget_permits(shrink);
            state.owed += shrink - retired;
        }
        state.limit = target;
    }

    fn release(&self, permit: OwnedSemaphorePermit, latency: Duration) {
        let mut state = self.lock();
        if let Some(gradient) = &mut state.gradient
            && let Some(target) = gradient.sample(latency, Instant::now())
        {
            self.resize(&mut state, target);
        }
        if state.owed > 0 {
            state.owed -= 1;
            permit.forget();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.limiter.release(permit, self.started.elapsed());
        }
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The Retry-After of an overload 503: the configured delay plus up to half of it again
/// (at least one second more), drawn uniformly, so that shed clients come back spread out
/// rather than in one wave. Whole seconds, at least 1.
pub fn jittered_retry_after(base: Option<Duration>) -> u64 {
    let base = base.map_or(1, |d| d.as_secs().max(1));
    let spread = (base / 2).max(1);
    base + fastrand::u64(0..=spread)
}

#[cfg(test)]
mod tests;
