//! The clocks of a client connection while it waits for a request head, on the one timer
//! that hyper runs there (its `header_read_timeout`):
//!
//! - the **header timeout**: a head must arrive whole within it of its first byte (and the
//!   first request within it of the connection's start), so that a client trickling a head
//!   (slowloris) is cut off;
//! - the **idle timeout**: a keep-alive connection may then wait this long, without a byte,
//!   for its next request, as Envoy's and nginx's idle timeouts let it; longer than the
//!   idle timeouts of the load balancers in front, so that they close first;
//! - **putting away**: a keep-alive connection silent for `PUT_AWAY_AFTER` is marked due to
//!   give up hyper's connection and its buffers (see `client_conn`): a busy client's
//!   connection waits that long; others are put away as soon as they are idle.
//!
//! hyper starts its timer whenever it waits for a head, between keep-alive requests too;
//! left alone it would close every idle connection at the header timeout. This timer tells
//! the two waits apart by the bytes the connection has read since the wait began. A head
//! whose first bytes were already buffered when the wait began (pipelining) waits as idle
//! until more of it arrives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use pin_project_lite::pin_project;

use super::framing::Framing;

/// How long a busy client's keep-alive connection waits for its next request before it is
/// put away; a client whose next request came sooner than this after its connection was put
/// away is busy.
pub const PUT_AWAY_AFTER: Duration = Duration::from_millis(100);

/// How long a client connection may take, in two cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From a head's first byte (or the connection's start) to its end.
    pub header: Duration,
    /// Between keep-alive requests, with not a byte sent.
    pub idle: Duration,
}

impl ClientTimeouts {
    /// How long a connection that has served `served` requests may wait for the next one
    /// without a byte: before the first, the header timeout; then the idle timeout.
    pub fn wait_for(&self, served: u64) -> Duration {
        if served == 0 { self.header } else { self.idle }
    }
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts { header: Duration::from_secs(30), idle: Duration::from_secs(3600) }
    }
}

/// One connection's timer: it reads that connection's byte count.
#[derive(Clone)]
pub struct HeadTimer {
    timeouts: ClientTimeouts,
    framing: Arc<Framing>,
}

impl HeadTimer {
    pub fn new(timeouts: ClientTimeouts, framing: Arc<Framing>) -> Self {
        HeadTimer { timeouts, framing }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// hyper asks for `now + header timeout` when it starts waiting for a head.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let since = deadline.checked_sub(self.timeouts.header).unwrap_or(deadline);
        // Before its first request a connection has no idle time to spend.
        let served = self.framing.served();
        let first = served == 0;
        let wait = self.timeouts.wait_for(served);
        let deadline = tokio::time::Instant::from(since + wait);
        let put_away = (!first).then(|| tokio::time::Instant::from(since + PUT_AWAY_AFTER));
        let put_away = put_away.filter(|at| *at < deadline);
        Box::pin(HeadSleep {
            sleep: tokio::time::sleep_until(put_away.unwrap_or(deadline)),
            deadline,
            put_away,
            framing: self.framing.clone(),
            baseline: self.framing.bytes_read(),
            header: self.timeouts.header,
            head_started: first,
        })
    }

