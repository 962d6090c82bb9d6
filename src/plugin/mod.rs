//! `kubectl portcullis`: what the sidecars enforce and where they stand with the controller,
//! read with the user's kubeconfig through the API server only. The controller replicas'
//! reports (`/v1/sidecars`) and each sidecar's state (`/v1/state`) are read through the
//! API server's pod proxy, so no port is exposed for it and RBAC decides who may look.
//!
//! The `portcullis` binary runs it when invoked as `kubectl-portcullis` (a symlink on the
//! PATH, which is how kubectl finds plugins), and as `portcullis kubectl`.
//!
//! - [`fetch`]: the API requests, and [`PluginError`].
//! - [`pods`]: what is read off Pod objects.
//! - [`merge`]: pure; the replicas' reports into one view per pod.
//! - [`render`]: pure; tables, text, JSON and YAML.

pub mod fetch;
pub mod merge;
pub mod pods;
pub mod render;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use crate::admin::state::{STATE_PATH, SidecarStatus};
pub use fetch::PluginError;
use render::{ControllerView, Structured};

/// The name kubectl finds plugins by: `kubectl portcullis` runs `kubectl-portcullis`.
pub const PLUGIN_NAME: &str = "kubectl-portcullis";
pub const DEFAULT_CONTROLLER_SELECTOR: &str =
    "app.kubernetes.io/name=portcullis,app.kubernetes.io/component=controller";

/// The command line when invoked as `kubectl-portcullis`.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-portcullis",
    bin_name = "kubectl portcullis",
    version,
    about = "What Portcullis sidecars enforce, and where they stand with the controller"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: KubectlArgs,
}

#[derive(Args, Debug, Clone)]
pub struct KubectlArgs {
    #[command(subcommand)]
    pub command: KubectlCommand,
    /// The controller's namespace.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_NAMESPACE",
        default_value = "portcullis-system",
        value_name = "NAMESPACE"
    )]
    pub controller_namespace: String,
    /// The label selector of the controller's pods.
    #[arg(long, global = true, default_value = DEFAULT_CONTROLLER_SELECTOR, value_name = "SELECTOR")]
    pub controller_selector: String,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum KubectlCommand {
    /// Where each injected pod's sidecar stands with the controller.
    ///
    /// One line per injected pod: its sidecar's version, the controller replica it follows,
    /// the config generation it acknowledged against the newest, its state and the windows
    /// open now; then a line for each sidecar that refused its newest config, with why.
    Status(StatusArgs),
    /// What one pod's sidecar enforces now, and why.
    ///
    /// Its policy, its windows (open or not, until or from when, exempt paths, bypass),
    /// what a request gets now and until when, its recent 5xx by reason, and the
    /// controller's view of it.
    Why(WhyArgs),
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The pods' namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Injected pods in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = StatusFormat::Table)]
    pub output: StatusFormat,
}

#[derive(Args, Debug, Clone)]
pub struct WhyArgs {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = WhyFormat::Text)]
    pub output: WhyFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WhyFormat {
    Text,
    Json,
    Yaml,
}

/// What a command prints: its result, and warnings for stderr (one a line).
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn warn(&mut self, warnings: Vec<String>) {
        for warning in warnings {
            self.stderr.push_str(&format!("warning: {warning}\n"));
        }
    }
}

/// Runs a command with `client` (tests pass one made for their fake API server).
pub async fn run(client: &Client, args: &KubectlArgs) -> Result<Output, PluginError> {
    match &args.command {
        KubectlCommand::Status(status_args) => status(client, args, status_args).await,
        KubectlCommand::Why(why_args) => why(client, args, why_args).await,
    }
}

