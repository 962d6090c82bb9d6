//! `portcullis inject -f FILE`: the webhook's mutation, offline, for GitOps users.
//!
//! Reads YAML documents, injects the sidecar into the pod of each Pod, Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (and of each item of a List), and
//! prints every document, in order, separated by `---`. Other documents, and workloads
//! left alone (their reason is noted on stderr), come out as they went in; only comments
//! and formatting are lost. Its own output comes back unchanged, as the webhook adds
//! nothing to an injected pod.
//!
//! The Services of the input (anywhere in it, Lists included) are read before any pod, and
//! their ports' `appProtocol` says the app's protocol as it does to the webhook: a file
//! with a Deployment and its Service is injected as the cluster would inject its pods.
//!
//! Each workload gets a stop token of its own, drawn from the system's CSPRNG, which the
//! pods of its template share; so injecting the same file twice writes different tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::shared;
use crate::inject::workload::{inject_document, services_in};
use crate::inject::{InjectConfig, StopToken};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("ca").required(true).multiple(true).args(["ca_file", "ca_pem"])))]
pub struct InjectArgs {
    /// YAML manifests, one or more documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    filename: PathBuf,

    /// The injector's config, as the chart renders it (`inject.yaml`); defaults without it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The controller's CA certificate (PEM), the only one the sidecars will trust: the
    /// `ca.crt` key of the controller's TLS Secret, e.g.
    /// `kubectl -n portcullis-system get secret <name> -o jsonpath='{.data.ca\.crt}' | base64 -d`.
    /// One of --ca-file and --ca-pem is required; --ca-file wins when both are given.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,

    /// The controller's CA certificate itself (PEM text), instead of --ca-file.
    #[arg(
        long,
        env = crate::inject::CA_ENV,
        value_name = "PEM",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    ca_pem: Option<String>,
}

pub fn run(args: InjectArgs) -> ExitCode {
    match inject(&args) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcullis inject: {message}");
            ExitCode::FAILURE
        }
    }
}

/// All of the output, or nothing: a manifest that cannot be read must not come out half
/// injected.
fn inject(args: &InjectArgs) -> Result<String, String> {
    let config = match &args.config {
        Some(path) => InjectConfig::from_yaml(&shared::read(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => InjectConfig::default(),
    };
    // Required by clap (one of the two), so never None here.
    let ca_pem = shared::ca_pem(args.ca_file.as_deref(), args.ca_pem.clone())?.unwrap_or_default();
    check_ca(&ca_pem)?;
    let source = args.filename.display().to_string();
    let input = shared::read(&args.filename)?;
    let mut parsed = Vec::new();
    let mut services = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&input).enumerate() {
        let doc = serde_json::Value::deserialize(document)
            .map_err(|e| format!("{source}: document {}: {e}", index + 1))?;
        // A leading, trailing or doubled `---` makes an empty document: nothing to print.
        if doc.is_null() {
            continue;
        }
        // A Service after its Deployment still counts: all of them before any pod.
        services.extend(
            services_in(&doc).map_err(|e| format!("{source}: document {}: {e}", index + 1))?,
        );
        parsed.push((index, doc));
    }
    let mut documents = Vec::new();
    for (index, mut doc) in parsed {
        let reports = inject_document(&mut doc, &config, &ca_pem, &services, &StopToken::generate)
            .map_err(|e| format!("{source}: document {}: {e}", index + 1))?;
        for report in reports {
            match report.outcome {
                Ok(summary) => eprintln!("{}: injected: {summary}", report.workload),
                Err(left) => eprintln!(
                    "{}: left unchanged ({}): {}",
                    report.workload, left.reason, left.message
                ),
            }
        }
        let yaml = serde_yaml::to_string(&doc)
            .map_err(|e| format!("{source}: document {}: {e}", index + 1))?;
        documents.push(yaml);
    }
    Ok(documents.join("---\n"))
}

/// The CA goes into every pod spec: it must be certificates, and certificates only.
fn check_ca(pem: &str) -> Result<(), String> {
    if pem.contains("PRIVATE KEY-----") {
        return Err("the CA holds a private key; give its certificate only (ca.crt)".into());
    }
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        certificate.map_err(|e| format!("the CA is not valid PEM: {e}"))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err("the CA holds no PEM certificate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_must_be_certificates_only() {
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(check_ca(certificate), Ok(()));
        assert_eq!(check_ca("hello"), Err("the CA holds no PEM certificate".into()));
        assert_eq!(check_ca(""), Err("the CA holds no PEM certificate".into()));
        let with_key =
            format!("{certificate}-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
        assert!(check_ca(&with_key).unwrap_err().contains("private key"));
        let broken = "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n";
        assert!(check_ca(broken).unwrap_err().starts_with("the CA is not valid PEM"));
    }
}
