//! The sidecar's config file: YAML documents of UpstreamPolicy and MaintenanceWindow, read by
//! `portcullis::config::parse` at start-up and on every reload.
//!
//! Asserted: never a panic; a refusal is a `LoadError` value whose message names a
//! document; an accepted config serializes (the admin server's `/config` shows it).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{LoadContext, parse};

/// A Secrets folder holding `bypass/token`, so that bypass documents can load.
fn secrets_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bypass")).unwrap();
        std::fs::write(dir.join("bypass").join("token"), "s3cret\n").unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ctx = LoadContext {
        secrets_dir: Some(secrets_dir().clone()),
        now: "2026-06-01T12:00:00Z".parse().unwrap(),
    };
    match parse(text, &ctx) {
        Ok(config) => {
            serde_json::to_string(&config).expect("an accepted config serializes");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("document "), "{message}");
        }
    }
});
