//! `kubectl portcullis` (the binary invoked as `kubectl-portcullis`) and `portcullis kubectl`:
//! the plugin's commands on a small runtime, with the user's kubeconfig.

use std::io::Write as _;
use std::process::ExitCode;

use super::shared;
use crate::plugin::{self, KubectlArgs, PLUGIN_NAME};

/// Whether the binary was invoked by the plugin's name, as kubectl invokes a plugin found
/// on the PATH (a symlink to this binary).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os().next().is_some_and(|argv0| {
        std::path::Path::new(&argv0).file_name().is_some_and(|name| name == PLUGIN_NAME)
    })
}

pub fn run(args: KubectlArgs) -> ExitCode {
    // Each command makes a few requests, in parallel at most once: one thread is plenty.
    shared::block_on(Some(1), async move {
        let client = plugin::fetch::connect(args.kubeconfig.as_deref(), args.context.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let output = plugin::run(&client, &args).await.map_err(|e| e.to_string())?;
        // Not print!: a closed pipe (`| head`) must not panic.
        let _ = std::io::stderr().write_all(output.stderr.as_bytes());
        let _ = std::io::stdout().write_all(output.stdout.as_bytes());
        Ok(())
    })
}
