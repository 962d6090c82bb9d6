//! Sidecar injection: the mutation of a Pod (pure), the admission webhook that applies it
//! as pods are created, and `portcullis inject` for manifests on disk.
//!
//! - [`mutate`]: a Pod in, the answer out: the patch, checked against the API server's
//!   own validation ([`crate::apiserver`]), or the reason to leave the pod alone.
//! - [`pod`]: the patch planned (port choice and overrides in their own files).
//! - [`outcome`]: what was decided: injected, skipped, or an invalid mutation held back.
//! - [`app_protocol`]: what the sidecar speaks to the app, HTTP/1.1 or HTTP/2.
//! - [`service_ports`]: the Service ports that send traffic to a container port.
//! - [`sidecar`]: the sidecar container and its token volume.
//! - [`stop_delay`], [`pre_stop`], [`stop_token`]: how the pod stops (see below).
//! - [`port_name`]: the app port's new name, a valid and unique IANA service name.
//! - [`quantity`]: resource quantities, for per-pod overrides and the worker count.
//! - [`config`]: the injector's YAML config.
//! - `names`: the labels, annotations and names the injector reads and writes.
//! - [`review`]: an `admission.k8s.io/v1` AdmissionReview in, the response out.
//! - [`webhook`]: the HTTP handler, with metrics, logs and Events.
//! - [`workload`]: the pod templates of Deployments, StatefulSets, DaemonSets, Jobs...
//!
//! # How traffic reaches the sidecar
//!
//! No iptables and no NET_ADMIN: the sidecar takes over the app's serving port by name.
//! The app container's port (picked by the `portcullis.dev/port` annotation, else the first
//! container port with a name) is renamed, and the sidecar declares a port with the
//! original name on its own number (`proxyPort`). A Service whose `targetPort` names the
//! port then sends its traffic to the sidecar, which forwards it to the app on
//! 127.0.0.1:<app port>. Regular containers are searched first when a Service's port name
//! is resolved, which is why the app's port must lose the name.
//!
//! - The new app port name is `app-<name>` when that fits the 15 characters a port name
//!   may have; else a shortened `app<n>-<prefix of name>`, unique in the pod.
//! - A Service whose `targetPort` is a number keeps reaching the app directly, around the
//!   sidecar: point it at the original port name (or at `proxyPort`) instead.
//! - `portcullis.dev/port: "8080"` (a number) on an unnamed port: the app port stays
//!   unnamed and the sidecar's port is named `portcullis` (unless that name is taken in
//!   the pod), so that Services can target it by that name.
//! - The kubelet's probes and lifecycle hooks of that container that named the port are
//!   rewritten to its number: they keep reaching the app directly, so a maintenance window
//!   (where the sidecar answers 503) never gets a pod restarted.
//!
//! # The app's protocol
//!
//! The sidecar speaks HTTP/1.1 to the app unless told `--app-protocol http2`; a gRPC app
//! needs HTTP/2 and should need no configuration. For the port taken over, in order:
//!
//! 1. the pod annotation `portcullis.dev/app-protocol`: `http1` or `http2`; any other
//!    value skips the pod (`invalid_annotation`). When it is set, nothing below is read:
//!    it is also the way out of the two skips of rule 2;
//! 2. the `appProtocol` of the Service ports that send traffic to the port: Services of
//!    the pod's namespace whose (non-empty) selector matches the pod's labels, with a port
//!    whose `targetPort` is the port's original name or its number (or, without one,
//!    whose `port` is that number). Compared ignoring ASCII case: `kubernetes.io/h2c`,
//!    `h2c`, `http2`, `grpc` and `grpc-web` are HTTP/2; `http`, `http1` and
//!    `kubernetes.io/ws` are HTTP/1.1; any other value (`https`, `kubernetes.io/wss`,
//!    `tcp`...) skips the pod (`unsupported_app_protocol`), and so do two that disagree
//!    (`conflicting_app_protocol`). Ports without `appProtocol` say nothing;
//! 3. the port's original name: `grpc`, `h2c` or `http2`, alone or followed by `-` and
//!    more (`grpc-web`, `h2c-internal`), is HTTP/2;
//! 4. else HTTP/1.1.
//!
//! A container port has no `appProtocol` field: only Service (and EndpointSlice) ports
//! do, hence rule 2. The webhook reads Services from the controller's cache (a watch of
//! every Service, never an API call during admission); until that cache has synced it
//! knows none, and a Service created after its pods is not seen by them: rule 3 applies
//! then, and the annotation is the sure way. `portcullis inject` reads the Service
//! documents of its input, so that a Deployment and its Service come out as the webhook
//! would inject them. The choice is written in the `portcullis.dev/injected` annotation
//! (`appProtocol`), and with its source in the summary (the log, and `portcullis
//! inject`'s note), e.g. `app protocol http2 (Service web port grpc appProtocol
//! kubernetes.io/h2c)`.
//!
//! # Stopping
//!
//! A native sidecar gets SIGTERM only once the app containers have exited: an app that
//! exits at once would leave the sidecar forwarding to a closed port while the pod's
//! endpoint is still being removed (502s on every rolling restart). So the app container
//! whose port is taken over gets a preStop hook, `GET /prestop` on the sidecar's admin port
//! with the header `Portcullis-Stop-Token`. The kubelet runs it first; the sidecar marks
//! the pod stopping (failing readiness) and answers once `--stop-delay` has passed; only
//! then does the app get SIGTERM, its traffic gone.
//!
//! - The delay: `stopDelay` (5s), or the pod's `portcullis.dev/stop-delay` annotation; it
//!   must leave the app time to stop within `terminationGracePeriodSeconds` (30 when
//!   unset). An annotation at or above it skips the pod (`invalid_annotation`); the
//!   config's default at or above it is lowered, for that pod, to half of it.
//! - The token: 32 lowercase hex characters from the system's CSPRNG, one per pod (per
//!   workload for `portcullis inject`), handed to the sidecar in `PORTCULLIS_STOP_TOKEN`.
//!   The admin port is reachable from any pod of the cluster: without it, anyone could
//!   take a pod out of its Service.
//! - A preStop the app container already has (of any kind) is kept as it is and nothing
//!   is added: the sidecar then learns that the pod is stopping only at its own SIGTERM.
//!   The summary says so, and the webhook tells the pod's owner (Event `PreStopKept`).
//! - A pod whose grace period is 0 gets no hook: the kubelet runs none without one.
//! - Other app containers keep their hooks, or lack of them.
//!
//! The `portcullis.dev/injected` annotation says what was done: `"stopDelay":"5s"` and
//! `"preStop":"added"`, `"kept"` or `"none"`.

