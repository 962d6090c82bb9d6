//! The `portcullis` command line: one subcommand per role.

mod controller;
mod inject;
mod plugin;
mod proxy;
mod shared;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Honest 5xx for Kubernetes workloads")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar proxy in front of an app.
    Proxy(Box<proxy::ProxyArgs>),
    /// Run the controller: watch resources and pods, stream each sidecar its config.
    Controller(Box<controller::ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Add the sidecar to the pods of workload manifests (Pods, Deployments, StatefulSets,
    /// DaemonSets, Jobs, CronJobs), as the webhook would.
    Inject(Box<inject::InjectArgs>),
    /// Check the pods of workload manifests against the API server's Pod validation rules
    /// that Portcullis knows (those of every field it writes), as `kubectl apply` would
    /// find out too late.
    Validate(validate::ValidateArgs),
    /// The kubectl plugin (`status`, `why`): what `kubectl portcullis` runs when this binary
    /// is on the PATH as `kubectl-portcullis`.
    Kubectl(Box<crate::plugin::KubectlArgs>),
}

pub fn main() -> ExitCode {
    if plugin::invoked_as_plugin() {
        return plugin::run(crate::plugin::PluginCli::parse().args);
    }
    match Cli::parse().command {
        Command::Proxy(args) => proxy::run(*args),
        Command::Controller(args) => controller::run(*args),
        Command::Crds => {
            print!("{}", crate::api::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Inject(args) => inject::run(*args),
        Command::Validate(args) => validate::run(args),
        Command::Kubectl(args) => plugin::run(*args),
    }
}
