//! `GET /prestop`: the kubelet's call from the app container's `preStop` hook, which the
//! injector adds. It tells the sidecar that the pod is stopping (see
//! `crate::proxy::Lifecycle`) and holds the app's stop for `--stop-delay`: the kubelet
//! sends the app SIGTERM only once the hook has been answered, and by then the pod's
//! endpoint has been withdrawn from every Service, so the app stops with no traffic left.
//!
//! The admin port is reachable from any pod of the cluster (the kubelet probes it), so the
//! call must carry the pod's own token in `Portcullis-Stop-Token` (the injector writes it
//! into the hook and into the sidecar's `PORTCULLIS_STOP_TOKEN`); without a token set,
//! only loopback clients may call it, as when the sidecar runs on its own.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use super::reply::reply;
use crate::maintenance::Bypass;
use crate::proxy::Lifecycle;

/// The header the hook's token travels in.
pub const TOKEN_HEADER: &str = "portcullis-stop-token";

/// What `/prestop` needs; shared by every call.
pub struct StopHook {
    lifecycle: Arc<Lifecycle>,
    delay: Duration,
    /// The token's digest, compared in constant time.
    token: Option<Bypass>,
    /// The first call: hooks are delivered at least once, and a second call must not hold
    /// the app longer than the first.
    first: OnceLock<Instant>,
}

impl StopHook {
    pub fn new(lifecycle: Arc<Lifecycle>, delay: Duration, token: Option<&str>) -> Self {
        let header = HeaderName::from_static(TOKEN_HEADER);
        let token = token.filter(|t| !t.is_empty()).map(|t| Bypass::new(header, t.as_bytes()));
        StopHook { lifecycle, delay, token, first: OnceLock::new() }
    }

    /// Whether this caller may say the pod is stopping.
    fn allows(&self, headers: &HeaderMap, local: bool) -> bool {
        match &self.token {
            Some(token) => token.admits(headers),
            None => local,
        }
    }

    /// The answer to one call: at once when refused, else once the delay has passed since
    /// the first call.
    pub async fn call(&self, headers: &HeaderMap, local: bool) -> Response<Full<Bytes>> {
        if !self.allows(headers, local) {
            let message = if self.token.is_some() {
                "/prestop needs the pod's stop token in Portcullis-Stop-Token\n"
            } else {
                "/prestop is answered to loopback clients only when no stop token is set\n"
            };
            tracing::warn!("/prestop refused: no valid stop token");
            return reply(StatusCode::FORBIDDEN, "text/plain", message.into());
        }
        self.lifecycle.begin_stopping();
        let first = *self.first.get_or_init(Instant::now);
        tokio::time::sleep_until(first + self.delay).await;
        tracing::info!(delay = ?self.delay, "preStop answered: the app may stop now");
        reply(StatusCode::OK, "text/plain", "stopping: the app may stop now\n".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, token.parse().unwrap());
        headers
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_with_the_token_stops_the_pod_and_is_answered_after_the_delay() {
        let lifecycle = Arc::new(Lifecycle::default());
        let hook =
            Arc::new(StopHook::new(lifecycle.clone(), Duration::from_secs(5), Some("s3cr3t")));
        let started = Instant::now();
        let first = tokio::spawn({
            let hook = hook.clone();
            async move { hook.call(&with_token("s3cr3t"), false).await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(lifecycle.is_stopping());
        assert!(!first.is_finished());
        // Delivered again: answered when the first is, not 5 s after this one.
        let again = hook.call(&with_token("s3cr3t"), false).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_the_token_changes_nothing() {
        let lifecycle = Arc::new(Lifecycle::default());
        let hook = StopHook::new(lifecycle.clone(), Duration::from_secs(5), Some("s3cr3t"));
        for (headers, local) in [(HeaderMap::new(), true), (with_token("guess"), false)] {
            let refused = hook.call(&headers, local).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
        assert!(!lifecycle.is_stopping());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_token_only_the_pod_itself_may_call() {
        let lifecycle = Arc::new(Lifecycle::default());
        let hook = StopHook::new(lifecycle.clone(), Duration::ZERO, None);
        assert_eq!(hook.call(&HeaderMap::new(), false).await.status(), StatusCode::FORBIDDEN);
        assert!(!lifecycle.is_stopping());
        assert_eq!(hook.call(&HeaderMap::new(), true).await.status(), StatusCode::OK);
        assert!(lifecycle.is_stopping());
    }
}
