//! Where the pod is in its life, as the data plane needs to know it.
//!
//! - **Stopping**: the kubelet has called the app container's `preStop` hook (the sidecar's
//!   `/prestop`): the pod is on its way out, its endpoint being withdrawn. Responses to
//!   HTTP/1.1 clients close their connection and HTTP/2 connections get GOAWAY, so that
//!   clients reconnect elsewhere; everything is still accepted and served; an app that is
//!   gone is answered 503 `app_stopping`, not 502, since it is being replaced, not broken.
//! - **Draining**: the sidecar itself got SIGTERM, which the kubelet sends a native sidecar
//!   only once the app has exited. It is stopping too, and stops accepting.

use std::sync::Arc;

use super::latch::Latch;

#[derive(Debug, Default)]
pub struct Lifecycle {
    stopping: Latch,
    draining: Arc<Latch>,
}

impl Lifecycle {
    /// The pod is stopping (idempotent: the kubelet delivers hooks at least once).
    pub fn begin_stopping(&self) {
        if !self.stopping.is_started() {
            tracing::info!("the pod is stopping: clients are asked to reconnect elsewhere");
        }
        self.stopping.start();
    }

    /// Whether the pod is stopping, whichever way the sidecar learnt it.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_started() || self.draining.is_started()
    }

    /// Resolves once the pod is stopping.
    pub(super) async fn stopping(&self) {
        tokio::select! {
            () = self.stopping.started() => {}
            () = self.draining.started() => {}
        }
    }

    /// The word that the sidecar drains, which the server gives and its connections hear.
    pub(super) fn draining(&self) -> &Arc<Latch> {
        &self.draining
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn draining_is_stopping_too() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_stopping());
        lifecycle.draining().start();
        assert!(lifecycle.is_stopping());
        tokio::time::timeout(Duration::from_secs(5), lifecycle.stopping()).await.unwrap();
    }

    #[tokio::test]
    async fn the_hook_makes_the_pod_stopping_once_and_for_all() {
        let lifecycle = Arc::new(Lifecycle::default());
        let waiter = tokio::spawn({
            let lifecycle = lifecycle.clone();
            async move { lifecycle.stopping().await }
        });
        lifecycle.begin_stopping();
        lifecycle.begin_stopping();
        assert!(lifecycle.is_stopping());
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
