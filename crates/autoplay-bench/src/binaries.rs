//! Other programs of this workspace that the benchmark runs as they ship: the
//! `autoplay` CLI (whose `connector` subcommand is the connector under test) and
//! the client-only idle program. `cargo run` builds only the binary it runs, so
//! these are built here, with the same profile, when the benchmark runs under cargo.

use std::path::PathBuf;
use std::process::Command;

/// The path of binary `bin` of workspace package `package`, built first when
/// cargo is at hand (`$CARGO`); `None` when it cannot be built.
pub fn built(package: &str, bin: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.with_file_name(bin);
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", package, "--bin", bin]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        if !build.status().is_ok_and(|s| s.success()) {
            eprintln!("  could not build {bin} (package {package})");
            return None;
        }
    }
    exe.exists().then_some(exe)
}
