//! A future with an optional deadline, as one type: `match`ing between `timeout(f)` and
//! `f` would hold two copies of `f` in the request's future, and that future is moved on
//! every request.

use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The deadline passed first.
#[derive(Debug)]
pub struct Elapsed;

pin_project! {
    pub struct Deadline<F> {
        #[pin]
        fut: F,
        // Held in place, not boxed: an allocation per request costs more than the bytes
        // it would keep out of the futures that hold this one.
        #[pin]
        sleep: Option<Sleep>,
    }
}

/// `fut`, or `Elapsed` if `at` passes first; with no deadline, `fut` alone.
pub fn with_deadline<F: Future>(fut: F, at: Option<Instant>) -> Deadline<F> {
    Deadline { fut, sleep: at.map(tokio::time::sleep_until) }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(Elapsed)),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn passes_through_or_elapses() {
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(with_deadline(async { 7 }, Some(soon)).await.ok(), Some(7));
        assert_eq!(with_deadline(async { 7 }, None).await.ok(), Some(7));
        let never = std::future::pending::<()>();
        assert!(with_deadline(never, Some(soon)).await.is_err());
        assert_eq!(Instant::now(), soon);
    }
}
