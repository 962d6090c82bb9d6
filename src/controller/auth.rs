//! Who is asking for a pod's config: the sidecar presents its pod's projected ServiceAccount
//! token (audience `portcullis`), and the API server, through TokenReview, says whose it is.
//! A token is good for exactly the pod it is bound to.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

use super::index::ObjectKey;

/// The audience a sidecar's projected token must carry.
pub const AUDIENCE: &str = "portcullis";
/// The key under which the API server names the pod a token is bound to.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// TokenReviews in flight at once. When a restarted controller is met by every sidecar,
/// each review is a request to the API server, and over HTTP/1.1 each one in flight is a
/// connection of its own: hundreds of them, left open, after every restart.
const REVIEWS_AT_ONCE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token was not accepted: {0}")]
    Unauthenticated(String),
    #[error("the token belongs to {0}, not to this pod")]
    Forbidden(String),
    #[error("the token could not be reviewed: {0}")]
    Unavailable(#[from] kube::Error),
}

impl AuthError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::Missing | AuthError::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => http::StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    reviews: Api<TokenReview>,
    at_once: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Authenticator {
    pub fn new(client: kube::Client) -> Self {
        let at_once = std::sync::Arc::new(tokio::sync::Semaphore::new(REVIEWS_AT_ONCE));
        Authenticator { reviews: Api::all(client), at_once }
    }

    /// Succeeds only for a valid token, with our audience, bound to `pod`.
    pub async fn check(&self, token: &str, pod: &ObjectKey) -> Result<(), AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![AUDIENCE.to_owned()]),
            },
            ..TokenReview::default()
        };
        let turn = self.at_once.acquire().await.expect("the semaphore is never closed");
        let status =
            self.reviews.create(&PostParams::default(), &review).await?.status.unwrap_or_default();
        drop(turn);
        if status.authenticated != Some(true) {
            return Err(AuthError::Unauthenticated(
                status.error.unwrap_or_else(|| "not authenticated".into()),
            ));
        }
        if let Some(audiences) = &status.audiences
            && !audiences.iter().any(|a| a == AUDIENCE)
        {
            return Err(AuthError::Unauthenticated(format!("audience is not {AUDIENCE}")));
        }
        let user = status.user.unwrap_or_default();
        let bound_pod = user
            .extra
            .as_ref()
            .and_then(|extra| extra.get(POD_NAME_EXTRA))
            .and_then(|names| names.first())
            .cloned();
        // system:serviceaccount:<namespace>:<name>
        let namespace = user
            .username
            .as_deref()
            .and_then(|u| u.strip_prefix("system:serviceaccount:"))
            .and_then(|rest| rest.split(':').next());
        match (namespace, bound_pod) {
            (Some(ns), Some(name)) if ns == pod.namespace && name == pod.name => Ok(()),
            (ns, Some(name)) => Err(AuthError::Forbidden(format!("{}/{name}", ns.unwrap_or("?")))),
            (_, None) => Err(AuthError::Forbidden("a token not bound to a pod".into())),
        }
    }
}