pub mod app_protocol;
pub mod config;
/// What the tests, here and in tests/, send and expect: one copy for all of them.
#[cfg(test)]
#[path = "../../tests/fixtures/inject/expected.rs"]
mod expected;
pub mod mutate;
mod names;
pub mod outcome;
mod overrides;
pub mod pod;
mod port_choice;
pub mod port_name;
pub mod pre_stop;
pub mod quantity;
pub mod review;
pub mod service_ports;
pub mod sidecar;
pub mod stop_delay;
pub mod stop_token;
pub mod webhook;
pub mod workload;

pub use app_protocol::{AppProtocol, ProtocolSource};
pub use config::InjectConfig;
pub use mutate::mutate;
pub use names::{
    ADMIN_PORT_NAME, APP_PROTOCOL_ANNOTATION, CA_ENV, CPU_LIMIT_ANNOTATION, CPU_REQUEST_ANNOTATION,
    IMAGE_ANNOTATION, INJECT_LABEL, INJECTED_ANNOTATION, MEMORY_LIMIT_ANNOTATION,
    MEMORY_REQUEST_ANNOTATION, PORT_ANNOTATION, PRESTOP_PATH, SIDECAR_NAME, STOP_DELAY_ANNOTATION,
    STOP_TOKEN_ENV, STOP_TOKEN_HEADER, TOKEN_AUDIENCE, TOKEN_MOUNT_PATH, TOKEN_VOLUME,
    UNNAMED_PORT_NAME,
};
pub use outcome::{Injection, InvalidMutation, Outcome, Skip, SkipReason, Summary};
pub use pre_stop::PreStop;
pub use stop_delay::{DelaySource, StopDelay};
pub use stop_token::StopToken;