async fn status(
    client: &Client,
    args: &KubectlArgs,
    status: &StatusArgs,
) -> Result<Output, PluginError> {
    let namespace = match (status.all_namespaces, &status.namespace) {
        (true, _) => None,
        (false, Some(ns)) => Some(ns.clone()),
        (false, None) => Some(client.default_namespace().to_owned()),
    };
    let pods = fetch::list_pods(client, namespace.as_deref(), None).await?;
    let injected: Vec<merge::PodKey> =
        pods.iter().filter(|p| pods::is_injected(p)).map(pods::key).collect();
    let mut out = Output::default();
    // With nothing injected there is nothing to ask the controller about.
    let rows = if injected.is_empty() {
        let scope = namespace.map_or("any namespace".to_owned(), |ns| format!("namespace {ns}"));
        out.stderr.push_str(&format!("No injected pods found in {scope}.\n"));
        Vec::new()
    } else {
        let mut warnings = Vec::new();
        let reports = fetch::replica_reports(
            client,
            &args.controller_namespace,
            &args.controller_selector,
            &mut warnings,
        )
        .await?;
        out.warn(warnings);
        merge::rows(&injected, &merge::merge(&reports))
    };
    out.stdout = match status.output {
        StatusFormat::Table if rows.is_empty() => String::new(),
        StatusFormat::Table => render::status_table(&rows),
        StatusFormat::Json => structured(&rows, Structured::Json)?,
        StatusFormat::Yaml => structured(&rows, Structured::Yaml)?,
    };
    Ok(out)
}

async fn why(client: &Client, args: &KubectlArgs, why: &WhyArgs) -> Result<Output, PluginError> {
    let namespace = why.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let name = why.pod.as_str();
    let pod = fetch::get_pod(client, &namespace, name).await?;
    let port = sidecar_port(&pod, &namespace, name)?;
    let target =
        fetch::Target { what: "the sidecar of pod", namespace: &namespace, pod: name, port };
    let state: SidecarStatus = fetch::proxy_get(client, &target, STATE_PATH).await?;

    // The sidecar's own word is the answer; the controller's view only adds to it, so a
    // controller that cannot be read is a warning here.
    let mut out = Output::default();
    let mut warnings = Vec::new();
    let reports = fetch::replica_reports(
        client,
        &args.controller_namespace,
        &args.controller_selector,
        &mut warnings,
    )
    .await;
    let merged = match reports {
        Ok(reports) => Some(merge::merge(&reports)),
        Err(e) => {
            warnings.push(format!("the controller's view is missing: {e}"));
            None
        }
    };
    out.warn(warnings);
    let key = (namespace.clone(), name.to_owned());
    let view = match &merged {
        Some(merged) => {
            merged.get(&key).map_or(ControllerView::NotReported, ControllerView::Reported)
        }
        None => ControllerView::Unavailable,
    };
    let value = || render::WhyReport {
        namespace: &namespace,
        pod: name,
        sidecar: &state,
        controller: match view {
            ControllerView::Reported(report) => Some(report),
            _ => None,
        },
    };
    out.stdout = match why.output {
        WhyFormat::Text => render::why_text(&namespace, name, &state, view),
        WhyFormat::Json => structured(&value(), Structured::Json)?,
        WhyFormat::Yaml => structured(&value(), Structured::Yaml)?,
    };
    Ok(out)
}

/// The sidecar's admin port, when the pod has a sidecar that the pod proxy can reach.
fn sidecar_port(pod: &Pod, namespace: &str, name: &str) -> Result<i32, PluginError> {
    let (namespace, pod_name) = (namespace.to_owned(), name.to_owned());
    let Some(sidecar) = pods::sidecar(pod) else {
        return Err(PluginError::NotInjected { namespace, pod: pod_name });
    };
    let Some(port) = pods::sidecar_admin_port(sidecar) else {
        return Err(PluginError::NoAdminPort { namespace, pod: pod_name });
    };
    match pods::reachable(pod) {
        Ok(()) => Ok(port),
        Err(state) => Err(PluginError::NotReachable { namespace, pod: pod_name, state }),
    }
}

fn structured<T: serde::Serialize>(value: &T, format: Structured) -> Result<String, PluginError> {
    render::structured(value, format).map_err(PluginError::Output)
}