    // tokio's clock, so that tests on a paused clock see the same time as hyper.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

pin_project! {
    // The tokio timer lives inside: hyper boxes this, and one allocation per head is enough.
    struct HeadSleep {
        #[pin]
        sleep: tokio::time::Sleep,
        // When the wait ends: the idle timeout, or the header timeout once a head began.
        deadline: tokio::time::Instant,
        // When the connection is due to be put away, until then; the timer fires there
        // first.
        put_away: Option<tokio::time::Instant>,
        framing: Arc<Framing>,
        // Bytes the connection had read when the wait began.
        baseline: u64,
        header: Duration,
        head_started: bool,
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // hyper polls this right after each read of the connection, so the first byte of
        // a head is seen as it arrives.
        if !*this.head_started && this.framing.bytes_read() != *this.baseline {
            *this.head_started = true;
            *this.deadline = (*this.deadline).min(tokio::time::Instant::now() + *this.header);
            *this.put_away = None;
            this.sleep.as_mut().reset(*this.deadline);
        }
        ready!(this.sleep.as_mut().poll(cx));
        if this.put_away.take().is_some() {
            this.framing.activity.put_away_due();
            this.sleep.as_mut().reset(*this.deadline);
            ready!(this.sleep.as_mut().poll(cx));
        }
        // A head under way is held back from hyper and timed by the connection's reader,
        // which answers 408 (see client_io); hyper must not close the connection first.
        if this.framing.partial_head() {
            let later = tokio::time::Instant::now() + *this.header;
            this.sleep.as_mut().reset(later);
            return this.sleep.poll(cx);
        }
        Poll::Ready(())
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    const TIMEOUTS: ClientTimeouts =
        ClientTimeouts { header: Duration::from_secs(30), idle: Duration::from_secs(600) };

    /// A connection that has served one request already.
    fn after_a_request() -> Arc<Framing> {
        let framing = Arc::new(Framing::default());
        framing.next_request();
        framing
    }

    async fn fired(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        tokio::task::yield_now().await;
        sleep.as_mut().now_or_never().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_waits_the_idle_timeout() {
        let framing = after_a_request();
        let timer = HeadTimer::new(TIMEOUTS, framing);
        let mut sleep = timer.sleep(TIMEOUTS.header);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!fired(&mut sleep).await, "not at the header timeout");
        tokio::time::advance(Duration::from_secs(568)).await;
        assert!(!fired(&mut sleep).await);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fired(&mut sleep).await, "at the idle timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_must_end_within_the_header_timeout_of_its_first_byte() {
        let framing = after_a_request();
        let timer = HeadTimer::new(TIMEOUTS, framing.clone());
        let mut sleep = timer.sleep(TIMEOUTS.header);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(!fired(&mut sleep).await);
        framing.count_read(3); // "GET" trickles in
        assert!(!fired(&mut sleep).await);
        framing.count_read(2);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!fired(&mut sleep).await, "more bytes do not extend it");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fired(&mut sleep).await, "30 s after the first byte");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_keep_alive_connection_is_due_to_be_put_away_and_waits_on() {
        let framing = after_a_request();
        let timer = HeadTimer::new(TIMEOUTS, framing.clone());
        let mut sleep = timer.sleep(TIMEOUTS.header);
        tokio::time::advance(PUT_AWAY_AFTER - Duration::from_millis(1)).await;
        assert!(!fired(&mut sleep).await);
        assert!(!framing.activity.is_put_away_due());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!fired(&mut sleep).await, "not a timeout");
        assert!(framing.activity.is_put_away_due());
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(fired(&mut sleep).await, "the idle timeout still holds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_is_not_due_to_be_put_away() {
        let framing = after_a_request();
        let timer = HeadTimer::new(TIMEOUTS, framing.clone());
        let mut sleep = timer.sleep(TIMEOUTS.header);
        framing.count_read(3);
        assert!(!fired(&mut sleep).await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!fired(&mut sleep).await);
        assert!(!framing.activity.is_put_away_due(), "a head is under way");
        let first = HeadTimer::new(TIMEOUTS, Arc::new(Framing::default()));
        let mut sleep = first.sleep(TIMEOUTS.header);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!fired(&mut sleep).await);
        assert!(!framing.activity.is_put_away_due(), "nor one before its first request");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_gets_the_header_timeout_from_the_start() {
        let timer = HeadTimer::new(TIMEOUTS, Arc::new(Framing::default()));
        let mut sleep = timer.sleep(TIMEOUTS.header);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!fired(&mut sleep).await);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fired(&mut sleep).await, "a connection that never sends is not idle");
    }
}
