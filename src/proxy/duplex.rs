//! What the two bodies of one exchange with a request body tell each other, for streams
//! that flow both ways at once (gRPC's client, server and bidirectional streams, uploads
//! answered as they are read):
//!
//! - when each direction last carried a frame, so that `timeouts.idle` counts silence in
//!   both directions together, as Envoy's stream idle timeout does: a subscription whose
//!   client listens while the app speaks is not idle;
//! - when the request has been sent whole, where the wait for the response headers
//!   (`timeouts.responseHeaders`) begins, as Envoy's route timeout and nginx's
//!   `proxy_read_timeout` count: an upload still going is not a slow app.
//!
//! Requests without a body have none of this: nothing to share, nothing allocated.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A direction's state: unknown (not started, or ended), flowing, or silent since a moment
/// (milliseconds since the exchange began, plus one).
const UNKNOWN: u64 = 0;
const FLOWING: u64 = u64::MAX;

/// One direction of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug)]
pub struct Duplex {
    began: Instant,
    request: AtomicU64,
    response: AtomicU64,
    sent: AtomicBool,
    sent_notify: Notify,
}

impl Duplex {
    pub fn new() -> Self {
        Duplex {
            began: Instant::now(),
            request: AtomicU64::new(UNKNOWN),
            response: AtomicU64::new(UNKNOWN),
            sent: AtomicBool::new(false),
            sent_notify: Notify::new(),
        }
    }

    fn side(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    /// `direction` has just carried a frame (no clock read: this is once per frame).
    pub fn flowing(&self, direction: Direction) {
        self.side(direction).store(FLOWING, Ordering::Relaxed);
    }

    /// `direction` has had nothing to carry since `since`.
    pub fn silent_since(&self, direction: Direction, since: Instant) {
        let millis = since.saturating_duration_since(self.began).as_millis();
        let encoded = u64::try_from(millis).unwrap_or(FLOWING - 2).min(FLOWING - 2) + 1;
        self.side(direction).store(encoded, Ordering::Relaxed);
    }

    /// `direction` is over: its silence no longer says anything about the other's.
    pub fn ended(&self, direction: Direction) {
        self.side(direction).store(UNKNOWN, Ordering::Relaxed);
        if direction == Direction::Request {
            self.sent.store(true, Ordering::Release);
            self.sent_notify.notify_one();
        }
    }

    /// The last moment `direction` is known to have been carrying frames: now while it
    /// flows, the start of its silence while it waits, none before it starts or once over.
    pub fn active_at(&self, direction: Direction) -> Option<Instant> {
        match self.side(direction).load(Ordering::Relaxed) {
            UNKNOWN => None,
            FLOWING => Some(Instant::now()),
            millis => Some(self.began + Duration::from_millis(millis - 1)),
        }
    }

    /// Resolves once the request has been sent whole (its body ended).
    pub async fn request_sent(&self) {
        // notify_one keeps a permit when nobody waits yet, so the end is never missed.
        while !self.sent.load(Ordering::Acquire) {
            self.sent_notify.notified().await;
        }
    }
}

impl Default for Duplex {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_direction_says_when_it_was_last_active() {
        let duplex = Duplex::new();
        assert_eq!(duplex.active_at(Direction::Response), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        let quiet_from = Instant::now();
        duplex.silent_since(Direction::Response, quiet_from);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(duplex.active_at(Direction::Response), Some(quiet_from));
        duplex.flowing(Direction::Response);
        assert_eq!(duplex.active_at(Direction::Response), Some(Instant::now()));
        duplex.ended(Direction::Response);
        assert_eq!(duplex.active_at(Direction::Response), None);
        assert_eq!(duplex.active_at(Direction::Request), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_is_sent_when_its_body_ends_whoever_waits_first() {
        let duplex = std::sync::Arc::new(Duplex::new());
        let waiter = tokio::spawn({
            let duplex = duplex.clone();
            async move { duplex.request_sent().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        duplex.ended(Direction::Response);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the response's end says nothing of the request");
        duplex.ended(Direction::Request);
        waiter.await.unwrap();
        // And when it ended before anyone waited.
        duplex.request_sent().await;
    }
}
