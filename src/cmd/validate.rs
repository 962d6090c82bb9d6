//! `portcullis validate -f FILE`: the API server's Pod validation, offline, for the pods of
//! workload manifests (the kinds `portcullis inject` reads). OpenAPI schemas leave out
//! most of these rules (name formats and lengths, uniqueness across containers, probe
//! handlers...); this says what the API server would refuse before a rollout finds out.
//! It covers the rules listed in `crate::apiserver`, not every rule the API server has.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::shared;
use crate::inject::workload::refusals;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// YAML manifests, one or more documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    filename: PathBuf,
}

pub fn run(args: ValidateArgs) -> ExitCode {
    match validate(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("portcullis validate: {message}");
            ExitCode::from(2)
        }
    }
}

/// Prints each refusal as the API server words it; returns how many pods would be refused.
fn validate(args: &ValidateArgs) -> Result<usize, String> {
    let source = args.filename.display().to_string();
    let input = shared::read(&args.filename)?;
    let mut refused = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(&input).enumerate() {
        let doc = Value::deserialize(document)
            .map_err(|e| format!("{source}: document {}: {e}", index + 1))?;
        for (workload, errors) in
            refusals(&doc).map_err(|e| format!("{source}: document {}: {e}", index + 1))?
        {
            if errors.is_empty() {
                eprintln!("{workload}: valid");
                continue;
            }
            refused += 1;
            for error in errors {
                println!("{workload}: {error}");
            }
        }
    }
    Ok(refused)
}
