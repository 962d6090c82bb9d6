//! Lays out the release binary's hot code together: the linker places the functions of
//! packaging/hot-symbols.txt (what a sidecar runs, `make hot-symbols`) first, in that
//! order. Code is mapped from the file 64 KiB around each page run, so a sidecar's few
//! hundred functions scattered over the whole binary kept 6-7 MiB of it resident; gathered,
//! they keep about 1 MiB.
//!
//! Only where the linker is known to take the list: rust-lld, the default linker for
//! x86_64-unknown-linux-gnu since Rust 1.90 (GNU ld has no such option). Elsewhere, or with
//! PORTCULLIS_NO_HOT_SYMBOLS set (another linker configured), the binary is linked as is.

use std::path::Path;
use std::process::Command;

const HOT_SYMBOLS: &str = "packaging/hot-symbols.txt";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={HOT_SYMBOLS}");
    println!("cargo::rerun-if-env-changed=PORTCULLIS_NO_HOT_SYMBOLS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("PORTCULLIS_NO_HOT_SYMBOLS").is_none()
        && links_with_rust_lld(&var("RUSTC"));
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join(HOT_SYMBOLS);
    if wanted && list.is_file() {
        println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", list.display());
        // Symbols of the list that this build does not have (renamed by a crate update, or
        // inlined) are skipped, not each reported.
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this rustc links x86_64 Linux binaries with rust-lld by default: 1.90 and later.
fn links_with_rust_lld(rustc: &str) -> bool {
    let Ok(out) = Command::new(rustc).arg("-V").output() else { return false };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text.split_whitespace().nth(1).unwrap_or_default().split(['.', '-']);
    let (Some(Ok(major)), Some(Ok(minor))) =
        (version.next().map(str::parse::<u32>), version.next().map(str::parse::<u32>))
    else {
        return false;
    };
    (major, minor) >= (1, 90)
}
