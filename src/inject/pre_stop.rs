//! The app container's preStop hook: `GET /prestop` on the sidecar's admin port, with the
//! pod's stop token. The kubelet runs it before it sends the app SIGTERM, and the sidecar
//! answers once its stop delay has passed (marking the pod stopping at once): so the app
//! goes on serving until traffic has moved away from the pod. A native sidecar only gets
//! SIGTERM once the app has exited, too late to learn anything in time.
//!
//! Added even with a delay of 0s, as the call still tells the sidecar that the pod is
//! stopping. Not added when the app container has a preStop of its own (of any kind): a
//! container has one, and the app's own is kept as it is. Not added either when the pod's
//! grace period is 0 (or less): the kubelet runs no preStop hook without one.

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, HTTPHeader, Lifecycle, LifecycleHandler,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::names::{PRESTOP_PATH, STOP_TOKEN_HEADER};
use super::stop_token::StopToken;

/// What became of the app container's preStop hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreStop {
    Added,
    /// The app's own, untouched: the sidecar learns that the pod is stopping only when it
    /// gets SIGTERM itself, after the app has exited.
    Kept,
    /// None added: `terminationGracePeriodSeconds` is not above 0.
    NoGracePeriod,
}

impl PreStop {
    /// How the `portcullis.dev/injected` annotation says it.
    pub fn as_str(self) -> &'static str {
        match self {
            PreStop::Added => "added",
            PreStop::Kept => "kept",
            PreStop::NoGracePeriod => "none",
        }
    }
}

/// The hook: the admin port as a number, so that no port name of the pod matters.
pub fn handler(admin_port: u16, token: &StopToken) -> LifecycleHandler {
    LifecycleHandler {
        http_get: Some(HTTPGetAction {
            path: Some(PRESTOP_PATH.to_owned()),
            port: IntOrString::Int(admin_port.into()),
            http_headers: Some(vec![HTTPHeader {
                name: STOP_TOKEN_HEADER.to_owned(),
                value: token.as_str().to_owned(),
            }]),
            ..HTTPGetAction::default()
        }),
        ..LifecycleHandler::default()
    }
}

/// What to do with `app`'s preStop: the decision, and the operation that adds the hook as
/// (path within the container, value); one `add`, of `lifecycle` when the container has
/// none, else of `lifecycle/preStop`, so that a `postStart` stays as it is.
pub(super) fn pre_stop(
    app: &Container,
    grace_seconds: i64,
    admin_port: u16,
    token: &StopToken,
) -> (PreStop, Option<(&'static [&'static str], Value)>) {
    let lifecycle = app.lifecycle.as_ref();
    if lifecycle.is_some_and(|l| l.pre_stop.is_some()) {
        return (PreStop::Kept, None);
    }
    if grace_seconds <= 0 {
        return (PreStop::NoGracePeriod, None);
    }
    let hook = handler(admin_port, token);
    let op = match lifecycle {
        None => {
            let lifecycle = Lifecycle { pre_stop: Some(hook), ..Lifecycle::default() };
            (&["lifecycle"][..], to_json(&lifecycle))
        }
        Some(_) => (&["lifecycle", "preStop"][..], to_json(&hook)),
    };
    (PreStop::Added, Some(op))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("k8s-openapi types serialize to JSON")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TOKEN: &str = "00112233445566778899aabbccddeeff";

    fn token() -> StopToken {
        TOKEN.parse().unwrap()
    }

    fn container(value: Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    fn hook() -> Value {
        json!({"httpGet": {"path": "/prestop", "port": 9901,
            "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": TOKEN}]}})
    }

    #[test]
    fn a_container_without_a_lifecycle_gets_one() {
        let app = container(json!({"name": "web"}));
        let (decision, op) = pre_stop(&app, 30, 9901, &token());
        assert_eq!(decision, PreStop::Added);
        assert_eq!(op, Some((&["lifecycle"][..], json!({"preStop": hook()}))));
    }

    #[test]
    fn a_post_start_stays_beside_the_hook() {
        let app = container(json!({"name": "web",
            "lifecycle": {"postStart": {"exec": {"command": ["warm"]}}}}));
        let (decision, op) = pre_stop(&app, 30, 9901, &token());
        assert_eq!(decision, PreStop::Added);
        assert_eq!(op, Some((&["lifecycle", "preStop"][..], hook())));
        // An empty lifecycle is a lifecycle: the hook goes in it.
        let app = container(json!({"name": "web", "lifecycle": {}}));
        assert_eq!(pre_stop(&app, 30, 9901, &token()).1.unwrap().0, ["lifecycle", "preStop"]);
    }

    #[test]
    fn the_apps_own_pre_stop_is_kept_whatever_it_is() {
        for own in [
            json!({"exec": {"command": ["drain"]}}),
            json!({"sleep": {"seconds": 5}}),
            json!({"httpGet": {"path": "/drain", "port": 8080}}),
        ] {
            let app = container(json!({"name": "web", "lifecycle": {"preStop": own}}));
            assert_eq!(pre_stop(&app, 30, 9901, &token()), (PreStop::Kept, None), "{own}");
            // Kept whatever the grace period.
            assert_eq!(pre_stop(&app, 0, 9901, &token()), (PreStop::Kept, None), "{own}");
        }
    }

    #[test]
    fn no_grace_period_no_hook() {
        let app = container(json!({"name": "web"}));
        assert_eq!(pre_stop(&app, 0, 9901, &token()), (PreStop::NoGracePeriod, None));
        assert_eq!(pre_stop(&app, -1, 9901, &token()), (PreStop::NoGracePeriod, None));
        assert_eq!(pre_stop(&app, 1, 9901, &token()).0, PreStop::Added);
    }

    #[test]
    fn the_annotation_words() {
        let words: Vec<_> =
            [PreStop::Added, PreStop::Kept, PreStop::NoGracePeriod].map(PreStop::as_str).into();
        assert_eq!(words, ["added", "kept", "none"]);
    }
}
