//! A word given once and heard by everyone, now and to come: the server's to its
//! connections that it is shutting down (each finishes what it has under way and closes),
//! and the pod's that it is stopping (see `lifecycle`). A flag and a `Notify` rather than a
//! channel: every idle connection waits on one, and a `Notify`'s waiter is the smallest
//! there is.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Latch {
    given: AtomicBool,
    notify: Notify,
}

impl Latch {
    /// Gives the word, to every waiter now and to come.
    pub fn start(&self) {
        self.given.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_started(&self) -> bool {
        self.given.load(Ordering::Acquire)
    }

    /// Resolves once the word is given, whether before or after this call.
    pub async fn started(&self) {
        // Made before the flag is read: a start between the two still wakes it.
        let notified = self.notify.notified();
        if self.is_started() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_the_start_are_told() {
        let drain = Arc::new(Latch::default());
        let before = tokio::spawn({
            let drain = drain.clone();
            async move { drain.started().await }
        });
        tokio::task::yield_now().await;
        assert!(!drain.is_started());
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), before).await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(5), drain.started()).await.unwrap();
    }
}
