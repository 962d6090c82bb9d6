//! The labels, annotations and names that the injector reads on pods and writes into them.

/// Pod label (and namespace label) that opts in (`enabled`) or out (`disabled`).
pub const INJECT_LABEL: &str = "portcullis.dev/inject";
/// The app port to take over: a port name, or a container port number.
pub const PORT_ANNOTATION: &str = "portcullis.dev/port";
/// What the sidecar speaks to the app: `http1` or `http2`, over what the port's name says.
pub const APP_PROTOCOL_ANNOTATION: &str = "portcullis.dev/app-protocol";
pub const IMAGE_ANNOTATION: &str = "portcullis.dev/proxy-image";
pub const CPU_REQUEST_ANNOTATION: &str = "portcullis.dev/proxy-cpu-request";
pub const CPU_LIMIT_ANNOTATION: &str = "portcullis.dev/proxy-cpu-limit";
pub const MEMORY_REQUEST_ANNOTATION: &str = "portcullis.dev/proxy-memory-request";
pub const MEMORY_LIMIT_ANNOTATION: &str = "portcullis.dev/proxy-memory-limit";
/// How long the sidecar holds the app's stop (a Gateway API duration), over `stopDelay`.
pub const STOP_DELAY_ANNOTATION: &str = "portcullis.dev/stop-delay";
/// Written on injected pods: what was injected, as JSON.
pub const INJECTED_ANNOTATION: &str = "portcullis.dev/injected";

pub const SIDECAR_NAME: &str = "portcullis-proxy";
pub const TOKEN_VOLUME: &str = "portcullis-token";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/portcullis";
pub const TOKEN_AUDIENCE: &str = "portcullis";
pub const ADMIN_PORT_NAME: &str = "portcullis-adm";
/// The sidecar's serving port name when the app port it takes over had none.
pub const UNNAMED_PORT_NAME: &str = "portcullis";
/// The env var that carries the controller's CA bundle to the sidecar.
pub const CA_ENV: &str = "PORTCULLIS_CONTROLLER_CA";
/// The env var that carries the pod's stop token to the sidecar.
pub const STOP_TOKEN_ENV: &str = "PORTCULLIS_STOP_TOKEN";
/// The sidecar's admin path that the app's preStop hook calls.
pub const PRESTOP_PATH: &str = "/prestop";
/// The header of that call that carries the pod's stop token.
pub const STOP_TOKEN_HEADER: &str = "Portcullis-Stop-Token";
