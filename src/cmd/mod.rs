//! The `portcullis` command line: one subcommand per role.

mod proxy;

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
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
}

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Proxy(args) => proxy::run(*args),
        Command::Crds => {
            print!("{}", crate::api::crds_yaml());
            ExitCode::SUCCESS
        }
    }
}
